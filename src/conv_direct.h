/* conv_direct.h — the 3×3 stride-1 padding-1 convolution computed directly, without im2col,
 * on CPUs with AVX-512: conv.c uses it for the forward, input-gradient and weight-gradient
 * products (and their R-passes) where it applies; test_conv checks it against the reference
 * loops and finite differences. */
#ifndef MT_CONV_DIRECT_H
#define MT_CONV_DIRECT_H

#include <stddef.h>

#include "conv.h"

/* 1 iff this CPU runs AVX-512F (checked once) */
int mt_cpu_avx512(void);

/* 1 iff the direct path applies to g on this CPU: k = 3, stride 1, padding 1, F a multiple
 * of 16, and AVX-512. */
int mt_conv_direct_ok(const mt_conv_geom *g);

/* Scratch floats for a chunk of nc images: the padded planes, then the repacked weights
 * (mt_conv_direct) or the transposed output gradient (mt_conv_direct_dw). */
size_t mt_conv_direct_scratch_floats(int nc, const mt_conv_geom *g);

enum {
    MT_DIRECT_ADD = 1,  /* y += the convolution (else y = it) */
    MT_DIRECT_BIAS = 4, /* y = b[f] + the convolution (b NULL: 0 + it), the bits of filling y and adding */
    /* w is a forward kernel read backwards: w[C, F, 3, 3] of the convolution from F to C
     * channels, applied flipped — the input gradient of that convolution, dx = convᵀ(dy) */
    MT_DIRECT_FLIP = 2
};

/* y[F, N, H, W] (+)= conv(x[C, N, H, W], w[F, C, 3, 3]) for images n0 … n0+nc−1 (only when
 * mt_conv_direct_ok(g)); b is read only with MT_DIRECT_BIAS; scratch holds
 * mt_conv_direct_scratch_floats(nc, g). */
void mt_conv_direct(float *y, const float *x, const float *w, const float *b, int N, int n0, int nc,
                    const mt_conv_geom *g, float *scratch, int flags);

/* dw[F, C, 3, 3] (+)= the weight gradient of that convolution over images n0 … n0+nc−1:
 * Σ over their pixels of dy[f, n, oh, ow] · x[c, n, oh + kh − 1, ow + kw − 1] (add: dw +=,
 * else dw =). Same conditions and scratch as mt_conv_direct. */
void mt_conv_direct_dw(float *dw, const float *dy, const float *x, int N, int n0, int nc, const mt_conv_geom *g,
                       float *scratch, int add);

#endif
