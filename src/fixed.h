/*
 * fixed.h — exact, order-independent summation of float vectors through fixed point.
 *
 * Float addition is not associative, so a float allreduce gives different bits for every
 * rank count and reduction algorithm. Integers are: each value is rounded to a multiple of a
 * power-of-two quantum q and summed as int64. With q chosen from a bound M on |values| and
 * the number of terms n so that n·M/q < 2^62, no sum can overflow, and the result has 62 − 24
 * = 38 bits more resolution than the float32 inputs (a rounding error of q/2 per term,
 * q ≈ 2^-62·n·M). Any grouping of the integer sums — per rank, then across ranks, in any
 * order — gives the same bits.
 *
 * The three steps; the MPI glue (max and sum collectives) lives in mpi/dist.c:
 *   q = mt_fixed_quantum(global max |value|, total terms)
 *   mt_fixed_add(acc, g, n, q) for every local term;  allreduce(acc, SUM, int64)
 *   mt_fixed_to_float(out, acc, n, q, 1/terms)
 */
#ifndef MT_FIXED_H
#define MT_FIXED_H

#include <stddef.h>
#include <stdint.h>

/* The power-of-two quantum for summing `terms` values of magnitude at most max_abs. Returns 0
 * when max_abs is 0 (everything is zero) and NaN when max_abs is not finite. */
double mt_fixed_quantum(float max_abs, long terms);

/* Largest |x[i]| (NaN if any x[i] is NaN, inf if any is infinite). */
float mt_fixed_max_abs(const float *x, size_t n);

/* acc[i] += round(g[i] / q), to nearest with halves away from zero (within one quantum
 * where |g / q| >= 2^52, still deterministic). q > 0. */
void mt_fixed_add(int64_t *acc, const float *g, size_t n, double q);

/* out[i] = acc[i] · q · scale, rounded once to float. */
void mt_fixed_to_float(float *out, const int64_t *acc, size_t n, double q, double scale);

#endif
