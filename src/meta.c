/* meta.c — the inner loop and meta-gradients of meta.h. */
#include "meta.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fixed.h"

struct mt_meta {
    const mt_model *model;
    mt_algo algo;  /* the most demanding algo served (maml > fomaml > reptile) */
    int max_steps;
    size_t P;
    mt_workspace *ws_q; /* query passes: forward, and backward unless reptile */
    mt_workspace *ws_s; /* support passes of the inner loop, and the R-passes of maml's reverse
                         * pass (the last step's activations are reused) */
    float *slab;   /* one allocation: */
    float *thetas; /* θ_0 … θ_K [K+1, P] for maml; two alternating vectors [2, P] otherwise */
    float *lambda; /* adjoint of the reverse pass [P] */
    float *u;      /* α·λ, the HVP direction     [P] */
    float *hv;     /* H_S(θ_k)·u                 [P] */
    size_t bytes;
};

mt_meta *mt_meta_init(const mt_model *m, mt_algo algo, int inner_steps, int n_support, int n_query)
{
    assert(inner_steps >= 0 && n_support > 0 && n_query > 0);
    mt_meta *mm = mt_calloc(1, sizeof *mm);
    mm->model = m;
    mm->algo = algo;
    mm->max_steps = inner_steps;
    mm->P = m->n_params;
    mm->ws_q = mt_workspace_init(m, n_query, algo == MT_ALGO_REPTILE ? MT_WS_FORWARD : MT_WS_GRAD);
    mm->ws_s = mt_workspace_init(m, n_support, algo == MT_ALGO_MAML ? MT_WS_HVP : MT_WS_GRAD);
    const size_t n_thetas = algo == MT_ALGO_MAML ? (size_t)inner_steps + 1 : 2;
    mm->slab = mt_calloc((n_thetas + 3) * mm->P, sizeof(float));
    mm->thetas = mm->slab;
    mm->lambda = mm->thetas + n_thetas * mm->P;
    mm->u = mm->lambda + mm->P;
    mm->hv = mm->u + mm->P;
    mm->bytes = (n_thetas + 3) * mm->P * sizeof(float) + mt_workspace_bytes(mm->ws_q) + mt_workspace_bytes(mm->ws_s);
    return mm;
}

size_t mt_meta_bytes(const mt_meta *mm) { return mm->bytes; }

void mt_meta_free(mt_meta *mm)
{
    if (!mm) return;
    mt_workspace_free(mm->ws_q);
    mt_workspace_free(mm->ws_s);
    free(mm->slab);
    free(mm);
}

/* θ_k: all of them are kept for maml's reverse pass, the last two otherwise. */
static float *theta_slot(const mt_meta *mm, int k)
{
    return mm->thetas + (size_t)(mm->algo == MT_ALGO_MAML ? k : k % 2) * mm->P;
}

/* Fraction of the query set the last forward pass (on the query set) got right. */
static float query_accuracy(const mt_meta *mm, const mt_task *t)
{
    return (float)mt_model_correct(mm->model, mm->ws_q, t->yq, t->n_query) / (float)t->n_query;
}

/* next = cur − α·grad */
static void sgd_step(float *next, const float *cur, const float *grad, float alpha, size_t P)
{
    for (size_t i = 0; i < P; i++) next[i] = cur[i] - alpha * grad[i];
}

float mt_meta_task_grad(mt_meta *mm, mt_algo algo, const float *theta, float inner_lr, int inner_steps,
                       const mt_task *t, float *g, mt_task_losses *losses)
{
    const mt_model *m = mm->model;
    const size_t P = mm->P;
    const int K = inner_steps;
    assert(K >= 0 && K <= mm->max_steps && algo >= mm->algo); /* the workspace serves algo */

    if (losses) {
        losses->pre = mt_model_forward(m, mm->ws_q, theta, t->xq, t->yq, t->n_query);
        losses->acc_pre = query_accuracy(mm, t);
    }

    /* Inner loop: θ_{k+1} = θ_k − α ∇L_S(θ_k); the gradient is formed in g as scratch. */
    memcpy(theta_slot(mm, 0), theta, P * sizeof(float));
    for (int k = 0; k < K; k++) {
        const float *cur = theta_slot(mm, k);
        mt_model_loss_grad(m, mm->ws_s, cur, t->xs, t->ys, t->n_support, g);
        sgd_step(theta_slot(mm, k + 1), cur, g, inner_lr, P);
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

    if (algo == MT_ALGO_MAML) {
        /* Reverse pass: λ ← (I − α H_S(θ_k)) λ, from the last inner step to the first.
         * ws_s still holds the support activations of step K−1, so that step needs only
         * the two R-passes; earlier steps recompute theirs (memory stays flat in K). */
        for (int k = K - 1; k >= 0; k--) {
            const float *theta_k = theta_slot(mm, k);
            for (size_t i = 0; i < P; i++) mm->u[i] = inner_lr * mm->lambda[i];
            if (k < K - 1) {
                mt_model_forward(m, mm->ws_s, theta_k, t->xs, t->ys, t->n_support);
                mt_model_backward(m, mm->ws_s, theta_k, t->xs, t->ys, t->n_support, NULL);
            }
            mt_model_rforward(m, mm->ws_s, theta_k, t->xs, mm->u, t->n_support);
            mt_model_rbackward(m, mm->ws_s, theta_k, t->xs, mm->u, t->n_support, mm->hv);
            for (size_t i = 0; i < P; i++) mm->lambda[i] -= mm->hv[i];
        }
    }
    memcpy(g, mm->lambda, P * sizeof(float));
    return mt_fixed_max_abs(g, P); /* g is in L1 now */
}

mt_task_losses mt_meta_adapt_eval(mt_meta *mm, const float *theta, float inner_lr, int steps,
                                  const mt_task *t)
{
    const mt_model *m = mm->model;
    const size_t P = mm->P;
    mt_task_losses out;
    out.pre = mt_model_forward(m, mm->ws_q, theta, t->xq, t->yq, t->n_query);
    out.acc_pre = query_accuracy(mm, t);
    /* Fast weights in lambda, their gradient in hv: two vectors whatever the step count. */
    memcpy(mm->lambda, theta, P * sizeof(float));
    for (int k = 0; k < steps; k++) {
        mt_model_loss_grad(m, mm->ws_s, mm->lambda, t->xs, t->ys, t->n_support, mm->hv);
        sgd_step(mm->lambda, mm->lambda, mm->hv, inner_lr, P);
    }
    out.post = mt_model_forward(m, mm->ws_q, mm->lambda, t->xq, t->yq, t->n_query);
    out.acc_post = query_accuracy(mm, t);
    return out;
}

static const char *const algo_names[] = {[MT_ALGO_MAML] = "maml", [MT_ALGO_FOMAML] = "fomaml",
                                         [MT_ALGO_REPTILE] = "reptile"};

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
