/*
 * cli.h — what the subcommands share: loading the configuration once on rank 0 and
 * broadcasting it, error reporting that every rank agrees on, and the small argument
 * helpers. Only rank 0 prints messages; every rank returns the same exit status.
 */
#ifndef MT_CLI_H
#define MT_CLI_H

#include "checkpoint.h"
#include "config.h"
#include "dist.h"

#define MT_MAX_SETS 256

/* Prints "metatrain: error: msg" on rank 0 only. */
void mt_cli_error(const mt_dist *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* While on, mt_cli_error keeps its message (the last one) instead of printing it: a sweep
 * records why a point failed in its table and prints it once. Switching it on clears it. */
void mt_cli_error_capture(int on);
const char *mt_cli_last_error(void); /* "" if none since capture began */

/* Rank 0 reads the config file (path NULL: the built-in default), every rank parses the
 * same text and applies the --set overrides in order, then the combination is checked.
 * Returns 0, or MT_EXIT_USAGE after printing the error (on rank 0). */
int mt_cli_load_config(const mt_dist *d, const char *path, char **sets, int n_sets, mt_config *c);

/* The most a config file may hold: configs are a few kB; /dev/zero is not one. */
#define MT_CONFIG_MAX_BYTES (1 << 20)
/* What mt_read_file reads at most. */
#define MT_READ_FILE_MAX ((size_t)64 << 20)

/* Reads a whole file of at most max bytes into a malloc'd NUL-terminated buffer; returns its
 * length, or -1 with errno set: EISDIR for a directory, EFBIG for a file (or device, FIFO)
 * that holds more than max bytes — it stops reading after max + 1, so /dev/zero ends at once. */
long mt_read_file_max(const char *path, size_t max, char **out);

/* mt_read_file_max(path, MT_READ_FILE_MAX, out). */
long mt_read_file(const char *path, char **out);

/* Physical memory of this node in bytes (0 if unknown), or the environment's MT_MEMORY_LIMIT
 * (decimal bytes) if that is smaller: the mem_bytes of mt_config_check_size. */
size_t mt_cli_memory_bytes(void);

/* If argv[*i] is the option `name` ("--name VALUE" or "--name=VALUE"): returns 1 with *value
 * (NULL if the value is missing) and *i on the value's argument; else 0. */
int mt_cli_option(int argc, char **argv, int *i, const char *name, const char **value);

/* Appends the --set assignment v (NULL: missing) to sets[*n_sets] (MT_MAX_SETS at most).
 * Returns 0, or MT_EXIT_USAGE after printing the error. */
int mt_cli_add_set(const mt_dist *d, char **sets, int *n_sets, const char *v);

/* An argument of `metatrain CMD` that no option took: an unknown option is an error, the
 * first other one is the CONFIG (*config), a second one an error. Returns 0, or
 * MT_EXIT_USAGE after printing the error. */
int mt_cli_config_arg(const mt_dist *d, const char *cmd, const char *arg, const char **config);

/* Collective. Rank 0 reads and validates checkpoint `path` into *ck (the other ranks' ck stays
 * zeroed), every rank parses its configuration into *cfg. Returns 0, or MT_EXIT_USAGE after
 * printing why (on rank 0); ck is freed then. */
int mt_cli_read_checkpoint(const mt_dist *d, const char *path, mt_checkpoint *ck, mt_config *cfg);

/* Collective. Checks on rank 0 that ck (read by mt_cli_read_checkpoint) holds model m and was
 * trained on inputs of m's shape (a layout alone cannot tell 16x16 images from 28x28 ones when
 * the parameter count happens to match); source names the data in the message. Returns 0, or
 * MT_EXIT_USAGE after printing why. */
int mt_cli_check_checkpoint_model(const mt_dist *d, const char *path, const mt_checkpoint *ck, const mt_model *m,
                                  const char *source);

/* Prints s to stdout as a JSON string: quotes, backslashes and control characters escaped. */
void mt_cli_json_string(const char *s);

/* A number as JSON text ("%.9g"), or null when it is not finite (JSON has no NaN). */
void mt_cli_json_number(char out[32], double v);

/* Parses a whole non-negative decimal long (for CLI values); returns 0, or -1. */
int mt_parse_long(const char *s, long lo, long hi, long *out);

int mt_train_main(const mt_dist *d, int argc, char **argv);
int mt_eval_main(const mt_dist *d, int argc, char **argv);
int mt_inspect_main(const mt_dist *d, int argc, char **argv);
int mt_data_main(const mt_dist *d, int argc, char **argv);
int mt_sweep_main(const mt_dist *d, int argc, char **argv);
int mt_finetune_main(const mt_dist *d, int argc, char **argv);

#endif
