/*
 * import.h — turning image collections in their usual formats into metatrain datasets
 * (dataset.h): MNIST-style IDX files, the Omniglot folder tree, and one folder per class of
 * PNG/JPEG images (miniImageNet, CUB, ...).
 *
 * Every importer checks its whole input before it reports success and writes the output
 * through the dataset writer (<out>.partial, renamed at the end), so a failed import leaves
 * no file behind. Directory listings are sorted (byte order of the names) and images are
 * decoded and resized the same way every time: importing the same input twice gives the
 * same file except for its `created` attribute.
 *
 * All functions return 0, or -1 with a message in err that names the offending path (the
 * IDX file, the image, the folder, or the output). Bad input is never fatal; only running
 * out of memory is. They use no MPI: the caller runs them on one rank.
 */
#ifndef MT_IMPORT_H
#define MT_IMPORT_H

#include <stddef.h>
#include <stdio.h>

/* IDX labels are bytes: class numbers are 0..255. */
#define MT_IMPORT_MAX_LABEL 255

/* One --split NAME=CLASSES of the IDX importer. */
typedef struct {
    char name[64];
    char spec[256];                         /* CLASSES as the user wrote it (for messages) */
    int n_classes;
    int classes[MT_IMPORT_MAX_LABEL + 1];   /* label values, ascending */
} mt_import_split;

/* Parses "NAME=CLASSES" where CLASSES is a comma-separated list of labels and ranges, e.g.
 * "train=0-5", "test=6,7,8,9", "val=0-2,7". Labels are 0..255, ranges ascending, no label
 * twice. Returns 0, or -1 with a message in err. */
int mt_import_parse_split(const char *arg, mt_import_split *out, char *err, size_t errlen);

/* Imports n_pairs pairs of IDX files (images[i]: magic 0x00000803, uint8 [N, H, W];
 * labels[i]: magic 0x00000801, uint8 [N]; gzip-compressed or not) into out_path, one split
 * per splits[] entry with C = 1. The pairs are concatenated in order; the images of a class
 * keep that order. Class k of a split is its k-th smallest label, named by the label's
 * number. Errors: unreadable, wrong magic, truncated or trailing data, image/label count
 * mismatch, different image sizes between pairs, a class in two splits, a split name twice,
 * a class that no image has. Images whose label is in no split are left out (a note goes
 * to progress). progress: a few lines of progress (NULL: quiet). */
int mt_import_idx(const char *out_path, int n_pairs, const char *const *images, const char *const *labels,
                  int n_splits, const mt_import_split *splits, FILE *progress, char *err, size_t errlen);

/* Imports the Omniglot layout DIR/images_background/<alphabet>/<character>/<image>.png and
 * DIR/images_evaluation/... into splits "background" and "evaluation" (the latter may be
 * missing, not both). Each character is a class named "<alphabet>/<character>"; images are
 * decoded to grey and resized to H × W (C = 1). */
int mt_import_omniglot(const char *out_path, const char *dir, int H, int W, FILE *progress, char *err,
                       size_t errlen);

/* Imports DIR/<class>/<image> (PNG or JPEG; other files and hidden entries are skipped)
 * into split `split`, resized to H × W, RGB channels-first (C = 3) or grey (C = 1). */
int mt_import_folder(const char *out_path, const char *dir, const char *split, int H, int W, int grey,
                     FILE *progress, char *err, size_t errlen);

/* Decodes one image file (any format stb_image reads: PNG, JPEG, BMP, ...) to C channels
 * (1 grey, 3 RGB) and resizes it to H × W into out[C, H, W] (channels-first). Returns 0,
 * or -1 with a message naming path. */
int mt_import_decode_image(const char *path, int C, int H, int W, unsigned char *out, char *err, size_t errlen);

#endif
