/*
 * test_checkpoint.c — checkpoint files (io/checkpoint.c) in one process, without MPI:
 * write/read round trip of every field and the layout, atomic writes (no .partial left,
 * failures clean up), detection of damaged or foreign files with a message naming the file,
 * and pruning of old checkpoints.
 *
 * Damage is made on purpose: a copy truncated to half, one byte flipped inside the /params
 * data (found by searching the file for the recognisable values written), a file whose
 * "format" attribute is wrong (written here with the HDF5 C API), a text file, an empty
 * file and a missing one. Every file lives in a fresh directory under $TMPDIR (or /tmp),
 * removed at the end.
 */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "common.h"
#include "config.h"
#include "model.h"
#include "testutil.h"

static const char *dir; /* the scratch directory */

/* Expects mt_checkpoint_read(path) to fail with a message that names path and holds want
 * (if not NULL), and to leave ck zeroed. */
static void expect_read_error(const char *label, const char *path, const char *want)
{
    mt_checkpoint ck;
    char err[MT_ERR_LEN] = "", buf[512];
    memset(&ck, 0xab, sizeof ck);
    int rc = mt_checkpoint_read(path, &ck, err, sizeof err);
    printf("     message: %s\n", err);
    snprintf(buf, sizeof buf, "%s: read fails", label);
    tu_expect(rc == -1, buf);
    snprintf(buf, sizeof buf, "%s: message names the file", label);
    tu_expect(strstr(err, path) != NULL, buf);
    if (want) {
        snprintf(buf, sizeof buf, "%s: message contains \"%s\"", label, want);
        tu_expect(strstr(err, want) != NULL, buf);
    }
    snprintf(buf, sizeof buf, "%s: nothing is left allocated in the result", label);
    tu_expect(ck.params == NULL && ck.config == NULL && ck.tensors == NULL, buf);
    if (rc == 0) mt_checkpoint_free(&ck);
}

/* θ filled with a sequence no real model produces, so its bytes can be found in the file. */
static void fill_params(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = 1000.0f + 0.25f * (float)i;
}

/* Writes path with model m and the sequence above; returns 0, or -1 (message printed). */
static int write_ckpt(const char *path, const mt_model *m, long step, uint64_t seed, int world, const char *config)
{
    float *p = mt_malloc(m->n_params * sizeof *p);
    fill_params(p, m->n_params);
    mt_checkpoint ck = {.step = step, .seed = seed, .world_size = world, .config = (char *)config};
    char err[MT_ERR_LEN] = "";
    int rc = mt_checkpoint_write(path, m, p, &(mt_checkpoint_shard){MPI_COMM_NULL, 0, m->n_params, NULL, NULL}, &ck, err, sizeof err);
    if (rc != 0) printf("     write error: %s\n", err);
    free(p);
    return rc;
}

static void test_round_trip(const mt_model *m, const char *config)
{
    char path[2048], err[MT_ERR_LEN] = "";
    tu_in_dir(path, sizeof path, "ckpt-00001234.h5");
    const uint64_t seed = 0xdeadbeefcafef00dull; /* above INT64_MAX: must survive as u64 */
    tu_expect(write_ckpt(path, m, 1234, seed, 3, config) == 0, "mt_checkpoint_write succeeds");
    tu_expect(tu_exists(path), "the checkpoint exists under its final name");
    tu_expect(!tu_partial_left(), "no .partial file is left behind");

    mt_checkpoint ck;
    int rc = mt_checkpoint_read(path, &ck, err, sizeof err);
    tu_expect(rc == 0, "mt_checkpoint_read reads it back");
    if (rc != 0) {
        printf("     error: %s\n", err);
        return;
    }
    float *want = mt_malloc(m->n_params * sizeof *want);
    fill_params(want, m->n_params);
    tu_expect(ck.n_params == m->n_params, "n_params round-trips");
    if (ck.n_params == m->n_params)
        tu_expect(memcmp(ck.params, want, m->n_params * sizeof *want) == 0, "params round-trip bit for bit");
    tu_expect(ck.step == 1234, "step round-trips");
    tu_expect(ck.seed == seed, "seed round-trips (full 64 bits)");
    tu_expect(ck.world_size == 3, "world_size round-trips");
    tu_expect(strcmp(ck.program_version, MT_VERSION) == 0, "program_version is this metatrain's");
    tu_expect(ck.config && strcmp(ck.config, config) == 0, "config text round-trips");

    /* The stored layout is the model's. */
    int n = mt_model_tensor_count(m), same = ck.n_tensors == n;
    for (int i = 0; same && i < n; i++) {
        mt_tensor_info t;
        mt_model_tensor(m, i, &t);
        const mt_tensor_info *s = &ck.tensors[i];
        same = strcmp(t.name, s->name) == 0 && strcmp(t.kind, s->kind) == 0 && t.offset == s->offset &&
               t.size == s->size && t.ndim == s->ndim && memcmp(t.shape, s->shape, sizeof t.shape) == 0;
        if (!same) printf("     tensor %d: stored %s, model %s\n", i, s->name, t.name);
    }
    tu_expect(same, "the /model table round-trips (names, kinds, offsets, sizes, shapes)");
    tu_expect(mt_checkpoint_match_model(&ck, m, err, sizeof err) == 0, "mt_checkpoint_match_model accepts its model");

    mt_model other;
    mt_model_mlp(&other, 1, 41, 1);
    err[0] = '\0';
    rc = mt_checkpoint_match_model(&ck, &other, err, sizeof err);
    printf("     message: %s\n", err);
    tu_expect(rc == -1 && err[0], "mt_checkpoint_match_model rejects hidden = 41 for a hidden = 40 checkpoint");
    mt_model wide;
    mt_model_mlp(&wide, 2, 40, 1);
    rc = mt_checkpoint_match_model(&ck, &wide, err, sizeof err);
    tu_expect(rc == -1, "mt_checkpoint_match_model rejects a different input width");
    mt_checkpoint_free(&ck);
    mt_checkpoint_free(&ck); /* a freed (zeroed) struct can be freed again */
    mt_checkpoint_free(NULL);

    /* Writing again to the same path replaces the file. */
    tu_expect(write_ckpt(path, m, 99, 7, 1, "[run]\nseed = 7\n") == 0, "a second write to the same path succeeds");
    rc = mt_checkpoint_read(path, &ck, err, sizeof err);
    tu_expect(rc == 0 && ck.step == 99 && ck.seed == 7 && ck.world_size == 1, "the second write replaced the first");
    if (rc == 0) mt_checkpoint_free(&ck);
    tu_expect(!tu_partial_left(), "no .partial file after replacing");
    free(want);

    /* A checkpoint of a smaller model reads back with its own layout. */
    mt_model small;
    mt_model_mlp(&small, 1, 20, 1);
    char small_path[2048];
    tu_in_dir(small_path, sizeof small_path, "small.h5");
    tu_expect(write_ckpt(small_path, &small, 5, 1, 1, config) == 0, "write a hidden = 20 checkpoint");
    rc = mt_checkpoint_read(small_path, &ck, err, sizeof err);
    tu_expect(rc == 0 && ck.n_params == small.n_params, "it reads back with the hidden = 20 parameter count");
    if (rc == 0) {
        tu_expect(mt_checkpoint_match_model(&ck, &small, err, sizeof err) == 0, "it matches the hidden = 20 model");
        tu_expect(mt_checkpoint_match_model(&ck, m, err, sizeof err) == -1, "it does not match the hidden = 40 model");
        mt_checkpoint_free(&ck);
    }
    unlink(small_path);
}

/* Optimizer moments round-trip, and a damaged moment is caught by its checksum. */
static void test_moments(const mt_model *m)
{
    const size_t P = m->n_params;
    float *p = mt_malloc(P * sizeof *p), *mo = mt_malloc(P * sizeof *mo), *ve = mt_malloc(P * sizeof *ve);
    fill_params(p, P);
    for (size_t i = 0; i < P; i++) mo[i] = -0.5f * (float)i, ve[i] = 3.0f + (float)i;
    mt_checkpoint ck = {.step = 7, .seed = 3, .world_size = 1, .config = "[run]\n"}, back;
    char path[2048], err[MT_ERR_LEN] = "";
    tu_in_dir(path, sizeof path, "moments.h5");
    mt_checkpoint_shard whole = {MPI_COMM_NULL, 0, P, mo, ve};
    tu_expect(mt_checkpoint_write(path, m, p, &whole, &ck, err, sizeof err) == 0, "write with Adam moments");
    int rc = mt_checkpoint_read(path, &back, err, sizeof err);
    tu_expect(rc == 0 && back.version == MT_CKPT_VERSION, "read it back (current format version)");
    tu_expect(rc == 0 && back.m && back.v && memcmp(back.m, mo, P * sizeof *mo) == 0 &&
                  memcmp(back.v, ve, P * sizeof *ve) == 0,
              "the moments round-trip bit for bit");
    if (rc == 0) mt_checkpoint_free(&back);
    free(p), free(mo), free(ve);
}

static void test_write_failures(const mt_model *m)
{
    char path[2048], partial[2100], err[MT_ERR_LEN] = "";
    float *p = mt_calloc(m->n_params, sizeof *p);
    mt_checkpoint ck = {.step = 1, .seed = 1, .world_size = 1, .config = "x"};

    tu_in_dir(path, sizeof path, "no/such/dir/ckpt.h5");
    int rc = mt_checkpoint_write(path, m, p, &(mt_checkpoint_shard){MPI_COMM_NULL, 0, m->n_params, NULL, NULL}, &ck, err, sizeof err);
    printf("     message: %s\n", err);
    tu_expect(rc == -1, "writing into a missing directory fails");
    tu_expect(strstr(err, path) != NULL, "the message names the file");
    tu_expect(strstr(err, "unknown HDF5 error") == NULL, "the message gives HDF5's reason");

    /* The final name is taken by a directory: the rename fails after the file was written,
     * and the .partial file must be removed. */
    tu_in_dir(path, sizeof path, "taken.h5");
    mkdir(path, 0777);
    err[0] = '\0';
    rc = mt_checkpoint_write(path, m, p, &(mt_checkpoint_shard){MPI_COMM_NULL, 0, m->n_params, NULL, NULL}, &ck, err, sizeof err);
    printf("     message: %s\n", err);
    tu_expect(rc == -1, "writing over a directory fails");
    tu_expect(strstr(err, path) != NULL, "the message names the file");
    snprintf(partial, sizeof partial, "%s.partial", path);
    tu_expect(!tu_exists(partial), "the failed write removed its .partial file");
    rmdir(path);
    free(p);
}

/* Byte offset of the /params data in file[n]: where the first 16 written values appear. */
static long find_params(const unsigned char *file, long n)
{
    float head[16];
    fill_params(head, 16);
    for (long i = 0; i + (long)sizeof head <= n; i++)
        if (memcmp(file + i, head, sizeof head) == 0) return i;
    return -1;
}

static void test_damage(const mt_model *m, const char *config)
{
    char good[2048], path[2048];
    tu_in_dir(good, sizeof good, "good.h5");
    tu_expect(write_ckpt(good, m, 10, 1, 2, config) == 0, "write a checkpoint to damage");
    unsigned char *bytes;
    long n = tu_slurp(good, &bytes);
    tu_expect(n > 0, "read the checkpoint's bytes");
    if (n <= 0) return;

    /* Control: an exact copy reads (so the copies below fail for their damage only). */
    tu_in_dir(path, sizeof path, "copy.h5");
    mt_checkpoint ck;
    char err[MT_ERR_LEN] = "";
    tu_expect(tu_spill(path, bytes, (size_t)n) == 0 && mt_checkpoint_read(path, &ck, err, sizeof err) == 0,
              "an exact copy reads (control)");
    mt_checkpoint_free(&ck);

    tu_in_dir(path, sizeof path, "truncated.h5");
    tu_expect(tu_spill(path, bytes, (size_t)n / 2) == 0, "write a copy truncated to half");
    expect_read_error("truncated to half", path, NULL);
    tu_in_dir(path, sizeof path, "truncated_tail.h5");
    tu_expect(tu_spill(path, bytes, (size_t)n - 16) == 0, "write a copy without its last 16 bytes");
    expect_read_error("truncated by 16 bytes", path, NULL);

    long at = find_params(bytes, n);
    printf("     /params data found at byte %ld of %ld\n", at, n);
    tu_expect(at >= 0, "the /params data is found in the file");
    tu_expect(at >= 0 && find_params(bytes + at + 1, n - at - 1) < 0, "the /params data is found only once");
    if (at >= 0) {
        long flip = at + (long)(sizeof(float) * (m->n_params / 2)) + 1; /* mid-vector, a mantissa byte */
        tu_expect(flip < n, "the flipped byte lies inside the file");
        bytes[flip] ^= 0x10;
        tu_in_dir(path, sizeof path, "flipped.h5");
        tu_expect(tu_spill(path, bytes, (size_t)n) == 0, "write a copy with one /params byte flipped");
        expect_read_error("one byte flipped in /params (CRC-32)", path, "fails its checksum");
        bytes[flip] ^= 0x10;
    }
    free(bytes);

    /* A valid HDF5 file that is not a metatrain checkpoint. */
    tu_in_dir(path, sizeof path, "foreign.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    tu_expect(f >= 0, "create a foreign HDF5 file");
    if (f >= 0) {
        hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR);
        const char value[] = "someone-elses-format";
        H5Tset_size(type, sizeof value);
        hid_t a = H5Acreate2(f, "format", type, space, H5P_DEFAULT, H5P_DEFAULT);
        int ok = a >= 0 && H5Awrite(a, type, value) >= 0;
        if (a >= 0) H5Aclose(a);
        H5Sclose(space);
        H5Tclose(type);
        ok = H5Fclose(f) >= 0 && ok;
        tu_expect(ok, "write format = \"someone-elses-format\"");
        expect_read_error("wrong format attribute", path, "format");
    }
    tu_in_dir(path, sizeof path, "empty_hdf5.h5");
    f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    tu_expect(f >= 0 && H5Fclose(f) >= 0, "create an HDF5 file without attributes");
    expect_read_error("HDF5 file without a format attribute", path, "format");

    tu_in_dir(path, sizeof path, "text.h5");
    const char text[] = "this is a plain text file, not a checkpoint\n";
    tu_expect(tu_spill(path, text, sizeof text - 1) == 0, "write a plain text file");
    expect_read_error("plain text file", path, "not an HDF5 file");
    tu_in_dir(path, sizeof path, "zero.h5");
    tu_expect(tu_spill(path, "", 0) == 0, "write an empty file");
    expect_read_error("empty file", path, NULL);
    tu_in_dir(path, sizeof path, "missing.h5");
    expect_read_error("missing file", path, "No such file");
}

static void touch(const char *name)
{
    char path[2048];
    tu_in_dir(path, sizeof path, name);
    FILE *f = fopen(path, "w");
    if (f) fclose(f);
}

/* A checkpoint of run `run_id` at dir/name (the small MLP; values do not matter here). */
static void write_run_ckpt(const mt_model *m, const char *name, const char *run_id)
{
    char path[2048], err[MT_ERR_LEN] = "";
    tu_in_dir(path, sizeof path, name);
    float *p = mt_calloc(m->n_params, sizeof *p);
    mt_checkpoint ck = {.step = 1, .seed = 1, .world_size = 1, .config = ""};
    snprintf(ck.run_id, sizeof ck.run_id, "%s", run_id);
    if (mt_checkpoint_write(path, m, p, &(mt_checkpoint_shard){MPI_COMM_NULL, 0, m->n_params, NULL, NULL}, &ck, err,
                            sizeof err) != 0)
        printf("     write error: %s\n", err);
    free(p);
}

/* Which of names exist (1) or not (0), compared with want; prints the differences. */
static int exist_as(const char *const *names, const int *want, size_t n)
{
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        char path[2048];
        tu_in_dir(path, sizeof path, names[i]);
        if (tu_exists(path) != want[i]) printf("     %s: %s\n", names[i], want[i] ? "deleted" : "still there"), ok = 0;
    }
    return ok;
}

static void test_prune(void)
{
    char sub[1100], err[MT_ERR_LEN] = "";
    snprintf(sub, sizeof sub, "%s/prune", dir);
    mkdir(sub, 0777);
    mt_model m;
    tu_expect(mt_model_mlp(&m, 1, 4, 1) == 0, "build a 1-4-4-1 MLP");
    /* Run A at steps of 1 to 9 digits, written out of order (a step past 8 digits sorts by
     * number, not by name); run B, another run, at higher steps; a file of a version without
     * run ids; and files that are no checkpoints at all. */
    const char *names[] = {"prune/ckpt-00000100.h5", "prune/ckpt-00000005.h5",  "prune/ckpt-100000000.h5",
                           "prune/ckpt-00000099.h5", "prune/ckpt-12345678.h5", "prune/ckpt-00001000.h5",
                           "prune/ckpt-00000007.h5", "prune/ckpt-200000000.h5", "prune/ckpt-300000000.h5",
                           "prune/ckpt-00000003.h5"};
    const char *owner[] = {"A", "A", "A", "A", "A", "A", "A", "B", "B", ""};
    const size_t n = sizeof names / sizeof *names;
    for (size_t i = 0; i < n; i++) write_run_ckpt(&m, names[i], owner[i]);
    const char *others[] = {"prune/config.ini",        "prune/metrics.jsonl",            "prune/ckpt-latest.h5",
                            "prune/ckpt-00000001.txt", "prune/ckpt-00000002.h5.partial", "prune/ckpt-3.h5",
                            "prune/ckpt-000000004.h5", "prune/xckpt-0000005.h5",         "prune/ckpt-+0000003.h5",
                            "prune/ckpt- 0000004.h5",  "prune/ckpt-0000000000.h5",       "prune/ckpt-00000009.h5"};
    for (size_t i = 0; i < sizeof others / sizeof *others; i++) touch(others[i]);

    int deleted = mt_checkpoint_prune(sub, 3, "A", err, sizeof err);
    printf("     pruned %d\n", deleted);
    tu_expect(deleted == 4, "prune keep=3 of run A's 7 checkpoints deletes 4");
    const int after3[] = {0, 0, 1, 0, 1, 1, 0, 1, 1, 1};
    tu_expect(exist_as(names, after3, n), "run A's newest 3 (1000, 12345678, 100000000) are kept, its older 4 deleted, "
                                          "run B's higher-step checkpoints and the file without a run id untouched");
    int all[sizeof others / sizeof *others];
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) all[i] = 1;
    tu_expect(exist_as(others, all, sizeof all / sizeof *all),
              "files that are not ckpt-XXXXXXXX.h5 (or not HDF5) are left alone");

    tu_expect(mt_checkpoint_prune(sub, 3, "A", err, sizeof err) == 0, "pruning again deletes nothing");
    tu_expect(mt_checkpoint_prune(sub, 10, "A", err, sizeof err) == 0, "keep larger than the count deletes nothing");
    tu_expect(mt_checkpoint_prune(sub, 1, "C", err, sizeof err) == 0, "a run with no checkpoints deletes nothing");
    tu_expect(mt_checkpoint_prune(sub, 1, "", err, sizeof err) == 0, "no run id deletes nothing");
    tu_expect(mt_checkpoint_prune(sub, 1, "A", err, sizeof err) == 2, "keep=1 deletes run A's 2 older ones");
    const int after1[] = {0, 0, 1, 0, 0, 0, 0, 1, 1, 1};
    tu_expect(exist_as(names, after1, n), "keep=1 keeps run A's newest and nothing of the others is touched");
    char id[MT_RUN_ID_LEN], path[2048];
    tu_in_dir(path, sizeof path, "prune/ckpt-200000000.h5");
    tu_expect(mt_checkpoint_read_run_id(path, id, sizeof id) == 0 && strcmp(id, "B") == 0, "the run id reads back");
    tu_in_dir(path, sizeof path, "prune/ckpt-00000009.h5");
    tu_expect(mt_checkpoint_read_run_id(path, id, sizeof id) == -1, "an empty file has no run id");

    char a[MT_RUN_ID_LEN], b[MT_RUN_ID_LEN];
    mt_checkpoint_new_run_id(a);
    mt_checkpoint_new_run_id(b);
    tu_expect(strlen(a) == 32 && strspn(a, "0123456789abcdef") == 32 && strcmp(a, b) != 0,
              "new run ids are 32 hex digits and differ");

    tu_in_dir(path, sizeof path, "no-such-dir");
    err[0] = '\0';
    int rc = mt_checkpoint_prune(path, 3, "A", err, sizeof err);
    printf("     message: %s\n", err);
    tu_expect(rc == -1 && strstr(err, path) != NULL, "pruning a missing directory fails naming it");
}

/* Non-finite parameters or moments are never written; the previous file stays. */
static void test_non_finite(const mt_model *m)
{
    char path[2048], err[MT_ERR_LEN] = "";
    tu_in_dir(path, sizeof path, "nan.h5");
    float *p = mt_malloc(m->n_params * sizeof *p), *mv = mt_calloc(2 * m->n_params, sizeof *mv);
    fill_params(p, m->n_params);
    mt_checkpoint ck = {.step = 3, .seed = 1, .world_size = 1, .config = ""};
    mt_checkpoint_shard whole = {MPI_COMM_NULL, 0, m->n_params, mv, mv + m->n_params};
    tu_expect(mt_checkpoint_write(path, m, p, &whole, &ck, err, sizeof err) == 0, "a finite checkpoint is written");
    p[7] = NAN;
    int rc = mt_checkpoint_write(path, m, p, &whole, &ck, err, sizeof err);
    printf("     message: %s\n", err);
    tu_expect(rc == -1 && strstr(err, "/params[7] is not finite"), "a NaN in θ is refused, naming the index");
    p[7] = 0.0f;
    mv[m->n_params + 3] = INFINITY;
    rc = mt_checkpoint_write(path, m, p, &whole, &ck, err, sizeof err);
    tu_expect(rc == -1 && strstr(err, "/optim/v[3] is not finite"), "an infinite second moment is refused");
    char partial[2100];
    snprintf(partial, sizeof partial, "%s.partial", path);
    mt_checkpoint back;
    tu_expect(!tu_exists(partial) && mt_checkpoint_read(path, &back, err, sizeof err) == 0 &&
                  mt_checkpoint_check_finite(&back, err, sizeof err) == 0 && back.params[7] == 1000.0f + 0.25f * 7,
              "the earlier finite file is intact and no partial file is left");
    back.m[5] = NAN;
    tu_expect(mt_checkpoint_check_finite(&back, err, sizeof err) == -1 && strstr(err, "/optim/m[5]"),
              "mt_checkpoint_check_finite names a NaN moment");
    mt_checkpoint_free(&back);
    free(p);
    free(mv);
}

int main(void)
{
    if (!(dir = tu_scratch_dir("test_checkpoint"))) return 1;

    mt_model m;
    tu_expect(mt_model_mlp(&m, 1, 40, 1) == 0, "build the 1-40-40-1 MLP");
    mt_config c;
    mt_config_defaults(&c);
    char *config = mt_config_format(&c);

    test_round_trip(&m, config);
    test_write_failures(&m);
    test_damage(&m, config);
    test_moments(&m);
    test_prune();
    test_non_finite(&m);

    free(config);
    tu_scratch_remove();
    return tu_finish();
}
