/* rng.c — Philox4x32-10 and the stream helpers of rng.h. */
#include "rng.h"

#include <assert.h>

/* Constants of the Philox4x32 round function and Weyl key schedule (Salmon et al.). */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t *hi)
{
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

void mt_philox4x32_10(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = mulhilo(PHILOX_M0, c0, &hi0);
        uint32_t lo1 = mulhilo(PHILOX_M1, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

void mt_rng_init(mt_rng *r, uint64_t seed, mt_stream purpose, uint64_t iteration, uint32_t task)
{
    assert(iteration <= UINT32_MAX);
    r->key[0] = (uint32_t)seed;
    r->key[1] = (uint32_t)(seed >> 32);
    r->ctr[0] = 0;
    r->ctr[1] = task;
    r->ctr[2] = (uint32_t)iteration;
    r->ctr[3] = (uint32_t)purpose;
    r->used = 4;
}

void mt_rng_init_at(mt_rng *r, uint64_t seed, mt_stream purpose, uint64_t iteration, uint32_t task, uint32_t block)
{
    mt_rng_init(r, seed, purpose, iteration, task);
    r->ctr[0] = block;
}

uint32_t mt_rng_u32(mt_rng *r)
{
    if (r->used == 4) {
        mt_philox4x32_10(r->buf, r->ctr, r->key);
        r->ctr[0]++;
        r->used = 0;
    }
    return r->buf[r->used++];
}

float mt_rng_uniform(mt_rng *r, float lo, float hi)
{
    float u = (float)(mt_rng_u32(r) >> 8) * 0x1p-24f; /* [0, 1) */
    return lo + (hi - lo) * u;
}
