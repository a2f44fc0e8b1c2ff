/*
 * eval.c — `metatrain eval CKPT`: few-shot evaluation of a meta-trained checkpoint.
 *
 * Draws --tasks fresh tasks from the evaluation stream (never seen in training), adapts θ
 * on each task's support set for meta.eval_inner_steps SGD steps, and reports the query
 * loss before and after adaptation: mean and 95% confidence interval (1.96·s/√n).
 * Tasks are split over the ranks; each task's result lands in its own slot of a vector
 * that is summed over the ranks, so the statistics are the same for any rank count.
 */
#define _POSIX_C_SOURCE 200809L
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "common.h"
#include "eval.h"
#include "family.h"
#include "meta.h"
#include "model.h"
#include "tasks.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: metatrain eval CKPT [--tasks N] [--inner-steps K] [--seed S] [--data FILE]\n"
            "                           [--set section.key=value]... [--json]\n"
            "\n"
            "Evaluates a checkpoint on fresh tasks of the family it was trained on: adapts on each\n"
            "task's support set, then measures the query set: mean squared error (sinusoid) or\n"
            "accuracy (fewshot, on the classes of task.test_split, never seen in training).\n"
            "  mpirun -np 2 metatrain eval runs/sinusoid_maml/ckpt-00020000.h5 --tasks 1000\n"
            "  metatrain eval CKPT --set task.amp_min=5 --set task.amp_max=10   (out of distribution)\n"
            "\n"
            "  --tasks N        evaluation tasks (default 600)\n"
            "  --inner-steps K  adaptation steps (default: meta.eval_inner_steps of the run; 0 = none)\n"
            "  --seed S         seed of the evaluation tasks (default: the run's seed; evaluation\n"
            "                   tasks come from their own stream, never from the training tasks)\n"
            "  --data FILE      fewshot: the dataset file, if it moved since training (default:\n"
            "                   task.dataset of the run)\n"
            "  --set KEY=VALUE  changes a key of the checkpoint's configuration for this evaluation\n"
            "                   (repeatable): the task distribution (task.* but task.family and\n"
            "                   task.ways), meta.eval_inner_steps, meta.inner_lr, run.seed. Keys that\n"
            "                   change the model (model.*, task.family, task.ways) or that evaluation\n"
            "                   does not use are refused. The output lists what changed.\n"
            "  --json           print one JSON object: family, tasks, metric, inner_steps, mean,\n"
            "                   ci95, mean_before, ci95_before, step, checkpoint (and overrides,\n"
            "                   \"key: old -> new; ...\", when --set is given)\n"
            "  -h, --help       this text\n"
            "\n"
            "Exit status: 0 success, 1 runtime failure, 2 bad input (unreadable checkpoint, a --set\n"
            "that changes the model or is not used by evaluation).\n");
}

typedef struct {
    const char *ckpt, *data;
    long tasks, inner_steps, seed;
    int json, seed_given;
    char *sets[MT_MAX_SETS]; /* --set assignments, in order */
    int n_sets;
} eval_args;

static int parse_args(const mt_dist *d, int argc, char **argv, eval_args *a)
{
    memset(a, 0, sizeof *a);
    a->tasks = 600;
    a->inner_steps = -1;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *v = NULL;
        long *target = NULL, lo = 0, hi = 0;
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            if (d->rank == 0) usage(stdout);
            return MT_EXIT_OK;
        } else if (strcmp(arg, "--json") == 0) {
            a->json = 1;
            continue;
        } else if (mt_cli_option(argc, argv, &i, "--set", &v)) {
            if (mt_cli_add_set(d, a->sets, &a->n_sets, v) != 0) return MT_EXIT_USAGE;
            continue;
        } else if (strcmp(arg, "--data") == 0) {
            if (i + 1 >= argc) {
                mt_cli_error(d, "--data needs a dataset file");
                return MT_EXIT_USAGE;
            }
            a->data = argv[++i];
            continue;
        } else if (strcmp(arg, "--tasks") == 0) {
            target = &a->tasks, lo = 2, hi = 100000000;
        } else if (strcmp(arg, "--inner-steps") == 0) {
            target = &a->inner_steps, lo = 0, hi = 1000000;
        } else if (strcmp(arg, "--seed") == 0) {
            target = &a->seed, lo = 0, hi = 0x7fffffffffffffffL;
            a->seed_given = 1;
        } else if (arg[0] == '-') {
            mt_cli_error(d, "unknown option '%s' (see metatrain eval --help)", arg);
            return MT_EXIT_USAGE;
        } else if (!a->ckpt) {
            a->ckpt = arg;
            continue;
        } else {
            mt_cli_error(d, "more than one checkpoint given ('%s' and '%s')", a->ckpt, arg);
            return MT_EXIT_USAGE;
        }
        if (i + 1 >= argc || mt_parse_long(argv[i + 1], lo, hi, target) != 0) {
            mt_cli_error(d, "%s takes a whole number from %ld to %ld", arg, lo, hi);
            return MT_EXIT_USAGE;
        }
        i++;
    }
    if (!a->ckpt) {
        mt_cli_error(d, "eval needs a checkpoint (see metatrain eval --help)");
        return MT_EXIT_USAGE;
    }
    return -1;
}

/* Keys `eval --set` may change: what tasks are drawn and how θ adapts to them. The model's
 * shape (model.*, task.family, task.ways) is the checkpoint's; the other keys (training's
 * length, optimiser, algorithm, class splits of training) are not used by evaluation, and a
 * --set of one would silently change nothing. */
static const char *const eval_changeable[] = {
    "run.seed",       "meta.eval_inner_steps", "meta.inner_lr", "task.shots",     "task.query",
    "task.rotations", "task.test_split",       "task.dataset",  "task.amp_min",   "task.amp_max",
    "task.phase_min", "task.phase_max",        "task.x_min",    "task.x_max",
};
static const char *const eval_model_keys[] = {"model.", "task.family", "task.ways"};

/* "section.key" of an assignment mt_config_set accepted, without the blanks around either. */
static void assignment_key(const char *assignment, char *out, size_t len)
{
    const char *eq = strchr(assignment, '=');
    size_t o = 0;
    for (const char *p = assignment; p < eq && o + 1 < len; p++)
        if (*p != ' ' && *p != '\t') out[o++] = *p;
    out[o] = '\0';
}

/* Applies the --set overrides to c (the checkpoint's configuration) and checks them; writes the
 * keys that changed ("key: old -> new; ...") into changed. Every rank computes the same.
 * Returns 0, or MT_EXIT_USAGE after printing why (on rank 0). */
static int apply_overrides(const mt_dist *d, const eval_args *a, mt_config *c, char *changed, size_t len)
{
    char err[MT_ERR_LEN] = "";
    const mt_config orig = *c;
    for (int i = 0; i < a->n_sets; i++) {
        if (mt_config_set(c, a->sets[i], err, sizeof err) != 0) {
            mt_cli_error(d, "%s", err);
            return MT_EXIT_USAGE;
        }
        char key[96];
        assignment_key(a->sets[i], key, sizeof key);
        int ok = 0;
        for (size_t k = 0; k < sizeof eval_changeable / sizeof eval_changeable[0]; k++)
            ok |= strcmp(key, eval_changeable[k]) == 0;
        if (ok) continue;
        int model = 0;
        for (size_t k = 0; k < sizeof eval_model_keys / sizeof eval_model_keys[0]; k++)
            model |= strncmp(key, eval_model_keys[k], strlen(eval_model_keys[k])) == 0;
        char list[512] = "";
        for (size_t k = 0, used = 0; k < sizeof eval_changeable / sizeof eval_changeable[0]; k++)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", k ? ", " : "", eval_changeable[k]);
        if (model)
            mt_cli_error(d, "--set %s: %s would change the model, but the checkpoint holds the model it was trained "
                            "as (train a new one to change it); eval may change: %s",
                         a->sets[i], key, list);
        else mt_cli_error(d, "--set %s: evaluation does not use %s; eval may change: %s", a->sets[i], key, list);
        return MT_EXIT_USAGE;
    }
    for (int i = 0; i < a->n_sets; i++)
        if (mt_config_check_set(c, a->sets[i], err, sizeof err) != 0) {
            mt_cli_error(d, "%s", err);
            return MT_EXIT_USAGE;
        }
    if (mt_config_check(c, err, sizeof err) != 0) {
        mt_cli_error(d, "%s: with the --set overrides: %s", a->ckpt, err);
        return MT_EXIT_USAGE;
    }
    mt_config_diff(&orig, c, changed, len);
    return 0;
}

/* Prints s as a JSON string: '"' and '\\' escaped, control characters dropped. */
static void print_json_string(const char *s)
{
    putchar('"');
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\') putchar('\\');
        if ((unsigned char)*p >= 0x20) putchar(*p);
    }
    putchar('"');
}

void mt_mean_ci95(const double *x, long n, double *mean, double *ci)
{
    double s = 0.0, ss = 0.0;
    for (long i = 0; i < n; i++) s += x[i];
    *mean = s / (double)n;
    for (long i = 0; i < n; i++) ss += (x[i] - *mean) * (x[i] - *mean);
    *ci = n > 1 ? 1.96 * sqrt(ss / (double)(n - 1)) / sqrt((double)n) : 0.0;
}

/* Collective: theta adapted to `tasks` tasks of the family's stream `purpose`. results holds
 * [0, T) after adaptation and [T, 2T) before; each slot is written by one rank, then summed. */
static void evaluate(const mt_dist *d, const mt_family *family, const mt_model *model, const mt_config *cfg,
                     mt_stream purpose, const float *theta, long tasks, int inner_steps, mt_eval_result *out)
{
    memset(out, 0, sizeof *out);
    out->tasks = tasks;
    out->classify = model->loss == MT_LOSS_XENT;
    out->inner_steps = inner_steps >= 0 ? inner_steps : cfg->eval_inner_steps;
    double *results = mt_calloc(2 * (size_t)tasks, sizeof(double));
    /* Adaptation adapts what training adapted (the head only for anil). */
    mt_algo algo = MT_ALGO_MAML;
    if (mt_algo_parse(cfg->algo, &algo) != 0) assert(!"the config checked the name");
    mt_meta *meta = mt_meta_init_eval(model, algo, family->n_support, family->n_query);
    mt_task_buffer tb;
    mt_family_buffer(family, &tb);
    int lo, hi;
    mt_dist_task_range((int)tasks, d->rank, d->size, &lo, &hi);
    for (int t = lo; t < hi; t++) {
        mt_family_fill(family, &tb, purpose, 0, (uint32_t)t);
        mt_task_losses l = mt_meta_adapt_eval(meta, theta, cfg->inner_lr, out->inner_steps, &tb.task);
        results[t] = out->classify ? l.acc_post : l.post;
        results[tasks + t] = out->classify ? l.acc_pre : l.pre;
    }
    mt_dist_sum_double(d, results, 2 * (size_t)tasks);
    mt_mean_ci95(results, tasks, &out->mean, &out->ci95);
    mt_mean_ci95(results + tasks, tasks, &out->mean_before, &out->ci95_before);
    mt_task_buffer_free(&tb);
    mt_meta_free(meta);
    free(results);
}

int mt_eval_main(const mt_dist *d, int argc, char **argv)
{
    eval_args args;
    int rc = parse_args(d, argc, argv, &args);
    if (rc >= 0) return rc;

    /* Rank 0 reads and validates the checkpoint, then shares the config and θ. */
    mt_checkpoint ck = {0};
    mt_config cfg;
    if ((rc = mt_cli_read_checkpoint(d, args.ckpt, &ck, &cfg)) != 0) return rc;
    char changed[4096] = "";
    if (args.n_sets > 0 && (rc = apply_overrides(d, &args, &cfg, changed, sizeof changed)) != 0) {
        mt_checkpoint_free(&ck);
        return rc;
    }
    if (args.seed_given) cfg.seed = (uint64_t)args.seed;
    mt_model model;
    mt_family family;
    if ((rc = mt_family_open(&family, d, &cfg, cfg.test_split, args.data, &model)) != 0) {
        mt_checkpoint_free(&ck);
        return rc;
    }
    if ((rc = mt_cli_check_checkpoint_model(d, args.ckpt, &ck, &model, family.source)) != 0) {
        mt_checkpoint_free(&ck);
        mt_family_close(&family);
        return rc;
    }

    const size_t P = model.n_params;
    float *theta = mt_malloc(P * sizeof(float));
    if (d->rank == 0) memcpy(theta, ck.params, P * sizeof(float));
    mt_dist_bcast_float(d, theta, P);
    const long step = ck.step;
    mt_checkpoint_free(&ck);
    const long T = args.tasks;
    const double t0 = mt_now();
    mt_eval_result r;
    evaluate(d, &family, &model, &cfg, MT_STREAM_EVAL, theta, T, (int)args.inner_steps, &r);
    const int classify = r.classify, steps = r.inner_steps;
    const double mean = r.mean, ci = r.ci95, mean_pre = r.mean_before, ci_pre = r.ci95_before;
    if (d->rank == 0) {
        if (args.json) {
            char v[4][32]; /* JSON has no NaN: a diverged adaptation shows as null */
            mt_cli_json_number(v[0], mean), mt_cli_json_number(v[1], ci);
            mt_cli_json_number(v[2], mean_pre), mt_cli_json_number(v[3], ci_pre);
            printf("{\"family\": \"%s\", \"tasks\": %ld, \"metric\": \"%s\", \"inner_steps\": %d, \"mean\": %s, "
                   "\"ci95\": %s, \"mean_before\": %s, \"ci95_before\": %s, \"step\": %ld, \"checkpoint\": ",
                   cfg.family, T, classify ? "accuracy" : "mse", steps, v[0], v[1], v[2], v[3], step);
            print_json_string(args.ckpt);
            if (args.n_sets > 0) {
                printf(", \"overrides\": ");
                print_json_string(changed);
            }
            printf("}\n");
        } else {
            const char *what = classify ? "accuracy" : "MSE";
            const double scale = classify ? 100.0 : 1.0;
            printf("eval %s (step %ld): %ld %s tasks (%s), %d-shot, %d adaptation step%s, %.1f s\n"
                   "  query %s after adaptation:  %.4f%s +- %.4f (95%% CI)\n"
                   "  query %s before adaptation: %.4f%s +- %.4f\n",
                   args.ckpt, step, T, cfg.family, family.source, cfg.shots, steps, steps == 1 ? "" : "s",
                   mt_now() - t0, what, scale * mean, classify ? "%" : "", scale * ci, what, scale * mean_pre,
                   classify ? "%" : "", scale * ci_pre);
            if (args.n_sets > 0)
                printf("  overrides (checkpoint -> this evaluation): %s\n",
                       changed[0] ? changed : "none (every --set value equals the checkpoint's)");
            if (!isfinite(mean))
                printf("  the adaptation diverged (a loss is not finite) with %d step%s; the run trained with %d "
                       "(meta.inner_steps): try --inner-steps %d%s\n",
                       steps, steps == 1 ? "" : "s", cfg.inner_steps, cfg.inner_steps,
                       strcmp(cfg.algo, "metasgd") == 0 ? " (metasgd's rates are learned for that many)" : "");
        }
        fflush(stdout);
    }
    mt_family_close(&family);
    free(theta);
    return 0;
}

int mt_eval_theta(const mt_dist *d, const mt_config *cfg, mt_stream purpose, const float *theta, long tasks,
                  int inner_steps, mt_eval_result *out)
{
    /* Meta-validation tasks come from their own stream (and, for fewshot, from the validation
     * split when the dataset has one), never from the test tasks `metatrain eval` reports. */
    const char *split = purpose == MT_STREAM_VAL && cfg->val_split[0] ? cfg->val_split : cfg->test_split;
    mt_model model;
    mt_family family;
    int rc = mt_family_open(&family, d, cfg, split, NULL, &model);
    if (rc != 0) return rc;
    evaluate(d, &family, &model, cfg, purpose, theta, tasks, inner_steps, out);
    mt_family_close(&family);
    return 0;
}
