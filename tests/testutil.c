/* testutil.c — see testutil.h. */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <string.h>
#include <sys/stat.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
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

float *tu_vec(size_t n) { return mt_malloc((n ? n : 1) * sizeof(float)); }

double tu_sum_tol(size_t n)
{
    const double u = FLT_EPSILON / 2; /* unit roundoff, 2^-24 */
    return 2.0 * (double)n * u / (1.0 - (double)n * u);
}

double tu_bounded_diff(const float *got, const float *want, const float *bound, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        double r = bound[i] > 0 ? d / bound[i] : (d == 0 ? 0.0 : INFINITY);
        if (!(r <= worst)) worst = isnan(r) ? INFINITY : r;
    }
    return worst;
}

void tu_poison(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

void tu_abs_copy(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = fabsf(in[i]);
}

void tu_moved(float *out, const float *x, float t, const float *d, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = d ? x[i] + t * d[i] : x[i];
}

void tu_quotient(float *fd, const float *plus, const float *minus, float eps, size_t n)
{
    for (size_t i = 0; i < n; i++) fd[i] = (float)(((double)plus[i] - minus[i]) / (2.0 * eps));
}

double tu_probe(const float *c, const float *y, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)c[i] * y[i];
    return s;
}

static char scratch[1024];

const char *tu_scratch_dir(const char *name)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/%s.XXXXXX", tmp && tmp[0] ? tmp : "/tmp", name);
    if (!mkdtemp(scratch)) {
        fprintf(stderr, "%s: cannot create a directory %s: %s\n", name, scratch, strerror(errno));
        return NULL;
    }
    printf("working in %s\n", scratch);
    return scratch;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void tu_scratch_remove(void)
{
    if (scratch[0]) nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void tu_in_dir(char *out, size_t len, const char *name) { snprintf(out, len, "%s/%s", scratch, name); }

int tu_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int tu_partial_left(void)
{
    DIR *d = opendir(scratch);
    if (!d) return 1;
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n >= 8 && strcmp(e->d_name + n - 8, ".partial") == 0) found = 1;
    }
    closedir(d);
    return found;
}
