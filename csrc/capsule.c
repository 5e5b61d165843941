/* capsule.c: capsule-network kernels (Sabour, Frosst and Hinton 2017), float32 and float64.
 *
 * Kernels (each as _f32 and _f64; shapes and rules in fastconv/backends/c/capsule.py):
 *   fc_capsule_predict           prediction vectors: uhat[n,i,j,:] = W[i,j] @ u[n,i,:]
 *   fc_capsule_predict_backward  gu[n,i,:] = sum_j W[i,j]^T guhat[n,i,j,:] and
 *                                gW[i,j] = sum_n guhat[n,i,j,:] u[n,i,:]^T
 *   fc_dynamic_routing           the paper's Procedure 1, one sample per task
 *   fc_dynamic_routing_backward  its gradient with the iterations unrolled: the forward
 *                                iterations are recomputed (keeping each one's c, s and v)
 *                                and walked back
 *
 * Layout. fc_capsule_predict runs one input capsule i per step (OpenMP over i): W[i] (J*Dout
 * rows of Din) is copied transposed into a per-thread panel (Din rows of J*Dout, 5 KB for the
 * paper's 10 x 16 x 8), which then stays in L1 while every sample's J*Dout outputs are made as
 * Din broadcast-multiply-adds over 16-wide blocks of the panel row: the loop over outputs is
 * contiguous, so gcc vectorises it, and no horizontal sums are needed. The backward pass walks
 * the same i-major order, so each thread owns whole slices gW[i] (no atomics).
 * The routing kernels take one sample per step (OpenMP over n): the sample's uhat (I*J*D
 * values, 720 KB in float32 for 1152 x 10 x 16) stays in L2 over the 2r - 1 passes the r
 * iterations make over it (r weighted sums, r - 1 agreements). The softmax over the J output
 * capsules runs as one long loop over all I*J logits with a branch-free exp (fc_exp_neg), so
 * it vectorises too. The dot products (agreements, the backward pass's gc and gu) are
 * `omp simd` reductions: gcc may then sum them in vector lanes, which -std=c11 otherwise
 * forbids (it would keep one serial chain of adds: the kernels measured 2x to 4x slower).
 * Squash works per output capsule (J*D values) with its norms and coefficients in double,
 * so it is exact at s = 0 and for tiny s.
 *
 * Preconditions (checked by fastconv/capsule.py, asserted in debug builds): N >= 0; I, J,
 * D, Din, Dout >= 1; iterations >= 1; every array C-contiguous and of the kernel's type.
 * Each function is compiled for AVX-512, AVX2+FMA and baseline x86-64 (FC_MULTIVERSION).
 *
 * Build: `python csrc/build_ffi.py` (in place) or `pip install -e .`.
 */
#ifndef FC_TYPED

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* -std=c11 turns floating-point contraction off; a*b + c may become one FMA here. */
#pragma GCC optimize("fp-contract=fast")

/* Width of the output blocks of the prediction kernels (one AVX-512 float32 vector). */
#define FC_CAPS_BLOCK 16

/* exp(x) for x <= 0 (softmax logits minus their maximum), without branches or calls, so a
 * loop over it vectorises: exp(x) = 2^k * exp(r), k = round(x / ln 2), r = x - k ln 2 (ln 2
 * in two parts, so r is exact), exp(r) by its Taylor series on |r| <= ln(2)/2: degree 7 for
 * float, 12 for double (measured on [-86, 0]: relative error below 1.0e-7 and 3.4e-16, about
 * one rounding of the type). x is clamped at the log of the
 * smallest normal number, whose exp the softmax rounds away next to the maximum's 1 (and a
 * NaN logit to it: the NaN in u_hat that made it reaches v through the sums anyway). k is
 * made by truncating x / ln 2 - 1/2, which rounds to nearest for x <= 0; 2^k goes straight
 * into the exponent bits. */
static inline float fc_exp_neg_f32(float x)
{
    x = x >= -87.0f ? x : -87.0f; /* NaN too: no float->int conversion of NaN below */
    int32_t k = (int32_t)(x * 1.44269504088896341f - 0.5f);
    float kf = (float)k;
    float r = x - kf * 0.693145751953125f - kf * 1.428606765330187e-06f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666668e-2f +
              r * (8.3333338e-3f + r * (1.3888889e-3f + r * 1.9841270e-4f))))));
    int32_t bits = (k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline double fc_exp_neg_f64(double x)
{
    x = x >= -708.0 ? x : -708.0;
    int32_t k = (int32_t)(x * 1.4426950408889634 - 0.5);
    double kd = (double)k;
    double r = x - kd * 0.6931471803691238 - kd * 1.9082149292705877e-10;
    double p = 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t bits = (int64_t)(k + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Run the loop over n (or i) on several threads only when there is enough work. */
static inline int fc_caps_par(int64_t tasks, int64_t work) { return tasks > 1 && work > 65536; }

#define FC_INSTANTIATE "capsule.c"
#include "common.h"

#else /* FC_TYPED: everything below is compiled once per element type T */

#define FC_EXP_NEG FN(fc_exp_neg)

/* ------------------------------------------------------------------ prediction vectors */

/* One input capsule i: uhat[n, :] = Wt^T u[n, :] for every sample n. Wt is (Din, K), the
 * transposed W[i] (K = J*Dout); u rows are Din apart with a stride of I*Din between samples,
 * uhat rows K long, I*K apart. */
FC_INLINE void FC_CAT(FN(caps_predict_i), _body)(const T *restrict u, const T *restrict Wt,
                                                 T *restrict uhat, int64_t N, int64_t I,
                                                 int64_t K, int64_t Din)
{
    for (int64_t n = 0; n < N; n++) {
        const T *x = u + n * I * Din;
        T *out = uhat + n * I * K;
        int64_t r0 = 0;
        for (; r0 + FC_CAPS_BLOCK <= K; r0 += FC_CAPS_BLOCK) {
            T acc[FC_CAPS_BLOCK] = {0};
            for (int64_t k = 0; k < Din; k++) {
                const T xk = x[k];
                const T *wr = Wt + k * K + r0;
                for (int l = 0; l < FC_CAPS_BLOCK; l++)
                    acc[l] += xk * wr[l];
            }
            for (int l = 0; l < FC_CAPS_BLOCK; l++)
                out[r0 + l] = acc[l];
        }
        for (int64_t r = r0; r < K; r++) {
            T acc = 0;
            for (int64_t k = 0; k < Din; k++)
                acc += x[k] * Wt[k * K + r];
            out[r] = acc;
        }
    }
}
FC_MULTIVERSION(FN(caps_predict_i),
                (const T *restrict u, const T *restrict Wt, T *restrict uhat, int64_t N,
                 int64_t I, int64_t K, int64_t Din),
                (u, Wt, uhat, N, I, K, Din))

/* W[i] (K rows of Din) -> Wt (Din rows of K). */
static void FN(caps_transpose)(const T *restrict w, T *restrict wt, int64_t K, int64_t Din)
{
    for (int64_t r = 0; r < K; r++)
        for (int64_t k = 0; k < Din; k++)
            wt[k * K + r] = w[r * Din + k];
}

/* u is (N, I, Din), w is (I, J, Dout, Din), uhat is (N, I, J, Dout). Returns 0, or 1 when a
 * per-thread panel could not be allocated. */
int FN(fc_capsule_predict)(const T *u, const T *w, T *uhat, int64_t N, int64_t I, int64_t J,
                           int64_t Dout, int64_t Din)
{
    FC_ASSERT(N >= 0 && I >= 1 && J >= 1 && Dout >= 1 && Din >= 1);
    const int64_t K = J * Dout;
    int failed = 0;
#pragma omp parallel num_threads(fc_threads()) if (fc_caps_par(I, N * I * K * Din))
    {
        T *wt = malloc((size_t)(K * Din) * sizeof(T));
        if (!wt) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t i = 0; i < I; i++) {
            if (!wt)
                continue;
            FN(caps_transpose)(w + i * K * Din, wt, K, Din);
            FN(caps_predict_i)(u + i * Din, wt, uhat + i * K, N, I, K, Din);
        }
        free(wt);
    }
    return failed;
}

/* One input capsule i: gu[n, k] = sum_r Wt[k, r] g[n, r] and gWt[k, r] = sum_n u[n, k] g[n, r]
 * (either may be NULL). g rows are K long, I*K apart. */
FC_INLINE void FC_CAT(FN(caps_predict_back_i), _body)(const T *restrict u,
                                                      const T *restrict Wt,
                                                      const T *restrict g, T *restrict gu,
                                                      T *restrict gWt, int64_t N, int64_t I,
                                                      int64_t K, int64_t Din)
{
    if (gWt)
        memset(gWt, 0, (size_t)(K * Din) * sizeof(T));
    for (int64_t n = 0; n < N; n++) {
        const T *gn = g + n * I * K;
        const T *x = u + n * I * Din;
        if (gu) {
            T *gx = gu + n * I * Din;
            for (int64_t k = 0; k < Din; k++) {
                const T *wr = Wt + k * K;
                T acc = 0;
#pragma omp simd reduction(+ : acc)
                for (int64_t r = 0; r < K; r++)
                    acc += wr[r] * gn[r];
                gx[k] = acc;
            }
        }
        if (gWt) {
            for (int64_t k = 0; k < Din; k++) {
                const T xk = x[k];
                T *row = gWt + k * K;
                for (int64_t r = 0; r < K; r++)
                    row[r] += xk * gn[r];
            }
        }
    }
}
FC_MULTIVERSION(FN(caps_predict_back_i),
                (const T *restrict u, const T *restrict Wt, const T *restrict g,
                 T *restrict gu, T *restrict gWt, int64_t N, int64_t I, int64_t K,
                 int64_t Din),
                (u, Wt, g, gu, gWt, N, I, K, Din))

/* u is (N, I, Din), w is (I, J, Dout, Din), guhat is (N, I, J, Dout); gu (N, I, Din) and gw
 * (I, J, Dout, Din) are written when not NULL. Returns 0, or 1 when out of memory. */
int FN(fc_capsule_predict_backward)(const T *u, const T *w, const T *guhat, T *gu, T *gw,
                                    int64_t N, int64_t I, int64_t J, int64_t Dout,
                                    int64_t Din)
{
    FC_ASSERT(N >= 0 && I >= 1 && J >= 1 && Dout >= 1 && Din >= 1);
    const int64_t K = J * Dout;
    int failed = 0;
#pragma omp parallel num_threads(fc_threads()) if (fc_caps_par(I, N * I * K * Din))
    {
        T *wt = malloc((size_t)(2 * K * Din) * sizeof(T));
        if (!wt) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t i = 0; i < I; i++) {
            if (!wt)
                continue;
            T *gwt = gw ? wt + K * Din : NULL;
            FN(caps_transpose)(w + i * K * Din, wt, K, Din);
            FN(caps_predict_back_i)(u + i * Din, wt, guhat + i * K, gu ? gu + i * Din : NULL,
                                    gwt, N, I, K, Din);
            if (gwt) /* gWt (Din, K) -> gw[i] (K, Din) */
                for (int64_t r = 0; r < K; r++)
                    for (int64_t k = 0; k < Din; k++)
                        gw[i * K * Din + r * Din + k] = gwt[k * K + r];
        }
        free(wt);
    }
    return failed;
}

/* ------------------------------------------------------------------ dynamic routing */

/* v[j] = squash(s[j]) = s[j] * |s[j]| / (1 + |s[j]|^2) for each of the J capsules of D
 * values; the norm in double, no division (finite and 0 at s = 0). */
FC_INLINE void FN(caps_squash)(const T *restrict s, T *restrict v, int64_t J, int64_t D)
{
    for (int64_t j = 0; j < J; j++) {
        double n2 = 0;
        for (int64_t d = 0; d < D; d++)
            n2 += (double)s[j * D + d] * (double)s[j * D + d];
        const T f = (T)(sqrt(n2) / (1.0 + n2));
        for (int64_t d = 0; d < D; d++)
            v[j * D + d] = s[j * D + d] * f;
    }
}

/* gs = dL/ds from gv = dL/dv through v = squash(s): with n = |s|, f = n / (1 + n^2),
 * gs = f gv + s (s . gv) (1 - n^2) / (n (1 + n^2)^2); the second term (which tends to 0
 * with s) is dropped at n = 0. Scalars in double, so 1/n cannot overflow for tiny s. */
FC_INLINE void FN(caps_squash_back)(const T *restrict s, const T *restrict gv,
                                    T *restrict gs, int64_t J, int64_t D)
{
    for (int64_t j = 0; j < J; j++) {
        double n2 = 0, sg = 0;
        for (int64_t d = 0; d < D; d++) {
            n2 += (double)s[j * D + d] * (double)s[j * D + d];
            sg += (double)s[j * D + d] * (double)gv[j * D + d];
        }
        const double n = sqrt(n2), q = 1.0 + n2;
        const T f = (T)(n / q);
        const T k = n > 0 ? (T)(sg * (1.0 - n2) / (n * q * q)) : (T)0;
        for (int64_t d = 0; d < D; d++)
            gs[j * D + d] = f * gv[j * D + d] + k * s[j * D + d];
    }
}

/* c[i, :] = softmax(b[i, :]) over the J output capsules, for every i: the row maxima
 * subtracted, then one long vectorised exp over all I*J logits, then each row normalised. */
FC_INLINE void FN(caps_softmax)(const T *restrict b, T *restrict c, int64_t I, int64_t J)
{
    for (int64_t i = 0; i < I; i++) {
        T m = b[i * J];
        for (int64_t j = 1; j < J; j++)
            m = b[i * J + j] > m ? b[i * J + j] : m;
        for (int64_t j = 0; j < J; j++)
            c[i * J + j] = b[i * J + j] - m;
    }
    for (int64_t e = 0; e < I * J; e++)
        c[e] = FC_EXP_NEG(c[e]);
    for (int64_t i = 0; i < I; i++) {
        T sum = 0;
        for (int64_t j = 0; j < J; j++)
            sum += c[i * J + j];
        const T inv = (T)1 / sum;
        for (int64_t j = 0; j < J; j++)
            c[i * J + j] *= inv;
    }
}

/* s[j, :] = sum_i c[i, j] u[i, j, :] (u is one sample's (I, J, D)). */
FC_INLINE void FN(caps_weighted_sum)(const T *restrict u, const T *restrict c, T *restrict s,
                                     int64_t I, int64_t J, int64_t D)
{
    memset(s, 0, (size_t)(J * D) * sizeof(T));
    for (int64_t i = 0; i < I; i++)
        for (int64_t j = 0; j < J; j++) {
            const T cij = c[i * J + j];
            const T *uij = u + (i * J + j) * D;
            T *sj = s + j * D;
            for (int64_t d = 0; d < D; d++)
                sj[d] += cij * uij[d];
        }
}

/* b[i, j] (+)= u[i, j, :] . v[j, :]; the first agreement sets b (b starts at 0). */
FC_INLINE void FN(caps_agree)(const T *restrict u, const T *restrict v, T *restrict b,
                              int64_t I, int64_t J, int64_t D, int first)
{
    for (int64_t i = 0; i < I; i++)
        for (int64_t j = 0; j < J; j++) {
            const T *uij = u + (i * J + j) * D;
            const T *vj = v + j * D;
            T a = 0;
#pragma omp simd reduction(+ : a)
            for (int64_t d = 0; d < D; d++)
                a += uij[d] * vj[d];
            b[i * J + j] = first ? a : b[i * J + j] + a;
        }
}

/* Procedure 1 for one sample: u (I, J, D) -> v (J, D). Each iteration t uses c + t*I*J,
 * s + t*J*D and v_hist + t*J*D when `keep` (the backward pass needs them all), else the same
 * single slots; b is (I, J). The last iteration's c is left at c + (keep ? t : 0) * I*J. */
FC_INLINE void FC_CAT(FN(caps_route_one), _body)(const T *restrict u, T *restrict v,
                                                 T *restrict b, T *restrict c, T *restrict s,
                                                 T *restrict v_hist, int64_t I, int64_t J,
                                                 int64_t D, int64_t iters, int keep)
{
    for (int64_t t = 0; t < iters; t++) {
        T *ct = keep ? c + t * I * J : c;
        T *st = keep ? s + t * J * D : s;
        T *vt = keep ? v_hist + t * J * D : (t == iters - 1 ? v : v_hist);
        if (t == 0) { /* softmax of b = 0: uniform coupling */
            const T uniform = (T)1 / (T)J;
            for (int64_t e = 0; e < I * J; e++)
                ct[e] = uniform;
        } else {
            FN(caps_softmax)(b, ct, I, J);
        }
        FN(caps_weighted_sum)(u, ct, st, I, J, D);
        FN(caps_squash)(st, vt, J, D);
        if (t < iters - 1)
            FN(caps_agree)(u, vt, b, I, J, D, t == 0);
    }
    if (keep)
        memcpy(v, v_hist + (iters - 1) * J * D, (size_t)(J * D) * sizeof(T));
}
FC_MULTIVERSION(FN(caps_route_one),
                (const T *restrict u, T *restrict v, T *restrict b, T *restrict c,
                 T *restrict s, T *restrict v_hist, int64_t I, int64_t J, int64_t D,
                 int64_t iters, int keep),
                (u, v, b, c, s, v_hist, I, J, D, iters, keep))

/* uhat is (N, I, J, D), v is (N, J, D), c (N, I, J) the last iteration's coupling
 * coefficients or NULL. Returns 0, or 1 when out of memory. */
int FN(fc_dynamic_routing)(const T *uhat, T *v, T *c, int64_t N, int64_t I, int64_t J,
                           int64_t D, int64_t iters)
{
    FC_ASSERT(N >= 0 && I >= 1 && J >= 1 && D >= 1 && iters >= 1);
    int failed = 0;
#pragma omp parallel num_threads(fc_threads()) if (fc_caps_par(N, N * I * J * D * iters))
    {
        /* b (I*J), c (I*J), s (J*D), an intermediate v (J*D) */
        T *ws = malloc((size_t)(2 * I * J + 2 * J * D) * sizeof(T));
        if (!ws) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic)
        for (int64_t n = 0; n < N; n++) {
            if (!ws)
                continue;
            T *b = ws, *cw = ws + I * J, *s = ws + 2 * I * J, *vtmp = s + J * D;
            FN(caps_route_one)(uhat + n * I * J * D, v + n * J * D, b, cw, s, vtmp, I, J, D,
                               iters, 0);
            if (c)
                memcpy(c + n * I * J, cw, (size_t)(I * J) * sizeof(T));
        }
        free(ws);
    }
    return failed;
}

/* The backward pass of one sample, given the forward iterations' c (iters, I, J), s and v
 * (iters, J, D): gu (I, J, D) = dL/du for dL/dv = gv (J, D) of the last iteration.
 * Iteration t, walked back from the last, did
 *     c = softmax(b_t); s = sum_i c u; v = squash(s); b_{t+1} = b_t + u . v (t < last),
 * so with gb = dL/db_{t+1} (0 for the last):
 *     gv_t = [gv if last] + sum_i gb u;   gu += gb v            (the agreement)
 *     gs = squash'(s)^T gv_t;   gc = u . gs;   gu += c gs       (the weighted sum)
 *     gb += c (gc - sum_j c gc)   (the softmax; b_0 = 0 is a constant: skipped at t = 0). */
FC_INLINE void FC_CAT(FN(caps_route_back_one), _body)(const T *restrict u, const T *restrict gv,
                                                      T *restrict gu, const T *restrict c,
                                                      const T *restrict s,
                                                      const T *restrict vh, T *restrict gb,
                                                      T *restrict gvt, T *restrict gs,
                                                      int64_t I, int64_t J, int64_t D,
                                                      int64_t iters)
{
    const int64_t JD = J * D;
    for (int64_t t = iters - 1; t >= 0; t--) {
        const T *ct = c + t * I * J, *st = s + t * JD, *vt = vh + t * JD;
        const int last = t == iters - 1;
        if (last) {
            memcpy(gvt, gv, (size_t)JD * sizeof(T));
        } else {
            memset(gvt, 0, (size_t)JD * sizeof(T));
            for (int64_t i = 0; i < I; i++)
                for (int64_t j = 0; j < J; j++) {
                    const T g = gb[i * J + j];
                    const T *uij = u + (i * J + j) * D;
                    T *gij = gu + (i * J + j) * D;
                    T *gj = gvt + j * D;
                    const T *vj = vt + j * D;
                    for (int64_t d = 0; d < D; d++) {
                        gj[d] += g * uij[d];
                        gij[d] += g * vj[d];
                    }
                }
        }
        FN(caps_squash_back)(st, gvt, gs, J, D);
        for (int64_t i = 0; i < I; i++) {
            T dotc = 0;
            T gc[64]; /* a row of J coupling gradients; J > 64 takes a second pass */
            for (int64_t j = 0; j < J; j++) {
                const T *uij = u + (i * J + j) * D;
                T *gij = gu + (i * J + j) * D;
                const T *gsj = gs + j * D;
                const T cij = ct[i * J + j];
                T a = 0;
                if (last) {
#pragma omp simd reduction(+ : a)
                    for (int64_t d = 0; d < D; d++) {
                        a += uij[d] * gsj[d];
                        gij[d] = cij * gsj[d];
                    }
                } else {
#pragma omp simd reduction(+ : a)
                    for (int64_t d = 0; d < D; d++) {
                        a += uij[d] * gsj[d];
                        gij[d] += cij * gsj[d];
                    }
                }
                if (j < 64)
                    gc[j] = a;
                dotc += cij * a;
            }
            if (t == 0)
                continue;
            for (int64_t j = 0; j < J; j++) {
                T a;
                if (j < 64) {
                    a = gc[j];
                } else {
                    const T *uij = u + (i * J + j) * D;
                    const T *gsj = gs + j * D;
                    a = 0;
#pragma omp simd reduction(+ : a)
                    for (int64_t d = 0; d < D; d++)
                        a += uij[d] * gsj[d];
                }
                const T cij = ct[i * J + j];
                gb[i * J + j] = (last ? 0 : gb[i * J + j]) + cij * (a - dotc);
            }
        }
    }
}
FC_MULTIVERSION(FN(caps_route_back_one),
                (const T *restrict u, const T *restrict gv, T *restrict gu,
                 const T *restrict c, const T *restrict s, const T *restrict vh,
                 T *restrict gb, T *restrict gvt, T *restrict gs, int64_t I, int64_t J,
                 int64_t D, int64_t iters),
                (u, gv, gu, c, s, vh, gb, gvt, gs, I, J, D, iters))

/* uhat is (N, I, J, D), gv is (N, J, D), guhat is (N, I, J, D). Returns 0, or 1 when out
 * of memory. */
int FN(fc_dynamic_routing_backward)(const T *uhat, const T *gv, T *guhat, int64_t N,
                                    int64_t I, int64_t J, int64_t D, int64_t iters)
{
    FC_ASSERT(N >= 0 && I >= 1 && J >= 1 && D >= 1 && iters >= 1);
    const int64_t IJ = I * J, JD = J * D;
    int failed = 0;
#pragma omp parallel num_threads(fc_threads()) if (fc_caps_par(N, N * I * J * D * iters))
    {
        /* b, gb (I*J each); c (iters*I*J); s, v (iters*J*D each); gvt, gs (J*D each) */
        T *ws = malloc((size_t)(2 * IJ + iters * IJ + 2 * iters * JD + 2 * JD) * sizeof(T));
        if (!ws) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic)
        for (int64_t n = 0; n < N; n++) {
            if (!ws)
                continue;
            T *b = ws, *gb = b + IJ, *c = gb + IJ, *s = c + iters * IJ, *vh = s + iters * JD;
            T *gvt = vh + iters * JD, *gs = gvt + JD;
            const T *u = uhat + n * I * JD;
            FN(caps_route_one)(u, gvt, b, c, s, vh, I, J, D, iters, 1);
            FN(caps_route_back_one)(u, gv + n * JD, guhat + n * I * JD, c, s, vh, gb, gvt, gs,
                                    I, J, D, iters);
        }
        free(ws);
    }
    return failed;
}

#undef FC_EXP_NEG
#endif /* FC_TYPED */
