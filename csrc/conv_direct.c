/* conv_direct.c: direct 2-D convolution, no im2col: the `direct` step of conv2d's ladder,
 * float32 and float64.
 *
 * For the layers where im2col + GEMM wastes most of its work: grouped convs with few output
 * channels per group (ResNeXt: 8 per group, the GEMM's 14-row micro-tile is then half empty
 * and its K = 72 too short to pay for the packing) and convs with few input channels and a
 * large window (a network's 7x7/2 stem: im2col copies the input 49 times for K = 147).
 *
 * How: a task is (image, group, block of output rows). It copies the input rows the block
 * reads, with their zero padding, into a per-thread strip, each row split into its `sw`
 * stride phases (phase q holds padded columns q, q + sw, q + 2 sw, ...), so that for every
 * tap (c, kh, kw) the inputs of L consecutive outputs of a row are L consecutive values of
 * one phase row: a plain vector load at a per-tap offset, whatever the stride and dilation.
 * Outputs are vectors of L pixels along a row (L = 16 floats with AVX-512); a block of NOB
 * output channels x NVB such vectors stays in registers over all C/G*KH*KW taps: per tap NVB
 * loads, NOB broadcasts of a weight (packed per group tap-major) and NOB*NVB multiply-adds.
 * Shapes: AVX-512 8x3 (or 4x6 when the group has <= 4 output channels), AVX2 and baseline
 * x86-64 4x3 (2x6); row ends are masked stores. With AVX-512 at stride 1, where a padded row
 * (OW + (KW-1)*dw) is shorter than the row's vectors, the vectors run on across row ends
 * (flat positions, plan_direct) and the lanes past a row's end are left out of the stores.
 * The strip fill at strides 1 and 2 is vector code (float32; fc_direct_fill). Bias and the
 * fused epilogue (fc_epilogue) run on the task's rows while they are in cache.
 *
 * fc_direct_choice: conv2d's automatic choice takes this path (before Winograd) for groups of
 * at most 16 output channels (any window; at most 64 input channels unless grouped), for at
 * most 4 input channels per group with a window of 9 taps or more (a stem), and for windows
 * wider than 1x1 with at most 32 input and 64 output channels per group: where it measured
 * faster than im2col + GEMM and Winograd (bench/RESULTS.md, "Direct conv").
 * fc_direct_1d_choice: and for 1-D convs (one input and output row, a window of 2 taps or
 * more; float32: at most 128 input channels per group) where the images x groups share out
 * evenly over the threads or the output row folds into rows for them (fc_conv2d_direct;
 * a group's weights at most 512 KB):
 * one thread, float32, 1.0-1.4x faster than im2col + GEMM there (64 -> 64 channels, 3 taps
 * over 4096 samples: 1.31 -> 0.96 ms; AMD EPYC, Zen 4), at 256 channels a tie, at 512 im2col + GEMM is ahead;
 * float64 1.1-1.6x at any width (bench/RESULTS.md, "1-D convs").
 *
 * Returns 0, 1 when a workspace could not be allocated (the output is then incomplete), or
 * FC_DIRECT_DECLINED when one output row per thread needs more than the workspace bound
 * (conv2d then runs im2col + GEMM, which chunks any geometry).
 * Build: `python csrc/build_ffi.py`. Test: `pytest tests/test_c_conv.py -k direct`.
 */
#ifndef FC_TYPED

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* -std=c11 turns floating-point contraction off; a*b + c may become one FMA here. */
#pragma GCC optimize("fp-contract=fast")

/* Largest strip of one task (bytes): the input rows of a block stay in L2 while every output
 * channel of the group is computed from them. */
#define FC_DIRECT_STRIP_BYTES (256 * 1024)
/* Values after a strip's last row that the vector fill may overwrite (fc_direct_fill) and
 * the last flat position's loads may read (at most a vector's L - 1; FC_DIRECT_TASK). The
 * workspace is zeroed when made, so lanes left out of the stores never compute on garbage
 * (no denormal or NaN slow paths). */
#define FC_DIRECT_SLACK 16

typedef struct {
    int64_t M, Cg, taps;  /* output channels per group, input channels per group, Cg*KH*KW */
    int64_t L, nvec;      /* vector length (elements), vectors per output row */
    int64_t Wq;           /* length of one phase row of the strip */
    int flat;             /* vectors run along the task's rows as one line (FC_DIRECT_TASK) */
    int64_t rows, nrb;    /* output rows per task, row blocks per (image, group) */
    int64_t R;            /* strip rows per channel: the input rows `rows` output rows read */
    int64_t nob, nvb;     /* register block: output channels x vectors */
    int64_t strip_elems, wp_elems, ntasks;
    int nthreads;
} direct_plan;

int fc_direct_choice(const fc_conv_shape *s, int is_f64) {
    (void)is_f64; /* the same rule measured well for both */
    const int64_t Cg = s->C / s->G, M = s->OC / s->G, KK = s->KH * s->KW;
    if (Cg == 1 && M == 1) return 0;               /* depthwise: depthwise_conv2d.c */
    if (M <= 16 && (s->G > 1 || Cg <= 64)) return 1; /* grouped (ResNeXt), thin layers */
    if (KK >= 9 && Cg <= 4) return 1;               /* a network's stem */
    return KK > 1 && Cg <= 32 && M <= 64;           /* narrow 3x3 layers */
}

/* A 1-D conv (one input and output row): the direct kernel splits work by output rows, so it
 * has one task per image and group. */
static int fc_direct_is_1d(const fc_conv_shape *s) {
    return s->H == 1 && s->KH == 1 && s->OH == 1;
}

/* Whether `images` tasks share out evenly enough over `team` threads. */
static int fc_direct_tasks_share(int64_t images, int64_t team) {
    return team <= 1 || images % team == 0 || images >= 4 * team;
}

/* The rows a 1-D conv's output row is folded into for `team` threads (fc_conv2d_direct): the
 * most, up to 16 per thread, that divide OW into pieces of at least 64 outputs; 0 (no fold)
 * where that gives fewer than 2 per thread, and at strides past 1 (folded at stride 2, one
 * 64 -> 64 signal of 4096 samples took 0.355 ms on two threads, im2col + GEMM 0.306; AMD
 * EPYC, Zen 4). */
static int64_t fc_direct_fold_rows(const fc_conv_shape *s, int64_t team) {
    if (s->sw != 1) return 0;
    int64_t best = 0;
    for (int64_t r = 2; r <= 16 * team && r * 64 <= s->OW; r++)
        if (s->OW % r == 0) best = r;
    return best >= 2 * team ? best : 0;
}

int fc_direct_1d_choice(const fc_conv_shape *s, int is_f64, int nthreads) {
    const int64_t Cg = s->C / s->G, T = nthreads < 1 ? 1 : nthreads;
    if (!(fc_direct_is_1d(s) && s->KW > 1 && (is_f64 || Cg <= 128))) return 0;
    if (fc_direct_tasks_share(s->N * s->G, T)) return 1;
    /* folded, every thread streams the group's weights for each of its rows: where they pass
     * 512 KB (half a Zen 4 core's L2) im2col + GEMM is ahead (128 -> 128 channels, 15 taps
     * over 1024 samples, two threads, AMD EPYC (Zen 4): 3.3-3.6 ms folded, 2.8 on im2col + GEMM; 64 -> 64 with
     * 31 taps, 508 KB: 5.8 folded, 6.6) */
    const int64_t wbytes = (s->OC / s->G) * Cg * s->KW * (is_f64 ? 8 : 4);
    return wbytes <= 512 * 1024 && fc_direct_fold_rows(s, T) > 0;
}

/* Per tap (c, kh, kw), in the weights' order: the tap's offset in a strip of Rfull rows per
 * channel and phase rows of Wq values (fc_direct_fill). malloc'ed; NULL when out of memory. */
int64_t *fc_direct_tap_offsets(const fc_conv_shape *s, int64_t Rfull, int64_t Wq) {
    const int64_t Cg = s->C / s->G;
    int64_t *toff = malloc((size_t)(Cg * s->KH * s->KW) * sizeof(int64_t));
    if (!toff) return NULL;
    for (int64_t c = 0, t = 0; c < Cg; c++)
        for (int64_t kh = 0; kh < s->KH; kh++)
            for (int64_t kw = 0; kw < s->KW; kw++, t++)
                toff[t] = ((c * Rfull + kh * s->dh) * s->sw + kw * s->dw % s->sw) * Wq +
                          kw * s->dw / s->sw;
    return toff;
}

/* The instruction set of the direct kernels (2 AVX-512, 1 AVX2+FMA, 0 baseline): the best the
 * CPU runs (capped by FASTCONV_ISA), or at most the level of an explicit GEMM kernel (isa=). */
int fc_direct_level(int kernel) {
    int level = fc_dwpool_isa(-1);
    if (kernel >= FC_GEMM_NAIVE && kernel < FC_GEMM_AUTO && kernel < level)
        level = kernel < 0 ? 0 : kernel;
#if !defined(__x86_64__)
    level = 0;
#endif
    return level;
}

/* Register blocks of a task of r output rows (flat: vectors over the rows as one line). */
static int64_t direct_blocks(const direct_plan *pl, const fc_conv_shape *s, int64_t r) {
    const int64_t vecs = pl->flat ? ceil_div((r - 1) * pl->Wq + s->OW, pl->L) : r * pl->nvec;
    return ceil_div(vecs, pl->nvb);
}

/* The plan of a call on vectors of `vbytes` bytes with register blocks nob x nvb (wide: the
 * group has more than nob/2 output channels; narrow otherwise). 0, or 1 when the strips and
 * weights of one output row per thread exceed the workspace bound (the call then declines). */
static int plan_direct(const fc_conv_shape *s, int64_t es, int64_t vbytes, int64_t nob_wide,
                       int64_t nvb_wide, int nthreads, int64_t work_bytes, direct_plan *pl) {
    pl->M = s->OC / s->G;
    pl->Cg = s->C / s->G;
    pl->taps = pl->Cg * s->KH * s->KW;
    pl->L = vbytes / es;
    pl->nvec = ceil_div(s->OW, pl->L);
    pl->Wq = pl->nvec * pl->L + (s->KW - 1) * s->dw / s->sw;
    /* Flat positions (AVX-512, stride 1): where a padded row, OW + (KW-1)*dw values, is
     * shorter than the row's vectors, the vectors run on across row ends through the strip,
     * whose rows are then that long; the lanes of the (KW-1)*dw columns past a row's end are
     * computed and not stored. 28-wide rows: 28 of 30 lanes used, not 28 of 32. */
    const int64_t padded = s->OW + (s->KW - 1) * s->dw;
    pl->flat = vbytes == 64 && s->sh == 1 && s->sw == 1 && (s->KW - 1) * s->dw < pl->L &&
               padded < pl->nvec * pl->L;
    if (pl->flat) pl->Wq = padded;
    if (pl->M <= nob_wide / 2) {
        pl->nob = nob_wide / 2;
        pl->nvb = nvb_wide * 2;
    } else {
        pl->nob = nob_wide;
        pl->nvb = nvb_wide;
    }
    pl->wp_elems = round_up(pl->M, pl->nob) * pl->taps;
    const int64_t row_elems = pl->Cg * s->sw * pl->Wq; /* one strip row of every channel */
    const int64_t bound = min64(FC_DIRECT_STRIP_BYTES, work_bytes / max64(1, nthreads)) / es;
    /* rows per task: as many as the strip bound allows, fewer when the tasks would not
     * keep every thread busy (8 tasks per thread), then a multiple of nvb / gcd(nvec, nvb)
     * where possible so that the register blocks cover the rows without a ragged end */
    int64_t rows = s->OH;
    const int64_t per_plane = ceil_div(8 * (int64_t)nthreads, s->N * s->G);
    if (per_plane > 1) rows = ceil_div(s->OH, per_plane);
    while (rows > 1 && ((rows - 1) * s->sh + (s->KH - 1) * s->dh + 1) * row_elems > bound)
        rows = ceil_div(rows, 2);
    const int64_t q = pl->nvb / gcd64(pl->nvec, pl->nvb);
    if (rows > q && !pl->flat) rows = rows / q * q;
    /* then, from half to twice that, the rows whose tasks end soonest: the busiest thread's
     * tasks (the pool hands them out in turn) times a task's register blocks, ragged ones
     * included (the stem 7x7/2 @224 on 2 threads: 19 tasks of 6 rows, 10 on one thread,
     * against 14 of 8 rows, 7 each, 1.7% of their blocks ragged) */
    if (nthreads > 1) {
        const int64_t per = s->N * s->G;
        int64_t best = rows, best_t = INT64_MAX;
        for (int64_t r = max64(1, rows / 2); r <= min64(s->OH, 2 * rows); r++) {
            if (((r - 1) * s->sh + (s->KH - 1) * s->dh + 1) * row_elems > bound) break;
            const int64_t tasks = per * ceil_div(s->OH, r);
            const int64_t t = ceil_div(tasks, nthreads) * direct_blocks(pl, s, r);
            if (t < best_t || (t == best_t && llabs(r - rows) < llabs(best - rows)))
                best = r, best_t = t;
        }
        rows = best;
    }
    pl->rows = rows;
    pl->R = (rows - 1) * s->sh + (s->KH - 1) * s->dh + 1;
    pl->strip_elems = pl->R * row_elems;
    if ((pl->strip_elems + FC_DIRECT_SLACK + pl->wp_elems) * es * nthreads > work_bytes) return 1;
    pl->nrb = ceil_div(s->OH, rows);
    pl->ntasks = s->N * s->G * pl->nrb;
    pl->nthreads = (int)min64(nthreads < 1 ? 1 : nthreads, pl->ntasks);
    return 0;
}

/* The lanes of flat position q0 (L lanes from q0 of a line of rows Wq long) that hold
 * outputs: column q % Wq < OW, q < span (the last output of the task's rows + 1), as a mask
 * (keep) and their count. */
static inline void fc_direct_flat_lanes(int64_t q0, int64_t L, int64_t Wq, int64_t OW,
                                        int64_t span, uint32_t *keep, int64_t *cnt) {
    uint32_t k = 0;
    const int64_t end = min64(q0 + L, span);
    for (int64_t r0 = q0 / Wq * Wq; r0 < end; r0 += Wq) {
        const int64_t lo = max64(r0, q0) - q0, hi = min64(r0 + OW, end) - q0;
        if (hi > lo) k |= (uint32_t)(((1ull << hi) - 1u) & ~((1ull << lo) - 1u));
    }
    *keep = k;
    *cnt = __builtin_popcount(k);
}

/* The input row that strip row r of channel c reads (image n, group g, the task's output rows
 * from i0): 1 and its offset in x from input column -pw (so that padded column q is at
 * offset + q), or 0 where the row is padding, above or below the input. */
FC_INLINE int fc_direct_src_row(const fc_conv_shape *s, int64_t Cg, int64_t n, int64_t g,
                                    int64_t c, int64_t i0, int64_t r, int64_t *off) {
    const int64_t ih = i0 * s->sh - s->ph + r;
    *off = ((n * s->C + g * Cg + c) * s->H + ih) * s->W - s->pw;
    return ih >= 0 && ih < s->H;
}

#define FC_INSTANTIATE "conv_direct.c"
#include "common.h"

#else /* ------------------------------------------------------------ typed section */

/* What a register block applies to its sums before it stores them, in the order of the
 * separate pass (fc_direct_finish, which the kernels used before): + bias, then scale and
 * shift, then the activation, unless a residual must come between (then the activation is
 * left to the pass, with the residual). Done in registers, it saves a pass over the output:
 * the stem 7x7/2 3->64 @224 with a bias took 1.52 ms at 2 threads against 1.20 without
 * (the pass, a fifth of the call, ran at memory speed, perf). */
typedef struct {
    const T *b, *scale, *shift;
    int act; /* FC_ACT_*: applied here (FC_ACT_NONE when the pass applies it) */
} FN(direct_out);

/* acc[0 .. NV) of output channel o, as FN(direct_out) E says; vt is the vector type. ReLU
 * as the pass has it (y < 0 ? 0 : y, so NaN and -0.0 pass unchanged), by a mask. */
#define FC_DIRECT_OUT(E, o, acc, NV, vt)                                                     \
    do {                                                                                     \
        typedef __typeof__((vt){0} < (vt){0}) vi_;                                           \
        const T bo_ = (E)->b ? (E)->b[o] : (T)0;                                             \
        const T sc_ = (E)->scale ? (E)->scale[o] : (T)1;                                     \
        const T sh_ = (E)->shift ? (E)->shift[o] : (T)0;                                     \
        _Pragma("GCC unroll 8") for (int v_ = 0; v_ < (NV); v_++) {                          \
            vt r_ = (acc)[v_];                                                               \
            if ((E)->b) r_ = r_ + bo_;                                                       \
            if ((E)->scale) r_ = r_ * sc_ + sh_;                                             \
            else if ((E)->shift) r_ = r_ + sh_;                                              \
            if ((E)->act != FC_ACT_NONE) {                                                   \
                r_ = (vt)((vi_)r_ & ~(vi_)(r_ < (vt){0}));                                   \
                if ((E)->act == FC_ACT_RELU6) {                                              \
                    const vi_ big_ = (vi_)(r_ > (T)6 - (vt){0});                             \
                    r_ = (vt)(((vi_)r_ & ~big_) | ((vi_)((T)6 - (vt){0}) & big_));            \
                }                                                                            \
            }                                                                                \
            (acc)[v_] = r_;                                                                  \
        }                                                                                    \
    } while (0)

/* dst[v][a*ys + 0:cnt[v]] = sum over taps t of wp[t*NOB + a] * strip[pb[v] + toff[t] + 0:L]
 * for a < nm, v < nv, the lanes of keep[v] (cnt[v] of them) in order: one register block of
 * NOB output channels x NVB output vectors. A vector with lanes to leave out (cut by the row's
 * end, or flat positions past a row's end) is stored by PART (a masked store where there is
 * one: storing it value by value cost a quarter of a layer with 28-wide rows). */
#define FC_DIRECT_BLOCK(NAME, ATTR, VBYTES, NOB, NVB, PART)                                   \
    ATTR FC_INLINE void NAME(const T *restrict strip, const int64_t *restrict toff, int64_t taps, \
                        const T *restrict wp, const int64_t *restrict pb, T *const *dst,     \
                        const int64_t *restrict cnt, const uint32_t *restrict keep,          \
                        int64_t ys, int64_t nm, int64_t nv,                                  \
                        const FN(direct_out) *E, int64_t o)                                  \
    {                                                                                        \
        typedef T vt __attribute__((vector_size(VBYTES), aligned(sizeof(T)), may_alias));   \
        enum { L = VBYTES / sizeof(T) };                                                     \
        vt acc[NOB][NVB];                                                                    \
        const T *p[NVB];                                                                     \
        _Pragma("GCC unroll 8") for (int v = 0; v < NVB; v++) p[v] = strip + pb[v];          \
        _Pragma("GCC unroll 8") for (int a = 0; a < NOB; a++)                                \
            _Pragma("GCC unroll 8") for (int v = 0; v < NVB; v++) acc[a][v] = (vt){0};       \
        for (int64_t t = 0; t < taps; t++) {                                                 \
            const int64_t o = toff[t];                                                       \
            vt xv[NVB];                                                                      \
            _Pragma("GCC unroll 8") for (int v = 0; v < NVB; v++) xv[v] =                    \
                *(const vt *)(p[v] + o);                                                     \
            _Pragma("GCC unroll 8") for (int a = 0; a < NOB; a++)                            \
            {                                                                                \
                const vt wv = wp[t * NOB + a] - (vt){0};                                     \
                _Pragma("GCC unroll 8") for (int v = 0; v < NVB; v++) acc[a][v] += wv * xv[v]; \
            }                                                                                \
        }                                                                                    \
        _Pragma("GCC unroll 8") for (int a = 0; a < NOB; a++)                                \
        {                                                                                    \
            if (a >= nm) break;                                                              \
            if (E) FC_DIRECT_OUT(E, o + a, acc[a], NVB, vt);                                 \
            _Pragma("GCC unroll 8") for (int v = 0; v < NVB; v++)                            \
            {                                                                                \
                if (v >= nv) break;                                                          \
                T *d = dst[v] + a * ys;                                                      \
                if (cnt[v] == L)                                                             \
                    *(vt *)d = acc[a][v];                                                    \
                else                                                                         \
                    PART(d, acc[a][v], cnt[v], keep[v]);                                     \
            }                                                                                \
        }                                                                                    \
    }

/* The arguments of the task loop, for fc_parallel_for. */
typedef struct {
    const T *x, *w, *b;
    T *y;
    const fc_conv_shape *s;
    const direct_plan *pl;
    const int64_t *toff; /* per tap: its offset in the strip */
    const fc_epilogue *ep;
    int level;           /* instruction set: 2 AVX-512, 1 AVX2+FMA, 0 baseline */
    T **works;           /* one workspace per pool slot, made by the slot's thread */
    int64_t *packed_g;   /* per slot: the group whose weights its workspace holds, or -1 */
    _Atomic int failed;
} FN(direct_args);

#if defined(__x86_64__)
/* fc_direct_fill for float rows at stride 1, AVX-512: each 16 values of a strip row by one
 * masked load (lanes outside the input row masked off: they read nothing and come out 0)
 * and one full store, which may run up to 15 values past the row's end. The rows are
 * written in increasing address order, so that the next row overwrites what ran over, and
 * the strip has FC_DIRECT_SLACK values after its last row. */
FC_T512 static void FN(direct_fill_s1_512)(const float *x, const fc_conv_shape *s, int64_t Cg,
                                          int64_t Rfull, int64_t Wq, int64_t n, int64_t g,
                                          int64_t i0, int64_t R, float *strip)
{
    int64_t qlo, qhi;
    fc_phase_span(s->W, s->pw, 0, 1, Wq, &qlo, &qhi);
    for (int64_t c = 0; c < Cg; c++)
        for (int64_t r = 0; r < R; r++) {
            float *d = strip + (c * Rfull + r) * Wq;
            int64_t off;
            if (!fc_direct_src_row(s, Cg, n, g, c, i0, r, &off)) {
                for (int64_t q = 0; q < Wq; q += 16) _mm512_storeu_ps(d + q, _mm512_setzero_ps());
                continue;
            }
            const float *src = x + off;
            for (int64_t q = 0; q < Wq; q += 16) {
                const __mmask16 m = (__mmask16)fc_lanes16(qlo - q, qhi - q);
                _mm512_storeu_ps(d + q, _mm512_maskz_loadu_ps(m, src + q));
            }
        }
}

/* fc_direct_fill for float rows at stride 2, AVX-512: 32 padded values of a row by two
 * masked loads (lanes outside the input row read nothing and come out 0), their even and
 * odd values into the row's two phase rows by two-source permutes. Each phase row runs on
 * past its end as in direct_fill_s1_512, but phase 0's last vector is stored masked, so that
 * it leaves phase 1's row, written before it, as it is. The scalar gather took a third of
 * ResNeXt's 3x3/2 256 g32 @56 (perf). */
FC_T512 static void FN(direct_fill_s2_512)(const float *x, const fc_conv_shape *s, int64_t Cg,
                                          int64_t Rfull, int64_t Wq, int64_t n, int64_t g,
                                          int64_t i0, int64_t R, float *strip)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    const int64_t lo = s->pw, hi = s->pw + s->W; /* padded columns inside the input */
    const __mmask16 last = (__mmask16)fc_lanes16(0, Wq - (Wq - 1) / 16 * 16);
    for (int64_t c = 0; c < Cg; c++) {
        for (int64_t r = 0; r < R; r++) {
            float *d0 = strip + (c * Rfull + r) * 2 * Wq, *d1 = d0 + Wq;
            int64_t off;
            const float *src = fc_direct_src_row(s, Cg, n, g, c, i0, r, &off) ? x + off : NULL;
            for (int64_t q = 0; q < Wq; q += 16) {
                __m512 e = _mm512_setzero_ps(), o = e;
                if (src) {
                    const int64_t p = 2 * q; /* padded column of lane 0 */
                    const __m512 a = _mm512_maskz_loadu_ps((__mmask16)fc_lanes16(lo - p, hi - p),
                                                           src + p);
                    const __m512 b = _mm512_maskz_loadu_ps(
                        (__mmask16)fc_lanes16(lo - p - 16, hi - p - 16), src + p + 16);
                    e = _mm512_permutex2var_ps(a, ev, b);
                    o = _mm512_permutex2var_ps(a, od, b);
                }
                if (q + 16 < Wq) _mm512_storeu_ps(d0 + q, e);
                else _mm512_mask_storeu_ps(d0 + q, last, e);
                _mm512_storeu_ps(d1 + q, o);
            }
        }
    }
}

/* The same at stride 2 with AVX2: 16 padded values by two masked loads (_mm256_maskload_ps
 * reads nothing in masked-off lanes), their even and odd values by in-lane shuffles and a
 * cross-lane permute. Phase 0's last vector is stored first, so that phase 1's row, written
 * after it, overwrites what it ran over (AVX2's masked stores are slow). The compiler's copy
 * took a third of ResNeXt's 3x3/2 g32 @56 with FASTCONV_ISA=avx2 (perf). */
FC_T256 static void FN(direct_fill_s2_256)(const float *x, const fc_conv_shape *s, int64_t Cg,
                                          int64_t Rfull, int64_t Wq, int64_t n, int64_t g,
                                          int64_t i0, int64_t R, float *strip)
{
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int64_t lo = s->pw, hi = s->pw + s->W; /* padded columns inside the input */
    const int64_t qlast = (Wq - 1) / 8 * 8;
    for (int64_t c = 0; c < Cg; c++) {
        for (int64_t r = 0; r < R; r++) {
            float *d0 = strip + (c * Rfull + r) * 2 * Wq, *d1 = d0 + Wq;
            int64_t off;
            const float *src = fc_direct_src_row(s, Cg, n, g, c, i0, r, &off) ? x + off : NULL;
            for (int64_t k = -1; k <= qlast / 8; k++) {
                const int64_t q = k < 0 ? qlast : 8 * k; /* phase 0's last vector first */
                __m256 e = _mm256_setzero_ps(), o = e;
                if (src) {
                    const int64_t p = 2 * q; /* padded column of lane 0 */
                    const __m256i pa = _mm256_add_epi32(iota, _mm256_set1_epi32((int)min64(p, INT32_MAX / 2)));
                    const __m256i pb = _mm256_add_epi32(pa, _mm256_set1_epi32(8));
                    const __m256i l0 = _mm256_set1_epi32((int)(lo - 1)), h0 = _mm256_set1_epi32((int)hi);
                    const __m256 a = _mm256_maskload_ps(
                        src + p, _mm256_and_si256(_mm256_cmpgt_epi32(pa, l0), _mm256_cmpgt_epi32(h0, pa)));
                    const __m256 b = _mm256_maskload_ps(
                        src + p + 8, _mm256_and_si256(_mm256_cmpgt_epi32(pb, l0), _mm256_cmpgt_epi32(h0, pb)));
                    /* [a0 a2 b0 b2 | a4 a6 b4 b6] -> [a0 a2 a4 a6 b0 b2 b4 b6] */
                    e = _mm256_castpd_ps(_mm256_permute4x64_pd(
                        _mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
                    o = _mm256_castpd_ps(_mm256_permute4x64_pd(
                        _mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
                }
                if (k < 0) {
                    _mm256_storeu_ps(d0 + q, e);
                    continue;
                }
                if (q < qlast) _mm256_storeu_ps(d0 + q, e);
                _mm256_storeu_ps(d1 + q, o);
            }
        }
    }
}

#endif

/* Copy the padded input rows of output rows [i0, i0 + nr) of image n, group g (Cg channels)
 * into the strip, each row as sw phase rows of Wq values (zero where the padded input is
 * padding); channel c's rows start at c * Rfull strip rows. */
FC_NO_MEMCPY void FN(fc_direct_fill)(const T *x, const fc_conv_shape *s, int64_t Cg,
                                     int64_t Rfull, int64_t Wq, int64_t n, int64_t g,
                                     int64_t i0, int64_t nr, T *strip) {
    const int64_t sw = s->sw, R = (nr - 1) * s->sh + (s->KH - 1) * s->dh + 1;
#if defined(__x86_64__)
    if (!IS_F64 && sw == 2 && fc_dwpool_isa(-1) == 2) {
        FN(direct_fill_s2_512)((const float *)(const void *)x, s, Cg, Rfull, Wq, n, g, i0, R,
                               (float *)(void *)strip);
        return;
    }
    if (!IS_F64 && sw == 2 && fc_dwpool_isa(-1) == 1) {
        FN(direct_fill_s2_256)((const float *)(const void *)x, s, Cg, Rfull, Wq, n, g, i0, R,
                               (float *)(void *)strip);
        return;
    }
    if (!IS_F64 && sw == 1 && fc_dwpool_isa(-1) == 2) {
        FN(direct_fill_s1_512)((const float *)(const void *)x, s, Cg, Rfull, Wq, n, g, i0, R,
                               (float *)(void *)strip);
        return;
    }
#endif
    for (int64_t f = 0; f < sw; f++) {
        int64_t qlo, qhi;
        fc_phase_span(s->W, s->pw, f, sw, Wq, &qlo, &qhi);
        for (int64_t c = 0; c < Cg; c++)
            for (int64_t r = 0; r < R; r++) {
                int64_t off;
                const int in = fc_direct_src_row(s, Cg, n, g, c, i0, r, &off);
                FN(fc_strip_row)(strip + ((c * Rfull + r) * sw + f) * Wq, in ? x + off + f : NULL,
                                 sw, Wq, qlo, qhi);
            }
    }
}

/* Pack group g's weights tap-major per block of nob output channels (zero past M). */
static void FN(direct_pack)(const FN(direct_args) *a, int64_t g, T *wp) {
    const direct_plan *pl = a->pl;
    const int64_t nob = pl->nob, taps = pl->taps;
    for (int64_t m0 = 0; m0 < pl->M; m0 += nob)
        for (int64_t t = 0; t < taps; t++)
            for (int64_t k = 0; k < nob; k++)
                wp[m0 * taps + t * nob + k] =
                    m0 + k < pl->M ? a->w[(g * pl->M + m0 + k) * taps + t] : (T)0;
}

/* One task's loop over register blocks: positions (output row r, vector v) of the block's
 * rows in groups of NVB (the last group repeats its last position and stores only the real
 * ones), and for each, every block of NOB output channels. Flat (pl->flat): the positions
 * are vectors of L consecutive values of the strip's rows taken as one line (position q is
 * output row q / Wq, column q % Wq); lanes of columns >= OW are left out of the stores, and
 * the rest are consecutive outputs in y. */
#define FC_DIRECT_TASK(NAME, ATTR, BLOCK, VBYTES, NOB, NVB)                                  \
    ATTR FC_NO_MEMCPY static void NAME(const FN(direct_args) *a, int64_t n, int64_t g,       \
                                       int64_t i0, int64_t nr, const T *strip, const T *wp,  \
                                       const FN(direct_out) *E)                              \
    {                                                                                        \
        const fc_conv_shape *s = a->s;                                                       \
        const direct_plan *pl = a->pl;                                                       \
        enum { L = VBYTES / sizeof(T) };                                                     \
        int64_t pb[NVB], cnt[NVB];                                                           \
        uint32_t keep[NVB];                                                                  \
        T *dst[NVB];                                                                         \
        const int64_t Wq = pl->Wq, span = (nr - 1) * Wq + s->OW;                             \
        const int64_t npos = pl->flat ? ceil_div(span, L) : nr * pl->nvec, P = s->OH * s->OW; \
        T *yg = a->y + (n * s->OC + g * pl->M) * P + i0 * s->OW;                             \
        for (int64_t p0 = 0; p0 < npos; p0 += NVB) {                                         \
            const int64_t nv = min64(NVB, npos - p0);                                        \
            for (int v = 0; v < NVB; v++) {                                                  \
                const int64_t p = min64(p0 + v, npos - 1);                                   \
                if (pl->flat) {                                                              \
                    const int64_t q0 = p * L;                                                \
                    fc_direct_flat_lanes(q0, L, Wq, s->OW, span, &keep[v], &cnt[v]);         \
                    const int64_t q = q0 + __builtin_ctz(keep[v]);                           \
                    pb[v] = q0;                                                              \
                    dst[v] = yg + q / Wq * s->OW + q % Wq;                                   \
                    continue;                                                                \
                }                                                                            \
                const int64_t r = p / pl->nvec, j = p % pl->nvec * L;                        \
                pb[v] = r * s->sh * s->sw * Wq + j;                                          \
                cnt[v] = min64(L, s->OW - j);                                                \
                keep[v] = (uint32_t)((1ull << cnt[v]) - 1u);                                 \
                dst[v] = yg + r * s->OW + j;                                                 \
            }                                                                                \
            for (int64_t m0 = 0; m0 < pl->M; m0 += NOB) {                                    \
                T *dm[NVB];                                                                  \
                for (int v = 0; v < NVB; v++) dm[v] = dst[v] + m0 * P;                       \
                BLOCK(strip, a->toff, pl->taps, wp + m0 * pl->taps, pb, dm, cnt, keep, P,    \
                      min64(NOB, pl->M - m0), nv, E, g * pl->M + m0);                        \
            }                                                                                \
        }                                                                                    \
    }

/* The first cnt values of vector v (of T) to d: value by value, or masked stores of the
 * vector's 32-bit lanes (a double is two). Only AVX-512 runs flat positions, whose lanes to
 * keep (keep) need not be the first cnt: it compresses them to the front first. */
#define FC_PART_BASE(d, v, cnt, keep)                                                    \
    do {                                                                                 \
        for (int64_t i_ = 0; i_ < (cnt); i_++) (d)[i_] = (v)[i_];                        \
    } while (0)
#define FC_LANES(cnt) ((cnt) * (int64_t)sizeof(T) / 4)
#define FC_PART_512(d, v, cnt, keep) FN(direct_part512)((T *)(d), (__m512)(v), (cnt), (keep))
#define FC_PART_256(d, v, cnt, keep)                                                     \
    _mm256_maskstore_ps((float *)(d),                                                    \
                        _mm256_cmpgt_epi32(_mm256_set1_epi32((int)FC_LANES(cnt)),          \
                                           _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),     \
                        (__m256)(v))

#if defined(__x86_64__)
FC_T512 FC_INLINE void FN(direct_part512)(T *d, __m512 v, int64_t cnt, uint32_t keep)
{
    if (IS_F64) {
        __m512d vd = _mm512_castps_pd(v);
        if (keep != (1u << cnt) - 1u) vd = _mm512_maskz_compress_pd((__mmask8)keep, vd);
        _mm512_mask_storeu_pd((double *)(void *)d, (__mmask8)((1u << cnt) - 1u), vd);
    } else {
        if (keep != (1u << cnt) - 1u) v = _mm512_maskz_compress_ps((__mmask16)keep, v);
        _mm512_mask_storeu_ps((float *)(void *)d, (__mmask16)((1u << cnt) - 1u), v);
    }
}
#endif

FC_DIRECT_BLOCK(FN(direct_block_base_w), , 16, 4, 3, FC_PART_BASE)
FC_DIRECT_BLOCK(FN(direct_block_base_n), , 16, 2, 6, FC_PART_BASE)
FC_DIRECT_TASK(FN(direct_task_base_w), , FN(direct_block_base_w), 16, 4, 3)
FC_DIRECT_TASK(FN(direct_task_base_n), , FN(direct_block_base_n), 16, 2, 6)
#if defined(__x86_64__)
FC_DIRECT_BLOCK(FN(direct_block_avx2_w), FC_T256, 32, 4, 3, FC_PART_256)
FC_DIRECT_BLOCK(FN(direct_block_avx2_n), FC_T256, 32, 2, 6, FC_PART_256)
FC_DIRECT_TASK(FN(direct_task_avx2_w), FC_T256, FN(direct_block_avx2_w), 32, 4, 3)
FC_DIRECT_TASK(FN(direct_task_avx2_n), FC_T256, FN(direct_block_avx2_n), 32, 2, 6)
FC_DIRECT_BLOCK(FN(direct_block_avx512_w), FC_T512, 64, 8, 3, FC_PART_512)
FC_DIRECT_BLOCK(FN(direct_block_avx512_n), FC_T512, 64, 4, 6, FC_PART_512)
FC_DIRECT_TASK(FN(direct_task_avx512_w), FC_T512, FN(direct_block_avx512_w), 64, 8, 3)
FC_DIRECT_TASK(FN(direct_task_avx512_n), FC_T512, FN(direct_block_avx512_n), 64, 4, 6)
#endif

/* Bias and fused epilogue on output rows [i0, i0 + nr) of channels [o0, o1) of image n, while
 * a task's outputs are in cache. Shared with conv_igemm.c. */
void FN(fc_direct_finish)(T *y, const T *b, const fc_epilogue *ep, const fc_conv_shape *s,
                          int64_t n, int64_t o0, int64_t o1, int64_t i0, int64_t nr) {
    const int64_t P = s->OH * s->OW, run = nr * s->OW;
    for (int64_t o = o0; o < o1; o++) {
        T *yo = y + (n * s->OC + o) * P + i0 * s->OW;
        if (b) { /* b[o] in a local: a store to yo could change it otherwise */
            const T bo = b[o];
            T *restrict yr = yo;
            for (int64_t j = 0; j < run; j++) yr[j] += bo;
        }
        if (ep) {
            const T *res = ep->residual;
            FN(fc_epilogue_row)(ep, o, yo,
                                res ? (const T *)res + (n * s->OC + o) * P + i0 * s->OW : NULL,
                                run);
        }
    }
}

static void FN(direct_tasks)(void *ctx, int64_t t0, int64_t t1, int slot) {
    FN(direct_args) *a = ctx;
    const fc_conv_shape *s = a->s;
    const direct_plan *pl = a->pl;
    if (!a->works[slot] &&
        !(a->works[slot] = calloc((size_t)(pl->strip_elems + FC_DIRECT_SLACK + pl->wp_elems + 16),
                                  sizeof(T)))) {
        a->failed = 1; /* y stays incomplete; the caller reports it */
        return;
    }
    T *strip = a->works[slot], *wp = strip + pl->strip_elems + FC_DIRECT_SLACK;
    const int narrow = pl->nvb > 3;
    /* bias, scale and shift (and the activation, without a residual) in the kernels' registers;
     * a residual and the activation after it in a pass over the task's rows (post) */
    const fc_epilogue *ep = a->ep;
    const FN(direct_out) out = {
        .b = a->b, .scale = ep ? ep->scale : NULL, .shift = ep ? ep->shift : NULL,
        .act = ep && !ep->residual ? ep->activation : FC_ACT_NONE};
    const FN(direct_out) *E = out.b || out.scale || out.shift || out.act ? &out : NULL;
    const fc_epilogue post = {.residual = ep ? ep->residual : NULL,
                              .activation = ep ? ep->activation : FC_ACT_NONE};
    for (int64_t task = t0; task < t1; task++) {
        const int64_t rb = task % pl->nrb, g = task / pl->nrb % s->G, n = task / pl->nrb / s->G;
        const int64_t i0 = rb * pl->rows, nr = min64(s->OH - i0, pl->rows);
        if (a->packed_g[slot] != g) {
            FN(direct_pack)(a, g, wp);
            a->packed_g[slot] = g;
        }
        FN(fc_direct_fill)(a->x, s, pl->Cg, pl->R, pl->Wq, n, g, i0, nr, strip);
        switch (a->level) {
#if defined(__x86_64__)
        case 2:
            if (narrow) FN(direct_task_avx512_n)(a, n, g, i0, nr, strip, wp, E);
            else FN(direct_task_avx512_w)(a, n, g, i0, nr, strip, wp, E);
            break;
        case 1:
            if (narrow) FN(direct_task_avx2_n)(a, n, g, i0, nr, strip, wp, E);
            else FN(direct_task_avx2_w)(a, n, g, i0, nr, strip, wp, E);
            break;
#endif
        default:
            if (narrow) FN(direct_task_base_n)(a, n, g, i0, nr, strip, wp, E);
            else FN(direct_task_base_w)(a, n, g, i0, nr, strip, wp, E);
        }
        if (post.residual) /* the task's rows of each output channel, still in cache */
            FN(fc_direct_finish)(a->y, NULL, &post, s, n, g * pl->M, (g + 1) * pl->M, i0, nr);
    }
}

/* The folded input of a 1-D conv (fc_conv2d_direct): row v of channel row p (image and
 * channel) is the padded input row from column v * span, Wc values, zero past either end. */
typedef struct {
    const T *x;
    T *xf;
    int64_t W, pw, R, Wc, span;
} FN(direct_fold_args);

static void FN(direct_fold_rows)(void *ctx, int64_t p0, int64_t p1, int slot) {
    const FN(direct_fold_args) *a = ctx;
    (void)slot;
    for (int64_t p = p0; p < p1; p++)
        for (int64_t v = 0; v < a->R; v++) {
            T *dst = a->xf + (p * a->R + v) * a->Wc;
            const int64_t c0 = v * a->span - a->pw; /* input column of dst[0] */
            /* dst[lo, hi) lies in the input; the rest is padding */
            const int64_t lo = min64(max64(0, -c0), a->Wc);
            const int64_t hi = max64(lo, min64(a->Wc, a->W - c0));
            for (int64_t q = 0; q < lo; q++) dst[q] = (T)0;
            if (hi > lo)
                memcpy(dst + lo, a->x + p * a->W + c0 + lo, (size_t)(hi - lo) * sizeof(T));
            for (int64_t q = hi; q < a->Wc; q++) dst[q] = (T)0;
        }
}

int FN(fc_conv2d_direct)(const T *x, const T *w, const T *b, T *y, const fc_conv_shape *s,
                         int kernel, int nthreads, int64_t work_bytes, const fc_epilogue *ep) {
    FC_ASSERT_CONV_SHAPE(s);
    if (s->N <= 0 || s->OC <= 0 || s->OH <= 0 || s->OW <= 0) return 0;
    const int level = fc_direct_level(kernel);
    const int64_t es = sizeof(T);
    const int64_t vbytes = level == 2 ? 64 : level == 1 ? 32 : 16;
    const int64_t macs = s->N * s->OC * s->OH * s->OW * (s->C / s->G) * s->KH * s->KW;
    const int team = fc_team_for(fc_cost_macs(macs), nthreads);
    /* A 1-D conv with fewer images x groups than the threads can share: its output row folded
     * into R rows of OW / R outputs, each reading its own copy of the input columns it needs
     * (the halo repeated), as the 2-D conv of R rows with a 1-row window. y's layout is the
     * same either way, so the kernel writes y directly (R divides OW). The copy is 1 + halo /
     * (OW / R) times the input; where it would pass the workspace bound, no fold. */
    const int64_t R = fc_direct_is_1d(s) && !fc_direct_tasks_share(s->N * s->G, team)
                          ? fc_direct_fold_rows(s, team) : 0;
    if (R) {
        const int64_t OWc = s->OW / R, Wc = (OWc - 1) * s->sw + (s->KW - 1) * s->dw + 1;
        const int64_t rows = s->N * s->C;
        if (rows * R * Wc * es <= work_bytes / 2) {
            T *xf = malloc((size_t)(rows * R * Wc) * sizeof(T));
            if (!xf) return 1;
            FN(direct_fold_args) fa = {.x = x, .xf = xf, .W = s->W, .pw = s->pw, .R = R,
                                       .Wc = Wc, .span = OWc * s->sw};
            const int64_t cost = fc_cost_mem(2 * rows * R * Wc * es, 0);
            const int fteam = fc_team_for(cost, nthreads);
            fc_parallel_for(rows, fc_chunk_for(rows, cost, fteam), fteam, FN(direct_fold_rows),
                            &fa);
            fc_conv_shape f = *s;
            f.H = R, f.W = Wc, f.OH = R, f.OW = OWc, f.sh = 1, f.dh = 1, f.ph = 0, f.pw = 0;
            const int rc = FN(fc_conv2d_direct)(xf, w, b, y, &f, kernel, nthreads,
                                                work_bytes - rows * R * Wc * es, ep);
            free(xf);
            return rc;
        }
    }
    direct_plan pl;
    if (plan_direct(s, es, vbytes, level == 2 ? 8 : 4, 3, team, work_bytes, &pl))
        return FC_DIRECT_DECLINED;
    int64_t *toff = fc_direct_tap_offsets(s, pl.R, pl.Wq);
    if (!toff) return 1;
    T *works[FC_POOL_SLOTS] = {0};
    int64_t packed_g[FC_POOL_SLOTS];
    for (int i = 0; i < FC_POOL_SLOTS; i++) packed_g[i] = -1;
    FN(direct_args) a = {.x = x, .w = w, .b = b, .y = y, .s = s, .pl = &pl, .toff = toff,
                         .ep = fc_epilogue_active(ep) ? ep : NULL, .level = level,
                         .works = works, .packed_g = packed_g, .failed = 0};
    fc_parallel_for(pl.ntasks, 1, pl.nthreads, FN(direct_tasks), &a);
    for (int i = 0; i < FC_POOL_SLOTS; i++) free(works[i]);
    free(toff);
    return a.failed;
}

#endif /* FC_TYPED */
