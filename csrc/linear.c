/* linear.c: y = x w^T + b for a few rows of x (fastconv.nn.Linear at small batch), float32 /
 * float64.
 *
 * x is (N, K), w is (O, K), b is (O,) or NULL, y is (N, O); all C-contiguous.
 * y[n, o] = b[o] + sum_k x[n, k] * w[o, k].
 *
 * Why fastconv has its own: at batch 1-16 a linear layer is a matrix-vector product bound by
 * reading w once. NumPy's BLAS (OpenBLAS) runs it on its own threads, which then busy-wait on
 * the cores for milliseconds after the call: a network's next convolutions find a core taken
 * and the thread pool (parallel.c) runs them alone; measured on ResNet-50 at batch 1, a
 * forward took 92 ms after the classifier's BLAS call and 61 ms with OpenBLAS on one thread
 * (bench/RESULTS.md, "Linear"). This kernel runs on fastconv's own pool instead.
 *
 * How: tasks are blocks of output features; a task reads its rows of w once for every 4 rows
 * of x, holding 4 rows of w x up to 4 rows of x of vector accumulators along k, then sums
 * each accumulator's lanes. Compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked at
 * run time (fc_dwpool_isa), portable C elsewhere.
 *
 * Build: `python csrc/build_ffi.py`. Test: `pytest tests/test_linear.py`.
 */
#ifndef FC_TYPED

#include <stdint.h>
#include <stdlib.h>

#include "common.h"

/* -std=c11 turns floating-point contraction off; a*b + c may become one FMA here. */
#pragma GCC optimize("fp-contract=fast")

#define FC_LIN_OB 4 /* rows of w per register block */
#define FC_LIN_NB 4 /* rows of x per register block */

#define FC_INSTANTIATE "linear.c"
#include "common.h"

#else /* ------------------------------------------------------------ typed section */

/* y[n, o0 + a] = b + sum_k x[n, k] w[o0 + a, k] for a < no, n in [n0, n0 + nn): one block. */
#define FC_LIN_BLOCK(NAME, VBYTES)                                                            \
    FC_INLINE void NAME(const T *restrict x, const T *restrict w, const T *restrict b,       \
                        T *restrict y, int64_t K, int64_t O, int64_t o0, int64_t no,         \
                        int64_t n0, int64_t nn)                                              \
    {                                                                                        \
        typedef T vt __attribute__((vector_size(VBYTES), aligned(sizeof(T)), may_alias));   \
        enum { L = VBYTES / sizeof(T) };                                                     \
        vt acc[FC_LIN_OB][FC_LIN_NB];                                                        \
        const T *wr[FC_LIN_OB], *xr[FC_LIN_NB];                                              \
        _Pragma("GCC unroll 4") for (int a = 0; a < FC_LIN_OB; a++)                          \
            wr[a] = w + (o0 + (a < no ? a : 0)) * K;                                         \
        _Pragma("GCC unroll 4") for (int j = 0; j < FC_LIN_NB; j++)                          \
            xr[j] = x + (n0 + (j < nn ? j : 0)) * K;                                         \
        _Pragma("GCC unroll 4") for (int a = 0; a < FC_LIN_OB; a++)                          \
            _Pragma("GCC unroll 4") for (int j = 0; j < FC_LIN_NB; j++) acc[a][j] = (vt){0}; \
        int64_t k = 0;                                                                       \
        for (; k + L <= K; k += L) {                                                         \
            vt wv[FC_LIN_OB];                                                                \
            _Pragma("GCC unroll 4") for (int a = 0; a < FC_LIN_OB; a++) wv[a] =              \
                *(const vt *)(wr[a] + k);                                                    \
            _Pragma("GCC unroll 4") for (int j = 0; j < FC_LIN_NB; j++)                      \
            {                                                                                \
                if (j >= nn) break;                                                          \
                const vt xv = *(const vt *)(xr[j] + k);                                      \
                _Pragma("GCC unroll 4") for (int a = 0; a < FC_LIN_OB; a++) acc[a][j] +=     \
                    wv[a] * xv;                                                              \
            }                                                                                \
        }                                                                                    \
        for (int a = 0; a < no; a++)                                                         \
            for (int j = 0; j < nn; j++) {                                                   \
                T s = 0;                                                                     \
                for (int l = 0; l < L; l++) s += acc[a][j][l];                               \
                for (int64_t q = k; q < K; q++) s += wr[a][q] * xr[j][q];                    \
                y[(n0 + j) * O + o0 + a] = (b ? b[o0 + a] : (T)0) + s;                       \
            }                                                                                \
    }

#define FC_LIN_ROWS(NAME, ATTR, BLOCK)                                                       \
    ATTR static void NAME(const T *x, const T *w, const T *b, T *y, int64_t N, int64_t K,    \
                          int64_t O, int64_t o0, int64_t o1)                                 \
    {                                                                                        \
        for (int64_t o = o0; o < o1; o += FC_LIN_OB)                                         \
            for (int64_t n = 0; n < N; n += FC_LIN_NB)                                       \
                BLOCK(x, w, b, y, K, O, o, min64(FC_LIN_OB, o1 - o), n,                      \
                      min64(FC_LIN_NB, N - n));                                              \
    }

FC_LIN_BLOCK(FN(lin_block_base), 16)
FC_LIN_ROWS(FN(lin_rows_base), , FN(lin_block_base))
#if defined(__x86_64__)
FC_LIN_BLOCK(FN(lin_block_avx2), 32)
FC_LIN_ROWS(FN(lin_rows_avx2), FC_T256, FN(lin_block_avx2))
FC_LIN_BLOCK(FN(lin_block_avx512), 64)
FC_LIN_ROWS(FN(lin_rows_avx512), FC_T512, FN(lin_block_avx512))
#endif

typedef struct {
    const T *x, *w, *b;
    T *y;
    int64_t N, K, O;
    int level;
} FN(lin_args);

static void FN(lin_tasks)(void *ctx, int64_t q0, int64_t q1, int slot) {
    const FN(lin_args) *a = ctx;
    const int64_t o0 = q0 * FC_LIN_OB, o1 = min64(a->O, q1 * FC_LIN_OB);
    (void)slot;
    switch (a->level) {
#if defined(__x86_64__)
    case 2: FN(lin_rows_avx512)(a->x, a->w, a->b, a->y, a->N, a->K, a->O, o0, o1); break;
    case 1: FN(lin_rows_avx2)(a->x, a->w, a->b, a->y, a->N, a->K, a->O, o0, o1); break;
#endif
    default: FN(lin_rows_base)(a->x, a->w, a->b, a->y, a->N, a->K, a->O, o0, o1);
    }
}

void FN(fc_linear)(const T *x, const T *w, const T *b, T *y, int64_t N, int64_t K, int64_t O,
                   int nthreads) {
    /* N, K, O >= 0 (0: nothing to do, or y = b when K = 0) */
    FC_ASSERT(N >= 0 && K >= 0 && O >= 0);
    if (N <= 0 || O <= 0) return;
    FN(lin_args) a = {.x = x, .w = w, .b = b, .y = y, .N = N, .K = K, .O = O,
                      .level = fc_dwpool_isa(-1)};
    const int64_t blocks = ceil_div(O, FC_LIN_OB);
    /* w is read ceil(N / 4) times; x stays in cache */
    const int64_t cost = fc_cost_mem(O * K * (int64_t)sizeof(T) * ceil_div(N, FC_LIN_NB),
                                     N * O * K / 4);
    const int team = fc_team_for(cost, nthreads);
    fc_parallel_for(blocks, fc_chunk_for(blocks, cost, team), team, FN(lin_tasks), &a);
}

#endif /* FC_TYPED */
