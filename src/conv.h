/*
 * conv.h — the image layers of the Conv4 and ResNet-12 few-shot models (conv2d with any
 * square kernel, stride and zero padding; batchnorm; max-pool 2×2; global average pool;
 * flatten) and the softmax cross-entropy loss, with the same four passes as layers.h:
 *
 *   forward    y = f(x; w)
 *   backward   vector-Jacobian product: dL/dy → dL/dx, dL/dw
 *   rforward   Pearlmutter's R-operator on the forward pass, R(y) = d/dε f(x + ε·R(x); w + ε·v)
 *   rbackward  the R-operator on the backward pass: R(dL/dx), R(dL/dw)
 *
 * so a Hessian-vector product of a loss built from them is one pass of each, exact (no
 * finite differences). Linear, relu and leaky-relu layers come from layers.h.
 *
 * Layout. Activations of the conv-family layers are CNHW, [C][N][H][W], channel-major over
 * the whole batch: one channel's values over all images are contiguous, so batchnorm's
 * statistics run over M = N·H·W contiguous values and a conv layer is one GEMM over all
 * images (im2col). Weights are OIHW, w[F,C,k,k], as in PyTorch. flatten and global average
 * pool turn CNHW into the row-major [N, ·] matrix a linear layer takes, flatten in
 * PyTorch's per-image (c,h,w) order, so weights load from and compare with PyTorch
 * unchanged.
 *
 * Dimension letters used in shape comments:
 *   N  images in the batch          C  input channels        F  output channels (filters)
 *   H, W  height and width of the input planes;  Ho, Wo  of a conv's output planes
 *   k  conv kernel side (k×k taps)
 *   M  values per channel, N·H·W (batchnorm)
 *   P  planes, C·N (max-pool works plane by plane)
 *   HW  values per plane, H·W (flatten, global average pool)
 *   K  classes (cross-entropy)
 * All arrays are float32 unless stated. Output pointers never alias inputs. As in layers.h,
 * a NULL gradient output means "not needed" and a NULL R-input means zero.
 *
 * Each fast kernel has a plain-loop *_ref twin with the same contract (conv, batchnorm,
 * cross-entropy; max-pool, global average pool and flatten are plain loops already): the
 * twins are the tests' oracle and are never called in training. No function here
 * allocates: the conv passes take a scratch buffer sized by mt_conv_scratch_floats.
 */
#ifndef MT_CONV_H
#define MT_CONV_H

#include <stddef.h>
#include <stdint.h>

/* ---- conv2d: k×k kernel, stride, zero padding, optional bias ---------------------------
 *   y[F,N,Ho,Wo] = w[F,C,k,k] ⋆ x[C,N,H,W] + b[F],
 *   y[f,n,oh,ow] = b[f] + Σ_{c,kh,kw} w[f,c,kh,kw] · x[c, n, oh·stride + kh − pad, ow·stride + kw − pad]
 * with x zero outside its planes (PyTorch's Conv2d, dilation 1, groups 1). The shape of a
 * layer is an mt_conv_geom, filled and validated once by mt_conv_geom_init.
 *
 * The fast passes unfold the input into columns (im2col, [C·k², n·Ho·Wo] for a chunk of n
 * images) and multiply with cblas_sgemm, writing a chunk's columns of y in place through
 * the leading dimension; the backward passes multiply by wᵀ into the same column buffer
 * and add it back onto the input pixels (col2im). Chunks bound the scratch memory on large
 * images: a chunk holds as many images as fit in 1Mi floats of columns (4 MiB), at least
 * one and at most N. Weight gradients are summed over the chunks in order, so their float
 * rounding depends on the chunk size (and on sgemm's blocking); nothing else does, and the
 * results are deterministic for a given shape and BLAS thread count.
 *
 * On CPUs with AVX-512 a 3×3 stride-1 padding-1 conv with a multiple of 16 output channels
 * skips im2col and sgemm altogether: conv_direct.c computes its products from zero-padded
 * image planes, each output of the forward and input-gradient passes one fixed-order chain
 * of fused multiply-adds (weight gradients are still summed chunk by chunk).
 *
 * Fast path: a 1×1 kernel with stride 1 and no padding needs no im2col. x[C, N·H·W] is
 * already its column matrix and y has x's planes, so each product is one sgemm over the
 * whole batch straight between the caller's arrays (dx included), the chunk is all N
 * images and the scratch needed is 0 floats (scratch may then be NULL).
 *
 * The scratch contents on entry are ignored and on return unspecified. Bias: b NULL means
 * no bias (forward); db NULL skips the bias gradient even when dw is given; vb NULL is a
 * zero bias direction; rdb NULL skips R(db). */

typedef struct {
    int C, H, W;           /* input planes of one image: C channels of H×W */
    int F, k, stride, pad; /* F output channels, k×k kernel, stride, zero padding */
    int Ho, Wo;            /* output planes: (H + 2·pad − k)/stride + 1, likewise W */
} mt_conv_geom;

/* Fills g; returns 0, or -1 (g zeroed) if a size is not positive, pad < 0, pad >= k, or
 * the output is empty (k > H + 2·pad or k > W + 2·pad), or one image's H·W, Ho·Wo or C·k²
 * exceeds INT_MAX (sgemm's dimensions are ints). */
int mt_conv_geom_init(mt_conv_geom *g, int C, int H, int W, int F, int k, int stride, int pad);

/* Images per chunk for a batch of N: min(N, max(1, 1Mi / (C·k²·Ho·Wo))); N on the 1×1
 * fast path. */
int mt_conv_chunk_images(int N, const mt_conv_geom *g);

/* Floats the scratch argument of every conv pass must hold for this shape: one chunk's
 * column buffer, C·k²·Ho·Wo · mt_conv_chunk_images, and 0 on the 1×1 fast path.
 * Non-decreasing in N, so scratch sized for the largest batch serves every smaller one. */
size_t mt_conv_scratch_floats(int N, const mt_conv_geom *g);

/* y[F,N,Ho,Wo] = w ⋆ x + b   (x[C,N,H,W], w[F,C,k,k], b[F] or NULL) */
void mt_conv_forward(float *y, const float *x, const float *w, const float *b, int N, const mt_conv_geom *g,
                     float *scratch);

/* dx[C,N,H,W] = wᵀ ⋆ dy (skipped when dx is NULL: the first layer);
 * dw[F,C,k,k] = Σ_{n,oh,ow} dy ⊗ x-window;  db[F] = Σ_{n,oh,ow} dy[f]  (both skipped when
 * dw is NULL, as in mt_linear_backward; db alone skipped when db is NULL).
 * dy[F,N,Ho,Wo]. */
void mt_conv_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w, int N,
                      const mt_conv_geom *g, float *scratch);

/* ry[F,N,Ho,Wo] = vw ⋆ x + w ⋆ rx + vb   (rx[C,N,H,W] NULL: zero; vb[F] NULL: zero) */
void mt_conv_rforward(float *ry, const float *x, const float *rx, const float *w, const float *vw,
                      const float *vb, int N, const mt_conv_geom *g, float *scratch);

/* rdx[C,N,H,W] = wᵀ ⋆ rdy + vwᵀ ⋆ dy (skipped when rdx is NULL);
 * rdw[F,C,k,k] = rdy ⊗ x + dy ⊗ rx (rx NULL: zero);  rdb[F] = Σ rdy (skipped when rdb is
 * NULL).  dy, rdy [F,N,Ho,Wo]. */
void mt_conv_rbackward(float *rdx, float *rdw, float *rdb, const float *dy, const float *rdy, const float *x,
                       const float *rx, const float *w, const float *vw, int N, const mt_conv_geom *g,
                       float *scratch);

/* Direct loops over every output and tap straight from the definition above (the
 * transposed convolution by solving oh·stride = h + pad − kh), no im2col, no chunks, no
 * fast path, no scratch: the oracle. Same contracts. */
void mt_conv_forward_ref(float *y, const float *x, const float *w, const float *b, int N, const mt_conv_geom *g);
void mt_conv_backward_ref(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                          int N, const mt_conv_geom *g);
void mt_conv_rforward_ref(float *ry, const float *x, const float *rx, const float *w, const float *vw,
                          const float *vb, int N, const mt_conv_geom *g);
void mt_conv_rbackward_ref(float *rdx, float *rdw, float *rdb, const float *dy, const float *rdy,
                           const float *x, const float *rx, const float *w, const float *vw, int N,
                           const mt_conv_geom *g);

/* ---- batchnorm with batch statistics (training mode, as MAML uses it) ------------------
 * Per channel c over its M = N·H·W values:
 *   μ = mean x,  σ² = mean (x − μ)² (biased),  s = 1/sqrt(σ² + 1e-5),  x̂ = (x − μ)·s,
 *   y = γ·x̂ + β.
 * x, y, dx, dy and their R-values are [C,M]; γ, β and their gradients and directions [C].
 * stats[2C] holds μ (first C) then s (next C), as float; every later pass uses exactly
 * these, so forward and backward agree on the function they differentiate. Sums are
 * accumulated in double. */

#define MT_BN_EPS 1e-5

/* y[C,M], stats[2C] = (μ, s) of x[C,M]. */
void mt_bn_forward(float *y, float *stats, const float *x, const float *gamma, const float *beta, int C, int M);

/* dx = γ·s·(dy − mean dy − x̂·mean(dy·x̂)) (skipped when dx is NULL);
 * dγ = Σ dy·x̂, dβ = Σ dy (both skipped when dgamma is NULL). */
void mt_bn_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x, const float *stats,
                    const float *gamma, int C, int M);

/* rstats[2C] = (Rμ, Rs):  Rμ = mean rx,  Rs = −s³·mean((x − μ)(rx − Rμ));
 * ry = vγ·x̂ + γ·Rx̂ + vβ with Rx̂ = (rx − Rμ)·s + (x − μ)·Rs.
 * rx NULL: zero (then Rμ = Rs = 0); vbeta NULL: zero. */
void mt_bn_rforward(float *ry, float *rstats, const float *x, const float *rx, const float *stats,
                    const float *gamma, const float *vgamma, const float *vbeta, int C, int M);

/* The R-operator of mt_bn_backward, with dy the backward's input and rstats from
 * mt_bn_rforward. Writing A = mean dy, B = mean(dy·x̂), RA = mean rdy,
 * RB = mean(rdy·x̂ + dy·Rx̂):
 *   rdx = (vγ·s + γ·Rs)·(dy − A − x̂·B) + γ·s·(rdy − RA − Rx̂·B − x̂·RB)   (skipped if NULL)
 *   rdγ = M·RB,  rdβ = M·RA.   rx NULL: zero (rstats must then be zero too). */
void mt_bn_rbackward(float *rdx, float *rdgamma, float *rdbeta, const float *dy, const float *rdy,
                     const float *x, const float *rx, const float *stats, const float *rstats,
                     const float *gamma, const float *vgamma, int C, int M);

/* Reference twins in double throughout, by the textbook chain rule through μ, σ², s and x̂
 * (a different derivation from the fast passes' closed forms). Same contracts. */
void mt_bn_forward_ref(float *y, float *stats, const float *x, const float *gamma, const float *beta, int C,
                       int M);
void mt_bn_backward_ref(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                        const float *stats, const float *gamma, int C, int M);
void mt_bn_rforward_ref(float *ry, float *rstats, const float *x, const float *rx, const float *stats,
                        const float *gamma, const float *vgamma, const float *vbeta, int C, int M);
void mt_bn_rbackward_ref(float *rdx, float *rdgamma, float *rdbeta, const float *dy, const float *rdy,
                         const float *x, const float *rx, const float *stats, const float *rstats,
                         const float *gamma, const float *vgamma, int C, int M);

/* ---- max-pool 2×2, stride 2, floor ---------------------------------------------------
 * P = C·N planes of H×W → H/2 × W/2 (an odd last row or column is dropped, as PyTorch's
 * default). argmax[P, H/2, W/2] (int32) holds the index h·W + w within its input plane of
 * the chosen input: the first maximum in row-major window order on ties. The function is
 * piecewise linear, so the R-passes are the backward and forward maps along argmax. */

/* y[P,H/2,W/2], argmax[P,H/2,W/2] of x[P,H,W] */
void mt_maxpool_forward(float *y, int32_t *argmax, const float *x, int P, int H, int W);
/* dx[P,H,W] zeroed, then dy[P,H/2,W/2] scattered to the argmax positions */
void mt_maxpool_backward(float *dx, const float *dy, const int32_t *argmax, int P, int H, int W);
/* ry[P,H/2,W/2] = rx[P,H,W] gathered at argmax */
void mt_maxpool_rforward(float *ry, const float *rx, const int32_t *argmax, int P, int H, int W);
/* rdx[P,H,W] zeroed, then rdy scattered (the same map as mt_maxpool_backward) */
void mt_maxpool_rbackward(float *rdx, const float *rdy, const int32_t *argmax, int P, int H, int W);

/* A ReLU fused into the max-pool after it (the pool of relu(x) is the relu of the pool of x,
 * windows choosing the same first maximum wherever it is positive): the four passes of
 * pool ∘ relu in one sweep, on x before the relu, with the same results as
 * mt_relu_* followed by mt_maxpool_* (test_conv compares them). y is the forward's output:
 * where it is 0 the window's maximum was not positive and its gradient is 0. */
void mt_maxpool_relu_forward(float *y, int32_t *argmax, const float *x, int P, int H, int W);
/* dx[P,H,W] = dy at argmax where y > 0, 0 elsewhere (the R-backward: the same map on rdy) */
void mt_maxpool_relu_backward(float *dx, const float *dy, const float *y, const int32_t *argmax, int P, int H, int W);
/* ry = rx at argmax where y > 0, else 0 */
void mt_maxpool_relu_rforward(float *ry, const float *rx, const float *y, const int32_t *argmax, int P, int H, int W);

/* ---- batchnorm → ReLU → max-pool, fused ----------------------------------------------
 * Conv4's block tail in one sweep per channel: x[C,N,H,W] (M = N·H·W values per channel) →
 * y[C,N,H/2,W/2]. A channel's batchnorm output (and in the backward passes its gradient)
 * lives in buf, M floats (2M for the R-backward pass), while the pool reads it (or the
 * batchnorm pass reads what the pool scattered): it stays in cache instead of making a round
 * trip through a [C,M] array that no one else reads. Each function is mt_bn_* followed by
 * mt_maxpool_relu_* (or the reverse, backward), channel by channel, with their arguments
 * (stats, argmax and the rest as there; argmax indices are within a channel's own planes),
 * and gives the same bits (test_conv compares them). */

/* y, argmax, stats[2C] = pool(relu(bn(x))) */
void mt_bn_relu_pool_forward(float *y, int32_t *argmax, float *stats, const float *x, const float *gamma,
                             const float *beta, int C, int N, int H, int W, float *buf);
/* dx[C,M] (skipped when NULL), dγ, dβ (skipped when dgamma is NULL) from dy[C,N,H/2,W/2] and
 * the forward's y and argmax */
void mt_bn_relu_pool_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *y,
                              const int32_t *argmax, const float *x, const float *stats, const float *gamma, int C,
                              int N, int H, int W, float *buf);
/* ry[C,N,H/2,W/2], rstats[2C] (rx NULL: zero; vbeta NULL: zero) */
void mt_bn_relu_pool_rforward(float *ry, float *rstats, const float *x, const float *rx, const float *y,
                              const int32_t *argmax, const float *stats, const float *gamma, const float *vgamma,
                              const float *vbeta, int C, int N, int H, int W, float *buf);
/* rdx[C,M] (skipped when NULL), rdγ, rdβ from dy, rdy [C,N,H/2,W/2]; buf holds 2M floats */
void mt_bn_relu_pool_rbackward(float *rdx, float *rdgamma, float *rdbeta, const float *dy, const float *rdy,
                               const float *y, const int32_t *argmax, const float *x, const float *rx,
                               const float *stats, const float *rstats, const float *gamma, const float *vgamma,
                               int C, int N, int H, int W, float *buf);

/* ---- flatten: CNHW [C,N,HW] → rows [N, C·HW] ------------------------------------------
 * y[n, c·HW + i] = x[c, n, i]: each image's row in PyTorch's (c,h,w) order. backward is the
 * inverse permutation. Both are linear, so the R-passes are the same functions
 * (rforward = mt_flatten_forward on rx, rbackward = mt_flatten_backward on rdy). */

void mt_flatten_forward(float *y, const float *x, int N, int C, int HW);
void mt_flatten_backward(float *dx, const float *dy, int N, int C, int HW);

/* ---- global average pool: CNHW [C,N,HW] → rows [N, C] ---------------------------------
 * y[n, c] = (1/HW) Σ_i x[c, n, i], summed in double and rounded once; backward spreads
 * dx[c, n, i] = dy[n, c] / HW over every position. Both are linear, so the R-passes are
 * the same functions (rforward = mt_gap_forward on rx, rbackward = mt_gap_backward on rdy). */

void mt_gap_forward(float *y, const float *x, int N, int C, int HW);
void mt_gap_backward(float *dx, const float *dy, int N, int C, int HW);

/* ---- softmax cross-entropy over K classes ---------------------------------------------
 * z[N,K] logits; labels[N] are class indices stored as floats (exactly 0 … K−1; the
 * samplers guarantee it, an assert checks it). probs[N,K] = softmax(z), written by forward
 * and read by the other passes. The softmax subtracts each row's maximum first, so any
 * finite logits are safe. */

/* Returns L = mean_n (logsumexp(z_n) − z_n[label_n]) (summed in double); writes probs. */
float mt_xent_forward(float *probs, const float *z, const float *labels, int N, int K);
/* dz[N,K] = (p − onehot(label)) / N */
void mt_xent_backward(float *dz, const float *probs, const float *labels, int N, int K);
/* rdz[N,K] = (p⊙rz − p·(p·rz)) / N, row by row (rz[N,K] from the R-forward of the logits) */
void mt_xent_rbackward(float *rdz, const float *probs, const float *rz, int N, int K);
/* Number of rows whose argmax (the first on ties) equals the label. */
int mt_xent_correct(const float *z, const float *labels, int N, int K);

/* Reference twins: softmax and log-sum-exp in double; rbackward as the product with the
 * explicit softmax Jacobian, Σ_j (δ_kj·p_k − p_k·p_j)·rz_j / N. */
float mt_xent_forward_ref(float *probs, const float *z, const float *labels, int N, int K);
void mt_xent_backward_ref(float *dz, const float *probs, const float *labels, int N, int K);
void mt_xent_rbackward_ref(float *rdz, const float *probs, const float *rz, int N, int K);

#endif
