/*
 * rundir.h — one owner per run directory: the run lock, stale partial files, and what an
 * earlier run left behind.
 *
 * A training job holds an fcntl write lock on <run.dir>/run.lock for its whole life (taken by
 * rank 0, the rank that renames and prunes). A second job on the same directory stops at
 * once with a message that names the holder (host, pid, Slurm job id, start time), which the
 * holder writes into the file after taking the lock. The kernel releases the lock when the
 * holder dies, however it dies, so a killed job never blocks its requeued successor; the
 * stale file content is simply overwritten. fcntl locks work on NFS (through lockd) and on
 * Lustre/GPFS mounted with locking; HDF5's own file locking is separate and may be off.
 *
 * Not here: which checkpoints belong to the run (their run_id attribute, io/checkpoint.h).
 */
#ifndef MT_RUNDIR_H
#define MT_RUNDIR_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    int fd; /* the locked run.lock, or -1 */
} mt_run_lock;

/* Creates dir (mkdir -p) and takes its run lock without waiting. Returns 0 and fills lk;
 * 1 when another process holds the lock (err names the holder); -1 on an I/O failure
 * (err says what failed). */
int mt_run_lock_take(mt_run_lock *lk, const char *dir, char *err, size_t errlen);

/* Releases the lock (the file stays: deleting it would race with a successor). Accepts an
 * unlocked struct. */
void mt_run_lock_release(mt_run_lock *lk);

/* Deletes the partial files a killed job can leave in dir (ckpt-*.h5.partial,
 * config.ini.partial, metrics.jsonl.partial); call only while holding the lock. Prints one
 * line per file to out (may be NULL). Returns the number removed, or -1 with err. */
int mt_run_clean_partials(const char *dir, FILE *out, char *err, size_t errlen);

#endif
