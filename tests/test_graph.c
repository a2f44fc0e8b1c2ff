/*
 * test_graph.c — the op graph of model.h as a structure: the parameter layouts of the three
 * models, the workspaces sized for the passes they serve, and properties of the passes that
 * need no oracle.
 *
 *   1. Layouts. The MLP's and Conv4's tensor tables (names, kinds, offsets, sizes, shapes)
 *      are the ones every checkpoint written so far holds, written out here from the
 *      formulas of model.h: a change to them would make old checkpoints unreadable.
 *      ResNet-12's table follows its definition (model.h): 12 tensors per stage in
 *      PyTorch's order, convs without bias, 1×1 shortcuts, and the head.
 *   2. Workspaces. A forward-only and a gradient workspace give the same bits as the full
 *      (R-pass) one for the passes they serve, and hold less memory; a meta workspace sized
 *      for FOMAML gives FOMAML's meta-gradient bit for bit as one sized for MAML.
 *   3. Symmetry. u·Hv = v·Hu for ResNet-12, whose residual adds make a node feed two ops
 *      (the passes must add both gradients): in float within a few u of Σ|u_i (Hv)_i|, so
 *      the tolerance is 1e-5 relative to that sum (as in test_meta.c).
 *
 * Not here: the values of the passes. Every op's passes are checked against finite
 * differences in test_layers.c and test_conv.c, the MLP's model-level passes in
 * test_meta.c, and Conv4's and ResNet-12's loss, gradient, HVP and meta-gradients against
 * PyTorch in test_reference.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "meta.h"
#include "model.h"
#include "testutil.h"

#define TOL_SYM 1e-5

typedef struct {
    const char *name;
    int ndim, shape[4];
} want_tensor;

/* The model's tensor table against want[n], offsets contiguous from 0 in order. */
static void check_layout(const mt_model *m, const char *label, const want_tensor *want, int n)
{
    char what[160];
    snprintf(what, sizeof what, "%s: %d tensors", label, n);
    tu_expect(mt_model_tensor_count(m) == n, what);
    size_t offset = 0;
    int ok = 1;
    for (int i = 0; i < n && i < mt_model_tensor_count(m); i++) {
        mt_tensor_info t;
        mt_model_tensor(m, i, &t);
        size_t size = 1;
        for (int d = 0; d < want[i].ndim; d++) size *= (size_t)want[i].shape[d];
        const int same = strcmp(t.name, want[i].name) == 0 && t.offset == offset && t.size == size &&
                         t.ndim == want[i].ndim && memcmp(t.shape, want[i].shape, sizeof(int) * (size_t)t.ndim) == 0;
        if (!same) {
            printf("  %s tensor %d: got %s offset %zu size %zu, want %s offset %zu size %zu\n", label, i, t.name,
                   t.offset, t.size, want[i].name, offset, size);
            ok = 0;
        }
        offset += size;
    }
    snprintf(what, sizeof what, "%s: names, offsets, sizes and shapes in θ order; P = %zu", label, offset);
    tu_expect(ok && offset == m->n_params, what);
}

static void check_layouts(void)
{
    mt_model m;
    tu_expect(mt_model_mlp(&m, 1, 40, 1) == 0, "build the 1-40-40-1 MLP");
    const want_tensor mlp[] = {{"fc1.weight", 2, {40, 1}}, {"fc1.bias", 1, {40}},  {"fc2.weight", 2, {40, 40}},
                               {"fc2.bias", 1, {40}},      {"head.weight", 2, {1, 40}}, {"head.bias", 1, {1}}};
    check_layout(&m, "mlp 1-40-40-1", mlp, 6);
    mt_tensor_info t;
    mt_model_tensor(&m, 0, &t);
    tu_expect(strcmp(t.kind, "linear") == 0, "mlp: fc1 is of kind linear");

    tu_expect(mt_model_conv4(&m, 3, 84, 84, 32, 5) == 0, "build Conv4 3x84x84, 32 filters, 5 ways");
    want_tensor conv4[18];
    int n = 0;
    for (int b = 1; b <= 4; b++) {
        static char names[4][4][24];
        snprintf(names[b - 1][0], 24, "conv%d.weight", b);
        snprintf(names[b - 1][1], 24, "conv%d.bias", b);
        snprintf(names[b - 1][2], 24, "bn%d.weight", b);
        snprintf(names[b - 1][3], 24, "bn%d.bias", b);
        conv4[n++] = (want_tensor){names[b - 1][0], 4, {32, b == 1 ? 3 : 32, 3, 3}};
        conv4[n++] = (want_tensor){names[b - 1][1], 1, {32}};
        conv4[n++] = (want_tensor){names[b - 1][2], 1, {32}};
        conv4[n++] = (want_tensor){names[b - 1][3], 1, {32}};
    }
    conv4[n++] = (want_tensor){"head.weight", 2, {5, 32 * 5 * 5}}; /* 84 → 42 → 21 → 10 → 5 */
    conv4[n++] = (want_tensor){"head.bias", 1, {5}};
    check_layout(&m, "conv4 3x84x84 f32", conv4, n);
    mt_model_tensor(&m, 2, &t);
    tu_expect(strcmp(t.kind, "batchnorm") == 0 && mt_model_find_op(&m, "pool4") >= 0,
              "conv4: bn1 is of kind batchnorm; an op named pool4 exists");

    const int widths[4] = {4, 6, 8, 10};
    tu_expect(mt_model_resnet12(&m, 3, 84, 84, widths, 5) == 0, "build ResNet-12 3x84x84, widths 4,6,8,10");
    want_tensor res[50];
    static char rnames[4][12][32];
    n = 0;
    for (int s = 0; s < 4; s++) {
        const int w = widths[s], in = s ? widths[s - 1] : 3;
        const char *part[12] = {"conv1.weight", "bn1.weight",      "bn1.bias",          "conv2.weight",
                                "bn2.weight",   "bn2.bias",        "conv3.weight",      "bn3.weight",
                                "bn3.bias",     "shortcut.weight", "shortcut_bn.weight", "shortcut_bn.bias"};
        for (int j = 0; j < 12; j++) {
            snprintf(rnames[s][j], 32, "stage%d.%s", s + 1, part[j]);
            want_tensor *r = &res[n++];
            r->name = rnames[s][j];
            if (j == 0 || j == 3 || j == 6 || j == 9) {
                const int k = j == 9 ? 1 : 3;
                *r = (want_tensor){rnames[s][j], 4, {w, j == 0 || j == 9 ? in : w, k, k}};
            } else {
                *r = (want_tensor){rnames[s][j], 1, {w}};
            }
        }
    }
    res[n++] = (want_tensor){"head.weight", 2, {5, 10}}; /* after the global average pool */
    res[n++] = (want_tensor){"head.bias", 1, {5}};
    check_layout(&m, "resnet12 3x84x84 4,6,8,10", res, n);
    const int last = mt_model_find_op(&m, "stage4.pool");
    tu_expect(last >= 0 && m.op[last].out_h == 5 && m.op[last].out_w == 5 && m.op[last].out_c == 10,
              "resnet12: 84 → 42 → 21 → 10 → 5 after the four pools, 10 channels");
    tu_expect(m.out == 5 && m.loss == MT_LOSS_XENT, "resnet12: 5 logits, cross-entropy");
    tu_expect(mt_model_resnet12(&m, 1, 15, 28, widths, 5) != 0 && mt_model_conv4(&m, 1, 28, 15, 8, 5) != 0,
              "images below 16x16 are refused");
    const int zero[4] = {4, 0, 8, 10};
    tu_expect(mt_model_resnet12(&m, 1, 28, 28, zero, 5) != 0, "a zero width is refused");
}

/* A small ResNet-12 on N random images: θ from the default initialisation. */
typedef struct {
    mt_model m;
    size_t P;
    int N;
    float *theta, *x, *y;
} net;

static void net_init(net *n, int N)
{
    const int widths[4] = {3, 4, 5, 6};
    if (mt_model_resnet12(&n->m, 2, 16, 16, widths, 4) != 0) mt_fatal("mt_model_resnet12 failed");
    n->P = n->m.n_params;
    n->N = N;
    n->theta = tu_vec(n->P);
    mt_model_init_params(&n->m, n->theta, 5);
    n->x = tu_vec((size_t)N * n->m.in);
    tu_random(n->x, (size_t)N * n->m.in, 0.0f, 1.0f, 5, 1);
    n->y = tu_vec((size_t)N);
    for (int i = 0; i < N; i++) n->y[i] = (float)(i % 4);
}

static void net_free(net *n)
{
    free(n->theta);
    free(n->x);
    free(n->y);
}

static void check_workspaces(void)
{
    net n;
    net_init(&n, 8);
    mt_workspace *full = mt_workspace_init(&n.m, n.N, MT_WS_HVP);
    mt_workspace *grad = mt_workspace_init(&n.m, n.N, MT_WS_GRAD);
    mt_workspace *fwd = mt_workspace_init(&n.m, n.N, MT_WS_FORWARD);
    float *g1 = tu_vec(n.P), *g2 = tu_vec(n.P);
    const float l1 = mt_model_loss_grad(&n.m, full, n.theta, n.x, n.y, n.N, g1);
    const float l2 = mt_model_loss_grad(&n.m, grad, n.theta, n.x, n.y, n.N, g2);
    const float l3 = mt_model_forward(&n.m, fwd, n.theta, n.x, n.y, n.N);
    tu_expect(l1 == l2 && l1 == l3 && memcmp(mt_model_output(&n.m, fwd), mt_model_output(&n.m, full),
                                             (size_t)n.N * n.m.out * sizeof(float)) == 0,
              "resnet12: the same loss and logits from forward-only, gradient and full workspaces");
    tu_expect(memcmp(g1, g2, n.P * sizeof *g1) == 0, "resnet12: the same gradient bits from gradient and full workspaces");
    const size_t bf = mt_workspace_bytes(fwd), bg = mt_workspace_bytes(grad), bh = mt_workspace_bytes(full);
    printf("  workspace bytes for 8 images: forward %zu, gradient %zu, full %zu\n", bf, bg, bh);
    tu_expect(bf < bg && bg < bh, "forward-only < gradient < full workspace memory");
    mt_workspace_free(full);
    mt_workspace_free(grad);
    mt_workspace_free(fwd);

    /* Meta workspaces: support 4 rows, query 8 rows. */
    mt_task t = {.xs = n.x, .ys = n.y, .xq = n.x, .yq = n.y, .n_support = 4, .n_query = 8};
    mt_meta *for_maml = mt_meta_init(&n.m, MT_ALGO_MAML, 2, 4, 8);
    mt_meta *for_fo = mt_meta_init(&n.m, MT_ALGO_FOMAML, 2, 4, 8);
    mt_meta *for_rep = mt_meta_init(&n.m, MT_ALGO_REPTILE, 2, 4, 8);
    mt_meta_task_grad(for_maml, MT_ALGO_FOMAML, n.theta, 0.1f, 2, &t, g1, NULL);
    mt_meta_task_grad(for_fo, MT_ALGO_FOMAML, n.theta, 0.1f, 2, &t, g2, NULL);
    tu_expect(memcmp(g1, g2, n.P * sizeof *g1) == 0, "fomaml meta-gradient: same bits from maml- and fomaml-sized meta");
    mt_meta_task_grad(for_maml, MT_ALGO_REPTILE, n.theta, 0.1f, 2, &t, g1, NULL);
    mt_meta_task_grad(for_rep, MT_ALGO_REPTILE, n.theta, 0.1f, 2, &t, g2, NULL);
    tu_expect(memcmp(g1, g2, n.P * sizeof *g1) == 0, "reptile update: same bits from maml- and reptile-sized meta");
    const mt_task_losses a = mt_meta_adapt_eval(for_maml, n.theta, 0.1f, 3, &t);
    const mt_task_losses b = mt_meta_adapt_eval(for_rep, n.theta, 0.1f, 3, &t);
    tu_expect(a.pre == b.pre && a.post == b.post && a.acc_post == b.acc_post,
              "adaptation for evaluation: same losses from maml- and reptile-sized meta");
    printf("  meta bytes (K = 2, P = %zu): maml %zu, fomaml %zu, reptile %zu\n", n.P, mt_meta_bytes(for_maml),
           mt_meta_bytes(for_fo), mt_meta_bytes(for_rep));
    tu_expect(mt_meta_bytes(for_rep) < mt_meta_bytes(for_fo) && mt_meta_bytes(for_fo) < mt_meta_bytes(for_maml),
              "meta memory: reptile < fomaml < maml");
    mt_meta_free(for_maml);
    mt_meta_free(for_fo);
    mt_meta_free(for_rep);
    free(g1);
    free(g2);
    net_free(&n);
}

static double dot_d(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static double abs_dot_d(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += fabs((double)a[i] * b[i]);
    return s;
}

static void check_symmetry(void)
{
    net n;
    net_init(&n, 6);
    mt_workspace *ws = mt_workspace_init(&n.m, n.N, MT_WS_HVP);
    float *u = tu_vec(n.P), *v = tu_vec(n.P), *hu = tu_vec(n.P), *hv = tu_vec(n.P);
    for (uint32_t k = 0; k < 3; k++) {
        tu_random(u, n.P, -1.0f, 1.0f, 9, 2 * k);
        tu_random(v, n.P, -1.0f, 1.0f, 9, 2 * k + 1);
        mt_model_hvp(&n.m, ws, n.theta, n.x, n.y, n.N, v, hv);
        mt_model_hvp(&n.m, ws, n.theta, n.x, n.y, n.N, u, hu);
        const double a = dot_d(u, hv, n.P), b = dot_d(v, hu, n.P);
        const double scale = abs_dot_d(u, hv, n.P) + abs_dot_d(v, hu, n.P);
        char label[96];
        snprintf(label, sizeof label, "resnet12 u.Hv = v.Hu, pair %u (u.Hv = %.6g)", k, a);
        tu_check(label, fabs(a - b) / scale, TOL_SYM);
    }
    mt_workspace_free(ws);
    free(u);
    free(v);
    free(hu);
    free(hv);
    net_free(&n);
}

/* A direction that is zero outside the head (anil's) skips the R-forward pass of every op
 * whose R-value is zero. Linearity gives an oracle through the dense path: H·v_head =
 * H·(v_head + w) − H·w for a dense w. The two sides differ by rounding only, a few u of
 * |H·(v_head + w)| + |H·w| per entry: tolerance 1e-5 of that, normwise. A skipped op whose
 * state is not reset (batchnorm's R-statistics) or a wrong NULL gives O(1). Also the whole
 * of H·v_head is checked, not just its head block: the body's rows are the mixed block. */
static void check_zero_directions(void)
{
    net n;
    net_init(&n, 6);
    mt_workspace *ws = mt_workspace_init(&n.m, n.N, MT_WS_HVP);
    const int head = mt_model_find_op(&n.m, "head");
    const size_t lo = n.m.op[head].offset, hi = lo + n.m.op[head].n_params;
    float *vh = tu_vec(n.P), *w = tu_vec(n.P), *sum = tu_vec(n.P), *h1 = tu_vec(n.P), *h2 = tu_vec(n.P),
          *h3 = tu_vec(n.P);
    memset(vh, 0, n.P * sizeof *vh);
    tu_random(vh + lo, hi - lo, -1.0f, 1.0f, 11, 1);
    tu_random(w, n.P, -1.0f, 1.0f, 11, 2);
    for (size_t i = 0; i < n.P; i++) sum[i] = vh[i] + w[i];
    /* The dense product first, so a skipped op that reused its stale state would show. */
    mt_model_hvp(&n.m, ws, n.theta, n.x, n.y, n.N, w, h3);
    mt_model_hvp(&n.m, ws, n.theta, n.x, n.y, n.N, vh, h1);
    mt_model_hvp(&n.m, ws, n.theta, n.x, n.y, n.N, sum, h2);
    double num = 0.0, den = 0.0, body = 0.0;
    for (size_t i = 0; i < n.P; i++) {
        const double d = (double)h1[i] - ((double)h2[i] - (double)h3[i]);
        num += d * d;
        den += ((double)fabsf(h2[i]) + fabsf(h3[i])) * ((double)fabsf(h2[i]) + fabsf(h3[i]));
        if (i < lo || i >= hi) body += (double)h1[i] * h1[i];
    }
    tu_check("resnet12: H v_head (body's R-forward skipped) = H (v_head + w) - H w", sqrt(num / den), 1e-5);
    tu_expect(body > 0.0, "resnet12: H v_head has a body part (the mixed block), not only a head part");
    /* After a zero-skipping pass, a dense one must not see stale state. */
    mt_model_hvp(&n.m, ws, n.theta, n.x, n.y, n.N, w, h1);
    tu_expect(memcmp(h1, h3, n.P * sizeof *h1) == 0, "resnet12: a dense HVP after a head-only one: the same bits");
    mt_workspace_free(ws);
    free(vh), free(w), free(sum), free(h1), free(h2), free(h3);
    net_free(&n);
}

/* Conv4's batchnorm → relu → max-pool runs fused (mt_op.fused): the same bits as the relu →
 * max-pool pairs alone and as the unfused passes, in every workspace and through a MAML
 * meta-gradient, with less memory at each step. */
static void check_fusion(void)
{
    mt_model m[3]; /* the builder's (bn+relu+pool), relu+pool pairs only, unfused */
    tu_expect(mt_model_conv4(&m[0], 1, 16, 16, 6, 3) == 0, "build Conv4 1x16x16, 6 filters");
    m[1] = m[2] = m[0];
    int chains = 0;
    for (int i = 0; i < m[0].n_ops; i++) {
        const mt_op *o = &m[0].op[i];
        chains += o->kind == MT_OP_BN && o->fused == MT_FUSED_BN_RELU_POOL && m[0].op[i + 1].fused == o->fused &&
                  m[0].op[i + 2].kind == MT_OP_POOL && m[0].op[i + 2].fused == o->fused;
        m[1].op[i].fused = o->kind == MT_OP_BN ? 0 : o->fused ? MT_FUSED_RELU_POOL : 0;
        m[2].op[i].fused = 0;
    }
    tu_expect(chains == 4, "conv4: its four batchnorm -> relu -> pool runs are fused");
    const int N = 9; /* odd: 2x2 windows of negative values and ties are common at this size */
    const size_t P = m[0].n_params;
    float *theta = tu_vec(P), *x = tu_vec((size_t)N * m[0].in), *y = tu_vec(N), *v = tu_vec(P);
    mt_model_init_params(&m[0], theta, 9);
    tu_random(x, (size_t)N * m[0].in, -1.0f, 1.0f, 9, 1);
    tu_random(v, P, -1.0f, 1.0f, 9, 2);
    for (int i = 0; i < N; i++) y[i] = (float)(i % 3);
    float *g[3], *h[3], loss[3], hl[3];
    size_t bytes[3], gbytes[3];
    for (int k = 0; k < 3; k++) {
        mt_workspace *grad = mt_workspace_init(&m[k], N, MT_WS_GRAD), *full = mt_workspace_init(&m[k], N, MT_WS_HVP);
        g[k] = tu_vec(P), h[k] = tu_vec(P);
        loss[k] = mt_model_loss_grad(&m[k], grad, theta, x, y, N, g[k]);
        hl[k] = mt_model_hvp(&m[k], full, theta, x, y, N, v, h[k]);
        bytes[k] = mt_workspace_bytes(full), gbytes[k] = mt_workspace_bytes(grad);
        mt_workspace_free(grad);
        mt_workspace_free(full);
    }
    for (int k = 1; k < 3; k++) {
        const char *what = k == 1 ? "fused and relu+pool only" : "fused and unfused";
        char label[96];
        snprintf(label, sizeof label, "%s: the same loss", what);
        tu_expect(loss[0] == loss[k] && hl[0] == hl[k], label);
        snprintf(label, sizeof label, "%s: the same gradient bits", what);
        tu_expect(memcmp(g[0], g[k], P * sizeof(float)) == 0, label);
        snprintf(label, sizeof label, "%s: the same HVP bits", what);
        tu_expect(memcmp(h[0], h[k], P * sizeof(float)) == 0, label);
    }
    tu_expect(bytes[0] < bytes[1] && bytes[1] < bytes[2],
              "HVP workspace: bn+relu+pool < relu+pool < unfused (no batchnorm arrays; the relus hold no gradients)");
    tu_expect(gbytes[0] < gbytes[2], "gradient workspace: bn+relu+pool < unfused (no batchnorm outputs)");
    mt_task t = {.xs = x, .ys = y, .xq = x, .yq = y, .n_support = 4, .n_query = N};
    for (int k = 0; k < 3; k++) {
        mt_meta *mm = mt_meta_init(&m[k], MT_ALGO_MAML, 2, 4, N);
        mt_meta_task_grad(mm, MT_ALGO_MAML, theta, 0.1f, 2, &t, g[k], NULL);
        mt_meta_free(mm);
    }
    tu_expect(memcmp(g[0], g[1], P * sizeof(float)) == 0 && memcmp(g[0], g[2], P * sizeof(float)) == 0,
              "fused, relu+pool only, unfused: the same MAML meta-gradient bits (K = 2)");
    /* a backward from the batchnorm (the first op it computes): the batchnorm's and later
     * gradients as the full backward's */
    const int bn4 = mt_model_find_op(&m[0], "bn4");
    for (int k = 0; k < 3; k += 2) {
        mt_workspace *ws = mt_workspace_init(&m[k], N, MT_WS_GRAD);
        memset(h[k], 0, P * sizeof(float));
        mt_model_forward(&m[k], ws, theta, x, y, N);
        mt_model_backward_ops(&m[k], ws, theta, x, y, N, h[k], bn4);
        mt_workspace_free(ws);
    }
    const size_t from = m[0].op[bn4].offset;
    tu_expect(bn4 > 0 && memcmp(h[0] + from, h[2] + from, (P - from) * sizeof(float)) == 0,
              "backward from bn4: the same bits fused and unfused");
    for (int k = 0; k < 3; k++) free(g[k]), free(h[k]);
    free(theta), free(x), free(y), free(v);
}

int main(void)
{
    check_layouts();
    check_workspaces();
    check_fusion();
    check_symmetry();
    check_zero_directions();
    return tu_finish();
}
