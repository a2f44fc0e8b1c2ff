/*
 * fuzz_util.h — what the libFuzzer harnesses share: a private scratch directory for the
 * files the readers under test insist on opening by path. Header-only (static functions),
 * so that each harness stays a single translation unit plus mt_io / mt_core.
 */
#ifndef MT_FUZZ_UTIL_H
#define MT_FUZZ_UTIL_H

#define _XOPEN_SOURCE 700
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The scratch directory, made on first use ($TMPDIR or /tmp; the fuzzer process owns it).
 * Aborts if it cannot be made: the harness cannot run without it. */
static const char *fuzz_dir(void)
{
    static char dir[512];
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/mt_fuzz.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            perror("mt fuzz harness: mkdtemp");
            abort();
        }
    }
    return dir;
}

/* dir/name into out[len]. */
static void fuzz_path(char *out, size_t len, const char *name) { snprintf(out, len, "%s/%s", fuzz_dir(), name); }

/* Writes data[size] to path (aborts on failure: a full scratch disk is not a finding). */
static void fuzz_spill(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

#endif
