/* family.c — task families for the driver (see family.h). */
#include "family.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "common.h"

int mt_family_open(mt_family *f, const mt_dist *d, const mt_config *c, const char *split, const char *dataset,
                   mt_model *model)
{
    memset(f, 0, sizeof *f);
    f->cfg = c;
    f->fewshot = strcmp(c->family, "fewshot") == 0;
    if (!f->fewshot) {
        f->n_support = c->shots, f->n_query = c->query, f->in = 1, f->out = 1;
        snprintf(f->source, sizeof f->source, "sinusoid generator");
        if (mt_model_mlp(model, 1, c->hidden, 1) != 0) {
            mt_cli_error(d, "cannot build the MLP");
            return MT_EXIT_USAGE;
        }
        return 0;
    }
    const char *path = dataset ? dataset : c->dataset;
    char err[MT_ERR_LEN] = "";
    int in_split = 0; /* err is a message about the split's contents */
    /* Every rank reads the split it needs; they agree before going on. */
    int ok = mt_dataset_read_split(path, split, &f->split, err, sizeof err) == 0;
    if (ok) {
        f->set = (mt_image_set){.images = f->split.images,
                                .class_offsets = f->split.class_offsets,
                                .n_classes = f->split.n_classes,
                                .C = f->split.C,
                                .H = f->split.H,
                                .W = f->split.W,
                                .rotations = c->rotations};
        /* The check's message is about the split, not the file: the file and split names are
         * put in front when it is printed (not into err, which may already be full). */
        if (mt_fewshot_check(&f->set, c->ways, c->shots, c->query, err, sizeof err) != 0) ok = 0, in_split = 1;
    }
    if (ok && mt_model_conv4(model, f->split.C, f->split.H, f->split.W, c->filters, c->ways) != 0) {
        snprintf(err, sizeof err, "%s: images of %dx%d are too small for conv4 (at least 16x16)", path, f->split.H,
                 f->split.W);
        ok = 0;
    }
    if (!mt_dist_all(d, ok)) {
        if (in_split) mt_cli_error(d, "%s, split %s: %s", path, split, err);
        else mt_cli_error(d, "%s", err[0] ? err : "the dataset could not be read on every rank");
        mt_family_close(f);
        return MT_EXIT_USAGE;
    }
    f->n_support = c->ways * c->shots;
    f->n_query = c->ways * c->query;
    f->in = f->split.C * f->split.H * f->split.W;
    f->out = 1;
    snprintf(f->source, sizeof f->source, "dataset %s split %s", path, split);
    return 0;
}

void mt_family_buffer(const mt_family *f, mt_task_buffer *b)
{
    mt_task_buffer_init(b, f->n_support, f->n_query, f->in, f->out);
}

void mt_family_fill(const mt_family *f, mt_task_buffer *b, mt_stream purpose, uint64_t iteration, uint32_t task)
{
    const mt_config *c = f->cfg;
    if (f->fewshot) mt_fewshot_fill(b, &f->set, c->ways, c->shots, c->query, c->seed, purpose, iteration, task);
    else {
        const mt_sine_dist dist = {c->amp_min, c->amp_max, c->phase_min, c->phase_max, c->x_min, c->x_max};
        mt_sinusoid_fill(b, &dist, c->seed, purpose, iteration, task);
    }
}

void mt_family_close(mt_family *f)
{
    if (!f) return;
    mt_split_free(&f->split);
    memset(f, 0, sizeof *f);
}
