/* tasks.c — task families (see tasks.h). */
#include "tasks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static void sample_points(float *x, float *y, int n, mt_rng *r, const mt_sine_dist *dist, float amp, float phase)
{
    for (int i = 0; i < n; i++) {
        x[i] = mt_rng_uniform(r, dist->x_min, dist->x_max);
        y[i] = amp * sinf(x[i] - phase);
    }
}

void mt_sinusoid_task(float *xs, float *ys, int n_support, float *xq, float *yq, int n_query,
                      const mt_sine_dist *dist, uint64_t seed, mt_stream purpose, uint64_t iteration, uint32_t task,
                      float *amp, float *phase)
{
    mt_rng r;
    mt_rng_init(&r, seed, purpose, iteration, task);
    float a = mt_rng_uniform(&r, dist->amp_min, dist->amp_max);
    float p = mt_rng_uniform(&r, dist->phase_min, dist->phase_max);
    sample_points(xs, ys, n_support, &r, dist, a, p);
    sample_points(xq, yq, n_query, &r, dist, a, p);
    if (amp) *amp = a;
    if (phase) *phase = p;
}

void mt_task_buffer_init(mt_task_buffer *b, int n_support, int n_query, int in, int out)
{
    size_t rows = (size_t)n_support + n_query;
    b->slab = mt_calloc(rows * (size_t)(in + out), sizeof(float));
    b->picks = mt_calloc(rows, sizeof(int32_t));
    float *p = b->slab;
    b->task.xs = p, p += (size_t)n_support * in;
    b->task.ys = p, p += (size_t)n_support * out;
    b->task.xq = p, p += (size_t)n_query * in;
    b->task.yq = p;
    b->task.n_support = n_support;
    b->task.n_query = n_query;
}

void mt_task_buffer_free(mt_task_buffer *b)
{
    if (!b) return;
    free(b->slab);
    free(b->picks);
    memset(b, 0, sizeof *b);
}

void mt_sinusoid_fill(mt_task_buffer *b, const mt_sine_dist *dist, uint64_t seed, mt_stream purpose,
                      uint64_t iteration, uint32_t task)
{
    mt_task *t = &b->task;
    mt_sinusoid_task((float *)t->xs, (float *)t->ys, t->n_support, (float *)t->xq, (float *)t->yq, t->n_query, dist,
                     seed, purpose, iteration, task, NULL, NULL);
}
