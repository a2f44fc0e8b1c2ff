/*
 * family.h — the driver's view of a task family: what data it loads, which model it
 * builds, and how it fills a task. Shared by `train` and `eval`.
 *
 *   sinusoid   no data; MLP 1-hidden-hidden-1; tasks from the sinusoid generator
 *   fewshot    one split of an HDF5 dataset; Conv4 with the images' shape and task.ways
 *              outputs; tasks from the N-way K-shot sampler. The split's pixels are held
 *              once per node: the node's first rank reads them into an MPI shared-memory
 *              window that the node's other ranks map (every rank reads the small arrays:
 *              labels, class offsets and names). MT_DATASET_PRIVATE=1 in the environment
 *              gives every rank its own copy instead (and a failed window falls back to it).
 */
#ifndef MT_FAMILY_H
#define MT_FAMILY_H

#include "config.h"
#include "dataset.h"
#include "dist.h"
#include "fewshot.h"
#include "model.h"
#include "tasks.h"

typedef struct {
    const mt_config *cfg;
    int fewshot;
    mt_split split;    /* fewshot: the loaded split (split.images points into the window when shared) */
    int shared;        /* fewshot: the pixels live in win, one copy per node */
    MPI_Win win;       /* shared: the window holding them, over the node's ranks (node) */
    MPI_Comm node;
    mt_image_set set;  /* fewshot: the sampler's view of it */
    int n_support, n_query; /* examples per task */
    int in, out;       /* values per example of inputs and targets */
    char source[MT_PATH_LEN + 80]; /* "dataset FILE split NAME", for messages and checkpoints */
} mt_family;

/* Collective. Loads what the family of c needs (fewshot: split `split` of `dataset`, or of
 * c->dataset when dataset is NULL) and builds the model. Returns 0, or MT_EXIT_USAGE after
 * rank 0 printed why (unreadable dataset, missing split, too few classes or images). */
int mt_family_open(mt_family *f, const mt_dist *d, const mt_config *c, const char *split, const char *dataset,
                   mt_model *model);

/* Fills b (made by mt_family_buffer) with task (purpose, iteration, task) of the family. */
void mt_family_fill(const mt_family *f, mt_task_buffer *b, mt_stream purpose, uint64_t iteration, uint32_t task);

/* A task buffer of the family's shape. */
void mt_family_buffer(const mt_family *f, mt_task_buffer *b);

void mt_family_close(mt_family *f); /* accepts a zeroed family */

/* Builds the model c names: the MLP for sinusoid ([model] hidden), conv4 or resnet12 for
 * fewshot (with its widths and [task] ways) on images of C×H×W, and the learned rates after
 * its parameters: one per parameter for [meta] algo = metasgd (mt_model_learn_rates), one
 * per inner step and tensor for meta.lslr (mt_model_learn_step_rates). Returns 0, or -1 if
 * the images are too small. */
int mt_family_model(const mt_config *c, int C, int H, int W, mt_model *m);

#endif
