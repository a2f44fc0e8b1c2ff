/* dist.c — MPI set-up, task ownership and collectives (see dist.h). */
#define _POSIX_C_SOURCE 200809L
#include "dist.h"

#include <assert.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
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
#ifdef __GLIBC__
    /* The temporaries of a reduce-scatter piece (a copy of it and a block or two) stay in
     * malloc's heap and are reused by the next piece: served from the heap below 32 MiB, and
     * never handed back to the kernel while less than 64 MiB is free at its top. glibc's
     * default (a threshold that grows with what was freed, and a top kept only up to twice
     * it) gave a page fault per page of every piece (see reduce_scatter_pieces). */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
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
    s->P = P;
    s->counts = mt_malloc((size_t)d->size * sizeof *s->counts);
    s->displs = mt_malloc((size_t)d->size * sizeof *s->displs);
    s->piece = mt_malloc((size_t)d->size * sizeof *s->piece);
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
    free(s->piece);
    memset(s, 0, sizeof *s);
}

/* The pieces of a reduce-scatter. Open MPI's reduce-scatter mallocs a copy of the whole
 * vector it is given (and a block or two) on every call. glibc serves a block of 32 MiB or
 * more by a fresh mmap and unmaps it on free, so a call on a longer vector page-faults all of
 * it in again. ResNet-12 on 2 ranks here (`mpirun -np 2 bench_collectives --only
 * resnet12-mini --scale 0.2 --piece-bytes B`, two runs): the exact mean of one task's 12.4 M
 * values took 142–143 ms in one piece, with 36,410 page faults per call, and 54–73 ms with
 * none in pieces of 1 MiB; the fast one 58–63 ms (12,137 faults) and 13–34 ms (none). With
 * mt_dist_init's malloc settings the pieces' temporaries stay in the heap. 1 MiB is 95 calls
 * for ResNet-12; Conv4's 0.9 MB and the sinusoid's 14 kB go in one. The fixed-point sums are
 * integers, the same bits however the vector is cut (tests/test_dist.c); the float sums of
 * dist.reduce = fast are cut the same way on every run. */
static size_t piece_bytes = (size_t)1 << 20;

size_t mt_dist_set_piece_bytes(size_t bytes)
{
    const size_t old = piece_bytes;
    piece_bytes = bytes > 0 ? bytes : 1;
    return old;
}

/* In-place reduce-scatter (MPI_SUM) of v[s->P], elements of `size` bytes, in pieces: piece
 * [a, b) goes in one call, every rank's share of it being the part of its shard inside it,
 * and this rank's part [x, y) of the sum lands at the start of the piece, v + a. take(ctx,
 * piece, x, y) is called on it at once (before a later piece could be mistaken for it). */
static void reduce_scatter_pieces(const mt_dist *d, const mt_shards *s, void *v, size_t size, MPI_Datatype type,
                                  void (*take)(void *ctx, const void *piece, size_t x, size_t y), void *ctx)
{
    const size_t step = piece_bytes / size > 0 ? piece_bytes / size : 1;
    for (size_t a = 0; a < s->P; a += step) {
        const size_t b = s->P - a < step ? s->P : a + step;
        for (int r = 0; r < d->size; r++) {
            const size_t lo = (size_t)s->displs[r], hi = lo + (size_t)s->counts[r];
            const size_t x = lo > a ? lo : a, y = hi < b ? hi : b;
            s->piece[r] = x < y ? (int)(y - x) : 0;
        }
        char *piece = (char *)v + a * size;
        MPI_CHECK(MPI_Reduce_scatter(MPI_IN_PLACE, piece, s->piece, type, MPI_SUM, d->comm));
        const size_t x = s->lo > a ? s->lo : a, y = s->hi < b ? s->hi : b;
        if (x < y) take(ctx, piece, x, y);
    }
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

typedef struct {
    const mt_shards *s;
    const mt_blocks *b;
    float *out;
    double scale;
} exact_take;

/* out[x − lo, y − lo) = the fixed-point sums piece[0, y − x) as floats, times 1/n_total */
static void take_exact(void *ctx, const void *piece, size_t x, size_t y)
{
    const exact_take *c = ctx;
    mt_fixed_block_to_float(c->out + (x - c->s->lo), piece, x, y, c->b->bound, c->b->n, c->b->q, c->scale);
}

typedef struct {
    const mt_shards *s;
    float *out;
    float inv;
} fast_take;

/* out[x − lo, y − lo) = the float sums piece[0, y − x) times 1/n_total */
static void take_fast(void *ctx, const void *piece, size_t x, size_t y)
{
    const fast_take *c = ctx;
    const float *sum = piece;
    for (size_t i = 0; i < y - x; i++) c->out[x - c->s->lo + i] = sum[i] * c->inv;
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
    exact_take ctx = {s, b, out, 1.0 / (double)n_total};
    reduce_scatter_pieces(d, s, acc, sizeof *acc, MPI_INT64_T, take_exact, &ctx);
    return gmax;
}

float mt_dist_mean_fast_shard(const mt_dist *d, const mt_shards *s, float *sum, float local_max, long n_total,
                              float *out, int *stop)
{
    const float gmax = agree_max(d, local_max, stop);
    fast_take ctx = {s, out, 1.0f / (float)n_total};
    reduce_scatter_pieces(d, s, sum, sizeof *sum, MPI_FLOAT, take_fast, &ctx);
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
