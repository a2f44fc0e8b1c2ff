/*
 * fuzz_config.c — libFuzzer entry point for the configuration parser (src/config.c).
 *
 * Each input is INI text. It is parsed onto the defaults the way `metatrain train CONFIG`
 * does (mt_config_defaults, mt_config_parse); a text that parses and passes mt_config_check
 * is formatted, and the formatted text must parse back, pass the check again and give the
 * same configuration (mt_config_diff 0) and the same text. Anything else is a finding and
 * aborts. Crashes, leaks and undefined behaviour are found by the sanitizers the build adds.
 *
 * Not covered here: reading files (mt_read_file_max, in src/cli.c) and --set (its
 * assignments reach the same assign() as file lines).
 *
 * Build: a translation unit linked against mt_core with clang -fsanitize=fuzzer (the
 * MT_FUZZ option); seeds in tests/fuzz/corpus/config/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Prints what went wrong with the input and its formatted text, then aborts. */
static void finding(const char *what, const char *err, const char *text)
{
    fprintf(stderr, "fuzz_config: %s\n  error: %s\n  formatted text:\n%s\n", what, err, text ? text : "(none)");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20)) return 0; /* mt_cli_load_config refuses configs above 1 MiB */
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0'; /* an embedded NUL ends the text, as the CLI's "not a text file" check would refuse */

    char err[1024] = "";
    mt_config c;
    mt_config_defaults(&c);
    if (mt_config_parse(&c, text, "fuzz.ini", err, sizeof err) != 0 || mt_config_check(&c, err, sizeof err) != 0) {
        if (err[0] == '\0') finding("rejected without a message", err, NULL);
        free(text);
        return 0;
    }

    char *formatted = mt_config_format(&c);
    mt_config back;
    mt_config_defaults(&back);
    if (mt_config_parse(&back, formatted, "formatted", err, sizeof err) != 0)
        finding("the formatted text of an accepted config does not parse", err, formatted);
    if (mt_config_check(&back, err, sizeof err) != 0)
        finding("the formatted text of an accepted config fails mt_config_check", err, formatted);
    char diff[2048] = "";
    if (mt_config_diff(&c, &back, diff, sizeof diff) != 0)
        finding("format -> parse changed the configuration", diff, formatted);
    char *again = mt_config_format(&back);
    if (strcmp(formatted, again) != 0) finding("format -> parse -> format changed the text", again, formatted);

    free(again);
    free(formatted);
    free(text);
    return 0;
}
