/*
 * ckpt_diff.c — compares the meta-parameters (/params) of two metatrain checkpoints; a test
 * tool for the multi-rank scripts, not part of metatrain.
 *
 *   ckpt_diff A.h5 B.h5 [--tol X] [--tensor NAME]
 *
 * Prints the number of parameters, the largest absolute difference max|a − b| and the
 * normwise relative difference max|a − b| / max|b| (the definition of tu_rel_diff; absolute
 * when b is all zero). With --tol 0 (the default) the two vectors must be bit-identical
 * (compared as bytes, so -0.0 and 0.0 differ); with --tol X > 0 the relative difference
 * must be at most X. Only /params is compared: step, seed, config and layout may differ.
 * With --tensor NAME only that tensor of the two layouts ("conv1.weight") is compared, so the
 * files may hold models of different sizes (a fine-tuned checkpoint with another head).
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
    fprintf(stderr, "usage: ckpt_diff A.h5 B.h5 [--tol X] [--tensor NAME]   (X >= 0; 0 = bit-identical, the "
                    "default)\n");
    return 2;
}

/* Compares vector `what` of the two files; prints one line; returns 0 if within tol. */
static int compare(const char *what, const float *a, const float *b, size_t n, double tol)
{
    double worst = 0.0, scale = 0.0;
    size_t worst_at = 0, n_differ = 0;
    int nan = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) nan = 1;
        else if (d > worst) worst = d, worst_at = i;
        if (fabs((double)b[i]) > scale) scale = fabs((double)b[i]);
        if (memcmp(&a[i], &b[i], sizeof a[i]) != 0) n_differ++;
    }
    double rel = nan ? NAN : scale > 0 ? worst / scale : worst;
    int within = tol == 0.0 ? n_differ == 0 : rel <= tol; /* NaN fails */
    printf("ckpt_diff: %s: %zu values, %zu differ in bits, max_abs_diff %.6e (index %zu), rel_diff %.6e, "
           "tol %.1e%s: %s\n",
           what, n, n_differ, worst, worst_at, rel, tol, tol == 0.0 ? " (bit-identical)" : "",
           within ? "same" : "DIFFERENT");
    return within ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *path[2] = {NULL, NULL}, *tensor = NULL;
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
        } else if (strcmp(argv[i], "--tensor") == 0) {
            if (i + 1 >= argc) return usage();
            tensor = argv[++i];
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
    const mt_tensor_info *t[2] = {NULL, NULL};
    for (int k = 0; k < 2 && tensor; k++)
        for (int i = 0; i < ck[k].n_tensors; i++)
            if (strcmp(ck[k].tensors[i].name, tensor) == 0) t[k] = &ck[k].tensors[i];
    if (tensor && (!t[0] || !t[1])) {
        printf("ckpt_diff: no tensor %s in %s\n", tensor, path[t[0] ? 1 : 0]);
        status = 2;
    } else if (tensor && t[0]->size != t[1]->size) {
        printf("ckpt_diff: %s has %zu values in %s, %zu in %s\n", tensor, t[0]->size, path[0], t[1]->size, path[1]);
        status = 1;
    } else if (tensor) {
        status = compare(tensor, ck[0].params + t[0]->offset, ck[1].params + t[1]->offset, t[0]->size, tol);
    } else if (ck[0].n_params != ck[1].n_params) {
        printf("ckpt_diff: different parameter counts: %zu in %s, %zu in %s\n", ck[0].n_params, path[0],
               ck[1].n_params, path[1]);
        status = 1;
    } else {
        status = compare("params", ck[0].params, ck[1].params, ck[0].n_params, tol);
        /* Adam's moments, when both files carry them (a resumed run must match them too). */
        if (ck[0].m && ck[1].m) {
            status |= compare("optim/m", ck[0].m, ck[1].m, ck[0].n_params, tol);
            status |= compare("optim/v", ck[0].v, ck[1].v, ck[0].n_params, tol);
        } else if (ck[0].m || ck[1].m) {
            printf("ckpt_diff: only one of the files has optimizer moments\n");
        }
    }
    mt_checkpoint_free(&ck[0]);
    mt_checkpoint_free(&ck[1]);
    return status;
}
