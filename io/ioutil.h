/*
 * ioutil.h — small helpers shared by the io/ modules: quiet, checked HDF5 attributes with
 * readable failure reasons, and durable file replacement.
 */
#ifndef MT_IOUTIL_H
#define MT_IOUTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#define MT_H5_PATH_LEN 2048

/* Turns off HDF5's automatic error-stack printing: io/ reports failures itself. */
void mt_h5_quiet(void);

/* The most specific message on HDF5's current error stack ("unknown" if none). Valid until
 * the next call. */
const char *mt_h5_reason(void);

/* Scalar attributes on an object or file. Return 0, or -1. Strings are stored fixed-length
 * and null-terminated; read strings are malloc'd (caller frees). The readers check what is
 * stored before reading it: one value (a scalar), of an integer class of at most 8 bytes, or
 * a fixed-length string (at most 64 MiB); anything else is -1, as is a missing attribute. */
int mt_h5_attr_write_str(hid_t loc, const char *name, const char *value);
int mt_h5_attr_write_i64(hid_t loc, const char *name, int64_t value);
int mt_h5_attr_write_u64(hid_t loc, const char *name, uint64_t value);
int mt_h5_attr_read_str(hid_t loc, const char *name, char **value);
int mt_h5_attr_read_i64(hid_t loc, const char *name, int64_t *value);
int mt_h5_attr_read_u64(hid_t loc, const char *name, uint64_t *value);

/* The same readers for files that may be hostile: -1 comes with why (if not NULL) saying
 * what the attribute is ("attribute step is a string, expected an integer", "... is a
 * variable-length string, ...", "... holds 3 values, expected one", "... is missing").
 * Strings longer than max bytes are refused before anything is allocated. The _i64s pair
 * stores and reads a one-dimensional array of exactly n integers. */
int mt_h5_attr_get_i64(hid_t loc, const char *name, int64_t *value, char *why, size_t whylen);
int mt_h5_attr_get_u64(hid_t loc, const char *name, uint64_t *value, char *why, size_t whylen);
int mt_h5_attr_get_str(hid_t loc, const char *name, size_t max, char **value, char *why, size_t whylen);
int mt_h5_attr_write_i64s(hid_t loc, const char *name, const int64_t *values, int n);
int mt_h5_attr_get_i64s(hid_t loc, const char *name, int64_t *values, int n, char *why, size_t whylen);

/* What a type class is, for messages: "an integer", "a string", "a floating-point number", ... */
const char *mt_h5_class_name(H5T_class_t c);

/* fsync(from); rename(from, to); fsync(the directory of to). Returns 0, or -1 with err. */
int mt_fsync_rename(const char *from, const char *to, char *err, size_t errlen);

/* mkdir -p. Returns 0, or -1 with err. */
int mt_mkdir_p(const char *dir, char *err, size_t errlen);

#endif
