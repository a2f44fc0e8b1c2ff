/* fuzz_fixed.c — libFuzzer harness for the fixed-point exact summation (src/fixed.c) on
 * arbitrary float bit patterns: zeros, subnormals, FLT_MAX, infinities and NaNs included.
 *
 * Input: byte 0 picks the number of terms T = 1 + byte % 16; the rest is read as native
 * floats, n = count / T per term (term t is floats [t·n, t·n + n)). Checked, as the exact
 * reduction relies on them (see fixed.h):
 *   - mt_fixed_max_abs is the largest |x| (NaN if any x is NaN);
 *   - mt_fixed_quantum is NaN for a non-finite max, 0 for a zero max, else the finest power of
 *     two q with T·max/q < 2^51, so every |x/q| < 2^51;
 *   - mt_fixed_add rounds each x/q to the nearest integer, ties to even (an independent
 *     llrint is the oracle), so each term's round-trip error |round(x/q)·q − x| ≤ q/2, and
 *     the integer sums do not depend on the order the terms are added in;
 *   - mt_fixed_to_float returns the float nearest to acc·q (within half an ulp).
 * And the per-block forms, with the vector split into two blocks at n·(byte 0 / 16) / 16:
 * mt_fixed_block_max is each block's reference max over all terms, mt_fixed_block_add with
 * each block's quantum gives each block's single-block sums (a block with quantum 0 adds
 * nothing), and mt_fixed_block_to_float of two shards split at an arbitrary point (byte 1)
 * gives mt_fixed_to_float of each block. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fixed.h"
#include "fuzz_util.h"

enum { MAX_TERMS = 16 };

/* The reference for mt_fixed_max_abs: NaN if any NaN, else the largest |x|. */
static float max_abs_ref(const float *x, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        if (isnan(x[i])) return NAN;
        if (fabsf(x[i]) > m) m = fabsf(x[i]);
    }
    return m;
}

/* Half an ulp of float o, measured away from zero (the larger neighbour gap: a valid bound
 * at a power of two too). */
static double half_ulp(float o)
{
    const float a = fabsf(o);
    return a == FLT_MAX ? ldexp(1.0, 127 - 24) : 0.5 * ((double)nextafterf(a, INFINITY) - a);
}

/* The per-block functions against the single-block ones on blocks [0, cut) and [cut, n) of
 * the T terms x[T, n]. */
static void check_blocks(const float *x, long T, size_t n, size_t cut, size_t shard_cut)
{
    const size_t bound[3] = {0, cut, n};
    float max[2] = {0.0f, 0.0f};
    for (long t = 0; t < T; t++) mt_fixed_block_max(max, x + (size_t)t * n, bound, 2);
    double q[2];
    for (int k = 0; k < 2; k++) {
        float m_ref = 0.0f;
        for (long t = 0; t < T && !isnan(m_ref); t++) {
            const float m = max_abs_ref(x + (size_t)t * n + bound[k], bound[k + 1] - bound[k]);
            m_ref = isnan(m) ? NAN : m > m_ref ? m : m_ref;
        }
        FUZZ_CHECK(isnan(max[k]) ? isnan(m_ref) : max[k] == m_ref, "block %d: max %a, reference %a", k, max[k], m_ref);
        q[k] = mt_fixed_quantum(max[k], T);
        if (isnan(q[k])) return; /* the reduction stops at a non-finite block */
    }
    int64_t *acc = calloc(n, sizeof *acc), *ref = calloc(n, sizeof *ref);
    float *out = malloc(n * sizeof *out), *out_ref = malloc(n * sizeof *out_ref);
    FUZZ_CHECK(acc && ref && out && out_ref, "out of memory for %zu values", n);
    for (long t = 0; t < T; t++) {
        mt_fixed_block_add(acc, x + (size_t)t * n, bound, 2, q);
        for (int k = 0; k < 2; k++)
            if (q[k] > 0.0) mt_fixed_add(ref + bound[k], x + (size_t)t * n + bound[k], bound[k + 1] - bound[k], q[k]);
    }
    FUZZ_CHECK(memcmp(acc, ref, n * sizeof *acc) == 0, "block sums differ from the single-block sums (cut %zu)", cut);
    mt_fixed_block_to_float(out, acc, 0, shard_cut, bound, 2, q, 1.0);
    mt_fixed_block_to_float(out + shard_cut, acc + shard_cut, shard_cut, n, bound, 2, q, 1.0);
    for (int k = 0; k < 2; k++)
        mt_fixed_to_float(out_ref + bound[k], ref + bound[k], bound[k + 1] - bound[k], q[k], 1.0);
    FUZZ_CHECK(memcmp(out, out_ref, n * sizeof *out) == 0, "block shards [0, %zu) [%zu, %zu) differ (cut %zu)",
               shard_cut, shard_cut, n, cut);
    free(acc);
    free(ref);
    free(out);
    free(out_ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 + sizeof(float)) return 0;
    const long T = 1 + data[0] % MAX_TERMS;
    const size_t count = (size - 1) / sizeof(float), n = count / (size_t)T;
    if (n == 0) return 0;
    float *x = malloc(count * sizeof *x); /* [T, n]: term t at x + t·n */
    int64_t *acc = calloc(n, sizeof *acc), *acc_rev = calloc(n, sizeof *acc_rev), *ref = calloc(n, sizeof *ref);
    float *out = malloc(n * sizeof *out);
    FUZZ_CHECK(x && acc && acc_rev && ref && out, "out of memory for %zu floats", count);
    memcpy(x, data + 1, count * sizeof *x);
    const size_t used = (size_t)T * n;
    check_blocks(x, T, n, n * (data[0] / MAX_TERMS) / 16, n * data[1] / 256);

    const float m = mt_fixed_max_abs(x, used), m_ref = max_abs_ref(x, used);
    FUZZ_CHECK(isnan(m) ? isnan(m_ref) : m == m_ref, "max_abs %a, reference %a", m, m_ref);
    const double q = mt_fixed_quantum(m, T);
    if (!isfinite(m)) {
        FUZZ_CHECK(isnan(q), "quantum %a for a non-finite max %a", q, m);
        goto done;
    }
    if (m == 0.0f) {
        FUZZ_CHECK(q == 0.0, "quantum %a for a zero max", q);
        goto done;
    }
    int e;
    FUZZ_CHECK(q > 0 && frexp(q, &e) == 0.5, "quantum %a is not a positive power of two", q);
    const double headroom = (double)T * m / q; /* exact: q is a power of two, T·m fits a double */
    FUZZ_CHECK(headroom < 0x1p51 && headroom >= 0x1p50, "T·max/q = %a for T %ld, max %a, q %a: not in [2^50, 2^51)",
               headroom, T, m, q);

    for (long t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * n;
        mt_fixed_add(acc, xt, n, q);
        mt_fixed_add(acc_rev, x + (size_t)(T - 1 - t) * n, n, q);
        for (size_t i = 0; i < n; i++) {
            const double r = (double)xt[i] / q; /* exact: a power-of-two scaling inside double's range */
            FUZZ_CHECK(fabs(r) < 0x1p51, "|x/q| = %a for x %a, q %a", fabs(r), xt[i], q);
            const long long k = llrint(r); /* nearest, ties to even: the default rounding mode */
            /* k·q − x is exact in double (both are multiples of the finer of ulp(x) and q, and
             * at most q/2 apart). */
            FUZZ_CHECK(fabs((double)k * q - xt[i]) <= 0.5 * q, "round trip of %a with q %a is %a", xt[i], q,
                       (double)k * q);
            ref[i] += k;
        }
    }
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(acc[i] == ref[i], "component %zu: sum %lld, reference %lld", i, (long long)acc[i],
                   (long long)ref[i]);
        FUZZ_CHECK(acc[i] == acc_rev[i], "component %zu: order changes the sum (%lld, %lld)", i, (long long)acc[i],
                   (long long)acc_rev[i]);
    }

    mt_fixed_to_float(out, acc, n, q, 1.0);
    for (size_t i = 0; i < n; i++) {
        const double v = (double)acc[i] * q; /* exact: |acc| < 2^51 */
        if (isinf(out[i])) {
            FUZZ_CHECK(fabs(v) > FLT_MAX && (out[i] > 0) == (v > 0), "component %zu: %a became %a", i, v,
                       (double)out[i]);
            continue;
        }
        FUZZ_CHECK(fabs((double)out[i] - v) <= half_ulp(out[i]), "component %zu: %a rounded to %a", i, v,
                   (double)out[i]);
    }
done:
    free(x);
    free(acc);
    free(acc_rev);
    free(ref);
    free(out);
    return 0;
}
