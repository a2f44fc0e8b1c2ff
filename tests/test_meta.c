/*
 * test_meta.c — the whole model's gradient and Hessian-vector product (model.h) and the
 * meta-gradients of one task (meta.h), against central finite differences (FD) and against
 * the inner loop written out here with nothing but mt_model_loss_grad.
 *
 * Two models, with θ from mt_model_init_params and one sinusoid task (tasks.h) each:
 *   small  1-8-8-1   (P = 97):   FD over every coordinate of θ;
 *   full   1-40-40-1 (P = 1761): FD along N_DIRS random unit directions.
 *
 * The meta-objective is F(θ) = L_Q(θ_K(θ)) with θ_{k+1} = θ_k − α ∇L_S(θ_k), computed by
 * adapt() below; MAML's gradient must be dF/dθ, so it is checked against FD of F. With
 * α = 0.01 (training) and α = 0.1 the second-order terms are 15 to 110 % of the gradient
 * here, and each MAML check is paired with one that FOMAML (the gradient without them) must
 * fail by more than TEETH = 10 tolerances: the FD checks can tell the two apart.
 *
 * ANIL (the inner loop adapts only the head) is checked the same way against FD of its own
 * objective, F with head-only inner steps, over every parameter; MAML's gradient must miss it
 * by TEETH tolerances.
 *
 * Not tested here: the layers one by one (test_layers.c), agreement with PyTorch
 * (test_reference.c), the optimiser and the distributed reduction.
 *
 * Finite differences in float32, and the tolerances (unit roundoff u = 2^-24 ≈ 6e-8):
 *
 *   Truncation. Within one ReLU activation pattern the MLP's output is affine in the
 *   parameters of any one layer, so along a single coordinate the loss is exactly quadratic
 *   and a central difference has no truncation error; F and the losses along a direction are
 *   polynomials of low degree whose ε² term is ~ε²·|F'''|/6 ≲ 1e-5 relative here.
 *   What a FD cannot survive is a ReLU changing sign between θ − εv and θ + εv (the
 *   derivative jumps). relu_flips() counts such sign changes at every point the FD visits
 *   (θ_0 … θ_{K−1} on the support set, θ_K on the query set) and every FD check is paired
 *   with a check that the count is 0. The seeds below were chosen so it is (other seeds
 *   cross kinks at these steps); if a change in the code moves a pre-activation across zero,
 *   pick another seed, do not loosen the tolerance.
 *
 *   Rounding. A float32 evaluation of a loss F ~ O(1) is off by c·u·F with c a small
 *   constant, and the difference quotient divides that by ε (c ≈ 1 measured):
 *     per coordinate, ε = 1e-3: c·u·F/ε ≈ 6e-5·c·F absolute; with F ≈ 1.3 to 1.6 and the
 *       largest partial derivative 0.5 to 1.2 that is ≲ 2e-4·c relative → tolerance 1e-3
 *       (measured worst 1.5e-4).
 *     along unit directions, ε = 3e-3: 2e-5·c·F absolute, F ≈ 3; a random unit direction
 *       sees only ~1/√P of the gradient, so the directional derivatives are just 0.06 to
 *       0.09 and the relative noise is ≈ 8e-4·c → tolerance 2e-3. (Over 50 other sets of 8
 *       random directions the worst MAML difference was 7.3e-4; here it is 5.5e-4.)
 *     H·v against FD of the gradient along unit directions, ε = 3e-3: each gradient entry
 *       carries the same kind of noise, c·u·|∇L|/ε relative to |Hv| → tolerance 2e-3.
 *   All are compared normwise: max |analytic − FD| / max |FD| over the coordinates or
 *   directions of one check, and the labels print max |FD|.
 *
 *   Identities. FOMAML and Reptile against the inner loop written out here, and
 *   mt_meta_adapt_eval against mt_meta_task_grad, do the same float operations in the same
 *   order, so they should agree exactly; the tolerances (1e-6, and 1e-5 for Reptile's
 *   θ − θ_K, whose size is α·|∇L| ≈ 1e-2 so that one ulp of θ is ~6e-6 of it) only allow
 *   a compiler to contract a multiply-add differently.
 *
 *   HVP symmetry. u·Hv and v·Hu, each a float32 R-operator product dotted in double, differ
 *   by rounding in Hv and Hu only: a few u·Σ|u_i (Hv)_i| → tolerance 1e-5 relative to that sum.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "layers.h"
#include "meta.h"
#include "model.h"
#include "tasks.h"
#include "testutil.h"

#define N_ROWS 10         /* support and query points per task, as in training */
#define SEED_SMALL 2      /* θ and task for the small model: no kink crossed (see above) */
#define SEED_FULL 17      /* θ and task for the full model: no kink crossed */
#define EPS_COORD 1e-3f   /* FD step per coordinate */
#define EPS_DIR 3e-3f     /* FD step along unit directions */
#define TOL_COORD 1e-3    /* normwise relative, FD per coordinate */
#define TOL_DIR 2e-3      /* normwise relative, FD along directions */
#define TOL_SAME 1e-6     /* the same float operations in the same order */
#define TOL_SAME_DIFF 1e-5 /* the same, for θ − θ_K */
#define TOL_SYM 1e-5      /* u·Hv = v·Hu */
#define TEETH 10.0        /* FOMAML must miss the FD meta-gradient by this many tolerances */
#define N_DIRS 8          /* random directions per directional check */
#define SEED_DIRS 17      /* stream of the random directions */
#define ANIL_DIRS 1500    /* first tag of ANIL's directions on the full model: no kink crossed
                           * (tags 400-1300 and 1700 cross 1 to 3 ReLU kinks along the way) */

/* ---- helpers -------------------------------------------------------------------------- */

static double dot_d(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static double max_abs(const float *x, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static double max_abs_d(const double *x, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

/* A random direction of unit 2-norm. */
static void unit_direction(float *v, size_t n, uint64_t seed, uint32_t tag)
{
    tu_random(v, n, -1.0f, 1.0f, seed, tag);
    const double norm = sqrt(dot_d(v, v, n));
    for (size_t i = 0; i < n; i++) v[i] = (float)(v[i] / norm);
}

/* A model, its θ, one sinusoid task and a workspace. */
typedef struct {
    mt_model m;
    size_t P;
    float *theta;       /* [P] */
    mt_task_buffer buf; /* the task's rows */
    const mt_task *t;
    mt_workspace *ws;
    size_t lo, hi; /* the slice of θ the inner loop adapts: [0, P), or the head for anil */
    const float *w; /* multi-step loss weights of L_Q(θ_1) … L_Q(θ_K), or NULL: L_Q(θ_K) */
} fixture;

static void fixture_init(fixture *f, int hidden, uint64_t seed)
{
    if (mt_model_mlp(&f->m, 1, hidden, 1) != 0) mt_fatal("mt_model_mlp(1, %d, 1) failed", hidden);
    f->P = f->m.n_params;
    f->theta = tu_vec(f->P);
    mt_model_init_params(&f->m, f->theta, seed);
    mt_task_buffer_init(&f->buf, N_ROWS, N_ROWS, 1, 1);
    mt_sinusoid_fill(&f->buf, &MT_SINE_DIST_DEFAULT, seed, MT_STREAM_TRAIN, 0, 0);
    f->t = &f->buf.task;
    f->ws = mt_workspace_init(&f->m, N_ROWS, MT_WS_HVP);
    f->lo = 0, f->hi = f->P;
    f->w = NULL;
}

static void fixture_free(fixture *f)
{
    free(f->theta);
    mt_task_buffer_free(&f->buf);
    mt_workspace_free(f->ws);
}

/* The inner loop written out with mt_model_loss_grad only: traj[(K+1)·P] receives
 * θ_0 = θ … θ_K, g[P] is scratch; steps move the slice [f->lo, f->hi) of θ (all of it, or
 * anil's head). Returns F(θ) = L_Q(θ_K). */
static float adapt(const fixture *f, const float *theta, float alpha, int K, float *traj, float *g)
{
    const size_t P = f->P;
    memcpy(traj, theta, P * sizeof *traj);
    for (int k = 0; k < K; k++) {
        float *cur = traj + (size_t)k * P, *next = cur + P;
        mt_model_loss_grad(&f->m, f->ws, cur, f->t->xs, f->t->ys, f->t->n_support, g);
        const size_t Pn = P - f->m.n_rates; /* learned rates follow the parameters */
        if (f->m.rate_steps) { /* LSLR: step k's rate of the tensor holding i */
            memcpy(next, cur, P * sizeof *next);
            for (int tau = 0; tau < mt_model_tensor_count(&f->m) - 1; tau++) {
                mt_tensor_info ti;
                mt_model_tensor(&f->m, tau, &ti);
                const float rate = cur[Pn + (size_t)k * (mt_model_tensor_count(&f->m) - 1) + (size_t)tau];
                for (size_t i = ti.offset; i < ti.offset + ti.size; i++) next[i] = cur[i] - rate * g[i];
            }
            continue;
        }
        for (size_t i = 0; i < P; i++)
            next[i] = i >= f->lo && i < f->hi ? cur[i] - (f->m.n_rates ? cur[Pn + i] : alpha) * g[i] : cur[i];
    }
    if (f->w && K > 0) { /* Σ_k w_k L_Q(θ_k), summed in double */
        double F = 0.0;
        for (int k = 1; k <= K; k++)
            F += (double)f->w[k - 1] *
                 mt_model_forward(&f->m, f->ws, traj + (size_t)k * P, f->t->xq, f->t->yq, f->t->n_query);
        return (float)F;
    }
    return mt_model_forward(&f->m, f->ws, traj + (size_t)K * P, f->t->xq, f->t->yq, f->t->n_query);
}

/* ---- an independent forward pass, for ReLU activation patterns ------------------------- */

/* ReLU inputs per row of the model. */
static int relu_width(const mt_model *m)
{
    int w = 0;
    for (int l = 0; l < m->n_ops; l++)
        if (m->op[l].kind == MT_OP_RELU) w += m->op[l].out;
    return w;
}

/* Runs the model on x[N, in] with the reference kernels of layers.h, not model.c: writes
 * the output [N, out] to out and, per ReLU input, whether it is positive to active
 * [N · relu_width]. */
static void ref_forward(const mt_model *m, const float *theta, const float *x, int N, float *out,
                        unsigned char *active)
{
    int width = m->in;
    for (int l = 0; l < m->n_ops; l++)
        if (m->op[l].out > width) width = m->op[l].out;
    float *a = tu_vec((size_t)N * width), *b = tu_vec((size_t)N * width);
    memcpy(a, x, (size_t)N * m->in * sizeof *a);
    for (int l = 0; l < m->n_ops; l++) {
        const mt_op *L = &m->op[l];
        const size_t n = (size_t)N * L->out;
        if (L->kind == MT_OP_LINEAR) {
            const float *w = theta + L->offset, *bias = w + (size_t)L->out * L->in;
            mt_linear_forward_ref(b, a, w, bias, N, L->in, L->out);
        } else {
            for (size_t i = 0; i < n; i++) *active++ = a[i] > 0.0f;
            mt_relu_forward(b, a, (int)n);
        }
        float *swap = a;
        a = b, b = swap;
    }
    memcpy(out, a, (size_t)N * m->out * sizeof *out);
    free(a);
    free(b);
}

/* Number of ReLU inputs on x[N] whose sign differs between θ = ta and θ = tb. */
static int relu_flips(const mt_model *m, const float *ta, const float *tb, const float *x, int N)
{
    const size_t n = (size_t)N * relu_width(m);
    unsigned char *sa = mt_malloc(n), *sb = mt_malloc(n);
    float *out = tu_vec((size_t)N * m->out);
    ref_forward(m, ta, x, N, out, sa);
    ref_forward(m, tb, x, N, out, sb);
    int flips = 0;
    for (size_t i = 0; i < n; i++) flips += sa[i] != sb[i];
    free(sa);
    free(sb);
    free(out);
    return flips;
}

/* Sign changes between two inner-loop trajectories at every point a FD of F visits:
 * θ_0 … θ_{K−1} on the support set, θ_K on the query set. */
static int trajectory_flips(const fixture *f, const float *ta, const float *tb, int K)
{
    int flips = 0;
    for (int k = 0; k < K; k++)
        flips += relu_flips(&f->m, ta + (size_t)k * f->P, tb + (size_t)k * f->P, f->t->xs, f->t->n_support);
    for (int k = f->w ? 1 : K; k <= K; k++) /* the query passes behind F: θ_K, or all with a multi-step loss */
        flips += relu_flips(&f->m, ta + (size_t)k * f->P, tb + (size_t)k * f->P, f->t->xq, f->t->n_query);
    return flips;
}

static void expect_no_flips(int flips, const char *what)
{
    char label[128];
    snprintf(label, sizeof label, "%s: no ReLU changes sign between FD points (%d do)", what, flips);
    tu_expect(flips == 0, label);
}

/* ---- FD of F = L_Q(θ_K(θ)) ------------------------------------------------------------- */

/* fd[P] = ∂F/∂θ_i by central differences per coordinate; returns the number of kinks
 * crossed. K = 0 makes F the query loss itself. */
static int fd_meta_coords(const fixture *f, float alpha, int K, float *fd)
{
    const size_t P = f->P;
    float *th = tu_vec(P), *tp = tu_vec((K + 1) * P), *tm = tu_vec((K + 1) * P), *g = tu_vec(P);
    memcpy(th, f->theta, P * sizeof *th);
    int flips = 0;
    for (size_t i = 0; i < P; i++) {
        th[i] = f->theta[i] + EPS_COORD;
        const double hp = th[i], fp = adapt(f, th, alpha, K, tp, g);
        th[i] = f->theta[i] - EPS_COORD;
        const double hm = th[i], fm = adapt(f, th, alpha, K, tm, g);
        th[i] = f->theta[i];
        fd[i] = (float)((fp - fm) / (hp - hm)); /* the step actually taken after rounding */
        flips += trajectory_flips(f, tp, tm, K);
    }
    free(th), free(tp), free(tm), free(g);
    return flips;
}

/* For N_DIRS unit directions v_j (tags tag0 + j): an[j] = g·v_j and fd[j] = central
 * difference of F along v_j. Returns the number of kinks crossed. */
static int fd_meta_dirs(const fixture *f, float alpha, int K, const float *grad, uint32_t tag0, double *an,
                        double *fd)
{
    const size_t P = f->P;
    float *v = tu_vec(P), *thp = tu_vec(P), *thm = tu_vec(P), *tp = tu_vec((K + 1) * P), *tm = tu_vec((K + 1) * P), *g = tu_vec(P);
    int flips = 0;
    for (int j = 0; j < N_DIRS; j++) {
        unit_direction(v, P, SEED_DIRS, tag0 + (uint32_t)j);
        tu_moved(thp, f->theta, EPS_DIR, v, P);
        tu_moved(thm, f->theta, -EPS_DIR, v, P);
        const double fp = adapt(f, thp, alpha, K, tp, g), fm = adapt(f, thm, alpha, K, tm, g);
        fd[j] = (fp - fm) / (2.0 * EPS_DIR);
        an[j] = dot_d(grad, v, P);
        flips += trajectory_flips(f, tp, tm, K);
    }
    free(v), free(thp), free(thm), free(tp), free(tm), free(g);
    return flips;
}

/* ---- checks --------------------------------------------------------------------------- */

/* mt_model_forward's loss and output against the reference-kernel forward pass. */
static void check_forward(const fixture *f, const char *name)
{
    const int N = f->t->n_support;
    float *want = tu_vec(N);
    unsigned char *active = mt_malloc((size_t)N * relu_width(&f->m));
    ref_forward(&f->m, f->theta, f->t->xs, N, want, active);
    const float L = mt_model_forward(&f->m, f->ws, f->theta, f->t->xs, f->t->ys, N);
    char label[128];
    /* the fast kernels sum in another order than the reference ones; test_layers bounds
     * the difference per layer by 2n·u·Σ|terms|, which stays below 1e-5 of the output */
    snprintf(label, sizeof label, "%s: model forward = reference layers, output", name);
    tu_check(label, tu_rel_diff(mt_model_output(&f->m, f->ws), want, N), 1e-5);
    double Lw = 0.0;
    for (int n = 0; n < N; n++) Lw += ((double)want[n] - f->t->ys[n]) * ((double)want[n] - f->t->ys[n]);
    Lw /= N;
    snprintf(label, sizeof label, "%s: model forward = reference layers, loss", name);
    tu_check(label, fabs(L - Lw) / Lw, 1e-5);
    free(want);
    free(active);
}

/* ∇L_S against FD per coordinate (small) or along directions (full). */
static void check_gradient(const fixture *f, const char *name, int per_coord)
{
    const size_t P = f->P;
    float *g = tu_vec(P);
    char label[128];
    mt_model_loss_grad(&f->m, f->ws, f->theta, f->t->xs, f->t->ys, f->t->n_support, g);
    /* F with K = 0 is the query loss; use the support set by swapping it in */
    fixture s = *f;
    mt_task swapped = *f->t;
    swapped.xq = f->t->xs, swapped.yq = f->t->ys, swapped.n_query = f->t->n_support;
    s.t = &swapped;
    if (per_coord) {
        float *fd = tu_vec(P);
        const int flips = fd_meta_coords(&s, 0.0f, 0, fd);
        snprintf(label, sizeof label, "%s: gradient vs FD per coordinate (P=%zu, max|FD| %.2g)", name, P,
                 max_abs(fd, P));
        tu_check(label, tu_rel_diff(g, fd, P), TOL_COORD);
        expect_no_flips(flips, name);
        free(fd);
    } else {
        double an[N_DIRS], fd[N_DIRS];
        const int flips = fd_meta_dirs(&s, 0.0f, 0, g, 100, an, fd);
        snprintf(label, sizeof label, "%s: gradient vs FD along %d directions (max|FD| %.2g)", name, N_DIRS,
                 max_abs_d(fd, N_DIRS));
        tu_check(label, tu_rel_diff_d(an, fd, N_DIRS), TOL_DIR);
        expect_no_flips(flips, name);
    }
    free(g);
}

/* H·v against FD of the gradient along v, and u·Hv = v·Hu. */
static void check_hvp(const fixture *f, const char *name)
{
    const size_t P = f->P;
    float *v = tu_vec(P), *u = tu_vec(P), *hv = tu_vec(P), *hu = tu_vec(P), *gp = tu_vec(P), *gm = tu_vec(P), *fd = tu_vec(P);
    float *thp = tu_vec(P), *thm = tu_vec(P);
    const mt_model *m = &f->m;
    const mt_task *t = f->t;
    char label[128];
    double worst = 0.0;
    int flips = 0;
    for (uint32_t j = 0; j < 3; j++) {
        unit_direction(v, P, SEED_DIRS, 200 + j);
        mt_model_hvp(m, f->ws, f->theta, t->xs, t->ys, t->n_support, v, hv);
        tu_moved(thp, f->theta, EPS_DIR, v, P);
        tu_moved(thm, f->theta, -EPS_DIR, v, P);
        mt_model_loss_grad(m, f->ws, thp, t->xs, t->ys, t->n_support, gp);
        mt_model_loss_grad(m, f->ws, thm, t->xs, t->ys, t->n_support, gm);
        for (size_t i = 0; i < P; i++) fd[i] = (float)(((double)gp[i] - gm[i]) / (2.0 * EPS_DIR));
        worst = fmax(worst, tu_rel_diff(hv, fd, P));
        flips += relu_flips(m, thp, thm, t->xs, t->n_support);
    }
    snprintf(label, sizeof label, "%s: HVP vs FD of the gradient (3 directions)", name);
    tu_check(label, worst, TOL_DIR);
    expect_no_flips(flips, name);

    /* symmetry of the exact product, for random (not unit) u and v */
    worst = 0.0;
    for (uint32_t j = 0; j < 4; j++) {
        tu_random(u, P, -1, 1, SEED_DIRS, 300 + 2 * j);
        tu_random(v, P, -1, 1, SEED_DIRS, 301 + 2 * j);
        mt_model_hvp(m, f->ws, f->theta, t->xs, t->ys, t->n_support, v, hv);
        mt_model_hvp(m, f->ws, f->theta, t->xs, t->ys, t->n_support, u, hu);
        double uhv = 0.0, vhu = 0.0, scale = 0.0;
        for (size_t i = 0; i < P; i++) {
            uhv += (double)u[i] * hv[i];
            vhu += (double)v[i] * hu[i];
            scale += fabs((double)u[i] * hv[i]);
        }
        worst = fmax(worst, fabs(uhv - vhu) / scale);
    }
    snprintf(label, sizeof label, "%s: HVP symmetric, |u.Hv - v.Hu| / sum|u*Hv| (4 pairs)", name);
    tu_check(label, worst, TOL_SYM);
    free(v), free(u), free(hv), free(hu), free(gp), free(gm), free(fd), free(thp), free(thm);
}

/* MAML's meta-gradient against FD of F; FOMAML's must miss it by TEETH tolerances. */
static void check_maml(const fixture *f, const char *name, float alpha, int K, int per_coord)
{
    const size_t P = f->P;
    float *g = tu_vec(P), *gfo = tu_vec(P), *traj = tu_vec((K + 1) * P), *scratch = tu_vec(P);
    mt_meta *mm = mt_meta_init(&f->m, MT_ALGO_MAML, K, N_ROWS, N_ROWS);
    mt_task_losses losses;
    char what[96], label[160];
    snprintf(what, sizeof what, "%s MAML K=%d alpha=%g", name, K, alpha);

    mt_meta_task_grad(mm, MT_ALGO_MAML, f->theta, alpha, K, f->t, g, &losses);
    mt_meta_task_grad(mm, MT_ALGO_FOMAML, f->theta, alpha, K, f->t, gfo, NULL);

    /* losses.post is F(θ), the objective the FD differentiates */
    const float F = adapt(f, f->theta, alpha, K, traj, scratch);
    snprintf(label, sizeof label, "%s: losses.post = F(theta) (%.4g)", what, F);
    tu_check(label, fabs(losses.post - F) / F, TOL_SAME);

    double d_maml, d_fomaml, tol, scale;
    int flips;
    if (per_coord) {
        float *fd = tu_vec(P);
        flips = fd_meta_coords(f, alpha, K, fd);
        d_maml = tu_rel_diff(g, fd, P);
        d_fomaml = tu_rel_diff(gfo, fd, P);
        tol = TOL_COORD;
        scale = max_abs(fd, P);
        free(fd);
    } else {
        double an[N_DIRS], an_fo[N_DIRS], fd[N_DIRS];
        flips = fd_meta_dirs(f, alpha, K, g, 400, an, fd);
        for (int j = 0; j < N_DIRS; j++) {
            float *v = scratch;
            unit_direction(v, P, SEED_DIRS, 400 + (uint32_t)j);
            an_fo[j] = dot_d(gfo, v, P);
        }
        d_maml = tu_rel_diff_d(an, fd, N_DIRS);
        d_fomaml = tu_rel_diff_d(an_fo, fd, N_DIRS);
        tol = TOL_DIR;
        scale = max_abs_d(fd, N_DIRS);
    }
    snprintf(label, sizeof label, "%s: vs FD of F %s (max|FD| %.2g)", what,
             per_coord ? "per coordinate" : "along directions", scale);
    tu_check(label, d_maml, tol);
    snprintf(label, sizeof label, "%s: FOMAML misses FD by %.2e > %g x tol", what, d_fomaml, TEETH);
    tu_expect(d_fomaml > TEETH * tol, label);
    expect_no_flips(flips, what);

    mt_meta_free(mm);
    free(g), free(gfo), free(traj), free(scratch);
}

/* ANIL: the inner loop adapts only the head, and its meta-gradient must be dF/dθ of that
 * objective over every parameter (the body's share comes through the head's adaptation and
 * the query loss). Checked against FD of the head-only F; MAML's gradient (of the full
 * adaptation) must miss it by TEETH tolerances, and its FD by as much the other way. */
static void check_anil(const fixture *full, const char *name, float alpha, int K, int per_coord)
{
    fixture f = *full;
    const int head = mt_model_find_op(&f.m, "head");
    f.lo = f.m.op[head].offset, f.hi = f.lo + f.m.op[head].n_params;
    const size_t P = f.P;
    float *g = tu_vec(P), *gm = tu_vec(P), *traj = tu_vec((K + 1) * P), *scratch = tu_vec(P);
    mt_meta *anil = mt_meta_init(&f.m, MT_ALGO_ANIL, K, N_ROWS, N_ROWS);
    mt_meta *maml = mt_meta_init(&f.m, MT_ALGO_MAML, K, N_ROWS, N_ROWS);
    mt_task_losses losses;
    char what[96], label[256];
    snprintf(what, sizeof what, "%s ANIL K=%d alpha=%g", name, K, alpha);
    mt_meta_task_grad(anil, MT_ALGO_ANIL, f.theta, alpha, K, f.t, g, &losses);
    mt_meta_task_grad(maml, MT_ALGO_MAML, f.theta, alpha, K, f.t, gm, NULL);
    const float F = adapt(&f, f.theta, alpha, K, traj, scratch);
    snprintf(label, sizeof label, "%s: losses.post = F(theta) of the head-only adaptation (%.4g)", what, F);
    tu_check(label, fabs(losses.post - F) / F, TOL_SAME);
    double d_anil, d_maml, tol;
    int flips;
    if (per_coord) {
        float *fd = tu_vec(P);
        flips = fd_meta_coords(&f, alpha, K, fd);
        d_anil = tu_rel_diff(g, fd, P);
        d_maml = tu_rel_diff(gm, fd, P);
        tol = TOL_COORD;
        free(fd);
    } else {
        double an[N_DIRS], an_m[N_DIRS], fd[N_DIRS];
        flips = fd_meta_dirs(&f, alpha, K, g, ANIL_DIRS, an, fd);
        for (int j = 0; j < N_DIRS; j++) {
            unit_direction(scratch, P, SEED_DIRS, ANIL_DIRS + (uint32_t)j);
            an_m[j] = dot_d(gm, scratch, P);
        }
        d_anil = tu_rel_diff_d(an, fd, N_DIRS);
        d_maml = tu_rel_diff_d(an_m, fd, N_DIRS);
        tol = TOL_DIR;
    }
    snprintf(label, sizeof label, "%s: vs FD of the head-only F %s", what, per_coord ? "per coordinate" : "along directions");
    tu_check(label, d_anil, tol);
    snprintf(label, sizeof label, "%s: MAML's gradient misses it by %.2e > %g x tol", what, d_maml, TEETH);
    tu_expect(d_maml > TEETH * tol, label);
    expect_no_flips(flips, what);
    /* Evaluation adapts the head only too: its loss after adaptation is F. */
    mt_meta *ev = mt_meta_init_eval(&f.m, MT_ALGO_ANIL, N_ROWS, N_ROWS);
    const mt_task_losses e = mt_meta_adapt_eval(ev, f.theta, alpha, K, f.t);
    snprintf(label, sizeof label, "%s: mt_meta_adapt_eval adapts the head only (post %.6g)", what, e.post);
    tu_check(label, fabs(e.post - F) / F, TOL_SAME);
    mt_meta_free(ev);
    mt_meta_free(anil);
    mt_meta_free(maml);
    free(g), free(gm), free(traj), free(scratch);
}

/* Meta-SGD: θ holds the MLP's parameters and then a learned rate for each, drawn in
 * [0.05, 0.15] so that each parameter's own rate matters. The meta-gradient over all 2P
 * values (parameters and rates) against FD of F per coordinate; MAML's gradient at one
 * scalar rate (0.1, the rates' mean) must miss the parameters' part by TEETH tolerances. */
static void check_metasgd(const fixture *plain, const char *name, int K)
{
    fixture f = *plain;
    mt_model_learn_rates(&f.m);
    f.P = f.m.n_params;
    const size_t P = f.P, Pn = P - f.m.n_rates;
    f.lo = 0, f.hi = Pn;
    float *theta = tu_vec(P);
    memcpy(theta, plain->theta, Pn * sizeof *theta);
    tu_random(theta + Pn, Pn, 0.05f, 0.15f, 3, 7);
    f.theta = theta;
    float *g = tu_vec(P), *fd = tu_vec(P), *gm = tu_vec(Pn);
    mt_meta *mm = mt_meta_init(&f.m, MT_ALGO_METASGD, K, N_ROWS, N_ROWS);
    mt_task_losses losses;
    char what[96], label[256];
    snprintf(what, sizeof what, "%s Meta-SGD K=%d", name, K);
    mt_meta_task_grad(mm, MT_ALGO_METASGD, theta, 0.0f, K, f.t, g, &losses);
    float *traj = tu_vec((K + 1) * P), *scratch = tu_vec(P);
    const float F = adapt(&f, theta, 0.0f, K, traj, scratch);
    snprintf(label, sizeof label, "%s: losses.post = F(theta, alpha) (%.4g)", what, F);
    tu_check(label, fabs(losses.post - F) / F, TOL_SAME);
    const int flips = fd_meta_coords(&f, 0.0f, K, fd);
    snprintf(label, sizeof label, "%s: d/d(theta, alpha) vs FD per coordinate (%zu values)", what, P);
    tu_check(label, tu_rel_diff(g, fd, P), TOL_COORD);
    snprintf(label, sizeof label, "%s: the rates' part alone vs FD", what);
    tu_check(label, tu_rel_diff(g + Pn, fd + Pn, Pn), TOL_COORD);
    expect_no_flips(flips, what);
    mt_meta *maml = mt_meta_init(&plain->m, MT_ALGO_MAML, K, N_ROWS, N_ROWS);
    mt_meta_task_grad(maml, MT_ALGO_MAML, theta, 0.1f, K, f.t, gm, NULL);
    const double d = tu_rel_diff(gm, fd, Pn);
    snprintf(label, sizeof label, "%s: MAML at one rate misses the parameters' part by %.2e > %g x tol", what, d, TEETH);
    tu_expect(d > TEETH * TOL_COORD, label);
    /* evaluation adapts with the learned rates too */
    mt_meta *ev = mt_meta_init_eval(&f.m, MT_ALGO_METASGD, N_ROWS, N_ROWS);
    const mt_task_losses e = mt_meta_adapt_eval(ev, theta, 0.0f, K, f.t);
    snprintf(label, sizeof label, "%s: mt_meta_adapt_eval adapts with the rates (post %.6g)", what, e.post);
    tu_check(label, fabs(e.post - F) / F, TOL_SAME);
    mt_meta_free(ev);
    mt_meta_free(maml);
    mt_meta_free(mm);
    free(theta), free(g), free(fd), free(gm), free(traj), free(scratch);
}

/* LSLR (MAML++): a learned rate per inner step and tensor, drawn in [0.05, 0.15]. MAML's
 * meta-gradient over the parameters and the K × 6 rates against FD per coordinate; FOMAML's
 * against its definition written out here: ∇L_Q(θ_K) for the parameters and, for the rate of
 * step k and tensor τ, −Σ_{i in τ} ∇L_S(θ_k)_i ∇L_Q(θ_K)_i. */
static void check_lslr(const fixture *plain, const char *name)
{
    enum { K = 3 };
    fixture f = *plain;
    mt_model_learn_step_rates(&f.m, K);
    f.P = f.m.n_params;
    const size_t P = f.P, Pn = P - f.m.n_rates;
    const int T = mt_model_tensor_count(&f.m) - 1;
    f.lo = 0, f.hi = Pn;
    float *theta = tu_vec(P);
    memcpy(theta, plain->theta, Pn * sizeof *theta);
    tu_random(theta + Pn, (size_t)K * T, 0.05f, 0.15f, 3, 9);
    f.theta = theta;
    float *g = tu_vec(P), *fd = tu_vec(P), *traj = tu_vec((K + 1) * P), *gk = tu_vec(P), *gq = tu_vec(P), *want = tu_vec(P);
    mt_meta *mm = mt_meta_init(&f.m, MT_ALGO_MAML, K, N_ROWS, N_ROWS);
    char what[96], label[256];
    snprintf(what, sizeof what, "%s LSLR K=%d", name, K);
    mt_meta_task_grad(mm, MT_ALGO_MAML, theta, 0.0f, K, f.t, g, NULL);
    const int flips = fd_meta_coords(&f, 0.0f, K, fd);
    snprintf(label, sizeof label, "%s: MAML d/d(theta, rates) vs FD per coordinate (%zu values)", what, P);
    tu_check(label, tu_rel_diff(g, fd, P), TOL_COORD);
    snprintf(label, sizeof label, "%s: the %d rates' part alone vs FD", what, K * T);
    tu_check(label, tu_rel_diff(g + Pn, fd + Pn, (size_t)K * T), TOL_COORD);
    expect_no_flips(flips, what);
    mt_meta_task_grad(mm, MT_ALGO_FOMAML, theta, 0.0f, K, f.t, g, NULL);
    adapt(&f, theta, 0.0f, K, traj, gk);
    mt_model_loss_grad(&f.m, f.ws, traj + (size_t)K * P, f.t->xq, f.t->yq, f.t->n_query, gq);
    memcpy(want, gq, Pn * sizeof *want);
    for (int k = 0; k < K; k++) {
        mt_model_loss_grad(&f.m, f.ws, traj + (size_t)k * P, f.t->xs, f.t->ys, f.t->n_support, gk);
        for (int tau = 0; tau < T; tau++) {
            mt_tensor_info ti;
            mt_model_tensor(&f.m, tau, &ti);
            double sum = 0.0;
            for (size_t i = ti.offset; i < ti.offset + ti.size; i++) sum += (double)gk[i] * gq[i];
            want[Pn + (size_t)k * T + (size_t)tau] = (float)-sum;
        }
    }
    snprintf(label, sizeof label, "%s: FOMAML = its first-order definition (parameters and rates)", what);
    tu_check(label, tu_rel_diff(g, want, P), TOL_SAME);
    mt_meta_free(mm);
    free(theta), free(g), free(fd), free(traj), free(gk), free(gq), free(want);
}

/* Multi-step loss (MAML++): MAML's meta-gradient of F = Σ_k w_k L_Q(θ_k) against FD of F;
 * the plain MAML gradient (of L_Q(θ_K) alone) must miss it by TEETH tolerances. FOMAML's
 * is Σ_k w_k ∇L_Q(θ_k), checked against that sum written out here (same operations but for
 * the order of the sum: tolerance 1e-6). */
static void check_msl(const fixture *plain, const char *name, float alpha)
{
    enum { K = 3 };
    fixture f = *plain;
    const float w[K] = {0.2f, 0.3f, 0.5f};
    f.w = w;
    const size_t P = f.P;
    float *g = tu_vec(P), *gp = tu_vec(P), *fd = tu_vec(P), *traj = tu_vec((K + 1) * P), *sum = tu_vec(P),
          *gk = tu_vec(P);
    mt_meta *mm = mt_meta_init(&f.m, MT_ALGO_MAML, K, N_ROWS, N_ROWS);
    char what[96], label[256];
    snprintf(what, sizeof what, "%s multi-step loss K=%d alpha=%g", name, K, alpha);
    mt_meta_task_grad(mm, MT_ALGO_MAML, f.theta, alpha, K, f.t, gp, NULL);
    mt_meta_set_step_weights(mm, w);
    mt_meta_task_grad(mm, MT_ALGO_MAML, f.theta, alpha, K, f.t, g, NULL);
    const int flips = fd_meta_coords(&f, alpha, K, fd);
    snprintf(label, sizeof label, "%s: MAML vs FD of sum_k w_k L_Q(theta_k) per coordinate", what);
    tu_check(label, tu_rel_diff(g, fd, P), TOL_COORD);
    const double d_plain = tu_rel_diff(gp, fd, P);
    snprintf(label, sizeof label, "%s: the last step's gradient alone misses it by %.2e > %g x tol", what, d_plain, TEETH);
    tu_expect(d_plain > TEETH * TOL_COORD, label);
    expect_no_flips(flips, what);
    mt_meta_task_grad(mm, MT_ALGO_FOMAML, f.theta, alpha, K, f.t, g, NULL);
    adapt(&f, f.theta, alpha, K, traj, gk);
    memset(sum, 0, P * sizeof *sum);
    for (int k = 1; k <= K; k++) {
        mt_model_loss_grad(&f.m, f.ws, traj + (size_t)k * P, f.t->xq, f.t->yq, f.t->n_query, gk);
        for (size_t i = 0; i < P; i++) sum[i] += w[k - 1] * gk[i];
    }
    snprintf(label, sizeof label, "%s: FOMAML = sum_k w_k grad L_Q(theta_k)", what);
    tu_check(label, tu_rel_diff(g, sum, P), TOL_SAME);
    mt_meta_free(mm);
    free(g), free(gp), free(fd), free(traj), free(sum), free(gk);

    /* The annealed weights: uniform at iteration 1, at the floor and the cap once annealed. */
    float a[K];
    mt_meta_msl_weights(a, K, 1, 100);
    tu_expect(a[0] == 1.0f / 3 && a[1] == 1.0f / 3 && a[2] == 1.0f / 3, "msl weights at iteration 1: all 1/K");
    mt_meta_msl_weights(a, K, 51, 100);
    tu_check("msl weights at iteration 51 of 100: 1/K - 50/(K*100) for the first", fabs(a[0] - (1.0 / 3 - 50.0 / 300)),
             1e-7);
    tu_check("  ... and 1/K + 2*50/(K*100) for the last", fabs(a[2] - (1.0 / 3 + 100.0 / 300)), 1e-7);
    mt_meta_msl_weights(a, K, 100000, 100);
    tu_check("msl weights long after annealing: 0.03/K for the first", fabs(a[0] - 0.01), 1e-7);
    tu_check("  ... and 1 - (K-1)*0.03/K for the last", fabs(a[2] - 0.98), 1e-7);
}

/* FOMAML = ∇L_Q(θ_K), Reptile = θ − θ_K, MAML with K = 0 = ∇L_Q(θ), and the losses of
 * mt_meta_adapt_eval = those of mt_meta_task_grad, against the inner loop written out here. */
static void check_identities(const fixture *f, const char *name, float alpha)
{
    const size_t P = f->P;
    enum { K_MAX = 3 };
    float *g = tu_vec(P), *want = tu_vec(P), *traj = tu_vec((K_MAX + 1) * P), *scratch = tu_vec(P);
    mt_meta *mm = mt_meta_init(&f->m, MT_ALGO_MAML, K_MAX, N_ROWS, N_ROWS);
    const mt_task *t = f->t;
    mt_task_losses losses;
    char label[160];

    for (int K = 0; K <= K_MAX; K += K == 0 ? 1 : 2) { /* K = 0, 1, 3 */
        const float *theta_K = traj + (size_t)K * P;
        adapt(f, f->theta, alpha, K, traj, scratch);

        const float fomaml_max = mt_meta_task_grad(mm, MT_ALGO_FOMAML, f->theta, alpha, K, t, g, NULL);
        float largest = 0.0f;
        for (size_t i = 0; i < P; i++) largest = fabsf(g[i]) > largest ? fabsf(g[i]) : largest;
        snprintf(label, sizeof label, "%s K=%d: task_grad returns max |g| (FOMAML)", name, K);
        tu_expect(fomaml_max == largest, label);
        mt_model_loss_grad(&f->m, f->ws, theta_K, t->xq, t->yq, t->n_query, want);
        snprintf(label, sizeof label, "%s K=%d: FOMAML = grad L_Q(theta_K)", name, K);
        tu_check(label, tu_rel_diff(g, want, P), TOL_SAME);
        if (K == 0) {
            mt_meta_task_grad(mm, MT_ALGO_MAML, f->theta, alpha, K, t, g, NULL);
            snprintf(label, sizeof label, "%s K=0: MAML = grad L_Q(theta)", name);
            tu_check(label, tu_rel_diff(g, want, P), TOL_SAME);
            continue; /* Reptile's θ − θ_0 is all zeros: nothing to compare relatively */
        }

        const float reptile_max = mt_meta_task_grad(mm, MT_ALGO_REPTILE, f->theta, alpha, K, t, g, &losses);
        largest = 0.0f;
        for (size_t i = 0; i < P; i++) largest = fabsf(g[i]) > largest ? fabsf(g[i]) : largest;
        snprintf(label, sizeof label, "%s K=%d: task_grad returns max |g| (Reptile)", name, K);
        tu_expect(reptile_max == largest, label);
        for (size_t i = 0; i < P; i++) want[i] = f->theta[i] - theta_K[i];
        snprintf(label, sizeof label, "%s K=%d: Reptile = theta - theta_K", name, K);
        tu_check(label, tu_rel_diff(g, want, P), TOL_SAME_DIFF);

        const mt_task_losses ev = mt_meta_adapt_eval(mm, f->theta, alpha, K, t);
        snprintf(label, sizeof label, "%s K=%d: adapt_eval = task_grad losses (pre, post)", name, K);
        tu_check(label, fmax(fabs(ev.pre - losses.pre) / losses.pre, fabs(ev.post - losses.post) / losses.post),
                 TOL_SAME);
        mt_meta_task_grad(mm, MT_ALGO_MAML, f->theta, alpha, K, t, g, &losses);
        snprintf(label, sizeof label, "%s K=%d: adapt_eval post = MAML losses.post", name, K);
        tu_check(label, fabs(ev.post - losses.post) / losses.post, TOL_SAME);
    }

    /* adapt_eval takes any number of steps, beyond the workspace's K */
    enum { STEPS = 10 };
    float *long_traj = tu_vec((STEPS + 1) * P);
    const float want_post = adapt(f, f->theta, alpha, STEPS, long_traj, scratch);
    const mt_task_losses ev = mt_meta_adapt_eval(mm, f->theta, alpha, STEPS, t);
    snprintf(label, sizeof label, "%s: adapt_eval %d steps = inner loop here", name, STEPS);
    tu_check(label, fabs(ev.post - want_post) / want_post, TOL_SAME);

    mt_meta_free(mm);
    free(g), free(want), free(traj), free(scratch), free(long_traj);
}

int main(void)
{
    fixture small, full;
    fixture_init(&small, 8, SEED_SMALL);
    fixture_init(&full, 40, SEED_FULL);
    printf("small 1-8-8-1, P=%zu; full 1-40-40-1, P=%zu\n", small.P, full.P);

    check_forward(&small, "small");
    check_forward(&full, "full");

    check_gradient(&small, "small", 1);
    check_gradient(&full, "full", 0);

    check_hvp(&small, "small");
    check_hvp(&full, "full");

    check_maml(&small, "small", 0.01f, 1, 1);
    check_maml(&small, "small", 0.01f, 3, 1);
    check_maml(&small, "small", 0.1f, 1, 1);
    check_maml(&small, "small", 0.1f, 3, 1);
    check_maml(&full, "full", 0.01f, 1, 0);
    check_maml(&full, "full", 0.01f, 3, 0);

    check_metasgd(&small, "small", 1);
    check_metasgd(&small, "small", 3);

    check_lslr(&small, "small");
    check_msl(&small, "small", 0.05f); /* 0.1 and 0.2 cross a ReLU kink in an FD step */

    check_anil(&small, "small", 0.1f, 1, 1);
    check_anil(&small, "small", 0.1f, 3, 1);
    check_anil(&full, "full", 0.01f, 3, 0);

    check_identities(&small, "small", 0.1f);
    check_identities(&full, "full", 0.01f);

    fixture_free(&small);
    fixture_free(&full);
    return tu_finish();
}
