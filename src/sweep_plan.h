/*
 * sweep_plan.h — what a sweep is: its [sweep] section, its points and their ids, its rungs,
 * and which points successive halving promotes. Pure functions (no MPI, no files), so the
 * plan is the same on every rank and in every job of a Slurm array.
 *
 * A sweep config is a normal config plus a [sweep] section:
 *
 *   [sweep]
 *   meta.inner_lr = 0.005, 0.01, 0.02      ; a swept key: a list (grid) ...
 *   optim.lr = log-uniform(1e-4, 1e-2)     ; ... or a range (random search)
 *   method = grid | random                 ; random: `points` draws, seeded by `seed`
 *   ranks_per_run = 2                      ; ranks that train one point together
 *   schedule = none | halving              ; successive halving over rungs
 *   min_iterations = 100                   ; halving: the first rung's iterations
 *   eta = 3                                ; halving: 1/eta of a rung goes on to the next
 *   eval_tasks = 100                       ; meta-validation tasks per evaluation
 *
 * The sweep's own keys are plain names; a key with a dot is a swept config key.
 */
#ifndef MT_SWEEP_PLAN_H
#define MT_SWEEP_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define MT_SWEEP_MAX_AXES 8       /* swept keys */
#define MT_SWEEP_MAX_VALUES 256   /* values of one listed key */
#define MT_SWEEP_MAX_POINTS 10000 /* points of a sweep */
#define MT_SWEEP_MAX_RUNGS 32
#define MT_SWEEP_VALUE_LEN 64
#define MT_SWEEP_ID_LEN 256

typedef enum { MT_SWEEP_LIST, MT_SWEEP_UNIFORM, MT_SWEEP_LOG_UNIFORM } mt_sweep_dist;

typedef struct {
    char key[64];  /* "section.key" */
    char name[64]; /* its label in point ids: the key's name, or section.key when two axes share a name */
    int kind;      /* MT_KEY_KIND_* of the key */
    mt_sweep_dist dist;
    int n_values;  /* MT_SWEEP_LIST */
    char (*values)[MT_SWEEP_VALUE_LEN]; /* [n_values] */
    double lo, hi; /* ranges */
} mt_sweep_axis;

typedef struct {
    int random;        /* method = random (else grid) */
    int points;        /* random: how many points */
    uint64_t seed;     /* random: seed of the draws */
    int seed_set;      /* seed given in [sweep] (else run.seed) */
    int ranks_per_run; /* R: ranks per group */
    int halving;       /* schedule = halving */
    long min_iterations;
    int eta;
    long eval_tasks;   /* meta-validation tasks per evaluation (0: none) */
    int n_axes;
    mt_sweep_axis axis[MT_SWEEP_MAX_AXES];
} mt_sweep_spec;

/* One point: its id (also its run directory's name) and the value of every axis. */
typedef struct {
    char id[MT_SWEEP_ID_LEN];
    char value[MT_SWEEP_MAX_AXES][MT_SWEEP_VALUE_LEN];
} mt_sweep_point;

/* Defaults: grid, 1 rank per run, no halving, min_iterations 100, eta 3, 100 eval tasks,
 * random seed = run_seed. */
void mt_sweep_spec_init(mt_sweep_spec *s, uint64_t run_seed);
void mt_sweep_spec_free(mt_sweep_spec *s); /* accepts a zeroed spec */

/* Splits config text into the text without its [sweep] section (those lines blanked, so
 * that line numbers in messages stay right) and applies the [sweep] section's keys to s.
 * *base is malloc'd (caller frees). Returns 0, or -1 with "origin:line: ..." in err. */
int mt_sweep_parse(mt_sweep_spec *s, const char *text, const char *origin, char **base, char *err, size_t errlen);

/* Applies one "sweep.key=value" (from --set). Returns 0, or -1 with a message in err. */
int mt_sweep_set(mt_sweep_spec *s, const char *assignment, char *err, size_t errlen);

/* Checks the spec against the base config c: at least one axis, no swept run.dir, random
 * with points >= 1, halving with 1 <= min_iterations < run.iterations, eta >= 2 and
 * eval_tasks >= 2, the number of points within MT_SWEEP_MAX_POINTS. Returns 0, or -1 with err. */
int mt_sweep_check(const mt_sweep_spec *s, const mt_config *c, char *err, size_t errlen);

/* The number of points (grid: the product of the list lengths; random: points). */
long mt_sweep_count(const mt_sweep_spec *s);

/* Fills pts[mt_sweep_count(s)] in order (grid: the first axis varies slowest; random: draw
 * i from the stream (seed, MT_STREAM_SWEEP, i, axis)). Ids are "name=value" joined by ','
 * with any character outside [A-Za-z0-9._+-] in a value replaced by '_'; a repeated id
 * gets "#<index>" appended. */
void mt_sweep_points(const mt_sweep_spec *s, mt_sweep_point *pts);

/* Applies point p's values to c (c holds the base config). Returns 0, or -1 with the first
 * value's error ("--set meta.inner_lr=-1: ... out of range ...") in err. The caller then
 * runs mt_config_check. */
int mt_sweep_apply(const mt_sweep_spec *s, const mt_sweep_point *p, mt_config *c, char *err, size_t errlen);

/* The rungs' iteration targets: without halving one rung, run.iterations; with halving
 * min_iterations · eta^r while below run.iterations, then run.iterations. Returns their number. */
int mt_sweep_rungs(const mt_sweep_spec *s, long iterations, long *target);

/* Successive halving: of the n points that entered a rung, those with ok[i] (trained and
 * evaluated) are ranked by metric[i] (ascending, or descending when higher_better; ties by
 * index), and the best max(1, n / eta) of them (fewer if fewer are ok) are promoted:
 * promote[i] = 1. Returns how many. */
int mt_sweep_promote(const double *metric, const int *ok, int n, int eta, int higher_better, int *promote);

#endif
