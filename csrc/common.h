/* common.h: what every C file of fastconv shares; private (not part of the cffi cdef).
 *
 *   ceil_div round_up min64 max64 gcd64  int64_t arithmetic of the planners and loops
 *   fc_lanes16                           lanes [lo, hi) of a 16-lane mask (masked loads)
 *   FC_ASSERT                            a written precondition, checked in debug builds
 *   FC_ASSERT_CONV_SHAPE, _POOL_SHAPE    the preconditions of an fc_conv_shape / fc_pool_shape
 *   fc_cpu_has                           the one CPU-feature test (fc_cpu_features, runtime.c)
 *   FC_TYPED, T, FN, IS_F64              the float / double instantiation of a file
 *   FC_MULTIVERSION, FC_T256, FC_T512    one body compiled per instruction set, picked at run
 *                                        time by fc_dwpool_isa (depthwise and pooling)
 *   fc_epilogue_row_f32 / _f64           the fused epilogue (fc_epilogue) on one run of outputs
 *   fc_win                               the interior-window geometry of depthwise_conv2d.c
 *                                        and pool2d.c
 *   fc_direct_fill_*, _tap_offsets       the input strip of the direct conv kernels
 *   fc_parallel_for, fc_team_for,        the thread pool of parallel.c (every multi-threaded
 *   fc_chunk_for, fc_cost_mem,           loop of the conv, depthwise and pooling kernels) and
 *   fc_cost_macs                         the work estimates that size its teams and chunks
 *
 * Instantiation: a file whose kernels exist for both dtypes is written once, its typed part
 * below `#else` of an `#ifndef FC_TYPED` section; the untyped part ends with
 *     #define FC_INSTANTIATE "conv2d.c"
 *     #include "common.h"
 * which includes the file twice more with FC_TYPED defined: T = float, FN(name) = name_f32,
 * IS_F64 = 0, then T = double, FN(name) = name_f64, IS_F64 = 1.
 *
 * Debug build: `FASTCONV_DEBUG=1 python csrc/build_ffi.py` defines FASTCONV_DEBUG, and every
 * FC_ASSERT then aborts with the file, line and condition when its condition is false; in a
 * normal build FC_ASSERT compiles to nothing.
 *
 * Build: included by the C files of csrc/; `python csrc/build_ffi.py` rebuilds them all.
 */
#ifndef FC_COMMON_H
#define FC_COMMON_H

#include <stdint.h>

#include "fastconv.h"

/* ------------------------------------------------------------------ arithmetic */

/* ceil(a / b) for a >= 0, b >= 1. */
static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
/* a rounded up to a multiple of b (a >= 0, b >= 1). */
static inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
/* The lanes [lo, hi) of 16 as a mask, lo and hi clamped to [0, 16]. */
static inline uint32_t fc_lanes16(int64_t lo, int64_t hi) {
    const uint32_t a = lo <= 0 ? 0xFFFFu : lo >= 16 ? 0u : 0xFFFFu << lo;
    const uint32_t b = hi >= 16 ? 0xFFFFu : hi <= 0 ? 0u : (1u << hi) - 1u;
    return a & b & 0xFFFFu;
}
static inline int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* ------------------------------------------------------------------ contracts */

#ifdef FASTCONV_DEBUG
#include <stdio.h>
#include <stdlib.h>
static inline void fc_assert_fail(const char *cond, const char *file, int line,
                                  const char *func) {
    fprintf(stderr, "fastconv: %s:%d: %s: contract violated: %s\n", file, line, func, cond);
    abort();
}
#define FC_ASSERT(cond) \
    ((cond) ? (void)0 : fc_assert_fail(#cond, __FILE__, __LINE__, __func__))
#else
/* sizeof does not evaluate its operand: no code, but the names in it count as used */
#define FC_ASSERT(cond) ((void)sizeof(!(cond)))
#endif

/* The geometry every convolution kernel assumes: sizes >= 1 except N, OC, OH, OW >= 0 (then
 * there is nothing to compute), strides and dilations >= 1, padding >= 0, G divides C and OC. */
#define FC_ASSERT_CONV_SHAPE(s)                                                        \
    do {                                                                               \
        FC_ASSERT((s)->N >= 0 && (s)->OC >= 0 && (s)->OH >= 0 && (s)->OW >= 0);        \
        FC_ASSERT((s)->C >= 1 && (s)->H >= 1 && (s)->W >= 1);                          \
        FC_ASSERT((s)->KH >= 1 && (s)->KW >= 1);                                       \
        FC_ASSERT((s)->sh >= 1 && (s)->sw >= 1 && (s)->dh >= 1 && (s)->dw >= 1);       \
        FC_ASSERT((s)->ph >= 0 && (s)->pw >= 0);                                       \
        FC_ASSERT((s)->G >= 1 && (s)->C % (s)->G == 0 && (s)->OC % (s)->G == 0);       \
    } while (0)

/* The geometry every pooling kernel with a window assumes: sizes >= 1 except N >= 0, strides
 * and dilations >= 1, padding >= 0. */
#define FC_ASSERT_POOL_SHAPE(s)                                                        \
    do {                                                                               \
        FC_ASSERT((s)->N >= 0 && (s)->C >= 1 && (s)->H >= 1 && (s)->W >= 1);           \
        FC_ASSERT((s)->KH >= 1 && (s)->KW >= 1 && (s)->OH >= 1 && (s)->OW >= 1);       \
        FC_ASSERT((s)->sh >= 1 && (s)->sw >= 1 && (s)->dh >= 1 && (s)->dw >= 1);       \
        FC_ASSERT((s)->ph >= 0 && (s)->pw >= 0);                                       \
    } while (0)

/* ------------------------------------------------------------------ CPU features */

/* 1 when the CPU (and the OS, which must save the wide registers) supports every feature of
 * `bits` (enum fc_cpu_feature). fc_cpu_features probes once and then returns the saved
 * mask, so this is cheap enough for every call of a kernel. */
static inline int fc_cpu_has(int bits) { return (fc_cpu_features() & bits) == bits; }

/* ------------------------------------------------------------------ threads */

/* fn(ctx, lo, hi, slot): the loop body over indices [lo, hi), run by the thread in `slot`
 * (0 = the caller, 1 .. team-1 = workers; a slot runs on one thread at a time, so per-slot
 * scratch needs no lock). Slots are below FC_POOL_SLOTS, the largest team. */
#define FC_POOL_SLOTS 65
typedef void (*fc_range_fn)(void *ctx, int64_t lo, int64_t hi, int slot);
/* Run fn over [0, n) in chunks of `chunk` indices on at most `team` threads, the caller
 * included; returns when every chunk is done, with the number of threads that ran one. */
int fc_parallel_for(int64_t n, int64_t chunk, int team, fc_range_fn fn, void *ctx);
/* Threads worth using for `cost_ns` of work (at most `threads`): the grain size. */
int fc_team_for(int64_t cost_ns, int threads);
/* Indices per chunk for n indices of `cost_ns` work in all, run by `team` threads. */
int64_t fc_chunk_for(int64_t n, int64_t cost_ns, int team);

/* One core's time, in ns, for work that moves `bytes` through the caches and does `ops`
 * vector-friendly element operations (window taps, adds), or `macs` GEMM multiply-adds:
 * rough rates from the 1-thread timings in bench/RESULTS.md (about 8 bytes, 16 taps and 50
 * float32 multiply-adds per ns); they only decide threads and chunk sizes. */
static inline int64_t fc_cost_mem(int64_t bytes, int64_t ops) { return bytes / 8 + ops / 16; }
static inline int64_t fc_cost_macs(int64_t macs) { return macs / 50; }

/* ------------------------------------------------------------------ multiversioning */

#define FC_INLINE static inline __attribute__((always_inline))
#define FC_CAT_(a, b) a##b
#define FC_CAT(a, b) FC_CAT_(a, b)

/* FC_MULTIVERSION(name, params, args): from `name_body`, an always-inline function, make
 * `name`, which runs the copy compiled for the level fc_dwpool_isa reports (2: AVX-512,
 * 1: AVX2+FMA, 0: baseline). Only x86-64 gets the targeted copies. */
#if defined(__x86_64__)
#define FC_T512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#define FC_T256 __attribute__((target("avx2,fma")))
#define FC_MULTIVERSION(name, params, args)                                         \
    static void FC_CAT(name, _base) params { FC_CAT(name, _body) args; }            \
    FC_T256 static void FC_CAT(name, _avx2) params { FC_CAT(name, _body) args; }    \
    FC_T512 static void FC_CAT(name, _avx512) params { FC_CAT(name, _body) args; }  \
    static void name params                                                         \
    {                                                                               \
        switch (fc_dwpool_isa(-1)) {                                                \
        case 2: FC_CAT(name, _avx512) args; break;                                  \
        case 1: FC_CAT(name, _avx2) args; break;                                    \
        default: FC_CAT(name, _base) args;                                          \
        }                                                                           \
    }
#else
#define FC_MULTIVERSION(name, params, args) \
    static void name params { FC_CAT(name, _body) args; }
#endif

#if defined(__x86_64__)
#include <immintrin.h>

/* r[i] lane j -> r[j] lane i: a 16x16 float transpose in registers (32-bit, then 64-bit
 * interleaves, then two rounds of 128-bit lane shuffles; 64 shuffles). GEMM's pack_a and the
 * pooling of small planes (pool2d.c) use it. */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
fc_transpose16_f32(__m512 r[16])
{
    __m512 t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 16; i += 4) {
        __m512d t0 = _mm512_castps_pd(t[i]), t1 = _mm512_castps_pd(t[i + 1]);
        __m512d t2 = _mm512_castps_pd(t[i + 2]), t3 = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        t[j] = _mm512_shuffle_f32x4(r[j], r[j + 4], 0x88);
        t[j + 4] = _mm512_shuffle_f32x4(r[j], r[j + 4], 0xdd);
        t[j + 8] = _mm512_shuffle_f32x4(r[j + 8], r[j + 12], 0x88);
        t[j + 12] = _mm512_shuffle_f32x4(r[j + 8], r[j + 12], 0xdd);
    }
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
        r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
    }
}
#endif

/* ------------------------------------------------------------------ epilogue */

/* y[i] = act(a * y[i] + c + r[i]) for i < n: outputs of channel o (a = scale[o] or 1, c =
 * shift[o] or 0, r = the residual's matching run or NULL). The bias is already in y. The
 * clamps keep NaN (a comparison with NaN is false), as torch's relu and relu6 do. One loop
 * per case, so that each vectorises. */
#define FC_EPILOGUE_ROW(T, SUF)                                                              \
    static inline void fc_epilogue_row_##SUF(const fc_epilogue *e, int64_t o, T *restrict y,  \
                                             const T *restrict r, int64_t n) {               \
        const T a = e->scale ? ((const T *)e->scale)[o] : (T)1;                              \
        const T c = e->shift ? ((const T *)e->shift)[o] : (T)0;                              \
        if (e->scale || e->shift) {                                                          \
            if (e->scale)                                                                    \
                for (int64_t i = 0; i < n; i++) y[i] = a * y[i] + c;                         \
            else                                                                             \
                for (int64_t i = 0; i < n; i++) y[i] += c;                                   \
        }                                                                                    \
        if (r)                                                                               \
            for (int64_t i = 0; i < n; i++) y[i] += r[i];                                    \
        if (e->activation == FC_ACT_RELU)                                                    \
            for (int64_t i = 0; i < n; i++) y[i] = y[i] < (T)0 ? (T)0 : y[i];                \
        else if (e->activation == FC_ACT_RELU6)                                              \
            for (int64_t i = 0; i < n; i++)                                                  \
                y[i] = y[i] < (T)0 ? (T)0 : y[i] > (T)6 ? (T)6 : y[i];                       \
    }
FC_EPILOGUE_ROW(float, f32)
FC_EPILOGUE_ROW(double, f64)
#undef FC_EPILOGUE_ROW

/* Whether an epilogue does anything. */
static inline int fc_epilogue_active(const fc_epilogue *e) {
    return e && (e->scale || e->shift || e->residual || e->activation != FC_ACT_NONE);
}

/* ------------------------------------------------------------------ window geometry */

/* Geometry of one plane of a depthwise convolution or a pooling window along W; lo..hi are
 * the interior output columns, those whose every tap iw = ow*sw - pw + kw*dw (0 <= kw < KW)
 * lies inside [0, W). */
typedef struct {
    int64_t H, W, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, lo, hi;
} fc_win;

static inline fc_win fc_win_make(int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t KH,
                                 int64_t KW, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                                 int64_t dh, int64_t dw) {
    fc_win g = {H, W, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, 0, 0};
    int64_t lo = ceil_div(pw, sw);
    int64_t last = W - 1 - (KW - 1) * dw + pw; /* interior needs ow*sw <= last */
    int64_t hi = last >= 0 ? last / sw + 1 : 0;
    if (lo > OW) lo = OW;
    if (hi > OW) hi = OW;
    if (hi < lo) hi = lo;
    g.lo = lo;
    g.hi = hi;
    FC_ASSERT(0 <= g.lo && g.lo <= g.hi && g.hi <= OW);
    return g;
}

/* ------------------------------------------------------------------ direct conv strips */

/* Short copy loops stay loops: gcc would otherwise turn them into memcpy / memset calls,
 * whose call overhead on runs of tens of values was 14% of a ResNeXt layer (perf). */
#define FC_NO_MEMCPY __attribute__((optimize("no-tree-loop-distribute-patterns")))

/* The padded, stride-phased strip of input rows that conv_direct.c and conv_igemm.c read
 * (defined in conv_direct.c): per-tap offsets, and the fill of one task's rows. */
int64_t *fc_direct_tap_offsets(const fc_conv_shape *s, int64_t Rfull, int64_t Wq);
void fc_direct_fill_f32(const float *x, const fc_conv_shape *s, int64_t Cg, int64_t Rfull,
                        int64_t Wq, int64_t n, int64_t g, int64_t i0, int64_t nr, float *strip);
void fc_direct_fill_f64(const double *x, const fc_conv_shape *s, int64_t Cg, int64_t Rfull,
                        int64_t Wq, int64_t n, int64_t g, int64_t i0, int64_t nr,
                        double *strip);
/* The positions q in [0, Wq) of stride phase f (q reads padded column q*sw + f, i.e. input
 * column q*sw + f - pw) that fall inside the input: [*qlo, *qhi). */
static inline void fc_phase_span(int64_t W, int64_t pw, int64_t f, int64_t sw, int64_t Wq,
                                 int64_t *qlo, int64_t *qhi) {
    int64_t lo = pw > f ? ceil_div(pw - f, sw) : 0;
    int64_t hi = W - 1 + pw - f >= 0 ? (W - 1 + pw - f) / sw + 1 : 0;
    *qlo = min64(lo, Wq);
    *qhi = min64(max64(hi, *qlo), Wq);
}

/* dst[q] = src[q*sw] for q in [qlo, qhi), 0 elsewhere in [0, Wq), or 0 everywhere when src is
 * NULL (a padding row): one phase row of a strip (src = the input row + f - pw). */
#define FC_STRIP_ROW(T, SUF)                                                                 \
    FC_NO_MEMCPY static inline void fc_strip_row_##SUF(T *restrict dst,                     \
                                                      const T *restrict src, int64_t sw,    \
                                                      int64_t Wq, int64_t qlo, int64_t qhi) \
    {                                                                                        \
        if (!src) {                                                                          \
            for (int64_t q = 0; q < Wq; q++) dst[q] = 0;                                     \
            return;                                                                          \
        }                                                                                    \
        for (int64_t q = 0; q < qlo; q++) dst[q] = 0;                                        \
        if (sw == 1)                                                                         \
            for (int64_t q = qlo; q < qhi; q++) dst[q] = src[q];                             \
        else if (sw == 2)                                                                    \
            for (int64_t q = qlo; q < qhi; q++) dst[q] = src[2 * q];                         \
        else                                                                                 \
            for (int64_t q = qlo; q < qhi; q++) dst[q] = src[q * sw];                        \
        for (int64_t q = qhi; q < Wq; q++) dst[q] = 0;                                       \
    }
FC_STRIP_ROW(float, f32)
FC_STRIP_ROW(double, f64)
#undef FC_STRIP_ROW

/* Their instruction-set level, and the bias + fused epilogue on a task's output rows. */
int fc_direct_level(int kernel);
void fc_direct_finish_f32(float *y, const float *b, const fc_epilogue *ep,
                          const fc_conv_shape *s, int64_t n, int64_t o0, int64_t o1, int64_t i0,
                          int64_t nr);
void fc_direct_finish_f64(double *y, const double *b, const fc_epilogue *ep,
                          const fc_conv_shape *s, int64_t n, int64_t o0, int64_t o1, int64_t i0,
                          int64_t nr);

#endif /* FC_COMMON_H */

/* ------------------------------------------------------------------ instantiation */

#if defined(FC_INSTANTIATE) && !defined(FC_TYPED)
#define FC_TYPED
#define T float
#define FN(name) name##_f32
#define IS_F64 0
#include FC_INSTANTIATE
#undef T
#undef FN
#undef IS_F64
#define T double
#define FN(name) name##_f64
#define IS_F64 1
#include FC_INSTANTIATE
#undef T
#undef FN
#undef IS_F64
#endif
