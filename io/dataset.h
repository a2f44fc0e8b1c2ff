/*
 * dataset.h — few-shot image datasets: one HDF5 file, one group per split (DESIGN §5).
 *
 * Layout (format "metatrain-dataset", format_version 1; inspect with h5dump or
 * `metatrain data info FILE`):
 *   /<split>/images         uint8 [N, C, H, W]   chunked (a few images per chunk), deflate 4
 *   /<split>/labels         int32 [N]            sorted by class: the images of class k are
 *                                                rows class_offsets[k] … class_offsets[k+1]−1
 *   /<split>/class_offsets  int64 [n_classes+1]  0 = offsets[0] < offsets[1] < … = N
 *   /<split>/class_names    fixed-length strings [n_classes] (at most 63 bytes each)
 *   root attributes         format, format_version (int64), source (where the images came
 *                           from, e.g. "omniglot:DIR size=28x28"), created (ISO 8601 UTC)
 *
 * Files are reproducible: the same input imported twice gives files that differ only in
 * the `created` attribute (no object timestamps, fixed compression, fixed write order), and
 * not even there when SOURCE_DATE_EPOCH is set (the reproducible-builds convention).
 *
 * The writer streams: a split is written class by class, so an importer holds one class of
 * images at a time. It writes <path>.partial and renames it to <path> only when the whole
 * file is complete (fsync, rename, fsync of the directory), so a failed or interrupted
 * import never leaves a file under the final name.
 *
 * The reader loads a whole split into memory and validates it (format, version, shapes,
 * labels against offsets, non-empty classes) before anyone samples from it. Every HDF5 call
 * is checked; failures come back as a message naming the file and split, never as HDF5's
 * error stack. This module does not use MPI: callers decide which rank reads.
 */
#ifndef MT_DATASET_H
#define MT_DATASET_H

#include <stddef.h>
#include <stdint.h>

#define MT_DATASET_FORMAT "metatrain-dataset"
#define MT_DATASET_VERSION 1
#define MT_DATASET_NAME_LEN 64 /* split and class names: at most 63 bytes + NUL */
#define MT_DATASET_MAX_SIDE 4096 /* largest H or W accepted by writer and reader */
#define MT_DATASET_MAX_CHANNELS 4

/* ------------------------------------------------------------------------------------------
 * Reading
 * ---------------------------------------------------------------------------------------- */

/* One split in memory. Filled by mt_dataset_read_split; freed by mt_split_free. */
typedef struct {
    char name[64];           /* split name */
    int n_classes;
    int64_t n_images;
    int C, H, W;
    uint8_t *images;         /* [n_images, C, H, W] */
    int32_t *labels;         /* [n_images] */
    int64_t *class_offsets;  /* [n_classes + 1] */
    char (*class_names)[64]; /* [n_classes] */
} mt_split;

/* Reads and validates one split: the format attribute and version, shapes consistent
 * (images [N,C,H,W], labels [N], class_offsets [n_classes+1], class_names [n_classes]),
 * offsets strictly increasing from 0 to N (every class non-empty), labels sorted and equal
 * to their class index. Returns 0 and fills out (free with mt_split_free), or -1 with a
 * message naming the file (and split) in err and out zeroed. A file that is not HDF5, has
 * the wrong format or version, or lacks the split gives a message saying so (the latter
 * lists the splits the file has). */
int mt_dataset_read_split(const char *path, const char *split, mt_split *out, char *err, size_t errlen);

/* The same without the pixels: everything is read and validated except /<split>/images,
 * whose shape is checked and reported in C, H, W and n_images; out->images stays NULL.
 * For `data info` and for callers that only need the class structure. */
int mt_dataset_read_split_meta(const char *path, const char *split, mt_split *out, char *err, size_t errlen);

/* mt_dataset_read_split with the pixels read into the caller's images[bytes] (bytes =
 * n_images·C·H·W, as mt_dataset_read_split_meta reported; a different size is an error):
 * out->images stays NULL, the caller owns the buffer. For one copy of a split shared by the
 * ranks of a node. */
int mt_dataset_read_split_to(const char *path, const char *split, mt_split *out, uint8_t *images, size_t bytes,
                             char *err, size_t errlen);

/* Frees what the readers allocated and zeroes s; accepts NULL and a zeroed struct. */
void mt_split_free(mt_split *s);

/* Names of the splits (root groups) in a dataset file, in byte order of their names. Fills
 * names[0 .. min(count, max)) and returns count (which may exceed max), or -1 with a
 * message in err (not HDF5, wrong format or version). */
int mt_dataset_list_splits(const char *path, char names[][64], int max, char *err, size_t errlen);

/* The root attributes besides format (which is checked). */
typedef struct {
    int64_t format_version;
    char *source;  /* malloc'd */
    char *created; /* malloc'd */
} mt_dataset_attrs;

/* Reads the root attributes of a dataset file (after checking format and version).
 * Returns 0 (free with mt_dataset_attrs_free), or -1 with a message in err. */
int mt_dataset_read_attrs(const char *path, mt_dataset_attrs *a, char *err, size_t errlen);

/* Accepts NULL and a zeroed struct. */
void mt_dataset_attrs_free(mt_dataset_attrs *a);

/* ------------------------------------------------------------------------------------------
 * Writing (single process, serial HDF5 calls)
 *
 *   mt_dataset_writer *w = mt_dataset_create("omniglot.h5", "omniglot:DIR", err, n);
 *   mt_dataset_begin_split(w, "background", 1, 28, 28, err, n);
 *   for each class: mt_dataset_add_class(w, "Latin/character01", 20, pixels, err, n);
 *   mt_dataset_end_split(w, err, n);
 *   ... more splits ...
 *   mt_dataset_finish(w, err, n);        (or mt_dataset_abandon(w) on any failure)
 *
 * Every call returns 0, or a negative value with a message naming the file in err:
 * MT_DATASET_REFUSED (-1) for arguments the writer refuses (names, shapes, call order) and
 * MT_DATASET_IO_ERROR (-2) when the system fails to write (permission, read-only or full
 * file system, I/O error; the message carries the errno text, e.g. "No space left on
 * device"). Callers map the first to "bad input" and the second to "runtime failure".
 * After a failure the only useful call is mt_dataset_abandon.
 * ---------------------------------------------------------------------------------------- */

#define MT_DATASET_REFUSED (-1)
#define MT_DATASET_IO_ERROR (-2)

typedef struct mt_dataset_writer mt_dataset_writer;

/* Creates <path>.partial (replacing any earlier one) and writes the root attributes:
 * format, format_version, source, created (UTC now, or SOURCE_DATE_EPOCH if set). Fails if
 * path is a directory or the file cannot be created. Returns the writer, or NULL with a
 * message in err and errno saying why: EISDIR, ENOENT, ENOTDIR, ENAMETOOLONG or ELOOP when
 * the path cannot name a file (mt_dataset_errno_is_io gives 0), anything else (EACCES,
 * EROFS, ENOSPC, EIO, ...) when the system refused to create it. */
mt_dataset_writer *mt_dataset_create(const char *path, const char *source, char *err, size_t errlen);

/* 1 iff errno value e, left by a failed mt_dataset_create, is a failure of the system
 * (MT_DATASET_IO_ERROR) rather than an output path that cannot name a file. */
int mt_dataset_errno_is_io(int e);

/* Starts split `name` (1–63 bytes, no '/', not "." and not already in the file) of images
 * with C channels (1–4) and H × W pixels (1–MT_DATASET_MAX_SIDE each). */
int mt_dataset_begin_split(mt_dataset_writer *w, const char *name, int C, int H, int W, char *err, size_t errlen);

/* Appends class `name` (1–63 bytes) of the current split with its n ≥ 1 images
 * images[n, C, H, W] (channels-first, in the order given). Its label is the number of
 * classes added before it in this split. Equivalent to mt_dataset_append_images followed
 * by mt_dataset_end_class. */
int mt_dataset_add_class(mt_dataset_writer *w, const char *name, int64_t n, const uint8_t *images, char *err,
                         size_t errlen);

/* Streaming a class too large to hold in memory: append its images in batches of n ≥ 1
 * (images[n, C, H, W]), then end the class with its name (at least one image appended). */
int mt_dataset_append_images(mt_dataset_writer *w, int64_t n, const uint8_t *images, char *err, size_t errlen);
int mt_dataset_end_class(mt_dataset_writer *w, const char *name, char *err, size_t errlen);

/* Writes labels, class_offsets and class_names of the current split (at least one class). */
int mt_dataset_end_split(mt_dataset_writer *w, char *err, size_t errlen);

/* Writes a whole split from memory (name, C, H, W, n_classes, class_offsets, class_names
 * and images of s; its labels are implied by the offsets and not read). For tests and
 * small tools. */
int mt_dataset_write_split(mt_dataset_writer *w, const mt_split *s, char *err, size_t errlen);

/* Closes the file (no split may be open) and renames <path>.partial to <path> durably.
 * Frees w whatever the outcome; on failure the .partial file is removed. */
int mt_dataset_finish(mt_dataset_writer *w, char *err, size_t errlen);

/* Closes and removes the .partial file and frees w. Accepts NULL. */
void mt_dataset_abandon(mt_dataset_writer *w);

#endif
