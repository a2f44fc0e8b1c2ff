/* common.c — fatal errors, checked allocation and the clock (see common.h). */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char origin[128] = "";

static void (*abort_hook)(int) = NULL;

void mt_set_origin(const char *who) { snprintf(origin, sizeof origin, "%s", who ? who : ""); }

const char *mt_origin(void) { return origin; }

void mt_set_abort_hook(void (*hook)(int code)) { abort_hook = hook; }

_Noreturn void mt_fatal_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fputs("metatrain: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " [%s:%d%s%s]\n", file, line, origin[0] ? ", " : "", origin);
    fflush(stderr);
    if (abort_hook) abort_hook(MT_EXIT_FAILURE);
    exit(MT_EXIT_FAILURE);
}

void *mt_malloc_at(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (!p) mt_fatal_at(file, line, "out of memory allocating %zu bytes", n);
    return p;
}

void *mt_calloc_at(size_t count, size_t size, const char *file, int line)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) mt_fatal_at(file, line, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

double mt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double flops; /* one count per process: ranks are processes, each with one BLAS thread */

void mt_flops_add(double n) { flops += n; }

double mt_flops_count(void) { return flops; }
