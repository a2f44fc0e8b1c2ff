/*
 * fuzz_idx.c — libFuzzer entry point for the IDX reader of `data import idx` (io/import.c).
 *
 * The reader takes paths, so each input is written to a scratch file and imported twice:
 * as the IMAGES file (with a valid one-label LABELS file) and as the LABELS file (with a
 * valid one-image IMAGES file). Both gzip and plain inputs reach the parser (zlib detects
 * the gzip header). Any outcome is fine except a crash, a sanitizer report, a leak, or an
 * import that claims success without writing a readable dataset.
 *
 * Link: mt_io, mt_core (and what they pull in: HDF5, zlib, stb, MPI's C library for the
 * handle types). Build with clang -fsanitize=fuzzer,address,undefined.
 * Seeds: tests/fuzz/corpus/idx/.
 */
#include "fuzz_util.h"

#include "common.h"
#include "dataset.h"
#include "import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One import of images/labels into out; checks that a success reads back. */
static void import_once(const char *images, const char *labels, const char *out)
{
    static mt_import_split sp; /* class 0 only: the fixed files hold one image of label 0 */
    char err[MT_ERR_LEN] = "";
    if (sp.n_classes == 0 && mt_import_parse_split("all=0", &sp, err, sizeof err) != 0) abort();
    const char *im[1] = {images}, *lb[1] = {labels};
    int rc = mt_import_idx(out, 1, im, lb, 1, &sp, NULL, err, sizeof err);
    if (rc == 0) {
        mt_split s;
        if (mt_dataset_read_split_meta(out, "all", &s, err, sizeof err) != 0) {
            fprintf(stderr, "import succeeded but the dataset does not read back: %s\n", err);
            abort();
        }
        mt_split_free(&s);
        unlink(out);
    } else if (rc != MT_IMPORT_BAD_INPUT && rc != MT_IMPORT_FAILED) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char input[600], images1[600], labels1[600], out[600];
    if (!out[0]) {
        fuzz_path(input, sizeof input, "input");
        fuzz_path(images1, sizeof images1, "one-image");
        fuzz_path(labels1, sizeof labels1, "one-label");
        fuzz_path(out, sizeof out, "out.h5");
        /* One 1x1 image of value 7; one label 0. */
        const uint8_t img[17] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 7};
        const uint8_t lab[9] = {0, 0, 8, 1, 0, 0, 0, 1, 0};
        fuzz_spill(images1, img, sizeof img);
        fuzz_spill(labels1, lab, sizeof lab);
    }
    fuzz_spill(input, data, size);
    import_once(input, labels1, out);
    import_once(images1, input, out);
    return 0;
}
