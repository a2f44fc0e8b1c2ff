/*
 * train.h — one meta-training run as a function: what `metatrain train` runs once and
 * `metatrain sweep` runs for every point of a sweep, each on its own communicator.
 *
 * A run owns its run.dir (the run lock), resumes from its own checkpoints, trains up to
 * run.iterations (or a sweep rung's stop_at, with a checkpoint there so that the next rung
 * resumes bit-identically), and optionally evaluates the result on meta-validation tasks.
 */
#ifndef MT_TRAIN_H
#define MT_TRAIN_H

#include <stdio.h>

#include "config.h"
#include "dist.h"
#include "eval.h"
#include "progress.h"

typedef struct {
    mt_progress_mode progress;
    const char *resume; /* "auto" (default), "never" or a checkpoint path */
    int overwrite;      /* a fresh start may delete an earlier run's files */
    int resume_force;   /* resume even if keys other than iterations, logging, checkpoints changed */
    long stop_at;       /* > 0: stop at this iteration (below run.iterations) with a checkpoint */
    FILE *out;          /* where rank 0 reports (NULL: stdout) */
    long eval_tasks;    /* > 0: evaluate the final θ on this many meta-validation tasks */
    /* Called on rank 0 of the run once per iteration; non-zero asks the run to stop at this
     * iteration with a checkpoint, as a signal does (the sweep's scheduler lives here). */
    int (*poll)(void *ctx);
    void *poll_ctx;
} mt_train_opts;

/* The defaults: resume auto, progress auto, stdout, no stop_at, no evaluation, no poll. */
void mt_train_opts_default(mt_train_opts *o);

typedef struct {
    int rc;            /* the exit status (also returned) */
    long iteration;    /* the iteration reached (0 if training never started) */
    double loss_post;  /* rank 0: meta-train query loss after adaptation at that iteration (NaN: unknown) */
    mt_eval_result eval; /* eval.tasks = 0 unless evaluated */
    char status[2 * MT_PATH_LEN + 512]; /* rank 0: how it ended, one line */
} mt_train_result;

/* Collective over d. Trains cfg (already checked) with options o and fills res. Returns 0,
 * MT_EXIT_USAGE (bad input, run.dir in use or holding another run), MT_EXIT_FAILURE, or
 * MT_EXIT_CHECKPOINTED (stopped by a signal or by o->poll, after a checkpoint). Rank 0 prints
 * the reason of a failure as "metatrain: error: ..." (see mt_cli_error). */
int mt_train_run(const mt_dist *d, const mt_config *cfg, const mt_train_opts *o, mt_train_result *res);

/* Installs the handlers of SIGUSR1, SIGTERM, SIGINT and SIGHUP: they only set a flag that the
 * training loop reads (stop with a checkpoint at the next iteration). Call it first thing. */
void mt_train_catch_signals(void);

/* The stop signal received so far (0: none). */
int mt_train_stop_signal(void);

#endif
