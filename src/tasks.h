/*
 * tasks.h — task families: how the data of task t of iteration s is made.
 *
 * Every task is drawn from the counter-based stream (seed, purpose, s, t) of rng.h and from
 * nothing else, so which rank computes it, and in which order, cannot change it.
 *
 * sinusoid (Finn et al. 2017): y = A·sin(x − φ), A ~ U[amp_min, amp_max],
 * φ ~ U[phase_min, phase_max], x ~ U[x_min, x_max]; one input and one output feature. The
 * ranges are config keys ([task] amp_min, ...); their defaults, the MT_SINE_* constants below,
 * are the paper's A ~ U[0.1, 5], φ ~ U[0, π], x ~ U[−5, 5].
 */
#ifndef MT_TASKS_H
#define MT_TASKS_H

#include <stdint.h>

#include "meta.h"
#include "rng.h"

#define MT_SINE_AMP_MIN 0.1f
#define MT_SINE_AMP_MAX 5.0f
#define MT_SINE_PHASE_MIN 0.0f
#define MT_SINE_PHASE_MAX 3.14159265358979f
#define MT_SINE_X_MIN -5.0f
#define MT_SINE_X_MAX 5.0f

/* The sinusoid task distribution: each value is drawn uniformly from [min, max] (see
 * mt_rng_uniform). A min equal to its max fixes the value. */
typedef struct {
    float amp_min, amp_max;
    float phase_min, phase_max;
    float x_min, x_max;
} mt_sine_dist;

/* The default distribution (Finn et al. 2017), as a compound literal. */
#define MT_SINE_DIST_DEFAULT                                                                                       \
    ((mt_sine_dist){MT_SINE_AMP_MIN, MT_SINE_AMP_MAX, MT_SINE_PHASE_MIN, MT_SINE_PHASE_MAX, MT_SINE_X_MIN,          \
                    MT_SINE_X_MAX})

/* Draws the sinusoid task (seed, purpose, iteration, task) of distribution dist: amplitude,
 * phase, then the n_support support inputs, then the n_query query inputs. Writes xs, ys
 * [n_support] and xq, yq [n_query]; amp and phase (optional) receive the task's parameters.
 * The same stream with another dist gives the same random words, mapped to other ranges. */
void mt_sinusoid_task(float *xs, float *ys, int n_support, float *xq, float *yq, int n_query,
                      const mt_sine_dist *dist, uint64_t seed, mt_stream purpose, uint64_t iteration, uint32_t task,
                      float *amp, float *phase);

/* Storage for one task's support and query rows; an mt_task points into it. */
typedef struct {
    float *slab;
    int32_t *picks; /* scratch for samplers: n_support + n_query indices */
    mt_task task;
} mt_task_buffer;

/* Room for n_support and n_query rows of in input and out output features. */
void mt_task_buffer_init(mt_task_buffer *b, int n_support, int n_query, int in, int out);
void mt_task_buffer_free(mt_task_buffer *b); /* accepts NULL and a zeroed buffer */

/* Fills b (made for 1 input, 1 output) with sinusoid task (seed, purpose, iteration, task)
 * of distribution dist. */
void mt_sinusoid_fill(mt_task_buffer *b, const mt_sine_dist *dist, uint64_t seed, mt_stream purpose,
                      uint64_t iteration, uint32_t task);

#endif
