/* model.c — the flat-θ model: layout, initialisation and the four passes over its layers
 * (see model.h). Each pass is one loop over the layer table dispatching to the kernels of
 * layers.c (linear, ReLU, MSE) and conv.c (conv, batchnorm, pool, flatten, cross-entropy). */
#include "model.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "conv.h"
#include "layers.h"
#include "rng.h"

struct mt_workspace {
    int max_rows;
    float *slab;                /* one allocation holding the float arrays below */
    float *y[MT_MAX_LAYERS];    /* layer outputs        [N, out_l] (CNHW for conv-family layers) */
    float *dy[MT_MAX_LAYERS];   /* dL/d(outputs) */
    float *ry[MT_MAX_LAYERS];   /* R(outputs) */
    float *rdy[MT_MAX_LAYERS];  /* R(dL/d(outputs)) */
    float *stats[MT_MAX_LAYERS];  /* batchnorm: μ, s [2C]; R(μ), R(s) [2C] follow */
    int32_t *argmax[MT_MAX_LAYERS]; /* max-pool: chosen input per output [N, out_l] */
    float *probs;               /* cross-entropy: softmax of the logits [N, out] */
    float *scratch;             /* conv im2col buffers, shared by the conv layers */
};

/* ---- building ---------------------------------------------------------------------- */

static mt_layer *add_layer(mt_model *m, const char *name, mt_layer_kind kind, int c, int h, int w)
{
    assert(m->n_layers < MT_MAX_LAYERS);
    mt_layer *l = &m->layer[m->n_layers];
    if (m->n_layers > 0) {
        const mt_layer *prev = &m->layer[m->n_layers - 1];
        l->in_c = prev->out_c, l->in_h = prev->out_h, l->in_w = prev->out_w;
    } else {
        l->in_c = c, l->in_h = h, l->in_w = w; /* the first layer's input is the model's */
    }
    m->n_layers++;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->kind = kind;
    l->out_c = l->in_c, l->out_h = l->in_h, l->out_w = l->in_w;
    return l;
}

static void finish_layer(mt_model *m, mt_layer *l, size_t n_params)
{
    l->in = l->in_c * l->in_h * l->in_w;
    l->out = l->out_c * l->out_h * l->out_w;
    l->offset = m->n_params;
    l->n_params = n_params;
    m->n_params += n_params;
}

static void linear(mt_model *m, const char *name, int out)
{
    mt_layer *l = add_layer(m, name, MT_LAYER_LINEAR, 0, 0, 0);
    int in = l->in_c * l->in_h * l->in_w;
    l->in_c = in, l->in_h = l->in_w = 1;
    l->out_c = out, l->out_h = l->out_w = 1;
    finish_layer(m, l, (size_t)out * in + out);
}

static void simple(mt_model *m, const char *name, mt_layer_kind kind)
{
    finish_layer(m, add_layer(m, name, kind, 0, 0, 0), 0);
}

int mt_model_mlp(mt_model *m, int in, int hidden, int out)
{
    if (in <= 0 || hidden <= 0 || out <= 0) return -1;
    memset(m, 0, sizeof *m);
    snprintf(m->arch, sizeof m->arch, "mlp");
    m->loss = MT_LOSS_MSE;
    mt_layer *first = add_layer(m, "fc1", MT_LAYER_LINEAR, in, 1, 1);
    first->out_c = hidden, first->out_h = first->out_w = 1;
    finish_layer(m, first, (size_t)hidden * in + hidden);
    simple(m, "relu1", MT_LAYER_RELU);
    linear(m, "fc2", hidden);
    simple(m, "relu2", MT_LAYER_RELU);
    linear(m, "head", out);
    m->in = in;
    m->out = out;
    return 0;
}

int mt_model_conv4(mt_model *m, int C, int H, int W, int filters, int ways)
{
    if (C <= 0 || H < 16 || W < 16 || filters <= 0 || ways <= 0) return -1;
    memset(m, 0, sizeof *m);
    snprintf(m->arch, sizeof m->arch, "conv4");
    m->loss = MT_LOSS_XENT;
    for (int b = 1; b <= 4; b++) {
        char name[MT_NAME_LEN];
        snprintf(name, sizeof name, "conv%d", b);
        mt_layer *l = add_layer(m, name, MT_LAYER_CONV, C, H, W);
        l->out_c = filters;
        finish_layer(m, l, (size_t)filters * l->in_c * 9 + filters);
        snprintf(name, sizeof name, "bn%d", b);
        finish_layer(m, add_layer(m, name, MT_LAYER_BN, 0, 0, 0), 2 * (size_t)filters);
        snprintf(name, sizeof name, "relu%d", b);
        simple(m, name, MT_LAYER_RELU);
        snprintf(name, sizeof name, "pool%d", b);
        l = add_layer(m, name, MT_LAYER_POOL, 0, 0, 0);
        l->out_h = l->in_h / 2, l->out_w = l->in_w / 2;
        finish_layer(m, l, 0);
    }
    mt_layer *f = add_layer(m, "flatten", MT_LAYER_FLATTEN, 0, 0, 0);
    f->out_c = f->in_c * f->in_h * f->in_w, f->out_h = f->out_w = 1;
    finish_layer(m, f, 0);
    linear(m, "head", ways);
    m->in = C * H * W;
    m->out = ways;
    return 0;
}

void mt_model_init_params(const mt_model *m, float *theta, uint64_t seed)
{
    mt_rng r;
    mt_rng_init(&r, seed, MT_STREAM_INIT, 0, 0);
    for (int l = 0; l < m->n_layers; l++) {
        const mt_layer *L = &m->layer[l];
        float *p = theta + L->offset;
        if (L->kind == MT_LAYER_LINEAR || L->kind == MT_LAYER_CONV) {
            int fan_in = L->kind == MT_LAYER_LINEAR ? L->in : L->in_c * 9;
            float bound = 1.0f / sqrtf((float)fan_in);
            for (size_t i = 0; i < L->n_params; i++) p[i] = mt_rng_uniform(&r, -bound, bound);
        } else if (L->kind == MT_LAYER_BN) {
            for (int c = 0; c < L->out_c; c++) p[c] = 1.0f, p[L->out_c + c] = 0.0f;
        }
    }
}

int mt_model_tensor_count(const mt_model *m)
{
    int n = 0;
    for (int l = 0; l < m->n_layers; l++) n += m->layer[l].n_params > 0 ? 2 : 0;
    return n;
}

void mt_model_tensor(const mt_model *m, int i, mt_tensor_info *out)
{
    memset(out, 0, sizeof *out);
    for (int l = 0; l < m->n_layers; l++) {
        const mt_layer *L = &m->layer[l];
        if (L->n_params == 0) continue;
        if (i >= 2) {
            i -= 2;
            continue;
        }
        const int bias_len = L->out_c; /* linear: out, conv: filters, bn: channels (β) */
        const size_t weight_len = L->n_params - (size_t)bias_len;
        out->kind = L->kind == MT_LAYER_LINEAR ? "linear" : L->kind == MT_LAYER_CONV ? "conv2d" : "batchnorm";
        snprintf(out->name, sizeof out->name, "%s.%s", L->name, i == 0 ? "weight" : "bias");
        out->offset = L->offset + (i == 0 ? 0 : weight_len);
        out->size = i == 0 ? weight_len : (size_t)bias_len;
        if (i == 1 || L->kind == MT_LAYER_BN) {
            out->ndim = 1, out->shape[0] = bias_len;
        } else if (L->kind == MT_LAYER_LINEAR) {
            out->ndim = 2, out->shape[0] = L->out, out->shape[1] = L->in;
        } else {
            out->ndim = 4, out->shape[0] = L->out_c, out->shape[1] = L->in_c, out->shape[2] = out->shape[3] = 3;
        }
        return;
    }
    assert(!"tensor index out of range");
}

/* The geometry of a conv layer: Conv4's 3×3, stride 1, padding 1. */
static mt_conv_geom conv_geom(const mt_layer *L)
{
    mt_conv_geom g;
    const int rc = mt_conv_geom_init(&g, L->in_c, L->in_h, L->in_w, L->out_c, 3, 1, 1);
    assert(rc == 0);
    (void)rc;
    return g;
}

/* ---- workspace --------------------------------------------------------------------- */

mt_workspace *mt_workspace_init(const mt_model *m, int max_rows)
{
    assert(max_rows > 0);
    mt_workspace *ws = mt_calloc(1, sizeof *ws);
    ws->max_rows = max_rows;
    size_t total = (size_t)max_rows * m->out, scratch = 0;
    for (int l = 0; l < m->n_layers; l++) {
        const mt_layer *L = &m->layer[l];
        total += 4 * (size_t)max_rows * L->out;
        if (L->kind == MT_LAYER_BN) total += 4 * (size_t)L->out_c;
        if (L->kind == MT_LAYER_CONV) {
            const mt_conv_geom g = conv_geom(L);
            size_t need = mt_conv_scratch_floats(max_rows, &g);
            if (need > scratch) scratch = need;
        }
    }
    ws->slab = mt_calloc(total + scratch, sizeof(float));
    float *p = ws->slab;
    for (int l = 0; l < m->n_layers; l++) {
        const mt_layer *L = &m->layer[l];
        size_t n = (size_t)max_rows * L->out;
        ws->y[l] = p, p += n;
        ws->dy[l] = p, p += n;
        ws->ry[l] = p, p += n;
        ws->rdy[l] = p, p += n;
        if (L->kind == MT_LAYER_BN) ws->stats[l] = p, p += 4 * (size_t)L->out_c;
        if (L->kind == MT_LAYER_POOL) ws->argmax[l] = mt_calloc(n, sizeof(int32_t));
    }
    ws->probs = p, p += (size_t)max_rows * m->out;
    ws->scratch = scratch ? p : NULL;
    return ws;
}

void mt_workspace_free(mt_workspace *ws)
{
    if (!ws) return;
    for (int l = 0; l < MT_MAX_LAYERS; l++) free(ws->argmax[l]);
    free(ws->slab);
    free(ws);
}

/* ---- passes ------------------------------------------------------------------------ */

/* A parameter slice of layer L inside a θ-shaped vector: weight first, then bias (for
 * batchnorm: γ then β). */
static inline const float *W(const mt_layer *L, const float *vec) { return vec + L->offset; }
static inline const float *B(const mt_layer *L, const float *vec)
{
    return vec + L->offset + L->n_params - (size_t)L->out_c;
}
static inline float *Wm(const mt_layer *L, float *vec) { return vec + L->offset; }
static inline float *Bm(const mt_layer *L, float *vec) { return vec + L->offset + L->n_params - (size_t)L->out_c; }

float mt_model_forward(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                       const float *y, int N)
{
    assert(N > 0 && N <= ws->max_rows);
    const float *in = x;
    for (int l = 0; l < m->n_layers; l++) {
        const mt_layer *L = &m->layer[l];
        float *out = ws->y[l];
        switch (L->kind) {
        case MT_LAYER_LINEAR: mt_linear_forward(out, in, W(L, theta), B(L, theta), N, L->in, L->out); break;
        case MT_LAYER_RELU: mt_relu_forward(out, in, N * L->out); break;
        case MT_LAYER_CONV: {
            const mt_conv_geom g = conv_geom(L);
            mt_conv_forward(out, in, W(L, theta), B(L, theta), N, &g, ws->scratch);
            break;
        }
        case MT_LAYER_BN:
            mt_bn_forward(out, ws->stats[l], in, W(L, theta), B(L, theta), L->out_c, N * L->out_h * L->out_w);
            break;
        case MT_LAYER_POOL: mt_maxpool_forward(out, ws->argmax[l], in, L->in_c * N, L->in_h, L->in_w); break;
        case MT_LAYER_FLATTEN: mt_flatten_forward(out, in, N, L->in_c, L->in_h * L->in_w); break;
        }
        in = out;
    }
    if (m->loss == MT_LOSS_XENT) return mt_xent_forward(ws->probs, in, y, N, m->out);
    return mt_mse_forward(in, y, N, m->out);
}

void mt_model_backward(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                       const float *y, int N, float *grad)
{
    int last = m->n_layers - 1;
    if (m->loss == MT_LOSS_XENT) mt_xent_backward(ws->dy[last], ws->probs, y, N, m->out);
    else mt_mse_backward(ws->dy[last], ws->y[last], y, N, m->out);
    for (int l = last; l >= 0; l--) {
        const mt_layer *L = &m->layer[l];
        const float *in = l > 0 ? ws->y[l - 1] : x;
        float *din = l > 0 ? ws->dy[l - 1] : NULL; /* dL/dx of the data is never needed */
        const float *dout = ws->dy[l];
        float *gw = grad ? Wm(L, grad) : NULL, *gb = grad ? Bm(L, grad) : NULL;
        switch (L->kind) {
        case MT_LAYER_LINEAR: mt_linear_backward(din, gw, gb, dout, in, W(L, theta), N, L->in, L->out); break;
        case MT_LAYER_RELU: assert(din); mt_relu_backward(din, dout, in, N * L->out); break;
        case MT_LAYER_CONV: {
            const mt_conv_geom g = conv_geom(L);
            if (gw || din) mt_conv_backward(din, gw, gb, dout, in, W(L, theta), N, &g, ws->scratch);
            break;
        }
        case MT_LAYER_BN:
            assert(din);
            mt_bn_backward(din, gw, gb, dout, in, ws->stats[l], W(L, theta), L->out_c, N * L->out_h * L->out_w);
            break;
        case MT_LAYER_POOL: assert(din); mt_maxpool_backward(din, dout, ws->argmax[l], L->in_c * N, L->in_h, L->in_w); break;
        case MT_LAYER_FLATTEN: assert(din); mt_flatten_backward(din, dout, N, L->in_c, L->in_h * L->in_w); break;
        }
    }
}

void mt_model_rforward(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                       const float *v, int N)
{
    for (int l = 0; l < m->n_layers; l++) {
        const mt_layer *L = &m->layer[l];
        const float *in = l > 0 ? ws->y[l - 1] : x;
        const float *rin = l > 0 ? ws->ry[l - 1] : NULL; /* the data does not move with θ */
        float *rout = ws->ry[l];
        switch (L->kind) {
        case MT_LAYER_LINEAR:
            mt_linear_rforward(rout, in, rin, W(L, theta), W(L, v), B(L, v), N, L->in, L->out);
            break;
        case MT_LAYER_RELU: assert(rin); mt_relu_rforward(rout, rin, in, N * L->out); break;
        case MT_LAYER_CONV: {
            const mt_conv_geom g = conv_geom(L);
            mt_conv_rforward(rout, in, rin, W(L, theta), W(L, v), B(L, v), N, &g, ws->scratch);
            break;
        }
        case MT_LAYER_BN:
            mt_bn_rforward(rout, ws->stats[l] + 2 * L->out_c, in, rin, ws->stats[l], W(L, theta), W(L, v), B(L, v),
                           L->out_c, N * L->out_h * L->out_w);
            break;
        case MT_LAYER_POOL:
            assert(rin);
            mt_maxpool_rforward(rout, rin, ws->argmax[l], L->in_c * N, L->in_h, L->in_w);
            break;
        case MT_LAYER_FLATTEN: assert(rin); mt_flatten_forward(rout, rin, N, L->in_c, L->in_h * L->in_w); break;
        }
    }
}

void mt_model_rbackward(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                        const float *v, int N, float *hv)
{
    int last = m->n_layers - 1;
    if (m->loss == MT_LOSS_XENT) mt_xent_rbackward(ws->rdy[last], ws->probs, ws->ry[last], N, m->out);
    else mt_mse_rbackward(ws->rdy[last], ws->ry[last], N, m->out);
    for (int l = last; l >= 0; l--) {
        const mt_layer *L = &m->layer[l];
        const float *in = l > 0 ? ws->y[l - 1] : x;
        const float *rin = l > 0 ? ws->ry[l - 1] : NULL;
        float *rdin = l > 0 ? ws->rdy[l - 1] : NULL;
        const float *dout = ws->dy[l], *rdout = ws->rdy[l];
        switch (L->kind) {
        case MT_LAYER_LINEAR:
            mt_linear_rbackward(rdin, Wm(L, hv), Bm(L, hv), dout, rdout, in, rin, W(L, theta), W(L, v), N, L->in,
                                L->out);
            break;
        case MT_LAYER_RELU: assert(rdin); mt_relu_rbackward(rdin, rdout, in, N * L->out); break;
        case MT_LAYER_CONV: {
            const mt_conv_geom g = conv_geom(L);
            mt_conv_rbackward(rdin, Wm(L, hv), Bm(L, hv), dout, rdout, in, rin, W(L, theta), W(L, v), N, &g,
                              ws->scratch);
            break;
        }
        case MT_LAYER_BN:
            assert(rdin);
            mt_bn_rbackward(rdin, Wm(L, hv), Bm(L, hv), dout, rdout, in, rin, ws->stats[l], ws->stats[l] + 2 * L->out_c,
                            W(L, theta), W(L, v), L->out_c, N * L->out_h * L->out_w);
            break;
        case MT_LAYER_POOL:
            assert(rdin);
            mt_maxpool_rbackward(rdin, rdout, ws->argmax[l], L->in_c * N, L->in_h, L->in_w);
            break;
        case MT_LAYER_FLATTEN: assert(rdin); mt_flatten_backward(rdin, rdout, N, L->in_c, L->in_h * L->in_w); break;
        }
    }
}

float mt_model_loss_grad(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                         const float *y, int N, float *grad)
{
    float loss = mt_model_forward(m, ws, theta, x, y, N);
    mt_model_backward(m, ws, theta, x, y, N, grad);
    return loss;
}

float mt_model_hvp(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                   const float *y, int N, const float *v, float *hv)
{
    float loss = mt_model_forward(m, ws, theta, x, y, N);
    /* The R-backward pass reads dL/d(outputs) of every layer, not the parameter gradient. */
    mt_model_backward(m, ws, theta, x, y, N, NULL);
    mt_model_rforward(m, ws, theta, x, v, N);
    mt_model_rbackward(m, ws, theta, x, v, N, hv);
    return loss;
}

const float *mt_model_output(const mt_model *m, const mt_workspace *ws)
{
    return ws->y[m->n_layers - 1];
}

int mt_model_correct(const mt_model *m, const mt_workspace *ws, const float *y, int N)
{
    if (m->loss != MT_LOSS_XENT) return 0;
    return mt_xent_correct(mt_model_output(m, ws), y, N, m->out);
}
