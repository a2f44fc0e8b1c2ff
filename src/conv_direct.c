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

/* Outputs per register block (Conv4's widths 28, 14, 7 are multiples; a last block that runs
 * past the row computes into the next row or the padding slack and is not stored). */
#define DIRECT_PIXELS 7

int mt_conv_direct_ok(const mt_conv_geom *g)
{
#if defined(__x86_64__) && defined(__GNUC__)
    static int avx512 = -1;
    if (avx512 < 0) {
        __builtin_cpu_init();
        avx512 = __builtin_cpu_supports("avx512f") != 0;
    }
    /* below 8 input channels (Conv4's first layer) the block's stores outweigh its products */
    return avx512 && g->k == 3 && g->stride == 1 && g->pad == 1 && g->F % 16 == 0 && g->C >= 8;
#else
    (void)g;
    return 0;
#endif
}

size_t mt_conv_direct_scratch_floats(int nc, const mt_conv_geom *g)
{
    const size_t padded = (size_t)g->C * nc * (g->H + 2) * (g->W + 2) + DIRECT_PIXELS + 2;
    const size_t weights = (size_t)g->C * 9 * g->F, dy = (size_t)g->F * nc * g->H * g->W;
    return padded + (weights > dy ? weights : dy);
}

/* xp[c, i, 1 + h, 1 + w] = x[c, n0 + i, h, w], zero around, and slack after the last row */
static void pad_planes(float *xp, const float *x, int N, int n0, int nc, const mt_conv_geom *g)
{
    const int C = g->C, H = g->H, W = g->W, HP = H + 2, WP = W + 2;
    const size_t plane_x = (size_t)nc * HP * WP;
    memset(xp, 0, ((size_t)C * plane_x + DIRECT_PIXELS + 2) * sizeof(float));
    for (int c = 0; c < C; c++)
        for (int i = 0; i < nc; i++)
            for (int h = 0; h < H; h++)
                memcpy(xp + c * plane_x + ((size_t)i * HP + h + 1) * WP + 1,
                       x + (((size_t)c * N + n0 + i) * H + h) * W, sizeof(float) * W);
}

#if defined(__x86_64__) && defined(__GNUC__)

typedef float v16 __attribute__((vector_size(64)));
typedef float v16_u __attribute__((vector_size(64), aligned(4), may_alias));

/* y[f0 + 16j + l, n, oh, ow0 + p] += Σ_{c,kh,kw} xp[c, i, oh + kh, ow0 + p + kw] · wt[c,kh,kw, f0 + 16j + l]
 * for j < NV, p < DIRECT_PIXELS (stored for p < width). */
__attribute__((target("avx512f"), always_inline)) static inline void block(float *y, size_t plane_y, const float *xp,
                                                                           size_t plane_x, int WP, const float *wt,
                                                                           int F, int C, int NV, int width, int add)
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
            if (add)
                for (int p = 0; p < width; p++) yf[p] += acc[p][j][l];
            else
                for (int p = 0; p < width; p++) yf[p] = acc[p][j][l];
        }
}

/* The whole chunk: images i < nc, every row, every block of pixels and of 64, 32 or 16 channels. */
__attribute__((target("avx512f"))) static void direct_avx512(float *y, size_t ldf, const float *xp, const float *wt,
                                                             int nc, const mt_conv_geom *g, int add)
{
    const int H = g->H, W = g->W, F = g->F, C = g->C, WP = W + 2;
    const size_t plane_x = (size_t)nc * (H + 2) * WP, img_x = (size_t)(H + 2) * WP, img_y = (size_t)H * W;
    for (int i = 0; i < nc; i++)
        for (int oh = 0; oh < H; oh++)
            for (int ow0 = 0; ow0 < W; ow0 += DIRECT_PIXELS) {
                const int width = W - ow0 < DIRECT_PIXELS ? W - ow0 : DIRECT_PIXELS;
                const float *x0 = xp + i * img_x + (size_t)oh * WP + ow0;
                float *y0 = y + i * img_y + (size_t)oh * W + ow0;
                int f0 = 0;
                for (; f0 + 64 <= F; f0 += 64) block(y0 + f0 * ldf, ldf, x0, plane_x, WP, wt + f0, F, C, 4, width, add);
                for (; f0 + 32 <= F; f0 += 32) block(y0 + f0 * ldf, ldf, x0, plane_x, WP, wt + f0, F, C, 2, width, add);
                for (; f0 + 16 <= F; f0 += 16) block(y0 + f0 * ldf, ldf, x0, plane_x, WP, wt + f0, F, C, 1, width, add);
            }
}

#endif

void mt_conv_direct(float *y, const float *x, const float *w, int N, int n0, int nc, const mt_conv_geom *g,
                    float *scratch, int flags)
{
    assert(mt_conv_direct_ok(g));
    const int C = g->C, H = g->H, W = g->W, F = g->F, HP = H + 2, WP = W + 2;
    float *xp = scratch, *wt = scratch + (size_t)C * nc * HP * WP + DIRECT_PIXELS + 2;
    if (flags & MT_DIRECT_FLIP) /* wt[c, kh, kw, f] = w[c, f, 2 − kh, 2 − kw] */
        for (int c = 0; c < C; c++)
            for (int f = 0; f < F; f++)
                for (int k = 0; k < 9; k++) wt[((size_t)c * 9 + k) * F + f] = w[((size_t)c * F + f) * 9 + 8 - k];
    else /* wt[c, kh, kw, f] = w[f, c, kh, kw] */
        for (int f = 0; f < F; f++)
            for (int k = 0; k < C * 9; k++) wt[(size_t)k * F + f] = w[(size_t)f * C * 9 + k];
    pad_planes(xp, x, N, n0, nc, g);
#if defined(__x86_64__) && defined(__GNUC__)
    direct_avx512(y + (size_t)n0 * H * W, (size_t)N * H * W, xp, wt, nc, g, (flags & MT_DIRECT_ADD) != 0);
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

#endif

void mt_conv_direct_dw(float *dw, const float *dy, const float *x, int N, int n0, int nc, const mt_conv_geom *g,
                       float *scratch, int add)
{
    assert(mt_conv_direct_ok(g));
    const int C = g->C, H = g->H, W = g->W, F = g->F;
    const size_t HW = (size_t)H * W;
    float *xp = scratch, *dyT = scratch + (size_t)C * nc * (H + 2) * (W + 2) + DIRECT_PIXELS + 2;
    pad_planes(xp, x, N, n0, nc, g);
    /* dyT[i, oh, ow, f] = dy[f, n0 + i, oh, ow]: a pixel's channels contiguous */
    for (int f = 0; f < F; f++) {
        const float *src = dy + ((size_t)f * N + n0) * HW;
        for (size_t p = 0; p < (size_t)nc * HW; p++) dyT[p * F + f] = src[p];
    }
#if defined(__x86_64__) && defined(__GNUC__)
    dw_avx512(dw, dyT, xp, nc, g, add);
#else
    (void)dw;
#endif
}
