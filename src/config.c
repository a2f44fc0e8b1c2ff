/* config.c — the key table and its parser, printer and checker (see config.h). */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

typedef enum { KEY_STRING, KEY_CHOICE, KEY_INT, KEY_LONG, KEY_U64, KEY_FLOAT } key_type;

typedef struct {
    const char *section, *name;
    key_type type;
    size_t offset, size; /* where in mt_config, and the field's size (strings) */
    double lo, hi;       /* allowed range (numbers) */
    int lo_open;         /* 1: the value must be strictly greater than lo */
    const char *choices; /* KEY_CHOICE: allowed values separated by '|' */
    const char *doc;
} key_spec;

#define FIELD(f) offsetof(mt_config, f), sizeof(((mt_config *)0)->f)

static const key_spec keys[] = {
    {"run", "dir", KEY_STRING, FIELD(run_dir), 0, 0, 0, NULL,
     "run directory: resolved config.ini, metrics.jsonl and checkpoints go here"},
    {"run", "seed", KEY_U64, FIELD(seed), 0, 0, 0, NULL,
     "seed of every random draw (initialisation, tasks); same seed = same run"},
    {"run", "iterations", KEY_LONG, FIELD(iterations), 1, 4294967295.0, 0, NULL,
     "meta-iterations (outer optimizer steps)"},
    {"run", "log_every", KEY_LONG, FIELD(log_every), 1, 4294967295.0, 0, NULL,
     "iterations between metrics.jsonl lines (and progress lines when not on a terminal)"},
    {"task", "family", KEY_CHOICE, FIELD(family), 0, 0, 0, "sinusoid|fewshot",
     "sinusoid (regression, Finn et al. 2017) | fewshot (N-way K-shot image classification)"},
    {"task", "shots", KEY_INT, FIELD(shots), 1, 100000, 0, NULL,
     "support examples per task (sinusoid: points; fewshot: images per class)"},
    {"task", "query", KEY_INT, FIELD(query), 1, 100000, 0, NULL,
     "query examples per task (sinusoid: points; fewshot: images per class)"},
    {"task", "ways", KEY_INT, FIELD(ways), 2, 10000, 0, NULL, "fewshot: classes per task"},
    {"task", "dataset", KEY_STRING, FIELD(dataset), 0, 0, 0, NULL,
     "fewshot: HDF5 dataset file (made by `metatrain data import`)"},
    {"task", "train_split", KEY_STRING, FIELD(train_split), 0, 0, 0, NULL, "fewshot: split of meta-training classes"},
    {"task", "test_split", KEY_STRING, FIELD(test_split), 0, 0, 0, NULL, "fewshot: split that `metatrain eval` uses"},
    {"task", "rotations", KEY_INT, FIELD(rotations), 0, 1, 0, NULL,
     "fewshot: 1 adds every class rotated by 90/180/270 degrees as 3 new classes"},
    {"model", "arch", KEY_CHOICE, FIELD(arch), 0, 0, 0, "mlp|conv4",
     "mlp (sinusoid; layers fc1, fc2, head) | conv4 (fewshot; conv1-4, bn1-4, head)"},
    {"model", "hidden", KEY_INT, FIELD(hidden), 1, 65536, 0, NULL, "mlp: width of the two hidden layers"},
    {"model", "filters", KEY_INT, FIELD(filters), 1, 4096, 0, NULL, "conv4: channels of every conv layer"},
    {"meta", "algo", KEY_CHOICE, FIELD(algo), 0, 0, 0, "maml|fomaml|reptile",
     "maml (exact second order) | fomaml (first order) | reptile"},
    {"meta", "inner_steps", KEY_INT, FIELD(inner_steps), 1, 10000, 0, NULL,
     "inner-loop SGD steps per task in training"},
    {"meta", "inner_lr", KEY_FLOAT, FIELD(inner_lr), 0, 1e6, 1, NULL, "inner-loop SGD step size (alpha)"},
    {"meta", "eval_inner_steps", KEY_INT, FIELD(eval_inner_steps), 0, 100000, 0, NULL,
     "inner-loop steps when evaluating (metatrain eval)"},
    {"meta", "meta_batch", KEY_INT, FIELD(meta_batch), 1, 1000000, 0, NULL,
     "tasks per meta-iteration, split over the ranks"},
    {"optim", "lr", KEY_FLOAT, FIELD(lr), 0, 1e6, 1, NULL, "Adam learning rate of the meta-parameters"},
    {"optim", "beta1", KEY_FLOAT, FIELD(beta1), 0, 0.999999, 0, NULL, "Adam first-moment decay"},
    {"optim", "beta2", KEY_FLOAT, FIELD(beta2), 0, 0.999999999, 0, NULL, "Adam second-moment decay"},
    {"optim", "eps", KEY_FLOAT, FIELD(eps), 0, 1, 1, NULL, "Adam denominator epsilon"},
    {"checkpoint", "every", KEY_LONG, FIELD(ckpt_every), 0, 4294967295.0, 0, NULL,
     "iterations between checkpoints (0: only the final one)"},
    {"checkpoint", "keep", KEY_INT, FIELD(ckpt_keep), 1, 1000000, 0, NULL,
     "checkpoints kept in run.dir; older ones are deleted"},
    {"dist", "reduce", KEY_CHOICE, FIELD(reduce), 0, 0, 0, "exact|fast",
     "exact: fixed-point sum, same bits for any rank count | fast: float allreduce"},
};

#define N_KEYS ((int)(sizeof keys / sizeof keys[0]))

void mt_config_defaults(mt_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->run_dir, sizeof c->run_dir, "runs/sinusoid_maml");
    c->seed = 1;
    c->iterations = 20000;
    c->log_every = 100;
    snprintf(c->family, sizeof c->family, "sinusoid");
    c->shots = 10;
    c->query = 10;
    c->ways = 5;
    snprintf(c->train_split, sizeof c->train_split, "train");
    snprintf(c->test_split, sizeof c->test_split, "test");
    snprintf(c->arch, sizeof c->arch, "mlp");
    c->hidden = 40;
    c->filters = 64;
    snprintf(c->algo, sizeof c->algo, "maml");
    c->inner_steps = 1;
    c->inner_lr = 0.01f;
    c->eval_inner_steps = 10;
    c->meta_batch = 25;
    c->lr = 1e-3f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->ckpt_every = 0;
    c->ckpt_keep = 3;
    snprintf(c->reduce, sizeof c->reduce, "exact");
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const key_spec *find_key(const char *section, const char *name, int *section_known)
{
    *section_known = 0;
    for (int i = 0; i < N_KEYS; i++) {
        if (strcmp(keys[i].section, section) != 0) continue;
        *section_known = 1;
        if (strcmp(keys[i].name, name) == 0) return &keys[i];
    }
    return NULL;
}

/* Comma-separated names of the keys of a section (for "did you mean" messages). */
static void section_keys(const char *section, char *out, size_t len)
{
    out[0] = '\0';
    for (int i = 0; i < N_KEYS; i++) {
        if (strcmp(keys[i].section, section) != 0) continue;
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s", used ? ", " : "", keys[i].name);
    }
}

static void section_list(char *out, size_t len)
{
    out[0] = '\0';
    for (int i = 0; i < N_KEYS; i++) {
        if (i > 0 && strcmp(keys[i].section, keys[i - 1].section) == 0) continue;
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s[%s]", used ? " " : "", keys[i].section);
    }
}

static int choice_ok(const char *choices, const char *value)
{
    size_t n = strlen(value);
    for (const char *p = choices; *p;) {
        const char *end = strchr(p, '|');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0) return 1;
        p += len + (end ? 1 : 0);
    }
    return 0;
}

/* Stores value into the field of k. Returns 0, or -1 with a message (no origin) in err. */
static int assign(mt_config *c, const key_spec *k, const char *value, char *err, size_t errlen)
{
    char *field = (char *)c + k->offset;
    char *end = NULL;
    if (value[0] == '\0' && k->type != KEY_STRING) {
        set_err(err, errlen, "[%s] %s has no value", k->section, k->name);
        return -1;
    }
    switch (k->type) {
    case KEY_STRING:
    case KEY_CHOICE:
        if (strlen(value) >= k->size) {
            set_err(err, errlen, "[%s] %s is longer than %zu characters", k->section, k->name, k->size - 1);
            return -1;
        }
        if (strpbrk(value, ";#")) { /* INI comment characters: the value would not read back */
            set_err(err, errlen, "[%s] %s = %s: values cannot contain ';' or '#'", k->section, k->name, value);
            return -1;
        }
        if (k->type == KEY_CHOICE && !choice_ok(k->choices, value)) {
            set_err(err, errlen, "[%s] %s = %s is not one of: %s", k->section, k->name, value, k->choices);
            return -1;
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case KEY_INT:
    case KEY_LONG:
    case KEY_U64: {
        errno = 0;
        if (k->type == KEY_U64) {
            if (value[0] == '-') goto not_integer;
            unsigned long long u = strtoull(value, &end, 10);
            if (errno || *end) goto not_integer;
            *(uint64_t *)field = (uint64_t)u;
            return 0;
        }
        long long v = strtoll(value, &end, 10);
        if (errno == ERANGE || *end || end == value) goto not_integer;
        if ((double)v < k->lo || (double)v > k->hi) {
            set_err(err, errlen, "[%s] %s = %s is out of range [%.0f, %.0f]", k->section, k->name, value, k->lo,
                    k->hi);
            return -1;
        }
        if (k->type == KEY_INT) *(int *)field = (int)v;
        else *(long *)field = (long)v;
        return 0;
    not_integer:
        set_err(err, errlen, "[%s] %s = %s is not a whole number", k->section, k->name, value);
        return -1;
    }
    case KEY_FLOAT: {
        errno = 0;
        double v = strtod(value, &end);
        if (errno == ERANGE || *end || end == value || !isfinite(v)) {
            set_err(err, errlen, "[%s] %s = %s is not a finite number", k->section, k->name, value);
            return -1;
        }
        const float f = (float)v; /* what is stored must be in range too: 1e-50 rounds to 0 */
        if ((k->lo_open ? v <= k->lo || f <= k->lo : v < k->lo) || v > k->hi || !isfinite(f)) {
            set_err(err, errlen, "[%s] %s = %s is out of range %s%g, %g]", k->section, k->name, value,
                    k->lo_open ? "(" : "[", k->lo, k->hi);
            return -1;
        }
        *(float *)field = f;
        return 0;
    }
    }
    return -1;
}

/* Looks up section/name and assigns; message without origin. */
static int assign_named(mt_config *c, const char *section, const char *name, const char *value, char *err,
                        size_t errlen)
{
    int section_known;
    const key_spec *k = find_key(section, name, &section_known);
    if (k) return assign(c, k, value, err, errlen);
    char list[512];
    if (section[0] == '\0') {
        set_err(err, errlen, "key '%s' is outside any [section]", name);
    } else if (!section_known) {
        section_list(list, sizeof list);
        set_err(err, errlen, "unknown section [%s] (sections: %s)", section, list);
    } else {
        section_keys(section, list, sizeof list);
        set_err(err, errlen, "unknown key '%s' in [%s] (keys: %s)", name, section, list);
    }
    return -1;
}

/* ---- INI parsing through libinih, with line numbers ------------------------------------ */

typedef struct {
    mt_config *config;
    const char *text; /* remaining input */
    int line;         /* line being parsed (counted by the reader) */
    int at_line_start;
    int err_line; /* first line with an error found by the handler, 0 if none */
    char err[1024];
    int seen_line[N_KEYS]; /* line where each key was set, for duplicates */
} parse_state;

/* libinih reports a section only with its first key; a header of an unknown section
 * followed by no key (say, all commented out) would pass unnoticed, so the reader checks
 * every "[name]" line itself. */
static void check_section_header(parse_state *ps, const char *line)
{
    while (*line == ' ' || *line == '\t') line++;
    if (*line != '[' || ps->err_line) return;
    const char *end = strchr(line, ']');
    if (!end) return; /* libinih reports the syntax error */
    char name[64];
    size_t len = (size_t)(end - line - 1);
    if (len >= sizeof name) len = sizeof name - 1;
    memcpy(name, line + 1, len);
    name[len] = '\0';
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].section, name) == 0) return;
    char list[512];
    section_list(list, sizeof list);
    snprintf(ps->err, sizeof ps->err, "unknown section [%s] (sections: %s)", name, list);
    ps->err_line = ps->line;
}

/* fgets over a string that counts the lines it starts. */
static char *string_reader(char *str, int num, void *stream)
{
    parse_state *ps = stream;
    if (*ps->text == '\0' || num < 2) return NULL;
    const int starts_line = ps->at_line_start;
    if (starts_line) ps->line++;
    int i = 0;
    while (i < num - 1 && ps->text[0] != '\0') {
        char ch = *ps->text++;
        str[i++] = ch;
        if (ch == '\n') break;
    }
    str[i] = '\0';
    ps->at_line_start = i > 0 && str[i - 1] == '\n';
    if (starts_line) check_section_header(ps, str);
    return str;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    parse_state *ps = user;
    if (ps->err_line) return 0; /* keep the first error only */
    int section_known;
    const key_spec *k = find_key(section, name, &section_known);
    if (k && ps->seen_line[k - keys]) {
        snprintf(ps->err, sizeof ps->err, "[%s] %s is given twice (first on line %d)", section, name,
                 ps->seen_line[k - keys]);
        ps->err_line = ps->line;
        return 0;
    }
    if (assign_named(ps->config, section, name, value, ps->err, sizeof ps->err) != 0) {
        ps->err_line = ps->line;
        return 0;
    }
    ps->seen_line[k - keys] = ps->line;
    return 1;
}

int mt_config_parse(mt_config *c, const char *text, const char *origin, char *err, size_t errlen)
{
    /* One value per line, lines of any length, no continuation lines. */
    ini_allow_multiline = 0;
    ini_use_stack = 0;
    ini_allow_realloc = 1;
    ini_max_line = 1 << 20;

    parse_state *ps = mt_calloc(1, sizeof *ps);
    ps->config = c;
    ps->text = text;
    ps->at_line_start = 1;
    int ret = ini_parse_stream(string_reader, ps, handler, ps);
    int status = 0;
    if (ret < 0) {
        set_err(err, errlen, "%s: out of memory while parsing", origin);
        status = -1;
    } else if (ret > 0 && (ps->err_line == 0 || ret < ps->err_line)) {
        set_err(err, errlen, "%s:%d: syntax error: expected '[section]' or 'key = value'", origin, ret);
        status = -1;
    } else if (ps->err_line) {
        set_err(err, errlen, "%s:%d: %s", origin, ps->err_line, ps->err);
        status = -1;
    }
    free(ps);
    return status;
}

int mt_config_set(mt_config *c, const char *assignment, char *err, size_t errlen)
{
    char buf[MT_PATH_LEN + 128], msg[512];
    const char *eq = strchr(assignment, '=');
    const char *dot = strchr(assignment, '.');
    if (!eq || !dot || dot > eq || strlen(assignment) >= sizeof buf) {
        set_err(err, errlen, "--set %s: expected section.key=value", assignment);
        return -1;
    }
    memcpy(buf, assignment, strlen(assignment) + 1);
    buf[dot - assignment] = '\0';
    buf[eq - assignment] = '\0';
    const char *section = buf, *name = buf + (dot - assignment) + 1, *value = buf + (eq - assignment) + 1;
    if (assign_named(c, section, name, value, msg, sizeof msg) != 0) {
        set_err(err, errlen, "--set %s: %s", assignment, msg);
        return -1;
    }
    return 0;
}

int mt_config_check(const mt_config *c, char *err, size_t errlen)
{
    const int fewshot = strcmp(c->family, "fewshot") == 0;
    if (fewshot && strcmp(c->arch, "conv4") != 0) {
        set_err(err, errlen, "[task] family = fewshot needs [model] arch = conv4 (mlp is for sinusoid)");
        return -1;
    }
    if (!fewshot && strcmp(c->arch, "mlp") != 0) {
        set_err(err, errlen, "[task] family = %s needs [model] arch = mlp (conv4 is for fewshot)", c->family);
        return -1;
    }
    if (fewshot && c->dataset[0] == '\0') {
        set_err(err, errlen, "[task] family = fewshot needs [task] dataset (an HDF5 file from `metatrain data import`)");
        return -1;
    }
    if (c->ckpt_every > c->iterations) {
        set_err(err, errlen, "[checkpoint] every = %ld is more than [run] iterations = %ld", c->ckpt_every,
                c->iterations);
        return -1;
    }
    return 0;
}

static void format_value(const mt_config *c, const key_spec *k, char *out, size_t len)
{
    const char *field = (const char *)c + k->offset;
    switch (k->type) {
    case KEY_STRING:
    case KEY_CHOICE: snprintf(out, len, "%s", field); break;
    case KEY_INT: snprintf(out, len, "%d", *(const int *)field); break;
    case KEY_LONG: snprintf(out, len, "%ld", *(const long *)field); break;
    case KEY_U64: snprintf(out, len, "%llu", (unsigned long long)*(const uint64_t *)field); break;
    case KEY_FLOAT: snprintf(out, len, "%.9g", (double)*(const float *)field); break; /* round-trips */
    }
}

char *mt_config_format(const mt_config *c)
{
    size_t cap = 4096 + MT_PATH_LEN, used = 0;
    char *out = mt_malloc(cap);
    char value[MT_PATH_LEN];
    for (int i = 0; i < N_KEYS; i++) {
        if (i == 0 || strcmp(keys[i].section, keys[i - 1].section) != 0)
            used += (size_t)snprintf(out + used, cap - used, "%s[%s]\n", i ? "\n" : "", keys[i].section);
        format_value(c, &keys[i], value, sizeof value);
        used += (size_t)snprintf(out + used, cap - used, "%s = %s\n", keys[i].name, value);
    }
    return out;
}

void mt_config_print_keys(FILE *out)
{
    mt_config d;
    char value[MT_PATH_LEN];
    mt_config_defaults(&d);
    for (int i = 0; i < N_KEYS; i++) {
        if (i == 0 || strcmp(keys[i].section, keys[i - 1].section) != 0) fprintf(out, "  [%s]\n", keys[i].section);
        format_value(&d, &keys[i], value, sizeof value);
        fprintf(out, "    %-17s %-20s %s\n", keys[i].name, value, keys[i].doc);
    }
}
