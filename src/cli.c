/* cli.c — shared pieces of the subcommands (see cli.h). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

static int capture_errors;
static char last_error[MT_ERR_LEN];

void mt_cli_error_capture(int on)
{
    capture_errors = on;
    last_error[0] = '\0';
}

const char *mt_cli_last_error(void) { return last_error; }

void mt_cli_error(const mt_dist *d, const char *fmt, ...)
{
    if (d->rank != 0) return;
    va_list ap;
    if (capture_errors) {
        va_start(ap, fmt);
        vsnprintf(last_error, sizeof last_error, fmt, ap);
        va_end(ap);
        return;
    }
    fputs("metatrain: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

long mt_read_file_max(const char *path, size_t max, char **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || S_ISDIR(st.st_mode)) {
        int saved = S_ISDIR(st.st_mode) ? EISDIR : errno;
        fclose(f);
        errno = saved;
        return -1;
    }
    /* Read at most max + 1 bytes: a device such as /dev/zero, a FIFO or a file that grows never
     * ends, and the extra byte tells "exactly max" from "larger". */
    size_t cap = 4096, len = 0;
    if (S_ISREG(st.st_mode) && st.st_size >= 0 && (unsigned long long)st.st_size <= max) cap = (size_t)st.st_size + 2;
    char *buf = mt_malloc(cap);
    size_t got;
    while (len <= max && (got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap && len <= max) {
            size_t grown_cap = cap > max / 2 ? max + 2 : cap * 2;
            char *grown = realloc(buf, grown_cap);
            MT_CHECK(grown, "out of memory reading %s", path);
            buf = grown, cap = grown_cap;
        }
    }
    int failed = ferror(f);
    int saved = errno;
    fclose(f);
    if (failed || len > max) {
        free(buf);
        errno = failed ? saved : EFBIG;
        return -1;
    }
    buf[len] = '\0';
    *out = buf;
    return (long)len;
}

long mt_read_file(const char *path, char **out) { return mt_read_file_max(path, MT_READ_FILE_MAX, out); }

int mt_cli_option(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *arg = argv[*i];
    const size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0 || (arg[n] != '\0' && arg[n] != '=')) return 0;
    if (arg[n] == '=') *value = arg + n + 1;
    else *value = *i + 1 < argc ? argv[++*i] : NULL;
    return 1;
}

int mt_cli_add_set(const mt_dist *d, char **sets, int *n_sets, const char *v)
{
    if (!v) {
        mt_cli_error(d, "--set needs section.key=value");
        return MT_EXIT_USAGE;
    }
    if (*n_sets == MT_MAX_SETS) {
        mt_cli_error(d, "more than %d --set options", MT_MAX_SETS);
        return MT_EXIT_USAGE;
    }
    sets[(*n_sets)++] = (char *)v;
    return 0;
}

int mt_cli_config_arg(const mt_dist *d, const char *cmd, const char *arg, const char **config)
{
    if (arg[0] == '-') {
        mt_cli_error(d, "unknown option '%s' (see metatrain %s --help)", arg, cmd);
        return MT_EXIT_USAGE;
    }
    if (*config) {
        mt_cli_error(d, "more than one CONFIG given ('%s' and '%s')", *config, arg);
        return MT_EXIT_USAGE;
    }
    *config = arg;
    return 0;
}

int mt_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int mt_cli_load_config(const mt_dist *d, const char *path, char **sets, int n_sets, mt_config *c)
{
    char err[MT_ERR_LEN] = "";
    mt_config_defaults(c);
    if (path) {
        char *text = NULL;
        long len = -1;
        if (d->rank == 0) {
            len = mt_read_file_max(path, MT_CONFIG_MAX_BYTES, &text);
            if (len < 0 && errno == EFBIG)
                snprintf(err, sizeof err, "config file %s is larger than %d MiB: not a config", path,
                         MT_CONFIG_MAX_BYTES >> 20);
            else if (len < 0 && errno == EISDIR)
                snprintf(err, sizeof err, "cannot read config file %s: it is a directory (give an .ini file)", path);
            else if (len < 0) snprintf(err, sizeof err, "cannot read config file %s: %s", path, strerror(errno));
            else if (memchr(text, '\0', (size_t)len)) {
                snprintf(err, sizeof err, "%s is not a text file", path);
                free(text);
                text = NULL;
                len = -1;
            }
        }
        len = mt_dist_bcast_text(d, &text, len);
        if (len < 0) {
            mt_cli_error(d, "%s", err);
            return MT_EXIT_USAGE;
        }
        int rc = mt_config_parse(c, text, path, err, sizeof err);
        free(text);
        if (rc != 0) {
            mt_cli_error(d, "%s", err);
            return MT_EXIT_USAGE;
        }
    }
    for (int i = 0; i < n_sets; i++)
        if (mt_config_set(c, sets[i], err, sizeof err) != 0) {
            mt_cli_error(d, "%s", err);
            return MT_EXIT_USAGE;
        }
    /* Only now are family and model final: a --set of a key they do not use is an error. */
    for (int i = 0; i < n_sets; i++)
        if (mt_config_check_set(c, sets[i], err, sizeof err) != 0) {
            mt_cli_error(d, "%s", err);
            return MT_EXIT_USAGE;
        }
    if (mt_config_check(c, err, sizeof err) != 0) {
        mt_cli_error(d, "%s%s%s", path ? path : "", path ? ": " : "", err);
        return MT_EXIT_USAGE;
    }
    return 0;
}

size_t mt_cli_memory_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t bytes = pages > 0 && page > 0 && (size_t)pages <= SIZE_MAX / (size_t)page ? (size_t)pages * (size_t)page : 0;
    const char *limit = getenv("MT_MEMORY_LIMIT");
    char *end;
    errno = 0;
    unsigned long long v = limit && *limit >= '0' && *limit <= '9' ? strtoull(limit, &end, 10) : 0;
    if (v > 0 && !errno && *end == '\0' && (bytes == 0 || v < bytes)) bytes = v > SIZE_MAX ? SIZE_MAX : (size_t)v;
    return bytes;
}

int mt_cli_read_checkpoint(const mt_dist *d, const char *path, mt_checkpoint *ck, mt_config *cfg)
{
    memset(ck, 0, sizeof *ck);
    char err[MT_ERR_LEN] = "";
    char *config_text = NULL;
    long len = -1;
    if (d->rank == 0 && mt_checkpoint_read(path, ck, err, sizeof err) == 0) {
        config_text = ck->config;
        len = (long)strlen(ck->config);
    }
    len = mt_dist_bcast_text(d, &config_text, len);
    if (len < 0) {
        mt_cli_error(d, "%s", err);
        return MT_EXIT_USAGE;
    }
    mt_config_defaults(cfg);
    char origin[MT_PATH_LEN + 16];
    snprintf(origin, sizeof origin, "%s:/config", path);
    const int ok = mt_config_parse(cfg, config_text, origin, err, sizeof err) == 0;
    if (d->rank != 0) free(config_text);
    if (!mt_dist_all(d, ok)) {
        mt_cli_error(d, "%s", err);
        mt_checkpoint_free(ck);
        return MT_EXIT_USAGE;
    }
    return 0;
}

int mt_cli_check_checkpoint_model(const mt_dist *d, const char *path, const mt_checkpoint *ck, const mt_model *m,
                                  const char *source)
{
    char err[MT_ERR_LEN] = "";
    int ok = 1;
    if (d->rank == 0 && ck->input_shape[0] > 0 &&
        (ck->input_shape[0] != m->in_c || ck->input_shape[1] != m->in_h || ck->input_shape[2] != m->in_w)) {
        snprintf(err, sizeof err, "it was trained on inputs of %dx%dx%d (CxHxW), but %s has %dx%dx%d",
                 ck->input_shape[0], ck->input_shape[1], ck->input_shape[2], source, m->in_c, m->in_h, m->in_w);
        ok = 0;
    } else if (d->rank == 0 && mt_checkpoint_match_model(ck, m, err, sizeof err) != 0) {
        ok = 0;
    } else if (d->rank == 0 && ck->input_shape[0] == 0) {
        fprintf(stderr,
                "metatrain: warning: %s predates stored input shapes (format version %d): only the layout was "
                "checked against the data (%dx%dx%d)\n",
                path, ck->version, m->in_c, m->in_h, m->in_w);
    }
    if (mt_dist_all(d, ok)) return 0;
    mt_cli_error(d, "%s: %s", path, err);
    return MT_EXIT_USAGE;
}

void mt_cli_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') printf("\\n");
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

void mt_cli_json_number(char out[32], double v)
{
    if (isfinite(v)) snprintf(out, 32, "%.9g", v);
    else snprintf(out, 32, "null");
}
