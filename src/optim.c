/* optim.c — Adam (see optim.h). */
#include "optim.h"

#include <assert.h>
#include <math.h>

void mt_adam_step(float *theta, float *m, float *v, const float *g, size_t n, long t,
                  const mt_adam_config *c)
{
    assert(t >= 1);
    const double bc1 = 1.0 - pow(c->beta1, (double)t);
    const double bc2 = 1.0 - pow(c->beta2, (double)t);
    const float step_size = (float)(c->lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float b1 = c->beta1, b2 = c->beta2;
    for (size_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        float denom = sqrtf(v[i]) / bc2_sqrt + c->eps;
        theta[i] -= step_size * m[i] / denom;
    }
}
