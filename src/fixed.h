/*
 * fixed.h — exact, order-independent summation of float vectors through fixed point.
 *
 * Float addition is not associative, so a float allreduce gives different bits for every
 * rank count and reduction algorithm. Integers are: each value is rounded to a multiple of a
 * power-of-two quantum q and summed as int64. With q chosen from a bound M on |values| and
 * the number of terms n so that n·M/q < 2^51, no sum can overflow, every term converts by
 * the vectorisable magic-number rounding (exact below 2^51), and the rounding error per term,
 * q/2 ≤ 2^-51·n·M, is 2^(27 − log2 n) times below float32's half-ulp of M. Any grouping of
 * the integer sums — per rank, then across ranks, in any order — gives the same bits.
 *
 * M is taken per block: a vector is split into contiguous blocks (the model's parameter
 * tensors) and each block gets its own quantum from its own maximum, so the error bound is
 * relative to the block's largest value, and one layer of large values does not round
 * another layer's small ones to zero.
 *
 * The three steps; the MPI glue (max and sum collectives) lives in mpi/dist.c:
 *   max[k] = max over local terms of mt_fixed_block_max;  allreduce(max, MAX)
 *   q[k] = mt_fixed_quantum(max[k], total terms)
 *   mt_fixed_block_add(acc, g, ..., q) for every local term;  allreduce(acc, SUM, int64)
 *   mt_fixed_block_to_float(out, acc, ..., q, 1/terms)
 * (the single-block functions below are the same steps for one block).
 *
 * Blocks: bound[n_blocks + 1], block k is [bound[k], bound[k + 1]), bound[0] = 0 and
 * bound[n_blocks] = P, non-decreasing.
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

/* max[k] = the larger of max[k] and the largest |x[i]| in block k of x[P], for every block;
 * NaN stays NaN (a NaN in x makes its block's max NaN, an infinity makes it infinite). Start
 * max[] at 0 and call once per term. */
void mt_fixed_block_max(float *max, const float *x, const size_t *bound, int n_blocks);

/* mt_fixed_add of every block k of g[P] into acc[P] with quantum q[k]; a block with
 * q[k] = 0 (all its values are zero) adds nothing. Every q[k] >= 0. */
void mt_fixed_block_add(int64_t *acc, const float *g, const size_t *bound, int n_blocks, const double *q);

/* mt_fixed_to_float of elements [lo, hi) of the vector: out[i − lo] from acc[i − lo], each with
 * its block's quantum (a shard may start and end inside blocks). */
void mt_fixed_block_to_float(float *out, const int64_t *acc, size_t lo, size_t hi, const size_t *bound,
                             int n_blocks, const double *q, double scale);

#endif
