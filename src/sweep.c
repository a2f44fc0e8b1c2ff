/*
 * sweep.c — `metatrain sweep`: many points of a task distribution and of the hyper-parameters
 * trained side by side in one allocation (DESIGN §9).
 *
 * The world's ranks are split into groups of ranks_per_run (MPI_Comm_split); a group trains
 * one point at a time on its own communicator with the ordinary training run (src/train.h),
 * so the exact reduction, checkpoints and resume work per group unchanged, and a point's θ is
 * the same bits as the point trained alone on any number of ranks.
 *
 * World rank 0 (also the first rank of group 0) is the scheduler: group leaders ask it for
 * work and report results; it hands out points as groups become free (fast points do not
 * wait for slow ones), appends every result to the journal, rewrites sweep.csv, and decides
 * successive halving's promotions. It answers between its own iterations (the training
 * run's poll hook), so it never idles a group for long. Promotions are synchronous (a rung
 * ends when all its points are evaluated), so which points go on does not depend on timing:
 * the same sweep gives the same promotions, and a re-run redoes them from the journal.
 *
 * Waiting ranks sleep-poll (MPI_Test + 2 ms naps) instead of spinning inside a blocking MPI
 * call, so an idle group leaves its cores to the groups that train.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "common.h"
#include "finetune.h"
#include "ioutil.h"
#include "rundir.h"
#include "sweep_plan.h"
#include "sweeplog.h"
#include "train.h"

/* Forward: defined with the plan below. */
typedef struct sweep_plan sweep_plan;
static int record(const sweep_plan *p, const mt_sweep_record *r, const int *running, char *err, size_t errlen);

/* Copies src into dst[len], cut short if it does not fit. */
static void copy_text(char *dst, size_t len, const char *src)
{
    size_t n = strlen(src);
    if (n >= len) n = len - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: metatrain sweep CONFIG [--set section.key=value]... [--dry-run] [--point ID|INDEX]\n"
            "                       [--retry-failed] [--status-file PATH] [--progress MODE]\n"
            "\n"
            "Trains every point of a sweep over task distributions and hyper-parameters in one\n"
            "allocation: the ranks form groups of [sweep] ranks_per_run, each group trains one point\n"
            "at a time, and points are handed to groups as they become free.\n"
            "  mpirun -np 4 metatrain sweep configs/sweep_sinusoid.ini          # 2 groups of 2\n"
            "  metatrain sweep configs/sweep_sinusoid.ini --dry-run             # the points and the plan\n"
            "  srun --mpi=pmix metatrain sweep CONFIG --point $SLURM_ARRAY_TASK_ID   # one point per array task\n"
            "\n"
            "CONFIG is a training config plus a [sweep] section:\n"
            "  section.key = v1, v2, v3      a swept key: every listed value (method = grid)\n"
            "  section.key = uniform(a, b)   or log-uniform(a, b): drawn (method = random)\n"
            "  method = grid | random        random draws `points` points from `seed`\n"
            "                                (default: run.seed)\n"
            "  ranks_per_run = R             ranks per group (default 1); world/R groups, the\n"
            "                                remaining world%%R ranks idle\n"
            "  schedule = none | halving     halving: every point trains min_iterations, the best\n"
            "                                1/eta on meta-validation go on (resuming their own\n"
            "                                checkpoint) to min_iterations*eta, ..., up to run.iterations\n"
            "  min_iterations = M, eta = E   halving's first rung (default 100) and factor (default 3)\n"
            "  eval_tasks = T                meta-validation tasks per evaluation (default 100; 0: none)\n"
            "\n"
            "A config that sets [finetune] checkpoint = CKPT is a fine-tuning sweep: every point runs\n"
            "`metatrain finetune CKPT` with its [finetune] keys (and run.seed) instead of meta-training;\n"
            "its metric is the held-out accuracy, its iterations the optimizer steps, and the point's\n"
            "directory holds finetuned.h5. Only finetune.* keys and run.seed may be swept; no halving.\n"
            "\n"
            "  --set S.K=V      override a config key, or a [sweep] key (--set sweep.eta=2)\n"
            "  --dry-run        print the points (index and id, the name of its run directory) and\n"
            "                   the rank plan; train nothing\n"
            "  --point P        train only point P (its index from 0, or its id) on all the ranks of\n"
            "                   the job, and update its row of sweep.csv: for Slurm job arrays\n"
            "                   (schedule = none only)\n"
            "  --retry-failed   train again the points the journal records as failed (by default a\n"
            "                   re-run skips them, as it skips finished points)\n"
            "  --status-file P  rank 0 writes the exit status and a one-line reason there\n"
            "  --progress MODE  how each point's own log (run.dir/<point>/train.log) shows progress:\n"
            "                   lines (default) | none\n"
            "  -h, --help       this text\n"
            "\n"
            "Writes run.dir/<point id>/ (config.ini, metrics.jsonl, checkpoints, train.log, as\n"
            "`metatrain train` does), run.dir/sweep.journal (every result, appended as it happens)\n"
            "and run.dir/sweep.csv (one row per point: swept values, rung, iterations, train_loss,\n"
            "eval_metric, eval_mean, eval_ci95, wall_s, status done|stopped|pending|running|failed: why).\n"
            "eval_metric is mse (sinusoid, lower is better) or accuracy (fewshot, higher is better),\n"
            "on meta-validation tasks (their own stream; fewshot: task.val_split).\n"
            "\n"
            "A point that fails (a bad value, divergence) is recorded as failed; the others go on.\n"
            "Re-running the same command skips finished points and resumes the others exactly.\n"
            "SIGUSR1 (or TERM, INT, HUP) stops every group with a checkpoint; exit status 75.\n"
            "Exit status: 0 every point done, 1 some point failed (see sweep.csv), 2 bad input\n"
            "(also: run.dir in use by another sweep), 75 stopped by a signal.\n");
}

typedef struct {
    const char *config_path;
    char *sets[MT_MAX_SETS];
    int n_sets;
    int dry_run, retry_failed;
    const char *point; /* --point */
    const char *status_file;
    mt_progress_mode progress;
} sweep_args;

static int parse_args(const mt_dist *d, int argc, char **argv, sweep_args *a)
{
    memset(a, 0, sizeof *a);
    a->progress = MT_PROGRESS_LINES;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *v = NULL;
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            if (d->rank == 0) usage(stdout);
            return MT_EXIT_OK;
        } else if (strcmp(arg, "--dry-run") == 0) {
            a->dry_run = 1;
        } else if (strcmp(arg, "--retry-failed") == 0) {
            a->retry_failed = 1;
        } else if (mt_cli_option(argc, argv, &i, "--set", &v)) {
            if (mt_cli_add_set(d, a->sets, &a->n_sets, v) != 0) return MT_EXIT_USAGE;
        } else if (mt_cli_option(argc, argv, &i, "--point", &v) ||
                   mt_cli_option(argc, argv, &i, "--status-file", &v) ||
                   mt_cli_option(argc, argv, &i, "--progress", &v)) {
            if (!v || !v[0]) {
                mt_cli_error(d, "%s needs a value (see metatrain sweep --help)", arg);
                return MT_EXIT_USAGE;
            }
            if (strncmp(arg, "--point", 7) == 0) a->point = v;
            else if (strncmp(arg, "--status-file", 13) == 0) a->status_file = v;
            else if (mt_progress_parse(v, &a->progress) != 0 || a->progress == MT_PROGRESS_BAR ||
                     a->progress == MT_PROGRESS_AUTO) {
                mt_cli_error(d, "--progress takes lines or none (a point's progress goes to its train.log)");
                return MT_EXIT_USAGE;
            }
        } else if (mt_cli_config_arg(d, "sweep", arg, &a->config_path) != 0) {
            return MT_EXIT_USAGE;
        }
    }
    if (!a->config_path) {
        mt_cli_error(d, "sweep needs a CONFIG with a [sweep] section (see metatrain sweep --help)");
        return MT_EXIT_USAGE;
    }
    return -1;
}

/* ---- the plan ---------------------------------------------------------------------- */

struct sweep_plan {
    mt_config base;
    mt_sweep_spec spec;
    mt_sweep_point *pts;
    long n;
    long target[MT_SWEEP_MAX_RUNGS];
    int n_rungs;
    int classify; /* fewshot: accuracy, higher is better */
};

static void plan_free(sweep_plan *p);

/* Collective: rank 0 reads CONFIG, every rank parses it and the --set overrides the same way. */
static int load_plan(const mt_dist *d, const sweep_args *a, sweep_plan *p)
{
    char err[MT_ERR_LEN] = "";
    char *text = NULL, *base_text = NULL;
    long len = -1;
    memset(p, 0, sizeof *p);
    if (d->rank == 0) {
        len = mt_read_file_max(a->config_path, MT_CONFIG_MAX_BYTES, &text);
        if (len < 0) snprintf(err, sizeof err, "cannot read config file %s: %s", a->config_path, strerror(errno));
        else if (memchr(text, '\0', (size_t)len)) {
            snprintf(err, sizeof err, "%s is not a text file", a->config_path);
            free(text);
            text = NULL;
            len = -1;
        }
    }
    len = mt_dist_bcast_text(d, &text, len);
    if (len < 0) goto bad;
    mt_config_defaults(&p->base);
    mt_sweep_spec_init(&p->spec, p->base.seed);
    int rc = mt_sweep_parse(&p->spec, text, a->config_path, &base_text, err, sizeof err);
    free(text);
    if (rc != 0 || mt_config_parse(&p->base, base_text, a->config_path, err, sizeof err) != 0) goto bad;
    for (int i = 0; i < a->n_sets; i++) {
        int r = strncmp(a->sets[i], "sweep.", 6) == 0 ? mt_sweep_set(&p->spec, a->sets[i], err, sizeof err)
                                                      : mt_config_set(&p->base, a->sets[i], err, sizeof err);
        if (r != 0) goto bad;
    }
    for (int i = 0; i < a->n_sets; i++)
        if (strncmp(a->sets[i], "sweep.", 6) != 0 && mt_config_check_set(&p->base, a->sets[i], err, sizeof err) != 0)
            goto bad;
    if (!p->spec.seed_set) p->spec.seed = p->base.seed; /* random draws follow run.seed by default */
    if (mt_config_check(&p->base, err, sizeof err) != 0 || mt_sweep_check(&p->spec, &p->base, err, sizeof err) != 0) {
        char msg[MT_ERR_LEN];
        copy_text(msg, sizeof msg, err);
        snprintf(err, sizeof err, "%s: ", a->config_path);
        copy_text(err + strlen(err), sizeof err - strlen(err), msg);
        goto bad;
    }
    free(base_text);
    p->n = mt_sweep_count(&p->spec);
    p->pts = mt_calloc((size_t)p->n, sizeof *p->pts);
    mt_sweep_points(&p->spec, p->pts);
    p->n_rungs = mt_sweep_rungs(&p->spec, p->base.iterations, p->target);
    p->classify = strcmp(p->base.family, "fewshot") == 0 || p->base.ft_checkpoint[0];
    if (p->base.ft_checkpoint[0]) { /* a fine-tuning sweep: the model and tasks are the checkpoint's */
        for (int i = 0; i < p->spec.n_axes; i++)
            if (strncmp(p->spec.axis[i].key, "finetune.", 9) != 0 && strcmp(p->spec.axis[i].key, "run.seed") != 0) {
                snprintf(err, sizeof err, "%s: a fine-tuning sweep (finetune.checkpoint = %s) sweeps finetune.* keys and "
                         "run.seed; %s does not change what is fine-tuned", a->config_path, p->base.ft_checkpoint,
                         p->spec.axis[i].key);
                plan_free(p);
                mt_cli_error(d, "%s", err);
                return MT_EXIT_USAGE;
            }
        if (p->spec.halving) {
            mt_cli_error(d, "%s: a fine-tuning sweep has no rungs; schedule = halving is for meta-training",
                         a->config_path);
            plan_free(p);
            return MT_EXIT_USAGE;
        }
    }
    return 0;
bad:
    free(base_text);
    mt_sweep_spec_free(&p->spec);
    mt_cli_error(d, "%s", err);
    return MT_EXIT_USAGE;
}

static void plan_free(sweep_plan *p)
{
    mt_sweep_spec_free(&p->spec);
    free(p->pts);
}

/* The configuration of point i, checked. 0, or -1 with why. */
static int point_config(const sweep_plan *p, long i, mt_config *c, char *err, size_t errlen)
{
    *c = p->base;
    char msg[MT_ERR_LEN];
    if (mt_sweep_apply(&p->spec, &p->pts[i], c, msg, sizeof msg) != 0 || mt_config_check(c, msg, sizeof msg) != 0) {
        snprintf(err, errlen, "%s", msg);
        return -1;
    }
    int w = snprintf(c->run_dir, sizeof c->run_dir, "%s/%s", p->base.run_dir, p->pts[i].id);
    if (w < 0 || (size_t)w >= sizeof c->run_dir) {
        snprintf(err, errlen, "the run directory %s/%s is longer than %d characters", p->base.run_dir, p->pts[i].id,
                 MT_PATH_LEN - 1);
        return -1;
    }
    return 0;
}

static const char *metric_name(const sweep_plan *p) { return p->classify ? "accuracy" : "mse"; }

/* Rank 0: under the sweep lock, appends r (if any) to the journal and rewrites sweep.csv
 * from the whole journal (it may hold other jobs' rows: --point array tasks). running[i]
 * (optional) marks points being trained. Returns 0, or -1 with err. */
static int record(const sweep_plan *p, const mt_sweep_record *r, const int *running, char *err, size_t errlen)
{
    int fd = mt_sweep_log_lock(p->base.run_dir, err, errlen);
    mt_sweep_record *recs = NULL;
    long n = -1;
    int ok = fd >= 0 && (!r || mt_sweep_log_append(p->base.run_dir, r, err, errlen) == 0) &&
             (n = mt_sweep_log_read(p->base.run_dir, &recs, err, errlen)) >= 0 &&
             mt_sweep_csv_write(p->base.run_dir, &p->spec, p->pts, p->n, recs, n, metric_name(p), running, err,
                                errlen) == 0;
    mt_sweep_log_unlock(fd);
    free(recs);
    return ok ? 0 : -1;
}

static void print_plan(const sweep_plan *p, int world, int groups, int R)
{
    const mt_sweep_spec *s = &p->spec;
    printf("sweep: %ld point%s (%s over %d key%s), run.dir %s\n", p->n, p->n == 1 ? "" : "s",
           s->random ? "random search" : "grid", s->n_axes, s->n_axes == 1 ? "" : "s", p->base.run_dir);
    printf("  ranks: %d in %d group%s of %d", world, groups, groups == 1 ? "" : "s", R);
    if (world - groups * R > 0) printf(" (%d rank%s idle)", world - groups * R, world - groups * R == 1 ? "" : "s");
    printf("; each group trains one point at a time\n");
    if (p->base.ft_checkpoint[0]) {
        printf("  every point fine-tunes %s (%ld steps, %d repeats), then measures held-out accuracy\n",
               p->base.ft_checkpoint, p->base.ft_steps, p->base.ft_repeats);
        return;
    }
    if (s->halving) {
        printf("  schedule: successive halving, eta %d, rungs at", s->eta);
        for (int r = 0; r < p->n_rungs; r++) printf(" %ld", p->target[r]);
        printf(" iterations; %ld meta-validation tasks per evaluation\n", s->eval_tasks);
    } else {
        printf("  schedule: every point to %ld iterations", p->base.iterations);
        if (s->eval_tasks > 0) printf(", then %ld meta-validation tasks", s->eval_tasks);
        printf("\n");
    }
    printf("  metric: %s on meta-validation (%s is better)\n", metric_name(p), p->classify ? "higher" : "lower");
}

/* ---- the scheduler (world rank 0) --------------------------------------------------- */

enum { TAG_REPORT = 101, TAG_ASSIGN = 102, TAG_STOP = 103 };

/* A group leader's message to the scheduler: a request for work, with the result of its
 * last piece of work if it had one (point >= 0). */
typedef struct {
    int group, point;
    mt_sweep_record rec;
} report_msg;

typedef struct {
    int point, rung; /* the work; point < 0: none left (done) */
    int stop_sent;   /* done: a TAG_STOP message was sent to this leader before */
} assign_msg;

typedef struct {
    const sweep_plan *plan;
    MPI_Comm comm; /* the scheduler's messages (a duplicate of the world) */
    int groups, R;
    long n;
    int *rung_done;  /* [n] highest rung trained and evaluated, -1 */
    int *failed;     /* [n] */
    int *admitted;   /* [n] highest rung the point entered */
    int *busy;       /* [n] 1 while a group trains it */
    double *metric;  /* [n * n_rungs] meta-validation mean per rung */
    int cur;         /* the rung being trained */
    int all_done;
    int stop;        /* a stop was requested: hand out nothing more */
    int *waiting;    /* [groups] asked for work, not answered yet */
    int *finished;   /* [groups] told there is no more work */
    int *stop_sent;  /* [groups] */
    char err[MT_ERR_LEN]; /* first I/O failure writing the journal or the table */
    int io_failed;
    double t0;
} scheduler;

/* The point index of an id, or -1. */
static long point_index(const sweep_plan *p, const char *id)
{
    for (long i = 0; i < p->n; i++)
        if (strcmp(p->pts[i].id, id) == 0) return i;
    return -1;
}

/* Applies one record to the state (from the journal, or a group's report). */
static void sched_apply(scheduler *s, const mt_sweep_record *r)
{
    const long i = point_index(s->plan, r->id);
    if (i < 0) return; /* a point of another plan (the journal outlives edits) */
    if (strcmp(r->status, "done") == 0 && r->rung < s->plan->n_rungs) {
        if (r->rung > s->rung_done[i]) s->rung_done[i] = r->rung;
        s->metric[i * s->plan->n_rungs + r->rung] = r->eval_mean;
        s->failed[i] = 0; /* a retried point that succeeded (--retry-failed) */
    } else if (strcmp(r->status, "failed") == 0) {
        s->failed[i] = 1;
    }
}

/* Moves on to the next rung while the current one is complete (promoting its best). */
static void sched_advance(scheduler *s)
{
    const sweep_plan *p = s->plan;
    while (!s->all_done) {
        for (long i = 0; i < s->n; i++)
            if (s->admitted[i] >= s->cur && !s->failed[i] && (s->rung_done[i] < s->cur || s->busy[i])) return;
        if (s->cur == p->n_rungs - 1) {
            s->all_done = 1;
            return;
        }
        /* Promote the best 1/eta of the points that entered this rung. */
        int entered = 0;
        for (long i = 0; i < s->n; i++) entered += s->admitted[i] >= s->cur;
        double *m = mt_calloc((size_t)entered, sizeof *m);
        int *ok = mt_calloc((size_t)entered, sizeof *ok), *up = mt_calloc((size_t)entered, sizeof *up);
        long *idx = mt_calloc((size_t)entered, sizeof *idx);
        int k = 0;
        for (long i = 0; i < s->n; i++) {
            if (s->admitted[i] < s->cur) continue;
            idx[k] = i;
            m[k] = s->metric[i * p->n_rungs + s->cur];
            ok[k] = !s->failed[i] && s->rung_done[i] >= s->cur;
            k++;
        }
        mt_sweep_promote(m, ok, entered, p->spec.eta, p->classify, up);
        for (int j = 0; j < entered; j++)
            if (up[j]) s->admitted[idx[j]] = s->cur + 1;
        free(m), free(ok), free(up), free(idx);
        s->cur++;
    }
}

/* The next piece of work: 1 with *point and *rung, 0 if none is ready yet (wait), -1 if
 * there is none left (or the sweep stops). */
static int sched_next(scheduler *s, int *point, int *rung)
{
    if (s->stop) return -1;
    sched_advance(s);
    if (s->all_done) return -1;
    for (long i = 0; i < s->n; i++)
        if (s->admitted[i] >= s->cur && !s->failed[i] && s->rung_done[i] < s->cur && !s->busy[i]) {
            s->busy[i] = 1;
            *point = (int)i, *rung = s->cur;
            return 1;
        }
    return 0;
}

/* Appends r to the journal and rewrites sweep.csv, under the sweep lock. */
static void sched_write(scheduler *s, const mt_sweep_record *r)
{
    char err[MT_ERR_LEN] = "";
    if (record(s->plan, r, s->busy, err, sizeof err) != 0 && !s->io_failed) {
        s->io_failed = 1;
        snprintf(s->err, sizeof s->err, "%s", err);
        fprintf(stderr, "metatrain: error: %s; stopping the sweep\n", err);
        s->stop = 1;
    }
}

/* A group's result: recorded, shown, and the state updated. */
static void sched_result(scheduler *s, int group, const mt_sweep_record *r)
{
    const long i = point_index(s->plan, r->id);
    if (i >= 0) s->busy[i] = 0;
    sched_apply(s, r);
    if (strcmp(r->status, "stopped") == 0) s->stop = 1;
    sched_write(s, r);
    const sweep_plan *p = s->plan;
    const double scale = p->classify ? 100.0 : 1.0;
    if (strcmp(r->status, "failed") == 0)
        printf("[%6.0f s] %s: failed in rung %d (group %d): %s\n", mt_now() - s->t0, r->id, r->rung + 1, group,
               r->message);
    else if (strcmp(r->status, "stopped") == 0)
        printf("[%6.0f s] %s: stopped at iteration %ld (group %d), checkpointed\n", mt_now() - s->t0, r->id,
               r->iterations, group);
    else if (p->base.ft_checkpoint[0])
        printf("[%6.0f s] %s: %ld fine-tuning steps, train loss %.4g, held-out accuracy %.4g%% +- %.2g, %.1f s (group "
               "%d)\n", mt_now() - s->t0, r->id, r->iterations, r->train_loss, 100 * r->eval_mean, 100 * r->eval_ci95,
               r->wall_s, group);
    else {
        printf("[%6.0f s] %s: %ld iterations (rung %d of %d), train loss %.4g", mt_now() - s->t0, r->id, r->iterations,
               r->rung + 1, p->n_rungs, r->train_loss);
        if (!isnan(r->eval_mean))
            printf(", val %s %.4g%s +- %.2g", metric_name(p), scale * r->eval_mean, p->classify ? "%" : "",
                   scale * r->eval_ci95);
        printf(", %.1f s (group %d)\n", r->wall_s, group);
    }
    fflush(stdout);
}

static void sched_started(scheduler *s, int group, int point, int rung)
{
    if (s->plan->base.ft_checkpoint[0])
        printf("[%6.0f s] %s: start fine-tuning on group %d\n", mt_now() - s->t0, s->plan->pts[point].id, group);
    else
        printf("[%6.0f s] %s: start rung %d of %d (to %ld iterations) on group %d\n", mt_now() - s->t0,
               s->plan->pts[point].id, rung + 1, s->plan->n_rungs, s->plan->target[rung], group);
    fflush(stdout);
}

static void nap(void)
{
    struct timespec ts = {0, 2000000}; /* 2 ms */
    nanosleep(&ts, NULL);
}

/* Sends the answer to group g's leader (g > 0). */
static void sched_answer(scheduler *s, int g, int point, int rung)
{
    assign_msg a = {point, rung, s->stop_sent[g]};
    if (point >= 0) sched_started(s, g, point, rung);
    else s->finished[g] = 1;
    s->waiting[g] = 0;
    MPI_Send(&a, (int)sizeof a, MPI_BYTE, g * s->R, TAG_ASSIGN, s->comm);
}

/* Answers the groups > 0 that wait, while there is something to answer. */
static void sched_serve_waiting(scheduler *s)
{
    for (int g = 1; g < s->groups; g++) {
        if (!s->waiting[g]) continue;
        int point = -1, rung = 0, r = sched_next(s, &point, &rung);
        if (r != 0) sched_answer(s, g, r > 0 ? point : -1, rung);
    }
}

/* Tells every group leader still training (> 0) to stop, once. */
static void sched_broadcast_stop(scheduler *s)
{
    for (int g = 1; g < s->groups; g++) {
        if (s->stop_sent[g] || s->finished[g] || s->waiting[g]) continue;
        int one = 1;
        MPI_Send(&one, 1, MPI_INT, g * s->R, TAG_STOP, s->comm);
        s->stop_sent[g] = 1;
    }
}

/* Handles the reports that have arrived; never blocks. */
static void sched_poll(scheduler *s)
{
    if (mt_train_stop_signal()) s->stop = 1;
    for (;;) {
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_REPORT, s->comm, &flag, &st);
        if (!flag) break;
        report_msg m;
        MPI_Recv(&m, (int)sizeof m, MPI_BYTE, st.MPI_SOURCE, TAG_REPORT, s->comm, MPI_STATUS_IGNORE);
        if (m.point >= 0) sched_result(s, m.group, &m.rec);
        s->waiting[m.group] = 1;
    }
    if (s->stop) sched_broadcast_stop(s);
    sched_serve_waiting(s);
}

/* The poll hook of group 0's training runs: serve the other groups; stop if the sweep stops. */
static int sched_hook(void *ctx)
{
    scheduler *s = ctx;
    sched_poll(s);
    return s->stop;
}

/* ---- a group leader (world rank g·R, g > 0) ----------------------------------------- */

typedef struct {
    MPI_Comm comm;
    int stop_received;
} leader;

static int leader_hook(void *ctx)
{
    leader *l = ctx;
    int flag = 0;
    MPI_Iprobe(0, TAG_STOP, l->comm, &flag, MPI_STATUS_IGNORE);
    if (flag) {
        int one;
        MPI_Recv(&one, 1, MPI_INT, 0, TAG_STOP, l->comm, MPI_STATUS_IGNORE);
        l->stop_received = 1;
    }
    return l->stop_received;
}

/* Waits for a request without spinning a core. */
static void wait_request(MPI_Request *req)
{
    for (;;) {
        int done = 0;
        MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (done) return;
        nap();
    }
}

/* ---- one point ---------------------------------------------------------------------- */

/* Collective over the group: point c of a fine-tuning sweep; the report goes to log (rank 0). */
static void finetune_point(const mt_dist *g, const mt_config *c, FILE *log, mt_sweep_record *rec)
{
    char out[MT_PATH_LEN + 32];
    snprintf(out, sizeof out, "%s/finetuned.h5", c->run_dir);
    const mt_finetune_opts o = {.data = c->dataset[0] ? c->dataset : NULL, .out_path = out, .progress = MT_PROGRESS_NONE};
    mt_finetune_result res;
    mt_cli_error_capture(1);
    const int rc = mt_finetune_run(g, c, &o, &res);
    mt_cli_error_capture(0);
    if (rc == 0) {
        rec->iterations = c->ft_steps;
        rec->train_loss = res.loss_last;
        rec->eval_mean = res.mean, rec->eval_ci95 = res.ci95;
        snprintf(rec->status, sizeof rec->status, "done");
    } else {
        snprintf(rec->status, sizeof rec->status, "failed");
        copy_text(rec->message, sizeof rec->message, mt_cli_last_error()[0] ? mt_cli_last_error() : "failed");
    }
    if (log) {
        if (rc == 0)
            fprintf(log, "finetune %s on %s: %d-way, %.0f training and %.0f held-out images, %ld %s steps, frozen: %s; "
                         "held-out accuracy %.6g +- %.3g (95%% CI, %d repeats; before %.6g), %s\n",
                    c->ft_checkpoint, res.source, res.ways, res.train_images, res.held_out, c->ft_steps, c->ft_optim,
                    res.frozen[0] ? res.frozen : "none", res.mean, res.ci95, c->ft_repeats, res.mean_before, out);
        else fprintf(log, "failed: %s\n", rec->message);
        fclose(log);
    }
}

/* Collective over the group: trains point i to rung r and evaluates it. */
static void run_point(const mt_dist *g, const sweep_plan *p, const sweep_args *a, long i, int rung,
                      int (*hook)(void *), void *hook_ctx, mt_sweep_record *rec)
{
    const double t0 = mt_now();
    memset(rec, 0, sizeof *rec);
    snprintf(rec->id, sizeof rec->id, "%s", p->pts[i].id);
    rec->rung = rung;
    rec->train_loss = rec->eval_mean = rec->eval_ci95 = NAN;
    mt_config c;
    char err[MT_ERR_LEN] = "";
    if (point_config(p, i, &c, err, sizeof err) != 0) {
        snprintf(rec->status, sizeof rec->status, "failed");
        copy_text(rec->message, sizeof rec->message, err);
        rec->wall_s = mt_now() - t0;
        return;
    }
    FILE *log = NULL;
    if (g->rank == 0) {
        char path[MT_H5_PATH_LEN];
        snprintf(path, sizeof path, "%s/train.log", c.run_dir);
        if (mt_mkdir_p(c.run_dir, err, sizeof err) == 0 && !(log = fopen(path, "a")))
            snprintf(err, sizeof err, "cannot open %s: %s", path, strerror(errno));
    }
    if (!mt_dist_all(g, g->rank != 0 || log != NULL)) {
        if (log) fclose(log);
        snprintf(rec->status, sizeof rec->status, "failed");
        copy_text(rec->message, sizeof rec->message, err[0] ? err : "cannot open the point's train.log");
        rec->wall_s = mt_now() - t0;
        return;
    }
    if (c.ft_checkpoint[0]) {
        finetune_point(g, &c, log, rec);
        rec->wall_s = mt_now() - t0;
        return;
    }
    mt_train_opts o;
    mt_train_opts_default(&o);
    o.progress = a->progress;
    o.out = log;
    o.stop_at = p->target[rung];
    o.eval_tasks = p->spec.eval_tasks;
    o.poll = hook;
    o.poll_ctx = hook_ctx;
    mt_cli_error_capture(1);
    mt_train_result res;
    const int rc = mt_train_run(g, &c, &o, &res);
    mt_cli_error_capture(0);
    rec->iterations = res.iteration;
    rec->train_loss = res.loss_post;
    if (res.eval.tasks > 0) rec->eval_mean = res.eval.mean, rec->eval_ci95 = res.eval.ci95;
    if (rc == 0) snprintf(rec->status, sizeof rec->status, "done");
    else if (rc == MT_EXIT_CHECKPOINTED) snprintf(rec->status, sizeof rec->status, "stopped");
    else {
        snprintf(rec->status, sizeof rec->status, "failed");
        const char *why = mt_cli_last_error();
        copy_text(rec->message, sizeof rec->message, why[0] ? why : res.status[0] ? res.status : "failed");
    }
    if (log) {
        if (res.eval.tasks > 0)
            fprintf(log, "meta-validation at iteration %ld: %s %.6g +- %.3g (95%% CI) on %ld tasks, %d adaptation steps\n",
                    res.iteration, res.eval.classify ? "accuracy" : "mse", res.eval.mean, res.eval.ci95, res.eval.tasks,
                    res.eval.inner_steps);
        if (rc != 0 && rc != MT_EXIT_CHECKPOINTED) fprintf(log, "failed: %s\n", rec->message);
        fclose(log);
    }
    rec->wall_s = mt_now() - t0;
}

/* ---- the whole sweep ---------------------------------------------------------------- */

/* A group's ranks: their communicator and how they see each other. */
static void group_dist(const mt_dist *world, MPI_Comm comm, mt_dist *g)
{
    *g = *world;
    g->comm = comm;
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm, &g->rank);
    MPI_Comm_size(comm, &g->size);
    /* local_size stays the world's: memory per rank is the node's memory over all its ranks. */
}

/* Rank 0: loads the journal into the scheduler. */
static int sched_load(scheduler *s, int retry_failed, char *err, size_t errlen)
{
    mt_sweep_record *recs = NULL;
    long n = mt_sweep_log_read(s->plan->base.run_dir, &recs, err, errlen);
    if (n < 0) return -1;
    for (long k = 0; k < n; k++)
        if (!(retry_failed && strcmp(recs[k].status, "failed") == 0)) sched_apply(s, &recs[k]);
    free(recs);
    return 0;
}

static void sched_init(scheduler *s, const sweep_plan *p, MPI_Comm comm, int groups, int R)
{
    memset(s, 0, sizeof *s);
    s->plan = p, s->comm = comm, s->groups = groups, s->R = R, s->n = p->n;
    s->rung_done = mt_calloc((size_t)p->n, sizeof(int));
    s->failed = mt_calloc((size_t)p->n, sizeof(int));
    s->admitted = mt_calloc((size_t)p->n, sizeof(int));
    s->busy = mt_calloc((size_t)p->n, sizeof(int));
    s->metric = mt_calloc((size_t)p->n * (size_t)p->n_rungs, sizeof(double));
    for (long i = 0; i < p->n; i++) s->rung_done[i] = -1;
    for (long i = 0; i < p->n * p->n_rungs; i++) s->metric[i] = NAN;
    s->waiting = mt_calloc((size_t)groups, sizeof(int));
    s->finished = mt_calloc((size_t)groups, sizeof(int));
    s->stop_sent = mt_calloc((size_t)groups, sizeof(int));
    s->t0 = mt_now();
}

static void sched_free(scheduler *s)
{
    free(s->rung_done), free(s->failed), free(s->admitted), free(s->busy), free(s->metric);
    free(s->waiting), free(s->finished), free(s->stop_sent);
}

/* Rank 0: the final summary and exit status. */
static int sched_summary(scheduler *s, char *status, size_t len)
{
    const sweep_plan *p = s->plan;
    long done = 0, failed = 0;
    long best = -1;
    const int last = p->n_rungs - 1;
    for (long i = 0; i < p->n; i++) {
        if (s->failed[i]) failed++;
        else if (s->rung_done[i] >= 0 && (s->admitted[i] < s->cur || s->rung_done[i] == last)) done++;
        if (s->rung_done[i] == last && !isnan(s->metric[i * p->n_rungs + last])) {
            const double m = s->metric[i * p->n_rungs + last];
            const double b = best < 0 ? NAN : s->metric[best * p->n_rungs + last];
            if (best < 0 || (p->classify ? m > b : m < b)) best = i;
        }
    }
    const int stopped = s->stop && !s->all_done && !s->io_failed;
    printf("sweep %s: %ld of %ld point%s done, %ld failed, %.1f s; table %s/sweep.csv\n",
           s->io_failed ? "failed" : stopped ? "stopped" : "finished", done, p->n, p->n == 1 ? "" : "s", failed,
           mt_now() - s->t0, p->base.run_dir);
    if (best >= 0)
        printf("  best: %s, val %s %.4g%s\n", p->pts[best].id, metric_name(p),
               (p->classify ? 100.0 : 1.0) * s->metric[best * p->n_rungs + last], p->classify ? "%" : "");
    if (stopped) printf("  continue with the same command; exit status %d\n", MT_EXIT_CHECKPOINTED);
    fflush(stdout);
    if (s->io_failed) {
        snprintf(status, len, "failed: ");
        copy_text(status + 8, len - 8, s->err);
        return MT_EXIT_FAILURE;
    }
    if (stopped) {
        snprintf(status, len, "stopped after %ld of %ld points", done, p->n);
        return MT_EXIT_CHECKPOINTED;
    }
    snprintf(status, len, "%ld of %ld points done, %ld failed", done, p->n, failed);
    return failed ? MT_EXIT_FAILURE : MT_EXIT_OK;
}

/* Collective over the world: the full sweep. */
static int sweep_all(const mt_dist *d, const sweep_args *a, const sweep_plan *p, char *status, size_t status_len)
{
    const int R = p->spec.ranks_per_run;
    if (R > d->size) {
        mt_cli_error(d, "[sweep] ranks_per_run = %d but the job has %d rank%s", R, d->size, d->size == 1 ? "" : "s");
        return MT_EXIT_USAGE;
    }
    const int groups = d->size / R;
    const int group = d->rank < groups * R ? d->rank / R : -1;

    /* Rank 0 owns run.dir for the whole sweep (another full sweep on it stops at once). */
    char err[MT_ERR_LEN] = "";
    mt_run_lock lock = {-1};
    long ok = 0;
    scheduler s;
    MPI_Comm sched_comm;
    MPI_Comm_dup(d->comm, &sched_comm);
    if (d->rank == 0) {
        ok = mt_run_lock_take(&lock, p->base.run_dir, err, sizeof err);
        if (ok == 0) {
            print_plan(p, d->size, groups, R);
            sched_init(&s, p, sched_comm, groups, R);
            if (sched_load(&s, a->retry_failed, err, sizeof err) != 0) ok = -1;
        }
        if (ok == 0) {
            sched_advance(&s);
            sched_write(&s, NULL);
            if (s.io_failed) ok = -1, snprintf(err, sizeof err, "%s", s.err);
        }
    }
    mt_dist_bcast_long(d, &ok, 1);
    if (ok != 0) {
        if (d->rank == 0 && ok != 1 && lock.fd >= 0) sched_free(&s);
        mt_run_lock_release(&lock);
        MPI_Comm_free(&sched_comm);
        mt_cli_error(d, "%s", err);
        return ok == 1 ? MT_EXIT_USAGE : MT_EXIT_FAILURE;
    }

    MPI_Comm gcomm;
    MPI_Comm_split(d->comm, group >= 0 ? group : MPI_UNDEFINED, d->rank, &gcomm);
    mt_dist gd;
    leader ld = {sched_comm, 0};
    if (group >= 0) {
        group_dist(d, gcomm, &gd);
        mt_sweep_record rec;
        memset(&rec, 0, sizeof rec);
        int have = 0;
        for (;;) {
            assign_msg job = {-1, 0, 0};
            if (d->rank == 0) {
                if (have) sched_result(&s, 0, &rec);
                s.waiting[0] = 1;
                int point = -1, rung = 0, r;
                while ((r = sched_next(&s, &point, &rung)) == 0) {
                    sched_poll(&s);
                    nap();
                }
                s.waiting[0] = 0;
                if (r > 0) sched_started(&s, 0, point, rung), job.point = point, job.rung = rung;
                else s.finished[0] = 1;
                sched_poll(&s);
            } else if (gd.rank == 0) {
                report_msg m = {group, have ? 0 : -1, rec};
                MPI_Request req[2];
                MPI_Isend(&m, (int)sizeof m, MPI_BYTE, 0, TAG_REPORT, sched_comm, &req[0]);
                MPI_Irecv(&job, (int)sizeof job, MPI_BYTE, 0, TAG_ASSIGN, sched_comm, &req[1]);
                wait_request(&req[0]);
                wait_request(&req[1]);
                if (job.point < 0 && job.stop_sent && !ld.stop_received) {
                    int one;
                    MPI_Recv(&one, 1, MPI_INT, 0, TAG_STOP, sched_comm, MPI_STATUS_IGNORE);
                }
            }
            MPI_Request breq;
            MPI_Ibcast(&job, (int)sizeof job, MPI_BYTE, 0, gcomm, &breq);
            wait_request(&breq);
            if (job.point < 0) break;
            int (*hook)(void *) = d->rank == 0 ? sched_hook : gd.rank == 0 ? leader_hook : NULL;
            void *ctx = d->rank == 0 ? (void *)&s : (void *)&ld;
            run_point(&gd, p, a, job.point, job.rung, hook, ctx, &rec);
            have = 1;
        }
        MPI_Comm_free(&gcomm);
    }
    /* Rank 0 keeps serving until every group has been told there is no more work. */
    long rc = 0;
    if (d->rank == 0) {
        for (;;) {
            sched_poll(&s);
            int open = 0;
            for (int g = 1; g < groups; g++) open += !s.finished[g];
            if (!open) break;
            nap();
        }
        rc = sched_summary(&s, status, status_len);
        sched_free(&s);
    }
    MPI_Request req;
    MPI_Ibcast(&rc, 1, MPI_LONG, 0, d->comm, &req);
    wait_request(&req);
    mt_run_lock_release(&lock);
    MPI_Comm_free(&sched_comm);
    return (int)rc;
}

/* Collective over the world: one point (--point), for job arrays. */
static int sweep_one(const mt_dist *d, const sweep_args *a, const sweep_plan *p, char *status, size_t status_len)
{
    if (p->spec.halving) {
        mt_cli_error(d, "--point trains one point: schedule = halving needs the whole sweep in one job (promotions "
                        "compare points)");
        return MT_EXIT_USAGE;
    }
    char *end;
    long i = strtol(a->point, &end, 10);
    if (*end || end == a->point) i = point_index(p, a->point);
    if (i < 0 || i >= p->n) {
        mt_cli_error(d, "--point %s: the sweep has points 0 to %ld (see --dry-run for their ids)", a->point, p->n - 1);
        return MT_EXIT_USAGE;
    }
    if (d->rank == 0) {
        printf("sweep point %ld of %ld: %s, %d rank%s, run directory %s/%s\n", i, p->n, p->pts[i].id, d->size,
               d->size == 1 ? "" : "s", p->base.run_dir, p->pts[i].id);
        fflush(stdout);
    }
    mt_sweep_record rec;
    run_point(d, p, a, i, 0, NULL, NULL, &rec);
    char err[MT_ERR_LEN] = "";
    int ok = 1;
    if (d->rank == 0) {
        ok = record(p, &rec, NULL, err, sizeof err) == 0;
        printf("%s: %s%s%s; table %s/sweep.csv\n", rec.id, rec.status, rec.message[0] ? ": " : "", rec.message,
               p->base.run_dir);
        fflush(stdout);
    }
    if (!mt_dist_all(d, ok)) {
        mt_cli_error(d, "%s", err);
        return MT_EXIT_FAILURE;
    }
    snprintf(status, status_len, "point %s %s", rec.id, rec.status);
    return strcmp(rec.status, "done") == 0 ? MT_EXIT_OK : strcmp(rec.status, "stopped") == 0 ? MT_EXIT_CHECKPOINTED
                                                                                                : MT_EXIT_FAILURE;
}

/* Rank 0: --dry-run. */
static void dry_run(const mt_dist *d, const sweep_plan *p)
{
    const int R = p->spec.ranks_per_run;
    const int groups = R <= d->size ? d->size / R : 0;
    print_plan(p, d->size, groups, R);
    if (R > d->size) printf("  note: ranks_per_run = %d needs at least %d ranks (this job has %d)\n", R, R, d->size);
    for (long i = 0; i < p->n; i++) {
        mt_config c;
        char err[MT_ERR_LEN];
        int bad = point_config(p, i, &c, err, sizeof err) != 0;
        printf("  %4ld  %s%s%s\n", i, p->pts[i].id, bad ? "   invalid: " : "", bad ? err : "");
    }
    fflush(stdout);
}

int mt_sweep_main(const mt_dist *d, int argc, char **argv)
{
    mt_train_catch_signals(); /* first: a signal during start-up must not kill the job */
    sweep_args args;
    int rc = parse_args(d, argc, argv, &args);
    if (rc >= 0) return rc;
    sweep_plan plan;
    if ((rc = load_plan(d, &args, &plan)) != 0) return rc;
    char status[MT_ERR_LEN] = "";
    if (args.dry_run) {
        if (d->rank == 0) dry_run(d, &plan);
        rc = 0;
        snprintf(status, sizeof status, "dry run");
    } else if (args.point) rc = sweep_one(d, &args, &plan, status, sizeof status);
    else rc = sweep_all(d, &args, &plan, status, sizeof status);
    plan_free(&plan);
    if (d->rank == 0 && args.status_file) {
        FILE *f = fopen(args.status_file, "w");
        int ok = f && fprintf(f, "%d %s\n", rc, status[0] ? status : rc ? "failed" : "done") > 0;
        if (f && fclose(f) != 0) ok = 0;
        if (!ok) fprintf(stderr, "metatrain: warning: cannot write --status-file %s: %s\n", args.status_file,
                         strerror(errno));
    }
    return rc;
}
