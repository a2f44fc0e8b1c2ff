/* conv.c — conv2d (k×k, stride, padding), batchnorm, max-pool 2×2, global average pool,
 * flatten and softmax cross-entropy: the four passes of each (see conv.h) and the
 * plain-loop *_ref twins kept as the tests' oracle. Conv goes through im2col +
 * cblas_sgemm over chunks of images, except the 1×1 stride-1 unpadded case, which is one
 * sgemm on the caller's arrays, and, on AVX-512 CPUs, the 3×3 stride-1 padding-1 products
 * (forward, input and weight gradients), which conv_direct.c computes from the image;
 * batchnorm and cross-entropy are per-channel / per-row
 * loops with double accumulators. Not here: the linear, relu and leaky-relu layers
 * (layers.c) and the model that chains them (model.c). */
#include "conv.h"

#include <assert.h>
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "common.h"
#include "conv_direct.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define POOL_AVX512 1
#endif

#undef I /* OpenBLAS's cblas.h pulls in <complex.h>; no imaginary unit here */

/* ---- conv: geometry and chunks ------------------------------------------------------ */

/* Column floats per chunk: 1Mi = 4 MiB. The columns im2col writes are still in cache when the
 * product reads them; with 16 MiB chunks Conv4 meta-training ran 7% slower (scripts/bench). */
#define CHUNK_FLOATS ((size_t)1 << 20)

int mt_conv_geom_init(mt_conv_geom *g, int C, int H, int W, int F, int k, int stride, int pad)
{
    memset(g, 0, sizeof *g);
    if (C <= 0 || H <= 0 || W <= 0 || F <= 0 || k <= 0 || stride <= 0 || pad < 0 || pad >= k) return -1;
    const long long span_h = (long long)H + 2LL * pad - k, span_w = (long long)W + 2LL * pad - k;
    if (span_h < 0 || span_w < 0) return -1; /* the kernel is larger than the padded plane */
    const long long Ho = span_h / stride + 1, Wo = span_w / stride + 1;
    /* one image's planes and one column's length must fit sgemm's int dimensions */
    if ((long long)H * W > INT_MAX || Ho * Wo > INT_MAX || (long long)C * k * k > INT_MAX) return -1;
    *g = (mt_conv_geom){.C = C, .H = H, .W = W, .F = F, .k = k, .stride = stride, .pad = pad, .Ho = (int)Ho,
                        .Wo = (int)Wo};
    return 0;
}

/* The 1×1 fast path: x[C, N·H·W] is already the column matrix, and y has the same planes. */
static int is_pointwise(const mt_conv_geom *g) { return g->k == 1 && g->stride == 1 && g->pad == 0; }

/* Preconditions shared by every conv pass: g from mt_conv_geom_init, and the batch within
 * sgemm's int leading dimensions. Shapes come from the model layout, so these are
 * invariants here. */
static void conv_check(int N, const mt_conv_geom *g)
{
    assert(N > 0 && g->C > 0 && g->F > 0 && g->k > 0 && g->stride > 0 && g->pad >= 0 && g->pad < g->k);
    assert(g->Ho == (g->H + 2 * g->pad - g->k) / g->stride + 1 && g->Wo == (g->W + 2 * g->pad - g->k) / g->stride + 1);
    assert((size_t)N * g->Ho * g->Wo <= INT_MAX && (size_t)N * g->H * g->W <= INT_MAX);
    (void)N, (void)g;
}

int mt_conv_chunk_images(int N, const mt_conv_geom *g)
{
    if (is_pointwise(g)) return N;
    const size_t per_image = (size_t)g->C * g->k * g->k * g->Ho * g->Wo;
    size_t n = CHUNK_FLOATS / per_image;
    if (n < 1) n = 1;
    return n < (size_t)N ? (int)n : N;
}

/* The convolution that takes dy to dx, for the direct path: F channels in, C out, the
 * same 3×3 stride-1 padding-1 geometry (so Ho = H, Wo = W). */
static mt_conv_geom transposed(const mt_conv_geom *g)
{
    return (mt_conv_geom){.C = g->F, .H = g->H, .W = g->W, .F = g->C, .k = g->k, .stride = 1, .pad = g->pad,
                          .Ho = g->H, .Wo = g->W};
}

/* Whether the input gradient goes the direct way (mt_conv_direct with MT_DIRECT_FLIP). */
static int direct_dx(const mt_conv_geom *g)
{
    if (!(g->k == 3 && g->stride == 1 && g->pad == 1)) return 0;
    const mt_conv_geom t = transposed(g);
    return mt_conv_direct_ok(&t);
}

size_t mt_conv_scratch_floats(int N, const mt_conv_geom *g)
{
    if (is_pointwise(g)) return 0;
    const int chunk = mt_conv_chunk_images(N, g);
    size_t need = (size_t)g->C * g->k * g->k * g->Ho * g->Wo * chunk;
    if (mt_conv_direct_ok(g)) {
        const size_t d = mt_conv_direct_scratch_floats(chunk, g);
        need = d > need ? d : need;
    }
    if (direct_dx(g)) {
        const mt_conv_geom t = transposed(g);
        const size_t d = mt_conv_direct_scratch_floats(chunk, &t);
        need = d > need ? d : need;
    }
    return need;
}

/* ---- conv: im2col + sgemm ----------------------------------------------------------- */

/* The outputs o in [0, n_out) whose input o·stride + tap − pad lies inside [0, n_in), for
 * one kernel tap along one axis: the half-open range [*lo, *hi), empty when *lo == *hi.
 * Outside it the tap reads padding. */
static void tap_range(int tap, int stride, int pad, int n_in, int n_out, int *lo, int *hi)
{
    const int off = tap - pad; /* input index = o·stride + off */
    int l = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int h = n_in - 1 - off < 0 ? 0 : (n_in - 1 - off) / stride + 1;
    if (h > n_out) h = n_out;
    if (l > h) l = h;
    *lo = l, *hi = h;
}

/* p[0:n] = 0 for the padded margin of a column row: usually zero or one value wide (3×3,
 * padding 1), which a store writes faster than a call to memset does. */
static inline void zero_margin(float *p, int n)
{
    if (n == 1) p[0] = 0.0f;
    else if (n > 1) memset(p, 0, sizeof(float) * n);
}

/* cols[C·k², nc·Ho·Wo] = the k×k windows (zero outside the plane) of images n0 … n0+nc−1
 * of x[C,N,H,W]. Row (c, kh, kw), column (image, oh, ow) holds
 * x[c, n0+image, oh·stride + kh − pad, ow·stride + kw − pad]. */
static void im2col(float *restrict cols, const float *restrict x, int N, const mt_conv_geom *g, int n0, int nc)
{
    /* the geometry in locals: the memcpy/memset calls could otherwise reload it from *g */
    const int C = g->C, H = g->H, W = g->W, k = g->k, s = g->stride, pad = g->pad, Ho = g->Ho, Wo = g->Wo;
    const size_t HW = (size_t)H * W, HWo = (size_t)Ho * Wo, ld = (size_t)nc * HWo;
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < k; kh++) {
            int oh_lo, oh_hi;
            tap_range(kh, s, pad, H, Ho, &oh_lo, &oh_hi);
            for (int kw = 0; kw < k; kw++) {
                int ow_lo, ow_hi;
                tap_range(kw, s, pad, W, Wo, &ow_lo, &ow_hi);
                const int off = kw - pad;
                float *row = cols + (((size_t)c * k + kh) * k + kw) * ld;
                for (int i = 0; i < nc; i++) {
                    const float *img = x + ((size_t)c * N + n0 + i) * HW;
                    float *block = row + i * HWo; /* [Ho, Wo] */
                    if (ow_lo == ow_hi) { /* the tap's column is padding in every row */
                        memset(block, 0, sizeof(float) * HWo);
                        continue;
                    }
                    memset(block, 0, sizeof(float) * oh_lo * Wo); /* rows above the plane */
                    if (s == 1 && Wo == W && oh_lo < oh_hi) {
                        /* "same" width: the tap's window is the plane shifted by a constant,
                         * so its rows are one contiguous copy, from the first valid value
                         * to the last; then the margins (padding) are zeroed over what the
                         * copy brought in from the neighbouring rows */
                        const size_t first = (size_t)oh_lo * W + ow_lo, last = (size_t)(oh_hi - 1) * W + ow_hi;
                        const ptrdiff_t shift = (ptrdiff_t)(kh - pad) * W + off;
                        memcpy(block + first, img + (ptrdiff_t)first + shift, sizeof(float) * (last - first));
                        for (int oh = oh_lo; oh < oh_hi; oh++) {
                            zero_margin(block + (size_t)oh * Wo, ow_lo);
                            zero_margin(block + (size_t)oh * Wo + ow_hi, Wo - ow_hi);
                        }
                    } else {
                        for (int oh = oh_lo; oh < oh_hi; oh++) {
                            float *out = block + (size_t)oh * Wo;
                            const float *in = img + (size_t)(oh * s + kh - pad) * W;
                            zero_margin(out, ow_lo);
                            for (int ow = ow_lo; ow < ow_hi; ow++) out[ow] = in[ow * s + off];
                            zero_margin(out + ow_hi, Wo - ow_hi);
                        }
                    }
                    memset(block + (size_t)oh_hi * Wo, 0, sizeof(float) * (Ho - oh_hi) * Wo); /* and below */
                }
            }
        }
}

/* dx[C,N,H,W] += the adjoint of im2col applied to cols[C·k², nc·Ho·Wo] (images n0 …
 * n0+nc−1): every column entry is added back to the input pixel it was copied from, taps
 * in (kh, kw) order. */
static void col2im_add(float *restrict dx, const float *restrict cols, int N, const mt_conv_geom *g, int n0, int nc)
{
    /* the geometry in locals: the memcpy/memset calls could otherwise reload it from *g */
    const int C = g->C, H = g->H, W = g->W, k = g->k, s = g->stride, pad = g->pad, Ho = g->Ho, Wo = g->Wo;
    const size_t HW = (size_t)H * W, HWo = (size_t)Ho * Wo, ld = (size_t)nc * HWo;
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < k; kh++) {
            int oh_lo, oh_hi;
            tap_range(kh, s, pad, H, Ho, &oh_lo, &oh_hi);
            for (int kw = 0; kw < k; kw++) {
                int ow_lo, ow_hi;
                tap_range(kw, s, pad, W, Wo, &ow_lo, &ow_hi);
                const int off = kw - pad;
                const float *row = cols + (((size_t)c * k + kh) * k + kw) * ld;
                for (int i = 0; i < nc; i++) {
                    float *img = dx + ((size_t)c * N + n0 + i) * HW;
                    for (int oh = oh_lo; oh < oh_hi; oh++) {
                        const float *in = row + i * HWo + (size_t)oh * Wo;
                        float *out = img + (size_t)(oh * s + kh - pad) * W;
                        if (s == 1) { /* contiguous: a loop the compiler vectorises */
                            float *o = out + ow_lo + off;
                            const float *src = in + ow_lo;
                            for (int j = 0; j < ow_hi - ow_lo; j++) o[j] += src[j];
                        } else {
                            for (int ow = ow_lo; ow < ow_hi; ow++) out[ow * s + off] += in[ow];
                        }
                    }
                }
            }
        }
}

/* The column matrix [C·k², nc·Ho·Wo] of images n0 … n0+nc−1 of a[C,N,H,W]: on the 1×1 fast
 * path a itself (its one chunk is the whole batch), else im2col into scratch. */
static const float *columns(float *scratch, const float *a, int N, const mt_conv_geom *g, int n0, int nc)
{
    if (is_pointwise(g)) {
        assert(n0 == 0 && nc == N);
        return a;
    }
    im2col(scratch, a, N, g, n0, nc);
    return scratch;
}

/* y[F, chunk columns] (+)= a[F, C·k²] · cols[C·k², ncols]; y points at the chunk's first
 * column of a [F, N·Ho·Wo] matrix (leading dimension ldy = N·Ho·Wo). */
static void gemm_w_cols(float *y, int ldy, const float *a, const float *cols, int F, int CK, int ncols, float beta)
{
    mt_flops_add(2.0 * F * ncols * CK);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, F, ncols, CK, 1.0f, a, CK, cols, ncols, beta, y, ldy);
}

/* dw[F, C·k²] (+)= dy[F, chunk columns] · cols[C·k², ncols]ᵀ */
static void gemm_dy_colsT(float *dw, const float *dy, int ldy, const float *cols, int F, int CK, int ncols,
                          float beta)
{
    mt_flops_add(2.0 * F * ncols * CK);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, F, CK, ncols, 1.0f, dy, ldy, cols, ncols, beta, dw, CK);
}

/* cols[C·k², ncols] (+)= w[F, C·k²]ᵀ · dy[F, chunk columns] */
static void gemm_wT_dy(float *cols, const float *w, const float *dy, int ldy, int F, int CK, int ncols, float beta)
{
    mt_flops_add(2.0 * F * ncols * CK);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CK, ncols, F, 1.0f, w, CK, dy, ldy, beta, cols, ncols);
}

/* y[F, M] = b[f] on every row (b NULL: zero) */
static void fill_channels(float *y, const float *b, int F, size_t M)
{
    for (int f = 0; f < F; f++) {
        float *row = y + (size_t)f * M;
        const float v = b ? b[f] : 0.0f;
        for (size_t j = 0; j < M; j++) row[j] = v;
    }
}

/* Channel sums (conv bias gradients, batchnorm statistics) run in double over LANES
 * independent partial sums (lane l takes the values j ≡ l mod LANES, the tail goes to lane 0,
 * then the lanes are added in a fixed tree): one serial chain of additions would wait on
 * every add's latency, eight keep the adders busy. The eight lanes are two vectors of four
 * doubles, a[0] (lanes 0-3) and a[1] (lanes 4-7): one AVX2 register each, or two SSE2 ones (a
 * vector of eight doubles, wider than the registers, made GCC spill it through the stack).
 * Each lane's arithmetic is exactly that of the scalar code, so the result is the same on
 * every CPU, run and rank. As in layers.c, vectors live only inside a function (loaded in
 * place), never passed or returned. */
#define LANES 8
typedef double v4d __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
typedef float v4f_u __attribute__((vector_size(16), aligned(4), may_alias));
#define LOAD4(p) ((v4f) * (const v4f_u *)(p))
#define WIDEN(v) __builtin_convertvector((v), v4d)
#define LANES_SUM(a) ((((a)[0][0] + (a)[0][1]) + ((a)[0][2] + (a)[0][3])) + (((a)[1][0] + (a)[1][1]) + ((a)[1][2] + (a)[1][3])))

/* db[F] = Σ_j dy[f, j] over M values, in double */
MT_CLONES static void channel_sums(float *db, const float *dy, int F, size_t M)
{
    for (int f = 0; f < F; f++) {
        const float *row = dy + (size_t)f * M;
        v4d s[2] = {{0}};
        size_t j = 0;
        for (; j + LANES <= M; j += LANES)
            for (int h = 0; h < 2; h++) s[h] += WIDEN(LOAD4(row + j + 4 * h));
        for (; j < M; j++) s[0][0] += row[j];
        db[f] = (float)LANES_SUM(s);
    }
}

void mt_conv_forward(float *y, const float *x, const float *w, const float *b, int N, const mt_conv_geom *g,
                     float *scratch)
{
    conv_check(N, g);
    const int HWo = g->Ho * g->Wo, ldy = N * HWo, CK = g->C * g->k * g->k, chunk = mt_conv_chunk_images(N, g);
    const int direct = mt_conv_direct_ok(g);
    if (!direct) fill_channels(y, b, g->F, (size_t)ldy); /* the direct path starts from the bias itself */
    for (int n0 = 0; n0 < N; n0 += chunk) {
        const int nc = N - n0 < chunk ? N - n0 : chunk;
        if (direct) {
            mt_flops_add(2.0 * g->F * nc * HWo * CK);
            mt_conv_direct(y, x, w, b, N, n0, nc, g, scratch, MT_DIRECT_BIAS);
            continue;
        }
        const float *cols = columns(scratch, x, N, g, n0, nc);
        gemm_w_cols(y + (size_t)n0 * HWo, ldy, w, cols, g->F, CK, nc * HWo, 1.0f);
    }
}

void mt_conv_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w, int N,
                      const mt_conv_geom *g, float *scratch)
{
    conv_check(N, g);
    const int HWo = g->Ho * g->Wo, ldy = N * HWo, CK = g->C * g->k * g->k, chunk = mt_conv_chunk_images(N, g);
    const int pointwise = is_pointwise(g), direct = dx && direct_dx(g), direct_w = dw && mt_conv_direct_ok(g);
    const mt_conv_geom t = transposed(g);
    if (dx && !pointwise && !direct) memset(dx, 0, sizeof(float) * g->C * (size_t)N * g->H * g->W);
    for (int n0 = 0; n0 < N; n0 += chunk) {
        const int nc = N - n0 < chunk ? N - n0 : chunk;
        const float *dyc = dy + (size_t)n0 * HWo;
        if (direct_w) {
            mt_flops_add(2.0 * g->F * nc * HWo * CK);
            mt_conv_direct_dw(dw, dy, x, N, n0, nc, g, scratch, n0 > 0);
        } else if (dw) {
            const float *cols = columns(scratch, x, N, g, n0, nc);
            gemm_dy_colsT(dw, dyc, ldy, cols, g->F, CK, nc * HWo, n0 == 0 ? 0.0f : 1.0f);
        }
        if (direct) { /* dx = the flipped kernel's convolution of dy, written once */
            mt_flops_add(2.0 * g->F * nc * HWo * CK);
            mt_conv_direct(dx, dy, w, NULL, N, n0, nc, &t, scratch, MT_DIRECT_FLIP);
        } else if (dx) { /* the 1×1 path writes dx directly: its columns are dx's own layout */
            gemm_wT_dy(pointwise ? dx : scratch, w, dyc, ldy, g->F, CK, nc * HWo, 0.0f);
            if (!pointwise) col2im_add(dx, scratch, N, g, n0, nc);
        }
    }
    if (dw && db) channel_sums(db, dy, g->F, (size_t)ldy);
}

void mt_conv_rforward(float *ry, const float *x, const float *rx, const float *w, const float *vw,
                      const float *vb, int N, const mt_conv_geom *g, float *scratch)
{
    conv_check(N, g);
    const int HWo = g->Ho * g->Wo, ldy = N * HWo, CK = g->C * g->k * g->k, chunk = mt_conv_chunk_images(N, g);
    const int direct = mt_conv_direct_ok(g);
    if (!direct) fill_channels(ry, vb, g->F, (size_t)ldy);
    for (int n0 = 0; n0 < N; n0 += chunk) {
        const int nc = N - n0 < chunk ? N - n0 : chunk;
        if (direct) {
            mt_flops_add(2.0 * g->F * nc * HWo * CK * (rx ? 2 : 1));
            mt_conv_direct(ry, x, vw, vb, N, n0, nc, g, scratch, MT_DIRECT_BIAS);
            if (rx) mt_conv_direct(ry, rx, w, NULL, N, n0, nc, g, scratch, MT_DIRECT_ADD);
            continue;
        }
        float *ryc = ry + (size_t)n0 * HWo;
        gemm_w_cols(ryc, ldy, vw, columns(scratch, x, N, g, n0, nc), g->F, CK, nc * HWo, 1.0f);
        if (rx) gemm_w_cols(ryc, ldy, w, columns(scratch, rx, N, g, n0, nc), g->F, CK, nc * HWo, 1.0f);
    }
}

void mt_conv_rbackward(float *rdx, float *rdw, float *rdb, const float *dy, const float *rdy, const float *x,
                       const float *rx, const float *w, const float *vw, int N, const mt_conv_geom *g,
                       float *scratch)
{
    conv_check(N, g);
    const int HWo = g->Ho * g->Wo, ldy = N * HWo, CK = g->C * g->k * g->k, chunk = mt_conv_chunk_images(N, g);
    const int pointwise = is_pointwise(g), direct = rdx && direct_dx(g), direct_w = mt_conv_direct_ok(g);
    const mt_conv_geom t = transposed(g);
    if (rdx && !pointwise && !direct) memset(rdx, 0, sizeof(float) * g->C * (size_t)N * g->H * g->W);
    for (int n0 = 0; n0 < N; n0 += chunk) {
        const int nc = N - n0 < chunk ? N - n0 : chunk;
        const float *dyc = dy + (size_t)n0 * HWo, *rdyc = rdy + (size_t)n0 * HWo;
        if (direct_w) { /* rdw = dW(rdy, x) + dW(dy, rx) */
            mt_flops_add(2.0 * g->F * nc * HWo * CK * (rx ? 2 : 1));
            mt_conv_direct_dw(rdw, rdy, x, N, n0, nc, g, scratch, n0 > 0);
            if (rx) mt_conv_direct_dw(rdw, dy, rx, N, n0, nc, g, scratch, 1);
        } else {
            gemm_dy_colsT(rdw, rdyc, ldy, columns(scratch, x, N, g, n0, nc), g->F, CK, nc * HWo,
                          n0 == 0 ? 0.0f : 1.0f);
            if (rx) gemm_dy_colsT(rdw, dyc, ldy, columns(scratch, rx, N, g, n0, nc), g->F, CK, nc * HWo, 1.0f);
        }
        if (direct) { /* rdx = convᵀ(rdy, w) + convᵀ(dy, vw), each the flipped kernel's convolution */
            mt_flops_add(4.0 * g->F * nc * HWo * CK);
            mt_conv_direct(rdx, rdy, w, NULL, N, n0, nc, &t, scratch, MT_DIRECT_FLIP);
            mt_conv_direct(rdx, dy, vw, NULL, N, n0, nc, &t, scratch, MT_DIRECT_FLIP | MT_DIRECT_ADD);
        } else if (rdx) {
            float *cols = pointwise ? rdx : scratch;
            gemm_wT_dy(cols, w, rdyc, ldy, g->F, CK, nc * HWo, 0.0f);
            gemm_wT_dy(cols, vw, dyc, ldy, g->F, CK, nc * HWo, 1.0f);
            if (!pointwise) col2im_add(rdx, scratch, N, g, n0, nc);
        }
    }
    if (rdb) channel_sums(rdb, rdy, g->F, (size_t)ldy);
}

/* ---- conv, reference ---------------------------------------------------------------- */

/* Index of x[c, n, h, w] in CNHW [C,N,H,W], of y[f, n, oh, ow] in [F,N,Ho,Wo], and of
 * w[f, c, kh, kw] in OIHW (g and N in scope). */
#define AT_X(c, n, h, w) ((((size_t)(c) * N + (n)) * g->H + (h)) * g->W + (w))
#define AT_Y(f, n, h, w) ((((size_t)(f) * N + (n)) * g->Ho + (h)) * g->Wo + (w))
#define AT_W(f, c, kh, kw) ((((size_t)(f) * g->C + (c)) * g->k + (kh)) * g->k + (kw))

/* Σ_{c,kh,kw} k[f,c,kh,kw] · a[c, n, oh·s+kh−p, ow·s+kw−p] over the in-plane taps */
static float ref_tap_sum(const float *a, const float *kern, int f, int n, int oh, int ow, int N,
                         const mt_conv_geom *g)
{
    float s = 0.0f;
    for (int c = 0; c < g->C; c++)
        for (int kh = 0; kh < g->k; kh++)
            for (int kw = 0; kw < g->k; kw++) {
                const int ih = oh * g->stride + kh - g->pad, iw = ow * g->stride + kw - g->pad;
                if (ih >= 0 && ih < g->H && iw >= 0 && iw < g->W) s += kern[AT_W(f, c, kh, kw)] * a[AT_X(c, n, ih, iw)];
            }
    return s;
}

/* Σ_{f,kh,kw} k[f,c,kh,kw] · gr[f, n, oh, ow] over the outputs whose window puts tap
 * (kh, kw) on x[c,n,h,w] (oh·s = h+p−kh, ow·s = w+p−kw): the transposed convolution */
static float ref_tap_sum_T(const float *gr, const float *kern, int c, int n, int h, int w, int N,
                           const mt_conv_geom *g)
{
    float s = 0.0f;
    for (int f = 0; f < g->F; f++)
        for (int kh = 0; kh < g->k; kh++)
            for (int kw = 0; kw < g->k; kw++) {
                const int th = h + g->pad - kh, tw = w + g->pad - kw;
                if (th < 0 || tw < 0 || th % g->stride || tw % g->stride) continue;
                const int oh = th / g->stride, ow = tw / g->stride;
                if (oh < g->Ho && ow < g->Wo) s += kern[AT_W(f, c, kh, kw)] * gr[AT_Y(f, n, oh, ow)];
            }
    return s;
}

/* Σ_{n,oh,ow} gr[f,n,oh,ow] · a[c, n, oh·s+kh−p, ow·s+kw−p]: the correlation a weight
 * gradient needs */
static float ref_corr(const float *gr, const float *a, int f, int c, int kh, int kw, int N, const mt_conv_geom *g)
{
    float s = 0.0f;
    for (int n = 0; n < N; n++)
        for (int oh = 0; oh < g->Ho; oh++)
            for (int ow = 0; ow < g->Wo; ow++) {
                const int ih = oh * g->stride + kh - g->pad, iw = ow * g->stride + kw - g->pad;
                if (ih >= 0 && ih < g->H && iw >= 0 && iw < g->W) s += gr[AT_Y(f, n, oh, ow)] * a[AT_X(c, n, ih, iw)];
            }
    return s;
}

/* Σ_{n,oh,ow} gr[f,n,oh,ow] in double (the fast passes' db uses double too) */
static float ref_channel_sum(const float *gr, int f, int N, const mt_conv_geom *g)
{
    const size_t M = (size_t)N * g->Ho * g->Wo;
    double s = 0.0;
    for (size_t j = 0; j < M; j++) s += gr[(size_t)f * M + j];
    return (float)s;
}

void mt_conv_forward_ref(float *y, const float *x, const float *w, const float *b, int N, const mt_conv_geom *g)
{
    for (int f = 0; f < g->F; f++)
        for (int n = 0; n < N; n++)
            for (int oh = 0; oh < g->Ho; oh++)
                for (int ow = 0; ow < g->Wo; ow++)
                    y[AT_Y(f, n, oh, ow)] = (b ? b[f] : 0.0f) + ref_tap_sum(x, w, f, n, oh, ow, N, g);
}

void mt_conv_backward_ref(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                          int N, const mt_conv_geom *g)
{
    if (dx)
        for (int c = 0; c < g->C; c++)
            for (int n = 0; n < N; n++)
                for (int h = 0; h < g->H; h++)
                    for (int ww = 0; ww < g->W; ww++) dx[AT_X(c, n, h, ww)] = ref_tap_sum_T(dy, w, c, n, h, ww, N, g);
    if (!dw) return;
    for (int f = 0; f < g->F; f++) {
        for (int c = 0; c < g->C; c++)
            for (int kh = 0; kh < g->k; kh++)
                for (int kw = 0; kw < g->k; kw++) dw[AT_W(f, c, kh, kw)] = ref_corr(dy, x, f, c, kh, kw, N, g);
        if (db) db[f] = ref_channel_sum(dy, f, N, g);
    }
}

void mt_conv_rforward_ref(float *ry, const float *x, const float *rx, const float *w, const float *vw,
                          const float *vb, int N, const mt_conv_geom *g)
{
    for (int f = 0; f < g->F; f++)
        for (int n = 0; n < N; n++)
            for (int oh = 0; oh < g->Ho; oh++)
                for (int ow = 0; ow < g->Wo; ow++) {
                    float s = (vb ? vb[f] : 0.0f) + ref_tap_sum(x, vw, f, n, oh, ow, N, g);
                    if (rx) s += ref_tap_sum(rx, w, f, n, oh, ow, N, g);
                    ry[AT_Y(f, n, oh, ow)] = s;
                }
}

void mt_conv_rbackward_ref(float *rdx, float *rdw, float *rdb, const float *dy, const float *rdy,
                           const float *x, const float *rx, const float *w, const float *vw, int N,
                           const mt_conv_geom *g)
{
    if (rdx)
        for (int c = 0; c < g->C; c++)
            for (int n = 0; n < N; n++)
                for (int h = 0; h < g->H; h++)
                    for (int ww = 0; ww < g->W; ww++)
                        rdx[AT_X(c, n, h, ww)] =
                            ref_tap_sum_T(rdy, w, c, n, h, ww, N, g) + ref_tap_sum_T(dy, vw, c, n, h, ww, N, g);
    for (int f = 0; f < g->F; f++) {
        for (int c = 0; c < g->C; c++)
            for (int kh = 0; kh < g->k; kh++)
                for (int kw = 0; kw < g->k; kw++) {
                    float s = ref_corr(rdy, x, f, c, kh, kw, N, g);
                    if (rx) s += ref_corr(dy, rx, f, c, kh, kw, N, g);
                    rdw[AT_W(f, c, kh, kw)] = s;
                }
        if (rdb) rdb[f] = ref_channel_sum(rdy, f, N, g);
    }
}

#undef AT_X
#undef AT_Y
#undef AT_W

/* ---- batchnorm, fast ---------------------------------------------------------------- */

MT_CLONES void mt_bn_forward(float *y, float *stats, const float *x, const float *gamma, const float *beta, int C,
                             int M)
{
    assert(C > 0 && M > 0);
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * M;
        float *yc = y + (size_t)c * M;
        v4d sum[2] = {{0}}, ss[2] = {{0}};
        int j = 0;
        for (; j + LANES <= M; j += LANES)
            for (int h = 0; h < 2; h++) sum[h] += WIDEN(LOAD4(xc + j + 4 * h));
        for (; j < M; j++) sum[0][0] += xc[j];
        const float mu = (float)(LANES_SUM(sum) / M);
        const double mu_d = mu;
        /* two passes: no cancellation in E[x²] − μ² */
        for (j = 0; j + LANES <= M; j += LANES)
            for (int h = 0; h < 2; h++) {
                const v4d d = WIDEN(LOAD4(xc + j + 4 * h)) - mu_d;
                ss[h] += d * d;
            }
        for (; j < M; j++) {
            const double d = (double)xc[j] - mu;
            ss[0][0] += d * d;
        }
        const float s = (float)(1.0 / sqrt(LANES_SUM(ss) / M + MT_BN_EPS));
        const float g = gamma[c], b = beta[c];
        for (j = 0; j < M; j++) yc[j] = g * ((xc[j] - mu) * s) + b;
        stats[c] = mu;
        stats[C + c] = s;
    }
}

MT_CLONES void mt_bn_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                              const float *stats, const float *gamma, int C, int M)
{
    assert(C > 0 && M > 0);
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * M, *dyc = dy + (size_t)c * M;
        const float mu = stats[c], s = stats[C + c];
        v4d a_l[2] = {{0}}, b_l[2] = {{0}}; /* Σ dy, Σ dy·x̂ */
        int j = 0;
        for (; j + LANES <= M; j += LANES)
            for (int h = 0; h < 2; h++) {
                const v4f xh = (LOAD4(xc + j + 4 * h) - mu) * s;
                const v4d dyj = WIDEN(LOAD4(dyc + j + 4 * h));
                a_l[h] += dyj;
                b_l[h] += dyj * WIDEN(xh);
            }
        for (; j < M; j++) {
            const float xh = (xc[j] - mu) * s;
            a_l[0][0] += dyc[j];
            b_l[0][0] += (double)dyc[j] * xh;
        }
        const double A = LANES_SUM(a_l), B = LANES_SUM(b_l);
        if (dgamma) {
            dgamma[c] = (float)B;
            dbeta[c] = (float)A;
        }
        if (!dx) continue;
        float *dxc = dx + (size_t)c * M;
        const float k = gamma[c] * s, a = (float)(A / M), b = (float)(B / M);
        for (j = 0; j < M; j++) {
            const float xh = (xc[j] - mu) * s;
            dxc[j] = k * (dyc[j] - a - xh * b);
        }
    }
}

MT_CLONES void mt_bn_rforward(float *ry, float *rstats, const float *x, const float *rx, const float *stats,
                              const float *gamma, const float *vgamma, const float *vbeta, int C, int M)
{
    assert(C > 0 && M > 0);
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * M, *rxc = rx ? rx + (size_t)c * M : NULL;
        float *ryc = ry + (size_t)c * M;
        const float mu = stats[c], s = stats[C + c];
        float rmu = 0.0f, rs = 0.0f;
        if (rxc) {
            /* Σ (x − μ)(rx − Rμ) = Σ (x − μ)·rx − Rμ·Σ (x − μ): one pass; Σ (x − μ) is not
             * exactly zero with μ rounded to float, so it is kept. */
            const double mu_d = mu;
            v4d r[2] = {{0}}, d[2] = {{0}}, drx[2] = {{0}};
            int j = 0;
            for (; j + LANES <= M; j += LANES)
                for (int h = 0; h < 2; h++) {
                    const v4d dj = WIDEN(LOAD4(xc + j + 4 * h)) - mu_d, rj = WIDEN(LOAD4(rxc + j + 4 * h));
                    r[h] += rj;
                    d[h] += dj;
                    drx[h] += dj * rj;
                }
            for (; j < M; j++) {
                const double dj = (double)xc[j] - mu;
                r[0][0] += rxc[j];
                d[0][0] += dj;
                drx[0][0] += dj * rxc[j];
            }
            const double rmu_d = LANES_SUM(r) / M;
            rmu = (float)rmu_d;
            rs = (float)(-(double)s * s * s * (LANES_SUM(drx) - rmu_d * LANES_SUM(d)) / M);
        }
        const float g = gamma[c], vg = vgamma[c], vb = vbeta ? vbeta[c] : 0.0f;
        for (int j = 0; j < M; j++) {
            const float d = xc[j] - mu, xh = d * s;
            const float rxh = rxc ? (rxc[j] - rmu) * s + d * rs : 0.0f;
            ryc[j] = vg * xh + g * rxh + vb;
        }
        rstats[c] = rmu;
        rstats[C + c] = rs;
    }
}

MT_CLONES void mt_bn_rbackward(float *rdx, float *rdgamma, float *rdbeta, const float *dy, const float *rdy,
                               const float *x, const float *rx, const float *stats, const float *rstats,
                               const float *gamma, const float *vgamma, int C, int M)
{
    assert(C > 0 && M > 0);
    for (int c = 0; c < C; c++) {
        const size_t off = (size_t)c * M;
        const float *xc = x + off, *dyc = dy + off, *rdyc = rdy + off, *rxc = rx ? rx + off : NULL;
        const float mu = stats[c], s = stats[C + c], rmu = rstats[c], rs = rstats[C + c];
        /* Σ dy, Σ dy·x̂, Σ rdy, Σ (rdy·x̂ + dy·Rx̂); the tail's j − j0 picks its lane */
        v4d a_l[2] = {{0}}, b_l[2] = {{0}}, ra_l[2] = {{0}}, rb_l[2] = {{0}};
        int j0 = 0;
        for (; j0 + LANES <= M; j0 += LANES)
            for (int h = 0; h < 2; h++) {
                const int j = j0 + 4 * h;
                const v4f d = LOAD4(xc + j) - mu, xh = d * s;
                const v4f rxh = rxc ? (LOAD4(rxc + j) - rmu) * s + d * rs : (v4f){0};
                const v4d dyj = WIDEN(LOAD4(dyc + j)), rdyj = WIDEN(LOAD4(rdyc + j));
                a_l[h] += dyj;
                b_l[h] += dyj * WIDEN(xh);
                ra_l[h] += rdyj;
                rb_l[h] += rdyj * WIDEN(xh) + dyj * WIDEN(rxh);
            }
        for (int l = 0; j0 + l < M; l++) {
            const int j = j0 + l, h = l / 4, i = l % 4;
            const float d = xc[j] - mu, xh = d * s;
            const float rxh = rxc ? (rxc[j] - rmu) * s + d * rs : 0.0f;
            a_l[h][i] += dyc[j];
            b_l[h][i] += (double)dyc[j] * xh;
            ra_l[h][i] += rdyc[j];
            rb_l[h][i] += (double)rdyc[j] * xh + (double)dyc[j] * rxh;
        }
        const double A = LANES_SUM(a_l), B = LANES_SUM(b_l), RA = LANES_SUM(ra_l), RB = LANES_SUM(rb_l);
        rdgamma[c] = (float)RB;
        rdbeta[c] = (float)RA;
        if (!rdx) continue;
        float *rdxc = rdx + off;
        const float g = gamma[c], k = g * s, rk = vgamma[c] * s + g * rs;
        const float a = (float)(A / M), b = (float)(B / M), ra = (float)(RA / M), rb = (float)(RB / M);
        for (int j = 0; j < M; j++) {
            const float d = xc[j] - mu, xh = d * s;
            const float rxh = rxc ? (rxc[j] - rmu) * s + d * rs : 0.0f;
            rdxc[j] = rk * (dyc[j] - a - xh * b) + k * (rdyc[j] - ra - rxh * b - xh * rb);
        }
    }
}

/* ---- batchnorm, reference (double, textbook chain rule) ----------------------------- */

void mt_bn_forward_ref(float *y, float *stats, const float *x, const float *gamma, const float *beta, int C,
                       int M)
{
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * M;
        double mu = 0.0, var = 0.0;
        for (int j = 0; j < M; j++) mu += xc[j];
        mu /= M;
        for (int j = 0; j < M; j++) var += (xc[j] - mu) * (xc[j] - mu);
        var /= M;
        const double s = 1.0 / sqrt(var + MT_BN_EPS);
        for (int j = 0; j < M; j++) y[(size_t)c * M + j] = (float)(gamma[c] * ((xc[j] - mu) * s) + beta[c]);
        stats[c] = (float)mu;
        stats[C + c] = (float)s;
    }
}

/* The graph per channel: d = x − μ, σ² = Σ d²/M, s = (σ² + ε)^−½, x̂ = d·s, y = γ·x̂ + β.
 * Backward node by node: dx̂ = γ·dy, dσ² = −½ s³ Σ dx̂·d, dμ = −s Σ dx̂ − (2/M)·dσ²·Σ d,
 * dx = dx̂·s + dσ²·2d/M + dμ/M. */
void mt_bn_backward_ref(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                        const float *stats, const float *gamma, int C, int M)
{
    for (int c = 0; c < C; c++) {
        const size_t off = (size_t)c * M;
        const double mu = stats[c], s = stats[C + c], g = gamma[c];
        double sum_dxh_d = 0.0, sum_dxh = 0.0, sum_d = 0.0, dg = 0.0, db = 0.0;
        for (int j = 0; j < M; j++) {
            const double d = x[off + j] - mu, dxh = g * dy[off + j];
            sum_dxh_d += dxh * d;
            sum_dxh += dxh;
            sum_d += d;
            dg += dy[off + j] * (d * s);
            db += dy[off + j];
        }
        const double dvar = -0.5 * s * s * s * sum_dxh_d;
        const double dmu = -s * sum_dxh - 2.0 / M * dvar * sum_d;
        if (dx)
            for (int j = 0; j < M; j++) {
                const double d = x[off + j] - mu, dxh = g * dy[off + j];
                dx[off + j] = (float)(dxh * s + dvar * 2.0 * d / M + dmu / M);
            }
        if (dgamma) {
            dgamma[c] = (float)dg;
            dbeta[c] = (float)db;
        }
    }
}

/* R of the forward graph: Rd = rx − Rμ, Rσ² = 2 Σ d·Rd / M, Rs = −½ s³·Rσ², Rx̂ = Rd·s + d·Rs,
 * Ry = vγ·x̂ + γ·Rx̂ + vβ. */
void mt_bn_rforward_ref(float *ry, float *rstats, const float *x, const float *rx, const float *stats,
                        const float *gamma, const float *vgamma, const float *vbeta, int C, int M)
{
    for (int c = 0; c < C; c++) {
        const size_t off = (size_t)c * M;
        const double mu = stats[c], s = stats[C + c];
        double rmu = 0.0, rvar = 0.0;
        if (rx) {
            for (int j = 0; j < M; j++) rmu += rx[off + j];
            rmu /= M;
            for (int j = 0; j < M; j++) rvar += 2.0 * (x[off + j] - mu) * (rx[off + j] - rmu);
            rvar /= M;
        }
        const double rs = -0.5 * s * s * s * rvar;
        for (int j = 0; j < M; j++) {
            const double d = x[off + j] - mu, rd = (rx ? rx[off + j] : 0.0) - rmu;
            const double rxh = rd * s + d * rs;
            ry[off + j] = (float)(vgamma[c] * d * s + gamma[c] * rxh + (vbeta ? vbeta[c] : 0.0));
        }
        rstats[c] = (float)rmu;
        rstats[C + c] = (float)rs;
    }
}

/* R of the backward graph of mt_bn_backward_ref, node by node:
 *   Rdx̂ = vγ·dy + γ·rdy
 *   Rdσ² = −½ (3 s² Rs Σ dx̂·d + s³ Σ (Rdx̂·d + dx̂·Rd))
 *   Rdμ = −Rs Σ dx̂ − s Σ Rdx̂ − (2/M)(Rdσ² Σ d + dσ² Σ Rd)
 *   Rdx = Rdx̂·s + dx̂·Rs + (2/M)(Rdσ²·d + dσ²·Rd) + Rdμ/M
 *   Rdγ = Σ (rdy·x̂ + dy·Rx̂),  Rdβ = Σ rdy. */
void mt_bn_rbackward_ref(float *rdx, float *rdgamma, float *rdbeta, const float *dy, const float *rdy,
                         const float *x, const float *rx, const float *stats, const float *rstats,
                         const float *gamma, const float *vgamma, int C, int M)
{
    for (int c = 0; c < C; c++) {
        const size_t off = (size_t)c * M;
        const double mu = stats[c], s = stats[C + c], rmu = rstats[c], rs = rstats[C + c];
        const double g = gamma[c], vg = vgamma[c];
        double S_dxh_d = 0.0, S_dxh = 0.0, S_d = 0.0; /* sums the backward uses */
        double S_rdxh_d = 0.0, S_dxh_rd = 0.0, S_rdxh = 0.0, S_rd = 0.0, rdg = 0.0, rdb = 0.0;
        for (int j = 0; j < M; j++) {
            const double d = x[off + j] - mu, rd = (rx ? rx[off + j] : 0.0) - rmu;
            const double dxh = g * dy[off + j], rdxh = vg * dy[off + j] + g * rdy[off + j];
            S_dxh_d += dxh * d;
            S_dxh += dxh;
            S_d += d;
            S_rdxh_d += rdxh * d;
            S_dxh_rd += dxh * rd;
            S_rdxh += rdxh;
            S_rd += rd;
            rdg += rdy[off + j] * (d * s) + dy[off + j] * (rd * s + d * rs);
            rdb += rdy[off + j];
        }
        const double dvar = -0.5 * s * s * s * S_dxh_d;
        const double rdvar = -0.5 * (3.0 * s * s * rs * S_dxh_d + s * s * s * (S_rdxh_d + S_dxh_rd));
        const double rdmu = -rs * S_dxh - s * S_rdxh - 2.0 / M * (rdvar * S_d + dvar * S_rd);
        if (rdx)
            for (int j = 0; j < M; j++) {
                const double d = x[off + j] - mu, rd = (rx ? rx[off + j] : 0.0) - rmu;
                const double dxh = g * dy[off + j], rdxh = vg * dy[off + j] + g * rdy[off + j];
                rdx[off + j] = (float)(rdxh * s + dxh * rs + 2.0 / M * (rdvar * d + dvar * rd) + rdmu / M);
            }
        rdgamma[c] = (float)rdg;
        rdbeta[c] = (float)rdb;
    }
}

/* ---- max-pool 2×2 ------------------------------------------------------------------- */

#ifdef POOL_AVX512
/* On AVX-512 CPUs sixteen windows of a row pair at a time: the rows' 32 values split into
 * even and odd columns, then the scalar loop's strict comparisons in the same window order
 * (the first maximum wins ties, a NaN never replaces a value), so the same values and indices.
 * The masks of a row's last, partial vector: n windows, 2n inputs over two vectors. */
#define POOL_MASKS(n)                                                                                         \
    const __mmask16 m_out = (__mmask16)((1u << (n)) - 1),                                                     \
                    m_lo = (__mmask16)(2 * (n) >= 16 ? 0xFFFFu : (1u << 2 * (n)) - 1),                        \
                    m_hi = (__mmask16)(2 * (n) > 16 ? (1u << (2 * (n) - 16)) - 1 : 0u)

__attribute__((target("avx512f"))) static void pool_rows_avx512(float *yr, int32_t *ar, const float *r0, int W,
                                                                int32_t top, int Wo)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int j0 = 0; j0 < Wo; j0 += 16) {
        POOL_MASKS(Wo - j0 < 16 ? Wo - j0 : 16);
        const float *p0 = r0 + 2 * j0, *p1 = p0 + W;
        const __m512 a0 = _mm512_maskz_loadu_ps(m_lo, p0), b0 = _mm512_maskz_loadu_ps(m_hi, p0 + 16);
        const __m512 a1 = _mm512_maskz_loadu_ps(m_lo, p1), b1 = _mm512_maskz_loadu_ps(m_hi, p1 + 16);
        const __m512 cand[3] = {_mm512_permutex2var_ps(a0, odd, b0), _mm512_permutex2var_ps(a1, even, b1),
                                _mm512_permutex2var_ps(a1, odd, b1)};
        const int32_t offset[3] = {1, W, W + 1};
        const __m512i t = _mm512_add_epi32(_mm512_set1_epi32(top + 2 * j0), even);
        __m512 m = _mm512_permutex2var_ps(a0, even, b0);
        __m512i k = t;
        for (int c = 0; c < 3; c++) {
            const __mmask16 gt = _mm512_cmp_ps_mask(cand[c], m, _CMP_GT_OQ);
            m = _mm512_mask_mov_ps(m, gt, cand[c]);
            k = _mm512_mask_add_epi32(k, gt, t, _mm512_set1_epi32(offset[c]));
        }
        _mm512_mask_storeu_ps(yr + j0, m_out, m);
        _mm512_mask_storeu_epi32(ar + j0, m_out, k);
    }
}

/* The two rows of dx under a row of windows: each window's value (g, or 0 where mask is given
 * and not positive) at its argmax, 0 at its other three places. */
__attribute__((target("avx512f"))) static void unpool_rows_avx512(float *r0, int W, const float *g, const float *mask,
                                                                  const int32_t *a, int32_t top, int Wo)
{
    const __m512i lanes2 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    for (int j0 = 0; j0 < Wo; j0 += 16) {
        POOL_MASKS(Wo - j0 < 16 ? Wo - j0 : 16);
        __m512 v = _mm512_maskz_loadu_ps(m_out, g + j0);
        if (mask)
            v = _mm512_maskz_mov_ps(
                _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m_out, mask + j0), _mm512_setzero_ps(), _CMP_GT_OQ), v);
        const __m512i pos = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(m_out, a + j0),
                                             _mm512_add_epi32(_mm512_set1_epi32(top + 2 * j0), lanes2));
        const __m512 e0 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(pos, _mm512_setzero_si512()), v);
        const __m512 o0 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(pos, _mm512_set1_epi32(1)), v);
        const __m512 e1 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(pos, _mm512_set1_epi32(W)), v);
        const __m512 o1 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(pos, _mm512_set1_epi32(W + 1)), v);
        float *p0 = r0 + 2 * j0, *p1 = p0 + W;
        _mm512_mask_storeu_ps(p0, m_lo, _mm512_permutex2var_ps(e0, lo, o0));
        _mm512_mask_storeu_ps(p0 + 16, m_hi, _mm512_permutex2var_ps(e0, hi, o0));
        _mm512_mask_storeu_ps(p1, m_lo, _mm512_permutex2var_ps(e1, lo, o1));
        _mm512_mask_storeu_ps(p1 + 16, m_hi, _mm512_permutex2var_ps(e1, hi, o1));
    }
}
#endif

void mt_maxpool_forward(float *restrict y, int32_t *restrict argmax, const float *restrict x, int P, int H, int W)
{
    assert(P > 0 && H >= 2 && W >= 2 && (size_t)H * W <= INT32_MAX);
    const int Ho = H / 2, Wo = W / 2;
#ifdef POOL_AVX512
    if (mt_cpu_avx512()) {
        for (int p = 0; p < P; p++)
            for (int i = 0; i < Ho; i++) {
                const size_t o = ((size_t)p * Ho + i) * Wo;
                pool_rows_avx512(y + o, argmax + o, x + (size_t)p * H * W + (size_t)2 * i * W, W, 2 * i * W, Wo);
            }
        return;
    }
#endif
    for (int p = 0; p < P; p++) {
        const float *xp = x + (size_t)p * H * W;
        const size_t out = (size_t)p * Ho * Wo;
        for (int i = 0; i < Ho; i++)
            for (int j = 0; j < Wo; j++) {
                const int32_t top = (int32_t)(2 * i * W + 2 * j);
                const int32_t cand[4] = {top, top + 1, top + W, top + W + 1}; /* row-major window order */
                int32_t best = cand[0];
                for (int k = 1; k < 4; k++)
                    if (xp[cand[k]] > xp[best]) best = cand[k]; /* strict: the first maximum wins ties */
                y[out + (size_t)i * Wo + j] = xp[best];
                argmax[out + (size_t)i * Wo + j] = best;
            }
    }
}

/* dx[P,H,W] = dy at the argmax of each window and 0 elsewhere (windows do not overlap, so each
 * input receives at most one value); with mask (a fused relu's output, the pool's own), only
 * where the mask is positive. Plane by plane, so that the zeroed plane is still in cache when
 * the values land in it. */
static void maxpool_scatter(float *restrict dx, const float *restrict dy, const float *restrict mask,
                            const int32_t *restrict argmax, int P, int H, int W)
{
    const size_t plane = (size_t)H * W, outs = (size_t)(H / 2) * (W / 2);
#ifdef POOL_AVX512
    if (mt_cpu_avx512()) { /* every value written once: no memset */
        const int Ho = H / 2, Wo = W / 2;
        for (int p = 0; p < P; p++) {
            float *dp = dx + p * plane;
            for (int i = 0; i < Ho; i++) {
                const size_t o = (size_t)p * outs + (size_t)i * Wo;
                float *r0 = dp + (size_t)2 * i * W;
                unpool_rows_avx512(r0, W, dy + o, mask ? mask + o : NULL, argmax + o, 2 * i * W, Wo);
                if (W % 2) r0[W - 1] = r0[2 * W - 1] = 0.0f;
            }
            if (H % 2) memset(dp + (size_t)(H - 1) * W, 0, sizeof(float) * W);
        }
        return;
    }
#endif
    for (int p = 0; p < P; p++) {
        float *dp = dx + p * plane;
        const float *gp = dy + p * outs, *mp = mask ? mask + p * outs : NULL;
        const int32_t *ap = argmax + p * outs;
        memset(dp, 0, sizeof(float) * plane);
        for (size_t o = 0; o < outs; o++) {
            assert(ap[o] >= 0 && (size_t)ap[o] < plane);
            if (!mp || mp[o] > 0.0f) dp[ap[o]] = gp[o];
        }
    }
}

void mt_maxpool_backward(float *dx, const float *dy, const int32_t *argmax, int P, int H, int W)
{
    maxpool_scatter(dx, dy, NULL, argmax, P, H, W);
}

void mt_maxpool_rforward(float *restrict ry, const float *restrict rx, const int32_t *restrict argmax, int P, int H,
                         int W)
{
    const size_t plane = (size_t)H * W, outs = (size_t)(H / 2) * (W / 2);
    for (int p = 0; p < P; p++)
        for (size_t o = 0; o < outs; o++) ry[p * outs + o] = rx[p * plane + argmax[p * outs + o]];
}

void mt_maxpool_rbackward(float *rdx, const float *rdy, const int32_t *argmax, int P, int H, int W)
{
    maxpool_scatter(rdx, rdy, NULL, argmax, P, H, W);
}

void mt_maxpool_relu_forward(float *y, int32_t *argmax, const float *x, int P, int H, int W)
{
    mt_maxpool_forward(y, argmax, x, P, H, W);
    const size_t n = (size_t)P * (H / 2) * (W / 2);
    for (size_t i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f; /* mt_relu_forward's rule */
}

void mt_maxpool_relu_backward(float *dx, const float *dy, const float *y, const int32_t *argmax, int P, int H, int W)
{
    maxpool_scatter(dx, dy, y, argmax, P, H, W);
}

void mt_maxpool_relu_rforward(float *restrict ry, const float *restrict rx, const float *restrict y,
                              const int32_t *restrict argmax, int P, int H, int W)
{
    const size_t plane = (size_t)H * W, outs = (size_t)(H / 2) * (W / 2);
    for (int p = 0; p < P; p++)
        for (size_t o = 0; o < outs; o++) {
            const size_t k = p * outs + o;
            ry[k] = y[k] > 0.0f ? rx[p * plane + argmax[k]] : 0.0f;
        }
}

/* ---- batchnorm → ReLU → max-pool, fused --------------------------------------------- */

/* Channel c's statistics (or R-statistics) as the one-channel array (μ, s) the mt_bn_* passes
 * take with C = 1, and back. */
static void channel_stats(float one[2], const float *stats, int C, int c)
{
    one[0] = stats[c];
    one[1] = stats[C + c];
}
static void store_channel_stats(float *stats, const float one[2], int C, int c)
{
    stats[c] = one[0];
    stats[C + c] = one[1];
}

void mt_bn_relu_pool_forward(float *y, int32_t *argmax, float *stats, const float *x, const float *gamma,
                             const float *beta, int C, int N, int H, int W, float *buf)
{
    const int M = N * H * W;
    const size_t out = (size_t)N * (H / 2) * (W / 2);
    for (int c = 0; c < C; c++) {
        float one[2];
        mt_bn_forward(buf, one, x + (size_t)c * M, gamma + c, beta + c, 1, M);
        store_channel_stats(stats, one, C, c);
        mt_maxpool_relu_forward(y + c * out, argmax + c * out, buf, N, H, W);
    }
}

void mt_bn_relu_pool_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *y,
                              const int32_t *argmax, const float *x, const float *stats, const float *gamma, int C,
                              int N, int H, int W, float *buf)
{
    if (!dx && !dgamma) return;
    const int M = N * H * W;
    const size_t out = (size_t)N * (H / 2) * (W / 2);
    for (int c = 0; c < C; c++) {
        float one[2];
        channel_stats(one, stats, C, c);
        mt_maxpool_relu_backward(buf, dy + c * out, y + c * out, argmax + c * out, N, H, W);
        mt_bn_backward(dx ? dx + (size_t)c * M : NULL, dgamma ? dgamma + c : NULL, dgamma ? dbeta + c : NULL, buf,
                       x + (size_t)c * M, one, gamma + c, 1, M);
    }
}

void mt_bn_relu_pool_rforward(float *ry, float *rstats, const float *x, const float *rx, const float *y,
                              const int32_t *argmax, const float *stats, const float *gamma, const float *vgamma,
                              const float *vbeta, int C, int N, int H, int W, float *buf)
{
    const int M = N * H * W;
    const size_t out = (size_t)N * (H / 2) * (W / 2);
    for (int c = 0; c < C; c++) {
        float one[2], rone[2];
        channel_stats(one, stats, C, c);
        mt_bn_rforward(buf, rone, x + (size_t)c * M, rx ? rx + (size_t)c * M : NULL, one, gamma + c, vgamma + c,
                       vbeta ? vbeta + c : NULL, 1, M);
        store_channel_stats(rstats, rone, C, c);
        mt_maxpool_relu_rforward(ry + c * out, buf, y + c * out, argmax + c * out, N, H, W);
    }
}

void mt_bn_relu_pool_rbackward(float *rdx, float *rdgamma, float *rdbeta, const float *dy, const float *rdy,
                               const float *y, const int32_t *argmax, const float *x, const float *rx,
                               const float *stats, const float *rstats, const float *gamma, const float *vgamma,
                               int C, int N, int H, int W, float *buf)
{
    const int M = N * H * W;
    const size_t out = (size_t)N * (H / 2) * (W / 2);
    for (int c = 0; c < C; c++) {
        float one[2], rone[2];
        channel_stats(one, stats, C, c);
        channel_stats(rone, rstats, C, c);
        mt_maxpool_relu_backward(buf, dy + c * out, y + c * out, argmax + c * out, N, H, W);
        mt_maxpool_relu_backward(buf + M, rdy + c * out, y + c * out, argmax + c * out, N, H, W);
        mt_bn_rbackward(rdx ? rdx + (size_t)c * M : NULL, rdgamma + c, rdbeta + c, buf, buf + M, x + (size_t)c * M,
                        rx ? rx + (size_t)c * M : NULL, one, rone, gamma + c, vgamma + c, 1, M);
    }
}

/* ---- flatten ------------------------------------------------------------------------ */

void mt_flatten_forward(float *restrict y, const float *restrict x, int N, int C, int HW)
{
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++)
            memcpy(y + ((size_t)n * C + c) * HW, x + ((size_t)c * N + n) * HW, sizeof(float) * HW);
}

void mt_flatten_backward(float *restrict dx, const float *restrict dy, int N, int C, int HW)
{
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++)
            memcpy(dx + ((size_t)c * N + n) * HW, dy + ((size_t)n * C + c) * HW, sizeof(float) * HW);
}

/* ---- global average pool ------------------------------------------------------------ */

void mt_gap_forward(float *restrict y, const float *restrict x, int N, int C, int HW)
{
    assert(N > 0 && C > 0 && HW > 0);
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++) {
            const float *plane = x + ((size_t)c * N + n) * HW;
            double s = 0.0;
            for (int i = 0; i < HW; i++) s += plane[i];
            y[(size_t)n * C + c] = (float)(s / HW);
        }
}

void mt_gap_backward(float *restrict dx, const float *restrict dy, int N, int C, int HW)
{
    assert(N > 0 && C > 0 && HW > 0);
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++) {
            float *plane = dx + ((size_t)c * N + n) * HW;
            const float v = dy[(size_t)n * C + c] / (float)HW;
            for (int i = 0; i < HW; i++) plane[i] = v;
        }
}

/* ---- softmax cross-entropy ---------------------------------------------------------- */

/* The class index a float label stands for; labels are produced by the samplers, so a
 * non-integer or out-of-range label is a bug, not bad input. */
static int label_index(float label, int K)
{
    const int k = (int)label;
    assert((float)k == label && k >= 0 && k < K);
    (void)K;
    return k;
}

float mt_xent_forward(float *probs, const float *z, const float *labels, int N, int K)
{
    assert(N > 0 && K > 0);
    double loss = 0.0;
    for (int n = 0; n < N; n++) {
        const float *zn = z + (size_t)n * K;
        float *pn = probs + (size_t)n * K;
        float m = zn[0];
        for (int k = 1; k < K; k++) m = zn[k] > m ? zn[k] : m;
        double sum = 0.0;
        for (int k = 0; k < K; k++) sum += exp((double)zn[k] - m);
        const double lse = m + log(sum);
        for (int k = 0; k < K; k++) pn[k] = (float)exp((double)zn[k] - lse);
        loss += lse - zn[label_index(labels[n], K)];
    }
    return (float)(loss / N);
}

void mt_xent_backward(float *dz, const float *probs, const float *labels, int N, int K)
{
    const float inv_n = 1.0f / (float)N;
    for (int n = 0; n < N; n++) {
        const int y = label_index(labels[n], K);
        for (int k = 0; k < K; k++) {
            const size_t i = (size_t)n * K + k;
            dz[i] = (probs[i] - (k == y ? 1.0f : 0.0f)) * inv_n;
        }
    }
}

void mt_xent_rbackward(float *rdz, const float *probs, const float *rz, int N, int K)
{
    const float inv_n = 1.0f / (float)N;
    for (int n = 0; n < N; n++) {
        const float *pn = probs + (size_t)n * K, *rn = rz + (size_t)n * K;
        double prz = 0.0;
        for (int k = 0; k < K; k++) prz += (double)pn[k] * rn[k];
        const float pr = (float)prz;
        for (int k = 0; k < K; k++) rdz[(size_t)n * K + k] = pn[k] * (rn[k] - pr) * inv_n;
    }
}

int mt_xent_correct(const float *z, const float *labels, int N, int K)
{
    int correct = 0;
    for (int n = 0; n < N; n++) {
        const float *zn = z + (size_t)n * K;
        int best = 0;
        for (int k = 1; k < K; k++)
            if (zn[k] > zn[best]) best = k;
        correct += best == label_index(labels[n], K);
    }
    return correct;
}

/* ---- softmax cross-entropy, reference ----------------------------------------------- */

float mt_xent_forward_ref(float *probs, const float *z, const float *labels, int N, int K)
{
    double loss = 0.0;
    for (int n = 0; n < N; n++) {
        double m = -INFINITY, sum = 0.0;
        for (int k = 0; k < K; k++) m = fmax(m, z[n * K + k]);
        for (int k = 0; k < K; k++) sum += exp(z[n * K + k] - m);
        for (int k = 0; k < K; k++) probs[n * K + k] = (float)(exp(z[n * K + k] - m) / sum);
        loss += m + log(sum) - z[n * K + (int)labels[n]];
    }
    return (float)(loss / N);
}

void mt_xent_backward_ref(float *dz, const float *probs, const float *labels, int N, int K)
{
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
            dz[n * K + k] = (float)(((double)probs[n * K + k] - (k == (int)labels[n])) / N);
}

void mt_xent_rbackward_ref(float *rdz, const float *probs, const float *rz, int N, int K)
{
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            double s = 0.0;
            for (int j = 0; j < K; j++) {
                const double jac = (j == k ? (double)probs[n * K + k] : 0.0) - (double)probs[n * K + k] * probs[n * K + j];
                s += jac * rz[n * K + j];
            }
            rdz[n * K + k] = (float)(s / N);
        }
}
