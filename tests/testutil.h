/*
 * testutil.h — what the unit tests share: comparisons that print the worst difference,
 * random vectors from the project's own RNG, and a pass/fail tally that becomes the exit
 * status (a test that finds a mismatch exits 1).
 */
#ifndef MT_TESTUTIL_H
#define MT_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Fills x[n] with uniform values in [lo, hi) from stream (seed, INIT, 0, tag). */
void tu_random(float *x, size_t n, float lo, float hi, uint64_t seed, uint32_t tag);

/* Normwise relative difference max|got − want| / max|want| (absolute if want is all zero). */
double tu_rel_diff(const float *got, const float *want, size_t n);
double tu_rel_diff_d(const double *got, const double *want, size_t n);

/* Records a check: prints "ok"/"FAIL", the label and the measured difference against tol. */
void tu_check(const char *label, double diff, double tol);

/* Records a boolean check with a message. */
void tu_expect(int cond, const char *label);

/* Reads a whole file into a malloc'd buffer (one spare byte); returns its size, or -1. */
long tu_slurp(const char *path, unsigned char **buf);

/* Writes buf[n] to path; returns 0, or -1. */
int tu_spill(const char *path, const void *buf, size_t n);

/* ---- files ---- */

/* Creates a fresh scratch directory $TMPDIR/<name>.XXXXXX (TMPDIR unset: /tmp) and
 * remembers it; returns its path, or NULL after printing why. */
const char *tu_scratch_dir(const char *name);
/* Removes the scratch directory and everything under it. */
void tu_scratch_remove(void);
/* scratch/name into out[len]. */
void tu_in_dir(char *out, size_t len, const char *name);
/* 1 iff path exists. */
int tu_exists(const char *path);
/* 1 iff some entry of the scratch directory ends in ".partial" (or it cannot be listed). */
int tu_partial_left(void);

/* ---- finite-difference and kernel checks (test_layers, test_conv, test_meta) ---- */

/* A float vector of n values (at least one), from mt_malloc. */
float *tu_vec(size_t n);
/* Tolerance for fast = reference on float sums of n terms: 2γ_n, γ_n = n·u/(1 − n·u). */
double tu_sum_tol(size_t n);
/* max_i |got[i] − want[i]| / bound[i] (bound = Σ|terms| of output i); a zero bound demands
 * equality; a NaN counts as +inf. */
double tu_bounded_diff(const float *got, const float *want, const float *bound, size_t n);
/* Fills x[n] with NaN: an output element a kernel skips cannot pass for an earlier one. */
void tu_poison(float *x, size_t n);
/* out[i] = |in[i]| */
void tu_abs_copy(float *out, const float *in, size_t n);
/* out = x + t·d (d NULL: x) */
void tu_moved(float *out, const float *x, float t, const float *d, size_t n);
/* fd = (plus − minus) / (2ε), the central difference quotient */
void tu_quotient(float *fd, const float *plus, const float *minus, float eps, size_t n);
/* Σ c⊙y in double: the scalar probe whose gradient with respect to y is c. */
double tu_probe(const float *c, const float *y, size_t n);

/* Prints "<n> passed, <m> failed" and returns the process exit status (0 iff all passed). */
int tu_finish(void);

#endif
