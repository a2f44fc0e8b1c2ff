/*
 * test_import.c — the importers (io/import.c) in one process, without MPI, checked against
 * the inputs they were given: which image lands in which row, in which order, with which
 * pixels.
 *
 *   --split parsing   every accepted form and every refusal
 *   IDX               two pairs (one plain, one gzipped) concatenated; classes drawn from
 *                     both, images of a class in input order; every kind of bad IDX input
 *   images            exact pixels of PNGs imported at their own size (RGB channels-first
 *                     and grey); resizing a uniform image keeps its value; JPEG decodes
 *   Omniglot, folder  sorted class order and names, a missing evaluation part, and bad
 *                     trees: empty class folder, corrupt and truncated images, no classes
 *   hostile images    image bombs (PNG and JPEG headers claiming huge sizes, written by hand
 *                     with a tiny body) refused as too large before decoding, naming the
 *                     file; files of other formats named .png refused; a class larger than
 *                     one decoding batch streamed in order
 *   output = input    -o naming an input file (by path, hard link or through its .partial)
 *                     refused for every importer, the input left intact
 *
 * Inputs are written here (IDX by hand, gzip with zlib, PNG/JPEG with stb_image_write) in a
 * fresh directory under $TMPDIR (or /tmp), removed at the end. Every failure must name the
 * offending path and leave no output file and no .partial behind.
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
#include <zlib.h>

#include <stb_image_write.h>

#include "common.h"
#include "dataset.h"
#include "import.h"
#include "testutil.h"

static const char *dir; /* the scratch directory */

static int link_file(const char *from, const char *to) { return link(from, to); }

static void mkdirs(const char *rel)
{
    char path[2048];
    tu_in_dir(path, sizeof path, rel);
    for (char *p = path + strlen(dir) + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0777);
            *p = '/';
        }
    mkdir(path, 0777);
}


/* Checks a failed import: rc -1, message naming `names` and containing want, no output. */
static void expect_import_error(const char *label, int rc, const char *err, const char *names, const char *want,
                                const char *out)
{
    char buf[512];
    printf("     message: %s\n", err);
    snprintf(buf, sizeof buf, "%s: refused", label);
    tu_expect(rc == -1, buf);
    if (names) {
        snprintf(buf, sizeof buf, "%s: message names %s", label, strrchr(names, '/') ? strrchr(names, '/') + 1 : names);
        tu_expect(strstr(err, names) != NULL, buf);
    }
    if (want) {
        snprintf(buf, sizeof buf, "%s: message contains \"%s\"", label, want);
        tu_expect(strstr(err, want) != NULL, buf);
    }
    snprintf(buf, sizeof buf, "%s: no output and no .partial left", label);
    tu_expect(!tu_exists(out) && !tu_partial_left(), buf);
}

/* ---- --split ------------------------------------------------------------------------------- */

static void test_parse_split(void)
{
    mt_import_split s;
    char err[MT_ERR_LEN];
    int rc = mt_import_parse_split("train=0-5", &s, err, sizeof err);
    tu_expect(rc == 0 && strcmp(s.name, "train") == 0 && s.n_classes == 6 && s.classes[0] == 0 && s.classes[5] == 5,
              "train=0-5 is classes 0..5");
    rc = mt_import_parse_split("test=9,7,8", &s, err, sizeof err);
    tu_expect(rc == 0 && s.n_classes == 3 && s.classes[0] == 7 && s.classes[1] == 8 && s.classes[2] == 9,
              "test=9,7,8 is classes 7, 8, 9 (ascending)");
    rc = mt_import_parse_split("v=0-2,7,250-255", &s, err, sizeof err);
    tu_expect(rc == 0 && s.n_classes == 10 && s.classes[3] == 7 && s.classes[9] == 255,
              "v=0-2,7,250-255 mixes lists and ranges");
    rc = mt_import_parse_split("one=3", &s, err, sizeof err);
    tu_expect(rc == 0 && s.n_classes == 1 && s.classes[0] == 3, "one=3 is one class");
    const char *bad[][2] = {{"a=5-2", "backwards"},  {"a=0,0", "listed twice"}, {"a=0-3,2", "listed twice"},
                            {"=0-5", "NAME=CLASSES"}, {"train", "NAME=CLASSES"}, {"a/b=1", "NAME=CLASSES"},
                            {"a=256", "not a class"}, {"a=", "not a class"},    {"a=1-", "not a class"},
                            {"a=x", "not a class"},   {"a=1,,2", "not a class"}, {"a=-1", "not a class"},
                            {"a=1 ", "not a class"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        rc = mt_import_parse_split(bad[i][0], &s, err, sizeof err);
        char label[128];
        snprintf(label, sizeof label, "--split '%s' is refused (\"%s\")", bad[i][0], bad[i][1]);
        tu_expect(rc == -1 && strstr(err, bad[i][1]) && strstr(err, bad[i][0]), label);
        if (rc != -1 || !strstr(err, bad[i][1])) printf("     message: %s\n", err);
    }
}

/* ---- IDX ------------------------------------------------------------------------------------ */

/* Pixel (y, x) of global image g: its first pixel is g, so rows can be traced back. */
static uint8_t idx_pixel(int g, int y, int x)
{
    return (uint8_t)(y == 0 && x == 0 ? g : g * 3 + y * 11 + x * 5);
}

/* Writes an IDX images file of images g0 .. g0+n-1 (H x W), optionally gzipped. */
static int write_idx_images(const char *path, int g0, int n, int H, int W, int gz)
{
    size_t len = 16 + (size_t)n * H * W;
    uint8_t *b = malloc(len);
    const uint32_t head[4] = {0x803, (uint32_t)n, (uint32_t)H, (uint32_t)W};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) b[4 * i + j] = (uint8_t)(head[i] >> (24 - 8 * j));
    for (int i = 0; i < n; i++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) b[16 + ((size_t)i * H + y) * W + x] = idx_pixel(g0 + i, y, x);
    int rc;
    if (gz) {
        gzFile g = gzopen(path, "wb");
        rc = g && gzwrite(g, b, (unsigned)len) == (int)len && gzclose(g) == Z_OK ? 0 : -1;
    } else {
        rc = tu_spill(path, b, len);
    }
    free(b);
    return rc;
}

/* Label of global image g: classes 0..4 interleaved, class 3 only in the second pair. */
static uint8_t idx_label(int g, int n_first)
{
    if (g < n_first) return (uint8_t)((g * 7) % 3 == 0 ? 0 : (g * 7) % 3 == 1 ? 1 : (g % 2 ? 2 : 4));
    return (uint8_t)(g % 2 ? 3 : 1);
}

static int write_idx_labels(const char *path, int g0, int n, int n_first, int gz, int extra)
{
    size_t len = 8 + (size_t)n + (size_t)extra;
    uint8_t *b = calloc(len, 1);
    const uint32_t head[2] = {0x801, (uint32_t)n};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) b[4 * i + j] = (uint8_t)(head[i] >> (24 - 8 * j));
    for (int i = 0; i < n; i++) b[8 + i] = idx_label(g0 + i, n_first);
    int rc;
    if (gz) {
        gzFile g = gzopen(path, "wb");
        rc = g && gzwrite(g, b, (unsigned)len) == (int)len && gzclose(g) == Z_OK ? 0 : -1;
    } else {
        rc = tu_spill(path, b, len);
    }
    free(b);
    return rc;
}

static void test_idx(void)
{
    enum { N1 = 30, N2 = 10, H = 3, W = 4 };
    char i1[2048], l1[2048], i2[2048], l2[2048], out[2048], err[MT_ERR_LEN] = "";
    tu_in_dir(i1, sizeof i1, "a-images-idx3-ubyte");
    tu_in_dir(l1, sizeof l1, "a-labels-idx1-ubyte");
    tu_in_dir(i2, sizeof i2, "b-images-idx3-ubyte.gz");
    tu_in_dir(l2, sizeof l2, "b-labels-idx1-ubyte.gz");
    tu_in_dir(out, sizeof out, "idx.h5");
    tu_expect(write_idx_images(i1, 0, N1, H, W, 0) == 0 && write_idx_labels(l1, 0, N1, N1, 0, 0) == 0 &&
                  write_idx_images(i2, N1, N2, H, W, 1) == 0 && write_idx_labels(l2, N1, N2, N1, 1, 0) == 0,
              "write two IDX pairs (plain and gzipped)");
    const char *images[2] = {i1, i2}, *labels[2] = {l1, l2};
    mt_import_split sp[2];
    mt_import_parse_split("train=1,3", &sp[0], err, sizeof err);
    mt_import_parse_split("test=0,4", &sp[1], err, sizeof err);
    int rc = mt_import_idx(out, 2, images, labels, 2, sp, NULL, err, sizeof err);
    tu_expect(rc == 0, "import train=1,3 test=0,4 from both pairs");
    if (rc != 0) printf("     error: %s\n", err);

    /* Expected rows: for each class of a split, the global images of that label in order. */
    for (int s = 0; rc == 0 && s < 2; s++) {
        mt_split got;
        int r = mt_dataset_read_split(out, sp[s].name, &got, err, sizeof err);
        char label[4096];
        snprintf(label, sizeof label, "split %s reads back, 1x%dx%d", sp[s].name, H, W);
        tu_expect(r == 0 && got.C == 1 && got.H == H && got.W == W && got.n_classes == 2, label);
        if (r != 0) {
            printf("     error: %s\n", err);
            continue;
        }
        int row = 0, ok_rows = 1, ok_names = 1, ok_offsets = 1;
        for (int k = 0; k < 2; k++) {
            char want_name[8];
            snprintf(want_name, sizeof want_name, "%d", sp[s].classes[k]);
            ok_names &= strcmp(got.class_names[k], want_name) == 0;
            ok_offsets &= got.class_offsets[k] == row;
            for (int g = 0; g < N1 + N2; g++) {
                if (idx_label(g, N1) != sp[s].classes[k]) continue;
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++)
                        ok_rows &= row < got.n_images &&
                                   got.images[((size_t)row * H + y) * W + x] == idx_pixel(g, y, x);
                ok_rows &= row < got.n_images && got.labels[row] == k;
                row++;
            }
        }
        ok_offsets &= got.class_offsets[2] == row && got.n_images == row;
        snprintf(label, sizeof label, "split %s: class names are the label numbers", sp[s].name);
        tu_expect(ok_names, label);
        snprintf(label, sizeof label, "split %s: class_offsets count each label's images (%d in all)", sp[s].name, row);
        tu_expect(ok_offsets, label);
        snprintf(label, sizeof label, "split %s: every image in input order within its class, pixels exact",
                 sp[s].name);
        tu_expect(ok_rows, label);
        mt_split_free(&got);
    }
    mt_dataset_attrs a;
    if (mt_dataset_read_attrs(out, &a, err, sizeof err) == 0) {
        tu_expect(strncmp(a.source, "idx:", 4) == 0 && strstr(a.source, i2) && strstr(a.source, "train=1,3"),
                  "source names the IDX files and the splits");
        printf("     source = %s\n", a.source);
        mt_dataset_attrs_free(&a);
    }
    unlink(out);

    /* Bad inputs. */
    char bad[2048];
    const char *one_i[1] = {i1}, *one_l[1] = {l1};
    mt_import_split s1;
    mt_import_parse_split("train=0-1", &s1, err, sizeof err);

    const char *swapped_i[1] = {l1}, *swapped_l[1] = {i1};
    rc = mt_import_idx(out, 1, swapped_i, swapped_l, 1, &s1, NULL, err, sizeof err);
    expect_import_error("IMAGES and LABELS swapped", rc, err, l1, "swapped", out);

    tu_in_dir(bad, sizeof bad, "truncated-images");
    FILE *f = fopen(i1, "rb");
    uint8_t buf[16 + N1 * H * W + 16];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    tu_spill(bad, buf, n - 5);
    const char *trunc_i[1] = {bad};
    rc = mt_import_idx(out, 1, trunc_i, one_l, 1, &s1, NULL, err, sizeof err);
    expect_import_error("truncated images", rc, err, bad, "truncated", out);
    tu_spill(bad, buf, 10);
    rc = mt_import_idx(out, 1, trunc_i, one_l, 1, &s1, NULL, err, sizeof err);
    expect_import_error("images truncated inside the header", rc, err, bad, "header", out);
    buf[n] = 0;
    tu_spill(bad, buf, n + 1);
    rc = mt_import_idx(out, 1, trunc_i, one_l, 1, &s1, NULL, err, sizeof err);
    expect_import_error("images with trailing data", rc, err, bad, "after", out);
    memcpy(buf, "GIF8", 4);
    tu_spill(bad, buf, n);
    rc = mt_import_idx(out, 1, trunc_i, one_l, 1, &s1, NULL, err, sizeof err);
    expect_import_error("not an IDX file", rc, err, bad, "not an IDX file", out);

    tu_in_dir(bad, sizeof bad, "truncated.gz");
    f = fopen(i2, "rb");
    uint8_t gzb[4096];
    n = f ? fread(gzb, 1, sizeof gzb, f) : 0;
    if (f) fclose(f);
    tu_spill(bad, gzb, n - 12);
    const char *tgz_i[1] = {bad}, *tgz_l[1] = {l2};
    mt_import_split s3;
    mt_import_parse_split("x=1,3", &s3, err, sizeof err);
    rc = mt_import_idx(out, 1, tgz_i, tgz_l, 1, &s3, NULL, err, sizeof err);
    expect_import_error("gzipped images cut short", rc, err, bad, NULL, out);
    gzb[n / 2] ^= 0x55;
    tu_spill(bad, gzb, n);
    rc = mt_import_idx(out, 1, tgz_i, tgz_l, 1, &s3, NULL, err, sizeof err);
    expect_import_error("gzipped images with a flipped byte", rc, err, bad, NULL, out);

    tu_in_dir(bad, sizeof bad, "few-labels");
    write_idx_labels(bad, 0, N1 - 1, N1, 0, 0);
    const char *few_l[1] = {bad};
    rc = mt_import_idx(out, 1, one_i, few_l, 1, &s1, NULL, err, sizeof err);
    expect_import_error("label and image counts differ", rc, err, bad, "29 labels", out);

    tu_in_dir(bad, sizeof bad, "other-size");
    write_idx_images(bad, 0, N1, H + 1, W, 0);
    const char *mixed_i[2] = {i1, bad}, *mixed_l[2] = {l1, l1};
    rc = mt_import_idx(out, 2, mixed_i, mixed_l, 1, &s1, NULL, err, sizeof err);
    expect_import_error("pairs with different image sizes", rc, err, bad, "differ in size", out);

    tu_in_dir(bad, sizeof bad, "no-such-file");
    const char *missing_l[1] = {bad};
    rc = mt_import_idx(out, 1, one_i, missing_l, 1, &s1, NULL, err, sizeof err);
    expect_import_error("missing labels file", rc, err, bad, "No such file", out);

    mt_import_split two[2];
    mt_import_parse_split("a=0-2", &two[0], err, sizeof err);
    mt_import_parse_split("b=2,4", &two[1], err, sizeof err);
    rc = mt_import_idx(out, 1, one_i, one_l, 2, two, NULL, err, sizeof err);
    expect_import_error("a class in two splits", rc, err, NULL, "class 2 is in two splits", out);
    mt_import_parse_split("a=0-1", &two[1], err, sizeof err);
    rc = mt_import_idx(out, 1, one_i, one_l, 2, two, NULL, err, sizeof err);
    expect_import_error("the same split name twice", rc, err, NULL, "given twice", out);
    mt_import_parse_split("a=0,3", &two[0], err, sizeof err);
    rc = mt_import_idx(out, 1, one_i, one_l, 1, two, NULL, err, sizeof err);
    expect_import_error("a class no image has", rc, err, l1, "class 3 does not occur", out);

    tu_in_dir(bad, sizeof bad, "no/such/dir/out.h5");
    rc = mt_import_idx(bad, 1, one_i, one_l, 1, &s1, NULL, err, sizeof err);
    expect_import_error("output in a missing directory", rc, err, bad, NULL, out);
}

/* ---- images ---------------------------------------------------------------------------------- */

/* Writes an H x W image with C channels: pixel (y, x, c) = base + 10·y + 3·x + 50·c. */
static int write_png(const char *path, int H, int W, int C, int base)
{
    uint8_t *px = malloc((size_t)H * W * C);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < C; c++) px[((size_t)y * W + x) * C + c] = (uint8_t)(base + 10 * y + 3 * x + 50 * c);
    int ok = stbi_write_png(path, W, H, C, px, W * C);
    free(px);
    return ok ? 0 : -1;
}

static int write_flat(const char *path, int H, int W, int C, uint8_t value, int jpg)
{
    uint8_t *px = malloc((size_t)H * W * C);
    memset(px, value, (size_t)H * W * C);
    int ok = jpg ? stbi_write_jpg(path, W, H, C, px, 95) : stbi_write_png(path, W, H, C, px, W * C);
    free(px);
    return ok ? 0 : -1;
}

static void test_decode(void)
{
    char path[2048], err[MT_ERR_LEN] = "";
    enum { H = 5, W = 7 };
    static uint8_t out[3 * 64 * 64];
    tu_in_dir(path, sizeof path, "rgb.png");
    write_png(path, H, W, 3, 20);
    int rc = mt_import_decode_image(path, 3, H, W, out, err, sizeof err);
    int exact = rc == 0;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) exact &= out[(c * H + y) * W + x] == (uint8_t)(20 + 10 * y + 3 * x + 50 * c);
    tu_expect(exact, "an RGB PNG at its own size decodes exactly, channels-first [C, H, W]");

    tu_in_dir(path, sizeof path, "grey.png");
    write_png(path, H, W, 1, 7);
    rc = mt_import_decode_image(path, 1, H, W, out, err, sizeof err);
    exact = rc == 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) exact &= out[y * W + x] == (uint8_t)(7 + 10 * y + 3 * x);
    tu_expect(exact, "a grey PNG decodes exactly to one channel");
    rc = mt_import_decode_image(path, 3, H, W, out, err, sizeof err);
    exact = rc == 0;
    for (int c = 0; c < 3; c++) exact &= out[c * H * W + W + 2] == (uint8_t)(7 + 10 + 6);
    tu_expect(exact, "a grey PNG read as RGB repeats the grey value in each channel");

    tu_in_dir(path, sizeof path, "flat.png");
    write_flat(path, 40, 30, 3, 173, 0);
    rc = mt_import_decode_image(path, 3, 8, 9, out, err, sizeof err);
    int worst = 0;
    for (int i = 0; rc == 0 && i < 3 * 8 * 9; i++) worst = abs(out[i] - 173) > worst ? abs(out[i] - 173) : worst;
    tu_check("shrinking a uniform 40x30 image to 8x9 keeps its value", rc == 0 ? worst : 999, 1);
    rc = mt_import_decode_image(path, 1, 64, 64, out, err, sizeof err);
    worst = 0;
    for (int i = 0; rc == 0 && i < 64 * 64; i++) worst = abs(out[i] - 173) > worst ? abs(out[i] - 173) : worst;
    tu_check("enlarging it to 64x64 (grey) keeps its value", rc == 0 ? worst : 999, 1);

    tu_in_dir(path, sizeof path, "flat.jpg");
    write_flat(path, 16, 16, 3, 90, 1);
    rc = mt_import_decode_image(path, 3, 16, 16, out, err, sizeof err);
    worst = 0;
    for (int i = 0; rc == 0 && i < 3 * 16 * 16; i++)
        worst = abs(out[i] - 90) > worst ? abs(out[i] - 90) : worst;
    tu_check("a uniform JPEG decodes to its value (lossy: within 2)", rc == 0 ? worst : 999, 2);

    tu_in_dir(path, sizeof path, "text.png");
    tu_spill(path, "this is not a PNG\n", 18);
    rc = mt_import_decode_image(path, 1, 4, 4, out, err, sizeof err);
    printf("     message: %s\n", err);
    tu_expect(rc == -1 && strstr(err, path), "a text file named .png is refused, naming it");
    tu_in_dir(path, sizeof path, "empty.png");
    tu_spill(path, "", 0);
    rc = mt_import_decode_image(path, 1, 4, 4, out, err, sizeof err);
    tu_expect(rc == -1 && strstr(err, path) && strstr(err, "empty"), "an empty file is refused as empty");
}

/* Copies the first `keep` bytes of src to dst (keep < 0: all but -keep). */
static void copy_cut(const char *src, const char *dst, long keep)
{
    FILE *f = fopen(src, "rb");
    static uint8_t buf[1 << 16];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    size_t k = keep < 0 ? n - (size_t)(-keep) : (size_t)keep;
    tu_spill(dst, buf, k < n ? k : n);
}

static void test_trees(void)
{
    char path[2048], root[2048], out[2048], err[MT_ERR_LEN] = "";
    tu_in_dir(out, sizeof out, "tree.h5");
    /* Omniglot: alphabets and characters created out of order; evaluation has one class. */
    const char *chars[] = {"omni/images_background/Beta/character02", "omni/images_background/Alpha/character10",
                           "omni/images_background/Alpha/character02", "omni/images_evaluation/Gamma/character01"};
    const int counts[] = {2, 3, 1, 4};
    for (int c = 0; c < 4; c++) {
        mkdirs(chars[c]);
        for (int i = 0; i < counts[c]; i++) {
            char rel[512];
            snprintf(rel, sizeof rel, "%s/%02d_%d.png", chars[c], 9 - i, c);
            tu_in_dir(path, sizeof path, rel);
            write_png(path, 12, 10, 1, 10 * c + i);
        }
    }
    tu_in_dir(path, sizeof path, "omni/images_background/Alpha/notes.txt");
    tu_spill(path, "skipped\n", 8);
    tu_in_dir(root, sizeof root, "omni");
    int rc = mt_import_omniglot(out, root, 6, 5, NULL, err, sizeof err);
    tu_expect(rc == 0, "import an Omniglot tree (two parts)");
    if (rc != 0) printf("     error: %s\n", err);
    mt_split s;
    rc = mt_dataset_read_split(out, "background", &s, err, sizeof err);
    tu_expect(rc == 0 && s.n_classes == 3 && s.n_images == 6 && s.C == 1 && s.H == 6 && s.W == 5,
              "background: 3 classes, 6 images of 1x6x5");
    tu_expect(rc == 0 && strcmp(s.class_names[0], "Alpha/character02") == 0 &&
                  strcmp(s.class_names[1], "Alpha/character10") == 0 &&
                  strcmp(s.class_names[2], "Beta/character02") == 0,
              "classes in sorted order, named alphabet/character");
    tu_expect(rc == 0 && s.class_offsets[1] == 1 && s.class_offsets[2] == 4 && s.class_offsets[3] == 6,
              "class_offsets count each character's images");
    mt_split_free(&s);
    rc = mt_dataset_read_split(out, "evaluation", &s, err, sizeof err);
    tu_expect(rc == 0 && s.n_classes == 1 && s.n_images == 4 && strcmp(s.class_names[0], "Gamma/character01") == 0,
              "evaluation: 1 class of 4 images");
    mt_split_free(&s);
    unlink(out);

    /* Without images_evaluation: one split. */
    mkdirs("omni1/images_background/A/c1");
    tu_in_dir(path, sizeof path, "omni1/images_background/A/c1/x.png");
    write_png(path, 4, 4, 1, 0);
    tu_in_dir(root, sizeof root, "omni1");
    rc = mt_import_omniglot(out, root, 4, 4, NULL, err, sizeof err);
    char names[4][64];
    tu_expect(rc == 0 && mt_dataset_list_splits(out, names, 4, err, sizeof err) == 1 &&
                  strcmp(names[0], "background") == 0,
              "an Omniglot tree without images_evaluation gives one split");
    unlink(out);

    /* Folder: class order, RGB pixels exact at their own size, grey. */
    mkdirs("folder/zebra");
    mkdirs("folder/ant");
    tu_in_dir(path, sizeof path, "folder/zebra/b.png");
    write_png(path, 5, 7, 3, 1);
    tu_in_dir(path, sizeof path, "folder/zebra/a.png");
    write_png(path, 5, 7, 3, 2);
    tu_in_dir(path, sizeof path, "folder/ant/only.jpg");
    write_flat(path, 5, 7, 3, 200, 1);
    tu_in_dir(root, sizeof root, "folder");
    rc = mt_import_folder(out, root, "val", 5, 7, 0, NULL, err, sizeof err);
    tu_expect(rc == 0, "import a class-per-folder tree as split val");
    if (rc != 0) printf("     error: %s\n", err);
    rc = mt_dataset_read_split(out, "val", &s, err, sizeof err);
    int exact = rc == 0 && s.n_classes == 2 && s.n_images == 3 && s.C == 3 && strcmp(s.class_names[0], "ant") == 0 &&
                strcmp(s.class_names[1], "zebra") == 0;
    tu_expect(exact, "val: classes ant, zebra; 3 RGB images");
    /* Row 1 is zebra/a.png (base 2), row 2 zebra/b.png (base 1). */
    for (int row = 1; exact && row < 3; row++)
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 5; y++)
                for (int x = 0; x < 7; x++)
                    exact &= s.images[(((size_t)row * 3 + c) * 5 + y) * 7 + x] ==
                             (uint8_t)((row == 1 ? 2 : 1) + 10 * y + 3 * x + 50 * c);
    tu_expect(exact, "files of a class in sorted order, pixels exact and channels-first");
    mt_split_free(&s);
    unlink(out);
    rc = mt_import_folder(out, root, "train", 8, 8, 1, NULL, err, sizeof err);
    rc = rc == 0 ? mt_dataset_read_split(out, "train", &s, err, sizeof err) : rc;
    tu_expect(rc == 0 && s.C == 1 && s.H == 8 && s.W == 8, "--grey gives 1x8x8 images");
    if (rc == 0) mt_split_free(&s);
    unlink(out);

    /* Bad trees. */
    mkdirs("folder/empty");
    rc = mt_import_folder(out, root, "train", 8, 8, 0, NULL, err, sizeof err);
    tu_in_dir(path, sizeof path, "folder/empty");
    expect_import_error("an empty class folder", rc, err, path, "empty", out);
    rmdir(path);

    tu_in_dir(path, sizeof path, "folder/zebra/c.png");
    tu_spill(path, "garbage, not a PNG", 18);
    rc = mt_import_folder(out, root, "train", 8, 8, 0, NULL, err, sizeof err);
    expect_import_error("a corrupt image", rc, err, path, "not a PNG or JPEG", out);
    char good[2048];
    tu_in_dir(good, sizeof good, "folder/zebra/a.png");
    copy_cut(good, path, -40);
    rc = mt_import_folder(out, root, "train", 8, 8, 0, NULL, err, sizeof err);
    expect_import_error("a truncated PNG", rc, err, path, "damaged or truncated PNG", out);
    unlink(path);
    tu_in_dir(path, sizeof path, "folder/ant/only.jpg");
    tu_in_dir(good, sizeof good, "cut.jpg");
    copy_cut(path, good, 200);
    rename(good, path);
    rc = mt_import_folder(out, root, "train", 8, 8, 0, NULL, err, sizeof err);
    expect_import_error("a truncated JPEG", rc, err, path, "damaged or truncated JPEG", out);
    unlink(path);

    mkdirs("nothing");
    tu_in_dir(root, sizeof root, "nothing");
    rc = mt_import_folder(out, root, "train", 8, 8, 0, NULL, err, sizeof err);
    expect_import_error("a folder without class folders", rc, err, root, "no class folders", out);
    rc = mt_import_omniglot(out, root, 28, 28, NULL, err, sizeof err);
    expect_import_error("Omniglot without images_background or images_evaluation", rc, err, root,
                        "not an Omniglot folder", out);
    tu_in_dir(root, sizeof root, "no-such-folder");
    rc = mt_import_omniglot(out, root, 28, 28, NULL, err, sizeof err);
    expect_import_error("a missing Omniglot folder", rc, err, root, "No such file", out);
    mkdirs("omni2/images_background/A/c1");
    tu_in_dir(root, sizeof root, "omni2");
    rc = mt_import_omniglot(out, root, 28, 28, NULL, err, sizeof err);
    tu_in_dir(path, sizeof path, "omni2/images_background/A/c1");
    expect_import_error("an empty Omniglot character folder", rc, err, path, "empty", out);
}

/* ---- hostile images --------------------------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* Appends a PNG chunk (length, type, data, CRC) to b at *n. */
static void png_chunk(uint8_t *b, size_t *n, const char *type, const uint8_t *data, uint32_t len)
{
    put32(b + *n, len);
    memcpy(b + *n + 4, type, 4);
    if (len) memcpy(b + *n + 8, data, len);
    put32(b + *n + 8 + len, (uint32_t)crc32(0, b + *n + 4, len + 4));
    *n += 12 + len;
}

/* Writes a PNG whose header claims w x h pixels (bit depth, colour type) and whose one IDAT
 * holds a few compressed zero bytes: a valid header, far too little data. This is how an
 * image bomb looks to a reader until it has allocated for the pixels. */
static int write_png_claiming(const char *path, uint32_t w, uint32_t h, int depth, int colour)
{
    uint8_t b[256], ihdr[13] = {0}, zeros[64] = {0}, z[128];
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t n = 8;
    memcpy(b, sig, 8);
    put32(ihdr, w);
    put32(ihdr + 4, h);
    ihdr[8] = (uint8_t)depth, ihdr[9] = (uint8_t)colour;
    png_chunk(b, &n, "IHDR", ihdr, 13);
    uLongf zlen = sizeof z;
    if (compress(z, &zlen, zeros, sizeof zeros) != Z_OK) return -1;
    png_chunk(b, &n, "IDAT", z, (uint32_t)zlen);
    png_chunk(b, &n, "IEND", NULL, 0);
    return tu_spill(path, b, n);
}

/* Writes a JPEG of markers only (SOI, APP0, a baseline frame header claiming w x h with 3
 * components, EOI): what a header check sees of a JPEG bomb. */
static int write_jpeg_claiming(const char *path, uint32_t w, uint32_t h)
{
    uint8_t b[64] = {0xff, 0xd8, 0xff, 0xe0, 0, 16, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0};
    size_t n = 20;
    const uint8_t sof[] = {0xff, 0xc0, 0, 17, 8, (uint8_t)(h >> 8), (uint8_t)h, (uint8_t)(w >> 8), (uint8_t)w, 3,
                           1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0};
    memcpy(b + n, sof, sizeof sof);
    n += sizeof sof;
    b[n++] = 0xff, b[n++] = 0xd9;
    return tu_spill(path, b, n);
}

/* Expects mt_import_decode_image(path) to refuse the image as too large, naming the file
 * and its size (want). */
static void expect_too_large(const char *label, const char *path, const char *want)
{
    static uint8_t out[3 * 8 * 8];
    char err[MT_ERR_LEN] = "", buf[512];
    int rc = mt_import_decode_image(path, 3, 8, 8, out, err, sizeof err);
    printf("     message: %s\n", err);
    snprintf(buf, sizeof buf, "%s: refused as bad input, naming the file", label);
    tu_expect(rc == MT_IMPORT_BAD_INPUT && strstr(err, path) != NULL, buf);
    snprintf(buf, sizeof buf, "%s: message says it is too large (%s), not damaged", label, want);
    tu_expect(strstr(err, "too large") && strstr(err, want) && !strstr(err, "damaged"), buf);
}

static void test_hostile_images(void)
{
    char path[2048], err[MT_ERR_LEN] = "";
    static uint8_t out[3 * 8 * 8];
    tu_in_dir(path, sizeof path, "bomb-rgb.png");
    write_png_claiming(path, 20000, 20000, 8, 2);
    expect_too_large("a 20000x20000 RGB PNG", path, "20000x20000");
    tu_in_dir(path, sizeof path, "bomb-grey.png");
    write_png_claiming(path, 10000, 10000, 8, 0);
    expect_too_large("a 10000x10000 grey PNG (stb_image's header check passes it)", path, "10000x10000");
    tu_in_dir(path, sizeof path, "bomb-wide.png");
    write_png_claiming(path, 8000, 8000, 8, 0);
    expect_too_large("an 8000x8000 PNG (each side allowed, 64 Mpixel in all)", path, "Mpixel");
    tu_in_dir(path, sizeof path, "bomb-16bit.png");
    write_png_claiming(path, 6000, 5000, 16, 6);
    expect_too_large("a 6000x5000 16-bit RGBA PNG (30 Mpixel of 8 bytes)", path, "MiB");
    tu_in_dir(path, sizeof path, "bomb.jpg");
    write_jpeg_claiming(path, 60000, 60000);
    expect_too_large("a JPEG frame header claiming 60000x60000", path, "60000x60000");
    tu_in_dir(path, sizeof path, "bomb-9000.jpg");
    write_jpeg_claiming(path, 9000, 100);
    expect_too_large("a JPEG claiming 9000x100", path, "9000x100");

    /* Controls: the limits refuse nothing an ordinary import needs. */
    tu_in_dir(path, sizeof path, "strip.png");
    write_flat(path, 1, MT_IMPORT_MAX_IMAGE_SIDE, 1, 77, 0);
    int rc = mt_import_decode_image(path, 1, 8, 8, out, err, sizeof err);
    tu_expect(rc == 0 && out[0] == 77, "a 8192x1 PNG (a side at the limit) decodes");
    if (rc != 0) printf("     error: %s\n", err);
    tu_in_dir(path, sizeof path, "photo.jpg");
    write_flat(path, 1200, 1600, 3, 120, 1);
    rc = mt_import_decode_image(path, 3, 8, 8, out, err, sizeof err);
    tu_expect(rc == 0 && abs(out[0] - 120) <= 2, "a 1600x1200 JPEG shrinks to 8x8");
    if (rc != 0) printf("     error: %s\n", err);
    tu_in_dir(path, sizeof path, "header-only.png");
    write_png_claiming(path, 40, 30, 8, 2);
    rc = mt_import_decode_image(path, 3, 8, 8, out, err, sizeof err);
    tu_expect(rc == MT_IMPORT_BAD_INPUT && strstr(err, "damaged or truncated PNG"),
              "a 40x30 PNG with too little data is damaged (not too large)");

    /* Only PNG and JPEG are decoded, whatever the file is called. */
    uint8_t px[4 * 4 * 3];
    memset(px, 9, sizeof px);
    tu_in_dir(path, sizeof path, "really-a-bmp.png");
    stbi_write_bmp(path, 4, 4, 3, px);
    rc = mt_import_decode_image(path, 3, 4, 4, out, err, sizeof err);
    printf("     message: %s\n", err);
    tu_expect(rc == MT_IMPORT_BAD_INPUT && strstr(err, path) && strstr(err, "not a PNG or JPEG"),
              "a BMP named .png is refused as not PNG or JPEG");
    tu_in_dir(path, sizeof path, "really-a-tga.jpg");
    stbi_write_tga(path, 4, 4, 3, px);
    rc = mt_import_decode_image(path, 3, 4, 4, out, err, sizeof err);
    tu_expect(rc == MT_IMPORT_BAD_INPUT && strstr(err, "not a PNG or JPEG"), "a TGA named .jpg is refused");

    /* A bomb inside a class folder stops the import, naming it, leaving nothing behind. */
    char root[2048], outp[2048];
    mkdirs("bombs/cat");
    tu_in_dir(path, sizeof path, "bombs/cat/a.png");
    write_png(path, 6, 6, 3, 0);
    tu_in_dir(path, sizeof path, "bombs/cat/b.png");
    write_png_claiming(path, 20000, 20000, 8, 2);
    tu_in_dir(root, sizeof root, "bombs");
    tu_in_dir(outp, sizeof outp, "bombs.h5");
    rc = mt_import_folder(outp, root, "train", 8, 8, 0, NULL, err, sizeof err);
    expect_import_error("a class folder holding an image bomb", rc, err, path, "too large", outp);

    /* A class larger than one decoding batch (16 MiB: 5 images of 1x1448x1448 here) keeps
     * its images in file order across batches. */
    enum { S = 1448, NB = 12 };
    mkdirs("big/one");
    for (int i = 0; i < NB; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "big/one/%02d.png", i);
        tu_in_dir(path, sizeof path, rel);
        write_flat(path, 8, 8, 1, (uint8_t)(10 + i), 0);
    }
    tu_in_dir(root, sizeof root, "big");
    tu_in_dir(outp, sizeof outp, "big.h5");
    rc = mt_import_folder(outp, root, "train", S, S, 1, NULL, err, sizeof err);
    mt_split s;
    int r = rc == 0 ? mt_dataset_read_split(outp, "train", &s, err, sizeof err) : -1;
    int exact = r == 0 && s.n_images == NB && s.n_classes == 1;
    for (int i = 0; exact && i < NB; i++)
        exact &= s.images[(size_t)i * S * S] == 10 + i && s.images[(size_t)i * S * S + S * S - 1] == 10 + i;
    tu_expect(exact, "a class of 12 images of 1x1448x1448 (3 decoding batches) keeps its order");
    if (r == 0) mt_split_free(&s);
    else printf("     error: %s\n", err);
    unlink(outp);
}

/* ---- the output is never an input ------------------------------------------------------------- */

/* Expects rc to refuse an output that is an input (named by victim), whose bytes (before,
 * n) must be unchanged, with no .partial left. */
static void expect_kept_input(const char *label, int rc, const char *err, const char *victim, const uint8_t *before,
                              long n)
{
    char buf[512];
    printf("     message: %s\n", err);
    snprintf(buf, sizeof buf, "%s: refused as bad input", label);
    tu_expect(rc == MT_IMPORT_BAD_INPUT && strstr(err, "input"), buf);
    unsigned char *after = NULL;
    long m = tu_slurp(victim, &after);
    snprintf(buf, sizeof buf, "%s: the input file is unchanged", label);
    tu_expect(m == n && memcmp(after, before, (size_t)n) == 0, buf);
    free(after);
    snprintf(buf, sizeof buf, "%s: no .partial left", label);
    tu_expect(!tu_partial_left(), buf);
}

static void test_output_is_input(void)
{
    char img[2048], lab[2048], link[2048], err[MT_ERR_LEN] = "";
    tu_in_dir(img, sizeof img, "self-images");
    tu_in_dir(lab, sizeof lab, "self-labels");
    write_idx_images(img, 0, 12, 3, 4, 0);
    write_idx_labels(lab, 0, 12, 12, 0, 0);
    unsigned char *img0 = NULL, *lab0 = NULL;
    long ni = tu_slurp(img, &img0), nl = tu_slurp(lab, &lab0);
    const char *images[1] = {img}, *labels[1] = {lab};
    mt_import_split sp;
    mt_import_parse_split("a=0-1", &sp, err, sizeof err);

    int rc = mt_import_idx(img, 1, images, labels, 1, &sp, NULL, err, sizeof err);
    expect_kept_input("idx: -o is the IMAGES file", rc, err, img, img0, ni);
    tu_expect(strstr(err, img) != NULL, "idx: the message names the file");
    rc = mt_import_idx(lab, 1, images, labels, 1, &sp, NULL, err, sizeof err);
    expect_kept_input("idx: -o is the LABELS file", rc, err, lab, lab0, nl);
    tu_in_dir(link, sizeof link, "hard-link-to-labels");
    tu_expect(link_file(lab, link) == 0, "make a hard link to the labels file");
    rc = mt_import_idx(link, 1, images, labels, 1, &sp, NULL, err, sizeof err);
    expect_kept_input("idx: -o is a hard link to the LABELS file", rc, err, lab, lab0, nl);
    unlink(link);
    tu_in_dir(link, sizeof link, "./self-images");
    rc = mt_import_idx(link, 1, images, labels, 1, &sp, NULL, err, sizeof err);
    expect_kept_input("idx: -o spells the IMAGES path differently", rc, err, img, img0, ni);

    /* The writer truncates OUT.partial first: an input named so is overwritten just the same. */
    char part[2048], outp[2048];
    tu_in_dir(part, sizeof part, "victim.h5.partial");
    tu_in_dir(outp, sizeof outp, "victim.h5");
    write_idx_labels(part, 0, 12, 12, 0, 0);
    const char *labels_p[1] = {part};
    rc = mt_import_idx(outp, 1, images, labels_p, 1, &sp, NULL, err, sizeof err);
    printf("     message: %s\n", err);
    unsigned char *after = NULL;
    long m = tu_slurp(part, &after);
    tu_expect(rc == MT_IMPORT_BAD_INPUT && m == nl && memcmp(after, lab0, (size_t)nl) == 0 && !tu_exists(outp),
              "idx: an input named OUT.partial is refused and kept");
    free(after);
    unlink(part);

    /* Folder and Omniglot: the output is one of the images found in the tree. */
    char root[2048], victim[2048];
    mkdirs("selftree/cat");
    tu_in_dir(victim, sizeof victim, "selftree/cat/a.png");
    write_png(victim, 6, 6, 3, 5);
    unsigned char *png0 = NULL;
    long np = tu_slurp(victim, &png0);
    tu_in_dir(root, sizeof root, "selftree");
    rc = mt_import_folder(victim, root, "train", 8, 8, 0, NULL, err, sizeof err);
    expect_kept_input("folder: -o is an image of the tree", rc, err, victim, png0, np);
    tu_expect(strstr(err, victim) != NULL, "folder: the message names the image");
    mkdirs("selfomni/images_background/A/c1");
    tu_in_dir(victim, sizeof victim, "selfomni/images_background/A/c1/x.png");
    write_png(victim, 6, 6, 1, 5);
    free(png0);
    np = tu_slurp(victim, &png0);
    tu_in_dir(root, sizeof root, "selfomni");
    rc = mt_import_omniglot(victim, root, 8, 8, NULL, err, sizeof err);
    expect_kept_input("omniglot: -o is an image of the tree", rc, err, victim, png0, np);
    /* Control: an output inside the tree that is no input is fine (it is not an image). */
    tu_in_dir(outp, sizeof outp, "selfomni/omniglot.h5");
    rc = mt_import_omniglot(outp, root, 8, 8, NULL, err, sizeof err);
    tu_expect(rc == 0, "omniglot: an output inside the tree that is not an input is written");
    unlink(outp);
    free(png0);
    free(img0);
    free(lab0);
}

int main(void)
{
    if (!(dir = tu_scratch_dir("test_import"))) return 1;
    test_parse_split();
    test_idx();
    test_decode();
    test_trees();
    test_hostile_images();
    test_output_is_input();
    tu_scratch_remove();
    return tu_finish();
}
