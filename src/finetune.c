/*
 * finetune.c — `metatrain finetune CKPT`: transfer learning from a meta-trained checkpoint
 * (see finetune.h for what one repeat does).
 */
#define _POSIX_C_SOURCE 200809L
#include "finetune.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "cli.h"
#include "common.h"
#include "eval.h"
#include "family.h"
#include "model.h"
#include "optim.h"
#include "rng.h"

/* ---- which layers train ---- */

/* Appends ", name" (or "name") to list[len]. */
static void list_add(char *list, size_t len, const char *name)
{
    const size_t used = strlen(list);
    snprintf(list + used, len - used, "%s%s", used ? ", " : "", name);
}

/* The names --freeze takes for model m: its layers with parameters, ResNet-12's stages, body. */
static void valid_names(const mt_model *m, char *out, size_t len)
{
    out[0] = '\0';
    for (int i = 0; i < m->n_ops; i++)
        if (m->op[i].n_params > 0) list_add(out, len, m->op[i].name);
    if (strcmp(m->arch, "resnet12") == 0) list_add(out, len, "stage1, stage2, stage3, stage4");
    list_add(out, len, "body (every layer but head), none");
}

/* 1 iff token names op o: its name, "body" (every layer but the head), or a stage prefix. */
static int names_op(const char *token, const mt_op *o)
{
    const size_t n = strlen(token);
    if (strcmp(token, "body") == 0) return strcmp(o->name, "head") != 0;
    return strcmp(token, o->name) == 0 || (strncmp(token, "stage", 5) == 0 && strncmp(o->name, token, n) == 0 &&
                                           o->name[n] == '.');
}

/* Marks frozen[op] for the layers the list names (separated by commas or '+', which a sweep's
 * list of values can hold; "none" names nothing); writes them, in model order, into names.
 * Returns 0, or -1 with err naming the unknown token and the valid names. */
static int resolve_freeze(const mt_model *m, const char *list, int *frozen, char *names, size_t len, char *err,
                          size_t errlen)
{
    memset(frozen, 0, (size_t)m->n_ops * sizeof *frozen);
    names[0] = '\0';
    char buf[sizeof ((mt_config *)0)->ft_freeze];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",+", &save); tok; tok = strtok_r(NULL, ",+", &save)) {
        while (*tok == ' ' || *tok == '\t') tok++;
        for (char *e = tok + strlen(tok); e > tok && (e[-1] == ' ' || e[-1] == '\t');) *--e = '\0';
        if (!*tok || strcmp(tok, "none") == 0) continue;
        int hit = 0;
        for (int i = 0; i < m->n_ops; i++)
            if (m->op[i].n_params > 0 && names_op(tok, &m->op[i])) frozen[i] = hit = 1;
        if (!hit) {
            char valid[2048];
            valid_names(m, valid, sizeof valid);
            const int op = mt_model_find_op(m, tok);
            snprintf(err, errlen, "finetune.freeze: %s %s; the layers of this %s are: %s", tok,
                     op >= 0 ? "has no parameters" : "is not a layer", m->arch, valid);
            return -1;
        }
    }
    for (int i = 0; i < m->n_ops; i++)
        if (frozen[i]) list_add(names, len, m->op[i].name);
    return 0;
}

/* ---- the draws of one repeat ---- */

/* Uniform integer in [0, n). */
static uint32_t below(mt_rng *r, uint32_t n) { return (uint32_t)(((uint64_t)mt_rng_u32(r) * n) >> 32); }

/* Moves k uniformly drawn entries of a[n] to its front, in draw order (partial Fisher–Yates). */
static void draw_front(mt_rng *r, int32_t *a, int64_t n, int64_t k)
{
    for (int64_t i = 0; i < k; i++) {
        const int64_t j = i + (int64_t)below(r, (uint32_t)(n - i));
        const int32_t t = a[i];
        a[i] = a[j], a[j] = t;
    }
}

/* Training and held-out images per class of size n under the settings of c. */
static void class_counts(const mt_config *c, int64_t n, int64_t *k, int64_t *q)
{
    if (c->ft_shots > 0) *k = c->ft_shots, *q = c->ft_query > 0 ? c->ft_query : n - c->ft_shots;
    else *q = c->ft_query > 0 ? c->ft_query : (n / 5 > 0 ? n / 5 : 1), *k = n - *q;
}

/* One repeat's images: indices into the split and their labels (the class's slot). */
typedef struct {
    int32_t *train, *held;     /* image indices */
    float *train_y, *held_y;   /* labels */
    int64_t n_train, n_held;
    int32_t *classes;          /* [ways] split classes, slot order */
} draw;

static void draw_repeat(const mt_config *c, const mt_split *s, int ways, uint32_t r, int32_t *scratch, draw *out)
{
    mt_rng g;
    mt_rng_init(&g, c->seed, MT_STREAM_FINETUNE, 0, r);
    for (int i = 0; i < s->n_classes; i++) scratch[i] = i;
    /* All the split's classes keep their order, so a saved head's logit j is class j. */
    if (ways < s->n_classes) draw_front(&g, scratch, s->n_classes, ways);
    memcpy(out->classes, scratch, (size_t)ways * sizeof *scratch);
    out->n_train = out->n_held = 0;
    for (int j = 0; j < ways; j++) {
        const int cls = out->classes[j];
        const int64_t first = s->class_offsets[cls], n = s->class_offsets[cls + 1] - first;
        int64_t k, q;
        class_counts(c, n, &k, &q);
        for (int64_t i = 0; i < n; i++) scratch[i] = (int32_t)(first + i);
        draw_front(&g, scratch, n, k + q);
        for (int64_t i = 0; i < k; i++) out->train[out->n_train] = scratch[i], out->train_y[out->n_train++] = (float)j;
        for (int64_t i = k; i < k + q; i++) out->held[out->n_held] = scratch[i], out->held_y[out->n_held++] = (float)j;
    }
    /* Held-out batches mix the classes (batchnorm normalises over a batch). */
    for (int64_t i = out->n_held - 1; i > 0; i--) {
        const int64_t j = (int64_t)below(&g, (uint32_t)(i + 1));
        const int32_t t = out->held[i];
        const float ty = out->held_y[i];
        out->held[i] = out->held[j], out->held_y[i] = out->held_y[j];
        out->held[j] = t, out->held_y[j] = ty;
    }
}

/* Example i of a batch of n is image idx[k] of s with label labels[k], k = pos[i] (pos NULL:
 * k = i); copies the images scaled to [0, 1] into x as CNHW [C, n, H, W], the labels into y. */
static void gather(const mt_split *s, const int32_t *idx, const float *labels, const int32_t *pos, int n, float *x,
                   float *y)
{
    const size_t hw = (size_t)s->H * s->W, image = (size_t)s->C * hw;
    for (int i = 0; i < n; i++) {
        const int32_t k = pos ? pos[i] : i;
        const uint8_t *img = s->images + (size_t)idx[k] * image;
        for (int c = 0; c < s->C; c++)
            for (size_t p = 0; p < hw; p++) x[((size_t)c * n + i) * hw + p] = (float)img[c * hw + p] / 255.0f;
        y[i] = labels[k];
    }
}

/* ---- one repeat ---- */

typedef struct {
    const mt_config *cfg;
    const mt_split *split;
    const mt_model *m;
    mt_workspace *ws;
    const int *trainable; /* [n_ops] */
    int first_op;         /* the first op with trainable parameters: the backward pass stops there */
    float *x, *y, *g, *am, *av;
    int32_t *batch;       /* [n_train] positions in the training list; step s's draw in front */
} tuner;

/* Held-out accuracy of theta: batches of at most cfg->ft_batch images, sizes as equal as can be. */
static double accuracy(tuner *t, const float *theta, const draw *dr)
{
    const int64_t n = dr->n_held, b = t->cfg->ft_batch, nb = (n + b - 1) / b;
    long correct = 0;
    for (int64_t i = 0; i < nb; i++) {
        const int64_t lo = i * n / nb, hi = (i + 1) * n / nb;
        gather(t->split, dr->held + lo, dr->held_y + lo, NULL, (int)(hi - lo), t->x, t->y);
        const float loss = mt_model_forward(t->m, t->ws, theta, t->x, t->y, (int)(hi - lo));
        if (!isfinite(loss)) return NAN;
        correct += mt_model_correct(t->m, t->ws, t->y, (int)(hi - lo));
    }
    return (double)correct / (double)n;
}

/* Fine-tunes theta in place on repeat r's training images; returns the losses of the first and
 * last step (NaN once a loss is not finite: the repeat stops there). */
static void tune(tuner *t, float *theta, const draw *dr, uint32_t r, mt_progress *pg, long *done, double loss[2])
{
    const mt_config *c = t->cfg;
    const mt_model *m = t->m;
    const int n = dr->n_train < c->ft_batch ? (int)dr->n_train : c->ft_batch;
    const mt_adam_config ac = {c->ft_lr, c->beta1, c->beta2, c->eps};
    const int sgd = strcmp(c->ft_optim, "sgd") == 0;
    memset(t->am, 0, m->n_params * sizeof *t->am);
    memset(t->av, 0, m->n_params * sizeof *t->av);
    for (int64_t i = 0; i < dr->n_train; i++) t->batch[i] = (int32_t)i;
    loss[0] = loss[1] = NAN;
    for (long s = 1; s <= c->ft_steps; s++) {
        if (n < dr->n_train) { /* a fresh draw of n of the training images */
            mt_rng g;
            mt_rng_init(&g, c->seed, MT_STREAM_FINETUNE, (uint64_t)s, r);
            draw_front(&g, t->batch, dr->n_train, n);
        }
        gather(t->split, dr->train, dr->train_y, t->batch, n, t->x, t->y);
        const float l = mt_model_forward(m, t->ws, theta, t->x, t->y, n);
        if (s == 1) loss[0] = l;
        loss[1] = l;
        if (!isfinite(l)) {
            loss[1] = NAN;
            *done += c->ft_steps - s + 1;
            return;
        }
        mt_model_backward_ops(m, t->ws, theta, t->x, t->y, n, t->g, t->first_op);
        for (int i = 0; i < m->n_ops; i++) {
            if (!t->trainable[i]) continue;
            const size_t o = m->op[i].offset, k = m->op[i].n_params;
            if (sgd)
                for (size_t j = o; j < o + k; j++) theta[j] -= c->ft_lr * t->g[j];
            else mt_adam_step(theta + o, t->am + o, t->av + o, t->g + o, k, s, &ac);
        }
        char status[96];
        snprintf(status, sizeof status, "repeat %u, loss %.4g", r, (double)l);
        mt_progress_update(pg, ++*done, status, s == c->ft_steps);
    }
}

/* ---- the run ---- */

/* Copies the [finetune] settings of job into c; the checkpoint is path. */
static void take_settings(mt_config *c, const mt_config *job)
{
    memcpy(c->ft_checkpoint, job->ft_checkpoint, sizeof c->ft_checkpoint);
    memcpy(c->ft_split, job->ft_split, sizeof c->ft_split);
    memcpy(c->ft_optim, job->ft_optim, sizeof c->ft_optim);
    memcpy(c->ft_freeze, job->ft_freeze, sizeof c->ft_freeze);
    c->ft_ways = job->ft_ways, c->ft_shots = job->ft_shots, c->ft_query = job->ft_query;
    c->ft_steps = job->ft_steps, c->ft_batch = job->ft_batch, c->ft_repeats = job->ft_repeats;
    c->ft_lr = job->ft_lr;
}

/* Checks that every class of s can give the training and held-out images c asks for. Returns
 * 0, or -1 with err. */
static int check_split(const mt_config *c, const mt_split *s, char *err, size_t len)
{
    if (c->ways > s->n_classes) {
        snprintf(err, len, "it has %d classes, %d-way fine-tuning needs %d (finetune.ways, --ways: a number other "
                           "than the checkpoint's re-initialises the head)", s->n_classes, c->ways, c->ways);
        return -1;
    }
    for (int k = 0; k < s->n_classes; k++) {
        const int64_t n = s->class_offsets[k + 1] - s->class_offsets[k];
        int64_t shots, held;
        class_counts(c, n, &shots, &held);
        if (shots < 1 || held < 1 || shots + held > n) {
            snprintf(err, len, "class %s has %lld images, too few for %d training (finetune.shots) and %d held-out "
                               "(finetune.query) images", s->class_names[k], (long long)n, c->ft_shots > 0 ? c->ft_shots : 1,
                     c->ft_query > 0 ? c->ft_query : 1);
            return -1;
        }
    }
    return 0;
}

/* θ of the fine-tuned model fm to start from: every tensor of the parent pm (parameters
 * theta[]) that fm has under the same name and size, the rest (a head of another size and its
 * learned rates) as a new run starts them. */
static void start_params(const mt_model *fm, const mt_model *pm, const float *theta, const mt_config *c, float *out)
{
    mt_model_init_params(fm, out, c->seed);
    for (size_t i = fm->n_params - fm->n_rates; i < fm->n_params; i++) out[i] = c->inner_lr;
    for (int i = 0; i < mt_model_tensor_count(fm); i++) {
        mt_tensor_info a, b;
        mt_model_tensor(fm, i, &a);
        for (int j = 0; j < mt_model_tensor_count(pm); j++) {
            mt_model_tensor(pm, j, &b);
            if (strcmp(a.name, b.name) == 0 && a.size == b.size)
                memcpy(out + a.offset, theta + b.offset, a.size * sizeof *out);
        }
    }
}

/* Rank 0 writes repeat 0's parameters as a checkpoint of fm, the parent's step, config c. */
static int write_result(const mt_dist *d, const char *path, const mt_model *fm, const float *theta, const mt_config *c,
                        long step, const char *classes)
{
    char err[MT_ERR_LEN] = "";
    int ok = 1;
    if (d->rank == 0) {
        char *text = mt_config_format(c);
        mt_checkpoint out = {.step = step, .seed = c->seed, .world_size = 1, .config = text};
        snprintf(out.dataset, sizeof out.dataset, "dataset %s split %s classes %s (fine-tuned, repeat 0)", c->dataset,
                 c->ft_split, classes);
        mt_checkpoint_new_run_id(out.run_id);
        const mt_checkpoint_shard sh = {MPI_COMM_NULL, 0, fm->n_params, NULL, NULL};
        ok = mt_checkpoint_write(path, fm, theta, &sh, &out, err, sizeof err) == 0;
        free(text);
    }
    if (mt_dist_all(d, ok)) return 0;
    mt_cli_error(d, "%s", err[0] ? err : "the fine-tuned checkpoint could not be written");
    return MT_EXIT_FAILURE;
}

int mt_finetune_run(const mt_dist *d, const mt_config *job, const mt_finetune_opts *o, mt_finetune_result *res)
{
    memset(res, 0, sizeof *res);
    const char *path = job->ft_checkpoint;
    if (!path[0]) {
        mt_cli_error(d, "finetune.checkpoint is empty: name the meta-trained checkpoint to fine-tune");
        return MT_EXIT_USAGE;
    }
    mt_checkpoint ck;
    mt_config parent;
    int rc = mt_cli_read_checkpoint(d, path, &ck, &parent);
    if (rc != 0) return rc;
    if (strcmp(parent.family, "fewshot") != 0) {
        mt_cli_error(d, "%s was meta-trained on the %s family; fine-tuning needs an image classifier (task.family = "
                        "fewshot)", path, parent.family);
        mt_checkpoint_free(&ck);
        return MT_EXIT_USAGE;
    }
    /* The fine-tuned model's configuration: the parent's, its settings, where it came from. */
    mt_config *F = &res->cfg;
    *F = parent;
    take_settings(F, job);
    if (!o->parent_seed) F->seed = job->seed;
    if (!F->ft_split[0]) memcpy(F->ft_split, parent.test_split, sizeof F->ft_split);
    F->ways = F->ft_ways > 0 ? F->ft_ways : parent.ways;
    F->ft_ways = F->ways;
    F->rotations = F->crop_padding = F->flip = 0; /* the split's images as they are */
    if (o->data) snprintf(F->dataset, sizeof F->dataset, "%s", o->data);
    res->parent_ways = parent.ways, res->ways = F->ways;

    mt_config open = *F; /* the split's own size checks come below, with their own message */
    open.ways = 2, open.shots = open.query = 1;
    mt_family fam;
    mt_model pm, fm;
    if ((rc = mt_family_open(&fam, d, &open, F->ft_split, F->dataset, &pm)) != 0) {
        mt_checkpoint_free(&ck);
        return rc;
    }
    snprintf(res->source, sizeof res->source, "%s", fam.source);
    const mt_split *s = &fam.split;
    char err[MT_ERR_LEN] = "";
    int *trainable = mt_calloc(MT_MAX_OPS, sizeof(int));
    if (check_split(F, s, err, sizeof err) != 0) {
        mt_cli_error(d, "%s: %s", fam.source, err);
        rc = MT_EXIT_USAGE;
    } else if (mt_family_model(&parent, s->C, s->H, s->W, &pm) != 0 || mt_family_model(F, s->C, s->H, s->W, &fm) != 0) {
        mt_cli_error(d, "%s: images of %dx%d are too small for %s", fam.source, s->H, s->W, parent.arch);
        rc = MT_EXIT_USAGE;
    } else if ((rc = mt_cli_check_checkpoint_model(d, path, &ck, &pm, fam.source)) != 0) {
    } else if (resolve_freeze(&fm, F->ft_freeze, trainable, res->frozen, sizeof res->frozen, err, sizeof err) != 0) {
        mt_cli_error(d, "%s", err);
        rc = MT_EXIT_USAGE;
    }
    if (rc == 0) { /* resolve_freeze marked the frozen layers; the others with parameters train */
        snprintf(F->ft_freeze, sizeof F->ft_freeze, "%s", res->frozen);
        for (int i = 0; i < fm.n_ops; i++) {
            trainable[i] = !trainable[i] && fm.op[i].n_params > 0;
            res->trainable += trainable[i] ? (long)fm.op[i].n_params : 0;
        }
        if (res->trainable == 0 && F->ft_steps > 0) {
            mt_cli_error(d, "finetune.freeze = %s leaves no layer to train (finetune.steps = 0 evaluates the checkpoint "
                            "as it is)", F->ft_freeze);
            rc = MT_EXIT_USAGE;
        }
    }
    if (rc != 0) {
        free(trainable);
        mt_checkpoint_free(&ck);
        mt_family_close(&fam);
        return rc;
    }

    /* The parent's θ to every rank, then the fine-tuned model's starting point. */
    float *parent_theta = mt_malloc(pm.n_params * sizeof(float)), *init = mt_malloc(fm.n_params * sizeof(float));
    if (d->rank == 0) memcpy(parent_theta, ck.params, pm.n_params * sizeof(float));
    mt_dist_bcast_float(d, parent_theta, pm.n_params);
    res->parent_step = ck.step;
    mt_checkpoint_free(&ck);
    start_params(&fm, &pm, parent_theta, F, init);
    free(parent_theta);

    const long R = F->ft_repeats;
    const int rows = (int)(s->n_images < F->ft_batch ? s->n_images : F->ft_batch);
    const size_t P = fm.n_params;
    tuner t = {.cfg = F, .split = s, .m = &fm, .trainable = trainable, .first_op = fm.n_ops};
    for (int i = fm.n_ops - 1; i >= 0; i--)
        if (trainable[i]) t.first_op = i;
    t.ws = mt_workspace_init(&fm, rows, MT_WS_GRAD);
    t.x = mt_malloc((size_t)rows * (size_t)fm.in * sizeof(float));
    t.y = mt_malloc((size_t)rows * sizeof(float));
    t.g = mt_calloc(P, sizeof(float)), t.am = mt_malloc(P * sizeof(float)), t.av = mt_malloc(P * sizeof(float));
    t.batch = mt_malloc((size_t)s->n_images * sizeof(int32_t));
    draw dr = {.train = mt_malloc((size_t)s->n_images * sizeof(int32_t)),
               .held = mt_malloc((size_t)s->n_images * sizeof(int32_t)),
               .train_y = mt_malloc((size_t)s->n_images * sizeof(float)),
               .held_y = mt_malloc((size_t)s->n_images * sizeof(float)),
               .classes = mt_malloc((size_t)F->ways * sizeof(int32_t))};
    int32_t *scratch = mt_malloc((size_t)(s->n_images > s->n_classes ? s->n_images : s->n_classes) * sizeof(int32_t));
    float *theta = mt_malloc(P * sizeof(float)), *theta0 = d->rank == 0 ? mt_malloc(P * sizeof(float)) : NULL;
    char classes[512] = "";

    /* Each repeat on one rank; its numbers land in its own slots of a vector summed over ranks. */
    enum { AFTER, BEFORE, LOSS_FIRST, LOSS_LAST, TRAIN, HELD, N_SLOTS };
    double *v = mt_calloc((size_t)N_SLOTS * (size_t)R, sizeof(double));
    int lo, hi;
    mt_dist_task_range((int)R, d->rank, d->size, &lo, &hi);
    mt_progress pg;
    mt_progress_start(&pg, d->rank == 0 ? o->progress : MT_PROGRESS_NONE, stdout, "finetune", 0,
                      (long)(hi - lo) * F->ft_steps);
    long done = 0;
    for (int r = lo; r < hi; r++) {
        draw_repeat(F, s, F->ways, (uint32_t)r, scratch, &dr);
        memcpy(theta, init, P * sizeof(float));
        double loss[2];
        v[BEFORE * R + r] = accuracy(&t, theta, &dr);
        tune(&t, theta, &dr, (uint32_t)r, &pg, &done, loss);
        v[AFTER * R + r] = F->ft_steps == 0 || isfinite(loss[1]) ? accuracy(&t, theta, &dr) : NAN;
        v[LOSS_FIRST * R + r] = loss[0], v[LOSS_LAST * R + r] = loss[1];
        v[TRAIN * R + r] = (double)dr.n_train, v[HELD * R + r] = (double)dr.n_held;
        if (r == 0 && theta0) {
            memcpy(theta0, theta, P * sizeof(float));
            for (int j = 0; j < F->ways; j++) {
                const size_t used = strlen(classes);
                snprintf(classes + used, sizeof classes - used, "%s%d", j ? "," : "", dr.classes[j]);
            }
        }
    }
    mt_progress_finish(&pg);
    mt_dist_sum_double(d, v, (size_t)N_SLOTS * (size_t)R);
    mt_mean_ci95(v + AFTER * R, R, &res->mean, &res->ci95);
    mt_mean_ci95(v + BEFORE * R, R, &res->mean_before, &res->ci95_before);
    double unused;
    mt_mean_ci95(v + LOSS_FIRST * R, R, &res->loss_first, &unused);
    mt_mean_ci95(v + LOSS_LAST * R, R, &res->loss_last, &unused);
    mt_mean_ci95(v + TRAIN * R, R, &res->train_images, &unused);
    mt_mean_ci95(v + HELD * R, R, &res->held_out, &unused);
    if (o->out_path) rc = write_result(d, o->out_path, &fm, theta0, F, res->parent_step, classes);

    free(v), free(theta), free(theta0), free(scratch), free(init), free(trainable);
    free(dr.train), free(dr.held), free(dr.train_y), free(dr.held_y), free(dr.classes);
    free(t.x), free(t.y), free(t.g), free(t.am), free(t.av), free(t.batch);
    mt_workspace_free(t.ws);
    mt_family_close(&fam);
    return rc;
}

/* ---- the command ---- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: metatrain finetune CKPT [--data FILE] [--split S] [--ways W] [--shots K] [--query Q]\n"
            "                               [--steps N] [--batch B] [--optim adam|sgd] [--lr LR]\n"
            "                               [--freeze LAYERS|body] [--repeats R] [--seed S]\n"
            "                               [--set finetune.key=value]... [-o OUT] [--progress MODE] [--json]\n"
            "\n"
            "Transfer learning from a meta-trained checkpoint: trains it on K labelled images per class of\n"
            "new classes (a split never seen in meta-training), some layers frozen, and measures accuracy\n"
            "on held-out images of those classes: mean and 95%% CI over R repeats, each a fresh draw of\n"
            "classes and images fine-tuned from the checkpoint. Repeats are split over the ranks; the\n"
            "numbers are the same for any rank count. Repeat 0's parameters become a new checkpoint whose\n"
            "config names its parent and the frozen layers ([finetune] checkpoint, freeze).\n"
            "  metatrain finetune runs/fmnist_5w1s_maml/ckpt-00010000.h5 --ways 4 --shots 5 --freeze body\n"
            "  mpirun -np 2 metatrain finetune CKPT --ways 4 --shots 1 --freeze conv1,bn1 --repeats 100\n"
            "\n"
            "Each option sets the [finetune] key of its name (see `metatrain train --help`):\n"
            "  --data FILE      the dataset file (default: task.dataset of the checkpoint)\n"
            "  --split S        the split fine-tuned on (default: task.test_split of the checkpoint)\n"
            "  --ways W         classes per repeat, drawn from the split (default: the checkpoint's\n"
            "                   task.ways; another number re-initialises the head)\n"
            "  --shots K        training images per class (default 0: all but the held-out ones)\n"
            "  --query Q        held-out images per class (default 0: all the rest; with --shots 0, 1/5\n"
            "                   of each class)\n"
            "  --steps N        optimizer steps per repeat (default 100; 0 evaluates the checkpoint)\n"
            "  --batch B        images per step (default 64; all training images when fewer); held-out\n"
            "                   images are classified in batches of at most B (batch statistics)\n"
            "  --optim O        adam (default) or sgd\n"
            "  --lr LR          learning rate (default 0.001)\n"
            "  --freeze LIST    layers left as they are, separated by commas or +: conv1, bn1, ..., head\n"
            "                   (conv4); stage1.conv1, ..., or a whole stage1 (resnet12); body: every\n"
            "                   layer but the head; none (default). A wrong name lists the valid ones.\n"
            "  --repeats R      repeats (default 10)\n"
            "  --seed S         seed of the draws (default: the checkpoint's run.seed)\n"
            "  --set KEY=VALUE  any [finetune] key, or run.seed (repeatable)\n"
            "  -o, --output OUT the fine-tuned checkpoint (default: finetuned-<CKPT's name> beside CKPT)\n"
            "  --progress MODE  auto (default), bar, lines or none\n"
            "  --json           print one JSON object: checkpoint, output, split, ways, head_reset,\n"
            "                   repeats, steps, train_images, held_out, frozen, trainable, mean, ci95,\n"
            "                   mean_before, ci95_before, loss_first, loss_last\n"
            "  -h, --help       this text\n"
            "\n"
            "The split's images are used as stored (no rotations, no augmentation); batchnorm normalises\n"
            "with batch statistics, as in meta-training.\n"
            "Exit status: 0 success, 1 runtime failure (the checkpoint cannot be written), 2 bad input\n"
            "(unreadable checkpoint, not an image classifier, unknown layer, too few images).\n");
}

typedef struct {
    const char *ckpt, *out;
    char *sets[MT_MAX_SETS];
    int n_sets;
    char own[32][MT_PATH_LEN + 64]; /* the options' assignments */
    int n_own, seed_given, json;
    mt_progress_mode progress;
} finetune_args;

/* Options that are [finetune] keys: --name VALUE is --set finetune.name=VALUE. */
static const char *const option_keys[] = {"split", "ways",  "shots", "query",  "steps",
                                          "batch", "optim", "lr",    "freeze", "repeats"};

static int parse_args(const mt_dist *d, int argc, char **argv, finetune_args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *v = NULL;
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            if (d->rank == 0) usage(stdout);
            return MT_EXIT_OK;
        }
        if (strcmp(arg, "--json") == 0) {
            a->json = 1;
            continue;
        }
        if (mt_cli_option(argc, argv, &i, "--set", &v)) {
            if (v && strncmp(v, "finetune.", 9) != 0 && strncmp(v, "run.seed", 8) != 0) {
                mt_cli_error(d, "--set %s: finetune takes [finetune] keys and run.seed; the model and the tasks are "
                                "the checkpoint's", v);
                return MT_EXIT_USAGE;
            }
            if (v && strncmp(v, "finetune.checkpoint", 19) == 0) {
                mt_cli_error(d, "--set %s: the checkpoint is the command's argument", v);
                return MT_EXIT_USAGE;
            }
            if (v && strncmp(v, "run.seed", 8) == 0) a->seed_given = 1;
            if (mt_cli_add_set(d, a->sets, &a->n_sets, v) != 0) return MT_EXIT_USAGE;
            continue;
        }
        if (mt_cli_option(argc, argv, &i, "--progress", &v)) {
            if (!v || mt_progress_parse(v, &a->progress) != 0) {
                mt_cli_error(d, "--progress takes auto, bar, lines or none");
                return MT_EXIT_USAGE;
            }
            continue;
        }
        if (mt_cli_option(argc, argv, &i, "-o", &v) || mt_cli_option(argc, argv, &i, "--output", &v) ||
            mt_cli_option(argc, argv, &i, "--data", &v)) {
            if (!v || !v[0]) {
                mt_cli_error(d, "%s needs a file name", arg);
                return MT_EXIT_USAGE;
            }
            if (strncmp(arg, "--data", 6) == 0) {
                snprintf(a->own[a->n_own], sizeof a->own[0], "task.dataset=%s", v);
                if (mt_cli_add_set(d, a->sets, &a->n_sets, a->own[a->n_own++]) != 0) return MT_EXIT_USAGE;
            } else a->out = v;
            continue;
        }
        int matched = 0;
        for (size_t k = 0; k < sizeof option_keys / sizeof option_keys[0] && !matched; k++) {
            char name[32];
            snprintf(name, sizeof name, "--%s", option_keys[k]);
            if (!mt_cli_option(argc, argv, &i, name, &v)) continue;
            if (!v) {
                mt_cli_error(d, "%s needs a value (see metatrain finetune --help)", name);
                return MT_EXIT_USAGE;
            }
            snprintf(a->own[a->n_own], sizeof a->own[0], "finetune.%s=%s", option_keys[k], v);
            if (mt_cli_add_set(d, a->sets, &a->n_sets, a->own[a->n_own++]) != 0) return MT_EXIT_USAGE;
            matched = 1;
        }
        if (!matched && mt_cli_option(argc, argv, &i, "--seed", &v)) {
            snprintf(a->own[a->n_own], sizeof a->own[0], "run.seed=%s", v ? v : "");
            if (mt_cli_add_set(d, a->sets, &a->n_sets, a->own[a->n_own++]) != 0) return MT_EXIT_USAGE;
            a->seed_given = matched = 1;
        }
        if (matched) continue;
        if (arg[0] == '-') {
            mt_cli_error(d, "unknown option '%s' (see metatrain finetune --help)", arg);
            return MT_EXIT_USAGE;
        }
        if (a->ckpt) {
            mt_cli_error(d, "more than one checkpoint given ('%s' and '%s')", a->ckpt, arg);
            return MT_EXIT_USAGE;
        }
        a->ckpt = arg;
    }
    if (!a->ckpt) {
        mt_cli_error(d, "finetune needs a checkpoint (see metatrain finetune --help)");
        return MT_EXIT_USAGE;
    }
    return -1;
}

/* "key": value, through the shared JSON printers */
static void json_string(const char *key, const char *s)
{
    printf("\"%s\": ", key);
    mt_cli_json_string(s);
}

static void json_double(const char *key, double x)
{
    char v[32];
    mt_cli_json_number(v, x);
    printf("\"%s\": %s", key, v);
}

static void report(const finetune_args *a, const char *out, const mt_finetune_result *r)
{
    const mt_config *c = &r->cfg;
    if (a->json) {
        printf("{");
        json_string("checkpoint", a->ckpt), printf(", "), json_string("output", out), printf(", ");
        json_string("split", c->ft_split), printf(", \"ways\": %d, \"head_reset\": %s, ", c->ways,
                                                   r->ways != r->parent_ways ? "true" : "false");
        printf("\"repeats\": %d, \"steps\": %ld, \"optim\": \"%s\", ", c->ft_repeats, c->ft_steps, c->ft_optim);
        printf("\"lr\": %.7g, ", (double)c->ft_lr), json_double("train_images", r->train_images), printf(", ");
        json_double("held_out", r->held_out), printf(", "), json_string("frozen", r->frozen);
        printf(", \"trainable\": %ld, ", r->trainable);
        json_double("mean", r->mean), printf(", "), json_double("ci95", r->ci95), printf(", ");
        json_double("mean_before", r->mean_before), printf(", "), json_double("ci95_before", r->ci95_before);
        printf(", "), json_double("loss_first", r->loss_first), printf(", "), json_double("loss_last", r->loss_last);
        printf("}\n");
    } else {
        printf("finetune %s (step %ld) on %s: %d-way, %.0f training and %.0f held-out images per repeat\n", a->ckpt,
               r->parent_step, r->source, c->ways, r->train_images, r->held_out);
        printf("  %ld %s steps (lr %g, batch %d), %d repeats; frozen: %s; %ld parameters trained", c->ft_steps,
               c->ft_optim, (double)c->ft_lr, c->ft_batch, c->ft_repeats, r->frozen[0] ? r->frozen : "none",
               r->trainable);
        if (r->ways != r->parent_ways) printf("; head re-initialised (%d -> %d ways)", r->parent_ways, r->ways);
        printf("\n  held-out accuracy after fine-tuning: %.2f%% +- %.2f%% (95%% CI)\n"
               "  held-out accuracy before:            %.2f%% +- %.2f%%\n"
               "  training loss, first -> last step:   %.4f -> %.4f\n",
               100 * r->mean, 100 * r->ci95, 100 * r->mean_before, 100 * r->ci95_before, r->loss_first, r->loss_last);
        if (!isfinite(r->mean))
            printf("  fine-tuning diverged (a loss is not finite) in some repeat: try a smaller --lr\n");
        if (out) printf("  checkpoint (repeat 0): %s\n", out);
    }
    fflush(stdout);
}

int mt_finetune_main(const mt_dist *d, int argc, char **argv)
{
    finetune_args a;
    int rc = parse_args(d, argc, argv, &a);
    if (rc >= 0) return rc;
    mt_config job;
    mt_config_defaults(&job);
    char err[MT_ERR_LEN] = "";
    const char *data = NULL;
    for (int i = 0; i < a.n_sets; i++) {
        if (strncmp(a.sets[i], "task.dataset=", 13) == 0) {
            data = a.sets[i] + 13;
            continue;
        }
        if (mt_config_set(&job, a.sets[i], err, sizeof err) != 0) {
            mt_cli_error(d, "%s", err);
            return MT_EXIT_USAGE;
        }
    }
    if (snprintf(job.ft_checkpoint, sizeof job.ft_checkpoint, "%s", a.ckpt) >= (int)sizeof job.ft_checkpoint) {
        mt_cli_error(d, "the checkpoint's path is longer than %d bytes", MT_PATH_LEN - 1);
        return MT_EXIT_USAGE;
    }
    /* The output: -o, or finetuned-<name> beside the checkpoint; never the checkpoint itself. */
    char out[MT_PATH_LEN + 16];
    if (a.out) snprintf(out, sizeof out, "%s", a.out);
    else {
        const char *slash = strrchr(a.ckpt, '/');
        const int dir = slash ? (int)(slash - a.ckpt + 1) : 0;
        snprintf(out, sizeof out, "%.*sfinetuned-%s", dir, a.ckpt, a.ckpt + dir);
    }
    struct stat st_in, st_out;
    if (stat(a.ckpt, &st_in) == 0 && stat(out, &st_out) == 0 && st_in.st_dev == st_out.st_dev &&
        st_in.st_ino == st_out.st_ino) {
        mt_cli_error(d, "-o %s is the checkpoint being fine-tuned; name another file", out);
        return MT_EXIT_USAGE;
    }
    const mt_finetune_opts o = {.data = data, .out_path = out, .parent_seed = !a.seed_given, .progress = a.json ? MT_PROGRESS_NONE : a.progress};
    mt_finetune_result r;
    rc = mt_finetune_run(d, &job, &o, &r);
    if (rc == 0 && d->rank == 0) report(&a, out, &r);
    return rc;
}
