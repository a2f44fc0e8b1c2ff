/*
 * meta.h — inner-loop adaptation and the meta-gradient of one task.
 *
 * For a task with support set S and query set Q, inner learning rate α and K inner steps:
 *
 *   θ_0 = θ,   θ_{k+1} = θ_k − α ∇L_S(θ_k)                     (k = 0 … K−1)
 *
 *   maml     g = dL_Q(θ_K)/dθ, exact second order, by a reverse pass over the inner steps:
 *              λ = ∇L_Q(θ_K);  for k = K−1 … 0:  λ ← λ − H_S(θ_k)(α λ);  g = λ
 *            Each H_S(θ_k)·u is an exact R-operator product (model.h). Only θ_0 … θ_K are
 *            kept (K+1 vectors of P floats); activations are recomputed per step, so memory
 *            does not grow with the activations of K steps. Only the support workspace
 *            holds R-values: the query set is never differentiated twice.
 *   fomaml   g = ∇L_Q(θ_K)        (the Hessian terms dropped)
 *   reptile  g = θ − θ_K          (adaptation on the support set; Adam then moves θ toward θ_K)
 *   metasgd  a learned inner learning rate per parameter (Li et al. 2017): θ holds the network's
 *            parameters then their rates α (mt_model_learn_rates), θ_{k+1} = θ_k − α ⊙ ∇L_S(θ_k),
 *            and g = dL_Q(θ_K)/d(θ, α) exact: in the reverse pass, with λ the adjoint of θ_{k+1},
 *              dα −= ∇L_S(θ_k) ⊙ λ;  λ ← λ − H_S(θ_k)(α ⊙ λ)
 *            (inner_lr is not used: the rates are in θ).
 *   multi-step loss (maml, fomaml; mt_meta_set_step_weights): the query loss after every
 *            step, Σ_k w_k L_Q(θ_k); maml's reverse pass adds w_k ∇L_Q(θ_k) to λ at step k.
 *   anil     the inner loop adapts only the head's block of θ (Raghu et al. 2020):
 *              θ_{k+1} = θ_k − α M ∇L_S(θ_k), M the mask of the head;  g = dL_Q(θ_K)/dθ exact:
 *              λ = ∇L_Q(θ_K);  for k = K−1 … 0:  λ ← λ − H_S(θ_k)(α M λ);  g = λ
 *            The body is moved by the outer loop only, through the query loss and through the
 *            head's adaptation (the mixed block of H). The inner steps backpropagate through
 *            the head alone.
 *
 * Nothing here allocates after mt_meta_init. Not thread-safe per mt_meta (one per thread).
 */
#ifndef MT_META_H
#define MT_META_H

#include "model.h"

typedef enum { MT_ALGO_MAML, MT_ALGO_FOMAML, MT_ALGO_REPTILE, MT_ALGO_ANIL, MT_ALGO_METASGD } mt_algo;

/* One task's data; rows of x are inputs [N, model.in], rows of y targets [N, model.out]. */
typedef struct {
    const float *xs, *ys; /* support [Ns, in], [Ns, out] */
    const float *xq, *yq; /* query   [Nq, in], [Nq, out] */
    int n_support, n_query;
} mt_task;

/* Query losses of a task before (at θ) and after (at θ_K) adaptation, and for
 * classification models the fraction of query examples classified correctly (else 0). */
typedef struct {
    float pre, post;
    float acc_pre, acc_post;
} mt_task_losses;

typedef struct mt_meta mt_meta;

/* Workspace for up to inner_steps steps of algo on support sets of up to n_support rows and
 * query sets of up to n_query rows, sized for what algo needs: maml keeps θ_0 … θ_K and the
 * support activations' R-values, fomaml and reptile two parameter vectors and no R-values;
 * reptile does not backpropagate the query loss; anil keeps what maml keeps. A workspace for
 * maml also serves fomaml and reptile, one for fomaml also serves reptile; anil's serves
 * anil. mt_meta_adapt_eval works with any, adapting what algo adapts. */
mt_meta *mt_meta_init(const mt_model *m, mt_algo algo, int inner_steps, int n_support, int n_query);
/* The smallest workspace, for mt_meta_adapt_eval only: it adapts what algo adapts (all of θ,
 * or the head for anil) with forward-only query passes. */
mt_meta *mt_meta_init_eval(const mt_model *m, mt_algo algo, int n_support, int n_query);
/* Multi-step loss (MAML++): with w[K] (K = the inner_steps of every later call; the array is
 * read, not copied, and must stay valid), maml and fomaml differentiate Σ_k w[k−1]·L_Q(θ_k)
 * over k = 1 … K instead of L_Q(θ_K): exactly for maml (each θ_k's query gradient joins the
 * reverse pass's adjoint at step k), without the Hessian terms for fomaml. NULL restores
 * L_Q(θ_K). Only for workspaces made for maml or fomaml. */
void mt_meta_set_step_weights(mt_meta *mm, const float *w);

/* The MAML++ weights of the multi-step loss at iteration `iteration` (1-based) of a run that
 * anneals over `anneal` iterations, for K steps, into w[K]: all 1/K at the start; the first
 * K−1 fall by 1/(K·anneal) per iteration to at least 0.03/K, the last rises by K−1 times as
 * much to at most 1 − (K−1)·0.03/K. */
void mt_meta_msl_weights(float *w, int K, long iteration, long anneal);

/* Bytes of the activations and parameter vectors held (what mt_meta_init allocated). */
size_t mt_meta_bytes(const mt_meta *mm);
void mt_meta_free(mt_meta *mm); /* accepts NULL */

/* g[P] = the task's meta-gradient for algo at θ[P] with inner_steps steps of size inner_lr
 * (inner_steps <= the workspace's). If losses is not NULL it receives the query loss before
 * and after adaptation (the "before" costs one extra forward pass). Returns max_i |g[i]|
 * (NaN if any g[i] is NaN), found while g is written: the exact reduction's quantum needs it. */
float mt_meta_task_grad(mt_meta *mm, mt_algo algo, const float *theta, float inner_lr, int inner_steps,
                       const mt_task *t, float *g, mt_task_losses *losses);

/* Adapts θ on the support set for `steps` SGD steps (any number, no storage per step; the
 * head only for a workspace made for anil) and returns the query losses before and after.
 * Used by evaluation. */
mt_task_losses mt_meta_adapt_eval(mt_meta *mm, const float *theta, float inner_lr, int steps,
                                  const mt_task *t);

/* Parses "maml", "fomaml", "reptile", "anil", "metasgd"; returns 0, or -1 for an unknown name. */
int mt_algo_parse(const char *name, mt_algo *out);
const char *mt_algo_name(mt_algo a);

#endif
