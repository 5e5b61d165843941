/* gemm.c: C = A * B or C += A * B, single-threaded: the engine under every GEMM-based conv.
 *
 * A is M x K with A(i, k) = A[i*rsa + k*csa] (so both A and its transpose are plain calls),
 * B is K x N row-major with row stride ldb, C is M x N row-major with row stride ldc.
 * `accumulate` = 0 overwrites C without reading it (C may hold NaN), 1 adds to it.
 * `work` holds fc_gemm_work_elems(...) elements for the packed panels (none for NAIVE).
 *
 * Kernels (the `kernel` argument, enum fc_gemm_kernel in fastconv.h):
 *   FC_GEMM_NAIVE     triple loop i-k-j, no blocking               (conv2d v2_im2col)
 *   FC_GEMM_PORTABLE  packed, cache-blocked loops around a 4x8 micro-kernel in plain C that
 *                     the compiler vectorises for the baseline ISA          (v3_blocked)
 *   FC_GEMM_AVX2      the same blocking around a 6x16 (float) / 6x8 (double) AVX2+FMA
 *                     micro-kernel                                 (v4_simd on AVX2 CPUs)
 *   FC_GEMM_AVX512    the same blocking around a 14x32 (float) / 14x16 (double) AVX-512
 *                     micro-kernel                                 (v4_simd on AVX-512 CPUs)
 * FC_GEMM_AUTO      the best the CPU runs.
 * A kernel the CPU cannot run is replaced by the best one it can (never an illegal
 * instruction): the x86 micro-kernels carry __attribute__((target(...))) and are chosen at
 * run time from fc_cpu_features (runtime.c), so the library is built without -march flags.
 * On a non-x86 build only NAIVE and PORTABLE exist.
 *
 * The blocked loops (the BLIS layout):
 *   for jc in N by NC:                    B panel KC x NC packed once per (jc, pc): in L3/L2
 *     for pc in K by KC:
 *       pack_b  -> slivers KC x NR
 *       for ic in M by MC:                A block MC x KC packed once per (ic, pc): in L2
 *         pack_a -> slivers MR x KC
 *         macro-kernel: for jr in NC by NR, for ir in MC by MR: micro-kernel MR x NR
 * The micro-kernel keeps an MR x NR tile of C in registers for all KC steps; each step loads
 * one row of the B sliver (NR values) and MR values of the A sliver and does MR x NR
 * multiply-adds, so it runs from registers and L1 at the FMA units' rate.
 * With at most IN_PLACE_MAX_N (256) columns, a row-major A (csa = 1) and a vector kernel, A
 * is not packed: the micro-kernel broadcasts its values from the rows in place
 * (gemm_a_in_place), as packing would cost more than the few B slivers save; a strip
 * whose rows share an L1 set (IN_PLACE_MAX_ROWS_PER_SET) is read as two strips of 7 rows.
 *
 * Build: `python csrc/build_ffi.py` (part of the fastconv._fastconv_c extension).
 * Test: `pytest tests/test_c_conv.py -k gemm`; `pytest bench/bench_gemm.py --benchmark-enable`
 * measures each kernel against the machine's FMA peak.
 */
#ifndef FC_TYPED

#include <stdint.h>
#include <string.h>

#include "common.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* Cache blocking of one kernel for one dtype. mr x nr is the micro-tile; mc, kc, nc are
 * multiples of mr / nr / 1 sized so that an A sliver (mr x kc) plus a B sliver (kc x nr)
 * stay in L1, the A block (mc x kc) in L2 and the B panel (kc x nc) in L2/L3. */
typedef struct {
    int64_t mr, nr, mc, kc, nc;
} blocking;

#define ALIGN_ELEMS 16 /* panels start on a 64-byte boundary inside `work` */

static blocking blocking_of(int kernel, int is_f64) {
    static const blocking table[3][2] = {
        /* portable */ {{4, 8, 128, 256, 2048}, {4, 8, 128, 256, 2048}},
        /* AVX2     */ {{6, 16, 144, 256, 2048}, {6, 8, 96, 256, 2048}},
        /* AVX-512  */ {{14, 32, 126, 256, 2048}, {14, 16, 98, 256, 2048}},
    };
    if (kernel < FC_GEMM_PORTABLE || kernel > FC_GEMM_AVX512) {
        blocking one = {1, 1, 1, 1, 1};
        return one;
    }
    return table[kernel][is_f64 ? 1 : 0];
}

static int kernel_usable(int kernel) {
    if (kernel == FC_GEMM_NAIVE || kernel == FC_GEMM_PORTABLE) return 1;
#if defined(__x86_64__)
    if (kernel == FC_GEMM_AVX2) return fc_cpu_has(FC_CPU_AVX2 | FC_CPU_FMA);
    if (kernel == FC_GEMM_AVX512)
        return fc_cpu_has(FC_CPU_AVX512F | FC_CPU_AVX512VL | FC_CPU_FMA);
#endif
    return 0;
}

/* The best kernel the CPU runs, at most the instruction-set level allowed by fc_dwpool_isa's
 * cap (FASTCONV_ISA, tests): the level numbers are the kernel numbers. */
int fc_gemm_best_kernel(void) {
    const int cap = fc_isa_cap_level() > 0 ? fc_isa_cap_level() : FC_GEMM_PORTABLE;
    for (int k = cap < FC_GEMM_AVX512 ? cap : FC_GEMM_AVX512; k > FC_GEMM_PORTABLE; k--)
        if (kernel_usable(k)) return k;
    return FC_GEMM_PORTABLE;
}

/* The kernel that will actually run: FC_GEMM_AUTO (or any value out of range) means the
 * best; a kernel the CPU lacks steps down to the next one it has. */
static int resolve_kernel(int kernel) {
    if (kernel < FC_GEMM_NAIVE || kernel >= FC_GEMM_AUTO) return fc_gemm_best_kernel();
    while (!kernel_usable(kernel)) kernel--;
    return kernel;
}

const char *fc_gemm_kernel_name(int kernel) {
    switch (resolve_kernel(kernel)) {
    case FC_GEMM_NAIVE: return "naive";
    case FC_GEMM_AVX2: return "avx2";
    case FC_GEMM_AVX512: return "avx512";
    default: return "portable";
    }
}

int64_t fc_gemm_mr(int kernel, int is_f64) {
    return blocking_of(resolve_kernel(kernel), is_f64).mr;
}

int64_t fc_gemm_nr(int kernel, int is_f64) {
    return blocking_of(resolve_kernel(kernel), is_f64).nr;
}

/* The micro-kernel reads mr rows of A in place at once, each a line at a time. Rows whose
 * lines fall in one set of the L1 data cache evict each other before their next values are
 * read when they outnumber its ways (8 on 32 KB caches, 12 on 48 KB ones): with rows 4 or
 * 8 KB apart (K = 1024, 2048 floats) all 14 rows of an AVX-512 strip share one set, and
 * every broadcast came from L2 (1x1 2048->512 @7 on an AMD EPYC, one thread: 1.59 ms in
 * place, 1.32 ms with the AVX2 kernel's 6 rows). Such a strip is read as two strips of
 * 7 rows (ukr_avx512_f32_rows7; the conv call 1.32 ms when packing each strip, one K block
 * at a time, 1.17 ms as two 7-row strips). Rows 2 KB apart put 7 in each of two sets and
 * stay one strip: packing them was slower (3x3 512->512 @7, rows 18 KB apart, 7 per set:
 * 3.1 -> 3.5-3.8 ms). */
#define IN_PLACE_MAX_ROWS_PER_SET 7

/* The most of `rows` rows, row_bytes apart, whose starts fall in one set of an L1 cache of
 * 64 sets of 64-byte lines (the L1 data cache of x86 cores: 32 KB 8-way and 48 KB 12-way
 * alike map addresses 4 KB apart to one set). */
static int rows_per_l1_set(int64_t rows, int64_t row_bytes) {
    int count[64] = {0}, most = 0;
    for (int64_t i = 0; i < rows; i++) {
        const int set = (int)(((uint64_t)(i * row_bytes) >> 6) & 63);
        if (++count[set] > most) most = count[set];
    }
    return most;
}

/* K cut into equal blocks of at most kc (576 = 3 x 192 rather than 256 + 256 + 64): a short
 * last block would load and store its C tiles for little work. */
static int64_t even_block(int64_t K, int64_t kc) { return ceil_div(K, ceil_div(K, kc)); }

int64_t fc_gemm_work_elems(int kernel, int is_f64, int64_t M, int64_t N, int64_t K) {
    kernel = resolve_kernel(kernel);
    if (kernel == FC_GEMM_NAIVE || M <= 0 || N <= 0 || K <= 0) return 0;
    blocking bk = blocking_of(kernel, is_f64);
    int64_t mc = min64(bk.mc, round_up(M, bk.mr));
    int64_t kc = min64(bk.kc, K);
    int64_t nc = min64(bk.nc, round_up(N, bk.nr));
    return mc * kc + kc * nc + 2 * ALIGN_ELEMS;
}

/* ------------------------------------------------------------------ x86 micro-kernels
 *
 * Contract of every micro-kernel: a is an A sliver packed k-major (a[k*MR + i]), b a B sliver
 * packed k-major (b[k*NR + j]), both kc long (zero-padded past the edges of A and B); c is
 * an MR x NR tile of C with row stride ldc of which only the top-left m x n part (1 <= m <= MR,
 * 1 <= n <= NR) exists and is touched. acc = 0: c = a*b (c is not read), acc = 1: c += a*b.
 *
 * The accumulators are arrays of vectors indexed by compile-time constants in fully unrolled
 * loops, which GCC keeps in registers (the AVX-512 float kernel uses 28 of the 32 zmm
 * registers for C, 2 for the B row and 1 for the broadcast A value). */
#if defined(__x86_64__)

#define AVX512_MR 14
/* The float AVX-512 GEMM kernels' instruction sets (kernel_usable checks the CPU has them). */
#define AVX512_GEMM_TARGET "avx512f,avx512vl,fma"

/* The tail's activation on a vector: ReLU, ReLU6 or none (a NaN stays NaN). */
__attribute__((target("avx512f"))) static inline __m512 act_vec_f32(__m512 v, int activation) {
    const __m512 zero = _mm512_setzero_ps();
    if (activation == FC_ACT_RELU) {
        v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), v, zero);
    } else if (activation == FC_ACT_RELU6) {
        const __m512 six = _mm512_set1_ps(6.0f);
        v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), v, zero);
        v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, six, _CMP_GT_OQ), v, six);
    }
    return v;
}

/* The GEMM tail (fc_gemm_tail) on one row's two vectors of a float AVX-512 tile, in registers:
 * the same operations in the same order as tail_body (bias, scale and shift, residual,
 * activation), so the results equal the tail's separate passes bit for bit. */
__attribute__((target("avx512f"))) static inline __m512 tail_vec_f32(
    const fc_gemm_tail *t, __m512 v, int64_t row, const float *res, __mmask16 k) {
    const float *bias = t->bias, *scale = t->scale, *shift = t->shift;
    if (bias) v = _mm512_add_ps(v, _mm512_set1_ps(bias[row]));
    if (scale)
        v = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(scale[row]), v),
                          _mm512_set1_ps(shift ? shift[row] : 0.0f));
    else if (shift)
        v = _mm512_add_ps(v, _mm512_set1_ps(shift[row]));
    if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, res));
    return act_vec_f32(v, t->activation);
}

/* The float AVX-512 micro-kernel; with t (not NULL) also the tail on the tile before it is
 * stored (the tile being at row i0, column j0 of the whole product): storing the tile and
 * loading it back for the tail stalled on every row (masked stores do not forward to loads),
 * 4% of a ResNet-50 forward. The entry points below inline it with t NULL or not.
 * w0, w1 (compile-time constants): the lanes of the tile's two column vectors that are
 * multiplied, 16 or 8 and 16, 8 or 0 (ukr_avx512_f32_any picks the fewest that hold the
 * tile's n columns). 8 lanes are a 256-bit vector (ymm16-31 need AVX512VL), whose FMA
 * takes half the FMA units of a 512-bit one on cores that split 512-bit operations in two
 * (AMD Zen 4) and the same on others: the 17-column edge tile of a 49-column product, which
 * cost as much as a full one, measured 89% of it on Zen 4 (3/4 in FMA units). Each lane's
 * sum is the same chain of FMAs whatever the width, so the same bits. */
__attribute__((target(AVX512_GEMM_TARGET))) static inline __attribute__((always_inline)) void
ukr_avx512_f32_body(int64_t kc, const float *restrict a, int64_t ars, int64_t aks,
                    const float *restrict b, float *restrict c, int64_t ldc, int acc, int64_t m,
                    int64_t n, const fc_gemm_tail *t, int64_t i0, int64_t j0, const int w0,
                    const int w1, const int rows, const float *pf, int64_t pfs) {
    __m512 r0[AVX512_MR], r1[AVX512_MR];
    __m256 h0[AVX512_MR], h1[AVX512_MR]; /* the 8-lane vectors, w0 or w1 = 8 */
#pragma GCC unroll 14
    for (int i = 0; i < rows; i++) {
        r0[i] = r1[i] = _mm512_setzero_ps();
        h0[i] = h1[i] = _mm256_setzero_ps();
    }
    /* rows 7..13 from a second base: offsets 0..6 x ars fit in three registers (x86 scales
     * 1, 2, 4 of ars, 3 ars and 5 ars) where 0..13 x ars spilled to the stack */
    const float *ah = rows > 7 ? a + 7 * ars : a; /* 7 rows: not read */
    int pr = 0; /* pf: the row of the next prefetch, pf advanced a line per 14 */
    for (int64_t k = 0; k < kc; k++) {
        if (pf) {
            _mm_prefetch((const char *)(pf + pr * pfs), _MM_HINT_T0);
            if (++pr == AVX512_MR) {
                pr = 0;
                pf += 16;
            }
        }
        const __m512 b0 = w0 == 16 ? _mm512_loadu_ps(b) : _mm512_setzero_ps();
        const __m512 b1 = w1 == 16 ? _mm512_loadu_ps(b + 16) : _mm512_setzero_ps();
        const __m256 g0 = w0 == 8 ? _mm256_loadu_ps(b) : _mm256_setzero_ps();
        const __m256 g1 = w1 == 8 ? _mm256_loadu_ps(b + 16) : _mm256_setzero_ps();
#pragma GCC unroll 14
        for (int i = 0; i < rows; i++) {
            const float *ai = i < 7 ? a + i * ars : ah + (i - 7) * ars;
            if (w0 == 16 || w1 == 16) {
                const __m512 v = _mm512_set1_ps(*ai);
                if (w0 == 16) r0[i] = _mm512_fmadd_ps(v, b0, r0[i]);
                if (w1 == 16) r1[i] = _mm512_fmadd_ps(v, b1, r1[i]);
                if (w1 == 8) h1[i] = _mm256_fmadd_ps(_mm512_castps512_ps256(v), g1, h1[i]);
            } else {
                h0[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(ai), g0, h0[i]);
            }
        }
        a += aks;
        ah += aks;
        b += 32;
    }
    /* Edge tiles: rows past m are not stored, columns past n are masked off (a masked load
     * or store never touches the masked-out memory). */
    const __mmask16 k0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
    const __mmask16 k1 = n >= 32 ? 0xFFFF : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
#pragma GCC unroll 14
    for (int i = 0; i < rows; i++) {
        if (i >= m) break;
        float *ci = c + i * ldc;
        if (w0 == 8) r0[i] = _mm512_zextps256_ps512(h0[i]);
        if (w1 == 8) r1[i] = _mm512_zextps256_ps512(h1[i]);
        if (acc) {
            r0[i] = _mm512_add_ps(r0[i], _mm512_maskz_loadu_ps(k0, ci));
            if (w1) r1[i] = _mm512_add_ps(r1[i], _mm512_maskz_loadu_ps(k1, ci + 16));
        }
        if (t) {
            const float *res = t->residual;
            const float *ri = res ? res + (i0 + i) * t->ldr + j0 : NULL;
            r0[i] = tail_vec_f32(t, r0[i], i0 + i, ri, k0);
            if (w1) r1[i] = tail_vec_f32(t, r1[i], i0 + i, ri ? ri + 16 : NULL, k1);
        }
        _mm512_mask_storeu_ps(ci, k0, r0[i]);
        if (w1) _mm512_mask_storeu_ps(ci + 16, k1, r1[i]);
    }
}

/* The GEMM tail on a vector whose lanes are rows i0 .. i0 + 15 of one column col (of the
 * whole product) of a tile: tail_vec_f32's operations in its order, with each lane's own
 * bias, scale, shift and residual, so the same bits. rm: the rows that exist. */
__attribute__((target("avx512f"))) static inline __m512 tail_lanes_f32(
    const fc_gemm_tail *t, __m512 v, int64_t i0, int64_t col, __mmask16 rm, int64_t m) {
    const float *bias = t->bias, *scale = t->scale, *shift = t->shift, *res = t->residual;
    const __m512 zero = _mm512_setzero_ps();
    if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(rm, bias + i0));
    if (scale)
        v = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(rm, scale + i0), v),
                          shift ? _mm512_maskz_loadu_ps(rm, shift + i0) : zero);
    else if (shift)
        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(rm, shift + i0));
    if (res) {
        float r[16] = {0};
        for (int64_t i = 0; i < m; i++) r[i] = res[(i0 + i) * t->ldr + col];
        v = _mm512_add_ps(v, _mm512_loadu_ps(r));
    }
    return act_vec_f32(v, t->activation);
}

/* The edge tiles that ukr_avx512_f32_lanes takes: n = 16 + e columns, 1 <= e <= LANES_MAX. */
#define LANES_MAX 4
#define LANES_EDGE(n) ((n) > 16 && (n) <= 16 + LANES_MAX)

/* An edge tile of n = 16 + e columns (1 <= e <= 4: a 49-pixel product's last sliver has 17)
 * on a packed strip: the first 16 as ukr_avx512_f32_body's first vector, the last e with the
 * strip's rows as lanes: per k, A's column (the strip's 14 packed values, one load) times
 * column j's value of B broadcast. The body's 8-lane second vector took 14 FMAs per k for
 * those columns, as much as 7 full vectors on Zen 4 (which splits a 16-lane FMA in two) and
 * 14 on cores with two 512-bit FMA units; the lanes take one per column. 3x3 512->512 @7,
 * batch 2 (packed weights), one thread: 5.83 -> 5.05 ms (a 48-pixel image: 4.78). Every
 * output is still the chain of FMAs over k from zero, then + C, then the tail's operations
 * (tail_lanes_f32): the same bits. In place, A's columns would be gathered (3x3 512@7: 2.77
 * -> 3.03 ms) or blended from the broadcasts (3.00); a_in_place_block packs instead. */
__attribute__((target(AVX512_GEMM_TARGET))) static inline __attribute__((always_inline)) void
ukr_avx512_f32_lanes(int64_t kc, const float *restrict a, const float *restrict b,
                     float *restrict c, int64_t ldc, int acc, int64_t m, int64_t n,
                     const fc_gemm_tail *t, int64_t i0, int64_t j0, const int rows) {
    __m512 r0[AVX512_MR], lc[4];
    const int64_t e = n - 16;
#pragma GCC unroll 14
    for (int i = 0; i < rows; i++) r0[i] = _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) lc[j] = _mm512_setzero_ps();
    const __mmask16 all = (__mmask16)((1u << rows) - 1);
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_loadu_ps(b);
        const __m512 av = _mm512_maskz_loadu_ps(all, a); /* rows i: a[i], packed */
#pragma GCC unroll 14
        for (int i = 0; i < rows; i++)
            r0[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i]), b0, r0[i]);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            if (j < e) lc[j] = _mm512_fmadd_ps(av, _mm512_set1_ps(b[16 + j]), lc[j]);
        a += AVX512_MR;
        b += 32;
    }
#pragma GCC unroll 14
    for (int i = 0; i < rows; i++) {
        if (i >= m) break;
        float *ci = c + i * ldc;
        if (acc) r0[i] = _mm512_add_ps(r0[i], _mm512_loadu_ps(ci));
        if (t) {
            const float *res = t->residual;
            r0[i] = tail_vec_f32(t, r0[i], i0 + i, res ? res + (i0 + i) * t->ldr + j0 : NULL,
                                 0xFFFF);
        }
        _mm512_storeu_ps(ci, r0[i]);
    }
    const __mmask16 rm = (__mmask16)((1u << m) - 1);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        if (j >= e) break;
        float v[16] = {0};
        if (acc)
            for (int64_t i = 0; i < m; i++) v[i] = c[i * ldc + 16 + j];
        __m512 x = lc[j];
        if (acc) x = _mm512_add_ps(x, _mm512_loadu_ps(v));
        if (t) x = tail_lanes_f32(t, x, i0, j0 + 16 + j, rm, m);
        _mm512_storeu_ps(v, x);
        for (int64_t i = 0; i < m; i++) c[i * ldc + 16 + j] = v[i];
    }
}

/* The body with the fewest lanes that hold n columns (a constant per copy). */
__attribute__((target(AVX512_GEMM_TARGET))) static inline __attribute__((always_inline)) void
ukr_avx512_f32_any(int64_t kc, const float *restrict a, int64_t ars, int64_t aks,
                   const float *restrict b, float *restrict c, int64_t ldc, int acc, int64_t m,
                   int64_t n, const fc_gemm_tail *t, int64_t i0, int64_t j0, const int rows) {
    if (LANES_EDGE(n) && aks == AVX512_MR) /* a packed strip */
        ukr_avx512_f32_lanes(kc, a, b, c, ldc, acc, m, n, t, i0, j0, rows);
    else if (n > 24)
        ukr_avx512_f32_body(kc, a, ars, aks, b, c, ldc, acc, m, n, t, i0, j0, 16, 16, rows,
                            NULL, 0);
    else if (n > 16)
        ukr_avx512_f32_body(kc, a, ars, aks, b, c, ldc, acc, m, n, t, i0, j0, 16, 8, rows,
                            NULL, 0);
    else if (n > 8)
        ukr_avx512_f32_body(kc, a, ars, aks, b, c, ldc, acc, m, n, t, i0, j0, 16, 0, rows,
                            NULL, 0);
    else
        ukr_avx512_f32_body(kc, a, ars, aks, b, c, ldc, acc, m, n, t, i0, j0, 8, 0, rows,
                            NULL, 0);
}

/* On a packed strip (A(i, k) = a[k*14 + i]): the body with the fewest rows that hold the
 * strip's m (2, 4, 8 or 14), so that the last strip of a product multiplies only its rows:
 * M = 16 (a transposed conv's 4x4 input pixels as rows: 14 + 2) ran 28 rows' FMAs for 16,
 * and 64 / 128 / 256 / 512 output channels leave a last strip of 8, 2, 4, 8 rows. The rows
 * kept are the same chains of FMAs: the same bits. */
#define UKR_AVX512_PACKED_ROWS(m, ...)                                                      \
    do {                                                                                    \
        if ((m) > 8)                                                                        \
            ukr_avx512_f32_any(__VA_ARGS__, AVX512_MR);                                     \
        else if ((m) > 4)                                                                   \
            ukr_avx512_f32_any(__VA_ARGS__, 8);                                             \
        else if ((m) > 2)                                                                   \
            ukr_avx512_f32_any(__VA_ARGS__, 4);                                             \
        else                                                                                \
            ukr_avx512_f32_any(__VA_ARGS__, 2);                                             \
    } while (0)

__attribute__((target(AVX512_GEMM_TARGET))) static void ukr_avx512_f32(
    int64_t kc, const float *restrict a, const float *restrict b, float *restrict c,
    int64_t ldc, int acc, int64_t m, int64_t n) {
    UKR_AVX512_PACKED_ROWS(m, kc, a, 1, AVX512_MR, b, c, ldc, acc, m, n, NULL, 0, 0);
}

__attribute__((target(AVX512_GEMM_TARGET))) static void ukr_avx512_f32_tail(
    int64_t kc, const float *restrict a, const float *restrict b, float *restrict c,
    int64_t ldc, int acc, int64_t m, int64_t n, const fc_gemm_tail *t, int64_t i0,
    int64_t j0) {
    UKR_AVX512_PACKED_ROWS(m, kc, a, 1, AVX512_MR, b, c, ldc, acc, m, n, t, i0, j0);
}
#undef UKR_AVX512_PACKED_ROWS

/* A whole tile (14 rows, 32 columns) on a packed strip, t NULL or not, that also prefetches
 * the 14 rows of A's next strip (pf: its first row, rows pfs apart, kc or more values each)
 * a line per k step, so that packing that strip reads them from L1 / L2 while the weights
 * stream from L3 or DRAM under this tile's multiply-adds (a_in_place_block). */
__attribute__((target(AVX512_GEMM_TARGET))) static void ukr_avx512_f32_pf(
    int64_t kc, const float *restrict a, const float *restrict b, float *restrict c,
    int64_t ldc, int acc, const fc_gemm_tail *t, int64_t i0, int64_t j0, const float *pf,
    int64_t pfs) {
    ukr_avx512_f32_body(kc, a, 1, AVX512_MR, b, c, ldc, acc, AVX512_MR, 32, t, i0, j0, 16, 16,
                        AVX512_MR, pf, pfs);
}

/* The same micro-kernel reading A in place, row-major with row stride rsa (A(i, k) =
 * a[i*rsa + k], all AVX512_MR rows present): for an A block that meets only one or two B
 * slivers, packing it costs more than the multiply saves (ResNet-50's 1x1 2048->512 at 7x7,
 * 49 output pixels: pack_a 21% of the call, its 4 MB of weights streamed from L3 and written
 * again before the multiply reads them). Each k step broadcasts one value of each of the 14
 * rows; the 14 cache lines of a 16-value step stay in L1. Same products in the same order,
 * so the same bits as the packed kernel. t NULL or not, as ukr_avx512_f32_tail. */
__attribute__((target(AVX512_GEMM_TARGET))) static void ukr_avx512_f32_rows(
    int64_t kc, const float *restrict a, int64_t rsa, const float *restrict b,
    float *restrict c, int64_t ldc, int acc, int64_t m, int64_t n, const fc_gemm_tail *t,
    int64_t i0, int64_t j0) {
    ukr_avx512_f32_any(kc, a, rsa, 1, b, c, ldc, acc, m, n, t, i0, j0, AVX512_MR);
}

/* The same on 7 rows (m <= 7): a strip whose 14 rows would put more than
 * IN_PLACE_MAX_ROWS_PER_SET in one L1 set is read in place as two strips of 7. */
__attribute__((target(AVX512_GEMM_TARGET))) static void ukr_avx512_f32_rows7(
    int64_t kc, const float *restrict a, int64_t rsa, const float *restrict b,
    float *restrict c, int64_t ldc, int acc, int64_t m, int64_t n, const fc_gemm_tail *t,
    int64_t i0, int64_t j0) {
    ukr_avx512_f32_any(kc, a, rsa, 1, b, c, ldc, acc, m, n, t, i0, j0, 7);
}

__attribute__((target("avx512f"))) static void ukr_avx512_f64(
    int64_t kc, const double *restrict a, const double *restrict b, double *restrict c,
    int64_t ldc, int acc, int64_t m, int64_t n) {
    __m512d r0[AVX512_MR], r1[AVX512_MR];
#pragma GCC unroll 14
    for (int i = 0; i < AVX512_MR; i++) r0[i] = r1[i] = _mm512_setzero_pd();
    for (int64_t k = 0; k < kc; k++) {
        __m512d b0 = _mm512_loadu_pd(b), b1 = _mm512_loadu_pd(b + 8);
#pragma GCC unroll 14
        for (int i = 0; i < AVX512_MR; i++) {
            __m512d ai = _mm512_set1_pd(a[i]);
            r0[i] = _mm512_fmadd_pd(ai, b0, r0[i]);
            r1[i] = _mm512_fmadd_pd(ai, b1, r1[i]);
        }
        a += AVX512_MR;
        b += 16;
    }
    const __mmask8 k0 = n >= 8 ? 0xFF : (__mmask8)((1u << n) - 1);
    const __mmask8 k1 = n >= 16 ? 0xFF : n <= 8 ? 0 : (__mmask8)((1u << (n - 8)) - 1);
#pragma GCC unroll 14
    for (int i = 0; i < AVX512_MR; i++) {
        if (i >= m) break;
        double *ci = c + i * ldc;
        if (acc) {
            r0[i] = _mm512_add_pd(r0[i], _mm512_maskz_loadu_pd(k0, ci));
            r1[i] = _mm512_add_pd(r1[i], _mm512_maskz_loadu_pd(k1, ci + 8));
        }
        _mm512_mask_storeu_pd(ci, k0, r0[i]);
        _mm512_mask_storeu_pd(ci + 8, k1, r1[i]);
    }
}

/* pack_a of a transposed A (rows contiguous, columns csa apart: the transposed conv's
 * weights) on AVX-512 float slivers of 14 rows, mc rows in all: Ap[(i/14)*14*kc + k*14 +
 * i%14] = a[k*csa + i], zero past mc. Column k of A is read once, in order, into every
 * sliver (a masked load and store of 14 floats each). Sliver by sliver, the columns lay
 * 4 KiB apart (csa = 1024 floats for tconv 4x4/2 128->64) in one L1 set: 11-15% of that
 * layer on one thread. */
__attribute__((target("avx512f"))) static void pack_a_t_avx512_f32(int64_t mc, int64_t kc,
                                                                    const float *a,
                                                                    int64_t csa, float *Ap) {
    for (int64_t k = 0; k < kc; k++) {
        const float *ak = a + k * csa;
        float *dst = Ap + k * AVX512_MR;
        for (int64_t i0 = 0; i0 < mc; i0 += AVX512_MR, dst += AVX512_MR * kc) {
            const int64_t m = mc - i0 < AVX512_MR ? mc - i0 : AVX512_MR;
            _mm512_mask_storeu_ps(dst, (__mmask16)0x3FFF,
                                  _mm512_maskz_loadu_ps((__mmask16)((1u << m) - 1u), ak + i0));
        }
    }
}

/* pack_a for one full AVX-512 float sliver of row-major A (the conv weights):
 * Ap[k*14 + i] = a[i*rsa + k]. Sixteen columns at a time: 14 rows (and 2 zero rows) are
 * loaded as 16 vectors and transposed in registers (fc_transpose16_f32), and each column is
 * stored as 14 contiguous values. The scalar loop does the same with one 4-byte load and
 * store per value. */
__attribute__((target("avx512f"))) static void pack_a_avx512_f32(int64_t kc, const float *a,
                                                                  int64_t rsa, float *Ap) {
    int64_t k0 = 0;
    for (; k0 + 16 <= kc; k0 += 16) {
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            r[i] = i < AVX512_MR ? _mm512_loadu_ps(a + i * rsa + k0) : _mm512_setzero_ps();
        fc_transpose16_f32(r);
#pragma GCC unroll 16
        for (int k = 0; k < 16; k++) _mm512_mask_storeu_ps(Ap + (k0 + k) * AVX512_MR, 0x3FFF, r[k]);
    }
    for (; k0 < kc; k0++)
        for (int i = 0; i < AVX512_MR; i++) Ap[k0 * AVX512_MR + i] = a[i * rsa + k0];
}

/* AVX2: 16 ymm registers, so 6 rows x 2 vectors = 12 for C, 2 for the B row, 1 broadcast. */
#define AVX2_MR 6

/* The tail's activation on an AVX2 vector, as act_vec_f32 (a NaN stays NaN, -0 stays -0). */
__attribute__((target("avx2,fma"))) static inline __m256 act_vec_avx2_f32(__m256 v,
                                                                         int activation) {
    const __m256 zero = _mm256_setzero_ps();
    if (activation == FC_ACT_RELU || activation == FC_ACT_RELU6)
        v = _mm256_blendv_ps(v, zero, _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
    if (activation == FC_ACT_RELU6) {
        const __m256 six = _mm256_set1_ps(6.0f);
        v = _mm256_blendv_ps(v, six, _mm256_cmp_ps(v, six, _CMP_GT_OQ));
    }
    return v;
}

/* The GEMM tail on one AVX2 vector of a tile's row, in registers: tail_vec_f32's operations
 * in its order (bias, scale and shift, residual, activation), so the same bits as the tail's
 * separate passes. res: the row's residual at the vector's first column (NULL: none), read
 * whole (full) or through the mask k. */
__attribute__((target("avx2,fma"))) static inline __m256 tail_vec_avx2_f32(
    const fc_gemm_tail *t, __m256 v, int64_t row, const float *res, __m256i k, int full) {
    const float *bias = t->bias, *scale = t->scale, *shift = t->shift;
    if (bias) v = _mm256_add_ps(v, _mm256_set1_ps(bias[row]));
    if (scale)
        v = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(scale[row]), v),
                          _mm256_set1_ps(shift ? shift[row] : 0.0f));
    else if (shift)
        v = _mm256_add_ps(v, _mm256_set1_ps(shift[row]));
    if (res) v = _mm256_add_ps(v, full ? _mm256_loadu_ps(res) : _mm256_maskload_ps(res, k));
    return act_vec_avx2_f32(v, t->activation);
}

/* A(i, k) = a[i*ars + k*aks]: packed (1, AVX2_MR) or in place (rsa, 1), as the AVX-512 body.
 * two (a compile-time constant): both column vectors, or only the first when n <= 8 (an
 * edge tile then takes half the multiply-adds). With t (not NULL) also the tail, in
 * registers before the store, the tile being at row i0, column j0 of the whole product: as
 * a separate pass over the stored tile it was 27% of a 1x1 64->256 @56 conv with a bias and
 * ReLU (K = 64), against 48% for the multiply. */
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void
ukr_avx2_f32_body(int64_t kc, const float *restrict a, int64_t ars, int64_t aks,
                  const float *restrict b, float *restrict c, int64_t ldc, int acc, int64_t m,
                  int64_t n, const fc_gemm_tail *t, int64_t i0, int64_t j0, const int two) {
    __m256 r0[AVX2_MR], r1[AVX2_MR];
#pragma GCC unroll 6
    for (int i = 0; i < AVX2_MR; i++) r0[i] = r1[i] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_loadu_ps(b);
        const __m256 b1 = two ? _mm256_loadu_ps(b + 8) : _mm256_setzero_ps();
#pragma GCC unroll 6
        for (int i = 0; i < AVX2_MR; i++) {
            __m256 ai = _mm256_broadcast_ss(a + i * ars);
            r0[i] = _mm256_fmadd_ps(ai, b0, r0[i]);
            if (two) r1[i] = _mm256_fmadd_ps(ai, b1, r1[i]);
        }
        a += aks;
        b += 16;
    }
    /* Edge tiles: rows past m are not stored; columns past n are masked off (maskload /
     * maskstore never touch masked-out memory), used only on edges as they are slower. */
    const int full = n == 16;
    const __m256i nn = _mm256_set1_epi32((int)(n < 16 ? n : 16));
    const __m256i k0 = _mm256_cmpgt_epi32(nn, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i k1 = _mm256_cmpgt_epi32(nn, _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15));
#pragma GCC unroll 6
    for (int i = 0; i < AVX2_MR; i++) {
        if (i >= m) break;
        float *ci = c + i * ldc;
        if (acc) {
            r0[i] = _mm256_add_ps(r0[i], full ? _mm256_loadu_ps(ci) : _mm256_maskload_ps(ci, k0));
            if (two)
                r1[i] = _mm256_add_ps(r1[i], full ? _mm256_loadu_ps(ci + 8)
                                                  : _mm256_maskload_ps(ci + 8, k1));
        }
        if (t) {
            const float *res = t->residual;
            const float *ri = res ? res + (i0 + i) * t->ldr + j0 : NULL;
            r0[i] = tail_vec_avx2_f32(t, r0[i], i0 + i, ri, k0, full);
            if (two) r1[i] = tail_vec_avx2_f32(t, r1[i], i0 + i, ri ? ri + 8 : NULL, k1, full);
        }
        if (full) {
            _mm256_storeu_ps(ci, r0[i]);
            _mm256_storeu_ps(ci + 8, r1[i]);
        } else {
            _mm256_maskstore_ps(ci, k0, r0[i]);
            if (two) _mm256_maskstore_ps(ci + 8, k1, r1[i]);
        }
    }
}

__attribute__((target("avx2,fma"))) static void ukr_avx2_f32(
    int64_t kc, const float *restrict a, const float *restrict b, float *restrict c,
    int64_t ldc, int acc, int64_t m, int64_t n) {
    if (n > 8)
        ukr_avx2_f32_body(kc, a, 1, AVX2_MR, b, c, ldc, acc, m, n, NULL, 0, 0, 1);
    else
        ukr_avx2_f32_body(kc, a, 1, AVX2_MR, b, c, ldc, acc, m, n, NULL, 0, 0, 0);
}

/* The same with the tail t in registers (ukr_avx512_f32_tail's contract). */
__attribute__((target("avx2,fma"))) static void ukr_avx2_f32_tail(
    int64_t kc, const float *restrict a, const float *restrict b, float *restrict c,
    int64_t ldc, int acc, int64_t m, int64_t n, const fc_gemm_tail *t, int64_t i0,
    int64_t j0) {
    if (n > 8)
        ukr_avx2_f32_body(kc, a, 1, AVX2_MR, b, c, ldc, acc, m, n, t, i0, j0, 1);
    else
        ukr_avx2_f32_body(kc, a, 1, AVX2_MR, b, c, ldc, acc, m, n, t, i0, j0, 0);
}

/* A read in place (ukr_avx512_f32_rows' contract), t NULL or not. */
__attribute__((target("avx2,fma"))) static void ukr_avx2_f32_rows(
    int64_t kc, const float *restrict a, int64_t rsa, const float *restrict b,
    float *restrict c, int64_t ldc, int acc, int64_t m, int64_t n, const fc_gemm_tail *t,
    int64_t i0, int64_t j0) {
    if (n > 8)
        ukr_avx2_f32_body(kc, a, rsa, 1, b, c, ldc, acc, m, n, t, i0, j0, 1);
    else
        ukr_avx2_f32_body(kc, a, rsa, 1, b, c, ldc, acc, m, n, t, i0, j0, 0);
}

__attribute__((target("avx2,fma"))) static void ukr_avx2_f64(
    int64_t kc, const double *restrict a, const double *restrict b, double *restrict c,
    int64_t ldc, int acc, int64_t m, int64_t n) {
    __m256d r0[AVX2_MR], r1[AVX2_MR];
#pragma GCC unroll 6
    for (int i = 0; i < AVX2_MR; i++) r0[i] = r1[i] = _mm256_setzero_pd();
    for (int64_t k = 0; k < kc; k++) {
        __m256d b0 = _mm256_loadu_pd(b), b1 = _mm256_loadu_pd(b + 4);
#pragma GCC unroll 6
        for (int i = 0; i < AVX2_MR; i++) {
            __m256d ai = _mm256_broadcast_sd(a + i);
            r0[i] = _mm256_fmadd_pd(ai, b0, r0[i]);
            r1[i] = _mm256_fmadd_pd(ai, b1, r1[i]);
        }
        a += AVX2_MR;
        b += 8;
    }
    const __m256i nn = _mm256_set1_epi64x(n < 8 ? n : 8);
    const __m256i k0 = _mm256_cmpgt_epi64(nn, _mm256_setr_epi64x(0, 1, 2, 3));
    const __m256i k1 = _mm256_cmpgt_epi64(nn, _mm256_setr_epi64x(4, 5, 6, 7));
#pragma GCC unroll 6
    for (int i = 0; i < AVX2_MR; i++) {
        if (i >= m) break;
        double *ci = c + i * ldc;
        if (n == 8) {
            if (acc) {
                r0[i] = _mm256_add_pd(r0[i], _mm256_loadu_pd(ci));
                r1[i] = _mm256_add_pd(r1[i], _mm256_loadu_pd(ci + 4));
            }
            _mm256_storeu_pd(ci, r0[i]);
            _mm256_storeu_pd(ci + 4, r1[i]);
        } else {
            if (acc) {
                r0[i] = _mm256_add_pd(r0[i], _mm256_maskload_pd(ci, k0));
                r1[i] = _mm256_add_pd(r1[i], _mm256_maskload_pd(ci + 4, k1));
            }
            _mm256_maskstore_pd(ci, k0, r0[i]);
            _mm256_maskstore_pd(ci + 4, k1, r1[i]);
        }
    }
}

#endif /* __x86_64__ */

/* The same source, compiled once per dtype: the section below (after #else) is included twice
 * with T = float / double and FN(name) = name_f32 / name_f64 (see common.h). */
#define FC_INSTANTIATE "gemm.c"
#include "common.h"

#else /* ------------------------------------------------------------ typed section */

typedef void (*FN(ukr_fn))(int64_t kc, const T *restrict a, const T *restrict b, T *restrict c,
                           int64_t ldc, int acc, int64_t m, int64_t n);

/* Portable micro-kernel, 4 x 8: plain loops over a small array that the compiler keeps in
 * vector registers of the baseline ISA (SSE2 on x86-64: 8 registers of C for float, 16 for
 * double). Wider tiles (4 x 16 float) measured 4x slower: GCC then vectorises along k with
 * shuffles instead of along j. */
static void FN(ukr_portable)(int64_t kc, const T *restrict a, const T *restrict b,
                             T *restrict c, int64_t ldc, int acc, int64_t m, int64_t n) {
    enum { MR = 4, NR = 8 };
    T r[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) r[i][j] = 0;
    for (int64_t k = 0; k < kc; k++) {
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) r[i][j] += a[i] * b[j];
        a += MR;
        b += NR;
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) c[i * ldc + j] = acc ? c[i * ldc + j] + r[i][j] : r[i][j];
}

/* pack_a: the mc x kc block of A at (0, 0) into slivers of mr rows, each k-major
 * (Ap[s*mr*kc + k*mr + i] = A(s*mr + i, k)); rows past mc are zero so that the micro-kernel
 * always works on full tiles. */
static void FN(pack_a)(int64_t mc, int64_t kc, const T *A, int64_t rsa, int64_t csa, T *Ap,
                       int64_t mr) {
    /* A transposed A (rows contiguous) is read column by column, each column once, in order,
     * into every sliver; any other A is written in order, read as mr streams (rows of A):
     * measured faster than walking the rows of a row-major A and scattering. */
#if defined(__x86_64__)
    if (!IS_F64 && rsa == 1 && mr == AVX512_MR && kernel_usable(FC_GEMM_AVX512)) {
        pack_a_t_avx512_f32(mc, kc, (const float *)A, csa, (float *)Ap);
        return;
    }
#endif
    if (rsa == 1) { /* a transposed A: column k read once, in order, into every sliver */
        for (int64_t k = 0; k < kc; k++) {
            const T *ak = A + k * csa;
            T *dst = Ap + k * mr;
            for (int64_t i0 = 0; i0 < mc; i0 += mr, dst += mr * kc) {
                const int64_t m = min64(mr, mc - i0);
                for (int64_t i = 0; i < m; i++) dst[i] = ak[i0 + i];
                for (int64_t i = m; i < mr; i++) dst[i] = 0;
            }
        }
        return;
    }
    for (int64_t i0 = 0; i0 < mc; i0 += mr) {
        int64_t m = min64(mr, mc - i0);
        const T *a = A + i0 * rsa;
#if defined(__x86_64__)
        if (!IS_F64 && csa == 1 && m == AVX512_MR && mr == AVX512_MR &&
            kernel_usable(FC_GEMM_AVX512)) { /* a full float sliver of row-major A */
            pack_a_avx512_f32(kc, (const float *)a, rsa, (float *)Ap);
            Ap += mr * kc;
            continue;
        }
#endif
        for (int64_t k = 0; k < kc; k++) {
            for (int64_t i = 0; i < m; i++) Ap[k * mr + i] = a[i * rsa + k * csa];
            for (int64_t i = m; i < mr; i++) Ap[k * mr + i] = 0;
        }
        Ap += mr * kc;
    }
}

/* pack_b: the kc x nc panel of B at (0, 0) into slivers of nr columns, each k-major
 * (Bp[s*nr*kc + k*nr + j] = B(k, s*nr + j)); columns past nc are zero. The whole slivers
 * eight rows of B at a time: eight rows read in order, each sliver's eight rows written
 * together. Sliver by sliver over all kc rows, every 128-byte piece came from another row,
 * ldb apart and often on another page, too many streams to prefetch (a transposed conv whose
 * 8 MB of weights are B, tconv 4x4/2 512->256 @4: half of its time here on one thread,
 * `perf`); row by row, the writes went to every sliver, kc*nr apart, into one L1 set. */
#define PACK_B_ROWS 8
static void FN(pack_b)(int64_t kc, int64_t nc, const T *B, int64_t ldb, T *Bp, int64_t nr) {
    const int64_t whole = nc / nr;
    for (int64_t k0 = 0; k0 < kc; k0 += PACK_B_ROWS) {
        const int64_t k1 = min64(kc, k0 + PACK_B_ROWS);
        for (int64_t sl = 0; sl < whole; sl++)
            for (int64_t k = k0; k < k1; k++)
                memcpy(Bp + sl * nr * kc + k * nr, B + k * ldb + sl * nr,
                       (size_t)nr * sizeof(T));
    }
    const int64_t j0 = whole * nr, n = nc - j0;
    if (n > 0) {
        T *d = Bp + whole * nr * kc;
        for (int64_t k = 0; k < kc; k++) {
            for (int64_t j = 0; j < n; j++) d[k * nr + j] = B[k * ldb + j0 + j];
            for (int64_t j = n; j < nr; j++) d[k * nr + j] = 0;
        }
    }
}
#undef PACK_B_ROWS

/* The tail (fc_gemm_tail, fastconv.h) on the m x n tile of C at row i0, column j0 of the whole
 * product, right after the micro-kernel stored its last K block (the tile is in L1): the
 * bias, then the conv epilogue's own row function (fc_epilogue_row, common.h) with the
 * tail's per-row scale, shift and activation (no contraction into FMA under -std=c11), so
 * the results equal separate passes bit for bit. One body, compiled for the baseline ISA and
 * inlined into AVX2 / AVX-512 copies so that its loops vectorise at the kernel's width. */
static inline __attribute__((always_inline)) void FN(tail_body)(const fc_gemm_tail *t,
                                                                T *restrict c, int64_t ldc,
                                                                int64_t i0, int64_t j0,
                                                                int64_t m, int64_t n) {
    const fc_epilogue e = {.scale = t->scale, .shift = t->shift, .residual = t->residual,
                           .activation = t->activation};
    const T *bias = t->bias, *res = t->residual;
    for (int64_t i = 0; i < m; i++) {
        T *restrict ci = c + i * ldc;
        if (bias) {
            const T bi = bias[i0 + i];
            for (int64_t j = 0; j < n; j++) ci[j] += bi;
        }
        FN(fc_epilogue_row)(&e, i0 + i, ci, res ? res + (i0 + i) * t->ldr + j0 : NULL, n);
    }
}

typedef void (*FN(tail_fn))(const fc_gemm_tail *t, T *c, int64_t ldc, int64_t i0, int64_t j0,
                            int64_t m, int64_t n);
static void FN(tail_base)(const fc_gemm_tail *t, T *c, int64_t ldc, int64_t i0, int64_t j0,
                          int64_t m, int64_t n) {
    FN(tail_body)(t, c, ldc, i0, j0, m, n);
}
#if defined(__x86_64__)
__attribute__((target("avx2"))) static void FN(tail_avx2)(const fc_gemm_tail *t, T *c,
                                                          int64_t ldc, int64_t i0, int64_t j0,
                                                          int64_t m, int64_t n) {
    FN(tail_body)(t, c, ldc, i0, j0, m, n);
}
__attribute__((target("avx512f"))) static void FN(tail_avx512)(const fc_gemm_tail *t, T *c,
                                                               int64_t ldc, int64_t i0,
                                                               int64_t j0, int64_t m,
                                                               int64_t n) {
    FN(tail_body)(t, c, ldc, i0, j0, m, n);
}
#endif

/* A micro-kernel that applies the tail itself, in registers before its store. */
typedef void (*FN(ukt_fn))(int64_t kc, const T *restrict a, const T *restrict b,
                           T *restrict c, int64_t ldc, int acc, int64_t m, int64_t n,
                           const fc_gemm_tail *t, int64_t i0, int64_t j0);

/* The micro-kernel of a resolved kernel (one the CPU runs) and its tail: fused into the
 * micro-kernel (ukt; the float AVX-512 and AVX2 kernels) or else run on the
 * stored tile (tf), compiled for the kernel's ISA. */
typedef struct {
    FN(ukr_fn) ukr;
    FN(ukt_fn) ukt; /* or NULL */
    FN(tail_fn) tf;
} FN(tile_kernels);

static FN(tile_kernels) FN(tile_kernels_for)(int kernel) {
    FN(tile_kernels) k = {FN(ukr_portable), NULL, FN(tail_base)};
#if defined(__x86_64__)
    if (kernel == FC_GEMM_AVX512) {
        k.ukr = FN(ukr_avx512);
        k.tf = FN(tail_avx512);
#if !IS_F64
        k.ukt = ukr_avx512_f32_tail;
#endif
    } else if (kernel == FC_GEMM_AVX2) {
        k.ukr = FN(ukr_avx2);
        k.tf = FN(tail_avx2);
#if !IS_F64
        k.ukt = ukr_avx2_f32_tail;
#endif
    }
#endif
    (void)kernel;
    return k;
}

/* One micro-tile at row i0, column j0 of the whole product, then its tail t (NULL: none). */
static inline void FN(run_tile)(const FN(tile_kernels) *k, int64_t kc, const T *a, const T *b,
                                T *c, int64_t ldc, int acc, int64_t m, int64_t n,
                                const fc_gemm_tail *t, int64_t i0, int64_t j0) {
    if (t && k->ukt) {
        k->ukt(kc, a, b, c, ldc, acc, m, n, t, i0, j0);
    } else {
        k->ukr(kc, a, b, c, ldc, acc, m, n);
        if (t) k->tf(t, c, ldc, i0, j0, m, n);
    }
}

/* macro-kernel: C (mc x nc) (+)= packed A block * packed B panel, one micro-tile at a time;
 * the micro-kernel itself clips the edge tiles. t (or NULL): the tail, on each tile as soon as
 * it is stored, the block being at row i0, column j0 of the whole product. */
static void FN(macro_kernel)(const FN(tile_kernels) *k, blocking bk, int64_t mc, int64_t nc,
                             int64_t kc, const T *Ap, const T *Bp, T *C, int64_t ldc, int acc,
                             const fc_gemm_tail *t, int64_t i0, int64_t j0) {
    for (int64_t jr = 0; jr < nc; jr += bk.nr)
        for (int64_t ir = 0; ir < mc; ir += bk.mr)
            FN(run_tile)(k, kc, Ap + ir * kc, Bp + jr * kc, C + ir * ldc + jr, ldc, acc,
                         min64(bk.mr, mc - ir), min64(bk.nr, nc - jr), t, i0 + ir, j0 + jr);
}

static void FN(gemm_naive)(int64_t M, int64_t N, int64_t K, const T *A, int64_t rsa, int64_t csa,
                           const T *B, int64_t ldb, T *C, int64_t ldc, int accumulate) {
    for (int64_t i = 0; i < M; i++) {
        T *c = C + i * ldc;
        if (!accumulate)
            for (int64_t j = 0; j < N; j++) c[j] = 0;
        for (int64_t k = 0; k < K; k++) {
            T aik = A[i * rsa + k * csa];
            const T *b = B + k * ldb;
            for (int64_t j = 0; j < N; j++) c[j] += aik * b[j];
        }
    }
}

#define IN_PLACE_MAX_N 256

/* Whether a GEMM reads A in place (fc_gemm_ep with csa = 1 does then; fc_gemm_a_in_place_ep
 * runs only then): a float vector kernel and N <= IN_PLACE_MAX_N. Else the caller packs A
 * and calls fc_gemm_packed_ep. */
int FN(fc_gemm_a_in_place_ok)(int kernel, int64_t N) {
    kernel = resolve_kernel(kernel);
    return !IS_F64 && (kernel == FC_GEMM_AVX512 || kernel == FC_GEMM_AVX2) && N >= 1 &&
           N <= IN_PLACE_MAX_N;
}

#if defined(__x86_64__) && !IS_F64
/* One K block (kc) of the float GEMM with few columns (N <= IN_PLACE_MAX_N: 8 AVX-512 or 16
 * AVX2 B slivers) on a vector kernel: A is read in place (ukr_avx512_f32_rows /
 * ukr_avx2_f32_rows), each strip of mr rows against every sliver while its kc slice (14 or
 * 6 KB) is in L1; a last strip of fewer rows is packed (into Ap, mr x kc), and when the 14
 * rows of an AVX-512 strip put more than IN_PLACE_MAX_ROWS_PER_SET in one L1 set, each
 * strip is read as two of 7 rows (ukr_avx512_f32_rows7). a: the
 * block's first column of A (row stride rsa); b: its first row of the packed B, slivers bsl
 * elements apart. The tiles of the packed loops, so the same bits. */
static void FN(a_in_place_block)(const FN(tile_kernels) *tk, blocking bk, int avx512,
                                 int64_t M, int64_t N, int64_t kc, const T *A, int64_t rsa,
                                 const T *b, int64_t bsl, T *C, int64_t ldc, int acc, T *Ap,
                                 const fc_gemm_tail *tl) {
    const int alias =
        avx512 && rows_per_l1_set(bk.mr, rsa * (int64_t)sizeof(T)) > IN_PLACE_MAX_ROWS_PER_SET;
    /* a last sliver that the packed kernel multiplies with rows as lanes (ukr_avx512_f32_lanes):
     * the strips are packed for it (a 49-column product, 3x3 512->512 @7: 2.78 -> 2.67 ms on
     * one thread, 1.58 -> 1.53 on two; not where the strips alias: 1x1 1024->2048 /2 @14
     * ran 4% slower packed than as strips of 7 rows) */
    const int lanes_edge = avx512 && LANES_EDGE(N % bk.nr);
    for (int64_t ir = 0; ir < M; ir += bk.mr) {
        const int64_t m = min64(bk.mr, M - ir);
        const T *a = A + ir * rsa;
        if (avx512 && alias && m == bk.mr) {
            /* two strips of 7 rows, each at most 7 to an L1 set, in place */
            for (int64_t h = 0; h < bk.mr; h += 7)
                for (int64_t jr = 0; jr < N; jr += bk.nr)
                    ukr_avx512_f32_rows7(kc, a + h * rsa, rsa, b + jr / bk.nr * bsl,
                                         C + (ir + h) * ldc + jr, ldc, acc, 7,
                                         min64(bk.nr, N - jr), tl, ir + h, jr);
            continue;
        }
        const int packed = m < bk.mr || lanes_edge;
        if (packed) FN(pack_a)(m, kc, a, rsa, 1, Ap, bk.mr);
        /* the next strip's rows, prefetched under this strip's first whole tile */
        const T *pf = avx512 && lanes_edge && m == bk.mr && ir + 2 * bk.mr <= M && N >= bk.nr
                          ? a + bk.mr * rsa
                          : NULL;
        for (int64_t jr = 0; jr < N; jr += bk.nr) {
            T *c = C + ir * ldc + jr;
            const T *bj = b + jr / bk.nr * bsl;
            const int64_t n = min64(bk.nr, N - jr);
            if (packed && pf) {
                ukr_avx512_f32_pf(kc, Ap, bj, c, ldc, acc, tl, ir, jr, pf, rsa);
                pf = NULL;
            } else if (packed) {
                FN(run_tile)(tk, kc, Ap, bj, c, ldc, acc, m, n, tl, ir, jr);
            } else if (avx512) {
                ukr_avx512_f32_rows(kc, a, rsa, bj, c, ldc, acc, m, n, tl, ir, jr);
            } else {
                ukr_avx2_f32_rows(kc, a, rsa, bj, c, ldc, acc, m, n, tl, ir, jr);
            }
        }
    }
}

/* The blocked GEMM's K loop with A in place, for a resolved float vector kernel. B (row
 * stride ldb) is packed one K block at a time into Bbuf; B NULL: Bp holds all of B packed,
 * slivers of K rows ([sliver][K][nr], fc_gemm_a_in_place_ep). The tail t on the last block. */
static void FN(gemm_a_in_place)(int kernel, int64_t M, int64_t N, int64_t K, const T *A,
                                int64_t rsa, const T *B, int64_t ldb, T *Bbuf, const T *Bp,
                                T *C, int64_t ldc, int accumulate, T *Ap,
                                const fc_gemm_tail *t) {
    const blocking bk = blocking_of(kernel, IS_F64);
    const FN(tile_kernels) tk = FN(tile_kernels_for)(kernel);
    const int64_t kc_even = even_block(K, bk.kc);
    for (int64_t pc = 0; pc < K; pc += kc_even) {
        const int64_t kc = min64(kc_even, K - pc);
        if (B) FN(pack_b)(kc, N, B + pc * ldb, ldb, Bbuf, bk.nr);
        FN(a_in_place_block)(&tk, bk, kernel == FC_GEMM_AVX512, M, N, kc, A + pc, rsa,
                             B ? Bbuf : Bp + pc * bk.nr, (B ? kc : K) * bk.nr, C, ldc,
                             accumulate || pc > 0, Ap, pc + kc == K ? t : NULL);
    }
}
#endif

static void FN(gemm_impl)(int kernel, int64_t M, int64_t N, int64_t K, const T *A, int64_t rsa,
                          int64_t csa, const T *B, int64_t ldb, T *C, int64_t ldc,
                          int accumulate, T *work, const fc_gemm_tail *t) {
    /* M, N >= 0; K >= 0 (K = 0 gives C = 0 or leaves C); ldb, ldc >= N; work has
     * fc_gemm_work_elems(kernel, IS_F64, M, N, K) elements (none for NAIVE). */
    FC_ASSERT(M >= 0 && N >= 0 && K >= 0);
    if (M <= 0 || N <= 0) return;
    FC_ASSERT(ldc >= N && (K <= 1 || ldb >= N));
    kernel = resolve_kernel(kernel);
    FC_ASSERT(kernel == FC_GEMM_NAIVE || K <= 0 || work != NULL);
    if (kernel == FC_GEMM_NAIVE || K <= 0) {
        FN(gemm_naive)(M, N, K, A, rsa, csa, B, ldb, C, ldc, accumulate);
        if (t) FN(tail_base)(t, C, ldc, 0, 0, M, N);
        return;
    }
    blocking bk = blocking_of(kernel, IS_F64);
    const FN(tile_kernels) tk = FN(tile_kernels_for)(kernel);
    int64_t mc_max = min64(bk.mc, round_up(M, bk.mr));
    int64_t kc_max = min64(bk.kc, K);
    const int64_t kc_even = even_block(K, bk.kc);
    T *Ap = (T *)(((uintptr_t)work + 63) & ~(uintptr_t)63);
    T *Bp = (T *)(((uintptr_t)(Ap + mc_max * kc_max) + 63) & ~(uintptr_t)63);
#if defined(__x86_64__) && !IS_F64
    if (csa == 1 && FN(fc_gemm_a_in_place_ok)(kernel, N)) {
        FN(gemm_a_in_place)(kernel, M, N, K, A, rsa, B, ldb, Bp, NULL, C, ldc, accumulate, Ap,
                            t);
        return;
    }
#endif
    for (int64_t jc = 0; jc < N; jc += bk.nc) {
        int64_t nc = min64(bk.nc, N - jc);
        for (int64_t pc = 0; pc < K; pc += kc_even) {
            int64_t kc = min64(kc_even, K - pc);
            FN(pack_b)(kc, nc, B + pc * ldb + jc, ldb, Bp, bk.nr);
            for (int64_t ic = 0; ic < M; ic += bk.mc) {
                int64_t mc = min64(bk.mc, M - ic);
                FN(pack_a)(mc, kc, A + ic * rsa + pc * csa, rsa, csa, Ap, bk.mr);
                FN(macro_kernel)(&tk, bk, mc, nc, kc, Ap, Bp, C + ic * ldc + jc, ldc,
                                 accumulate || pc > 0, pc + kc == K ? t : NULL, ic, jc);
            }
        }
    }
}

void FN(fc_gemm)(int kernel, int64_t M, int64_t N, int64_t K, const T *A, int64_t rsa,
                 int64_t csa, const T *B, int64_t ldb, T *C, int64_t ldc, int accumulate,
                 T *work) {
    FN(gemm_impl)(kernel, M, N, K, A, rsa, csa, B, ldb, C, ldc, accumulate, work, NULL);
}

/* fc_gemm, then the tail on every tile of C once it holds the whole product (t NULL: none). */
void FN(fc_gemm_ep)(int kernel, int64_t M, int64_t N, int64_t K, const T *A, int64_t rsa,
                    int64_t csa, const T *B, int64_t ldb, T *C, int64_t ldc, int accumulate,
                    T *work, const fc_gemm_tail *t) {
    FN(gemm_impl)(kernel, M, N, K, A, rsa, csa, B, ldb, C, ldc, accumulate, work, t);
}

/* Entry points for callers that pack their own operands (conv2d's best path packs the
 * weights once per call and builds B with im2col straight into sliver layout). Layouts:
 *   Ap [ceil(M/mr)][a_k][mr]  (fc_pack_a, a_k = K),   Bp [ceil(N/nr)][K][nr]  (fc_im2col_packed)
 * zero-padded past M / N. A KC-long slice of a sliver is contiguous, so the loops below are
 * the blocked GEMM's with MC = M and NC = N and no packing. */
void FN(fc_pack_a)(int kernel, int64_t M, int64_t K, const T *A, int64_t rsa, int64_t csa,
                   T *Ap) {
    /* M, K >= 0; Ap holds round_up(M, mr) * K elements */
    FC_ASSERT(M >= 0 && K >= 0);
    kernel = resolve_kernel(kernel);
    FN(pack_a)(M, K, A, rsa, csa, Ap, blocking_of(kernel, IS_F64).mr);
}

/* fc_gemm_packed with the tail (fc_gemm_tail) applied on every tile at its last K block; t
 * NULL: none. A caller that splits K into chunks passes t with its last chunk only. */
void FN(fc_gemm_packed_ep)(int kernel, int64_t M, int64_t N, int64_t K, const T *Ap,
                           int64_t a_k, const T *Bp, T *C, int64_t ldc, int accumulate,
                           const fc_gemm_tail *t) {
    /* kernel as given to fc_pack_a / fc_im2col_packed (same mr, nr); M, N, K >= 1; Ap's
     * slivers are a_k >= K long (a K-slice of a bigger packed A starts at Ap + k0*mr) */
    FC_ASSERT(M >= 1 && N >= 1 && K >= 1 && a_k >= K && ldc >= N);
    kernel = resolve_kernel(kernel);
    if (kernel == FC_GEMM_NAIVE) kernel = FC_GEMM_PORTABLE;
    const blocking bk = blocking_of(kernel, IS_F64);
    const FN(tile_kernels) tk = FN(tile_kernels_for)(kernel);
    const int64_t kc_even = even_block(K, bk.kc);
    for (int64_t pc = 0; pc < K; pc += kc_even) {
        const int64_t kc = min64(kc_even, K - pc);
        const int acc = accumulate || pc > 0;
        const fc_gemm_tail *tl = pc + kc == K ? t : NULL;
        for (int64_t jr = 0; jr < N; jr += bk.nr) {
            const T *b = Bp + jr * K + pc * bk.nr; /* sliver jr / nr, rows from pc */
            for (int64_t ir = 0; ir < M; ir += bk.mr)
                FN(run_tile)(&tk, kc, Ap + ir * a_k + pc * bk.mr, b, C + ir * ldc + jr, ldc,
                             acc, min64(bk.mr, M - ir), min64(bk.nr, N - jr), tl, ir, jr);
        }
    }
}

void FN(fc_gemm_packed)(int kernel, int64_t M, int64_t N, int64_t K, const T *Ap,
                        int64_t a_k, const T *Bp, T *C, int64_t ldc, int accumulate) {
    FN(fc_gemm_packed_ep)(kernel, M, N, K, Ap, a_k, Bp, C, ldc, accumulate, NULL);
}

/* fc_gemm_packed_ep with A row-major in place (A(i, k) = A[i*rsa + k]) instead of packed:
 * for a caller that would pack A only to multiply it by a few B slivers (conv2d's tasks
 * that pack their own rows). Ap: mr x K elements for an edge strip of fewer than mr rows.
 * The same bits as packing A and fc_gemm_packed_ep. Only where fc_gemm_a_in_place_ok (the
 * caller checks; elsewhere, e.g. for doubles, this does nothing and C is not written). */
void FN(fc_gemm_a_in_place_ep)(int kernel, int64_t M, int64_t N, int64_t K, const T *A,
                               int64_t rsa, const T *Bp, T *C, int64_t ldc, int accumulate,
                               const fc_gemm_tail *t, T *Ap) {
    FC_ASSERT(M >= 1 && K >= 1 && rsa >= K && ldc >= N && FN(fc_gemm_a_in_place_ok)(kernel, N));
#if defined(__x86_64__) && !IS_F64
    FN(gemm_a_in_place)(resolve_kernel(kernel), M, N, K, A, rsa, NULL, 0, NULL, Bp, C, ldc,
                        accumulate, Ap, t);
#else
    (void)M, (void)K, (void)A, (void)rsa, (void)Bp, (void)C, (void)accumulate, (void)t, (void)Ap;
#endif
}

#endif /* FC_TYPED */
