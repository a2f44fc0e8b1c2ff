/* checkpoint.c — writing and reading checkpoint files (see checkpoint.h). */
#define _POSIX_C_SOURCE 200809L
#include "checkpoint.h"

#include <dirent.h>
#include <math.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common.h"
#include "config.h"
#include "ioutil.h"

/* One row of the /model table as stored. */
typedef struct {
    char name[2 * MT_NAME_LEN];
    char kind[MT_NAME_LEN];
    int64_t offset, size;
    int32_t ndim;
    int32_t shape[4];
} table_row;

static hid_t table_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(table_row));
    hid_t name = H5Tcopy(H5T_C_S1), kind = H5Tcopy(H5T_C_S1);
    hsize_t four = 4;
    hid_t shape = H5Tarray_create2(H5T_NATIVE_INT32, 1, &four);
    H5Tset_size(name, sizeof(((table_row *)0)->name));
    H5Tset_size(kind, sizeof(((table_row *)0)->kind));
    H5Tinsert(t, "name", HOFFSET(table_row, name), name);
    H5Tinsert(t, "kind", HOFFSET(table_row, kind), kind);
    H5Tinsert(t, "offset", HOFFSET(table_row, offset), H5T_NATIVE_INT64);
    H5Tinsert(t, "size", HOFFSET(table_row, size), H5T_NATIVE_INT64);
    H5Tinsert(t, "ndim", HOFFSET(table_row, ndim), H5T_NATIVE_INT32);
    H5Tinsert(t, "shape", HOFFSET(table_row, shape), shape);
    H5Tclose(name);
    H5Tclose(kind);
    H5Tclose(shape);
    return t;
}

void mt_checkpoint_path(char *out, size_t len, const char *dir, long step)
{
    snprintf(out, len, "%s/ckpt-%08ld.h5", dir, step);
}

/* In pieces of at most 1 GiB: zlib takes a uInt length. */
uint32_t mt_checkpoint_crc32(uint32_t crc, const void *p, size_t n)
{
    const Bytef *b = p;
    uLong c = crc;
    while (n > 0) {
        const size_t piece = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        c = crc32(c, b, (uInt)piece);
        b += piece, n -= piece;
    }
    return (uint32_t)c;
}

/* CRC-32 of a vector written in shards: each rank's shard CRC, combined in rank order. */
static uint32_t shard_crc(MPI_Comm comm, const float *shard, size_t n)
{
    uint32_t local = mt_checkpoint_crc32(0, shard, n * sizeof(float));
    if (comm == MPI_COMM_NULL) return local;
    int size;
    MPI_Comm_size(comm, &size);
    uint64_t mine[2] = {local, n * sizeof(float)};
    uint64_t *all = mt_malloc(2 * (size_t)size * sizeof *all);
    int rc = MPI_Allgather(mine, 2, MPI_UINT64_T, all, 2, MPI_UINT64_T, comm);
    MT_CHECK(rc == MPI_SUCCESS, "MPI_Allgather of checkpoint checksums failed");
    uLong crc = 0;
    for (int r = 0; r < size; r++) crc = crc32_combine(crc, (uLong)all[2 * r], (z_off_t)all[2 * r + 1]);
    free(all);
    return (uint32_t)crc;
}

/* CRC-32 of an integer as 8 little-endian bytes, and of a string as its length and bytes. */
static uint32_t crc32_i64(uint32_t crc, int64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)v >> (8 * i));
    return mt_checkpoint_crc32(crc, b, sizeof b);
}

static uint32_t crc32_str(uint32_t crc, const char *s)
{
    const size_t n = strlen(s);
    return mt_checkpoint_crc32(crc32_i64(crc, (int64_t)n), s, n);
}

/* meta_crc32 of ck as stored (see checkpoint.h): what the writer stores and the reader checks. */
static uint32_t meta_crc32(const mt_checkpoint *ck)
{
    uint32_t crc = crc32_str(0, MT_CKPT_FORMAT);
    crc = crc32_i64(crc, ck->version);
    crc = crc32_i64(crc, ck->step);
    crc = crc32_i64(crc, (int64_t)ck->seed);
    crc = crc32_i64(crc, ck->world_size);
    crc = crc32_str(crc, ck->program_version);
    crc = crc32_str(crc, ck->config ? ck->config : "");
    crc = crc32_str(crc, ck->dataset[0] ? ck->dataset : "none");
    for (int i = 0; i < 3; i++) crc = crc32_i64(crc, ck->input_shape[i]);
    crc = crc32_str(crc, ck->run_id);
    crc = crc32_i64(crc, ck->n_tensors);
    for (int i = 0; i < ck->n_tensors; i++) {
        const mt_tensor_info *t = &ck->tensors[i];
        crc = crc32_str(crc32_str(crc, t->name), t->kind);
        crc = crc32_i64(crc32_i64(crc32_i64(crc, (int64_t)t->offset), (int64_t)t->size), t->ndim);
        for (int j = 0; j < 4; j++) crc = crc32_i64(crc, t->shape[j]);
    }
    return crc;
}

/* meta_crc32 of what mt_checkpoint_write stores for ck and model m. */
static uint32_t written_meta_crc32(const mt_checkpoint *ck, const mt_model *m)
{
    mt_tensor_info tensors[MT_CKPT_MAX_TENSORS];
    mt_checkpoint w = *ck;
    w.version = MT_CKPT_VERSION;
    snprintf(w.program_version, sizeof w.program_version, "%s", MT_VERSION);
    w.input_shape[0] = m->in_c, w.input_shape[1] = m->in_h, w.input_shape[2] = m->in_w;
    w.n_tensors = mt_model_tensor_count(m);
    for (int i = 0; i < w.n_tensors; i++) mt_model_tensor(m, i, &tensors[i]);
    w.tensors = tensors;
    return meta_crc32(&w);
}

/* Rank 0's part: an empty float32 vector `name` [P] whose storage is allocated at creation
 * (contiguous, never filled), with its CRC-32 as an attribute. Its file address goes to
 * *addr: the ranks write the values there themselves. */
static int create_vector(hid_t file, const char *name, size_t P, uint32_t crc, int64_t *addr)
{
    hsize_t dims[1] = {P};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), lcpl = H5Pcreate(H5P_LINK_CREATE);
    int ok = space >= 0 && dcpl >= 0 && lcpl >= 0 && H5Pset_obj_track_times(dcpl, 0) >= 0 &&
             H5Pset_layout(dcpl, H5D_CONTIGUOUS) >= 0 && H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) >= 0 &&
             H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0;
    hid_t d = ok ? H5Dcreate2(file, name, H5T_IEEE_F32LE, space, lcpl, dcpl, H5P_DEFAULT) : -1;
    ok = ok && d >= 0 && mt_h5_attr_write_u64(d, "crc32", crc) == 0;
    haddr_t a = ok ? H5Dget_offset(d) : HADDR_UNDEF;
    ok = ok && a != HADDR_UNDEF;
    *addr = ok ? (int64_t)a : -1;
    if (d >= 0) H5Dclose(d);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return ok ? 0 : -1;
}

/* The /model table, written whole by rank 0. */
static int write_table(hid_t file, const mt_model *m)
{
    int n = mt_model_tensor_count(m);
    table_row *rows = mt_calloc((size_t)n, sizeof *rows);
    for (int i = 0; i < n; i++) {
        mt_tensor_info t;
        mt_model_tensor(m, i, &t);
        snprintf(rows[i].name, sizeof rows[i].name, "%s", t.name);
        snprintf(rows[i].kind, sizeof rows[i].kind, "%s", t.kind);
        rows[i].offset = (int64_t)t.offset;
        rows[i].size = (int64_t)t.size;
        rows[i].ndim = t.ndim;
        for (int j = 0; j < 4; j++) rows[i].shape[j] = t.shape[j];
    }
    hsize_t dims[1] = {(hsize_t)n};
    hid_t type = table_type(), space = H5Screate_simple(1, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int ok = type >= 0 && space >= 0 && dcpl >= 0 && H5Pset_obj_track_times(dcpl, 0) >= 0;
    hid_t d = ok ? H5Dcreate2(file, "model", type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
    ok = d >= 0 && H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) >= 0 &&
         mt_h5_attr_write_str(d, "arch", m->arch) == 0;
    if (d >= 0) H5Dclose(d);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    free(rows);
    return ok ? 0 : -1;
}

/* Every rank learns whether all succeeded (single writer: itself). */
static int all_ok(MPI_Comm comm, int ok)
{
    if (comm == MPI_COMM_NULL) return ok;
    int in = ok, out = 0;
    MT_CHECK(MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_LAND, comm) == MPI_SUCCESS, "MPI_Allreduce failed");
    return out;
}

/* Index of the first non-finite value of x[n], or -1. */
static long first_non_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return (long)i;
    return -1;
}

/* Writes buf[n] at file offset at with pwrite until done. 0, or -1 with errno. */
static int pwrite_all(int fd, const void *buf, size_t n, off_t at)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t k = pwrite(fd, p, n, at);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k, at += k, n -= (size_t)k;
    }
    return 0;
}

/* The in-memory file's buffer, handed over by the core driver when it closes the file (file
 * image callbacks): the image as HDF5 finished it, superblock included. */
typedef struct {
    char *buf;
    size_t cap;
} image_box;

static void *image_malloc(size_t size, H5FD_file_image_op_t op, void *udata)
{
    (void)op;
    ((image_box *)udata)->cap = size;
    return malloc(size);
}

static void *image_memcpy(void *dest, const void *src, size_t size, H5FD_file_image_op_t op, void *udata)
{
    (void)op, (void)udata;
    return memcpy(dest, src, size);
}

static void *image_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *udata)
{
    (void)op;
    void *grown = realloc(ptr, size);
    if (grown) ((image_box *)udata)->cap = size;
    return grown;
}

static herr_t image_free(void *ptr, H5FD_file_image_op_t op, void *udata)
{
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE) ((image_box *)udata)->buf = ptr; /* keep it */
    else free(ptr);
    return 0;
}

static void *image_udata_copy(void *udata) { return udata; }
static herr_t image_udata_free(void *udata) { (void)udata; return 0; }

/* The end-of-file address that a version 2 or 3 superblock (the 1.8+ format; 8-byte offsets,
 * base address 0) records at byte 28: the length of the file. 0 if it is not there. The
 * image may be shorter (storage allocated but never written is not in memory): zeros. */
static size_t superblock_eof(const char *img, size_t cap)
{
    static const char sig[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
    if (cap < 48 || memcmp(img, sig, 8) != 0 || (img[8] != 2 && img[8] != 3) || img[9] != 8) return 0;
    uint64_t base = 0, eof = 0;
    for (int i = 7; i >= 0; i--) base = base << 8 | (unsigned char)img[12 + i], eof = eof << 8 | (unsigned char)img[28 + i];
    return base == 0 && eof <= SIZE_MAX ? (size_t)eof : 0;
}

/* Rank 0: the HDF5 file without the values. HDF5 builds it in memory (the core driver, no
 * backing store): attributes, the /model table, and the three vectors' storage allocated
 * contiguously and never filled, whose addresses go to addr[3]. Then the image is written to
 * partial with plain POSIX calls — space reserved first (posix_fallocate), the bytes around
 * the vectors written, fsync — so every disk failure is an errno here, and HDF5 never holds a
 * file whose close can fail (a failed close leaves HDF5 1.10 to crash in MPI_Finalize).
 * Returns 0, or -1 with err. */
static int create_layout(const char *partial, const mt_model *m, const mt_checkpoint *ck, int optim,
                         const uint32_t crc[3], int64_t addr[3], char *err, size_t errlen)
{
    image_box box = {NULL, 0};
    H5FD_file_image_callbacks_t callbacks = {image_malloc,    image_memcpy,     image_realloc, image_free,
                                             image_udata_copy, image_udata_free, &box};
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* Format 1.8 and later: HDF5 checksums its own metadata, so a damaged object header is
     * refused by HDF5 instead of decoded (1.10's decoders crash on some damaged headers). */
    hid_t file = fcpl >= 0 && fapl >= 0 && H5Pset_obj_track_times(fcpl, 0) >= 0 &&
                         H5Pset_fapl_core(fapl, (size_t)1 << 20, 0) >= 0 &&
                         H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V110) >= 0 &&
                         H5Pset_file_image_callbacks(fapl, &callbacks) >= 0
                     ? H5Fcreate(partial, H5F_ACC_TRUNC, fcpl, fapl)
                     : -1;
    if (file < 0) snprintf(err, errlen, "cannot create checkpoint %s: %s", partial, mt_h5_reason());
    if (fapl >= 0) H5Pclose(fapl);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (file < 0) return -1;
    const size_t P = m->n_params;
    int ok = mt_h5_attr_write_str(file, "format", MT_CKPT_FORMAT) == 0 &&
             mt_h5_attr_write_i64(file, "format_version", MT_CKPT_VERSION) == 0 &&
             mt_h5_attr_write_i64(file, "step", ck->step) == 0 && mt_h5_attr_write_u64(file, "seed", ck->seed) == 0 &&
             mt_h5_attr_write_i64(file, "world_size", ck->world_size) == 0 &&
             mt_h5_attr_write_str(file, "program_version", MT_VERSION) == 0 &&
             mt_h5_attr_write_str(file, "run_id", ck->run_id) == 0 &&
             mt_h5_attr_write_str(file, "config", ck->config ? ck->config : "") == 0 &&
             mt_h5_attr_write_str(file, "dataset", ck->dataset[0] ? ck->dataset : "none") == 0 &&
             mt_h5_attr_write_i64s(file, "input_shape",
                                   (int64_t[3]){m->in_c, m->in_h, m->in_w}, 3) == 0 &&
             mt_h5_attr_write_u64(file, "meta_crc32", written_meta_crc32(ck, m)) == 0 &&
             create_vector(file, "params", P, crc[0], &addr[0]) == 0 &&
             (!optim || (create_vector(file, "optim/m", P, crc[1], &addr[1]) == 0 &&
                         create_vector(file, "optim/v", P, crc[2], &addr[2]) == 0)) &&
             write_table(file, m) == 0;
    if (!ok) snprintf(err, errlen, "cannot lay out checkpoint %s: %s", partial, mt_h5_reason());
    if (H5Fclose(file) < 0 && ok) { /* in memory: nothing to fail but the library itself */
        snprintf(err, errlen, "cannot lay out checkpoint %s: %s", partial, mt_h5_reason());
        ok = 0;
    }
    char *image = box.buf;
    const size_t size = image ? superblock_eof(image, box.cap) : 0;
    if (ok && size == 0) {
        snprintf(err, errlen, "cannot lay out checkpoint %s: HDF5 gave no file image", partial);
        ok = 0;
    }
    const int64_t vec_bytes = (int64_t)(P * sizeof(float));
    const int n_vec = optim ? 3 : 1;
    for (int i = 0; ok && i < n_vec; i++)
        if (addr[i] < 0 || addr[i] + vec_bytes > (int64_t)size) {
            snprintf(err, errlen, "checkpoint %s: HDF5 placed a vector beyond the end of the file", partial);
            ok = 0;
        }
    if (!ok) {
        free(image);
        return -1;
    }
    /* The image minus the vectors (the ranks write those): the gaps between them in order. */
    int64_t cuts[3];
    for (int i = 0; i < n_vec; i++) cuts[i] = addr[i];
    for (int i = 1; i < n_vec; i++)
        for (int j = i; j > 0 && cuts[j] < cuts[j - 1]; j--) {
            int64_t t = cuts[j];
            cuts[j] = cuts[j - 1], cuts[j - 1] = t;
        }
    const char *what = "create";
    int fd = open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    int rc = fd < 0 ? errno : 0;
    if (rc == 0) {
        what = "reserve space for";
        rc = posix_fallocate(fd, 0, (off_t)size);
        /* A file system without fallocate (some NFS and Lustre versions) just goes on. */
        if (rc == EOPNOTSUPP || rc == ENOSYS || rc == EINVAL) rc = ftruncate(fd, (off_t)size) == 0 ? 0 : errno;
    }
    int64_t at = 0;
    const int64_t in_memory = (int64_t)(box.cap < size ? box.cap : size); /* the rest is zeros */
    for (int i = 0; rc == 0 && i <= n_vec; i++) {
        int64_t end = i < n_vec ? cuts[i] : (int64_t)size;
        if (end > in_memory) end = in_memory;
        what = "write";
        if (end > at && pwrite_all(fd, image + at, (size_t)(end - at), (off_t)at) != 0) rc = errno;
        if (i < n_vec) at = cuts[i] + vec_bytes;
    }
    if (rc == 0) what = "fsync", rc = fsync(fd) == 0 ? 0 : errno;
    if (fd >= 0 && close(fd) != 0 && rc == 0) what = "close", rc = errno;
    free(image);
    if (rc != 0) {
        snprintf(err, errlen, "cannot %s checkpoint %s (%llu bytes): %s", what, partial, (unsigned long long)size,
                 strerror(rc));
        return -1;
    }
    return 0;
}

/* This rank's shard [lo, hi) of one vector into the file at the vector's address. */
static int write_shard(int fd, int64_t addr, const float *shard, size_t lo, size_t hi)
{
    return pwrite_all(fd, shard, (hi - lo) * sizeof(float), (off_t)(addr + (int64_t)(lo * sizeof(float))));
}

/* This rank's shards of θ, m and v: open, pwrite, fsync (its own data is on disk whatever
 * rank 0 does next), close. Returns 0, or -1 with err naming the errno. */
static int write_shards(const char *partial, const float *params, const mt_checkpoint_shard *sh, int optim,
                        const int64_t addr[3], int rank, char *err, size_t errlen)
{
    if (sh->hi == sh->lo) return 0;
    int fd = open(partial, O_WRONLY | O_CLOEXEC);
    const char *what = "open";
    int ok = fd >= 0;
    if (ok) {
        what = "write";
        ok = write_shard(fd, addr[0], params + sh->lo, sh->lo, sh->hi) == 0 &&
             (!optim || (write_shard(fd, addr[1], sh->m_shard, sh->lo, sh->hi) == 0 &&
                         write_shard(fd, addr[2], sh->v_shard, sh->lo, sh->hi) == 0));
        if (ok) what = "fsync", ok = fsync(fd) == 0;
    }
    int saved = errno;
    if (fd >= 0 && close(fd) != 0 && ok) what = "close", ok = 0, saved = errno;
    if (!ok)
        snprintf(err, errlen, "cannot %s checkpoint %s on rank %d: %s", what, partial, rank, strerror(saved));
    return ok ? 0 : -1;
}

int mt_checkpoint_write(const char *path, const mt_model *m, const float *params, const mt_checkpoint_shard *sh,
                        const mt_checkpoint *ck, char *err, size_t errlen)
{
    _Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the ranks write float32 LE bytes as they are");
    const size_t lo = sh->lo, hi = sh->hi;
    const int parallel = sh->comm != MPI_COMM_NULL;
    int rank = 0;
    if (parallel) MPI_Comm_rank(sh->comm, &rank);
    char partial[MT_H5_PATH_LEN];
    snprintf(partial, sizeof partial, "%s.partial", path);
    err[0] = '\0';
    mt_h5_quiet();
    const int optim = sh->m_shard != NULL;

    /* Nothing non-finite is ever written: a NaN checkpoint would be resumed and would push
     * the good ones out of the rotation. */
    long bad = first_non_finite(params + lo, hi - lo);
    const char *which = "/params";
    if (bad < 0 && optim && (bad = first_non_finite(sh->m_shard, hi - lo)) >= 0) which = "/optim/m";
    if (bad < 0 && optim && (bad = first_non_finite(sh->v_shard, hi - lo)) >= 0) which = "/optim/v";
    if (bad >= 0)
        snprintf(err, errlen, "refusing to write checkpoint %s: %s[%zu] is not finite (the run diverged)", path, which,
                 lo + (size_t)bad);
    if (!all_ok(sh->comm, bad < 0)) {
        if (!err[0]) snprintf(err, errlen, "refusing to write checkpoint %s: another rank holds non-finite values", path);
        return -1;
    }

    /* Checksums of the shards, combined in rank order: collectives of their own. */
    const uint32_t crc[3] = {shard_crc(sh->comm, params + lo, hi - lo),
                             optim ? shard_crc(sh->comm, sh->m_shard, hi - lo) : 0,
                             optim ? shard_crc(sh->comm, sh->v_shard, hi - lo) : 0};

    /* Rank 0 lays out the file (HDF5 in memory, written with POSIX calls) and reserves its
     * space; every rank then writes its shards with pwrite + fsync. No rank is ever inside a
     * collective HDF5 call when another fails (HDF5 1.10's parallel error paths hang or
     * crash, measured with tests/fault/faultshim.c), every I/O error is an errno, and the
     * ranks agree on the outcome with one MPI_LAND after each stage. */
    int64_t layout[4] = {0, -1, -1, -1}; /* ok, then the vectors' addresses */
    if (rank == 0) layout[0] = create_layout(partial, m, ck, optim, crc, layout + 1, err, errlen) == 0;
    if (parallel)
        MT_CHECK(MPI_Bcast(layout, 4, MPI_INT64_T, 0, sh->comm) == MPI_SUCCESS, "MPI_Bcast of the checkpoint layout failed");
    int ok = layout[0] == 1;
    if (ok) ok = all_ok(sh->comm, write_shards(partial, params, sh, optim, layout + 1, rank, err, errlen) == 0);
    /* Only when every rank's part is on disk does rank 0 make it the checkpoint. */
    if (ok && rank == 0 && mt_fsync_rename(partial, path, err, errlen) != 0) ok = 0;
    ok = all_ok(sh->comm, ok);
    if (!ok) {
        if (rank == 0) unlink(partial);
        if (!err[0]) snprintf(err, errlen, "cannot write checkpoint %s: another rank failed (see its message)", path);
        return -1;
    }
    return 0;
}

void mt_checkpoint_free(mt_checkpoint *ck)
{
    if (!ck) return;
    free(ck->config);
    free(ck->params);
    free(ck->m);
    free(ck->v);
    free(ck->tensors);
    memset(ck, 0, sizeof *ck);
}

/* The static kind string for a stored kind name (so mt_tensor_info.kind stays a literal),
 * or NULL for a kind this metatrain does not know. */
static const char *known_kind(const char *kind)
{
    static const char *const kinds[] = {"linear", "conv2d", "batchnorm", "lr"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kind, kinds[i]) == 0) return kinds[i];
    return NULL;
}

/* Checks the stored datatype of /model against table_row, member by member (name, class,
 * size, offset within the row), so that converting it cannot read outside a row. */
static int check_table_type(hid_t ftype, char *why, size_t whylen)
{
    static const struct {
        const char *name;
        H5T_class_t cls;
        size_t size;
    } want[] = {{"name", H5T_STRING, 2 * MT_NAME_LEN}, {"kind", H5T_STRING, MT_NAME_LEN}, {"offset", H5T_INTEGER, 8},
                {"size", H5T_INTEGER, 8},           {"ndim", H5T_INTEGER, 4},           {"shape", H5T_ARRAY, 16}};
    const int n_want = (int)(sizeof want / sizeof want[0]);
    if (H5Tget_class(ftype) != H5T_COMPOUND) {
        snprintf(why, whylen, "/model is %s, expected a compound table", mt_h5_class_name(H5Tget_class(ftype)));
        return -1;
    }
    const size_t row = H5Tget_size(ftype);
    const int n = H5Tget_nmembers(ftype);
    if (n != n_want) {
        snprintf(why, whylen, "/model rows have %d fields, expected %d (name, kind, offset, size, ndim, shape)", n,
                 n_want);
        return -1;
    }
    int ok = 1;
    for (int i = 0; ok && i < n; i++) {
        char *name = H5Tget_member_name(ftype, (unsigned)i);
        hid_t mt = H5Tget_member_type(ftype, (unsigned)i);
        const size_t off = H5Tget_member_offset(ftype, (unsigned)i);
        const size_t size = mt >= 0 ? H5Tget_size(mt) : 0;
        const H5T_class_t cls = mt >= 0 ? H5Tget_class(mt) : H5T_NO_CLASS;
        if (!name || strcmp(name, want[i].name) != 0) {
            snprintf(why, whylen, "/model field %d is \"%s\", expected \"%s\"", i, name ? name : "?", want[i].name);
            ok = 0;
        } else if (cls != want[i].cls || size != want[i].size || off > row || size > row - off ||
                   (cls == H5T_STRING && H5Tis_variable_str(mt) != 0)) {
            snprintf(why, whylen, "/model field %s is %s of %zu bytes at byte %zu of a %zu-byte row, expected %s of %zu bytes",
                     name, mt_h5_class_name(cls), size, off, row, mt_h5_class_name(want[i].cls), want[i].size);
            ok = 0;
        } else if (cls == H5T_ARRAY) {
            hsize_t dims[2] = {0, 0};
            hid_t base = H5Tget_super(mt);
            ok = H5Tget_array_ndims(mt) == 1 && H5Tget_array_dims2(mt, dims) == 1 && dims[0] == 4 && base >= 0 &&
                 H5Tget_class(base) == H5T_INTEGER && H5Tget_size(base) == 4;
            if (base >= 0) H5Tclose(base);
            if (!ok) snprintf(why, whylen, "/model field shape is not an array of 4 32-bit integers");
        }
        if (mt >= 0) H5Tclose(mt);
        if (name) H5free_memory(name);
    }
    return ok ? 0 : -1;
}

/* 1 iff s is a tensor name as the models make them: letters, digits, '.', '_', '-'. */
static int plain_name(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '.' ||
              *s == '_' || *s == '-'))
            return 0;
    return 1;
}

/* Checks one stored row: a name, a known kind, ndim 1..4 positive extents (unused ones 0),
 * and an offset and size that continue the tiling at *next (updated). */
static int check_row(const table_row *r, int i, size_t *next, char *why, size_t whylen)
{
    if (!memchr(r->name, '\0', sizeof r->name) || !plain_name(r->name)) {
        snprintf(why, whylen, "layout table row %d has no valid tensor name", i);
        return -1;
    }
    if (!memchr(r->kind, '\0', sizeof r->kind) || !known_kind(r->kind)) {
        snprintf(why, whylen, "layout table row %d (%s) has kind \"%.*s\": not one of linear, conv2d, batchnorm, lr", i,
                 r->name, (int)sizeof r->kind, r->kind);
        return -1;
    }
    if (r->ndim < 1 || r->ndim > 4) {
        snprintf(why, whylen, "layout table row %d (%s) has ndim %d, expected 1 to 4", i, r->name, (int)r->ndim);
        return -1;
    }
    uint64_t prod = 1;
    for (int j = 0; j < 4; j++) {
        if (j < r->ndim ? r->shape[j] <= 0 : r->shape[j] != 0) {
            snprintf(why, whylen, "layout table row %d (%s) has extent %d in dimension %d of %d", i, r->name,
                     (int)r->shape[j], j + 1, (int)r->ndim);
            return -1;
        }
        if (j < r->ndim) prod *= (uint64_t)r->shape[j]; /* each factor < 2^31, prod kept below 2^31 */
        if (prod > (uint64_t)MT_CKPT_MAX_PARAMS) {
            snprintf(why, whylen, "layout table row %d (%s) has more than %ld values", i, r->name, MT_CKPT_MAX_PARAMS);
            return -1;
        }
    }
    if (r->offset < 0 || r->size < 0 || (uint64_t)r->offset != *next || (uint64_t)r->size != prod) {
        snprintf(why, whylen,
                 "layout table row %d (%s) has offset %lld and size %lld, expected offset %zu and size %llu "
                 "(the rows tile the parameters in order)",
                 i, r->name, (long long)r->offset, (long long)r->size, *next, (unsigned long long)prod);
        return -1;
    }
    if (prod > (uint64_t)MT_CKPT_MAX_PARAMS - *next) {
        snprintf(why, whylen, "the layout table describes more than %ld parameters", MT_CKPT_MAX_PARAMS);
        return -1;
    }
    *next += (size_t)prod;
    return 0;
}

/* Reads the /model table into ck->tensors after checking its datatype, its shape (1 to
 * MT_CKPT_MAX_TENSORS rows) and every row; ck->n_params becomes the total it describes. */
static int read_table(hid_t file, mt_checkpoint *ck, char *why, size_t whylen)
{
    htri_t exists = H5Lexists(file, "model", H5P_DEFAULT);
    hid_t d = exists > 0 ? H5Dopen2(file, "model", H5P_DEFAULT) : -1;
    if (d < 0) {
        snprintf(why, whylen, exists > 0 ? "/model is not a readable dataset" : "no /model layout table");
        return -1;
    }
    hid_t space = H5Dget_space(d), ftype = H5Dget_type(d), type = table_type();
    hsize_t n = 0;
    int ok = space >= 0 && ftype >= 0 && type >= 0;
    if (!ok) {
        snprintf(why, whylen, "unreadable /model layout table (%s)", mt_h5_reason());
    } else if (H5Sget_simple_extent_type(space) != H5S_SIMPLE || H5Sget_simple_extent_ndims(space) != 1) {
        snprintf(why, whylen, "/model has %d dimensions, expected 1", H5Sget_simple_extent_ndims(space));
        ok = 0;
    } else if (H5Sget_simple_extent_dims(space, &n, NULL) != 1 || n < 1 || n > MT_CKPT_MAX_TENSORS) {
        snprintf(why, whylen, "/model has %llu rows, expected 1 to %d", (unsigned long long)n, MT_CKPT_MAX_TENSORS);
        ok = 0;
    } else {
        ok = check_table_type(ftype, why, whylen) == 0;
    }
    table_row *rows = ok ? mt_calloc((size_t)n, sizeof *rows) : NULL;
    if (ok && H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) < 0) {
        snprintf(why, whylen, "unreadable /model layout table (%s)", mt_h5_reason());
        ok = 0;
    }
    size_t next = 0;
    for (int i = 0; ok && i < (int)n; i++) ok = check_row(&rows[i], i, &next, why, whylen) == 0;
    if (ok) {
        ck->n_tensors = (int)n;
        ck->n_params = next;
        ck->tensors = mt_calloc((size_t)n, sizeof *ck->tensors);
        for (int i = 0; i < (int)n; i++) {
            mt_tensor_info *t = &ck->tensors[i];
            snprintf(t->name, sizeof t->name, "%s", rows[i].name);
            t->kind = known_kind(rows[i].kind);
            t->offset = (size_t)rows[i].offset;
            t->size = (size_t)rows[i].size;
            t->ndim = rows[i].ndim;
            for (int j = 0; j < 4; j++) t->shape[j] = rows[i].shape[j];
        }
    }
    free(rows);
    if (type >= 0) H5Tclose(type);
    if (ftype >= 0) H5Tclose(ftype);
    if (space >= 0) H5Sclose(space);
    H5Dclose(d);
    return ok ? 0 : -1;
}

/* Reads the float32 vector `name`, which must hold exactly n values (the /model table's
 * total), stored contiguously in full (so no more is allocated than the file holds: its size
 * is file_size), into a new buffer *out. Version 2 and later check the stored CRC-32. */
static int read_vector(hid_t file, const char *name, int version, size_t n, off_t file_size, float **out, char *why,
                       size_t whylen)
{
    htri_t exists = H5Lexists(file, name, H5P_DEFAULT);
    hid_t d = exists > 0 ? H5Dopen2(file, name, H5P_DEFAULT) : -1;
    if (d < 0) {
        snprintf(why, whylen, exists > 0 ? "/%s is not a readable dataset" : "no /%s dataset", name);
        return -1;
    }
    hid_t space = H5Dget_space(d), type = H5Dget_type(d), dcpl = H5Dget_create_plist(d);
    int ok = space >= 0 && type >= 0 && dcpl >= 0;
    hsize_t len = 0;
    if (!ok) {
        snprintf(why, whylen, "/%s cannot be read: %s", name, mt_h5_reason());
    } else if (H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != sizeof(float)) {
        snprintf(why, whylen, "/%s is not a float32 vector: its element type is %s of %zu bytes", name,
                 mt_h5_class_name(H5Tget_class(type)), H5Tget_size(type));
        ok = 0;
    } else if (H5Sget_simple_extent_type(space) != H5S_SIMPLE || H5Sget_simple_extent_ndims(space) != 1) {
        snprintf(why, whylen, "/%s has %d dimensions, expected 1", name, H5Sget_simple_extent_ndims(space));
        ok = 0;
    } else if (H5Sget_simple_extent_dims(space, &len, NULL) != 1 || len != (hsize_t)n) {
        snprintf(why, whylen, "/%s holds %llu values, the /model table describes %zu", name, (unsigned long long)len, n);
        ok = 0;
    } else if (H5Pget_layout(dcpl) != H5D_CONTIGUOUS ||
               H5Dget_storage_size(d) != (hsize_t)n * sizeof(float) || (hsize_t)n * sizeof(float) > (hsize_t)file_size) {
        snprintf(why, whylen, "/%s does not store its %zu values contiguously in the file (%llu bytes stored)", name, n,
                 (unsigned long long)H5Dget_storage_size(d));
        ok = 0;
    }
    if (ok) {
        *out = malloc(n * sizeof(float));
        if (!*out) {
            snprintf(why, whylen, "/%s: cannot allocate %zu values: %s", name, n, strerror(errno));
            ok = 0;
        }
    }
    if (ok && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0) {
        snprintf(why, whylen, "/%s cannot be read: %s (a checksum error means the file is damaged)", name,
                 mt_h5_reason());
        ok = 0;
    }
    if (ok && version >= 2) {
        uint64_t want = 0;
        char attr[256];
        uint32_t got = mt_checkpoint_crc32(0, *out, n * sizeof(float));
        if (mt_h5_attr_get_u64(d, "crc32", &want, attr, sizeof attr) != 0) {
            snprintf(why, whylen, "/%s: %s", name, attr);
            ok = 0;
        } else if (want != got) {
            snprintf(why, whylen, "/%s fails its checksum (crc32 %08x, stored %08llx): the file is damaged", name,
                     got, (unsigned long long)want);
            ok = 0;
        }
    }
    if (dcpl >= 0) H5Pclose(dcpl);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    H5Dclose(d);
    return ok ? 0 : -1;
}

/* An optional string attribute of versions before 3: absent is "" (0), present must read. */
static int get_str(hid_t file, const char *name, int required, size_t max, char **value, char *why, size_t whylen)
{
    *value = NULL;
    if (!required && H5Aexists(file, name) == 0) return 0;
    return mt_h5_attr_get_str(file, name, max, value, why, whylen);
}

/* Reads and range-checks the root attributes into ck; *has_crc and *stored_crc receive
 * meta_crc32 (version 3 requires it). */
static int read_root(hid_t file, mt_checkpoint *ck, int *has_crc, uint64_t *stored_crc, char *why, size_t whylen)
{
    char *format = NULL, *pv = NULL, *dataset = NULL, *run_id = NULL;
    int64_t version = 0, step = 0, world = 0, shape[3] = {0, 0, 0};
    int ok = 0;
    *has_crc = 0;
    if (mt_h5_attr_get_str(file, "format", 256, &format, why, whylen) != 0) {
        /* why says what the attribute is (missing, another type) */
    } else if (strcmp(format, MT_CKPT_FORMAT) != 0) {
        snprintf(why, whylen, "format attribute is \"%s\", expected \"%s\"", format, MT_CKPT_FORMAT);
    } else if (mt_h5_attr_get_i64(file, "format_version", &version, why, whylen) != 0) {
    } else if (version < 1 || version > MT_CKPT_VERSION) {
        snprintf(why, whylen, "format_version %lld is not supported (this metatrain reads versions 1 to %d)",
                 (long long)version, MT_CKPT_VERSION);
    } else if (mt_h5_attr_get_i64(file, "step", &step, why, whylen) != 0) {
    } else if (step < 0 || step > MT_CKPT_MAX_STEP) {
        snprintf(why, whylen, "attribute step is %lld, expected 0 to %ld", (long long)step, MT_CKPT_MAX_STEP);
    } else if (mt_h5_attr_get_u64(file, "seed", &ck->seed, why, whylen) != 0) {
    } else if (mt_h5_attr_get_i64(file, "world_size", &world, why, whylen) != 0) {
    } else if (world < 1 || world > MT_CKPT_MAX_WORLD) {
        snprintf(why, whylen, "attribute world_size is %lld, expected 1 to %d", (long long)world, MT_CKPT_MAX_WORLD);
    } else if (mt_h5_attr_get_str(file, "program_version", sizeof ck->program_version - 1, &pv, why, whylen) != 0) {
    } else if (mt_h5_attr_get_str(file, "config", MT_CKPT_MAX_CONFIG, &ck->config, why, whylen) != 0) {
    } else if (get_str(file, "dataset", version >= 3, sizeof ck->dataset - 1, &dataset, why, whylen) != 0) {
    } else if (get_str(file, "run_id", version >= 3, sizeof ck->run_id - 1, &run_id, why, whylen) != 0) {
    } else if (version >= 3 && mt_h5_attr_get_i64s(file, "input_shape", shape, 3, why, whylen) != 0) {
    } else if (version >= 3 && (shape[0] < 1 || shape[1] < 1 || shape[2] < 1 || shape[0] > MT_CKPT_MAX_PARAMS ||
                                shape[1] > MT_CKPT_MAX_PARAMS / shape[0] ||
                                shape[2] > MT_CKPT_MAX_PARAMS / (shape[0] * shape[1]))) {
        snprintf(why, whylen, "attribute input_shape is %lld x %lld x %lld, expected positive extents", (long long)shape[0],
                 (long long)shape[1], (long long)shape[2]);
    } else if (version >= 3 && mt_h5_attr_get_u64(file, "meta_crc32", stored_crc, why, whylen) != 0) {
    } else {
        ok = 1;
        *has_crc = version >= 3;
    }
    ck->version = (int)version;
    ck->step = (long)step;
    ck->world_size = (int)world;
    for (int i = 0; i < 3; i++) ck->input_shape[i] = (int)shape[i];
    snprintf(ck->program_version, sizeof ck->program_version, "%s", pv ? pv : "");
    snprintf(ck->dataset, sizeof ck->dataset, "%s", dataset ? dataset : "");
    snprintf(ck->run_id, sizeof ck->run_id, "%s", run_id ? run_id : "");
    free(format);
    free(pv);
    free(dataset);
    free(run_id);
    return ok ? 0 : -1;
}

/* The checks across fields: the input shape against the first tensor, the metadata
 * checksum (version 3), and the config text, which must parse and name the seed of the attribute. */
static int check_meta(const mt_checkpoint *ck, const char *path, int has_crc, uint64_t stored, char *why,
                      size_t whylen)
{
    const mt_tensor_info *first = &ck->tensors[0];
    const long in = (long)ck->input_shape[0] * ck->input_shape[1] * ck->input_shape[2];
    if (ck->input_shape[0] > 0 && ((strcmp(first->kind, "linear") == 0 && first->ndim == 2 && first->shape[1] != in) ||
                                   (strcmp(first->kind, "conv2d") == 0 && first->ndim == 4 &&
                                    first->shape[1] != ck->input_shape[0]))) {
        snprintf(why, whylen, "attribute input_shape %dx%dx%d does not fit the first tensor %s", ck->input_shape[0],
                 ck->input_shape[1], ck->input_shape[2], first->name);
        return -1;
    }
    if (has_crc && stored != meta_crc32(ck)) {
        snprintf(why, whylen,
                 "the metadata checksum fails (meta_crc32 %08x, stored %08llx): its attributes or /model table "
                 "were changed or damaged",
                 meta_crc32(ck), (unsigned long long)stored);
        return -1;
    }
    mt_config cfg;
    char origin[MT_H5_PATH_LEN + 16], msg[MT_ERR_LEN];
    snprintf(origin, sizeof origin, "%s:/config", path);
    mt_config_defaults(&cfg);
    if (mt_config_parse(&cfg, ck->config, origin, msg, sizeof msg) != 0) {
        snprintf(why, whylen, "its config attribute does not parse (the file is damaged): %.300s", msg);
        return -1;
    }
    if (cfg.seed != ck->seed) {
        snprintf(why, whylen, "its config says seed = %llu but its seed attribute is %llu (the file is damaged)",
                 (unsigned long long)cfg.seed, (unsigned long long)ck->seed);
        return -1;
    }
    return 0;
}

int mt_checkpoint_read(const char *path, mt_checkpoint *ck, char *err, size_t errlen)
{
    char why[1024] = "";
    memset(ck, 0, sizeof *ck);
    mt_h5_quiet();
    struct stat st;
    if (stat(path, &st) != 0 || access(path, R_OK) != 0) {
        snprintf(err, errlen, "cannot read checkpoint %s: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s is a directory, not a checkpoint file", path);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s is not a regular file, so not a checkpoint", path);
        return -1;
    }
    if (H5Fis_hdf5(path) <= 0) {
        snprintf(err, errlen, "%s is not a metatrain checkpoint: not an HDF5 file (or truncated)", path);
        return -1;
    }
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        snprintf(err, errlen, "cannot open checkpoint %s: %s", path, mt_h5_reason());
        return -1;
    }
    int has_crc = 0;
    uint64_t stored_crc = 0;
    int ok = read_root(file, ck, &has_crc, &stored_crc, why, sizeof why) == 0 &&
             read_table(file, ck, why, sizeof why) == 0 && check_meta(ck, path, has_crc, stored_crc, why, sizeof why) == 0 &&
             read_vector(file, "params", ck->version, ck->n_params, st.st_size, &ck->params, why, sizeof why) == 0;
    ck->meta_checked = has_crc;
    /* Optimizer state: version 2 files written by training have both moments. */
    htri_t optim = ok && ck->version >= 2 ? H5Lexists(file, "optim", H5P_DEFAULT) : 0;
    if (optim < 0) {
        snprintf(why, sizeof why, "/optim cannot be read: %s", mt_h5_reason());
        ok = 0;
    } else if (optim > 0) {
        ok = read_vector(file, "optim/m", ck->version, ck->n_params, st.st_size, &ck->m, why, sizeof why) == 0 &&
             read_vector(file, "optim/v", ck->version, ck->n_params, st.st_size, &ck->v, why, sizeof why) == 0;
    }
    if (H5Fclose(file) < 0 && ok) {
        snprintf(why, sizeof why, "close failed: %s", mt_h5_reason());
        ok = 0;
    }
    if (!ok) {
        snprintf(err, errlen, "checkpoint %s is not usable: %s", path, why);
        mt_checkpoint_free(ck);
        return -1;
    }
    return 0;
}

int mt_checkpoint_match_model(const mt_checkpoint *ck, const mt_model *m, char *err, size_t errlen)
{
    int n = mt_model_tensor_count(m);
    if (n != ck->n_tensors || m->n_params != ck->n_params) {
        snprintf(err, errlen, "checkpoint holds %d tensors / %zu parameters, the model has %d / %zu", ck->n_tensors,
                 ck->n_params, n, m->n_params);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        mt_tensor_info t;
        mt_model_tensor(m, i, &t);
        const mt_tensor_info *s = &ck->tensors[i];
        if (strcmp(t.name, s->name) != 0 || t.offset != s->offset || t.size != s->size || t.ndim != s->ndim ||
            memcmp(t.shape, s->shape, sizeof t.shape) != 0) {
            snprintf(err, errlen, "checkpoint tensor %d is %s (offset %zu, size %zu), the model's is %s (offset %zu, size %zu)",
                     i, s->name, s->offset, s->size, t.name, t.offset, t.size);
            return -1;
        }
    }
    if (ck->input_shape[0] > 0 &&
        (ck->input_shape[0] != m->in_c || ck->input_shape[1] != m->in_h || ck->input_shape[2] != m->in_w)) {
        snprintf(err, errlen, "checkpoint was trained on inputs of %dx%dx%d (CxHxW), the model takes %dx%dx%d",
                 ck->input_shape[0], ck->input_shape[1], ck->input_shape[2], m->in_c, m->in_h, m->in_w);
        return -1;
    }
    return 0;
}

/* Step of a file name exactly as mt_checkpoint_path writes it ("ckpt-" + %08ld + ".h5"),
 * or -1 for any other name. */
static long ckpt_step(const char *name)
{
    if (strncmp(name, "ckpt-", 5) != 0) return -1;
    const char *digits = name + 5;
    size_t n = strspn(digits, "0123456789");
    if (n < 8 || n > 18 || strcmp(digits + n, ".h5") != 0 || (n > 8 && digits[0] == '0')) return -1;
    long step = 0;
    for (size_t i = 0; i < n; i++) step = step * 10 + (digits[i] - '0');
    return step;
}

typedef struct {
    long step;
    char *name;
} ckpt_entry;

static int compare_steps(const void *a, const void *b)
{
    long x = ((const ckpt_entry *)a)->step, y = ((const ckpt_entry *)b)->step;
    return (x > y) - (x < y);
}

/* The checkpoints of dir, sorted by step (ascending), into a malloc'd array (*out, count
 * returned; names malloc'd), or -1 with err. */
static long list_ckpts(const char *dir, ckpt_entry **out, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot list %s: %s", dir, strerror(errno));
        return -1;
    }
    size_t n = 0, cap = 16;
    ckpt_entry *entries = mt_malloc(cap * sizeof *entries);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long step = ckpt_step(e->d_name);
        if (step < 0) continue;
        if (n == cap) {
            cap *= 2;
            ckpt_entry *grown = realloc(entries, cap * sizeof *entries);
            MT_CHECK(grown, "out of memory listing %s", dir);
            entries = grown;
        }
        entries[n].step = step;
        entries[n].name = strdup(e->d_name);
        MT_CHECK(entries[n].name, "out of memory listing %s", dir);
        n++;
    }
    closedir(d);
    qsort(entries, n, sizeof *entries, compare_steps);
    *out = entries;
    return (long)n;
}

static void free_ckpts(ckpt_entry *entries, long n)
{
    for (long i = 0; i < n; i++) free(entries[i].name);
    free(entries);
}

int mt_checkpoint_read_run_id(const char *path, char *out, size_t len)
{
    out[0] = '\0';
    mt_h5_quiet();
    if (H5Fis_hdf5(path) <= 0) return -1;
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) return -1;
    char *id = NULL;
    if (H5Aexists(file, "run_id") > 0 && mt_h5_attr_read_str(file, "run_id", &id) == 0) snprintf(out, len, "%s", id);
    free(id);
    H5Fclose(file);
    return 0;
}

int mt_checkpoint_prune(const char *dir, int keep, const char *run_id, char *err, size_t errlen)
{
    ckpt_entry *entries;
    long n = list_ckpts(dir, &entries, err, errlen);
    if (n < 0) return -1;
    /* Newest first: the first `keep` of this run stay. */
    int deleted = 0, status = 0, kept = 0;
    for (long i = n - 1; i >= 0; i--) {
        char path[MT_H5_PATH_LEN], id[MT_RUN_ID_LEN];
        snprintf(path, sizeof path, "%s/%s", dir, entries[i].name);
        if (!run_id[0] || mt_checkpoint_read_run_id(path, id, sizeof id) != 0 || strcmp(id, run_id) != 0) continue;
        if (kept < keep) {
            kept++;
            continue;
        }
        if (unlink(path) != 0) {
            snprintf(err, errlen, "cannot delete old checkpoint %s: %s", path, strerror(errno));
            status = -1;
            break;
        }
        deleted++;
    }
    free_ckpts(entries, n);
    return status ? -1 : deleted;
}

int mt_checkpoint_check_finite(const mt_checkpoint *ck, char *err, size_t errlen)
{
    const float *v[3] = {ck->params, ck->m, ck->v};
    const char *names[3] = {"/params", "/optim/m", "/optim/v"};
    for (int k = 0; k < 3; k++) {
        long bad = v[k] ? first_non_finite(v[k], ck->n_params) : -1;
        if (bad >= 0) {
            snprintf(err, errlen, "%s[%ld] is %g: the checkpoint holds non-finite values", names[k], bad,
                     (double)v[k][bad]);
            return -1;
        }
    }
    return 0;
}

void mt_checkpoint_new_run_id(char out[MT_RUN_ID_LEN])
{
    unsigned char bytes[16];
    FILE *f = fopen("/dev/urandom", "rb");
    size_t got = f ? fread(bytes, 1, sizeof bytes, f) : 0;
    if (f) fclose(f);
    if (got != sizeof bytes) { /* no random source: time and pid still differ between runs */
        uint64_t x = (uint64_t)time(NULL) * 6364136223846793005ull ^ (uint64_t)getpid();
        for (size_t i = 0; i < sizeof bytes; i++, x = x * 6364136223846793005ull + 1442695040888963407ull)
            bytes[i] = (unsigned char)(x >> 56);
    }
    for (size_t i = 0; i < sizeof bytes; i++) snprintf(out + 2 * i, 3, "%02x", bytes[i]);
}

long mt_checkpoint_steps(const char *dir, long *steps, long max)
{
    char err[64];
    ckpt_entry *entries;
    long n = list_ckpts(dir, &entries, err, sizeof err);
    if (n < 0) return 0; /* no directory: no checkpoints */
    for (long i = 0; i < n && i < max; i++) steps[i] = entries[n - 1 - i].step;
    free_ckpts(entries, n);
    return n < max ? n : max;
}
