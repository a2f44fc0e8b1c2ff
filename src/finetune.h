/*
 * finetune.h — transfer learning from a meta-trained checkpoint: fine-tune its parameters on a
 * few labelled images of new classes, some layers frozen, and measure held-out accuracy.
 *
 * One repeat r draws `ways` classes of the split and, per class, its training and held-out
 * images, all from the stream (seed, MT_STREAM_FINETUNE, 0, r); starts from the checkpoint's θ
 * (a head of another size starts from the default initialisation); takes `steps` optimizer
 * steps (SGD or Adam) on batches of the training images, step s's batch drawn from
 * (seed, MT_STREAM_FINETUNE, s, r), updating only the layers that are not frozen; then
 * classifies the held-out images. Repeats are split over the ranks, each computed whole by
 * one rank, so the numbers are the same for any rank count. Repeat 0's parameters are the
 * fine-tuned checkpoint; its config names the parent and the frozen layers.
 */
#ifndef MT_FINETUNE_H
#define MT_FINETUNE_H

#include "config.h"
#include "dist.h"
#include "progress.h"

typedef struct {
    const char *data;     /* the dataset file (NULL: the checkpoint's task.dataset) */
    const char *out_path; /* where the fine-tuned checkpoint goes (NULL: nowhere) */
    int parent_seed;      /* 1: draw from the checkpoint's run.seed instead of job->seed */
    mt_progress_mode progress;
} mt_finetune_opts;

typedef struct {
    long parent_step;                /* the checkpoint's meta-iterations */
    int ways, parent_ways;           /* head sizes; they differ: the head was re-initialised */
    double train_images, held_out;   /* per repeat (mean over repeats) */
    double mean, ci95;               /* held-out accuracy after fine-tuning, over the repeats */
    double mean_before, ci95_before; /* ... of the checkpoint as it was (chance for a new head) */
    double loss_first, loss_last;    /* training loss at the first and the last step (mean) */
    long trainable;                  /* parameters fine-tuning changes */
    char frozen[512];                /* the frozen layers, "conv1, bn1" ("": none) */
    char source[MT_PATH_LEN + 80];   /* "dataset FILE split NAME" */
    mt_config cfg;                   /* the fine-tuned model's configuration (in its checkpoint) */
} mt_finetune_result;

/* Collective. Fine-tunes the checkpoint job->ft_checkpoint with the [finetune] settings of job
 * (and its run.seed unless o->parent_seed) and fills res. Returns 0, MT_EXIT_USAGE (bad input:
 * unreadable or non-classification checkpoint, unknown layer in finetune.freeze, a split too
 * small for the settings) or MT_EXIT_FAILURE (the checkpoint cannot be written), after rank 0
 * printed why (mt_cli_error). */
int mt_finetune_run(const mt_dist *d, const mt_config *job, const mt_finetune_opts *o, mt_finetune_result *res);

#endif
