/*
 * metrics.h — the run's metrics log: <run.dir>/metrics.jsonl, one JSON object per logged
 * iteration, flushed line by line so a crash loses at most the line being written.
 * Non-finite numbers are written as null (JSON has no NaN).
 */
#ifndef MT_METRICS_H
#define MT_METRICS_H

#include <stdio.h>

typedef struct {
    long iteration;     /* completed meta-iterations */
    double loss_pre;    /* query loss before adaptation, mean over the meta-batch */
    double loss_post;   /* query loss after adaptation, mean over the meta-batch */
    double tasks_per_s; /* over the iterations since the previous line */
    double elapsed_s;   /* since the start of training */
    int has_accuracy;   /* classification: also write acc_pre and acc_post */
    double acc_pre, acc_post; /* query accuracy before / after adaptation, mean over the meta-batch */
    double peak_rss_mb; /* the largest peak resident set size of any rank so far, MiB (0: not written) */
} mt_metrics_row;

/* Opens (truncates) the log. Returns NULL with a message in err. */
FILE *mt_metrics_open(const char *path, char *err, size_t errlen);

/* Appends one line; returns 0, or -1 if the write failed. */
int mt_metrics_write(FILE *f, const mt_metrics_row *row);

#endif
