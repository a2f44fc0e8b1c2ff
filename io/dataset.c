/* dataset.c — writing and reading few-shot image datasets (see dataset.h). */
#define _POSIX_C_SOURCE 200809L
#include "dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "ioutil.h"

/* Compression is fixed (not tunable) so that the same input always gives the same bytes. */
#define DEFLATE_LEVEL 4
/* Target bytes per images chunk: a few small images (16 of 28×28) or one large one. */
#define CHUNK_BYTES 32768
#define CHUNK_MAX_IMAGES 16
#define LABEL_CHUNK 65536

/* 1 iff name is usable as a split or class name: 1–63 bytes. Split names also must not
 * contain '/' or be "." (they are HDF5 link names). */
static int name_ok(const char *name, int is_split)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= MT_DATASET_NAME_LEN) return 0;
    if (is_split && (strchr(name, '/') || strcmp(name, ".") == 0)) return 0;
    return 1;
}

/* A dataset-creation property list with no timestamps; chunked [chunk] and deflated if
 * rank > 0. Returns the list or -1. */
static hid_t make_dcpl(int rank, const hsize_t *chunk)
{
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl < 0) return -1;
    int ok = H5Pset_obj_track_times(dcpl, 0) >= 0;
    if (ok && rank > 0) ok = H5Pset_chunk(dcpl, rank, chunk) >= 0 && H5Pset_deflate(dcpl, DEFLATE_LEVEL) >= 0;
    if (!ok) {
        H5Pclose(dcpl);
        return -1;
    }
    return dcpl;
}

/* The fixed-length string type of class names (64 bytes, NUL-terminated). */
static hid_t name_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    if (H5Tset_size(t, MT_DATASET_NAME_LEN) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

/* Writes the whole of buf as a new dataset `name` of loc, with file type ftype, memory type
 * mtype and shape [n]; chunk > 0 makes it chunked and deflated. Returns 0, or -1. */
static int write_vector(hid_t loc, const char *name, hid_t ftype, hid_t mtype, hsize_t n, hsize_t chunk,
                        const void *buf)
{
    hsize_t dims[1] = {n}, ch[1] = {chunk < n ? chunk : n};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t dcpl = make_dcpl(chunk > 0 ? 1 : 0, ch);
    hid_t d = space >= 0 && dcpl >= 0 ? H5Dcreate2(loc, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
    int ok = d >= 0 && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0;
    if (d >= 0 && H5Dclose(d) < 0) ok = 0;
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return ok ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------
 * Writer
 * ---------------------------------------------------------------------------------------- */

struct mt_dataset_writer {
    char path[MT_H5_PATH_LEN];
    char partial[MT_H5_PATH_LEN + 16];
    hid_t file;
    int failed;           /* 0, or the MT_DATASET_REFUSED / MT_DATASET_IO_ERROR that stopped it */
    /* The open split (group >= 0). Images go through a staging buffer so that every chunk
     * of /images is written exactly once, whole (except the last). */
    char split[MT_DATASET_NAME_LEN];
    hid_t group, images;
    int C, H, W;
    size_t image_bytes;   /* C·H·W */
    hsize_t chunk_n;      /* images per chunk */
    uint8_t *stage;       /* [chunk_n, C, H, W] */
    hsize_t staged;       /* images in stage */
    hsize_t written;      /* rows of /images on disk */
    int64_t pending;      /* images of the class being appended (not yet ended) */
    int n_classes, cap;
    int64_t *offsets;     /* [cap + 1] */
    char (*names)[MT_DATASET_NAME_LEN]; /* [cap] */
};

/* Why the last HDF5 call failed, for messages. A failed write() or open() inside HDF5
 * leaves a long description ("file write failed: time = ..., errno = 28, error message =
 * 'No space left on device', buf = ...") of which the system's reason is what a user needs. */
static const char *h5_failure(char *out, size_t len)
{
    const char *r = mt_h5_reason();
    const char *m = strstr(r, "error message = '");
    if (m) {
        m += strlen("error message = '");
        const char *end = strchr(m, '\'');
        if (end) {
            snprintf(out, len, "%.*s", (int)(end - m), m);
            return out;
        }
    }
    snprintf(out, len, "%s", r);
    return out;
}

/* Marks w failed and writes "cannot write dataset <partial>[, split 'S']: <what>[: <HDF5
 * reason>]" to err. with_reason means a failed HDF5 call: the system failed (returns
 * MT_DATASET_IO_ERROR); otherwise an argument or call order was refused (returns
 * MT_DATASET_REFUSED). */
static int writer_fail(mt_dataset_writer *w, int with_reason, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int writer_fail(mt_dataset_writer *w, int with_reason, char *err, size_t errlen, const char *fmt, ...)
{
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    char split[MT_DATASET_NAME_LEN + 16] = "", reason[256] = "";
    if (w->group >= 0) snprintf(split, sizeof split, ", split '%s'", w->split);
    snprintf(err, errlen, "cannot write dataset %s%s: %s%s%s", w->partial, split, what, with_reason ? ": " : "",
             with_reason ? h5_failure(reason, sizeof reason) : "");
    w->failed = with_reason ? MT_DATASET_IO_ERROR : MT_DATASET_REFUSED;
    return w->failed;
}

/* The call after a failure: says so and returns the kind of the first failure. */
static int earlier_failure(mt_dataset_writer *w, char *err, size_t errlen)
{
    int kind = w->failed;
    writer_fail(w, 0, err, errlen, "an earlier write failed");
    w->failed = kind;
    return kind;
}

int mt_dataset_errno_is_io(int e)
{
    return !(e == EISDIR || e == ENOENT || e == ENOTDIR || e == ENAMETOOLONG || e == ELOOP);
}

/* The value of the `created` attribute: SOURCE_DATE_EPOCH if set to a number, else now. */
static void created_now(char *out, size_t len)
{
    time_t t = time(NULL);
    const char *sde = getenv("SOURCE_DATE_EPOCH");
    if (sde && sde[0]) {
        char *end;
        errno = 0;
        long long v = strtoll(sde, &end, 10);
        if (!errno && !*end && v >= 0) t = (time_t)v;
    }
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) snprintf(out, len, "unknown");
}

mt_dataset_writer *mt_dataset_create(const char *path, const char *source, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "cannot write dataset %s: it is a directory", path);
        errno = EISDIR;
        return NULL;
    }
    mt_dataset_writer *w = mt_calloc(1, sizeof *w);
    w->file = w->group = w->images = -1;
    if (snprintf(w->path, sizeof w->path, "%s", path) >= (int)sizeof w->path) {
        snprintf(err, errlen, "cannot write dataset %.200s...: path too long", path);
        free(w);
        errno = ENAMETOOLONG;
        return NULL;
    }
    snprintf(w->partial, sizeof w->partial, "%s.partial", path);
    /* Create the file ourselves first: HDF5 reports "unable to open file" whatever the
     * cause, and the caller needs errno to tell a missing folder (bad input) from a
     * read-only or full file system (runtime failure). */
    int fd = open(w->partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot create dataset %s: %s", w->partial, strerror(e));
        free(w);
        errno = e;
        return NULL;
    }
    close(fd);
    mt_h5_quiet();
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS);
    errno = 0;
    /* The 1.8 file format: HDF5 checksums its own metadata, so a damaged object header is
     * refused by HDF5 instead of decoded (1.10's decoders overflow on some damaged headers). */
    if (fcpl >= 0 && fapl >= 0 && H5Pset_obj_track_times(fcpl, 0) >= 0 &&
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V110) >= 0)
        w->file = H5Fcreate(w->partial, H5F_ACC_TRUNC, fcpl, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (w->file < 0) {
        int e = errno ? errno : EIO;
        char reason[256];
        snprintf(err, errlen, "cannot create dataset %s: %s", w->partial, h5_failure(reason, sizeof reason));
        if (fcpl >= 0) H5Pclose(fcpl); /* after taking the reason: success clears the stack */
        unlink(w->partial);
        free(w);
        errno = e;
        return NULL;
    }
    H5Pclose(fcpl);
    char created[64];
    created_now(created, sizeof created);
    errno = 0;
    if (mt_h5_attr_write_str(w->file, "format", MT_DATASET_FORMAT) != 0 ||
        mt_h5_attr_write_i64(w->file, "format_version", MT_DATASET_VERSION) != 0 ||
        mt_h5_attr_write_str(w->file, "source", source ? source : "") != 0 ||
        mt_h5_attr_write_str(w->file, "created", created) != 0) {
        int e = errno ? errno : EIO;
        writer_fail(w, 1, err, errlen, "root attributes");
        mt_dataset_abandon(w);
        errno = e;
        return NULL;
    }
    return w;
}

int mt_dataset_begin_split(mt_dataset_writer *w, const char *name, int C, int H, int W, char *err, size_t errlen)
{
    if (w->failed) return earlier_failure(w, err, errlen);
    if (w->group >= 0) return writer_fail(w, 0, err, errlen, "a split is still open (mt_dataset_end_split)");
    if (!name_ok(name, 1))
        return writer_fail(w, 0, err, errlen, "'%s' is not a split name (1-63 bytes, no '/')", name ? name : "");
    if (C < 1 || C > MT_DATASET_MAX_CHANNELS || H < 1 || H > MT_DATASET_MAX_SIDE || W < 1 || W > MT_DATASET_MAX_SIDE)
        return writer_fail(w, 0, err, errlen, "image shape %dx%dx%d is out of range (C 1-%d, H and W 1-%d)", C, H, W,
                           MT_DATASET_MAX_CHANNELS, MT_DATASET_MAX_SIDE);
    htri_t exists = H5Lexists(w->file, name, H5P_DEFAULT);
    if (exists != 0)
        return writer_fail(w, exists < 0, err, errlen, exists > 0 ? "split '%s' is already in the file" : "split '%s'",
                           name);
    snprintf(w->split, sizeof w->split, "%s", name);
    w->C = C, w->H = H, w->W = W;
    w->image_bytes = (size_t)C * (size_t)H * (size_t)W;
    w->chunk_n = w->image_bytes >= CHUNK_BYTES ? 1 : CHUNK_BYTES / w->image_bytes;
    if (w->chunk_n > CHUNK_MAX_IMAGES) w->chunk_n = CHUNK_MAX_IMAGES;
    w->stage = mt_malloc(w->chunk_n * w->image_bytes);
    w->staged = w->written = 0;
    w->pending = 0;
    w->n_classes = 0;
    w->cap = 64;
    w->offsets = mt_calloc((size_t)w->cap + 1, sizeof *w->offsets);
    w->names = mt_calloc((size_t)w->cap, sizeof *w->names);

    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    if (gcpl >= 0 && H5Pset_obj_track_times(gcpl, 0) >= 0)
        w->group = H5Gcreate2(w->file, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (w->group < 0) {
        int rc = writer_fail(w, 1, err, errlen, "cannot create group /%s", name);
        if (gcpl >= 0) H5Pclose(gcpl);
        return rc;
    }
    H5Pclose(gcpl);
    hsize_t dims[4] = {0, (hsize_t)C, (hsize_t)H, (hsize_t)W};
    hsize_t maxdims[4] = {H5S_UNLIMITED, (hsize_t)C, (hsize_t)H, (hsize_t)W};
    hsize_t chunk[4] = {w->chunk_n, (hsize_t)C, (hsize_t)H, (hsize_t)W};
    hid_t space = H5Screate_simple(4, dims, maxdims);
    hid_t dcpl = make_dcpl(4, chunk);
    if (space >= 0 && dcpl >= 0)
        w->images = H5Dcreate2(w->group, "images", H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    int rc = w->images < 0 ? writer_fail(w, 1, err, errlen, "cannot create /%s/images", name) : 0;
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return rc;
}

/* Appends rows[k, C, H, W] to /images. Returns 0, or MT_DATASET_IO_ERROR (w failed). */
static int write_rows(mt_dataset_writer *w, const uint8_t *rows, hsize_t k, char *err, size_t errlen)
{
    hsize_t dims[4] = {w->written + k, (hsize_t)w->C, (hsize_t)w->H, (hsize_t)w->W};
    hsize_t start[4] = {w->written, 0, 0, 0}, count[4] = {k, dims[1], dims[2], dims[3]};
    if (H5Dset_extent(w->images, dims) < 0) return writer_fail(w, 1, err, errlen, "cannot extend images");
    int rc = 0;
    hid_t fspace = H5Dget_space(w->images);
    hid_t mspace = H5Screate_simple(4, count, NULL);
    int ok = fspace >= 0 && mspace >= 0 && H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
             H5Dwrite(w->images, H5T_NATIVE_UINT8, mspace, fspace, H5P_DEFAULT, rows) >= 0;
    if (!ok) rc = writer_fail(w, 1, err, errlen, "cannot write images %llu to %llu", (unsigned long long)w->written,
                              (unsigned long long)(w->written + k - 1));
    if (mspace >= 0) H5Sclose(mspace);
    if (fspace >= 0) H5Sclose(fspace);
    if (!ok) return rc;
    w->written += k;
    return 0;
}

int mt_dataset_append_images(mt_dataset_writer *w, int64_t n, const uint8_t *images, char *err, size_t errlen)
{
    if (w->failed) return earlier_failure(w, err, errlen);
    if (w->group < 0) return writer_fail(w, 0, err, errlen, "no split is open (mt_dataset_begin_split)");
    if (n < 1 || !images) return writer_fail(w, 0, err, errlen, "no images to append");
    if ((uint64_t)n > (uint64_t)INT64_MAX - (uint64_t)w->offsets[w->n_classes] - (uint64_t)w->pending ||
        (uint64_t)(w->offsets[w->n_classes] + w->pending + n) > SIZE_MAX / sizeof(int32_t))
        return writer_fail(w, 0, err, errlen, "too many images in one split");
    const size_t ib = w->image_bytes;
    hsize_t left = (hsize_t)n;
    while (left > 0) {
        if (w->staged == 0 && left >= w->chunk_n) { /* whole chunks straight from the caller */
            hsize_t k = left / w->chunk_n * w->chunk_n;
            int rc = write_rows(w, images, k, err, errlen);
            if (rc != 0) return rc;
            images += k * ib;
            left -= k;
            continue;
        }
        hsize_t k = w->chunk_n - w->staged < left ? w->chunk_n - w->staged : left;
        memcpy(w->stage + w->staged * ib, images, k * ib);
        w->staged += k;
        images += k * ib;
        left -= k;
        if (w->staged == w->chunk_n) {
            int rc = write_rows(w, w->stage, w->staged, err, errlen);
            if (rc != 0) return rc;
            w->staged = 0;
        }
    }
    w->pending += n;
    return 0;
}

int mt_dataset_end_class(mt_dataset_writer *w, const char *name, char *err, size_t errlen)
{
    if (w->failed) return earlier_failure(w, err, errlen);
    if (w->group < 0) return writer_fail(w, 0, err, errlen, "no split is open (mt_dataset_begin_split)");
    if (!name_ok(name, 0))
        return writer_fail(w, 0, err, errlen, "'%.80s' is not a class name (1-63 bytes)", name ? name : "");
    if (w->pending < 1) return writer_fail(w, 0, err, errlen, "class '%s' has no images", name);
    if (w->n_classes >= 0x7ffffffe) return writer_fail(w, 0, err, errlen, "more than %d classes in one split",
                                                      0x7ffffffe);
    if (w->n_classes == w->cap) {
        int cap = w->cap <= 0x3fffffff ? w->cap * 2 : 0x7ffffffe;
        int64_t *offsets = realloc(w->offsets, ((size_t)cap + 1) * sizeof *offsets);
        MT_CHECK(offsets, "out of memory for %d classes", cap);
        w->offsets = offsets;
        char(*names)[MT_DATASET_NAME_LEN] = realloc(w->names, (size_t)cap * sizeof *names);
        MT_CHECK(names, "out of memory for %d classes", cap);
        w->names = names;
        w->cap = cap;
    }
    snprintf(w->names[w->n_classes], MT_DATASET_NAME_LEN, "%s", name);
    w->offsets[w->n_classes + 1] = w->offsets[w->n_classes] + w->pending;
    w->n_classes++;
    w->pending = 0;
    return 0;
}

int mt_dataset_add_class(mt_dataset_writer *w, const char *name, int64_t n, const uint8_t *images, char *err,
                         size_t errlen)
{
    if (w->failed) return earlier_failure(w, err, errlen);
    if (w->group < 0) return writer_fail(w, 0, err, errlen, "no split is open (mt_dataset_begin_split)");
    if (!name_ok(name, 0))
        return writer_fail(w, 0, err, errlen, "'%.80s' is not a class name (1-63 bytes)", name ? name : "");
    if (n < 1 || !images) return writer_fail(w, 0, err, errlen, "class '%s' has no images", name);
    if (w->pending > 0)
        return writer_fail(w, 0, err, errlen, "class '%s' added while another is being appended", name);
    int rc = mt_dataset_append_images(w, n, images, err, errlen);
    return rc != 0 ? rc : mt_dataset_end_class(w, name, err, errlen);
}

/* Closes the open split's handles and frees its buffers (after success or failure). */
static void close_split(mt_dataset_writer *w)
{
    if (w->images >= 0) H5Dclose(w->images);
    if (w->group >= 0) H5Gclose(w->group);
    w->images = w->group = -1;
    free(w->stage);
    free(w->offsets);
    free(w->names);
    w->stage = NULL;
    w->offsets = NULL;
    w->names = NULL;
    w->n_classes = w->cap = 0;
}

int mt_dataset_end_split(mt_dataset_writer *w, char *err, size_t errlen)
{
    if (w->failed) return earlier_failure(w, err, errlen);
    if (w->group < 0) return writer_fail(w, 0, err, errlen, "no split is open (mt_dataset_begin_split)");
    if (w->pending > 0) return writer_fail(w, 0, err, errlen, "a class is still being appended (mt_dataset_end_class)");
    if (w->n_classes == 0) return writer_fail(w, 0, err, errlen, "the split has no classes");
    if (w->staged > 0) {
        int rc = write_rows(w, w->stage, w->staged, err, errlen);
        if (rc != 0) return rc;
    }
    w->staged = 0;
    const int64_t N = w->offsets[w->n_classes];
    if ((hsize_t)N != w->written) return writer_fail(w, 0, err, errlen, "internal error: %llu rows for %lld images",
                                                     (unsigned long long)w->written, (long long)N);
    int32_t *labels = mt_malloc((size_t)N * sizeof *labels);
    for (int k = 0; k < w->n_classes; k++)
        for (int64_t i = w->offsets[k]; i < w->offsets[k + 1]; i++) labels[i] = k;
    hid_t ntype = name_type();
    int ok = write_vector(w->group, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, (hsize_t)N, LABEL_CHUNK, labels) == 0 &&
             write_vector(w->group, "class_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, (hsize_t)w->n_classes + 1, 0,
                          w->offsets) == 0 &&
             ntype >= 0 && write_vector(w->group, "class_names", ntype, ntype, (hsize_t)w->n_classes, 0, w->names) == 0;
    free(labels);
    if (ntype >= 0) H5Tclose(ntype);
    if (!ok) return writer_fail(w, 1, err, errlen, "cannot write labels, class_offsets or class_names");
    herr_t closed = H5Dclose(w->images);
    w->images = -1;
    if (closed < 0) return writer_fail(w, 1, err, errlen, "cannot close images");
    closed = H5Gclose(w->group);
    w->group = -1;
    close_split(w);
    if (closed < 0) return writer_fail(w, 1, err, errlen, "cannot close the group of split '%s'", w->split);
    return 0;
}

int mt_dataset_write_split(mt_dataset_writer *w, const mt_split *s, char *err, size_t errlen)
{
    int rc = mt_dataset_begin_split(w, s->name, s->C, s->H, s->W, err, errlen);
    if (rc != 0) return rc;
    const size_t ib = (size_t)s->C * (size_t)s->H * (size_t)s->W;
    for (int k = 0; k < s->n_classes; k++) {
        int64_t lo = s->class_offsets[k], hi = s->class_offsets[k + 1];
        if (lo < 0 || hi > s->n_images || hi <= lo)
            return writer_fail(w, 0, err, errlen, "class %d: offsets %lld..%lld are not inside 0..%lld", k,
                               (long long)lo, (long long)hi, (long long)s->n_images);
        rc = mt_dataset_add_class(w, s->class_names[k], hi - lo, s->images + (size_t)lo * ib, err, errlen);
        if (rc != 0) return rc;
    }
    return mt_dataset_end_split(w, err, errlen);
}

int mt_dataset_finish(mt_dataset_writer *w, char *err, size_t errlen)
{
    if (w->failed || w->group >= 0) {
        if (!w->failed) writer_fail(w, 0, err, errlen, "split '%s' was not ended", w->split);
        int kind = w->failed;
        mt_dataset_abandon(w);
        return kind;
    }
    herr_t closed = H5Fclose(w->file);
    w->file = -1;
    if (closed < 0) {
        int kind = writer_fail(w, 1, err, errlen, "cannot close the file");
        mt_dataset_abandon(w);
        return kind;
    }
    int rc = mt_fsync_rename(w->partial, w->path, err, errlen) == 0 ? 0 : MT_DATASET_IO_ERROR;
    if (rc != 0) unlink(w->partial);
    free(w);
    return rc;
}

void mt_dataset_abandon(mt_dataset_writer *w)
{
    if (!w) return;
    close_split(w);
    if (w->file >= 0) H5Fclose(w->file);
    unlink(w->partial);
    free(w);
}

/* ------------------------------------------------------------------------------------------
 * Reader
 * ---------------------------------------------------------------------------------------- */

/* Checks root attribute `name` before it is read: present, one element (scalar), of type
 * class cls (fixed-length for strings). The readers in ioutil.c read into one value, so an
 * attribute with more elements would overflow it. Returns 1 if usable, 0 if missing, -1
 * if present but of another type or shape; then what says which ("a vector of 64 values",
 * "of another type"). */
static int attr_usable(hid_t loc, const char *name, H5T_class_t cls, char *what, size_t whatlen)
{
    snprintf(what, whatlen, "missing");
    if (H5Aexists(loc, name) <= 0) return 0;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t space = a >= 0 ? H5Aget_space(a) : -1, type = a >= 0 ? H5Aget_type(a) : -1;
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    int ok = a >= 0 && space >= 0 && type >= 0;
    if (!ok) snprintf(what, whatlen, "unreadable (%s)", mt_h5_reason());
    else if (n != 1) snprintf(what, whatlen, "an array of %lld values, not one", (long long)n);
    else if (H5Tget_class(type) != cls || (cls == H5T_STRING && H5Tis_variable_str(type) != 0))
        snprintf(what, whatlen, "of another type (expected %s)",
                 cls == H5T_STRING ? "a fixed-length string" : "an integer");
    else ok = 2;
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    if (a >= 0) H5Aclose(a);
    return ok == 2 ? 1 : -1;
}

/* Opens path read-only after checking that it is a readable HDF5 file with the dataset
 * format and version. Returns the file, or -1 with a message in err. */
static hid_t open_dataset(const char *path, char *err, size_t errlen)
{
    mt_h5_quiet();
    struct stat st;
    if (access(path, R_OK) != 0 || stat(path, &st) != 0) {
        snprintf(err, errlen, "cannot read dataset %s: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "cannot read dataset %s: it is a directory", path);
        return -1;
    }
    if (H5Fis_hdf5(path) <= 0) {
        snprintf(err, errlen, "%s is not a metatrain dataset: not an HDF5 file (or truncated)", path);
        return -1;
    }
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        snprintf(err, errlen, "cannot open dataset %s (damaged or truncated?): %s", path, mt_h5_reason());
        return -1;
    }
    char *format = NULL, what[512];
    int64_t version = 0;
    int ok = 0;
    if (attr_usable(file, "format", H5T_STRING, what, sizeof what) != 1) {
        snprintf(err, errlen, "%s is not a metatrain dataset: format attribute is %s", path, what);
    } else if (attr_usable(file, "format_version", H5T_INTEGER, what, sizeof what) != 1) {
        snprintf(err, errlen, "dataset %s: format_version attribute is %s", path, what);
    } else if (mt_h5_attr_read_str(file, "format", &format) != 0 || strcmp(format, MT_DATASET_FORMAT) != 0) {
        snprintf(err, errlen, "%s is not a metatrain dataset: format attribute is %s%s%s, expected \"%s\"", path,
                 format ? "\"" : "", format ? format : "missing", format ? "\"" : "", MT_DATASET_FORMAT);
    } else if (mt_h5_attr_read_i64(file, "format_version", &version) != 0) {
        snprintf(err, errlen, "dataset %s has no readable format_version attribute", path);
    } else if (version != MT_DATASET_VERSION) {
        snprintf(err, errlen, "dataset %s has format_version %lld; this metatrain reads version %d", path,
                 (long long)version, MT_DATASET_VERSION);
    } else {
        ok = 1;
    }
    free(format);
    if (!ok) {
        H5Fclose(file);
        return -1;
    }
    return file;
}

typedef struct {
    char (*names)[64];
    int max, count;
} list_ctx;

static herr_t list_one(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    list_ctx *c = data;
    if (info->type != H5L_TYPE_HARD) return 0;
    hid_t sub = H5Gopen2(g, name, H5P_DEFAULT); /* fails (quietly) for datasets */
    if (sub < 0) return 0;
    H5Gclose(sub);
    if (c->count < c->max) snprintf(c->names[c->count], 64, "%s", name);
    c->count++;
    return 0;
}

/* Lists the root groups of an open file into names[max]; returns the count, or -1. */
static int list_groups(hid_t file, char names[][64], int max)
{
    list_ctx c = {names, max, 0};
    hsize_t idx = 0;
    if (H5Literate(file, H5_INDEX_NAME, H5_ITER_INC, &idx, list_one, &c) < 0) return -1;
    return c.count;
}

int mt_dataset_list_splits(const char *path, char names[][64], int max, char *err, size_t errlen)
{
    hid_t file = open_dataset(path, err, errlen);
    if (file < 0) return -1;
    int n = list_groups(file, names, max);
    if (n < 0) snprintf(err, errlen, "cannot list the splits of dataset %s: %s", path, mt_h5_reason());
    H5Fclose(file);
    return n;
}

int mt_dataset_read_attrs(const char *path, mt_dataset_attrs *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    hid_t file = open_dataset(path, err, errlen);
    if (file < 0) return -1;
    const char *names[2] = {"source", "created"};
    char **values[2] = {&a->source, &a->created};
    int ok = mt_h5_attr_read_i64(file, "format_version", &a->format_version) == 0;
    if (!ok) snprintf(err, errlen, "dataset %s: format_version attribute cannot be read", path);
    for (int i = 0; ok && i < 2; i++) {
        char what[512];
        if (attr_usable(file, names[i], H5T_STRING, what, sizeof what) != 1) {
            snprintf(err, errlen, "dataset %s: %s attribute is %s", path, names[i], what);
            ok = 0;
        } else if (mt_h5_attr_read_str(file, names[i], values[i]) != 0) {
            snprintf(err, errlen, "dataset %s: %s attribute cannot be read", path, names[i]);
            ok = 0;
        }
    }
    H5Fclose(file);
    if (!ok) {
        mt_dataset_attrs_free(a);
        return -1;
    }
    return 0;
}

void mt_dataset_attrs_free(mt_dataset_attrs *a)
{
    if (!a) return;
    free(a->source);
    free(a->created);
    memset(a, 0, sizeof *a);
}

void mt_split_free(mt_split *s)
{
    if (!s) return;
    free(s->images);
    free(s->labels);
    free(s->class_offsets);
    free(s->class_names);
    memset(s, 0, sizeof *s);
}

/* Checks how dataset d (dataspace space, file type type) is stored before anything reads
 * it. Its raw data must be in this file: external files and virtual datasets name other
 * files, which a dataset someone sends must not make us read. A compact or contiguous
 * dataset must store exactly its shape's worth of bytes: HDF5 1.10 trusts the stored size
 * and reads past its buffer when it is smaller (found by tests/fuzz/fuzz_dataset.c). A
 * dataset with no data stored at all is refused: the reader would get fill values, which
 * HDF5 converts from a message of their own that a damaged file can make inconsistent.
 * Returns 1, or 0 with the reason in why. */
/* The largest chunk the reader accepts, and what deflate may add to a chunk it cannot shrink
 * (zlib's worst case is 5 bytes per 16 KiB block plus 11: well inside 1/1000 + 64). */
#define MAX_CHUNK_BYTES ((uint64_t)256 << 20)
#define CHUNK_SLACK(bytes) ((bytes) / 1000 + 64)

/* A chunked dataset's chunks: HDF5 allocates a chunk's logical size and its stored size (a
 * number in the file) before it reads one, so both are checked first: the logical size at
 * most MAX_CHUNK_BYTES, every stored size at most the logical one plus CHUNK_SLACK (a
 * damaged size field once asked for 4 GiB to read 12 bytes). Returns 1, or 0 with why. */
static int chunks_ok(hid_t d, const char *name, hid_t space, size_t tsize, char *why, size_t whylen)
{
    hsize_t cdims[H5S_MAX_RANK], n_chunks = 0;
    const int rank = H5Sget_simple_extent_ndims(space);
    hid_t dcpl = H5Dget_create_plist(d);
    const int ok = rank > 0 && dcpl >= 0 && H5Pget_chunk(dcpl, rank, cdims) == rank &&
                   H5Dget_num_chunks(d, space, &n_chunks) >= 0;
    const int filtered = ok && H5Pget_nfilters(dcpl) > 0;
    if (dcpl >= 0) H5Pclose(dcpl);
    if (!ok) {
        snprintf(why, whylen, "%s: its chunks cannot be read (damaged file?): %s", name, mt_h5_reason());
        return 0;
    }
    uint64_t bytes = tsize;
    for (int i = 0; i < rank; i++)
        bytes = cdims[i] == 0 || bytes > MAX_CHUNK_BYTES / cdims[i] ? MAX_CHUNK_BYTES + 1 : bytes * cdims[i];
    if (bytes > MAX_CHUNK_BYTES) {
        snprintf(why, whylen, "%s has chunks of more than %llu MiB (damaged file?)", name,
                 (unsigned long long)(MAX_CHUNK_BYTES >> 20));
        return 0;
    }
    /* Looked up by position, a chunk's stored size is one search of the chunk index; by number
     * (below), each chunk is a walk of the index from its start, quadratic in the chunk count
     * (a minute for 88k chunks, 1.4 million 28×28 images). HDF5 1.10 reports the stored size
     * by position only for filtered (compressed) data, as `metatrain import` writes it, and
     * fails for a chunk not stored. So: by position for filtered data whose grid of chunk
     * positions is not much larger than the chunks stored; by number otherwise, or if the
     * lookups fail or find another count. */
    const hsize_t max_cells = 4 * n_chunks + 4096;
    hsize_t dims[H5S_MAX_RANK], grid[H5S_MAX_RANK], cells = 1;
    H5Sget_simple_extent_dims(space, dims, NULL);
    for (int i = 0; i < rank; i++) {
        grid[i] = (dims[i] + cdims[i] - 1) / cdims[i];
        cells = grid[i] != 0 && cells > max_cells / grid[i] ? max_cells + 1 : cells * grid[i];
    }
    if (filtered && n_chunks > 0 && cells <= max_cells) {
        hsize_t at[H5S_MAX_RANK] = {0}, found = 0;
        for (hsize_t cell = 0; cell < cells; cell++) {
            hsize_t offset[H5S_MAX_RANK], size = 0;
            for (int i = 0; i < rank; i++) offset[i] = at[i] * cdims[i];
            if (H5Dget_chunk_storage_size(d, offset, &size) < 0) break; /* not stored: by number below */
            if (size > 0) {
                found++;
                if (size > bytes + CHUNK_SLACK(bytes)) {
                    snprintf(why, whylen,
                             "%s: the chunk at %llu claims %llu stored bytes for %llu bytes of data (damaged file?)",
                             name, (unsigned long long)offset[0], (unsigned long long)size,
                             (unsigned long long)bytes);
                    return 0;
                }
            }
            for (int i = rank - 1; i >= 0 && ++at[i] == grid[i]; i--) at[i] = 0;
        }
        if (found == n_chunks) return 1;
    }
    for (hsize_t i = 0; i < n_chunks; i++) {
        hsize_t offset[H5S_MAX_RANK], size = 0;
        unsigned mask = 0;
        haddr_t addr = HADDR_UNDEF;
        if (H5Dget_chunk_info(d, space, i, offset, &mask, &addr, &size) < 0) {
            snprintf(why, whylen, "%s: chunk %llu cannot be read (damaged file?): %s", name, (unsigned long long)i,
                     mt_h5_reason());
            return 0;
        }
        if (size > bytes + CHUNK_SLACK(bytes)) {
            snprintf(why, whylen, "%s: chunk %llu claims %llu stored bytes for %llu bytes of data (damaged file?)",
                     name, (unsigned long long)i, (unsigned long long)size, (unsigned long long)bytes);
            return 0;
        }
    }
    return 1;
}

static int storage_ok(hid_t d, const char *name, hid_t space, hid_t type, char *why, size_t whylen)
{
    hid_t dcpl = H5Dget_create_plist(d);
    const H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
    const int external = dcpl >= 0 ? H5Pget_external_count(dcpl) : -1;
    if (dcpl >= 0) H5Pclose(dcpl);
    const hssize_t npoints = H5Sget_simple_extent_npoints(space);
    const size_t tsize = H5Tget_size(type);
    const uint64_t stored = H5Dget_storage_size(d);
    if (layout == H5D_LAYOUT_ERROR || external < 0 || npoints < 0 || tsize == 0) {
        snprintf(why, whylen, "%s: its storage cannot be read (damaged file?): %s", name, mt_h5_reason());
        return 0;
    }
    if (npoints > 0 && stored == 0) { /* we write every array whole; only fill values would be read */
        snprintf(why, whylen, "%s holds no data (damaged file?)", name);
        return 0;
    }
    if (external > 0 || layout == H5D_VIRTUAL) {
        snprintf(why, whylen, "%s keeps its data outside the file (%s), which metatrain does not read", name,
                 external > 0 ? "external raw data files" : "a virtual dataset");
        return 0;
    }
    if (layout == H5D_CHUNKED && !chunks_ok(d, name, space, tsize, why, whylen)) return 0;
    if (layout == H5D_COMPACT || (layout == H5D_CONTIGUOUS && stored != 0)) {
        const uint64_t want = (uint64_t)npoints > UINT64_MAX / tsize ? UINT64_MAX : (uint64_t)npoints * tsize;
        if (stored != want) {
            snprintf(why, whylen, "%s stores %llu bytes for %lld values of %zu bytes (damaged file?)", name,
                     (unsigned long long)stored, (long long)npoints, tsize);
            return 0;
        }
    }
    return 1;
}

/* Opens dataset `name` of g and checks it has rank `ndims` and an element class `cls`.
 * Fills dims. Returns the dataset, or -1 with the reason in why. */
static hid_t open_array(hid_t g, const char *name, int ndims, H5T_class_t cls, hsize_t *dims, char *why,
                        size_t whylen)
{
    if (H5Lexists(g, name, H5P_DEFAULT) <= 0) {
        snprintf(why, whylen, "no %s dataset", name);
        return -1;
    }
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) {
        snprintf(why, whylen, "%s cannot be opened: %s", name, mt_h5_reason());
        return -1;
    }
    hid_t space = H5Dget_space(d), type = H5Dget_type(d);
    int ok = space >= 0 && type >= 0 && H5Sget_simple_extent_ndims(space) == ndims &&
             H5Sget_simple_extent_dims(space, dims, NULL) == ndims && H5Tget_class(type) == cls;
    if (ok && cls == H5T_STRING) ok = H5Tis_variable_str(type) == 0 && H5Tget_size(type) <= MT_DATASET_NAME_LEN;
    if (ok && cls == H5T_INTEGER && ndims == 4) ok = H5Tget_size(type) == 1 && H5Tget_sign(type) == H5T_SGN_NONE;
    if (ok && cls == H5T_INTEGER) { /* a plain integer: 1, 2, 4 or 8 whole bytes (HDF5 mis-sizes odd ones) */
        const size_t size = H5Tget_size(type);
        ok = (size == 1 || size == 2 || size == 4 || size == 8) && H5Tget_precision(type) == 8 * size &&
             H5Tget_offset(type) == 0;
    }
    if (!ok) {
        const char *want = cls == H5T_STRING    ? "a vector of fixed-length strings of at most 64 bytes"
                           : ndims == 4         ? "a 4-d uint8 array [N, C, H, W]"
                                                : "an integer vector (of 1, 2, 4 or 8 bytes)";
        snprintf(why, whylen, "%s is not %s", name, want);
    }
    if (ok) ok = storage_ok(d, name, space, type, why, whylen);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    if (!ok) {
        H5Dclose(d);
        return -1;
    }
    return d;
}

/* Deflate, the only filter the format uses, compresses at most 1032:1. */
#define MAX_DEFLATE_RATIO 1032

/* The shape read from the file may claim far more data than the file stores (chunks never
 * written read as zeros): d, to be read into `bytes` bytes, must store at least
 * 1/MAX_DEFLATE_RATIO of them, so that a small file cannot make the reader allocate and
 * fill gigabytes. Returns 0, or -1 with the reason in why. */
static int stored_enough(hid_t d, const char *name, uint64_t bytes, char *why, size_t whylen)
{
    const uint64_t stored = H5Dget_storage_size(d);
    if (bytes > (1u << 20) && bytes / MAX_DEFLATE_RATIO > stored) {
        snprintf(why, whylen, "%s claims %llu bytes of data but the file stores only %llu bytes of it (damaged file?)",
                 name, (unsigned long long)bytes, (unsigned long long)stored);
        return -1;
    }
    return 0;
}

/* Reads the whole of d as mtype into buf. Returns 0, or -1 with the reason in why. */
static int read_all(hid_t d, const char *name, hid_t mtype, void *buf, char *why, size_t whylen)
{
    if (H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        snprintf(why, whylen, "%s cannot be read (damaged file?): %s", name, mt_h5_reason());
        return -1;
    }
    return 0;
}

/* malloc that reports failure in why instead of aborting: sizes come from the file. */
static void *alloc_or_why(size_t n, const char *what, char *why, size_t whylen)
{
    void *p = malloc(n ? n : 1);
    if (!p) snprintf(why, whylen, "not enough memory for %s (%zu bytes)", what, n);
    return p;
}

/* Checks offsets[n+1] and labels[N] of s against each other. Returns 0, or -1 with why. */
static int check_structure(const mt_split *s, char *why, size_t whylen)
{
    const int64_t *off = s->class_offsets;
    const int n = s->n_classes;
    if (off[0] != 0 || off[n] != s->n_images) {
        snprintf(why, whylen, "class_offsets run from %lld to %lld, expected 0 to %lld (the number of images)",
                 (long long)off[0], (long long)off[n], (long long)s->n_images);
        return -1;
    }
    for (int k = 0; k < n; k++)
        if (off[k + 1] <= off[k]) {
            if (off[k + 1] == off[k])
                snprintf(why, whylen, "class %d (%s) is empty (class_offsets[%d] = class_offsets[%d] = %lld)", k,
                         s->class_names[k], k, k + 1, (long long)off[k]);
            else
                snprintf(why, whylen, "class_offsets are not increasing at class %d (%s): %lld then %lld", k,
                         s->class_names[k], (long long)off[k], (long long)off[k + 1]);
            return -1;
        }
    for (int64_t i = 0; i < s->n_images; i++)
        if (s->labels[i] < 0 || s->labels[i] >= n) {
            snprintf(why, whylen, "label %d of image %lld is outside 0..%d", s->labels[i], (long long)i, n - 1);
            return -1;
        }
    for (int64_t i = 1; i < s->n_images; i++)
        if (s->labels[i] < s->labels[i - 1]) {
            snprintf(why, whylen, "labels are not sorted by class (image %lld has label %d after label %d)",
                     (long long)i, s->labels[i], s->labels[i - 1]);
            return -1;
        }
    for (int k = 0; k < n; k++)
        for (int64_t i = off[k]; i < off[k + 1]; i++)
            if (s->labels[i] != k) {
                snprintf(why, whylen,
                         "labels do not match class_offsets (image %lld has label %d, class_offsets put it in "
                         "class %d)",
                         (long long)i, s->labels[i], k);
                return -1;
            }
    for (int k = 0; k < n; k++)
        if (s->class_names[k][0] == '\0') {
            snprintf(why, whylen, "class %d has an empty name", k);
            return -1;
        }
    return 0;
}

/* Reads the split's arrays from group g into s (images only if with_images). Returns 0, or
 * -1 with the reason in why. */
static int read_arrays(hid_t g, int with_images, uint8_t *dst, size_t dst_bytes, mt_split *s, char *why,
                       size_t whylen)
{
    hsize_t idims[4] = {0}, ldims[1] = {0}, odims[1] = {0}, ndims[1] = {0};
    hid_t images = -1, labels = -1, offsets = -1, names = -1, ntype = -1;
    int ok = 0;
    images = open_array(g, "images", 4, H5T_INTEGER, idims, why, whylen);
    if (images < 0) goto done;
    labels = open_array(g, "labels", 1, H5T_INTEGER, ldims, why, whylen);
    if (labels < 0) goto done;
    offsets = open_array(g, "class_offsets", 1, H5T_INTEGER, odims, why, whylen);
    if (offsets < 0) goto done;
    names = open_array(g, "class_names", 1, H5T_STRING, ndims, why, whylen);
    if (names < 0) goto done;
    if (idims[0] < 1 || idims[0] > (hsize_t)INT64_MAX / 2 || idims[1] < 1 || idims[1] > MT_DATASET_MAX_CHANNELS ||
        idims[2] < 1 || idims[2] > MT_DATASET_MAX_SIDE || idims[3] < 1 || idims[3] > MT_DATASET_MAX_SIDE) {
        snprintf(why, whylen, "images has shape [%llu, %llu, %llu, %llu]: need N >= 1, C 1-%d, H and W 1-%d",
                 (unsigned long long)idims[0], (unsigned long long)idims[1], (unsigned long long)idims[2],
                 (unsigned long long)idims[3], MT_DATASET_MAX_CHANNELS, MT_DATASET_MAX_SIDE);
        goto done;
    }
    if (ldims[0] != idims[0]) {
        snprintf(why, whylen, "labels has %llu entries but images has %llu rows", (unsigned long long)ldims[0],
                 (unsigned long long)idims[0]);
        goto done;
    }
    if (odims[0] < 2 || odims[0] > 0x7ffffffe) {
        snprintf(why, whylen, "class_offsets has %llu entries, need n_classes + 1 >= 2", (unsigned long long)odims[0]);
        goto done;
    }
    if (ndims[0] != odims[0] - 1) {
        snprintf(why, whylen, "class_names has %llu entries but class_offsets describes %llu classes",
                 (unsigned long long)ndims[0], (unsigned long long)odims[0] - 1);
        goto done;
    }
    s->n_images = (int64_t)idims[0];
    s->C = (int)idims[1], s->H = (int)idims[2], s->W = (int)idims[3];
    s->n_classes = (int)ndims[0];
    const size_t N = (size_t)s->n_images, n = (size_t)s->n_classes;
    /* Sizes come from the file: every byte count is checked before it is allocated. */
    if (N > SIZE_MAX / sizeof *s->labels || n + 1 > SIZE_MAX / sizeof *s->class_offsets ||
        n > SIZE_MAX / sizeof *s->class_names) {
        snprintf(why, whylen, "images has %llu rows: more than this machine can address", (unsigned long long)N);
        goto done;
    }
    if (stored_enough(labels, "labels", (uint64_t)N * sizeof *s->labels, why, whylen) != 0 ||
        stored_enough(offsets, "class_offsets", (uint64_t)(n + 1) * sizeof *s->class_offsets, why, whylen) != 0 ||
        stored_enough(names, "class_names", (uint64_t)n * sizeof *s->class_names, why, whylen) != 0)
        goto done;
    if (!(s->labels = alloc_or_why(N * sizeof *s->labels, "labels", why, whylen)) ||
        !(s->class_offsets = alloc_or_why((n + 1) * sizeof *s->class_offsets, "class_offsets", why, whylen)) ||
        !(s->class_names = alloc_or_why(n * sizeof *s->class_names, "class_names", why, whylen)))
        goto done;
    if ((ntype = name_type()) < 0) {
        snprintf(why, whylen, "cannot make the string type: %s", mt_h5_reason());
        goto done;
    }
    if (read_all(labels, "labels", H5T_NATIVE_INT32, s->labels, why, whylen) != 0 ||
        read_all(offsets, "class_offsets", H5T_NATIVE_INT64, s->class_offsets, why, whylen) != 0 ||
        read_all(names, "class_names", ntype, s->class_names, why, whylen) != 0)
        goto done;
    for (size_t k = 0; k < n; k++) s->class_names[k][MT_DATASET_NAME_LEN - 1] = '\0';
    if (check_structure(s, why, whylen) != 0) goto done;
    if (with_images) {
        size_t ib = (size_t)s->C * (size_t)s->H * (size_t)s->W;
        if (N > SIZE_MAX / ib) {
            snprintf(why, whylen, "images are too large for this machine's address space");
            goto done;
        }
        if (stored_enough(images, "images", (uint64_t)N * ib, why, whylen) != 0) goto done;
        if (dst && N * ib != dst_bytes) {
            snprintf(why, whylen, "images hold %zu bytes, not the %zu read a moment before (did the file change?)",
                     N * ib, dst_bytes);
            goto done;
        }
        if (!dst && !(s->images = alloc_or_why(N * ib, "images", why, whylen))) goto done;
        if (read_all(images, "images", H5T_NATIVE_UINT8, dst ? dst : s->images, why, whylen) != 0) goto done;
    }
    ok = 1;
done:
    if (ntype >= 0) H5Tclose(ntype);
    if (names >= 0) H5Dclose(names);
    if (offsets >= 0) H5Dclose(offsets);
    if (labels >= 0) H5Dclose(labels);
    if (images >= 0) H5Dclose(images);
    return ok ? 0 : -1;
}

/* "a, b, c" (or "none") for messages. */
static void join_splits(hid_t file, char *out, size_t len)
{
    char names[16][64];
    int n = list_groups(file, names, 16);
    out[0] = '\0';
    if (n <= 0) {
        snprintf(out, len, "it has none");
        return;
    }
    size_t used = 0;
    for (int i = 0; i < n && i < 16 && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%s", i ? ", " : "its splits: ", names[i]);
    if (n > 16 && used < len) snprintf(out + used, len - used, ", ... (%d in all)", n);
}

static int read_split(const char *path, const char *split, int with_images, uint8_t *dst, size_t dst_bytes,
                      mt_split *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    hid_t file = open_dataset(path, err, errlen);
    if (file < 0) return -1;
    hid_t g = -1;
    if (name_ok(split, 1) && H5Lexists(file, split, H5P_DEFAULT) > 0) g = H5Gopen2(file, split, H5P_DEFAULT);
    if (g < 0) {
        char have[1200];
        join_splits(file, have, sizeof have);
        snprintf(err, errlen, "dataset %s has no split '%s' (%s)", path, split ? split : "", have);
        H5Fclose(file);
        return -1;
    }
    char why[1024] = "";
    snprintf(out->name, sizeof out->name, "%s", split);
    int ok = read_arrays(g, with_images, dst, dst_bytes, out, why, sizeof why) == 0;
    H5Gclose(g);
    if (H5Fclose(file) < 0 && ok) {
        snprintf(why, sizeof why, "close failed: %s", mt_h5_reason());
        ok = 0;
    }
    if (!ok) {
        snprintf(err, errlen, "dataset %s, split '%s': %s", path, split, why);
        mt_split_free(out);
        return -1;
    }
    return 0;
}

int mt_dataset_read_split(const char *path, const char *split, mt_split *out, char *err, size_t errlen)
{
    return read_split(path, split, 1, NULL, 0, out, err, errlen);
}

int mt_dataset_read_split_meta(const char *path, const char *split, mt_split *out, char *err, size_t errlen)
{
    return read_split(path, split, 0, NULL, 0, out, err, errlen);
}

int mt_dataset_read_split_to(const char *path, const char *split, mt_split *out, uint8_t *images, size_t bytes,
                             char *err, size_t errlen)
{
    return read_split(path, split, 1, images, bytes, out, err, errlen);
}
