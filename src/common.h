/*
 * common.h — error reporting and checked allocation shared by every layer of metatrain.
 *
 * This is the one place that decides what a fatal error looks like: a line on stderr naming
 * the message, the source file and line, and who failed ("rank 1 on node07"), then the
 * installed abort hook. The numerics in src/ know nothing of MPI, so the driver installs a
 * hook that calls MPI_Abort; unit tests keep the default (exit with the given code).
 *
 * Not for input validation that the user can fix: those paths print their own message and
 * return an error code to the caller, who decides the exit status (2 for bad input).
 */
#ifndef MT_COMMON_H
#define MT_COMMON_H

#include <stddef.h>

#define MT_VERSION "0.1.0"

/* Size of the buffers that carry error messages (they quote paths). */
#define MT_ERR_LEN 4608

/* Exit statuses every subcommand shares (documented in README and --help). */
enum {
    MT_EXIT_OK = 0,
    MT_EXIT_FAILURE = 1, /* runtime failure: I/O, MPI, out of memory */
    MT_EXIT_USAGE = 2,   /* bad input: CLI, config, data files */
    MT_EXIT_CHECKPOINTED = 75 /* stopped by SIGUSR1/SIGTERM after writing a checkpoint: resume it
                               * (sysexits' EX_TEMPFAIL, "try again later") */
};

/* Prints "metatrain: error: <msg> [file:line, <who>]" and calls the abort hook with
 * MT_EXIT_FAILURE. Never returns. */
_Noreturn void mt_fatal_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define mt_fatal(...) mt_fatal_at(__FILE__, __LINE__, __VA_ARGS__)

/* Always-on check for conditions that depend on the outside world (allocations, files,
 * library calls). Use assert() for internal invariants instead. */
#define MT_CHECK(cond, ...)                                                                    \
    do {                                                                                       \
        if (!(cond)) mt_fatal_at(__FILE__, __LINE__, __VA_ARGS__);                             \
    } while (0)

/* Who is speaking, e.g. "rank 1/4 on node07"; shown in fatal messages. Copied. */
void mt_set_origin(const char *who);
const char *mt_origin(void);

/* Hook called by mt_fatal after printing (the driver's calls MPI_Abort). If it returns,
 * or none is set, the process exits with the code. */
void mt_set_abort_hook(void (*hook)(int code));

/* malloc/calloc that never return NULL: failure is fatal with the caller's file and line.
 * Sizes of zero allocate one byte so the result is always freeable. */
void *mt_malloc_at(size_t n, const char *file, int line);
void *mt_calloc_at(size_t count, size_t size, const char *file, int line);
#define mt_malloc(n) mt_malloc_at((n), __FILE__, __LINE__)
#define mt_calloc(c, s) mt_calloc_at((c), (s), __FILE__, __LINE__)

/* Monotonic wall clock in seconds. */
double mt_now(void);

/* The arithmetic of the matrix products (layers.c, conv.c): each product of an [M,K] and a
 * [K,N] matrix adds 2·M·N·K floating-point operations to this process's count, whether
 * OpenBLAS or a small-matrix loop computes it. Benchmarks divide it by the time taken. */
void mt_flops_add(double n);
double mt_flops_count(void);

/* Compile a function twice, for baseline x86-64 (SSE2) and for AVX2; the loader picks per
 * CPU. Only for code whose two versions give the same bits (no FMA: -std=c11 implies
 * -ffp-contract=off), so ranks on different CPUs still agree. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MT_CLONES
#endif

#endif
