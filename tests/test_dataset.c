/*
 * test_dataset.c — dataset files (io/dataset.c) in one process, without MPI: the writer's
 * output read back byte for byte (images, labels, offsets, names, attributes) for two
 * splits whose class sizes cross chunk boundaries in different ways; reproducible bytes;
 * every refusal of the writer; and every validation failure of the reader, each with a
 * message that names the file (and split) and says what is wrong.
 *
 * Malformed files are written here with the HDF5 C API directly (the writer refuses to make
 * them): wrong format or version, a missing split, unsorted labels, offsets inconsistent
 * with the labels, an empty class, labels out of range, mismatched lengths, wrong shapes
 * and types. Damaged files are copies of a good one truncated, a text file, an empty file,
 * a missing one and a directory. Everything lives in a fresh directory under $TMPDIR (or
 * /tmp), removed at the end.
 */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "dataset.h"
#include "testutil.h"

static const char *dir; /* the scratch directory */

/* A split in memory with class sizes sizes[n_classes] and pixels that depend on (split
 * seed, image, position), so misplaced bytes are noticed. Free with mt_split_free. */
static void make_split(mt_split *s, const char *name, int C, int H, int W, const int *sizes, int n_classes, int seed)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->C = C, s->H = H, s->W = W;
    s->n_classes = n_classes;
    s->class_offsets = mt_calloc((size_t)n_classes + 1, sizeof *s->class_offsets);
    s->class_names = mt_calloc((size_t)n_classes, sizeof *s->class_names);
    for (int k = 0; k < n_classes; k++) {
        s->class_offsets[k + 1] = s->class_offsets[k] + sizes[k];
        snprintf(s->class_names[k], sizeof s->class_names[k], "%s-class-%02d", name, k);
    }
    s->n_images = s->class_offsets[n_classes];
    const size_t ib = (size_t)C * H * W;
    s->images = mt_malloc((size_t)s->n_images * ib);
    s->labels = mt_malloc((size_t)s->n_images * sizeof *s->labels);
    for (int64_t i = 0; i < s->n_images; i++)
        for (size_t j = 0; j < ib; j++) s->images[(size_t)i * ib + j] = (uint8_t)(seed * 31 + i * 7 + j * 13 + j / 5);
    for (int k = 0; k < n_classes; k++)
        for (int64_t i = s->class_offsets[k]; i < s->class_offsets[k + 1]; i++) s->labels[i] = k;
}

/* Compares every field of got with want; images only if with_images. */
static void expect_same_split(const char *label, const mt_split *got, const mt_split *want, int with_images)
{
    char buf[256];
    int shape = got->n_classes == want->n_classes && got->n_images == want->n_images && got->C == want->C &&
                got->H == want->H && got->W == want->W && strcmp(got->name, want->name) == 0;
    snprintf(buf, sizeof buf, "%s: name, n_classes, n_images, C, H, W round-trip", label);
    tu_expect(shape, buf);
    if (!shape) {
        printf("     got %s %d classes %lld images %dx%dx%d\n", got->name, got->n_classes, (long long)got->n_images,
               got->C, got->H, got->W);
        return;
    }
    const size_t N = (size_t)want->n_images, n = (size_t)want->n_classes;
    snprintf(buf, sizeof buf, "%s: labels round-trip", label);
    tu_expect(memcmp(got->labels, want->labels, N * sizeof *want->labels) == 0, buf);
    snprintf(buf, sizeof buf, "%s: class_offsets round-trip", label);
    tu_expect(memcmp(got->class_offsets, want->class_offsets, (n + 1) * sizeof *want->class_offsets) == 0, buf);
    snprintf(buf, sizeof buf, "%s: class_names round-trip", label);
    int names = 1;
    for (size_t k = 0; k < n; k++) names &= strcmp(got->class_names[k], want->class_names[k]) == 0;
    tu_expect(names, buf);
    if (with_images) {
        snprintf(buf, sizeof buf, "%s: images round-trip byte for byte", label);
        tu_expect(got->images && memcmp(got->images, want->images, N * want->C * want->H * want->W) == 0, buf);
    } else {
        snprintf(buf, sizeof buf, "%s: the meta reader leaves images NULL", label);
        tu_expect(got->images == NULL, buf);
    }
}

/* Writes a dataset of two splits: "train" (C=1, 4x5: 16 images per chunk, class sizes
 * crossing chunk boundaries) through mt_dataset_write_split, "test" (C=3, 64x64: 2 per
 * chunk) class by class. Returns 0 or -1 (message printed). */
static int write_two(const char *path, const char *source, const mt_split *train, const mt_split *test)
{
    char err[MT_ERR_LEN] = "";
    mt_dataset_writer *w = mt_dataset_create(path, source, err, sizeof err);
    int ok = w && mt_dataset_write_split(w, train, err, sizeof err) == 0 &&
             mt_dataset_begin_split(w, test->name, test->C, test->H, test->W, err, sizeof err) == 0;
    const size_t ib = (size_t)test->C * test->H * test->W;
    for (int k = 0; ok && k < test->n_classes; k++) {
        int64_t lo = test->class_offsets[k], n = test->class_offsets[k + 1] - lo;
        ok = mt_dataset_add_class(w, test->class_names[k], n, test->images + lo * ib, err, sizeof err) == 0;
    }
    ok = ok && mt_dataset_end_split(w, err, sizeof err) == 0;
    if (w && ok) {
        ok = mt_dataset_finish(w, err, sizeof err) == 0;
    } else {
        mt_dataset_abandon(w);
    }
    if (!ok) printf("     write error: %s\n", err);
    return ok ? 0 : -1;
}

static void test_round_trip(void)
{
    const int train_sizes[] = {1, 16, 17, 5, 33, 2};
    const int test_sizes[] = {3, 1, 2};
    mt_split train, test, got;
    make_split(&train, "train", 1, 4, 5, train_sizes, 6, 1);
    make_split(&test, "test", 3, 64, 64, test_sizes, 3, 2);
    char path[2048], err[MT_ERR_LEN] = "";
    tu_in_dir(path, sizeof path, "two.h5");
    setenv("SOURCE_DATE_EPOCH", "86400", 1);
    tu_expect(write_two(path, "unit-test:two splits", &train, &test) == 0, "write a dataset of two splits");
    unsetenv("SOURCE_DATE_EPOCH");
    tu_expect(tu_exists(path) && !tu_partial_left(), "the file exists under its final name, no .partial left");

    int rc = mt_dataset_read_split(path, "train", &got, err, sizeof err);
    tu_expect(rc == 0, "read split train");
    if (rc == 0) expect_same_split("train", &got, &train, 1);
    else printf("     error: %s\n", err);
    mt_split_free(&got);
    rc = mt_dataset_read_split(path, "test", &got, err, sizeof err);
    tu_expect(rc == 0, "read split test");
    if (rc == 0) expect_same_split("test", &got, &test, 1);
    else printf("     error: %s\n", err);
    mt_split_free(&got);
    mt_split_free(&got); /* a freed (zeroed) split can be freed again */
    mt_split_free(NULL);
    rc = mt_dataset_read_split_meta(path, "test", &got, err, sizeof err);
    tu_expect(rc == 0, "read split test without its pixels");
    if (rc == 0) expect_same_split("test (meta)", &got, &test, 0);
    mt_split_free(&got);

    char names[4][64];
    int n = mt_dataset_list_splits(path, names, 4, err, sizeof err);
    tu_expect(n == 2 && strcmp(names[0], "test") == 0 && strcmp(names[1], "train") == 0,
              "mt_dataset_list_splits gives test, train (byte order)");
    n = mt_dataset_list_splits(path, names, 1, err, sizeof err);
    tu_expect(n == 2 && strcmp(names[0], "test") == 0, "with room for one name it fills one and still counts 2");

    mt_dataset_attrs a;
    rc = mt_dataset_read_attrs(path, &a, err, sizeof err);
    tu_expect(rc == 0 && a.format_version == MT_DATASET_VERSION, "attributes: format_version is 1");
    tu_expect(rc == 0 && strcmp(a.source, "unit-test:two splits") == 0, "attributes: source round-trips");
    tu_expect(rc == 0 && strcmp(a.created, "1970-01-02T00:00:00Z") == 0,
              "attributes: created follows SOURCE_DATE_EPOCH (86400 = 1970-01-02T00:00:00Z)");
    if (rc == 0) printf("     created = %s\n", a.created);
    mt_dataset_attrs_free(&a);
    mt_dataset_attrs_free(&a);
    mt_dataset_attrs_free(NULL);

    /* Reproducible: the same content written again gives the same bytes; without
     * SOURCE_DATE_EPOCH only the 20 characters of `created` may differ. */
    char again[2048], later[2048];
    tu_in_dir(again, sizeof again, "two-again.h5");
    tu_in_dir(later, sizeof later, "two-later.h5");
    setenv("SOURCE_DATE_EPOCH", "86400", 1);
    write_two(again, "unit-test:two splits", &train, &test);
    unsetenv("SOURCE_DATE_EPOCH");
    write_two(later, "unit-test:two splits", &train, &test);
    unsigned char *b1 = NULL, *b2 = NULL, *b3 = NULL;
    long n1 = tu_slurp(path, &b1), n2 = tu_slurp(again, &b2), n3 = tu_slurp(later, &b3);
    tu_expect(n1 > 0 && n1 == n2 && memcmp(b1, b2, (size_t)n1) == 0,
              "writing the same content twice gives byte-identical files");
    long differ = 0;
    for (long i = 0; n1 == n3 && i < n1; i++) differ += b1[i] != b3[i];
    printf("     %ld bytes differ from the file written with the current time\n", differ);
    tu_expect(n1 == n3 && differ <= 20, "without SOURCE_DATE_EPOCH at most the created timestamp differs");
    free(b1);
    free(b2);
    free(b3);
    mt_split_free(&train);
    mt_split_free(&test);
}

/* Expects a writer call to have failed with a message naming the file and containing want. */
static void expect_writer_error(const char *label, int rc, const char *err, const char *path, const char *want)
{
    char buf[512];
    printf("     message: %s\n", err);
    snprintf(buf, sizeof buf, "%s: refused", label);
    tu_expect(rc == -1, buf);
    snprintf(buf, sizeof buf, "%s: message names the file", label);
    tu_expect(strstr(err, path) != NULL, buf);
    if (want) {
        snprintf(buf, sizeof buf, "%s: message contains \"%s\"", label, want);
        tu_expect(strstr(err, want) != NULL, buf);
    }
}

static void test_writer_refusals(void)
{
    char path[2048], err[MT_ERR_LEN] = "";
    uint8_t pixels[2 * 4] = {1, 2, 3, 4, 5, 6, 7, 8};
    tu_in_dir(path, sizeof path, "refused.h5");
    const char *bad_splits[] = {"", "a/b", ".", "0123456789012345678901234567890123456789012345678901234567890123"};
    for (size_t i = 0; i < sizeof bad_splits / sizeof *bad_splits; i++) {
        mt_dataset_writer *w = mt_dataset_create(path, "t", err, sizeof err);
        char label[128];
        snprintf(label, sizeof label, "split name '%.10s%s'", bad_splits[i], strlen(bad_splits[i]) > 10 ? "..." : "");
        int rc = w ? mt_dataset_begin_split(w, bad_splits[i], 1, 2, 2, err, sizeof err) : 0;
        expect_writer_error(label, rc, err, path, "split name");
        mt_dataset_abandon(w);
    }
    mt_dataset_writer *w = mt_dataset_create(path, "t", err, sizeof err);
    int rc = mt_dataset_add_class(w, "c", 1, pixels, err, sizeof err);
    expect_writer_error("add_class before begin_split", rc, err, path, "no split is open");
    mt_dataset_abandon(w);

    w = mt_dataset_create(path, "t", err, sizeof err);
    rc = mt_dataset_begin_split(w, "s", 1, 0, 2, err, sizeof err);
    expect_writer_error("image height 0", rc, err, path, "out of range");
    mt_dataset_abandon(w);

    w = mt_dataset_create(path, "t", err, sizeof err);
    tu_expect(mt_dataset_begin_split(w, "s", 1, 2, 2, err, sizeof err) == 0, "begin split s (control)");
    rc = mt_dataset_add_class(w, "0123456789012345678901234567890123456789012345678901234567890123", 1, pixels, err,
                              sizeof err);
    expect_writer_error("class name of 64 bytes", rc, err, path, "class name");
    mt_dataset_abandon(w);

    w = mt_dataset_create(path, "t", err, sizeof err);
    mt_dataset_begin_split(w, "s", 1, 2, 2, err, sizeof err);
    rc = mt_dataset_add_class(w, "c", 0, pixels, err, sizeof err);
    expect_writer_error("class without images", rc, err, path, "no images");
    mt_dataset_abandon(w);

    w = mt_dataset_create(path, "t", err, sizeof err);
    mt_dataset_begin_split(w, "s", 1, 2, 2, err, sizeof err);
    rc = mt_dataset_end_split(w, err, sizeof err);
    expect_writer_error("split without classes", rc, err, path, "no classes");
    mt_dataset_abandon(w);

    w = mt_dataset_create(path, "t", err, sizeof err);
    mt_dataset_begin_split(w, "s", 1, 2, 2, err, sizeof err);
    mt_dataset_add_class(w, "c", 2, pixels, err, sizeof err);
    mt_dataset_end_split(w, err, sizeof err);
    rc = mt_dataset_begin_split(w, "s", 1, 2, 2, err, sizeof err);
    expect_writer_error("the same split twice", rc, err, path, "already");
    rc = mt_dataset_finish(w, err, sizeof err);
    tu_expect(rc == -1, "finish after a failure fails");
    tu_expect(!tu_exists(path) && !tu_partial_left(), "a failed write leaves neither the file nor a .partial");

    w = mt_dataset_create(path, "t", err, sizeof err);
    mt_dataset_begin_split(w, "s", 1, 2, 2, err, sizeof err);
    mt_dataset_add_class(w, "c", 2, pixels, err, sizeof err);
    rc = mt_dataset_finish(w, err, sizeof err);
    expect_writer_error("finish with a split still open", rc, err, path, "not ended");
    tu_expect(!tu_exists(path) && !tu_partial_left(), "nothing is left behind");

    tu_in_dir(path, sizeof path, "no/such/dir/d.h5");
    w = mt_dataset_create(path, "t", err, sizeof err);
    expect_writer_error("create in a missing directory", w ? 0 : -1, err, path, NULL);
    tu_expect(strstr(err, "unknown HDF5 error") == NULL, "the message gives HDF5's reason");
    mt_dataset_abandon(w);

    tu_in_dir(path, sizeof path, "a-directory.h5");
    mkdir(path, 0777);
    w = mt_dataset_create(path, "t", err, sizeof err);
    expect_writer_error("create over a directory", w ? 0 : -1, err, path, "directory");
    mt_dataset_abandon(w);
    rmdir(path);

    /* A class appended in batches reads back as one class, images in order. */
    tu_in_dir(path, sizeof path, "streamed.h5");
    w = mt_dataset_create(path, "t", err, sizeof err);
    uint8_t rows[5 * 4];
    for (int i = 0; i < 20; i++) rows[i] = (uint8_t)i;
    int ok = w && mt_dataset_begin_split(w, "s", 1, 2, 2, err, sizeof err) == 0 &&
             mt_dataset_append_images(w, 2, rows, err, sizeof err) == 0 &&
             mt_dataset_append_images(w, 3, rows + 8, err, sizeof err) == 0 &&
             mt_dataset_end_class(w, "five", err, sizeof err) == 0 && mt_dataset_add_class(w, "one", 1, rows, err,
                                                                                             sizeof err) == 0 &&
             mt_dataset_end_split(w, err, sizeof err) == 0 && mt_dataset_finish(w, err, sizeof err) == 0;
    mt_split got;
    ok = ok && mt_dataset_read_split(path, "s", &got, err, sizeof err) == 0;
    tu_expect(ok && got.n_classes == 2 && got.class_offsets[1] == 5 && got.n_images == 6 &&
                  memcmp(got.images, rows, 20) == 0 && got.images[20] == 0,
              "a class appended in two batches reads back whole and in order");
    if (ok) mt_split_free(&got);
    unlink(path);
    w = mt_dataset_create(path, "t", err, sizeof err);
    mt_dataset_begin_split(w, "s", 1, 2, 2, err, sizeof err);
    mt_dataset_append_images(w, 1, rows, err, sizeof err);
    rc = mt_dataset_end_split(w, err, sizeof err);
    expect_writer_error("end_split with a class still being appended", rc, err, path, "still being appended");
    mt_dataset_abandon(w);
    w = mt_dataset_create(path, "t", err, sizeof err);
    mt_dataset_begin_split(w, "s", 1, 2, 2, err, sizeof err);
    rc = mt_dataset_end_class(w, "c", err, sizeof err);
    expect_writer_error("end_class without images", rc, err, path, "no images");
    mt_dataset_abandon(w);

    /* Which failures of create are the path's fault (bad input) and which the system's. */
    tu_expect(!mt_dataset_errno_is_io(ENOENT) && !mt_dataset_errno_is_io(EISDIR) && !mt_dataset_errno_is_io(ENOTDIR),
              "a missing folder or a directory as output is the path's fault");
    tu_expect(mt_dataset_errno_is_io(EROFS) && mt_dataset_errno_is_io(ENOSPC) && mt_dataset_errno_is_io(EACCES) &&
                  mt_dataset_errno_is_io(EIO),
              "read-only or full file system, no permission, I/O error are failures of the system");
    tu_in_dir(path, sizeof path, "no/such/dir/d.h5");
    errno = 0;
    w = mt_dataset_create(path, "t", err, sizeof err);
    tu_expect(!w && errno == ENOENT, "create in a missing folder leaves errno ENOENT");
    mt_dataset_abandon(w);

    mt_dataset_abandon(NULL);
    tu_expect(!tu_partial_left(), "no .partial file is left by any refusal");
}

/* ---- malformed files, written with HDF5 directly ------------------------------------------ */

typedef struct {
    const char *format;  /* NULL: no format attribute */
    int64_t version;
    const char *split;   /* group name */
    const char *split2;  /* a second (empty) group, or NULL */
    int images_ndims;    /* 4, or 3 for a wrong shape */
    int images_float;    /* store images as float32 */
    int n;               /* images */
    int n_labels;        /* labels written (-1: none) */
    const int32_t *labels;
    int n_offsets;
    const int64_t *offsets;
    int n_names;
} raw_spec;

static int raw_vector(hid_t g, const char *name, hid_t type, hsize_t n, const void *buf)
{
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(g, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int ok = d >= 0 && H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0;
    if (d >= 0) H5Dclose(d);
    H5Sclose(space);
    return ok ? 0 : -1;
}

static int raw_string_attr(hid_t loc, const char *name, const char *value)
{
    hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR);
    H5Tset_size(type, strlen(value) + 1);
    hid_t a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, type, value) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
    return ok ? 0 : -1;
}

/* Writes a file following spec; returns 0 or -1. */
static int write_raw(const char *path, const raw_spec *r)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return -1;
    int ok = 1;
    if (r->format) ok &= raw_string_attr(f, "format", r->format) == 0;
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "format_version", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    ok &= a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &r->version) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    ok &= raw_string_attr(f, "source", "raw") == 0 && raw_string_attr(f, "created", "now") == 0;
    hid_t g = H5Gcreate2(f, r->split, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ok &= g >= 0;
    if (r->split2) {
        hid_t g2 = H5Gcreate2(f, r->split2, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ok &= g2 >= 0 && H5Gclose(g2) >= 0;
    }
    /* images [n, 1, 2, 3] (or [n, 2, 3]) */
    hsize_t dims[4] = {(hsize_t)r->n, 1, 2, 3}, dims3[3] = {(hsize_t)r->n, 2, 3};
    int nd = r->images_ndims;
    hid_t space = nd == 4 ? H5Screate_simple(4, dims, NULL) : H5Screate_simple(3, dims3, NULL);
    hid_t type = r->images_float ? H5T_IEEE_F32LE : H5T_STD_U8LE;
    hid_t d = H5Dcreate2(g, "images", type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    float *px = calloc((size_t)r->n * 6, sizeof *px);
    ok &= d >= 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, px) >= 0;
    free(px);
    if (d >= 0) H5Dclose(d);
    H5Sclose(space);
    if (r->n_labels >= 0) ok &= raw_vector(g, "labels", H5T_NATIVE_INT32, (hsize_t)r->n_labels, r->labels) == 0;
    ok &= raw_vector(g, "class_offsets", H5T_NATIVE_INT64, (hsize_t)r->n_offsets, r->offsets) == 0;
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 64);
    char names[8][64];
    memset(names, 0, sizeof names);
    for (int k = 0; k < 8; k++) snprintf(names[k], 64, "class%d", k);
    ok &= raw_vector(g, "class_names", st, (hsize_t)r->n_names, names) == 0;
    H5Tclose(st);
    if (g >= 0) H5Gclose(g);
    ok &= H5Fclose(f) >= 0;
    return ok ? 0 : -1;
}

/* Expects mt_dataset_read_split(path, split) to fail naming the file and containing want,
 * leaving out zeroed. */
static void expect_read_error(const char *label, const char *path, const char *split, const char *want)
{
    mt_split s;
    char err[MT_ERR_LEN] = "", buf[512];
    memset(&s, 0xab, sizeof s);
    int rc = mt_dataset_read_split(path, split, &s, err, sizeof err);
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
    tu_expect(s.images == NULL && s.labels == NULL && s.class_offsets == NULL && s.class_names == NULL, buf);
    if (rc == 0) mt_split_free(&s);
}

static void test_malformed(void)
{
    const int32_t labels_ok[4] = {0, 0, 1, 1};
    const int64_t offsets_ok[3] = {0, 2, 4};
    const raw_spec good = {MT_DATASET_FORMAT, 1, "train", "test", 4, 0, 4, 4, labels_ok, 3, offsets_ok, 2};
    char path[2048], err[MT_ERR_LEN] = "";
    raw_spec r;

    /* Control: the raw writer's well-formed file reads (so each case fails for its flaw). */
    tu_in_dir(path, sizeof path, "raw-good.h5");
    tu_expect(write_raw(path, &good) == 0, "write a well-formed file with the HDF5 API (control)");
    mt_split s;
    int rc = mt_dataset_read_split(path, "train", &s, err, sizeof err);
    tu_expect(rc == 0 && s.n_classes == 2 && s.n_images == 4 && s.C == 1 && s.H == 2 && s.W == 3,
              "the control file reads: 2 classes, 4 images of 1x2x3");
    if (rc != 0) printf("     error: %s\n", err);
    mt_split_free(&s);

    expect_read_error("missing split", path, "val", "no split 'val'");
    expect_read_error("missing split lists the others", path, "val", "its splits: test, train");
    expect_read_error("split name with a slash", path, "train/images", "no split");

    r = good, r.format = "someone-elses-format";
    tu_in_dir(path, sizeof path, "raw-format.h5");
    write_raw(path, &r);
    expect_read_error("wrong format attribute", path, "train", "someone-elses-format");
    r = good, r.format = NULL;
    tu_in_dir(path, sizeof path, "raw-noformat.h5");
    write_raw(path, &r);
    expect_read_error("no format attribute", path, "train", "format attribute is missing");
    r = good, r.version = 2;
    tu_in_dir(path, sizeof path, "raw-version.h5");
    write_raw(path, &r);
    expect_read_error("format_version 2", path, "train", "format_version 2");

    const int32_t unsorted[4] = {0, 1, 0, 1};
    r = good, r.labels = unsorted;
    tu_in_dir(path, sizeof path, "raw-unsorted.h5");
    write_raw(path, &r);
    expect_read_error("labels not sorted", path, "train", "not sorted");
    expect_read_error("labels not sorted: message names the split", path, "train", "split 'train'");

    const int32_t shifted[4] = {0, 0, 0, 1};
    r = good, r.labels = shifted;
    tu_in_dir(path, sizeof path, "raw-mismatch.h5");
    write_raw(path, &r);
    expect_read_error("labels inconsistent with class_offsets", path, "train", "do not match class_offsets");

    const int64_t short_end[3] = {0, 2, 3};
    r = good, r.offsets = short_end;
    tu_in_dir(path, sizeof path, "raw-offsets-end.h5");
    write_raw(path, &r);
    expect_read_error("class_offsets ending before N", path, "train", "class_offsets run from 0 to 3");

    const int64_t decreasing[4] = {0, 3, 1, 4};
    const int32_t labels3[4] = {0, 0, 1, 2};
    r = good, r.offsets = decreasing, r.n_offsets = 4, r.n_names = 3, r.labels = labels3;
    tu_in_dir(path, sizeof path, "raw-offsets-decreasing.h5");
    write_raw(path, &r);
    expect_read_error("class_offsets decreasing", path, "train", "not increasing");

    const int64_t empty[4] = {0, 2, 2, 4};
    const int32_t skip1[4] = {0, 0, 2, 2};
    r = good, r.offsets = empty, r.n_offsets = 4, r.n_names = 3, r.labels = skip1;
    tu_in_dir(path, sizeof path, "raw-empty-class.h5");
    write_raw(path, &r);
    expect_read_error("an empty class", path, "train", "is empty");

    const int32_t big[4] = {0, 0, 1, 7};
    r = good, r.labels = big;
    tu_in_dir(path, sizeof path, "raw-label-range.h5");
    write_raw(path, &r);
    expect_read_error("a label out of range", path, "train", "outside 0..1");

    r = good, r.n_labels = 3;
    tu_in_dir(path, sizeof path, "raw-labels-short.h5");
    write_raw(path, &r);
    expect_read_error("fewer labels than images", path, "train", "labels has 3 entries");
    r = good, r.n_labels = -1;
    tu_in_dir(path, sizeof path, "raw-no-labels.h5");
    write_raw(path, &r);
    expect_read_error("no labels dataset", path, "train", "no labels");
    r = good, r.n_names = 1;
    tu_in_dir(path, sizeof path, "raw-names.h5");
    write_raw(path, &r);
    expect_read_error("class_names shorter than the classes", path, "train", "class_names has 1");
    r = good, r.images_ndims = 3;
    tu_in_dir(path, sizeof path, "raw-3d.h5");
    write_raw(path, &r);
    expect_read_error("images of rank 3", path, "train", "images is not");
    r = good, r.images_float = 1;
    tu_in_dir(path, sizeof path, "raw-float.h5");
    write_raw(path, &r);
    expect_read_error("float images", path, "train", "uint8");
    r = good, r.n_offsets = 1, r.n_names = 0;
    tu_in_dir(path, sizeof path, "raw-no-classes.h5");
    write_raw(path, &r);
    expect_read_error("no classes", path, "train", "class_offsets has 1");
}

/* Copies the well-formed raw file src to dst and replaces root attribute `name` by one of
 * type `type` and n elements (n = 0: scalar) holding zeros. */
static int replace_attr(const char *src, const char *dst, const char *name, hid_t type, hsize_t n)
{
    unsigned char *bytes = NULL;
    long len = tu_slurp(src, &bytes);
    int ok = len > 0 && tu_spill(dst, bytes, (size_t)len) == 0;
    free(bytes);
    hid_t f = ok ? H5Fopen(dst, H5F_ACC_RDWR, H5P_DEFAULT) : -1;
    if (f < 0) return -1;
    ok = H5Adelete(f, name) >= 0;
    hid_t space = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    size_t bytes_n = H5Tget_size(type) * (n ? n : 1);
    void *zeros = calloc(bytes_n, 1);
    ok &= a >= 0 && H5Awrite(a, type, zeros) >= 0;
    free(zeros);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    ok &= H5Fclose(f) >= 0;
    return ok ? 0 : -1;
}

/* Attributes are checked for type and shape before they are read into one value. */
static void test_hostile_attrs(void)
{
    const int32_t labels_ok[4] = {0, 0, 1, 1};
    const int64_t offsets_ok[3] = {0, 2, 4};
    const raw_spec good = {MT_DATASET_FORMAT, 1, "train", NULL, 4, 0, 4, 4, labels_ok, 3, offsets_ok, 2};
    char src[2048], path[2048], err[MT_ERR_LEN] = "";
    tu_in_dir(src, sizeof src, "attrs-good.h5");
    tu_expect(write_raw(src, &good) == 0, "write a well-formed file for the attribute cases (control)");

    tu_in_dir(path, sizeof path, "attrs-version-array.h5");
    replace_attr(src, path, "format_version", H5T_STD_I64LE, 4096);
    expect_read_error("format_version an array of 4096 int64", path, "train", "format_version attribute is an array");
    tu_in_dir(path, sizeof path, "attrs-version-string.h5");
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 8);
    replace_attr(src, path, "format_version", st, 0);
    expect_read_error("format_version a string", path, "train", "format_version attribute is of another type");
    tu_in_dir(path, sizeof path, "attrs-format-array.h5");
    H5Tset_size(st, 32);
    replace_attr(src, path, "format", st, 512);
    expect_read_error("format an array of 512 strings", path, "train", "format attribute is an array of 512");
    tu_in_dir(path, sizeof path, "attrs-format-int.h5");
    replace_attr(src, path, "format", H5T_STD_I32LE, 0);
    expect_read_error("format an integer", path, "train", "format attribute is of another type");
    tu_in_dir(path, sizeof path, "attrs-source-array.h5");
    replace_attr(src, path, "source", st, 512);
    mt_dataset_attrs a;
    int rc = mt_dataset_read_attrs(path, &a, err, sizeof err);
    printf("     message: %s\n", err);
    tu_expect(rc == -1 && strstr(err, path) && strstr(err, "source attribute is an array of 512"),
              "source an array of 512 strings: refused by mt_dataset_read_attrs, naming file and attribute");
    if (rc == 0) mt_dataset_attrs_free(&a);
    H5Tclose(st);
}

/* Writes zeros to the first `count` elements of the 1-d or 4-d dataset d ([N] or [N,1,1,1]). */
static int write_head(hid_t d, int rank, hsize_t count)
{
    hsize_t start[4] = {0}, cnt[4] = {count, 1, 1, 1};
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(rank, cnt, NULL);
    int32_t *zeros = calloc(count, sizeof *zeros);
    int ok = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) >= 0 &&
             H5Dwrite(d, rank == 4 ? H5T_NATIVE_UINT8 : H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, zeros) >= 0;
    free(zeros);
    H5Sclose(ms);
    H5Sclose(fs);
    return ok ? 0 : -1;
}

/* A small file whose shapes claim far more data than it stores (chunks never written read
 * back as zeros) is refused before the reader allocates for it. */
static void test_hollow(void)
{
    const hsize_t N = (hsize_t)1 << 26; /* 64 Mi images of 1x1x1: 256 MiB of labels */
    char path[2048];
    tu_in_dir(path, sizeof path, "hollow.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    int ok = f >= 0 && raw_string_attr(f, "format", MT_DATASET_FORMAT) == 0 && raw_string_attr(f, "source", "x") == 0 &&
             raw_string_attr(f, "created", "now") == 0;
    int64_t version = 1;
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "format_version", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    ok &= a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &version) >= 0;
    H5Aclose(a);
    H5Sclose(sp);
    hid_t g = H5Gcreate2(f, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t idims[4] = {N, 1, 1, 1}, ichunk[4] = {4096, 1, 1, 1}, ldims[1] = {N}, lchunk[1] = {4096};
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 4, ichunk);
    hid_t s4 = H5Screate_simple(4, idims, NULL);
    hid_t d = H5Dcreate2(g, "images", H5T_STD_U8LE, s4, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ok &= d >= 0 && write_head(d, 4, 4096) == 0; /* one chunk of 4096 stored, 16383 missing */
    H5Dclose(d);
    H5Sclose(s4);
    H5Pclose(dcpl);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, lchunk);
    hid_t s1 = H5Screate_simple(1, ldims, NULL);
    d = H5Dcreate2(g, "labels", H5T_STD_I32LE, s1, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ok &= d >= 0 && write_head(d, 1, 4096) == 0;
    H5Dclose(d);
    H5Sclose(s1);
    H5Pclose(dcpl);
    const int64_t offsets[2] = {0, (int64_t)N};
    ok &= raw_vector(g, "class_offsets", H5T_NATIVE_INT64, 2, offsets) == 0;
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 64);
    char name[64] = "all";
    ok &= raw_vector(g, "class_names", st, 1, name) == 0;
    H5Tclose(st);
    H5Gclose(g);
    ok &= H5Fclose(f) >= 0;
    unsigned char *bytes = NULL;
    long size = tu_slurp(path, &bytes);
    free(bytes);
    printf("     the file is %ld bytes and claims %llu images\n", size, (unsigned long long)N);
    tu_expect(ok && size > 0 && size < 65536, "write a small file claiming 64 Mi images");
    expect_read_error("a file claiming 64 Mi images it does not store", path, "train", "claims");
    mt_split s;
    char err[MT_ERR_LEN] = "";
    int rc = mt_dataset_read_split_meta(path, "train", &s, err, sizeof err);
    tu_expect(rc == -1 && strstr(err, path) && strstr(err, "labels claims"),
              "mt_dataset_read_split_meta (data info) refuses it too, naming labels");
    if (rc == 0) mt_split_free(&s);
}

/* Rewrites /train/<name> of the well-formed raw file src into dst with dataset-creation
 * properties dcpl and element type type, n elements, data written unless buf is NULL. */
static int replace_dataset(const char *src, const char *dst, const char *name, hid_t type, hid_t dcpl, hsize_t n,
                           const void *buf)
{
    unsigned char *bytes = NULL;
    long len = tu_slurp(src, &bytes);
    int ok = len > 0 && tu_spill(dst, bytes, (size_t)len) == 0;
    free(bytes);
    hid_t f = ok ? H5Fopen(dst, H5F_ACC_RDWR, H5P_DEFAULT) : -1;
    if (f < 0) return -1;
    hid_t g = H5Gopen2(f, "train", H5P_DEFAULT);
    ok = g >= 0 && H5Ldelete(g, name, H5P_DEFAULT) >= 0;
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(g, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ok &= d >= 0 && (!buf || H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    if (d >= 0) H5Dclose(d);
    H5Sclose(space);
    if (g >= 0) H5Gclose(g);
    ok &= H5Fclose(f) >= 0;
    return ok ? 0 : -1;
}

/* How an array is stored is checked before HDF5 reads it (cases found by fuzzing). */
static void test_hostile_storage(void)
{
    const int32_t labels_ok[4] = {0, 0, 1, 1};
    const int64_t offsets_ok[3] = {0, 2, 4};
    const raw_spec good = {MT_DATASET_FORMAT, 1, "train", NULL, 4, 0, 4, 4, labels_ok, 3, offsets_ok, 2};
    char src[2048], path[2048], ext[2048];
    tu_in_dir(src, sizeof src, "storage-good.h5");
    tu_expect(write_raw(src, &good) == 0, "write a well-formed file for the storage cases (control)");

    /* Labels of a 43-byte integer type, chunked and never written: HDF5 1.10 read past its
     * fill-value buffer (heap overflow under ASan). */
    hid_t odd = H5Tcopy(H5T_STD_I32LE);
    H5Tset_size(odd, 43);
    hsize_t chunk = 4;
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk);
    tu_in_dir(path, sizeof path, "storage-odd-int.h5");
    tu_expect(replace_dataset(src, path, "labels", odd, dcpl, 4, NULL) == 0, "write labels of 43-byte integers");
    expect_read_error("labels of 43-byte integers, never written", path, "train", "1, 2, 4 or 8 bytes");
    H5Tclose(odd);
    tu_in_dir(path, sizeof path, "storage-unwritten.h5");
    replace_dataset(src, path, "labels", H5T_STD_I32LE, dcpl, 4, NULL);
    expect_read_error("labels never written (only fill values)", path, "train", "labels holds no data");
    H5Pclose(dcpl);

    /* A chunk whose stored size, a number in the file, is far above the chunk's 16 bytes: HDF5
     * allocates that much before it reads (fuzzing found a file asking 4 GiB for 12 bytes).
     * The chunk is written raw (H5Dwrite_chunk), as a damaged size field would describe it. */
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk);
    tu_in_dir(path, sizeof path, "storage-fat-chunk.h5");
    int fat_ok = replace_dataset(src, path, "labels", H5T_STD_I32LE, dcpl, 4, NULL) == 0;
    H5Pclose(dcpl);
    hid_t f = fat_ok ? H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT) : -1;
    hid_t d = f >= 0 ? H5Dopen2(f, "train/labels", H5P_DEFAULT) : -1;
    static unsigned char fat[4096];
    hsize_t origin = 0;
    fat_ok = d >= 0 && H5Dwrite_chunk(d, H5P_DEFAULT, 0, &origin, sizeof fat, fat) >= 0;
    if (d >= 0) H5Dclose(d);
    if (f >= 0) fat_ok &= H5Fclose(f) >= 0;
    tu_expect(fat_ok, "write labels as one raw chunk of 4096 bytes for 16 bytes of data");
    expect_read_error("a chunk that claims 4096 stored bytes for 16", path, "train", "claims 4096 stored bytes");

    /* The same in the third of four compressed chunks of one label each: the reader looks
     * compressed chunks up by their position in the grid, and must reach every one. */
    const hsize_t one = 1;
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &one);
    H5Pset_deflate(dcpl, 1);
    tu_in_dir(path, sizeof path, "storage-fat-third-chunk.h5");
    fat_ok = replace_dataset(src, path, "labels", H5T_STD_I32LE, dcpl, 4, NULL) == 0;
    H5Pclose(dcpl);
    f = fat_ok ? H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT) : -1;
    d = f >= 0 ? H5Dopen2(f, "train/labels", H5P_DEFAULT) : -1;
    fat_ok = d >= 0;
    for (hsize_t at = 0; at < 4 && fat_ok; at++) { /* labels 0, 0, 1, 1 as 4-byte chunks, the third fat */
        const unsigned char label[4] = {(unsigned char)(at >= 2), 0, 0, 0};
        fat_ok = at == 2 ? H5Dwrite_chunk(d, H5P_DEFAULT, 0, &at, sizeof fat, fat) >= 0
                         : H5Dwrite_chunk(d, H5P_DEFAULT, 0, &at, sizeof label, label) >= 0;
    }
    if (d >= 0) H5Dclose(d);
    if (f >= 0) fat_ok &= H5Fclose(f) >= 0;
    tu_expect(fat_ok, "write labels in 4 chunks, the third raw with 4096 bytes for 4");
    expect_read_error("the third of 4 chunks claims 4096 stored bytes for 4", path, "train",
                      "chunk at 2 claims 4096 stored bytes");

    /* class_offsets kept in an external raw file: the reader must not follow it. */
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    tu_in_dir(ext, sizeof ext, "outside.raw");
    H5Pset_external(dcpl, ext, 0, 3 * 8);
    tu_in_dir(path, sizeof path, "storage-external.h5");
    tu_expect(replace_dataset(src, path, "class_offsets", H5T_STD_I64LE, dcpl, 3, offsets_ok) == 0,
              "write class_offsets to an external raw file");
    expect_read_error("class_offsets in an external file", path, "train", "outside the file");
    H5Pclose(dcpl);
}

static void test_damaged(void)
{
    const int sizes[] = {3, 40, 2};
    mt_split s;
    make_split(&s, "train", 1, 28, 28, sizes, 3, 5);
    char good[2048], path[2048], err[MT_ERR_LEN] = "";
    tu_in_dir(good, sizeof good, "to-damage.h5");
    mt_dataset_writer *w = mt_dataset_create(good, "damage", err, sizeof err);
    int ok = w && mt_dataset_write_split(w, &s, err, sizeof err) == 0;
    if (w) ok = ok ? mt_dataset_finish(w, err, sizeof err) == 0 : (mt_dataset_abandon(w), 0);
    tu_expect(ok, "write a dataset to damage");
    mt_split_free(&s);
    unsigned char *bytes;
    long n = tu_slurp(good, &bytes);
    if (n <= 0) return;
    tu_in_dir(path, sizeof path, "half.h5");
    tu_spill(path, bytes, (size_t)n / 2);
    expect_read_error("truncated to half", path, "train", NULL);
    tu_in_dir(path, sizeof path, "tail.h5");
    tu_spill(path, bytes, (size_t)n - 16);
    expect_read_error("truncated by 16 bytes", path, "train", NULL);
    free(bytes);

    tu_in_dir(path, sizeof path, "text.h5");
    const char text[] = "not a dataset\n";
    tu_spill(path, text, sizeof text - 1);
    expect_read_error("a text file", path, "train", "not an HDF5 file");
    char names[2][64];
    tu_expect(mt_dataset_list_splits(path, names, 2, err, sizeof err) == -1 && strstr(err, path),
              "mt_dataset_list_splits refuses a text file, naming it");
    tu_in_dir(path, sizeof path, "zero.h5");
    tu_spill(path, "", 0);
    expect_read_error("an empty file", path, "train", NULL);
    tu_in_dir(path, sizeof path, "missing.h5");
    expect_read_error("a missing file", path, "train", "No such file");
    expect_read_error("a directory", dir, "train", "directory");
}

int main(void)
{
    if (!(dir = tu_scratch_dir("test_dataset"))) return 1;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    test_round_trip();
    test_writer_refusals();
    test_malformed();
    test_hostile_attrs();
    test_hollow();
    test_hostile_storage();
    test_damaged();
    tu_scratch_remove();
    return tu_finish();
}
