/* ioutil.c — HDF5 attribute helpers and durable renames (see ioutil.h). */
#define _POSIX_C_SOURCE 200809L
#include "ioutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
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

static int attr_read(hid_t loc, const char *name, hid_t memtype, void *value)
{
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    int ok = a >= 0 && H5Aread(a, memtype, value) >= 0;
    if (a >= 0) H5Aclose(a);
    return ok ? 0 : -1;
}

int mt_h5_attr_read_i64(hid_t loc, const char *name, int64_t *value)
{
    return attr_read(loc, name, H5T_NATIVE_INT64, value);
}

int mt_h5_attr_read_u64(hid_t loc, const char *name, uint64_t *value)
{
    return attr_read(loc, name, H5T_NATIVE_UINT64, value);
}

int mt_h5_attr_read_str(hid_t loc, const char *name, char **value)
{
    *value = NULL;
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t ftype = a >= 0 ? H5Aget_type(a) : -1;
    int ok = ftype >= 0 && H5Tget_class(ftype) == H5T_STRING && !H5Tis_variable_str(ftype);
    size_t size = ok ? H5Tget_size(ftype) : 0;
    hid_t mtype = ok ? H5Tcopy(H5T_C_S1) : -1;
    ok = ok && size > 0 && size < (1u << 26) && mtype >= 0 && H5Tset_size(mtype, size + 1) >= 0 &&
         H5Tset_strpad(mtype, H5T_STR_NULLTERM) >= 0;
    char *buf = ok ? mt_calloc(size + 1, 1) : NULL;
    ok = ok && H5Aread(a, mtype, buf) >= 0;
    if (mtype >= 0) H5Tclose(mtype);
    if (ftype >= 0) H5Tclose(ftype);
    if (a >= 0) H5Aclose(a);
    if (!ok) {
        free(buf);
        return -1;
    }
    *value = buf;
    return 0;
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
