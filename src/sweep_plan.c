/* sweep_plan.c — the [sweep] section, points, rungs and promotions (see sweep_plan.h). */
#include "sweep_plan.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "rng.h"

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void mt_sweep_spec_init(mt_sweep_spec *s, uint64_t run_seed)
{
    memset(s, 0, sizeof *s);
    s->seed = run_seed;
    s->ranks_per_run = 1;
    s->min_iterations = 100;
    s->eta = 3;
    s->eval_tasks = 100;
}

void mt_sweep_spec_free(mt_sweep_spec *s)
{
    if (!s) return;
    for (int i = 0; i < s->n_axes; i++) free(s->axis[i].values);
    memset(s, 0, sizeof *s);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *trim(end) != '\0' || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* "uniform(a, b)" or "log-uniform(a, b)": 1 and the range if text is one, 0 if it is not a
 * range at all (a list), -1 with err if it is a malformed one. */
static int parse_range(mt_sweep_axis *a, const char *text, char *err, size_t errlen)
{
    const char *open = strchr(text, '(');
    int log_scale;
    if (strncmp(text, "uniform(", 8) == 0) log_scale = 0;
    else if (strncmp(text, "log-uniform(", 12) == 0) log_scale = 1;
    else return 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", open + 1);
    char *close = strrchr(buf, ')'), *comma = strchr(buf, ',');
    if (!close || *trim(close + 1) != '\0' || !comma || comma > close) goto bad;
    *close = '\0', *comma = '\0';
    if (parse_double(trim(buf), &a->lo) != 0 || parse_double(trim(comma + 1), &a->hi) != 0) goto bad;
    if (!(a->lo < a->hi)) {
        set_err(err, errlen, "%s = %s: the range needs low < high", a->key, text);
        return -1;
    }
    if (log_scale && !(a->lo > 0)) {
        set_err(err, errlen, "%s = %s: log-uniform needs a positive low end", a->key, text);
        return -1;
    }
    if (a->kind == MT_KEY_KIND_STRING) {
        set_err(err, errlen, "%s = %s: a range needs a numeric key; list the values instead", a->key, text);
        return -1;
    }
    a->dist = log_scale ? MT_SWEEP_LOG_UNIFORM : MT_SWEEP_UNIFORM;
    return 1;
bad:
    set_err(err, errlen, "%s = %s: expected %s(LOW, HIGH) with two numbers", a->key, text,
            log_scale ? "log-uniform" : "uniform");
    return -1;
}

/* Sets axis `key` (section.key) to the value text: a range or a comma-separated list. */
static int set_axis(mt_sweep_spec *s, const char *key, const char *text, char *err, size_t errlen)
{
    char section[64], name[64];
    const char *dot = strchr(key, '.');
    if (!dot || (size_t)(dot - key) >= sizeof section || strlen(dot + 1) >= sizeof name) {
        set_err(err, errlen, "%s is not a config key (section.key)", key);
        return -1;
    }
    memcpy(section, key, (size_t)(dot - key));
    section[dot - key] = '\0';
    snprintf(name, sizeof name, "%s", dot + 1);
    const int kind = mt_config_key_kind(section, name);
    if (kind == 0) {
        set_err(err, errlen, "[sweep] %s: there is no config key %s (see metatrain train --help)", key, key);
        return -1;
    }
    if (strcmp(key, "run.dir") == 0) {
        set_err(err, errlen, "[sweep] run.dir cannot be swept: every point lives in run.dir/<point id>/");
        return -1;
    }
    mt_sweep_axis *a = NULL;
    for (int i = 0; i < s->n_axes; i++)
        if (strcmp(s->axis[i].key, key) == 0) a = &s->axis[i]; /* --set replaces a file's list */
    if (!a) {
        if (s->n_axes == MT_SWEEP_MAX_AXES) {
            set_err(err, errlen, "[sweep] %s: more than %d swept keys", key, MT_SWEEP_MAX_AXES);
            return -1;
        }
        a = &s->axis[s->n_axes++];
        memset(a, 0, sizeof *a);
        snprintf(a->key, sizeof a->key, "%s", key);
    }
    free(a->values);
    a->values = NULL;
    a->n_values = 0;
    a->kind = kind;
    int r = parse_range(a, text, err, errlen);
    if (r != 0) return r < 0 ? -1 : 0;
    a->dist = MT_SWEEP_LIST;
    a->values = mt_calloc(MT_SWEEP_MAX_VALUES, sizeof *a->values);
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[256];
        if (len >= sizeof item) {
            set_err(err, errlen, "[sweep] %s: a value is longer than %d characters", key, MT_SWEEP_VALUE_LEN - 1);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        char *v = trim(item);
        if (!*v) {
            set_err(err, errlen, "[sweep] %s = %s: an empty value in the list", key, text);
            return -1;
        }
        if (strlen(v) >= MT_SWEEP_VALUE_LEN) {
            set_err(err, errlen, "[sweep] %s: value '%s' is longer than %d characters", key, v, MT_SWEEP_VALUE_LEN - 1);
            return -1;
        }
        if (a->n_values == MT_SWEEP_MAX_VALUES) {
            set_err(err, errlen, "[sweep] %s: more than %d values", key, MT_SWEEP_MAX_VALUES);
            return -1;
        }
        for (int i = 0; i < a->n_values; i++)
            if (strcmp(a->values[i], v) == 0) {
                set_err(err, errlen, "[sweep] %s: value '%s' is listed twice", key, v);
                return -1;
            }
        snprintf(a->values[a->n_values++], MT_SWEEP_VALUE_LEN, "%s", v);
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

static int parse_int(const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

/* One key of the [sweep] section (key and value trimmed). Message without origin. */
static int set_key(mt_sweep_spec *s, const char *key, const char *value, char *err, size_t errlen)
{
    long x;
    if (strchr(key, '.')) return set_axis(s, key, value, err, errlen);
    if (strcmp(key, "method") == 0) {
        if (strcmp(value, "grid") != 0 && strcmp(value, "random") != 0) goto bad_choice;
        s->random = strcmp(value, "random") == 0;
        return 0;
    }
    if (strcmp(key, "schedule") == 0) {
        if (strcmp(value, "none") != 0 && strcmp(value, "halving") != 0) goto bad_choice;
        s->halving = strcmp(value, "halving") == 0;
        return 0;
    }
    if (strcmp(key, "seed") == 0) {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(value, &end, 10);
        if (errno || end == value || *end || value[0] == '-') goto bad_number;
        s->seed = (uint64_t)u;
        s->seed_set = 1;
        return 0;
    }
    struct { const char *name; long lo, hi; } ints[] = {
        {"points", 1, MT_SWEEP_MAX_POINTS}, {"ranks_per_run", 1, 1 << 20}, {"min_iterations", 1, 4294967295L},
        {"eta", 2, 1000}, {"eval_tasks", 0, 100000000}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (strcmp(key, ints[i].name) != 0) continue;
        if (parse_int(value, ints[i].lo, ints[i].hi, &x) != 0) {
            set_err(err, errlen, "[sweep] %s = %s is not a whole number in [%ld, %ld]", key, value, ints[i].lo,
                    ints[i].hi);
            return -1;
        }
        switch (i) {
        case 0: s->points = (int)x; break;
        case 1: s->ranks_per_run = (int)x; break;
        case 2: s->min_iterations = x; break;
        case 3: s->eta = (int)x; break;
        default: s->eval_tasks = x; break;
        }
        return 0;
    }
    set_err(err, errlen,
            "unknown key '%s' in [sweep] (keys: method, points, seed, ranks_per_run, schedule, min_iterations, eta, "
            "eval_tasks, and swept config keys written section.key)",
            key);
    return -1;
bad_choice:
    set_err(err, errlen, "[sweep] %s = %s is not one of: %s", key, value,
            strcmp(key, "method") == 0 ? "grid|random" : "none|halving");
    return -1;
bad_number:
    set_err(err, errlen, "[sweep] %s = %s is not a whole number >= 0", key, value);
    return -1;
}

/* ---- the [sweep] section through libinih, with line numbers -------------------------- */

typedef struct {
    mt_sweep_spec *spec;
    mt_ini_input in;
    int err_line;
    char err[1024];
    char seen[64][64]; /* keys given so far (duplicates are errors) */
    int seen_line[64], n_seen;
} sweep_parse;

static int sweep_handler(void *user, const char *section, const char *name, const char *value)
{
    sweep_parse *ps = user;
    if (ps->err_line || strcmp(section, "sweep") != 0) return ps->err_line == 0;
    for (int i = 0; i < ps->n_seen; i++)
        if (strcmp(ps->seen[i], name) == 0) {
            snprintf(ps->err, sizeof ps->err, "[sweep] %s is given twice (first on line %d)", name, ps->seen_line[i]);
            ps->err_line = ps->in.line;
            return 0;
        }
    if (ps->n_seen < 64) {
        snprintf(ps->seen[ps->n_seen], sizeof ps->seen[0], "%s", name);
        ps->seen_line[ps->n_seen++] = ps->in.line;
    }
    char v[1024];
    snprintf(v, sizeof v, "%s", value);
    if (set_key(ps->spec, name, trim(v), ps->err, sizeof ps->err) != 0) {
        ps->err_line = ps->in.line;
        return 0;
    }
    return 1;
}

/* 1 iff the line is a section header; its name (trimmed) goes to name. */
static int section_header(const char *line, size_t len, char *name, size_t namelen)
{
    while (len > 0 && (*line == ' ' || *line == '\t')) line++, len--;
    if (len == 0 || *line != '[') return 0;
    const char *end = memchr(line, ']', len);
    if (!end) return 0;
    size_t n = (size_t)(end - line - 1);
    if (n >= namelen) n = namelen - 1;
    memcpy(name, line + 1, n);
    name[n] = '\0';
    char *t = trim(name);
    memmove(name, t, strlen(t) + 1);
    return 1;
}

int mt_sweep_parse(mt_sweep_spec *s, const char *text, const char *origin, char **base, char *err, size_t errlen)
{
    /* Two texts of the same lines: the base config (the [sweep] lines blanked) and the
     * [sweep] section (the other lines blanked), so both parsers report true line numbers. */
    size_t n = strlen(text);
    char *b = mt_malloc(n + 1), *sw = mt_malloc(n + 1);
    int in_sweep = 0;
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(text + i, '\n', n - i);
        size_t len = nl ? (size_t)(nl - (text + i)) : n - i;
        char name[64];
        if (section_header(text + i, len, name, sizeof name)) in_sweep = strcmp(name, "sweep") == 0;
        memcpy((in_sweep ? sw : b) + i, text + i, len);
        memset((in_sweep ? b : sw) + i, ' ', len);
        if (in_sweep && section_header(text + i, len, name, sizeof name)) memset(b + i, ' ', len);
        i += len;
        if (nl) b[i] = sw[i] = '\n', i++;
    }
    b[n] = sw[n] = '\0';
    sweep_parse *ps = mt_calloc(1, sizeof *ps);
    ps->spec = s;
    int ret = mt_ini_parse(sw, &ps->in, sweep_handler, ps);
    int status = 0;
    if (ps->err_line) {
        set_err(err, errlen, "%s:%d: %s", origin, ps->err_line, ps->err);
        status = -1;
    } else if (ret != 0) {
        set_err(err, errlen, "%s:%d: syntax error in [sweep]: expected 'key = value'", origin, ret);
        status = -1;
    }
    free(ps);
    free(sw);
    if (status != 0) free(b);
    else *base = b;
    return status;
}

int mt_sweep_set(mt_sweep_spec *s, const char *assignment, char *err, size_t errlen)
{
    char buf[1024], msg[1024];
    const char *eq = strchr(assignment, '=');
    if (strncmp(assignment, "sweep.", 6) != 0 || !eq || strlen(assignment) >= sizeof buf) {
        set_err(err, errlen, "--set %s: expected sweep.key=value", assignment);
        return -1;
    }
    snprintf(buf, sizeof buf, "%s", assignment + 6);
    buf[eq - assignment - 6] = '\0';
    if (set_key(s, trim(buf), trim(buf + (eq - assignment - 6) + 1), msg, sizeof msg) != 0) {
        set_err(err, errlen, "--set %s: %s", assignment, msg);
        return -1;
    }
    return 0;
}

long mt_sweep_count(const mt_sweep_spec *s)
{
    if (s->random) return s->points;
    long n = s->n_axes > 0;
    for (int i = 0; i < s->n_axes; i++) {
        n *= s->axis[i].n_values;
        if (n > MT_SWEEP_MAX_POINTS) return MT_SWEEP_MAX_POINTS + 1;
    }
    return n;
}

int mt_sweep_check(const mt_sweep_spec *s, const mt_config *c, char *err, size_t errlen)
{
    if (s->n_axes == 0) {
        set_err(err, errlen, "[sweep] names no swept key: add one, e.g. `meta.inner_lr = 0.005, 0.01, 0.02`");
        return -1;
    }
    for (int i = 0; i < s->n_axes; i++)
        if (!s->random && s->axis[i].dist != MT_SWEEP_LIST) {
            set_err(err, errlen, "[sweep] %s is a range: ranges need method = random (a grid needs listed values)",
                    s->axis[i].key);
            return -1;
        }
    if (s->random && s->points < 1) {
        set_err(err, errlen, "[sweep] method = random needs points = N (how many points to draw)");
        return -1;
    }
    if (!s->random && s->points) {
        set_err(err, errlen, "[sweep] points = %d applies to method = random only (a grid has every combination)",
                s->points);
        return -1;
    }
    const long n = mt_sweep_count(s);
    if (n > MT_SWEEP_MAX_POINTS) {
        set_err(err, errlen, "[sweep] the grid has more than %d points", MT_SWEEP_MAX_POINTS);
        return -1;
    }
    if (s->halving) {
        if (s->min_iterations >= c->iterations) {
            set_err(err, errlen,
                    "[sweep] schedule = halving needs min_iterations = %ld below [run] iterations = %ld (the last "
                    "rung)",
                    s->min_iterations, c->iterations);
            return -1;
        }
        if (s->eval_tasks < 2) {
            set_err(err, errlen, "[sweep] schedule = halving ranks points on meta-validation: eval_tasks >= 2");
            return -1;
        }
    }
    if (s->eval_tasks == 1) {
        set_err(err, errlen, "[sweep] eval_tasks = 1: a confidence interval needs 2 or more (0: no evaluation)");
        return -1;
    }
    return 0;
}

/* A value as it appears in an id: characters that a directory name or the CSV would trip
 * on become '_'. */
static void id_value(const char *v, char *out, size_t len)
{
    size_t i = 0;
    for (; v[i] && i + 1 < len; i++) {
        unsigned char ch = (unsigned char)v[i];
        out[i] = isalnum(ch) || ch == '.' || ch == '_' || ch == '+' || ch == '-' ? (char)ch : '_';
    }
    out[i] = '\0';
}

/* A random draw of axis a for point i, formatted as the config will read it (so the id
 * shows exactly the value trained with). */
static void draw(const mt_sweep_axis *a, uint64_t seed, long i, int axis, char *out, size_t len)
{
    mt_rng r;
    mt_rng_init(&r, seed, MT_STREAM_SWEEP, (uint64_t)i, (uint32_t)axis);
    /* 53 random bits: a double in [0, 1). */
    const uint64_t bits = ((uint64_t)mt_rng_u32(&r) << 21) ^ (mt_rng_u32(&r) >> 11);
    const double u = (double)bits / 9007199254740992.0;
    if (a->dist == MT_SWEEP_LIST) {
        snprintf(out, len, "%s", a->values[(long)(u * a->n_values)]);
        return;
    }
    double v = a->dist == MT_SWEEP_UNIFORM ? a->lo + u * (a->hi - a->lo) : exp(log(a->lo) + u * (log(a->hi) - log(a->lo)));
    if (a->kind == MT_KEY_KIND_INT) snprintf(out, len, "%.0f", floor(v + 0.5));
    else snprintf(out, len, "%.3g", v);
}

void mt_sweep_points(const mt_sweep_spec *s, mt_sweep_point *pts)
{
    const long n = mt_sweep_count(s);
    /* Labels: the key's name, or section.key where two axes share the name. */
    char label[MT_SWEEP_MAX_AXES][64];
    for (int k = 0; k < s->n_axes; k++) {
        const char *name = strchr(s->axis[k].key, '.') + 1;
        int shared = 0;
        for (int j = 0; j < s->n_axes; j++)
            if (j != k && strcmp(strchr(s->axis[j].key, '.') + 1, name) == 0) shared = 1;
        snprintf(label[k], sizeof label[k], "%s", shared ? s->axis[k].key : name);
    }
    for (long i = 0; i < n; i++) {
        mt_sweep_point *p = &pts[i];
        memset(p, 0, sizeof *p);
        long rest = i;
        for (int k = s->n_axes - 1; k >= 0; k--) { /* grid: the last axis varies fastest */
            const mt_sweep_axis *a = &s->axis[k];
            if (s->random) draw(a, s->seed, i, k, p->value[k], sizeof p->value[k]);
            else {
                snprintf(p->value[k], sizeof p->value[k], "%s", a->values[rest % a->n_values]);
                rest /= a->n_values;
            }
        }
        size_t used = 0;
        for (int k = 0; k < s->n_axes; k++) {
            char v[MT_SWEEP_VALUE_LEN];
            id_value(p->value[k], v, sizeof v);
            int w = snprintf(p->id + used, sizeof p->id - used, "%s%s=%s", k ? "," : "", label[k], v);
            used = w < 0 || (size_t)w >= sizeof p->id - used ? sizeof p->id - 1 : used + (size_t)w;
        }
        for (long j = 0; j < i; j++)
            if (strcmp(pts[j].id, p->id) == 0) {
                char suffix[24];
                int w = snprintf(suffix, sizeof suffix, "#%ld", i);
                size_t at = strlen(p->id);
                if (at + (size_t)w >= sizeof p->id) at = sizeof p->id - 1 - (size_t)w;
                memcpy(p->id + at, suffix, (size_t)w + 1);
                break;
            }
    }
}

int mt_sweep_apply(const mt_sweep_spec *s, const mt_sweep_point *p, mt_config *c, char *err, size_t errlen)
{
    for (int k = 0; k < s->n_axes; k++) {
        char assignment[256];
        snprintf(assignment, sizeof assignment, "%s=%s", s->axis[k].key, p->value[k]);
        if (mt_config_set(c, assignment, err, errlen) != 0) return -1;
    }
    for (int k = 0; k < s->n_axes; k++) {
        char assignment[256];
        snprintf(assignment, sizeof assignment, "%s=%s", s->axis[k].key, p->value[k]);
        if (mt_config_check_set(c, assignment, err, errlen) != 0) return -1;
    }
    return 0;
}

int mt_sweep_rungs(const mt_sweep_spec *s, long iterations, long *target)
{
    int n = 0;
    if (s->halving)
        for (long t = s->min_iterations; t < iterations && n < MT_SWEEP_MAX_RUNGS - 1; t *= s->eta) {
            target[n++] = t;
            if (t > iterations / s->eta) break;
        }
    target[n++] = iterations;
    return n;
}

int mt_sweep_promote(const double *metric, const int *ok, int n, int eta, int higher_better, int *promote)
{
    int keep = n / eta > 1 ? n / eta : 1, chosen = 0;
    for (int i = 0; i < n; i++) promote[i] = 0;
    while (chosen < keep) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            if (!ok[i] || promote[i] || isnan(metric[i])) continue;
            if (best < 0 || (higher_better ? metric[i] > metric[best] : metric[i] < metric[best])) best = i;
        }
        if (best < 0) break;
        promote[best] = 1;
        chosen++;
    }
    return chosen;
}
