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
 * All functions return 0, or a negative value with a message in err that names the
 * offending path (the IDX file, the image, the folder, or the output):
 *   MT_IMPORT_BAD_INPUT (-1)  the input or the output path is unusable: a damaged or
 *                             oversized file, an empty folder, an output in a missing
 *                             folder or naming one of the inputs (exit status 2);
 *   MT_IMPORT_FAILED (-2)     the system failed to write the output: no permission, a
 *                             read-only or full file system, an I/O error (exit status 1).
 * Bad input is never fatal; only running out of memory is. They use no MPI: the caller runs
 * them on one rank. The output is never one of the inputs: an -o naming an input file (or
 * whose .partial is one), compared by device and inode so links count, is refused before
 * anything is written.
 *
 * Images are untrusted: only PNG and JPEG files are decoded (by their signature, whatever
 * their name), and their header is read before any pixel is, so an image larger than
 * MT_IMPORT_MAX_IMAGE_SIDE per side or MT_IMPORT_MAX_IMAGE_PIXELS in all is refused as too
 * large without allocating for it (also when stb_image itself would call the header
 * invalid). The limits are fixed, not tied to the --size target: class-per-folder imports
 * routinely shrink 4000-pixel photos to 84x84 (a 50x ratio), so a cap of a few times the
 * target would refuse ordinary input. At the limits one image costs at most about 350 MiB
 * while it is decoded (the file, stb_image's copy of the compressed data, the decoded
 * samples and their conversion to C channels); classes are streamed to the file in
 * batches, so the number of images in a class does not change what an import holds.
 */
#ifndef MT_IMPORT_H
#define MT_IMPORT_H

#include <stddef.h>
#include <stdio.h>

#define MT_IMPORT_BAD_INPUT (-1)
#define MT_IMPORT_FAILED (-2)

/* Largest image decoded: each side; width x height (e.g. 8192 x 4096, 32 Mpixel); and
 * decoded samples in bytes (width x height x channels x 1 or 2 bytes, 128 MiB). */
#define MT_IMPORT_MAX_IMAGE_SIDE 8192
#define MT_IMPORT_MAX_IMAGE_PIXELS (1L << 25)
#define MT_IMPORT_MAX_IMAGE_BYTES (1L << 27)
/* Largest image file read. */
#define MT_IMPORT_MAX_IMAGE_FILE (64L << 20)
/* Largest number of entries in one folder, and of classes in one split, of a folder tree. */
#define MT_IMPORT_MAX_ENTRIES (1 << 24)

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

/* Decodes one PNG or JPEG image file to C channels (1 grey, 3 RGB) and resizes it to
 * H × W into out[C, H, W] (channels-first). Returns 0, or MT_IMPORT_BAD_INPUT with a
 * message naming path (unreadable, not PNG or JPEG, damaged, or too large: the message
 * gives its size and the limit). */
int mt_import_decode_image(const char *path, int C, int H, int W, unsigned char *out, char *err, size_t errlen);

/* The same on an image already in memory (bytes[len]); path only names it in messages.
 * For the fuzzer and for callers that have the bytes. */
int mt_import_decode_image_bytes(const char *path, const unsigned char *bytes, size_t len, int C, int H, int W,
                                 unsigned char *out, char *err, size_t errlen);

#endif
