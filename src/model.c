/* model.c — the op graph (see model.h): building the models, the parameter layout, the
 * initialisation, the workspace, and the four passes. Each op kind has its four passes side
 * by side in one table (`op_table`), thin adapters over the kernels of layers.c (linear,
 * ReLU, leaky ReLU, MSE) and conv.c (conv, batchnorm, pools, flatten, cross-entropy); each
 * pass over the model is one loop over the ops through that table. */
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
    mt_ws_passes passes;
    size_t bytes;
    float *slab;                  /* one allocation holding the float arrays below */
    int32_t *islab;               /* and one holding the max-pool argmaxes */
    float *y[MT_MAX_OPS];         /* node outputs        [N, out] (CNHW for image-shaped nodes) */
    float *dy[MT_MAX_OPS];        /* dL/d(outputs)       (MT_WS_GRAD and up) */
    float *ry[MT_MAX_OPS];        /* R(outputs)          (MT_WS_HVP) */
    float *rdy[MT_MAX_OPS];       /* R(dL/d(outputs))    (MT_WS_HVP) */
    float *stats[MT_MAX_OPS];     /* batchnorm: μ, s [2C]; R(μ), R(s) [2C] follow (MT_WS_HVP) */
    int32_t *argmax[MT_MAX_OPS];  /* max-pool: chosen input per output [N, out] */
    float *probs;                 /* cross-entropy: softmax of the logits [N, out] */
    float *scratch;               /* conv im2col columns, shared by the conv ops */
    float *tmp;                   /* a gradient headed for a node that already holds one */
    unsigned char got[MT_MAX_OPS]; /* during a backward pass: node i holds a gradient */
    unsigned char rzero[MT_MAX_OPS]; /* after an R-forward pass: node i's R-value is zero and
                                      * was not formed (its ry array is stale) */
};

/* ---- one op's passes ---------------------------------------------------------------- */

/* What one pass of one op reads and writes. Inputs are the nodes the op reads (x[1] only for
 * add); NULL R-inputs are the data, which does not move with θ; NULL gradient outputs are not
 * needed. acc[s] tells an op that accumulates (add) that dx[s] already holds a gradient. */
typedef struct {
    int N;
    const float *x[2], *rx[2];
    float *dx[2], *rdx[2];
    int acc[2];
    float *y, *ry;              /* the op's output and its R-value */
    const float *dy, *rdy;      /* their gradients */
    const float *theta, *v;     /* parameters and the R-direction, θ-shaped */
    float *g;                   /* θ-shaped gradient or HVP out (NULL: not needed) */
    float *stats;
    int32_t *argmax;
    float *scratch;
} op_io;

/* An op's weight and bias inside a θ-shaped vector (NULL vector: NULL). The bias is the last
 * out_c values of the block: a linear or conv bias, or batchnorm's β. */
static const float *Wc(const mt_op *o, const float *vec) { return vec ? vec + o->offset : NULL; }
static float *Wm(const mt_op *o, float *vec) { return vec ? vec + o->offset : NULL; }
static int has_beta(const mt_op *o) { return o->has_bias || o->kind == MT_OP_BN; }
static const float *Bc(const mt_op *o, const float *vec)
{
    return vec && has_beta(o) ? vec + o->offset + o->n_params - (size_t)o->out_c : NULL;
}
static float *Bm(const mt_op *o, float *vec)
{
    return vec && has_beta(o) ? vec + o->offset + o->n_params - (size_t)o->out_c : NULL;
}

static int spatial(const mt_op *o, int N) { return N * o->out_h * o->out_w; } /* batchnorm's M */

static void linear_fwd(const mt_op *o, const op_io *a)
{
    mt_linear_forward(a->y, a->x[0], Wc(o, a->theta), Bc(o, a->theta), a->N, o->in, o->out);
}
static void linear_bwd(const mt_op *o, const op_io *a)
{
    mt_linear_backward(a->dx[0], Wm(o, a->g), Bm(o, a->g), a->dy, a->x[0], Wc(o, a->theta), a->N, o->in, o->out);
}
static void linear_rfwd(const mt_op *o, const op_io *a)
{
    mt_linear_rforward(a->ry, a->x[0], a->rx[0], Wc(o, a->theta), Wc(o, a->v), Bc(o, a->v), a->N, o->in, o->out);
}
static void linear_rbwd(const mt_op *o, const op_io *a)
{
    mt_linear_rbackward(a->rdx[0], Wm(o, a->g), Bm(o, a->g), a->dy, a->rdy, a->x[0], a->rx[0], Wc(o, a->theta),
                        Wc(o, a->v), a->N, o->in, o->out);
}

static void conv_fwd(const mt_op *o, const op_io *a)
{
    mt_conv_forward(a->y, a->x[0], Wc(o, a->theta), Bc(o, a->theta), a->N, &o->conv, a->scratch);
}
static void conv_bwd(const mt_op *o, const op_io *a)
{
    if (a->g || a->dx[0])
        mt_conv_backward(a->dx[0], Wm(o, a->g), Bm(o, a->g), a->dy, a->x[0], Wc(o, a->theta), a->N, &o->conv,
                         a->scratch);
}
static void conv_rfwd(const mt_op *o, const op_io *a)
{
    mt_conv_rforward(a->ry, a->x[0], a->rx[0], Wc(o, a->theta), Wc(o, a->v), Bc(o, a->v), a->N, &o->conv, a->scratch);
}
static void conv_rbwd(const mt_op *o, const op_io *a)
{
    mt_conv_rbackward(a->rdx[0], Wm(o, a->g), Bm(o, a->g), a->dy, a->rdy, a->x[0], a->rx[0], Wc(o, a->theta),
                      Wc(o, a->v), a->N, &o->conv, a->scratch);
}

/* A batchnorm that heads a fused batchnorm → relu → max-pool runs all three; its io is the
 * pool's (op_args) and scratch holds one channel (mt_bn_relu_pool_*). */
static void bn_fwd(const mt_op *o, const op_io *a)
{
    if (o->fused) {
        mt_bn_relu_pool_forward(a->y, a->argmax, a->stats, a->x[0], Wc(o, a->theta), Bc(o, a->theta), o->out_c,
                                a->N, o->out_h, o->out_w, a->scratch);
        return;
    }
    mt_bn_forward(a->y, a->stats, a->x[0], Wc(o, a->theta), Bc(o, a->theta), o->out_c, spatial(o, a->N));
}
static void bn_bwd(const mt_op *o, const op_io *a)
{
    if (o->fused) {
        mt_bn_relu_pool_backward(a->dx[0], Wm(o, a->g), Bm(o, a->g), a->dy, a->y, a->argmax, a->x[0], a->stats,
                                 Wc(o, a->theta), o->out_c, a->N, o->out_h, o->out_w, a->scratch);
        return;
    }
    mt_bn_backward(a->dx[0], Wm(o, a->g), Bm(o, a->g), a->dy, a->x[0], a->stats, Wc(o, a->theta), o->out_c,
                   spatial(o, a->N));
}
static void bn_rfwd(const mt_op *o, const op_io *a)
{
    if (o->fused) {
        mt_bn_relu_pool_rforward(a->ry, a->stats + 2 * o->out_c, a->x[0], a->rx[0], a->y, a->argmax, a->stats,
                                 Wc(o, a->theta), Wc(o, a->v), Bc(o, a->v), o->out_c, a->N, o->out_h, o->out_w,
                                 a->scratch);
        return;
    }
    mt_bn_rforward(a->ry, a->stats + 2 * o->out_c, a->x[0], a->rx[0], a->stats, Wc(o, a->theta), Wc(o, a->v),
                   Bc(o, a->v), o->out_c, spatial(o, a->N));
}
static void bn_rbwd(const mt_op *o, const op_io *a)
{
    if (o->fused) {
        mt_bn_relu_pool_rbackward(a->rdx[0], Wm(o, a->g), Bm(o, a->g), a->dy, a->rdy, a->y, a->argmax, a->x[0],
                                  a->rx[0], a->stats, a->stats + 2 * o->out_c, Wc(o, a->theta), Wc(o, a->v),
                                  o->out_c, a->N, o->out_h, o->out_w, a->scratch);
        return;
    }
    mt_bn_rbackward(a->rdx[0], Wm(o, a->g), Bm(o, a->g), a->dy, a->rdy, a->x[0], a->rx[0], a->stats,
                    a->stats + 2 * o->out_c, Wc(o, a->theta), Wc(o, a->v), o->out_c, spatial(o, a->N));
}

/* The parameter-free ops below never read the model input directly in the models built
 * here (a conv or linear op comes first), so their R-inputs are never the data's NULL. */
/* A fused relu does nothing: the max-pool after it (or the batchnorm before it) does its work
 * (mt_op.fused). */
static void relu_fwd(const mt_op *o, const op_io *a)
{
    if (!o->fused) mt_relu_forward(a->y, a->x[0], a->N * o->out);
}
static void relu_bwd(const mt_op *o, const op_io *a)
{
    if (a->dx[0] && !o->fused) mt_relu_backward(a->dx[0], a->dy, a->x[0], a->N * o->out);
}
static void relu_rfwd(const mt_op *o, const op_io *a)
{
    if (!o->fused) mt_relu_rforward(a->ry, a->rx[0], a->x[0], a->N * o->out);
}
static void relu_rbwd(const mt_op *o, const op_io *a)
{
    if (a->rdx[0] && !o->fused) mt_relu_rbackward(a->rdx[0], a->rdy, a->x[0], a->N * o->out);
}

static void leaky_fwd(const mt_op *o, const op_io *a) { mt_leaky_relu_forward(a->y, a->x[0], a->N * o->out, o->slope); }
static void leaky_bwd(const mt_op *o, const op_io *a)
{
    if (a->dx[0]) mt_leaky_relu_backward(a->dx[0], a->dy, a->x[0], a->N * o->out, o->slope);
}
static void leaky_rfwd(const mt_op *o, const op_io *a)
{
    mt_leaky_relu_rforward(a->ry, a->rx[0], a->x[0], a->N * o->out, o->slope);
}
static void leaky_rbwd(const mt_op *o, const op_io *a)
{
    if (a->rdx[0]) mt_leaky_relu_rbackward(a->rdx[0], a->rdy, a->x[0], a->N * o->out, o->slope);
}

/* max-pool is piecewise linear: its R-passes are its own maps along the argmax. A pool fused
 * with a relu reads the relu's input (the relu's arrays are its input's) and applies the relu
 * too; one fused behind a batchnorm does nothing (the batchnorm op runs it). */
static void pool_fwd(const mt_op *o, const op_io *a)
{
    const int P = o->in_c * a->N;
    if (o->fused == MT_FUSED_BN_RELU_POOL) return;
    if (o->fused) mt_maxpool_relu_forward(a->y, a->argmax, a->x[0], P, o->in_h, o->in_w);
    else mt_maxpool_forward(a->y, a->argmax, a->x[0], P, o->in_h, o->in_w);
}
static void pool_bwd(const mt_op *o, const op_io *a)
{
    const int P = o->in_c * a->N;
    if (!a->dx[0] || o->fused == MT_FUSED_BN_RELU_POOL) return;
    if (o->fused) mt_maxpool_relu_backward(a->dx[0], a->dy, a->y, a->argmax, P, o->in_h, o->in_w);
    else mt_maxpool_backward(a->dx[0], a->dy, a->argmax, P, o->in_h, o->in_w);
}
static void pool_rfwd(const mt_op *o, const op_io *a)
{
    const int P = o->in_c * a->N;
    if (o->fused == MT_FUSED_BN_RELU_POOL) return;
    if (o->fused) mt_maxpool_relu_rforward(a->ry, a->rx[0], a->y, a->argmax, P, o->in_h, o->in_w);
    else mt_maxpool_rforward(a->ry, a->rx[0], a->argmax, P, o->in_h, o->in_w);
}
static void pool_rbwd(const mt_op *o, const op_io *a)
{
    const int P = o->in_c * a->N;
    if (!a->rdx[0] || o->fused == MT_FUSED_BN_RELU_POOL) return;
    if (o->fused) mt_maxpool_relu_backward(a->rdx[0], a->rdy, a->y, a->argmax, P, o->in_h, o->in_w);
    else mt_maxpool_rbackward(a->rdx[0], a->rdy, a->argmax, P, o->in_h, o->in_w);
}

/* global average pool and flatten are linear: R-forward is forward on R-inputs, and
 * R-backward is backward on R-gradients */
static void gap_fwd(const mt_op *o, const op_io *a) { mt_gap_forward(a->y, a->x[0], a->N, o->in_c, o->in_h * o->in_w); }
static void gap_bwd(const mt_op *o, const op_io *a)
{
    if (a->dx[0]) mt_gap_backward(a->dx[0], a->dy, a->N, o->in_c, o->in_h * o->in_w);
}
static void gap_rfwd(const mt_op *o, const op_io *a) { mt_gap_forward(a->ry, a->rx[0], a->N, o->in_c, o->in_h * o->in_w); }
static void gap_rbwd(const mt_op *o, const op_io *a)
{
    if (a->rdx[0]) mt_gap_backward(a->rdx[0], a->rdy, a->N, o->in_c, o->in_h * o->in_w);
}

static void flatten_fwd(const mt_op *o, const op_io *a)
{
    mt_flatten_forward(a->y, a->x[0], a->N, o->in_c, o->in_h * o->in_w);
}
static void flatten_bwd(const mt_op *o, const op_io *a)
{
    if (a->dx[0]) mt_flatten_backward(a->dx[0], a->dy, a->N, o->in_c, o->in_h * o->in_w);
}
static void flatten_rfwd(const mt_op *o, const op_io *a)
{
    mt_flatten_forward(a->ry, a->rx[0], a->N, o->in_c, o->in_h * o->in_w);
}
static void flatten_rbwd(const mt_op *o, const op_io *a)
{
    if (a->rdx[0]) mt_flatten_backward(a->rdx[0], a->rdy, a->N, o->in_c, o->in_h * o->in_w);
}

/* y = x0 + x1: linear, so the R-passes are the same maps; the gradient goes to both inputs,
 * added to what a node already holds (acc) instead of through the loop's tmp buffer. */
static void sum2(float *y, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
static void put(float *dst, const float *src, size_t n, int acc)
{
    if (!acc) {
        memcpy(dst, src, n * sizeof *dst);
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}
static void add_fwd(const mt_op *o, const op_io *a) { sum2(a->y, a->x[0], a->x[1], (size_t)a->N * o->out); }
static void add_bwd(const mt_op *o, const op_io *a)
{
    for (int s = 0; s < 2; s++)
        if (a->dx[s]) put(a->dx[s], a->dy, (size_t)a->N * o->out, a->acc[s]);
}
static void add_rfwd(const mt_op *o, const op_io *a)
{
    const size_t n = (size_t)a->N * o->out;
    if (a->rx[0] && a->rx[1]) sum2(a->ry, a->rx[0], a->rx[1], n);
    else memcpy(a->ry, a->rx[0] ? a->rx[0] : a->rx[1], n * sizeof *a->ry); /* one R-input is zero */
}
static void add_rbwd(const mt_op *o, const op_io *a)
{
    for (int s = 0; s < 2; s++)
        if (a->rdx[s]) put(a->rdx[s], a->rdy, (size_t)a->N * o->out, a->acc[s]);
}

typedef void (*op_pass)(const mt_op *, const op_io *);

static const struct {
    const char *kind;   /* the checkpoint's name for the kind of an op with parameters */
    int n_src;          /* nodes read */
    int accumulates;    /* its backward passes add into dx when acc says so */
    op_pass forward, backward, rforward, rbackward;
} op_table[] = {
    [MT_OP_LINEAR] = {"linear", 1, 0, linear_fwd, linear_bwd, linear_rfwd, linear_rbwd},
    [MT_OP_CONV] = {"conv2d", 1, 0, conv_fwd, conv_bwd, conv_rfwd, conv_rbwd},
    [MT_OP_BN] = {"batchnorm", 1, 0, bn_fwd, bn_bwd, bn_rfwd, bn_rbwd},
    [MT_OP_RELU] = {"relu", 1, 0, relu_fwd, relu_bwd, relu_rfwd, relu_rbwd},
    [MT_OP_LEAKY] = {"leaky_relu", 1, 0, leaky_fwd, leaky_bwd, leaky_rfwd, leaky_rbwd},
    [MT_OP_POOL] = {"maxpool", 1, 0, pool_fwd, pool_bwd, pool_rfwd, pool_rbwd},
    [MT_OP_GAP] = {"avgpool", 1, 0, gap_fwd, gap_bwd, gap_rfwd, gap_rbwd},
    [MT_OP_FLATTEN] = {"flatten", 1, 0, flatten_fwd, flatten_bwd, flatten_rfwd, flatten_rbwd},
    [MT_OP_ADD] = {"add", 2, 1, add_fwd, add_bwd, add_rfwd, add_rbwd},
};

/* ---- building ------------------------------------------------------------------------ */

/* Appends op `name` reading node src (and src2 for add) with the output shape of its input;
 * the caller adjusts the output shape and then calls finish_op. Returns the op. */
static mt_op *add_op(mt_model *m, const char *name, mt_op_kind kind, int src, int src2)
{
    assert(m->n_ops < MT_MAX_OPS && src >= -1 && src < m->n_ops && src2 >= -1 && src2 < m->n_ops);
    mt_op *o = &m->op[m->n_ops++];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->kind = kind;
    o->src[0] = src, o->src[1] = src2;
    if (src >= 0) {
        const mt_op *p = &m->op[src];
        o->in_c = p->out_c, o->in_h = p->out_h, o->in_w = p->out_w;
    } else {
        o->in_c = m->in_c, o->in_h = m->in_h, o->in_w = m->in_w;
    }
    o->out_c = o->in_c, o->out_h = o->in_h, o->out_w = o->in_w;
    return o;
}

/* Fixes the op's sizes and its block of θ; returns its node index. */
static int finish_op(mt_model *m, mt_op *o, size_t n_params)
{
    o->in = o->in_c * o->in_h * o->in_w;
    o->out = o->out_c * o->out_h * o->out_w;
    o->offset = m->n_params;
    o->n_params = n_params;
    m->n_params += n_params;
    return (int)(o - m->op);
}

static int op_linear(mt_model *m, const char *name, int src, int out)
{
    mt_op *o = add_op(m, name, MT_OP_LINEAR, src, -1);
    const int in = o->in_c * o->in_h * o->in_w;
    o->in_c = in, o->in_h = o->in_w = 1;
    o->out_c = out, o->out_h = o->out_w = 1;
    o->has_bias = 1;
    return finish_op(m, o, (size_t)out * in + out);
}

static int op_conv(mt_model *m, const char *name, int src, int F, int k, int stride, int pad, int bias)
{
    mt_op *o = add_op(m, name, MT_OP_CONV, src, -1);
    int ok = mt_conv_geom_init(&o->conv, o->in_c, o->in_h, o->in_w, F, k, stride, pad) == 0;
    assert(ok && "the builders check image sizes first");
    (void)ok;
    o->out_c = F, o->out_h = o->conv.Ho, o->out_w = o->conv.Wo;
    o->has_bias = bias;
    return finish_op(m, o, (size_t)F * o->in_c * k * k + (bias ? (size_t)F : 0));
}

static int op_bn(mt_model *m, const char *name, int src)
{
    mt_op *o = add_op(m, name, MT_OP_BN, src, -1);
    return finish_op(m, o, 2 * (size_t)o->out_c);
}

static int op_simple(mt_model *m, const char *name, mt_op_kind kind, int src)
{
    mt_op *o = add_op(m, name, kind, src, -1);
    if (kind == MT_OP_POOL) o->out_h = o->in_h / 2, o->out_w = o->in_w / 2;
    if (kind == MT_OP_GAP) o->out_h = o->out_w = 1;
    if (kind == MT_OP_FLATTEN) o->out_c = o->in_c * o->in_h * o->in_w, o->out_h = o->out_w = 1;
    return finish_op(m, o, 0);
}

static int op_leaky(mt_model *m, const char *name, int src, float slope)
{
    mt_op *o = add_op(m, name, MT_OP_LEAKY, src, -1);
    o->slope = slope;
    return finish_op(m, o, 0);
}

static int op_add(mt_model *m, const char *name, int a, int b)
{
    assert(a != b && a >= 0 && b >= 0);
    assert(m->op[a].out_c == m->op[b].out_c && m->op[a].out_h == m->op[b].out_h && m->op[a].out_w == m->op[b].out_w);
    return finish_op(m, add_op(m, name, MT_OP_ADD, a, b), 0);
}

static void model_begin(mt_model *m, const char *arch, mt_loss_kind loss, int C, int H, int W)
{
    memset(m, 0, sizeof *m);
    snprintf(m->arch, sizeof m->arch, "%s", arch);
    m->loss = loss;
    m->in_c = C, m->in_h = H, m->in_w = W;
    m->in = C * H * W;
}

/* Number of ops reading node j. */
static int readers(const mt_model *m, int j)
{
    int n = 0;
    for (int i = 0; i < m->n_ops; i++)
        for (int s = 0; s < op_table[m->op[i].kind].n_src; s++) n += m->op[i].src[s] == j;
    return n;
}

/* A relu whose input no other op reads (it runs in place) and whose only reader is the next
 * op, a max-pool: the pool applies it; and if that input is a batchnorm's, the batchnorm runs
 * all three (see mt_op.fused). */
static void fuse_relu_pool(mt_model *m)
{
    for (int r = 1; r + 1 < m->n_ops; r++) {
        mt_op *b = &m->op[r - 1], *o = &m->op[r], *p = &m->op[r + 1];
        if (o->kind == MT_OP_RELU && o->src[0] == r - 1 && readers(m, r - 1) == 1 && readers(m, r) == 1 &&
            p->kind == MT_OP_POOL && p->src[0] == r) {
            o->fused = p->fused = b->kind == MT_OP_BN ? MT_FUSED_BN_RELU_POOL : MT_FUSED_RELU_POOL;
            if (b->kind == MT_OP_BN) b->fused = MT_FUSED_BN_RELU_POOL;
        }
    }
}

static void model_end(mt_model *m)
{
    m->out = m->op[m->n_ops - 1].out;
    fuse_relu_pool(m);
}

int mt_model_mlp(mt_model *m, int in, int hidden, int out)
{
    if (in <= 0 || hidden <= 0 || out <= 0) return -1;
    model_begin(m, "mlp", MT_LOSS_MSE, in, 1, 1);
    int x = op_linear(m, "fc1", -1, hidden);
    x = op_simple(m, "relu1", MT_OP_RELU, x);
    x = op_linear(m, "fc2", x, hidden);
    x = op_simple(m, "relu2", MT_OP_RELU, x);
    op_linear(m, "head", x, out);
    model_end(m);
    return 0;
}

int mt_model_conv4(mt_model *m, int C, int H, int W, int filters, int ways)
{
    if (C <= 0 || H < 16 || W < 16 || filters <= 0 || ways <= 0) return -1;
    model_begin(m, "conv4", MT_LOSS_XENT, C, H, W);
    int x = -1;
    for (int b = 1; b <= 4; b++) {
        char name[MT_OP_NAME_LEN];
        snprintf(name, sizeof name, "conv%d", b);
        x = op_conv(m, name, x, filters, 3, 1, 1, 1);
        snprintf(name, sizeof name, "bn%d", b);
        x = op_bn(m, name, x);
        snprintf(name, sizeof name, "relu%d", b);
        x = op_simple(m, name, MT_OP_RELU, x);
        snprintf(name, sizeof name, "pool%d", b);
        x = op_simple(m, name, MT_OP_POOL, x);
    }
    x = op_simple(m, "flatten", MT_OP_FLATTEN, x);
    op_linear(m, "head", x, ways);
    model_end(m);
    return 0;
}

#define RESNET_SLOPE 0.1f /* leaky ReLU slope of ResNet-12 (Lee et al. 2019) */

int mt_model_resnet12(mt_model *m, int C, int H, int W, const int widths[4], int ways)
{
    if (C <= 0 || H < 16 || W < 16 || ways <= 0) return -1;
    for (int s = 0; s < 4; s++)
        if (widths[s] <= 0) return -1;
    model_begin(m, "resnet12", MT_LOSS_XENT, C, H, W);
    int x = -1;
    for (int s = 1; s <= 4; s++) {
        const int w = widths[s - 1], in = x;
        char name[MT_OP_NAME_LEN];
#define NAME(fmt) (snprintf(name, sizeof name, "stage%d." fmt, s), name)
        x = op_conv(m, NAME("conv1"), in, w, 3, 1, 1, 0);
        x = op_bn(m, NAME("bn1"), x);
        x = op_leaky(m, NAME("leaky1"), x, RESNET_SLOPE);
        x = op_conv(m, NAME("conv2"), x, w, 3, 1, 1, 0);
        x = op_bn(m, NAME("bn2"), x);
        x = op_leaky(m, NAME("leaky2"), x, RESNET_SLOPE);
        x = op_conv(m, NAME("conv3"), x, w, 3, 1, 1, 0);
        x = op_bn(m, NAME("bn3"), x);
        int sc = op_conv(m, NAME("shortcut"), in, w, 1, 1, 0, 0);
        sc = op_bn(m, NAME("shortcut_bn"), sc);
        x = op_add(m, NAME("add"), x, sc);
        x = op_leaky(m, NAME("leaky3"), x, RESNET_SLOPE);
        x = op_simple(m, NAME("pool"), MT_OP_POOL, x);
#undef NAME
    }
    x = op_simple(m, "gap", MT_OP_GAP, x);
    op_linear(m, "head", x, ways);
    model_end(m);
    return 0;
}

void mt_model_init_params(const mt_model *m, float *theta, uint64_t seed)
{
    mt_rng r;
    mt_rng_init(&r, seed, MT_STREAM_INIT, 0, 0);
    for (int i = 0; i < m->n_ops; i++) {
        const mt_op *o = &m->op[i];
        float *p = theta + o->offset;
        if (o->kind == MT_OP_LINEAR || o->kind == MT_OP_CONV) {
            const int fan_in = o->kind == MT_OP_LINEAR ? o->in : o->in_c * o->conv.k * o->conv.k;
            const float bound = 1.0f / sqrtf((float)fan_in);
            for (size_t j = 0; j < o->n_params; j++) p[j] = mt_rng_uniform(&r, -bound, bound);
        } else if (o->kind == MT_OP_BN) {
            for (int c = 0; c < o->out_c; c++) p[c] = 1.0f, p[o->out_c + c] = 0.0f;
        }
    }
}

void mt_model_learn_rates(mt_model *m)
{
    assert(m->n_rates == 0);
    m->rate_steps = 0;
    m->n_rates = m->n_params;
    m->n_params *= 2;
}

/* Tensors of the ops alone (the learned rates, if any, repeat them). */
static int op_tensor_count(const mt_model *m)
{
    int n = 0;
    for (int i = 0; i < m->n_ops; i++)
        if (m->op[i].n_params > 0) n += 1 + has_beta(&m->op[i]);
    return n;
}

void mt_model_learn_step_rates(mt_model *m, int K)
{
    assert(m->n_rates == 0 && K >= 1);
    m->rate_steps = K;
    m->n_rates = (size_t)K * (size_t)op_tensor_count(m);
    m->n_params += m->n_rates;
}

int mt_model_tensor_count(const mt_model *m)
{
    if (m->rate_steps) return op_tensor_count(m) + 1;
    return op_tensor_count(m) * (m->n_rates ? 2 : 1);
}

void mt_model_tensor(const mt_model *m, int i, mt_tensor_info *out)
{
    const int n_ops = op_tensor_count(m);
    if (m->rate_steps && i == n_ops) { /* LSLR: one tensor [K, tensors] */
        memset(out, 0, sizeof *out);
        snprintf(out->name, sizeof out->name, "lslr");
        out->kind = "lr";
        out->offset = m->n_params - m->n_rates;
        out->size = m->n_rates;
        out->ndim = 2, out->shape[0] = m->rate_steps, out->shape[1] = n_ops;
        return;
    }
    if (m->n_rates && i >= n_ops) { /* a rate tensor: its parameter's, moved and renamed */
        mt_tensor_info t;
        mt_model_tensor(m, i - n_ops, &t);
        *out = t;
        const int len = snprintf(out->name, sizeof out->name, "alpha.%s", t.name);
        assert(len < (int)sizeof out->name && "every model's names leave room for alpha."); /* 31 at most */
        (void)len;
        out->kind = "lr";
        out->offset = t.offset + m->n_rates;
        return;
    }
    memset(out, 0, sizeof *out);
    for (int k = 0; k < m->n_ops; k++) {
        const mt_op *o = &m->op[k];
        if (o->n_params == 0) continue;
        const int n = 1 + has_beta(o);
        if (i >= n) {
            i -= n;
            continue;
        }
        const size_t bias_len = has_beta(o) ? (size_t)o->out_c : 0, weight_len = o->n_params - bias_len;
        out->kind = op_table[o->kind].kind;
        snprintf(out->name, sizeof out->name, "%s.%s", o->name, i == 0 ? "weight" : "bias");
        out->offset = o->offset + (i == 0 ? 0 : weight_len);
        out->size = i == 0 ? weight_len : bias_len;
        if (i == 1 || o->kind == MT_OP_BN) {
            out->ndim = 1, out->shape[0] = o->out_c;
        } else if (o->kind == MT_OP_LINEAR) {
            out->ndim = 2, out->shape[0] = o->out, out->shape[1] = o->in;
        } else {
            out->ndim = 4, out->shape[0] = o->out_c, out->shape[1] = o->in_c;
            out->shape[2] = out->shape[3] = o->conv.k;
        }
        return;
    }
    assert(!"tensor index out of range");
}

int mt_model_find_op(const mt_model *m, const char *name)
{
    for (int i = 0; i < m->n_ops; i++)
        if (strcmp(m->op[i].name, name) == 0) return i;
    return -1;
}

/* ---- workspace ----------------------------------------------------------------------- */

/* Ops whose nodes hold no arrays: the batchnorm and relu of a fused batchnorm → relu →
 * max-pool (the batchnorm op writes the pool's node). */
static int no_arrays(const mt_op *o)
{
    return o->fused == MT_FUSED_BN_RELU_POOL && (o->kind == MT_OP_BN || o->kind == MT_OP_RELU);
}

/* Node j's gradient is needed from the backward step of its first reader in backward order
 * (its highest-index reader; for the last node, the loss: time n_ops) down to the step that
 * reads it, op j's own or, for a fused batchnorm → relu → max-pool's pool node, the
 * batchnorm's: the interval [lo[j], born[j]] of op indices. Two nodes can share a buffer when
 * their intervals do not meet. Assigns buf_of[j] greedily (the lowest buffer free over j's
 * interval, nodes taken from the last; -1 for nodes without arrays) and returns the number
 * of buffers: 2 for a chain, where neighbours overlap only each other, 3 for ResNet-12, where
 * a stage's input stays live across the stage's main branch. */
static int share_grads(const mt_model *m, int *buf_of)
{
    int born[MT_MAX_OPS], lo[MT_MAX_OPS];
    for (int j = 0; j < m->n_ops; j++) {
        born[j] = j == m->n_ops - 1 ? m->n_ops : j;
        for (int i = j + 1; i < m->n_ops; i++)
            for (int s = 0; s < op_table[m->op[i].kind].n_src; s++)
                if (m->op[i].src[s] == j && i > born[j]) born[j] = i;
        lo[j] = m->op[j].kind == MT_OP_POOL && m->op[j].fused == MT_FUSED_BN_RELU_POOL ? j - 2 : j;
    }
    /* a relu r fused into the pool after it has its input's (r − 1) gradient array: that
     * node's interval starts where r's does, and r takes its buffer (r − 1 is placed right
     * after r) */
    for (int j = 0; j < m->n_ops; j++)
        if (m->op[j].kind == MT_OP_RELU && m->op[j].fused == MT_FUSED_RELU_POOL) born[j - 1] = born[j];
    int n_bufs = 0;
    for (int j = m->n_ops - 1; j >= 0; j--) {
        if (no_arrays(&m->op[j])) {
            buf_of[j] = -1;
            continue;
        }
        int b = 0;
        for (;; b++) {
            int clash = 0;
            for (int k = m->n_ops - 1; k > j && !clash; k--)
                clash = buf_of[k] == b && lo[j] <= born[k] && lo[k] <= born[j];
            if (!clash) break;
        }
        buf_of[j] = b;
        if (j + 1 < m->n_ops && m->op[j + 1].kind == MT_OP_RELU && m->op[j + 1].fused == MT_FUSED_RELU_POOL)
            buf_of[j + 1] = b;
        if (b + 1 > n_bufs) n_bufs = b + 1;
    }
    return n_bufs;
}

mt_workspace *mt_workspace_init(const mt_model *m, int max_rows, mt_ws_passes passes)
{
    assert(max_rows > 0 && m->n_ops > 0);
    mt_workspace *ws = mt_calloc(1, sizeof *ws);
    ws->max_rows = max_rows;
    ws->passes = passes;
    const size_t rows = (size_t)max_rows;
    /* Outputs always; R-values for the R-passes. Output gradients: one per node when the
     * R-backward pass will read them all, otherwise a few buffers shared by nodes whose
     * gradients are never needed at the same time. */
    const int hvp = passes == MT_WS_HVP;
    int buf_of[MT_MAX_OPS], n_bufs = 0, in_place[MT_MAX_OPS];
    if (passes == MT_WS_GRAD) n_bufs = share_grads(m, buf_of);
    size_t total = rows * m->out, scratch = 0, tmp = 0, argmax = 0, widest = 0;
    for (int i = 0; i < m->n_ops; i++) {
        const mt_op *o = &m->op[i];
        /* A (leaky) ReLU overwrites an input no other op reads: its passes take the output's
         * sign for the input's (layers.h), and no op reads its own output backward. */
        in_place[i] = (o->kind == MT_OP_RELU || (o->kind == MT_OP_LEAKY && o->slope >= 0.0f)) && o->src[0] >= 0 &&
                      readers(m, o->src[0]) == 1;
        const int fused = o->kind == MT_OP_RELU && o->fused; /* all its arrays are its input's */
        assert(!fused || in_place[i]);
        if (!no_arrays(o))
            total += (size_t)((in_place[i] ? 0 : 1 + hvp) + (fused ? 0 : 2 * hvp)) * rows * o->out; /* y, ry; dy, rdy */
        if (rows * o->out > widest) widest = rows * o->out;
        if (o->kind == MT_OP_BN) total += (passes == MT_WS_HVP ? 4 : 2) * (size_t)o->out_c;
        if (o->kind == MT_OP_POOL) argmax += rows * o->out;
        /* the conv ops' columns; one channel of a fused batchnorm (two for the R-backward) */
        size_t need = o->kind == MT_OP_CONV ? mt_conv_scratch_floats(max_rows, &o->conv) : 0;
        if (o->kind == MT_OP_BN && o->fused) need = (size_t)(1 + hvp) * rows * o->out_h * o->out_w;
        if (need > scratch) scratch = need;
        /* a node with several readers needs somewhere to form the second gradient */
        if (passes != MT_WS_FORWARD && readers(m, i) > 1 && rows * o->out > tmp) tmp = rows * o->out;
    }
    total += (size_t)n_bufs * widest;
    ws->slab = mt_calloc(total + scratch + tmp, sizeof(float));
    ws->islab = argmax ? mt_calloc(argmax, sizeof(int32_t)) : NULL;
    ws->bytes = (total + scratch + tmp) * sizeof(float) + argmax * sizeof(int32_t);
    float *p = ws->slab;
    int32_t *q = ws->islab;
    for (int i = 0; i < m->n_ops; i++) {
        const mt_op *o = &m->op[i];
        const size_t n = rows * o->out;
        if (no_arrays(o)) {
            /* no y, ry, dy, rdy: the relu's are its input's */
        } else if (in_place[i]) {
            ws->y[i] = ws->y[o->src[0]], ws->ry[i] = ws->ry[o->src[0]];
        } else {
            ws->y[i] = p, p += n;
            if (hvp) ws->ry[i] = p, p += n;
        }
        if (hvp && o->kind == MT_OP_RELU && o->fused) ws->dy[i] = ws->dy[o->src[0]], ws->rdy[i] = ws->rdy[o->src[0]];
        else if (hvp && !no_arrays(o)) ws->dy[i] = p, p += n, ws->rdy[i] = p, p += n;
        if (o->kind == MT_OP_BN) ws->stats[i] = p, p += (passes == MT_WS_HVP ? 4 : 2) * (size_t)o->out_c;
        if (o->kind == MT_OP_POOL) ws->argmax[i] = q, q += n;
    }
    for (int i = 0; i < m->n_ops && n_bufs; i++) ws->dy[i] = buf_of[i] < 0 ? NULL : p + (size_t)buf_of[i] * widest;
    p += (size_t)n_bufs * widest;
    ws->probs = p, p += rows * m->out;
    ws->scratch = scratch ? p : NULL, p += scratch;
    ws->tmp = tmp ? p : NULL;
    return ws;
}

void mt_workspace_free(mt_workspace *ws)
{
    if (!ws) return;
    free(ws->islab);
    free(ws->slab);
    free(ws);
}

size_t mt_workspace_bytes(const mt_workspace *ws) { return ws->bytes; }

/* ---- passes -------------------------------------------------------------------------- */

/* 1 iff v[0 … n) are all zero (n = 0: true). */
static int all_zero(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] != 0.0f) return 0;
    return 1;
}

/* The io of op i for a pass: its inputs (node outputs, or the data x for node -1), its own
 * arrays, and the per-op state. Gradient destinations are set by the backward loops. */
static op_io op_args(const mt_model *m, const mt_workspace *ws, int i, const float *x, const float *theta,
                     const float *v, float *g, int N)
{
    const mt_op *o = &m->op[i];
    const int out = o->kind == MT_OP_BN && o->fused ? i + 2 : i; /* a fused batchnorm writes the pool's node */
    op_io a = {.N = N, .theta = theta, .v = v, .g = g, .stats = ws->stats[i], .argmax = ws->argmax[out],
               .scratch = ws->scratch, .y = ws->y[out], .dy = ws->dy[out], .ry = ws->ry[out], .rdy = ws->rdy[out]};
    for (int s = 0; s < op_table[o->kind].n_src; s++) {
        const int j = o->src[s];
        a.x[s] = j < 0 ? x : ws->y[j];
        a.rx[s] = j < 0 || ws->rzero[j] ? NULL : ws->ry[j]; /* the data does not move with θ */
    }
    return a;
}

/* Before op i's backward pass: point its input gradients at their nodes' arrays (grads =
 * ws->dy or ws->rdy), or at tmp when a node already holds a gradient from another reader
 * and the op cannot add by itself. Nothing for the data (node -1). */
static void route_grads(const mt_model *m, mt_workspace *ws, int i, float *const *grads, float **dx, int *acc)
{
    const mt_op *o = &m->op[i];
    for (int s = 0; s < op_table[o->kind].n_src; s++) {
        const int j = o->src[s];
        acc[s] = j >= 0 && ws->got[j];
        dx[s] = j < 0 ? NULL : acc[s] && !op_table[o->kind].accumulates ? ws->tmp : grads[j];
    }
}

/* After op i's backward pass: add what went to tmp into its node, and mark the nodes. */
static void settle_grads(const mt_model *m, mt_workspace *ws, int i, float *const *grads, int N)
{
    const mt_op *o = &m->op[i];
    for (int s = 0; s < op_table[o->kind].n_src; s++) {
        const int j = o->src[s];
        if (j < 0) continue;
        if (ws->got[j] && !op_table[o->kind].accumulates) {
            float *dst = grads[j];
            const size_t n = (size_t)N * m->op[j].out;
            for (size_t k = 0; k < n; k++) dst[k] += ws->tmp[k];
        }
        ws->got[j] = 1;
    }
}

float mt_model_forward(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                       const float *y, int N)
{
    assert(N > 0 && N <= ws->max_rows);
    for (int i = 0; i < m->n_ops; i++) {
        const op_io a = op_args(m, ws, i, x, theta, NULL, NULL, N);
        op_table[m->op[i].kind].forward(&m->op[i], &a);
    }
    const float *out = ws->y[m->n_ops - 1];
    if (m->loss == MT_LOSS_XENT) return mt_xent_forward(ws->probs, out, y, N, m->out);
    return mt_mse_forward(out, y, N, m->out);
}

void mt_model_backward(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                       const float *y, int N, float *grad)
{
    mt_model_backward_ops(m, ws, theta, x, y, N, grad, 0);
}

void mt_model_backward_ops(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                           const float *y, int N, float *grad, int first_op)
{
    assert(ws->passes >= MT_WS_GRAD && first_op >= 0 && first_op < m->n_ops);
    const int last = m->n_ops - 1;
    if (m->loss == MT_LOSS_XENT) mt_xent_backward(ws->dy[last], ws->probs, y, N, m->out);
    else mt_mse_backward(ws->dy[last], ws->y[last], y, N, m->out);
    memset(ws->got, 0, sizeof ws->got);
    for (int i = last; i >= first_op; i--) {
        op_io a = op_args(m, ws, i, x, theta, NULL, grad, N);
        route_grads(m, ws, i, ws->dy, a.dx, a.acc);
        if (i == first_op) a.dx[0] = a.dx[1] = NULL; /* no op below runs: no input needs a gradient */
        op_table[m->op[i].kind].backward(&m->op[i], &a);
        if (i > first_op) settle_grads(m, ws, i, ws->dy, N);
    }
}

void mt_model_rforward(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                       const float *v, int N)
{
    assert(ws->passes == MT_WS_HVP);
    for (int i = 0; i < m->n_ops; i++) {
        /* An op whose inputs' R-values are zero and whose direction block is zero has a zero
         * R-value: it is not formed, and its readers are given NULL (zero). With a direction
         * on the head only (anil), the whole body's R-forward pass is skipped. */
        const mt_op *o = &m->op[i];
        int zero = all_zero(v + o->offset, o->n_params);
        for (int s = 0; s < op_table[o->kind].n_src; s++) zero = zero && (o->src[s] < 0 || ws->rzero[o->src[s]]);
        ws->rzero[i] = (unsigned char)zero;
        if (zero) {
            if (o->kind == MT_OP_BN) memset(ws->stats[i] + 2 * o->out_c, 0, 2 * (size_t)o->out_c * sizeof(float));
            continue;
        }
        const op_io a = op_args(m, ws, i, x, theta, v, NULL, N);
        op_table[o->kind].rforward(o, &a);
    }
}

void mt_model_rbackward(const mt_model *m, mt_workspace *ws, const float *theta, const float *x,
                        const float *v, int N, float *hv)
{
    assert(ws->passes == MT_WS_HVP);
    const int last = m->n_ops - 1;
    if (ws->rzero[last]) memset(ws->rdy[last], 0, (size_t)N * m->out * sizeof(float)); /* v = 0 */
    else if (m->loss == MT_LOSS_XENT) mt_xent_rbackward(ws->rdy[last], ws->probs, ws->ry[last], N, m->out);
    else mt_mse_rbackward(ws->rdy[last], ws->ry[last], N, m->out);
    memset(ws->got, 0, sizeof ws->got);
    for (int i = last; i >= 0; i--) {
        op_io a = op_args(m, ws, i, x, theta, v, hv, N);
        route_grads(m, ws, i, ws->rdy, a.rdx, a.acc);
        op_table[m->op[i].kind].rbackward(&m->op[i], &a);
        settle_grads(m, ws, i, ws->rdy, N);
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
    /* The R-backward pass reads dL/d(outputs) of every op, not the parameter gradient. */
    mt_model_backward(m, ws, theta, x, y, N, NULL);
    mt_model_rforward(m, ws, theta, x, v, N);
    mt_model_rbackward(m, ws, theta, x, v, N, hv);
    return loss;
}

const float *mt_model_output(const mt_model *m, const mt_workspace *ws)
{
    return ws->y[m->n_ops - 1];
}

int mt_model_correct(const mt_model *m, const mt_workspace *ws, const float *y, int N)
{
    if (m->loss != MT_LOSS_XENT) return 0;
    return mt_xent_correct(mt_model_output(m, ws), y, N, m->out);
}
