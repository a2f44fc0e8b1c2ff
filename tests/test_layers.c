/*
 * test_layers.c — the four passes of every layer and loss in layers.h against two oracles:
 *
 *   1. each fast linear kernel against its plain-loop *_ref twin, on shapes chosen to reach
 *      every path of the fast kernels (register blocks of 4 and 2 rows by 16 and 8 columns,
 *      dot products eight outputs or eight rows at a time with and without a remainder of
 *      the summed dimension, odd remainders, one-column inputs and outputs, a product big
 *      enough to go through sgemm), with the
 *      optional outputs (dx, rdx, dw) and R-inputs (rx, vb) both NULL and not;
 *   2. every backward, rforward and rbackward pass against central finite differences (FD)
 *      of the pass it differentiates: backward against FD of a scalar probe of forward,
 *      rforward against FD of forward along a direction, rbackward against FD of backward
 *      along a direction;
 *   3. leaky-relu's slope: the FD derivative on the negative side is the slope, x = 0
 *      takes the slope (PyTorch's convention), slope 0 is relu and slope 1 the identity.
 *
 * Not tested here: the model's composition of the layers and the meta-gradients
 * (test_meta.c), agreement with PyTorch (test_reference.c).
 *
 * Tolerances, from float32 arithmetic (unit roundoff u = 2^-24 ≈ 6.0e-8):
 *
 *   fast = ref   Both kernels compute sums of n products in float32; each result is within
 *                γ_n·Σ|terms| ≈ n·u·Σ|terms| of the exact sum whatever the summation order or
 *                FMA use (Higham, Accuracy and Stability of Numerical Algorithms, §3.1), so
 *                two correct kernels differ by at most 2n·u·Σ|terms|. Σ|terms| is measured
 *                per output by running the reference kernel on absolute values, and each
 *                check prints max |fast − ref| / Σ|terms| against 2n·u. A wrong index or a
 *                missing term gives O(1).
 *
 *   FD           linear is bilinear in (x, w), relu and leaky-relu piecewise linear, mse
 *                quadratic, so a central difference has no truncation error at all (the ε²
 *                term cancels), as long as (leaky-)relu inputs stay ≥ 0.1 away from the kink
 *                while moving by at most ε·|direction| ≤ 0.01 (they do). What remains is rounding: outputs
 *                of magnitude ~1 carry absolute errors of a few u·Σ|terms| (Σ|terms| ≲ 10
 *                here), and the difference quotient divides them by 2ε. With ε = 1e-2 that
 *                is ≲ 40·6e-8·10 / 2e-2 ≈ 1e-3 in the worst case and ~1e-5 for typical
 *                random-walk rounding, against derivatives of size ~1. We check the
 *                normwise relative difference max|an − fd| / max|fd| against 1e-3. (Per
 *                coordinate we divide by the step actually taken after rounding x ± ε to
 *                float; along a direction the rounding of x + ε·r changes the direction by
 *                ~u/ε ≈ 6e-6 relative, negligible.) A sign error, a transposed weight or a
 *                missing term gives O(1).
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "layers.h"
#include "testutil.h"

#define UNIT_ROUNDOFF (FLT_EPSILON / 2) /* u = 2^-24 */
#define EPS_FD 1e-2f                   /* central-difference step (exact for these layers) */
#define TOL_FD 1e-3                    /* normwise relative, see the header comment */
#define RELU_MARGIN 0.1f               /* |relu input| ≥ this: FD never crosses the kink */

/* ---- helpers -------------------------------------------------------------------------- */

/* Random values in ±[margin, 1 + margin]: relu inputs well away from the kink at 0. */
static void away_from_zero(float *x, size_t n, float margin, uint64_t seed, uint32_t tag)
{
    tu_random(x, n, -1.0f, 1.0f, seed, tag);
    for (size_t i = 0; i < n; i++) x[i] = x[i] >= 0 ? x[i] + margin : x[i] - margin;
}

/* A scalar function of the current contents of some arrays (closed over by ctx). */
typedef double (*scalar_fn)(void *ctx);

/* fd[i] = central difference of f with respect to p[i], for i < n. p is restored. The
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

/* ---- linear: fast = ref -------------------------------------------------------------- */

typedef struct {
    int N, I, O;
} shape;

/* Every fast linear kernel against its reference twin on one shape. */
static void check_linear_fast_vs_ref(shape s, uint64_t seed)
{
    const int N = s.N, I = s.I, O = s.O;
    const size_t nx = (size_t)N * I, nw = (size_t)O * I, ny = (size_t)N * O;
    float *x = tu_vec(nx), *w = tu_vec(nw), *b = tu_vec(O), *dy = tu_vec(ny);     /* inputs */
    float *rx = tu_vec(nx), *vw = tu_vec(nw), *vb = tu_vec(O), *rdy = tu_vec(ny); /* R-inputs */
    float *ax = tu_vec(nx), *aw = tu_vec(nw), *ab = tu_vec(O), *ady = tu_vec(ny); /* |inputs| */
    float *arx = tu_vec(nx), *avw = tu_vec(nw), *avb = tu_vec(O), *ardy = tu_vec(ny);
    float *zx = tu_vec(nx), *zb = tu_vec(O); /* zeros: what a NULL R-input stands for */
    float *f_y = tu_vec(ny), *r_y = tu_vec(ny), *bnd_y = tu_vec(ny);
    float *f_dx = tu_vec(nx), *r_dx = tu_vec(nx), *bnd_dx = tu_vec(nx);
    float *f_dw = tu_vec(nw), *r_dw = tu_vec(nw), *bnd_dw = tu_vec(nw);
    float *f_db = tu_vec(O), *r_db = tu_vec(O), *bnd_db = tu_vec(O);
    char label[96];

    tu_random(x, nx, -1, 1, seed, 1);
    tu_random(w, nw, -1, 1, seed, 2);
    tu_random(b, O, -1, 1, seed, 3);
    tu_random(dy, ny, -1, 1, seed, 4);
    tu_random(rx, nx, -1, 1, seed, 5);
    tu_random(vw, nw, -1, 1, seed, 6);
    tu_random(vb, O, -1, 1, seed, 7);
    tu_random(rdy, ny, -1, 1, seed, 8);
    tu_abs_copy(ax, x, nx), tu_abs_copy(aw, w, nw), tu_abs_copy(ab, b, O), tu_abs_copy(ady, dy, ny);
    tu_abs_copy(arx, rx, nx), tu_abs_copy(avw, vw, nw), tu_abs_copy(avb, vb, O), tu_abs_copy(ardy, rdy, ny);
    memset(zx, 0, nx * sizeof *zx);
    memset(zb, 0, O * sizeof *zb);

    /* forward: y = x·wᵀ + b, I + 1 terms per output */
    tu_poison(f_y, ny);
    mt_linear_forward(f_y, x, w, b, N, I, O);
    mt_linear_forward_ref(r_y, x, w, b, N, I, O);
    mt_linear_forward_ref(bnd_y, ax, aw, ab, N, I, O);
    snprintf(label, sizeof label, "linear %dx%dx%d forward fast = ref", N, I, O);
    tu_check(label, tu_bounded_diff(f_y, r_y, bnd_y, ny), tu_sum_tol(I + 1));

    /* backward: dx = dy·w (O terms), dw = dyᵀ·x and db = Σ_n dy (N terms) */
    tu_poison(f_dx, nx), tu_poison(f_dw, nw), tu_poison(f_db, O);
    mt_linear_backward(f_dx, f_dw, f_db, dy, x, w, N, I, O);
    mt_linear_backward_ref(r_dx, r_dw, r_db, dy, x, w, N, I, O);
    mt_linear_backward_ref(bnd_dx, bnd_dw, bnd_db, ady, ax, aw, N, I, O);
    snprintf(label, sizeof label, "linear %dx%dx%d backward dx fast = ref", N, I, O);
    tu_check(label, tu_bounded_diff(f_dx, r_dx, bnd_dx, nx), tu_sum_tol(O));
    snprintf(label, sizeof label, "linear %dx%dx%d backward dw fast = ref", N, I, O);
    tu_check(label, tu_bounded_diff(f_dw, r_dw, bnd_dw, nw), tu_sum_tol(N));
    snprintf(label, sizeof label, "linear %dx%dx%d backward db fast = ref", N, I, O);
    tu_check(label, tu_bounded_diff(f_db, r_db, bnd_db, O), tu_sum_tol(N));

    /* backward with dx NULL (first layer): dw, db unchanged */
    tu_poison(f_dw, nw), tu_poison(f_db, O);
    mt_linear_backward(NULL, f_dw, f_db, dy, x, w, N, I, O);
    snprintf(label, sizeof label, "linear %dx%dx%d backward dx=NULL: dw, db", N, I, O);
    tu_check(label, fmax(tu_bounded_diff(f_dw, r_dw, bnd_dw, nw), tu_bounded_diff(f_db, r_db, bnd_db, O)),
             tu_sum_tol(N));

    /* backward with dw NULL: dx only, and db must not be touched */
    for (int o = 0; o < O; o++) f_db[o] = 12345.0f;
    tu_poison(f_dx, nx);
    mt_linear_backward(f_dx, NULL, f_db, dy, x, w, N, I, O);
    snprintf(label, sizeof label, "linear %dx%dx%d backward dw=NULL: dx", N, I, O);
    tu_check(label, tu_bounded_diff(f_dx, r_dx, bnd_dx, nx), tu_sum_tol(O));
    int untouched = 1;
    for (int o = 0; o < O; o++) untouched &= f_db[o] == 12345.0f;
    snprintf(label, sizeof label, "linear %dx%dx%d backward dw=NULL leaves db alone", N, I, O);
    tu_expect(untouched, label);

    /* rforward: ry = rx·wᵀ + x·vwᵀ + vb, 2I + 1 terms */
    tu_poison(f_y, ny);
    mt_linear_rforward(f_y, x, rx, w, vw, vb, N, I, O);
    mt_linear_rforward_ref(r_y, x, rx, w, vw, vb, N, I, O);
    mt_linear_rforward_ref(bnd_y, ax, arx, aw, avw, avb, N, I, O);
    snprintf(label, sizeof label, "linear %dx%dx%d rforward fast = ref", N, I, O);
    tu_check(label, tu_bounded_diff(f_y, r_y, bnd_y, ny), tu_sum_tol(2 * I + 1));

    /* rforward with rx NULL and vb NULL: the same as zeros (the reference on zeros) */
    tu_poison(f_y, ny);
    mt_linear_rforward(f_y, x, NULL, w, vw, NULL, N, I, O);
    mt_linear_rforward_ref(r_y, x, zx, w, vw, zb, N, I, O);
    mt_linear_rforward_ref(bnd_y, ax, zx, aw, avw, zb, N, I, O);
    snprintf(label, sizeof label, "linear %dx%dx%d rforward rx=vb=NULL = ref on 0", N, I, O);
    tu_check(label, tu_bounded_diff(f_y, r_y, bnd_y, ny), tu_sum_tol(2 * I + 1));
    tu_poison(f_y, ny);
    mt_linear_rforward_ref(f_y, x, NULL, w, vw, NULL, N, I, O);
    snprintf(label, sizeof label, "linear %dx%dx%d rforward_ref rx=vb=NULL = ref on 0", N, I, O);
    tu_check(label, tu_bounded_diff(f_y, r_y, bnd_y, ny), tu_sum_tol(2 * I + 1));

    /* rbackward: rdx = rdy·w + dy·vw (2O terms), rdw = rdyᵀ·x + dyᵀ·rx (2N), rdb (N) */
    tu_poison(f_dx, nx), tu_poison(f_dw, nw), tu_poison(f_db, O);
    mt_linear_rbackward(f_dx, f_dw, f_db, dy, rdy, x, rx, w, vw, N, I, O);
    mt_linear_rbackward_ref(r_dx, r_dw, r_db, dy, rdy, x, rx, w, vw, N, I, O);
    mt_linear_rbackward_ref(bnd_dx, bnd_dw, bnd_db, ady, ardy, ax, arx, aw, avw, N, I, O);
    snprintf(label, sizeof label, "linear %dx%dx%d rbackward rdx fast = ref", N, I, O);
    tu_check(label, tu_bounded_diff(f_dx, r_dx, bnd_dx, nx), tu_sum_tol(2 * O));
    snprintf(label, sizeof label, "linear %dx%dx%d rbackward rdw fast = ref", N, I, O);
    tu_check(label, tu_bounded_diff(f_dw, r_dw, bnd_dw, nw), tu_sum_tol(2 * N));
    snprintf(label, sizeof label, "linear %dx%dx%d rbackward rdb fast = ref", N, I, O);
    tu_check(label, tu_bounded_diff(f_db, r_db, bnd_db, O), tu_sum_tol(N));

    /* rbackward with rdx NULL (first layer) and rx NULL (input independent of θ) */
    tu_poison(f_dw, nw), tu_poison(f_db, O);
    mt_linear_rbackward(NULL, f_dw, f_db, dy, rdy, x, NULL, w, vw, N, I, O);
    mt_linear_rbackward_ref(r_dx, r_dw, r_db, dy, rdy, x, zx, w, vw, N, I, O);
    mt_linear_rbackward_ref(bnd_dx, bnd_dw, bnd_db, ady, ardy, ax, zx, aw, avw, N, I, O);
    snprintf(label, sizeof label, "linear %dx%dx%d rbackward rdx=rx=NULL: rdw, rdb", N, I, O);
    tu_check(label, fmax(tu_bounded_diff(f_dw, r_dw, bnd_dw, nw), tu_bounded_diff(f_db, r_db, bnd_db, O)),
             tu_sum_tol(2 * N));
    tu_poison(f_dw, nw), tu_poison(f_db, O);
    mt_linear_rbackward_ref(NULL, f_dw, f_db, dy, rdy, x, NULL, w, vw, N, I, O);
    snprintf(label, sizeof label, "linear %dx%dx%d rbackward_ref NULLs = ref on 0", N, I, O);
    tu_check(label, fmax(tu_bounded_diff(f_dw, r_dw, bnd_dw, nw), tu_bounded_diff(f_db, r_db, bnd_db, O)),
             tu_sum_tol(2 * N));

    float *all[] = {x,    w,    b,     dy,    rx,    vw,   vb,    rdy,  ax,   aw,   ab,   ady,   arx,  avw,
                    avb,  ardy, zx,    zb,    f_y,   r_y,  bnd_y, f_dx, r_dx, bnd_dx, f_dw, r_dw, bnd_dw, f_db,
                    r_db, bnd_db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

/* ---- linear: passes against finite differences --------------------------------------- */

typedef struct {
    int N, I, O;
    float *x, *w, *b, *y; /* [N,I] [O,I] [O] [N,O] */
    const float *c;       /* probe weights [N,O] */
} linear_ctx;

static double linear_probe(void *p)
{
    linear_ctx *k = p;
    mt_linear_forward(k->y, k->x, k->w, k->b, k->N, k->I, k->O);
    return tu_probe(k->c, k->y, (size_t)k->N * k->O);
}

static void check_linear_fd(shape s, uint64_t seed)
{
    const int N = s.N, I = s.I, O = s.O;
    const size_t nx = (size_t)N * I, nw = (size_t)O * I, ny = (size_t)N * O;
    float *x = tu_vec(nx), *w = tu_vec(nw), *b = tu_vec(O), *c = tu_vec(ny), *y = tu_vec(ny);
    float *rx = tu_vec(nx), *vw = tu_vec(nw), *vb = tu_vec(O), *rdy = tu_vec(ny);
    float *xp = tu_vec(nx), *wp = tu_vec(nw), *bp = tu_vec(O), *dyp = tu_vec(ny);
    float *xm = tu_vec(nx), *wm = tu_vec(nw), *bm = tu_vec(O), *dym = tu_vec(ny);
    float *an_x = tu_vec(nx), *an_w = tu_vec(nw), *an_b = tu_vec(O), *an_y = tu_vec(ny);
    float *fd_x = tu_vec(nx), *fd_w = tu_vec(nw), *fd_b = tu_vec(O), *fd_y = tu_vec(ny);
    float *p_x = tu_vec(nx), *p_w = tu_vec(nw), *p_b = tu_vec(O), *p_y = tu_vec(ny);
    float *m_x = tu_vec(nx), *m_w = tu_vec(nw), *m_b = tu_vec(O), *m_y = tu_vec(ny);
    char label[96];

    tu_random(x, nx, -1, 1, seed, 11);
    tu_random(w, nw, -1, 1, seed, 12);
    tu_random(b, O, -1, 1, seed, 13);
    tu_random(c, ny, -1, 1, seed, 14);
    tu_random(rx, nx, -1, 1, seed, 15);
    tu_random(vw, nw, -1, 1, seed, 16);
    tu_random(vb, O, -1, 1, seed, 17);
    tu_random(rdy, ny, -1, 1, seed, 18);

    /* backward(dy = c) is the gradient of the probe L = Σ c⊙y */
    linear_ctx k = {N, I, O, x, w, b, y, c};
    mt_linear_backward(an_x, an_w, an_b, c, x, w, N, I, O);
    fd_gradient(x, nx, EPS_FD, linear_probe, &k, fd_x);
    fd_gradient(w, nw, EPS_FD, linear_probe, &k, fd_w);
    fd_gradient(b, O, EPS_FD, linear_probe, &k, fd_b);
    snprintf(label, sizeof label, "linear %dx%dx%d backward dx vs FD", N, I, O);
    tu_check(label, tu_rel_diff(an_x, fd_x, nx), TOL_FD);
    snprintf(label, sizeof label, "linear %dx%dx%d backward dw vs FD", N, I, O);
    tu_check(label, tu_rel_diff(an_w, fd_w, nw), TOL_FD);
    snprintf(label, sizeof label, "linear %dx%dx%d backward db vs FD", N, I, O);
    tu_check(label, tu_rel_diff(an_b, fd_b, O), TOL_FD);

    /* rforward: d/dε forward(x + ε·rx, w + ε·vw, b + ε·vb) */
    tu_moved(xp, x, EPS_FD, rx, nx), tu_moved(wp, w, EPS_FD, vw, nw), tu_moved(bp, b, EPS_FD, vb, O);
    tu_moved(xm, x, -EPS_FD, rx, nx), tu_moved(wm, w, -EPS_FD, vw, nw), tu_moved(bm, b, -EPS_FD, vb, O);
    mt_linear_forward(p_y, xp, wp, bp, N, I, O);
    mt_linear_forward(m_y, xm, wm, bm, N, I, O);
    tu_quotient(fd_y, p_y, m_y, EPS_FD, ny);
    mt_linear_rforward(an_y, x, rx, w, vw, vb, N, I, O);
    snprintf(label, sizeof label, "linear %dx%dx%d rforward vs FD of forward", N, I, O);
    tu_check(label, tu_rel_diff(an_y, fd_y, ny), TOL_FD);

    /* the same with rx NULL: x stays put */
    mt_linear_forward(p_y, x, wp, bp, N, I, O);
    mt_linear_forward(m_y, x, wm, bm, N, I, O);
    tu_quotient(fd_y, p_y, m_y, EPS_FD, ny);
    mt_linear_rforward(an_y, x, NULL, w, vw, vb, N, I, O);
    snprintf(label, sizeof label, "linear %dx%dx%d rforward rx=NULL vs FD", N, I, O);
    tu_check(label, tu_rel_diff(an_y, fd_y, ny), TOL_FD);

    /* rbackward: d/dε backward(dy + ε·rdy, x + ε·rx, w + ε·vw) */
    tu_moved(dyp, c, EPS_FD, rdy, ny), tu_moved(dym, c, -EPS_FD, rdy, ny);
    mt_linear_backward(p_x, p_w, p_b, dyp, xp, wp, N, I, O);
    mt_linear_backward(m_x, m_w, m_b, dym, xm, wm, N, I, O);
    tu_quotient(fd_x, p_x, m_x, EPS_FD, nx);
    tu_quotient(fd_w, p_w, m_w, EPS_FD, nw);
    tu_quotient(fd_b, p_b, m_b, EPS_FD, O);
    mt_linear_rbackward(an_x, an_w, an_b, c, rdy, x, rx, w, vw, N, I, O);
    snprintf(label, sizeof label, "linear %dx%dx%d rbackward rdx vs FD of backward", N, I, O);
    tu_check(label, tu_rel_diff(an_x, fd_x, nx), TOL_FD);
    snprintf(label, sizeof label, "linear %dx%dx%d rbackward rdw vs FD of backward", N, I, O);
    tu_check(label, tu_rel_diff(an_w, fd_w, nw), TOL_FD);
    snprintf(label, sizeof label, "linear %dx%dx%d rbackward rdb vs FD of backward", N, I, O);
    tu_check(label, tu_rel_diff(an_b, fd_b, O), TOL_FD);

    /* the same with rx NULL (x fixed) and rdx NULL */
    mt_linear_backward(NULL, p_w, p_b, dyp, x, wp, N, I, O);
    mt_linear_backward(NULL, m_w, m_b, dym, x, wm, N, I, O);
    tu_quotient(fd_w, p_w, m_w, EPS_FD, nw);
    mt_linear_rbackward(NULL, an_w, an_b, c, rdy, x, NULL, w, vw, N, I, O);
    snprintf(label, sizeof label, "linear %dx%dx%d rbackward rx=rdx=NULL rdw vs FD", N, I, O);
    tu_check(label, tu_rel_diff(an_w, fd_w, nw), TOL_FD);

    float *all[] = {x,   w,   b,    c,    y,    rx,   vw,   vb,   rdy,  xp,   wp,  bp,  dyp, xm,
                    wm,  bm,  dym,  an_x, an_w, an_b, an_y, fd_x, fd_w, fd_b, fd_y, p_x, p_w, p_b,
                    p_y, m_x, m_w, m_b, m_y};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

/* ---- relu ----------------------------------------------------------------------------- */

typedef struct {
    int n;
    float *x, *y;
    const float *c;
} relu_ctx;

static double relu_probe(void *p)
{
    relu_ctx *k = p;
    mt_relu_forward(k->y, k->x, k->n);
    return tu_probe(k->c, k->y, (size_t)k->n);
}

static void check_relu(int n, uint64_t seed)
{
    float *x = tu_vec(n), *y = tu_vec(n), *c = tu_vec(n), *rx = tu_vec(n), *rdy = tu_vec(n);
    float *xp = tu_vec(n), *xm = tu_vec(n), *cp = tu_vec(n), *cm = tu_vec(n), *yp = tu_vec(n), *ym = tu_vec(n);
    float *an = tu_vec(n), *fd = tu_vec(n);
    char label[96];

    away_from_zero(x, n, RELU_MARGIN, seed, 21);
    tu_random(c, n, -1, 1, seed, 22);
    tu_random(rx, n, -1, 1, seed, 23);
    tu_random(rdy, n, -1, 1, seed, 24);

    /* forward: exact, max(x, 0) */
    mt_relu_forward(y, x, n);
    int exact = 1, positive = 0;
    for (int i = 0; i < n; i++) {
        exact &= y[i] == (x[i] > 0 ? x[i] : 0.0f);
        positive += x[i] > 0;
    }
    snprintf(label, sizeof label, "relu n=%d forward = max(x, 0) exactly (%d of %d active)", n, positive, n);
    tu_expect(exact && positive > 0 && positive < n, label);

    /* backward(dy = c) against FD of the probe Σ c⊙relu(x) */
    relu_ctx k = {n, x, y, c};
    mt_relu_backward(an, c, x, n);
    fd_gradient(x, (size_t)n, EPS_FD, relu_probe, &k, fd);
    snprintf(label, sizeof label, "relu n=%d backward vs FD", n);
    tu_check(label, tu_rel_diff(an, fd, n), TOL_FD);

    /* rforward against FD of forward along rx */
    tu_moved(xp, x, EPS_FD, rx, n), tu_moved(xm, x, -EPS_FD, rx, n);
    mt_relu_forward(yp, xp, n);
    mt_relu_forward(ym, xm, n);
    tu_quotient(fd, yp, ym, EPS_FD, n);
    mt_relu_rforward(an, rx, x, n);
    snprintf(label, sizeof label, "relu n=%d rforward vs FD of forward", n);
    tu_check(label, tu_rel_diff(an, fd, n), TOL_FD);

    /* rbackward against FD of backward(dy + ε·rdy, x + ε·rx) */
    tu_moved(cp, c, EPS_FD, rdy, n), tu_moved(cm, c, -EPS_FD, rdy, n);
    mt_relu_backward(yp, cp, xp, n);
    mt_relu_backward(ym, cm, xm, n);
    tu_quotient(fd, yp, ym, EPS_FD, n);
    mt_relu_rbackward(an, rdy, x, n);
    snprintf(label, sizeof label, "relu n=%d rbackward vs FD of backward", n);
    tu_check(label, tu_rel_diff(an, fd, n), TOL_FD);

    float *all[] = {x, y, c, rx, rdy, xp, xm, cp, cm, yp, ym, an, fd};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

/* ---- leaky-relu ----------------------------------------------------------------------- */

typedef struct {
    int n;
    float slope;
    float *x, *y;
    const float *c;
} leaky_ctx;

static double leaky_probe(void *p)
{
    leaky_ctx *k = p;
    mt_leaky_relu_forward(k->y, k->x, k->n, k->slope);
    return tu_probe(k->c, k->y, (size_t)k->n);
}

/* The four passes against FD (inputs ≥ RELU_MARGIN from the kink, as for relu: exact up to
 * rounding), the forward against its definition, and the slope's meaning: the derivative
 * on the negative side is the slope (FD there is ≈ slope, not 0 or 1), x = 0 takes the
 * negative side's slope as PyTorch does, slope 0 is relu bit for bit in every pass and
 * slope 1 the identity. */
static void check_leaky_relu(int n, float slope, uint64_t seed)
{
    float *x = tu_vec(n), *y = tu_vec(n), *c = tu_vec(n), *rx = tu_vec(n), *rdy = tu_vec(n);
    float *xp = tu_vec(n), *xm = tu_vec(n), *cp = tu_vec(n), *cm = tu_vec(n), *yp = tu_vec(n), *ym = tu_vec(n);
    float *an = tu_vec(n), *fd = tu_vec(n), *ref = tu_vec(n);
    char tag[48], label[128];
    snprintf(tag, sizeof tag, "leaky-relu n=%d slope=%g", n, slope);

    away_from_zero(x, n, RELU_MARGIN, seed, 31);
    tu_random(c, n, -1, 1, seed, 32);
    tu_random(rx, n, -1, 1, seed, 33);
    tu_random(rdy, n, -1, 1, seed, 34);

    /* forward: exact, x or slope·x */
    mt_leaky_relu_forward(y, x, n, slope);
    int exact = 1, positive = 0;
    for (int i = 0; i < n; i++) {
        exact &= y[i] == (x[i] > 0 ? x[i] : slope * x[i]);
        positive += x[i] > 0;
    }
    snprintf(label, sizeof label, "%s forward = x > 0 ? x : slope*x exactly (%d of %d positive)", tag, positive, n);
    tu_expect(exact && positive > 0 && positive < n, label);

    /* backward(dy = c) against FD of the probe Σ c⊙f(x) */
    leaky_ctx k = {n, slope, x, y, c};
    mt_leaky_relu_backward(an, c, x, n, slope);
    fd_gradient(x, (size_t)n, EPS_FD, leaky_probe, &k, fd);
    snprintf(label, sizeof label, "%s backward vs FD", tag);
    tu_check(label, tu_rel_diff(an, fd, n), TOL_FD);

    /* the negative side alone: dx/dy there is the slope, measured by FD */
    double worst = 0.0;
    for (int i = 0; i < n; i++)
        if (x[i] < 0) worst = fmax(worst, fabs((double)fd[i] - (double)slope * c[i]));
    snprintf(label, sizeof label, "%s FD on x < 0 is slope*dy (absolute)", tag);
    tu_check(label, worst, TOL_FD);

    /* rforward against FD of forward along rx */
    tu_moved(xp, x, EPS_FD, rx, n), tu_moved(xm, x, -EPS_FD, rx, n);
    mt_leaky_relu_forward(yp, xp, n, slope);
    mt_leaky_relu_forward(ym, xm, n, slope);
    tu_quotient(fd, yp, ym, EPS_FD, n);
    mt_leaky_relu_rforward(an, rx, x, n, slope);
    snprintf(label, sizeof label, "%s rforward vs FD of forward", tag);
    tu_check(label, tu_rel_diff(an, fd, n), TOL_FD);

    /* rbackward against FD of backward(dy + ε·rdy, x + ε·rx) */
    tu_moved(cp, c, EPS_FD, rdy, n), tu_moved(cm, c, -EPS_FD, rdy, n);
    mt_leaky_relu_backward(yp, cp, xp, n, slope);
    mt_leaky_relu_backward(ym, cm, xm, n, slope);
    tu_quotient(fd, yp, ym, EPS_FD, n);
    mt_leaky_relu_rbackward(an, rdy, x, n, slope);
    snprintf(label, sizeof label, "%s rbackward vs FD of backward", tag);
    tu_check(label, tu_rel_diff(an, fd, n), TOL_FD);

    /* at x = 0 exactly the derivative is the slope (PyTorch: x > 0 ? dy : slope·dy) */
    const float zero = 0.0f, one = 1.0f;
    float d0 = 0.0f, r0 = 0.0f;
    mt_leaky_relu_backward(&d0, &one, &zero, 1, slope);
    mt_leaky_relu_rbackward(&r0, &one, &zero, 1, slope);
    snprintf(label, sizeof label, "%s at x = 0: backward and rbackward give slope*dy", tag);
    tu_expect(d0 == slope && r0 == slope, label);

    /* slope 0 is relu, bit for bit, in all four passes */
    int same = 1;
    mt_leaky_relu_forward(an, x, n, 0.0f), mt_relu_forward(ref, x, n);
    for (int i = 0; i < n; i++) same &= an[i] == ref[i];
    mt_leaky_relu_backward(an, c, x, n, 0.0f), mt_relu_backward(ref, c, x, n);
    for (int i = 0; i < n; i++) same &= an[i] == ref[i];
    mt_leaky_relu_rforward(an, rx, x, n, 0.0f), mt_relu_rforward(ref, rx, x, n);
    for (int i = 0; i < n; i++) same &= an[i] == ref[i];
    mt_leaky_relu_rbackward(an, rdy, x, n, 0.0f), mt_relu_rbackward(ref, rdy, x, n);
    for (int i = 0; i < n; i++) same &= an[i] == ref[i];
    snprintf(label, sizeof label, "leaky-relu n=%d slope 0 = relu in every pass", n);
    tu_expect(same, label);

    /* slope 1 is the identity: y = x, dx = dy */
    int ident = 1;
    mt_leaky_relu_forward(an, x, n, 1.0f);
    for (int i = 0; i < n; i++) ident &= an[i] == x[i];
    mt_leaky_relu_backward(an, c, x, n, 1.0f);
    for (int i = 0; i < n; i++) ident &= an[i] == c[i];
    snprintf(label, sizeof label, "leaky-relu n=%d slope 1 = identity", n);
    tu_expect(ident, label);

    float *all[] = {x, y, c, rx, rdy, xp, xm, cp, cm, yp, ym, an, fd, ref};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

/* ---- mse ------------------------------------------------------------------------------ */

typedef struct {
    int N, D;
    float *p;
    const float *t;
} mse_ctx;

static double mse_value(void *ctx)
{
    mse_ctx *k = ctx;
    return mt_mse_forward(k->p, k->t, k->N, k->D);
}

static void check_mse(int N, int D, uint64_t seed)
{
    const size_t n = (size_t)N * D;
    float *p = tu_vec(n), *t = tu_vec(n), *rp = tu_vec(n), *dp = tu_vec(n), *an = tu_vec(n), *fd = tu_vec(n);
    float *pp = tu_vec(n), *pm = tu_vec(n), *gp = tu_vec(n), *gm = tu_vec(n);
    char label[96];

    tu_random(p, n, -1, 1, seed, 31);
    tu_random(t, n, -1, 1, seed, 32);
    tu_random(rp, n, -1, 1, seed, 33);

    /* forward against the formula in double; the only error is the final rounding to
     * float (u relative), so 1e-6 leaves a margin of 16 */
    double want = 0.0;
    for (size_t i = 0; i < n; i++) want += ((double)p[i] - t[i]) * ((double)p[i] - t[i]);
    want /= (double)n;
    const float L = mt_mse_forward(p, t, N, D);
    snprintf(label, sizeof label, "mse %dx%d forward vs double formula (relative)", N, D);
    tu_check(label, fabs(L - want) / want, 1e-6);

    /* backward against per-element FD of forward (a quadratic: exact up to rounding) */
    mse_ctx k = {N, D, p, t};
    mt_mse_backward(dp, p, t, N, D);
    fd_gradient(p, n, EPS_FD, mse_value, &k, fd);
    snprintf(label, sizeof label, "mse %dx%d backward vs FD", N, D);
    tu_check(label, tu_rel_diff(dp, fd, n), TOL_FD);

    /* rforward: R(L) = Σ dp·rp against FD of forward along rp */
    tu_moved(pp, p, EPS_FD, rp, n), tu_moved(pm, p, -EPS_FD, rp, n);
    const double fd_rl = ((double)mt_mse_forward(pp, t, N, D) - mt_mse_forward(pm, t, N, D)) / (2.0 * EPS_FD);
    const float rl = mt_mse_rforward(dp, rp, N, D);
    snprintf(label, sizeof label, "mse %dx%d rforward vs FD of forward (relative)", N, D);
    tu_check(label, fabs(rl - fd_rl) / fabs(fd_rl), TOL_FD);

    /* rbackward against FD of backward along rp */
    mt_mse_backward(gp, pp, t, N, D);
    mt_mse_backward(gm, pm, t, N, D);
    tu_quotient(fd, gp, gm, EPS_FD, n);
    mt_mse_rbackward(an, rp, N, D);
    snprintf(label, sizeof label, "mse %dx%d rbackward vs FD of backward", N, D);
    tu_check(label, tu_rel_diff(an, fd, n), TOL_FD);

    float *all[] = {p, t, rp, dp, an, fd, pp, pm, gp, gm};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

int main(void)
{
    /* 10x40x40 is fc2 at training size (register blocks 16+16+8); 7x5x3 odd remainders
     * only; 10x1x40 is fc1 and 10x40x1 the head; 13x16x17 one block plus one column;
     * 50x67x33 is over the 65536 multiply-add threshold, so it goes through sgemm. */
    const shape shapes[] = {{10, 40, 40}, {7, 5, 3},  {10, 1, 40},  {10, 40, 1},
                            {13, 16, 17}, {9, 20, 8}, {12, 21, 3}, {50, 67, 33}};
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    for (int i = 0; i < n_shapes; i++) check_linear_fast_vs_ref(shapes[i], 100 + (uint64_t)i);
    check_linear_fd(shapes[0], 200);
    check_linear_fd(shapes[1], 201);
    check_linear_fd(shapes[2], 202);
    check_relu(10 * 40, 300);
    check_relu(7 * 5, 301);
    check_leaky_relu(10 * 40, 0.1f, 310); /* ResNet-12's slope */
    check_leaky_relu(7 * 5, 0.3f, 311);
    check_mse(7, 3, 400);
    check_mse(10, 1, 401);
    return tu_finish();
}
