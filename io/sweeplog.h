/*
 * sweeplog.h — a sweep's records on disk: the journal and the table.
 *
 * <run.dir>/sweep.journal holds one line per finished piece of work (a point trained to a
 * rung and evaluated, stopped, or failed), appended and fsync'd as it happens. It is the
 * sweep's memory: a re-run reads it to skip what is done and to redo successive halving's
 * decisions exactly, and `--point` jobs of a Slurm array each add their own lines.
 * <run.dir>/sweep.csv is made from it (one row per point, write-then-rename), for people
 * and for scripts/plot. Both are written under an fcntl lock on <run.dir>/sweep.lock, so
 * concurrent array jobs never lose one another's rows.
 */
#ifndef MT_SWEEPLOG_H
#define MT_SWEEPLOG_H

#include <stddef.h>

#include "sweep_plan.h"

typedef struct {
    char id[MT_SWEEP_ID_LEN]; /* the point */
    int rung;                 /* the rung it trained for */
    long iterations;          /* iterations reached */
    char status[16];          /* "done", "stopped" or "failed" */
    double train_loss;        /* meta-train query loss after adaptation at `iterations` (NaN: unknown) */
    double eval_mean, eval_ci95; /* meta-validation metric (NaN: not evaluated) */
    double wall_s;            /* seconds this piece of work took */
    char message[512];        /* failed: why (tabs and line breaks become blanks) */
} mt_sweep_record;

/* Takes the lock of dir's sweep files, waiting for another holder. Returns the lock's file
 * descriptor (release with mt_sweep_log_unlock), or -1 with err. */
int mt_sweep_log_lock(const char *dir, char *err, size_t errlen);
void mt_sweep_log_unlock(int fd); /* accepts -1 */

/* Appends r to dir/sweep.journal and fsyncs it. Returns 0, or -1 with err. */
int mt_sweep_log_append(const char *dir, const mt_sweep_record *r, char *err, size_t errlen);

/* Reads dir/sweep.journal into a malloc'd array (*out, caller frees; NULL when empty).
 * Returns the number of records (0 if there is no journal), or -1 with err. A line that does
 * not parse (a torn last line after a crash) is skipped. */
long mt_sweep_log_read(const char *dir, mt_sweep_record **out, char *err, size_t errlen);

/* The summary of one point from the records: its latest record (the highest rung, the last
 * line within it) with wall_s summed over all its records. Returns 0, or -1 if the point has
 * none. */
int mt_sweep_log_summary(const mt_sweep_record *recs, long n, const char *id, mt_sweep_record *out);

/* Writes dir/sweep.csv: a header `point,<section.key>...,rung,iterations,train_loss,
 * eval_metric,eval_mean,eval_ci95,wall_s,status` and one row per point in plan order (no
 * record yet: status "pending", or "running" where running[i]; running may be NULL).
 * RFC 4180 quoting. Write-then-rename with fsync. Returns 0, or -1 with err. */
int mt_sweep_csv_write(const char *dir, const mt_sweep_spec *s, const mt_sweep_point *pts, long n_points,
                       const mt_sweep_record *recs, long n_recs, const char *metric, const int *running, char *err,
                       size_t errlen);

#endif
