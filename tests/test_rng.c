/* test_rng.c — Philox4x32-10 against the Random123 known-answer vectors, the stream
 * properties the task sampler relies on, and the sinusoid task generator (tasks.h): its
 * default distribution draws the tasks it drew when the ranges were constants, and the
 * ranges of mt_sine_dist bound what it draws. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rng.h"
#include "tasks.h"
#include "testutil.h"

/* Tasks (seed 42, TRAIN, iteration 5, task t), 3 support and 2 query points, as drawn by the
 * generator before its ranges became config keys (the constants U[0.1, 5], U[0, pi],
 * U[-5, 5]); the random words are unchanged, so these bits are too. */
static void test_sinusoid_known_tasks(void)
{
    static const struct {
        uint32_t task;
        float amp, phase, xs0, xq1;
    } known[] = {
        {0, 0x1.3b6836p+1f, 0x1.48fa98p+0f, -0x1.85538p-3f, -0x1.8d461p+0f},
        {7, 0x1.82069ap-2f, 0x1.15d9c8p+1f, 0x1.345154p+2f, 0x1.99ee8p-4f},
        {123456, 0x1.5010f8p+1f, 0x1.ddcdc4p+0f, -0x1.37e53ep+2f, -0x1.9650b8p+0f},
    };
    const mt_sine_dist old = {0.1f, 5.0f, 0.0f, 3.14159265358979f, -5.0f, 5.0f};
    int same = 1, sine = 1;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        for (int which = 0; which < 2; which++) {
            float xs[3], ys[3], xq[2], yq[2], a, p;
            mt_sinusoid_task(xs, ys, 3, xq, yq, 2, which ? &MT_SINE_DIST_DEFAULT : &old, 42, MT_STREAM_TRAIN, 5,
                             known[i].task, &a, &p);
            if (a != known[i].amp || p != known[i].phase || xs[0] != known[i].xs0 || xq[1] != known[i].xq1) {
                printf("     task %u: amp %a phase %a xs0 %a xq1 %a, want %a %a %a %a\n", known[i].task, a, p, xs[0],
                       xq[1], known[i].amp, known[i].phase, known[i].xs0, known[i].xq1);
                same = 0;
            }
            for (int j = 0; j < 3; j++) sine &= ys[j] == a * sinf(xs[j] - p);
            for (int j = 0; j < 2; j++) sine &= yq[j] == a * sinf(xq[j] - p);
        }
    }
    tu_expect(same, "the default distribution (and the old constants) draw the recorded tasks bit for bit");
    tu_expect(sine, "y = A sin(x - phase) at every support and query point");
}

/* Every draw lies in its range, and the ranges are covered (10000 tasks: the smallest and
 * largest amplitude lie within 1% of the ends with probability 1 - 2·0.99^10000). */
static void test_sinusoid_ranges(void)
{
    const mt_sine_dist dist = {5.0f, 10.0f, 1.0f, 1.0f, 2.0f, 3.0f};
    float amp_lo = INFINITY, amp_hi = -INFINITY, x_lo = INFINITY, x_hi = -INFINITY;
    int phase_fixed = 1;
    for (uint32_t t = 0; t < 10000; t++) {
        float xs[10], ys[10], xq[10], yq[10], a, p;
        mt_sinusoid_task(xs, ys, 10, xq, yq, 10, &dist, 7, MT_STREAM_EVAL, 0, t, &a, &p);
        amp_lo = fminf(amp_lo, a), amp_hi = fmaxf(amp_hi, a);
        phase_fixed &= p == 1.0f;
        for (int j = 0; j < 10; j++) {
            x_lo = fminf(x_lo, fminf(xs[j], xq[j]));
            x_hi = fmaxf(x_hi, fmaxf(xs[j], xq[j]));
        }
    }
    printf("     amplitudes in [%.6g, %.6g], inputs in [%.6g, %.6g]\n", amp_lo, amp_hi, x_lo, x_hi);
    tu_expect(amp_lo >= 5.0f && amp_hi <= 10.0f, "amp_min = 5, amp_max = 10: every amplitude in [5, 10]");
    tu_expect(amp_lo < 5.05f && amp_hi > 9.95f, "amplitudes cover [5, 10]");
    tu_expect(phase_fixed, "phase_min = phase_max = 1 fixes the phase");
    tu_expect(x_lo >= 2.0f && x_hi <= 3.0f && x_lo < 2.01f && x_hi > 2.99f, "inputs cover [x_min, x_max] = [2, 3]");

    /* The default distribution never leaves [0.1, 5]: the wider draw above is the keys' doing. */
    float d_hi = -INFINITY;
    for (uint32_t t = 0; t < 10000; t++) {
        float xs[1], ys[1], xq[1], yq[1], a;
        mt_sinusoid_task(xs, ys, 1, xq, yq, 1, &MT_SINE_DIST_DEFAULT, 7, MT_STREAM_EVAL, 0, t, &a, NULL);
        d_hi = fmaxf(d_hi, a);
    }
    tu_expect(d_hi <= 5.0f && d_hi > 4.95f, "the default amplitudes lie in [0.1, 5]");
}

int main(void)
{
    /* Random123 kat_vectors: "philox4x32 10 <ctr x4> <key x2> <expected x4>". */
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e,
         0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb,
         0x5001e420, 0x24126ea1},
    };
    for (int i = 0; i < 3; i++) {
        uint32_t out[4];
        mt_philox4x32_10(out, kat[i], kat[i] + 4);
        char label[64];
        snprintf(label, sizeof label, "philox4x32-10 known-answer vector %d", i);
        tu_expect(memcmp(out, kat[i] + 6, sizeof out) == 0, label);
    }

    /* A stream is a pure function of (seed, purpose, iteration, task). */
    mt_rng a, b;
    mt_rng_init(&a, 42, MT_STREAM_TRAIN, 7, 3);
    mt_rng_init(&b, 42, MT_STREAM_TRAIN, 7, 3);
    int same = 1;
    for (int i = 0; i < 1000; i++) same &= mt_rng_u32(&a) == mt_rng_u32(&b);
    tu_expect(same, "same (seed, purpose, iteration, task) gives the same stream");

    /* Neighbouring streams differ in every coordinate. */
    const uint32_t first = (mt_rng_init(&a, 42, MT_STREAM_TRAIN, 7, 3), mt_rng_u32(&a));
    mt_rng_init(&b, 43, MT_STREAM_TRAIN, 7, 3);
    int differ = mt_rng_u32(&b) != first;
    mt_rng_init(&b, 42, MT_STREAM_EVAL, 7, 3);
    differ &= mt_rng_u32(&b) != first;
    mt_rng_init(&b, 42, MT_STREAM_TRAIN, 8, 3);
    differ &= mt_rng_u32(&b) != first;
    mt_rng_init(&b, 42, MT_STREAM_TRAIN, 7, 4);
    differ &= mt_rng_u32(&b) != first;
    tu_expect(differ, "seed, purpose, iteration and task each change the stream");

    /* Uniforms stay in range and have the right mean and variance (n = 1e6: the standard
     * error of the mean is 2.9e-4, so 3e-3 is over ten standard errors). */
    mt_rng_init(&a, 1, MT_STREAM_TRAIN, 0, 0);
    double sum = 0.0, sumsq = 0.0;
    int in_range = 1;
    const int n = 1000000;
    for (int i = 0; i < n; i++) {
        float u = mt_rng_uniform(&a, -5.0f, 5.0f);
        in_range &= u >= -5.0f && u <= 5.0f;
        sum += u;
        sumsq += (double)u * u;
    }
    tu_expect(in_range, "uniform(-5, 5) stays in [-5, 5]");
    tu_check("uniform(-5, 5) mean is 0", sum / n < 0 ? -sum / n : sum / n, 3e-2);
    double var = sumsq / n - (sum / n) * (sum / n);
    tu_check("uniform(-5, 5) variance is 100/12", var > 100.0 / 12 ? var - 100.0 / 12 : 100.0 / 12 - var, 5e-2);

    test_sinusoid_known_tasks();
    test_sinusoid_ranges();
    return tu_finish();
}
