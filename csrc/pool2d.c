/* pool2d.c: max / average / adaptive pooling, forward and backward, float32 and float64.
 *
 * Kernels (each as _f32 and _f64; shapes and rules in fastconv/backends/__init__.py):
 *   fc_max_pool2d                    window maximum, NaN-propagating, optional int64 indices
 *   fc_avg_pool2d                    window mean with torch's divisor rules
 *   fc_adaptive_avg_pool2d           mean over bins [floor(i*In/Out), ceil((i+1)*In/Out))
 *   fc_adaptive_max_pool2d           maximum over the same bins, rules of fc_max_pool2d
 *   fc_max_pool2d_backward           gx = 0, then scatter-add gy through the indices
 *   fc_avg_pool2d_backward           the adjoint of fc_avg_pool2d
 *   fc_adaptive_avg_pool2d_backward  the adjoint of fc_adaptive_avg_pool2d
 * The windowed kernels (max, avg and its backward) take their geometry as an fc_pool_shape;
 * the others take N, C, H, W, OH, OW.
 *
 * Layout of every forward kernel: chunks of the N*C planes on fastconv's thread pool
 * (fc_parallel_for, parallel.c; one thread when the call is small); inside a plane one
 * output row at a time. The row's columns split into the border (some tap of the window
 * falls outside [0, W): a scalar loop with bounds checks) and the interior (every tap
 * inside: branch-free loops along the output width that gcc vectorises; stride 1 and 2 get
 * their own copies so the loads have a constant stride). The plane functions are compiled
 * three times (AVX-512, AVX2+FMA, baseline x86-64) with __attribute__((target)) and picked
 * at run time by fc_dwpool_isa (FC_MULTIVERSION in common.h, the level in runtime.c), so one
 * build runs on any x86-64; other CPUs get portable C.
 *
 * Plane blocks (max, average and adaptive pooling of 16 or more planes whose output rows
 * are shorter than 64, with a scratch of at most 256 KB): 16 planes at a time are
 * interleaved (xs[pixel][plane], an AVX-512 register transpose for float32), every output's
 * window is scanned once for all 16 with one vector per tap, and the outputs go back the
 * same way. The per-plane loops spent most of a 7x7 or 14x14 plane in the scalar border
 * loop and rows of a few outputs: 8x2048x7x7 max 3x3/2 padding 1, 2 threads, 3.4 ms ->
 * 0.22 ms (torch 3.65), 1x512x14x14 max 2x2/2 289 -> 44 us (torch 101). Same taps in the
 * same order, so the same results as the per-plane loops (NaN signs aside); an adaptive
 * average of such a geometry sums each bin tap after tap in double, in the blocks and in
 * the per-plane loop alike (adaptive_avg_plane_seq).
 *
 * Three AVX-512 float32 paths replace the generic loops where they apply:
 *   3x3 max rows    max pooling with a 3x3 window (stride 1 or 2, column dilation 1) on
 *                   rows of >= 16 interior outputs: 16 outputs per step, the maximum and
 *                   the winning tap in registers over the 9 taps, one store of y and idx
 *                   (the generic loops make a pass over the row per tap, and their scalar
 *                   remainders branch on the data)
 *   global average  a 1x1 adaptive output over planes of up to 4096 values: 16 planes per
 *                   step, reduced together by a transpose-and-add tree instead of one
 *                   horizontal reduction per plane; the pool's chunks are whole blocks
 *                   of 16 planes. With AVX2 the same, 8 planes per step (the planes
 *                   read in memory order at both levels). Elsewhere (float64, the
 *                   portable level) each plane is one vectorised reduction.
 *   global max      a 1x1 adaptive max (a window of the whole plane is routed there):
 *                   16 planes per step, each lane of a plane's vector keeping the maximum
 *                   and its index of every 16th value, lanes and planes then merged by the
 *                   same tree with the scan order's rule (fc_gmp_wins). The generic loop
 *                   carried one compare-and-select chain per value: 8x2048x7x7, one thread,
 *                   1.44 ms -> 0.16 ms (AMD EPYC; torch 1.43 ms).
 *
 * The file instantiates itself twice (float, double, see common.h): the typed part below
 * FC_TYPED is included once per type with T the element type and FN(name) adding the _f32 /
 * _f64 suffix.
 *
 * Build: `python csrc/build_ffi.py` (in place) or `pip install -e .`.
 * Test: `pytest tests/test_c_pool.py`; time: `pytest bench/bench_pool.py --benchmark-enable`.
 */
#ifndef FC_TYPED

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"


/* -std=c11 turns floating-point contraction off; a*b + c may become one FMA here. */
#pragma GCC optimize("fp-contract=fast")

/* ------------------------------------------------------------------ geometry */

/* The window geometry of a pooling shape (average pooling: dh = dw = 1). */
static inline fc_win pool_win(const fc_pool_shape *s)
{
    return fc_win_make(s->H, s->W, s->OH, s->OW, s->KH, s->KW, s->sh, s->sw, s->ph, s->pw,
                       s->dh, s->dw);
}

/* First tap of a window starting at s (step d) at or after 0: max-pool's starting index. */
static inline int64_t fc_first_valid(int64_t s, int64_t d)
{
    return s < 0 ? s + (-s + d - 1) / d * d : s;
}

/* The planes of the kernels without a window (adaptive pooling, max-pool backward): N, C >= 0,
 * H, W, OH, OW >= 1. */
#define FC_ASSERT_PLANES(N, C, H, W, OH, OW) \
    FC_ASSERT((N) >= 0 && (C) >= 0 && (H) >= 1 && (W) >= 1 && (OH) >= 1 && (OW) >= 1)

/* Run body(ctx, p0, p1, slot) over the planes [0, planes) of an op whose whole work is
 * `cost` ns (fc_cost_mem): on one thread when that is too little to share (fc_team_for),
 * else on the pool in chunks of about 25 us (parallel.c). */
static inline void fc_planes_run(fc_range_fn body, void *ctx, int64_t planes, int64_t cost)
{
    const int team = fc_team_for(cost, fc_threads());
    fc_parallel_for(planes, fc_chunk_for(planes, cost, team), team, body, ctx);
}

/* Adaptive bins: [floor(i*In/Out), ceil((i+1)*In/Out)). */
static inline int64_t fc_bin_start(int64_t i, int64_t in, int64_t out) { return i * in / out; }
static inline int64_t fc_bin_end(int64_t i, int64_t in, int64_t out)
{
    return ceil_div((i + 1) * in, out);
}

/* ------------------------------------------------------------------ global average, AVX-512 */

#if defined(__x86_64__)
#include <immintrin.h>

/* Two vectors whose lanes hold partial sums of 2k planes (each plane a run of 16/k lanes)
 * become one vector of runs half as long, one per plane: the lower half of every run of
 * a and b (shuffle lo) plus the upper half (shuffle hi). Four such levels turn 16 vectors,
 * one per plane, into one vector of 16 plane sums: 15 adds and 30 shuffles for 16 planes
 * instead of a 4-step horizontal reduction for each plane. */
#define FC_GAP_LEVEL(a, b, shuf, lo, hi) _mm512_add_ps(shuf(a, b, lo), shuf(a, b, hi))

/* The order in which the global average and maximum load the 16 planes of a step, so that
 * their trees' output lanes come out in plane order (fc_global_avg_f32_avx512). */
static const int fc_gap_q[16] = {0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15};

/* The sum, lane by lane, of the n floats at xp: the partial last vector (tail) and the
 * nfull / 16 full ones, in two chains of adds. */
FC_T512 FC_INLINE __m512 fc_gap_plane(const float *restrict xp, int64_t nfull, __mmask16 tail)
{
    __m512 a = _mm512_maskz_loadu_ps(tail, xp + nfull), b = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= nfull; i += 32) {
        a = _mm512_add_ps(a, _mm512_loadu_ps(xp + i));
        b = _mm512_add_ps(b, _mm512_loadu_ps(xp + i + 16));
    }
    if (i < nfull)
        a = _mm512_add_ps(a, _mm512_loadu_ps(xp + i));
    return _mm512_add_ps(a, b);
}

/* Sum the 16 planes of n floats from x into v, plane q[k] into v[k] (q: fc_gap_q, its own
 * inverse, so plane p goes to v[q[p]]). Planes of 16 or more values are read one after
 * another, in memory order: the group's 16 n floats are then one stream, where loading the
 * planes in the tree's order q, a vector of each at a time, had jumped back and forth across
 * the block (8x2048x7x7, one thread: the kernel 50 -> 38 us, the read floor of the input
 * being 32 us; AMD EPYC, Zen 4). Planes of 48 to 63 values (7x7) are summed with their three
 * full vectors unrolled (a further 39 -> 37 us there, no gain at other sizes). Planes under
 * 16 values run side by side, 16 independent single-vector sums. Every index of v is a
 * constant once unrolled, so that v stays in registers. */
FC_T512 FC_INLINE void fc_gap_group(const float *restrict x, int64_t n, __m512 v[16])
{
    const int *q = fc_gap_q;
    const int64_t nfull = n & ~(int64_t)15;
    const __mmask16 tail = (__mmask16)((1u << (n & 15)) - 1u);
    if (n >> 4 == 3) {
#pragma GCC unroll 16
        for (int p = 0; p < 16; p++) {
            const float *xp = x + p * n;
            const __m512 a = _mm512_add_ps(_mm512_loadu_ps(xp), _mm512_loadu_ps(xp + 16));
            v[q[p]] = _mm512_add_ps(_mm512_add_ps(a, _mm512_loadu_ps(xp + 32)),
                                    _mm512_maskz_loadu_ps(tail, xp + 48));
        }
        return;
    }
    if (n >= 16) {
#pragma GCC unroll 16
        for (int p = 0; p < 16; p++)
            v[q[p]] = fc_gap_plane(x + p * n, nfull, tail);
        return;
    }
#pragma GCC unroll 16
    for (int k = 0; k < 16; k++)
        v[k] = _mm512_maskz_loadu_ps(tail, x + q[k] * n);
}

/* y[p] = mean of the n contiguous floats of plane p, for p < planes; 16 planes per step.
 * The planes of a step are loaded in the order fc_gap_q (q), so that the tree's
 * output lanes come out in plane order: level 1 pairs planes j and j+8 into 256-bit
 * halves, level 2 pairs 128-bit chunks, levels 3 and 4 pairs and single lanes inside a
 * chunk; lane k of the result then holds loaded plane q[k], and q is its own inverse. The
 * last planes of a call, fewer than 16, are summed one at a time (a step with planes
 * missing had the 16 sums spilled to memory in every step: 8x2048x7x7 in a loop of calls
 * from C, one thread 41.5 -> 37.4 us, two 24.2 -> 22.1). */
FC_T512 static void fc_global_avg_f32_avx512(const float *restrict x, float *restrict y,
                                             int64_t planes, int64_t n)
{
    const __m512 div = _mm512_set1_ps((float)n);
    const int64_t nfull = n & ~(int64_t)15;
    const __mmask16 tail = (__mmask16)((1u << (n & 15)) - 1u);
    int64_t p0 = 0;
    for (; p0 + 16 <= planes; p0 += 16) {
        __m512 v[16];
        fc_gap_group(x + p0 * n, n, v);
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++)
            v[k] = FC_GAP_LEVEL(v[k], v[k + 8], _mm512_shuffle_f32x4, 0x44, 0xEE);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            v[k] = FC_GAP_LEVEL(v[k], v[k + 4], _mm512_shuffle_f32x4, 0x88, 0xDD);
#pragma GCC unroll 2
        for (int k = 0; k < 2; k++)
            v[k] = FC_GAP_LEVEL(v[k], v[k + 2], _mm512_shuffle_ps, 0x44, 0xEE);
        v[0] = FC_GAP_LEVEL(v[0], v[1], _mm512_shuffle_ps, 0x88, 0xDD);
        _mm512_storeu_ps(y + p0, _mm512_div_ps(v[0], div));
    }
    for (; p0 < planes; p0++)
        y[p0] = _mm512_reduce_add_ps(fc_gap_plane(x + p0 * n, nfull, tail)) / (float)n;
}
#undef FC_GAP_LEVEL

/* ------------------------------------------------------------------ global average, AVX2 */

/* The AVX2 form of the tree above: 8 planes per step in 256-bit vectors, three levels
 * (128-bit halves, pairs, single lanes). Loaded in the order fc_gap_q8 (its own inverse),
 * the planes' sums come out in plane order. */
#define FC_GAP8_LEVEL(a, b, shuf, lo, hi) _mm256_add_ps(shuf(a, b, lo), shuf(a, b, hi))
static const int fc_gap_q8[8] = {0, 2, 1, 3, 4, 6, 5, 7};

/* The lanes below m of a 256-bit integer mask, for _mm256_maskload_ps (m in 0..8). */
FC_T256 FC_INLINE __m256i fc_gap_mask8(int64_t m)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)m), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The sum, lane by lane, of the n floats at xp: the partial last vector (lanes of tail)
 * and the nfull / 8 full ones, in two chains of adds. */
FC_T256 FC_INLINE __m256 fc_gap_plane8(const float *restrict xp, int64_t nfull, __m256i tail)
{
    __m256 a = _mm256_maskload_ps(xp + nfull, tail), b = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= nfull; i += 16) {
        a = _mm256_add_ps(a, _mm256_loadu_ps(xp + i));
        b = _mm256_add_ps(b, _mm256_loadu_ps(xp + i + 8));
    }
    if (i < nfull)
        a = _mm256_add_ps(a, _mm256_loadu_ps(xp + i));
    return _mm256_add_ps(a, b);
}

/* y[p] = mean of the n contiguous floats of plane p, for p < planes; 8 planes per step, read
 * in memory order, reduced together by the tree; the last planes of a call, fewer than 8,
 * one at a time (as in the AVX-512 copy, so that the 8 sums stay in registers). The
 * per-plane loop's horizontal reduction after every plane took 8x2048x7x7 at one thread to
 * 85 us, the numba engine's 71. */
FC_T256 static void fc_global_avg_f32_avx2(const float *restrict x, float *restrict y,
                                           int64_t planes, int64_t n)
{
    const int *q = fc_gap_q8;
    const __m256 div = _mm256_set1_ps((float)n);
    const int64_t nfull = n & ~(int64_t)7;
    const __m256i tail = fc_gap_mask8(n & 7);
    int64_t p0 = 0;
    for (; p0 + 8 <= planes; p0 += 8) {
        const float *xb = x + p0 * n;
        __m256 v[8];
#pragma GCC unroll 8
        for (int p = 0; p < 8; p++)
            v[q[p]] = fc_gap_plane8(xb + p * n, nfull, tail);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            v[k] = FC_GAP8_LEVEL(v[k], v[k + 4], _mm256_permute2f128_ps, 0x20, 0x31);
#pragma GCC unroll 2
        for (int k = 0; k < 2; k++)
            v[k] = FC_GAP8_LEVEL(v[k], v[k + 2], _mm256_shuffle_ps, 0x44, 0xEE);
        v[0] = FC_GAP8_LEVEL(v[0], v[1], _mm256_shuffle_ps, 0x88, 0xDD);
        _mm256_storeu_ps(y + p0, _mm256_div_ps(v[0], div));
    }
    for (; p0 < planes; p0++) {
        const __m256 a = fc_gap_plane8(x + p0 * n, nfull, tail);
        const __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        const __m128 h2 = _mm_add_ps(h, _mm_movehl_ps(h, h));
        y[p0] = _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1))) / (float)n;
    }
}
#undef FC_GAP8_LEVEL

/* ------------------------------------------------------------------ global max, AVX-512 */

/* Where the running maximum (bm, bi) of one part of a plane replaces (am, ai) of another
 * part, lane by lane, so that the pair kept is what a scan of the whole plane in index order
 * with FC_TAKE keeps: a NaN beats a number and the later NaN the earlier one; else the
 * greater value, and of equal ones (all -inf included) the earlier index. */
FC_T512 FC_INLINE __mmask16 fc_gmp_wins(__m512 am, __m512i ai, __m512 bm, __m512i bi)
{
    const __mmask16 an = _mm512_cmp_ps_mask(am, am, _CMP_UNORD_Q);
    const __mmask16 bn = _mm512_cmp_ps_mask(bm, bm, _CMP_UNORD_Q);
    const __mmask16 gt = _mm512_cmp_ps_mask(bm, am, _CMP_GT_OQ);
    const __mmask16 eq = _mm512_cmp_ps_mask(bm, am, _CMP_EQ_OQ);
    const __mmask16 later = _mm512_cmpgt_epi32_mask(bi, ai);
    return (__mmask16)((bn & (~an | later)) | (~an & ~bn & (gt | (eq & ~later))));
}

/* One level of the tree of fc_global_avg_f32_avx512 on (value, index) pairs: the lower and
 * upper halves of every run of a and b (shuffle lo / hi), the winner of each pair kept. */
#define FC_GMP_LEVEL(am, ai, bm, bi, shuf, lo, hi)                                            \
    do {                                                                                      \
        const __m512 lm_ = shuf(am, bm, lo), hm_ = shuf(am, bm, hi);                          \
        const __m512i li_ = _mm512_castps_si512(                                              \
            shuf(_mm512_castsi512_ps(ai), _mm512_castsi512_ps(bi), lo));                      \
        const __m512i hi_ = _mm512_castps_si512(                                              \
            shuf(_mm512_castsi512_ps(ai), _mm512_castsi512_ps(bi), hi));                      \
        const __mmask16 w_ = fc_gmp_wins(lm_, li_, hm_, hi_);                                 \
        am = _mm512_mask_mov_ps(lm_, w_, hm_);                                                \
        ai = _mm512_mask_mov_epi32(li_, w_, hi_);                                             \
    } while (0)

/* dst[l] = v[l] widened to int64 for the lanes l of k (a mask of the lowest lanes); the
 * upper eight only when k has any, so that dst + 8 is formed only inside the array. */
FC_T512 FC_INLINE void fc_store_idx16(int64_t *dst, __mmask16 k, __m512i v)
{
    _mm512_mask_storeu_epi64(dst, (__mmask8)k, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v)));
    if (k >> 8)
        _mm512_mask_storeu_epi64(dst + 8, (__mmask8)(k >> 8),
                                 _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1)));
}

/* One step of the scan of FC_TAKE on every lane: v, the values at indices i0 + lane, replace
 * the running (a, ai) where greater or NaN. */
FC_T512 FC_INLINE void fc_gmp_take(__m512 v, int64_t i0, __m512i iota, __m512 *a, __m512i *ai)
{
    const __mmask16 t =
        _mm512_cmp_ps_mask(v, *a, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    *a = _mm512_mask_mov_ps(*a, t, v);
    *ai = _mm512_mask_mov_epi32(*ai, t, _mm512_add_epi32(iota, _mm512_set1_epi32((int)i0)));
}

/* The maximum of the bin of rows [h0, h1) and columns [w0, w1) of a W-wide float plane and
 * its index h*W + w (in *mi), by the rules of FC_TAKE, as adaptive_max_plane's scan finds
 * them: each lane scans every 16th column of every row in order (fc_gmp_take; a row's last
 * columns loaded with -inf past its end), then the 16 lanes are merged by fc_gmp_wins. Every
 * lane starts at the bin's first index, as the scan does (a bin of -inf keeps it). For bins
 * of 16 or more columns: adaptive max of 1x64x112x112 to 3x3 spent its time in the scan's
 * compare-and-select chain (2 threads 286 us, torch 261). Indices below INT32_MAX - 16. */
FC_T512 static float fc_amax_bin_f32_avx512(const float *restrict x, int64_t W, int64_t h0,
                                            int64_t h1, int64_t w0, int64_t w1, int64_t *mi)
{
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    const int64_t nw = w1 - w0, nfull = nw & ~(int64_t)15;
    const __mmask16 tail = (__mmask16)((1u << (nw & 15)) - 1u);
    __m512 a = ninf;
    __m512i ai = _mm512_set1_epi32((int)(h0 * W + w0));
    for (int64_t h = h0; h < h1; h++) {
        const float *r = x + h * W + w0;
        const int64_t base = h * W + w0;
        for (int64_t i = 0; i < nfull; i += 16)
            fc_gmp_take(_mm512_loadu_ps(r + i), base + i, iota, &a, &ai);
        if (tail)
            fc_gmp_take(_mm512_mask_loadu_ps(ninf, tail, r + nfull), base + nfull, iota, &a,
                        &ai);
    }
    /* the 16 lanes merged by the global max's tree (FC_GMP_LEVEL on a and itself: lanes l
     * and l + 8, then l + 4, 2, 1), the winner in lane 0 */
    FC_GMP_LEVEL(a, ai, a, ai, _mm512_shuffle_f32x4, 0x44, 0xEE);
    FC_GMP_LEVEL(a, ai, a, ai, _mm512_shuffle_f32x4, 0x88, 0xDD);
    FC_GMP_LEVEL(a, ai, a, ai, _mm512_shuffle_ps, 0x44, 0xEE);
    FC_GMP_LEVEL(a, ai, a, ai, _mm512_shuffle_ps, 0x88, 0xDD);
    *mi = _mm_cvtsi128_si32(_mm512_castsi512_si128(ai));
    return _mm512_cvtss_f32(a);
}

/* y[p] = maximum of the n contiguous floats of plane p (n <= INT32_MAX - 16: lane indices
 * stay below the INT32_MAX of empty lanes), idx[p] its index (idx may be NULL), for
 * p < planes, by the rules of FC_TAKE; 16 planes per step, each lane of a
 * plane's vector scanning every 16th value in order, then the tree of the global average
 * with fc_gmp_wins in place of the add. Lanes past a plane's end hold -inf and index
 * INT32_MAX, which never wins. */
FC_T512 static void fc_global_max_f32_avx512(const float *restrict x, float *restrict y,
                                             int64_t *restrict idx, int64_t planes, int64_t n)
{
    const int *q = fc_gap_q;
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const int64_t nfull = n & ~(int64_t)15;
    const __mmask16 tail = (__mmask16)((1u << (n & 15)) - 1u);
    /* lanes holding a value of the plane start at their own index, the others never win */
    const __mmask16 live = n >= 16 ? (__mmask16)0xFFFF : tail;
    const __m512i start = _mm512_mask_mov_epi32(_mm512_set1_epi32(INT32_MAX), live, iota);
    for (int64_t p0 = 0; p0 < planes; p0 += 16) {
        const int64_t np = planes - p0 < 16 ? planes - p0 : 16;
        __m512 m[16];
        __m512i mi[16];
        for (int k = 0; k < 16; k++) {
            __m512 a = ninf;
            __m512i ai = start;
            if (q[k] < np) {
                const float *xp = x + (p0 + q[k]) * n;
                for (int64_t i = 0; i < nfull; i += 16)
                    fc_gmp_take(_mm512_loadu_ps(xp + i), i, iota, &a, &ai);
                if (tail) /* lanes past the end read -inf, which never replaces */
                    fc_gmp_take(_mm512_mask_loadu_ps(ninf, tail, xp + nfull), nfull, iota, &a, &ai);
            }
            m[k] = a;
            mi[k] = ai;
        }
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++)
            FC_GMP_LEVEL(m[k], mi[k], m[k + 8], mi[k + 8], _mm512_shuffle_f32x4, 0x44, 0xEE);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            FC_GMP_LEVEL(m[k], mi[k], m[k + 4], mi[k + 4], _mm512_shuffle_f32x4, 0x88, 0xDD);
#pragma GCC unroll 2
        for (int k = 0; k < 2; k++)
            FC_GMP_LEVEL(m[k], mi[k], m[k + 2], mi[k + 2], _mm512_shuffle_ps, 0x44, 0xEE);
        FC_GMP_LEVEL(m[0], mi[0], m[1], mi[1], _mm512_shuffle_ps, 0x88, 0xDD);
        const __mmask16 out = (__mmask16)((1u << np) - 1u);
        _mm512_mask_storeu_ps(y + p0, out, m[0]);
        if (idx)
            fc_store_idx16(idx + p0, out, mi[0]);
    }
}
#undef FC_GMP_LEVEL

/* ------------------------------------------------------------------ 3x3 max rows, AVX-512 */

/* The 16 values r[(j + l) * SW + k], l < 16, of tap k (SW = 1: one unaligned load; SW = 2:
 * the even lanes of two loads, picked by one two-source permute). With SW = 2 the second
 * load's last lane (p[31]) is never picked and may lie past the end of the input: it is
 * masked off, so nothing past the last element the windows read is touched. */
FC_T512 FC_INLINE __m512 fc_max_tap(const float *r, int64_t j, int k, int SW)
{
    if (SW == 1)
        return _mm512_loadu_ps(r + j + k);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    const float *p = r + 2 * j + k;
    return _mm512_permutex2var_ps(_mm512_loadu_ps(p), even,
                                  _mm512_maskz_loadu_ps((__mmask16)0x7FFF, p + 16));
}

/* ym[j] (and im[j] when im is not NULL) for 16 outputs starting at j: the 3x3 window over
 * rows r0, r1, r2 (taps 1 apart, stride SW), whose first elements have indices i0, i1, i2.
 * The taps are scanned in the contract's order; a lane takes v when v > m or v is NaN. The
 * winning tap's number is kept per lane (int32) and turned into its index at the end. */
FC_T512 FC_INLINE void fc_max3x3_block(float *ym, int64_t *im, const float *r0,
                                       const float *r1, const float *r2, int64_t i0,
                                       int64_t i1, int64_t i2, int64_t j, int SW)
{
    const float *rows[3] = {r0, r1, r2};
    __m512 m = fc_max_tap(r0, j, 0, SW);
    __m512i t = _mm512_setzero_si512();
#pragma GCC unroll 9
    for (int k = 1; k < 9; k++) {
        const __m512 v = fc_max_tap(rows[k / 3], j, k % 3, SW);
        const __mmask16 take = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) |
                               _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        m = _mm512_mask_mov_ps(m, take, v);
        if (im)
            t = _mm512_mask_mov_epi32(t, take, _mm512_set1_epi32(k));
    }
    _mm512_storeu_ps(ym + j, m);
    if (!im)
        return;
    /* index = row start + (j + l) * SW + column of the tap */
    const __m512i rowv = _mm512_srli_epi32(_mm512_mullo_epi32(t, _mm512_set1_epi32(11)), 5); /* t / 3 */
    const __m512i col = _mm512_sub_epi32(t, _mm512_mullo_epi32(rowv, _mm512_set1_epi32(3)));
    const __m512i lane = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(SW));
    const __m512i rel = _mm512_add_epi32(lane, col); /* < 64: fits int32 */
    const __m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(rel));
    const __m512i hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(rel, 1));
    const __m512i rlo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(rowv));
    const __m512i rhi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(rowv, 1));
    /* row start per lane: i0, i1 or i2, chosen by the row number 0, 1, 2 */
    const __m512i base = _mm512_set1_epi64(i0 + j * SW);
    const __m512i d1 = _mm512_set1_epi64(i1 - i0), d2 = _mm512_set1_epi64(i2 - i0);
#define FC_ROWSTART(r)                                                                      \
    _mm512_add_epi64(base, _mm512_mask_mov_epi64(                                           \
                               _mm512_maskz_mov_epi64(_mm512_cmpeq_epi64_mask(r, _mm512_set1_epi64(1)), d1), \
                               _mm512_cmpeq_epi64_mask(r, _mm512_set1_epi64(2)), d2))
    _mm512_storeu_si512(im + j, _mm512_add_epi64(FC_ROWSTART(rlo), lo));
    _mm512_storeu_si512(im + j + 8, _mm512_add_epi64(FC_ROWSTART(rhi), hi));
#undef FC_ROWSTART
}

/* The plane blocks' interleave for float (pb_interleave): xs[i*16 + l] = x[l*in_sz + i]
 * for the nl <= 16 planes of a block, lanes past nl zero; 16 pixels at a time through one
 * register transpose instead of 256 scalar stores 64 bytes apart. */
FC_T512 static void fc_pb_interleave_f32_avx512(const float *x, float *xs, int64_t in_sz,
                                                int64_t nl)
{
    for (int64_t i0 = 0; i0 < in_sz; i0 += 16) {
        const int64_t n = in_sz - i0 < 16 ? in_sz - i0 : 16;
        const __mmask16 k = (__mmask16)((1u << n) - 1);
        __m512 r[16];
#pragma GCC unroll 16
        for (int l = 0; l < 16; l++)
            r[l] = l < nl ? _mm512_maskz_loadu_ps(k, x + l * in_sz + i0) : _mm512_setzero_ps();
        fc_transpose16_f32(r);
        for (int64_t j = 0; j < n; j++)
            _mm512_storeu_ps(xs + (i0 + j) * 16, r[j]);
    }
}

/* Back from a block's scratch (pb_spread, float): y[l*out_sz + o] = ys[o*16 + l] and, with
 * idx, idx[l*out_sz + o] = is[o*16 + l] widened to int64, for l < nl. */
FC_T512 static void fc_pb_spread_f32_avx512(const float *ys, const int32_t *is, float *y,
                                            int64_t *idx, int64_t out_sz, int64_t nl)
{
    for (int64_t o0 = 0; o0 < out_sz; o0 += 16) {
        const int64_t n = out_sz - o0 < 16 ? out_sz - o0 : 16;
        const __mmask16 k = (__mmask16)((1u << n) - 1);
        __m512 r[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
            r[j] = j < n ? _mm512_loadu_ps(ys + (o0 + j) * 16) : _mm512_setzero_ps();
        fc_transpose16_f32(r);
        for (int64_t l = 0; l < nl; l++)
            _mm512_mask_storeu_ps(y + l * out_sz + o0, k, r[l]);
        if (!idx)
            continue;
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
            r[j] = j < n ? _mm512_castsi512_ps(_mm512_loadu_si512(is + (o0 + j) * 16))
                         : _mm512_setzero_ps();
        fc_transpose16_f32(r);
        for (int64_t l = 0; l < nl; l++)
            fc_store_idx16(idx + l * out_sz + o0, k, _mm512_castps_si512(r[l]));
    }
}

/* A row of n >= 16 outputs: blocks of 16, the last one moved back to end at n (outputs
 * depend only on the input, so the overlap rewrites equal values). SW = 1 or 2. */
FC_T512 static void fc_max3x3_row_f32_avx512(float *ym, int64_t *im, const float *r0,
                                             const float *r1, const float *r2, int64_t i0,
                                             int64_t i1, int64_t i2, int64_t n, int SW)
{
    FC_ASSERT(n >= 16 && (SW == 1 || SW == 2));
    for (int64_t j = 0;; j += 16) {
        if (j + 16 > n)
            j = n - 16;
        if (SW == 2)
            fc_max3x3_block(ym, im, r0, r1, r2, i0, i1, i2, j, 2);
        else
            fc_max3x3_block(ym, im, r0, r1, r2, i0, i1, i2, j, 1);
        if (j + 16 >= n)
            break;
    }
}
#endif

#define FC_INSTANTIATE "pool2d.c"
#include "common.h"

#else /* FC_TYPED: everything below is compiled once per element type T */

/* The max-pool update rule: v replaces the running maximum m when greater or NaN. */
#define FC_TAKE(v, m) (((v) > (m)) | ((v) != (v))) /* | not ||: no branch */

/* The arguments of a plane loop (one struct for every loop of the file); a loop body
 * `FN(name_planes)(void *ctx, p0, p1, slot)` runs planes [p0, p1) of it. */
typedef struct {
    const T *x;
    T *y;
    int64_t *idx;          /* max pooling's indices, or NULL */
    const int64_t *cidx;   /* max-pool backward's indices */
    const fc_win *g;       /* windowed kernels */
    int cip;               /* average pooling: count_include_pad */
    int64_t divisor;       /* average pooling: divisor_override, 0 = none */
    int64_t in_sz, out_sz; /* elements per input / output plane */
    int64_t H, W, OH, OW;  /* kernels without a window */
    int64_t nplanes;      /* the plane blocks: N*C */
} FN(fc_planes);

/* Bytes of the planes of x and y (and int64 indices of y's size if `with_idx`). */
static inline int64_t FN(plane_bytes)(int64_t planes, int64_t in_sz, int64_t out_sz, int with_idx)
{
    return planes * ((in_sz + out_sz) * (int64_t)sizeof(T) + (with_idx ? out_sz * 8 : 0));
}

/* ------------------------------------------------------------------ max pooling */

/* x is (H, W), one plane; one output (oh, ow) with every bounds check. */
FC_INLINE void FN(max_point)(const T *x, const fc_win *g, int64_t oh, int64_t ow, T *yo,
                            int64_t *io)
{
    int64_t hs = oh * g->sh - g->ph, ws = ow * g->sw - g->pw;
    T m = -INFINITY;
    int64_t mi = fc_first_valid(hs, g->dh) * g->W + fc_first_valid(ws, g->dw);
    for (int64_t kh = 0; kh < g->KH; kh++) {
        int64_t ih = hs + kh * g->dh;
        if (ih < 0 || ih >= g->H)
            continue;
        for (int64_t kw = 0; kw < g->KW; kw++) {
            int64_t iw = ws + kw * g->dw;
            if (iw < 0 || iw >= g->W)
                continue;
            T v = x[ih * g->W + iw];
            if (FC_TAKE(v, m)) {
                m = v;
                mi = ih * g->W + iw;
            }
        }
    }
    *yo = m;
    if (io)
        *io = mi;
}

/* ym[j] = running max over taps xr[j*sw + kw*dw], kw < K (K = 2 or 3 fused, else one tap). */
FC_INLINE void FN(max_row_k)(T *restrict ym, const T *restrict xr, int64_t n, int64_t sw,
                            int64_t dw, int K)
{
    for (int64_t j = 0; j < n; j++) {
        T m = ym[j];
        T v0 = xr[j * sw];
        m = FC_TAKE(v0, m) ? v0 : m;
        if (K >= 2) {
            T v1 = xr[j * sw + dw];
            m = FC_TAKE(v1, m) ? v1 : m;
        }
        if (K >= 3) {
            T v2 = xr[j * sw + 2 * dw];
            m = FC_TAKE(v2, m) ? v2 : m;
        }
        ym[j] = m;
    }
}

FC_INLINE void FN(max_row)(T *restrict ym, const T *restrict xr, int64_t n, int64_t sw,
                          int64_t dw, int64_t KW)
{
    if (KW == 3 || KW == 2) {
        int K = (int)KW;
        if (sw == 1 && dw == 1)
            FN(max_row_k)(ym, xr, n, 1, 1, K);
        else if (sw == 2 && dw == 1)
            FN(max_row_k)(ym, xr, n, 2, 1, K);
        else
            FN(max_row_k)(ym, xr, n, sw, dw, K);
        return;
    }
    for (int64_t kw = 0; kw < KW; kw++) {
        if (sw == 1)
            FN(max_row_k)(ym, xr + kw * dw, n, 1, dw, 1);
        else
            FN(max_row_k)(ym, xr + kw * dw, n, sw, dw, 1);
    }
}

/* The same with indices: im[j] = base + j*sw of the tap that won. */
FC_INLINE void FN(max_row_idx1)(T *restrict ym, int64_t *restrict im, const T *restrict xs,
                               int64_t base, int64_t n, int64_t sw)
{
    for (int64_t j = 0; j < n; j++) {
        T v = xs[j * sw], m = ym[j];
        int t = FC_TAKE(v, m);
        ym[j] = t ? v : m;
        im[j] = t ? base + j * sw : im[j];
    }
}

/* The 3x3 window (kw taps dw apart) with indices in one pass: rows r0, r1, r2 whose first
 * elements have indices i0, i1, i2; the running maximum and its index stay in registers
 * over the 9 taps, scanned in the contract's order, and are stored once. */
FC_INLINE void FN(max_row3x3_idx)(T *restrict ym, int64_t *restrict im, const T *restrict r0,
                                 const T *restrict r1, const T *restrict r2, int64_t i0,
                                 int64_t i1, int64_t i2, int64_t n, int64_t sw, int64_t dw)
{
    for (int64_t j = 0; j < n; j++) {
        const int64_t c = j * sw;
        T m = r0[c];
        int64_t mi = i0 + c;
#define FC_TAP(r, i, k)                    \
    {                                      \
        const T v = r[c + (k) * dw];       \
        const int t = FC_TAKE(v, m);       \
        m = t ? v : m;                     \
        mi = t ? (i) + c + (k) * dw : mi;  \
    }
        FC_TAP(r0, i0, 1) FC_TAP(r0, i0, 2)
        FC_TAP(r1, i1, 0) FC_TAP(r1, i1, 1) FC_TAP(r1, i1, 2)
        FC_TAP(r2, i2, 0) FC_TAP(r2, i2, 1) FC_TAP(r2, i2, 2)
#undef FC_TAP
        ym[j] = m;
        im[j] = mi;
    }
}

/* The same without indices. */
FC_INLINE void FN(max_row3x3)(T *restrict ym, const T *restrict r0, const T *restrict r1,
                             const T *restrict r2, int64_t n, int64_t sw, int64_t dw)
{
    for (int64_t j = 0; j < n; j++) {
        const int64_t c = j * sw;
        T m = r0[c];
#define FC_TAP(r, k)                  \
    {                                 \
        const T v = r[c + (k) * dw];  \
        m = FC_TAKE(v, m) ? v : m;    \
    }
        FC_TAP(r0, 1) FC_TAP(r0, 2)
        FC_TAP(r1, 0) FC_TAP(r1, 1) FC_TAP(r1, 2)
        FC_TAP(r2, 0) FC_TAP(r2, 1) FC_TAP(r2, 2)
#undef FC_TAP
        ym[j] = m;
    }
}

/* x is (H, W), y and idx (idx may be NULL) are (OH, OW). */
FC_INLINE void FC_CAT(FN(max_pool_plane), _body)(const T *restrict x, T *restrict y, int64_t *restrict idx,
                                      const fc_win *g)
{
    const int64_t W = g->W, OW = g->OW, lo = g->lo, hi = g->hi, n = hi - lo;
    const int64_t sw = g->sw, dw = g->dw, KW = g->KW;
#if defined(__x86_64__)
    const int avx512_f32 = !IS_F64 && fc_dwpool_isa(-1) == 2;
#endif
    for (int64_t oh = 0; oh < g->OH; oh++) {
        T *restrict yr = y + oh * OW;
        int64_t *restrict ir = idx ? idx + oh * OW : NULL;
        for (int64_t ow = 0; ow < lo; ow++)
            FN(max_point)(x, g, oh, ow, yr + ow, ir ? ir + ow : NULL);
        for (int64_t ow = hi; ow < OW; ow++)
            FN(max_point)(x, g, oh, ow, yr + ow, ir ? ir + ow : NULL);
        if (n <= 0)
            continue;
        const int64_t hs = oh * g->sh - g->ph, x0 = lo * sw - g->pw;
        T *restrict ym = yr + lo;
        if (g->KH == 3 && KW == 3 && hs >= 0 && hs + 2 * g->dh < g->H) {
            /* all 9 taps inside: one pass, maximum (and index) in registers */
            const int64_t i0 = hs * W + x0, i1 = i0 + g->dh * W, i2 = i1 + g->dh * W;
#if defined(__x86_64__)
            if (avx512_f32 && n >= 16 && dw == 1 && (sw == 1 || sw == 2)) {
                fc_max3x3_row_f32_avx512((float *)(void *)ym, ir ? ir + lo : NULL,
                                         (const float *)(const void *)(x + i0),
                                         (const float *)(const void *)(x + i1),
                                         (const float *)(const void *)(x + i2), i0, i1, i2, n,
                                         (int)sw);
                continue;
            }
#endif
            if (!ir) {
                if (sw == 2 && dw == 1)
                    FN(max_row3x3)(ym, x + i0, x + i1, x + i2, n, 2, 1);
                else if (sw == 1 && dw == 1)
                    FN(max_row3x3)(ym, x + i0, x + i1, x + i2, n, 1, 1);
                else
                    FN(max_row3x3)(ym, x + i0, x + i1, x + i2, n, sw, dw);
            } else if (sw == 2 && dw == 1)
                FN(max_row3x3_idx)(ym, ir + lo, x + i0, x + i1, x + i2, i0, i1, i2, n, 2, 1);
            else if (sw == 1 && dw == 1)
                FN(max_row3x3_idx)(ym, ir + lo, x + i0, x + i1, x + i2, i0, i1, i2, n, 1, 1);
            else
                FN(max_row3x3_idx)(ym, ir + lo, x + i0, x + i1, x + i2, i0, i1, i2, n, sw, dw);
            continue;
        }
        for (int64_t j = 0; j < n; j++)
            ym[j] = -INFINITY;
        if (ir) {
            int64_t *restrict im = ir + lo;
            const int64_t b0 = fc_first_valid(hs, g->dh) * W + x0;
            for (int64_t j = 0; j < n; j++)
                im[j] = b0 + j * sw;
        }
        for (int64_t kh = 0; kh < g->KH; kh++) {
            const int64_t ih = hs + kh * g->dh;
            if (ih < 0 || ih >= g->H)
                continue;
            const T *xr = x + ih * W + x0;
            if (!ir) {
                FN(max_row)(ym, xr, n, sw, dw, KW);
                continue;
            }
            for (int64_t kw = 0; kw < KW; kw++) {
                const int64_t base = ih * W + x0 + kw * dw;
                if (sw == 1)
                    FN(max_row_idx1)(ym, ir + lo, xr + kw * dw, base, n, 1);
                else if (sw == 2)
                    FN(max_row_idx1)(ym, ir + lo, xr + kw * dw, base, n, 2);
                else
                    FN(max_row_idx1)(ym, ir + lo, xr + kw * dw, base, n, sw);
            }
        }
    }
}
FC_MULTIVERSION(FN(max_pool_plane),
                (const T *restrict x, T *restrict y, int64_t *restrict idx, const fc_win *g),
                (x, y, idx, g))

static void FN(max_pool_planes)(void *ctx, int64_t p0, int64_t p1, int slot)
{
    const FN(fc_planes) *a = ctx;
    (void)slot;
    for (int64_t p = p0; p < p1; p++)
        FN(max_pool_plane)(a->x + p * a->in_sz, a->y + p * a->out_sz,
                           a->idx ? a->idx + p * a->out_sz : NULL, a->g);
}

/* ---------------------------------------------- small planes: FC_PB_LANES planes at a time
 *
 * A plane with short output rows (7x7 and 14x14 layers, 4x4 feature maps) leaves the row
 * loops above a few outputs per row and a scalar window (every bounds check) for most
 * outputs (x torch, 2 threads: 8x2048x7x7 max 3x3/2 padding 1 1.09, 1x512x14x14 max 2x2/2
 * 0.35, 5x5/1 on 1x1024x4x4 0.21). Rows shorter than FC_PB_MAX_OW went faster this way in
 * every case measured (bench/RESULTS.md), up to 64 wide with the scratch in L2. Here
 * FC_PB_LANES planes are interleaved into a scratch (xs[pixel][lane]), each output's window
 * is scanned once for all of them with one vector per tap (bounds checks per output, not per
 * plane), and the outputs are spread back. The taps are taken in the order of max_point /
 * avg_point and of the row loops (the sums of an interior output of a 2- or 3-wide window
 * add each row's taps first, as sum_row_k does), so the results are the same bits as the
 * per-plane loops' (an average's NaN may differ in sign). */
#define FC_PB_LANES 16

/* Whether pooling of this geometry takes the plane blocks: output rows shorter than
 * FC_PB_MAX_OW, at least a block of planes, and a scratch (input, output and indices of a
 * block) of at most FC_PB_MAX_SCRATCH bytes. */
#define FC_PB_MAX_SCRATCH (256 * 1024)
#define FC_PB_MAX_OW 64

/* Bytes of a block's scratch: input and output values and output indices of its planes. */
static inline int64_t FN(pb_scratch_bytes)(int64_t in_sz, int64_t out_sz)
{
    return ((in_sz + out_sz) * (int64_t)sizeof(T) + out_sz * (int64_t)sizeof(int32_t)) *
           FC_PB_LANES;
}

/* The geometry part of pool_blocks_ok (adaptive averages sum in one order wherever it
 * holds, so that a call of fewer planes gives the same bits as one of more). */
static inline int FN(pool_blocks_geometry)(int64_t in_sz, int64_t out_sz, int64_t OW)
{
    return OW < FC_PB_MAX_OW && FN(pb_scratch_bytes)(in_sz, out_sz) <= FC_PB_MAX_SCRATCH;
}

static inline int FN(pool_blocks_ok)(int64_t planes, int64_t in_sz, int64_t out_sz, int64_t OW)
{
    return planes >= FC_PB_LANES && FN(pool_blocks_geometry)(in_sz, out_sz, OW);
}

/* xs[i*L + l] = x[l*in_sz + i] for the nl planes of a block (lanes past nl: zeros). */
FC_INLINE void FN(pb_interleave)(const T *restrict x, T *restrict xs, int64_t in_sz, int64_t nl)
{
#if defined(__x86_64__)
    if (!IS_F64 && fc_dwpool_isa(-1) == 2) {
        fc_pb_interleave_f32_avx512((const float *)(const void *)x, (float *)(void *)xs, in_sz,
                                    nl);
        return;
    }
#endif
    if (nl < FC_PB_LANES)
        for (int64_t i = 0; i < in_sz * FC_PB_LANES; i++)
            xs[i] = 0;
    for (int64_t l = 0; l < nl; l++) {
        const T *restrict xp = x + l * in_sz;
        for (int64_t i = 0; i < in_sz; i++)
            xs[i * FC_PB_LANES + l] = xp[i];
    }
}

/* y[l*out_sz + o] = ys[o*L + l] (and idx from is, unless NULL) for the nl planes of a block. */
FC_INLINE void FN(pb_spread)(const T *restrict ys, const int32_t *restrict is, T *restrict y,
                             int64_t *restrict idx, int64_t out_sz, int64_t nl)
{
#if defined(__x86_64__)
    if (!IS_F64 && fc_dwpool_isa(-1) == 2) {
        fc_pb_spread_f32_avx512((const float *)(const void *)ys, is, (float *)(void *)y, idx,
                                out_sz, nl);
        return;
    }
#endif
    for (int64_t l = 0; l < nl; l++)
        for (int64_t o = 0; o < out_sz; o++) {
            y[l * out_sz + o] = ys[o * FC_PB_LANES + l];
            if (idx)
                idx[l * out_sz + o] = is[o * FC_PB_LANES + l];
        }
}

/* Max pooling of one block of nl planes (x, y, idx at its first plane; idx may be NULL);
 * xs, ys, is: the scratch (in_sz, out_sz and out_sz vectors). */
FC_INLINE void FC_CAT(FN(max_pool_block), _body)(const T *restrict x, T *restrict y,
                                                 int64_t *restrict idx, const fc_win *g,
                                                 int64_t nl, T *restrict xs, T *restrict ys,
                                                 int32_t *restrict is)
{
    enum { L = FC_PB_LANES };
    const int64_t in_sz = g->H * g->W, out_sz = g->OH * g->OW;
    FN(pb_interleave)(x, xs, in_sz, nl);
    for (int64_t oh = 0; oh < g->OH; oh++)
        for (int64_t ow = 0; ow < g->OW; ow++) {
            const int64_t hs = oh * g->sh - g->ph, ws = ow * g->sw - g->pw;
            const int32_t first =
                (int32_t)(fc_first_valid(hs, g->dh) * g->W + fc_first_valid(ws, g->dw));
            T m[L];
            int32_t mi[L];
#pragma omp simd
            for (int l = 0; l < L; l++) {
                m[l] = -INFINITY;
                mi[l] = first;
            }
            for (int64_t kh = 0; kh < g->KH; kh++) {
                const int64_t ih = hs + kh * g->dh;
                if (ih < 0 || ih >= g->H)
                    continue;
                for (int64_t kw = 0; kw < g->KW; kw++) {
                    const int64_t iw = ws + kw * g->dw;
                    if (iw < 0 || iw >= g->W)
                        continue;
                    const int32_t tap = (int32_t)(ih * g->W + iw);
                    const T *restrict v = xs + tap * L;
#pragma omp simd
                    for (int l = 0; l < L; l++) {
                        const T vl = v[l];
                        const int t = FC_TAKE(vl, m[l]);
                        m[l] = t ? vl : m[l];
                        mi[l] = t ? tap : mi[l];
                    }
                }
            }
            const int64_t o = oh * g->OW + ow;
#pragma omp simd
            for (int l = 0; l < L; l++) {
                ys[o * L + l] = m[l];
                is[o * L + l] = mi[l];
            }
        }
    FN(pb_spread)(ys, is, y, idx, out_sz, nl);
}
FC_MULTIVERSION(FN(max_pool_block),
                (const T *restrict x, T *restrict y, int64_t *restrict idx, const fc_win *g,
                 int64_t nl, T *restrict xs, T *restrict ys, int32_t *restrict is),
                (x, y, idx, g, nl, xs, ys, is))

/* The scratch of one block (pool_blocks_ok bounds it), or NULL when it cannot be had: the
 * caller then runs the per-plane loops. */
static T *FN(pb_scratch)(int64_t in_sz, int64_t out_sz)
{
    return malloc((size_t)(FN(pb_scratch_bytes)(in_sz, out_sz) + 64));
}

/* One block of an op: nl planes from plane p0, with the scratch xs, ys, is. */
typedef void (*FN(pb_block_fn))(const FN(fc_planes) *a, int64_t p0, int64_t nl, T *xs, T *ys,
                                int32_t *is);

/* Blocks [b0, b1) of FC_PB_LANES planes (the last may be short) of an op: each by `block`
 * with one scratch, or by the per-plane loop `planes` when there is none. */
static void FN(pb_blocks)(const FN(fc_planes) *a, int64_t b0, int64_t b1, int slot,
                          FN(pb_block_fn) block, fc_range_fn planes)
{
    T *buf = FN(pb_scratch)(a->in_sz, a->out_sz);
    for (int64_t b = b0; b < b1; b++) {
        const int64_t p0 = b * FC_PB_LANES, nl = min64(FC_PB_LANES, a->nplanes - p0);
        if (!buf) { /* no scratch: the per-plane loops */
            planes((void *)a, p0, p0 + nl, slot);
            continue;
        }
        T *ys = buf + a->in_sz * FC_PB_LANES;
        block(a, p0, nl, buf, ys, (int32_t *)(void *)(ys + a->out_sz * FC_PB_LANES));
    }
    free(buf);
}

static void FN(max_pool_block_at)(const FN(fc_planes) *a, int64_t p0, int64_t nl, T *xs,
                                  T *ys, int32_t *is)
{
    FN(max_pool_block)(a->x + p0 * a->in_sz, a->y + p0 * a->out_sz,
                       a->idx ? a->idx + p0 * a->out_sz : NULL, a->g, nl, xs, ys, is);
}

static void FN(max_pool_blocks)(void *ctx, int64_t b0, int64_t b1, int slot)
{
    FN(pb_blocks)(ctx, b0, b1, slot, FN(max_pool_block_at), FN(max_pool_planes));
}

/* x is (N, C, H, W), y and idx (or NULL) are (N, C, OH, OW); idx holds ih*W + iw. */
void FN(fc_max_pool2d)(const T *x, T *y, int64_t *idx, const fc_pool_shape *s)
{
    FC_ASSERT_POOL_SHAPE(s);
    const fc_win g = pool_win(s);
    const int64_t planes = s->N * s->C, in_sz = s->H * s->W, out_sz = s->OH * s->OW;
    FN(fc_planes) a = {.x = x, .y = y, .idx = idx, .g = &g, .in_sz = in_sz, .out_sz = out_sz,
                       .nplanes = planes};
    const int64_t cost = fc_cost_mem(FN(plane_bytes)(planes, in_sz, out_sz, idx != NULL),
                                     planes * out_sz * s->KH * s->KW);
    if (FN(pool_blocks_ok)(planes, in_sz, out_sz, s->OW))
        fc_planes_run(FN(max_pool_blocks), &a, ceil_div(planes, FC_PB_LANES), cost);
    else
        fc_planes_run(FN(max_pool_planes), &a, planes, cost);
}

/* ------------------------------------------------------------------ average pooling */

/* Window [s, e) of output o along one axis, before and after clipping to [0, in). */
typedef struct {
    int64_t pool, c0, c1;
} FN(fc_span);

FC_INLINE FN(fc_span) FN(avg_span)(int64_t o, int64_t in, int64_t k, int64_t s, int64_t p)
{
    FN(fc_span) r;
    int64_t st = o * s - p, en = st + k < in + p ? st + k : in + p;
    r.pool = en - st;
    r.c0 = st > 0 ? st : 0;
    r.c1 = en < in ? en : in;
    return r;
}

FC_INLINE T FN(avg_div)(int64_t pool_area, int64_t in_area, int cip, int64_t divisor)
{
    return divisor ? (T)divisor : (T)(cip ? pool_area : in_area);
}

/* One output (oh, ow) of a plane, every bounds check. */
FC_INLINE T FN(avg_point)(const T *x, const fc_win *g, int64_t oh, int64_t ow, int cip,
                         int64_t divisor)
{
    FN(fc_span) h = FN(avg_span)(oh, g->H, g->KH, g->sh, g->ph);
    FN(fc_span) w = FN(avg_span)(ow, g->W, g->KW, g->sw, g->pw);
    T s = 0;
    for (int64_t ih = h.c0; ih < h.c1; ih++)
        for (int64_t iw = w.c0; iw < w.c1; iw++)
            s += x[ih * g->W + iw];
    return s / FN(avg_div)(h.pool * w.pool, (h.c1 - h.c0) * (w.c1 - w.c0), cip, divisor);
}

/* ym[j] += sum of taps xr[j*sw + kw], kw < K (K = 2 or 3 fused, else one tap). */
FC_INLINE void FN(sum_row_k)(T *restrict ym, const T *restrict xr, int64_t n, int64_t sw, int K)
{
    for (int64_t j = 0; j < n; j++) {
        T s = xr[j * sw];
        if (K >= 2)
            s += xr[j * sw + 1];
        if (K >= 3)
            s += xr[j * sw + 2];
        ym[j] += s;
    }
}

FC_INLINE void FN(sum_row)(T *restrict ym, const T *restrict xr, int64_t n, int64_t sw,
                          int64_t KW)
{
    if (KW == 3 || KW == 2) {
        int K = (int)KW;
        if (sw == 1)
            FN(sum_row_k)(ym, xr, n, 1, K);
        else if (sw == 2)
            FN(sum_row_k)(ym, xr, n, 2, K);
        else
            FN(sum_row_k)(ym, xr, n, sw, K);
        return;
    }
    for (int64_t kw = 0; kw < KW; kw++) {
        if (sw == 1)
            FN(sum_row_k)(ym, xr + kw, n, 1, 1);
        else
            FN(sum_row_k)(ym, xr + kw, n, sw, 1);
    }
}

/* x is (H, W), y is (OH, OW); dilation is 1. */
FC_INLINE void FC_CAT(FN(avg_pool_plane), _body)(const T *restrict x, T *restrict y, const fc_win *g,
                                      int cip, int64_t divisor)
{
    const int64_t W = g->W, OW = g->OW, lo = g->lo, hi = g->hi, n = hi - lo, sw = g->sw;
    for (int64_t oh = 0; oh < g->OH; oh++) {
        T *restrict yr = y + oh * OW;
        for (int64_t ow = 0; ow < lo; ow++)
            yr[ow] = FN(avg_point)(x, g, oh, ow, cip, divisor);
        for (int64_t ow = hi; ow < OW; ow++)
            yr[ow] = FN(avg_point)(x, g, oh, ow, cip, divisor);
        if (n <= 0)
            continue;
        FN(fc_span) h = FN(avg_span)(oh, g->H, g->KH, g->sh, g->ph);
        const int64_t x0 = lo * sw - g->pw;
        T *restrict ym = yr + lo;
        for (int64_t j = 0; j < n; j++)
            ym[j] = 0;
        for (int64_t ih = h.c0; ih < h.c1; ih++)
            FN(sum_row)(ym, x + ih * W + x0, n, sw, g->KW);
        /* interior columns: the window is KW wide both before and after clipping */
        const T d = FN(avg_div)(h.pool * g->KW, (h.c1 - h.c0) * g->KW, cip, divisor);
        for (int64_t j = 0; j < n; j++)
            ym[j] /= d;
    }
}
FC_MULTIVERSION(FN(avg_pool_plane),
                (const T *restrict x, T *restrict y, const fc_win *g, int cip, int64_t divisor),
                (x, y, g, cip, divisor))

static void FN(avg_pool_planes)(void *ctx, int64_t p0, int64_t p1, int slot)
{
    const FN(fc_planes) *a = ctx;
    (void)slot;
    for (int64_t p = p0; p < p1; p++)
        FN(avg_pool_plane)(a->x + p * a->in_sz, a->y + p * a->out_sz, a->g, a->cip, a->divisor);
}

/* Average pooling of one block of nl planes (see max_pool_block): the sums in the order of
 * avg_point, and of sum_row_k on interior columns of a 2- or 3-wide window. */
FC_INLINE void FC_CAT(FN(avg_pool_block), _body)(const T *restrict x, T *restrict y,
                                                 const fc_win *g, int cip, int64_t divisor,
                                                 int64_t nl, T *restrict xs, T *restrict ys)
{
    enum { L = FC_PB_LANES };
    const int64_t in_sz = g->H * g->W, out_sz = g->OH * g->OW, W = g->W;
    const int rows_first = g->KW == 2 || g->KW == 3;
    FN(pb_interleave)(x, xs, in_sz, nl);
    for (int64_t oh = 0; oh < g->OH; oh++) {
        const FN(fc_span) h = FN(avg_span)(oh, g->H, g->KH, g->sh, g->ph);
        for (int64_t ow = 0; ow < g->OW; ow++) {
            const FN(fc_span) w = FN(avg_span)(ow, W, g->KW, g->sw, g->pw);
            const int fused = rows_first && ow >= g->lo && ow < g->hi;
            T acc[L];
#pragma omp simd
            for (int l = 0; l < L; l++)
                acc[l] = 0;
            for (int64_t ih = h.c0; ih < h.c1; ih++) {
                const T *restrict r = xs + (ih * W + w.c0) * L;
                if (fused) {
                    const int three = g->KW == 3;
#pragma omp simd
                    for (int l = 0; l < L; l++) {
                        T t = r[l] + r[L + l];
                        if (three)
                            t += r[2 * L + l];
                        acc[l] += t;
                    }
                    continue;
                }
                for (int64_t iw = 0; iw < w.c1 - w.c0; iw++)
#pragma omp simd
                    for (int l = 0; l < L; l++)
                        acc[l] += r[iw * L + l];
            }
            const T d = FN(avg_div)(h.pool * w.pool, (h.c1 - h.c0) * (w.c1 - w.c0), cip, divisor);
            const int64_t o = oh * g->OW + ow;
#pragma omp simd
            for (int l = 0; l < L; l++)
                ys[o * L + l] = acc[l] / d;
        }
    }
    FN(pb_spread)(ys, NULL, y, NULL, out_sz, nl);
}
FC_MULTIVERSION(FN(avg_pool_block),
                (const T *restrict x, T *restrict y, const fc_win *g, int cip, int64_t divisor,
                 int64_t nl, T *restrict xs, T *restrict ys),
                (x, y, g, cip, divisor, nl, xs, ys))

static void FN(avg_pool_block_at)(const FN(fc_planes) *a, int64_t p0, int64_t nl, T *xs,
                                  T *ys, int32_t *is)
{
    (void)is;
    FN(avg_pool_block)(a->x + p0 * a->in_sz, a->y + p0 * a->out_sz, a->g, a->cip, a->divisor,
                       nl, xs, ys);
}

static void FN(avg_pool_blocks)(void *ctx, int64_t b0, int64_t b1, int slot)
{
    FN(pb_blocks)(ctx, b0, b1, slot, FN(avg_pool_block_at), FN(avg_pool_planes));
}

/* x is (N, C, H, W), y is (N, C, OH, OW); s->dh = s->dw = 1; divisor 0 = none (see the
 * kernel contract). */
void FN(fc_avg_pool2d)(const T *x, T *y, const fc_pool_shape *s, int count_include_pad,
                      int64_t divisor)
{
    FC_ASSERT_POOL_SHAPE(s);
    FC_ASSERT(s->dh == 1 && s->dw == 1);
    const fc_win g = pool_win(s);
    const int64_t planes = s->N * s->C, in_sz = s->H * s->W, out_sz = s->OH * s->OW;
    FN(fc_planes) a = {.x = x, .y = y, .g = &g, .cip = count_include_pad, .divisor = divisor,
                       .in_sz = in_sz, .out_sz = out_sz, .nplanes = planes};
    const int64_t cost = fc_cost_mem(FN(plane_bytes)(planes, in_sz, out_sz, 0),
                                     planes * out_sz * s->KH * s->KW);
    if (FN(pool_blocks_ok)(planes, in_sz, out_sz, s->OW))
        fc_planes_run(FN(avg_pool_blocks), &a, ceil_div(planes, FC_PB_LANES), cost);
    else
        fc_planes_run(FN(avg_pool_planes), &a, planes, cost);
}

/* ------------------------------------------------------------------ adaptive pooling */

/* Sum of n contiguous values, accumulated in double (bins can be large). */
FC_INLINE double FN(sum_contig)(const T *restrict x, int64_t n)
{
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++)
        s += (double)x[i];
    return s;
}

/* x is (H, W), y is (OH, OW). */
FC_INLINE void FC_CAT(FN(adaptive_avg_plane), _body)(const T *restrict x, T *restrict y, int64_t H,
                                          int64_t W, int64_t OH, int64_t OW)
{
    for (int64_t i = 0; i < OH; i++) {
        const int64_t h0 = fc_bin_start(i, H, OH), h1 = fc_bin_end(i, H, OH);
        for (int64_t j = 0; j < OW; j++) {
            const int64_t w0 = fc_bin_start(j, W, OW), w1 = fc_bin_end(j, W, OW);
            double s = 0;
            if (w0 == 0 && w1 == W) /* whole rows: one contiguous run */
                s = FN(sum_contig)(x + h0 * W, (h1 - h0) * W);
            else
                for (int64_t h = h0; h < h1; h++)
                    s += FN(sum_contig)(x + h * W + w0, w1 - w0);
            y[i * OW + j] = (T)(s / (double)((h1 - h0) * (w1 - w0)));
        }
    }
}
FC_MULTIVERSION(FN(adaptive_avg_plane),
                (const T *restrict x, T *restrict y, int64_t H, int64_t W, int64_t OH, int64_t OW),
                (x, y, H, W, OH, OW))

/* adaptive_avg_plane for the geometries of the plane blocks (pool_blocks_geometry: output
 * rows shorter than 64, a plane and its outputs within the block scratch, at most 4096
 * float32 values): each bin's taps added one after the other in double, row by
 * row, the order adaptive_avg_block keeps in every lane; plain scalar adds, the same bits
 * in every compiled copy. */
static void FN(adaptive_avg_plane_seq)(const T *restrict x, T *restrict y, int64_t H, int64_t W,
                                       int64_t OH, int64_t OW)
{
    for (int64_t i = 0; i < OH; i++) {
        const int64_t h0 = fc_bin_start(i, H, OH), h1 = fc_bin_end(i, H, OH);
        for (int64_t j = 0; j < OW; j++) {
            const int64_t w0 = fc_bin_start(j, W, OW), w1 = fc_bin_end(j, W, OW);
            double s = 0;
            for (int64_t h = h0; h < h1; h++)
                for (int64_t w = w0; w < w1; w++)
                    s += (double)x[h * W + w];
            y[i * OW + j] = (T)(s / (double)((h1 - h0) * (w1 - w0)));
        }
    }
}

/* Adaptive average pooling of one block of nl planes (see max_pool_block): every lane sums
 * its bin as adaptive_avg_plane_seq does, 16 planes at once (the taps of a bin converted to
 * double and added in order). */
FC_INLINE void FC_CAT(FN(adaptive_avg_block), _body)(const T *restrict x, T *restrict y,
                                                     int64_t H, int64_t W, int64_t OH,
                                                     int64_t OW, int64_t nl, T *restrict xs,
                                                     T *restrict ys)
{
    enum { L = FC_PB_LANES };
    FN(pb_interleave)(x, xs, H * W, nl);
    for (int64_t i = 0; i < OH; i++) {
        const int64_t h0 = fc_bin_start(i, H, OH), h1 = fc_bin_end(i, H, OH);
        for (int64_t j = 0; j < OW; j++) {
            const int64_t w0 = fc_bin_start(j, W, OW), w1 = fc_bin_end(j, W, OW);
            double acc[L];
#pragma omp simd
            for (int l = 0; l < L; l++)
                acc[l] = 0;
            for (int64_t h = h0; h < h1; h++)
                for (int64_t w = w0; w < w1; w++) {
                    const T *restrict v = xs + (h * W + w) * L;
#pragma omp simd
                    for (int l = 0; l < L; l++)
                        acc[l] += (double)v[l];
                }
            const double cnt = (double)((h1 - h0) * (w1 - w0));
            const int64_t o = i * OW + j;
#pragma omp simd
            for (int l = 0; l < L; l++)
                ys[o * L + l] = (T)(acc[l] / cnt);
        }
    }
    FN(pb_spread)(ys, NULL, y, NULL, OH * OW, nl);
}
FC_MULTIVERSION(FN(adaptive_avg_block),
                (const T *restrict x, T *restrict y, int64_t H, int64_t W, int64_t OH,
                 int64_t OW, int64_t nl, T *restrict xs, T *restrict ys),
                (x, y, H, W, OH, OW, nl, xs, ys))

/* Global average pooling of `planes` contiguous planes of n values: y[p] = mean(x[p*n ..]).
 * Small planes (n <= 4096, e.g. 7x7) sum in T, whose vector partial sums keep the error far
 * below the tests' tolerance at that size; larger ones in double. */
FC_INLINE void FC_CAT(FN(global_avg), _body)(const T *restrict x, T *restrict y, int64_t planes,
                                           int64_t n)
{
    if (n > 4096) {
        for (int64_t p = 0; p < planes; p++)
            y[p] = (T)(FN(sum_contig)(x + p * n, n) / (double)n);
        return;
    }
    for (int64_t p = 0; p < planes; p++) {
        const T *restrict xp = x + p * n;
        T s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < n; i++)
            s += xp[i];
        y[p] = s / (T)n;
    }
}
FC_MULTIVERSION(FN(global_avg), (const T *restrict x, T *restrict y, int64_t planes, int64_t n),
                (x, y, planes, n))

/* Global average pooling of blocks [b0, b1) of 16 planes (the last may be short). */
static void FN(global_avg_blocks)(void *ctx, int64_t b0, int64_t b1, int slot)
{
    const FN(fc_planes) *a = ctx;
    const int64_t planes = a->out_sz, p0 = b0 * 16, p1 = b1 * 16 < planes ? b1 * 16 : planes;
    (void)slot;
#if defined(__x86_64__)
    if (!IS_F64 && a->in_sz <= 4096 && fc_dwpool_isa(-1) == 2) {
        /* float32 planes of up to 4096 values, 16 at a time */
        fc_global_avg_f32_avx512((const float *)(const void *)a->x + p0 * a->in_sz,
                                 (float *)(void *)a->y + p0, p1 - p0, a->in_sz);
        return;
    }
    if (!IS_F64 && a->in_sz <= 4096 && fc_dwpool_isa(-1) == 1) {
        fc_global_avg_f32_avx2((const float *)(const void *)a->x + p0 * a->in_sz,
                               (float *)(void *)a->y + p0, p1 - p0, a->in_sz);
        return;
    }
#endif
    FN(global_avg)(a->x + p0 * a->in_sz, a->y + p0, p1 - p0, a->in_sz);
}

static void FN(adaptive_avg_planes)(void *ctx, int64_t p0, int64_t p1, int slot)
{
    const FN(fc_planes) *a = ctx;
    const int seq = FN(pool_blocks_geometry)(a->in_sz, a->out_sz, a->OW);
    (void)slot;
    for (int64_t p = p0; p < p1; p++)
        (seq ? FN(adaptive_avg_plane_seq)
             : FN(adaptive_avg_plane))(a->x + p * a->in_sz, a->y + p * a->out_sz, a->H, a->W,
                                       a->OH, a->OW);
}

static void FN(adaptive_avg_block_at)(const FN(fc_planes) *a, int64_t p0, int64_t nl, T *xs,
                                      T *ys, int32_t *is)
{
    (void)is;
    FN(adaptive_avg_block)(a->x + p0 * a->in_sz, a->y + p0 * a->out_sz, a->H, a->W, a->OH,
                           a->OW, nl, xs, ys);
}

static void FN(adaptive_avg_blocks)(void *ctx, int64_t b0, int64_t b1, int slot)
{
    FN(pb_blocks)(ctx, b0, b1, slot, FN(adaptive_avg_block_at), FN(adaptive_avg_planes));
}

/* x is (N, C, H, W), y is (N, C, OH, OW). */
void FN(fc_adaptive_avg_pool2d)(const T *x, T *y, int64_t N, int64_t C, int64_t H, int64_t W,
                               int64_t OH, int64_t OW)
{
    FC_ASSERT_PLANES(N, C, H, W, OH, OW);
    const int64_t planes = N * C, in_sz = H * W, out_sz = OH * OW;
    const int64_t cost = fc_cost_mem(FN(plane_bytes)(planes, in_sz, out_sz, 0), planes * in_sz);
    if (OH == 1 && OW == 1) { /* global pooling: blocks of 16 planes, one dispatch per block */
        FN(fc_planes) a = {.x = x, .y = y, .in_sz = in_sz, .out_sz = planes};
        fc_planes_run(FN(global_avg_blocks), &a, ceil_div(planes, 16), cost);
        return;
    }
    FN(fc_planes) a = {.x = x, .y = y, .in_sz = in_sz, .out_sz = out_sz,
                       .H = H, .W = W, .OH = OH, .OW = OW, .nplanes = planes};
    if (FN(pool_blocks_ok)(planes, in_sz, out_sz, OW)) /* small planes: 16 at a time */
        fc_planes_run(FN(adaptive_avg_blocks), &a, ceil_div(planes, FC_PB_LANES), cost);
    else
        fc_planes_run(FN(adaptive_avg_planes), &a, planes, cost);
}

/* x is (H, W), y and idx (or NULL) are (OH, OW); the rules of max_point. */
static void FN(adaptive_max_plane)(const T *restrict x, T *restrict y, int64_t *restrict idx,
                                  int64_t H, int64_t W, int64_t OH, int64_t OW)
{
#if defined(__x86_64__)
    const int wide = !IS_F64 && H * W <= INT32_MAX - 16 && fc_dwpool_isa(-1) == 2;
#endif
    for (int64_t i = 0; i < OH; i++) {
        const int64_t h0 = fc_bin_start(i, H, OH), h1 = fc_bin_end(i, H, OH);
        for (int64_t j = 0; j < OW; j++) {
            const int64_t w0 = fc_bin_start(j, W, OW), w1 = fc_bin_end(j, W, OW);
#if defined(__x86_64__)
            if (wide && w1 - w0 >= 16) { /* 16 columns at a time */
                int64_t bi;
                y[i * OW + j] = (T)fc_amax_bin_f32_avx512((const float *)(const void *)x, W,
                                                          h0, h1, w0, w1, &bi);
                if (idx)
                    idx[i * OW + j] = bi;
                continue;
            }
#endif
            T m = -INFINITY;
            int64_t mi = h0 * W + w0;
            for (int64_t h = h0; h < h1; h++) {
                const T *xr = x + h * W;
                for (int64_t w = w0; w < w1; w++) {
                    T v = xr[w];
                    if (FC_TAKE(v, m)) {
                        m = v;
                        mi = h * W + w;
                    }
                }
            }
            y[i * OW + j] = m;
            if (idx)
                idx[i * OW + j] = mi;
        }
    }
}

/* Global max pooling of blocks [b0, b1) of 16 planes (the last may be short). */
static void FN(global_max_blocks)(void *ctx, int64_t b0, int64_t b1, int slot)
{
    const FN(fc_planes) *a = ctx;
    const int64_t planes = a->out_sz, p0 = b0 * 16, p1 = b1 * 16 < planes ? b1 * 16 : planes;
    (void)slot;
#if defined(__x86_64__)
    if (!IS_F64 && a->in_sz <= INT32_MAX - 16 && fc_dwpool_isa(-1) == 2) {
        fc_global_max_f32_avx512((const float *)(const void *)a->x + p0 * a->in_sz,
                                 (float *)(void *)a->y + p0, a->idx ? a->idx + p0 : NULL,
                                 p1 - p0, a->in_sz);
        return;
    }
#endif
    for (int64_t p = p0; p < p1; p++)
        FN(adaptive_max_plane)(a->x + p * a->in_sz, a->y + p, a->idx ? a->idx + p : NULL,
                               a->H, a->W, 1, 1);
}

static void FN(adaptive_max_planes)(void *ctx, int64_t p0, int64_t p1, int slot)
{
    const FN(fc_planes) *a = ctx;
    (void)slot;
    for (int64_t p = p0; p < p1; p++)
        FN(adaptive_max_plane)(a->x + p * a->in_sz, a->y + p * a->out_sz,
                               a->idx ? a->idx + p * a->out_sz : NULL, a->H, a->W, a->OH, a->OW);
}

/* Adaptive max pooling of one block of nl planes (see max_pool_block): each bin scanned as
 * adaptive_max_plane scans it, for 16 planes at once. The lane loops are max_pool_block's,
 * written out again: as shared inline helpers they ran 5-10% slower (gcc kept the running
 * maxima in memory; 8x256x28x28 max 3x3/2, one thread, 711 -> 785 us). */
FC_INLINE void FC_CAT(FN(adaptive_max_block), _body)(const T *restrict x, T *restrict y,
                                                     int64_t *restrict idx, int64_t H,
                                                     int64_t W, int64_t OH, int64_t OW,
                                                     int64_t nl, T *restrict xs,
                                                     T *restrict ys, int32_t *restrict is)
{
    enum { L = FC_PB_LANES };
    FN(pb_interleave)(x, xs, H * W, nl);
    for (int64_t i = 0; i < OH; i++) {
        const int64_t h0 = fc_bin_start(i, H, OH), h1 = fc_bin_end(i, H, OH);
        for (int64_t j = 0; j < OW; j++) {
            const int64_t w0 = fc_bin_start(j, W, OW), w1 = fc_bin_end(j, W, OW);
            T m[L];
            int32_t mi[L];
#pragma omp simd
            for (int l = 0; l < L; l++) {
                m[l] = -INFINITY;
                mi[l] = (int32_t)(h0 * W + w0);
            }
            for (int64_t h = h0; h < h1; h++)
                for (int64_t w = w0; w < w1; w++) {
                    const int32_t tap = (int32_t)(h * W + w);
                    const T *restrict v = xs + tap * L;
#pragma omp simd
                    for (int l = 0; l < L; l++) {
                        const T vl = v[l];
                        const int t = FC_TAKE(vl, m[l]);
                        m[l] = t ? vl : m[l];
                        mi[l] = t ? tap : mi[l];
                    }
                }
            const int64_t o = i * OW + j;
#pragma omp simd
            for (int l = 0; l < L; l++) {
                ys[o * L + l] = m[l];
                is[o * L + l] = mi[l];
            }
        }
    }
    FN(pb_spread)(ys, is, y, idx, OH * OW, nl);
}
FC_MULTIVERSION(FN(adaptive_max_block),
                (const T *restrict x, T *restrict y, int64_t *restrict idx, int64_t H,
                 int64_t W, int64_t OH, int64_t OW, int64_t nl, T *restrict xs,
                 T *restrict ys, int32_t *restrict is),
                (x, y, idx, H, W, OH, OW, nl, xs, ys, is))

static void FN(adaptive_max_block_at)(const FN(fc_planes) *a, int64_t p0, int64_t nl, T *xs,
                                      T *ys, int32_t *is)
{
    FN(adaptive_max_block)(a->x + p0 * a->in_sz, a->y + p0 * a->out_sz,
                           a->idx ? a->idx + p0 * a->out_sz : NULL, a->H, a->W, a->OH, a->OW,
                           nl, xs, ys, is);
}

static void FN(adaptive_max_blocks)(void *ctx, int64_t b0, int64_t b1, int slot)
{
    FN(pb_blocks)(ctx, b0, b1, slot, FN(adaptive_max_block_at), FN(adaptive_max_planes));
}

/* x is (N, C, H, W), y and idx (or NULL) are (N, C, OH, OW). */
void FN(fc_adaptive_max_pool2d)(const T *x, T *y, int64_t *idx, int64_t N, int64_t C, int64_t H,
                               int64_t W, int64_t OH, int64_t OW)
{
    FC_ASSERT_PLANES(N, C, H, W, OH, OW);
    const int64_t planes = N * C, in_sz = H * W, out_sz = OH * OW;
    const int64_t cost = fc_cost_mem(FN(plane_bytes)(planes, in_sz, out_sz, idx != NULL),
                                     planes * in_sz);
    if (OH == 1 && OW == 1) { /* global pooling: blocks of 16 planes, one dispatch per block */
        FN(fc_planes) a = {.x = x, .y = y, .idx = idx, .in_sz = in_sz, .out_sz = planes,
                           .H = H, .W = W};
        fc_planes_run(FN(global_max_blocks), &a, ceil_div(planes, 16), cost);
        return;
    }
    FN(fc_planes) a = {.x = x, .y = y, .idx = idx, .in_sz = in_sz, .out_sz = out_sz,
                       .H = H, .W = W, .OH = OH, .OW = OW, .nplanes = planes};
    if (FN(pool_blocks_ok)(planes, in_sz, out_sz, OW)) /* small planes: 16 at a time */
        fc_planes_run(FN(adaptive_max_blocks), &a, ceil_div(planes, FC_PB_LANES), cost);
    else
        fc_planes_run(FN(adaptive_max_planes), &a, planes, cost);
}

/* ------------------------------------------------------------------ backward */

/* gy and idx are (N, C, OH, OW), gx is (N, C, H, W). An index outside [0, H*W) (a window
 * with no tap inside the input) is skipped. */
static void FN(max_back_planes)(void *ctx, int64_t p0, int64_t p1, int slot)
{
    const FN(fc_planes) *a = ctx;
    const int64_t in_sz = a->in_sz, out_sz = a->out_sz;
    (void)slot;
    for (int64_t p = p0; p < p1; p++) {
        T *g = a->y + p * in_sz;
        const T *gp = a->x + p * out_sz;
        const int64_t *ip = a->cidx + p * out_sz;
        memset(g, 0, (size_t)in_sz * sizeof(T));
        for (int64_t k = 0; k < out_sz; k++) {
            const int64_t i = ip[k];
            if (i >= 0 && i < in_sz)
                g[i] += gp[k];
        }
    }
}

void FN(fc_max_pool2d_backward)(const T *gy, const int64_t *idx, T *gx, int64_t N, int64_t C,
                               int64_t H, int64_t W, int64_t OH, int64_t OW)
{
    FC_ASSERT_PLANES(N, C, H, W, OH, OW);
    const int64_t planes = N * C, in_sz = H * W, out_sz = OH * OW;
    /* x = gy, y = gx: planes of out_sz values in, in_sz out */
    FN(fc_planes) a = {.x = gy, .y = gx, .cidx = idx, .in_sz = in_sz, .out_sz = out_sz};
    fc_planes_run(FN(max_back_planes), &a, planes,
                  fc_cost_mem(FN(plane_bytes)(planes, in_sz, out_sz, 1), planes * out_sz));
}

/* gy is (OH, OW), gx is (H, W): every gy element spread over its clipped window. */
FC_INLINE void FC_CAT(FN(avg_back_plane), _body)(const T *restrict gy, T *restrict gx, const fc_win *g,
                                      int cip, int64_t divisor)
{
    const int64_t W = g->W, OW = g->OW;
    memset(gx, 0, (size_t)(g->H * W) * sizeof(T));
    for (int64_t oh = 0; oh < g->OH; oh++) {
        FN(fc_span) h = FN(avg_span)(oh, g->H, g->KH, g->sh, g->ph);
        for (int64_t ow = 0; ow < OW; ow++) {
            FN(fc_span) w = FN(avg_span)(ow, W, g->KW, g->sw, g->pw);
            const T d = FN(avg_div)(h.pool * w.pool, (h.c1 - h.c0) * (w.c1 - w.c0), cip, divisor);
            const T v = gy[oh * OW + ow] / d;
            for (int64_t ih = h.c0; ih < h.c1; ih++) {
                T *gr = gx + ih * W;
                for (int64_t iw = w.c0; iw < w.c1; iw++)
                    gr[iw] += v;
            }
        }
    }
}
FC_MULTIVERSION(FN(avg_back_plane),
                (const T *restrict gy, T *restrict gx, const fc_win *g, int cip, int64_t divisor),
                (gy, gx, g, cip, divisor))

static void FN(avg_back_planes)(void *ctx, int64_t p0, int64_t p1, int slot)
{
    const FN(fc_planes) *a = ctx;
    (void)slot;
    for (int64_t p = p0; p < p1; p++)
        FN(avg_back_plane)(a->x + p * a->out_sz, a->y + p * a->in_sz, a->g, a->cip, a->divisor);
}

/* gy is (N, C, OH, OW), gx is (N, C, H, W): the adjoint of fc_avg_pool2d (same shape). */
void FN(fc_avg_pool2d_backward)(const T *gy, T *gx, const fc_pool_shape *s,
                               int count_include_pad, int64_t divisor)
{
    FC_ASSERT_POOL_SHAPE(s);
    FC_ASSERT(s->dh == 1 && s->dw == 1);
    const fc_win g = pool_win(s);
    const int64_t planes = s->N * s->C, in_sz = s->H * s->W, out_sz = s->OH * s->OW;
    /* x = gy, y = gx */
    FN(fc_planes) a = {.x = gy, .y = gx, .g = &g, .cip = count_include_pad, .divisor = divisor,
                       .in_sz = in_sz, .out_sz = out_sz};
    fc_planes_run(FN(avg_back_planes), &a, planes,
                  fc_cost_mem(FN(plane_bytes)(planes, in_sz, out_sz, 0),
                              planes * out_sz * s->KH * s->KW));
}

static void FN(adaptive_avg_back_planes)(void *ctx, int64_t p0, int64_t p1, int slot)
{
    const FN(fc_planes) *a = ctx;
    const int64_t in_sz = a->in_sz, out_sz = a->out_sz, H = a->H, W = a->W, OH = a->OH,
                  OW = a->OW;
    (void)slot;
    for (int64_t p = p0; p < p1; p++) {
        T *g = a->y + p * in_sz;
        const T *gp = a->x + p * out_sz;
        memset(g, 0, (size_t)in_sz * sizeof(T));
        for (int64_t i = 0; i < OH; i++) {
            const int64_t h0 = fc_bin_start(i, H, OH), h1 = fc_bin_end(i, H, OH);
            for (int64_t j = 0; j < OW; j++) {
                const int64_t w0 = fc_bin_start(j, W, OW), w1 = fc_bin_end(j, W, OW);
                const T v = gp[i * OW + j] / (T)((h1 - h0) * (w1 - w0));
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++)
                        g[h * W + w] += v;
            }
        }
    }
}

/* gy is (N, C, OH, OW), gx is (N, C, H, W): the adjoint of fc_adaptive_avg_pool2d. */
void FN(fc_adaptive_avg_pool2d_backward)(const T *gy, T *gx, int64_t N, int64_t C, int64_t H,
                                        int64_t W, int64_t OH, int64_t OW)
{
    FC_ASSERT_PLANES(N, C, H, W, OH, OW);
    const int64_t planes = N * C, in_sz = H * W, out_sz = OH * OW;
    /* x = gy, y = gx */
    FN(fc_planes) a = {.x = gy, .y = gx, .in_sz = in_sz, .out_sz = out_sz,
                       .H = H, .W = W, .OH = OH, .OW = OW};
    fc_planes_run(FN(adaptive_avg_back_planes), &a, planes,
                  fc_cost_mem(FN(plane_bytes)(planes, in_sz, out_sz, 0), planes * in_sz));
}

#undef FC_TAKE
#endif /* FC_TYPED */
