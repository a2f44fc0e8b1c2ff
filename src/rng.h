/*
 * rng.h — counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
 *
 * A counter-based generator is a pure function (key, counter) -> 128 random bits, so any
 * random draw in metatrain is addressed rather than sequenced: the draws for task t of
 * iteration s come from the stream (seed, purpose, s, t) whatever rank computes them and
 * whatever was drawn before. That is what makes a run independent of the rank count and
 * makes resuming from a checkpoint exact without saving generator state.
 *
 * Layout: key = the 64-bit seed; counter = (block, task, iteration, purpose). Each block
 * yields four 32-bit words; a stream holds 2^32 blocks.
 */
#ifndef MT_RNG_H
#define MT_RNG_H

#include <stdint.h>

/* What a stream is used for; part of the counter so purposes never overlap. */
typedef enum {
    MT_STREAM_TRAIN = 0, /* meta-training tasks: (iteration, task) */
    MT_STREAM_EVAL = 1,  /* evaluation tasks: (0, task) */
    MT_STREAM_INIT = 2,  /* parameter initialisation: (0, 0) */
    MT_STREAM_VAL = 3,   /* meta-validation tasks (sweeps choose points on them): (0, task) */
    MT_STREAM_SWEEP = 4,   /* a random-search sweep's points: (point, swept key) */
    MT_STREAM_FINETUNE = 5 /* fine-tuning repeat r: its classes and images (0, r), step s's batch (s, r) */
} mt_stream;

typedef struct {
    uint32_t key[2];
    uint32_t ctr[4]; /* ctr[0] is the block index within the stream */
    uint32_t buf[4]; /* current block's output */
    int used;        /* words of buf already handed out (4 = empty) */
} mt_rng;

/* One Philox4x32-10 block: out = philox(ctr, key). The known-answer vectors of the
 * Random123 distribution are checked in tests/test_rng.c. */
void mt_philox4x32_10(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]);

/* Positions r at the start of stream (seed, purpose, iteration, task). Iteration numbers
 * must fit in 32 bits (the config enforces it). */
void mt_rng_init(mt_rng *r, uint64_t seed, mt_stream purpose, uint64_t iteration, uint32_t task);

/* The same stream from block `block` on: a stream's first 2^31 blocks serve its main draws,
 * the rest other uses of the same task (MT_RNG_AUGMENT: few-shot augmentation), so they never
 * overlap and adding one does not move the other. */
#define MT_RNG_AUGMENT (UINT32_C(1) << 31)
void mt_rng_init_at(mt_rng *r, uint64_t seed, mt_stream purpose, uint64_t iteration, uint32_t task, uint32_t block);

uint32_t mt_rng_u32(mt_rng *r);

/* Uniform float in [lo, hi] (hi itself only through rounding): 24 random bits. */
float mt_rng_uniform(mt_rng *r, float lo, float hi);

#endif
