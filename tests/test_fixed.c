/* test_fixed.c — fixed-point summation: exact, independent of order and grouping, within
 * its stated error of the true sum, and safe for zeros and non-finite values. */
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
    return tu_finish();
}
