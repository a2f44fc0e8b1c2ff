/*
 * optim.h — the outer optimizer: Adam (Kingma & Ba 2015), in PyTorch's formulation so the
 * comparison runs in tests/reference/ match step for step.
 *
 * It works on any contiguous range of θ with the matching ranges of the moments, so a rank
 * can update just its shard of the parameters.
 */
#ifndef MT_OPTIM_H
#define MT_OPTIM_H

#include <stddef.h>

typedef struct {
    float lr, beta1, beta2, eps;
} mt_adam_config;

/* One Adam step number t (t >= 1, counting from the first update) on n entries:
 *   m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²
 *   θ ← θ − (lr / (1−β1^t)) · m / (sqrt(v) / sqrt(1−β2^t) + eps)
 * theta, m, v, g are [n]; m and v start as zeros. */
void mt_adam_step(float *theta, float *m, float *v, const float *g, size_t n, long t,
                  const mt_adam_config *c);

#endif
