/*
 * train.c — `metatrain train`: the distributed meta-training loop (DESIGN §1).
 *
 * Per meta-iteration s, every rank draws its share [lo, hi) of the meta-batch's tasks from
 * the streams (seed, s, t), computes each task's meta-gradient, and adds them up; one
 * allreduce sums the gradients (and the logged losses) over the ranks; every rank then
 * applies the same Adam step to its copy of θ, so the copies never diverge.
 * Rank 0 alone writes: progress, metrics.jsonl, config.ini and checkpoints.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "checkpoint.h"
#include "cli.h"
#include "common.h"
#include "dataset.h"
#include "family.h"
#include "ioutil.h"
#include "meta.h"
#include "metrics.h"
#include "model.h"
#include "optim.h"
#include "progress.h"
#include "rundir.h"
#include "tasks.h"
#include "train.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: metatrain train [CONFIG] [--set section.key=value]... [--resume WHAT] [--overwrite]\n"
            "                       [--progress MODE] [--status-file PATH]\n"
            "\n"
            "Meta-trains a model on a task family, splitting each meta-batch over the MPI ranks:\n"
            "  mpirun -np 2 metatrain train                        # built-in sinusoid MAML\n"
            "  mpirun -np 4 metatrain train configs/sinusoid_maml.ini --set meta.algo=fomaml\n"
            "  mpirun -np 2 metatrain train configs/fmnist_5w1s_maml.ini   # after `metatrain data import`\n"
            "\n"
            "  CONFIG              INI file (see configs/); without it, the built-in default below\n"
            "  --set S.K=V         override one key after the file is read (repeatable)\n"
            "  --resume WHAT       auto (default): continue from the newest usable checkpoint in\n"
            "                      run.dir, if any (damaged ones are reported and skipped); never:\n"
            "                      start over; PATH: continue from that checkpoint. A checkpoint\n"
            "                      written by any number of ranks resumes on any other, exactly.\n"
            "  --resume-force      resume although the configuration changed in keys other than\n"
            "                      run.dir, run.iterations, run.log_every, checkpoint.every and\n"
            "                      checkpoint.keep (the changed keys are refused by name without it)\n"
            "  --overwrite         allow a fresh start in a run.dir that holds an earlier run's\n"
            "                      checkpoints or metrics (they are deleted); without it such a\n"
            "                      start is refused, so no run's files are lost by mistake\n"
            "  --progress MODE     auto (default) | bar | lines | none; auto draws a bar when the\n"
            "                      output is a terminal, else a line every run.log_every iterations\n"
            "  --status-file PATH  rank 0 writes the exit status and a one-line reason there when\n"
            "                      it ends (batch scripts read it: mpirun reports 1 when it was\n"
            "                      itself signalled, even after a clean checkpoint-and-stop)\n"
            "  -h, --help          this text\n"
            "\n"
            "One job per run directory: run.dir/run.lock is held while training (a second job on\n"
            "the same directory stops at once and names the holder); a run deletes only its own\n"
            "old checkpoints (checkpoint.keep) and never writes a non-finite value.\n"
            "\n"
            "Writes into run.dir: config.ini (resolved), metrics.jsonl (one JSON object per logged\n"
            "iteration) and ckpt-<step>.h5 (HDF5; the last iteration always writes one). Evaluate\n"
            "with `metatrain eval run.dir/ckpt-<step>.h5`.\n"
            "\n"
            "Configuration keys and defaults (the built-in default run):\n");
    mt_config_print_keys(out);
    fprintf(out, "\nSignals: SIGUSR1, SIGTERM, SIGINT or SIGHUP stops training at the next iteration with a\n"
                 "checkpoint (also while loading data or resuming). Send SIGUSR1 to mpirun: it forwards it;\n"
                 "mpirun turns the others into SIGTERM followed by SIGKILL after\n"
                 "OMPI_MCA_odls_base_sigkill_timeout seconds (default 1) and then exits 1 itself.\n"
                 "Exit status: 0 success, 1 runtime failure (I/O, divergence), 2 bad input (also: run.dir\n"
                 "in use, or holding another run), 75 stopped by a signal after writing a checkpoint\n"
                 "(resume with the same command).\n");
}

typedef struct {
    const char *config_path;
    char *sets[MT_MAX_SETS];
    int n_sets;
    mt_train_opts opts;
    const char *status_file;
} train_args;

/* Returns -1 to continue, else an exit status (0 after --help). */
static int parse_args(const mt_dist *d, int argc, char **argv, train_args *a)
{
    memset(a, 0, sizeof *a);
    mt_train_opts_default(&a->opts);
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *v = NULL;
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            if (d->rank == 0) usage(stdout);
            return MT_EXIT_OK;
        } else if (mt_cli_option(argc, argv, &i, "--resume", &v)) {
            if (!v || !v[0]) {
                mt_cli_error(d, "--resume takes auto, never or a checkpoint path");
                return MT_EXIT_USAGE;
            }
            a->opts.resume = v;
        } else if (strcmp(arg, "--overwrite") == 0) {
            a->opts.overwrite = 1;
        } else if (strcmp(arg, "--resume-force") == 0) {
            a->opts.resume_force = 1;
        } else if (mt_cli_option(argc, argv, &i, "--status-file", &v)) {
            if (!v || !v[0]) {
                mt_cli_error(d, "--status-file takes a path");
                return MT_EXIT_USAGE;
            }
            a->status_file = v;
        } else if (mt_cli_option(argc, argv, &i, "--set", &v)) {
            if (mt_cli_add_set(d, a->sets, &a->n_sets, v) != 0) return MT_EXIT_USAGE;
        } else if (mt_cli_option(argc, argv, &i, "--progress", &v)) {
            if (!v || mt_progress_parse(v, &a->opts.progress) != 0) {
                mt_cli_error(d, "--progress takes auto, bar, lines or none");
                return MT_EXIT_USAGE;
            }
        } else if (mt_cli_config_arg(d, "train", arg, &a->config_path) != 0) {
            return MT_EXIT_USAGE;
        }
    }
    return -1;
}

/* Collective. Rank 0 takes run.dir's lock (creating the directory) and removes the partial
 * files a killed job left; all ranks learn the outcome. 0, or an exit status. */
static int own_run_dir(const mt_dist *d, const mt_config *c, FILE *out, mt_run_lock *lock)
{
    char err[MT_ERR_LEN] = "";
    int rc = 0;
    lock->fd = -1;
    if (d->rank == 0) {
        rc = mt_run_lock_take(lock, c->run_dir, err, sizeof err);
        if (rc == 0 && mt_run_clean_partials(c->run_dir, out, err, sizeof err) < 0) rc = -1;
        fflush(out);
    }
    long agreed = rc;
    mt_dist_bcast_long(d, &agreed, 1);
    if (agreed == 0) return 0;
    mt_cli_error(d, "%s", err);
    return agreed == 1 ? MT_EXIT_USAGE : MT_EXIT_FAILURE;
}

/* Rank 0 writes config.ini (atomically); all ranks learn the outcome. */
static int write_config_ini(const mt_dist *d, const mt_config *c, const char *config_text)
{
    char err[MT_ERR_LEN] = "";
    int ok = 1;
    if (d->rank == 0) {
        char path[MT_H5_PATH_LEN], tmp[MT_H5_PATH_LEN + 16];
        snprintf(path, sizeof path, "%s/config.ini", c->run_dir);
        snprintf(tmp, sizeof tmp, "%s.partial", path);
        FILE *f = fopen(tmp, "w");
        ok = f && fputs(config_text, f) >= 0;
        if (f && fclose(f) != 0) ok = 0;
        if (!ok) snprintf(err, sizeof err, "cannot write %s: %s", tmp, strerror(errno));
        ok = ok && mt_fsync_rename(tmp, path, err, sizeof err) == 0;
        if (!ok) unlink(tmp);
    }
    if (!mt_dist_all(d, ok)) {
        mt_cli_error(d, "%s", err);
        return MT_EXIT_FAILURE;
    }
    return 0;
}

/* The signal that asked for a checkpoint-and-exit (0: none). Set by the handler only. */
static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int sig) { stop_signal = sig; }

/* SIGUSR1 (the "checkpoint now" signal: mpirun forwards it, Slurm sends it with --signal),
 * SIGTERM, SIGINT and SIGHUP set a flag; the loop acts on it at the next iteration boundary.
 * Installed first thing, so a signal while loading data or resuming is not the default
 * action (death without a status Slurm can requeue on). */
void mt_train_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGUSR1, SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
}

/* The sweep asked this run to stop (mt_train_opts.poll): larger than any signal number, so it
 * wins the ranks' MPI_MAX of their stop reasons. */
#define STOP_REQUESTED 1000

static const char *signal_name(int sig)
{
    switch (sig) {
    case STOP_REQUESTED: return "a stop of the sweep";
    case SIGUSR1: return "SIGUSR1";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGHUP: return "SIGHUP";
    default: return "a signal";
    }
}

/* Everything a checkpoint saves and a resume restores. */
typedef struct {
    const mt_config *cfg;
    const char *config_text;
    const char *source; /* the family's data source, for the checkpoint's dataset attribute */
    const mt_model *model;
    const mt_shards *shards;
    float *theta;          /* [P] */
    float *adam_m, *adam_v; /* [shard] */
    char *run_id;          /* [MT_RUN_ID_LEN], rank 0: this run's id (inherited on resume) */
    const mt_train_opts *opts;
    FILE *out; /* rank 0's report */
} train_state;

/* Collective: all ranks write ckpt-<step>.h5 (each its shard), rank 0 prunes this run's old ones. */
static int save_checkpoint(const mt_dist *d, const train_state *ts, long step, char *path, size_t pathlen)
{
    char err[MT_ERR_LEN] = "";
    mt_checkpoint_path(path, pathlen, ts->cfg->run_dir, step);
    mt_checkpoint ck = {.step = step, .seed = ts->cfg->seed, .world_size = d->size, .config = (char *)ts->config_text};
    snprintf(ck.dataset, sizeof ck.dataset, "%s", ts->source);
    snprintf(ck.run_id, sizeof ck.run_id, "%s", ts->run_id);
    mt_checkpoint_shard sh = {d->comm, ts->shards->lo, ts->shards->hi, ts->adam_m, ts->adam_v};
    int ok = mt_checkpoint_write(path, ts->model, ts->theta, &sh, &ck, err, sizeof err) == 0;
    if (ok && d->rank == 0)
        ok = mt_checkpoint_prune(ts->cfg->run_dir, ts->cfg->ckpt_keep, ts->run_id, err, sizeof err) >= 0;
    if (!mt_dist_all(d, ok)) {
        if (err[0] && d->rank != 0) fprintf(stderr, "metatrain: error: %s (rank %d)\n", err, d->rank);
        mt_cli_error(d, "%s", err[0] ? err : "writing the checkpoint failed on another rank");
        return MT_EXIT_FAILURE;
    }
    return 0;
}

/* Rank 0: reads the checkpoint at path and checks it can continue this run. 0, or -1 + why. */
static int load_for_resume(const char *path, const train_state *ts, mt_checkpoint *ck, char *why, size_t len)
{
    if (mt_checkpoint_read(path, ck, why, len) != 0) return -1;
    char msg[512];
    int ok = 1;
    if (mt_checkpoint_match_model(ck, ts->model, msg, sizeof msg) != 0) {
        snprintf(why, len, "%s does not fit this run's model: %s", path, msg);
        ok = 0;
    } else if (!ck->m || !ck->v) {
        snprintf(why, len, "%s holds no optimizer state (format version %d): it cannot continue a run exactly",
                 path, ck->version);
        ok = 0;
    } else if (mt_checkpoint_check_finite(ck, msg, sizeof msg) != 0) {
        snprintf(why, len, "%s: %s", path, msg);
        ok = 0;
    } else if (ck->seed != ts->cfg->seed) {
        snprintf(why, len, "%s was trained with run.seed = %llu, this run has %llu (set it, or --resume never)", path,
                 (unsigned long long)ck->seed, (unsigned long long)ts->cfg->seed);
        ok = 0;
    } else if (ck->step > ts->cfg->iterations) {
        snprintf(why, len, "%s is at iteration %ld, beyond run.iterations = %ld", path, ck->step, ts->cfg->iterations);
        ok = 0;
    } else {
        /* The run it continues must compute the same thing: only the keys a user changes on
         * purpose (iterations, logging, checkpoints, the directory) may differ. */
        mt_config old;
        char list[2048];
        mt_config_defaults(&old);
        if (mt_config_parse(&old, ck->config ? ck->config : "", path, msg, sizeof msg) != 0) {
            snprintf(why, len, "%s holds a configuration that does not parse: %s", path, msg);
            ok = 0;
        } else {
            int n = mt_config_resume_diff(&old, ts->cfg, list, sizeof list);
            if (n > 0 && !ts->opts->resume_force) {
                snprintf(why, len,
                         "%s was trained with another configuration (%d key%s changed: %s); resume with the same "
                         "keys, or add --resume-force to continue with the new values",
                         path, n, n == 1 ? "" : "s", list);
                ok = 0;
            } else if (n > 0) {
                fprintf(ts->out, "  --resume-force: continuing %s with %d changed key%s: %s\n", path, n, n == 1 ? "" : "s", list);
            }
        }
    }
    if (!ok) mt_checkpoint_free(ck);
    return ok ? 0 : -1;
}

/* Rank 0, before a fresh start: what an earlier run left in run.dir — its checkpoints, and
 * a metrics.jsonl unless config.ini shows it is this very run restarted before its first
 * checkpoint. Lists them in what[] and returns how many; with overwrite, deletes the
 * checkpoints (metrics.jsonl is truncated when it is opened) and returns 0, or -1 with err. */
static int earlier_run(const mt_config *c, const char *config_text, int overwrite, FILE *out, char *what,
                       size_t len, char *err, size_t errlen)
{
    long steps[64];
    long n = mt_checkpoint_steps(c->run_dir, steps, 64);
    what[0] = '\0';
    for (long i = 0; i < n; i++) {
        size_t used = strlen(what);
        snprintf(what + used, len - used, "%sckpt-%08ld.h5", used ? ", " : "", steps[i]);
    }
    char path[MT_H5_PATH_LEN], *old_config = NULL, *metrics = NULL; /* run_dir < MT_PATH_LEN: fits */
    int same_config = snprintf(path, sizeof path, "%s/config.ini", c->run_dir) < (int)sizeof path &&
                      mt_read_file(path, &old_config) >= 0 && strcmp(old_config, config_text) == 0;
    int has_metrics = snprintf(path, sizeof path, "%s/metrics.jsonl", c->run_dir) < (int)sizeof path &&
                      mt_read_file(path, &metrics) > 0;
    free(old_config);
    free(metrics);
    int found = (int)n;
    if (has_metrics && (n > 0 || !same_config)) {
        size_t used = strlen(what);
        snprintf(what + used, len - used, "%smetrics.jsonl", used ? ", " : "");
        found++;
    }
    if (!found || !overwrite) return found;
    /* The listing holds at most 64: delete and list again until none is left. */
    for (; n > 0; n = mt_checkpoint_steps(c->run_dir, steps, 64))
        for (long i = 0; i < n; i++) {
            mt_checkpoint_path(path, sizeof path, c->run_dir, steps[i]);
            if (unlink(path) != 0 && errno != ENOENT) {
                snprintf(err, errlen, "--overwrite: cannot delete %s: %s", path, strerror(errno));
                return -1;
            }
        }
    fprintf(out, "  --overwrite: deleted the earlier run's files (%s)\n", what);
    return 0;
}

/* Rank 0, resuming at iteration `from`: 1 (with why) if run.dir holds another run's readable
 * checkpoint at a later step up to run.iterations, which this run's checkpoint of that step
 * would replace; damaged files may be replaced. */
static int would_replace(const train_state *ts, long from, char *why, size_t len)
{
    long steps[64];
    long n = mt_checkpoint_steps(ts->cfg->run_dir, steps, 64);
    for (long i = 0; i < n; i++) {
        char path[MT_H5_PATH_LEN], id[MT_RUN_ID_LEN];
        if (steps[i] <= from || steps[i] > ts->cfg->iterations) continue;
        mt_checkpoint_path(path, sizeof path, ts->cfg->run_dir, steps[i]);
        if (mt_checkpoint_read_run_id(path, id, sizeof id) == 0 && strcmp(id, ts->run_id) != 0) {
            /* (a long run.dir truncates the message, which is all it can do) */
            if (snprintf(why, len,
                         "run.dir %s holds %s of another run, which this run would replace at iteration %ld; move "
                         "it away or choose another run.dir",
                         ts->cfg->run_dir, path, steps[i]) < 0)
                why[0] = '\0';
            return 1;
        }
    }
    return 0;
}

/* Collective. how: "never", "auto" (the newest usable checkpoint of run.dir, if any; damaged
 * ones are reported and skipped) or a path (which must be usable). Restores θ, this rank's
 * shard of the moments and *step (0 for a fresh start); rank 0 sets ts->run_id. A fresh
 * start in a run.dir holding an earlier run's files needs overwrite. 0, or an exit status. */
static int resume(const mt_dist *d, const train_state *ts, long *step)
{
    const char *how = ts->opts->resume;
    long found[2] = {0, 0}; /* status (0 fresh, 1 resumed, -1 bad input, -2 I/O failure), step */
    mt_checkpoint ck = {0};
    char why[MT_ERR_LEN] = "", path[MT_H5_PATH_LEN] = "";
    if (d->rank == 0 && strcmp(how, "never") != 0) {
        if (strcmp(how, "auto") != 0) {
            snprintf(path, sizeof path, "%s", how);
            found[0] = load_for_resume(path, ts, &ck, why, sizeof why) == 0 ? 1 : -1;
        } else {
            long steps[64];
            long n = mt_checkpoint_steps(ts->cfg->run_dir, steps, 64);
            for (long i = 0; i < n && found[0] == 0; i++) {
                mt_checkpoint_path(path, sizeof path, ts->cfg->run_dir, steps[i]);
                if (load_for_resume(path, ts, &ck, why, sizeof why) == 0) found[0] = 1;
                else fprintf(stderr, "metatrain: warning: skipping %s\n", why);
            }
        }
        found[1] = ck.step;
    }
    if (d->rank == 0 && found[0] == 0) {
        char what[2048], err[MT_ERR_LEN] = "";
        int n = earlier_run(ts->cfg, ts->config_text, ts->opts->overwrite, ts->out, what, sizeof what, err, sizeof err);
        if (n < 0) {
            snprintf(why, sizeof why, "%s", err);
            found[0] = -2;
        } else if (n > 0) {
            snprintf(why, sizeof why,
                     "run.dir %s holds files of an earlier run that this one cannot continue (%s); choose another "
                     "run.dir, continue one of them with --resume PATH, or add --overwrite to delete them and start "
                     "over",
                     ts->cfg->run_dir, what);
            found[0] = -1;
        }
    }
    if (d->rank == 0 && found[0] >= 0) {
        if (found[0] == 1 && ck.run_id[0]) snprintf(ts->run_id, MT_RUN_ID_LEN, "%s", ck.run_id);
        else mt_checkpoint_new_run_id(ts->run_id);
    }
    if (d->rank == 0 && found[0] == 1 && would_replace(ts, ck.step, why, sizeof why)) {
        mt_checkpoint_free(&ck);
        found[0] = -1;
    }
    mt_dist_bcast_long(d, found, 2);
    if (found[0] < 0) {
        mt_cli_error(d, "%s%s", strcmp(how, "auto") && strcmp(how, "never") ? "cannot resume: " : "", why);
        return found[0] == -2 ? MT_EXIT_FAILURE : MT_EXIT_USAGE;
    }
    *step = found[1];
    if (found[0] == 0) return 0;
    const size_t P = ts->model->n_params;
    if (d->rank == 0) {
        memcpy(ts->theta, ck.params, P * sizeof(float));
        fprintf(ts->out, "  resuming from %s (iteration %ld, written by %d rank%s)\n", path, ck.step, ck.world_size,
               ck.world_size == 1 ? "" : "s");
    }
    mt_dist_bcast_float(d, ts->theta, P);
    mt_dist_scatter_shards(d, ts->shards, ck.m, ts->adam_m);
    mt_dist_scatter_shards(d, ts->shards, ck.v, ts->adam_v);
    mt_checkpoint_free(&ck);
    return 0;
}

/* Rank 0: metrics.jsonl for a run that starts at iteration `step`: truncated for a fresh
 * start, or keeping the lines up to `step` when resuming (a crashed run may have logged
 * past its last checkpoint). NULL with err on failure. */
static FILE *open_metrics(const char *dir, long step, char *err, size_t errlen)
{
    char path[MT_H5_PATH_LEN], tmp[MT_H5_PATH_LEN + 16];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    if (step == 0) return mt_metrics_open(path, err, errlen);
    snprintf(tmp, sizeof tmp, "%s.partial", path);
    FILE *in = fopen(path, "r"), *out = fopen(tmp, "w");
    char line[1024];
    while (in && out && fgets(line, sizeof line, in)) {
        long it = -1;
        if (sscanf(line, "{\"iteration\": %ld", &it) == 1 && it <= step) fputs(line, out);
    }
    if (in) fclose(in);
    if (!out || fclose(out) != 0 || rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot rewrite %s: %s", path, strerror(errno));
        return NULL;
    }
    FILE *f = fopen(path, "a");
    if (!f) snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return f;
}

int mt_train_stop_signal(void) { return (int)stop_signal; }

/* Rank 0: loss_post of the metrics.jsonl line of iteration `step` in dir (NaN if none). */
static double last_logged_loss(const char *dir, long step)
{
    char path[MT_H5_PATH_LEN], line[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    double loss = NAN;
    while (f && fgets(line, sizeof line, f)) {
        long it = -1;
        double v;
        if (sscanf(line, "{\"iteration\": %ld, \"loss_pre\": %*[^,], \"loss_post\": %lf", &it, &v) == 2 && it == step)
            loss = v;
    }
    if (f) fclose(f);
    return loss;
}

/* All finite? (The state a checkpoint would hold.) */
/* sum[i] += g[i]: one task's gradient into the float reduction's running sum. */
static void add_into(float *sum, const float *g, size_t n)
{
    for (size_t i = 0; i < n; i++) sum[i] += g[i];
}

static int all_finite(const float *x, size_t n)
{
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= isfinite(x[i]) != 0;
    return ok;
}

/* Collective: the largest peak resident set size of any rank so far, in MiB; *own (optional)
 * gets this rank's. */
static double peak_rss_mib(const mt_dist *d, double *own)
{
    struct rusage ru;
    const long kib = getrusage(RUSAGE_SELF, &ru) == 0 && ru.ru_maxrss > 0 && ru.ru_maxrss < 0x7fffffffL
                         ? ru.ru_maxrss : 0; /* Linux: KiB */
    if (own) *own = (double)kib / 1024.0;
    return (double)mt_dist_max_int(d, (int)kib) / 1024.0;
}

/* Collective: the memory all ranks use now, in MiB: their proportional set sizes summed
 * (Linux /proc/self/smaps_rollup: a page shared by k processes counts 1/k for each, so a
 * dataset shared by a node's ranks counts once per node, not once per rank); -1 where a
 * rank cannot read it. */
static double pss_sum_mib(const mt_dist *d)
{
    double kib = -1.0;
    long v;
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Pss: %ld kB", &v) == 1) {
            kib = (double)v;
            break;
        }
    if (f) fclose(f);
    double sum[2] = {kib, kib < 0 ? 1.0 : 0.0}; /* the total, and how many ranks could not tell */
    mt_dist_sum_double(d, sum, 2);
    return sum[1] > 0 ? -1.0 : sum[0] / 1024.0;
}

/* Collective: the model c builds fits one MPI call and this rank's share of the node's
 * memory (the dataset's image shape read from its header, not the images). 0, or exit 2. */
static int check_size(const mt_dist *d, const mt_config *c)
{
    char err[MT_ERR_LEN] = "";
    mt_model m;
    int ok = 1, known = 0;
    if (strcmp(c->family, "fewshot") == 0) {
        mt_split meta;
        if (mt_dataset_read_split_meta(c->dataset, c->train_split, &meta, err, sizeof err) == 0) {
            known = mt_family_model(c, meta.C, meta.H, meta.W, &m) == 0;
            mt_split_free(&meta);
        } /* else the family reports the dataset's problem */
    } else {
        known = mt_family_model(c, 1, 1, 1, &m) == 0;
    }
    const size_t per_rank = mt_cli_memory_bytes() / (size_t)(d->local_size > 0 ? d->local_size : 1);
    if (known) ok = mt_config_check_size(c, m.n_params, d->size, per_rank, err, sizeof err) == 0;
    if (!mt_dist_all(d, ok)) {
        mt_cli_error(d, "%s", err[0] ? err : "the model does not fit the memory of another rank's node");
        return MT_EXIT_USAGE;
    }
    return 0;
}

void mt_train_opts_default(mt_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->resume = "auto";
    o->out = stdout;
}

int mt_train_run(const mt_dist *d, const mt_config *config, const mt_train_opts *o, mt_train_result *res)
{
    const mt_config cfg = *config;
    FILE *const out = o->out ? o->out : stdout;
    char *const status = res->status;
    const size_t status_len = sizeof res->status;
    res->status[0] = '\0';
    res->iteration = 0;
    res->loss_post = NAN;
    res->eval.tasks = 0;
    int rc;
    const long end = o->stop_at > 0 && o->stop_at < cfg.iterations ? o->stop_at : cfg.iterations;
    mt_algo algo;
    if (mt_algo_parse(cfg.algo, &algo) != 0) return MT_EXIT_USAGE; /* the config checked the name */
    /* What the model needs, from the dataset's header only: a meta-batch too large for this
     * node's memory is bad input, said before anything is loaded. */
    if ((rc = check_size(d, &cfg)) != 0) return rc;
    /* Data first: a bad dataset is bad input, and leaves no run directory behind. */
    mt_model model;
    mt_family family;
    if ((rc = mt_family_open(&family, d, &cfg, cfg.train_split, NULL, &model)) != 0) return rc;
    char *config_text = mt_config_format(&cfg);
    mt_run_lock lock;
    if ((rc = own_run_dir(d, &cfg, out, &lock)) != 0) {
        mt_family_close(&family);
        free(config_text);
        return rc;
    }
    const size_t P = model.n_params;
    const int B = cfg.meta_batch;
    int lo, hi;
    mt_dist_task_range(B, d->rank, d->size, &lo, &hi);

    /* ZeRO-1: this rank updates only its shard [lo, hi) of θ, so the mean meta-gradient and
     * Adam's moments exist only for that shard (2·P/N floats of moments per rank). */
    mt_shards shards;
    mt_shards_init(&shards, d, P);
    /* The exact reduction's blocks: one quantum per parameter tensor. */
    const int n_tensors = mt_model_tensor_count(&model);
    size_t tensor_size[2 * MT_MAX_OPS];
    for (int i = 0; i < n_tensors; i++) {
        mt_tensor_info ti;
        mt_model_tensor(&model, i, &ti);
        tensor_size[i] = ti.size; /* in θ order and contiguous; mt_blocks_init checks the total */
    }
    mt_blocks blocks;
    mt_blocks_init(&blocks, tensor_size, n_tensors, P);
    const size_t S = shards.hi - shards.lo;
    /* One slab per role: θ, this rank's tasks' gradients, the shard's mean gradient and Adam
     * moments. The exact sum keeps every task's gradient until the reduction (it needs their
     * global maximum first); the float sum adds each into the reduction's buffer as it comes. */
    const int exact = strcmp(cfg.reduce, "exact") == 0;
    const int max_local = (B + d->size - 1) / d->size, kept = exact ? max_local : 1;
    float *slab = mt_calloc(((size_t)1 + kept) * P + 3 * S, sizeof(float));
    float *theta = slab, *task_g = slab + P, *gshard = task_g + (size_t)kept * P, *adam_m = gshard + S,
          *adam_v = adam_m + S;
    void *scratch = mt_calloc(P, exact ? sizeof(int64_t) : sizeof(float)); /* the reduction's [P] */
    /* Logged metrics per task: loss and accuracy before and after adaptation. Each task has its
     * own slot, so the sums over ranks are exact and the log does not depend on the rank count. */
    enum { EXTRA = 4 };
    double *slots = mt_calloc((size_t)EXTRA * B, sizeof *slots);
    mt_model_init_params(&model, theta, cfg.seed);
    /* metasgd: every learned rate starts at inner_lr (Li et al. 2017 draw them; one value
     * keeps a run's start that of maml at the same inner_lr) */
    for (size_t i = P - model.n_rates; i < P; i++) theta[i] = cfg.inner_lr;
    mt_meta *meta = mt_meta_init(&model, algo, cfg.inner_steps, family.n_support, family.n_query);
    float *msl_w = cfg.multi_step_loss ? mt_calloc((size_t)cfg.inner_steps, sizeof *msl_w) : NULL;
    mt_meta_set_step_weights(meta, msl_w);
    mt_task_buffer tb;
    mt_family_buffer(&family, &tb);
    const mt_adam_config adam = {cfg.lr, cfg.beta1, cfg.beta2, cfg.eps};
    const mt_adam_config adam_rates = {cfg.lr * cfg.alpha_lr, cfg.beta1, cfg.beta2, cfg.eps};
    const size_t rates_from = P - model.n_rates; /* θ index of the first learned rate */

    FILE *metrics = NULL;
    char err[MT_ERR_LEN] = "", path[MT_H5_PATH_LEN];
    char run_id[MT_RUN_ID_LEN] = "";
    const train_state ts = {&cfg,   config_text, family.source, &model, &shards,
                            theta,  adam_m,      adam_v,        run_id, o,      out};
    long start = 0;
    if (d->rank == 0) {
        fprintf(out, "metatrain %s: %s %s on %s (%s), %d rank%s, meta-batch %d, %d inner step%s, %ld iterations, "
               "%zu parameters\n  run directory %s\n",
               MT_VERSION, cfg.algo, cfg.arch, cfg.family, family.source, d->size, d->size == 1 ? "" : "s", B,
               cfg.inner_steps, cfg.inner_steps == 1 ? "" : "s", cfg.iterations, P, cfg.run_dir);
        if (B < d->size)
            fprintf(out, "  note: meta-batch %d is smaller than the %d ranks; %d rank%s will idle\n", B, d->size,
                   d->size - B, d->size - B == 1 ? "" : "s");
        fflush(out);
    }
    if ((rc = resume(d, &ts, &start)) != 0) goto done;
    if (start >= end) {
        if (d->rank == 0)
            fprintf(out, "done: the run is already %s at iteration %ld (--resume never starts over)\n",
                    start >= cfg.iterations ? "complete" : "past the stop", start);
        snprintf(status, status_len, "already complete at iteration %ld", start);
        res->iteration = start;
        if (d->rank == 0) res->loss_post = last_logged_loss(cfg.run_dir, start);
        goto evaluate;
    }
    if ((rc = write_config_ini(d, &cfg, config_text)) != 0) goto done;
    if (d->rank == 0) metrics = open_metrics(cfg.run_dir, start, err, sizeof err);
    if (!mt_dist_all(d, d->rank != 0 || metrics != NULL)) {
        mt_cli_error(d, "%s", err);
        rc = MT_EXIT_FAILURE;
        goto done;
    }

    mt_progress progress;
    mt_progress_start(&progress, d->rank == 0 ? o->progress : MT_PROGRESS_NONE, out, "train", start, end);
    double t_start = mt_now(), t_log = t_start;
    const double flops_start = mt_flops_count();
    long s_log = start;
    mt_metrics_row last = {0};
    /* A signal while loading or resuming: nothing new to save (the state is the checkpoint
     * resumed from, or the initialisation), so stop now with the requeue status. */
    const int early = mt_dist_max_int(d, (int)stop_signal);
    if (early) {
        mt_progress_finish(&progress);
        if (d->rank == 0)
            fprintf(out, "stopped by %s before training started at iteration %ld; nothing new to save\n"
                   "  continue with the same command (--resume auto); exit status %d\n",
                   signal_name(early), start, MT_EXIT_CHECKPOINTED);
        snprintf(status, status_len, "stopped by %s before iteration %ld", signal_name(early), start + 1);
        rc = MT_EXIT_CHECKPOINTED;
        goto done;
    }
    int state_ok = 1; /* this rank's shard of θ and the moments are finite */
    for (long s = start; s < end; s++) {
        const long step = s + 1;
        const int logged = step % cfg.log_every == 0 || step == end;
        float local_max = 0.0f; /* max |g| over this rank's tasks, NaN if any is NaN */
        /* Derivative-order annealing: FOMAML's meta-gradient up to meta.first_order_until. */
        const mt_algo step_algo = algo == MT_ALGO_MAML && step <= cfg.first_order_until ? MT_ALGO_FOMAML : algo;
        /* Multi-step loss: this iteration's weights, the same on every rank. */
        if (msl_w) mt_meta_msl_weights(msl_w, cfg.inner_steps, step, cfg.msl_iterations);
        if (!exact) memset(scratch, 0, P * sizeof(float));
        for (int t = lo; t < hi; t++) {
            mt_task_losses l;
            mt_family_fill(&family, &tb, MT_STREAM_TRAIN, (uint64_t)s, (uint32_t)t);
            float *g = task_g + (exact ? (size_t)(t - lo) * P : 0);
            const float m = mt_meta_task_grad(meta, step_algo, theta, cfg.inner_lr, cfg.inner_steps, &tb.task, g,
                                              logged ? &l : NULL);
            if (!exact) add_into(scratch, g, P);
            local_max = isnan(m) || isnan(local_max) ? NAN : m > local_max ? m : local_max;
            if (logged) {
                double *slot = slots + (size_t)EXTRA * t;
                slot[0] = l.pre, slot[1] = l.post, slot[2] = l.acc_pre, slot[3] = l.acc_post;
            }
        }
        /* The reduction also agrees on a pending stop signal (one rank's signal stops all of
         * them after the same iteration) and on whether anything is not finite: a non-finite
         * previous state counts as a non-finite gradient. */
        if (!state_ok) local_max = NAN;
        int sig = (int)stop_signal;
        if (o->poll && d->rank == 0 && o->poll(o->poll_ctx)) sig = STOP_REQUESTED;
        const float gmax =
            exact ? mt_dist_mean_exact_shard(d, &shards, &blocks, task_g, hi - lo, P, local_max, B, gshard, scratch,
                                             &sig)
                  : mt_dist_mean_fast_shard(d, &shards, scratch, local_max, B, gshard, &sig);
        if (isnan(gmax)) { /* the same on every rank: they stop together, θ untouched */
            mt_progress_finish(&progress);
            mt_cli_error(d, "training diverged at iteration %ld: a meta-gradient or the parameters are not finite "
                            "(NaN or infinity); nothing was applied or written after iteration %ld (earlier "
                            "checkpoints are intact); try a smaller optim.lr or meta.inner_lr", step, s);
            snprintf(status, status_len, "diverged at iteration %ld (non-finite meta-gradient)", step);
            rc = MT_EXIT_FAILURE;
            goto done;
        }
        /* The learned rates (after the network's parameters) take optim.lr · meta.alpha_lr: the
         * shard is cut where they start (Adam is elementwise, so the cut changes no bits). */
        const size_t cut = rates_from > shards.hi ? S : rates_from > shards.lo ? rates_from - shards.lo : 0;
        mt_adam_step(theta + shards.lo, adam_m, adam_v, gshard, cut, step, &adam);
        mt_adam_step(theta + shards.lo + cut, adam_m + cut, adam_v + cut, gshard + cut, S - cut, step, &adam_rates);
        state_ok = all_finite(theta + shards.lo, S) && all_finite(adam_m, S) && all_finite(adam_v, S);
        mt_dist_allgather_shards(d, &shards, theta);
        if (sig && step < end) {
            mt_progress_finish(&progress);
            if ((rc = save_checkpoint(d, &ts, step, path, sizeof path)) != 0) goto done;
            if (d->rank == 0)
                fprintf(out, "stopped by %s at iteration %ld: checkpoint %s\n  continue with the same command "
                       "(--resume auto); exit status %d\n",
                       signal_name(sig), step, path, MT_EXIT_CHECKPOINTED);
            snprintf(status, status_len, "stopped by %s at iteration %ld, checkpoint %s", signal_name(sig), step, path);
            res->iteration = step;
            res->loss_post = last.iteration ? last.loss_post : NAN;
            rc = MT_EXIT_CHECKPOINTED;
            goto done;
        }

        if (logged) {
            mt_dist_sum_double(d, slots, (size_t)EXTRA * B);
            double sums[EXTRA] = {0};
            for (int t = 0; t < B; t++)
                for (int i = 0; i < EXTRA; i++) sums[i] += slots[(size_t)EXTRA * t + i];
            memset(slots, 0, (size_t)EXTRA * B * sizeof *slots);
            double now = mt_now();
            last.iteration = step;
            last.loss_pre = sums[0] / B;
            last.loss_post = sums[1] / B;
            last.has_accuracy = model.loss == MT_LOSS_XENT;
            last.acc_pre = sums[2] / B;
            last.acc_post = sums[3] / B;
            last.tasks_per_s = (double)(step - s_log) * B / (now - t_log);
            last.elapsed_s = now - t_start;
            last.peak_rss_mb = peak_rss_mib(d, NULL);
            t_log = now, s_log = step;
            /* Every rank sees the same reduced losses, so they stop together. */
            if (!isfinite(last.loss_pre) || !isfinite(last.loss_post)) {
                mt_progress_finish(&progress);
                mt_cli_error(d, "training diverged at iteration %ld (query loss %g before, %g after adaptation); "
                                "try a smaller optim.lr or meta.inner_lr", step, last.loss_pre, last.loss_post);
                snprintf(status, status_len, "diverged at iteration %ld (non-finite query loss)", step);
                rc = MT_EXIT_FAILURE;
                goto done;
            }
            int ok = d->rank != 0 || mt_metrics_write(metrics, &last) == 0;
            if (!mt_dist_all(d, ok)) {
                mt_cli_error(d, "cannot write %s/metrics.jsonl: %s", cfg.run_dir, strerror(errno));
                rc = MT_EXIT_FAILURE;
                goto done;
            }
        }
        char line[128];
        int len = snprintf(line, sizeof line, "query loss %.4g -> %.4g", last.loss_pre, last.loss_post);
        if (last.has_accuracy)
            snprintf(line + len, sizeof line - (size_t)len, ", accuracy %.1f%% -> %.1f%%", 100 * last.acc_pre,
                     100 * last.acc_post);
        mt_progress_update(&progress, step, last.iteration ? line : "", logged);

        if (cfg.ckpt_every > 0 && step % cfg.ckpt_every == 0 && step != end &&
            (rc = save_checkpoint(d, &ts, step, path, sizeof path)) != 0)
            goto done;
    }
    mt_progress_finish(&progress);
    if ((rc = save_checkpoint(d, &ts, end, path, sizeof path)) != 0) goto done;
    double rss_own;
    const double rss_max = peak_rss_mib(d, &rss_own), pss_sum = pss_sum_mib(d);
    double flops = mt_flops_count() - flops_start; /* this rank's matrix products, then all ranks' */
    mt_dist_sum_double(d, &flops, 1);
    if (d->rank == 0) {
        double elapsed = mt_now() - t_start;
        fprintf(out, "%s: %ld iterations in %.1f s (%.0f tasks/s); query loss %.4g before, %.4g after adaptation",
                end == cfg.iterations ? "done" : "paused", end - start, elapsed, (double)(end - start) * B / elapsed,
                last.loss_pre, last.loss_post);
        if (last.has_accuracy) fprintf(out, "; accuracy %.1f%% -> %.1f%%", 100 * last.acc_pre, 100 * last.acc_post);
        fprintf(out, "\n  peak memory (resident set) per rank: %.1f MiB at most, %.1f MiB on rank 0\n", rss_max,
                rss_own);
        if (end > start)
            fprintf(out, "  matrix products: %.4g GFLOP per iteration, %.3g GFLOP/s per rank\n",
                    flops / 1e9 / (double)(end - start), flops / 1e9 / elapsed / d->size);
        if (pss_sum >= 0)
            fprintf(out, "  memory of all %d rank%s now: %.1f MiB (proportional set sizes summed: a page shared by "
                         "k ranks counts once)\n",
                    d->size, d->size == 1 ? "" : "s", pss_sum);
        fprintf(out, "  checkpoint %s\n  evaluate with: metatrain eval %s\n", path, path);
        fflush(out);
    }
    snprintf(status, status_len, "done at iteration %ld, checkpoint %s", end, path);
    res->iteration = end;
    res->loss_post = last.loss_post;

evaluate:
    if (o->eval_tasks > 0 && (rc = mt_eval_theta(d, &cfg, MT_STREAM_VAL, theta, o->eval_tasks, -1, &res->eval)) != 0)
        snprintf(status, status_len, "meta-validation failed");

done:
    if (metrics) fclose(metrics);
    mt_run_lock_release(&lock);
    mt_task_buffer_free(&tb);
    mt_meta_free(meta);
    free(msl_w);
    mt_family_close(&family);
    free(slots);
    free(scratch);
    mt_shards_free(&shards);
    mt_blocks_free(&blocks);
    free(slab);
    free(config_text);
    res->rc = rc;
    return rc;
}

/* `metatrain train`: one run of the configuration from the command line. */
static int train(const mt_dist *d, train_args *a, char *status, size_t status_len)
{
    mt_config cfg;
    int rc = mt_cli_load_config(d, a->config_path, a->sets, a->n_sets, &cfg);
    if (rc != 0) return rc;
    mt_train_result res;
    rc = mt_train_run(d, &cfg, &a->opts, &res);
    snprintf(status, status_len, "%s", res.status);
    return rc;
}

int mt_train_main(const mt_dist *d, int argc, char **argv)
{
    mt_train_catch_signals(); /* first: a signal during start-up must not kill the job */
    train_args args;
    int rc = parse_args(d, argc, argv, &args);
    if (rc >= 0) return rc;
    char status[sizeof ((mt_train_result *)0)->status] = "";
    rc = train(d, &args, status, sizeof status);
    if (d->rank == 0 && args.status_file) {
        if (!status[0])
            snprintf(status, sizeof status, "%s", rc == MT_EXIT_USAGE ? "bad input" : rc ? "failed" : "done");
        FILE *f = fopen(args.status_file, "w");
        int ok = f && fprintf(f, "%d %s\n", rc, status) > 0;
        if (f && fclose(f) != 0) ok = 0;
        if (!ok) fprintf(stderr, "metatrain: warning: cannot write --status-file %s: %s\n", args.status_file,
                         strerror(errno));
    }
    return rc;
}
