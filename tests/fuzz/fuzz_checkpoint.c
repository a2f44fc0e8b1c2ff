/*
 * fuzz_checkpoint.c — libFuzzer entry point for the checkpoint reader (io/checkpoint.c).
 *
 * Each input is written to one temporary file (the reader takes a path; HDF5 opens it with
 * the default POSIX driver) and read with mt_checkpoint_read; a successful read is freed.
 * Whatever the bytes, the reader must return 0 or -1 with a message naming the file: a crash,
 * a sanitizer report, a leak, a hang or an HDF5 object left open (checked after every input:
 * a leaked file id would make HDF5 reuse stale state for the next input) is a finding.
 *
 * Build (clang): a translation unit linked with mt_io and mt_core (HDF5, zlib, MPI, OpenBLAS,
 * libinih come with them), no main of its own:
 *   clang -fsanitize=fuzzer,address,undefined -Iio -Isrc -I/usr/include/hdf5/openmpi \
 *         tests/fuzz/fuzz_checkpoint.c BUILD/libmt_io.a BUILD/libmt_core.a ...
 * Seeds: tests/fuzz/corpus/checkpoint/ (valid checkpoints of small models, format versions
 * 2 and 3, with and without optimizer state; made by make_checkpoint_seeds.c). Needs a
 * writable $TMPDIR (or /tmp); MPI need not be initialised (the reader makes no MPI call).
 */
#define _POSIX_C_SOURCE 200809L
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "fuzz_util.h"
#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);
const char *__asan_default_options(void);

/* HDF5 1.10 leaks on some of its own error paths while it rejects a damaged file; a leak
 * with HDF5 in its allocation stack is not the reader's (the reader's own allocations are
 * made from its own frames, so they are still reported). */
const char *__lsan_default_suppressions(void) { return "leak:libhdf5\n"; }

/* HDF5 checks its allocations: a size it decoded from a damaged header should fail the open
 * with an error, not end the run (the reader's own allocations are bounded by the file). */
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static char path[4096]; /* the one temporary file, removed at exit */

static void remove_file(void) { unlink(path); }

/* Creates the temporary file once; aborts if it cannot (nothing could be fuzzed). */
static void make_file(void)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/fuzz_checkpoint.XXXXXX", dir && dir[0] ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("fuzz_checkpoint: mkstemp");
        abort();
    }
    close(fd);
    atexit(remove_file);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_hdf5_pre_1_8(data, size)) return 0; /* see fuzz_util.h */
    if (!path[0]) make_file();
    FILE *f = fopen(path, "wb");
    if (!f || (size > 0 && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror("fuzz_checkpoint: cannot write the input file");
        abort();
    }
    mt_checkpoint ck;
    char err[MT_ERR_LEN] = "";
    if (mt_checkpoint_read(path, &ck, err, sizeof err) == 0) {
        mt_checkpoint_free(&ck);
    } else if (!err[0] || !strstr(err, path)) {
        fprintf(stderr, "fuzz_checkpoint: a failed read must say why, naming the file (got \"%s\")\n", err);
        abort();
    }
    ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_ids != 0) {
        fprintf(stderr, "fuzz_checkpoint: %zd HDF5 objects left open after a read\n", open_ids);
        abort();
    }
    return 0;
}
