/*
 * progress.h — what rank 0 shows while a long job runs.
 *
 *   bar    one line redrawn in place (at most 10 times a second): iterations, rate, ETA and
 *          the latest losses — for a person watching a terminal;
 *   lines  one plain line per logged iteration — for log files (Slurm, redirected output);
 *   none   nothing but the final summary.
 *
 * "auto" picks bar when the output ends on a terminal. Under mpirun every rank's stdout is
 * a pseudo-terminal even when mpirun's own output goes to a file, so auto looks at where
 * the launching mpirun writes (Linux /proc), and uses lines when it cannot tell.
 */
#ifndef MT_PROGRESS_H
#define MT_PROGRESS_H

#include <stdio.h>

typedef enum { MT_PROGRESS_AUTO, MT_PROGRESS_BAR, MT_PROGRESS_LINES, MT_PROGRESS_NONE } mt_progress_mode;

typedef struct {
    mt_progress_mode mode; /* resolved: never AUTO */
    FILE *out;
    const char *label;
    long first, total; /* units done before this run started (a resume), and in all */
    double start, last_draw;
} mt_progress;

/* Parses "auto", "bar", "lines", "none"; returns 0, or -1. */
int mt_progress_parse(const char *s, mt_progress_mode *out);

/* Resolves AUTO and starts the clock; `first` of `total` units are already done. */
void mt_progress_start(mt_progress *p, mt_progress_mode mode, FILE *out, const char *label, long first, long total);

/* Reports that `done` of total units are complete; `status` is a short text such as
 * "loss 0.41 -> 0.05". logged: this is a logged iteration (lines mode prints only those). */
void mt_progress_update(mt_progress *p, long done, const char *status, int logged);

/* Ends the bar's line (if any). */
void mt_progress_finish(mt_progress *p);

#endif
