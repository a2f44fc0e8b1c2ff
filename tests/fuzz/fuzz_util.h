/* fuzz_util.h — what the libFuzzer harnesses in tests/fuzz share: the entry point's
 * prototype, a check that aborts with a message (a finding, like a sanitizer report), and
 * temporary files for readers that take a path.
 *
 * Header only: each harness is one .c file linked alone with the libFuzzer runtime. Not for
 * production code, and not thread-safe (libFuzzer calls the harness from one thread).
 *
 *   #include "fuzz_util.h"
 *   int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
 *   {
 *       const char *path = fuzz_write_temp(data, size);   // $TMPDIR/mt-fuzz-PID/input
 *       ... read path, check, free everything, close every HDF5 handle ...
 *       return 0;
 *   }
 */
#ifndef MT_FUZZ_UTIL_H
#define MT_FUZZ_UTIL_H

#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* FUZZ_CHECK(cond, printf-style message): an invariant the harness asserts about the code
 * under test. On failure prints the message with file and line and aborts, which libFuzzer
 * records as a crash with its reproducer (assert() would vanish under NDEBUG). */
#define FUZZ_CHECK(cond, ...)                                                          \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
            abort();                                                                   \
        }                                                                              \
    } while (0)

/* The per-process directory $TMPDIR/mt-fuzz-PID (TMPDIR unset: /tmp), created on first use
 * and emptied and removed at exit (files only: a harness that makes subdirectories removes
 * them itself). Aborts if it cannot be made: the fuzzer cannot run without it. */
static char fuzz_dir_path[4096];

static inline void fuzz_remove_dir(void)
{
    DIR *dir = opendir(fuzz_dir_path);
    if (!dir) return;
    char path[sizeof fuzz_dir_path + 256];
    for (struct dirent *e; (e = readdir(dir)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", fuzz_dir_path, e->d_name);
        unlink(path);
    }
    closedir(dir);
    rmdir(fuzz_dir_path);
}

static inline const char *fuzz_temp_dir(void)
{
    if (fuzz_dir_path[0]) return fuzz_dir_path;
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !tmp[0]) tmp = "/tmp";
    int len = snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/mt-fuzz-%ld", tmp, (long)getpid());
    if (len < 0 || (size_t)len >= sizeof fuzz_dir_path || (mkdir(fuzz_dir_path, 0700) != 0 && access(fuzz_dir_path, W_OK) != 0)) {
        fprintf(stderr, "fuzz_util: cannot create the directory %s (TMPDIR)\n", fuzz_dir_path);
        abort();
    }
    atexit(fuzz_remove_dir);
    return fuzz_dir_path;
}

/* Writes data[0:size] to the file NAME in fuzz_temp_dir() (replacing it) and returns its
 * path, valid until the next call. NAME is one path component, e.g. "input.png" for a reader
 * that goes by the extension. Aborts on an I/O error (not a finding of the code under test,
 * but the input would be lost). */
static inline const char *fuzz_write_temp_as(const char *name, const uint8_t *data, size_t size)
{
    static char path[sizeof fuzz_dir_path + 256];
    int len = snprintf(path, sizeof path, "%s/%s", fuzz_temp_dir(), name);
    FILE *f = len > 0 && (size_t)len < sizeof path && !strchr(name, '/') ? fopen(path, "wb") : NULL;
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "fuzz_util: cannot write %s\n", path);
        abort();
    }
    return path;
}

/* fuzz_write_temp_as("input", data, size): the usual case. */
static inline const char *fuzz_write_temp(const uint8_t *data, size_t size)
{
    return fuzz_write_temp_as("input", data, size);
}

/* The importers' harnesses' names for the same: the scratch directory, a path in it, and
 * writing bytes to a path (aborts on failure: a full scratch disk is not a finding). */
static inline const char *fuzz_dir(void) { return fuzz_temp_dir(); }

static inline void fuzz_path(char *out, size_t len, const char *name) { snprintf(out, len, "%s/%s", fuzz_dir(), name); }

static inline void fuzz_spill(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

/* 1 if data holds an HDF5 file whose superblock is version 0 or 1 (the 1.6 file format), as
 * HDF5 finds it: the signature at byte 0, 512, 1024, 2048, ... The harnesses of the HDF5
 * readers skip such inputs. HDF5 1.10 does not checksum that format's metadata and its
 * decoders overflow on some damaged object headers (found by these fuzzers, inside
 * H5Aexists) before any check of ours can run; metatrain writes checkpoints and datasets in
 * the 1.8 format, whose metadata HDF5 verifies, so that is the format fuzzed. */
static inline int fuzz_hdf5_pre_1_8(const uint8_t *data, size_t size)
{
    static const uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    for (size_t at = 0; at + 9 <= size; at = at ? 2 * at : 512)
        if (memcmp(data + at, sig, sizeof sig) == 0) return data[at + 8] < 2;
    return 0;
}

#endif
