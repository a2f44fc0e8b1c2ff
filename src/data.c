/*
 * data.c — `metatrain data import|info`: building few-shot datasets (io/dataset.h) from
 * IDX files, the Omniglot folder tree or one folder per class, and describing them.
 *
 * Rank 0 alone reads the input and writes the file; under mpirun the other ranks wait
 * (sleeping, not spinning) and return rank 0's exit status. Bad input of any kind — the
 * command line, the IDX files, an image, a folder, an output path in a missing folder or
 * naming one of the inputs — is exit status 2 with one message naming the path; a failure
 * of the system while writing (permission, read-only or full file system, I/O error) is
 * exit status 1. A failed import leaves no output file.
 */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "common.h"
#include "dataset.h"
#include "import.h"

#define MAX_IDX_FILES 64
#define MAX_SPLITS 16
#define INFO_MAX_SPLITS 256
#define INFO_NAMES 8

static void usage(FILE *out)
{
    fprintf(out,
            "usage: metatrain data import idx IMAGES LABELS [IMAGES LABELS]... --split NAME=CLASSES... -o FILE\n"
            "       metatrain data import omniglot DIR [--size HxW] -o FILE\n"
            "       metatrain data import folder DIR --size HxW [--grey] [--split NAME] -o FILE\n"
            "       metatrain data info FILE\n"
            "\n"
            "Builds a few-shot dataset file (HDF5: one group per split with images uint8 [N,C,H,W],\n"
            "labels sorted by class, class_offsets and class_names) and describes one.\n"
            "\n"
            "  import idx       MNIST-format IDX files (images 0x803, labels 0x801), gzipped or not;\n"
            "                   several pairs are concatenated (e.g. train and t10k). Each --split\n"
            "                   NAME=CLASSES takes the listed labels, e.g. --split train=0-5\n"
            "                   --split test=6,7,8,9; a class goes to one split only.\n"
            "  import omniglot  DIR/images_background/<alphabet>/<character>/*.png (and\n"
            "                   images_evaluation/): splits background and evaluation, one class per\n"
            "                   character named <alphabet>/<character>, grey, resized (default 28x28)\n"
            "  import folder    DIR/<class>/*.png|*.jpg (miniImageNet, CUB, ...): one split (default\n"
            "                   train), RGB channels-first or --grey, resized to --size\n"
            "  info FILE        format, source, creation time and, per split, classes, images, shape,\n"
            "                   images per class and the first class names\n"
            "\n"
            "  -o, --output FILE  the dataset to write (written as FILE.partial, renamed when complete)\n"
            "  --split S          idx: NAME=CLASSES (repeatable, at least one); folder: the split name\n"
            "  --size HxW         image height x width after resizing (1-%d each)\n"
            "  --grey             folder: one grey channel instead of RGB\n"
            "  --quiet            no progress lines\n"
            "  -h, --help         this text\n"
            "\n"
            "Example (Fashion-MNIST, Debian package dataset-fashion-mnist):\n"
            "  D=/usr/share/datasets/fashion-mnist\n"
            "  metatrain data import idx $D/train-images-idx3-ubyte.gz $D/train-labels-idx1-ubyte.gz \\\n"
            "      $D/t10k-images-idx3-ubyte.gz $D/t10k-labels-idx1-ubyte.gz \\\n"
            "      --split train=0-5 --split test=6-9 -o fmnist.h5\n"
            "\n"
            "Importing the same input twice gives the same file except for its `created` attribute\n"
            "(set SOURCE_DATE_EPOCH to fix that too).\n"
            "Images are PNG or JPEG of at most %d pixels per side and %ld Mpixel; larger ones are refused.\n"
            "Exit status: 0 success, 1 runtime failure (writing the output failed: permission, read-only or\n"
            "full file system), 2 bad input (arguments, input files, an output that names an input).\n",
            MT_DATASET_MAX_SIDE, MT_IMPORT_MAX_IMAGE_SIDE, MT_IMPORT_MAX_IMAGE_PIXELS >> 20);
}

typedef struct {
    const char *kind; /* idx | omniglot | folder */
    const char *out;
    const char *files[MAX_IDX_FILES]; /* idx: IMAGES LABELS ...; others: DIR */
    int n_files;
    mt_import_split splits[MAX_SPLITS];
    int n_splits;
    const char *split_name; /* folder */
    int H, W, size_given, grey, quiet;
} import_args;

/* Parses "HxW" with both sides 1..MT_DATASET_MAX_SIDE. Returns 0, or -1. */
static int parse_size(const char *s, int *H, int *W)
{
    const char *x = strchr(s, 'x');
    if (!x) return -1;
    char h[16];
    size_t n = (size_t)(x - s);
    if (n == 0 || n >= sizeof h) return -1;
    memcpy(h, s, n);
    h[n] = '\0';
    long hv, wv;
    if (mt_parse_long(h, 1, MT_DATASET_MAX_SIDE, &hv) != 0 || mt_parse_long(x + 1, 1, MT_DATASET_MAX_SIDE, &wv) != 0)
        return -1;
    *H = (int)hv;
    *W = (int)wv;
    return 0;
}

/* The value of option argv[*i] ("--opt V" or "--opt=V"); advances *i. NULL if missing. */
static const char *option_value(int argc, char **argv, int *i, const char *opt)
{
    size_t n = strlen(opt);
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    return *i + 1 < argc ? argv[++*i] : NULL;
}

/* 1 iff arg is option opt, alone or as "opt=value". */
static int is_opt(const char *arg, const char *opt)
{
    size_t n = strlen(opt);
    return strncmp(arg, opt, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

/* Returns -1 to go on, else an exit status (0 after --help). */
static int parse_import(const mt_dist *d, int argc, char **argv, import_args *a)
{
    memset(a, 0, sizeof *a);
    if (argc < 1 || argv[0][0] == '-') {
        if (argc >= 1 && (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0)) {
            if (d->rank == 0) usage(stdout);
            return MT_EXIT_OK;
        }
        mt_cli_error(d, "data import needs a format: idx, omniglot or folder (see metatrain data --help)");
        return MT_EXIT_USAGE;
    }
    a->kind = argv[0];
    const int idx = strcmp(a->kind, "idx") == 0, omniglot = strcmp(a->kind, "omniglot") == 0,
              folder = strcmp(a->kind, "folder") == 0;
    if (!idx && !omniglot && !folder) {
        mt_cli_error(d, "unknown import format '%s' (formats: idx, omniglot, folder)", a->kind);
        return MT_EXIT_USAGE;
    }
    if (omniglot) a->H = a->W = 28;
    char err[MT_ERR_LEN] = "";
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            if (d->rank == 0) usage(stdout);
            return MT_EXIT_OK;
        } else if (strcmp(arg, "-o") == 0 || is_opt(arg, "--output")) {
            const char *v = strcmp(arg, "-o") == 0 ? (i + 1 < argc ? argv[++i] : NULL)
                                                   : option_value(argc, argv, &i, "--output");
            if (!v || !v[0]) {
                mt_cli_error(d, "%s needs a file name", arg);
                return MT_EXIT_USAGE;
            }
            if (a->out) {
                mt_cli_error(d, "more than one output given ('%s' and '%s')", a->out, v);
                return MT_EXIT_USAGE;
            }
            a->out = v;
        } else if (is_opt(arg, "--split") && !omniglot) {
            const char *v = option_value(argc, argv, &i, "--split");
            if (!v) {
                mt_cli_error(d, "--split needs %s", idx ? "NAME=CLASSES (e.g. --split train=0-5)" : "a split name");
                return MT_EXIT_USAGE;
            }
            if (idx) {
                if (a->n_splits == MAX_SPLITS) {
                    mt_cli_error(d, "more than %d --split options", MAX_SPLITS);
                    return MT_EXIT_USAGE;
                }
                if (mt_import_parse_split(v, &a->splits[a->n_splits], err, sizeof err) != 0) {
                    mt_cli_error(d, "%s", err);
                    return MT_EXIT_USAGE;
                }
                a->n_splits++;
            } else {
                if (a->split_name) {
                    mt_cli_error(d, "data import folder writes one split: --split given twice");
                    return MT_EXIT_USAGE;
                }
                size_t n = strlen(v);
                if (n == 0 || n >= MT_DATASET_NAME_LEN || strchr(v, '/') || strcmp(v, ".") == 0) {
                    mt_cli_error(d, "--split '%s': a split name has 1-63 bytes and no '/'", v);
                    return MT_EXIT_USAGE;
                }
                a->split_name = v;
            }
        } else if (is_opt(arg, "--size") && !idx) {
            const char *v = option_value(argc, argv, &i, "--size");
            if (!v || parse_size(v, &a->H, &a->W) != 0) {
                mt_cli_error(d, "--size takes HxW, e.g. --size 84x84 (each side 1-%d)%s%s%s", MT_DATASET_MAX_SIDE,
                             v ? "; got '" : "", v ? v : "", v ? "'" : "");
                return MT_EXIT_USAGE;
            }
            a->size_given = 1;
        } else if ((strcmp(arg, "--grey") == 0 || strcmp(arg, "--gray") == 0) && folder) {
            a->grey = 1;
        } else if (strcmp(arg, "--quiet") == 0) {
            a->quiet = 1;
        } else if (arg[0] == '-' && arg[1] != '\0') {
            mt_cli_error(d, "unknown option '%s' for data import %s (see metatrain data --help)", arg, a->kind);
            return MT_EXIT_USAGE;
        } else if (a->n_files == (idx ? MAX_IDX_FILES : 1)) {
            if (idx) mt_cli_error(d, "more than %d IDX files", MAX_IDX_FILES);
            else mt_cli_error(d, "data import %s takes one DIR ('%s' and '%s' given)", a->kind, a->files[0], arg);
            return MT_EXIT_USAGE;
        } else {
            a->files[a->n_files++] = arg;
        }
    }
    if (idx && (a->n_files == 0 || a->n_files % 2 != 0)) {
        mt_cli_error(d, "data import idx needs IMAGES LABELS file pairs (got %d file%s)", a->n_files,
                     a->n_files == 1 ? "" : "s");
        return MT_EXIT_USAGE;
    }
    if (!idx && a->n_files == 0) {
        mt_cli_error(d, "data import %s needs a DIR", a->kind);
        return MT_EXIT_USAGE;
    }
    if (idx && a->n_splits == 0) {
        mt_cli_error(d, "data import idx needs at least one --split NAME=CLASSES (e.g. --split train=0-5 "
                        "--split test=6-9)");
        return MT_EXIT_USAGE;
    }
    if (folder && !a->size_given) {
        mt_cli_error(d, "data import folder needs --size HxW (e.g. --size 84x84): images are resized to it");
        return MT_EXIT_USAGE;
    }
    if (!a->out) {
        mt_cli_error(d, "data import %s needs -o FILE (the dataset file to write)", a->kind);
        return MT_EXIT_USAGE;
    }
    if (!a->split_name) a->split_name = "train";
    return -1;
}

/* Ranks other than 0 wait here until rank 0 arrives, sleeping between tests: Open MPI
 * busy-polls inside blocking collectives, which would take CPU from rank 0's import. */
static void wait_for_rank0(const mt_dist *d)
{
    if (d->size == 1) return;
    MPI_Request req;
    MT_CHECK(MPI_Ibarrier(d->comm, &req) == MPI_SUCCESS, "MPI_Ibarrier failed");
    const struct timespec nap = {0, 20 * 1000 * 1000};
    for (;;) {
        int done = 0;
        MT_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS, "MPI_Test failed");
        if (done) break;
        if (d->rank != 0) nanosleep(&nap, NULL);
    }
}

/* Every rank returns rank 0's status rc (0, 1 or 2); rank 0 prints err if rc != 0. */
static int agree_status(const mt_dist *d, int rc, const char *err)
{
    wait_for_rank0(d);
    if (mt_dist_all(d, d->rank != 0 || rc == MT_EXIT_OK)) return MT_EXIT_OK;
    mt_cli_error(d, "%s", err);
    return mt_dist_all(d, d->rank != 0 || rc == MT_EXIT_USAGE) ? MT_EXIT_USAGE : MT_EXIT_FAILURE;
}

/* Prints a description of split s (read without its pixels). */
static void print_split(const mt_split *s)
{
    int64_t lo = INT64_MAX, hi = 0;
    for (int k = 0; k < s->n_classes; k++) {
        int64_t n = s->class_offsets[k + 1] - s->class_offsets[k];
        if (n < lo) lo = n;
        if (n > hi) hi = n;
    }
    printf("\nsplit %s\n", s->name);
    printf("  classes:    %d\n", s->n_classes);
    printf("  images:     %lld\n", (long long)s->n_images);
    printf("  shape:      %dx%dx%d (C x H x W)\n", s->C, s->H, s->W);
    printf("  per class:  %lld to %lld images (mean %.1f)\n", (long long)lo, (long long)hi,
           (double)s->n_images / s->n_classes);
    printf("  names:      ");
    for (int k = 0; k < s->n_classes && k < INFO_NAMES; k++) printf("%s%s", k ? ", " : "", s->class_names[k]);
    if (s->n_classes > INFO_NAMES) printf(", ... (%d more)", s->n_classes - INFO_NAMES);
    printf("\n");
}

/* `data info FILE` on rank 0. Returns an exit status, err set on failure. */
static int info(const char *path, char *err, size_t errlen)
{
    mt_dataset_attrs attrs;
    if (mt_dataset_read_attrs(path, &attrs, err, errlen) != 0) return MT_EXIT_USAGE;
    static char names[INFO_MAX_SPLITS][64];
    int n = mt_dataset_list_splits(path, names, INFO_MAX_SPLITS, err, errlen);
    if (n < 0) {
        mt_dataset_attrs_free(&attrs);
        return MT_EXIT_USAGE;
    }
    printf("dataset:    %s\n", path);
    printf("format:     %s, version %lld\n", MT_DATASET_FORMAT, (long long)attrs.format_version);
    printf("source:     %s\n", attrs.source);
    printf("created:    %s\n", attrs.created);
    printf("splits:     %d", n);
    for (int i = 0; i < n && i < INFO_MAX_SPLITS; i++) printf("%s%s", i ? ", " : " (", names[i]);
    printf("%s\n", n > 0 ? ")" : "");
    mt_dataset_attrs_free(&attrs);
    int rc = MT_EXIT_OK;
    for (int i = 0; i < n && i < INFO_MAX_SPLITS && rc == MT_EXIT_OK; i++) {
        mt_split s;
        if (mt_dataset_read_split_meta(path, names[i], &s, err, errlen) != 0) {
            rc = MT_EXIT_USAGE;
            break;
        }
        print_split(&s);
        mt_split_free(&s);
    }
    fflush(stdout);
    return rc;
}

/* The import on rank 0, then a check that the file reads back. Returns an exit status. */
static int run_import(const import_args *a, char *err, size_t errlen)
{
    FILE *progress = a->quiet ? NULL : stdout;
    double t0 = mt_now();
    int rc;
    if (strcmp(a->kind, "idx") == 0) {
        const char *images[MAX_IDX_FILES / 2], *labels[MAX_IDX_FILES / 2];
        for (int p = 0; p < a->n_files / 2; p++) {
            images[p] = a->files[2 * p];
            labels[p] = a->files[2 * p + 1];
        }
        rc = mt_import_idx(a->out, a->n_files / 2, images, labels, a->n_splits, a->splits, progress, err, errlen);
    } else if (strcmp(a->kind, "omniglot") == 0) {
        rc = mt_import_omniglot(a->out, a->files[0], a->H, a->W, progress, err, errlen);
    } else {
        rc = mt_import_folder(a->out, a->files[0], a->split_name, a->H, a->W, a->grey, progress, err, errlen);
    }
    if (rc != 0) return rc == MT_IMPORT_FAILED ? MT_EXIT_FAILURE : MT_EXIT_USAGE;
    /* Read back what was written: the summary comes from the file, and a file the reader
     * would refuse is a bug to report now rather than at training time. */
    char names[MAX_SPLITS][64];
    int n = mt_dataset_list_splits(a->out, names, MAX_SPLITS, err, errlen);
    if (n < 0) return MT_EXIT_FAILURE;
    for (int i = 0; i < n && i < MAX_SPLITS; i++) {
        mt_split s;
        if (mt_dataset_read_split_meta(a->out, names[i], &s, err, errlen) != 0) return MT_EXIT_FAILURE;
        printf("wrote %s: split %s, %d classes, %lld images of %dx%dx%d\n", a->out, s.name, s.n_classes,
               (long long)s.n_images, s.C, s.H, s.W);
        mt_split_free(&s);
    }
    if (!a->quiet) printf("done in %.1f s\n", mt_now() - t0);
    fflush(stdout);
    return MT_EXIT_OK;
}

int mt_data_main(const mt_dist *d, int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0) {
        if (d->rank == 0) usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? MT_EXIT_USAGE : MT_EXIT_OK;
    }
    char err[MT_ERR_LEN] = "";
    int rc = MT_EXIT_OK;
    if (strcmp(argv[0], "import") == 0) {
        import_args a;
        int parsed = parse_import(d, argc - 1, argv + 1, &a);
        if (parsed >= 0) return parsed;
        if (d->rank == 0) rc = run_import(&a, err, sizeof err);
    } else if (strcmp(argv[0], "info") == 0) {
        const char *path = NULL;
        for (int i = 1; i < argc; i++) {
            if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
                if (d->rank == 0) usage(stdout);
                return MT_EXIT_OK;
            } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
                mt_cli_error(d, "unknown option '%s' for data info", argv[i]);
                return MT_EXIT_USAGE;
            } else if (path) {
                mt_cli_error(d, "data info takes one FILE ('%s' and '%s' given)", path, argv[i]);
                return MT_EXIT_USAGE;
            }
            path = argv[i];
        }
        if (!path) {
            mt_cli_error(d, "data info needs a FILE");
            return MT_EXIT_USAGE;
        }
        if (d->rank == 0) rc = info(path, err, sizeof err);
    } else {
        mt_cli_error(d, "unknown data command '%s' (commands: import, info)", argv[0]);
        return MT_EXIT_USAGE;
    }
    return agree_status(d, rc, err);
}
