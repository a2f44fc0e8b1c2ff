/* fixed.c — fixed-point exact summation (see fixed.h). */
#include "fixed.h"

#include <assert.h>
#include <math.h>

double mt_fixed_quantum(float max_abs, long terms)
{
    assert(terms >= 1);
    if (!isfinite(max_abs)) return NAN;
    if (max_abs == 0.0f) return 0.0;
    int e;
    frexp((double)max_abs * (double)terms, &e); /* n·M < 2^e */
    return ldexp(1.0, e - 62);                  /* so n·M / q < 2^62 */
}

float mt_fixed_max_abs(const float *x, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (isnan(a)) return a;
        if (a > m) m = a;
    }
    return m;
}

void mt_fixed_add(int64_t *restrict acc, const float *restrict g, size_t n, double q)
{
    assert(q > 0.0);
    const double inv = 1.0 / q; /* a power of two: g · inv is exact */
    for (size_t i = 0; i < n; i++) {
        /* Round half away from zero, inline (no libm call per value). Only determinism
         * matters for the sum; the rounding error is at most one quantum. */
        const double x = (double)g[i] * inv;
        acc[i] += (int64_t)(x + (x < 0.0 ? -0.5 : 0.5));
    }
}

void mt_fixed_to_float(float *out, const int64_t *acc, size_t n, double q, double scale)
{
    for (size_t i = 0; i < n; i++) out[i] = (float)((double)acc[i] * q * scale);
}
