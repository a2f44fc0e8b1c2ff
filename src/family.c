/* family.c — task families for the driver (see family.h). */
#include "family.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"

/* Collective over d: the node's first rank reads the split with its pixels into a shared
 * window the node's ranks map; the others read the small arrays. Falls back to a private
 * copy per rank when MT_DATASET_PRIVATE is set, the node has one rank, or the window cannot
 * be made. 0, or -1 with err (this rank's failure; the caller agrees over all ranks). */
static int read_pixels(mt_family *f, const mt_dist *d, const char *path, const char *split, char *err, size_t len)
{
    const char *private_env = getenv("MT_DATASET_PRIVATE");
    MPI_Comm node;
    int node_rank = 0, node_size = 1;
    MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &node_rank);
    MPI_Comm_size(node, &node_size);
    if ((private_env && strcmp(private_env, "0") != 0) || node_size == 1) {
        MPI_Comm_free(&node);
        return mt_dataset_read_split(path, split, &f->split, err, len);
    }
    MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN);
    /* The size first (node rank 0, from the file's metadata), then the window. */
    mt_split meta;
    long bytes = -1;
    if (node_rank == 0 && mt_dataset_read_split_meta(path, split, &meta, err, len) == 0) {
        const size_t b = (size_t)meta.n_images * (size_t)meta.C * (size_t)meta.H * (size_t)meta.W;
        bytes = b <= (size_t)LONG_MAX ? (long)b : -1;
        if (bytes < 0) snprintf(err, len, "dataset %s, split '%s': %zu bytes of images are too many", path, split, b);
        mt_split_free(&meta);
    }
    MPI_Bcast(&bytes, 1, MPI_LONG, 0, node);
    if (bytes < 0) { /* node rank 0 reported the file's problem; the others say so too */
        if (node_rank != 0) snprintf(err, len, "dataset %s, split '%s' could not be read", path, split);
        MPI_Comm_free(&node);
        return -1;
    }
    uint8_t *base = NULL;
    MPI_Win win;
    int rc = MPI_Win_allocate_shared(node_rank == 0 ? (MPI_Aint)bytes : 0, 1, MPI_INFO_NULL, node, &base, &win);
    int made = rc == MPI_SUCCESS, all_made = 0;
    MPI_Allreduce(&made, &all_made, 1, MPI_INT, MPI_MIN, node);
    if (!all_made) { /* e.g. no room in the shared-memory file system: one copy per rank */
        if (made) MPI_Win_free(&win);
        if (node_rank == 0)
            fprintf(stderr, "metatrain: warning: cannot share %s's images between the ranks of %s; every rank "
                            "reads its own copy\n", path, d->host);
        MPI_Comm_free(&node);
        return mt_dataset_read_split(path, split, &f->split, err, len);
    }
    int ok = 1;
    if (node_rank == 0) ok = mt_dataset_read_split_to(path, split, &f->split, base, (size_t)bytes, err, len) == 0;
    else ok = mt_dataset_read_split_meta(path, split, &f->split, err, len) == 0;
    /* The pixels are complete before any rank of the node reads them. */
    MPI_Win_fence(0, win);
    MPI_Barrier(node);
    MPI_Aint size = 0;
    int unit = 1;
    void *pixels = NULL;
    MPI_Win_shared_query(win, 0, &size, &unit, &pixels);
    f->split.images = pixels;
    f->win = win;
    f->node = node;
    f->shared = 1;
    return ok ? 0 : -1;
}

int mt_family_open(mt_family *f, const mt_dist *d, const mt_config *c, const char *split, const char *dataset,
                   mt_model *model)
{
    memset(f, 0, sizeof *f);
    f->cfg = c;
    f->fewshot = strcmp(c->family, "fewshot") == 0;
    if (!f->fewshot) {
        f->n_support = c->shots, f->n_query = c->query, f->in = 1, f->out = 1;
        snprintf(f->source, sizeof f->source, "sinusoid generator");
        if (mt_family_model(c, 1, 1, 1, model) != 0) {
            mt_cli_error(d, "cannot build the MLP");
            return MT_EXIT_USAGE;
        }
        return 0;
    }
    const char *path = dataset ? dataset : c->dataset;
    char err[MT_ERR_LEN] = "";
    int in_split = 0; /* err is a message about the split's contents */
    /* One copy of the pixels per node, or every rank its own; the ranks agree before going on. */
    int ok = read_pixels(f, d, path, split, err, sizeof err) == 0;
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
        else if (c->crop_padding >= f->split.H || c->crop_padding >= f->split.W) {
            snprintf(err, sizeof err, "[augment] crop_padding = %d must be below the image size %dx%d", c->crop_padding,
                     f->split.H, f->split.W);
            ok = 0, in_split = 1;
        }
    }
    if (ok && mt_family_model(c, f->split.C, f->split.H, f->split.W, model) != 0) {
        snprintf(err, sizeof err, "%s: images of %dx%d are too small for %s (at least 16x16)", path, f->split.H,
                 f->split.W, c->arch);
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
    const mt_augment aug = {c->crop_padding, c->flip};
    if (f->fewshot) mt_fewshot_fill(b, &f->set, c->ways, c->shots, c->query, &aug, c->seed, purpose, iteration, task);
    else {
        const mt_sine_dist dist = {c->amp_min, c->amp_max, c->phase_min, c->phase_max, c->x_min, c->x_max};
        mt_sinusoid_fill(b, &dist, c->seed, purpose, iteration, task);
    }
}

void mt_family_close(mt_family *f)
{
    if (!f) return;
    if (f->shared) { /* collective over the node: every rank closes the family together */
        f->split.images = NULL; /* the window's memory, not the split's */
        MPI_Win_free(&f->win);
        MPI_Comm_free(&f->node);
    }
    mt_split_free(&f->split);
    memset(f, 0, sizeof *f);
}

int mt_family_model(const mt_config *c, int C, int H, int W, mt_model *m)
{
    int rc;
    if (strcmp(c->family, "fewshot") != 0) rc = mt_model_mlp(m, 1, c->hidden, 1);
    else if (strcmp(c->arch, "resnet12") == 0) rc = mt_model_resnet12(m, C, H, W, c->widths, c->ways);
    else rc = mt_model_conv4(m, C, H, W, c->filters, c->ways);
    if (rc == 0 && strcmp(c->algo, "metasgd") == 0) mt_model_learn_rates(m);
    else if (rc == 0 && c->lslr) mt_model_learn_step_rates(m, c->inner_steps);
    return rc;
}
