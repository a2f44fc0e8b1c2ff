/*
 * faultshim.c — a test-only LD_PRELOAD library that makes the n-th file operation on
 * matching paths fail, or the process die, so the tests can prove that a checkpoint
 * survives every I/O fault. Never linked into metatrain: the tests preload it
 * (`mpirun -x LD_PRELOAD=.../libmt_faultshim.so ...`).
 *
 * Environment (read once, at load):
 *   MT_FAULT_PATH   substring a path must contain to count (default ".partial")
 *   MT_FAULT_OP     write | fsync | rename | open | close: which kind of call to count
 *                   (write covers write, pwrite, pwritev, writev and their 64-bit names;
 *                   close counts only descriptors opened for writing, the ones whose close
 *                   can report a failed write-back)
 *   MT_FAULT_N      fail the n-th counted call (1-based); 0 or unset: count only
 *   MT_FAULT_ERRNO  ENOSPC | EIO | EDQUOT | die | delay:MS (die: _exit(70) instead of
 *                   failing, as a node that crashes mid-write; delay: sleep MS milliseconds,
 *                   then do the call: a slow file system, to signal a job at that moment)
 *   MT_FAULT_RANK   only in the process with this OMPI_COMM_WORLD_RANK (default 0; -1: all)
 *   MT_FAULT_ONCE   1: only the n-th call fails; otherwise every counted call from the n-th on
 *                   fails (a full disk stays full)
 *   MT_FAULT_LOG    a file to which each process appends "rank op count" for every op at exit
 *                   (how many calls a checkpoint makes: the range of n to test)
 * A fired fault prints one line on stderr ("faultshim: rank R: write #N on PATH -> ENOSPC").
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum { OP_WRITE, OP_FSYNC, OP_RENAME, OP_OPEN, OP_CLOSE, N_OPS };
static const char *const op_names[N_OPS] = {"write", "fsync", "rename", "open", "close"};

static struct {
    int ready, active, op, rank, once, err, die, delay_ms;
    long n;
    const char *path, *log;
    long count[N_OPS];
} cfg;

static void setup(void)
{
    if (cfg.ready) return;
    cfg.ready = 1;
    cfg.path = getenv("MT_FAULT_PATH");
    if (!cfg.path || !cfg.path[0]) cfg.path = ".partial";
    cfg.log = getenv("MT_FAULT_LOG");
    const char *op = getenv("MT_FAULT_OP"), *n = getenv("MT_FAULT_N"), *e = getenv("MT_FAULT_ERRNO");
    const char *r = getenv("MT_FAULT_RANK"), *me = getenv("OMPI_COMM_WORLD_RANK"), *once = getenv("MT_FAULT_ONCE");
    cfg.op = -1;
    for (int i = 0; op && i < N_OPS; i++)
        if (strcmp(op, op_names[i]) == 0) cfg.op = i;
    cfg.n = n ? atol(n) : 0;
    cfg.rank = r ? atoi(r) : 0;
    cfg.once = once && strcmp(once, "1") == 0;
    cfg.err = ENOSPC;
    if (e && strcmp(e, "EIO") == 0) cfg.err = EIO;
    if (e && strcmp(e, "EDQUOT") == 0) cfg.err = EDQUOT;
    cfg.die = e && strcmp(e, "die") == 0;
    if (e && strncmp(e, "delay:", 6) == 0) cfg.delay_ms = atoi(e + 6);
    int my_rank = me ? atoi(me) : 0;
    cfg.active = cfg.op >= 0 && cfg.n > 0 && (cfg.rank < 0 || cfg.rank == my_rank);
}

static int path_matches(const char *path)
{
    setup();
    return path && strstr(path, cfg.path) != NULL;
}

static int fd_matches(int fd)
{
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, target, sizeof target - 1);
    if (len <= 0) return 0;
    target[len] = '\0';
    return path_matches(target);
}

/* Counts a matching call; returns non-zero (errno set) when it must fail. */
static int fault(int op, const char *what)
{
    setup();
    long k = ++cfg.count[op];
    if (!cfg.active || op != cfg.op || k < cfg.n || (cfg.once && k != cfg.n)) return 0;
    const char *rank = getenv("OMPI_COMM_WORLD_RANK");
    char line[4200];
    int len = snprintf(line, sizeof line, "faultshim: rank %s: %s #%ld on %s -> %s\n", rank ? rank : "0",
                       op_names[op], k, what, cfg.die ? "die" : cfg.delay_ms ? "delay" : strerror(cfg.err));
    if (len > 0) {
        ssize_t ignored = write(2, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
        (void)ignored;
    }
    if (cfg.die) _exit(70);
    if (cfg.delay_ms) {
        struct timespec ts = {cfg.delay_ms / 1000, (long)(cfg.delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        return 0;
    }
    errno = cfg.err;
    return 1;
}

static const char *fd_name(int fd)
{
    static char target[4096];
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, target, sizeof target - 1);
    target[len > 0 ? len : 0] = '\0';
    return target;
}

/* The next definition of name (libc's), looked up once. */
#define REAL(name)                                                                             \
    static __typeof__(&name) real_##name;                                                      \
    if (!real_##name) real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t n)
{
    REAL(write);
    if (fd > 2 && fd_matches(fd) && fault(OP_WRITE, fd_name(fd))) return -1;
    return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    REAL(pwrite);
    if (fd_matches(fd) && fault(OP_WRITE, fd_name(fd))) return -1;
    return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    REAL(pwrite64);
    if (fd_matches(fd) && fault(OP_WRITE, fd_name(fd))) return -1;
    return real_pwrite64(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    REAL(writev);
    if (fd > 2 && fd_matches(fd) && fault(OP_WRITE, fd_name(fd))) return -1;
    return real_writev(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    REAL(pwritev);
    if (fd_matches(fd) && fault(OP_WRITE, fd_name(fd))) return -1;
    return real_pwritev(fd, iov, cnt, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    REAL(pwritev64);
    if (fd_matches(fd) && fault(OP_WRITE, fd_name(fd))) return -1;
    return real_pwritev64(fd, iov, cnt, off);
}

int fsync(int fd)
{
    REAL(fsync);
    if (fd_matches(fd) && fault(OP_FSYNC, fd_name(fd))) return -1;
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    REAL(fdatasync);
    if (fd_matches(fd) && fault(OP_FSYNC, fd_name(fd))) return -1;
    return real_fdatasync(fd);
}

int rename(const char *from, const char *to)
{
    REAL(rename);
    if ((path_matches(from) || path_matches(to)) && fault(OP_RENAME, from)) return -1;
    return real_rename(from, to);
}

int close(int fd)
{
    REAL(close);
    /* Only a descriptor that was written can report a failed write-back on close (NFS). */
    int mode = fd > 2 ? fcntl(fd, F_GETFL) : -1;
    if (mode >= 0 && (mode & O_ACCMODE) != O_RDONLY && fd_matches(fd) && fault(OP_CLOSE, fd_name(fd))) {
        int saved = errno;
        real_close(fd); /* like a failed NFS close: the descriptor is gone, the error is reported */
        errno = saved;
        return -1;
    }
    return real_close(fd);
}

static int open_common(const char *path, int flags, mode_t mode, int (*real)(const char *, int, ...))
{
    if (path_matches(path) && fault(OP_OPEN, path)) return -1;
    return real(path, flags, mode);
}

/* The mode argument of open(path, flags, ...): present only with O_CREAT. */
#define OPEN_MODE(flags, mode)                                                                 \
    do {                                                                                       \
        if ((flags) & O_CREAT) {                                                               \
            va_list ap;                                                                        \
            va_start(ap, flags);                                                               \
            mode = (mode_t)va_arg(ap, int);                                                    \
            va_end(ap);                                                                        \
        }                                                                                      \
    } while (0)

int open(const char *path, int flags, ...)
{
    REAL(open);
    mode_t mode = 0;
    OPEN_MODE(flags, mode);
    return open_common(path, flags, mode, real_open);
}

int open64(const char *path, int flags, ...)
{
    REAL(open64);
    mode_t mode = 0;
    OPEN_MODE(flags, mode);
    return open_common(path, flags, mode, real_open64);
}

__attribute__((destructor)) static void report(void)
{
    setup();
    if (!cfg.log) return;
    FILE *f = fopen(cfg.log, "a");
    if (!f) return;
    const char *rank = getenv("OMPI_COMM_WORLD_RANK");
    for (int i = 0; i < N_OPS; i++) fprintf(f, "%s %s %ld\n", rank ? rank : "0", op_names[i], cfg.count[i]);
    fclose(f);
}
