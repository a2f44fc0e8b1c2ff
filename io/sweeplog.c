/* sweeplog.c — a sweep's journal and table (see sweeplog.h). */
#define _POSIX_C_SOURCE 200809L
#include "sweeplog.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "ioutil.h"

#define JOURNAL_TAG "v1"

int mt_sweep_log_lock(const char *dir, char *err, size_t errlen)
{
    char path[MT_H5_PATH_LEN];
    snprintf(path, sizeof path, "%s/sweep.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    while (fcntl(fd, F_SETLKW, &fl) != 0) {
        if (errno == EINTR) continue; /* a signal: the caller acts on it after the write */
        snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

void mt_sweep_log_unlock(int fd)
{
    if (fd >= 0) close(fd); /* closing releases the fcntl lock */
}

/* A message on one journal line: tabs and line breaks would split it. */
static void flatten(const char *in, char *out, size_t len)
{
    size_t i = 0;
    for (; in[i] && i + 1 < len; i++) out[i] = in[i] == '\t' || in[i] == '\n' || in[i] == '\r' ? ' ' : in[i];
    out[i] = '\0';
}

int mt_sweep_log_append(const char *dir, const mt_sweep_record *r, char *err, size_t errlen)
{
    char path[MT_H5_PATH_LEN], msg[sizeof r->message];
    snprintf(path, sizeof path, "%s/sweep.journal", dir);
    flatten(r->message, msg, sizeof msg);
    FILE *f = fopen(path, "a");
    int ok = f && fprintf(f, "%s\t%s\t%d\t%ld\t%s\t%.9g\t%.9g\t%.9g\t%.3f\t%s\n", JOURNAL_TAG, r->id, r->rung,
                          r->iterations, r->status, r->train_loss, r->eval_mean, r->eval_ci95, r->wall_s, msg) > 0;
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (!ok) snprintf(err, errlen, "cannot append to %s: %s", path, strerror(errno));
    if (f && fclose(f) != 0 && ok) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        ok = 0;
    }
    return ok ? 0 : -1;
}

/* Splits a journal line into its fields; 0 on success. */
static int parse_line(char *line, mt_sweep_record *r)
{
    char *field[10];
    int n = 0;
    line[strcspn(line, "\n")] = '\0';
    for (char *p = line; n < 10; n++) {
        field[n] = p;
        char *tab = strchr(p, '\t');
        if (!tab) {
            n++;
            break;
        }
        *tab = '\0';
        p = tab + 1;
    }
    if (n != 10 || strcmp(field[0], JOURNAL_TAG) != 0) return -1;
    memset(r, 0, sizeof *r);
    char *end;
    if (strlen(field[1]) >= sizeof r->id || !field[1][0]) return -1;
    snprintf(r->id, sizeof r->id, "%s", field[1]);
    r->rung = (int)strtol(field[2], &end, 10);
    if (*end || r->rung < 0 || r->rung >= MT_SWEEP_MAX_RUNGS) return -1;
    r->iterations = strtol(field[3], &end, 10);
    if (*end || r->iterations < 0) return -1;
    if (strcmp(field[4], "done") && strcmp(field[4], "stopped") && strcmp(field[4], "failed")) return -1;
    snprintf(r->status, sizeof r->status, "%s", field[4]);
    double *num[4] = {&r->train_loss, &r->eval_mean, &r->eval_ci95, &r->wall_s};
    for (int i = 0; i < 4; i++) {
        *num[i] = strtod(field[5 + i], &end);
        if (*end || end == field[5 + i]) return -1;
    }
    snprintf(r->message, sizeof r->message, "%s", field[9]);
    return 0;
}

long mt_sweep_log_read(const char *dir, mt_sweep_record **out, char *err, size_t errlen)
{
    char path[MT_H5_PATH_LEN];
    snprintf(path, sizeof path, "%s/sweep.journal", dir);
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT) return 0;
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    long n = 0, cap = 0;
    char *line = NULL;
    size_t linecap = 0;
    while (getline(&line, &linecap, f) > 0) {
        mt_sweep_record r;
        if (parse_line(line, &r) != 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            mt_sweep_record *grown = realloc(*out, (size_t)cap * sizeof **out);
            MT_CHECK(grown, "out of memory reading %s", path);
            *out = grown;
        }
        (*out)[n++] = r;
    }
    free(line);
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        snprintf(err, errlen, "cannot read %s: read error", path);
        free(*out);
        *out = NULL;
        return -1;
    }
    return n;
}

int mt_sweep_log_summary(const mt_sweep_record *recs, long n, const char *id, mt_sweep_record *out)
{
    int found = 0;
    double wall = 0.0;
    for (long i = 0; i < n; i++) {
        if (strcmp(recs[i].id, id) != 0) continue;
        wall += recs[i].wall_s;
        if (!found || recs[i].rung >= out->rung) *out = recs[i];
        found = 1;
    }
    if (found) out->wall_s = wall;
    return found ? 0 : -1;
}

/* One CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180). */
static void csv_field(FILE *f, const char *s, int last)
{
    if (strpbrk(s, ",\"\r\n")) {
        fputc('"', f);
        for (const char *p = s; *p; p++) {
            if (*p == '"') fputc('"', f);
            fputc(*p, f);
        }
        fputc('"', f);
    } else fputs(s, f);
    fputc(last ? '\n' : ',', f);
}

static void number(char *out, size_t len, double v, const char *fmt)
{
    if (isnan(v)) out[0] = '\0';
    else snprintf(out, len, fmt, v);
}

int mt_sweep_csv_write(const char *dir, const mt_sweep_spec *s, const mt_sweep_point *pts, long n_points,
                       const mt_sweep_record *recs, long n_recs, const char *metric, const int *running, char *err,
                       size_t errlen)
{
    char path[MT_H5_PATH_LEN], tmp[MT_H5_PATH_LEN + 16];
    snprintf(path, sizeof path, "%s/sweep.csv", dir);
    snprintf(tmp, sizeof tmp, "%s.partial", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    csv_field(f, "point", 0);
    for (int k = 0; k < s->n_axes; k++) csv_field(f, s->axis[k].key, 0);
    fputs("rung,iterations,train_loss,eval_metric,eval_mean,eval_ci95,wall_s,status\n", f);
    for (long i = 0; i < n_points; i++) {
        mt_sweep_record r;
        const int has = mt_sweep_log_summary(recs, n_recs, pts[i].id, &r) == 0;
        csv_field(f, pts[i].id, 0);
        for (int k = 0; k < s->n_axes; k++) csv_field(f, pts[i].value[k], 0);
        char v[64], status[sizeof r.message + 32];
        if (!has) {
            fputs(",,,", f);
            csv_field(f, metric, 0);
            fputs(",,,", f);
            csv_field(f, running && running[i] ? "running" : "pending", 1);
            continue;
        }
        snprintf(v, sizeof v, "%d", r.rung + 1); /* 1: the first rung */
        csv_field(f, v, 0);
        snprintf(v, sizeof v, "%ld", r.iterations);
        csv_field(f, v, 0);
        number(v, sizeof v, r.train_loss, "%.6g");
        csv_field(f, v, 0);
        csv_field(f, metric, 0);
        number(v, sizeof v, r.eval_mean, "%.6g");
        csv_field(f, v, 0);
        number(v, sizeof v, r.eval_ci95, "%.6g");
        csv_field(f, v, 0);
        number(v, sizeof v, r.wall_s, "%.1f");
        csv_field(f, v, 0);
        if (strcmp(r.status, "failed") == 0) snprintf(status, sizeof status, "failed: %s", r.message);
        else if (running && running[i]) snprintf(status, sizeof status, "running");
        else snprintf(status, sizeof status, "%s", r.status);
        csv_field(f, status, 1);
    }
    int ok = !ferror(f);
    if (fclose(f) != 0) ok = 0;
    if (!ok) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (mt_fsync_rename(tmp, path, err, errlen) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}
