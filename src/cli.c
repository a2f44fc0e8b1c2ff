/* cli.c — shared pieces of the subcommands (see cli.h). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

void mt_cli_error(const mt_dist *d, const char *fmt, ...)
{
    if (d->rank != 0) return;
    va_list ap;
    fputs("metatrain: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

long mt_read_file(const char *path, char **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 4096, len = 0;
    char *buf = mt_malloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap) {
            cap *= 2;
            char *grown = realloc(buf, cap);
            MT_CHECK(grown, "out of memory reading %s", path);
            buf = grown;
        }
    }
    int failed = ferror(f);
    int saved = errno;
    fclose(f);
    if (failed) {
        free(buf);
        errno = saved;
        return -1;
    }
    buf[len] = '\0';
    *out = buf;
    return (long)len;
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
            len = mt_read_file(path, &text);
            if (len < 0) snprintf(err, sizeof err, "cannot read config file %s: %s", path, strerror(errno));
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
    if (mt_config_check(c, err, sizeof err) != 0) {
        mt_cli_error(d, "%s%s%s", path ? path : "", path ? ": " : "", err);
        return MT_EXIT_USAGE;
    }
    return 0;
}
