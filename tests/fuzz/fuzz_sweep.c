/*
 * fuzz_sweep.c — libFuzzer entry point for a sweep config (src/sweep_plan.c).
 *
 * Each input is INI text with a [sweep] section, read the way `metatrain sweep CONFIG` reads
 * it: mt_sweep_parse splits off [sweep], the rest goes through mt_config_parse, then both are
 * checked. An accepted sweep of at most 512 points is expanded: every point must have a
 * distinct, non-empty id that a directory name can hold (no '/', no control characters),
 * and applying it to the base config must either work or say why. A rejection must say why.
 * Anything else is a finding and aborts.
 *
 * Build: linked against mt_core with clang -fsanitize=fuzzer (MT_FUZZ); seeds in
 * tests/fuzz/corpus/sweep/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "sweep_plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void finding(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_sweep: %s\n  %s\n", what, detail);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 16)) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char err[4096] = "";
    char *base = NULL;
    mt_config c;
    mt_sweep_spec s;
    mt_config_defaults(&c);
    mt_sweep_spec_init(&s, c.seed);
    int ok = mt_sweep_parse(&s, text, "fuzz.ini", &base, err, sizeof err) == 0 &&
             mt_config_parse(&c, base, "fuzz.ini", err, sizeof err) == 0 && mt_config_check(&c, err, sizeof err) == 0 &&
             mt_sweep_check(&s, &c, err, sizeof err) == 0;
    if (!ok && err[0] == '\0') finding("rejected without a message", text);
    const long n = ok ? mt_sweep_count(&s) : 0;
    if (ok && (n < 1 || n > MT_SWEEP_MAX_POINTS)) finding("an accepted sweep has no points or too many", text);
    if (ok && n <= 512) {
        mt_sweep_point *p = calloc((size_t)n, sizeof *p);
        mt_sweep_points(&s, p);
        for (long i = 0; i < n; i++) {
            if (!p[i].id[0] || strchr(p[i].id, '/')) finding("a point id is empty or holds '/'", p[i].id);
            for (const char *q = p[i].id; *q; q++)
                if ((unsigned char)*q < 0x20 || *q == 0x7f) finding("a point id holds a control character", p[i].id);
            for (long j = 0; j < i; j++)
                if (strcmp(p[i].id, p[j].id) == 0) finding("two points share an id", p[i].id);
            mt_config pc = c;
            err[0] = '\0';
            if (mt_sweep_apply(&s, &p[i], &pc, err, sizeof err) != 0 && err[0] == '\0')
                finding("a point's values were refused without a message", p[i].id);
        }
        free(p);
    }
    mt_sweep_spec_free(&s);
    free(base);
    free(text);
    return 0;
}
