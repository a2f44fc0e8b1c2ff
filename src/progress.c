/* progress.c — progress bar and log lines (see progress.h). */
#define _POSIX_C_SOURCE 200809L
#include "progress.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common.h"

int mt_progress_parse(const char *s, mt_progress_mode *out)
{
    static const char *names[] = {"auto", "bar", "lines", "none"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (mt_progress_mode)i;
            return 0;
        }
    return -1;
}

/* Character devices that are terminals: ttys, the console, and pseudo-terminals (pts). */
static int is_terminal_device(const struct stat *st)
{
    if (!S_ISCHR(st->st_mode)) return 0;
    unsigned maj = major(st->st_rdev);
    return maj == 4 || maj == 5 || (maj >= 136 && maj <= 143);
}

/* Is the stdout of our launcher (parent process, when it is mpirun) a terminal? */
static int launcher_on_terminal(void)
{
    char path[64], comm[64] = "";
    pid_t parent = getppid();
    snprintf(path, sizeof path, "/proc/%d/comm", (int)parent);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    if (!fgets(comm, sizeof comm, f)) comm[0] = '\0';
    fclose(f);
    comm[strcspn(comm, "\n")] = '\0';
    if (strcmp(comm, "mpirun") != 0 && strcmp(comm, "mpiexec") != 0 && strcmp(comm, "orterun") != 0 &&
        strcmp(comm, "prterun") != 0)
        return 0;
    struct stat st;
    snprintf(path, sizeof path, "/proc/%d/fd/1", (int)parent);
    return stat(path, &st) == 0 && is_terminal_device(&st);
}

static mt_progress_mode resolve(mt_progress_mode mode, FILE *out)
{
    if (mode != MT_PROGRESS_AUTO) return mode;
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK"))
        return launcher_on_terminal() ? MT_PROGRESS_BAR : MT_PROGRESS_LINES;
    if (getenv("SLURM_JOB_ID")) return MT_PROGRESS_LINES;
    return isatty(fileno(out)) ? MT_PROGRESS_BAR : MT_PROGRESS_LINES;
}

void mt_progress_start(mt_progress *p, mt_progress_mode mode, FILE *out, const char *label, long first, long total)
{
    p->first = first;
    p->mode = resolve(mode, out);
    p->out = out;
    p->label = label;
    p->total = total;
    p->start = mt_now();
    p->last_draw = 0.0;
}

static void format_duration(char *buf, size_t len, double s)
{
    long t = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
    if (t >= 3600) snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, len, "%02ld:%02ld", t / 60, t % 60);
}

/* "312 it/s", or "8.7 s/it" for slow work. */
static void format_rate(char *buf, size_t len, double rate)
{
    if (rate >= 1.0 || rate <= 0.0) snprintf(buf, len, "%.0f it/s", rate);
    else snprintf(buf, len, "%.1f s/it", 1.0 / rate);
}

void mt_progress_update(mt_progress *p, long done, const char *status, int logged)
{
    double now = mt_now(), elapsed = now - p->start;
    double rate = elapsed > 0 ? (double)(done - p->first) / elapsed : 0.0;
    char eta[32], spent[32], speed[32];
    format_rate(speed, sizeof speed, rate);
    format_duration(eta, sizeof eta, rate > 0 ? (double)(p->total - done) / rate : 0.0);
    format_duration(spent, sizeof spent, elapsed);
    switch (p->mode) {
    case MT_PROGRESS_BAR: {
        if (done < p->total && now - p->last_draw < 0.1) return;
        p->last_draw = now;
        enum { WIDTH = 24 };
        char bar[WIDTH + 1];
        int filled = p->total > 0 ? (int)((double)WIDTH * done / p->total) : WIDTH;
        for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '.';
        bar[WIDTH] = '\0';
        fprintf(p->out, "\r%s [%s] %ld/%ld %3d%% %s ETA %s  %s\033[K", p->label, bar, done, p->total,
                p->total > 0 ? (int)(100.0 * done / p->total) : 100, speed, eta, status ? status : "");
        fflush(p->out);
        break;
    }
    case MT_PROGRESS_LINES:
        if (!logged) return;
        fprintf(p->out, "%s %ld/%ld  %s  elapsed %s  ETA %s  %s\n", p->label, done, p->total, speed, spent, eta,
                status ? status : "");
        fflush(p->out);
        break;
    case MT_PROGRESS_NONE:
    case MT_PROGRESS_AUTO: break;
    }
}

void mt_progress_finish(mt_progress *p)
{
    if (p->mode == MT_PROGRESS_BAR) {
        fputc('\n', p->out);
        fflush(p->out);
    }
}
