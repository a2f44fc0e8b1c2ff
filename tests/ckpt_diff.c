/*
 * ckpt_diff.c — compares the meta-parameters (/params) of two metatrain checkpoints; a test
 * tool for the multi-rank scripts, not part of metatrain.
 *
 *   ckpt_diff A.h5 B.h5 [--tol X]
 *
 * Prints the number of parameters, the largest absolute difference max|a − b| and the
 * normwise relative difference max|a − b| / max|b| (the definition of tu_rel_diff; absolute
 * when b is all zero). With --tol 0 (the default) the two vectors must be bit-identical
 * (compared as bytes, so -0.0 and 0.0 differ); with --tol X > 0 the relative difference
 * must be at most X. Only /params is compared: step, seed, config and layout may differ.
 *
 * Exit status: 0 within the tolerance, 1 not (or different parameter counts, or a NaN),
 * 2 bad usage or an unreadable checkpoint.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "common.h"

static int usage(void)
{
    fprintf(stderr, "usage: ckpt_diff A.h5 B.h5 [--tol X]   (X >= 0; 0 = bit-identical, the default)\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *path[2] = {NULL, NULL};
    double tol = 0.0;
    int n_paths = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tol") == 0) {
            char *end = NULL;
            errno = 0;
            tol = i + 1 < argc ? strtod(argv[++i], &end) : -1.0;
            if (!end || end == argv[i] || *end || errno || !isfinite(tol) || tol < 0) {
                fprintf(stderr, "ckpt_diff: --tol takes a finite number >= 0\n");
                return usage();
            }
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "ckpt_diff: unknown option '%s'\n", argv[i]);
            return usage();
        } else if (n_paths < 2) {
            path[n_paths++] = argv[i];
        } else {
            return usage();
        }
    }
    if (n_paths != 2) return usage();

    mt_checkpoint ck[2] = {{0}, {0}};
    char err[MT_ERR_LEN];
    for (int k = 0; k < 2; k++) {
        if (mt_checkpoint_read(path[k], &ck[k], err, sizeof err) != 0) {
            fprintf(stderr, "ckpt_diff: %s\n", err);
            mt_checkpoint_free(&ck[0]);
            return 2;
        }
    }

    int status;
    if (ck[0].n_params != ck[1].n_params) {
        printf("ckpt_diff: different parameter counts: %zu in %s, %zu in %s\n", ck[0].n_params, path[0],
               ck[1].n_params, path[1]);
        status = 1;
    } else {
        const size_t n = ck[0].n_params;
        const float *a = ck[0].params, *b = ck[1].params;
        double worst = 0.0, scale = 0.0;
        size_t worst_at = 0, n_differ = 0;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)a[i] - (double)b[i]);
            if (!(d <= worst)) worst = d, worst_at = i; /* NaN sticks */
            if (fabs((double)b[i]) > scale) scale = fabs((double)b[i]);
            if (memcmp(&a[i], &b[i], sizeof a[i]) != 0) n_differ++;
        }
        double rel = scale > 0 ? worst / scale : worst;
        int within = tol == 0.0 ? n_differ == 0 : rel <= tol; /* NaN fails */
        printf("ckpt_diff: %zu params, %zu differ in bits, max_abs_diff %.6e (index %zu), rel_diff %.6e, "
               "tol %.1e%s: %s\n",
               n, n_differ, worst, worst_at, rel, tol, tol == 0.0 ? " (bit-identical)" : "",
               within ? "same" : "DIFFERENT");
        status = within ? 0 : 1;
    }
    mt_checkpoint_free(&ck[0]);
    mt_checkpoint_free(&ck[1]);
    return status;
}
