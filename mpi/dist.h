/*
 * dist.h — how metatrain runs on many ranks: set-up from mpirun/srun, who owns which tasks,
 * the reductions of a meta-iteration, and collective decisions.
 *
 * Every MPI call is checked (the communicator returns errors instead of aborting) and a
 * failure is fatal with file, line, rank and host. Fatal errors anywhere in metatrain go
 * through MPI_Abort, so one rank's failure ends the whole job instead of hanging it.
 */
#ifndef MT_DIST_H
#define MT_DIST_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    MPI_Comm comm;     /* the ranks of this run (a duplicate of MPI_COMM_WORLD) */
    int rank, size;
    int local_rank;    /* rank among the ranks on the same node */
    int local_size;
    char host[64];
} mt_dist;

/* MPI_Init, communicator set-up, the origin shown in fatal messages ("rank 1/4 on host")
 * and the fatal-error hook (MPI_Abort). */
void mt_dist_init(mt_dist *d, int *argc, char ***argv);
void mt_dist_finalize(mt_dist *d);

/* Tasks [lo, hi) of a meta-batch of n_tasks owned by rank of size ranks: contiguous blocks,
 * [rank·n/size, (rank+1)·n/size). A pure function, the same on every rank. */
void mt_dist_task_range(int n_tasks, int rank, int size, int *lo, int *hi);

/* In-place sum of buf[n] over all ranks (double MPI_Allreduce). */
void mt_dist_sum_double(const mt_dist *d, double *buf, size_t n);

/* The shards of a vector of P values over the ranks: contiguous, in rank order, sizes
 * differing by at most one; a pure function of (P, size). Made once per run (the hot loop
 * does not allocate). */
typedef struct {
    size_t P;             /* the vector's length */
    size_t lo, hi;        /* this rank's shard [lo, hi) */
    int *counts, *displs; /* every rank's shard size and start, for the v-collectives */
    int *piece;           /* scratch: every rank's share of one piece of a reduce-scatter */
} mt_shards;

void mt_shards_init(mt_shards *s, const mt_dist *d, size_t P);
void mt_shards_free(mt_shards *s); /* accepts a zeroed struct */
/* Rank r's shard of P values over n ranks. */
void mt_shard_range(size_t P, int n, int r, size_t *lo, size_t *hi);

/* The blocks of the exact reduction: the P values split into contiguous blocks (the model's
 * parameter tensors), each summed with its own quantum from its own global max |value| (see
 * src/fixed.h), so the error is relative to the block's largest value. Made once per run. */
typedef struct {
    int n;         /* blocks */
    size_t *bound; /* [n + 1]: block k is [bound[k], bound[k + 1]); bound[0] = 0, bound[n] = P */
    float *max;    /* [n + 1] scratch: the blocks' max |value|, then the stop flag (one MPI_MAX) */
    double *q;     /* [n] scratch: the blocks' quanta */
} mt_blocks;

/* Blocks of the given sizes size[n] (n >= 1), in order; they must add up to P (checked). */
void mt_blocks_init(mt_blocks *b, const size_t *size, int n, size_t P);
void mt_blocks_free(mt_blocks *b); /* accepts a zeroed struct */

/* This rank's shard out[hi−lo] of the mean (Σ over all ranks' local task vectors
 * tasks[n_local, P]) / n_total, summed exactly in fixed point with one quantum per block of b
 * (src/fixed.h): the same bits for any rank count, task placement and MPI algorithm. Two
 * collectives: one MPI_MAX of the blocks' maxima over this rank's tasks (computed here, a pass
 * over tasks) and the stop flag (*stop: in, this rank's flag; out, the largest of all
 * ranks'), then an int64 reduce-scatter. local_max only reports a non-finite state: if it is
 * NaN or infinite the mean is NaN (as for a non-finite value in tasks). acc is int64 scratch
 * [P]. Returns the global max |value| over all blocks, or NaN when any value anywhere is NaN or
 * infinite (or any rank's local_max is): then out is NaN on every rank and the caller must not
 * use it. */
float mt_dist_mean_exact_shard(const mt_dist *d, const mt_shards *s, const mt_blocks *b, const float *tasks,
                               int n_local, size_t P, float local_max, long n_total, float *out, int64_t *acc,
                               int *stop);
/* The same with a float reduce-scatter (dist.reduce = fast) and no blocks: two collectives
 * (an MPI_MAX of local_max, this rank's max |value| or NaN, with the stop flag; then a float
 * reduce-scatter) and the same return value. sum[P] holds this rank's tasks' gradients
 * already summed (the caller adds each as it is formed, so no task's gradient is kept) and is
 * reduced in place. */
float mt_dist_mean_fast_shard(const mt_dist *d, const mt_shards *s, float *sum, float local_max, long n_total,
                              float *out, int *stop);
/* Both reduce-scatters move the vector in pieces of at most this many bytes (default 1 MiB,
 * see dist.c); integer sums do not depend on the cut. For tests: a small value makes a small
 * model go in many pieces. Returns the previous value. */
size_t mt_dist_set_piece_bytes(size_t bytes);
/* Rank 0's full vector full[P] (ignored elsewhere) scattered: every rank gets its shard. */
void mt_dist_scatter_shards(const mt_dist *d, const mt_shards *s, const float *full, float *shard);

/* Every rank's shard of v[P] to every rank (in place: each rank's own shard is the input). */
void mt_dist_allgather_shards(const mt_dist *d, const mt_shards *s, float *v);

/* Collective: the largest of every rank's flag. */
int mt_dist_max_int(const mt_dist *d, int flag);

/* Collective decision: 1 on every rank iff ok is non-zero on every rank. */
int mt_dist_all(const mt_dist *d, int ok);

/* Broadcasts a malloc'd byte buffer (with a terminating NUL) from rank 0. On rank 0 *buf
 * and len are inputs (buf may be NULL with len < 0 to broadcast "failed"); on the others
 * they are outputs. Returns len as seen by all ranks (< 0: rank 0 failed, *buf NULL). */
long mt_dist_bcast_text(const mt_dist *d, char **buf, long len);

/* Broadcasts buf[n] from rank 0. */
void mt_dist_bcast_float(const mt_dist *d, float *buf, size_t n);
void mt_dist_bcast_long(const mt_dist *d, long *buf, size_t n);

/* Ends the job from any rank: MPI_Abort(code). */
_Noreturn void mt_dist_abort(int code);

#endif
