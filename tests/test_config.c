/*
 * test_config.c — the configuration parser (src/config.c): format/parse round trips, the
 * shipped configs/sinusoid_maml.ini against the built-in defaults, and every class of input
 * error with the origin and line number a user needs to fix it.
 *
 * The shipped file is found as argv[1], else $MT_SOURCE_DIR/configs/sinusoid_maml.ini
 * (tests/CMakeLists.txt sets MT_SOURCE_DIR).
 *
 * Not tested here: reading files and broadcasting them (tests/cli/cli_errors.sh does that
 * through the real binary).
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "tasks.h"
#include "testutil.h"

/* A config whose every field differs from the default, so that parsing text onto it shows
 * whether the text set every key. */
static void poisoned(mt_config *c)
{
    mt_config_defaults(c);
    snprintf(c->run_dir, sizeof c->run_dir, "poison");
    c->seed = 999;
    c->iterations = 7;
    c->log_every = 3;
    snprintf(c->family, sizeof c->family, "poison");
    c->shots = 99;
    c->query = 98;
    snprintf(c->arch, sizeof c->arch, "poison");
    c->hidden = 3;
    snprintf(c->algo, sizeof c->algo, "poison");
    c->inner_steps = 9;
    c->eval_inner_steps = 8;
    c->meta_batch = 7;
    c->inner_lr = 0.5f;
    c->lr = 0.25f;
    c->beta1 = 0.125f;
    c->beta2 = 0.0625f;
    c->eps = 0.375f;
    c->ckpt_every = 5;
    c->ckpt_keep = 11;
    snprintf(c->val_split, sizeof c->val_split, "poison");
    c->amp_min = 0.75f;
    c->amp_max = 0.875f;
    c->phase_min = -0.5f;
    c->phase_max = 0.25f;
    c->x_min = -0.125f;
    c->x_max = 0.0625f;
}

/* Field-by-field equality of the fields this test knows; the formatted text covers the rest. */
static int same_fields(const mt_config *a, const mt_config *b)
{
    return strcmp(a->run_dir, b->run_dir) == 0 && a->seed == b->seed && a->iterations == b->iterations &&
           a->log_every == b->log_every && strcmp(a->family, b->family) == 0 && a->shots == b->shots &&
           a->query == b->query && strcmp(a->arch, b->arch) == 0 && a->hidden == b->hidden &&
           strcmp(a->algo, b->algo) == 0 && a->inner_steps == b->inner_steps &&
           a->eval_inner_steps == b->eval_inner_steps && a->meta_batch == b->meta_batch &&
           a->inner_lr == b->inner_lr && a->lr == b->lr && a->beta1 == b->beta1 && a->beta2 == b->beta2 &&
           a->eps == b->eps && a->ckpt_every == b->ckpt_every && a->ckpt_keep == b->ckpt_keep &&
           strcmp(a->val_split, b->val_split) == 0 && a->amp_min == b->amp_min && a->amp_max == b->amp_max &&
           a->phase_min == b->phase_min && a->phase_max == b->phase_max && a->x_min == b->x_min &&
           a->x_max == b->x_max;
}

/* 1 iff the two configs format to the same text (every key in config.c's table). */
static int same_text(const mt_config *a, const mt_config *b)
{
    char *ta = mt_config_format(a), *tb = mt_config_format(b);
    int same = strcmp(ta, tb) == 0;
    if (!same) printf("     --- first ---\n%s     --- second ---\n%s", ta, tb);
    free(ta);
    free(tb);
    return same;
}

/* format(c) -> parse onto a poisoned config -> equal fields and identical text again. */
static void check_round_trip(const mt_config *c, const char *label)
{
    char err[1024] = "", buf[256];
    char *text = mt_config_format(c);
    mt_config back;
    poisoned(&back);
    int rc = mt_config_parse(&back, text, "formatted", err, sizeof err);
    snprintf(buf, sizeof buf, "%s: formatted text parses back", label);
    tu_expect(rc == 0, buf);
    if (rc != 0) printf("     error: %s\n", err);
    char *again = mt_config_format(&back);
    snprintf(buf, sizeof buf, "%s: format -> parse -> format gives identical text", label);
    tu_expect(strcmp(text, again) == 0, buf);
    snprintf(buf, sizeof buf, "%s: parsed config equals the original field by field", label);
    tu_expect(same_fields(c, &back), buf);
    free(text);
    free(again);
}

/* Parses text (origin "x.ini") onto the defaults and expects a failure whose message holds
 * "x.ini:<line>:" (line > 0) and every string of want (NULL-terminated). */
static void expect_parse_error(const char *label, const char *text, int line, const char *const *want)
{
    char err[1024] = "", buf[512], where[32];
    mt_config c;
    mt_config_defaults(&c);
    int rc = mt_config_parse(&c, text, "x.ini", err, sizeof err);
    snprintf(buf, sizeof buf, "%s: rejected", label);
    tu_expect(rc == -1, buf);
    printf("     message: %s\n", err);
    snprintf(where, sizeof where, "x.ini:%d:", line);
    snprintf(buf, sizeof buf, "%s: message starts with \"%s\"", label, where);
    tu_expect(strncmp(err, where, strlen(where)) == 0, buf);
    for (int i = 0; want && want[i]; i++) {
        snprintf(buf, sizeof buf, "%s: message contains \"%s\"", label, want[i]);
        tu_expect(strstr(err, want[i]) != NULL, buf);
    }
}

/* Like expect_parse_error for one want string. */
static void expect_parse_error1(const char *label, const char *text, int line, const char *want)
{
    const char *const w[] = {want, NULL};
    expect_parse_error(label, text, line, w);
}

/* mt_config_set must fail with a message that starts with "--set" and holds want. */
static void expect_set_error(const char *label, const char *assignment, const char *want)
{
    char err[1024] = "", buf[512];
    mt_config c;
    mt_config_defaults(&c);
    int rc = mt_config_set(&c, assignment, err, sizeof err);
    snprintf(buf, sizeof buf, "--set %s (%s): rejected", assignment, label);
    tu_expect(rc == -1, buf);
    printf("     message: %s\n", err);
    snprintf(buf, sizeof buf, "--set %s (%s): message starts with \"--set\"", assignment, label);
    tu_expect(strncmp(err, "--set", 5) == 0, buf);
    if (want) {
        snprintf(buf, sizeof buf, "--set %s (%s): message contains \"%s\"", assignment, label, want);
        tu_expect(strstr(err, want) != NULL, buf);
    }
}

static void test_round_trips(void)
{
    mt_config d;
    mt_config_defaults(&d);
    check_round_trip(&d, "defaults");

    /* Values that stress the printer: a 64-bit seed above INT64_MAX, floats that are not
     * short decimals, a path with spaces and '=' in it, the largest longs allowed. */
    mt_config c;
    mt_config_defaults(&c);
    const char *sets[] = {"run.dir=/tmp/some dir/with=equals",
                          "run.seed=18446744073709551615",
                          "run.iterations=4294967295",
                          "run.log_every=7",
                          "task.shots=5",
                          "task.query=17",
                          "model.hidden=13",
                          "meta.algo=fomaml",
                          "meta.inner_steps=3",
                          "meta.inner_lr=0.0123456789",
                          "meta.eval_inner_steps=0",
                          "meta.meta_batch=1000000",
                          "optim.lr=3.3333333e-4",
                          "optim.beta1=0.95",
                          "optim.beta2=0.999999",
                          "optim.eps=1e-30",
                          "checkpoint.every=12345",
                          "checkpoint.keep=1",
                          "task.amp_min=0.3333333333",
                          "task.amp_max=1000000",
                          "task.phase_min=-1000000",
                          "task.phase_max=6.283185307179586",
                          "task.x_min=-0.1",
                          "task.x_max=0.1"};
    int all_ok = 1;
    char err[1024];
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        if (mt_config_set(&c, sets[i], err, sizeof err) != 0) {
            printf("     --set %s failed: %s\n", sets[i], err);
            all_ok = 0;
        }
    }
    tu_expect(all_ok, "--set accepts a valid value for every key");
    tu_expect(strcmp(c.run_dir, "/tmp/some dir/with=equals") == 0, "--set run.dir keeps '=' and spaces in the value");
    tu_expect(c.seed == UINT64_MAX, "--set run.seed takes a full 64-bit value");
    tu_expect(c.inner_lr == 0.0123456789f && c.lr == 3.3333333e-4f && c.eps == 1e-30f,
              "--set float values are stored as the nearest float");
    check_round_trip(&c, "non-default values");
}

static void test_shipped_config(const char *path)
{
    printf("shipped config: %s\n", path);
    FILE *f = fopen(path, "rb");
    tu_expect(f != NULL, "configs/sinusoid_maml.ini exists and is readable");
    if (!f) return;
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    tu_expect(n > 0 && n < sizeof text - 1, "configs/sinusoid_maml.ini has a plausible size");

    mt_config c, d;
    poisoned(&c);
    mt_config_defaults(&d);
    char err[1024] = "";
    int rc = mt_config_parse(&c, text, path, err, sizeof err);
    tu_expect(rc == 0, "configs/sinusoid_maml.ini parses");
    if (rc != 0) printf("     error: %s\n", err);
    if (strcmp(c.run_dir, d.run_dir) != 0) {
        printf("     note: run.dir is %s, the default %s\n", c.run_dir, d.run_dir);
        memcpy(d.run_dir, c.run_dir, sizeof d.run_dir);
    }
    tu_expect(strcmp(c.run_dir, "poison") != 0, "configs/sinusoid_maml.ini sets run.dir");
    /* Parsed onto a poisoned config, equality also shows that the file sets every key. */
    tu_expect(same_text(&c, &d), "configs/sinusoid_maml.ini sets every key to its built-in default");
    tu_expect(same_fields(&c, &d), "configs/sinusoid_maml.ini equals the defaults field by field");
    err[0] = '\0';
    rc = mt_config_check(&c, err, sizeof err);
    if (rc != 0) printf("     error: %s\n", err);
    tu_expect(rc == 0, "configs/sinusoid_maml.ini (which lists the fewshot keys at their defaults) checks");
}

static void test_parse_errors(void)
{
    expect_parse_error1("unknown key", "; comment\n[run]\nseed = 1\n\n[optim]\nlrr = 0.1\n", 6, "unknown key");
    const char *const unknown_key_names[] = {"lrr", "[optim]", NULL};
    expect_parse_error("unknown key names key and section", "[optim]\nlrr = 0.1\n", 2, unknown_key_names);
    /* Comments, blank lines and a long comment line (read in pieces) all count as lines. */
    char long_comment[4096];
    memset(long_comment, 'c', 300);
    long_comment[0] = ';';
    snprintf(long_comment + 300, sizeof long_comment - 300,
             "\n[run]\n# hash comment\n\n; semicolon comment\nseed = 2\nbogus = 3\n");
    expect_parse_error1("unknown key after comments and a 300-char line", long_comment, 7, "unknown key");
    expect_parse_error1("error on the last line without a newline", "[run]\nseed = 1\nbogus = 3", 3,
                        "unknown key");
    expect_parse_error1("CRLF line endings count lines the same", "[run]\r\nseed = 1\r\nbogus = 3\r\n", 3,
                        "unknown key");

    /* An unknown section is reported at its header, even when no key follows it. */
    expect_parse_error1("unknown section", "[run]\nseed = 1\n[foo]\nbar = 1\n", 3, "unknown section [foo]");
    expect_parse_error1("unknown section with only comments", "[run]\nseed = 1\n[optimm]\n; lr = 0.1\n", 3,
                        "unknown section [optimm]");
    /* A comment line longer than libinih's default line buffer is still one line. */
    static char huge_comment[9000];
    memset(huge_comment, 'c', 5000);
    huge_comment[0] = ';';
    snprintf(huge_comment + 5000, sizeof huge_comment - 5000, "\n[run]\nseed = 2\nbogus = 3\n");
    expect_parse_error1("unknown key after a 5000-char comment line", huge_comment, 4, "unknown key");
    /* A float that rounds to 0 (or overflows) in float32 is out of range, not stored as 0. */
    expect_parse_error1("key outside a section", "seed = 1\n[run]\niterations = 5\n", 1, "outside any [section]");

    expect_parse_error1("int 'abc'", "[model]\nhidden = abc\n", 2, "not a whole number");
    expect_parse_error1("int '12abc'", "[model]\nhidden = 12abc\n", 2, "not a whole number");
    expect_parse_error1("int '1.5'", "[model]\nhidden = 1.5\n", 2, "not a whole number");
    expect_parse_error1("long beyond 64 bits", "[run]\niterations = 99999999999999999999\n", 2,
                        "not a whole number");
    expect_parse_error1("u64 negative seed", "[run]\nseed = -1\n", 2, "not a whole number");
    expect_parse_error1("u64 seed beyond 64 bits", "[run]\nseed = 18446744073709551616\n", 2,
                        "not a whole number");
    expect_parse_error1("u64 seed 'abc'", "[run]\nseed = abc\n", 2, "not a whole number");
    expect_parse_error1("float 'abc'", "[optim]\nlr = abc\n", 2, "not a finite number");
    expect_parse_error1("float '1e400'", "[optim]\nlr = 1e400\n", 2, "not a finite number");
    expect_parse_error1("float 'nan'", "[optim]\nlr = nan\n", 2, "not a finite number");
    expect_parse_error1("float 'inf'", "[meta]\ninner_lr = inf\n", 2, "not a finite number");
    expect_parse_error1("float '0.1x'", "[optim]\nbeta1 = 0.1x\n", 2, "not a finite number");
    expect_parse_error1("empty value", "[optim]\nlr =\n", 2, "no value");

    expect_parse_error1("lr = -1", "[optim]\nlr = -1\n", 2, "out of range");
    expect_parse_error1("lr = 0 (open interval)", "[optim]\nlr = 0\n", 2, "out of range");
    expect_parse_error1("beta1 = 1", "[optim]\nbeta1 = 1\n", 2, "out of range");
    expect_parse_error1("meta_batch = 0", "[meta]\nmeta_batch = 0\n", 2, "out of range");
    expect_parse_error1("hidden = 65537", "[model]\nhidden = 65537\n", 2, "out of range");
    expect_parse_error1("iterations = 0", "[run]\niterations = 0\n", 2, "out of range");

    const char *const bad_choice[] = {"not one of", "foo", "maml", NULL};
    expect_parse_error("meta.algo = foo", "[meta]\nalgo = foo\n", 2, bad_choice);
    expect_parse_error1("task.family = circles", "[task]\nfamily = circles\n", 2, "not one of");

    const char *const dup[] = {"given twice", "line 2", NULL};
    expect_parse_error("duplicate key", "[run]\nseed = 1\niterations = 5\nseed = 2\n", 4, dup);
    const char *const dup_sections[] = {"given twice", "line 2", NULL};
    expect_parse_error("duplicate key in a repeated section", "[run]\nseed = 1\n[optim]\nlr = 0.1\n[run]\nseed = 2\n",
                       6, dup_sections);

    expect_parse_error1("syntax error line", "[run]\nseed = 1\nthis is not ini\n", 3, "syntax error");
    expect_parse_error1("unclosed section header", "[run\nseed = 1\n", 1, "syntax error");
    expect_parse_error1("first of two errors is reported", "[run]\nbogus = 1\n[optim]\nlr = abc\n", 2,
                        "unknown key");
    expect_parse_error1("syntax error before a bad value", "[run]\nnot ini\n[optim]\nlr = abc\n", 2, "syntax error");

    /* A failed parse says where even deep into a file. */
    char deep[4096] = "[run]\n";
    for (int i = 0; i < 40; i++) strcat(deep, "; filler\n");
    strcat(deep, "seed = x\n");
    expect_parse_error1("error on line 42", deep, 42, "not a whole number");
}

static void test_long_lines(void)
{
    /* A 500-character run.dir: longer than inih's default line (200) but a valid path. */
    char dir[501], text[700];
    for (int i = 0; i < 500; i++) dir[i] = i % 50 == 0 ? '/' : (char)('a' + i % 26);
    dir[500] = '\0';
    snprintf(text, sizeof text, "[run]\ndir = %s\nseed = 5\n", dir);
    mt_config c;
    mt_config_defaults(&c);
    char err[1024] = "";
    int rc = mt_config_parse(&c, text, "x.ini", err, sizeof err);
    tu_expect(rc == 0, "a 506-character line (run.dir of 500 characters) is accepted");
    if (rc != 0) printf("     error: %s\n", err);
    tu_expect(strcmp(c.run_dir, dir) == 0, "the 500-character run.dir is stored whole");
    tu_expect(c.seed == 5, "the key after the long line is read");
    check_round_trip(&c, "500-character run.dir");

    /* A run.dir that does not fit the field is an error, not a truncation. */
    static char huge[3000];
    memcpy(huge, "[run]\ndir = ", 12);
    memset(huge + 12, 'd', 1500);
    memcpy(huge + 12 + 1500, "\n", 2);
    expect_parse_error1("run.dir of 1500 characters", huge, 2, "longer than");
}

static void test_set_errors(void)
{
    expect_set_error("no '='", "run.seed", "section.key=value");
    expect_set_error("';' in a value would not read back", "run.dir=/tmp/a ;x", "cannot contain");
    expect_set_error("no '.'", "seed=1", "section.key=value");
    expect_set_error("'.' only in the value", "seed=run.x", "section.key=value");
    expect_set_error("unknown key", "run.sed=1", "unknown key");
    expect_set_error("unknown section", "foo.bar=1", "unknown section");
    expect_set_error("bad int", "model.hidden=abc", "not a whole number");
    expect_set_error("bad float", "optim.lr=abc", "not a finite number");
    expect_set_error("out of range", "optim.lr=-1", "out of range");
    expect_set_error("bad choice", "meta.algo=foo", "not one of");
    expect_set_error("empty value", "optim.lr=", "no value");

    mt_config c;
    mt_config_defaults(&c);
    char err[1024] = "";
    tu_expect(mt_config_set(&c, "optim.lr=0.5", err, sizeof err) == 0 && c.lr == 0.5f,
              "--set optim.lr=0.5 sets lr");
    tu_expect(mt_config_set(&c, "meta.algo=reptile", err, sizeof err) == 0 && strcmp(c.algo, "reptile") == 0,
              "--set meta.algo=reptile sets algo");
    tu_expect(mt_config_set(&c, "optim.lr=0.25", err, sizeof err) == 0 && c.lr == 0.25f,
              "--set twice: the last one wins");
}

static void test_check(void)
{
    mt_config c;
    char err[1024] = "";
    mt_config_defaults(&c);
    tu_expect(mt_config_check(&c, err, sizeof err) == 0, "mt_config_check accepts the defaults");
    c.iterations = 100;
    c.ckpt_every = 100;
    tu_expect(mt_config_check(&c, err, sizeof err) == 0, "mt_config_check accepts checkpoint.every == iterations");
    /* Issue 7, defect 8: the last iteration always checkpoints, so a larger every is only
     * "no periodic checkpoint" (a resumed run may have lowered iterations on purpose). */
    c.ckpt_every = 101;
    err[0] = '\0';
    int rc = mt_config_check(&c, err, sizeof err);
    if (rc != 0) printf("     message: %s\n", err);
    tu_expect(rc == 0, "mt_config_check accepts checkpoint.every > run.iterations");
}

/* mt_config_set that must succeed; prints the error otherwise. */
static int set_ok(mt_config *c, const char *assignment)
{
    char err[1024] = "";
    if (mt_config_set(c, assignment, err, sizeof err) == 0) return 1;
    printf("     --set %s: %s\n", assignment, err);
    return 0;
}

/* Issue 7, defect 4: ranges hold for the float that is stored, not the double that was
 * parsed. For every float key and a list of values near its limits, either the value is
 * rejected or the stored float is inside the key's range. */
static void test_stored_float_ranges(void)
{
    static const char *const near_limits[] = {
        "0.99999994", "0.99999997", "0.99999999", "0.999999999", "1", "1.00000001", "1e-30", "1e-37",
        "1.1754942e-38", "1.1754944e-38", "1e-39", "1e-40", "1e-45", "1.4e-45", "7e-46", "1e-50", "0",
        "-0", "-1e-50", "1e6", "1000000.01", "1000000.1",
    };
    static const char *const float_keys[] = {"meta.inner_lr", "optim.lr", "optim.beta1", "optim.beta2", "optim.eps"};
    int all_in_range = 1;
    for (size_t k = 0; k < sizeof float_keys / sizeof float_keys[0]; k++) {
        for (size_t v = 0; v < sizeof near_limits / sizeof near_limits[0]; v++) {
            mt_config c;
            char assignment[128], err[1024] = "";
            mt_config_defaults(&c);
            snprintf(assignment, sizeof assignment, "%s=%s", float_keys[k], near_limits[v]);
            if (mt_config_set(&c, assignment, err, sizeof err) != 0) continue;
            const char *name = strchr(float_keys[k], '.') + 1;
            float f = strcmp(name, "inner_lr") == 0 ? c.inner_lr
                    : strcmp(name, "lr") == 0       ? c.lr
                    : strcmp(name, "beta1") == 0    ? c.beta1
                    : strcmp(name, "beta2") == 0    ? c.beta2
                                                    : c.eps;
            int ok;
            if (name[0] == 'b') ok = f == 0.0f || (isnormal(f) && f > 0.0f && f < 1.0f); /* Adam: beta in [0, 1) */
            else if (strcmp(name, "eps") == 0) ok = isnormal(f) && f > 0.0f && f <= 1.0f;
            else ok = isnormal(f) && f > 0.0f && f <= 1e6f;
            if (!ok) {
                printf("     --set %s was accepted and stored %.9g\n", assignment, (double)f);
                all_in_range = 0;
            }
        }
    }
    tu_expect(all_in_range, "every accepted float value is stored in range (beta < 1, others normal and > 0)");

    expect_parse_error1("beta2 = 0.99999999 rounds to 1.0f", "[optim]\nbeta2 = 0.99999999\n", 2, "beta2");
    expect_parse_error1("beta1 = 0.999999999 rounds to 1.0f", "[optim]\nbeta1 = 0.999999999\n", 2, "beta1");
    mt_config c;
    mt_config_defaults(&c);
    tu_expect(set_ok(&c, "optim.beta2=0.99999994") && c.beta2 == nextafterf(1.0f, 0.0f),
              "beta2 = 0.99999994 (the largest float below 1) is accepted and stored exactly");
    tu_expect(set_ok(&c, "optim.beta1=0") && c.beta1 == 0.0f, "beta1 = 0 is accepted");
}

/* Issue 7, defect 18: a value below the smallest normal float says so, for every float key,
 * and subnormal values are rejected the same way. */
static void test_tiny_floats(void)
{
    const char *const tiny_inner_lr[] = {"below the smallest normal float", "1.17549435e-38", "inner_lr", NULL};
    expect_parse_error("inner_lr = 1e-50", "[meta]\ninner_lr = 1e-50\n", 2, tiny_inner_lr);
    expect_parse_error1("eps = 1e-50", "[optim]\neps = 1e-50\n", 2, "below the smallest normal float");
    expect_parse_error1("lr = 1e-46", "[optim]\nlr = 1e-46\n", 2, "below the smallest normal float");
    expect_parse_error1("eps = 1e-40 (subnormal)", "[optim]\neps = 1e-40\n", 2, "below the smallest normal float");
    expect_parse_error1("beta1 = 1e-40 (subnormal)", "[optim]\nbeta1 = 1e-40\n", 2,
                        "below the smallest normal float");
    expect_parse_error1("beta2 = 1e-50 (not zero, stored as 0)", "[optim]\nbeta2 = 1e-50\n", 2,
                        "below the smallest normal float");
    expect_set_error("inner_lr subnormal", "meta.inner_lr=1e-39", "below the smallest normal float");
    mt_config c;
    mt_config_defaults(&c);
    tu_expect(set_ok(&c, "optim.eps=1.17549435e-38") && c.eps == FLT_MIN,
              "eps = 1.17549435e-38 (the smallest normal float) is accepted");
}

/* Issue 7, defect 8: run.dir must name a directory; --set values are trimmed like file
 * values, and a '-' after blanks never wraps an unsigned key. */
static void test_run_dir_and_blanks(void)
{
    expect_parse_error1("empty run.dir", "[run]\ndir =\n", 2, "dir");
    expect_parse_error1("run.dir of blanks", "[run]\ndir =    \t \n", 2, "dir");
    expect_set_error("empty run.dir", "run.dir=", "dir");
    expect_set_error("run.dir of blanks", "run.dir=   ", "dir");
    expect_set_error("run.dir with a newline", "run.dir=/tmp/a\nb", "dir");
    expect_set_error("run.dir with a carriage return", "run.dir=/tmp/a\rb", "dir");
    expect_set_error("empty train_split", "task.train_split=", "train_split");

    expect_set_error("seed ' -1' must not wrap", "run.seed= -1", "not a whole number");
    expect_set_error("seed '\\t-1' must not wrap", "run.seed=\t-1", "not a whole number");
    expect_set_error("seed '\\n-5'", "run.seed=\n-5", "not a whole number");
    expect_set_error("seed '+-1'", "run.seed=+-1", "not a whole number");
    expect_set_error("seed '1 2'", "run.seed=1 2", "not a whole number");
    expect_set_error("seed ' '", "run.seed= ", "no value");
    /* Every integer key: " -1" is rejected, never stored as a wrapped or negative value. */
    static const char *const int_keys[] = {"run.seed", "run.iterations", "run.log_every", "task.shots",
                                           "task.query", "task.ways", "task.rotations", "model.hidden",
                                           "model.filters", "meta.inner_steps", "meta.eval_inner_steps",
                                           "meta.meta_batch", "checkpoint.every", "checkpoint.keep"};
    int all_rejected = 1, all_trimmed = 1;
    for (size_t i = 0; i < sizeof int_keys / sizeof int_keys[0]; i++) {
        mt_config c, d;
        char assignment[128], err[1024];
        mt_config_defaults(&c);
        snprintf(assignment, sizeof assignment, "%s= -1", int_keys[i]);
        if (mt_config_set(&c, assignment, err, sizeof err) == 0) {
            printf("     --set \"%s\" was accepted\n", assignment);
            all_rejected = 0;
        }
        /* " 1 " with blanks sets the same as "1" (task.ways starts at 2). */
        const char *one = strcmp(int_keys[i], "task.ways") == 0 ? "2" : "1";
        mt_config_defaults(&c);
        mt_config_defaults(&d);
        snprintf(assignment, sizeof assignment, "%s= \t%s ", int_keys[i], one);
        int rc_c = mt_config_set(&c, assignment, err, sizeof err);
        if (rc_c != 0) printf("     --set \"%s\": %s\n", assignment, err);
        snprintf(assignment, sizeof assignment, "%s=%s", int_keys[i], one);
        int rc_d = mt_config_set(&d, assignment, err, sizeof err);
        if (rc_c != 0 || rc_d != 0 || !same_text(&c, &d)) all_trimmed = 0;
    }
    tu_expect(all_rejected, "--set KEY= -1 is rejected for every integer key");
    tu_expect(all_trimmed, "--set KEY= 1 (with blanks) sets what --set KEY=1 sets, for every integer key");

    mt_config c;
    mt_config_defaults(&c);
    tu_expect(set_ok(&c, "run.seed= 18446744073709551615 ") && c.seed == UINT64_MAX,
              "--set run.seed= 18446744073709551615 (blanks around) is the full 64-bit value");
    tu_expect(set_ok(&c, " optim.lr = 0.5 ") && c.lr == 0.5f, "--set ' optim.lr = 0.5 ' reads like a file line");
    tu_expect(set_ok(&c, "run.dir= /tmp/x y ") && strcmp(c.run_dir, "/tmp/x y") == 0,
              "--set run.dir is trimmed at both ends like a file value, inner blanks kept");
    mt_config_defaults(&c);
    c.run_dir[0] = '\0';
    char err[1024] = "";
    tu_expect(mt_config_check(&c, err, sizeof err) == -1 && strstr(err, "dir"),
              "mt_config_check rejects an empty run.dir set in code");
}

/* Issue 7, defect 8: keys that do not apply to the chosen family or model. */
static void test_inapplicable_keys(void)
{
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"[model]\nfilters = 32\n", "filters"},
        {"[task]\nways = 20\n", "ways"},
        {"[task]\ndataset = data/x.h5\n", "dataset"},
        {"[task]\nrotations = 1\n", "rotations"},
        {"[task]\ntrain_split = background\n", "train_split"},
        {"[task]\ntest_split = evaluation\n", "test_split"},
        {"[task]\nval_split = val\n", "val_split"},
        {"[task]\nfamily = fewshot\ndataset = d.h5\namp_max = 10\n[model]\narch = conv4\n", "amp_max"},
        {"[task]\nfamily = fewshot\ndataset = d.h5\nx_min = -1\n[model]\narch = conv4\n", "x_min"},
        {"[task]\nfamily = fewshot\ndataset = d.h5\n[model]\narch = conv4\nhidden = 100\n", "hidden"},
        {"[task]\nfamily = fewshot\ndataset = d.h5\n[model]\narch = conv4\nwidths = 8,8,8,8\n", "widths"},
        {"[task]\nfamily = fewshot\ndataset = d.h5\n[model]\narch = resnet12\nfilters = 32\n", "filters"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mt_config c;
        char err[1024] = "", label[256];
        mt_config_defaults(&c);
        int rc = mt_config_parse(&c, bad[i].text, "x.ini", err, sizeof err);
        if (rc == 0) rc = mt_config_check(&c, err, sizeof err);
        printf("     message: %s\n", err);
        snprintf(label, sizeof label, "inapplicable key rejected, naming '%s' and why", bad[i].want);
        tu_expect(rc == -1 && strstr(err, bad[i].want) && strstr(err, "does not apply"), label);
    }
    /* A file that lists every key at its default (the shipped sinusoid config, the resolved
     * config.ini of a run, the config text in old checkpoints) still parses and checks. */
    mt_config d, f;
    mt_config_defaults(&d);
    char *text = mt_config_format(&d);
    mt_config_defaults(&f);
    char err[1024] = "";
    tu_expect(mt_config_parse(&f, text, "resolved", err, sizeof err) == 0 && mt_config_check(&f, err, sizeof err) == 0,
              "a resolved text with every key (inapplicable ones at their defaults) parses and checks");
    free(text);
    mt_config_defaults(&f);
    const char *fewshot_all =
        "[task]\nfamily = fewshot\ndataset = d.h5\nways = 20\nrotations = 1\n[model]\narch = conv4\nhidden = 40\n"
        "filters = 32\n";
    tu_expect(mt_config_parse(&f, fewshot_all, "x.ini", err, sizeof err) == 0 && mt_config_check(&f, err, sizeof err) == 0,
              "fewshot with model.hidden at its default value (a full listing) checks");
}

/* model.widths: four whole numbers for ResNet-12's stages. */
static void test_widths(void)
{
    mt_config c;
    char err[1024] = "";
    mt_config_defaults(&c);
    tu_expect(c.widths[0] == 64 && c.widths[1] == 160 && c.widths[2] == 320 && c.widths[3] == 640,
              "model.widths defaults to 64,160,320,640");
    const char *good = "[task]\nfamily = fewshot\ndataset = d.h5\n[model]\narch = resnet12\nwidths = 16, 32,64 ,128\n";
    tu_expect(mt_config_parse(&c, good, "x.ini", err, sizeof err) == 0 && mt_config_check(&c, err, sizeof err) == 0 &&
                  c.widths[0] == 16 && c.widths[1] == 32 && c.widths[2] == 64 && c.widths[3] == 128,
              "widths = 16, 32,64 ,128 parses (blanks around the numbers) and checks with arch = resnet12");
    char *text = mt_config_format(&c);
    tu_expect(strstr(text, "widths = 16,32,64,128\n") != NULL, "the resolved config writes widths = 16,32,64,128");
    free(text);
    expect_set_error("three widths", "model.widths=16,32,64", "four whole numbers");
    expect_set_error("five widths", "model.widths=16,32,64,128,256", "four whole numbers");
    expect_set_error("a zero width", "model.widths=16,0,64,128", "every width must be in [1, 4096]");
    expect_set_error("a width above 4096", "model.widths=16,32,64,5000", "every width must be in [1, 4096]");
    expect_set_error("a word", "model.widths=wide", "four whole numbers");
    expect_set_error("a trailing comma", "model.widths=16,32,64,128,", "four whole numbers");
    expect_set_error("a negative width", "model.widths=-16,32,64,128", "four whole numbers");
    mt_config_defaults(&c);
    tu_expect(mt_config_parse(&c, "[task]\nfamily = fewshot\ndataset = d.h5\n[model]\narch = mlp\n", "x.ini", err,
                              sizeof err) == 0 &&
                  mt_config_check(&c, err, sizeof err) == -1 && strstr(err, "conv4 or resnet12"),
              "fewshot with the mlp names both image models");
}

/* Issue 7, defect 16: the parameter count must fit one MPI call (2^31 - 1) and memory. */
static void test_model_size(void)
{
    expect_set_error("hidden = 65536 (h^2 + 4h + 1 > 2^31 - 1 parameters)", "model.hidden=65536", "out of range");
    expect_set_error("hidden = 46341", "model.hidden=46341", "out of range");
    mt_config c;
    mt_config_defaults(&c);
    char err[1024] = "";
    tu_expect(set_ok(&c, "model.hidden=16384") && mt_config_check(&c, err, sizeof err) == 0,
              "hidden = 16384 is accepted (268,500,993 parameters)");
    mt_config_defaults(&c);
    c.hidden = 65536; /* set in code, past the parser */
    int rc = mt_config_check(&c, err, sizeof err);
    printf("     message: %s\n", err);
    tu_expect(rc == -1 && strstr(err, "parameters"), "mt_config_check rejects hidden = 65536 by its parameter count");
}

/* Issue 7, defect 8: a --set of a key the final family or model does not use is an error,
 * even at the key's default value. */
static void test_check_set(void)
{
    mt_config c;
    char err[1024] = "";
    mt_config_defaults(&c);
    int rc = mt_config_check_set(&c, "model.filters=64", err, sizeof err);
    printf("     message: %s\n", err);
    tu_expect(rc == -1 && strstr(err, "--set model.filters=64") && strstr(err, "does not apply") && strstr(err, "mlp"),
              "--set model.filters=64 with arch = mlp is an error naming the key and the arch");
    tu_expect(mt_config_check_set(&c, " task.ways = 5", err, sizeof err) == -1,
              "--set ' task.ways = 5' with family = sinusoid is an error");
    tu_expect(mt_config_check_set(&c, "model.hidden=40", err, sizeof err) == 0 &&
                  mt_config_check_set(&c, "optim.lr=0.1", err, sizeof err) == 0,
              "--set of keys that apply passes");
    tu_expect(set_ok(&c, "task.family=fewshot") && set_ok(&c, "model.arch=conv4") &&
                  mt_config_check_set(&c, "task.ways=5", err, sizeof err) == 0 &&
                  mt_config_check_set(&c, "model.hidden=40", err, sizeof err) == -1,
              "applicability follows the final family and model");
}

/* Issue 7, defect 8: what a resumed run compares. */
static void test_diff(void)
{
    mt_config a, b;
    char out[512];
    mt_config_defaults(&a);
    mt_config_defaults(&b);
    tu_expect(mt_config_diff(&a, &b, out, sizeof out) == 0 && out[0] == '\0', "mt_config_diff of equal configs is 0");
    tu_expect(set_ok(&b, "optim.lr=0.002") && set_ok(&b, "run.iterations=30000") && set_ok(&b, "run.seed=7"),
              "three keys changed");
    int n = mt_config_diff(&a, &b, out, sizeof out);
    printf("     diff: %s\n", out);
    tu_expect(n == 3, "mt_config_diff counts the three keys");
    tu_expect(strstr(out, "optim.lr: 0.00100000005 -> 0.00200000009") && strstr(out, "run.iterations: 20000 -> 30000") &&
                  strstr(out, "run.seed: 1 -> 7"),
              "mt_config_diff lists each as 'key: old -> new'");
    n = mt_config_resume_diff(&a, &b, out, sizeof out);
    printf("     resume diff: %s\n", out);
    tu_expect(n == 2 && !strstr(out, "iterations") && strstr(out, "optim.lr") && strstr(out, "run.seed"),
              "mt_config_resume_diff leaves out run.iterations, a change made on purpose");
    tu_expect(mt_config_diff(&a, &b, NULL, 0) == 3, "mt_config_diff counts with no output buffer");
    char small[24];
    tu_expect(mt_config_diff(&a, &b, small, sizeof small) == 3 && strlen(small) < sizeof small,
              "a short buffer is truncated but the count is whole");
    static const char *const changeable[] = {"run.dir", "run.iterations", "run.log_every", "checkpoint.every",
                                             "checkpoint.keep"};
    static const char *const locked[] = {"run.seed", "optim.lr", "meta.meta_batch", "model.hidden", "dist.reduce",
                                         "task.family", "meta.algo", "optim.beta2", "run"};
    int ok = 1;
    for (size_t i = 0; i < sizeof changeable / sizeof changeable[0]; i++) ok &= mt_config_resume_may_change(changeable[i]);
    for (size_t i = 0; i < sizeof locked / sizeof locked[0]; i++) ok &= !mt_config_resume_may_change(locked[i]);
    tu_expect(ok, "mt_config_resume_may_change: run.dir/iterations/log_every, checkpoint.every/keep only");
    /* Keys neither config uses do not count: an old text with model.filters = 32 under mlp. */
    mt_config_defaults(&b);
    b.filters = 32;
    tu_expect(mt_config_diff(&a, &b, out, sizeof out) == 0, "a key neither config uses is not compared");
    tu_expect(set_ok(&b, "task.family=fewshot") && set_ok(&b, "model.arch=conv4") &&
                  mt_config_diff(&a, &b, out, sizeof out) == 3 && strstr(out, "model.filters: 64 -> 32"),
              "family and arch changed: they count, and so does filters, which the new config uses");
    printf("     diff: %s\n", out);
}

/* Issue 7, defect 8 and 16: the gradient slab per rank, and the size check train.c makes. */
/* Issue 8: the sinusoid distribution keys: defaults are the generator's old constants,
 * ranges, min/max order, and scope (sinusoid only). */
static void test_sine_keys(void)
{
    mt_config c;
    char err[1024] = "";
    mt_config_defaults(&c);
    tu_expect(c.amp_min == 0.1f && c.amp_max == 5.0f && c.phase_min == 0.0f && c.phase_max == 3.14159265358979f &&
                  c.x_min == -5.0f && c.x_max == 5.0f,
              "sinusoid defaults: A ~ U[0.1, 5], phase ~ U[0, pi (float)], x ~ U[-5, 5]");
    tu_expect(c.amp_min == MT_SINE_AMP_MIN && c.amp_max == MT_SINE_AMP_MAX && c.phase_min == MT_SINE_PHASE_MIN &&
                  c.phase_max == MT_SINE_PHASE_MAX && c.x_min == MT_SINE_X_MIN && c.x_max == MT_SINE_X_MAX,
              "sinusoid defaults equal tasks.h's MT_SINE_* constants");
    tu_expect(c.val_split[0] == '\0', "task.val_split defaults to empty (use test_split)");

    const char *text = "[task]\namp_min = 5\namp_max = 10\nphase_min = -1.5\nphase_max = 1.5\nx_min = -2\n"
                       "x_max = 8\n";
    int rc = mt_config_parse(&c, text, "x.ini", err, sizeof err);
    if (rc != 0) printf("     error: %s\n", err);
    tu_expect(rc == 0 && c.amp_min == 5.0f && c.amp_max == 10.0f && c.phase_min == -1.5f && c.phase_max == 1.5f &&
                  c.x_min == -2.0f && c.x_max == 8.0f,
              "the six sinusoid keys parse");
    tu_expect(mt_config_check(&c, err, sizeof err) == 0, "a shifted sinusoid distribution checks");
    mt_config_defaults(&c);
    tu_expect(set_ok(&c, "task.amp_min=2") && set_ok(&c, "task.amp_max=2") && set_ok(&c, "task.phase_min=1") &&
                  set_ok(&c, "task.phase_max=1") && mt_config_check(&c, err, sizeof err) == 0,
              "amp_min = amp_max and phase_min = phase_max (a fixed value) check");

    /* Each key's own range: finite, |value| <= 1e6, amplitudes not negative. */
    expect_set_error("negative amplitude", "task.amp_min=-1", "out of range");
    expect_set_error("amplitude above 1e6", "task.amp_max=2e6", "out of range");
    expect_set_error("x above 1e6", "task.x_max=1000001", "out of range");
    expect_set_error("phase below -1e6", "task.phase_min=-1e7", "out of range");
    expect_set_error("x_min = nan", "task.x_min=nan", "not a finite number");
    expect_set_error("phase_max = inf", "task.phase_max=inf", "not a finite number");
    expect_parse_error1("amp_max = abc", "[task]\namp_max = abc\n", 2, "amp_max");

    /* min/max order, checked once every key is set. */
    static const struct {
        const char *a, *b, *want_lo, *want_hi;
    } order[] = {
        {"task.amp_min=6", "task.amp_max=5", "amp_min = 6", "amp_max = 5"},
        {"task.amp_min=0.1", "task.amp_max=0.05", "amp_min = 0.1", "amp_max = 0.05"},
        {"task.phase_min=4", "task.phase_max=3.14159265358979", "phase_min = 4", "phase_max = 3.14159274"},
        {"task.x_min=5", "task.x_max=5", "x_min = 5", "x_max = 5"},
        {"task.x_min=1", "task.x_max=-1", "x_min = 1", "x_max = -1"},
    };
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        char label[256];
        mt_config_defaults(&c);
        err[0] = '\0';
        rc = set_ok(&c, order[i].a) && set_ok(&c, order[i].b) ? mt_config_check(&c, err, sizeof err) : 0;
        printf("     message: %s\n", err);
        snprintf(label, sizeof label, "%s with %s is rejected, naming both keys", order[i].a, order[i].b);
        tu_expect(rc == -1 && strstr(err, order[i].want_lo) && strstr(err, order[i].want_hi), label);
    }

    /* Scope: sinusoid only; val_split fewshot only. */
    mt_config_defaults(&c);
    tu_expect(mt_config_check_set(&c, "task.amp_max=10", err, sizeof err) == 0 &&
                  mt_config_check_set(&c, "task.x_min=-1", err, sizeof err) == 0,
              "--set task.amp_max / task.x_min apply to family = sinusoid");
    rc = mt_config_check_set(&c, "task.val_split=val", err, sizeof err);
    printf("     message: %s\n", err);
    tu_expect(rc == -1 && strstr(err, "val_split") && strstr(err, "fewshot only"),
              "--set task.val_split with family = sinusoid is an error");
    tu_expect(set_ok(&c, "task.family=fewshot") && set_ok(&c, "model.arch=conv4") && set_ok(&c, "task.dataset=d.h5"),
              "fewshot config");
    rc = mt_config_check_set(&c, "task.amp_max=5", err, sizeof err);
    printf("     message: %s\n", err);
    tu_expect(rc == -1 && strstr(err, "--set task.amp_max=5") && strstr(err, "sinusoid only"),
              "--set task.amp_max with family = fewshot is an error, even at the default value");
    tu_expect(mt_config_check_set(&c, "task.val_split=val", err, sizeof err) == 0 && set_ok(&c, "task.val_split=val") &&
                  mt_config_check(&c, err, sizeof err) == 0 && strcmp(c.val_split, "val") == 0,
              "task.val_split applies to fewshot");
    c.amp_max = 10.0f; /* past the parser */
    rc = mt_config_check(&c, err, sizeof err);
    printf("     message: %s\n", err);
    tu_expect(rc == -1 && strstr(err, "amp_max") && strstr(err, "does not apply"),
              "fewshot with a non-default amp_max is rejected");
    c.amp_max = 5.0f;
    c.x_min = 6.0f; /* out of order too, but the scope is what matters for fewshot */
    rc = mt_config_check(&c, err, sizeof err);
    tu_expect(rc == -1 && strstr(err, "x_min") && strstr(err, "does not apply"), "fewshot with x_min set is rejected");

    /* A resume that changes the distribution changes what the run computes. */
    mt_config a, b;
    mt_config_defaults(&a);
    mt_config_defaults(&b);
    char out[256];
    tu_expect(set_ok(&b, "task.amp_max=10") && mt_config_resume_diff(&a, &b, out, sizeof out) == 1 &&
                  strstr(out, "task.amp_max: 5 -> 10"),
              "a resumed run refuses a changed task.amp_max");
}

/* Issue 8: the kind of each key, for value generators. */
static void test_key_kind(void)
{
    static const struct {
        const char *section, *name;
        int kind;
    } cases[] = {
        {"run", "dir", MT_KEY_KIND_STRING},       {"task", "family", MT_KEY_KIND_STRING},
        {"task", "val_split", MT_KEY_KIND_STRING}, {"dist", "reduce", MT_KEY_KIND_STRING},
        {"run", "seed", MT_KEY_KIND_INT},          {"run", "iterations", MT_KEY_KIND_INT},
        {"task", "shots", MT_KEY_KIND_INT},        {"meta", "inner_steps", MT_KEY_KIND_INT},
        {"checkpoint", "every", MT_KEY_KIND_INT},  {"meta", "inner_lr", MT_KEY_KIND_FLOAT},
        {"optim", "lr", MT_KEY_KIND_FLOAT},        {"task", "amp_max", MT_KEY_KIND_FLOAT},
        {"task", "x_min", MT_KEY_KIND_FLOAT},      {"task", "nope", 0},
        {"nope", "seed", 0},                       {"", "seed", 0},
        {"task", "", 0},                           {"run", "Seed", 0},
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = mt_config_key_kind(cases[i].section, cases[i].name);
        if (got == cases[i].kind) continue;
        printf("     [%s] %s: kind %d, want %d\n", cases[i].section, cases[i].name, got, cases[i].kind);
        ok = 0;
    }
    tu_expect(ok, "mt_config_key_kind: string/choice 1, int/long/u64 2, float 3, unknown 0");
    tu_expect(MT_KEY_KIND_STRING == 1 && MT_KEY_KIND_INT == 2 && MT_KEY_KIND_FLOAT == 3, "MT_KEY_KIND values");
}

static void test_slab_bytes(void)
{
    /* (1 + ceil(25/2))·1761 + 3·ceil(1761/2) = 14·1761 + 3·881 = 27297 floats. */
    tu_expect(mt_config_slab_bytes(1761, 25, 2, 1) == 27297 * sizeof(float), "slab of the default MLP on 2 ranks");
    tu_expect(mt_config_slab_bytes(1761, 25, 2, 0) == (2 * 1761 + 3 * 881) * sizeof(float),
              "the float reduction keeps one task gradient, whatever the meta-batch");
    tu_expect(mt_config_slab_bytes(10, 1, 1, 1) == (2 * 10 + 30) * sizeof(float), "slab of 10 parameters, 1 task, 1 rank");
    tu_expect(mt_config_slab_bytes(SIZE_MAX / 8, 1000000, 1, 1) == SIZE_MAX, "an overflowing slab is SIZE_MAX");
    tu_expect(mt_config_slab_bytes(SIZE_MAX / 2, 1, 1, 1) == SIZE_MAX, "2·P overflowing is SIZE_MAX");
    tu_expect(mt_config_slab_bytes(100, 0, 1, 1) == SIZE_MAX && mt_config_slab_bytes(100, 4, 0, 1) == SIZE_MAX,
              "meta_batch or world size below 1 is SIZE_MAX");
    mt_config c;
    char err[1024] = "";
    mt_config_defaults(&c);
    tu_expect(mt_config_check_size(&c, 1761, 1, (size_t)1 << 30, err, sizeof err) == 0, "the default MLP fits 1 GiB");
    c.meta_batch = 1000000;
    int rc = mt_config_check_size(&c, 268500993, 4, (size_t)64 << 30, err, sizeof err);
    printf("     message: %s\n", err);
    tu_expect(rc == -1 && strstr(err, "meta_batch"), "meta_batch 1e6 of a 268M-parameter MLP on 4 ranks: too large");
    tu_expect(mt_config_check_size(&c, 268500993, 4, 0, err, sizeof err) == 0, "mem_bytes 0: no memory check");
    rc = mt_config_check_size(&c, (size_t)MT_CONFIG_MAX_PARAMS + 1, 4, 0, err, sizeof err);
    printf("     message: %s\n", err);
    tu_expect(rc == -1 && strstr(err, "parameters"), "2^31 parameters are refused");
}

int main(int argc, char **argv)
{
    char path[4096];
    const char *src = getenv("MT_SOURCE_DIR");
    if (argc > 1) snprintf(path, sizeof path, "%s", argv[1]);
    else snprintf(path, sizeof path, "%s/configs/sinusoid_maml.ini", src ? src : ".");

    test_round_trips();
    test_shipped_config(path);
    test_parse_errors();
    test_long_lines();
    test_set_errors();
    test_check();
    test_stored_float_ranges();
    test_tiny_floats();
    test_run_dir_and_blanks();
    test_inapplicable_keys();
    test_widths();
    test_model_size();
    test_check_set();
    test_diff();
    test_slab_bytes();
    test_sine_keys();
    test_key_kind();
    return tu_finish();
}
