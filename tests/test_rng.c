/* test_rng.c — Philox4x32-10 against the Random123 known-answer vectors, and the stream
 * properties the task sampler relies on. */
#include <stdio.h>
#include <string.h>

#include "rng.h"
#include "testutil.h"

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
    return tu_finish();
}
