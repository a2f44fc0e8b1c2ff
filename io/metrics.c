/* metrics.c — the metrics.jsonl writer (see metrics.h). */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <string.h>

FILE *mt_metrics_open(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    if (!f) snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
    return f;
}

/* A JSON number, or null. */
static void number(char *out, size_t len, double v)
{
    if (isfinite(v)) snprintf(out, len, "%.9g", v);
    else snprintf(out, len, "null");
}

int mt_metrics_write(FILE *f, const mt_metrics_row *r)
{
    char pre[32], post[32], rate[32], elapsed[32];
    number(pre, sizeof pre, r->loss_pre);
    number(post, sizeof post, r->loss_post);
    number(rate, sizeof rate, r->tasks_per_s);
    number(elapsed, sizeof elapsed, r->elapsed_s);
    fprintf(f, "{\"iteration\": %ld, \"loss_pre\": %s, \"loss_post\": %s, ", r->iteration, pre, post);
    if (r->has_accuracy) {
        char apre[32], apost[32];
        number(apre, sizeof apre, r->acc_pre);
        number(apost, sizeof apost, r->acc_post);
        fprintf(f, "\"acc_pre\": %s, \"acc_post\": %s, ", apre, apost);
    }
    fprintf(f, "\"tasks_per_s\": %s, \"elapsed_s\": %s", rate, elapsed);
    if (r->peak_rss_mb > 0) fprintf(f, ", \"peak_rss_mb\": %.1f", r->peak_rss_mb);
    fputs("}\n", f);
    return fflush(f) == 0 && !ferror(f) ? 0 : -1;
}
