/* ioutil.c — HDF5 attribute helpers and durable renames (see ioutil.h). */
#define _POSIX_C_SOURCE 200809L
#include "ioutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

void mt_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static char reason[256];

/* The walk goes upward, from the most specific entry to the API call: keep the first. */
static herr_t take_first(unsigned n, const H5E_error2_t *e, void *found)
{
    (void)n;
    if (*(int *)found || !e->desc || !e->desc[0]) return 0;
    snprintf(reason, sizeof reason, "%s", e->desc);
    *(int *)found = 1;
    return 0;
}

const char *mt_h5_reason(void)
{
    int found = 0;
    snprintf(reason, sizeof reason, "unknown HDF5 error");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_first, &found);
    return reason;
}

static int attr_write(hid_t loc, const char *name, hid_t type, const void *value)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = space >= 0 ? H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int ok = a >= 0 && H5Awrite(a, type, value) >= 0;
    if (a >= 0 && H5Aclose(a) < 0) ok = 0;
    if (space >= 0) H5Sclose(space);
    return ok ? 0 : -1;
}

int mt_h5_attr_write_str(hid_t loc, const char *name, const char *value)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    if (type < 0) return -1;
    int ok = H5Tset_size(type, strlen(value) + 1) >= 0 && H5Tset_strpad(type, H5T_STR_NULLTERM) >= 0 &&
             attr_write(loc, name, type, value) == 0;
    H5Tclose(type);
    return ok ? 0 : -1;
}

int mt_h5_attr_write_i64(hid_t loc, const char *name, int64_t value)
{
    return attr_write(loc, name, H5T_STD_I64LE, &value) == 0 ? 0 : -1;
}

int mt_h5_attr_write_u64(hid_t loc, const char *name, uint64_t value)
{
    return attr_write(loc, name, H5T_STD_U64LE, &value) == 0 ? 0 : -1;
}

int mt_h5_attr_write_i64s(hid_t loc, const char *name, const int64_t *values, int n)
{
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t a = space >= 0 ? H5Acreate2(loc, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int ok = a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, values) >= 0;
    if (a >= 0 && H5Aclose(a) < 0) ok = 0;
    if (space >= 0) H5Sclose(space);
    return ok ? 0 : -1;
}

const char *mt_h5_class_name(H5T_class_t c)
{
    switch (c) {
    case H5T_INTEGER: return "an integer";
    case H5T_FLOAT: return "a floating-point number";
    case H5T_TIME: return "a time";
    case H5T_STRING: return "a string";
    case H5T_BITFIELD: return "a bitfield";
    case H5T_OPAQUE: return "an opaque value";
    case H5T_COMPOUND: return "a compound";
    case H5T_REFERENCE: return "a reference";
    case H5T_ENUM: return "an enum";
    case H5T_VLEN: return "a variable-length sequence";
    case H5T_ARRAY: return "an array type";
    default: return "of an unknown type";
    }
}

static void say(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t whylen, const char *fmt, ...)
{
    if (!why || whylen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* Opens attribute `name` of loc and checks that it holds n values (n = 0: a scalar) of
 * class want (an integer of at most 8 bytes; a fixed-length string). Returns the open
 * attribute and its file type in *ftype, or -1 with why. */
static hid_t attr_open(hid_t loc, const char *name, H5T_class_t want, int n, hid_t *ftype, char *why, size_t whylen)
{
    *ftype = -1;
    htri_t exists = H5Aexists(loc, name);
    if (exists <= 0) {
        if (exists == 0) say(why, whylen, "attribute %s is missing", name);
        else say(why, whylen, "attribute %s cannot be read: %s", name, mt_h5_reason());
        return -1;
    }
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t space = a >= 0 ? H5Aget_space(a) : -1;
    hid_t type = a >= 0 ? H5Aget_type(a) : -1;
    if (a < 0 || space < 0 || type < 0) {
        say(why, whylen, "attribute %s cannot be read: %s", name, mt_h5_reason());
    } else {
        H5S_class_t sc = H5Sget_simple_extent_type(space);
        int rank = H5Sget_simple_extent_ndims(space);
        hssize_t points = H5Sget_simple_extent_npoints(space);
        H5T_class_t tc = H5Tget_class(type);
        size_t size = H5Tget_size(type);
        int shape_ok = n == 0 ? (sc == H5S_SCALAR || (sc == H5S_SIMPLE && points == 1))
                              : (sc == H5S_SIMPLE && rank == 1 && points == n);
        if (!shape_ok) {
            if (n == 0) say(why, whylen, "attribute %s holds %lld values, expected one", name, (long long)points);
            else say(why, whylen, "attribute %s holds %lld values, expected %d", name, (long long)points, n);
        } else if (tc != want) {
            say(why, whylen, "attribute %s is %s, expected %s", name, mt_h5_class_name(tc), mt_h5_class_name(want));
        } else if (tc == H5T_INTEGER && (size < 1 || size > 8)) {
            say(why, whylen, "attribute %s is a %zu-byte integer, expected at most 8 bytes", name, size);
        } else if (tc == H5T_STRING && H5Tis_variable_str(type) != 0) {
            say(why, whylen, "attribute %s is a variable-length string, expected a fixed-length one", name);
        } else {
            H5Sclose(space);
            *ftype = type;
            return a;
        }
    }
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    if (a >= 0) H5Aclose(a);
    return -1;
}

/* Reads n integers (n = 0: one scalar) as memtype into value. */
static int attr_get_int(hid_t loc, const char *name, hid_t memtype, int n, void *value, char *why, size_t whylen)
{
    hid_t ftype;
    hid_t a = attr_open(loc, name, H5T_INTEGER, n, &ftype, why, whylen);
    if (a < 0) return -1;
    int ok = H5Aread(a, memtype, value) >= 0;
    if (!ok) say(why, whylen, "attribute %s cannot be read: %s", name, mt_h5_reason());
    H5Tclose(ftype);
    H5Aclose(a);
    return ok ? 0 : -1;
}

int mt_h5_attr_get_i64(hid_t loc, const char *name, int64_t *value, char *why, size_t whylen)
{
    return attr_get_int(loc, name, H5T_NATIVE_INT64, 0, value, why, whylen);
}

int mt_h5_attr_get_u64(hid_t loc, const char *name, uint64_t *value, char *why, size_t whylen)
{
    return attr_get_int(loc, name, H5T_NATIVE_UINT64, 0, value, why, whylen);
}

int mt_h5_attr_get_i64s(hid_t loc, const char *name, int64_t *values, int n, char *why, size_t whylen)
{
    return attr_get_int(loc, name, H5T_NATIVE_INT64, n, values, why, whylen);
}

int mt_h5_attr_get_str(hid_t loc, const char *name, size_t max, char **value, char *why, size_t whylen)
{
    *value = NULL;
    hid_t ftype;
    hid_t a = attr_open(loc, name, H5T_STRING, 0, &ftype, why, whylen);
    if (a < 0) return -1;
    size_t size = H5Tget_size(ftype);
    H5Tclose(ftype);
    if (size == 0 || size > max) {
        say(why, whylen, "attribute %s is a string of %zu bytes, expected 1 to %zu", name, size, max);
        H5Aclose(a);
        return -1;
    }
    hid_t mtype = H5Tcopy(H5T_C_S1);
    char *buf = malloc(size + 1);
    int ok = mtype >= 0 && buf && H5Tset_size(mtype, size + 1) >= 0 && H5Tset_strpad(mtype, H5T_STR_NULLTERM) >= 0 &&
             H5Aread(a, mtype, buf) >= 0;
    if (!ok) say(why, whylen, "attribute %s cannot be read: %s", name, buf ? mt_h5_reason() : "out of memory");
    if (mtype >= 0) H5Tclose(mtype);
    H5Aclose(a);
    if (!ok) {
        free(buf);
        return -1;
    }
    buf[size] = '\0';
    *value = buf;
    return 0;
}

int mt_h5_attr_read_i64(hid_t loc, const char *name, int64_t *value)
{
    return mt_h5_attr_get_i64(loc, name, value, NULL, 0);
}

int mt_h5_attr_read_u64(hid_t loc, const char *name, uint64_t *value)
{
    return mt_h5_attr_get_u64(loc, name, value, NULL, 0);
}

int mt_h5_attr_read_str(hid_t loc, const char *name, char **value)
{
    return mt_h5_attr_get_str(loc, name, (size_t)1 << 26, value, NULL, 0);
}

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int mt_fsync_rename(const char *from, const char *to, char *err, size_t errlen)
{
    if (fsync_path(from, O_RDONLY) != 0) {
        snprintf(err, errlen, "cannot flush %s to disk: %s", from, strerror(errno));
        return -1;
    }
    if (rename(from, to) != 0) {
        snprintf(err, errlen, "cannot rename %s to %s: %s", from, to, strerror(errno));
        return -1;
    }
    char dir[MT_H5_PATH_LEN];
    snprintf(dir, sizeof dir, "%s", to);
    if (fsync_path(dirname(dir), O_RDONLY | O_DIRECTORY) != 0) {
        snprintf(err, errlen, "cannot flush the directory of %s: %s", to, strerror(errno));
        return -1;
    }
    return 0;
}

int mt_mkdir_p(const char *dir, char *err, size_t errlen)
{
    char path[MT_H5_PATH_LEN];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        snprintf(err, errlen, "directory name too long: %s", dir);
        return -1;
    }
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create directory %s: %s", path, strerror(errno));
            return -1;
        }
        *p = saved;
        if (saved == '\0') break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a directory", dir);
        return -1;
    }
    return 0;
}
