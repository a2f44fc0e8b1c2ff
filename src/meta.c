/* meta.c — the inner loop and meta-gradients of meta.h. */
#include "meta.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fixed.h"

struct mt_meta {
    const mt_model *model;
    mt_algo algo;  /* the algorithm the workspace is sized for (see served()) */
    int max_steps;
    size_t P;        /* meta-parameters: the network's, then the learned rates (metasgd, lslr) */
    size_t Pn;       /* the network's parameters (the passes read and write these only) */
    size_t lo, hi;   /* the slice of θ the inner loop adapts: all of the network, or the head (anil) */
    int first_op;    /* the first op owning adapted parameters: inner-loop backward starts there */
    int lslr;        /* the layout holds LSLR's rates [K, T]: T tensors of bounds bound[T + 1] */
    int n_tensors;
    size_t *bound;
    mt_workspace *ws_q; /* query passes: forward, and backward unless reptile */
    mt_workspace *ws_s; /* support passes of the inner loop, and the R-passes of the reverse
                         * pass (maml reuses the last step's activations) */
    float *slab;   /* one allocation: */
    float *thetas; /* θ_0 … θ_K [K+1, P] when a reverse pass revisits them (second order,
                    * LSLR); two alternating vectors [2, P] otherwise */
    float *lambda; /* adjoint of the reverse pass [P] */
    float *u;      /* rate·λ on the adapted slice, the HVP direction [P] */
    float *hv;     /* H_S(θ_k)·u                 [P] */
    const float *w; /* multi-step loss: weights of L_Q(θ_1) … L_Q(θ_K), or NULL (L_Q(θ_K) only) */
    size_t bytes;
};

static int second_order(mt_algo a) { return a == MT_ALGO_MAML || a == MT_ALGO_ANIL || a == MT_ALGO_METASGD; }

/* 1 iff a workspace sized for `sized` runs mt_meta_task_grad for `algo`: maml's serves fomaml
 * and reptile, fomaml's serves reptile; anil (another slice) and metasgd (rates in θ) are
 * served by their own. */
static int served(mt_algo sized, mt_algo algo)
{
    if (sized == MT_ALGO_ANIL || algo == MT_ALGO_ANIL || sized == MT_ALGO_METASGD || algo == MT_ALGO_METASGD)
        return sized == algo;
    static const int level[] = {[MT_ALGO_MAML] = 2, [MT_ALGO_FOMAML] = 1, [MT_ALGO_REPTILE] = 0};
    return level[algo] <= level[sized];
}

static mt_meta *meta_new(const mt_model *m, mt_algo algo, int inner_steps, int n_support, int n_query,
                         mt_ws_passes query, mt_ws_passes support, size_t n_thetas)
{
    assert(inner_steps >= 0 && n_support > 0 && n_query > 0);
    mt_meta *mm = mt_calloc(1, sizeof *mm);
    mm->model = m;
    mm->algo = algo;
    mm->max_steps = inner_steps;
    mm->P = m->n_params;
    mm->Pn = m->n_params - m->n_rates;
    mm->lslr = m->rate_steps > 0;
    assert((algo == MT_ALGO_METASGD) == (m->n_rates > 0 && !mm->lslr) && "per-parameter rates exactly for metasgd");
    assert(!mm->lslr || algo == MT_ALGO_MAML || algo == MT_ALGO_FOMAML);
    if (mm->lslr) { /* the op tensors' bounds in θ, for each rate's block */
        mm->n_tensors = mt_model_tensor_count(m) - 1;
        mm->bound = mt_calloc((size_t)mm->n_tensors + 1, sizeof *mm->bound);
        for (int i = 0; i < mm->n_tensors; i++) {
            mt_tensor_info ti;
            mt_model_tensor(m, i, &ti);
            mm->bound[i + 1] = ti.offset + ti.size;
        }
    }
    mm->lo = 0, mm->hi = mm->Pn, mm->first_op = 0;
    if (algo == MT_ALGO_ANIL) {
        const int head = mt_model_find_op(m, "head");
        assert(head >= 0 && "every model has a head");
        mm->lo = m->op[head].offset, mm->hi = mm->lo + m->op[head].n_params, mm->first_op = head;
    }
    mm->ws_q = mt_workspace_init(m, n_query, query);
    mm->ws_s = mt_workspace_init(m, n_support, support);
    mm->slab = mt_calloc((n_thetas + 3) * mm->P, sizeof(float));
    mm->thetas = mm->slab;
    mm->lambda = mm->thetas + n_thetas * mm->P;
    mm->u = mm->lambda + mm->P;
    mm->hv = mm->u + mm->P;
    mm->bytes = (n_thetas + 3) * mm->P * sizeof(float) + mt_workspace_bytes(mm->ws_q) + mt_workspace_bytes(mm->ws_s);
    return mm;
}

mt_meta *mt_meta_init(const mt_model *m, mt_algo algo, int inner_steps, int n_support, int n_query)
{
    /* LSLR's reverse pass revisits every θ_k, first order too */
    const int keep = second_order(algo) || m->rate_steps > 0;
    return meta_new(m, algo, inner_steps, n_support, n_query, algo == MT_ALGO_REPTILE ? MT_WS_FORWARD : MT_WS_GRAD,
                    second_order(algo) ? MT_WS_HVP : MT_WS_GRAD, keep ? (size_t)inner_steps + 1 : 2);
}

mt_meta *mt_meta_init_eval(const mt_model *m, mt_algo algo, int n_support, int n_query)
{
    return meta_new(m, algo, 0, n_support, n_query, MT_WS_FORWARD, MT_WS_GRAD, 2);
}

size_t mt_meta_bytes(const mt_meta *mm) { return mm->bytes; }

void mt_meta_set_step_weights(mt_meta *mm, const float *w)
{
    assert(!w || mm->algo == MT_ALGO_MAML || mm->algo == MT_ALGO_FOMAML);
    mm->w = w;
}

/* λ += w·∇L_Q(θ) on the query set; scratch[P]. */
static void add_query_grad(mt_meta *mm, float *lambda, const float *theta, float w, const mt_task *t, float *scratch)
{
    mt_model_forward(mm->model, mm->ws_q, theta, t->xq, t->yq, t->n_query);
    mt_model_backward(mm->model, mm->ws_q, theta, t->xq, t->yq, t->n_query, scratch);
    for (size_t i = 0; i < mm->Pn; i++) lambda[i] += w * scratch[i];
}

void mt_meta_free(mt_meta *mm)
{
    if (!mm) return;
    mt_workspace_free(mm->ws_q);
    mt_workspace_free(mm->ws_s);
    free(mm->bound);
    free(mm->slab);
    free(mm);
}

/* θ_k: all of them are kept for the reverse pass of maml and anil, the last two otherwise. */
static float *theta_slot(const mt_meta *mm, int k)
{
    return mm->thetas + (size_t)(second_order(mm->algo) || mm->lslr ? k : k % 2) * mm->P;
}

/* Fraction of the query set the last forward pass (on the query set) got right. */
static float query_accuracy(const mt_meta *mm, const mt_task *t)
{
    return (float)mt_model_correct(mm->model, mm->ws_q, t->yq, t->n_query) / (float)t->n_query;
}

/* Inner step k from cur (either may be the same vector as next): next = cur − α·∇L_S(cur)
 * on the adapted slice (α ⊙ for metasgd, step k's per-tensor rates for LSLR, both from cur's
 * rates), next = cur elsewhere (the rates included). grad[P] is scratch; for anil only the head's block is formed (the backward pass
 * stops at the head). */
static void inner_step(mt_meta *mm, float *next, const float *cur, float *grad, float alpha, int k, const mt_task *t)
{
    mt_model_forward(mm->model, mm->ws_s, cur, t->xs, t->ys, t->n_support);
    mt_model_backward_ops(mm->model, mm->ws_s, cur, t->xs, t->ys, t->n_support, grad, mm->first_op);
    if (next != cur) memcpy(next, cur, mm->P * sizeof *next);
    if (mm->algo == MT_ALGO_METASGD) { /* each parameter's own rate, carried along in θ */
        const float *rate = cur + mm->Pn;
        for (size_t i = mm->lo; i < mm->hi; i++) next[i] = cur[i] - rate[i] * grad[i];
        return;
    }
    if (mm->lslr) { /* step k's rate of each tensor (steps past the learned ones: the last's) */
        const float *rate = cur + mm->Pn + (size_t)(k < mm->model->rate_steps ? k : mm->model->rate_steps - 1) *
                                               (size_t)mm->n_tensors;
        for (int tau = 0; tau < mm->n_tensors; tau++)
            for (size_t i = mm->bound[tau]; i < mm->bound[tau + 1]; i++) next[i] = cur[i] - rate[tau] * grad[i];
        return;
    }
    for (size_t i = mm->lo; i < mm->hi; i++) next[i] = cur[i] - alpha * grad[i];
}

float mt_meta_task_grad(mt_meta *mm, mt_algo algo, const float *theta, float inner_lr, int inner_steps,
                       const mt_task *t, float *g, mt_task_losses *losses)
{
    const mt_model *m = mm->model;
    const size_t P = mm->P;
    const int K = inner_steps;
    assert(K >= 0 && K <= mm->max_steps && served(mm->algo, algo));

    if (losses) {
        losses->pre = mt_model_forward(m, mm->ws_q, theta, t->xq, t->yq, t->n_query);
        losses->acc_pre = query_accuracy(mm, t);
    }

    /* Inner loop: θ_{k+1} = θ_k − α ∇L_S(θ_k) on the adapted slice; g is the scratch. With a
     * multi-step loss, FOMAML's sum Σ_{k<K} w_k ∇L_Q(θ_k) is gathered on the way (in u);
     * MAML's is gathered by the reverse pass, where θ_k are at hand again. */
    const int msl = mm->w != NULL && K > 0 && algo != MT_ALGO_REPTILE;
    /* the reverse pass runs for second order and for LSLR's rates; FOMAML without it sums
     * its multi-step loss in the inner loop */
    const int reverse = second_order(algo) || (mm->lslr && algo != MT_ALGO_REPTILE);
    const int fo_sum = algo == MT_ALGO_FOMAML && !reverse;
    if (msl && fo_sum) memset(mm->u, 0, P * sizeof(float));
    memcpy(theta_slot(mm, 0), theta, P * sizeof(float));
    for (int k = 0; k < K; k++) {
        inner_step(mm, theta_slot(mm, k + 1), theta_slot(mm, k), g, inner_lr, k, t);
        if (msl && fo_sum && k + 1 < K) add_query_grad(mm, mm->u, theta_slot(mm, k + 1), mm->w[k], t, g);
    }
    const float *theta_K = theta_slot(mm, K);

    if (algo == MT_ALGO_REPTILE) {
        if (losses) {
            losses->post = mt_model_forward(m, mm->ws_q, theta_K, t->xq, t->yq, t->n_query);
            losses->acc_post = query_accuracy(mm, t);
        }
        for (size_t i = 0; i < P; i++) g[i] = theta[i] - theta_K[i];
        return mt_fixed_max_abs(g, P); /* g is in L1 now */
    }

    float post = mt_model_forward(m, mm->ws_q, theta_K, t->xq, t->yq, t->n_query);
    if (losses) {
        losses->post = post;
        losses->acc_post = query_accuracy(mm, t);
    }
    mt_model_backward(m, mm->ws_q, theta_K, t->xq, t->yq, t->n_query, mm->lambda);
    if (mm->P > mm->Pn) memset(mm->lambda + mm->Pn, 0, (mm->P - mm->Pn) * sizeof(float)); /* dα starts at 0 */
    if (msl) { /* λ = w_K ∇L_Q(θ_K) (+ FOMAML's earlier steps) */
        for (size_t i = 0; i < mm->Pn; i++) mm->lambda[i] *= mm->w[K - 1];
        if (fo_sum)
            for (size_t i = 0; i < mm->Pn; i++) mm->lambda[i] += mm->u[i];
    }

    if (reverse) {
        /* Reverse pass: θ_{k+1} = θ_k − α·M·∇L_S(θ_k) with M the mask of the adapted slice,
         * so λ ← (I − α H_S(θ_k) M) λ = λ − H_S(θ_k)(α M λ), from the last inner step to the
         * first (H is symmetric). The whole of λ moves: for anil the body's share is the
         * mixed block of H, exact. ws_s still holds the support activations of step K−1;
         * maml's backward there formed every node's gradient, so that step needs only the
         * R-passes, while anil's stopped at the head and is redone. Earlier steps recompute
         * theirs (memory stays flat in K). */
        const int sgd = algo == MT_ALGO_METASGD, hvp = second_order(algo);
        memset(mm->u, 0, P * sizeof(float));
        for (int k = K - 1; k >= 0; k--) {
            const float *theta_k = theta_slot(mm, k);
            /* the learned rates need ∇L_S(θ_k) itself (in hv until the R-passes overwrite it) */
            const int need_g = sgd || mm->lslr;
            if (k < K - 1 || (!hvp && need_g)) mt_model_forward(m, mm->ws_s, theta_k, t->xs, t->ys, t->n_support);
            if (k < K - 1 || mm->first_op > 0 || need_g)
                mt_model_backward(m, mm->ws_s, theta_k, t->xs, t->ys, t->n_support, need_g ? mm->hv : NULL);
            if (sgd) {
                const float *rate = theta_k + mm->Pn;
                float *drate = mm->lambda + mm->Pn;
                for (size_t i = 0; i < mm->Pn; i++) drate[i] -= mm->hv[i] * mm->lambda[i];
                for (size_t i = 0; i < mm->Pn; i++) mm->u[i] = rate[i] * mm->lambda[i];
            } else if (mm->lslr) { /* dρ[k, τ] −= Σ_{i in τ} ∇L_S(θ_k)_i λ_i;  u = ρ[k, τ(i)] λ_i */
                const float *rate = theta_k + mm->Pn + (size_t)k * (size_t)mm->n_tensors;
                float *drate = mm->lambda + mm->Pn + (size_t)k * (size_t)mm->n_tensors;
                for (int tau = 0; tau < mm->n_tensors; tau++) {
                    double sum = 0.0;
                    for (size_t i = mm->bound[tau]; i < mm->bound[tau + 1]; i++) {
                        sum += (double)mm->hv[i] * mm->lambda[i];
                        mm->u[i] = rate[tau] * mm->lambda[i];
                    }
                    drate[tau] -= (float)sum;
                }
            } else {
                for (size_t i = mm->lo; i < mm->hi; i++) mm->u[i] = inner_lr * mm->lambda[i];
            }
            if (hvp) { /* FOMAML drops the Hessian: λ passes θ_k unchanged */
                mt_model_rforward(m, mm->ws_s, theta_k, t->xs, mm->u, t->n_support);
                mt_model_rbackward(m, mm->ws_s, theta_k, t->xs, mm->u, t->n_support, mm->hv);
                for (size_t i = 0; i < mm->Pn; i++) mm->lambda[i] -= mm->hv[i];
            }
            /* multi-step loss: θ_k's own query loss joins the adjoint of θ_k (k >= 1) */
            if (msl && k >= 1) add_query_grad(mm, mm->lambda, theta_k, mm->w[k - 1], t, mm->hv);
        }
    }
    memcpy(g, mm->lambda, P * sizeof(float));
    return mt_fixed_max_abs(g, P); /* g is in L1 now */
}

mt_task_losses mt_meta_adapt_eval(mt_meta *mm, const float *theta, float inner_lr, int steps,
                                  const mt_task *t)
{
    const mt_model *m = mm->model;
    mt_task_losses out;
    out.pre = mt_model_forward(m, mm->ws_q, theta, t->xq, t->yq, t->n_query);
    out.acc_pre = query_accuracy(mm, t);
    /* Fast weights in lambda, their gradient in hv: two vectors whatever the step count. */
    memcpy(mm->lambda, theta, mm->P * sizeof(float));
    for (int k = 0; k < steps; k++) inner_step(mm, mm->lambda, mm->lambda, mm->hv, inner_lr, k, t);
    out.post = mt_model_forward(m, mm->ws_q, mm->lambda, t->xq, t->yq, t->n_query);
    out.acc_post = query_accuracy(mm, t);
    return out;
}

void mt_meta_msl_weights(float *w, int K, long iteration, long anneal)
{
    assert(K >= 1 && iteration >= 1 && anneal >= 1);
    const double t = (double)(iteration - 1), decay = 1.0 / K / (double)anneal, floor = 0.03 / K;
    for (int k = 0; k < K - 1; k++) w[k] = (float)fmax(1.0 / K - t * decay, floor);
    w[K - 1] = (float)fmin(1.0 / K + t * (K - 1) * decay, 1.0 - (K - 1) * floor);
}

static const char *const algo_names[] = {[MT_ALGO_MAML] = "maml", [MT_ALGO_FOMAML] = "fomaml",
                                         [MT_ALGO_REPTILE] = "reptile", [MT_ALGO_ANIL] = "anil",
                                         [MT_ALGO_METASGD] = "metasgd"};

int mt_algo_parse(const char *name, mt_algo *out)
{
    for (int a = 0; a < (int)(sizeof algo_names / sizeof algo_names[0]); a++)
        if (strcmp(name, algo_names[a]) == 0) {
            *out = (mt_algo)a;
            return 0;
        }
    return -1;
}

const char *mt_algo_name(mt_algo a) { return algo_names[a]; }
