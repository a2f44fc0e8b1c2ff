/* rundir.c — the run lock and stale partial files (see rundir.h). */
#define _POSIX_C_SOURCE 200809L
#include "rundir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ioutil.h"

/* What the holder writes into run.lock: enough for the refused job to name it. */
static void describe_self(char *out, size_t len)
{
    char host[256] = "unknown-host";
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    const char *job = getenv("SLURM_JOB_ID");
    char when[32] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(out, len, "host %s pid %ld%s%s since %s\n", host, (long)getpid(), job ? " slurm job " : "",
             job ? job : "", when);
}

int mt_run_lock_take(mt_run_lock *lk, const char *dir, char *err, size_t errlen)
{
    lk->fd = -1;
    if (mt_mkdir_p(dir, err, errlen) != 0) return -1;
    char path[MT_H5_PATH_LEN];
    snprintf(path, sizeof path, "%s/run.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open the run lock %s: %s", path, strerror(errno));
        return -1;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        int e = errno;
        if (e == EACCES || e == EAGAIN) {
            char holder[512] = "";
            ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
            holder[n > 0 ? n : 0] = '\0';
            holder[strcspn(holder, "\n")] = '\0';
            struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
            if (!holder[0] && fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK)
                snprintf(holder, sizeof holder, "pid %ld", (long)who.l_pid);
            snprintf(err, errlen,
                     "run directory %s is in use by another job (%s); two jobs on one run.dir would overwrite each "
                     "other's checkpoints: wait for it, stop it, or choose another run.dir",
                     dir, holder[0] ? holder : "holder unknown");
            close(fd);
            return 1;
        }
        snprintf(err, errlen, "cannot lock %s: %s (on a file system without locks, mount it with locking)", path,
                 strerror(e));
        close(fd);
        return -1;
    }
    char me[512];
    describe_self(me, sizeof me);
    size_t len = strlen(me);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, me, len, 0) != (ssize_t)len) {
        snprintf(err, errlen, "cannot write the run lock %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    lk->fd = fd;
    return 0;
}

void mt_run_lock_release(mt_run_lock *lk)
{
    if (!lk || lk->fd < 0) return;
    close(lk->fd); /* closing drops the fcntl lock */
    lk->fd = -1;
}

/* A name a killed writer leaves behind: <something we write>.partial. */
static int is_stale_partial(const char *name)
{
    size_t n = strlen(name), suffix = strlen(".partial");
    if (n <= suffix || strcmp(name + n - suffix, ".partial") != 0) return 0;
    if (strncmp(name, "ckpt-", 5) == 0) return 1;
    return strcmp(name, "config.ini.partial") == 0 || strcmp(name, "metrics.jsonl.partial") == 0;
}

int mt_run_clean_partials(const char *dir, FILE *out, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot list %s: %s", dir, strerror(errno));
        return -1;
    }
    int removed = 0, status = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_stale_partial(e->d_name)) continue;
        char path[MT_H5_PATH_LEN];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0) {
            snprintf(err, errlen, "cannot remove the stale partial file %s: %s", path, strerror(errno));
            status = -1;
            break;
        }
        if (out) fprintf(out, "  removed %s (left by a job that stopped while writing it)\n", path);
        removed++;
    }
    closedir(d);
    return status ? -1 : removed;
}
