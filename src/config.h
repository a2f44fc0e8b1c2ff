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

#include <stddef.h>
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
    char train_split[64], test_split[64], val_split[64];
    int rotations;
    float amp_min, amp_max, phase_min, phase_max, x_min, x_max; /* sinusoid: the task distribution */
    /* [augment] (fewshot meta-training tasks) */
    int crop_padding, flip;
    /* [model] */
    char arch[16];
    int hidden, filters;
    int widths[4]; /* resnet12: channels of the four stages */
    /* [meta] */
    char algo[16];
    int inner_steps, eval_inner_steps, meta_batch;
    long first_order_until; /* maml: first-order meta-gradients up to this iteration */
    int multi_step_loss;    /* maml, fomaml: 1 = MAML++'s weighted query loss after every step */
    long msl_iterations;    /* ... its weights anneal toward the last step over this many */
    int lslr;               /* maml, fomaml: 1 = a learned rate per inner step and tensor (MAML++) */
    float alpha_lr;         /* metasgd, lslr: the learned rates' Adam rate, as a multiple of optim.lr */
    float inner_lr;
    /* [optim] */
    float lr, beta1, beta2, eps;
    /* [checkpoint] */
    long ckpt_every;
    int ckpt_keep;
    /* [dist] */
    char reduce[16];
    /* [finetune] (metatrain finetune; a sweep that sets finetune.checkpoint fine-tunes it) */
    char ft_checkpoint[MT_PATH_LEN]; /* the parent checkpoint */
    char ft_split[64];               /* "": the parent's task.test_split */
    int ft_ways;                     /* 0: the parent's task.ways */
    int ft_shots, ft_query;          /* training / held-out images per class (0: see the key table) */
    long ft_steps;
    int ft_batch, ft_repeats;
    char ft_optim[16];               /* adam | sgd */
    float ft_lr;
    char ft_freeze[512];             /* layer names separated by commas, or body */
} mt_config;

/* The built-in default: sinusoid MAML as in Finn et al. 2017 (DESIGN §7). */
void mt_config_defaults(mt_config *c);

/* Applies the keys of INI text to c. origin (a path) prefixes messages. Returns 0, or -1
 * with a message in err (the first problem found, with its line). */
int mt_config_parse(mt_config *c, const char *text, const char *origin, char *err, size_t errlen);

/* Applies one "section.key=value" override; blanks around section, key and value are
 * dropped as in a file ("run.seed= -1" is the value "-1", rejected). Returns 0, or -1 with a
 * message in err. */
int mt_config_set(mt_config *c, const char *assignment, char *err, size_t errlen);

/* Checks combinations of keys that are valid one by one: family and model agree, run.dir
 * names a directory, a key the family or model does not use (model.filters with arch = mlp,
 * task.ways with family = sinusoid, ...) holds its default value — at its default it changes
 * nothing, so files listing every key (a run's resolved config.ini, the config text of older
 * checkpoints, configs/sinusoid_maml.ini) stay valid — and the model's parameter count fits
 * MT_CONFIG_MAX_PARAMS (Conv4: a lower bound; the dataset's shape adds to it, see
 * mt_config_check_size). checkpoint.every may exceed run.iterations (the last iteration
 * always checkpoints). Returns 0, or -1 with err. */
int mt_config_check(const mt_config *c, char *err, size_t errlen);

/* For an assignment that mt_config_set applied: -1 with "--set KEY=...: ... does not apply
 * to ..." in err if the key is not used by c's final family and model (an explicit --set is
 * an error even at the default value), else 0. Call it for each --set after all are applied. */
int mt_config_check_set(const mt_config *c, const char *assignment, char *err, size_t errlen);

/* The most parameters a model may have: P floats go through one MPI call (int count). */
#define MT_CONFIG_MAX_PARAMS 2147483647ULL

/* Bytes of the slab train.c allocates per rank: θ plus this rank's tasks' gradients, then the
 * shard's mean gradient and Adam moments, (1 + ceil(B/N))·P + 3·ceil(P/N) floats for the
 * exact reduction (exact = 1: it keeps every task's gradient until the reduction), or
 * 2·P + 3·ceil(P/N) for the float one, for P parameters, B = meta_batch and N = world_size
 * ranks. SIZE_MAX if that overflows size_t or meta_batch or world_size is below 1. The
 * reduction's scratch (P int64 or floats), the dataset and the activations come on top. */
size_t mt_config_slab_bytes(size_t P, int meta_batch, int world_size, int exact);

/* Checks the model that c builds, once its parameter count n_params is known (Conv4: after
 * reading the dataset's image shape, before loading the images): n_params at most
 * MT_CONFIG_MAX_PARAMS, and mt_config_slab_bytes(n_params, c->meta_batch, world_size, exact) at
 * most mem_bytes (0: no memory check). Returns 0, or -1 with a message that names the key to
 * change (the caller exits 2). */
int mt_config_check_size(const mt_config *c, size_t n_params, int world_size, size_t mem_bytes, char *err,
                         size_t errlen);

/* ---- comparing configurations (resuming a run) ---- */

/* Compares every key that applies to old's or new's family and model; writes the ones that
 * differ into out as "section.key: old -> new", separated by "; " (an empty string shows as
 * "", a list longer than outlen ends in "..."; out may be NULL with outlen 0). Returns the
 * number of keys that differ (0: the same configuration). */
int mt_config_diff(const mt_config *old, const mt_config *new, char *out, size_t outlen);

/* 1 iff a resumed run may change the key ("section.key") on purpose: run.dir, run.iterations,
 * run.log_every, checkpoint.every, checkpoint.keep, and the finetune.* keys (training does not
 * read them). Any other change alters what the run computes. */
int mt_config_resume_may_change(const char *key);

/* mt_config_diff restricted to the keys mt_config_resume_may_change refuses: a resumed run
 * stops (exit 2) with this list unless --resume-force. Returns their number. */
int mt_config_resume_diff(const mt_config *old, const mt_config *new, char *out, size_t outlen);

/* The resolved configuration as INI text, every key present (keys the family or model does
 * not use at their defaults, as mt_config_check demands); parsing it back gives the same
 * configuration (mt_config_diff 0, identical text). Returns a malloc'd string the caller frees. */
char *mt_config_format(const mt_config *c);

/* ---- INI text through libinih, with line numbers (config files, and a sweep's [sweep]) ---- */

/* Where libinih is in the text: `line` is the line being parsed (1-based) while the handler
 * runs; on_line (optional) sees every line as it is read, with ctx. */
typedef struct {
    const char *text; /* the rest of the input */
    int line, at_line_start;
    void (*on_line)(void *ctx, const char *line);
    void *ctx;
} mt_ini_input;

/* Parses text with libinih (one value per line, lines of any length, no continuation lines),
 * calling handler(user, section, name, value) per key; in->line gives the handler its line.
 * Returns libinih's result: 0, the first line libinih could not parse, or -1 (no memory). */
int mt_ini_parse(const char *text, mt_ini_input *in, int (*handler)(void *, const char *, const char *, const char *),
                 void *user);

/* Prints every section and key with its default and documentation (for --help). */
void mt_config_print_keys(FILE *out);

/* What kind of value a key holds, for tools that generate values (the sweep). */
enum {
    MT_KEY_KIND_STRING = 1, /* strings and choices */
    MT_KEY_KIND_INT = 2,    /* whole numbers: int, long, u64 */
    MT_KEY_KIND_FLOAT = 3
};

/* The MT_KEY_KIND_* of key [section] name, or 0 if there is no such key. */
int mt_config_key_kind(const char *section, const char *name);

#endif
