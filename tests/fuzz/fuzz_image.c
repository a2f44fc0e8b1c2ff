/*
 * fuzz_image.c — libFuzzer entry point for the image decoding of `data import folder` and
 * `omniglot` (io/import.c, mt_import_decode_image_bytes): the signature check (PNG and JPEG
 * only), the header-size limits, stb_image's decoder and the resize to a small target, as
 * grey and as RGB. No file is written: the bytes go to the decoder as the folder importer
 * hands it a file's contents.
 *
 * Any outcome is fine except a crash, a sanitizer report, a leak, or a return value other
 * than 0 and MT_IMPORT_BAD_INPUT. Under ASan, a header bomb that slipped past the limits
 * shows as an allocation over -rss_limit_mb / -malloc_limit_mb (the limits keep one image
 * under about 350 MiB: run with -rss_limit_mb=1024 or more).
 *
 * Link: mt_io, mt_core (stb_image comes with mt_io). Seeds: tests/fuzz/corpus/image/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned char out[3 * 12 * 10];
    char err[MT_ERR_LEN] = "";
    for (int C = 1; C <= 3; C += 2) {
        int rc = mt_import_decode_image_bytes("fuzz-input", data, size, C, 12, 10, out, err, sizeof err);
        if (rc != 0 && rc != MT_IMPORT_BAD_INPUT) abort();
        if (rc != 0 && !strstr(err, "fuzz-input")) { /* every refusal names the file */
            fprintf(stderr, "message does not name the file: %s\n", err);
            abort();
        }
    }
    return 0;
}
