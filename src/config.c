/* config.c — the key table and its parser, printer and checker (see config.h). */
#include "config.h"

#include <errno.h>
#include <float.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "tasks.h"

typedef enum { KEY_STRING, KEY_CHOICE, KEY_INT, KEY_LONG, KEY_U64, KEY_FLOAT, KEY_WIDTHS } key_type;

/* Bounds and value flags of a key. */
enum {
    LO_OPEN = 1,  /* numbers: the value must be strictly greater than lo */
    HI_OPEN = 2,  /* numbers: the value must be strictly less than hi */
    NONBLANK = 4, /* strings: an empty value (or one of blanks) is an error */
};

/* Which configurations a key applies to; a key that does not apply must keep its default
 * (mt_config_check) and cannot be given with --set (mt_config_check_set). */
typedef enum { FOR_ALL, FOR_SINUSOID, FOR_FEWSHOT, FOR_MLP, FOR_CONV4, FOR_RESNET12, FOR_MAML, FOR_MSL, FOR_RATES } key_scope;

typedef struct {
    const char *section, *name;
    key_type type;
    size_t offset, size; /* where in mt_config, and the field's size (strings) */
    double lo, hi;       /* allowed range (numbers); floats are checked as stored (float) */
    int flags;           /* LO_OPEN | HI_OPEN | NONBLANK */
    const char *choices; /* KEY_CHOICE: allowed values separated by '|' */
    key_scope scope;
    const char *doc;
} key_spec;

#define FIELD(f) offsetof(mt_config, f), sizeof(((mt_config *)0)->f)

/* model.hidden: the MLP 1 -> h -> h -> 1 has h^2 + 4h + 1 parameters; 16384 gives 268,500,993
 * (1 GiB per float copy, of which training keeps 1 + meta_batch/ranks), 8 times below the
 * 2^31 - 1 that one MPI call can move. A wider sinusoid MLP is not a use case. */
#define MAX_HIDDEN 16384

/* The sinusoid ranges: wide enough for any out-of-distribution study, small enough that
 * max - min, A·sin(x - φ) and its square stay far from float overflow. */
#define MAX_SINE 1e6

static const key_spec keys[] = {
    {"run", "dir", KEY_STRING, FIELD(run_dir), 0, 0, NONBLANK, NULL, FOR_ALL,
     "run directory: resolved config.ini, metrics.jsonl and checkpoints go here"},
    {"run", "seed", KEY_U64, FIELD(seed), 0, 0, 0, NULL, FOR_ALL,
     "seed of every random draw (initialisation, tasks); same seed = same run"},
    {"run", "iterations", KEY_LONG, FIELD(iterations), 1, 4294967295.0, 0, NULL, FOR_ALL,
     "meta-iterations (outer optimizer steps)"},
    {"run", "log_every", KEY_LONG, FIELD(log_every), 1, 4294967295.0, 0, NULL, FOR_ALL,
     "iterations between metrics.jsonl lines (and progress lines when not on a terminal)"},
    {"task", "family", KEY_CHOICE, FIELD(family), 0, 0, 0, "sinusoid|fewshot", FOR_ALL,
     "sinusoid (regression, Finn et al. 2017) | fewshot (N-way K-shot image classification)"},
    {"task", "shots", KEY_INT, FIELD(shots), 1, 100000, 0, NULL, FOR_ALL,
     "support examples per task (sinusoid: points; fewshot: images per class)"},
    {"task", "query", KEY_INT, FIELD(query), 1, 100000, 0, NULL, FOR_ALL,
     "query examples per task (sinusoid: points; fewshot: images per class)"},
    {"task", "ways", KEY_INT, FIELD(ways), 2, 10000, 0, NULL, FOR_FEWSHOT, "fewshot: classes per task"},
    {"task", "dataset", KEY_STRING, FIELD(dataset), 0, 0, 0, NULL, FOR_FEWSHOT,
     "fewshot: HDF5 dataset file (made by `metatrain data import`)"},
    {"task", "train_split", KEY_STRING, FIELD(train_split), 0, 0, NONBLANK, NULL, FOR_FEWSHOT,
     "fewshot: split of meta-training classes"},
    {"task", "test_split", KEY_STRING, FIELD(test_split), 0, 0, NONBLANK, NULL, FOR_FEWSHOT,
     "fewshot: split that `metatrain eval` uses"},
    {"task", "val_split", KEY_STRING, FIELD(val_split), 0, 0, 0, NULL, FOR_FEWSHOT,
     "fewshot: split of a sweep's meta-validation (empty: test_split)"},
    {"task", "rotations", KEY_INT, FIELD(rotations), 0, 1, 0, NULL, FOR_FEWSHOT,
     "fewshot: 1 adds every class rotated by 90/180/270 degrees as 3 new classes"},
    {"task", "amp_min", KEY_FLOAT, FIELD(amp_min), 0, MAX_SINE, 0, NULL, FOR_SINUSOID,
     "sinusoid: amplitudes A ~ U[amp_min, amp_max]"},
    {"task", "amp_max", KEY_FLOAT, FIELD(amp_max), 0, MAX_SINE, 0, NULL, FOR_SINUSOID,
     "sinusoid: the largest amplitude (at least amp_min)"},
    {"task", "phase_min", KEY_FLOAT, FIELD(phase_min), -MAX_SINE, MAX_SINE, 0, NULL, FOR_SINUSOID,
     "sinusoid: phases ~ U[phase_min, phase_max] (radians)"},
    {"task", "phase_max", KEY_FLOAT, FIELD(phase_max), -MAX_SINE, MAX_SINE, 0, NULL, FOR_SINUSOID,
     "sinusoid: the largest phase (at least phase_min; default pi)"},
    {"task", "x_min", KEY_FLOAT, FIELD(x_min), -MAX_SINE, MAX_SINE, 0, NULL, FOR_SINUSOID,
     "sinusoid: inputs x ~ U[x_min, x_max]"},
    {"task", "x_max", KEY_FLOAT, FIELD(x_max), -MAX_SINE, MAX_SINE, 0, NULL, FOR_SINUSOID,
     "sinusoid: the largest input (above x_min)"},
    {"augment", "crop_padding", KEY_INT, FIELD(crop_padding), 0, 64, 0, NULL, FOR_FEWSHOT,
     "fewshot: shift every meta-training image by up to this many pixels each way, zeros coming in "
     "(a random crop of the image padded by it)"},
    {"augment", "flip", KEY_INT, FIELD(flip), 0, 1, 0, NULL, FOR_FEWSHOT,
     "fewshot: 1 = mirror every meta-training image left-right with probability 1/2"},
    {"model", "arch", KEY_CHOICE, FIELD(arch), 0, 0, 0, "mlp|conv4|resnet12", FOR_ALL,
     "mlp (sinusoid; fc1, fc2, head) | conv4 (fewshot; conv1-4, bn1-4, head) | resnet12 (fewshot; "
     "stage1-4.conv1-3/bn1-3/shortcut/shortcut_bn, head)"},
    {"model", "hidden", KEY_INT, FIELD(hidden), 1, MAX_HIDDEN, 0, NULL, FOR_MLP,
     "mlp: width of the two hidden layers (h^2 + 4h + 1 parameters)"},
    {"model", "filters", KEY_INT, FIELD(filters), 1, 4096, 0, NULL, FOR_CONV4, "conv4: channels of every conv layer"},
    {"model", "widths", KEY_WIDTHS, FIELD(widths), 1, 4096, 0, NULL, FOR_RESNET12,
     "resnet12: channels of the four stages, four whole numbers separated by commas"},
    {"meta", "algo", KEY_CHOICE, FIELD(algo), 0, 0, 0, "maml|fomaml|reptile|anil|metasgd", FOR_ALL,
     "maml (exact second order) | fomaml (first order) | reptile | anil (the inner loop adapts only "
     "the head; exact second order) | metasgd (a learned inner learning rate per parameter, "
     "starting at inner_lr; exact second order)"},
    {"meta", "inner_steps", KEY_INT, FIELD(inner_steps), 1, 10000, 0, NULL, FOR_ALL,
     "inner-loop SGD steps per task in training"},
    {"meta", "first_order_until", KEY_LONG, FIELD(first_order_until), 0, 4294967295.0, 0, NULL, FOR_MAML,
     "maml: first-order meta-gradients (FOMAML's) for iterations 1..N, then exact second order "
     "(MAML++'s derivative-order annealing; 0: second order throughout)"},
    {"meta", "lslr", KEY_INT, FIELD(lslr), 0, 1, 0, NULL, FOR_MSL,
     "maml, fomaml: 1 = learn an inner learning rate per inner step and parameter tensor (MAML++'s "
     "LSLR; they start at inner_lr and are saved as tensor lslr)"},
    {"meta", "alpha_lr", KEY_FLOAT, FIELD(alpha_lr), 0, 1e6, LO_OPEN, NULL, FOR_RATES,
     "metasgd, lslr: Adam's rate for the learned inner learning rates, as a multiple of optim.lr"},
    {"meta", "multi_step_loss", KEY_INT, FIELD(multi_step_loss), 0, 1, 0, NULL, FOR_MSL,
     "maml, fomaml: 1 = the query loss after every inner step, weighted (MAML++); the weights "
     "anneal toward the last step over meta.msl_iterations"},
    {"meta", "msl_iterations", KEY_LONG, FIELD(msl_iterations), 1, 4294967295.0, 0, NULL, FOR_MSL,
     "maml, fomaml: iterations over which the multi-step loss weights anneal (all 1/K at first)"},
    {"meta", "inner_lr", KEY_FLOAT, FIELD(inner_lr), 0, 1e6, LO_OPEN, NULL, FOR_ALL,
     "inner-loop SGD step size (alpha)"},
    {"meta", "eval_inner_steps", KEY_INT, FIELD(eval_inner_steps), 0, 100000, 0, NULL, FOR_ALL,
     "inner-loop steps when evaluating (metatrain eval)"},
    {"meta", "meta_batch", KEY_INT, FIELD(meta_batch), 1, 1000000, 0, NULL, FOR_ALL,
     "tasks per meta-iteration, split over the ranks"},
    {"optim", "lr", KEY_FLOAT, FIELD(lr), 0, 1e6, LO_OPEN, NULL, FOR_ALL, "Adam learning rate of the meta-parameters"},
    {"optim", "beta1", KEY_FLOAT, FIELD(beta1), 0, 1, HI_OPEN, NULL, FOR_ALL, "Adam first-moment decay"},
    {"optim", "beta2", KEY_FLOAT, FIELD(beta2), 0, 1, HI_OPEN, NULL, FOR_ALL, "Adam second-moment decay"},
    {"optim", "eps", KEY_FLOAT, FIELD(eps), 0, 1, LO_OPEN, NULL, FOR_ALL, "Adam denominator epsilon"},
    {"checkpoint", "every", KEY_LONG, FIELD(ckpt_every), 0, 4294967295.0, 0, NULL, FOR_ALL,
     "iterations between checkpoints (0: only the final one, always written)"},
    {"checkpoint", "keep", KEY_INT, FIELD(ckpt_keep), 1, 1000000, 0, NULL, FOR_ALL,
     "checkpoints kept in run.dir; older ones are deleted"},
    {"dist", "reduce", KEY_CHOICE, FIELD(reduce), 0, 0, 0, "exact|fast", FOR_ALL,
     "exact: fixed-point sum, same bits for any rank count | fast: float allreduce"},
    {"finetune", "checkpoint", KEY_STRING, FIELD(ft_checkpoint), 0, 0, 0, NULL, FOR_ALL,
     "the meta-trained checkpoint that is fine-tuned (`metatrain finetune CKPT` sets it; a sweep that "
     "sets it fine-tunes that checkpoint at every point instead of meta-training)"},
    {"finetune", "split", KEY_STRING, FIELD(ft_split), 0, 0, 0, NULL, FOR_ALL,
     "the dataset split fine-tuned on and evaluated (empty: the checkpoint's task.test_split)"},
    {"finetune", "ways", KEY_INT, FIELD(ft_ways), 0, 10000, 0, NULL, FOR_ALL,
     "classes per repeat, drawn from the split (0: the checkpoint's task.ways); another number than "
     "the checkpoint's re-initialises the head"},
    {"finetune", "shots", KEY_INT, FIELD(ft_shots), 0, 1000000, 0, NULL, FOR_ALL,
     "training images per class (0: all but the held-out ones)"},
    {"finetune", "query", KEY_INT, FIELD(ft_query), 0, 1000000, 0, NULL, FOR_ALL,
     "held-out images per class that measure accuracy (0: all the rest, or 1/5 of each class "
     "with shots = 0)"},
    {"finetune", "steps", KEY_LONG, FIELD(ft_steps), 0, 1000000000, 0, NULL, FOR_ALL,
     "optimizer steps per repeat (0: evaluate the checkpoint as it is)"},
    {"finetune", "batch", KEY_INT, FIELD(ft_batch), 1, 1000000, 0, NULL, FOR_ALL,
     "images per step, drawn from the training images (all of them when fewer); held-out images "
     "are classified in batches of at most this many (batchnorm uses batch statistics)"},
    {"finetune", "optim", KEY_CHOICE, FIELD(ft_optim), 0, 0, 0, "adam|sgd", FOR_ALL,
     "adam (Adam with optim.beta1, beta2, eps) | sgd (plain gradient descent)"},
    {"finetune", "lr", KEY_FLOAT, FIELD(ft_lr), 0, 1e6, LO_OPEN, NULL, FOR_ALL, "fine-tuning learning rate"},
    {"finetune", "freeze", KEY_STRING, FIELD(ft_freeze), 0, 0, 0, NULL, FOR_ALL,
     "layers kept as they are, separated by commas or + (conv1, bn1, ..., head; stage1.conv1, ... or "
     "a whole stage1), body (every layer but the head), or none"},
    {"finetune", "repeats", KEY_INT, FIELD(ft_repeats), 1, 1000000, 0, NULL, FOR_ALL,
     "independent draws of classes and images, each fine-tuned from the checkpoint; accuracy is "
     "their mean and 95% CI"},
};

#define N_KEYS ((int)(sizeof keys / sizeof keys[0]))

void mt_config_defaults(mt_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->run_dir, sizeof c->run_dir, "runs/sinusoid_maml");
    c->seed = 1;
    c->iterations = 20000;
    c->log_every = 100;
    snprintf(c->family, sizeof c->family, "sinusoid");
    c->shots = 10;
    c->query = 10;
    c->ways = 5;
    snprintf(c->train_split, sizeof c->train_split, "train");
    snprintf(c->test_split, sizeof c->test_split, "test");
    c->amp_min = MT_SINE_AMP_MIN;
    c->amp_max = MT_SINE_AMP_MAX;
    c->phase_min = MT_SINE_PHASE_MIN;
    c->phase_max = MT_SINE_PHASE_MAX;
    c->x_min = MT_SINE_X_MIN;
    c->x_max = MT_SINE_X_MAX;
    snprintf(c->arch, sizeof c->arch, "mlp");
    c->hidden = 40;
    c->filters = 64;
    memcpy(c->widths, (int[4]){64, 160, 320, 640}, sizeof c->widths);
    snprintf(c->algo, sizeof c->algo, "maml");
    c->inner_steps = 1;
    c->msl_iterations = 1000;
    c->alpha_lr = 1.0f;
    c->inner_lr = 0.01f;
    c->eval_inner_steps = 10;
    c->meta_batch = 25;
    c->lr = 1e-3f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->ckpt_every = 0;
    c->ckpt_keep = 3;
    snprintf(c->reduce, sizeof c->reduce, "exact");
    c->ft_steps = 100;
    c->ft_batch = 64;
    c->ft_repeats = 10;
    snprintf(c->ft_optim, sizeof c->ft_optim, "adam");
    c->ft_lr = 1e-3f;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const key_spec *find_key(const char *section, const char *name, int *section_known)
{
    *section_known = 0;
    for (int i = 0; i < N_KEYS; i++) {
        if (strcmp(keys[i].section, section) != 0) continue;
        *section_known = 1;
        if (strcmp(keys[i].name, name) == 0) return &keys[i];
    }
    return NULL;
}

/* Comma-separated names of the keys of a section (for "did you mean" messages). */
static void section_keys(const char *section, char *out, size_t len)
{
    out[0] = '\0';
    for (int i = 0; i < N_KEYS; i++) {
        if (strcmp(keys[i].section, section) != 0) continue;
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s", used ? ", " : "", keys[i].name);
    }
}

static void section_list(char *out, size_t len)
{
    out[0] = '\0';
    for (int i = 0; i < N_KEYS; i++) {
        if (i > 0 && strcmp(keys[i].section, keys[i - 1].section) == 0) continue;
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s[%s]", used ? " " : "", keys[i].section);
    }
}

static int choice_ok(const char *choices, const char *value)
{
    size_t n = strlen(value);
    for (const char *p = choices; *p;) {
        const char *end = strchr(p, '|');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0) return 1;
        p += len + (end ? 1 : 0);
    }
    return 0;
}

/* "[lo, hi]" with the key's open and closed ends. */
static void range_text(const key_spec *k, char *out, size_t len)
{
    if (k->type == KEY_FLOAT)
        snprintf(out, len, "%s%g, %g%s", k->flags & LO_OPEN ? "(" : "[", k->lo, k->hi, k->flags & HI_OPEN ? ")" : "]");
    else snprintf(out, len, "[%.0f, %.0f]", k->lo, k->hi);
}

static int is_blank(int ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v'; }

/* 1 iff s is an optional sign (only '+' when unsigned) followed by decimal digits only: strtoll
 * and strtoull also skip leading blanks and strtoull wraps "-1" to 2^64 - 1. */
static int integer_syntax(const char *s, int is_unsigned)
{
    if (*s == '+' || (*s == '-' && !is_unsigned)) s++;
    if (*s == '\0') return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

/* Stores value into the field of k. Returns 0, or -1 with a message (no origin) in err. */
static int assign(mt_config *c, const key_spec *k, const char *value, char *err, size_t errlen)
{
    char *field = (char *)c + k->offset;
    char *end = NULL, range[64];
    if (value[0] == '\0' && k->type != KEY_STRING) {
        set_err(err, errlen, "[%s] %s has no value", k->section, k->name);
        return -1;
    }
    range_text(k, range, sizeof range);
    switch (k->type) {
    case KEY_STRING:
    case KEY_CHOICE: {
        if (strlen(value) >= k->size) {
            set_err(err, errlen, "[%s] %s is longer than %zu characters", k->section, k->name, k->size - 1);
            return -1;
        }
        int blank = 1;
        for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
            if (*p < 0x20 || *p == 0x7f) { /* a newline would end the line in config.ini */
                set_err(err, errlen, "[%s] %s: values cannot contain control characters (newline, tab, ...)",
                        k->section, k->name);
                return -1;
            }
            if (*p != ' ') blank = 0;
        }
        if (blank && (k->flags & NONBLANK)) {
            set_err(err, errlen, "[%s] %s is empty (or only blanks): it needs a value", k->section, k->name);
            return -1;
        }
        if (strpbrk(value, ";#")) { /* INI comment characters: the value would not read back */
            set_err(err, errlen, "[%s] %s = %s: values cannot contain ';' or '#'", k->section, k->name, value);
            return -1;
        }
        if (k->type == KEY_CHOICE && !choice_ok(k->choices, value)) {
            set_err(err, errlen, "[%s] %s = %s is not one of: %s", k->section, k->name, value, k->choices);
            return -1;
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    }
    case KEY_INT:
    case KEY_LONG:
    case KEY_U64: {
        errno = 0;
        if (!integer_syntax(value, k->type == KEY_U64)) goto not_integer;
        if (k->type == KEY_U64) {
            unsigned long long u = strtoull(value, &end, 10);
            if (errno || *end) goto not_integer;
            *(uint64_t *)field = (uint64_t)u;
            return 0;
        }
        long long v = strtoll(value, &end, 10);
        if (errno == ERANGE || *end || end == value) goto not_integer;
        if ((double)v < k->lo || (double)v > k->hi) {
            set_err(err, errlen, "[%s] %s = %s is out of range %s", k->section, k->name, value, range);
            return -1;
        }
        if (k->type == KEY_INT) *(int *)field = (int)v;
        else *(long *)field = (long)v;
        return 0;
    not_integer:
        set_err(err, errlen, "[%s] %s = %s is not a whole number", k->section, k->name, value);
        return -1;
    }
    case KEY_FLOAT: {
        errno = 0;
        double v = strtod(value, &end);
        if (errno == ERANGE && *end == '\0' && end != value && fabs(v) < 1.0) { /* below DBL_MIN */
            if (!signbit(v)) goto tiny;
            set_err(err, errlen, "[%s] %s = %s is out of range %s", k->section, k->name, value, range);
            return -1;
        }
        if (errno == ERANGE || *end || end == value || !isfinite(v) || is_blank((unsigned char)value[0])) {
            set_err(err, errlen, "[%s] %s = %s is not a finite number", k->section, k->name, value);
            return -1;
        }
        /* What is stored is a float: the range holds for it, not for the double. */
        const float f = (float)v;
        if (v > 0.0 && !isnormal(f)) goto tiny; /* subnormal, or rounded to 0 */
        const int below = k->flags & LO_OPEN ? !(v > k->lo && f > k->lo) : !(v >= k->lo && f >= k->lo);
        const int above = k->flags & HI_OPEN ? !(v < k->hi && f < k->hi) : !(v <= k->hi && f <= k->hi);
        if (below || above || !isfinite(f)) {
            if ((float)v != v && (below ? v >= k->lo : v <= k->hi) && isfinite(f))
                set_err(err, errlen, "[%s] %s = %s is out of range %s in single precision (it is stored as %.9g)",
                        k->section, k->name, value, range, (double)f);
            else set_err(err, errlen, "[%s] %s = %s is out of range %s", k->section, k->name, value, range);
            return -1;
        }
        if (f != 0.0f && !isnormal(f)) goto tiny; /* a negative subnormal, where lo allows one */
        *(float *)field = f == 0.0f ? 0.0f : f; /* -0 is stored as 0 */
        return 0;
    tiny:
        set_err(err, errlen,
                "[%s] %s = %s is below the smallest normal float (%.9g), so it cannot be used in single "
                "precision; the range is %s",
                k->section, k->name, value, (double)FLT_MIN, range);
        return -1;
    }
    case KEY_WIDTHS: {
        /* Four whole numbers in range, separated by commas (blanks around them allowed). */
        int w[4], n = 0;
        const char *p = value;
        for (;;) {
            char *stop;
            while (is_blank((unsigned char)*p)) p++;
            if (n == 4 || !(*p >= '0' && *p <= '9')) {
                n = -1; /* a fifth number, or a comma not followed by a number */
                break;
            }
            errno = 0;
            long v = strtol(p, &stop, 10);
            if (errno == ERANGE || v < k->lo || v > k->hi) {
                set_err(err, errlen, "[%s] %s = %s: every width must be in %s", k->section, k->name, value, range);
                return -1;
            }
            w[n++] = (int)v;
            for (p = stop; is_blank((unsigned char)*p); p++) {}
            if (*p != ',') break;
            p++;
        }
        if (n != 4 || *p != '\0') {
            set_err(err, errlen, "[%s] %s = %s is not four whole numbers separated by commas (e.g. 64,160,320,640)",
                    k->section, k->name, value);
            return -1;
        }
        memcpy(field, w, sizeof w);
        return 0;
    }
    }
    return -1;
}

/* Looks up section/name and assigns; message without origin. */
static int assign_named(mt_config *c, const char *section, const char *name, const char *value, char *err,
                        size_t errlen)
{
    int section_known;
    const key_spec *k = find_key(section, name, &section_known);
    if (k) return assign(c, k, value, err, errlen);
    char list[512];
    if (section[0] == '\0') {
        set_err(err, errlen, "key '%s' is outside any [section]", name);
    } else if (!section_known) {
        section_list(list, sizeof list);
        set_err(err, errlen, "unknown section [%s] (sections: %s)", section, list);
    } else {
        section_keys(section, list, sizeof list);
        set_err(err, errlen, "unknown key '%s' in [%s] (keys: %s)", name, section, list);
    }
    return -1;
}

/* ---- INI parsing through libinih, with line numbers ------------------------------------ */

typedef struct {
    mt_config *config;
    mt_ini_input in;
    int err_line; /* first line with an error found by the handler, 0 if none */
    char err[1024];
    int seen_line[N_KEYS]; /* line where each key was set, for duplicates */
} parse_state;

/* libinih reports a section only with its first key; a header of an unknown section
 * followed by no key (say, all commented out) would pass unnoticed, so the reader checks
 * every "[name]" line itself. */
static void check_section_header(void *ctx, const char *line)
{
    parse_state *ps = ctx;
    while (*line == ' ' || *line == '\t') line++;
    if (*line != '[' || ps->err_line) return;
    const char *end = strchr(line, ']');
    if (!end) return; /* libinih reports the syntax error */
    char name[64];
    size_t len = (size_t)(end - line - 1);
    if (len >= sizeof name) len = sizeof name - 1;
    memcpy(name, line + 1, len);
    name[len] = '\0';
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].section, name) == 0) return;
    char list[512];
    section_list(list, sizeof list);
    if (strcmp(name, "sweep") == 0)
        snprintf(ps->err, sizeof ps->err, "[sweep] is read by `metatrain sweep CONFIG`, which trains every point "
                                          "of it; this command runs one configuration");
    else snprintf(ps->err, sizeof ps->err, "unknown section [%s] (sections: %s)", name, list);
    ps->err_line = ps->in.line;
}

/* fgets over a string that counts the lines it starts. */
static char *string_reader(char *str, int num, void *stream)
{
    mt_ini_input *in = stream;
    if (*in->text == '\0' || num < 2) return NULL;
    const int starts_line = in->at_line_start;
    if (starts_line) in->line++;
    int i = 0;
    while (i < num - 1 && in->text[0] != '\0') {
        char ch = *in->text++;
        str[i++] = ch;
        if (ch == '\n') break;
    }
    str[i] = '\0';
    in->at_line_start = i > 0 && str[i - 1] == '\n';
    if (starts_line && in->on_line) in->on_line(in->ctx, str);
    return str;
}

int mt_ini_parse(const char *text, mt_ini_input *in, int (*handler)(void *, const char *, const char *, const char *),
                 void *user)
{
    ini_allow_multiline = 0;
    ini_use_stack = 0;
    ini_allow_realloc = 1;
    ini_max_line = 1 << 20;
    in->text = text;
    in->line = 0;
    in->at_line_start = 1;
    return ini_parse_stream(string_reader, in, handler, user);
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    parse_state *ps = user;
    if (ps->err_line) return 0; /* keep the first error only */
    int section_known;
    const key_spec *k = find_key(section, name, &section_known);
    if (k && ps->seen_line[k - keys]) {
        snprintf(ps->err, sizeof ps->err, "[%s] %s is given twice (first on line %d)", section, name,
                 ps->seen_line[k - keys]);
        ps->err_line = ps->in.line;
        return 0;
    }
    if (assign_named(ps->config, section, name, value, ps->err, sizeof ps->err) != 0) {
        ps->err_line = ps->in.line;
        return 0;
    }
    ps->seen_line[k - keys] = ps->in.line;
    return 1;
}

int mt_config_parse(mt_config *c, const char *text, const char *origin, char *err, size_t errlen)
{
    parse_state *ps = mt_calloc(1, sizeof *ps);
    ps->config = c;
    ps->in.on_line = check_section_header;
    ps->in.ctx = ps;
    int ret = mt_ini_parse(text, &ps->in, handler, ps);
    int status = 0;
    if (ret < 0) {
        set_err(err, errlen, "%s: out of memory while parsing", origin);
        status = -1;
    } else if (ret > 0 && (ps->err_line == 0 || ret < ps->err_line)) {
        set_err(err, errlen, "%s:%d: syntax error: expected '[section]' or 'key = value'", origin, ret);
        status = -1;
    } else if (ps->err_line) {
        set_err(err, errlen, "%s:%d: %s", origin, ps->err_line, ps->err);
        status = -1;
    }
    free(ps);
    return status;
}

/* Drops leading and trailing blanks of s in place; returns the first non-blank character. */
static char *trim(char *s)
{
    while (is_blank((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && is_blank((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

int mt_config_set(mt_config *c, const char *assignment, char *err, size_t errlen)
{
    char buf[MT_PATH_LEN + 128], msg[512];
    const char *eq = strchr(assignment, '=');
    const char *dot = strchr(assignment, '.');
    if (!eq || !dot || dot > eq || strlen(assignment) >= sizeof buf) {
        set_err(err, errlen, "--set %s: expected section.key=value", assignment);
        return -1;
    }
    memcpy(buf, assignment, strlen(assignment) + 1);
    buf[dot - assignment] = '\0';
    buf[eq - assignment] = '\0';
    /* Blanks around the section, key and value are dropped, as libinih drops them in a file:
     * --set "run.seed= -1" is the file line "seed = -1" (rejected), never a wrapped 2^64 - 1. */
    const char *section = trim(buf), *name = trim(buf + (dot - assignment) + 1),
               *value = trim(buf + (eq - assignment) + 1);
    if (assign_named(c, section, name, value, msg, sizeof msg) != 0) {
        set_err(err, errlen, "--set %s: %s", assignment, msg);
        return -1;
    }
    return 0;
}

/* 1 iff key k is used by the configuration c (its family and model). */
static int applies(const mt_config *c, const key_spec *k)
{
    switch (k->scope) {
    case FOR_ALL: return 1;
    case FOR_SINUSOID: return strcmp(c->family, "sinusoid") == 0;
    case FOR_FEWSHOT: return strcmp(c->family, "fewshot") == 0;
    case FOR_MLP: return strcmp(c->arch, "mlp") == 0;
    case FOR_CONV4: return strcmp(c->arch, "conv4") == 0;
    case FOR_RESNET12: return strcmp(c->arch, "resnet12") == 0;
    case FOR_MAML: return strcmp(c->algo, "maml") == 0;
    case FOR_MSL: return strcmp(c->algo, "maml") == 0 || strcmp(c->algo, "fomaml") == 0;
    case FOR_RATES: return strcmp(c->algo, "metasgd") == 0 || c->lslr;
    }
    return 1;
}

/* Why k does not apply to c: "[task] family = sinusoid (it is for fewshot only)". */
static void scope_text(const mt_config *c, const key_spec *k, char *out, size_t len)
{
    if (k->scope == FOR_RATES)
        snprintf(out, len, "[meta] algo = %s without lslr (it is for learned rates: metasgd, or lslr = 1)", c->algo);
    else if (k->scope == FOR_MAML || k->scope == FOR_MSL)
        snprintf(out, len, "[meta] algo = %s (it is for maml%s only)", c->algo, k->scope == FOR_MSL ? " and fomaml" : "");
    else if (k->scope == FOR_FEWSHOT || k->scope == FOR_SINUSOID)
        snprintf(out, len, "[task] family = %s (it is for %s only)", c->family,
                 k->scope == FOR_FEWSHOT ? "fewshot" : "sinusoid");
    else
        snprintf(out, len, "[model] arch = %s (it is for %s only)", c->arch,
                 k->scope == FOR_MLP ? "mlp" : k->scope == FOR_CONV4 ? "conv4" : "resnet12");
}

static void format_value(const mt_config *c, const key_spec *k, char *out, size_t len);

/* Parameters of the MLP 1 -> h -> h -> 1: fc1 h + h, fc2 h*h + h, head h + 1. */
static uint64_t mlp_params(int hidden)
{
    const uint64_t h = (uint64_t)hidden;
    return h * h + 4 * h + 1;
}

/* The fewest parameters Conv4 can have with these filters and ways: one input channel, and
 * images that pool down to 1x1 (the dataset's shape adds to the first conv and the head;
 * mt_config_check_size checks the real count). */
static uint64_t conv4_min_params(int filters, int ways)
{
    const uint64_t f = (uint64_t)filters, w = (uint64_t)ways;
    return (9 * f + f) + 3 * (9 * f * f + f) + 4 * (2 * f) + (f * w + w);
}

/* The fewest parameters ResNet-12 can have with these widths and ways (one input channel;
 * the dataset's channels add to the first stage's convs). */
static uint64_t resnet12_min_params(const int widths[4], int ways)
{
    uint64_t P = 0, in = 1;
    for (int s = 0; s < 4; s++) {
        const uint64_t w = (uint64_t)widths[s];
        P += 9 * w * in + 2 * 9 * w * w + w * in + 4 * 2 * w; /* conv1-3, shortcut, 4 batchnorms */
        in = w;
    }
    return P + in * (uint64_t)ways + (uint64_t)ways;
}

int mt_config_check(const mt_config *c, char *err, size_t errlen)
{
    const int fewshot = strcmp(c->family, "fewshot") == 0;
    if (fewshot && strcmp(c->arch, "mlp") == 0) {
        set_err(err, errlen, "[task] family = fewshot needs [model] arch = conv4 or resnet12 (mlp is for sinusoid)");
        return -1;
    }
    if (!fewshot && strcmp(c->arch, "mlp") != 0) {
        set_err(err, errlen, "[task] family = %s needs [model] arch = mlp (%s is for fewshot)", c->family, c->arch);
        return -1;
    }
    if (fewshot && c->dataset[0] == '\0') {
        set_err(err, errlen, "[task] family = fewshot needs [task] dataset (an HDF5 file from `metatrain data import`)");
        return -1;
    }
    /* The parser refuses these; a config built in code must not reach the file system with them. */
    if (c->run_dir[0] == '\0' || strspn(c->run_dir, " ") == strlen(c->run_dir) || strpbrk(c->run_dir, "\n\r")) {
        set_err(err, errlen, "[run] dir is empty, blank or holds a line break: it must name a directory");
        return -1;
    }
    /* A key the family or model does not use must keep its default: a different value would be
     * silently ignored. (At its default it changes nothing: files that list every key, such as
     * a run's resolved config.ini or configs/sinusoid_maml.ini, stay valid.) */
    mt_config d;
    mt_config_defaults(&d);
    for (int i = 0; i < N_KEYS; i++) {
        if (applies(c, &keys[i])) continue;
        char value[MT_PATH_LEN], def[MT_PATH_LEN], why[128];
        format_value(c, &keys[i], value, sizeof value);
        format_value(&d, &keys[i], def, sizeof def);
        if (strcmp(value, def) == 0) continue;
        scope_text(c, &keys[i], why, sizeof why);
        set_err(err, errlen, "[%s] %s = %s does not apply to %s; remove it", keys[i].section, keys[i].name, value,
                why);
        return -1;
    }
    const int resnet = strcmp(c->arch, "resnet12") == 0;
    const uint64_t P = resnet    ? resnet12_min_params(c->widths, c->ways)
                       : fewshot ? conv4_min_params(c->filters, c->ways)
                                 : mlp_params(c->hidden);
    if (P > MT_CONFIG_MAX_PARAMS) {
        char what[96];
        if (resnet)
            snprintf(what, sizeof what, "[model] widths = %d,%d,%d,%d with [task] ways = %d", c->widths[0],
                     c->widths[1], c->widths[2], c->widths[3], c->ways);
        else if (fewshot) snprintf(what, sizeof what, "[model] filters = %d with [task] ways = %d", c->filters, c->ways);
        else snprintf(what, sizeof what, "[model] hidden = %d", c->hidden);
        set_err(err, errlen, "%s: the model would have %s%llu parameters, more than %llu (the most one MPI call moves)",
                what, fewshot ? "at least " : "", (unsigned long long)P, (unsigned long long)MT_CONFIG_MAX_PARAMS);
        return -1;
    }
    /* The sinusoid ranges, each key within its bounds already: min <= max, and a non-empty
     * input range (x_min = x_max would give every support and query point the same x). */
    if (!fewshot) {
        static const struct {
            const char *lo, *hi;
            size_t lo_off, hi_off;
            int strict;
        } ranges[] = {{"amp_min", "amp_max", offsetof(mt_config, amp_min), offsetof(mt_config, amp_max), 0},
                      {"phase_min", "phase_max", offsetof(mt_config, phase_min), offsetof(mt_config, phase_max), 0},
                      {"x_min", "x_max", offsetof(mt_config, x_min), offsetof(mt_config, x_max), 1}};
        for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
            const float lo = *(const float *)((const char *)c + ranges[i].lo_off);
            const float hi = *(const float *)((const char *)c + ranges[i].hi_off);
            if (ranges[i].strict ? lo < hi : lo <= hi) continue;
            set_err(err, errlen, "[task] %s = %.9g must be %s [task] %s = %.9g", ranges[i].lo, (double)lo,
                    ranges[i].strict ? "below" : "at most", ranges[i].hi, (double)hi);
            return -1;
        }
    }
    /* checkpoint.every > run.iterations is fine: the last iteration always writes one. */
    return 0;
}

int mt_config_check_set(const mt_config *c, const char *assignment, char *err, size_t errlen)
{
    char section[32], name[32];
    const char *dot = strchr(assignment, '.'), *eq = strchr(assignment, '=');
    if (!dot || !eq || dot > eq) return 0; /* mt_config_set reported it */
    size_t ls = (size_t)(dot - assignment), ln = (size_t)(eq - dot - 1);
    if (ls >= sizeof section || ln >= sizeof name) return 0; /* not a key of the table */
    memcpy(section, assignment, ls);
    section[ls] = '\0';
    memcpy(name, dot + 1, ln);
    name[ln] = '\0';
    int section_known;
    const key_spec *k = find_key(trim(section), trim(name), &section_known);
    if (!k || applies(c, k)) return 0;
    char why[128];
    scope_text(c, k, why, sizeof why);
    set_err(err, errlen, "--set %s: [%s] %s does not apply to %s", assignment, k->section, k->name, why);
    return -1;
}

/* Keys a user changes on purpose when resuming: the length of the run, its logging and
 * checkpointing, and where it lives (and the [finetune] section, which training does not
 * read). Any other change alters what the run computes. */
static const char *const resume_changeable[] = {"run.dir", "run.iterations", "run.log_every", "checkpoint.every",
                                                "checkpoint.keep"};

int mt_config_resume_may_change(const char *key)
{
    for (size_t i = 0; i < sizeof resume_changeable / sizeof resume_changeable[0]; i++)
        if (strcmp(key, resume_changeable[i]) == 0) return 1;
    return strncmp(key, "finetune.", 9) == 0;
}

/* Lists "section.key: old -> new" for the keys that differ (only those a resumed run may not
 * change when locked_only) and returns their number. */
static int diff_keys(const mt_config *old, const mt_config *new, int locked_only, char *out, size_t outlen)
{
    int n = 0;
    size_t used = 0;
    if (out && outlen) out[0] = '\0';
    for (int i = 0; i < N_KEYS; i++) {
        const key_spec *k = &keys[i];
        if (!applies(old, k) && !applies(new, k)) continue; /* used by neither run */
        char key[64], a[MT_PATH_LEN], b[MT_PATH_LEN];
        snprintf(key, sizeof key, "%s.%s", k->section, k->name);
        if (locked_only && mt_config_resume_may_change(key)) continue;
        format_value(old, k, a, sizeof a);
        format_value(new, k, b, sizeof b);
        if (strcmp(a, b) == 0) continue;
        n++;
        if (!out || used + 1 >= outlen) continue;
        int w = snprintf(out + used, outlen - used, "%s%s: %s -> %s", n > 1 ? "; " : "", key, a[0] ? a : "\"\"",
                         b[0] ? b : "\"\"");
        if (w < 0 || (size_t)w >= outlen - used) { /* truncated: end with "..." if there is room */
            used = outlen - 1;
            if (outlen >= 4) memcpy(out + outlen - 4, "...", 4);
        } else used += (size_t)w;
    }
    return n;
}

int mt_config_diff(const mt_config *old, const mt_config *new, char *out, size_t outlen)
{
    return diff_keys(old, new, 0, out, outlen);
}

int mt_config_resume_diff(const mt_config *old, const mt_config *new, char *out, size_t outlen)
{
    return diff_keys(old, new, 1, out, outlen);
}

size_t mt_config_slab_bytes(size_t P, int meta_batch, int world_size, int exact)
{
    if (meta_batch < 1 || world_size < 1) return SIZE_MAX;
    const size_t N = (size_t)world_size;
    /* θ + this rank's task gradients (exact) or one of them (fast) */
    const size_t rows = 1 + (exact ? ((size_t)meta_batch + N - 1) / N : 1);
    const size_t shard = P / N + (P % N != 0);                /* the largest shard of P */
    if (P != 0 && rows > SIZE_MAX / P) return SIZE_MAX;
    const size_t floats = rows * P;
    if (shard > (SIZE_MAX - floats) / 3) return SIZE_MAX;
    const size_t total = floats + 3 * shard;
    if (total > SIZE_MAX / sizeof(float)) return SIZE_MAX;
    return total * sizeof(float);
}

int mt_config_check_size(const mt_config *c, size_t n_params, int world_size, size_t mem_bytes, char *err,
                         size_t errlen)
{
    if (n_params > MT_CONFIG_MAX_PARAMS) {
        set_err(err, errlen, "the %s model has %zu parameters, more than %llu (the most one MPI call moves); use a "
                             "smaller %s",
                c->arch, n_params, (unsigned long long)MT_CONFIG_MAX_PARAMS,
                strcmp(c->arch, "mlp") == 0        ? "[model] hidden"
                : strcmp(c->arch, "resnet12") == 0 ? "[model] widths or images"
                                                   : "[model] filters or images");
        return -1;
    }
    const size_t need = mt_config_slab_bytes(n_params, c->meta_batch, world_size, strcmp(c->reduce, "exact") == 0);
    if (mem_bytes > 0 && need > mem_bytes) {
        set_err(err, errlen, "[meta] meta_batch = %d over %d rank%s needs %.3g GiB per rank for %zu parameters' "
                             "gradients, more than the %.3g GiB of memory available; lower meta_batch or use more "
                             "ranks",
                c->meta_batch, world_size, world_size == 1 ? "" : "s",
                need == SIZE_MAX ? INFINITY : (double)need / 1073741824.0, n_params, (double)mem_bytes / 1073741824.0);
        return -1;
    }
    return 0;
}

static void format_value(const mt_config *c, const key_spec *k, char *out, size_t len)
{
    const char *field = (const char *)c + k->offset;
    switch (k->type) {
    case KEY_STRING:
    case KEY_CHOICE: snprintf(out, len, "%s", field); break;
    case KEY_INT: snprintf(out, len, "%d", *(const int *)field); break;
    case KEY_LONG: snprintf(out, len, "%ld", *(const long *)field); break;
    case KEY_U64: snprintf(out, len, "%llu", (unsigned long long)*(const uint64_t *)field); break;
    case KEY_FLOAT: snprintf(out, len, "%.9g", (double)*(const float *)field); break; /* round-trips */
    case KEY_WIDTHS: {
        const int *w = (const int *)field;
        snprintf(out, len, "%d,%d,%d,%d", w[0], w[1], w[2], w[3]);
        break;
    }
    }
}

char *mt_config_format(const mt_config *c)
{
    size_t cap = 4096 + MT_PATH_LEN, used = 0;
    char *out = mt_malloc(cap);
    char value[MT_PATH_LEN];
    for (int i = 0; i < N_KEYS; i++) {
        if (i == 0 || strcmp(keys[i].section, keys[i - 1].section) != 0)
            used += (size_t)snprintf(out + used, cap - used, "%s[%s]\n", i ? "\n" : "", keys[i].section);
        format_value(c, &keys[i], value, sizeof value);
        used += (size_t)snprintf(out + used, cap - used, "%s = %s\n", keys[i].name, value);
    }
    return out;
}

void mt_config_print_keys(FILE *out)
{
    mt_config d;
    char value[MT_PATH_LEN];
    mt_config_defaults(&d);
    for (int i = 0; i < N_KEYS; i++) {
        if (i == 0 || strcmp(keys[i].section, keys[i - 1].section) != 0) fprintf(out, "  [%s]\n", keys[i].section);
        format_value(&d, &keys[i], value, sizeof value);
        fprintf(out, "    %-17s %-20s %s\n", keys[i].name, value, keys[i].doc);
    }
}

int mt_config_key_kind(const char *section, const char *name)
{
    int section_known;
    const key_spec *k = find_key(section, name, &section_known);
    if (!k) return 0;
    switch (k->type) {
    case KEY_STRING:
    case KEY_CHOICE: return MT_KEY_KIND_STRING;
    case KEY_WIDTHS: return MT_KEY_KIND_STRING;
    case KEY_INT:
    case KEY_LONG:
    case KEY_U64: return MT_KEY_KIND_INT;
    case KEY_FLOAT: return MT_KEY_KIND_FLOAT;
    }
    return 0;
}
