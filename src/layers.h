/*
 * layers.h — the layers and losses of metatrain, each with four passes side by side:
 *
 *   forward    y = f(x; w)
 *   backward   vector-Jacobian product: given dL/dy, produce dL/dx and dL/dw
 *   rforward   Pearlmutter's R-operator on the forward pass: the directional derivative
 *              R(y) = d/dε f(x + ε·R(x); w + ε·v) at ε = 0, for a parameter direction v
 *   rbackward  the R-operator on the backward pass: R(dL/dx) and R(dL/dw)
 *
 * With all four, a Hessian-vector product H·v of any loss built from these layers is one
 * forward + backward + rforward + rbackward, i.e. about two gradients, and exact (no finite
 * differences). R(dL/dw) summed over the layers *is* H·v.
 *
 * The linear layer's fast kernels (CBLAS) have plain-loop reference twins, *_ref, with the
 * same contract; the references are the tests' oracle and are never called in training.
 * relu, leaky-relu and mse are plain elementwise loops already. The image layers (conv,
 * batchnorm, pools, flatten) and the cross-entropy loss are in conv.h.
 *
 * Dimension letters used in shape comments:
 *   N  rows in the batch (support or query points of one task)
 *   I  input features, O output features (of a linear layer)
 *   D  features of an elementwise layer or loss (elementwise layers take n = N·D)
 * All arrays are row-major float32. Output pointers never alias inputs. A NULL gradient
 * output means "not needed" (e.g. dL/dx of the first layer); a NULL R-input means zero.
 */
#ifndef MT_LAYERS_H
#define MT_LAYERS_H

/* ---- linear: y[N,O] = x[N,I] · w[O,I]ᵀ + b[O] ---------------------------------------- */

void mt_linear_forward(float *y, const float *x, const float *w, const float *b, int N, int I, int O);

/* dx[N,I] = dy·w (skipped when dx is NULL); dw[O,I] = dyᵀ·x; db[O] = Σ_n dy[n,:]
 * (dw and db skipped when dw is NULL) */
void mt_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int N, int I, int O);

/* ry[N,O] = rx·wᵀ + x·vwᵀ + vb   (rx may be NULL: the input does not depend on θ) */
void mt_linear_rforward(float *ry, const float *x, const float *rx, const float *w, const float *vw,
                        const float *vb, int N, int I, int O);

/* rdx[N,I] = rdy·w + dy·vw (skipped when rdx is NULL);
 * rdw[O,I] = rdyᵀ·x + dyᵀ·rx;  rdb[O] = Σ_n rdy[n,:] */
void mt_linear_rbackward(float *rdx, float *rdw, float *rdb, const float *dy, const float *rdy,
                         const float *x, const float *rx, const float *w, const float *vw, int N,
                         int I, int O);

void mt_linear_forward_ref(float *y, const float *x, const float *w, const float *b, int N, int I,
                           int O);
void mt_linear_backward_ref(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, int N, int I, int O);
void mt_linear_rforward_ref(float *ry, const float *x, const float *rx, const float *w,
                            const float *vw, const float *vb, int N, int I, int O);
void mt_linear_rbackward_ref(float *rdx, float *rdw, float *rdb, const float *dy, const float *rdy,
                             const float *x, const float *rx, const float *w, const float *vw,
                             int N, int I, int O);

/* ---- relu: y = max(x, 0), elementwise over n = N·D values ------------------------------
 * Its second derivative is zero almost everywhere, so the R-passes only mask by x > 0:
 * rforward is ry = rx·[x>0] and rbackward is rdx = rdy·[x>0].
 *
 * In place. forward may be called with y == x and rforward with ry == rx (the exception to
 * "outputs never alias inputs"), and every pass may be given the output y in place of x:
 * y > 0 exactly where x > 0, so the masks are the same. The model runs a ReLU in place over
 * an input no other op reads, saving that activation (model.c). The same holds for leaky
 * ReLU with slope >= 0. */

void mt_relu_forward(float *y, const float *x, int n);
void mt_relu_backward(float *dx, const float *dy, const float *x, int n);
void mt_relu_rforward(float *ry, const float *rx, const float *x, int n);
void mt_relu_rbackward(float *rdx, const float *rdy, const float *x, int n);

/* ---- leaky-relu: y = x for x > 0, slope·x otherwise, elementwise over n values ---------
 * As PyTorch's LeakyReLU(negative_slope): the derivative is 1 where x > 0 and slope
 * elsewhere (x = 0 included). Piecewise linear, so the R-passes again only scale by the
 * mask of x: rforward is ry = rx·(x > 0 ? 1 : slope), rbackward rdx = rdy·(the same).
 * slope 0 is relu. */

void mt_leaky_relu_forward(float *y, const float *x, int n, float slope);
void mt_leaky_relu_backward(float *dx, const float *dy, const float *x, int n, float slope);
void mt_leaky_relu_rforward(float *ry, const float *rx, const float *x, int n, float slope);
void mt_leaky_relu_rbackward(float *rdx, const float *rdy, const float *x, int n, float slope);

/* ---- mse loss: L = 1/(N·D) Σ (p − t)² ------------------------------------------------- */

/* Returns L for predictions p[N,D] and targets t[N,D]. Accumulates in double. */
float mt_mse_forward(const float *p, const float *t, int N, int D);
/* dp[N,D] = 2 (p − t) / (N·D) */
void mt_mse_backward(float *dp, const float *p, const float *t, int N, int D);
/* R(L) = Σ dp·rp (the directional derivative of the loss) */
float mt_mse_rforward(const float *dp, const float *rp, int N, int D);
/* rdp[N,D] = 2 rp / (N·D) */
void mt_mse_rbackward(float *rdp, const float *rp, int N, int D);

#endif
