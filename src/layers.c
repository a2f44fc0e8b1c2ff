/* layers.c — forward, backward and R-operator passes of every layer (see layers.h).
 * Fast kernels: small products in cache-friendly loops, large ones through CBLAS sgemm;
 * the *_ref twins are straight triple loops kept as the oracle. */
#include "layers.h"

#include <cblas.h>
#include <string.h>

#include "common.h"

#undef I /* OpenBLAS's cblas.h pulls in <complex.h>; here I is a dimension, not the imaginary unit */

/* ---- linear, fast ------------------------------------------------------------------- */

/* Below this many multiply-adds a product goes to the small kernels below instead of
 * sgemm: at MLP sizes (10 × 40 × 40) OpenBLAS's per-call overhead (locking, buffer
 * allocation, packing) costs more than the arithmetic. */
#define SMALL_GEMM_MACS 65536

static int is_small(int M, int N, int K) { return (long)M * N * K < SMALL_GEMM_MACS; }

/* The small kernels are compiled twice, for baseline x86-64 (SSE2) and for AVX2, and the
 * loader picks per CPU. Both do the same operations in the same order (no FMA contraction:
 * -std=c11 implies -ffp-contract=off), so the results are bit-identical across the two. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MT_CLONES
#endif

/* Eight floats as one value: GCC's vector extension, lowered to two SSE registers on
 * baseline x86-64 and one AVX register in the AVX2 clone.
 *
 * No function takes or returns a v8f by value. target_clones clones only the functions it
 * marks; a helper they call is compiled once, for the baseline target, and where it is not
 * inlined (at -O0) an AVX2 clone calling it would pass or expect a 32-byte vector in ymm0
 * while the helper uses memory — the mismatch -Wpsabi warns of, which crashed the Debug
 * build. Vectors therefore live only inside a function, loaded and stored in place through
 * v8f_u: the same vector with the alignment of a float (loads and stores are unaligned) and
 * allowed to alias the float arrays it reads. */
typedef float v8f __attribute__((vector_size(32)));
typedef float v8f_u __attribute__((vector_size(32), aligned(4), may_alias));

#define LOAD8(p) ((v8f) * (const v8f_u *)(p))
#define STORE8(p, v) (*(v8f_u *)(p) = (v))

/* Register block of the axpy-style kernels: 16 output columns stay in registers while k
 * runs, instead of a load and a store of the output per k. */
#define BLOCK 16

/* c[0:w] (+)= Σ_k s[k·s_stride] · b[k·ldb : k·ldb + w]  for one output row segment, k
 * ascending (the same summation order whatever w, so blocking does not change results). */
static inline void axpy_block(float *restrict c, const float *restrict s, size_t s_stride, const float *restrict b,
                              size_t ldb, int K, int w, float beta)
{
    if (w == 16 || w == 8) {
        const v8f zero = {0};
        v8f acc0 = beta != 0.0f ? LOAD8(c) : zero;
        v8f acc1 = beta != 0.0f && w == 16 ? LOAD8(c + 8) : zero;
        for (int k = 0; k < K; k++) {
            const float sk = s[(size_t)k * s_stride], *bk = b + (size_t)k * ldb;
            acc0 += sk * LOAD8(bk);
            if (w == 16) acc1 += sk * LOAD8(bk + 8);
        }
        STORE8(c, acc0);
        if (w == 16) STORE8(c + 8, acc1);
        return;
    }
    float acc[BLOCK];
    for (int j = 0; j < w; j++) acc[j] = beta != 0.0f ? c[j] : 0.0f;
    for (int k = 0; k < K; k++) {
        const float sk = s[(size_t)k * s_stride], *bk = b + (size_t)k * ldb;
        for (int j = 0; j < w; j++) acc[j] += sk * bk[j];
    }
    for (int j = 0; j < w; j++) c[j] = acc[j];
}

static inline float reduce8(const v8f *v)
{
    const v8f q = *v;
    return ((q[0] + q[1]) + (q[2] + q[3])) + ((q[4] + q[5]) + (q[6] + q[7]));
}

/* Σ_i a[i]·b[i] with eight interleaved partial sums (one vector; the reduction order is
 * fixed, so results are reproducible). */
static inline float dot(const float *a, const float *b, int n)
{
    v8f q = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8) q += LOAD8(a + i) * LOAD8(b + i);
    float s = reduce8(&q);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* c[M,N] (+)= a[M,K] · b[N,K]ᵀ   (beta 0: overwrite, 1: accumulate). Four outputs of a row
 * at a time share the loads of a; each is summed exactly as dot() sums it. */
MT_CLONES static void gemm_nt(int M, int N, int K, const float *restrict a, const float *restrict b, float beta,
                              float *restrict c)
{
    mt_flops_add(2.0 * M * N * K);
    if (!is_small(M, N, K)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, beta, c, N);
        return;
    }
    const int K8 = K & ~7;
    for (int m = 0; m < M; m++) {
        const float *am = a + (size_t)m * K;
        float *cm = c + (size_t)m * N;
        int n = 0;
        for (; n + 4 <= N; n += 4) {
            const float *b0 = b + (size_t)n * K, *b1 = b0 + K, *b2 = b1 + K, *b3 = b2 + K;
            v8f q0 = {0}, q1 = {0}, q2 = {0}, q3 = {0};
            for (int i = 0; i < K8; i += 8) {
                const v8f x = LOAD8(am + i);
                q0 += x * LOAD8(b0 + i);
                q1 += x * LOAD8(b1 + i);
                q2 += x * LOAD8(b2 + i);
                q3 += x * LOAD8(b3 + i);
            }
            float d[4] = {reduce8(&q0), reduce8(&q1), reduce8(&q2), reduce8(&q3)};
            for (int i = K8; i < K; i++) {
                d[0] += am[i] * b0[i];
                d[1] += am[i] * b1[i];
                d[2] += am[i] * b2[i];
                d[3] += am[i] * b3[i];
            }
            for (int r = 0; r < 4; r++) cm[n + r] = beta != 0.0f ? cm[n + r] + d[r] : d[r];
        }
        for (; n < N; n++) {
            float d = dot(am, b + (size_t)n * K, K);
            cm[n] = beta != 0.0f ? cm[n] + d : d;
        }
    }
}

/* c[M,N] (+)= a[M,K] · b[K,N] */
MT_CLONES static void gemm_nn(int M, int N, int K, const float *restrict a, const float *restrict b, float beta,
                    float *restrict c)
{
    mt_flops_add(2.0 * M * N * K);
    if (!is_small(M, N, K)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, beta, c, N);
        return;
    }
    for (int m = 0; m < M; m++)
        for (int n0 = 0; n0 < N; n0 += BLOCK)
            axpy_block(c + (size_t)m * N + n0, a + (size_t)m * K, 1, b + n0, (size_t)N, K,
                       N - n0 < BLOCK ? N - n0 : BLOCK, beta);
}

/* c[M,N] (+)= a[K,M]ᵀ · b[K,N] */
MT_CLONES static void gemm_tn(int M, int N, int K, const float *restrict a, const float *restrict b, float beta,
                    float *restrict c)
{
    mt_flops_add(2.0 * M * N * K);
    if (!is_small(M, N, K)) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, K, 1.0f, a, M, b, N, beta, c, N);
        return;
    }
    for (int m = 0; m < M; m++)
        for (int n0 = 0; n0 < N; n0 += BLOCK)
            axpy_block(c + (size_t)m * N + n0, a + m, (size_t)M, b + n0, (size_t)N, K,
                       N - n0 < BLOCK ? N - n0 : BLOCK, beta);
}

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
    gemm_nt(N, O, I, x, w, 1.0f, y);
}

void mt_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int N, int I, int O)
{
    if (dx) gemm_nn(N, I, O, dy, w, 0.0f, dx);
    if (!dw) return;
    gemm_tn(O, I, N, dy, x, 0.0f, dw);
    column_sums(db, dy, N, O);
}

void mt_linear_rforward(float *ry, const float *x, const float *rx, const float *w, const float *vw,
                        const float *vb, int N, int I, int O)
{
    fill_rows(ry, vb, N, O);
    gemm_nt(N, O, I, x, vw, 1.0f, ry);
    if (rx) gemm_nt(N, O, I, rx, w, 1.0f, ry);
}

void mt_linear_rbackward(float *rdx, float *rdw, float *rdb, const float *dy, const float *rdy,
                         const float *x, const float *rx, const float *w, const float *vw, int N,
                         int I, int O)
{
    if (rdx) {
        gemm_nn(N, I, O, rdy, w, 0.0f, rdx);
        gemm_nn(N, I, O, dy, vw, 1.0f, rdx);
    }
    gemm_tn(O, I, N, rdy, x, 0.0f, rdw);
    if (rx) gemm_tn(O, I, N, dy, rx, 1.0f, rdw);
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
/* The forward and R-forward loops read element i before writing element i, so they may run
 * in place (no restrict between y and x, ry and rx: layers.h). */

void mt_relu_forward(float *y, const float *x, int n)
{
    for (int i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void mt_relu_backward(float *restrict dx, const float *restrict dy, const float *restrict x, int n)
{
    for (int i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

void mt_relu_rforward(float *ry, const float *rx, const float *x, int n)
{
    for (int i = 0; i < n; i++) ry[i] = x[i] > 0.0f ? rx[i] : 0.0f;
}

void mt_relu_rbackward(float *restrict rdx, const float *restrict rdy, const float *restrict x, int n)
{
    for (int i = 0; i < n; i++) rdx[i] = x[i] > 0.0f ? rdy[i] : 0.0f;
}

/* ---- leaky-relu --------------------------------------------------------------------- */

void mt_leaky_relu_forward(float *y, const float *x, int n, float slope)
{
    for (int i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : slope * x[i];
}

void mt_leaky_relu_backward(float *restrict dx, const float *restrict dy, const float *restrict x, int n,
                            float slope)
{
    for (int i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : slope * dy[i];
}

void mt_leaky_relu_rforward(float *ry, const float *rx, const float *x, int n,
                            float slope)
{
    for (int i = 0; i < n; i++) ry[i] = x[i] > 0.0f ? rx[i] : slope * rx[i];
}

void mt_leaky_relu_rbackward(float *restrict rdx, const float *restrict rdy, const float *restrict x, int n,
                             float slope)
{
    for (int i = 0; i < n; i++) rdx[i] = x[i] > 0.0f ? rdy[i] : slope * rdy[i];
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
