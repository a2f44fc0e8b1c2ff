/*
 * fixed.h — exact, order-independent summation of float vectors through fixed point.
 *
 * Float addition is not associative, so a float allreduce gives different bits for every
 * rank count and reduction algorithm. Integers are: each value is rounded to a multiple of a
 * power-of-two quantum q and summed as int64. With q chosen from a bound M on |values| and
 * the number of terms n so that n·M/q < 2^51, no sum can overflow, every term converts by
 * the vectorisable magic-number rounding (exact below 2^51), and the rounding error per term,
 * q/2 ≈ 2^-51·n·M, is 2^(27 − log2 n) times below float32's resolution of M. Any grouping of
 * the integer sums — per rank, then across ranks, in any order — gives the same bits.
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

/* Bits of the integer range the sums use: n·max|value| < 2^MT_FIXED_BITS quanta. */
#define MT_FIXED_BITS 51

/* The power-of-two quantum for summing `terms` values of magnitude at most max_abs. Returns 0
 * when max_abs is 0 (everything is zero) and NaN when max_abs is not finite. */
double mt_fixed_quantum(float max_abs, long terms);

/* Largest |x[i]| (NaN if any x[i] is NaN, inf if any is infinite). */
float mt_fixed_max_abs(const float *x, size_t n);

/* acc[i] += round(g[i] / q), to nearest with ties to even; |g / q| < 2^51. q > 0. */
void mt_fixed_add(int64_t *acc, const float *g, size_t n, double q);

/* out[i] = acc[i] · q · scale, rounded once to float. */
void mt_fixed_to_float(float *out, const int64_t *acc, size_t n, double q, double scale);

#endif
