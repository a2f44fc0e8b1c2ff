/*
 * bench_sgemm.c — the machine's single-thread sgemm rate, the peak that scripts/bench reports
 * metatrain's matrix products against; a benchmark tool, not a test.
 *
 *   bench_sgemm [N] [REPEATS]    (default 2048, 5)
 *
 * Times C = A·B for N×N float matrices through OpenBLAS on one thread (unless
 * OPENBLAS_NUM_THREADS says otherwise) and prints the best of REPEATS as
 * "sgemm N=2048: 98.7 GFLOP/s (best of 5)", counting 2·N³ operations per product.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

#undef I

int main(int argc, char **argv)
{
    const int n = argc > 1 ? atoi(argv[1]) : 2048, repeats = argc > 2 ? atoi(argv[2]) : 5;
    if (n < 1 || n > 16384 || repeats < 1) {
        fprintf(stderr, "usage: bench_sgemm [N (1-16384)] [REPEATS (>= 1)]\n");
        return 2;
    }
    if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
    const size_t nn = (size_t)n * n;
    float *a = mt_malloc(nn * sizeof *a), *b = mt_malloc(nn * sizeof *b), *c = mt_malloc(nn * sizeof *c);
    for (size_t i = 0; i < nn; i++) a[i] = (float)(i % 7) * 0.25f, b[i] = (float)(i % 5) * 0.5f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up */
    double best = 0.0;
    for (int r = 0; r < repeats; r++) {
        const double t0 = mt_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        const double rate = 2.0 * n * (double)n * n / (mt_now() - t0) / 1e9;
        if (rate > best) best = rate;
    }
    printf("sgemm N=%d: %.1f GFLOP/s (best of %d; check %g)\n", n, best, repeats, (double)c[nn / 2]);
    free(a), free(b), free(c);
    return 0;
}
