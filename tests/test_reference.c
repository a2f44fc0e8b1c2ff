/*
 * test_reference.c — metatrain against PyTorch: the 1-40-40-1 MLP's loss, gradient and
 * Hessian-vector product, and the MAML / FOMAML / Reptile meta-gradients of one sinusoid
 * task for K = 1 and K = 3 inner steps, compared with the values stored in the fixture
 * tests/reference/mlp_sinusoid.bin.
 *
 * The fixture (written by tests/reference/make_reference.py, which documents it) is a
 * concatenation of little-endian records
 *     char name[32] (NUL-padded ASCII)   int32 count   float32 values[count]
 * holding the configuration [in, hidden, out, n_support, n_query, inner_lr], θ, a direction v,
 * the task's rows, and the reference outputs. They were computed by PyTorch in float64 from
 * exactly the float32 inputs stored, then rounded once to float32, so each stored output is
 * the exact answer to within 6e-8 relative.
 *
 * The same checks run for the Conv4 few-shot classifier (conv, batchnorm with batch
 * statistics, ReLU, max-pool, flatten, linear head, softmax cross-entropy) on one 5-way task
 * with tests/reference/conv4_fewshot.bin (tests/reference/make_reference_conv4.py): loss,
 * accuracy, gradient, HVP, and the MAML and FOMAML meta-gradients for K = 1 and K = 2; and
 * on the same task ANIL's (the inner loop adapts only the head) query loss and meta-gradient
 * over every parameter, K = 1 and 2, and the multi-step loss's MAML and FOMAML meta-gradients
 * (K = 2, weights 0.3 and 0.7), Meta-SGD's over (θ, α), K = 1 and 2, and LSLR's over θ and
 * the rates per step and tensor, K = 2, with
 * tests/reference/conv4_family.bin
 * (tests/reference/make_reference_family.py).
 *
 * And for ResNet-12 (four stages of three conv-batchnorm-leaky-ReLU blocks with a 1×1 conv +
 * batchnorm shortcut, residual add, max-pool; global average pool, linear head) with
 * tests/reference/resnet12_fewshot.bin (tests/reference/make_reference_resnet12.py): widths
 * 4,5,6,8 on 28×28 images, the same quantities and tolerances as Conv4 (make_reference_resnet12.py says
 * why its inner learning rate is 0.02).
 *
 * mt_adam_step is checked against torch.optim.Adam (tests/reference/adam_steps.bin, written by
 * tests/reference/make_adam_fixture.py): 37 parameters, 20 steps of fixed gradients (zeros,
 * 1e-20, 1e4, sign changes, random magnitudes 1e-3..1e3) under five configurations (the
 * defaults, lr 0.5, beta2 0.99999, eps 1e-4, beta1 0). The gradients are replayed here and θ, m,
 * v compared after every step, each difference relative to the size of what made the value
 * (see adam_replay) plus 1e-44 for subnormal v: 1e-6. torch and metatrain differ by about
 * 1e-7 (fused multiply-adds in torch's vector loops); a beta2 off by 1e-3 gives 1e-4 or more,
 * and the test checks that it does. The hyper-parameters torch was given are the float32
 * values metatrain holds, so 1 − β is the same number in both.
 *
 * The fixtures are found in the directory argv[1], else $MT_REFERENCE_DIR (tests/CMakeLists.txt
 * sets it). A missing, truncated or malformed file is an error with a message naming the file
 * and the problem, and exit status 1: it never passes vacuously.
 *
 * Tolerances (normwise relative, max |ours − reference| / max |reference|): our float32
 * computation against the float64 answer. The same computation in torch float32 differs by
 * about 4e-7 (make_reference.py), so 1e-5 leaves a factor 25 for a different summation order;
 * it holds for losses, the gradient, the HVP and the MAML and FOMAML meta-gradients. Reptile's
 * θ − θ_K is a difference of two O(1) vectors whose size is only α·|∇L| ≈ 1e-2, so the
 * rounding of θ_K (6e-8 of |θ|) is ~1e-5 of it: 1e-4.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "meta.h"
#include "model.h"
#include "optim.h"
#include "testutil.h"

#define FIXTURE_NAME "mlp_sinusoid.bin"
#define CONV4_FIXTURE_NAME "conv4_fewshot.bin"
#define RESNET12_FIXTURE_NAME "resnet12_fewshot.bin"
#define FAMILY_FIXTURE_NAME "conv4_family.bin" /* make_reference_family.py: ANIL, multi-step loss */
#define ADAM_FIXTURE_NAME "adam_steps.bin"
#define NAME_LEN 32     /* bytes of a record's name field */
#define HEADER_LEN 36   /* name + int32 count */
#define MAX_RECORDS 64  /* the fixture has 19 */
#define TOL_REF 1e-5    /* losses, gradient, HVP, MAML, FOMAML */
#define TOL_REPTILE 1e-4 /* θ − θ_K */
#define ADAM_RTOL 1e-6   /* Adam θ, m, v against torch.optim.Adam, relative to their scale */
#define ADAM_ATOL 1e-44  /* ... plus 7 subnormal quanta (FLT_TRUE_MIN = 1.4e-45) for v ≈ g² of 1e-20 */

/* ---- reading the fixture ------------------------------------------------------------ */

typedef struct {
    char name[NAME_LEN + 1];
    size_t count;
    float *values; /* [count] */
} record;

typedef struct {
    const char *path;
    int n;
    record rec[MAX_RECORDS];
} fixture;

/* Prints "test_reference: <path>: <problem>" with a hint, and exits 1. */
static _Noreturn void bad_fixture(const char *path, const char *problem)
{
    const char *script = strstr(path, CONV4_FIXTURE_NAME)      ? "make_reference_conv4.py"
                         : strstr(path, RESNET12_FIXTURE_NAME) ? "make_reference_resnet12.py"
                         : strstr(path, FAMILY_FIXTURE_NAME)   ? "make_reference_family.py"
                         : strstr(path, ADAM_FIXTURE_NAME)     ? "make_adam_fixture.py"
                                                               : "make_reference.py";
    fprintf(stderr,
            "test_reference: %s: %s\n"
            "  (regenerate with: /usr/bin/python3 tests/reference/%s %s)\n",
            path, problem, script, path);
    exit(1);
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads every record of the file at path into f, validating the framing: each name is
 * NUL-terminated printable ASCII and unique, each count fits in what is left of the file,
 * every value is finite. Exits through bad_fixture on any problem. */
static void fixture_read(fixture *f, const char *path)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    FILE *fp = fopen(path, "rb");
    if (!fp) bad_fixture(path, "cannot open the reference fixture");
    if (fseek(fp, 0, SEEK_END) != 0) bad_fixture(path, "cannot seek");
    const long size = ftell(fp);
    if (size < 0 || fseek(fp, 0, SEEK_SET) != 0) bad_fixture(path, "cannot determine the size");
    unsigned char *data = mt_malloc((size_t)size);
    if (fread(data, 1, (size_t)size, fp) != (size_t)size) bad_fixture(path, "read error");
    fclose(fp);
    if (size == 0) bad_fixture(path, "empty file");

    char msg[256];
    size_t off = 0;
    while (off < (size_t)size) {
        if ((size_t)size - off < HEADER_LEN) {
            snprintf(msg, sizeof msg, "truncated record header at byte %zu (%zu bytes left, need %d)", off,
                     (size_t)size - off, HEADER_LEN);
            bad_fixture(path, msg);
        }
        if (f->n == MAX_RECORDS) bad_fixture(path, "more than 64 records: not a metatrain reference fixture");
        record *r = &f->rec[f->n];
        const unsigned char *name = data + off;
        size_t len = 0;
        while (len < NAME_LEN && name[len] != 0) len++;
        if (len == 0 || len == NAME_LEN) {
            snprintf(msg, sizeof msg, "record %d at byte %zu: name is %s", f->n, off,
                     len == 0 ? "empty" : "not NUL-terminated within 32 bytes");
            bad_fixture(path, msg);
        }
        for (size_t i = 0; i < len; i++)
            if (name[i] < 0x21 || name[i] > 0x7e) {
                snprintf(msg, sizeof msg, "record %d at byte %zu: name is not printable ASCII", f->n, off);
                bad_fixture(path, msg);
            }
        memcpy(r->name, name, len);
        r->name[len] = 0;
        for (int j = 0; j < f->n; j++)
            if (strcmp(f->rec[j].name, r->name) == 0) {
                snprintf(msg, sizeof msg, "record '%s' appears twice", r->name);
                bad_fixture(path, msg);
            }
        const int32_t count = (int32_t)le32(data + off + NAME_LEN);
        off += HEADER_LEN;
        if (count < 0 || (size_t)count > ((size_t)size - off) / 4) {
            snprintf(msg, sizeof msg, "record '%s' claims %d values but only %zu bytes remain (truncated?)",
                     r->name, (int)count, (size_t)size - off);
            bad_fixture(path, msg);
        }
        r->count = (size_t)count;
        r->values = mt_malloc(r->count * sizeof(float));
        for (size_t i = 0; i < r->count; i++, off += 4) {
            const uint32_t bits = le32(data + off);
            memcpy(&r->values[i], &bits, sizeof bits);
            if (!isfinite(r->values[i])) {
                snprintf(msg, sizeof msg, "record '%s' value %zu is not finite", r->name, i);
                bad_fixture(path, msg);
            }
        }
        f->n++;
    }
    free(data);
}

static void fixture_free(fixture *f)
{
    for (int i = 0; i < f->n; i++) free(f->rec[i].values);
    f->n = 0;
}

/* The values of record name, which must hold exactly count values. */
static const float *fixture_get(const fixture *f, const char *name, size_t count)
{
    char msg[256];
    for (int i = 0; i < f->n; i++) {
        if (strcmp(f->rec[i].name, name) != 0) continue;
        if (f->rec[i].count != count) {
            snprintf(msg, sizeof msg, "record '%s' has %zu values, expected %zu", name, f->rec[i].count, count);
            bad_fixture(f->path, msg);
        }
        return f->rec[i].values;
    }
    snprintf(msg, sizeof msg, "record '%s' is missing", name);
    bad_fixture(f->path, msg);
}

/* A configuration entry that must be a positive integer (stored as float32). */
static int config_int(const fixture *f, const float *config, int i, const char *what)
{
    const float x = config[i];
    if (!(x >= 1.0f && x <= 1e6f && x == floorf(x))) {
        char msg[128];
        snprintf(msg, sizeof msg, "config[%d] (%s) = %g is not a positive integer", i, what, x);
        bad_fixture(f->path, msg);
    }
    return (int)x;
}

/* ---- comparisons -------------------------------------------------------------------- */

static void compare(const char *label, const float *got, const float *want, size_t n, double tol)
{
    tu_check(label, tu_rel_diff(got, want, n), tol);
}

static void compare_loss(const char *label, float got, float want)
{
    tu_check(label, tu_rel_diff(&got, &want, 1), TOL_REF);
}

static void check_mlp(const char *path)
{
    fixture f;
    fixture_read(&f, path);
    printf("fixture %s: %d records\n", path, f.n);

    const float *config = fixture_get(&f, "config", 6);
    const int in = config_int(&f, config, 0, "in"), hidden = config_int(&f, config, 1, "hidden");
    const int out = config_int(&f, config, 2, "out");
    const int ns = config_int(&f, config, 3, "n_support"), nq = config_int(&f, config, 4, "n_query");
    const float inner_lr = config[5];
    if (!(inner_lr > 0.0f && inner_lr < 1.0f)) bad_fixture(path, "config[5] (inner_lr) is not in (0, 1)");

    mt_model m;
    if (mt_model_mlp(&m, in, hidden, out) != 0) bad_fixture(path, "config does not describe an MLP");
    const size_t P = m.n_params;
    printf("model mlp %d-%d-%d-%d, P=%zu; %d support, %d query rows; inner_lr %g\n", in, hidden, hidden, out, P,
           ns, nq, inner_lr);

    const float *theta = fixture_get(&f, "theta", P), *v = fixture_get(&f, "v", P);
    mt_task task = {
        .xs = fixture_get(&f, "x_support", (size_t)ns * in),
        .ys = fixture_get(&f, "y_support", (size_t)ns * out),
        .xq = fixture_get(&f, "x_query", (size_t)nq * in),
        .yq = fixture_get(&f, "y_query", (size_t)nq * out),
        .n_support = ns,
        .n_query = nq,
    };

    const int max_rows = ns > nq ? ns : nq;
    mt_workspace *ws = mt_workspace_init(&m, max_rows, MT_WS_HVP);
    float *g = mt_malloc(P * sizeof *g), *hv = mt_malloc(P * sizeof *hv);

    /* the model at θ: support loss, gradient, H·v; query loss */
    const float loss_s = mt_model_loss_grad(&m, ws, theta, task.xs, task.ys, ns, g);
    compare_loss("support loss at theta", loss_s, *fixture_get(&f, "loss_support", 1));
    compare("support gradient at theta", g, fixture_get(&f, "grad_support", P), P, TOL_REF);
    const float loss_hv = mt_model_hvp(&m, ws, theta, task.xs, task.ys, ns, v, hv);
    compare("support HVP at theta, H v", hv, fixture_get(&f, "hvp_support", P), P, TOL_REF);
    tu_expect(loss_hv == loss_s, "mt_model_hvp returns the same loss as mt_model_loss_grad");
    const float loss_q = mt_model_forward(&m, ws, theta, task.xq, task.yq, nq);
    compare_loss("query loss at theta", loss_q, *fixture_get(&f, "loss_query", 1));

    /* meta-gradients for K = 1 and K = 3 */
    mt_meta *mm = mt_meta_init(&m, MT_ALGO_MAML, 3, ns, nq);
    const int ks[] = {1, 3};
    for (int i = 0; i < 2; i++) {
        const int K = ks[i];
        char name[NAME_LEN], label[96];
        mt_task_losses losses;

        mt_meta_task_grad(mm, MT_ALGO_MAML, theta, inner_lr, K, &task, g, &losses);
        snprintf(label, sizeof label, "K=%d query loss before adaptation (losses.pre)", K);
        compare_loss(label, losses.pre, *fixture_get(&f, "loss_query", 1));
        snprintf(name, sizeof name, "maml_k%d_loss", K);
        snprintf(label, sizeof label, "K=%d query loss after adaptation (losses.post)", K);
        compare_loss(label, losses.post, *fixture_get(&f, name, 1));
        snprintf(name, sizeof name, "maml_k%d_grad", K);
        snprintf(label, sizeof label, "K=%d MAML meta-gradient", K);
        compare(label, g, fixture_get(&f, name, P), P, TOL_REF);

        const mt_task_losses ev = mt_meta_adapt_eval(mm, theta, inner_lr, K, &task);
        snprintf(name, sizeof name, "maml_k%d_loss", K);
        snprintf(label, sizeof label, "K=%d adapt_eval post loss", K);
        compare_loss(label, ev.post, *fixture_get(&f, name, 1));

        mt_meta_task_grad(mm, MT_ALGO_FOMAML, theta, inner_lr, K, &task, g, NULL);
        snprintf(name, sizeof name, "fomaml_k%d_grad", K);
        snprintf(label, sizeof label, "K=%d FOMAML meta-gradient", K);
        compare(label, g, fixture_get(&f, name, P), P, TOL_REF);

        mt_meta_task_grad(mm, MT_ALGO_REPTILE, theta, inner_lr, K, &task, g, NULL);
        snprintf(name, sizeof name, "reptile_k%d_grad", K);
        snprintf(label, sizeof label, "K=%d Reptile meta-gradient (theta - theta_K)", K);
        compare(label, g, fixture_get(&f, name, P), P, TOL_REPTILE);
    }

    mt_meta_free(mm);
    mt_workspace_free(ws);
    free(g);
    free(hv);
    fixture_free(&f);
}

/* NCHW [N, C, HW] (PyTorch) to CNHW [C, N, HW] (metatrain's conv layout). */
static float *to_cnhw(const float *x, int N, int C, int HW)
{
    float *out = mt_malloc((size_t)N * C * HW * sizeof *out);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            memcpy(out + ((size_t)c * N + n) * HW, x + ((size_t)n * C + c) * HW, (size_t)HW * sizeof *out);
    return out;
}

/* The fixture's task for image model m, its images turned CNHW (free xs and xq). */
static mt_task image_task(fixture *f, const mt_model *m, int ns, int nq)
{
    const int C = m->in_c, HW = m->in_h * m->in_w;
    return (mt_task){.xs = to_cnhw(fixture_get(f, "x_support", (size_t)ns * C * HW), ns, C, HW),
                     .ys = fixture_get(f, "y_support", (size_t)ns),
                     .xq = to_cnhw(fixture_get(f, "x_query", (size_t)nq * C * HW), nq, C, HW),
                     .yq = fixture_get(f, "y_query", (size_t)nq),
                     .n_support = ns,
                     .n_query = nq};
}

/* The checks shared by the image-model fixtures (Conv4, ResNet-12): model m, built from the
 * fixture's config, against its support loss, gradient and HVP at θ, the query loss and
 * accuracy, and MAML's and FOMAML's meta-gradients for K = 1, 2. Labels start with tag. */
static void check_image_model(fixture *f, const char *tag, const mt_model *m, int ns, int nq, float inner_lr)
{
    const size_t P = m->n_params;
    const float *theta = fixture_get(f, "theta", P), *v = fixture_get(f, "v", P);
    const mt_task task = image_task(f, m, ns, nq);
    const int max_rows = ns > nq ? ns : nq;
    mt_workspace *ws = mt_workspace_init(m, max_rows, MT_WS_HVP);
    float *g = mt_malloc(P * sizeof *g), *hv = mt_malloc(P * sizeof *hv);
    char name[NAME_LEN], label[96];
#define LABEL(...) (snprintf(label, sizeof label, __VA_ARGS__), label)

    const float loss_s = mt_model_loss_grad(m, ws, theta, task.xs, task.ys, ns, g);
    compare_loss(LABEL("%s support loss at theta", tag), loss_s, *fixture_get(f, "loss_support", 1));
    compare(LABEL("%s support gradient at theta", tag), g, fixture_get(f, "grad_support", P), P, TOL_REF);
    mt_model_hvp(m, ws, theta, task.xs, task.ys, ns, v, hv);
    compare(LABEL("%s support HVP at theta, H v", tag), hv, fixture_get(f, "hvp_support", P), P, TOL_REF);
    const float loss_q = mt_model_forward(m, ws, theta, task.xq, task.yq, nq);
    compare_loss(LABEL("%s query loss at theta", tag), loss_q, *fixture_get(f, "loss_query", 1));
    const float acc = (float)mt_model_correct(m, ws, task.yq, nq) / (float)nq;
    tu_check(LABEL("%s query accuracy at theta", tag), fabsf(acc - *fixture_get(f, "acc_query", 1)), 0.0);

    mt_meta *mm = mt_meta_init(m, MT_ALGO_MAML, 2, ns, nq);
    for (int K = 1; K <= 2; K++) {
        mt_task_losses losses;
        mt_meta_task_grad(mm, MT_ALGO_MAML, theta, inner_lr, K, &task, g, &losses);
        snprintf(name, sizeof name, "maml_k%d_loss", K);
        compare_loss(LABEL("%s K=%d query loss after adaptation", tag, K), losses.post, *fixture_get(f, name, 1));
        snprintf(name, sizeof name, "maml_k%d_grad", K);
        compare(LABEL("%s K=%d MAML meta-gradient", tag, K), g, fixture_get(f, name, P), P, TOL_REF);
        mt_meta_task_grad(mm, MT_ALGO_FOMAML, theta, inner_lr, K, &task, g, NULL);
        snprintf(name, sizeof name, "fomaml_k%d_grad", K);
        compare(LABEL("%s K=%d FOMAML meta-gradient", tag, K), g, fixture_get(f, name, P), P, TOL_REF);
    }
#undef LABEL
    mt_meta_free(mm);
    mt_workspace_free(ws);
    free((float *)task.xs);
    free((float *)task.xq);
    free(g);
    free(hv);
}

/* The rest of the family on the Conv4 fixture's task (f), against make_reference_family.py's
 * records: ANIL's query loss after adapting the head only and its meta-gradient over every
 * parameter, K = 1, 2; the multi-step loss 0.3·L_Q(θ_1) + 0.7·L_Q(θ_2), MAML and FOMAML. */
static void check_family(fixture *f, const char *path, const mt_model *m, int ns, int nq, float inner_lr)
{
    fixture a;
    fixture_read(&a, path);
    printf("fixture %s: %d records\n", path, a.n);
    const size_t P = m->n_params;
    const mt_task task = image_task(f, m, ns, nq);
    const float *theta = fixture_get(f, "theta", P);
    float *g = mt_malloc(P * sizeof *g);
    mt_meta *mm = mt_meta_init(m, MT_ALGO_ANIL, 2, ns, nq);
    for (int K = 1; K <= 2; K++) {
        char name[NAME_LEN], label[96];
        mt_task_losses losses;
        mt_meta_task_grad(mm, MT_ALGO_ANIL, theta, inner_lr, K, &task, g, &losses);
        snprintf(name, sizeof name, "anil_k%d_loss", K);
        snprintf(label, sizeof label, "conv4 K=%d query loss after adapting the head", K);
        compare_loss(label, losses.post, *fixture_get(&a, name, 1));
        snprintf(name, sizeof name, "anil_k%d_grad", K);
        snprintf(label, sizeof label, "conv4 K=%d ANIL meta-gradient", K);
        compare(label, g, fixture_get(&a, name, P), P, TOL_REF);
    }
    mt_meta_free(mm);
    const float w[2] = {0.3f, 0.7f};
    mm = mt_meta_init(m, MT_ALGO_MAML, 2, ns, nq);
    mt_meta_set_step_weights(mm, w);
    mt_meta_task_grad(mm, MT_ALGO_MAML, theta, inner_lr, 2, &task, g, NULL);
    compare("conv4 K=2 multi-step loss, MAML meta-gradient", g, fixture_get(&a, "msl_k2_maml_grad", P), P, TOL_REF);
    mt_meta_task_grad(mm, MT_ALGO_FOMAML, theta, inner_lr, 2, &task, g, NULL);
    compare("conv4 K=2 multi-step loss, FOMAML meta-gradient", g, fixture_get(&a, "msl_k2_fomaml_grad", P), P,
            TOL_REF);
    mt_meta_free(mm);
    /* Meta-SGD: θ then a rate per parameter, all inner_lr (the fixture says why). */
    mt_model ms = *m;
    mt_model_learn_rates(&ms);
    float *big = mt_malloc(2 * P * sizeof *big), *gb = mt_malloc(2 * P * sizeof *gb);
    memcpy(big, theta, P * sizeof *big);
    for (size_t i = P; i < 2 * P; i++) big[i] = inner_lr;
    mm = mt_meta_init(&ms, MT_ALGO_METASGD, 2, ns, nq);
    for (int K = 1; K <= 2; K++) {
        char name[NAME_LEN], label[96];
        mt_meta_task_grad(mm, MT_ALGO_METASGD, big, 0.0f, K, &task, gb, NULL);
        snprintf(name, sizeof name, "metasgd_k%d_grad", K);
        snprintf(label, sizeof label, "conv4 K=%d Meta-SGD meta-gradient (theta, alpha)", K);
        compare(label, gb, fixture_get(&a, name, 2 * P), 2 * P, TOL_REF);
        snprintf(label, sizeof label, "conv4 K=%d Meta-SGD meta-gradient, the rates' part", K);
        compare(label, gb + P, fixture_get(&a, name, 2 * P) + P, P, TOL_REF);
    }
    mt_meta_free(mm);
    /* LSLR: θ then a rate per inner step and tensor, all inner_lr (as the fixture says). */
    mt_model ls = *m;
    mt_model_learn_step_rates(&ls, 2);
    const size_t PL = ls.n_params;
    memcpy(big, theta, P * sizeof *big);
    for (size_t i = P; i < PL; i++) big[i] = inner_lr;
    mm = mt_meta_init(&ls, MT_ALGO_MAML, 2, ns, nq);
    mt_meta_task_grad(mm, MT_ALGO_MAML, big, 0.0f, 2, &task, gb, NULL);
    compare("conv4 K=2 LSLR meta-gradient (theta, rates)", gb, fixture_get(&a, "lslr_k2_maml_grad", PL), PL, TOL_REF);
    compare("conv4 K=2 LSLR meta-gradient, the rates' part", gb + P, fixture_get(&a, "lslr_k2_maml_grad", PL) + P,
            PL - P, TOL_REF);
    mt_meta_free(mm);
    free(big);
    free(gb);
    free(g);
    free((float *)task.xs);
    free((float *)task.xq);
    fixture_free(&a);
}

static void check_conv4(const char *path, const char *family_path)
{
    fixture f;
    fixture_read(&f, path);
    printf("fixture %s: %d records\n", path, f.n);
    const float *config = fixture_get(&f, "config", 8);
    const int C = config_int(&f, config, 0, "C"), H = config_int(&f, config, 1, "H");
    const int W = config_int(&f, config, 2, "W"), F = config_int(&f, config, 3, "filters");
    const int ways = config_int(&f, config, 4, "ways");
    const int ns = config_int(&f, config, 5, "n_support"), nq = config_int(&f, config, 6, "n_query");
    const float inner_lr = config[7];
    if (!(inner_lr > 0.0f && inner_lr < 10.0f)) bad_fixture(path, "config[7] (inner_lr) is not in (0, 10)");

    mt_model m;
    if (mt_model_conv4(&m, C, H, W, F, ways) != 0) bad_fixture(path, "config does not describe a Conv4");
    printf("model conv4 %dx%dx%d, %d filters, %d ways, P=%zu; %d support, %d query images; inner_lr %g\n", C, H, W, F,
           ways, m.n_params, ns, nq, inner_lr);
    check_image_model(&f, "conv4", &m, ns, nq, inner_lr);
    if (family_path) check_family(&f, family_path, &m, ns, nq, inner_lr);
    fixture_free(&f);
}

/* ResNet-12: the same checks as Conv4, on the model built by mt_model_resnet12. */
static void check_resnet12(const char *path)
{
    fixture f;
    fixture_read(&f, path);
    printf("fixture %s: %d records\n", path, f.n);
    const float *config = fixture_get(&f, "config", 11);
    const int C = config_int(&f, config, 0, "C"), H = config_int(&f, config, 1, "H");
    const int W = config_int(&f, config, 2, "W");
    int widths[4];
    for (int s = 0; s < 4; s++) widths[s] = config_int(&f, config, 3 + s, "width");
    const int ways = config_int(&f, config, 7, "ways");
    const int ns = config_int(&f, config, 8, "n_support"), nq = config_int(&f, config, 9, "n_query");
    const float inner_lr = config[10];
    if (!(inner_lr > 0.0f && inner_lr < 10.0f)) bad_fixture(path, "config[10] (inner_lr) is not in (0, 10)");

    mt_model m;
    if (mt_model_resnet12(&m, C, H, W, widths, ways) != 0) bad_fixture(path, "config does not describe a ResNet-12");
    printf("model resnet12 %dx%dx%d, widths %d,%d,%d,%d, %d ways, P=%zu; %d support, %d query images; inner_lr %g\n",
           C, H, W, widths[0], widths[1], widths[2], widths[3], ways, m.n_params, ns, nq, inner_lr);
    check_image_model(&f, "resnet12", &m, ns, nq, inner_lr);
    fixture_free(&f);
}

/* ---- Adam against torch.optim.Adam -------------------------------------------------- */

/* One configuration's reference trajectory: θ, m, v after every step, [steps × n] each. */
typedef struct {
    mt_adam_config cfg;
    const float *theta, *m, *v;
} adam_ref;

/* The worst normalised difference of one quantity over all steps and entries, and where. */
typedef struct {
    double diff; /* max over (t, i) of max(0, |ours − ref| − ADAM_ATOL) / scale */
    int t;       /* step (1-based) of the worst difference, 0 if none */
    size_t i;
    float got, want;
} adam_worst;

static void adam_note(adam_worst *w, float got, float want, double scale, int t, size_t i)
{
    const double excess = fabs((double)got - (double)want) - ADAM_ATOL;
    double d = excess <= 0.0 ? 0.0 : scale > 0.0 ? excess / scale : INFINITY;
    if (isnan(got)) d = INFINITY;
    if (d > w->diff || (w->t == 0 && d > 0.0)) *w = (adam_worst){d, t, i, got, want};
}

/* Replays the fixture's gradients g [steps × n] through mt_adam_step from θ0 with configuration
 * cfg (which may differ from the reference's, for the negative control) and measures θ, m, v
 * after every step against ref; out[0..2] are the worst differences of θ, m, v.
 *
 * Each difference is normalised by the size of what the value was made from, so that a value
 * that is small only through cancellation is not held to a relative tolerance it cannot meet:
 *   v: |v_ref| (a sum of non-negative terms);
 *   m: the same moving average taken of |g| (computed here in double);
 *   θ: |θ_ref| + Σ_k step_k·m_abs,k / (sqrt(v_ref,k)/sqrt(1−β2^k) + eps), the sizes of all
 *      updates so far (an update's rounding error is relative to that bound, not to θ). */
static void adam_replay(const mt_adam_config *cfg, const adam_ref *ref, const float *theta0, const float *g,
                        size_t n, int steps, adam_worst out[3])
{
    float *theta = mt_malloc(n * sizeof *theta), *m = mt_malloc(n * sizeof *m), *v = mt_malloc(n * sizeof *v);
    double *m_abs = mt_malloc(n * sizeof *m_abs), *path = mt_malloc(n * sizeof *path);
    memcpy(theta, theta0, n * sizeof *theta);
    for (size_t i = 0; i < n; i++) m[i] = v[i] = 0.0f, m_abs[i] = path[i] = 0.0;
    memset(out, 0, 3 * sizeof *out);
    const double b1 = ref->cfg.beta1, b2 = ref->cfg.beta2;
    for (int t = 1; t <= steps; t++) {
        const size_t o = (size_t)(t - 1) * n;
        mt_adam_step(theta, m, v, g + o, n, t, cfg);
        const double step = ref->cfg.lr / (1.0 - pow(b1, t)), bc2_sqrt = sqrt(1.0 - pow(b2, t));
        for (size_t i = 0; i < n; i++) {
            m_abs[i] = b1 * m_abs[i] + (1.0 - b1) * fabs((double)g[o + i]);
            path[i] += step * m_abs[i] / (sqrt((double)ref->v[o + i]) / bc2_sqrt + ref->cfg.eps);
            adam_note(&out[0], theta[i], ref->theta[o + i], fabs((double)ref->theta[o + i]) + path[i], t, i);
            adam_note(&out[1], m[i], ref->m[o + i], m_abs[i], t, i);
            adam_note(&out[2], v[i], ref->v[o + i], fabs((double)ref->v[o + i]), t, i);
        }
    }
    free(theta);
    free(m);
    free(v);
    free(m_abs);
    free(path);
}

static void check_adam(const char *path)
{
    fixture f;
    fixture_read(&f, path);
    printf("fixture %s: %d records\n", path, f.n);
    const float *config = fixture_get(&f, "config", 3);
    const int n_configs = config_int(&f, config, 0, "n_configs");
    const size_t n = (size_t)config_int(&f, config, 1, "N");
    const int steps = config_int(&f, config, 2, "steps");
    const float *theta0 = fixture_get(&f, "theta0", n);
    const float *grads = fixture_get(&f, "grads", (size_t)steps * n);
    static const char *const what[3] = {"theta", "m", "v"};
    for (int c = 0; c < n_configs; c++) {
        char name[NAME_LEN], label[128];
        adam_ref ref;
        snprintf(name, sizeof name, "c%d_hyper", c);
        const float *h = fixture_get(&f, name, 4);
        ref.cfg = (mt_adam_config){.lr = h[0], .beta1 = h[1], .beta2 = h[2], .eps = h[3]};
        if (!(h[0] > 0.0f && h[1] >= 0.0f && h[1] < 1.0f && h[2] > 0.0f && h[2] < 1.0f && h[3] > 0.0f)) {
            snprintf(label, sizeof label, "c%d_hyper is not a valid Adam configuration", c);
            bad_fixture(path, label);
        }
        snprintf(name, sizeof name, "c%d_theta", c);
        ref.theta = fixture_get(&f, name, (size_t)steps * n);
        snprintf(name, sizeof name, "c%d_m", c);
        ref.m = fixture_get(&f, name, (size_t)steps * n);
        snprintf(name, sizeof name, "c%d_v", c);
        ref.v = fixture_get(&f, name, (size_t)steps * n);

        adam_worst w[3];
        adam_replay(&ref.cfg, &ref, theta0, grads, n, steps, w);
        for (int q = 0; q < 3; q++) {
            snprintf(label, sizeof label, "Adam lr %g b1 %g b2 %g eps %g: %s, %d steps", ref.cfg.lr, ref.cfg.beta1,
                     ref.cfg.beta2, ref.cfg.eps, what[q], steps);
            tu_check(label, w[q].diff, ADAM_RTOL);
            if (w[q].t > 0)
                printf("     worst at step %d entry %zu: %.9g, torch %.9g\n", w[q].t, w[q].i, w[q].got, w[q].want);
        }

        /* Negative control: β2 off by 1e-3 must be seen, in v and in θ. */
        mt_adam_config off = ref.cfg;
        off.beta2 -= 1e-3f;
        adam_replay(&off, &ref, theta0, grads, n, steps, w);
        snprintf(label, sizeof label, "Adam b2 %g - 1e-3 is detected (v diff %.2e, theta diff %.2e)", ref.cfg.beta2,
                 w[2].diff, w[0].diff);
        tu_expect(w[2].diff > ADAM_RTOL && w[0].diff > ADAM_RTOL, label);
    }
    fixture_free(&f);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : getenv("MT_REFERENCE_DIR");
    if (!dir || !*dir) {
        fprintf(stderr, "test_reference: no fixtures: pass their directory as the first argument or set "
                        "MT_REFERENCE_DIR (ctest sets it)\n");
        return 1;
    }
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, FIXTURE_NAME) >= (int)sizeof path) {
        fprintf(stderr, "test_reference: the fixture directory name is too long\n");
        return 1;
    }
    check_mlp(path);
    char family[4096];
    snprintf(path, sizeof path, "%s/%s", dir, CONV4_FIXTURE_NAME);
    snprintf(family, sizeof family, "%s/%s", dir, FAMILY_FIXTURE_NAME);
    check_conv4(path, family);
    snprintf(path, sizeof path, "%s/%s", dir, RESNET12_FIXTURE_NAME);
    check_resnet12(path);
    snprintf(path, sizeof path, "%s/%s", dir, ADAM_FIXTURE_NAME);
    check_adam(path);
    return tu_finish();
}
