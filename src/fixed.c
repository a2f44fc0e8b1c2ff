/* fixed.c — fixed-point exact summation (see fixed.h). */
#include "fixed.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "common.h"

double mt_fixed_quantum(float max_abs, long terms)
{
    assert(terms >= 1);
    if (!isfinite(max_abs)) return NAN;
    if (max_abs == 0.0f) return 0.0;
    int e;
    frexp((double)max_abs * (double)terms, &e); /* n·M < 2^e */
    return ldexp(1.0, e - MT_FIXED_BITS);       /* so n·M / q < 2^51 */
}

MT_CLONES float mt_fixed_max_abs(const float *x, size_t n)
{
    /* For non-negative floats the bit patterns order like the values (as int32 too: |x| has
     * the sign bit clear), and every NaN sorts above infinity: an integer max, which
     * vectorises (a float max reduction does not). Eight independent maxima, combined at the
     * end, keep the loop from waiting on one running maximum (2.5x faster on SSE2). */
    enum { LANES = 8 };
    int32_t lane[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            int32_t bits;
            memcpy(&bits, &x[i + j], sizeof bits);
            bits &= 0x7fffffff; /* |x| */
            lane[j] = bits > lane[j] ? bits : lane[j];
        }
    int32_t top = 0;
    for (; i < n; i++) {
        int32_t bits;
        memcpy(&bits, &x[i], sizeof bits);
        bits &= 0x7fffffff;
        top = bits > top ? bits : top;
    }
    for (int j = 0; j < LANES; j++) top = lane[j] > top ? lane[j] : top;
    if (top > 0x7f800000) return NAN;
    float m;
    memcpy(&m, &top, sizeof m);
    return m;
}

MT_CLONES void mt_fixed_add(int64_t *restrict acc, const float *restrict g, size_t n, double q)
{
    assert(q > 0.0);
    const double inv = 1.0 / q;          /* a power of two: g · inv is exact */
    const double magic = 0x1.8p52;      /* 1.5·2^52 */
    int64_t magic_bits;
    memcpy(&magic_bits, &magic, sizeof magic_bits);
    for (size_t i = 0; i < n; i++) {
        /* |x| < 2^51: x + 1.5·2^52 rounds x to the nearest integer (ties to even) and holds
         * it in the low mantissa bits; the bit patterns' difference is that integer. No
         * float-to-int64 conversion, so the loop vectorises. */
        const double y = (double)g[i] * inv + magic;
        int64_t bits;
        memcpy(&bits, &y, sizeof bits);
        acc[i] += bits - magic_bits;
    }
}

void mt_fixed_to_float(float *out, const int64_t *acc, size_t n, double q, double scale)
{
    for (size_t i = 0; i < n; i++) out[i] = (float)((double)acc[i] * q * scale);
}

void mt_fixed_block_max(float *max, const float *x, const size_t *bound, int n_blocks)
{
    for (int k = 0; k < n_blocks; k++) {
        const float m = mt_fixed_max_abs(x + bound[k], bound[k + 1] - bound[k]);
        max[k] = isnan(m) || isnan(max[k]) ? NAN : m > max[k] ? m : max[k];
    }
}

void mt_fixed_block_add(int64_t *acc, const float *g, const size_t *bound, int n_blocks, const double *q)
{
    for (int k = 0; k < n_blocks; k++)
        if (q[k] > 0.0) mt_fixed_add(acc + bound[k], g + bound[k], bound[k + 1] - bound[k], q[k]);
}

void mt_fixed_block_to_float(float *out, const int64_t *acc, size_t lo, size_t hi, const size_t *bound,
                             int n_blocks, const double *q, double scale)
{
    for (int k = 0; k < n_blocks; k++) {
        const size_t a = bound[k] > lo ? bound[k] : lo, b = bound[k + 1] < hi ? bound[k + 1] : hi;
        if (a < b) mt_fixed_to_float(out + (a - lo), acc + (a - lo), b - a, q[k], scale);
    }
}
