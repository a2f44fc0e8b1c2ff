/* model.c — the flat-θ model: layout, initialisation and the four passes over its layers
 * (see model.h). Each pass is one loop over the layer table dispatching to layers.c. */
#include "model.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "layers.h"
#include "rng.h"

struct mt_workspace {
    int max_rows;
    float *slab;                /* one allocation holding all the arrays below */
    float *y[MT_MAX_LAYERS];    /* layer outputs        [N, out_l] */
    float *dy[MT_MAX_LAYERS];   /* dL/d(outputs)        [N, out_l] */
    float *ry[MT_MAX_LAYERS];   /* R(outputs)           [N, out_l] */
    float *rdy[MT_MAX_LAYERS];  /* R(dL/d(outputs))     [N, out_l] */
};

static void add_layer(mt_model *m, const char *name, mt_layer_kind kind, int in, int out)
{
    assert(m->n_layers < MT_MAX_LAYERS);
    mt_layer *l = &m->layer[m->n_layers++];
    snprintf(l->name, sizeof l->name, "%s", name);
    l->kind = kind;
    l->in = in;
    l->out = out;
    l->offset = m->n_params;
    l->n_params = kind == MT_LAYER_LINEAR ? (size_t)out * in + out : 0;
    m->n_params += l->n_params;
}

int mt_model_mlp(mt_model *m, int in, int hidden, int out)
{
    if (in <= 0 || hidden <= 0 || out <= 0) return -1;
    memset(m, 0, sizeof *m);
    snprintf(m->arch, sizeof m->arch, "mlp");
    m->in = in;
    m->out = out;
    add_layer(m, "fc1", MT_LAYER_LINEAR, in, hidden);
    add_layer(m, "relu1", MT_LAYER_RELU, hidden, hidden);
    add_layer(m, "fc2", MT_LAYER_LINEAR, hidden, hidden);
    add_layer(m, "relu2", MT_LAYER_RELU, hidden, hidden);
    add_layer(m, "head", MT_LAYER_LINEAR, hidden, out);
    return 0;
}

void mt_model_init_params(const mt_model *m, float *theta, uint64_t seed)
{
    mt_rng r;
    mt_rng_init(&r, seed, MT_STREAM_INIT, 0, 0);
    for (int l = 0; l < m->n_layers; l++) {
        const mt_layer *L = &m->layer[l];
        if (L->kind != MT_LAYER_LINEAR) continue;
        float bound = 1.0f / sqrtf((float)L->in);
        for (size_t i = 0; i < L->n_params; i++) theta[L->offset + i] = mt_rng_uniform(&r, -bound, bound);
    }
}

int mt_model_tensor_count(const mt_model *m)
{
    int n = 0;
    for (int l = 0; l < m->n_layers; l++)
        if (m->layer[l].kind == MT_LAYER_LINEAR) n += 2;
    return n;
}

void mt_model_tensor(const mt_model *m, int i, mt_tensor_info *out)
{
    memset(out, 0, sizeof *out);
    for (int l = 0; l < m->n_layers; l++) {
        const mt_layer *L = &m->layer[l];
        if (L->kind != MT_LAYER_LINEAR) continue;
        if (i >= 2) {
            i -= 2;
            continue;
        }
        out->kind = "linear";
        if (i == 0) {
            snprintf(out->name, sizeof out->name, "%s.weight", L->name);
            out->offset = L->offset;
            out->size = (size_t)L->out * L->in;
            out->ndim = 2;
            out->shape[0] = L->out;
            out->shape[1] = L->in;
        } else {
            snprintf(out->name, sizeof out->name, "%s.bias", L->name);
            out->offset = L->offset + (size_t)L->out * L->in;
            out->size = (size_t)L->out;
            out->ndim = 1;
            out->shape[0] = L->out;
        }
        return;
    }
    assert(!"tensor index out of range");
}

const mt_layer *mt_model_find_layer(const mt_model *m, const char *name)
{
    for (int l = 0; l < m->n_layers; l++)
        if (strcmp(m->layer[l].name, name) == 0) return &m->layer[l];
    return NULL;
}

mt_workspace *mt_workspace_init(const mt_model *m, int max_rows)
{
    assert(max_rows > 0);
    mt_workspace *ws = mt_calloc(1, sizeof *ws);
    ws->max_rows = max_rows;
    size_t total = 0;
    for (int l = 0; l < m->n_layers; l++) total += 4 * (size_t)max_rows * m->layer[l].out;
    ws->slab = mt_calloc(total, sizeof(float));
    float *p = ws->slab;
    for (int l = 0; l < m->n_layers; l++) {
        size_t n = (size_t)max_rows * m->layer[l].out;
        ws->y[l] = p, p += n;
        ws->dy[l] = p, p += n;
        ws->ry[l] = p, p += n;
        ws->rdy[l] = p, p += n;
    }
    return ws;
}

void mt_workspace_free(mt_workspace *ws)
{
    if (!ws) return;
    free(ws->slab);
    free(ws);
}

/* Weight and bias of a linear layer inside a parameter-shaped vector. */
static inline const float *W(const mt_layer *L, const float *vec) { return vec + L->offset; }
static inline const float *B(const mt_layer *L, const float *vec)
{
    return vec + L->offset + (size_t)L->out * L->in;
}
static inline float *Wm(const mt_layer *L, float *vec) { return vec + L->offset; }
static inline float *Bm(const mt_layer *L, float *vec) { return vec + L->offset + (size_t)L->out * L->in; }

float mt_model_forward(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                       const float *y, int N)
{
    assert(N > 0 && N <= ws->max_rows);
    const float *in = x;
    for (int l = 0; l < m->n_layers; l++) {
        const mt_layer *L = &m->layer[l];
        switch (L->kind) {
        case MT_LAYER_LINEAR: mt_linear_forward(ws->y[l], in, W(L, theta), B(L, theta), N, L->in, L->out); break;
        case MT_LAYER_RELU: mt_relu_forward(ws->y[l], in, N * L->out); break;
        }
        in = ws->y[l];
    }
    return mt_mse_forward(in, y, N, m->out);
}

void mt_model_backward(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                       const float *y, int N, float *grad)
{
    int last = m->n_layers - 1;
    mt_mse_backward(ws->dy[last], ws->y[last], y, N, m->out);
    for (int l = last; l >= 0; l--) {
        const mt_layer *L = &m->layer[l];
        const float *in = l > 0 ? ws->y[l - 1] : x;
        float *din = l > 0 ? ws->dy[l - 1] : NULL; /* dL/dx of the data is never needed */
        switch (L->kind) {
        case MT_LAYER_LINEAR:
            mt_linear_backward(din, grad ? Wm(L, grad) : NULL, grad ? Bm(L, grad) : NULL, ws->dy[l], in,
                               W(L, theta), N, L->in, L->out);
            break;
        case MT_LAYER_RELU:
            assert(din);
            mt_relu_backward(din, ws->dy[l], in, N * L->out);
            break;
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
        switch (L->kind) {
        case MT_LAYER_LINEAR:
            mt_linear_rforward(ws->ry[l], in, rin, W(L, theta), W(L, v), B(L, v), N, L->in, L->out);
            break;
        case MT_LAYER_RELU:
            assert(rin);
            mt_relu_rforward(ws->ry[l], rin, in, N * L->out);
            break;
        }
    }
}

void mt_model_rbackward(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                        const float *v, int N, float *hv)
{
    int last = m->n_layers - 1;
    mt_mse_rbackward(ws->rdy[last], ws->ry[last], N, m->out);
    for (int l = last; l >= 0; l--) {
        const mt_layer *L = &m->layer[l];
        const float *in = l > 0 ? ws->y[l - 1] : x;
        const float *rin = l > 0 ? ws->ry[l - 1] : NULL;
        float *rdin = l > 0 ? ws->rdy[l - 1] : NULL;
        switch (L->kind) {
        case MT_LAYER_LINEAR:
            mt_linear_rbackward(rdin, Wm(L, hv), Bm(L, hv), ws->dy[l], ws->rdy[l], in, rin, W(L, theta),
                                W(L, v), N, L->in, L->out);
            break;
        case MT_LAYER_RELU:
            assert(rdin);
            mt_relu_rbackward(rdin, ws->rdy[l], in, N * L->out);
            break;
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
