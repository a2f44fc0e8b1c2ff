/* conv_direct.c — the 3×3, stride-1, padding-1 convolution computed directly from the image
 * on CPUs with AVX-512 (see conv_direct.h): no column matrix, no packing, no col2im. The
 * weight gradient (mt_conv_direct_dw) is at the end of the file.
 *
 * Sixteen output channels make one vector; a register block holds DIRECT_PIXELS consecutive
 * outputs of a row for up to 64 channels (28 of the 32 vector registers). For every input
 * channel and tap the block broadcasts one input value per pixel and multiplies it by the
 * tap's weights for the 64 channels. The input is first copied into zero-padded planes, so the
 * loops carry no bounds tests; the weights into [C·9][F], so a tap's channels are contiguous.
 *
 * Below 8 input channels (an image's first layer) that block would store more than it
 * computes; there sixteen pixels of a row make the vector instead, and one load of them serves
 * FEW_F output channels (mt_conv_direct's few_avx512, and few_dw_avx512 for the weights).
 *
 * Each output is Σ over (c, kh, kw) in that order, one fused multiply-add per term. A fused
 * multiply-add is rounded once, exactly as IEEE 754 defines it, so the bits are the same on any
 * AVX-512 CPU and for any batch, chunk or rank count. They are not the bits of the im2col +
 * sgemm path, whose order OpenBLAS picks per CPU; that path stays where AVX-512 is missing.
 * Without the fused form the block ran at three quarters of OpenBLAS's sgemm kernel and saved
 * nothing; with it, Conv4 meta-training runs faster than through im2col (docs/BENCHMARKS.md). */
#include "conv_direct.h"

#include <assert.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

/* Outputs per register block (Conv4's widths 28, 14, 7 are multiples; a block that runs past
 * the row or the plane computes into the next row, the next plane or the padding slack, and
 * stores only outputs). */
#define DIRECT_PIXELS 7

/* Input channels below which the pixel-vector kernels run, and their output channels per block */
#define FEW_C 8
#define FEW_F 8

int mt_cpu_avx512(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    static int avx512 = -1;
    if (avx512 < 0) {
        __builtin_cpu_init();
        avx512 = __builtin_cpu_supports("avx512f") != 0;
    }
    return avx512;
#else
    return 0;
#endif
}

int mt_conv_direct_ok(const mt_conv_geom *g)
{
#if defined(__x86_64__) && defined(__GNUC__)
    return mt_cpu_avx512() && g->k == 3 && g->stride == 1 && g->pad == 1 && g->F % 16 == 0;
#else
    (void)g;
    return 0;
#endif
}

size_t mt_conv_direct_scratch_floats(int nc, const mt_conv_geom *g)
{
    const size_t padded = (size_t)g->C * nc * (g->H + 2) * (g->W + 2) + DIRECT_PIXELS + 2;
    const size_t weights = (size_t)g->C * 9 * g->F, dy = g->C < FEW_C ? 0 : (size_t)g->F * nc * g->H * g->W;
    return padded + (weights > dy ? weights : dy);
}

#if defined(__x86_64__) && defined(__GNUC__)

typedef float v16 __attribute__((vector_size(64)));
typedef float v16_u __attribute__((vector_size(64), aligned(4), may_alias));

/* dst[0 … n) = src[0 … n) (src NULL: zeros), sixteen at a time: Conv4's rows of 14, 7 and 3
 * are too short for a memcpy or memset call to pay */
__attribute__((target("avx512f"), always_inline)) static inline void put_row(float *dst, const float *src, int n)
{
    for (int k = 0; k < n; k += 16) {
        const __mmask16 m = (__mmask16)(n - k >= 16 ? 0xffff : (1u << (n - k)) - 1);
        _mm512_mask_storeu_ps(dst + k, m, src ? _mm512_maskz_loadu_ps(m, src + k) : _mm512_setzero_ps());
    }
}

/* xp[c, i, 1 + h, 1 + w] = x[c, n0 + i, h, w], zero around, and slack after the last row:
 * every value written once, row by row */
__attribute__((target("avx512f"))) static void pad_planes(float *restrict xp, const float *restrict x, int N, int n0,
                                                          int nc, const mt_conv_geom *g)
{
    const int C = g->C, H = g->H, W = g->W, WP = W + 2;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < nc; i++) {
            const float *src = x + ((size_t)c * N + n0 + i) * H * W;
            put_row(xp, NULL, WP + 1); /* the top padding row and the first row's left pad */
            xp += WP + 1;
            for (int h = 0; h < H; h++, src += W, xp += WP) {
                put_row(xp, src, W);
                xp[W] = xp[W + 1] = 0.0f; /* this row's right pad, the next row's left one */
            }
            put_row(xp, NULL, WP - 1); /* the bottom padding row, less its first value */
            xp += WP - 1;
        }
    put_row(xp, NULL, DIRECT_PIXELS + 2);
}

/* y[f0 + 16j + l, dst[p]] (+)= Σ_{c,kh,kw} xp[c, i, kh, p + kw] · wt[c,kh,kw, f0 + 16j + l] for
 * j < NV and the DIRECT_PIXELS consecutive positions p of the padded grid from xp (the top-left
 * tap of the first), stored where dst[p] >= 0. */
__attribute__((target("avx512f"), always_inline)) static inline void block(float *y, size_t plane_y, const float *xp,
                                                                           size_t plane_x, int WP, const float *wt,
                                                                           int F, int C, int NV, const int *dst,
                                                                           int mode, const float *b)
{
    v16 acc[DIRECT_PIXELS][4];
    for (int p = 0; p < DIRECT_PIXELS; p++)
        for (int j = 0; j < NV; j++) acc[p][j] = (v16){0};
    for (int c = 0; c < C; c++) {
        const float *xc = xp + (size_t)c * plane_x;
        const float *wc = wt + (size_t)c * 9 * F;
        for (int kh = 0; kh < 3; kh++) {
            const float *row = xc + (size_t)kh * WP;
            for (int kw = 0; kw < 3; kw++) {
                const float *wk = wc + (size_t)(kh * 3 + kw) * F;
                v16 w[4];
                for (int j = 0; j < NV; j++) w[j] = *(const v16_u *)(wk + 16 * j);
                for (int p = 0; p < DIRECT_PIXELS; p++) {
                    const __m512 v = _mm512_set1_ps(row[p + kw]);
                    for (int j = 0; j < NV; j++) acc[p][j] = (v16)_mm512_fmadd_ps(v, (__m512)w[j], (__m512)acc[p][j]);
                }
            }
        }
    }
    for (int j = 0; j < NV; j++)
        for (int l = 0; l < 16; l++) {
            float *yf = y + (size_t)(16 * j + l) * plane_y;
            const float bf = mode == MT_DIRECT_BIAS && b ? b[16 * j + l] : 0.0f;
            for (int p = 0; p < DIRECT_PIXELS; p++) {
                if (dst[p] < 0) continue;
                if (mode == MT_DIRECT_ADD) yf[dst[p]] += acc[p][j][l];
                else if (mode == MT_DIRECT_BIAS) yf[dst[p]] = bf + acc[p][j][l];
                else yf[dst[p]] = acc[p][j][l];
            }
        }
}

/* The whole chunk: images i < nc, every block of pixels and of 64, 32 or 16 channels. A block
 * is DIRECT_PIXELS consecutive positions of an image's padded grid. Row by row, a block starts
 * at a row's first output or DIRECT_PIXELS after the previous one and stores what lies in the
 * row. On planes narrower than the blocks (Conv4's 3×3 planes) that wastes most of them, so
 * there the blocks tile the grid from the first output to the last, across the two padding
 * columns between rows, and store the positions that are outputs (4.2 of 7 per block on 3×3,
 * against 3 row by row). Either way each output is the same chain of fused multiply-adds. */
__attribute__((target("avx512f"))) static void direct_avx512(float *y, size_t ldf, const float *xp, const float *wt,
                                                             int nc, const mt_conv_geom *g, int mode,
                                                             const float *b)
{
    const int H = g->H, W = g->W, F = g->F, C = g->C, WP = W + 2;
    const size_t plane_x = (size_t)nc * (H + 2) * WP, img_x = (size_t)(H + 2) * WP, img_y = (size_t)H * W;
    const int span = (H - 1) * WP + W; /* grid positions from the first output to past the last */
    const int per_row = (W + DIRECT_PIXELS - 1) / DIRECT_PIXELS, flat_steps = (span + DIRECT_PIXELS - 1) / DIRECT_PIXELS;
    const int flat = flat_steps < H * per_row, steps = flat ? flat_steps : H * per_row;
#define BLOCK(NV) block(y0 + f0 * ldf, ldf, x0, plane_x, WP, wt + f0, F, C, NV, dst, mode, b ? b + f0 : NULL)
    for (int i = 0; i < nc; i++)
        for (int s = 0; s < steps; s++) {
            int q0, dst[DIRECT_PIXELS]; /* the block's first grid position; its outputs in the plane */
            if (flat) {
                q0 = s * DIRECT_PIXELS;
                for (int p = 0; p < DIRECT_PIXELS; p++) {
                    const int r = (q0 + p) / WP, c = (q0 + p) % WP;
                    dst[p] = c < W && r < H ? r * W + c : -1;
                }
            } else {
                const int oh = s / per_row, ow0 = s % per_row * DIRECT_PIXELS;
                q0 = oh * WP + ow0;
                for (int p = 0; p < DIRECT_PIXELS; p++) dst[p] = ow0 + p < W ? oh * W + ow0 + p : -1;
            }
            const float *x0 = xp + i * img_x + q0;
            float *y0 = y + i * img_y;
            int f0 = 0;
            for (; f0 + 64 <= F; f0 += 64) BLOCK(4);
            for (; f0 + 32 <= F; f0 += 32) BLOCK(2);
            for (; f0 + 16 <= F; f0 += 16) BLOCK(1);
        }
#undef BLOCK
}

/* Fewer than FEW_C input channels: y[f0 + q, n, oh, ow0 + l] (+)= Σ_{c,kh,kw}
 * xp[c, i, oh + kh, ow0 + l + kw] · wt[f0 + q, c, kh, kw] for q < FEW_F and the sixteen (or,
 * at a row's end, fewer: masked) pixels l. The sum starts at zero and is added to y or to the
 * bias at the end, as in block(). */
__attribute__((target("avx512f"))) static void few_avx512(float *y, size_t ldf, const float *xp, const float *wt,
                                                          int nc, const mt_conv_geom *g, int mode,
                                                          const float *b)
{
    const int H = g->H, W = g->W, F = g->F, C = g->C, WP = W + 2;
    const size_t plane_x = (size_t)nc * (H + 2) * WP, img_x = (size_t)(H + 2) * WP, img_y = (size_t)H * W;
    for (int i = 0; i < nc; i++)
        for (int oh = 0; oh < H; oh++)
            for (int ow0 = 0; ow0 < W; ow0 += 16) {
                const int width = W - ow0 < 16 ? W - ow0 : 16;
                const __mmask16 m = (__mmask16)((1u << width) - 1);
                const float *x0 = xp + i * img_x + (size_t)oh * WP + ow0;
                float *y0 = y + i * img_y + (size_t)oh * W + ow0;
                for (int f0 = 0; f0 < F; f0 += FEW_F) {
                    __m512 acc[FEW_F];
                    for (int q = 0; q < FEW_F; q++) acc[q] = _mm512_setzero_ps();
                    for (int c = 0; c < C; c++) {
                        const float *xc = x0 + c * plane_x, *wc = wt + ((size_t)f0 * C + c) * 9;
                        for (int kh = 0; kh < 3; kh++)
                            for (int kw = 0; kw < 3; kw++) {
                                const __m512 v = _mm512_maskz_loadu_ps(m, xc + (size_t)kh * WP + kw);
                                for (int q = 0; q < FEW_F; q++)
                                    acc[q] = _mm512_fmadd_ps(v, _mm512_set1_ps(wc[(size_t)q * C * 9 + kh * 3 + kw]),
                                                             acc[q]);
                            }
                    }
                    for (int q = 0; q < FEW_F; q++) {
                        float *yf = y0 + (size_t)(f0 + q) * ldf;
                        __m512 out = acc[q];
                        if (mode == MT_DIRECT_ADD) out = _mm512_add_ps(_mm512_maskz_loadu_ps(m, yf), out);
                        if (mode == MT_DIRECT_BIAS) out = _mm512_add_ps(_mm512_set1_ps(b ? b[f0 + q] : 0.0f), out);
                        _mm512_mask_storeu_ps(yf, m, out);
                    }
                }
            }
}

#endif

void mt_conv_direct(float *y, const float *x, const float *w, const float *b, int N, int n0, int nc,
                    const mt_conv_geom *g, float *scratch, int flags)
{
    assert(mt_conv_direct_ok(g));
    const int mode = flags & (MT_DIRECT_ADD | MT_DIRECT_BIAS);
    assert(mode != (MT_DIRECT_ADD | MT_DIRECT_BIAS));
    const int C = g->C, H = g->H, W = g->W, F = g->F, HP = H + 2, WP = W + 2;
    float *xp = scratch, *wt = scratch + (size_t)C * nc * HP * WP + DIRECT_PIXELS + 2;
    const float *wk = wt; /* the kernel's weights: w itself where its layout already fits */
    if (C < FEW_C) { /* [f, c, kh, kw]: w, or w flipped */
        if (flags & MT_DIRECT_FLIP)
            for (int f = 0; f < F; f++)
                for (int c = 0; c < C; c++)
                    for (int k = 0; k < 9; k++) wt[((size_t)f * C + c) * 9 + k] = w[((size_t)c * F + f) * 9 + 8 - k];
        else
            wk = w;
    } else if (flags & MT_DIRECT_FLIP) /* wt[c, kh, kw, f] = w[c, f, 2 − kh, 2 − kw] */
        for (int c = 0; c < C; c++)
            for (int f = 0; f < F; f++)
                for (int k = 0; k < 9; k++) wt[((size_t)c * 9 + k) * F + f] = w[((size_t)c * F + f) * 9 + 8 - k];
    else /* wt[c, kh, kw, f] = w[f, c, kh, kw] */
        for (int f = 0; f < F; f++)
            for (int k = 0; k < C * 9; k++) wt[(size_t)k * F + f] = w[(size_t)f * C * 9 + k];
#if defined(__x86_64__) && defined(__GNUC__)
    pad_planes(xp, x, N, n0, nc, g);
    if (C < FEW_C)
        few_avx512(y + (size_t)n0 * H * W, (size_t)N * H * W, xp, wk, nc, g, mode, b);
    else
        direct_avx512(y + (size_t)n0 * H * W, (size_t)N * H * W, xp, wk, nc, g, mode, b);
#else
    (void)y, (void)b, (void)xp, (void)wk; /* not reached: mt_conv_direct_ok is 0 */
#endif
}

#if defined(__x86_64__) && defined(__GNUC__)

/* dw[f0 + 16j + l, c + q, kh, kw] (+)= Σ_{i, oh, ow} dyT[i, oh, ow, f0 + 16j + l] · xp[c + q, i, oh + kh, ow + kw]
 * for one kh, Q input channels c + q (Q = 2 or 1), the three kw and j < NV: 3·Q·NV
 * accumulators, each summed over the pixels in order. xr points at xp[c, 0, kh, 0], dyT at
 * channel f0; plane_x is the distance between channels of xp. */
__attribute__((target("avx512f"), always_inline)) static inline void dw_block(float *dw, size_t ldw, const float *dyT,
                                                                              const float *xr, size_t plane_x, int nc,
                                                                              int H, int W, int F, int Q, int NV,
                                                                              int add)
{
    const int WP = W + 2;
    const size_t img_x = (size_t)(H + 2) * WP;
    v16 acc[2][3][4];
    for (int q = 0; q < Q; q++)
        for (int t = 0; t < 3; t++)
            for (int j = 0; j < NV; j++) acc[q][t][j] = (v16){0};
    for (int i = 0; i < nc; i++)
        for (int oh = 0; oh < H; oh++) {
            const float *xrow = xr + i * img_x + (size_t)oh * WP, *d = dyT + ((size_t)i * H + oh) * W * F;
            for (int ow = 0; ow < W; ow++, d += F) {
                v16 dv[4];
                for (int j = 0; j < NV; j++) dv[j] = *(const v16_u *)(d + 16 * j);
                for (int q = 0; q < Q; q++)
                    for (int t = 0; t < 3; t++) {
                        const __m512 v = _mm512_set1_ps(xrow[q * plane_x + ow + t]);
                        for (int j = 0; j < NV; j++)
                            acc[q][t][j] = (v16)_mm512_fmadd_ps(v, (__m512)dv[j], (__m512)acc[q][t][j]);
                    }
            }
        }
    for (int j = 0; j < NV; j++)
        for (int l = 0; l < 16; l++)
            for (int q = 0; q < Q; q++)
                for (int t = 0; t < 3; t++) {
                    float *o = dw + (size_t)(16 * j + l) * ldw + q * 9 + t;
                    *o = add ? *o + acc[q][t][j][l] : acc[q][t][j][l];
                }
}

__attribute__((target("avx512f"))) static void dw_avx512(float *dw, const float *dyT, const float *xp, int nc,
                                                         const mt_conv_geom *g, int add)
{
    const int C = g->C, H = g->H, W = g->W, F = g->F;
    const size_t plane_x = (size_t)nc * (H + 2) * (W + 2), ldw = (size_t)C * 9;
    for (int c = 0; c < C; c += 2)
        for (int kh = 0; kh < 3; kh++) {
            const float *xr = xp + c * plane_x + (size_t)kh * (W + 2);
            float *o = dw + (size_t)c * 9 + kh * 3;
            const int Q = C - c >= 2 ? 2 : 1;
            int f0 = 0;
            if (Q == 2) {
                for (; f0 + 64 <= F; f0 += 64) dw_block(o + f0 * ldw, ldw, dyT + f0, xr, plane_x, nc, H, W, F, 2, 4, add);
                for (; f0 + 32 <= F; f0 += 32) dw_block(o + f0 * ldw, ldw, dyT + f0, xr, plane_x, nc, H, W, F, 2, 2, add);
                for (; f0 + 16 <= F; f0 += 16) dw_block(o + f0 * ldw, ldw, dyT + f0, xr, plane_x, nc, H, W, F, 2, 1, add);
            } else {
                for (; f0 + 64 <= F; f0 += 64) dw_block(o + f0 * ldw, ldw, dyT + f0, xr, plane_x, nc, H, W, F, 1, 4, add);
                for (; f0 + 32 <= F; f0 += 32) dw_block(o + f0 * ldw, ldw, dyT + f0, xr, plane_x, nc, H, W, F, 1, 2, add);
                for (; f0 + 16 <= F; f0 += 16) dw_block(o + f0 * ldw, ldw, dyT + f0, xr, plane_x, nc, H, W, F, 1, 1, add);
            }
        }
}

/* The sum of a vector's sixteen values in a fixed tree (halves, then quarters, …), the same
 * whatever compiler builds it. */
__attribute__((target("avx512f"))) static float hsum16(__m512 v)
{
    float a[16];
    _mm512_storeu_ps(a, v);
    for (int n = 8; n >= 1; n /= 2)
        for (int l = 0; l < n; l++) a[l] += a[l + n];
    return a[0];
}

/* Fewer than FEW_C input channels: dw[f0 + q, c, kh, kw] (+)= Σ_{i, oh, ow} dy[f0 + q, i, oh, ow] ·
 * xp[c, i, oh + kh, ow + kw], two output channels and the nine taps at once: eighteen vectors
 * of sixteen partial sums (lane l takes the pixels ow ≡ l mod 16 of every row, in order),
 * added up in hsum16's tree at the end. dy points at image n0, ldf apart per channel. */
__attribute__((target("avx512f"))) static void few_dw_avx512(float *dw, const float *dy, size_t ldf, const float *xp,
                                                             int nc, const mt_conv_geom *g, int add)
{
    const int C = g->C, H = g->H, W = g->W, F = g->F, WP = W + 2;
    const size_t plane_x = (size_t)nc * (H + 2) * WP, img_x = (size_t)(H + 2) * WP, img_y = (size_t)H * W;
    for (int f0 = 0; f0 < F; f0 += 2)
        for (int c = 0; c < C; c++) {
            __m512 acc[2][9];
            for (int q = 0; q < 2; q++)
                for (int k = 0; k < 9; k++) acc[q][k] = _mm512_setzero_ps();
            for (int i = 0; i < nc; i++)
                for (int oh = 0; oh < H; oh++)
                    for (int ow0 = 0; ow0 < W; ow0 += 16) {
                        const int width = W - ow0 < 16 ? W - ow0 : 16;
                        const __mmask16 m = (__mmask16)((1u << width) - 1);
                        const float *d = dy + i * img_y + (size_t)oh * W + ow0 + (size_t)f0 * ldf;
                        const __m512 d0 = _mm512_maskz_loadu_ps(m, d), d1 = _mm512_maskz_loadu_ps(m, d + ldf);
                        const float *x0 = xp + c * plane_x + i * img_x + (size_t)oh * WP + ow0;
                        for (int k = 0; k < 9; k++) {
                            const __m512 v = _mm512_maskz_loadu_ps(m, x0 + (size_t)(k / 3) * WP + k % 3);
                            acc[0][k] = _mm512_fmadd_ps(d0, v, acc[0][k]);
                            acc[1][k] = _mm512_fmadd_ps(d1, v, acc[1][k]);
                        }
                    }
            for (int q = 0; q < 2; q++)
                for (int k = 0; k < 9; k++) {
                    float *o = dw + ((size_t)(f0 + q) * C + c) * 9 + k;
                    const float s = hsum16(acc[q][k]);
                    *o = add ? *o + s : s;
                }
        }
}

#endif

void mt_conv_direct_dw(float *dw, const float *dy, const float *x, int N, int n0, int nc, const mt_conv_geom *g,
                       float *scratch, int add)
{
    assert(mt_conv_direct_ok(g));
    const int C = g->C, H = g->H, W = g->W, F = g->F;
    const size_t HW = (size_t)H * W;
    float *xp = scratch, *dyT = scratch + (size_t)C * nc * (H + 2) * (W + 2) + DIRECT_PIXELS + 2;
#if defined(__x86_64__) && defined(__GNUC__)
    pad_planes(xp, x, N, n0, nc, g);
    if (C < FEW_C) {
        few_dw_avx512(dw, dy + (size_t)n0 * HW, (size_t)N * HW, xp, nc, g, add);
        return;
    }
#endif
    /* dyT[i, oh, ow, f] = dy[f, n0 + i, oh, ow]: a pixel's channels contiguous */
    for (int f = 0; f < F; f++) {
        const float *src = dy + ((size_t)f * N + n0) * HW;
        for (size_t p = 0; p < (size_t)nc * HW; p++) dyT[p * F + f] = src[p];
    }
#if defined(__x86_64__) && defined(__GNUC__)
    dw_avx512(dw, dyT, xp, nc, g, add);
#else
    (void)dw, (void)xp; /* not reached: mt_conv_direct_ok is 0 */
#endif
}
