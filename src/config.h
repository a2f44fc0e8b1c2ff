/*
 * config.h — the run configuration: INI files (parsed by libinih) plus --set overrides.
 *
 * One table in config.c lists every key with its type, default, allowed range and a line of
 * documentation; parsing, validation, the resolved config.ini written into the run
 * directory and the key list in --help all come from that table, so they cannot disagree.
 *
 * Errors name their origin the way a compiler does — "configs/x.ini:12: ..." or
 * "--set optim.lr=abc: ..." — and the caller exits with status 2.
 */
#ifndef MT_CONFIG_H
#define MT_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#define MT_PATH_LEN 1024

typedef struct {
    /* [run] */
    char run_dir[MT_PATH_LEN];
    uint64_t seed;
    long iterations;
    long log_every;
    /* [task] */
    char family[16];
    int shots, query, ways;
    char dataset[MT_PATH_LEN];
    char train_split[64], test_split[64];
    int rotations;
    /* [model] */
    char arch[16];
    int hidden, filters;
    /* [meta] */
    char algo[16];
    int inner_steps, eval_inner_steps, meta_batch;
    float inner_lr;
    /* [optim] */
    float lr, beta1, beta2, eps;
    /* [checkpoint] */
    long ckpt_every;
    int ckpt_keep;
    /* [dist] */
    char reduce[16];
} mt_config;

/* The built-in default: sinusoid MAML as in Finn et al. 2017 (DESIGN §7). */
void mt_config_defaults(mt_config *c);

/* Applies the keys of INI text to c. origin (a path) prefixes messages. Returns 0, or -1
 * with a message in err (the first problem found, with its line). */
int mt_config_parse(mt_config *c, const char *text, const char *origin, char *err, size_t errlen);

/* Applies one "section.key=value" override. Returns 0, or -1 with a message in err. */
int mt_config_set(mt_config *c, const char *assignment, char *err, size_t errlen);

/* Checks combinations of keys that are valid one by one. Returns 0, or -1 with err. */
int mt_config_check(const mt_config *c, char *err, size_t errlen);

/* The resolved configuration as INI text, every key present; parsing it back gives the
 * same mt_config. Returns a malloc'd string the caller frees. */
char *mt_config_format(const mt_config *c);

/* Prints every section and key with its default and documentation (for --help). */
void mt_config_print_keys(FILE *out);

#endif
