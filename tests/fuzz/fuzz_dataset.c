/*
 * fuzz_dataset.c — libFuzzer entry point for the dataset reader (io/dataset.c): each input
 * is written to a scratch file and read as `data info` and training do — root attributes,
 * the list of splits, then each split (at most 4) without and with its pixels.
 *
 * Any outcome is fine except a crash, a sanitizer report, a leak, or a split that reads
 * "successfully" while breaking the invariants the reader promises (offsets from 0 to N,
 * strictly increasing, labels equal to their class). Findings inside libhdf5 itself are
 * possible (HDF5 parses the file's structure before the reader sees it); report them
 * separately from the reader's.
 *
 * It sets allocator_may_return_null=1 itself (HDF5 passes sizes from the file to malloc and
 * handles NULL; ASan would otherwise abort on the request itself) and suppresses leaks inside
 * libhdf5 (its own leaks on damaged object headers; tests/fuzz/lsan.supp says the same for a
 * run by hand). (A 1.6-format input that once crashed the reader is a case of test_dataset now.)
 *
 * Link: mt_io, mt_core (HDF5 comes with mt_io). Seeds: tests/fuzz/corpus/dataset/.
 */
#include "fuzz_util.h"

#include "common.h"
#include "dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);
const char *__asan_default_options(void);

const char *__lsan_default_suppressions(void) { return "leak:libhdf5\n"; }
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

/* Aborts if s breaks an invariant mt_dataset_read_split promises. */
static void check_split(const mt_split *s, int with_images)
{
    int ok = s->n_classes >= 1 && s->n_images >= 1 && s->class_offsets[0] == 0 &&
             s->class_offsets[s->n_classes] == s->n_images && (with_images ? s->images != NULL : s->images == NULL);
    for (int k = 0; ok && k < s->n_classes; k++) {
        ok = s->class_offsets[k + 1] > s->class_offsets[k];
        for (int64_t i = s->class_offsets[k]; ok && i < s->class_offsets[k + 1]; i++) ok = s->labels[i] == k;
    }
    if (!ok) {
        fprintf(stderr, "split '%s' read back breaking the reader's invariants\n", s->name);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_hdf5_pre_1_8(data, size)) return 0; /* see fuzz_util.h */
    static char path[600];
    if (!path[0]) fuzz_path(path, sizeof path, "input.h5");
    fuzz_spill(path, data, size);
    char err[MT_ERR_LEN] = "";
    mt_dataset_attrs a;
    if (mt_dataset_read_attrs(path, &a, err, sizeof err) == 0) mt_dataset_attrs_free(&a);
    char names[4][64];
    int n = mt_dataset_list_splits(path, names, 4, err, sizeof err);
    for (int i = 0; i < n && i < 4; i++)
        for (int with_images = 0; with_images < 2; with_images++) {
            mt_split s;
            int rc = with_images ? mt_dataset_read_split(path, names[i], &s, err, sizeof err)
                                 : mt_dataset_read_split_meta(path, names[i], &s, err, sizeof err);
            if (rc == 0) {
                check_split(&s, with_images);
                mt_split_free(&s);
            }
        }
    return 0;
}
