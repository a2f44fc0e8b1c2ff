/* checkpoint.c — writing and reading checkpoint files (see checkpoint.h). */
#define _POSIX_C_SOURCE 200809L
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
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

static int write_params(hid_t file, const float *params, size_t P)
{
    hsize_t dims[1] = {P}, chunk[1] = {P < (1u << 20) ? P : (1u << 20)};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int ok = space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, 1, chunk) >= 0 && H5Pset_fletcher32(dcpl) >= 0 &&
             H5Pset_obj_track_times(dcpl, 0) >= 0;
    hid_t d = ok ? H5Dcreate2(file, "params", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
    ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, params) >= 0;
    if (d >= 0) H5Dclose(d);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return ok ? 0 : -1;
}

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

int mt_checkpoint_write(const char *path, const mt_model *m, const float *params, const mt_checkpoint *ck,
                        char *err, size_t errlen)
{
    char partial[MT_H5_PATH_LEN];
    snprintf(partial, sizeof partial, "%s.partial", path);
    mt_h5_quiet();
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (fcpl >= 0) H5Pset_obj_track_times(fcpl, 0);
    hid_t file = H5Fcreate(partial, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    if (file < 0) snprintf(err, errlen, "cannot create checkpoint %s: %s", partial, mt_h5_reason());
    if (fcpl >= 0) H5Pclose(fcpl); /* after taking the reason: a successful call clears the stack */
    if (file < 0) return -1;
    int ok = mt_h5_attr_write_str(file, "format", MT_CKPT_FORMAT) == 0 &&
             mt_h5_attr_write_i64(file, "format_version", MT_CKPT_VERSION) == 0 &&
             mt_h5_attr_write_i64(file, "step", ck->step) == 0 &&
             mt_h5_attr_write_u64(file, "seed", ck->seed) == 0 &&
             mt_h5_attr_write_i64(file, "world_size", ck->world_size) == 0 &&
             mt_h5_attr_write_str(file, "program_version", MT_VERSION) == 0 &&
             mt_h5_attr_write_str(file, "config", ck->config ? ck->config : "") == 0 &&
             write_params(file, params, m->n_params) == 0 && write_table(file, m) == 0;
    if (H5Fclose(file) < 0) ok = 0;
    if (!ok) {
        snprintf(err, errlen, "cannot write checkpoint %s: %s", partial, mt_h5_reason());
        unlink(partial);
        return -1;
    }
    if (mt_fsync_rename(partial, path, err, errlen) != 0) {
        unlink(partial);
        return -1;
    }
    return 0;
}

void mt_checkpoint_free(mt_checkpoint *ck)
{
    if (!ck) return;
    free(ck->config);
    free(ck->params);
    free(ck->tensors);
    memset(ck, 0, sizeof *ck);
}

/* The static kind string for a stored kind name (so mt_tensor_info.kind stays a literal). */
static const char *known_kind(const char *kind)
{
    static const char *const kinds[] = {"linear", "conv2d", "batchnorm"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kind, kinds[i]) == 0) return kinds[i];
    return "unknown";
}

static int read_table(hid_t file, mt_checkpoint *ck, char *why, size_t whylen)
{
    hid_t d = H5Dopen2(file, "model", H5P_DEFAULT);
    if (d < 0) {
        snprintf(why, whylen, "no /model layout table");
        return -1;
    }
    hid_t space = H5Dget_space(d), type = table_type();
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    int ok = n > 0 && n < 100000;
    table_row *rows = ok ? mt_calloc((size_t)n, sizeof *rows) : NULL;
    ok = ok && H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) >= 0;
    if (ok) {
        ck->n_tensors = (int)n;
        ck->tensors = mt_calloc((size_t)n, sizeof *ck->tensors);
        for (int i = 0; i < n; i++) {
            mt_tensor_info *t = &ck->tensors[i];
            rows[i].name[sizeof rows[i].name - 1] = '\0';
            rows[i].kind[sizeof rows[i].kind - 1] = '\0';
            snprintf(t->name, sizeof t->name, "%s", rows[i].name);
            t->kind = known_kind(rows[i].kind);
            t->offset = (size_t)rows[i].offset;
            t->size = (size_t)rows[i].size;
            t->ndim = rows[i].ndim;
            for (int j = 0; j < 4; j++) t->shape[j] = rows[i].shape[j];
        }
    } else {
        snprintf(why, whylen, "unreadable /model layout table (%s)", mt_h5_reason());
    }
    free(rows);
    H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    H5Dclose(d);
    return ok ? 0 : -1;
}

static int read_params(hid_t file, mt_checkpoint *ck, char *why, size_t whylen)
{
    hid_t d = H5Dopen2(file, "params", H5P_DEFAULT);
    if (d < 0) {
        snprintf(why, whylen, "no /params dataset");
        return -1;
    }
    hid_t space = H5Dget_space(d);
    int ok = space >= 0 && H5Sget_simple_extent_ndims(space) == 1;
    hsize_t n = 0;
    if (ok) H5Sget_simple_extent_dims(space, &n, NULL);
    ok = ok && n > 0;
    if (!ok) snprintf(why, whylen, "/params is not a non-empty vector");
    if (ok) {
        ck->n_params = (size_t)n;
        ck->params = mt_malloc((size_t)n * sizeof(float));
        if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, ck->params) < 0) {
            snprintf(why, whylen, "/params cannot be read: %s (a checksum error means the file is damaged)",
                     mt_h5_reason());
            ok = 0;
        }
    }
    if (space >= 0) H5Sclose(space);
    H5Dclose(d);
    return ok ? 0 : -1;
}

/* Checks that the table tiles [0, n_params) in order with sizes matching shapes. */
static int check_table(const mt_checkpoint *ck, char *why, size_t whylen)
{
    size_t next = 0;
    for (int i = 0; i < ck->n_tensors; i++) {
        const mt_tensor_info *t = &ck->tensors[i];
        size_t prod = 1;
        for (int j = 0; j < t->ndim && j < 4; j++) prod *= (size_t)(t->shape[j] > 0 ? t->shape[j] : 0);
        if (t->offset != next || t->size != prod || t->ndim < 1 || t->ndim > 4) {
            snprintf(why, whylen, "layout table row %d (%s) is inconsistent", i, t->name);
            return -1;
        }
        next += t->size;
    }
    if (next != ck->n_params) {
        snprintf(why, whylen, "layout table covers %zu parameters but /params holds %zu", next, ck->n_params);
        return -1;
    }
    return 0;
}

int mt_checkpoint_read(const char *path, mt_checkpoint *ck, char *err, size_t errlen)
{
    char why[512] = "";
    memset(ck, 0, sizeof *ck);
    mt_h5_quiet();
    if (access(path, R_OK) != 0) {
        snprintf(err, errlen, "cannot read checkpoint %s: %s", path, strerror(errno));
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
    char *format = NULL;
    int64_t version = 0, step = 0, world = 0;
    uint64_t seed = 0;
    char *pv = NULL;
    int ok = 0;
    if (mt_h5_attr_read_str(file, "format", &format) != 0 || strcmp(format, MT_CKPT_FORMAT) != 0) {
        snprintf(why, sizeof why, "format attribute is %s%s%s, expected \"%s\"", format ? "\"" : "",
                 format ? format : "missing", format ? "\"" : "", MT_CKPT_FORMAT);
    } else if (mt_h5_attr_read_i64(file, "format_version", &version) != 0 || version != MT_CKPT_VERSION) {
        snprintf(why, sizeof why, "format_version %lld is not supported (this metatrain reads version %d)",
                 (long long)version, MT_CKPT_VERSION);
    } else if (mt_h5_attr_read_i64(file, "step", &step) != 0 || mt_h5_attr_read_u64(file, "seed", &seed) != 0 ||
               mt_h5_attr_read_i64(file, "world_size", &world) != 0 ||
               mt_h5_attr_read_str(file, "program_version", &pv) != 0 ||
               mt_h5_attr_read_str(file, "config", &ck->config) != 0) {
        snprintf(why, sizeof why, "missing or unreadable attribute (step, seed, world_size, program_version, config)");
    } else if (read_params(file, ck, why, sizeof why) == 0 && read_table(file, ck, why, sizeof why) == 0 &&
               check_table(ck, why, sizeof why) == 0) {
        ok = 1;
    }
    ck->step = (long)step;
    ck->seed = seed;
    ck->world_size = (int)world;
    snprintf(ck->program_version, sizeof ck->program_version, "%s", pv ? pv : "");
    free(format);
    free(pv);
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

int mt_checkpoint_prune(const char *dir, int keep, char *err, size_t errlen)
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
    int deleted = 0, status = 0;
    for (size_t i = 0; i + (size_t)keep < n; i++) {
        char path[MT_H5_PATH_LEN];
        snprintf(path, sizeof path, "%s/%s", dir, entries[i].name);
        if (unlink(path) != 0 && status == 0) {
            snprintf(err, errlen, "cannot delete old checkpoint %s: %s", path, strerror(errno));
            status = -1;
        } else {
            deleted++;
        }
    }
    for (size_t i = 0; i < n; i++) free(entries[i].name);
    free(entries);
    return status ? -1 : deleted;
}
