/* test_dist.c — the reductions of a meta-iteration on several ranks (run under mpirun -np 3):
 *
 *   1. mt_dist_mean_exact_shard gives every rank its shard of the exact mean bit for bit as
 *      one process computes it from all tasks (src/fixed.h), whatever the size of the pieces
 *      the reduce-scatter moves (the default, one value, pieces that straddle the shards);
 *   2. mt_dist_mean_fast_shard in pieces is within float rounding of the exact mean, and the
 *      same bits on a second call;
 *   3. mt_dist_allgather_shards puts every rank's shard everywhere.
 *
 * Ranks hold different numbers of tasks (rank r holds r + 1), and the blocks have different
 * scales, so a piece that mixes up shards, blocks or quanta shows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "dist.h"
#include "fixed.h"
#include "testutil.h"

enum { P = 1001, N_BLOCKS = 3 };
static const size_t block_size[N_BLOCKS] = {400, 1, 600};

/* Task t of rank r's values: uniform in ±scale of its block (the blocks differ by 10^3). */
static void make_task(float *g, int r, int t)
{
    tu_random(g, P, -1.0f, 1.0f, 7, (uint32_t)(100 * r + t));
    for (size_t i = block_size[0]; i < block_size[0] + block_size[1]; i++) g[i] *= 1000.0f;
    for (size_t i = block_size[0] + block_size[1]; i < P; i++) g[i] *= 0.001f;
}

/* The exact mean of every rank's tasks as one process computes it. */
static void serial_mean(float *mean, int n_ranks, const mt_blocks *b)
{
    long n_total = 0;
    float max[N_BLOCKS] = {0}, *g = mt_malloc(P * sizeof *g);
    for (int r = 0; r < n_ranks; r++)
        for (int t = 0; t <= r; t++, n_total++) {
            make_task(g, r, t);
            mt_fixed_block_max(max, g, b->bound, N_BLOCKS);
        }
    double q[N_BLOCKS];
    for (int k = 0; k < N_BLOCKS; k++) q[k] = mt_fixed_quantum(max[k], n_total);
    int64_t *acc = mt_calloc(P, sizeof *acc);
    for (int r = 0; r < n_ranks; r++)
        for (int t = 0; t <= r; t++) {
            make_task(g, r, t);
            mt_fixed_block_add(acc, g, b->bound, N_BLOCKS, q);
        }
    mt_fixed_block_to_float(mean, acc, 0, P, b->bound, N_BLOCKS, q, 1.0 / (double)n_total);
    free(acc);
    free(g);
}

int main(int argc, char **argv)
{
    mt_dist d;
    mt_dist_init(&d, &argc, &argv);
    mt_shards s;
    mt_shards_init(&s, &d, P);
    mt_blocks b;
    mt_blocks_init(&b, block_size, N_BLOCKS, P);
    const int n_local = d.rank + 1;
    const long n_total = (long)d.size * (d.size + 1) / 2;
    float *tasks = mt_malloc((size_t)n_local * P * sizeof *tasks), *sum = mt_calloc(P, sizeof *sum);
    for (int t = 0; t < n_local; t++) {
        make_task(tasks + (size_t)t * P, d.rank, t);
        for (size_t i = 0; i < P; i++) sum[i] += tasks[(size_t)t * P + i];
    }
    float *mean = mt_malloc(P * sizeof *mean), *out = mt_malloc(P * sizeof *out);
    serial_mean(mean, d.size, &b);
    const size_t n = s.hi - s.lo;
    int64_t *acc = mt_malloc(P * sizeof *acc);
    char label[160];

    /* bytes per piece: the default, one int64, 5 values (straddling every shard boundary of
     * 1001 over 3 ranks), about a seventh of the vector, and more than all of it */
    const size_t pieces[] = {0, 8, 40, 8 * 143, 1 << 20};
    const size_t dflt = mt_dist_set_piece_bytes(1 << 20);
    mt_dist_set_piece_bytes(dflt);
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        const size_t bytes = pieces[i] ? pieces[i] : dflt;
        mt_dist_set_piece_bytes(bytes);
        int stop = d.rank == 1;
        memset(out, 0, P * sizeof *out);
        const float gmax =
            mt_dist_mean_exact_shard(&d, &s, &b, tasks, n_local, P, 0.0f, n_total, out, acc, &stop);
        int same = memcmp(out, mean + s.lo, n * sizeof *out) == 0 && stop == 1 && gmax > 500.0f;
        same = mt_dist_all(&d, same);
        snprintf(label, sizeof label, "exact mean in pieces of %zu bytes = one process's, bit for bit, on %d ranks",
                 bytes, d.size);
        if (d.rank == 0) tu_expect(same, label);

        /* the fast reduction: float sums, so within rounding of the exact mean; reproducible */
        float *sum2 = mt_malloc(P * sizeof *sum2), *out2 = mt_malloc(P * sizeof *out2);
        memcpy(sum2, sum, P * sizeof *sum2);
        stop = 0;
        mt_dist_mean_fast_shard(&d, &s, sum2, 0.0f, n_total, out, &stop);
        memcpy(sum2, sum, P * sizeof *sum2);
        mt_dist_mean_fast_shard(&d, &s, sum2, 0.0f, n_total, out2, &stop);
        double worst = 0.0;
        for (size_t j = 0; j < n; j++) {
            /* |values| ≤ the block's scale; n_total terms: float sums within n_total·2u of it */
            const size_t g = s.lo + j;
            const double scale = g < 400 ? 1.0 : g < 401 ? 1000.0 : 0.001;
            const double e = fabs((double)out[j] - mean[g]) / scale;
            worst = e > worst ? e : worst;
        }
        double all_worst = worst;
        mt_dist_sum_double(&d, &all_worst, 1); /* ≥ the largest; enough for a bound */
        const int repeat = mt_dist_all(&d, memcmp(out, out2, n * sizeof *out) == 0);
        snprintf(label, sizeof label, "fast mean in pieces of %zu bytes within rounding of the exact one", bytes);
        if (d.rank == 0) {
            tu_check(label, all_worst, 4.0 * (double)n_total * 6e-8 * d.size);
            snprintf(label, sizeof label, "fast mean in pieces of %zu bytes: the same bits twice", bytes);
            tu_expect(repeat, label);
        }
        free(sum2);
        free(out2);
    }
    mt_dist_set_piece_bytes(dflt);

    /* allgather: every rank's shard everywhere */
    float *v = mt_malloc(P * sizeof *v);
    for (size_t i = 0; i < P; i++) v[i] = i >= s.lo && i < s.hi ? mean[i] : NAN;
    mt_dist_allgather_shards(&d, &s, v);
    const int gathered = mt_dist_all(&d, memcmp(v, mean, P * sizeof *v) == 0);
    if (d.rank == 0) tu_expect(gathered, "allgather of the shards = the whole mean on every rank");

    free(v);
    free(acc);
    free(out);
    free(mean);
    free(sum);
    free(tasks);
    mt_blocks_free(&b);
    mt_shards_free(&s);
    const int failed = d.rank == 0 ? tu_finish() : 0;
    mt_dist_finalize(&d);
    return failed;
}
