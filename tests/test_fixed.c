/* test_fixed.c — fixed-point summation: exact, independent of order and grouping, within
 * its stated error of the true sum, and safe for zeros and non-finite values; with one
 * quantum per block, a block of small values keeps its precision next to a block of large
 * ones (the bound of docs/DESIGN.md §8, relative to each block's own maximum). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fixed.h"
#include "testutil.h"

enum { TERMS = 37, N = 1000 };

/* Sums terms [TERMS, N] in fixed point, visiting them in `order`, in groups of `group`
 * (each group summed into its own accumulator, then the accumulators added: what ranks do). */
static void fixed_mean(float *out, const float *terms, const int *order, int group, double q)
{
    int64_t *total = mt_calloc(N, sizeof *total), *part = mt_calloc(N, sizeof *part);
    for (int start = 0; start < TERMS; start += group) {
        memset(part, 0, N * sizeof *part);
        for (int t = start; t < start + group && t < TERMS; t++) mt_fixed_add(part, terms + (size_t)order[t] * N, N, q);
        for (int i = 0; i < N; i++) total[i] += part[i];
    }
    mt_fixed_to_float(out, total, N, q, 1.0 / TERMS);
    free(total);
    free(part);
}


/* ---- blocks: a large and a small parameter tensor over a meta-batch of 65536 tasks ---- */

enum { BT = 65536, BP = 64, NB = 2, BRANKS = 3 };
static const size_t bound[NB + 1] = {0, 40, BP}; /* block 0 [0, 40): |g| < 1e4; block 1 [40, 64): |g| < 1e-8 */

/* Task t's vector x[BP]: its own random values, block k scaled to ±1e4 or ±1e-8. */
static void block_task(float *x, int t)
{
    tu_random(x, bound[1], -1e4f, 1e4f, 11, (uint32_t)t);
    tu_random(x + bound[1], BP - bound[1], -1e-8f, 1e-8f, 12, (uint32_t)t);
}

/* Neumaier's compensated sum: an exact reference for a sum of floats, to well below the
 * errors measured here. */
static void neumaier_add(double *sum, double *comp, double x)
{
    const double t = *sum + x;
    *comp += fabs(*sum) >= fabs(x) ? (*sum - t) + x : (x - t) + *sum;
    *sum = t;
}

static void test_blocks(void)
{
    float x[BP], bmax[NB] = {0};
    double sum[BP] = {0}, comp[BP] = {0};
    for (int t = 0; t < BT; t++) {
        block_task(x, t);
        mt_fixed_block_max(bmax, x, bound, NB);
        for (int i = 0; i < BP; i++) neumaier_add(&sum[i], &comp[i], x[i]);
    }
    double q[NB];
    for (int k = 0; k < NB; k++) q[k] = mt_fixed_quantum(bmax[k], BT);
    const double q_old = mt_fixed_quantum(bmax[0] > bmax[1] ? bmax[0] : bmax[1], BT); /* one quantum for all */
    printf("     %d tasks: block maxima %g and %g, quanta 2^%d and 2^%d (one for all: 2^%d)\n", BT, bmax[0], bmax[1],
           (int)log2(q[0]), (int)log2(q[1]), (int)log2(q_old));

    /* The tasks split over BRANKS "ranks" (each its own accumulator), then added. */
    static int64_t part[BRANKS][BP], acc_old[BP];
    for (int t = 0; t < BT; t++) {
        block_task(x, t);
        mt_fixed_block_add(part[(long)t * BRANKS / BT], x, bound, NB, q);
        mt_fixed_add(acc_old, x, BP, q_old);
    }
    int64_t acc[BP] = {0};
    for (int r = 0; r < BRANKS; r++)
        for (int i = 0; i < BP; i++) acc[i] += part[r][i];
    /* Shards of the output cross the block boundary at 40. */
    float out[BP], whole[BP], old[BP];
    mt_fixed_block_to_float(out, acc, 0, 29, bound, NB, q, 1.0 / BT);
    mt_fixed_block_to_float(out + 29, acc + 29, 29, 51, bound, NB, q, 1.0 / BT);
    mt_fixed_block_to_float(out + 51, acc + 51, 51, BP, bound, NB, q, 1.0 / BT);
    memset(acc, 0, sizeof acc);
    for (int t = BT - 1; t >= 0; t--) {
        block_task(x, t);
        mt_fixed_block_add(acc, x, bound, NB, q);
    }
    mt_fixed_block_to_float(whole, acc, 0, BP, bound, NB, q, 1.0 / BT);
    tu_expect(memcmp(out, whole, sizeof out) == 0,
              "blocks: the same bits for 3 ranks and 1 rank in reverse order, any shards");
    mt_fixed_to_float(old, acc_old, BP, q_old, 1.0 / BT);

    /* The bound (DESIGN §8): |out − mean| ≤ 2^-51·B·M_k + half an ulp of float32, M_k the
     * block's max; the first term is q_k/2. Measured as the excess over the half ulp, in
     * units of the first term: at most 1. */
    double worst[NB] = {0}, worst_old = 0.0;
    int old_zero = 1;
    for (int k = 0; k < NB; k++) {
        const double term = 0x1p-51 * BT * bmax[k];
        for (size_t i = bound[k]; i < bound[k + 1]; i++) {
            const double mean = (sum[i] + comp[i]) / BT;
            const double half_ulp = 0.5 * fabs((double)nextafterf((float)mean, INFINITY) - (float)mean);
            const double e = (fabs(out[i] - mean) - half_ulp) / term, e_old = (fabs(old[i] - mean) - half_ulp) / term;
            if (e > worst[k]) worst[k] = e;
            if (k == 1 && e_old > worst_old) worst_old = e_old;
            if (k == 1) old_zero &= old[i] == 0.0f;
        }
    }
    tu_check("blocks: the large block within 2^-51·B·max + 1/2 ulp (excess / bound)", worst[0], 1.0);
    tu_check("blocks: the small block within 2^-51·B·max + 1/2 ulp (excess / bound)", worst[1], 1.0);
    tu_expect(old_zero && worst_old > 1e6,
              "(one quantum from the global max rounds every value of the small block to zero)");
    printf("     one quantum for all: the small block's excess error is %.3g times its bound\n", worst_old);

    /* Non-finite and zero blocks. */
    float m[NB] = {0}, y[BP] = {0};
    mt_fixed_block_max(m, y, bound, NB);
    tu_expect(m[0] == 0.0f && m[1] == 0.0f, "blocks: all-zero blocks have max 0");
    y[45] = NAN;
    y[3] = INFINITY;
    mt_fixed_block_max(m, y, bound, NB);
    y[45] = 0.0f;
    mt_fixed_block_max(m, y, bound, NB);
    tu_expect(isinf(m[0]) && isnan(m[1]), "blocks: an infinity or NaN stays in its block's max");
    const double qz[NB] = {0.0, q[1]};
    int64_t az[BP] = {0};
    float oz[BP];
    block_task(x, 0);
    mt_fixed_block_add(az, x, bound, NB, qz);
    mt_fixed_block_to_float(oz, az, 0, BP, bound, NB, qz, 1.0);
    int zero_ok = 1;
    for (size_t i = 0; i < BP; i++) zero_ok &= i < bound[1] ? oz[i] == 0.0f : fabsf(oz[i] - x[i]) <= 0.5 * q[1];
    tu_expect(zero_ok, "blocks: a block with quantum 0 adds nothing; the others are unaffected");
}

int main(void)
{
    float *terms = mt_malloc((size_t)TERMS * N * sizeof *terms);
    /* Magnitudes spread over 2^-20 .. 2^4, both signs: cancellation-prone float sums. */
    tu_random(terms, (size_t)TERMS * N, -1.0f, 1.0f, 5, 1);
    for (size_t i = 0; i < (size_t)TERMS * N; i++) terms[i] = ldexpf(terms[i], (int)(i * 7919 % 25) - 20);
    const float max_abs = mt_fixed_max_abs(terms, (size_t)TERMS * N);
    const double q = mt_fixed_quantum(max_abs, TERMS);
    printf("     max |term| %g, quantum 2^%d\n", max_abs, (int)log2(q));
    tu_expect(q > 0 && (double)TERMS * max_abs / q < 0x1p51, "the quantum keeps every possible sum below 2^51");
    tu_expect((double)TERMS * max_abs / q >= 0x1p50, "and is the finest power of two that does");

    int order[TERMS], reversed[TERMS], shuffled[TERMS];
    for (int t = 0; t < TERMS; t++) order[t] = t, reversed[t] = TERMS - 1 - t, shuffled[t] = (t * 11) % TERMS;
    float *a = mt_malloc(N * sizeof *a), *b = mt_malloc(N * sizeof *b);
    fixed_mean(a, terms, order, TERMS, q);
    int same = 1;
    const int groups[] = {1, 2, 3, 4, 7, 13};
    for (int g = 0; g < 6; g++) {
        fixed_mean(b, terms, reversed, groups[g], q);
        same &= memcmp(a, b, N * sizeof *a) == 0;
        fixed_mean(b, terms, shuffled, groups[g], q);
        same &= memcmp(a, b, N * sizeof *a) == 0;
    }
    tu_expect(same, "the same bits for 3 orders x 6 groupings (rank counts)");

    /* The float sum, by contrast, depends on the order (what the exact mode is for). */
    float *fa = mt_calloc(N, sizeof *fa), *fb = mt_calloc(N, sizeof *fb);
    for (int t = 0; t < TERMS; t++)
        for (int i = 0; i < N; i++) fa[i] += terms[(size_t)order[t] * N + i], fb[i] += terms[(size_t)reversed[t] * N + i];
    tu_expect(memcmp(fa, fb, N * sizeof *fa) != 0, "(a float sum of the same terms changes with the order)");

    /* Accuracy against a double sum: the fixed-point error is at most TERMS·q/2 before the
     * final rounding to float, far below float32's half-ulp. */
    double worst = 0.0;
    for (int i = 0; i < N; i++) {
        double exact = 0.0;
        for (int t = 0; t < TERMS; t++) exact += terms[(size_t)t * N + i];
        exact /= TERMS;
        double err = fabs(a[i] - exact) - 0.5 * fabs((double)nextafterf((float)exact, INFINITY) - (float)exact);
        if (err > worst) worst = err;
    }
    tu_check("mean is the correctly rounded float of the exact mean (excess error)", worst, TERMS * q);

    float zeros[4] = {0};
    tu_expect(mt_fixed_quantum(mt_fixed_max_abs(zeros, 4), 3) == 0.0, "all zeros: quantum 0 (nothing to sum)");
    float bad[3] = {1.0f, NAN, 2.0f};
    tu_expect(isnan(mt_fixed_max_abs(bad, 3)), "a NaN term makes the maximum NaN");
    tu_expect(isnan(mt_fixed_quantum(INFINITY, 3)) && isnan(mt_fixed_quantum(NAN, 3)),
              "a non-finite maximum gives a NaN quantum (the caller propagates it)");

    free(terms), free(a), free(b), free(fa), free(fb);
    test_blocks();
    return tu_finish();
}
