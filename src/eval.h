/*
 * eval.h — few-shot evaluation of parameters θ: adapt to fresh tasks, measure the query set.
 * `metatrain eval` evaluates a checkpoint on the test stream; a sweep evaluates each point on
 * the meta-validation stream to choose between points.
 */
#ifndef MT_EVAL_H
#define MT_EVAL_H

#include "config.h"
#include "dist.h"
#include "rng.h"

typedef struct {
    long tasks;
    int classify;                     /* 1: accuracy (fewshot), 0: mean squared error (sinusoid) */
    int inner_steps;                  /* adaptation steps used */
    double mean, ci95;                /* after adaptation: mean and 95% CI half-width (1.96 s/sqrt n) */
    double mean_before, ci95_before;  /* before adaptation */
} mt_eval_result;

/* Collective. Evaluates theta (of the model cfg builds) on `tasks` tasks of stream `purpose`
 * (MT_STREAM_EVAL: the test split; MT_STREAM_VAL: task.val_split, or the test split when it
 * is empty), adapting with inner_steps steps (< 0: meta.eval_inner_steps). Tasks are split
 * over the ranks; every task has its own slot of the summed vector, so the result is the same
 * for any rank count. Returns 0, or MT_EXIT_USAGE after rank 0 printed why (the split cannot
 * be loaded). */
int mt_eval_theta(const mt_dist *d, const mt_config *cfg, mt_stream purpose, const float *theta, long tasks,
                  int inner_steps, mt_eval_result *out);

/* Mean and 95% CI half-width (1.96·s/√n; 0 for n < 2) of x[n]. */
void mt_mean_ci95(const double *x, long n, double *mean, double *ci);

#endif
