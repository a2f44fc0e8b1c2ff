/* layers.c — forward, backward and R-operator passes of every layer (see layers.h).
 * Fast kernels call CBLAS sgemm; the *_ref twins are straight loops kept as the oracle. */
#include "layers.h"

#include <cblas.h>
#include <string.h>

#undef I /* OpenBLAS's cblas.h pulls in <complex.h>; here I is a dimension, not the imaginary unit */

/* ---- linear, fast ------------------------------------------------------------------- */

/* out[N,O] = broadcast of b[O] over the rows (b NULL: zeros) */
static void fill_rows(float *out, const float *b, int N, int O)
{
    if (!b) {
        memset(out, 0, sizeof(float) * (size_t)N * O);
        return;
    }
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * O, b, sizeof(float) * O);
}

/* db[O] = Σ_n dy[n,:] */
static void column_sums(float *db, const float *dy, int N, int O)
{
    memset(db, 0, sizeof(float) * O);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++) db[o] += dy[(size_t)n * O + o];
}

void mt_linear_forward(float *y, const float *x, const float *w, const float *b, int N, int I, int O)
{
    fill_rows(y, b, N, O);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, O, I, 1.0f, x, I, w, I, 1.0f, y, O);
}

void mt_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int N, int I, int O)
{
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, I, O, 1.0f, dy, O, w, I, 0.0f, dx, I);
    if (!dw) return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, I, N, 1.0f, dy, O, x, I, 0.0f, dw, I);
    column_sums(db, dy, N, O);
}

void mt_linear_rforward(float *ry, const float *x, const float *rx, const float *w, const float *vw,
                        const float *vb, int N, int I, int O)
{
    fill_rows(ry, vb, N, O);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, O, I, 1.0f, x, I, vw, I, 1.0f, ry, O);
    if (rx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, O, I, 1.0f, rx, I, w, I, 1.0f, ry, O);
}

void mt_linear_rbackward(float *rdx, float *rdw, float *rdb, const float *dy, const float *rdy,
                         const float *x, const float *rx, const float *w, const float *vw, int N,
                         int I, int O)
{
    if (rdx) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, I, O, 1.0f, rdy, O, w, I, 0.0f, rdx, I);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, I, O, 1.0f, dy, O, vw, I, 1.0f, rdx, I);
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, I, N, 1.0f, rdy, O, x, I, 0.0f, rdw, I);
    if (rx)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, I, N, 1.0f, dy, O, rx, I, 1.0f, rdw, I);
    column_sums(rdb, rdy, N, O);
}

/* ---- linear, reference -------------------------------------------------------------- */

void mt_linear_forward_ref(float *y, const float *x, const float *w, const float *b, int N, int I,
                           int O)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++) {
            float s = b ? b[o] : 0.0f;
            for (int i = 0; i < I; i++) s += x[n * I + i] * w[o * I + i];
            y[n * O + o] = s;
        }
}

void mt_linear_backward_ref(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, int N, int I, int O)
{
    if (dx)
        for (int n = 0; n < N; n++)
            for (int i = 0; i < I; i++) {
                float s = 0.0f;
                for (int o = 0; o < O; o++) s += dy[n * O + o] * w[o * I + i];
                dx[n * I + i] = s;
            }
    if (!dw) return;
    for (int o = 0; o < O; o++) {
        for (int i = 0; i < I; i++) {
            float s = 0.0f;
            for (int n = 0; n < N; n++) s += dy[n * O + o] * x[n * I + i];
            dw[o * I + i] = s;
        }
        float s = 0.0f;
        for (int n = 0; n < N; n++) s += dy[n * O + o];
        db[o] = s;
    }
}

void mt_linear_rforward_ref(float *ry, const float *x, const float *rx, const float *w,
                            const float *vw, const float *vb, int N, int I, int O)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++) {
            float s = vb ? vb[o] : 0.0f;
            for (int i = 0; i < I; i++) {
                s += x[n * I + i] * vw[o * I + i];
                if (rx) s += rx[n * I + i] * w[o * I + i];
            }
            ry[n * O + o] = s;
        }
}

void mt_linear_rbackward_ref(float *rdx, float *rdw, float *rdb, const float *dy, const float *rdy,
                             const float *x, const float *rx, const float *w, const float *vw,
                             int N, int I, int O)
{
    if (rdx)
        for (int n = 0; n < N; n++)
            for (int i = 0; i < I; i++) {
                float s = 0.0f;
                for (int o = 0; o < O; o++) s += rdy[n * O + o] * w[o * I + i] + dy[n * O + o] * vw[o * I + i];
                rdx[n * I + i] = s;
            }
    for (int o = 0; o < O; o++) {
        for (int i = 0; i < I; i++) {
            float s = 0.0f;
            for (int n = 0; n < N; n++) {
                s += rdy[n * O + o] * x[n * I + i];
                if (rx) s += dy[n * O + o] * rx[n * I + i];
            }
            rdw[o * I + i] = s;
        }
        float s = 0.0f;
        for (int n = 0; n < N; n++) s += rdy[n * O + o];
        rdb[o] = s;
    }
}

/* ---- relu --------------------------------------------------------------------------- */

void mt_relu_forward(float *y, const float *x, int n)
{
    for (int i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void mt_relu_backward(float *dx, const float *dy, const float *x, int n)
{
    for (int i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

void mt_relu_rforward(float *ry, const float *rx, const float *x, int n)
{
    for (int i = 0; i < n; i++) ry[i] = x[i] > 0.0f ? rx[i] : 0.0f;
}

void mt_relu_rbackward(float *rdx, const float *rdy, const float *x, int n)
{
    for (int i = 0; i < n; i++) rdx[i] = x[i] > 0.0f ? rdy[i] : 0.0f;
}

/* ---- mse ---------------------------------------------------------------------------- */

float mt_mse_forward(const float *p, const float *t, int N, int D)
{
    double s = 0.0;
    for (int i = 0; i < N * D; i++) {
        double d = (double)p[i] - t[i];
        s += d * d;
    }
    return (float)(s / ((double)N * D));
}

void mt_mse_backward(float *dp, const float *p, const float *t, int N, int D)
{
    float scale = 2.0f / (float)(N * D);
    for (int i = 0; i < N * D; i++) dp[i] = scale * (p[i] - t[i]);
}

float mt_mse_rforward(const float *dp, const float *rp, int N, int D)
{
    double s = 0.0;
    for (int i = 0; i < N * D; i++) s += (double)dp[i] * rp[i];
    return (float)s;
}

void mt_mse_rbackward(float *rdp, const float *rp, int N, int D)
{
    float scale = 2.0f / (float)(N * D);
    for (int i = 0; i < N * D; i++) rdp[i] = scale * rp[i];
}
