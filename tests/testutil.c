/* testutil.c — see testutil.h. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "rng.h"

static int passed, failed;

void tu_random(float *x, size_t n, float lo, float hi, uint64_t seed, uint32_t tag)
{
    mt_rng r;
    mt_rng_init(&r, seed, MT_STREAM_INIT, 0, tag);
    for (size_t i = 0; i < n; i++) x[i] = mt_rng_uniform(&r, lo, hi);
}

double tu_rel_diff(const float *got, const float *want, size_t n)
{
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (isnan(d)) return NAN; /* a NaN anywhere fails every tolerance */
        if (d > worst) worst = d;
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
    }
    return scale > 0 ? worst / scale : worst;
}

double tu_rel_diff_d(const double *got, const double *want, size_t n)
{
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(got[i] - want[i]);
        if (isnan(d)) return NAN;
        if (d > worst) worst = d;
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
    }
    return scale > 0 ? worst / scale : worst;
}

void tu_check(const char *label, double diff, double tol)
{
    int ok = diff <= tol; /* NaN fails */
    printf("%s %-58s diff %.3e (tol %.1e)\n", ok ? "ok  " : "FAIL", label, diff, tol);
    ok ? passed++ : failed++;
}

void tu_expect(int cond, const char *label)
{
    printf("%s %s\n", cond ? "ok  " : "FAIL", label);
    cond ? passed++ : failed++;
}

int tu_finish(void)
{
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}

long tu_slurp(const char *path, unsigned char **buf)
{
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        *buf = malloc((size_t)n + 1);
        if (!*buf || fread(*buf, 1, (size_t)n, f) != (size_t)n) {
            free(*buf);
            *buf = NULL;
            n = -1;
        }
    }
    fclose(f);
    return n;
}

int tu_spill(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(buf, 1, n, f) == n;
    if (fclose(f) != 0) ok = 0;
    return ok ? 0 : -1;
}
