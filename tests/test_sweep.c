/*
 * test_sweep.c — a sweep's plan and records: the [sweep] section (with line numbers), grid
 * order and point ids, random draws (seeded, in range, whole numbers for integer keys),
 * rungs, successive halving's promotions, the journal's round trip (a torn line skipped) and
 * sweep.csv's quoting.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "sweep_plan.h"
#include "sweeplog.h"
#include "testutil.h"

static int parse(mt_sweep_spec *s, mt_config *c, const char *text, char *err, size_t len)
{
    char *base = NULL;
    mt_config_defaults(c);
    mt_sweep_spec_init(s, c->seed);
    if (mt_sweep_parse(s, text, "t.ini", &base, err, len) != 0) return -1;
    int rc = mt_config_parse(c, base, "t.ini", err, len);
    free(base);
    return rc == 0 ? mt_sweep_check(s, c, err, len) : -1;
}

static void test_parse_and_grid(void)
{
    const char *text = "[run]\niterations = 50\n[sweep]\ntask.amp_max = 2, 5 ,10\nmeta.inner_lr = 0.01,0.02\n"
                       "ranks_per_run = 2\n[meta]\nmeta_batch = 4\n";
    mt_sweep_spec s;
    mt_config c;
    char err[1024] = "";
    tu_expect(parse(&s, &c, text, err, sizeof err) == 0, "a sweep config parses");
    if (err[0]) printf("     %s\n", err);
    tu_expect(c.iterations == 50 && c.meta_batch == 4, "the base config keeps the keys around [sweep]");
    tu_expect(s.n_axes == 2 && s.ranks_per_run == 2 && !s.halving && !s.random, "the [sweep] keys");
    tu_expect(mt_sweep_count(&s) == 6, "a 3 x 2 grid has 6 points");
    mt_sweep_point p[6];
    mt_sweep_points(&s, p);
    tu_expect(strcmp(p[0].id, "amp_max=2,inner_lr=0.01") == 0, "point 0's id");
    tu_expect(strcmp(p[1].id, "amp_max=2,inner_lr=0.02") == 0, "the last key varies fastest");
    tu_expect(strcmp(p[5].id, "amp_max=10,inner_lr=0.02") == 0, "point 5's id (blanks trimmed)");
    mt_config pc = c;
    tu_expect(mt_sweep_apply(&s, &p[4], &pc, err, sizeof err) == 0 && pc.amp_max == 10.0f && pc.inner_lr == 0.01f,
              "applying point 4 sets its values");
    mt_sweep_spec_free(&s);

    /* Errors carry the file's line. */
    const char *bad = "[run]\niterations = 50\n\n[sweep]\nmeta.inner_lr = 0.1\nmeta.nope = 1\n";
    tu_expect(parse(&s, &c, bad, err, sizeof err) != 0 && strstr(err, "t.ini:6:") && strstr(err, "meta.nope"),
              "an unknown swept key is reported with its line");
    mt_sweep_spec_free(&s);
    const char *base_bad = "[sweep]\nmeta.inner_lr = 0.1\n[run]\nitterations = 5\n";
    tu_expect(parse(&s, &c, base_bad, err, sizeof err) != 0 && strstr(err, "t.ini:4:"),
              "a bad base key after [sweep] keeps its line number");
    mt_sweep_spec_free(&s);
    const char *dup = "[sweep]\nmeta.inner_lr = 0.1\nmeta.inner_lr = 0.2\n";
    tu_expect(parse(&s, &c, dup, err, sizeof err) != 0 && strstr(err, "twice"), "a key given twice");
    mt_sweep_spec_free(&s);

    /* Two axes with one name are labelled section.key; odd characters become '_'. */
    const char *shared = "[sweep]\noptim.lr = 0.1\nmeta.inner_lr = 0.2\n";
    tu_expect(parse(&s, &c, shared, err, sizeof err) == 0, "two axes");
    mt_sweep_points(&s, p);
    tu_expect(strcmp(p[0].id, "lr=0.1,inner_lr=0.2") == 0, "distinct names stay short");
    mt_sweep_spec_free(&s);
    const char *odd = "[task]\nfamily = fewshot\ndataset = d.h5\n[model]\narch = conv4\n[sweep]\n"
                      "task.test_split = a/b, c d\n";
    tu_expect(parse(&s, &c, odd, err, sizeof err) == 0, "a string axis");
    mt_sweep_points(&s, p);
    tu_expect(strcmp(p[0].id, "test_split=a_b") == 0 && strcmp(p[1].id, "test_split=c_d") == 0,
              "'/' and blanks in ids become '_'");
    mt_sweep_spec_free(&s);
}

static void test_random(void)
{
    const char *text = "[sweep]\nmethod = random\npoints = 200\noptim.lr = log-uniform(1e-4, 1e-2)\n"
                       "meta.inner_steps = uniform(1, 5)\nmeta.algo = maml, fomaml\n";
    mt_sweep_spec s;
    mt_config c;
    char err[1024] = "";
    tu_expect(parse(&s, &c, text, err, sizeof err) == 0, "a random sweep parses");
    mt_sweep_point *p = calloc(200, sizeof *p), *q = calloc(200, sizeof *q);
    mt_sweep_points(&s, p);
    mt_sweep_points(&s, q);
    int same = 1, in_range = 1, whole = 1, algos[2] = {0, 0}, below = 0;
    for (int i = 0; i < 200; i++) {
        same &= strcmp(p[i].id, q[i].id) == 0;
        const double lr = atof(p[i].value[0]);
        in_range &= lr >= 1e-4 * 0.999 && lr <= 1e-2 * 1.001;
        below += lr < 1e-3;
        const char *st = p[i].value[1];
        whole &= strlen(st) == 1 && st[0] >= '1' && st[0] <= '5';
        algos[strcmp(p[i].value[2], "maml") == 0]++;
    }
    tu_expect(same, "the same seed draws the same points");
    tu_expect(in_range, "log-uniform draws stay in range");
    tu_expect(below > 60 && below < 140, "log-uniform: about half below the geometric mean 1e-3");
    tu_expect(whole, "an integer key draws whole numbers");
    tu_expect(algos[0] > 50 && algos[1] > 50, "a listed key is drawn from its values");
    s.seed = 99;
    mt_sweep_points(&s, q);
    tu_expect(strcmp(p[0].id, q[0].id) != 0, "another seed, other points");
    free(p), free(q);
    mt_sweep_spec_free(&s);
    const char *grid_range = "[sweep]\noptim.lr = uniform(0.1, 0.2)\n";
    tu_expect(parse(&s, &c, grid_range, err, sizeof err) != 0 && strstr(err, "method = random"),
              "a range in a grid is refused");
    mt_sweep_spec_free(&s);
}

static void test_rungs_and_promotion(void)
{
    mt_sweep_spec s;
    mt_sweep_spec_init(&s, 1);
    long t[MT_SWEEP_MAX_RUNGS];
    tu_expect(mt_sweep_rungs(&s, 1000, t) == 1 && t[0] == 1000, "no halving: one rung");
    s.halving = 1, s.min_iterations = 100, s.eta = 3;
    int n = mt_sweep_rungs(&s, 1000, t);
    tu_expect(n == 4 && t[0] == 100 && t[1] == 300 && t[2] == 900 && t[3] == 1000, "rungs 100 300 900 1000");
    s.eta = 2, s.min_iterations = 40;
    n = mt_sweep_rungs(&s, 80, t);
    tu_expect(n == 2 && t[0] == 40 && t[1] == 80, "rungs 40 80");

    const double m[6] = {0.5, 0.1, NAN, 0.3, 0.1, 0.9};
    const int ok[6] = {1, 1, 1, 1, 0, 1};
    int up[6];
    tu_expect(mt_sweep_promote(m, ok, 6, 3, 0, up) == 2 && up[1] && up[3] && !up[4] && !up[2],
              "lower is better: the 2 best of 6, skipping a failed point and a NaN");
    tu_expect(mt_sweep_promote(m, ok, 6, 3, 1, up) == 2 && up[5] && up[0], "higher is better");
    const double tie[4] = {1, 1, 1, 1};
    const int all[4] = {1, 1, 1, 1};
    tu_expect(mt_sweep_promote(tie, all, 4, 2, 0, up) == 2 && up[0] && up[1], "ties go to the earlier point");
    tu_expect(mt_sweep_promote(tie, all, 2, 3, 0, up) == 1, "at least one is promoted");
}

static void test_journal_and_csv(void)
{
    const char *dir = tu_scratch_dir("test_sweep");
    if (!dir) return;
    char err[1024] = "";
    mt_sweep_record r = {.rung = 0, .iterations = 40, .train_loss = 0.5, .eval_mean = 0.25, .eval_ci95 = 0.01,
                         .wall_s = 2.0};
    snprintf(r.id, sizeof r.id, "a=1,b=2");
    snprintf(r.status, sizeof r.status, "done");
    tu_expect(mt_sweep_log_append(dir, &r, err, sizeof err) == 0, "append a record");
    r.rung = 1, r.iterations = 80, r.wall_s = 3.0;
    snprintf(r.status, sizeof r.status, "failed");
    snprintf(r.message, sizeof r.message, "diverged,\tat \"80\"\nbadly");
    tu_expect(mt_sweep_log_append(dir, &r, err, sizeof err) == 0, "append a failure");
    char path[1024];
    tu_in_dir(path, sizeof path, "sweep.journal");
    FILE *f = fopen(path, "a");
    fputs("v1\ttorn\t0\t4", f); /* a line cut short by a crash */
    fclose(f);
    mt_sweep_record *recs = NULL;
    long n = mt_sweep_log_read(dir, &recs, err, sizeof err);
    tu_expect(n == 2, "two records read back, the torn line skipped");
    tu_expect(n == 2 && recs[0].eval_mean == 0.25 && recs[1].iterations == 80 && !strchr(recs[1].message, '\t') &&
                  !strchr(recs[1].message, '\n'),
              "the values round-trip; the message lost its tabs and line breaks");
    mt_sweep_record sum;
    tu_expect(mt_sweep_log_summary(recs, n, "a=1,b=2", &sum) == 0 && sum.rung == 1 && sum.wall_s == 5.0,
              "the summary is the highest rung, wall time summed");

    mt_sweep_spec s;
    mt_sweep_spec_init(&s, 1);
    s.n_axes = 2;
    snprintf(s.axis[0].key, sizeof s.axis[0].key, "x.a");
    snprintf(s.axis[1].key, sizeof s.axis[1].key, "x.b");
    mt_sweep_point pts[2] = {0};
    snprintf(pts[0].id, sizeof pts[0].id, "a=1,b=2");
    snprintf(pts[0].value[0], sizeof pts[0].value[0], "1");
    snprintf(pts[0].value[1], sizeof pts[0].value[1], "2");
    snprintf(pts[1].id, sizeof pts[1].id, "a=3,b=4");
    tu_expect(mt_sweep_csv_write(dir, &s, pts, 2, recs, n, "mse", NULL, err, sizeof err) == 0, "write sweep.csv");
    tu_in_dir(path, sizeof path, "sweep.csv");
    unsigned char *csv = NULL;
    const long len = tu_slurp(path, &csv);
    if (csv) csv[len > 0 ? len : 0] = '\0'; /* the spare byte ends the text */
    const char *want = "point,x.a,x.b,rung,iterations,train_loss,eval_metric,eval_mean,eval_ci95,wall_s,status\n"
                       "\"a=1,b=2\",1,2,2,80,0.5,mse,0.25,0.01,5.0,\"failed: diverged, at \"\"80\"\" badly\"\n"
                       "\"a=3,b=4\",,,,,,mse,,,,pending\n";
    tu_expect(csv && strcmp((char *)csv, want) == 0, "sweep.csv: header, RFC 4180 quoting, pending rows");
    if (csv && strcmp((char *)csv, want) != 0) printf("%s", (char *)csv);
    free(csv);
    free(recs);
    tu_scratch_remove();
}

int main(void)
{
    test_parse_and_grid();
    test_random();
    test_rungs_and_promotion();
    test_journal_and_csv();
    return tu_finish();
}
