/* conv.c — conv 3×3, batchnorm, max-pool 2×2, flatten and softmax cross-entropy: the four
 * passes of each (see conv.h) and the plain-loop *_ref twins kept as the tests' oracle.
 * Conv goes through im2col + cblas_sgemm over chunks of images; batchnorm and
 * cross-entropy are per-channel / per-row loops with double accumulators. Not here: the
 * linear and relu layers (layers.c) and the model that chains them (model.c). */
#include "conv.h"

#include <assert.h>
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#undef I /* OpenBLAS's cblas.h pulls in <complex.h>; no imaginary unit here */

/* ---- conv: im2col + sgemm ----------------------------------------------------------- */

#define KSIZE 9                      /* 3×3 taps per input channel */
#define CHUNK_FLOATS ((size_t)1 << 22) /* column floats per chunk: 4Mi = 16 MiB */

/* Preconditions shared by every conv pass. Shapes come from the model layout, so they are
 * invariants here; sgemm's leading dimensions are ints, hence the bounds. */
static void conv_check_shape(int N, int C, int H, int W, int F)
{
    assert(N > 0 && C > 0 && H > 0 && W > 0 && F > 0);
    assert((size_t)N * H * W <= INT_MAX && (size_t)C * KSIZE <= INT_MAX);
    (void)N, (void)C, (void)H, (void)W, (void)F;
}

int mt_conv_chunk_images(int N, int C, int H, int W)
{
    const size_t per_image = (size_t)C * KSIZE * H * W;
    size_t n = CHUNK_FLOATS / per_image;
    if (n < 1) n = 1;
    return n < (size_t)N ? (int)n : N;
}

size_t mt_conv_scratch_floats(int N, int C, int H, int W)
{
    return (size_t)C * KSIZE * H * W * mt_conv_chunk_images(N, C, H, W);
}

/* cols[C·9, nc·H·W] = the 3×3 neighbourhoods (zero outside the plane) of images n0 …
 * n0+nc−1 of x[C,N,H,W]. Row (c, kh, kw), column (image, h, w) holds
 * x[c, n0+image, h+kh−1, w+kw−1]. */
static void im2col(float *restrict cols, const float *restrict x, int N, int C, int H, int W, int n0, int nc)
{
    const size_t HW = (size_t)H * W, ld = (size_t)nc * HW;
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                float *row = cols + ((size_t)c * KSIZE + kh * 3 + kw) * ld;
                for (int i = 0; i < nc; i++) {
                    const float *img = x + ((size_t)c * N + n0 + i) * HW;
                    for (int h = 0; h < H; h++) {
                        float *out = row + i * HW + (size_t)h * W;
                        const int ih = h + kh - 1;
                        if (ih < 0 || ih >= H) {
                            memset(out, 0, sizeof(float) * W);
                            continue;
                        }
                        const float *in = img + (size_t)ih * W;
                        if (kw == 0) { /* out[w] = in[w − 1] */
                            out[0] = 0.0f;
                            memcpy(out + 1, in, sizeof(float) * (W - 1));
                        } else if (kw == 1) {
                            memcpy(out, in, sizeof(float) * W);
                        } else { /* out[w] = in[w + 1] */
                            memcpy(out, in + 1, sizeof(float) * (W - 1));
                            out[W - 1] = 0.0f;
                        }
                    }
                }
            }
}

/* dx[C,N,H,W] += the adjoint of im2col applied to cols[C·9, nc·H·W] (images n0 … n0+nc−1):
 * every column entry is added back to the input pixel it was copied from. */
static void col2im_add(float *restrict dx, const float *restrict cols, int N, int C, int H, int W, int n0,
                       int nc)
{
    const size_t HW = (size_t)H * W, ld = (size_t)nc * HW;
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                const float *row = cols + ((size_t)c * KSIZE + kh * 3 + kw) * ld;
                const int dw = kw - 1, w_lo = dw < 0 ? 1 : 0, w_hi = dw > 0 ? W - 1 : W;
                for (int i = 0; i < nc; i++) {
                    float *img = dx + ((size_t)c * N + n0 + i) * HW;
                    for (int h = 0; h < H; h++) {
                        const int ih = h + kh - 1;
                        if (ih < 0 || ih >= H) continue;
                        const float *in = row + i * HW + (size_t)h * W;
                        float *out = img + (size_t)ih * W + dw;
                        for (int w = w_lo; w < w_hi; w++) out[w] += in[w];
                    }
                }
            }
}

/* y[F, chunk columns] (+)= a[F, C·9] · cols[C·9, nc·HW]; y points at the chunk's first
 * column of a [F, N·HW] matrix (leading dimension ldy = N·HW). */
static void gemm_w_cols(float *y, int ldy, const float *a, const float *cols, int F, int CK, int ncols, float beta)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, F, ncols, CK, 1.0f, a, CK, cols, ncols, beta, y, ldy);
}

/* dw[F, C·9] (+)= dy[F, chunk columns] · cols[C·9, nc·HW]ᵀ */
static void gemm_dy_colsT(float *dw, const float *dy, int ldy, const float *cols, int F, int CK, int ncols,
                          float beta)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, F, CK, ncols, 1.0f, dy, ldy, cols, ncols, beta, dw, CK);
}

/* cols[C·9, nc·HW] (+)= w[F, C·9]ᵀ · dy[F, chunk columns] */
static void gemm_wT_dy(float *cols, const float *w, const float *dy, int ldy, int F, int CK, int ncols, float beta)
{
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

/* db[F] = Σ_j dy[f, j] over M values, in double */
static void channel_sums(float *db, const float *dy, int F, size_t M)
{
    for (int f = 0; f < F; f++) {
        const float *row = dy + (size_t)f * M;
        double s = 0.0;
        for (size_t j = 0; j < M; j++) s += row[j];
        db[f] = (float)s;
    }
}

void mt_conv_forward(float *y, const float *x, const float *w, const float *b, int N, int C, int H, int W,
                     int F, float *scratch)
{
    conv_check_shape(N, C, H, W, F);
    const int HW = H * W, ldy = N * HW, CK = C * KSIZE, chunk = mt_conv_chunk_images(N, C, H, W);
    fill_channels(y, b, F, (size_t)ldy);
    for (int n0 = 0; n0 < N; n0 += chunk) {
        const int nc = N - n0 < chunk ? N - n0 : chunk;
        im2col(scratch, x, N, C, H, W, n0, nc);
        gemm_w_cols(y + (size_t)n0 * HW, ldy, w, scratch, F, CK, nc * HW, 1.0f);
    }
}

void mt_conv_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w, int N,
                      int C, int H, int W, int F, float *scratch)
{
    conv_check_shape(N, C, H, W, F);
    const int HW = H * W, ldy = N * HW, CK = C * KSIZE, chunk = mt_conv_chunk_images(N, C, H, W);
    if (dx) memset(dx, 0, sizeof(float) * C * (size_t)ldy);
    for (int n0 = 0; n0 < N; n0 += chunk) {
        const int nc = N - n0 < chunk ? N - n0 : chunk;
        const float *dyc = dy + (size_t)n0 * HW;
        if (dw) {
            im2col(scratch, x, N, C, H, W, n0, nc);
            gemm_dy_colsT(dw, dyc, ldy, scratch, F, CK, nc * HW, n0 == 0 ? 0.0f : 1.0f);
        }
        if (dx) {
            gemm_wT_dy(scratch, w, dyc, ldy, F, CK, nc * HW, 0.0f);
            col2im_add(dx, scratch, N, C, H, W, n0, nc);
        }
    }
    if (dw) channel_sums(db, dy, F, (size_t)ldy);
}

void mt_conv_rforward(float *ry, const float *x, const float *rx, const float *w, const float *vw,
                      const float *vb, int N, int C, int H, int W, int F, float *scratch)
{
    conv_check_shape(N, C, H, W, F);
    const int HW = H * W, ldy = N * HW, CK = C * KSIZE, chunk = mt_conv_chunk_images(N, C, H, W);
    fill_channels(ry, vb, F, (size_t)ldy);
    for (int n0 = 0; n0 < N; n0 += chunk) {
        const int nc = N - n0 < chunk ? N - n0 : chunk;
        float *ryc = ry + (size_t)n0 * HW;
        im2col(scratch, x, N, C, H, W, n0, nc);
        gemm_w_cols(ryc, ldy, vw, scratch, F, CK, nc * HW, 1.0f);
        if (rx) {
            im2col(scratch, rx, N, C, H, W, n0, nc);
            gemm_w_cols(ryc, ldy, w, scratch, F, CK, nc * HW, 1.0f);
        }
    }
}

void mt_conv_rbackward(float *rdx, float *rdw, float *rdb, const float *dy, const float *rdy, const float *x,
                       const float *rx, const float *w, const float *vw, int N, int C, int H, int W, int F,
                       float *scratch)
{
    conv_check_shape(N, C, H, W, F);
    const int HW = H * W, ldy = N * HW, CK = C * KSIZE, chunk = mt_conv_chunk_images(N, C, H, W);
    if (rdx) memset(rdx, 0, sizeof(float) * C * (size_t)ldy);
    for (int n0 = 0; n0 < N; n0 += chunk) {
        const int nc = N - n0 < chunk ? N - n0 : chunk;
        const float *dyc = dy + (size_t)n0 * HW, *rdyc = rdy + (size_t)n0 * HW;
        im2col(scratch, x, N, C, H, W, n0, nc);
        gemm_dy_colsT(rdw, rdyc, ldy, scratch, F, CK, nc * HW, n0 == 0 ? 0.0f : 1.0f);
        if (rx) {
            im2col(scratch, rx, N, C, H, W, n0, nc);
            gemm_dy_colsT(rdw, dyc, ldy, scratch, F, CK, nc * HW, 1.0f);
        }
        if (rdx) {
            gemm_wT_dy(scratch, w, rdyc, ldy, F, CK, nc * HW, 0.0f);
            gemm_wT_dy(scratch, vw, dyc, ldy, F, CK, nc * HW, 1.0f);
            col2im_add(rdx, scratch, N, C, H, W, n0, nc);
        }
    }
    channel_sums(rdb, rdy, F, (size_t)ldy);
}

/* ---- conv, reference ---------------------------------------------------------------- */

/* Index of x[c, n, h, w] in CNHW, and of w[f, c, kh, kw] in OIHW. */
#define AT_CNHW(c, n, h, w) ((((size_t)(c) * N + (n)) * H + (h)) * W + (w))
#define AT_W(f, c, kh, kw) ((((size_t)(f) * C + (c)) * 3 + (kh)) * 3 + (kw))

/* Σ_{c,kh,kw} k[f,c,kh,kw] · a[c, n, h+kh−1, w+kw−1] over the in-plane taps */
static float ref_tap_sum(const float *a, const float *k, int f, int n, int h, int w, int N, int C, int H, int W)
{
    float s = 0.0f;
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                const int ih = h + kh - 1, iw = w + kw - 1;
                if (ih >= 0 && ih < H && iw >= 0 && iw < W) s += k[AT_W(f, c, kh, kw)] * a[AT_CNHW(c, n, ih, iw)];
            }
    return s;
}

/* Σ_{f,kh,kw} k[f,c,kh,kw] · g[f, n, h−kh+1, w−kw+1]: the transposed convolution at x[c,n,h,w] */
static float ref_tap_sum_T(const float *g, const float *k, int c, int n, int h, int w, int N, int C, int H, int W,
                           int F)
{
    float s = 0.0f;
    for (int f = 0; f < F; f++)
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                const int oh = h - kh + 1, ow = w - kw + 1;
                if (oh >= 0 && oh < H && ow >= 0 && ow < W) s += k[AT_W(f, c, kh, kw)] * g[AT_CNHW(f, n, oh, ow)];
            }
    return s;
}

/* Σ_{n,h,w} g[f,n,h,w] · a[c, n, h+kh−1, w+kw−1]: the correlation a weight gradient needs */
static float ref_corr(const float *g, const float *a, int f, int c, int kh, int kw, int N, int H, int W)
{
    float s = 0.0f;
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++) {
                const int ih = h + kh - 1, iw = w + kw - 1;
                if (ih >= 0 && ih < H && iw >= 0 && iw < W) s += g[AT_CNHW(f, n, h, w)] * a[AT_CNHW(c, n, ih, iw)];
            }
    return s;
}

/* Σ_{n,h,w} g[f,n,h,w] in double (the fast passes' db uses double too) */
static float ref_channel_sum(const float *g, int f, int N, int H, int W)
{
    double s = 0.0;
    for (size_t j = 0; j < (size_t)N * H * W; j++) s += g[(size_t)f * N * H * W + j];
    return (float)s;
}

void mt_conv_forward_ref(float *y, const float *x, const float *w, const float *b, int N, int C, int H, int W,
                         int F)
{
    for (int f = 0; f < F; f++)
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++)
                for (int ww = 0; ww < W; ww++)
                    y[AT_CNHW(f, n, h, ww)] = (b ? b[f] : 0.0f) + ref_tap_sum(x, w, f, n, h, ww, N, C, H, W);
}

void mt_conv_backward_ref(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                          int N, int C, int H, int W, int F)
{
    if (dx)
        for (int c = 0; c < C; c++)
            for (int n = 0; n < N; n++)
                for (int h = 0; h < H; h++)
                    for (int ww = 0; ww < W; ww++)
                        dx[AT_CNHW(c, n, h, ww)] = ref_tap_sum_T(dy, w, c, n, h, ww, N, C, H, W, F);
    if (!dw) return;
    for (int f = 0; f < F; f++) {
        for (int c = 0; c < C; c++)
            for (int kh = 0; kh < 3; kh++)
                for (int kw = 0; kw < 3; kw++) dw[AT_W(f, c, kh, kw)] = ref_corr(dy, x, f, c, kh, kw, N, H, W);
        db[f] = ref_channel_sum(dy, f, N, H, W);
    }
}

void mt_conv_rforward_ref(float *ry, const float *x, const float *rx, const float *w, const float *vw,
                          const float *vb, int N, int C, int H, int W, int F)
{
    for (int f = 0; f < F; f++)
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++)
                for (int ww = 0; ww < W; ww++) {
                    float s = (vb ? vb[f] : 0.0f) + ref_tap_sum(x, vw, f, n, h, ww, N, C, H, W);
                    if (rx) s += ref_tap_sum(rx, w, f, n, h, ww, N, C, H, W);
                    ry[AT_CNHW(f, n, h, ww)] = s;
                }
}

void mt_conv_rbackward_ref(float *rdx, float *rdw, float *rdb, const float *dy, const float *rdy,
                           const float *x, const float *rx, const float *w, const float *vw, int N, int C, int H,
                           int W, int F)
{
    if (rdx)
        for (int c = 0; c < C; c++)
            for (int n = 0; n < N; n++)
                for (int h = 0; h < H; h++)
                    for (int ww = 0; ww < W; ww++)
                        rdx[AT_CNHW(c, n, h, ww)] = ref_tap_sum_T(rdy, w, c, n, h, ww, N, C, H, W, F) +
                                                    ref_tap_sum_T(dy, vw, c, n, h, ww, N, C, H, W, F);
    for (int f = 0; f < F; f++) {
        for (int c = 0; c < C; c++)
            for (int kh = 0; kh < 3; kh++)
                for (int kw = 0; kw < 3; kw++) {
                    float s = ref_corr(rdy, x, f, c, kh, kw, N, H, W);
                    if (rx) s += ref_corr(dy, rx, f, c, kh, kw, N, H, W);
                    rdw[AT_W(f, c, kh, kw)] = s;
                }
        rdb[f] = ref_channel_sum(rdy, f, N, H, W);
    }
}

#undef AT_CNHW
#undef AT_W

/* ---- batchnorm, fast ---------------------------------------------------------------- */

void mt_bn_forward(float *y, float *stats, const float *x, const float *gamma, const float *beta, int C, int M)
{
    assert(C > 0 && M > 0);
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * M;
        float *yc = y + (size_t)c * M;
        double sum = 0.0;
        for (int j = 0; j < M; j++) sum += xc[j];
        const float mu = (float)(sum / M);
        double ss = 0.0; /* two passes: no cancellation in E[x²] − μ² */
        for (int j = 0; j < M; j++) {
            const double d = (double)xc[j] - mu;
            ss += d * d;
        }
        const float s = (float)(1.0 / sqrt(ss / M + MT_BN_EPS));
        const float g = gamma[c], b = beta[c];
        for (int j = 0; j < M; j++) yc[j] = g * ((xc[j] - mu) * s) + b;
        stats[c] = mu;
        stats[C + c] = s;
    }
}

void mt_bn_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x, const float *stats,
                    const float *gamma, int C, int M)
{
    assert(C > 0 && M > 0);
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * M, *dyc = dy + (size_t)c * M;
        const float mu = stats[c], s = stats[C + c];
        double A = 0.0, B = 0.0; /* Σ dy, Σ dy·x̂ */
        for (int j = 0; j < M; j++) {
            const float xh = (xc[j] - mu) * s;
            A += dyc[j];
            B += (double)dyc[j] * xh;
        }
        if (dgamma) {
            dgamma[c] = (float)B;
            dbeta[c] = (float)A;
        }
        if (!dx) continue;
        float *dxc = dx + (size_t)c * M;
        const float k = gamma[c] * s, a = (float)(A / M), b = (float)(B / M);
        for (int j = 0; j < M; j++) {
            const float xh = (xc[j] - mu) * s;
            dxc[j] = k * (dyc[j] - a - xh * b);
        }
    }
}

void mt_bn_rforward(float *ry, float *rstats, const float *x, const float *rx, const float *stats,
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
            double r = 0.0, d = 0.0, drx = 0.0;
            for (int j = 0; j < M; j++) {
                const double dj = (double)xc[j] - mu;
                r += rxc[j];
                d += dj;
                drx += dj * rxc[j];
            }
            const double rmu_d = r / M;
            rmu = (float)rmu_d;
            rs = (float)(-(double)s * s * s * (drx - rmu_d * d) / M);
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

void mt_bn_rbackward(float *rdx, float *rdgamma, float *rdbeta, const float *dy, const float *rdy,
                     const float *x, const float *rx, const float *stats, const float *rstats,
                     const float *gamma, const float *vgamma, int C, int M)
{
    assert(C > 0 && M > 0);
    for (int c = 0; c < C; c++) {
        const size_t off = (size_t)c * M;
        const float *xc = x + off, *dyc = dy + off, *rdyc = rdy + off, *rxc = rx ? rx + off : NULL;
        const float mu = stats[c], s = stats[C + c], rmu = rstats[c], rs = rstats[C + c];
        double A = 0.0, B = 0.0, RA = 0.0, RB = 0.0; /* Σ dy, Σ dy·x̂, Σ rdy, Σ (rdy·x̂ + dy·Rx̂) */
        for (int j = 0; j < M; j++) {
            const float d = xc[j] - mu, xh = d * s;
            const float rxh = rxc ? (rxc[j] - rmu) * s + d * rs : 0.0f;
            A += dyc[j];
            B += (double)dyc[j] * xh;
            RA += rdyc[j];
            RB += (double)rdyc[j] * xh + (double)dyc[j] * rxh;
        }
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

void mt_maxpool_forward(float *restrict y, int32_t *restrict argmax, const float *restrict x, int P, int H, int W)
{
    assert(P > 0 && H >= 2 && W >= 2 && (size_t)H * W <= INT32_MAX);
    const int Ho = H / 2, Wo = W / 2;
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

/* dx[P,H,W] = 0, then dx[argmax] += dy: windows do not overlap, so each input receives at
 * most one value. */
static void maxpool_scatter(float *restrict dx, const float *restrict dy, const int32_t *restrict argmax, int P,
                            int H, int W)
{
    const size_t plane = (size_t)H * W, outs = (size_t)(H / 2) * (W / 2);
    memset(dx, 0, sizeof(float) * P * plane);
    for (int p = 0; p < P; p++)
        for (size_t o = 0; o < outs; o++) {
            assert(argmax[p * outs + o] >= 0 && (size_t)argmax[p * outs + o] < plane);
            dx[p * plane + argmax[p * outs + o]] += dy[p * outs + o];
        }
}

void mt_maxpool_backward(float *dx, const float *dy, const int32_t *argmax, int P, int H, int W)
{
    maxpool_scatter(dx, dy, argmax, P, H, W);
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
    maxpool_scatter(rdx, rdy, argmax, P, H, W);
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
