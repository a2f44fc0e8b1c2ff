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

/* The small kernels are compiled twice (MT_CLONES, common.h), for baseline x86-64 (SSE2)
 * and for AVX2, and the loader picks per CPU. Both do the same operations in the same order
 * (no FMA contraction: -std=c11 implies -ffp-contract=off), so the results are bit-identical
 * across the two. */

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

/* R rows of c at once (R = 4 or 2), W = 16 or 8 columns: c[r, 0:W] (+)= Σ_k a[r·a_rs +
 * k·a_ks] · b[k·ldb : k·ldb + W] for r < R. The rows' chains are independent, so up to eight
 * accumulators are in flight instead of two: a chain of single-row adds waits on the add
 * latency at every k. Each output is still summed k ascending, as axpy_block sums it, so the
 * blocking leaves every bit as it was. */
__attribute__((always_inline)) static inline void axpy_rows(float *restrict c, size_t ldc, const float *restrict a,
                                                            size_t a_rs, size_t a_ks, const float *restrict b,
                                                            size_t ldb, int K, int R, int W, float beta)
{
    const v8f zero = {0};
    v8f acc[4][2];
    for (int r = 0; r < R; r++)
        for (int h = 0; h < W / 8; h++) acc[r][h] = beta != 0.0f ? LOAD8(c + r * ldc + 8 * h) : zero;
    for (int k = 0; k < K; k++) {
        const float *bk = b + (size_t)k * ldb, *ak = a + (size_t)k * a_ks;
        const v8f b0 = LOAD8(bk), b1 = W == 16 ? LOAD8(bk + 8) : zero;
        for (int r = 0; r < R; r++) {
            const float s = ak[r * a_rs];
            acc[r][0] += s * b0;
            if (W == 16) acc[r][1] += s * b1;
        }
    }
    for (int r = 0; r < R; r++)
        for (int h = 0; h < W / 8; h++) STORE8(c + r * ldc + 8 * h, acc[r][h]);
}

/* Rows m0 … m0+R−1 of gemm_small_rows, R = 4 or 2. */
__attribute__((always_inline)) static inline void small_rows_block(int m0, int R, int N, int K,
                                                                   const float *restrict a, size_t a_rs,
                                                                   size_t a_ks, const float *restrict b,
                                                                   float beta, float *restrict c)
{
    const float *am = a + (size_t)m0 * a_rs;
    float *cm = c + (size_t)m0 * N;
    int n0 = 0;
    for (; n0 + 16 <= N; n0 += 16) axpy_rows(cm + n0, (size_t)N, am, a_rs, a_ks, b + n0, (size_t)N, K, R, 16, beta);
    for (; n0 + 8 <= N; n0 += 8) axpy_rows(cm + n0, (size_t)N, am, a_rs, a_ks, b + n0, (size_t)N, K, R, 8, beta);
    if (n0 < N)
        for (int r = 0; r < R; r++)
            axpy_block(cm + (size_t)r * N + n0, am + r * a_rs, a_ks, b + n0, (size_t)N, K, N - n0, beta);
}

/* c[M,N] (+)= Σ_k a[m·a_rs + k·a_ks] · b[k,N]: the small products whose b runs along the
 * output row (gemm_nn: a row-major, gemm_tn: a transposed), in blocks of 4 (then 2) rows ×
 * 16 or 8 columns; a last single row and the columns left over go through axpy_block. */
__attribute__((always_inline)) static inline void gemm_small_rows(int M, int N, int K, const float *restrict a,
                                                                  size_t a_rs, size_t a_ks,
                                                                  const float *restrict b, float beta,
                                                                  float *restrict c)
{
    int m = 0;
    for (; m + 4 <= M; m += 4) small_rows_block(m, 4, N, K, a, a_rs, a_ks, b, beta, c);
    for (; m + 2 <= M; m += 2) small_rows_block(m, 2, N, K, a, a_rs, a_ks, b, beta, c);
    for (; m < M; m++)
        for (int n0 = 0; n0 < N; n0 += BLOCK)
            axpy_block(c + (size_t)m * N + n0, a + (size_t)m * a_rs, a_ks, b + n0, (size_t)N, K,
                       N - n0 < BLOCK ? N - n0 : BLOCK, beta);
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

/* Pairwise sums of two vectors, AVX's horizontal add: {p0+p1, p2+p3, q0+q1, q2+q3, p4+p5,
 * p6+p7, q4+q5, q6+q7}. (__builtin_shufflevector: GCC 12 and clang both have it.) */
#define HADD8(p, q)                                                                                \
    (__builtin_shufflevector((p), (q), 0, 2, 8, 10, 4, 6, 12, 14) +                               \
     __builtin_shufflevector((p), (q), 1, 3, 9, 11, 5, 7, 13, 15))

/* reduce8 of eight vectors at once, {reduce8(q[0]), …, reduce8(q[7])}, bit for bit: three
 * rounds of pairwise sums instead of eight horizontal reductions of one vector each (which
 * cost as much as the products of a 40-long dot product). */
__attribute__((always_inline)) static inline void reduce8x8(float *restrict d, const v8f *q)
{
    const v8f lo = HADD8(HADD8(q[0], q[1]), HADD8(q[2], q[3])), hi = HADD8(HADD8(q[4], q[5]), HADD8(q[6], q[7]));
    /* lo = {q0 01+23, q1 …, q2 …, q3 …, q0 45+67, q1 …, q2 …, q3 …}; likewise hi for q4…q7 */
    const v8f sum = __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 8, 9, 10, 11) +
                    __builtin_shufflevector(lo, hi, 4, 5, 6, 7, 12, 13, 14, 15);
    STORE8(d, sum);
}

/* c[M,N] (+)= a[M,K] · b[N,K]ᵀ   (beta 0: overwrite, 1: accumulate). Eight outputs of a row
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
    if (K == 1) { /* an outer product (the MLP's 1-wide input): each output is 0 + a·b, as below */
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                const float d = 0.0f + a[m] * b[n], cn = c[(size_t)m * N + n];
                c[(size_t)m * N + n] = beta != 0.0f ? cn + d : d;
            }
        return;
    }
    int m0 = 0;
    if (N < 8) /* few outputs per row (the MLP's 1-wide head): eight rows at a time instead */
        for (; m0 + 8 <= M; m0 += 8)
            for (int n = 0; n < N; n++) {
                const float *am = a + (size_t)m0 * K, *bn = b + (size_t)n * K;
                v8f q[8] = {{0}};
                for (int i = 0; i < K8; i += 8) {
                    const v8f y = LOAD8(bn + i);
                    for (int r = 0; r < 8; r++) q[r] += LOAD8(am + (size_t)r * K + i) * y;
                }
                float d[8];
                reduce8x8(d, q);
                for (int r = 0; r < 8; r++) {
                    const float *ar = am + (size_t)r * K;
                    for (int i = K8; i < K; i++) d[r] += ar[i] * bn[i];
                    float *cr = c + (size_t)(m0 + r) * N + n;
                    *cr = beta != 0.0f ? *cr + d[r] : d[r];
                }
            }
    for (int m = m0; m < M; m++) {
        const float *am = a + (size_t)m * K;
        float *cm = c + (size_t)m * N;
        int n = 0;
        for (; n + 8 <= N; n += 8) {
            const float *bn = b + (size_t)n * K;
            v8f q[8] = {{0}};
            for (int i = 0; i < K8; i += 8) {
                const v8f x = LOAD8(am + i);
                for (int r = 0; r < 8; r++) q[r] += x * LOAD8(bn + (size_t)r * K + i);
            }
            float d[8];
            reduce8x8(d, q);
            for (int r = 0; K8 < K && r < 8; r++) {
                const float *br = bn + (size_t)r * K;
                for (int i = K8; i < K; i++) d[r] += am[i] * br[i];
            }
            STORE8(cm + n, beta != 0.0f ? LOAD8(cm + n) + LOAD8(d) : LOAD8(d));
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
    gemm_small_rows(M, N, K, a, (size_t)K, 1, b, beta, c);
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
    if (N == 1) /* a column (the MLP's 1-wide input): summed as the row cᵀ[1,M] = bᵀ · a, same order */
        gemm_small_rows(1, M, K, b, 0, 1, a, beta, c);
    else
        gemm_small_rows(M, N, K, a, 1, (size_t)M, b, beta, c);
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
 * in place (no restrict between y and x, ry and rx: layers.h). Each loop loads both of its
 * operands before the select: a load under the condition keeps GCC from vectorising, and
 * the branch it leaves is mispredicted on every other element (ReLU's sign is a coin toss). */

void mt_relu_forward(float *y, const float *x, int n)
{
    for (int i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void mt_relu_backward(float *restrict dx, const float *restrict dy, const float *restrict x, int n)
{
    for (int i = 0; i < n; i++) {
        const float d = dy[i];
        dx[i] = x[i] > 0.0f ? d : 0.0f;
    }
}

void mt_relu_rforward(float *ry, const float *rx, const float *x, int n)
{
    for (int i = 0; i < n; i++) {
        const float r = rx[i];
        ry[i] = x[i] > 0.0f ? r : 0.0f;
    }
}

void mt_relu_rbackward(float *restrict rdx, const float *restrict rdy, const float *restrict x, int n)
{
    for (int i = 0; i < n; i++) {
        const float r = rdy[i];
        rdx[i] = x[i] > 0.0f ? r : 0.0f;
    }
}

/* ---- leaky-relu --------------------------------------------------------------------- */

void mt_leaky_relu_forward(float *y, const float *x, int n, float slope)
{
    for (int i = 0; i < n; i++) {
        const float v = x[i];
        y[i] = v > 0.0f ? v : slope * v;
    }
}

void mt_leaky_relu_backward(float *restrict dx, const float *restrict dy, const float *restrict x, int n,
                            float slope)
{
    for (int i = 0; i < n; i++) {
        const float d = dy[i];
        dx[i] = x[i] > 0.0f ? d : slope * d;
    }
}

void mt_leaky_relu_rforward(float *ry, const float *rx, const float *x, int n,
                            float slope)
{
    for (int i = 0; i < n; i++) {
        const float r = rx[i];
        ry[i] = x[i] > 0.0f ? r : slope * r;
    }
}

void mt_leaky_relu_rbackward(float *restrict rdx, const float *restrict rdy, const float *restrict x, int n,
                             float slope)
{
    for (int i = 0; i < n; i++) {
        const float r = rdy[i];
        rdx[i] = x[i] > 0.0f ? r : slope * r;
    }
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
