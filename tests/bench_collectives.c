/*
 * bench_collectives.c — times the collectives of one meta-iteration of `metatrain train` on
 * the ranks it runs on: the measurements behind docs/SCALING.md. A benchmark tool built with
 * the tests, not a test; scripts/bench-scaling runs it on 1–4 ranks and fits a cost model.
 *
 *   mpirun -np N bench_collectives [--scale S] [--only LIST] [--piece-bytes B]
 *
 * LIST: comma-separated sets to run, of sinusoid-mlp, conv4-fmnist, resnet12-mini and sweep
 * (default: all four).
 *
 * One training iteration (src/train.c through mpi/dist.c) makes three collectives:
 *   dist.reduce = exact: MPI_Allreduce MAX of K + 1 floats (the maxima of the K parameter
 *     tensors and the stop flag), MPI_Reduce_scatter SUM of P int64 in place (the fixed-point
 *     sums), then MPI_Allgatherv of θ, P floats, each rank giving its shard in place;
 *   dist.reduce = fast: MPI_Allreduce MAX of 2 floats, MPI_Reduce_scatter SUM of P floats in
 *     place, then the same MPI_Allgatherv.
 * (Every run.log_every-th iteration adds a double sum of 4 values per task and two small
 * collectives for the log; they are not timed here.)
 *
 * For the three models of the scaling notes — the sinusoid MLP 1-40-40-1, Conv4-64 5-way on
 * 28×28×1, ResNet-12 64-160-320-640 5-way on 84×84×3, built here as train builds them so P,
 * the K blocks and the shards are train's — it times each of those MPI calls alone with
 * train's datatypes, counts and shards, and the calls of mpi/dist.c that train makes:
 * mt_dist_mean_exact_shard with one local task (so it includes the fixed-point passes over
 * one task's gradient), mt_dist_mean_fast_shard and mt_dist_allgather_shards (whose
 * reduce-scatters go in pieces of B bytes, --piece-bytes; the raw calls rs64 and rs32 in one). Then the three
 * large collectives alone on a sweep of vector sizes from 8 B to 64 MiB, for the fit; and
 * MPI_Reduce_local of int64 sums, the arithmetic inside a reduce-scatter, per byte.
 *
 * A measurement: a few untimed warm-up calls, then R repetitions of [refill the buffer (the
 * reductions work in place), MPI_Barrier, time the call]. A repetition's time is the slowest
 * rank's (MPI_MAX of the per-rank times); the figures are the median and the minimum over R.
 * R is chosen from the size (more for small, cheap calls) and multiplied by --scale.
 *
 * Output: lines starting with '#' for people, then one row per measurement:
 *   ranks set op elems bytes sent_per_rank median_us min_us reps faults
 * set is the model name or "sweep"; op one of
 *   max      MPI_Allreduce MAX, floats (K + 1 for exact, 2 for fast)
 *   rs64     MPI_Reduce_scatter SUM, int64, in place     (exact)
 *   rs32     MPI_Reduce_scatter SUM, float, in place     (fast)
 *   ag32     MPI_Allgatherv, float, in place             (both)
 *   exact    mt_dist_mean_exact_shard, 1 local task       (max + rs64 + fixed-point passes)
 *   fast     mt_dist_mean_fast_shard                      (max + rs32 + scaling)
 *   gather   mt_dist_allgather_shards                     (ag32)
 *   local64  MPI_Reduce_local SUM, int64 (one rank's arithmetic, no communication)
 * bytes is the vector the call works on (elems × datatype size); sent_per_rank what each rank
 * must send at least: (N − 1)/N · bytes for a reduce-scatter or an allgather (the ring,
 * recursive-halving and Bruck algorithms reach it), bytes · ⌈log2 N⌉ for the small allreduce
 * (recursive doubling); faults the minor page faults of rank 0 per call (memory mapped in
 * afresh: what a reduce-scatter of a long vector in one piece costs, mpi/dist.c).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common.h"
#include "dist.h"
#include "model.h"

#define MPI_CHECK(call)                                                                        \
    do {                                                                                       \
        int rc_ = (call);                                                                      \
        if (rc_ != MPI_SUCCESS) mt_fatal("%s failed (MPI error %d)", #call, rc_);              \
    } while (0)

typedef enum { OP_MAX, OP_RS64, OP_RS32, OP_AG32, OP_EXACT, OP_FAST, OP_GATHER, OP_LOCAL64 } op_kind;
static const char *const op_name[] = {"max", "rs64", "rs32", "ag32", "exact", "fast", "gather", "local64"};

/* The buffers of one vector size: what train allocates for a model of P parameters, plus the
 * untimed sources the in-place reductions are refilled from. */
typedef struct {
    const mt_dist *d;
    size_t P;
    mt_shards shards;
    mt_blocks blocks;
    int64_t *acc, *acc_src; /* [P] the exact reduction's scratch and its refill */
    float *vec, *vec_src;   /* [P] θ or the fast reduction's sum, and its refill */
    float *task;            /* [P] one task's gradient, the exact call's input */
    float *out;             /* [hi − lo] this rank's shard of the mean */
    float *max;             /* [K + 1] the small allreduce's buffer */
    int K;
} bench_buf;

/* Buffers for P values in blocks of size[K] (size may be NULL: one block). */
static void buf_init(bench_buf *b, const mt_dist *d, size_t P, const size_t *size, int K)
{
    memset(b, 0, sizeof *b);
    b->d = d;
    b->P = P;
    b->K = size ? K : 1;
    mt_shards_init(&b->shards, d, P);
    mt_blocks_init(&b->blocks, size ? size : &P, b->K, P);
    b->acc = mt_malloc(P * sizeof *b->acc);
    b->acc_src = mt_malloc(P * sizeof *b->acc_src);
    b->vec = mt_malloc(P * sizeof *b->vec);
    b->vec_src = mt_malloc(P * sizeof *b->vec_src);
    b->task = mt_malloc(P * sizeof *b->task);
    b->out = mt_malloc((b->shards.hi - b->shards.lo) * sizeof *b->out);
    b->max = mt_malloc(((size_t)b->K + 1) * sizeof *b->max);
    /* Small values: repeated sums can neither overflow nor reach denormals. */
    for (size_t i = 0; i < P; i++) {
        b->acc_src[i] = (int64_t)(i % 1021) - 510;
        b->vec_src[i] = b->task[i] = 1e-3f * (float)((int)(i % 1021) - 510);
    }
    memcpy(b->acc, b->acc_src, P * sizeof *b->acc);
    memcpy(b->vec, b->vec_src, P * sizeof *b->vec);
}

static void buf_free(bench_buf *b)
{
    mt_shards_free(&b->shards);
    mt_blocks_free(&b->blocks);
    free(b->acc);
    free(b->acc_src);
    free(b->vec);
    free(b->vec_src);
    free(b->task);
    free(b->out);
    free(b->max);
    memset(b, 0, sizeof *b);
}

/* Puts back what an in-place call overwrote, as the compute of an iteration would. */
static void refill(bench_buf *b, op_kind op)
{
    if (op == OP_RS64 || op == OP_LOCAL64) memcpy(b->acc, b->acc_src, b->P * sizeof *b->acc);
    if (op == OP_RS32 || op == OP_FAST) memcpy(b->vec, b->vec_src, b->P * sizeof *b->vec);
    if (op == OP_MAX)
        for (int k = 0; k <= b->K; k++) b->max[k] = (float)k;
}

/* One call of op; n_max is the small allreduce's float count. */
static void call(bench_buf *b, op_kind op, int n_max)
{
    const MPI_Comm comm = b->d->comm;
    int stop = 0;
    switch (op) {
    case OP_MAX:
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, b->max, n_max, MPI_FLOAT, MPI_MAX, comm));
        break;
    case OP_RS64:
        MPI_CHECK(MPI_Reduce_scatter(MPI_IN_PLACE, b->acc, b->shards.counts, MPI_INT64_T, MPI_SUM, comm));
        break;
    case OP_RS32:
        MPI_CHECK(MPI_Reduce_scatter(MPI_IN_PLACE, b->vec, b->shards.counts, MPI_FLOAT, MPI_SUM, comm));
        break;
    case OP_AG32:
        MPI_CHECK(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, b->vec, b->shards.counts, b->shards.displs,
                                 MPI_FLOAT, comm));
        break;
    case OP_EXACT:
        mt_dist_mean_exact_shard(b->d, &b->shards, &b->blocks, b->task, 1, b->P, 0.0f, b->d->size, b->out, b->acc,
                                 &stop);
        break;
    case OP_FAST:
        mt_dist_mean_fast_shard(b->d, &b->shards, b->vec, 0.0f, b->d->size, b->out, &stop);
        break;
    case OP_GATHER:
        mt_dist_allgather_shards(b->d, &b->shards, b->vec);
        break;
    case OP_LOCAL64:
        MPI_CHECK(MPI_Reduce_local(b->acc_src, b->acc, (int)b->P, MPI_INT64_T, MPI_SUM));
        break;
    }
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Repetitions for a call on `bytes`: about 2·10^8 bytes moved in all, 15 to 300 of them, times
 * the --scale factor. */
static int reps_for(double bytes, double scale)
{
    double r = 2e8 / (bytes > 1.0 ? bytes : 1.0);
    r = r < 15 ? 15 : r > 300 ? 300 : r;
    r *= scale;
    return r < 5 ? 5 : (int)r;
}

/* Minor page faults of this process so far: memory the call maps in afresh. */
static long minor_faults(void)
{
    struct rusage u;
    return getrusage(RUSAGE_SELF, &u) == 0 ? u.ru_minflt : 0;
}

/* Times op on b and prints its row (rank 0). */
static void measure(bench_buf *b, const char *set, op_kind op, int n_max, double scale)
{
    const mt_dist *d = b->d;
    const int N = d->size;
    size_t elems = op == OP_MAX ? (size_t)n_max : b->P;
    size_t type = op == OP_RS64 || op == OP_LOCAL64 || op == OP_EXACT ? 8 : 4;
    const double bytes = (double)elems * (double)type;
    int log2n = 0;
    while ((1 << log2n) < N) log2n++;
    double sent = op == OP_MAX ? bytes * log2n : op == OP_LOCAL64 ? 0.0 : bytes * (N - 1) / N;
    if (op == OP_EXACT) sent += 4.0 * (b->K + 1) * log2n; /* + the maxima's allreduce */
    if (op == OP_FAST) sent += 8.0 * log2n;
    const int reps = reps_for(bytes, scale), warm = reps / 10 < 2 ? 2 : reps / 10 > 20 ? 20 : reps / 10;
    double *t = mt_malloc((size_t)reps * sizeof *t);
    for (int i = 0; i < warm; i++) {
        refill(b, op);
        call(b, op, n_max);
    }
    long faults = 0;
    for (int i = 0; i < reps; i++) {
        refill(b, op);
        MPI_CHECK(MPI_Barrier(d->comm));
        const long f0 = minor_faults();
        const double t0 = MPI_Wtime();
        call(b, op, n_max);
        double mine = MPI_Wtime() - t0;
        faults += minor_faults() - f0;
        MPI_CHECK(MPI_Allreduce(&mine, &t[i], 1, MPI_DOUBLE, MPI_MAX, d->comm));
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    const double median = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    if (d->rank == 0) {
        printf("%d %s %s %zu %.0f %.0f %.3f %.3f %d %.0f\n", N, set, op_name[op], elems, bytes, sent, 1e6 * median,
               1e6 * t[0], reps, (double)faults / reps);
        fflush(stdout);
    }
    free(t);
}

/* The models, built as train builds them for their configs. */
static void model_by_name(mt_model *m, const char *name)
{
    int rc;
    if (strcmp(name, "sinusoid-mlp") == 0) rc = mt_model_mlp(m, 1, 40, 1);
    else if (strcmp(name, "conv4-fmnist") == 0) rc = mt_model_conv4(m, 1, 28, 28, 64, 5);
    else rc = mt_model_resnet12(m, 3, 84, 84, (const int[4]){64, 160, 320, 640}, 5);
    MT_CHECK(rc == 0, "cannot build model %s", name);
}

static void bench_model(const mt_dist *d, const char *name, double scale)
{
    static mt_model m; /* large (MT_MAX_OPS ops): not on the stack */
    model_by_name(&m, name);
    const int K = mt_model_tensor_count(&m);
    size_t *size = mt_malloc((size_t)K * sizeof *size);
    for (int i = 0; i < K; i++) {
        mt_tensor_info ti;
        mt_model_tensor(&m, i, &ti);
        size[i] = ti.size;
    }
    const size_t P = m.n_params;
    if (d->rank == 0) {
        const double f = (double)(d->size - 1) / d->size;
        printf("# %s: P = %zu parameters in K = %d tensors; each rank sends per iteration at least "
               "%.0f B (exact: (N-1)/N * 12 P) or %.0f B (fast: (N-1)/N * 8 P), plus the small allreduce\n",
               name, P, K, f * 12.0 * (double)P, f * 8.0 * (double)P);
        fflush(stdout);
    }
    bench_buf b;
    buf_init(&b, d, P, size, K);
    measure(&b, name, OP_MAX, K + 1, scale);
    measure(&b, name, OP_RS64, 0, scale);
    measure(&b, name, OP_EXACT, 0, scale);
    measure(&b, name, OP_MAX, 2, scale);
    measure(&b, name, OP_RS32, 0, scale);
    measure(&b, name, OP_FAST, 0, scale);
    measure(&b, name, OP_AG32, 0, scale);
    measure(&b, name, OP_GATHER, 0, scale);
    measure(&b, name, OP_LOCAL64, 0, scale);
    buf_free(&b);
    free(size);
}

/* The three large collectives alone on vectors of 8 B · 4^i up to 32 MiB, and 64 MiB. */
static void bench_sweep(const mt_dist *d, double scale)
{
    double sizes[16];
    int n = 0;
    for (double s = 8; s <= 32.0 * 1024 * 1024; s *= 4) sizes[n++] = s;
    sizes[n++] = 64.0 * 1024 * 1024;
    for (int i = 0; i < n; i++) {
        bench_buf b;
        buf_init(&b, d, (size_t)(sizes[i] / 8), NULL, 0);
        measure(&b, "sweep", OP_RS64, 0, scale);
        buf_free(&b);
        buf_init(&b, d, (size_t)(sizes[i] / 4), NULL, 0);
        measure(&b, "sweep", OP_RS32, 0, scale);
        measure(&b, "sweep", OP_AG32, 0, scale);
        buf_free(&b);
    }
}

static const char *const set_name[] = {"sinusoid-mlp", "conv4-fmnist", "resnet12-mini", "sweep"};
enum { N_SETS = 4 };

/* Marks the sets named in the comma-separated list; returns 0, or -1 for an unknown name. */
static int parse_only(const char *list, int run[N_SETS])
{
    for (int k = 0; k < N_SETS; k++) run[k] = 0;
    while (*list) {
        const size_t len = strcspn(list, ",");
        int found = 0;
        for (int k = 0; k < N_SETS; k++)
            if (strlen(set_name[k]) == len && strncmp(list, set_name[k], len) == 0) run[k] = found = 1;
        if (!found) return -1;
        list += len + (list[len] == ',');
    }
    return 0;
}

int main(int argc, char **argv)
{
    mt_dist d;
    mt_dist_init(&d, &argc, &argv);
    double scale = 1.0;
    int run[N_SETS] = {1, 1, 1, 1}, ok = 1;
    for (int i = 1; i < argc && ok; i++) {
        if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc) {
            char *end;
            scale = strtod(argv[++i], &end);
            ok = *end == '\0' && scale > 0 && scale <= 100;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            ok = parse_only(argv[++i], run) == 0;
        } else if (strcmp(argv[i], "--piece-bytes") == 0 && i + 1 < argc) {
            char *end;
            const double bytes = strtod(argv[++i], &end);
            ok = *end == '\0' && bytes >= 1 && bytes <= 1e12;
            if (ok) mt_dist_set_piece_bytes((size_t)bytes);
        } else {
            ok = 0;
        }
    }
    if (!ok) { /* the same arguments on every rank: all of them leave here together */
        if (d.rank == 0)
            fprintf(stderr, "usage: mpirun -np N bench_collectives [--scale S] [--only LIST] [--piece-bytes B]\n"
                            "  S in (0, 100] multiplies the repetitions; LIST is a comma-separated subset of "
                            "sinusoid-mlp,conv4-fmnist,resnet12-mini,sweep;\n"
                            "  B: the pieces mpi/dist.c's reduce-scatters move (exact, fast; default 1 MiB)\n");
        mt_dist_finalize(&d);
        return 2;
    }
    if (d.rank == 0) {
        char version[MPI_MAX_LIBRARY_VERSION_STRING];
        int len = 0;
        MPI_CHECK(MPI_Get_library_version(version, &len));
        version[strcspn(version, "\n,")] = '\0';
        printf("# bench_collectives: %d rank%s (%d on %s), %s\n", d.size, d.size == 1 ? "" : "s", d.local_size,
               d.host, version);
        printf("# columns: ranks set op elems bytes sent_per_rank median_us min_us reps faults\n");
        fflush(stdout);
    }
    for (int k = 0; k < N_SETS - 1; k++)
        if (run[k]) bench_model(&d, set_name[k], scale);
    if (run[N_SETS - 1]) bench_sweep(&d, scale);
    mt_dist_finalize(&d);
    return 0;
}
