/* dist.c — MPI set-up, task ownership and collectives (see dist.h). */
#define _POSIX_C_SOURCE 200809L
#include "dist.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "fixed.h"

#include <float.h>
#include <math.h>

#define MPI_CHECK(call)                                                                        \
    do {                                                                                       \
        int rc_ = (call);                                                                      \
        if (rc_ != MPI_SUCCESS) {                                                              \
            char msg_[MPI_MAX_ERROR_STRING];                                                   \
            int len_ = 0;                                                                      \
            MPI_Error_string(rc_, msg_, &len_);                                                \
            mt_fatal("%s failed: %s", #call, msg_);                                            \
        }                                                                                      \
    } while (0)

_Noreturn void mt_dist_abort(int code)
{
    MPI_Abort(MPI_COMM_WORLD, code);
    _exit(code); /* MPI_Abort does not return; this satisfies _Noreturn */
}

void mt_dist_init(mt_dist *d, int *argc, char ***argv)
{
    MPI_CHECK(MPI_Init(argc, argv));
    mt_set_abort_hook(mt_dist_abort);
    memset(d, 0, sizeof *d);
    MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &d->comm));
    MPI_CHECK(MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(d->comm, &d->rank));
    MPI_CHECK(MPI_Comm_size(d->comm, &d->size));
    MPI_Comm node;
    MPI_CHECK(MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node));
    MPI_CHECK(MPI_Comm_rank(node, &d->local_rank));
    MPI_CHECK(MPI_Comm_size(node, &d->local_size));
    MPI_CHECK(MPI_Comm_free(&node));
    if (gethostname(d->host, sizeof d->host) != 0) snprintf(d->host, sizeof d->host, "unknown-host");
    d->host[sizeof d->host - 1] = '\0';
    char who[128];
    snprintf(who, sizeof who, "rank %d/%d on %s", d->rank, d->size, d->host);
    mt_set_origin(who);
}

void mt_dist_finalize(mt_dist *d)
{
    MPI_CHECK(MPI_Comm_free(&d->comm));
    MPI_CHECK(MPI_Finalize());
}

void mt_dist_task_range(int n_tasks, int rank, int size, int *lo, int *hi)
{
    size_t l, h; /* the same blocks as the optimizer's shards */
    mt_shard_range((size_t)n_tasks, size, rank, &l, &h);
    *lo = (int)l, *hi = (int)h;
}

void mt_dist_sum_double(const mt_dist *d, double *buf, size_t n)
{
    MT_CHECK(n <= (size_t)0x7fffffff, "reduction of %zu values is too large for one MPI call", n);
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, d->comm));
}

int mt_dist_all(const mt_dist *d, int ok)
{
    int in = ok ? 1 : 0, out = 0;
    MPI_CHECK(MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_LAND, d->comm));
    return out;
}

long mt_dist_bcast_text(const mt_dist *d, char **buf, long len)
{
    long n = d->rank == 0 ? len : 0;
    MPI_CHECK(MPI_Bcast(&n, 1, MPI_LONG, 0, d->comm));
    if (n < 0) {
        if (d->rank != 0) *buf = NULL;
        return n;
    }
    MT_CHECK(n < 0x7fffffff, "text of %ld bytes is too large to broadcast", n);
    if (d->rank != 0) *buf = mt_malloc((size_t)n + 1);
    MPI_CHECK(MPI_Bcast(*buf, (int)n + 1, MPI_CHAR, 0, d->comm));
    return n;
}

void mt_dist_bcast_float(const mt_dist *d, float *buf, size_t n)
{
    MT_CHECK(n <= (size_t)0x7fffffff, "broadcast of %zu values is too large for one MPI call", n);
    MPI_CHECK(MPI_Bcast(buf, (int)n, MPI_FLOAT, 0, d->comm));
}

void mt_shard_range(size_t P, int n, int r, size_t *lo, size_t *hi)
{
    *lo = P * (size_t)r / (size_t)n;
    *hi = P * (size_t)(r + 1) / (size_t)n;
}

void mt_shards_init(mt_shards *s, const mt_dist *d, size_t P)
{
    MT_CHECK(P <= (size_t)0x7fffffff, "%zu parameters are too many for one MPI call", P);
    s->counts = mt_malloc((size_t)d->size * sizeof *s->counts);
    s->displs = mt_malloc((size_t)d->size * sizeof *s->displs);
    for (int r = 0; r < d->size; r++) {
        size_t lo, hi;
        mt_shard_range(P, d->size, r, &lo, &hi);
        s->counts[r] = (int)(hi - lo);
        s->displs[r] = (int)lo;
    }
    mt_shard_range(P, d->size, d->rank, &s->lo, &s->hi);
}

void mt_shards_free(mt_shards *s)
{
    free(s->counts);
    free(s->displs);
    memset(s, 0, sizeof *s);
}

/* The global max |g| and the agreed stop flag, in one MPI_MAX allreduce of two floats
 * (collective). NaN: something not finite somewhere. */
static float agree_max(const mt_dist *d, float local_max, int *stop)
{
    float local[2] = {local_max, (float)*stop}, global[2] = {0.0f, 0.0f};
    if (!(local[0] <= FLT_MAX)) local[0] = INFINITY; /* NaN too: MPI_MAX need not order NaN */
    MPI_CHECK(MPI_Allreduce(local, global, 2, MPI_FLOAT, MPI_MAX, d->comm));
    *stop = (int)global[1];
    return isfinite(global[0]) ? global[0] : NAN;
}

void mt_blocks_init(mt_blocks *b, const size_t *size, int n, size_t P)
{
    MT_CHECK(n >= 1, "the exact reduction needs at least one block, not %d", n);
    b->n = n;
    b->bound = mt_malloc(((size_t)n + 1) * sizeof *b->bound);
    b->max = mt_malloc(((size_t)n + 1) * sizeof *b->max);
    b->q = mt_malloc((size_t)n * sizeof *b->q);
    b->bound[0] = 0;
    for (int k = 0; k < n; k++) b->bound[k + 1] = b->bound[k] + size[k];
    MT_CHECK(b->bound[n] == P, "the %d blocks hold %zu values, not the %zu parameters", n, b->bound[n], P);
}

void mt_blocks_free(mt_blocks *b)
{
    free(b->bound);
    free(b->max);
    free(b->q);
    memset(b, 0, sizeof *b);
}

float mt_dist_mean_exact_shard(const mt_dist *d, const mt_shards *s, const mt_blocks *b, const float *tasks,
                               int n_local, size_t P, float local_max, long n_total, float *out, int64_t *acc,
                               int *stop)
{
    assert(b->bound[b->n] == P);
    const int K = b->n;
    float *max = b->max; /* [K + 1]: the blocks' maxima, then the stop flag */
    for (int k = 0; k < K; k++) max[k] = 0.0f;
    for (int t = 0; t < n_local; t++) mt_fixed_block_max(max, tasks + (size_t)t * P, b->bound, K);
    if (!(local_max <= FLT_MAX)) max[0] = INFINITY; /* a non-finite state, as a non-finite value */
    for (int k = 0; k < K; k++)
        if (!(max[k] <= FLT_MAX)) max[k] = INFINITY; /* NaN too: MPI_MAX need not order NaN */
    max[K] = (float)*stop;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, max, K + 1, MPI_FLOAT, MPI_MAX, d->comm));
    *stop = (int)max[K];
    float gmax = 0.0f; /* every max[k] is finite or infinite now */
    for (int k = 0; k < K; k++) {
        gmax = max[k] > gmax ? max[k] : gmax;
        b->q[k] = mt_fixed_quantum(max[k], n_total);
    }
    const size_t n = s->hi - s->lo;
    if (isinf(gmax)) {
        for (size_t i = 0; i < n; i++) out[i] = NAN;
        return NAN;
    }
    memset(acc, 0, P * sizeof *acc);
    for (int t = 0; t < n_local; t++) mt_fixed_block_add(acc, tasks + (size_t)t * P, b->bound, K, b->q);
    /* In place: every rank sends all of acc and receives its shard at the start of acc. */
    MPI_CHECK(MPI_Reduce_scatter(MPI_IN_PLACE, acc, s->counts, MPI_INT64_T, MPI_SUM, d->comm));
    mt_fixed_block_to_float(out, acc, s->lo, s->hi, b->bound, K, b->q, 1.0 / (double)n_total);
    return gmax;
}

float mt_dist_mean_fast_shard(const mt_dist *d, const mt_shards *s, float *sum, float local_max, long n_total,
                              float *out, int *stop)
{
    const float gmax = agree_max(d, local_max, stop);
    MPI_CHECK(MPI_Reduce_scatter(MPI_IN_PLACE, sum, s->counts, MPI_FLOAT, MPI_SUM, d->comm));
    const float inv = 1.0f / (float)n_total;
    for (size_t i = 0; i < s->hi - s->lo; i++) out[i] = sum[i] * inv;
    return gmax;
}

void mt_dist_allgather_shards(const mt_dist *d, const mt_shards *s, float *v)
{
    MPI_CHECK(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, v, s->counts, s->displs, MPI_FLOAT, d->comm));
}

void mt_dist_scatter_shards(const mt_dist *d, const mt_shards *s, const float *full, float *shard)
{
    MPI_CHECK(MPI_Scatterv(full, s->counts, s->displs, MPI_FLOAT, shard, (int)(s->hi - s->lo), MPI_FLOAT, 0, d->comm));
}

void mt_dist_bcast_long(const mt_dist *d, long *buf, size_t n)
{
    MPI_CHECK(MPI_Bcast(buf, (int)n, MPI_LONG, 0, d->comm));
}

int mt_dist_max_int(const mt_dist *d, int flag)
{
    int out = 0;
    MPI_CHECK(MPI_Allreduce(&flag, &out, 1, MPI_INT, MPI_MAX, d->comm));
    return out;
}
