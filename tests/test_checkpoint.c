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
#include <zlib.h>

#include "checkpoint.h"
#include "common.h"
#include "config.h"
#include "ioutil.h"
#include "model.h"
#include "testutil.h"

static const char *dir; /* the scratch directory */

/* Expects mt_checkpoint_read(path) to fail with a message that names path and holds want
 * (if not NULL), and to leave ck zeroed. */
/* HDF5 1.10 leaks the object header it could not verify (H5O_protect after a metadata
 * checksum error) while it rejects the damaged file of test_hostile_table: libhdf5's own
 * memory (allocated inside libhdf5, which has no frame pointers, so the module is what a
 * report shows), not the reader's, which closes every handle. LeakSanitizer is told so; the
 * reader's own allocations are made in metatrain's frames and are still reported. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libhdf5\n"; }

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

/* The default config with run.seed = seed (what a checkpoint of that seed holds). */
static char *seeded_config(uint64_t seed)
{
    mt_config c;
    mt_config_defaults(&c);
    c.seed = seed;
    return mt_config_format(&c);
}

/* Writes path with model m and the sequence above; returns 0, or -1 (message printed).
 * config NULL: the default config with this seed. */
static int write_ckpt(const char *path, const mt_model *m, long step, uint64_t seed, int world, const char *config)
{
    float *p = mt_malloc(m->n_params * sizeof *p);
    fill_params(p, m->n_params);
    char *own = config ? NULL : seeded_config(seed);
    mt_checkpoint ck = {.step = step, .seed = seed, .world_size = world, .config = (char *)(config ? config : own)};
    char err[MT_ERR_LEN] = "";
    int rc = mt_checkpoint_write(path, m, p, &(mt_checkpoint_shard){MPI_COMM_NULL, 0, m->n_params, NULL, NULL}, &ck, err, sizeof err);
    if (rc != 0) printf("     write error: %s\n", err);
    free(own);
    free(p);
    return rc;
}

static void test_round_trip(const mt_model *m)
{
    char path[2048], err[MT_ERR_LEN] = "";
    tu_in_dir(path, sizeof path, "ckpt-00001234.h5");
    const uint64_t seed = 0xdeadbeefcafef00dull; /* above INT64_MAX: must survive as u64 */
    char *config = seeded_config(seed);
    tu_expect(write_ckpt(path, m, 1234, seed, 3, config) == 0, "mt_checkpoint_write succeeds");
    tu_expect(tu_exists(path), "the checkpoint exists under its final name");
    tu_expect(!tu_partial_left(), "no .partial file is left behind");

    mt_checkpoint ck;
    int rc = mt_checkpoint_read(path, &ck, err, sizeof err);
    tu_expect(rc == 0, "mt_checkpoint_read reads it back");
    if (rc != 0) {
        printf("     error: %s\n", err);
        free(config);
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
    tu_expect(ck.version == MT_CKPT_VERSION && ck.meta_checked == 1, "the metadata checksum is stored and holds");
    tu_expect(ck.input_shape[0] == 1 && ck.input_shape[1] == 1 && ck.input_shape[2] == 1,
              "the input shape (1 x 1 x 1) round-trips");

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
    tu_expect(write_ckpt(small_path, &small, 5, 1, 1, NULL) == 0, "write a hidden = 20 checkpoint");
    rc = mt_checkpoint_read(small_path, &ck, err, sizeof err);
    tu_expect(rc == 0 && ck.n_params == small.n_params, "it reads back with the hidden = 20 parameter count");
    if (rc == 0) {
        tu_expect(mt_checkpoint_match_model(&ck, &small, err, sizeof err) == 0, "it matches the hidden = 20 model");
        tu_expect(mt_checkpoint_match_model(&ck, m, err, sizeof err) == -1, "it does not match the hidden = 40 model");
        mt_checkpoint_free(&ck);
    }
    unlink(small_path);
    free(config);
}

/* Optimizer moments round-trip, and a damaged moment is caught by its checksum. */
static void test_moments(const mt_model *m)
{
    const size_t P = m->n_params;
    float *p = mt_malloc(P * sizeof *p), *mo = mt_malloc(P * sizeof *mo), *ve = mt_malloc(P * sizeof *ve);
    fill_params(p, P);
    for (size_t i = 0; i < P; i++) mo[i] = -0.5f * (float)i, ve[i] = 3.0f + (float)i;
    mt_checkpoint ck = {.step = 7, .seed = 3, .world_size = 1, .config = "[run]\nseed = 3\n"}, back;
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

static void test_damage(const mt_model *m)
{
    char good[2048], path[2048];
    tu_in_dir(good, sizeof good, "good.h5");
    tu_expect(write_ckpt(good, m, 10, 1, 2, NULL) == 0, "write a checkpoint to damage");
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

/* ---- hostile files: a good checkpoint, opened read-write and changed with the HDF5 API ---- */

/* One /model row as metatrain stores it (io/checkpoint.c). */
typedef struct {
    char name[2 * MT_NAME_LEN];
    char kind[MT_NAME_LEN];
    int64_t offset, size;
    int32_t ndim;
    int32_t shape[4];
} row_t;

static hid_t row_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(row_t));
    hid_t name = H5Tcopy(H5T_C_S1), kind = H5Tcopy(H5T_C_S1);
    hsize_t four = 4;
    hid_t shape = H5Tarray_create2(H5T_NATIVE_INT32, 1, &four);
    H5Tset_size(name, sizeof(((row_t *)0)->name));
    H5Tset_size(kind, sizeof(((row_t *)0)->kind));
    H5Tinsert(t, "name", HOFFSET(row_t, name), name);
    H5Tinsert(t, "kind", HOFFSET(row_t, kind), kind);
    H5Tinsert(t, "offset", HOFFSET(row_t, offset), H5T_NATIVE_INT64);
    H5Tinsert(t, "size", HOFFSET(row_t, size), H5T_NATIVE_INT64);
    H5Tinsert(t, "ndim", HOFFSET(row_t, ndim), H5T_NATIVE_INT32);
    H5Tinsert(t, "shape", HOFFSET(row_t, shape), shape);
    H5Tclose(name);
    H5Tclose(kind);
    H5Tclose(shape);
    return t;
}

/* Writes a fresh good checkpoint of m (step 10, seed 1) as scratch/name and opens it
 * read-write; path receives its name. Returns the file, or -1. */
static hid_t open_good(const mt_model *m, const char *name, char *path, size_t len)
{
    static int made;
    char numbered[256];
    snprintf(numbered, sizeof numbered, "hostile-%03d-%s", ++made, name); /* one file per case */
    tu_in_dir(path, len, numbered);
    if (write_ckpt(path, m, 10, 1, 1, NULL) != 0) return -1;
    return H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
}

/* Replaces attribute `name` of loc by one of the given type and shape (n = 0: scalar). */
static int put_attr(hid_t loc, const char *name, hid_t type, int n, const void *value)
{
    if (H5Aexists(loc, name) > 0 && H5Adelete(loc, name) < 0) return -1;
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = n ? H5Screate_simple(1, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, type, value) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return ok ? 0 : -1;
}

static int put_i64(hid_t loc, const char *name, int64_t v) { return put_attr(loc, name, H5T_NATIVE_INT64, 0, &v); }

/* A fixed-length (or, variable != 0, variable-length) string attribute. */
static int put_str(hid_t loc, const char *name, const char *v, int variable)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, variable ? H5T_VARIABLE : strlen(v) + 1);
    int rc = put_attr(loc, name, type, 0, variable ? (const void *)&v : (const void *)v);
    H5Tclose(type);
    return rc;
}

/* The string attribute `name` of loc with the first `from` replaced by `to` (same length or
 * not); 0, or -1 if it is not there. */
static int edit_str(hid_t loc, const char *name, const char *from, const char *to)
{
    char *v = NULL, *out = NULL;
    if (mt_h5_attr_read_str(loc, name, &v) != 0) return -1;
    char *at = strstr(v, from);
    int rc = -1;
    if (at) {
        out = mt_malloc(strlen(v) + strlen(to) + 1);
        sprintf(out, "%.*s%s%s", (int)(at - v), v, to, at + strlen(from));
        rc = put_str(loc, name, out, 0);
    }
    free(v);
    free(out);
    return rc;
}

static int drop_attr(hid_t loc, const char *name) { return H5Adelete(loc, name) >= 0 ? 0 : -1; }

/* Replaces dataset `name` by one of type [dims] holding data (NULL: nothing written, chunked,
 * so that a huge extent takes no space). */
static int put_dataset(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims, const void *data)
{
    if (H5Lexists(file, name, H5P_DEFAULT) > 0 && H5Ldelete(file, name, H5P_DEFAULT) < 0) return -1;
    hid_t space = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[4];
    for (int i = 0; i < rank; i++) chunk[i] = dims[i] < 1024 && dims[i] > 0 ? dims[i] : 1024;
    if (!data) H5Pset_chunk(dcpl, rank, chunk);
    hid_t d = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    int ok = d >= 0 && (!data || H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    if (d >= 0) H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
    return ok ? 0 : -1;
}

/* The /model rows of file into rows[64] (returns their count, or -1) and back. */
static int get_rows(hid_t file, row_t *rows)
{
    hid_t d = H5Dopen2(file, "model", H5P_DEFAULT), type = row_type();
    hid_t space = d >= 0 ? H5Dget_space(d) : -1;
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    int ok = n > 0 && n <= 64 && H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) >= 0;
    if (space >= 0) H5Sclose(space);
    if (d >= 0) H5Dclose(d);
    H5Tclose(type);
    return ok ? (int)n : -1;
}

static int put_rows(hid_t file, const row_t *rows)
{
    hid_t d = H5Dopen2(file, "model", H5P_DEFAULT), type = row_type();
    int ok = d >= 0 && H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) >= 0;
    if (d >= 0) H5Dclose(d);
    H5Tclose(type);
    return ok ? 0 : -1;
}

/* Closes the changed file and expects the read to fail naming it, with want. */
static void expect_hostile(hid_t f, const char *label, const char *path, const char *want)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s: the file was changed", label);
    tu_expect(f >= 0 && H5Fclose(f) >= 0, buf);
    expect_read_error(label, path, want);
}

/* Defect 5: sizes from the file are checked against the layout and against overflow before
 * anything is allocated. */
static void test_hostile_sizes(const mt_model *m)
{
    char path[2048];
    hid_t f = open_good(m, "params_2p33.h5", path, sizeof path);
    hsize_t dims[2] = {(hsize_t)1 << 33, 0};
    tu_expect(f >= 0 && put_dataset(f, "params", H5T_IEEE_F32LE, 1, dims, NULL) == 0, "/params of 2^33 values");
    expect_hostile(f, "/params of 2^33 values (32 GiB)", path, "/params holds 8589934592 values, the /model table describes 1761");

    f = open_good(m, "params_2p62.h5", path, sizeof path);
    dims[0] = (hsize_t)1 << 62; /* × 4 bytes wraps to 0 */
    tu_expect(f >= 0 && put_dataset(f, "params", H5T_IEEE_F32LE, 1, dims, NULL) == 0, "/params of 2^62 values");
    expect_hostile(f, "/params of 2^62 values (byte count wraps)", path, "/params holds 4611686018427387904 values");

    f = open_good(m, "params_empty.h5", path, sizeof path);
    dims[0] = 0;
    tu_expect(f >= 0 && put_dataset(f, "params", H5T_IEEE_F32LE, 1, dims, NULL) == 0, "/params of 0 values");
    expect_hostile(f, "/params of 0 values", path, "/params holds 0 values");

    /* A layout whose sizes overflow: 2^30 × 2^30 values, and one that needs more than an
     * MPI count. */
    row_t rows[64];
    f = open_good(m, "table_huge.h5", path, sizeof path);
    int n = get_rows(f, rows);
    tu_expect(n > 1, "read the /model rows");
    rows[0].shape[0] = rows[0].shape[1] = 1 << 30;
    rows[0].size = (int64_t)1 << 60;
    tu_expect(n > 1 && put_rows(f, rows) == 0, "row 0 of 2^30 x 2^30 values");
    expect_hostile(f, "a /model row of 2^60 values", path, "more than 2147483647 values");

    f = open_good(m, "table_wrap.h5", path, sizeof path);
    n = get_rows(f, rows);
    rows[0].size = -((int64_t)1 << 62); /* negative sizes must not wrap into a match */
    tu_expect(n > 1 && put_rows(f, rows) == 0, "row 0 with size -2^62");
    expect_hostile(f, "a /model row of negative size", path, "size -4611686018427387904");
}

/* Defect 12: every attribute is checked for its class, shape and range. */
static void test_hostile_attributes(const mt_model *m)
{
    char path[2048];
    static const struct {
        const char *name;
        int64_t value;
        const char *want;
    } bad[] = {{"step", -5, "attribute step is -5, expected 0 to"},
               {"step", (int64_t)1 << 40, "attribute step is 1099511627776"},
               {"world_size", 0, "attribute world_size is 0, expected 1 to"},
               {"world_size", -3, "attribute world_size is -3"},
               {"format_version", 99, "format_version 99 is not supported"},
               {"format_version", 0, "format_version 0 is not supported"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char label[128];
        snprintf(label, sizeof label, "%s = %lld", bad[i].name, (long long)bad[i].value);
        hid_t f = open_good(m, "attr.h5", path, sizeof path);
        tu_expect(f >= 0 && put_i64(f, bad[i].name, bad[i].value) == 0, label);
        expect_hostile(f, label, path, bad[i].want);
    }
    hid_t f = open_good(m, "attr.h5", path, sizeof path);
    tu_expect(f >= 0 && put_str(f, "step", "10", 0) == 0, "step stored as a string");
    expect_hostile(f, "step stored as a string", path, "attribute step is a string, expected an integer");
    f = open_good(m, "attr.h5", path, sizeof path);
    const double ten = 10.0;
    tu_expect(f >= 0 && put_attr(f, "step", H5T_NATIVE_DOUBLE, 0, &ten) == 0, "step stored as a double");
    expect_hostile(f, "step stored as a double", path, "attribute step is a floating-point number");
    f = open_good(m, "attr.h5", path, sizeof path);
    const int64_t four[4] = {10, 10, 10, 10}; /* read into one int64, it would overflow the stack */
    tu_expect(f >= 0 && put_attr(f, "step", H5T_NATIVE_INT64, 4, four) == 0, "step stored as 4 values");
    expect_hostile(f, "step stored as 4 values", path, "attribute step holds 4 values, expected one");
    f = open_good(m, "attr.h5", path, sizeof path);
    tu_expect(f >= 0 && drop_attr(f, "world_size") == 0, "world_size removed");
    expect_hostile(f, "world_size removed", path, "attribute world_size is missing");
    f = open_good(m, "attr.h5", path, sizeof path);
    const char *long_name[3] = {"a", "b", "c"};
    hid_t vstr = H5Tcopy(H5T_C_S1);
    H5Tset_size(vstr, H5T_VARIABLE);
    tu_expect(f >= 0 && put_attr(f, "program_version", vstr, 3, long_name) == 0, "program_version as 3 strings");
    H5Tclose(vstr);
    expect_hostile(f, "program_version as 3 strings", path, "attribute program_version holds 3 values");

    /* The rows of /model: kinds, ranks, extents and offsets. */
    static const char *const row_want[] = {"has kind \"dense\": not one of linear, conv2d, batchnorm, lr", "has ndim 5",
                                           "has ndim 0", "has extent 0 in dimension 2", "has extent -40",
                                           "has offset -1", "no valid tensor name"};
    for (int k = 0; k < 7; k++) {
        row_t rows[64];
        f = open_good(m, "rows.h5", path, sizeof path);
        int n = get_rows(f, rows);
        tu_expect(n >= 2, "read the /model rows");
        if (n < 2) continue;
        row_t *r = &rows[1];
        switch (k) {
        case 0: snprintf(r->kind, sizeof r->kind, "dense"); break;
        case 1: r->ndim = 5; break;
        case 2: r->ndim = 0; break;
        case 3: rows[0].shape[1] = 0; r = &rows[0]; break;
        case 4: r->shape[0] = -40; break;
        case 5: r->offset = -1; break;
        case 6: snprintf(r->name, sizeof r->name, "fc1\"}, {\"x"); break;
        }
        tu_expect(put_rows(f, rows) == 0, row_want[k]);
        expect_hostile(f, row_want[k], path, row_want[k]);
    }
}

/* Defect 13: the metadata checksum covers the root attributes and the layout; files without
 * it (version 2) still read, and their config text must parse and agree with the seed. */
static void test_metadata_checksum(const mt_model *m)
{
    char path[2048], err[MT_ERR_LEN] = "";
    hid_t f = open_good(m, "meta.h5", path, sizeof path);
    tu_expect(f >= 0 && edit_str(f, "config", "eval_inner_steps = 10", "eval_inner_steps = 30") == 0,
              "config: eval_inner_steps 10 -> 30");
    expect_hostile(f, "config changed by one byte", path, "metadata checksum fails");
    f = open_good(m, "meta.h5", path, sizeof path);
    tu_expect(f >= 0 && edit_str(f, "config", "seed = 1", "seed = 5") == 0 && put_attr(f, "seed", H5T_NATIVE_UINT64, 0, &(uint64_t){5}) == 0,
              "seed 1 -> 5 in the attribute and the config");
    expect_hostile(f, "seed changed consistently", path, "metadata checksum fails");
    f = open_good(m, "meta.h5", path, sizeof path);
    tu_expect(f >= 0 && put_str(f, "dataset", "dataset other.h5 split train", 0) == 0, "dataset changed");
    expect_hostile(f, "dataset changed", path, "metadata checksum fails");
    f = open_good(m, "meta.h5", path, sizeof path);
    tu_expect(f >= 0 && put_i64(f, "step", 11) == 0, "step 10 -> 11");
    expect_hostile(f, "step changed", path, "metadata checksum fails");
    f = open_good(m, "meta.h5", path, sizeof path);
    row_t rows[64];
    int n = get_rows(f, rows);
    if (n > 0) snprintf(rows[0].name, sizeof rows[0].name, "fc9.weight");
    tu_expect(n > 0 && put_rows(f, rows) == 0, "tensor fc1.weight renamed fc9.weight");
    expect_hostile(f, "a tensor renamed", path, "metadata checksum fails");
    f = open_good(m, "meta.h5", path, sizeof path);
    tu_expect(f >= 0 && drop_attr(f, "meta_crc32") == 0, "meta_crc32 removed");
    expect_hostile(f, "meta_crc32 removed from a version 3 file", path, "attribute meta_crc32 is missing");

    /* The same file as version 2 wrote it: no input_shape, no meta_crc32. */
    f = open_good(m, "v2.h5", path, sizeof path);
    int ok = f >= 0 && put_i64(f, "format_version", 2) == 0 && drop_attr(f, "meta_crc32") == 0 &&
             drop_attr(f, "input_shape") == 0;
    tu_expect(ok && H5Fclose(f) >= 0, "make a version 2 file");
    mt_checkpoint ck;
    int rc = mt_checkpoint_read(path, &ck, err, sizeof err);
    if (rc != 0) printf("     error: %s\n", err);
    tu_expect(rc == 0 && ck.version == 2 && ck.meta_checked == 0 && ck.input_shape[0] == 0 && ck.step == 10,
              "a version 2 file reads (no metadata checksum, no input shape)");
    if (rc == 0) mt_checkpoint_free(&ck);
    f = open_good(m, "v2.h5", path, sizeof path);
    ok = f >= 0 && put_i64(f, "format_version", 2) == 0 && drop_attr(f, "meta_crc32") == 0 &&
         drop_attr(f, "input_shape") == 0 && edit_str(f, "config", "seed = 1", "seed = 5") == 0;
    tu_expect(ok, "version 2 file with seed = 5 in its config, seed 1 in its attribute");
    expect_hostile(f, "version 2: config seed differs from the seed attribute", path,
                   "config says seed = 5 but its seed attribute is 1");
    f = open_good(m, "v2.h5", path, sizeof path);
    ok = f >= 0 && put_i64(f, "format_version", 2) == 0 && drop_attr(f, "meta_crc32") == 0 &&
         drop_attr(f, "input_shape") == 0 && edit_str(f, "config", "[model]", "[modle]") == 0;
    tu_expect(ok, "version 2 file whose config has a damaged section name");
    expect_hostile(f, "version 2: config does not parse", path, "config attribute does not parse");
}

/* A /model row type with fields packed in order, a name of name_len bytes and ndim of type
 * ndim_type (the real one: 32 and int32). */
static hid_t table_like(size_t name_len, hid_t ndim_type)
{
    const size_t ndim_size = H5Tget_size(ndim_type);
    hid_t t = H5Tcreate(H5T_COMPOUND, name_len + MT_NAME_LEN + 16 + ndim_size + 16);
    hid_t name = H5Tcopy(H5T_C_S1), kind = H5Tcopy(H5T_C_S1);
    hsize_t four = 4;
    hid_t shape = H5Tarray_create2(H5T_NATIVE_INT32, 1, &four);
    H5Tset_size(name, name_len);
    H5Tset_size(kind, MT_NAME_LEN);
    size_t at = 0;
    H5Tinsert(t, "name", at, name), at += name_len;
    H5Tinsert(t, "kind", at, kind), at += MT_NAME_LEN;
    H5Tinsert(t, "offset", at, H5T_NATIVE_INT64), at += 8;
    H5Tinsert(t, "size", at, H5T_NATIVE_INT64), at += 8;
    H5Tinsert(t, "ndim", at, ndim_type), at += ndim_size;
    H5Tinsert(t, "shape", at, shape);
    H5Tclose(name);
    H5Tclose(kind);
    H5Tclose(shape);
    return t;
}

/* Defect 14: the /model table's stored datatype and shape are checked before it is read. */
static void test_hostile_table(const mt_model *m)
{
    char path[2048];
    row_t rows[64];
    for (int k = 0; k < 5; k++) {
        hid_t f = open_good(m, "table.h5", path, sizeof path);
        int n = get_rows(f, rows);
        tu_expect(n > 1, "read the /model rows");
        if (n <= 1) continue;
        hid_t type = row_type(), member = -1;
        hsize_t dims[2] = {(hsize_t)n, 1};
        const char *label = "", *want = "";
        int ok = 1;
        switch (k) {
        case 0: /* the name field twice as long: rows of another size */
            label = "/model with a 64-byte name field", want = "/model field name is a string of 64 bytes";
            H5Tclose(type);
            type = table_like(64, H5T_NATIVE_INT32);
            break;
        case 1:
            label = "/model of integers", want = "/model is an integer, expected a compound table";
            H5Tclose(type);
            type = H5Tcopy(H5T_NATIVE_INT32);
            break;
        case 2:
            label = "/model with 2 dimensions", want = "/model has 2 dimensions, expected 1";
            break;
        case 3:
            label = "/model with 1000 rows", want = "/model has 1000 rows, expected 1 to 128";
            dims[0] = 1000;
            break;
        case 4:
            label = "/model with ndim stored as a float", want = "/model field ndim is a floating-point number";
            H5Tclose(type);
            type = table_like(2 * MT_NAME_LEN, H5T_NATIVE_FLOAT);
            break;
        }
        ok = ok && put_dataset(f, "model", type, k == 2 ? 2 : 1, dims, NULL) == 0;
        if (member >= 0) H5Tclose(member);
        H5Tclose(type);
        tu_expect(ok, label);
        expect_hostile(f, label, path, want);
    }

    /* One flipped byte in the stored datatype of /model: the byte after the member name "name"
     * (the start of its offset in the datatype message), which HDF5's own metadata checksum
     * (the 1.8 file format) or our type check must catch. */
    tu_in_dir(path, sizeof path, "table_flip.h5");
    tu_expect(write_ckpt(path, m, 10, 1, 1, NULL) == 0, "write a checkpoint to flip");
    unsigned char *bytes;
    long size = tu_slurp(path, &bytes), at = -1;
    static const unsigned char member[] = {'n', 'a', 'm', 'e', 0};
    for (long i = 0; size > 0 && i + (long)sizeof member + 4 <= size; i++)
        if (memcmp(bytes + i, member, sizeof member) == 0 && (i == 0 || bytes[i - 1] < 'a')) at = i;
    tu_expect(at >= 0, "the /model datatype's member \"name\" is found in the file");
    if (at >= 0) {
        bytes[at + sizeof member + 2] ^= 0xff;
        tu_expect(tu_spill(path, bytes, (size_t)size) == 0, "flip a byte of the member offset");
        expect_read_error("a member offset of /model flipped", path, NULL);
    }
    free(bytes);
}

/* Defect 17: the input shape is stored and compared, so 16x16 data cannot pass for a 28x28
 * checkpoint whose parameter count it happens to match. */
static void test_input_shape(void)
{
    mt_model c28, c16, c3;
    tu_expect(mt_model_conv4(&c28, 1, 28, 28, 2, 2) == 0 && mt_model_conv4(&c16, 1, 16, 16, 2, 2) == 0 &&
                  mt_model_conv4(&c3, 3, 28, 28, 2, 2) == 0,
              "build Conv4 for 1x28x28, 1x16x16 and 3x28x28");
    tu_expect(c28.n_params == c16.n_params, "28x28 and 16x16 Conv4 have the same parameter count");
    char path[2048], err[MT_ERR_LEN] = "";
    tu_in_dir(path, sizeof path, "conv28.h5");
    tu_expect(write_ckpt(path, &c28, 3, 1, 1, NULL) == 0, "write a 1x28x28 Conv4 checkpoint");
    mt_checkpoint ck;
    int rc = mt_checkpoint_read(path, &ck, err, sizeof err);
    tu_expect(rc == 0 && ck.input_shape[0] == 1 && ck.input_shape[1] == 28 && ck.input_shape[2] == 28,
              "its input_shape reads back as 1x28x28");
    if (rc == 0) {
        tu_expect(mt_checkpoint_match_model(&ck, &c28, err, sizeof err) == 0, "it matches the 1x28x28 model");
        err[0] = '\0';
        rc = mt_checkpoint_match_model(&ck, &c16, err, sizeof err);
        printf("     message: %s\n", err);
        tu_expect(rc == -1 && strstr(err, "1x28x28") && strstr(err, "1x16x16"),
                  "it does not match the 1x16x16 model, and the message names both shapes");
        mt_checkpoint_free(&ck);
    }
    /* An input_shape that contradicts the first tensor (3 channels for a 1-channel conv1). */
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    const int64_t three[3] = {3, 28, 28};
    tu_expect(f >= 0 && put_attr(f, "input_shape", H5T_NATIVE_INT64, 3, three) == 0, "input_shape 3x28x28");
    expect_hostile(f, "input_shape that does not fit conv1", path, "does not fit the first tensor conv1.weight");
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    const int64_t zero[3] = {1, 0, 28};
    tu_expect(f >= 0 && put_attr(f, "input_shape", H5T_NATIVE_INT64, 3, zero) == 0, "input_shape 1x0x28");
    expect_hostile(f, "input_shape with a zero extent", path, "attribute input_shape is 1 x 0 x 28");

    mt_model mlp;
    mt_model_mlp(&mlp, 1, 40, 1);
    tu_in_dir(path, sizeof path, "mlp_shape.h5");
    tu_expect(write_ckpt(path, &mlp, 3, 1, 1, NULL) == 0, "write an MLP checkpoint");
    rc = mt_checkpoint_read(path, &ck, err, sizeof err);
    tu_expect(rc == 0 && ck.input_shape[0] == 1 && ck.input_shape[1] == 1 && ck.input_shape[2] == 1,
              "an MLP's input_shape is its input width x 1 x 1");
    if (rc == 0) mt_checkpoint_free(&ck);
}

/* Defect 18 and friends: what the message says about a value of the wrong kind. */
static void test_messages(const mt_model *m)
{
    char path[2048];
    hid_t f = open_good(m, "vlen_format.h5", path, sizeof path);
    tu_expect(f >= 0 && put_str(f, "format", MT_CKPT_FORMAT, 1) == 0, "format as a variable-length string");
    expect_hostile(f, "format as a variable-length string", path,
                   "attribute format is a variable-length string, expected a fixed-length one");
    f = open_good(m, "params_2d.h5", path, sizeof path);
    hsize_t dims[2] = {1, m->n_params};
    float *zeros = mt_calloc(m->n_params, sizeof *zeros);
    tu_expect(f >= 0 && put_dataset(f, "params", H5T_NATIVE_FLOAT, 2, dims, zeros) == 0, "/params of 1 x P");
    expect_hostile(f, "2-D /params", path, "/params has 2 dimensions, expected 1");
    f = open_good(m, "params_int.h5", path, sizeof path);
    tu_expect(f >= 0 && put_dataset(f, "params", H5T_NATIVE_INT32, 1, dims + 1, zeros) == 0, "/params of int32");
    expect_hostile(f, "/params of int32", path, "/params is not a float32 vector: its element type is an integer");
    f = open_good(m, "params_double.h5", path, sizeof path);
    tu_expect(f >= 0 && put_dataset(f, "params", H5T_NATIVE_DOUBLE, 1, dims + 1, NULL) == 0, "/params of float64");
    expect_hostile(f, "/params of float64", path, "its element type is a floating-point number of 8 bytes");
    f = open_good(m, "params_str.h5", path, sizeof path);
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, 4);
    tu_expect(f >= 0 && put_dataset(f, "params", str, 1, dims + 1, NULL) == 0, "/params of strings");
    H5Tclose(str);
    expect_hostile(f, "/params of strings", path, "its element type is a string");
    f = open_good(m, "params_group.h5", path, sizeof path);
    hid_t g = f >= 0 && H5Ldelete(f, "params", H5P_DEFAULT) >= 0 ? H5Gcreate2(f, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    tu_expect(g >= 0 && H5Gclose(g) >= 0, "/params is a group");
    expect_hostile(f, "/params is a group", path, "/params is not a readable dataset");
    f = open_good(m, "crc_str.h5", path, sizeof path);
    hid_t d = f >= 0 ? H5Dopen2(f, "params", H5P_DEFAULT) : -1;
    tu_expect(d >= 0 && put_str(d, "crc32", "12345678", 0) == 0 && H5Dclose(d) >= 0, "/params crc32 as a string");
    expect_hostile(f, "/params crc32 as a string", path, "/params: attribute crc32 is a string, expected an integer");

    /* Optimizer state: /optim/m without /optim/v. */
    const size_t P = m->n_params;
    float *p = mt_calloc(P, sizeof *p);
    mt_checkpoint ck = {.step = 7, .seed = 3, .world_size = 1, .config = "[run]\nseed = 3\n"};
    char err[MT_ERR_LEN] = "";
    tu_in_dir(path, sizeof path, "no_v.h5");
    tu_expect(mt_checkpoint_write(path, m, p, &(mt_checkpoint_shard){MPI_COMM_NULL, 0, P, p, p}, &ck, err, sizeof err) == 0,
              "write with moments");
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    tu_expect(f >= 0 && H5Ldelete(f, "optim/v", H5P_DEFAULT) >= 0, "remove /optim/v");
    expect_hostile(f, "/optim/m without /optim/v", path, "no /optim/v dataset");
    free(p);
    free(zeros);

    /* A directory and a device are not checkpoints. */
    tu_in_dir(path, sizeof path, "a_directory.h5");
    mkdir(path, 0777);
    expect_read_error("a directory", path, "is a directory, not a checkpoint file");
    rmdir(path);
    expect_read_error("/dev/null", "/dev/null", "not a regular file");

    /* A string attribute longer than the reader's cap is refused before it is read. */
    tu_in_dir(path, sizeof path, "long_attr.h5");
    f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    char text[200], *value = NULL, why[256] = "";
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    tu_expect(f >= 0 && put_str(f, "config", text, 0) == 0, "a 200-byte string attribute");
    int rc = mt_h5_attr_get_str(f, "config", 100, &value, why, sizeof why);
    printf("     message: %s\n", why);
    tu_expect(rc == -1 && value == NULL && strstr(why, "attribute config is a string of 200 bytes, expected 1 to 100"),
              "a string attribute over the cap is refused, saying so");
    if (f >= 0) H5Fclose(f);
}

/* Defect 5: CRC-32 of more than 4 GiB (zlib takes a uInt length: one call would checksum
 * only the length modulo 2^32). The buffer is calloc'd and never written, so its pages are
 * the shared zero page: no memory is used. */
static void test_crc_over_4gib(void)
{
    const size_t n = ((size_t)1 << 32) + 4, half = (size_t)1 << 31;
    unsigned char *zeros = calloc(n, 1);
    if (!zeros) {
        printf("     (no 4 GiB address range: CRC test skipped)\n");
        return;
    }
    const uLong want = crc32_combine(crc32(0L, zeros, (uInt)half), crc32(0L, zeros, (uInt)(n - half)), (z_off_t)(n - half));
    const uLong one_call = crc32(0L, zeros, (uInt)n); /* what a single call computes */
    tu_expect(one_call != want, "a single zlib call over 4 GiB + 4 bytes is wrong (the old way)");
    tu_expect(mt_checkpoint_crc32(0, zeros, n) == (uint32_t)want, "mt_checkpoint_crc32 over 4 GiB + 4 bytes is right");
    free(zeros);
}

int main(void)
{
    if (!(dir = tu_scratch_dir("test_checkpoint"))) return 1;

    mt_model m;
    tu_expect(mt_model_mlp(&m, 1, 40, 1) == 0, "build the 1-40-40-1 MLP");
    test_round_trip(&m);
    test_write_failures(&m);
    test_damage(&m);
    test_moments(&m);
    test_prune();
    test_non_finite(&m);
    test_hostile_sizes(&m);
    test_hostile_attributes(&m);
    test_metadata_checksum(&m);
    test_hostile_table(&m);
    test_input_shape();
    test_messages(&m);
    test_crc_over_4gib();

    tu_scratch_remove();
    return tu_finish();
}
