/*
 * test_conv.c — the image layers of conv.h (conv2d with kernel, stride and padding,
 * batchnorm, max-pool 2×2, global average pool, flatten) and the softmax cross-entropy,
 * each pass against two oracles, and their composition:
 *
 *   1. fast = ref: every fast conv, batchnorm and cross-entropy pass against its *_ref twin,
 *      with the optional outputs (dx, rdx, dw, db, dγ) and R-inputs (rx, vb, vβ) NULL and
 *      not; conv on 26 geometries (main lists them): Conv4's 3×3 stride 1 padding 1 on odd
 *      sizes, at Fashion-MNIST size and on one big enough to run in several chunks of
 *      images (6 × 4×84×84, chunks of 4 + 2); the 1×1 stride-1 fast path (given a NULL
 *      scratch, so a use of it crashes); 3×3 s2 p1 and 1×1 s2 p0 on odd and even planes,
 *      one of them multi-chunk (6 × 16×84×84); other kernels, strides and paddings,
 *      including taps wholly in the padding; the direct 3×3 path of AVX-512 CPUs (conv_direct.c,
 *      forward, R-forward, input and weight gradients) on five of them; half of them without bias (b, db, vb, rdb
 *      all NULL). The scratch buffer holds exactly mt_conv_scratch_floats floats,
 *      poisoned with NaN before every call. mt_conv_geom_init's output sizes and
 *      refusals are checked against PyTorch's formula;
 *   2. finite differences (FD): every backward pass against central differences of a scalar
 *      probe L = Σ c⊙y of its forward, every rforward against FD of forward along the
 *      direction, every rbackward against FD of backward along the direction (conv on 10
 *      geometries, with and without bias); global average pool's forward against a
 *      plain loop and its backward as the adjoint <dy, gap(x)> = <gap'(dy), x> and
 *      against FD;
 *   3. a chain conv → bn → relu → maxpool → flatten → linear → xent: its gradient (composed
 *      backward passes) against FD of the loss, its Hessian-vector product (composed
 *      R-passes) against FD of the gradient, and the symmetry u·Hv = v·Hu.
 *
 * Not tested here: the Conv4 model layout and the meta-gradients (test_meta.c), agreement
 * with PyTorch (test_reference.c).
 *
 * Tolerances, from float32 arithmetic (unit roundoff u = 2^-24 ≈ 6.0e-8):
 *
 *   conv fast = ref   Both compute sums of n products in float32 (im2col + sgemm, chunked,
 *                against direct loops); each result is within γ_n·Σ|terms| of the exact
 *                sum whatever the order (Higham §3.1), so they differ by at most
 *                2γ_n·Σ|terms|. Σ|terms| is the reference run on absolute values; the check
 *                prints max |fast − ref| / Σ|terms| against 2n·u, with n the most terms an
 *                output can have (C·k² (+1 for a bias) per output, F·k² per input pixel of
 *                dx, N·Ho·Wo per weight). A wrong tap, a missing term or a misplaced chunk
 *                gives O(1).
 *   gap          The forward sums in double and rounds once; the loop it is checked
 *                against sums in long double in the other order: they differ by one float
 *                rounding, ≤ 2u of the mean of |x| (tu_sum_tol(1)). The adjoint identity:
 *                see check_gap.
 *   bn, xent fast = ref   The references work in double from the same float inputs (and the
 *                same float statistics), so they are the exact values up to one final
 *                rounding. The fast passes evaluate a short expression per element (≤ 12
 *                float operations) whose terms are at most a few times the largest output,
 *                with sums in double: worst case ~12·4·u ≈ 3e-6 of max|output|. We check
 *                the normwise relative difference against 1e-5. The statistics μ and s
 *                are compared against 4u relative (one rounding each, plus the last bit of a
 *                double sum). A wrong sign or a missing term gives ≳ 1e-2.
 *   FD           We check max|an − fd| / max|fd| against 1e-3 everywhere; the steps are
 *                chosen so that truncation and rounding both stay ≲ 2e-4:
 *                - conv is bilinear, maxpool, gap and flatten linear (away from ties): no
 *                  truncation error at all. ε = 1e-2 as in test_layers.c; maxpool inputs
 *                  are at least 1e-2 apart and move by at most ε_pool = 1e-3, so no window
 *                  changes its maximum (checked). Rounding: a few u on outputs of size
 *                  ~1, over 2ε: ≲ 1e-5.
 *                - batchnorm, backward (per-coordinate FD of the probe, ε = 1e-2): moving
 *                  one of M = 144 values changes μ and σ² by O(1/M), so truncation is
 *                  tiny; rounding is the probe's M float outputs per channel, ~u·√M ≈ 1e-6,
 *                  over 2ε: ~5e-5. R-passes (FD along a direction that moves every value
 *                  of a channel, so σ² changes at first order): truncation ε²/6·|f'''|
 *                  grows like s³ for a channel with small σ (s = 3.5 here), measured
 *                  5.6e-4 at ε = 1e-2; ε = 2.5e-3 cuts it 16× (rounding ~u/ε ≈ 2e-5).
 *                - cross-entropy: the loss is one float mean over N rows, so its rounding
 *                  u·L is divided by 2ε while the gradient shrinks as 1/N: at N = 80 that
 *                  is u·L·N / (2ε·|p − 1|) ≈ 1.2e-4 at ε = 5e-2, where truncation is
 *                  ≤ ε²/6·max|p(1−p)(1−2p)| / |p − 1| ≈ 1e-4. rbackward (FD of backward,
 *                  elementwise) uses ε = 1e-2.
 *   chain        3 images of 2×4×4 → 2 channels → 3 classes, P = 69 parameters, at a base
 *                point chosen at least 0.03 from every relu and pool kink (see
 *                check_chain); every FD evaluation must see the base point's relu masks and
 *                pool argmaxes (checked: otherwise the FD straddles a kink and says
 *                nothing). The loss is a float near 1, so each evaluation carries ~1e-7 of
 *                rounding; with ε = 1e-3 that is ~1e-4 absolute in a difference quotient,
 *                against gradients of size ~0.1–1: tolerance 2e-3. Hessian-vector products
 *                are checked against FD of the float gradient with ε = 1e-3 (gradient
 *                rounding ~1e-7 / 2e-3 ≈ 5e-5 against Hv of size ~1, truncation ~ε² =
 *                1e-6): tolerance 1e-3. The symmetry u·Hv = v·Hu holds exactly in exact
 *                arithmetic; in float it is within ~P·u relative (P dot terms, measured
 *                against |u|·|Hv| + |v|·|Hu|): tolerance 1e-5.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "conv.h"
#include "conv_direct.h"
#include "layers.h"
#include "testutil.h"

#define UNIT_ROUNDOFF (FLT_EPSILON / 2) /* u = 2^-24 */
#define EPS_FD 1e-2f                   /* central-difference step for conv, bn, flatten, xent */
#define EPS_POOL 1e-3f                 /* maxpool step: below the 1e-2 gaps between inputs */
#define TOL_FD 1e-3                    /* normwise relative, see the header comment */
#define TOL_DOUBLE_REF 1e-5            /* fast bn / xent against their double references */
#define EPS_BN_DIR 2.5e-3f             /* bn R-passes: FD along a direction that moves a channel */
#define EPS_XENT 5e-2f                 /* FD step of the (float, mean over N) xent loss */
#define EPS_CHAIN 1e-3f                /* chain: FD step of the loss and of the gradient */
#define TOL_CHAIN_GRAD 2e-3
#define TOL_CHAIN_HVP 1e-3
#define TOL_SYMMETRY 1e-5

/* ---- helpers (as in test_layers.c) ---------------------------------------------------- */

static int all_equal(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static int all_zero(const float *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != 0.0f) return 0;
    return 1;
}

/* A scalar function of the current contents of some arrays (closed over by ctx). */
typedef double (*scalar_fn)(void *ctx);

/* fd[i] = central difference of f with respect to p[i], for i < n; p is restored. The
 * quotient uses the step actually taken after rounding p[i] ± ε to float. */
static void fd_gradient(float *p, size_t n, float eps, scalar_fn f, void *ctx, float *fd)
{
    for (size_t i = 0; i < n; i++) {
        const float saved = p[i];
        p[i] = saved + eps;
        const double hp = p[i], fp = f(ctx);
        p[i] = saved - eps;
        const double hm = p[i], fm = f(ctx);
        p[i] = saved;
        fd[i] = (float)((fp - fm) / (hp - hm));
    }
}

static void free_all(float **bufs, size_t n)
{
    for (size_t i = 0; i < n; i++) free(bufs[i]);
}
#define FREE_ALL(...)                                                                          \
    do {                                                                                       \
        float *list_[] = {__VA_ARGS__};                                                        \
        free_all(list_, sizeof list_ / sizeof list_[0]);                                       \
    } while (0)

/* ---- conv: fast = ref ----------------------------------------------------------------- */

typedef struct {
    int N, C, H, W, F;   /* batch, input planes, output channels */
    int k, stride, pad;  /* kernel, stride, padding */
    int bias;            /* 0: every bias argument NULL (b, db, vb, rdb) */
} conv_shape;

static mt_conv_geom shape_geom(conv_shape s)
{
    mt_conv_geom g;
    if (mt_conv_geom_init(&g, s.C, s.H, s.W, s.F, s.k, s.stride, s.pad) != 0) {
        fprintf(stderr, "test_conv: bad conv shape in the test table\n");
        exit(1);
    }
    return g;
}

static void shape_tag(char *tag, size_t len, conv_shape s)
{
    snprintf(tag, len, "conv %dx%dx%dx%d->%d k%d s%d p%d%s", s.N, s.C, s.H, s.W, s.F, s.k, s.stride, s.pad,
             s.bias ? "" : " nobias");
}

static void check_conv_fast_vs_ref(conv_shape s, uint64_t seed)
{
    const mt_conv_geom geom = shape_geom(s), *g = &geom;
    const int N = s.N, C = s.C, F = s.F, KK = s.k * s.k;
    const size_t M = (size_t)N * g->Ho * g->Wo, nx = (size_t)C * N * s.H * s.W, ny = (size_t)F * M,
                 nw = (size_t)F * C * KK;
    const size_t ns = mt_conv_scratch_floats(N, g);
    float *x = tu_vec(nx), *w = tu_vec(nw), *b = tu_vec(F), *dy = tu_vec(ny);
    float *rx = tu_vec(nx), *vw = tu_vec(nw), *vb = tu_vec(F), *rdy = tu_vec(ny);
    float *ax = tu_vec(nx), *aw = tu_vec(nw), *ab = tu_vec(F), *ady = tu_vec(ny);
    float *arx = tu_vec(nx), *avw = tu_vec(nw), *avb = tu_vec(F), *ardy = tu_vec(ny);
    float *f_y = tu_vec(ny), *r_y = tu_vec(ny), *bnd_y = tu_vec(ny);
    float *f_dx = tu_vec(nx), *r_dx = tu_vec(nx), *bnd_dx = tu_vec(nx);
    float *f_dw = tu_vec(nw), *r_dw = tu_vec(nw), *bnd_dw = tu_vec(nw);
    float *f_db = tu_vec(F), *r_db = tu_vec(F), *bnd_db = tu_vec(F);
    float *scratch_buf = tu_vec(ns);
    /* the 1×1 fast path needs no scratch: it gets NULL, so a use would crash */
    float *scratch = ns ? scratch_buf : NULL;
    /* without bias every bias argument is NULL, and a bias output (db, rdb) compares as 0 */
    const int nb = s.bias ? F : 0;
    float *B = s.bias ? b : NULL, *VB = s.bias ? vb : NULL, *AB = s.bias ? ab : NULL, *AVB = s.bias ? avb : NULL;
    float *FDB = s.bias ? f_db : NULL, *RDB = s.bias ? r_db : NULL, *BDB = s.bias ? bnd_db : NULL;
    char tag[64], label[160];
    shape_tag(tag, sizeof tag, s);

    tu_random(x, nx, -1, 1, seed, 1);
    tu_random(w, nw, -1, 1, seed, 2);
    tu_random(b, F, -1, 1, seed, 3);
    tu_random(dy, ny, -1, 1, seed, 4);
    tu_random(rx, nx, -1, 1, seed, 5);
    tu_random(vw, nw, -1, 1, seed, 6);
    tu_random(vb, F, -1, 1, seed, 7);
    tu_random(rdy, ny, -1, 1, seed, 8);
    tu_abs_copy(ax, x, nx), tu_abs_copy(aw, w, nw), tu_abs_copy(ab, b, F), tu_abs_copy(ady, dy, ny);
    tu_abs_copy(arx, rx, nx), tu_abs_copy(avw, vw, nw), tu_abs_copy(avb, vb, F), tu_abs_copy(ardy, rdy, ny);
    const int chunk = mt_conv_chunk_images(N, g);
    printf("     %s: out %dx%d, %d image%s per chunk, %d chunk%s, scratch %zu floats\n", tag, g->Ho, g->Wo, chunk,
           chunk == 1 ? "" : "s", (N + chunk - 1) / chunk, N > chunk ? "s" : "", ns);

    /* Term counts: an output sums C·k² taps (+ bias); an input pixel receives at most F·k²
     * (fewer with stride > 1, so F·k² bounds it); a weight tap and a bias sum over the
     * N·Ho·Wo outputs. */
    const size_t t_fwd = (size_t)C * KK + (s.bias ? 1 : 0), t_dx = (size_t)F * KK;

    /* forward */
    tu_poison(f_y, ny), tu_poison(scratch_buf, ns);
    mt_conv_forward(f_y, x, w, B, N, g, scratch);
    mt_conv_forward_ref(r_y, x, w, B, N, g);
    mt_conv_forward_ref(bnd_y, ax, aw, AB, N, g);
    snprintf(label, sizeof label, "%s forward fast = ref", tag);
    tu_check(label, tu_bounded_diff(f_y, r_y, bnd_y, ny), tu_sum_tol(t_fwd));

    /* backward */
    tu_poison(f_dx, nx), tu_poison(f_dw, nw), tu_poison(f_db, F), tu_poison(scratch_buf, ns);
    mt_conv_backward(f_dx, f_dw, FDB, dy, x, w, N, g, scratch);
    mt_conv_backward_ref(r_dx, r_dw, RDB, dy, x, w, N, g);
    mt_conv_backward_ref(bnd_dx, bnd_dw, BDB, ady, ax, aw, N, g);
    snprintf(label, sizeof label, "%s backward dx fast = ref", tag);
    tu_check(label, tu_bounded_diff(f_dx, r_dx, bnd_dx, nx), tu_sum_tol(t_dx));
    snprintf(label, sizeof label, "%s backward dw fast = ref", tag);
    tu_check(label, tu_bounded_diff(f_dw, r_dw, bnd_dw, nw), tu_sum_tol(M));
    if (s.bias) {
        snprintf(label, sizeof label, "%s backward db fast = ref", tag);
        tu_check(label, tu_bounded_diff(f_db, r_db, bnd_db, F), tu_sum_tol(M));
    }

    /* backward with dx NULL (the first layer): dw and db as before, bit for bit; and with
     * db NULL as well: dw still as before */
    float *keep_dw = tu_vec(nw), *keep_db = tu_vec(F);
    memcpy(keep_dw, f_dw, nw * sizeof *f_dw), memcpy(keep_db, f_db, F * sizeof *f_db);
    tu_poison(f_dw, nw), tu_poison(f_db, F), tu_poison(scratch_buf, ns);
    mt_conv_backward(NULL, f_dw, FDB, dy, x, w, N, g, scratch);
    snprintf(label, sizeof label, "%s backward dx=NULL: same dw, db", tag);
    tu_expect(all_equal(f_dw, keep_dw, nw) && all_equal(f_db, keep_db, nb), label);
    tu_poison(f_dw, nw), tu_poison(scratch_buf, ns);
    mt_conv_backward(NULL, f_dw, NULL, dy, x, w, N, g, scratch);
    snprintf(label, sizeof label, "%s backward dx=db=NULL: same dw", tag);
    tu_expect(all_equal(f_dw, keep_dw, nw), label);

    /* backward with dw NULL: dx as before, db untouched */
    for (int f = 0; f < F; f++) f_db[f] = 12345.0f;
    tu_poison(f_dx, nx), tu_poison(scratch_buf, ns);
    mt_conv_backward(f_dx, NULL, f_db, dy, x, w, N, g, scratch);
    int untouched = 1;
    for (int f = 0; f < F; f++) untouched &= f_db[f] == 12345.0f;
    snprintf(label, sizeof label, "%s backward dw=NULL: dx = ref, db untouched", tag);
    tu_expect(untouched && tu_bounded_diff(f_dx, r_dx, bnd_dx, nx) <= tu_sum_tol(t_dx), label);

    /* rforward: two sums of C·k² taps (+ the bias direction) */
    tu_poison(f_y, ny), tu_poison(scratch_buf, ns);
    mt_conv_rforward(f_y, x, rx, w, vw, VB, N, g, scratch);
    mt_conv_rforward_ref(r_y, x, rx, w, vw, VB, N, g);
    mt_conv_rforward_ref(bnd_y, ax, arx, aw, avw, AVB, N, g);
    snprintf(label, sizeof label, "%s rforward fast = ref", tag);
    tu_check(label, tu_bounded_diff(f_y, r_y, bnd_y, ny), tu_sum_tol(2 * t_fwd));

    /* rforward with rx NULL and vb NULL (the first layer: the data does not move) */
    tu_poison(f_y, ny), tu_poison(scratch_buf, ns);
    mt_conv_rforward(f_y, x, NULL, w, vw, NULL, N, g, scratch);
    mt_conv_forward_ref(r_y, x, vw, NULL, N, g); /* = vw ⋆ x */
    mt_conv_forward_ref(bnd_y, ax, avw, NULL, N, g);
    snprintf(label, sizeof label, "%s rforward rx=vb=NULL = ref vw*x", tag);
    tu_check(label, tu_bounded_diff(f_y, r_y, bnd_y, ny), tu_sum_tol((size_t)C * KK));
    tu_poison(f_y, ny);
    mt_conv_rforward_ref(f_y, x, NULL, w, vw, NULL, N, g);
    snprintf(label, sizeof label, "%s rforward_ref rx=vb=NULL = ref vw*x", tag);
    tu_check(label, tu_bounded_diff(f_y, r_y, bnd_y, ny), tu_sum_tol((size_t)C * KK));

    /* rbackward: rdx 2·F·k² terms at most, rdw 2·N·Ho·Wo, rdb N·Ho·Wo */
    tu_poison(f_dx, nx), tu_poison(f_dw, nw), tu_poison(f_db, F), tu_poison(scratch_buf, ns);
    mt_conv_rbackward(f_dx, f_dw, FDB, dy, rdy, x, rx, w, vw, N, g, scratch);
    mt_conv_rbackward_ref(r_dx, r_dw, RDB, dy, rdy, x, rx, w, vw, N, g);
    mt_conv_rbackward_ref(bnd_dx, bnd_dw, BDB, ady, ardy, ax, arx, aw, avw, N, g);
    snprintf(label, sizeof label, "%s rbackward rdx fast = ref", tag);
    tu_check(label, tu_bounded_diff(f_dx, r_dx, bnd_dx, nx), tu_sum_tol(2 * t_dx));
    snprintf(label, sizeof label, "%s rbackward rdw fast = ref", tag);
    tu_check(label, tu_bounded_diff(f_dw, r_dw, bnd_dw, nw), tu_sum_tol(2 * M));
    if (s.bias) {
        snprintf(label, sizeof label, "%s rbackward rdb fast = ref", tag);
        tu_check(label, tu_bounded_diff(f_db, r_db, bnd_db, F), tu_sum_tol(M));
    }

    /* rbackward with rdx NULL and rx NULL (the first layer): rdw = rdy ⊗ x only, which is
     * the backward_ref's dw with dy := rdy */
    tu_poison(f_dw, nw), tu_poison(f_db, F), tu_poison(scratch_buf, ns);
    mt_conv_rbackward(NULL, f_dw, FDB, dy, rdy, x, NULL, w, vw, N, g, scratch);
    mt_conv_backward_ref(NULL, r_dw, RDB, rdy, x, w, N, g);
    mt_conv_backward_ref(NULL, bnd_dw, BDB, ardy, ax, aw, N, g);
    snprintf(label, sizeof label, "%s rbackward rdx=rx=NULL: rdw, rdb", tag);
    tu_check(label, fmax(tu_bounded_diff(f_dw, r_dw, bnd_dw, nw), tu_bounded_diff(f_db, r_db, bnd_db, nb)),
             tu_sum_tol(M));
    tu_poison(f_dw, nw), tu_poison(f_db, F);
    mt_conv_rbackward_ref(NULL, f_dw, FDB, dy, rdy, x, NULL, w, vw, N, g);
    snprintf(label, sizeof label, "%s rbackward_ref NULLs = ref backward on rdy", tag);
    tu_check(label, fmax(tu_bounded_diff(f_dw, r_dw, bnd_dw, nw), tu_bounded_diff(f_db, r_db, bnd_db, nb)),
             tu_sum_tol(M));

    FREE_ALL(x, w, b, dy, rx, vw, vb, rdy, ax, aw, ab, ady, arx, avw, avb, ardy, f_y, r_y, bnd_y, f_dx, r_dx,
             bnd_dx, f_dw, r_dw, bnd_dw, f_db, r_db, bnd_db, scratch_buf, keep_dw, keep_db);
}

/* ---- conv: passes against finite differences ------------------------------------------ */

typedef struct {
    const mt_conv_geom *g;
    int N;
    float *x, *w, *b, *y, *scratch; /* b NULL: no bias */
    const float *c;                 /* probe weights [F,N,Ho,Wo] */
} conv_ctx;

static double conv_probe(void *p)
{
    conv_ctx *k = p;
    mt_conv_forward(k->y, k->x, k->w, k->b, k->N, k->g, k->scratch);
    return tu_probe(k->c, k->y, (size_t)k->g->F * k->N * k->g->Ho * k->g->Wo);
}

static void check_conv_fd(conv_shape s, uint64_t seed)
{
    const mt_conv_geom geom = shape_geom(s), *g = &geom;
    const int N = s.N, C = s.C, F = s.F;
    const size_t M = (size_t)N * g->Ho * g->Wo, nx = (size_t)C * N * s.H * s.W, ny = (size_t)F * M,
                 nw = (size_t)F * C * s.k * s.k;
    const size_t ns = mt_conv_scratch_floats(N, g);
    float *x = tu_vec(nx), *w = tu_vec(nw), *b = tu_vec(F), *c = tu_vec(ny), *y = tu_vec(ny), *scratch_buf = tu_vec(ns);
    float *rx = tu_vec(nx), *vw = tu_vec(nw), *vb = tu_vec(F), *rdy = tu_vec(ny);
    float *xp = tu_vec(nx), *wp = tu_vec(nw), *bp = tu_vec(F), *dyp = tu_vec(ny);
    float *xm = tu_vec(nx), *wm = tu_vec(nw), *bm = tu_vec(F), *dym = tu_vec(ny);
    float *an_x = tu_vec(nx), *an_w = tu_vec(nw), *an_b = tu_vec(F), *an_y = tu_vec(ny);
    float *fd_x = tu_vec(nx), *fd_w = tu_vec(nw), *fd_b = tu_vec(F), *fd_y = tu_vec(ny);
    float *p_x = tu_vec(nx), *p_w = tu_vec(nw), *p_b = tu_vec(F), *p_y = tu_vec(ny);
    float *m_x = tu_vec(nx), *m_w = tu_vec(nw), *m_b = tu_vec(F), *m_y = tu_vec(ny);
    float *scratch = ns ? scratch_buf : NULL;
    /* without bias: b, vb, db, rdb all NULL (and the moved biases too) */
    float *B = s.bias ? b : NULL, *VB = s.bias ? vb : NULL, *BP = s.bias ? bp : NULL, *BM = s.bias ? bm : NULL;
    float *ANB = s.bias ? an_b : NULL, *PB = s.bias ? p_b : NULL, *MB = s.bias ? m_b : NULL;
    char tag[64], label[160];
    shape_tag(tag, sizeof tag, s);

    tu_random(x, nx, -1, 1, seed, 11);
    tu_random(w, nw, -1, 1, seed, 12);
    tu_random(b, F, -1, 1, seed, 13);
    tu_random(c, ny, -1, 1, seed, 14);
    tu_random(rx, nx, -1, 1, seed, 15);
    tu_random(vw, nw, -1, 1, seed, 16);
    tu_random(vb, F, -1, 1, seed, 17);
    tu_random(rdy, ny, -1, 1, seed, 18);

    /* backward(dy = c) is the gradient of the probe */
    conv_ctx k = {g, N, x, w, B, y, scratch, c};
    mt_conv_backward(an_x, an_w, ANB, c, x, w, N, g, scratch);
    fd_gradient(x, nx, EPS_FD, conv_probe, &k, fd_x);
    fd_gradient(w, nw, EPS_FD, conv_probe, &k, fd_w);
    snprintf(label, sizeof label, "%s backward dx vs FD", tag);
    tu_check(label, tu_rel_diff(an_x, fd_x, nx), TOL_FD);
    snprintf(label, sizeof label, "%s backward dw vs FD", tag);
    tu_check(label, tu_rel_diff(an_w, fd_w, nw), TOL_FD);
    if (s.bias) {
        fd_gradient(b, F, EPS_FD, conv_probe, &k, fd_b);
        snprintf(label, sizeof label, "%s backward db vs FD", tag);
        tu_check(label, tu_rel_diff(an_b, fd_b, F), TOL_FD);
    }

    /* rforward: d/dε forward(x + ε·rx, w + ε·vw, b + ε·vb) */
    tu_moved(xp, x, EPS_FD, rx, nx), tu_moved(wp, w, EPS_FD, vw, nw), tu_moved(bp, b, EPS_FD, vb, F);
    tu_moved(xm, x, -EPS_FD, rx, nx), tu_moved(wm, w, -EPS_FD, vw, nw), tu_moved(bm, b, -EPS_FD, vb, F);
    mt_conv_forward(p_y, xp, wp, BP, N, g, scratch);
    mt_conv_forward(m_y, xm, wm, BM, N, g, scratch);
    tu_quotient(fd_y, p_y, m_y, EPS_FD, ny);
    mt_conv_rforward(an_y, x, rx, w, vw, VB, N, g, scratch);
    snprintf(label, sizeof label, "%s rforward vs FD of forward", tag);
    tu_check(label, tu_rel_diff(an_y, fd_y, ny), TOL_FD);

    /* rx NULL: x stays put */
    mt_conv_forward(p_y, x, wp, BP, N, g, scratch);
    mt_conv_forward(m_y, x, wm, BM, N, g, scratch);
    tu_quotient(fd_y, p_y, m_y, EPS_FD, ny);
    mt_conv_rforward(an_y, x, NULL, w, vw, VB, N, g, scratch);
    snprintf(label, sizeof label, "%s rforward rx=NULL vs FD", tag);
    tu_check(label, tu_rel_diff(an_y, fd_y, ny), TOL_FD);

    /* rbackward: d/dε backward(dy + ε·rdy, x + ε·rx, w + ε·vw) */
    tu_moved(dyp, c, EPS_FD, rdy, ny), tu_moved(dym, c, -EPS_FD, rdy, ny);
    mt_conv_backward(p_x, p_w, PB, dyp, xp, wp, N, g, scratch);
    mt_conv_backward(m_x, m_w, MB, dym, xm, wm, N, g, scratch);
    tu_quotient(fd_x, p_x, m_x, EPS_FD, nx);
    tu_quotient(fd_w, p_w, m_w, EPS_FD, nw);
    tu_quotient(fd_b, p_b, m_b, EPS_FD, s.bias ? F : 0);
    mt_conv_rbackward(an_x, an_w, ANB, c, rdy, x, rx, w, vw, N, g, scratch);
    snprintf(label, sizeof label, "%s rbackward rdx vs FD of backward", tag);
    tu_check(label, tu_rel_diff(an_x, fd_x, nx), TOL_FD);
    snprintf(label, sizeof label, "%s rbackward rdw vs FD of backward", tag);
    tu_check(label, tu_rel_diff(an_w, fd_w, nw), TOL_FD);
    if (s.bias) {
        snprintf(label, sizeof label, "%s rbackward rdb vs FD of backward", tag);
        tu_check(label, tu_rel_diff(an_b, fd_b, F), TOL_FD);
    }

    /* rx NULL (x fixed) and rdx NULL */
    mt_conv_backward(NULL, p_w, PB, dyp, x, wp, N, g, scratch);
    mt_conv_backward(NULL, m_w, MB, dym, x, wm, N, g, scratch);
    tu_quotient(fd_w, p_w, m_w, EPS_FD, nw);
    mt_conv_rbackward(NULL, an_w, ANB, c, rdy, x, NULL, w, vw, N, g, scratch);
    snprintf(label, sizeof label, "%s rbackward rx=rdx=NULL rdw vs FD", tag);
    tu_check(label, tu_rel_diff(an_w, fd_w, nw), TOL_FD);

    FREE_ALL(x, w, b, c, y, scratch_buf, rx, vw, vb, rdy, xp, wp, bp, dyp, xm, wm, bm, dym, an_x, an_w, an_b, an_y,
             fd_x, fd_w, fd_b, fd_y, p_x, p_w, p_b, p_y, m_x, m_w, m_b, m_y);
}

/* ---- conv geometry -------------------------------------------------------------------- */

/* mt_conv_geom_init against PyTorch's output size ⌊(H + 2p − k)/s⌋ + 1, and its refusals. */
/* The matrix-product work count (common.h) that `train` reports: a conv forward is one product
 * of [F, C·k²] by [C·k², N·Ho·Wo]; a backward with dw and dx is two; without dx (a first layer), one. */
static void check_flop_count(void)
{
    mt_conv_geom g;
    mt_conv_geom_init(&g, 3, 6, 5, 4, 3, 1, 1);
    const int N = 2;
    const double product = 2.0 * g.F * g.C * g.k * g.k * g.Ho * g.Wo * N;
    float *x = tu_vec((size_t)N * g.C * g.H * g.W), *w = tu_vec((size_t)g.F * g.C * 9), *b = tu_vec(g.F);
    float *y = tu_vec((size_t)N * g.F * g.Ho * g.Wo), *dx = tu_vec((size_t)N * g.C * g.H * g.W);
    float *dw = tu_vec((size_t)g.F * g.C * 9), *db = tu_vec(g.F), *scratch = tu_vec(mt_conv_scratch_floats(N, &g));
    double c0 = mt_flops_count();
    mt_conv_forward(y, x, w, b, N, &g, scratch);
    const double fwd = mt_flops_count() - c0;
    c0 = mt_flops_count();
    mt_conv_backward(dx, dw, db, y, x, w, N, &g, scratch);
    const double bwd = mt_flops_count() - c0;
    c0 = mt_flops_count();
    mt_conv_backward(NULL, dw, db, y, x, w, N, &g, scratch);
    const double first = mt_flops_count() - c0;
    tu_expect(fwd == product && bwd == 2 * product && first == product,
              "flop count: conv forward 2FCk²HoWoN, backward twice that, once without dx");
    free(x), free(w), free(b), free(y), free(dx), free(dw), free(db), free(scratch);
}

static void check_conv_geom(void)
{
    mt_conv_geom g;
    int ok = mt_conv_geom_init(&g, 3, 7, 6, 5, 3, 2, 1) == 0 && g.Ho == 4 && g.Wo == 3 && g.C == 3 && g.H == 7 &&
             g.W == 6 && g.F == 5 && g.k == 3 && g.stride == 2 && g.pad == 1;
    ok &= mt_conv_geom_init(&g, 64, 84, 84, 64, 3, 1, 1) == 0 && g.Ho == 84 && g.Wo == 84;
    ok &= mt_conv_geom_init(&g, 4, 84, 83, 8, 1, 2, 0) == 0 && g.Ho == 42 && g.Wo == 42;
    ok &= mt_conv_geom_init(&g, 1, 5, 5, 1, 3, 1, 0) == 0 && g.Ho == 3 && g.Wo == 3;
    ok &= mt_conv_geom_init(&g, 1, 1, 1, 1, 3, 3, 2) == 0 && g.Ho == 1 && g.Wo == 1;
    tu_expect(ok, "conv geom: Ho, Wo = (H + 2p - k)/s + 1 (7x6 k3 s2 p1 -> 4x3; 84 k1 s2 -> 42; 5 k3 p0 -> 3)");
    int bad = 1;
    bad &= mt_conv_geom_init(&g, 0, 5, 5, 1, 3, 1, 1) == -1;  /* C = 0 */
    bad &= mt_conv_geom_init(&g, 1, 5, 5, 0, 3, 1, 1) == -1;  /* F = 0 */
    bad &= mt_conv_geom_init(&g, 1, 5, -1, 1, 3, 1, 1) == -1; /* W < 0 */
    bad &= mt_conv_geom_init(&g, 1, 5, 5, 1, 0, 1, 0) == -1;  /* k = 0 */
    bad &= mt_conv_geom_init(&g, 1, 5, 5, 1, 3, 0, 1) == -1;  /* stride 0 */
    bad &= mt_conv_geom_init(&g, 1, 5, 5, 1, 3, 1, -1) == -1; /* pad < 0 */
    bad &= mt_conv_geom_init(&g, 1, 5, 5, 1, 3, 1, 3) == -1;  /* pad = k */
    bad &= mt_conv_geom_init(&g, 1, 5, 5, 1, 1, 1, 1) == -1;  /* pad = k (1×1) */
    bad &= mt_conv_geom_init(&g, 1, 1, 5, 1, 3, 1, 0) == -1;  /* kernel taller than the plane */
    bad &= mt_conv_geom_init(&g, 1, 5, 2, 1, 5, 2, 1) == -1;  /* kernel wider than the padded plane */
    tu_expect(bad && g.Ho == 0 && g.k == 0, "conv geom: bad sizes, pad >= k, empty output -> -1 (g zeroed)");

    /* the 1×1 fast path: one pass, no scratch; a strided 1×1 still goes through im2col */
    mt_conv_geom_init(&g, 640, 5, 5, 640, 1, 1, 0);
    tu_expect(mt_conv_chunk_images(75, &g) == 75 && mt_conv_scratch_floats(75, &g) == 0,
              "conv 1x1 s1 p0: one chunk of all N images, 0 scratch floats");
    mt_conv_geom_init(&g, 3, 8, 8, 4, 1, 2, 0);
    tu_expect(mt_conv_scratch_floats(2, &g) == (size_t)3 * 4 * 4 * 2, "conv 1x1 s2: im2col scratch C*Ho*Wo*N");
}

/* ---- global average pool -------------------------------------------------------------- */

typedef struct {
    int N, C, HW;
    float *x, *y;
    const float *c; /* probe weights [N,C] */
} gap_ctx;

static double gap_probe(void *p)
{
    gap_ctx *k = p;
    mt_gap_forward(k->y, k->x, k->N, k->C, k->HW);
    return tu_probe(k->c, k->y, (size_t)k->N * k->C);
}

/* Forward against a plain loop (in long double, summing each plane backwards), backward as
 * the adjoint of forward and against FD. */
static void check_gap(int N, int C, int HW, uint64_t seed)
{
    const size_t nx = (size_t)C * N * HW, ny = (size_t)N * C;
    float *x = tu_vec(nx), *y = tu_vec(ny), *ref = tu_vec(ny), *bnd = tu_vec(ny), *dy = tu_vec(ny), *dx = tu_vec(nx);
    float *fd = tu_vec(nx);
    char tag[48], label[128];
    snprintf(tag, sizeof tag, "gap N=%d C=%d HW=%d", N, C, HW);
    tu_random(x, nx, -1, 1, seed, 81);
    tu_random(dy, ny, -1, 1, seed, 82);

    tu_poison(y, ny);
    mt_gap_forward(y, x, N, C, HW);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            long double s = 0, a = 0;
            for (int i = HW - 1; i >= 0; i--) {
                s += x[((size_t)c * N + n) * HW + i];
                a += fabsf(x[((size_t)c * N + n) * HW + i]);
            }
            ref[(size_t)n * C + c] = (float)(s / HW);
            bnd[(size_t)n * C + c] = (float)(a / HW);
        }
    snprintf(label, sizeof label, "%s forward = loop mean, y[n,c] of plane (c,n)", tag);
    tu_check(label, tu_bounded_diff(y, ref, bnd, ny), tu_sum_tol(1));

    /* <dy, gap(x)> = <gap_backward(dy), x>. Each y and each dx carries one float rounding
     * (≤ u of Σ|x|/HW, of |dy|/HW), so the two sides differ by ≤ 2u·B, B = Σ|dy|·|x|/HW,
     * plus double sums (~n·2^-53): tolerance 4u relative to B. */
    tu_poison(dx, nx);
    mt_gap_backward(dx, dy, N, C, HW);
    double lhs = 0, rhs = 0, B = 0;
    for (size_t j = 0; j < ny; j++) lhs += (double)dy[j] * y[j];
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                const size_t at = ((size_t)c * N + n) * HW + i;
                rhs += (double)dx[at] * x[at];
                B += fabs((double)dy[(size_t)n * C + c] * x[at]) / HW;
            }
    snprintf(label, sizeof label, "%s backward is the adjoint: |<dy,gap x> - <gap' dy,x>| / B", tag);
    tu_check(label, fabs(lhs - rhs) / B, 4 * UNIT_ROUNDOFF);

    /* backward(dy) against FD of the probe Σ dy⊙gap(x): linear, so exact up to rounding */
    gap_ctx k = {N, C, HW, x, y, dy};
    fd_gradient(x, nx, EPS_FD, gap_probe, &k, fd);
    snprintf(label, sizeof label, "%s backward vs FD", tag);
    tu_check(label, tu_rel_diff(dx, fd, nx), TOL_FD);

    FREE_ALL(x, y, ref, bnd, dy, dx, fd);
}

/* ---- batchnorm ------------------------------------------------------------------------ */

/* Inputs with a per-channel offset and scale (so μ and s matter): x = o_c + a_c·U(−1, 1). */
static void bn_input(float *x, int C, int M, uint64_t seed, uint32_t tag)
{
    tu_random(x, (size_t)C * M, -1, 1, seed, tag);
    for (int c = 0; c < C; c++)
        for (int j = 0; j < M; j++) x[(size_t)c * M + j] = 0.7f * (float)c - 0.5f + (0.5f + 0.4f * c) * x[(size_t)c * M + j];
}

static double max_rel_stat(const float *got, const float *want, int n)
{
    double worst = 0.0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]) / fmax(fabs((double)want[i]), 1e-30);
        if (!(d <= worst)) worst = d;
    }
    return worst;
}

static void check_bn_fast_vs_ref(int C, int M, uint64_t seed)
{
    const size_t n = (size_t)C * M;
    float *x = tu_vec(n), *g = tu_vec(C), *be = tu_vec(C), *dy = tu_vec(n);
    float *rx = tu_vec(n), *vg = tu_vec(C), *vbe = tu_vec(C), *rdy = tu_vec(n);
    float *f_y = tu_vec(n), *r_y = tu_vec(n), *f_st = tu_vec(2 * C), *r_st = tu_vec(2 * C), *zero_st = tu_vec(2 * C);
    float *f_dx = tu_vec(n), *r_dx = tu_vec(n), *f_dg = tu_vec(C), *r_dg = tu_vec(C), *f_db = tu_vec(C), *r_db = tu_vec(C);
    float *f_rst = tu_vec(2 * C), *r_rst = tu_vec(2 * C);
    char tag[32], label[128];
    snprintf(tag, sizeof tag, "bn C=%d M=%d", C, M);

    bn_input(x, C, M, seed, 21);
    tu_random(g, C, 0.5f, 1.5f, seed, 22);
    tu_random(be, C, -1, 1, seed, 23);
    tu_random(dy, n, -1, 1, seed, 24);
    tu_random(rx, n, -1, 1, seed, 25);
    tu_random(vg, C, -1, 1, seed, 26);
    tu_random(vbe, C, -1, 1, seed, 27);
    tu_random(rdy, n, -1, 1, seed, 28);
    memset(zero_st, 0, 2 * C * sizeof *zero_st);

    tu_poison(f_y, n), tu_poison(f_st, 2 * C);
    mt_bn_forward(f_y, f_st, x, g, be, C, M);
    mt_bn_forward_ref(r_y, r_st, x, g, be, C, M);
    snprintf(label, sizeof label, "%s forward stats (mu, s) fast = ref (relative)", tag);
    tu_check(label, max_rel_stat(f_st, r_st, 2 * C), 4 * UNIT_ROUNDOFF);
    snprintf(label, sizeof label, "%s forward y fast = ref", tag);
    tu_check(label, tu_rel_diff(f_y, r_y, n), TOL_DOUBLE_REF);

    /* every later pass of both twins takes the fast forward's float statistics */
    tu_poison(f_dx, n), tu_poison(f_dg, C), tu_poison(f_db, C);
    mt_bn_backward(f_dx, f_dg, f_db, dy, x, f_st, g, C, M);
    mt_bn_backward_ref(r_dx, r_dg, r_db, dy, x, f_st, g, C, M);
    snprintf(label, sizeof label, "%s backward dx fast = ref", tag);
    tu_check(label, tu_rel_diff(f_dx, r_dx, n), TOL_DOUBLE_REF);
    snprintf(label, sizeof label, "%s backward dgamma, dbeta fast = ref", tag);
    tu_check(label, fmax(tu_rel_diff(f_dg, r_dg, C), tu_rel_diff(f_db, r_db, C)), TOL_DOUBLE_REF);

    /* dx NULL: dγ, dβ unchanged; dγ NULL: dx unchanged, dβ untouched */
    float *keep = tu_vec(n);
    memcpy(keep, f_dg, C * sizeof *keep);
    tu_poison(f_dg, C);
    mt_bn_backward(NULL, f_dg, f_db, dy, x, f_st, g, C, M);
    snprintf(label, sizeof label, "%s backward dx=NULL: same dgamma", tag);
    tu_expect(all_equal(f_dg, keep, C), label);
    memcpy(keep, f_dx, n * sizeof *keep);
    for (int c = 0; c < C; c++) f_db[c] = 12345.0f;
    tu_poison(f_dx, n);
    mt_bn_backward(f_dx, NULL, f_db, dy, x, f_st, g, C, M);
    int untouched = 1;
    for (int c = 0; c < C; c++) untouched &= f_db[c] == 12345.0f;
    snprintf(label, sizeof label, "%s backward dgamma=NULL: same dx, dbeta untouched", tag);
    tu_expect(untouched && all_equal(f_dx, keep, n), label);

    tu_poison(f_y, n), tu_poison(f_rst, 2 * C);
    mt_bn_rforward(f_y, f_rst, x, rx, f_st, g, vg, vbe, C, M);
    mt_bn_rforward_ref(r_y, r_rst, x, rx, f_st, g, vg, vbe, C, M);
    snprintf(label, sizeof label, "%s rforward ry fast = ref", tag);
    tu_check(label, tu_rel_diff(f_y, r_y, n), TOL_DOUBLE_REF);
    snprintf(label, sizeof label, "%s rforward rstats fast = ref (per half)", tag);
    tu_check(label, fmax(tu_rel_diff(f_rst, r_rst, C), tu_rel_diff(f_rst + C, r_rst + C, C)), TOL_DOUBLE_REF);

    tu_poison(f_dx, n), tu_poison(f_dg, C), tu_poison(f_db, C);
    mt_bn_rbackward(f_dx, f_dg, f_db, dy, rdy, x, rx, f_st, f_rst, g, vg, C, M);
    mt_bn_rbackward_ref(r_dx, r_dg, r_db, dy, rdy, x, rx, f_st, f_rst, g, vg, C, M);
    snprintf(label, sizeof label, "%s rbackward rdx fast = ref", tag);
    tu_check(label, tu_rel_diff(f_dx, r_dx, n), TOL_DOUBLE_REF);
    snprintf(label, sizeof label, "%s rbackward rdgamma, rdbeta fast = ref", tag);
    tu_check(label, fmax(tu_rel_diff(f_dg, r_dg, C), tu_rel_diff(f_db, r_db, C)), TOL_DOUBLE_REF);

    /* rx NULL and vβ NULL: rstats exactly zero, and the same as the passes on zeros */
    float *zx = tu_vec(n), *zb = tu_vec(C);
    memset(zx, 0, n * sizeof *zx), memset(zb, 0, C * sizeof *zb);
    tu_poison(f_y, n), tu_poison(f_rst, 2 * C);
    mt_bn_rforward(f_y, f_rst, x, NULL, f_st, g, vg, NULL, C, M);
    mt_bn_rforward_ref(r_y, r_rst, x, zx, f_st, g, vg, zb, C, M);
    snprintf(label, sizeof label, "%s rforward rx=vbeta=NULL: rstats = 0", tag);
    tu_expect(all_zero(f_rst, 2 * C) && all_zero(r_rst, 2 * C), label);
    snprintf(label, sizeof label, "%s rforward rx=vbeta=NULL = ref on 0", tag);
    tu_check(label, tu_rel_diff(f_y, r_y, n), TOL_DOUBLE_REF);
    tu_poison(f_dx, n), tu_poison(f_dg, C), tu_poison(f_db, C);
    mt_bn_rbackward(f_dx, f_dg, f_db, dy, rdy, x, NULL, f_st, zero_st, g, vg, C, M);
    mt_bn_rbackward_ref(r_dx, r_dg, r_db, dy, rdy, x, zx, f_st, zero_st, g, vg, C, M);
    snprintf(label, sizeof label, "%s rbackward rx=NULL = ref on 0", tag);
    tu_check(label, fmax(tu_rel_diff(f_dx, r_dx, n), fmax(tu_rel_diff(f_dg, r_dg, C), tu_rel_diff(f_db, r_db, C))),
             TOL_DOUBLE_REF);
    memcpy(keep, f_dg, C * sizeof *keep);
    tu_poison(f_dg, C);
    mt_bn_rbackward(NULL, f_dg, f_db, dy, rdy, x, NULL, f_st, zero_st, g, vg, C, M);
    snprintf(label, sizeof label, "%s rbackward rdx=NULL: same rdgamma", tag);
    tu_expect(all_equal(f_dg, keep, C), label);

    FREE_ALL(x, g, be, dy, rx, vg, vbe, rdy, f_y, r_y, f_st, r_st, zero_st, f_dx, r_dx, f_dg, r_dg, f_db, r_db,
             f_rst, r_rst, keep, zx, zb);
}

typedef struct {
    int C, M;
    float *x, *g, *be, *y, *st;
    const float *c;
} bn_ctx;

static double bn_probe(void *p)
{
    bn_ctx *k = p;
    mt_bn_forward(k->y, k->st, k->x, k->g, k->be, k->C, k->M);
    return tu_probe(k->c, k->y, (size_t)k->C * k->M);
}

static void check_bn_fd(int C, int M, uint64_t seed)
{
    const size_t n = (size_t)C * M;
    float *x = tu_vec(n), *g = tu_vec(C), *be = tu_vec(C), *c = tu_vec(n), *y = tu_vec(n), *st = tu_vec(2 * C), *rst = tu_vec(2 * C);
    float *rx = tu_vec(n), *vg = tu_vec(C), *vbe = tu_vec(C), *rdy = tu_vec(n);
    float *xp = tu_vec(n), *gp = tu_vec(C), *bp = tu_vec(C), *dyp = tu_vec(n), *stp = tu_vec(2 * C);
    float *xm = tu_vec(n), *gm = tu_vec(C), *bm = tu_vec(C), *dym = tu_vec(n), *stm = tu_vec(2 * C);
    float *an_x = tu_vec(n), *an_g = tu_vec(C), *an_b = tu_vec(C), *fd_x = tu_vec(n), *fd_g = tu_vec(C), *fd_b = tu_vec(C);
    float *p_x = tu_vec(n), *p_g = tu_vec(C), *p_b = tu_vec(C), *m_x = tu_vec(n), *m_g = tu_vec(C), *m_b = tu_vec(C);
    char tag[32], label[128];
    snprintf(tag, sizeof tag, "bn C=%d M=%d", C, M);

    bn_input(x, C, M, seed, 31);
    tu_random(g, C, 0.5f, 1.5f, seed, 32);
    tu_random(be, C, -1, 1, seed, 33);
    tu_random(c, n, -1, 1, seed, 34);
    tu_random(rx, n, -1, 1, seed, 35);
    /* a direction partly along x, so that Rσ² and Rs are of order one (for rx independent
     * of x they are O(1/√M) and the FD of s would measure mostly its truncation error) */
    for (size_t i = 0; i < n; i++) rx[i] += 0.5f * x[i];
    tu_random(vg, C, -1, 1, seed, 36);
    tu_random(vbe, C, -1, 1, seed, 37);
    tu_random(rdy, n, -1, 1, seed, 38);

    bn_ctx k = {C, M, x, g, be, y, st, c};
    mt_bn_forward(y, st, x, g, be, C, M);
    mt_bn_backward(an_x, an_g, an_b, c, x, st, g, C, M);
    fd_gradient(x, n, EPS_FD, bn_probe, &k, fd_x);
    fd_gradient(g, C, EPS_FD, bn_probe, &k, fd_g);
    fd_gradient(be, C, EPS_FD, bn_probe, &k, fd_b);
    mt_bn_forward(y, st, x, g, be, C, M); /* the base point's statistics again */
    snprintf(label, sizeof label, "%s backward dx vs FD", tag);
    tu_check(label, tu_rel_diff(an_x, fd_x, n), TOL_FD);
    snprintf(label, sizeof label, "%s backward dgamma vs FD", tag);
    tu_check(label, tu_rel_diff(an_g, fd_g, C), TOL_FD);
    snprintf(label, sizeof label, "%s backward dbeta vs FD", tag);
    tu_check(label, tu_rel_diff(an_b, fd_b, C), TOL_FD);

    /* rforward, and its statistics, against FD of forward along (rx, vγ, vβ) */
    float *an_y = tu_vec(n), *fd_y = tu_vec(n), *p_y = tu_vec(n), *m_y = tu_vec(n), *fd_st = tu_vec(2 * C);
    tu_moved(xp, x, EPS_BN_DIR, rx, n), tu_moved(gp, g, EPS_BN_DIR, vg, C), tu_moved(bp, be, EPS_BN_DIR, vbe, C);
    tu_moved(xm, x, -EPS_BN_DIR, rx, n), tu_moved(gm, g, -EPS_BN_DIR, vg, C), tu_moved(bm, be, -EPS_BN_DIR, vbe, C);
    mt_bn_forward(p_y, stp, xp, gp, bp, C, M);
    mt_bn_forward(m_y, stm, xm, gm, bm, C, M);
    tu_quotient(fd_y, p_y, m_y, EPS_BN_DIR, n);
    tu_quotient(fd_st, stp, stm, EPS_BN_DIR, 2 * C);
    mt_bn_rforward(an_y, rst, x, rx, st, g, vg, vbe, C, M);
    snprintf(label, sizeof label, "%s rforward vs FD of forward", tag);
    tu_check(label, tu_rel_diff(an_y, fd_y, n), TOL_FD);
    snprintf(label, sizeof label, "%s rforward rstats vs FD of stats (per half)", tag);
    tu_check(label, fmax(tu_rel_diff(rst, fd_st, C), tu_rel_diff(rst + C, fd_st + C, C)), TOL_FD);

    /* rbackward against FD of backward(dy + ε·rdy, x + ε·rx, γ + ε·vγ) at the moved
     * statistics */
    tu_moved(dyp, c, EPS_BN_DIR, rdy, n), tu_moved(dym, c, -EPS_BN_DIR, rdy, n);
    mt_bn_backward(p_x, p_g, p_b, dyp, xp, stp, gp, C, M);
    mt_bn_backward(m_x, m_g, m_b, dym, xm, stm, gm, C, M);
    tu_quotient(fd_x, p_x, m_x, EPS_BN_DIR, n);
    tu_quotient(fd_g, p_g, m_g, EPS_BN_DIR, C);
    tu_quotient(fd_b, p_b, m_b, EPS_BN_DIR, C);
    mt_bn_rbackward(an_x, an_g, an_b, c, rdy, x, rx, st, rst, g, vg, C, M);
    snprintf(label, sizeof label, "%s rbackward rdx vs FD of backward", tag);
    tu_check(label, tu_rel_diff(an_x, fd_x, n), TOL_FD);
    snprintf(label, sizeof label, "%s rbackward rdgamma vs FD of backward", tag);
    tu_check(label, tu_rel_diff(an_g, fd_g, C), TOL_FD);
    snprintf(label, sizeof label, "%s rbackward rdbeta vs FD of backward", tag);
    tu_check(label, tu_rel_diff(an_b, fd_b, C), TOL_FD);

    FREE_ALL(x, g, be, c, y, st, rst, rx, vg, vbe, rdy, xp, gp, bp, dyp, stp, xm, gm, bm, dym, stm, an_x, an_g,
             an_b, fd_x, fd_g, fd_b, p_x, p_g, p_b, m_x, m_g, m_b, an_y, fd_y, p_y, m_y, fd_st);
}

/* ---- max-pool ------------------------------------------------------------------------- */

/* x[n] = 0.01·π(i) − offset for a random permutation π: all values distinct, at least 0.01
 * apart, so a move by ≤ EPS_POOL·|direction| ≤ 1e-3 never changes a window's maximum. */
static void distinct_values(float *x, size_t n, uint64_t seed, uint32_t tag)
{
    float *u = tu_vec(n);
    size_t *perm = mt_malloc(n * sizeof *perm);
    tu_random(u, n, 0, 1, seed, tag);
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = n - 1; i > 0; i--) { /* Fisher–Yates */
        size_t j = (size_t)(u[i] * (float)(i + 1));
        if (j > i) j = i;
        size_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (size_t i = 0; i < n; i++) x[i] = 0.01f * (float)perm[i] - 0.005f * (float)n;
    free(perm);
    free(u);
}

typedef struct {
    int P, H, W;
    float *x, *y;
    int32_t *am;
    const float *c;
} pool_ctx;

static double pool_probe(void *p)
{
    pool_ctx *k = p;
    mt_maxpool_forward(k->y, k->am, k->x, k->P, k->H, k->W);
    return tu_probe(k->c, k->y, (size_t)k->P * (k->H / 2) * (k->W / 2));
}

static void check_maxpool(int P, int H, int W, uint64_t seed)
{
    const int Ho = H / 2, Wo = W / 2;
    const size_t nx = (size_t)P * H * W, ny = (size_t)P * Ho * Wo;
    float *x = tu_vec(nx), *y = tu_vec(ny), *c = tu_vec(ny), *rx = tu_vec(nx), *rdy = tu_vec(ny);
    float *xp = tu_vec(nx), *xm = tu_vec(nx), *yp = tu_vec(ny), *ym = tu_vec(ny), *cp = tu_vec(ny), *cm = tu_vec(ny);
    float *an_x = tu_vec(nx), *fd_x = tu_vec(nx), *an_y = tu_vec(ny), *fd_y = tu_vec(ny), *dxp = tu_vec(nx), *dxm = tu_vec(nx);
    int32_t *am = mt_malloc(ny * sizeof *am), *amp = mt_malloc(ny * sizeof *am), *amm = mt_malloc(ny * sizeof *am);
    char tag[40], label[128];
    snprintf(tag, sizeof tag, "maxpool P=%d %dx%d", P, H, W);

    distinct_values(x, nx, seed, 41);
    tu_random(c, ny, -1, 1, seed, 42);
    tu_random(rx, nx, -1, 1, seed, 43);
    tu_random(rdy, ny, -1, 1, seed, 44);

    /* forward: the maximum of each window (floor: an odd last row / column is ignored) */
    mt_maxpool_forward(y, am, x, P, H, W);
    int exact = 1;
    for (int p = 0; p < P; p++)
        for (int i = 0; i < Ho; i++)
            for (int j = 0; j < Wo; j++) {
                const float *xp0 = x + (size_t)p * H * W;
                float m = -INFINITY;
                int where = -1;
                for (int a = 0; a < 2; a++)
                    for (int b2 = 0; b2 < 2; b2++)
                        if (xp0[(2 * i + a) * W + 2 * j + b2] > m) m = xp0[(2 * i + a) * W + 2 * j + b2], where = (2 * i + a) * W + 2 * j + b2;
                const size_t o = ((size_t)p * Ho + i) * Wo + j;
                exact &= y[o] == m && am[o] == where;
            }
    snprintf(label, sizeof label, "%s forward = window maxima and their indices", tag);
    tu_expect(exact, label);

    pool_ctx k = {P, H, W, x, y, am, c};
    mt_maxpool_backward(an_x, c, am, P, H, W);
    fd_gradient(x, nx, EPS_POOL, pool_probe, &k, fd_x);
    mt_maxpool_forward(y, am, x, P, H, W);
    snprintf(label, sizeof label, "%s backward vs FD", tag);
    tu_check(label, tu_rel_diff(an_x, fd_x, nx), TOL_FD);

    tu_moved(xp, x, EPS_POOL, rx, nx), tu_moved(xm, x, -EPS_POOL, rx, nx);
    mt_maxpool_forward(yp, amp, xp, P, H, W);
    mt_maxpool_forward(ym, amm, xm, P, H, W);
    snprintf(label, sizeof label, "%s FD points keep the argmax", tag);
    tu_expect(memcmp(amp, am, ny * sizeof *am) == 0 && memcmp(amm, am, ny * sizeof *am) == 0, label);
    tu_quotient(fd_y, yp, ym, EPS_POOL, ny);
    mt_maxpool_rforward(an_y, rx, am, P, H, W);
    snprintf(label, sizeof label, "%s rforward vs FD of forward", tag);
    tu_check(label, tu_rel_diff(an_y, fd_y, ny), TOL_FD);

    tu_moved(cp, c, EPS_POOL, rdy, ny), tu_moved(cm, c, -EPS_POOL, rdy, ny);
    mt_maxpool_backward(dxp, cp, amp, P, H, W);
    mt_maxpool_backward(dxm, cm, amm, P, H, W);
    tu_quotient(fd_x, dxp, dxm, EPS_POOL, nx);
    for (size_t i = 0; i < nx; i++) an_x[i] = 7.0f; /* stale values must be overwritten */
    mt_maxpool_rbackward(an_x, rdy, am, P, H, W);
    snprintf(label, sizeof label, "%s rbackward vs FD of backward", tag);
    tu_check(label, tu_rel_diff(an_x, fd_x, nx), TOL_FD);

    /* rbackward and backward are the same map; the dropped odd row / column gets zero */
    mt_maxpool_backward(dxp, rdy, am, P, H, W);
    int zeros_outside = 1;
    for (int p = 0; p < P; p++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++)
                if (i >= 2 * Ho || j >= 2 * Wo) zeros_outside &= an_x[((size_t)p * H + i) * W + j] == 0.0f;
    snprintf(label, sizeof label, "%s rbackward = backward on rdy; 0 outside the windows", tag);
    tu_expect(all_equal(an_x, dxp, nx) && zeros_outside, label);

    FREE_ALL(x, y, c, rx, rdy, xp, xm, yp, ym, cp, cm, an_x, fd_x, an_y, fd_y, dxp, dxm);
    free(am), free(amp), free(amm);
}

/* Ties pick the first maximum in row-major window order. */
/* The fused relu + max-pool passes against mt_relu_* followed by mt_maxpool_*: the same bits,
 * on inputs where many windows hold no positive value (and odd sizes). */
static void check_maxpool_relu(int P, int H, int W, uint64_t seed)
{
    const int Ho = H / 2, Wo = W / 2;
    const size_t nx = (size_t)P * H * W, ny = (size_t)P * Ho * Wo;
    float *x = tu_vec(nx), *rx = tu_vec(nx), *dy = tu_vec(ny), *r = tu_vec(nx), *y1 = tu_vec(ny), *y2 = tu_vec(ny);
    float *d1 = tu_vec(nx), *d2 = tu_vec(nx), *t = tu_vec(nx), *ry1 = tu_vec(ny), *ry2 = tu_vec(ny);
    int32_t *a1 = malloc(ny * sizeof *a1), *a2 = malloc(ny * sizeof *a2);
    tu_random(x, nx, -1.0f, 0.4f, seed, 1); /* mostly negative: windows without a positive value */
    tu_random(rx, nx, -1.0f, 1.0f, seed, 2);
    tu_random(dy, ny, -1.0f, 1.0f, seed, 3);
    for (size_t i = 0; i < nx; i++) d1[i] = d2[i] = 7.0f; /* stale values must be overwritten */
    mt_relu_forward(r, x, (int)nx);
    mt_maxpool_forward(y1, a1, r, P, H, W);
    mt_maxpool_relu_forward(y2, a2, x, P, H, W);
    char label[96];
    snprintf(label, sizeof label, "maxpool+relu P=%d %dx%d forward = relu then pool (bits)", P, H, W);
    tu_expect(memcmp(y1, y2, ny * sizeof *y1) == 0, label);
    mt_maxpool_backward(t, dy, a1, P, H, W);
    mt_relu_backward(d1, t, r, (int)nx);
    mt_maxpool_relu_backward(d2, dy, y2, a2, P, H, W);
    snprintf(label, sizeof label, "maxpool+relu P=%d %dx%d backward = pool then relu backward (bits)", P, H, W);
    tu_expect(memcmp(d1, d2, nx * sizeof *d1) == 0, label);
    mt_relu_rforward(t, rx, r, (int)nx);
    mt_maxpool_rforward(ry1, t, a1, P, H, W);
    mt_maxpool_relu_rforward(ry2, rx, y2, a2, P, H, W);
    snprintf(label, sizeof label, "maxpool+relu P=%d %dx%d rforward = relu then pool rforward (bits)", P, H, W);
    tu_expect(memcmp(ry1, ry2, ny * sizeof *ry1) == 0, label);
    size_t dead = 0;
    for (size_t i = 0; i < ny; i++) dead += y1[i] == 0.0f;
    snprintf(label, sizeof label, "maxpool+relu P=%d %dx%d: windows without a positive value occur (%zu of %zu)", P,
             H, W, dead, ny);
    tu_expect(dead > 0 && dead < ny, label);
    free(x), free(rx), free(dy), free(r), free(y1), free(y2), free(d1), free(d2), free(t), free(ry1), free(ry2);
    free(a1), free(a2);
}

/* The fused batchnorm → relu → max-pool passes against mt_bn_* and mt_maxpool_relu_* on the
 * whole [C,M] arrays: the same bits in all four passes (and with rx NULL), with a negative γ
 * (the window's maximum is then at the smallest input), a γ of 0 (every window ties), odd
 * planes, and many windows without a positive value (β < 0). */
static void check_bn_relu_pool(int C, int N, int H, int W, uint64_t seed)
{
    const int M = N * H * W;
    const size_t nx = (size_t)C * M, ny = (size_t)C * N * (H / 2) * (W / 2);
    float *x = tu_vec(nx), *rx = tu_vec(nx), *dy = tu_vec(ny), *rdy = tu_vec(ny), *g = tu_vec(C), *be = tu_vec(C);
    float *vg = tu_vec(C), *vbe = tu_vec(C), *buf = tu_vec(2 * (size_t)M), *t = tu_vec(nx), *t2 = tu_vec(nx);
    float *y[2], *st[2], *rst[2], *dx[2], *dg[2], *db[2], *ry[2], *rdx[2], *rdg[2], *rdb[2];
    int32_t *am[2];
    for (int k = 0; k < 2; k++) {
        y[k] = tu_vec(ny), ry[k] = tu_vec(ny), dx[k] = tu_vec(nx), rdx[k] = tu_vec(nx);
        st[k] = tu_vec(2 * (size_t)C), rst[k] = tu_vec(2 * (size_t)C);
        dg[k] = tu_vec(C), db[k] = tu_vec(C), rdg[k] = tu_vec(C), rdb[k] = tu_vec(C);
        am[k] = malloc(ny * sizeof *am[k]);
    }
    bn_input(x, C, M, seed, 1);
    tu_random(rx, nx, -1, 1, seed, 2);
    tu_random(dy, ny, -1, 1, seed, 3);
    tu_random(rdy, ny, -1, 1, seed, 4);
    tu_random(g, C, 0.5f, 1.5f, seed, 5);
    tu_random(be, C, -0.8f, 0.2f, seed, 6);
    tu_random(vg, C, -1, 1, seed, 7);
    tu_random(vbe, C, -1, 1, seed, 8);
    g[0] = -g[0];
    if (C > 2) g[2] = 0.0f;
    char tag[48], label[128];
    snprintf(tag, sizeof tag, "bn+relu+pool C=%d N=%d %dx%d", C, N, H, W);
    for (int pass = 0; pass < 2; pass++) { /* pass 1: rx NULL (the R-forward of data-fed layers) */
        const float *rxp = pass ? NULL : rx;
        /* k = 0: the unfused chain */
        mt_bn_forward(t, st[0], x, g, be, C, M);
        mt_maxpool_relu_forward(y[0], am[0], t, C * N, H, W);
        mt_maxpool_relu_backward(t, dy, y[0], am[0], C * N, H, W);
        mt_bn_backward(dx[0], dg[0], db[0], t, x, st[0], g, C, M);
        mt_bn_rforward(t, rst[0], x, rxp, st[0], g, vg, vbe, C, M);
        mt_maxpool_relu_rforward(ry[0], t, y[0], am[0], C * N, H, W);
        mt_maxpool_relu_backward(t, dy, y[0], am[0], C * N, H, W);
        mt_maxpool_relu_backward(t2, rdy, y[0], am[0], C * N, H, W);
        mt_bn_rbackward(rdx[0], rdg[0], rdb[0], t, t2, x, rxp, st[0], rst[0], g, vg, C, M);
        /* k = 1: fused, on poisoned outputs and scratch */
        tu_poison(y[1], ny), tu_poison(dx[1], nx), tu_poison(ry[1], ny), tu_poison(rdx[1], nx);
        tu_poison(buf, 2 * (size_t)M);
        mt_bn_relu_pool_forward(y[1], am[1], st[1], x, g, be, C, N, H, W, buf);
        mt_bn_relu_pool_backward(dx[1], dg[1], db[1], dy, y[1], am[1], x, st[1], g, C, N, H, W, buf);
        mt_bn_relu_pool_rforward(ry[1], rst[1], x, rxp, y[1], am[1], st[1], g, vg, vbe, C, N, H, W, buf);
        mt_bn_relu_pool_rbackward(rdx[1], rdg[1], rdb[1], dy, rdy, y[1], am[1], x, rxp, st[1], rst[1], g, vg, C, N, H,
                                  W, buf);
        const char *what = pass ? " (rx NULL)" : "";
        snprintf(label, sizeof label, "%s%s forward: y, argmax, stats = the chain's (bits)", tag, what);
        tu_expect(!memcmp(y[0], y[1], ny * sizeof(float)) && !memcmp(am[0], am[1], ny * sizeof(int32_t)) &&
                      !memcmp(st[0], st[1], 2 * (size_t)C * sizeof(float)),
                  label);
        snprintf(label, sizeof label, "%s%s backward: dx, dgamma, dbeta = the chain's (bits)", tag, what);
        tu_expect(!memcmp(dx[0], dx[1], nx * sizeof(float)) && !memcmp(dg[0], dg[1], (size_t)C * sizeof(float)) &&
                      !memcmp(db[0], db[1], (size_t)C * sizeof(float)),
                  label);
        snprintf(label, sizeof label, "%s%s rforward: ry, rstats = the chain's (bits)", tag, what);
        tu_expect(!memcmp(ry[0], ry[1], ny * sizeof(float)) && !memcmp(rst[0], rst[1], 2 * (size_t)C * sizeof(float)),
                  label);
        snprintf(label, sizeof label, "%s%s rbackward: rdx, rdgamma, rdbeta = the chain's (bits)", tag, what);
        tu_expect(!memcmp(rdx[0], rdx[1], nx * sizeof(float)) && !memcmp(rdg[0], rdg[1], (size_t)C * sizeof(float)) &&
                      !memcmp(rdb[0], rdb[1], (size_t)C * sizeof(float)),
                  label);
    }
    /* dgamma NULL skips the parameter gradients; dx NULL leaves dx alone */
    tu_poison(dg[1], C);
    memcpy(t, dx[1], nx * sizeof(float));
    mt_bn_relu_pool_backward(dx[1], NULL, NULL, dy, y[1], am[1], x, st[1], g, C, N, H, W, buf);
    mt_bn_relu_pool_backward(NULL, dg[0], db[0], dy, y[1], am[1], x, st[1], g, C, N, H, W, buf);
    snprintf(label, sizeof label, "%s backward with dgamma NULL: the same dx, dgamma untouched", tag);
    tu_expect(!memcmp(t, dx[1], nx * sizeof(float)) && isnan(dg[1][0]), label);
    size_t dead = 0;
    for (size_t i = 0; i < ny; i++) dead += y[0][i] == 0.0f;
    snprintf(label, sizeof label, "%s: windows without a positive value occur (%zu of %zu)", tag, dead, ny);
    tu_expect(dead > 0 && dead < ny, label);
    for (int k = 0; k < 2; k++) {
        free(y[k]), free(ry[k]), free(dx[k]), free(rdx[k]), free(st[k]), free(rst[k]);
        free(dg[k]), free(db[k]), free(rdg[k]), free(rdb[k]), free(am[k]);
    }
    free(x), free(rx), free(dy), free(rdy), free(g), free(be), free(vg), free(vbe), free(buf), free(t), free(t2);
}

static void check_maxpool_ties(void)
{
    /* one 2×4 plane, two windows: [[5,5],[5,5]] → index 0; [[1,7],[7,7]] → index 3 (row 0, col 3) */
    const float x[8] = {5, 5, 1, 7, 5, 5, 7, 7};
    float y[2];
    int32_t am[2];
    mt_maxpool_forward(y, am, x, 1, 2, 4);
    tu_expect(y[0] == 5 && am[0] == 0 && y[1] == 7 && am[1] == 3, "maxpool ties: first maximum in window order");

    /* a 2×40 plane, 20 windows (a full vector and a partial one on AVX-512): all equal, so
     * every window picks its first place; then NaNs, which never replace a value and are
     * never replaced: [NaN,1;2,3] keeps the NaN, [1,NaN;3,2] gives 3 (row 1) */
    float wide[80], yw[20];
    int32_t aw[20];
    for (int i = 0; i < 80; i++) wide[i] = 2.5f;
    mt_maxpool_forward(yw, aw, wide, 1, 2, 40);
    int first = 1;
    for (int j = 0; j < 20; j++) first &= yw[j] == 2.5f && aw[j] == 2 * j;
    tu_expect(first, "maxpool ties on rows of 20 windows: the first place of each");
    wide[34] = NAN, wide[35] = 1, wide[74] = 2, wide[75] = 3; /* window 17 */
    wide[36] = 1, wide[37] = NAN, wide[76] = 3, wide[77] = 2; /* window 18 */
    mt_maxpool_forward(yw, aw, wide, 1, 2, 40);
    tu_expect(isnan(yw[17]) && aw[17] == 34 && yw[18] == 3 && aw[18] == 76,
              "maxpool NaN: kept where it comes first, skipped where it comes later");
}

/* ---- flatten -------------------------------------------------------------------------- */

typedef struct {
    int N, C, HW;
    float *x, *y;
    const float *c;
} flat_ctx;

static double flat_probe(void *p)
{
    flat_ctx *k = p;
    mt_flatten_forward(k->y, k->x, k->N, k->C, k->HW);
    return tu_probe(k->c, k->y, (size_t)k->N * k->C * k->HW);
}

static void check_flatten(int N, int C, int HW, uint64_t seed)
{
    const size_t n = (size_t)N * C * HW;
    float *x = tu_vec(n), *y = tu_vec(n), *back = tu_vec(n), *c = tu_vec(n), *an = tu_vec(n), *fd = tu_vec(n);
    char label[96];
    tu_random(x, n, -1, 1, seed, 51);
    tu_random(c, n, -1, 1, seed, 52);

    /* PyTorch's x.view(N, -1) of an NCHW tensor: row n holds image n's (c, h, w) in order */
    mt_flatten_forward(y, x, N, C, HW);
    int exact = 1;
    for (int nn = 0; nn < N; nn++)
        for (int cc = 0; cc < C; cc++)
            for (int i = 0; i < HW; i++) exact &= y[((size_t)nn * C + cc) * HW + i] == x[((size_t)cc * N + nn) * HW + i];
    mt_flatten_backward(back, y, N, C, HW);
    snprintf(label, sizeof label, "flatten N=%d C=%d HW=%d forward = per-image (c,h,w) rows; backward inverts", N,
             C, HW);
    tu_expect(exact && all_equal(back, x, n), label);

    /* backward is the gradient of the probe (linear: FD exact up to rounding) */
    flat_ctx k = {N, C, HW, x, y, c};
    mt_flatten_backward(an, c, N, C, HW);
    fd_gradient(x, n, EPS_FD, flat_probe, &k, fd);
    snprintf(label, sizeof label, "flatten N=%d C=%d HW=%d backward vs FD", N, C, HW);
    tu_check(label, tu_rel_diff(an, fd, n), TOL_FD);
    FREE_ALL(x, y, back, c, an, fd);
}

/* ---- cross-entropy -------------------------------------------------------------------- */

static void labels_for(float *labels, int N, int K)
{
    for (int n = 0; n < N; n++) labels[n] = (float)((n * 7 + 3) % K);
}

typedef struct {
    int N, K;
    float *z, *probs;
    const float *labels;
} xent_ctx;

static double xent_value(void *p)
{
    xent_ctx *k = p;
    return mt_xent_forward(k->probs, k->z, k->labels, k->N, k->K);
}

static void check_xent(int N, int K, uint64_t seed)
{
    const size_t n = (size_t)N * K;
    float *z = tu_vec(n), *labels = tu_vec(N), *f_p = tu_vec(n), *r_p = tu_vec(n), *rz = tu_vec(n);
    float *f_d = tu_vec(n), *r_d = tu_vec(n), *fd = tu_vec(n), *zp = tu_vec(n), *zm = tu_vec(n), *pp = tu_vec(n), *pm = tu_vec(n);
    float *dp = tu_vec(n), *dm = tu_vec(n);
    char tag[32], label[128];
    snprintf(tag, sizeof tag, "xent N=%d K=%d", N, K);
    tu_random(z, n, -3, 3, seed, 61);
    tu_random(rz, n, -1, 1, seed, 62);
    labels_for(labels, N, K);

    const float L = mt_xent_forward(f_p, z, labels, N, K);
    const float Lr = mt_xent_forward_ref(r_p, z, labels, N, K);
    snprintf(label, sizeof label, "%s forward loss fast = ref (relative)", tag);
    tu_check(label, fabs((double)L - Lr) / fabs((double)Lr), 4 * UNIT_ROUNDOFF);
    snprintf(label, sizeof label, "%s forward probs fast = ref", tag);
    tu_check(label, tu_rel_diff(f_p, r_p, n), TOL_DOUBLE_REF);

    mt_xent_backward(f_d, f_p, labels, N, K);
    mt_xent_backward_ref(r_d, f_p, labels, N, K);
    snprintf(label, sizeof label, "%s backward fast = ref", tag);
    tu_check(label, tu_rel_diff(f_d, r_d, n), TOL_DOUBLE_REF);
    mt_xent_rbackward(f_d, f_p, rz, N, K);
    mt_xent_rbackward_ref(r_d, f_p, rz, N, K);
    snprintf(label, sizeof label, "%s rbackward fast = ref (explicit Jacobian)", tag);
    tu_check(label, tu_rel_diff(f_d, r_d, n), TOL_DOUBLE_REF);

    /* backward against FD of the loss */
    xent_ctx k = {N, K, z, pp, labels};
    mt_xent_backward(f_d, f_p, labels, N, K);
    fd_gradient(z, n, EPS_XENT, xent_value, &k, fd);
    snprintf(label, sizeof label, "%s backward vs FD of forward", tag);
    tu_check(label, tu_rel_diff(f_d, fd, n), TOL_FD);

    /* rbackward against FD of backward along rz (the probs move with z) */
    tu_moved(zp, z, EPS_FD, rz, n), tu_moved(zm, z, -EPS_FD, rz, n);
    mt_xent_forward(pp, zp, labels, N, K);
    mt_xent_forward(pm, zm, labels, N, K);
    mt_xent_backward(dp, pp, labels, N, K);
    mt_xent_backward(dm, pm, labels, N, K);
    tu_quotient(fd, dp, dm, EPS_FD, n);
    mt_xent_rbackward(f_d, f_p, rz, N, K);
    snprintf(label, sizeof label, "%s rbackward vs FD of backward", tag);
    tu_check(label, tu_rel_diff(f_d, fd, n), TOL_FD);

    /* huge logits: the max-subtracted softmax stays finite and shift-invariant */
    for (size_t i = 0; i < n; i++) zp[i] = z[i] + 1000.0f;
    const float Lbig = mt_xent_forward(pp, zp, labels, N, K);
    snprintf(label, sizeof label, "%s logits + 1000: same loss (absolute; float z rounding)", tag);
    tu_check(label, isfinite(Lbig) ? fabs((double)Lbig - L) : INFINITY, 1e-3);

    FREE_ALL(z, labels, f_p, r_p, rz, f_d, r_d, fd, zp, zm, pp, pm, dp, dm);
}

static void check_xent_correct(void)
{
    /* rows: argmax 2 (label 2: right), argmax 0 (label 1: wrong), tie 1/3 → 1 (label 1:
     * right), tie 0/1 → 0 (label 2: wrong). Taking the last maximum would count 1. */
    const float z[16] = {0, 1, 5, 2, 9, 1, 1, 1, 0, 4, 0, 4, 3, 3, -1, 2};
    const float labels[4] = {2, 1, 1, 2};
    tu_expect(mt_xent_correct(z, labels, 4, 4) == 2, "xent correct: argmax per row, first on ties");
}

/* ---- the chain conv → bn → relu → maxpool → flatten → linear → xent ------------------ */

enum { CH_N = 3, CH_C = 2, CH_H = 4, CH_W = 4, CH_F = 2, CH_K = 3 };
enum {
    CH_HW = CH_H * CH_W,
    CH_M = CH_N * CH_HW,                  /* bn values per channel */
    CH_D = CH_F * (CH_H / 2) * (CH_W / 2), /* flattened features */
    /* offsets of the parameter tensors in θ */
    O_W1 = 0,
    O_B1 = O_W1 + CH_F * CH_C * 9,
    O_G = O_B1 + CH_F,
    O_BE = O_G + CH_F,
    O_W2 = O_BE + CH_F,
    O_B2 = O_W2 + CH_K * CH_D,
    CH_P = O_B2 + CH_K
};

typedef struct {
    float x[CH_C * CH_M], labels[CH_N];                       /* data */
    float a1[CH_F * CH_M], st[2 * CH_F], a2[CH_F * CH_M];     /* conv out, bn stats, bn out */
    float a3[CH_F * CH_M], a4[CH_F * CH_M / 4], a5[CH_N * CH_D]; /* relu, pool, flatten */
    float z[CH_N * CH_K], probs[CH_N * CH_K];                 /* logits */
    int32_t am[CH_F * CH_M / 4];                               /* pool argmax */
    float dz[CH_N * CH_K], d5[CH_N * CH_D], d4[CH_F * CH_M / 4], d3[CH_F * CH_M], d2[CH_F * CH_M], d1[CH_F * CH_M];
    float r1[CH_F * CH_M], rst[2 * CH_F], r2[CH_F * CH_M], r3[CH_F * CH_M], r4[CH_F * CH_M / 4], r5[CH_N * CH_D];
    float rz[CH_N * CH_K], rdz[CH_N * CH_K], rd5[CH_N * CH_D], rd4[CH_F * CH_M / 4], rd3[CH_F * CH_M];
    float rd2[CH_F * CH_M], rd1[CH_F * CH_M];
    mt_conv_geom geom; /* the conv: 3×3, stride 1, padding 1 */
    float *scratch;
    float *theta;                                     /* where FD moves the parameters */
    unsigned char mask0[CH_F * CH_M];                 /* relu mask and argmax at the base */
    int32_t am0[CH_F * CH_M / 4];
    int kinks;                                        /* FD evaluations that left them */
    double relu_margin, pool_gap;                     /* distances to the kinks at the base */
} chain;

static float chain_forward(chain *ch, const float *th)
{
    mt_conv_forward(ch->a1, ch->x, th + O_W1, th + O_B1, CH_N, &ch->geom, ch->scratch);
    mt_bn_forward(ch->a2, ch->st, ch->a1, th + O_G, th + O_BE, CH_F, CH_M);
    mt_relu_forward(ch->a3, ch->a2, CH_F * CH_M);
    mt_maxpool_forward(ch->a4, ch->am, ch->a3, CH_F * CH_N, CH_H, CH_W);
    mt_flatten_forward(ch->a5, ch->a4, CH_N, CH_F, CH_HW / 4);
    mt_linear_forward(ch->z, ch->a5, th + O_W2, th + O_B2, CH_N, CH_D, CH_K);
    return mt_xent_forward(ch->probs, ch->z, ch->labels, CH_N, CH_K);
}

static void chain_backward(chain *ch, const float *th, float *g)
{
    mt_xent_backward(ch->dz, ch->probs, ch->labels, CH_N, CH_K);
    mt_linear_backward(ch->d5, g + O_W2, g + O_B2, ch->dz, ch->a5, th + O_W2, CH_N, CH_D, CH_K);
    mt_flatten_backward(ch->d4, ch->d5, CH_N, CH_F, CH_HW / 4);
    mt_maxpool_backward(ch->d3, ch->d4, ch->am, CH_F * CH_N, CH_H, CH_W);
    mt_relu_backward(ch->d2, ch->d3, ch->a2, CH_F * CH_M);
    mt_bn_backward(ch->d1, g + O_G, g + O_BE, ch->d2, ch->a1, ch->st, th + O_G, CH_F, CH_M);
    mt_conv_backward(NULL, g + O_W1, g + O_B1, ch->d1, ch->x, th + O_W1, CH_N, &ch->geom, ch->scratch);
}

/* hv = H(θ)·v: forward, backward, then the R-passes in the same order */
static void chain_hvp(chain *ch, const float *th, const float *v, float *g, float *hv)
{
    chain_forward(ch, th);
    chain_backward(ch, th, g);
    mt_conv_rforward(ch->r1, ch->x, NULL, th + O_W1, v + O_W1, v + O_B1, CH_N, &ch->geom, ch->scratch);
    mt_bn_rforward(ch->r2, ch->rst, ch->a1, ch->r1, ch->st, th + O_G, v + O_G, v + O_BE, CH_F, CH_M);
    mt_relu_rforward(ch->r3, ch->r2, ch->a2, CH_F * CH_M);
    mt_maxpool_rforward(ch->r4, ch->r3, ch->am, CH_F * CH_N, CH_H, CH_W);
    mt_flatten_forward(ch->r5, ch->r4, CH_N, CH_F, CH_HW / 4);
    mt_linear_rforward(ch->rz, ch->a5, ch->r5, th + O_W2, v + O_W2, v + O_B2, CH_N, CH_D, CH_K);
    mt_xent_rbackward(ch->rdz, ch->probs, ch->rz, CH_N, CH_K);
    mt_linear_rbackward(ch->rd5, hv + O_W2, hv + O_B2, ch->dz, ch->rdz, ch->a5, ch->r5, th + O_W2, v + O_W2, CH_N,
                        CH_D, CH_K);
    mt_flatten_backward(ch->rd4, ch->rd5, CH_N, CH_F, CH_HW / 4);
    mt_maxpool_rbackward(ch->rd3, ch->rd4, ch->am, CH_F * CH_N, CH_H, CH_W);
    mt_relu_rbackward(ch->rd2, ch->rd3, ch->a2, CH_F * CH_M);
    mt_bn_rbackward(ch->rd1, hv + O_G, hv + O_BE, ch->d2, ch->rd2, ch->a1, ch->r1, ch->st, ch->rst, th + O_G,
                    v + O_G, CH_F, CH_M);
    mt_conv_rbackward(NULL, hv + O_W1, hv + O_B1, ch->d1, ch->rd1, ch->x, NULL, th + O_W1, v + O_W1, CH_N, &ch->geom,
                      ch->scratch);
}

/* Records the relu mask and pool argmax of the last forward as the base point's, and how
 * far it is from their kinks: the smallest |relu input|, and the smallest gap between the
 * largest and second-largest relu output of a window whose maximum is positive (a window
 * of zeros keeps its argmax while its inputs stay negative, which the mask covers). */
static void chain_mark_base(chain *ch)
{
    double margin = INFINITY, gap = INFINITY;
    for (int i = 0; i < CH_F * CH_M; i++) {
        ch->mask0[i] = ch->a2[i] > 0;
        margin = fmin(margin, fabs(ch->a2[i]));
    }
    for (int o = 0; o < CH_F * CH_M / 4; o++) {
        const int p = o / (CH_HW / 4), i = o % (CH_HW / 4) / (CH_W / 2), j = o % (CH_W / 2);
        const float *win = ch->a3 + (size_t)p * CH_HW + 2 * i * CH_W + 2 * j;
        const float v[4] = {win[0], win[1], win[CH_W], win[CH_W + 1]};
        float first = -INFINITY, second = -INFINITY;
        for (int k = 0; k < 4; k++) {
            if (v[k] > first) second = first, first = v[k];
            else if (v[k] > second) second = v[k];
        }
        if (first > 0) gap = fmin(gap, first - second);
    }
    memcpy(ch->am0, ch->am, sizeof ch->am0);
    ch->relu_margin = margin;
    ch->pool_gap = gap;
    ch->kinks = 0;
}

/* Counts a forward whose relu mask or pool argmax differs from the base point's. */
static void chain_count_kink(chain *ch)
{
    int same = memcmp(ch->am, ch->am0, sizeof ch->am0) == 0;
    for (int i = 0; i < CH_F * CH_M && same; i++) same = (ch->a2[i] > 0) == ch->mask0[i];
    ch->kinks += !same;
}

static double chain_loss(void *p)
{
    chain *ch = p;
    const float L = chain_forward(ch, ch->theta);
    chain_count_kink(ch);
    return L;
}

/* Data and parameters of the chain from one seed. */
static void chain_draw(chain *ch, float *th, uint64_t seed)
{
    tu_random(ch->x, CH_C * CH_M, -1, 1, seed, 71);
    labels_for(ch->labels, CH_N, CH_K);
    tu_random(th, CH_P, -0.5f, 0.5f, seed, 72); /* conv, linear: ~PyTorch's ±1/sqrt(fan_in) */
    tu_random(th + O_G, CH_F, 0.8f, 1.2f, seed, 73);
}

/* The chain at the first seed from `first` whose base point is at least CHAIN_MARGIN from
 * every relu and pool kink: a random point of a piecewise-smooth function is often within
 * 1e-3 of a kink (with ~100 relu inputs the nearest one is ~1e-2 away on average), and a
 * difference quotient across a kink measures nothing. FD steps move the relu inputs by
 * ~ε·|∂a/∂θ| ≲ 1e-2 here, which CHAIN_MARGIN covers; the kink count checks it. */
#define CHAIN_MARGIN 0.03
static void check_chain(uint64_t first)
{
    chain *ch = mt_calloc(1, sizeof *ch);
    float *th = tu_vec(CH_P), *u = tu_vec(CH_P), *v = tu_vec(CH_P), *g = tu_vec(CH_P), *fd = tu_vec(CH_P);
    float *hv = tu_vec(CH_P), *hu = tu_vec(CH_P), *gp = tu_vec(CH_P), *gm = tu_vec(CH_P), *thp = tu_vec(CH_P), *thm = tu_vec(CH_P);
    char label[128];
    ch->geom = shape_geom((conv_shape){CH_N, CH_C, CH_H, CH_W, CH_F, 3, 1, 1, 1});
    ch->scratch = tu_vec(mt_conv_scratch_floats(CH_N, &ch->geom));
    ch->theta = th;

    uint64_t seed = first;
    float L = 0;
    for (; seed < first + 100; seed++) {
        chain_draw(ch, th, seed);
        L = chain_forward(ch, th);
        chain_mark_base(ch);
        if (ch->relu_margin >= CHAIN_MARGIN && ch->pool_gap >= CHAIN_MARGIN) break;
    }
    printf("     chain: seed %llu, loss %.6f, P = %d, smallest |relu input| %.3f, pool gap %.3f\n",
           (unsigned long long)seed, L, CH_P, ch->relu_margin, ch->pool_gap);
    tu_expect(ch->relu_margin >= CHAIN_MARGIN && ch->pool_gap >= CHAIN_MARGIN,
              "chain: a base point at least 0.03 from every relu and pool kink");
    tu_random(u, CH_P, -1, 1, seed, 74);
    tu_random(v, CH_P, -1, 1, seed, 75);

    /* gradient against FD of the loss */
    chain_backward(ch, th, g);
    fd_gradient(th, CH_P, EPS_CHAIN, chain_loss, ch, fd);
    snprintf(label, sizeof label, "chain: FD of the loss stays on the base's relu/pool pieces");
    tu_expect(ch->kinks == 0, label);
    tu_check("chain conv-bn-relu-pool-flatten-linear-xent gradient vs FD", tu_rel_diff(g, fd, CH_P),
             TOL_CHAIN_GRAD);

    /* Hv against FD of the gradient along v */
    chain_hvp(ch, th, v, g, hv);
    chain_mark_base(ch); /* chain_hvp's forward is the base point again */
    tu_moved(thp, th, EPS_CHAIN, v, CH_P), tu_moved(thm, th, -EPS_CHAIN, v, CH_P);
    chain_forward(ch, thp);
    chain_count_kink(ch);
    chain_backward(ch, thp, gp);
    chain_forward(ch, thm);
    chain_count_kink(ch);
    chain_backward(ch, thm, gm);
    tu_quotient(fd, gp, gm, EPS_CHAIN, CH_P);
    tu_expect(ch->kinks == 0, "chain: FD of the gradient stays on the base's relu/pool pieces");
    tu_check("chain HVP (composed R-passes) vs FD of the gradient", tu_rel_diff(hv, fd, CH_P), TOL_CHAIN_HVP);

    /* u·Hv = v·Hu */
    chain_hvp(ch, th, u, g, hu);
    double uhv = 0, vhu = 0, nu = 0, nv = 0, nhu = 0, nhv = 0;
    for (int i = 0; i < CH_P; i++) {
        uhv += (double)u[i] * hv[i], vhu += (double)v[i] * hu[i];
        nu += (double)u[i] * u[i], nv += (double)v[i] * v[i], nhu += (double)hu[i] * hu[i], nhv += (double)hv[i] * hv[i];
    }
    printf("     chain: u.Hv = %.9g, v.Hu = %.9g\n", uhv, vhu);
    tu_check("chain HVP symmetry |u.Hv - v.Hu| / (|u||Hv| + |v||Hu|)", fabs(uhv - vhu) / (sqrt(nu * nhv) + sqrt(nv * nhu)),
             TOL_SYMMETRY);

    FREE_ALL(th, u, v, g, fd, hv, hu, gp, gm, thp, thm, ch->scratch);
    free(ch);
}

int main(void)
{
    /* conv shapes {N, C, H, W, F, k, stride, pad, bias}. Conv4's 3×3 s1 p1: odd sizes; its
     * first layer on a 10-image Fashion-MNIST batch; one image of 1×1 (every tap but the
     * centre is padding); 6 images of 4×84×84, whose columns (4·9·84·84 floats per image)
     * run in chunks of 4 + 2 images. ResNet-12's 1×1 s1 p0 shortcut (the fast path, with
     * and without bias). Strided: 3×3 s2 p1 and 1×1 s2 p0 on odd and even planes, and
     * 6 × 16×84×84 at 3×3 s2 p1 (16·9·42·42 floats per image: chunks of 4 + 2). Other
     * kernels: 5×5 p2, 3×3 p0 (valid), 5×5 p4 on a 1×2 plane (whole rows and columns of
     * taps fall in the padding), 3×3 s3 p2, 7×7 s2 p3, 2×2 s2 (an even kernel). Last, the
     * direct 3×3 path (conv_direct.c, on AVX-512 CPUs): 48 channels (blocks of 32 + 16) on
     * rows of 9 (a block of 7 and one of 2); 12 × 16×28×28 → 32 in chunks of 9 + 3 (forward
     * and input gradient direct); 3×3 planes (one block that reads past the row); 16 → 8
     * channels (only the input gradient direct: 8 channels in, 16 out); 9 input channels (the weight
     * gradient's pairs of channels and a last single one). Below 8 input channels the pixel-vector
     * kernels: Conv4's first layer on 10 images (rows of 16 + 12 pixels), 3 channels on rows of
     * 17 (16 + 1), rows of exactly 16, 7 channels on 3×3 planes, and 16 → 4 channels (the input
     * gradient through them, flipped). */
    const conv_shape shapes[] = {
        {3, 2, 5, 4, 3, 3, 1, 1, 1},    {10, 1, 28, 28, 8, 3, 1, 1, 1}, {2, 3, 1, 1, 2, 3, 1, 1, 1},
        {6, 4, 84, 84, 2, 3, 1, 1, 1},  {3, 2, 5, 4, 3, 3, 1, 1, 0},    {2, 3, 1, 1, 2, 3, 1, 1, 0},
        {3, 4, 5, 3, 6, 1, 1, 0, 1},    {2, 5, 7, 6, 3, 1, 1, 0, 0},    {75, 8, 5, 5, 16, 1, 1, 0, 0},
        {3, 2, 7, 6, 3, 3, 2, 1, 1},    {2, 3, 8, 8, 4, 3, 2, 1, 0},    {2, 2, 1, 1, 3, 3, 2, 1, 0},
        {3, 3, 7, 5, 2, 1, 2, 0, 1},    {2, 2, 6, 6, 3, 1, 2, 0, 0},    {6, 16, 84, 84, 2, 3, 2, 1, 0},
        {2, 2, 6, 5, 3, 5, 1, 2, 1},    {2, 2, 5, 6, 2, 3, 1, 0, 0},    {2, 2, 1, 2, 3, 5, 1, 4, 1},
        {2, 2, 7, 8, 2, 3, 3, 2, 0},    {2, 3, 11, 10, 4, 7, 2, 3, 0},  {2, 2, 5, 5, 3, 2, 2, 0, 1},
        {3, 8, 5, 9, 48, 3, 1, 1, 1},   {12, 16, 28, 28, 32, 3, 1, 1, 0}, {2, 8, 3, 3, 16, 3, 1, 1, 1},
        {3, 16, 5, 9, 8, 3, 1, 1, 1},   {2, 9, 4, 5, 16, 3, 1, 1, 1},   {10, 1, 28, 28, 64, 3, 1, 1, 1},
        {3, 3, 5, 17, 16, 3, 1, 1, 0},  {2, 1, 4, 16, 32, 3, 1, 1, 1},  {2, 7, 3, 3, 16, 3, 1, 1, 1},
        {2, 16, 5, 6, 4, 3, 1, 1, 1},
    };
    check_conv_geom();
    check_flop_count();
    for (int i = 0; i < 2; i++) {
        const conv_shape big = shapes[i ? 14 : 3];
        const mt_conv_geom bg = shape_geom(big);
        const int chunk = mt_conv_chunk_images(big.N, &bg);
        char label[96];
        snprintf(label, sizeof label, "conv 6x%dx84x84 k3 s%d runs in several chunks, the last one partial", big.C,
                 big.stride);
        tu_expect(chunk > 1 && chunk < big.N && big.N % chunk != 0, label);
    }
    mt_conv_geom g_huge, g_tiny;
    mt_conv_geom_init(&g_huge, 64, 256, 256, 8, 3, 1, 1), mt_conv_geom_init(&g_tiny, 1, 4, 4, 8, 3, 1, 1);
    tu_expect(mt_conv_chunk_images(5, &g_huge) == 1 && mt_conv_chunk_images(3, &g_tiny) == 3,
              "conv chunks: at least one image, at most N");
    {
        const mt_conv_geom multi = shape_geom(shapes[22]);
        const int chunk = mt_conv_chunk_images(shapes[22].N, &multi);
        tu_expect(chunk > 1 && chunk < shapes[22].N && shapes[22].N % chunk != 0,
                  "conv 12x16x28x28 (direct path) runs in several chunks, the last one partial");
#if defined(__x86_64__) && defined(__GNUC__)
        __builtin_cpu_init();
        const int avx512 = __builtin_cpu_supports("avx512f") != 0;
        printf("     (this CPU %s AVX-512: the direct 3x3 path is %s)\n", avx512 ? "has" : "lacks",
               avx512 ? "checked" : "not taken");
        tu_expect(mt_conv_direct_ok(&multi) == avx512, "the direct 3x3 path is taken iff the CPU has AVX-512");
#endif
        const mt_conv_geom small_c = shape_geom(shapes[0]);
        tu_expect(!mt_conv_direct_ok(&small_c), "the direct path is not taken below 16 filters");
    }
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) check_conv_fast_vs_ref(shapes[i], 100 + i);
    const conv_shape fd_shapes[] = {
        {3, 2, 5, 4, 3, 3, 1, 1, 1}, {2, 1, 3, 3, 2, 3, 1, 1, 1}, {2, 3, 4, 3, 2, 1, 1, 0, 1},
        {2, 3, 3, 4, 2, 1, 1, 0, 0}, {2, 2, 7, 6, 3, 3, 2, 1, 0}, {2, 2, 5, 5, 2, 3, 2, 1, 1},
        {2, 2, 5, 5, 3, 1, 2, 0, 1}, {2, 2, 7, 8, 2, 5, 3, 2, 0}, {2, 8, 3, 4, 16, 3, 1, 1, 1},
        {2, 16, 3, 4, 8, 3, 1, 1, 0}, {2, 1, 3, 4, 16, 3, 1, 1, 1}, {2, 3, 3, 5, 16, 3, 1, 1, 0},
        {2, 16, 3, 4, 4, 3, 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof fd_shapes / sizeof fd_shapes[0]; i++) check_conv_fd(fd_shapes[i], 200 + i);

    check_gap(3, 4, 25, 800);
    check_gap(2, 5, 1, 801); /* 1×1 planes: the pool is the identity permutation to rows */
    check_gap(1, 3, 7, 802);

    check_bn_fast_vs_ref(3, 7, 300);
    check_bn_fast_vs_ref(4, 144, 301);
    check_bn_fast_vs_ref(2, 5000, 302);
    check_bn_fast_vs_ref(3, 1003, 303); /* eight-lane blocks and a tail of three */
    check_bn_fd(3, 144, 310);

    check_maxpool(6, 6, 6, 400);
    check_maxpool(4, 5, 7, 401); /* odd sizes: the last row and column are dropped */
    /* rows of 14 windows (Conv4's first pool: one partial vector on AVX-512), of 20 (a full
     * vector and a partial one) with an odd last row and column, and of exactly 16 */
    check_maxpool(3, 28, 28, 404);
    check_maxpool(2, 9, 41, 405);
    check_maxpool(2, 4, 32, 406);
    check_maxpool_relu(6, 6, 6, 402);
    check_maxpool_relu(4, 5, 7, 403);
    check_maxpool_relu(3, 28, 28, 407);
    check_maxpool_relu(2, 7, 35, 408);
    check_maxpool_ties();
    check_bn_relu_pool(3, 2, 6, 6, 420);
    check_bn_relu_pool(4, 3, 5, 7, 421);  /* odd planes: the last row and column are dropped */
    check_bn_relu_pool(2, 5, 28, 28, 422); /* Conv4's first block on 5 images */
    check_bn_relu_pool(3, 1, 3, 2, 423);   /* one window per plane and a dropped row */

    check_flatten(3, 4, 6, 500);

    check_xent(7, 5, 600);
    check_xent(80, 5, 601);
    check_xent_correct();

    check_chain(700);
    return tu_finish();
}
