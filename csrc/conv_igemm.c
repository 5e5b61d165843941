/* conv_igemm.c: implicit-GEMM 2-D convolution, no im2col: the `implicit_gemm` step of
 * conv2d's ladder, float32 and float64.
 *
 * The GEMM of im2col (output channels x pixels, summed over taps) computed straight from the
 * input. A task (group, image, chunk of channel blocks whose weights fit in L2, block of
 * output rows) copies the input rows it reads into planes, and an output at row r, column j
 * is then the flat position o = r*Wq + j of every plane: consecutive positions read
 * consecutive values, across rows too. Two layouts (plan_igemm):
 * - per column tap (float with AVX2 or AVX-512 where an output row's input span,
 *   sw*(OW-1) + (KW-1)*dw + 1 values, fits 32: the small planes the automatic choice sends
 *   here): plane (c, fh, kw) holds padded rows i*sh + fh, columns j*sw + kw*dw, Wq = OW wide,
 *   and tap (c, kh, kw) reads plane (c, kh*dh % sh, kw) kh*dh / sh rows in. No position is
 *   discarded; the fill permutes each input row once into its KW planes (fc_ig_fill512,
 *   fc_ig_fill256). On 7x7 planes the per-phase layout computed 63 positions for 49;
 * - per column phase (otherwise): plane (c, fh, fw) holds padded rows i*sh + fh, columns
 *   q*sw + fw, Wq = OW + (KW-1)*dw/sw wide; tap (c, kh, kw) reads plane (c, kh*dh % sh,
 *   kw*dw % sw) at a fixed offset, and positions with j >= OW are computed and discarded
 *   (2 of 30 on a 28-wide 3x3 layer); these planes hold sw/KW as many values.
 *
 * A register block holds NP positions x NV vectors of L output channels (AVX-512 float:
 * 14 x 32, the shape of the GEMM micro-kernel; AVX2 and baseline 6 x 16 / 6 x 8; narrow
 * groups below); per tap it
 * loads NV vectors of weights (packed once per call as [group][channel block][tap][NV*L])
 * and broadcasts NP input values. Taps go in chunks whose weights stay in L1 (16 KiB) while
 * every position block of the task passes, accumulating in a position-major buffer that is
 * transposed into y (channel-major) at the end of the channel block (ig_to_y). Bias and the fused
 * epilogue (fc_epilogue) run on the task's outputs while they are in cache.
 *
 * Measured (bench/RESULTS.md, "Direct and implicit-GEMM conv"; docs/conv_variants.md):
 * 145-160 GFLOP/s on one core on 3x3 layers with 64-128 channels (70-75% of the FMA peak),
 * below Winograd and im2col + GEMM except on a stride-2 3x3 layer (128@56: 1.17x); far below
 * on large dilations (the planes hold every padded row between the taps).
 *
 * Groups of at most one vector of output channels (16 floats with AVX-512, 8 with AVX2) take
 * blocks of one vector (14 x 16, 12 x 8): before, a group of 16 filled half of every
 * 32-channel block. With AVX-512, groups of at most 8 floats (4 doubles) take AVX2's
 * blocks, whose lanes they fill (fc_conv2d_igemm).
 *
 * fc_igemm_choice: conv2d's automatic choice takes it where it would take the direct kernel
 * (fc_direct_choice) for groups of at least 8 float output channels (an AVX2 vector, with
 * AVX-512 too) or one vector of doubles, on a small output plane: at most 64 pixels (7x7, any
 * stride), or at most 196 (14x14) with at least 16 input channels per group. There the direct
 * kernel's vectors run along output rows of 7 or 14 and its blocks of 3 rows leave lanes
 * idle, while a vector of output channels is always full: one thread, AVX-512, ResNeXt 3x3
 * 1024 g32 @7 1.03 -> 0.35 ms, 512 g32 @7 0.28 -> 0.10, 256 g32 @7 0.084 -> 0.045, 512 g32
 * @14 0.43 -> 0.32 (bench/RESULTS.md, "Grouped convs on small planes" and "Planes per column
 * tap"). With fewer input channels per group on 14x14 the direct kernel stays ahead at one
 * thread (4 or 8 per group: 0.83-0.96x); on 28x28 neither is ahead throughout (16 to 48
 * channels per group: the implicit GEMM at 0.72-1.68x the direct kernel's speed).
 *
 * Returns 0, 1 when a workspace could not be allocated (the output is then incomplete), or
 * FC_DIRECT_DECLINED when the packed weights or one task's strip exceed the workspace bound
 * (conv2d then runs im2col + GEMM).
 * Build: `python csrc/build_ffi.py`. Test: `pytest tests/test_conv_direct.py`.
 */
#ifndef FC_TYPED

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* -std=c11 turns floating-point contraction off; a*b + c may become one FMA here. */
#pragma GCC optimize("fp-contract=fast")

#define FC_IG_STRIP_BYTES (512 * 1024)  /* one task's phase planes: in L2 */
#define FC_IG_WCHUNK_BYTES (1024 * 1024) /* one task's packed weights: in L2 */
#define FC_IG_KC_BYTES (16 * 1024)       /* one tap chunk of a channel block's weights: in L1 */
#define FC_IG_ACC_BYTES (256 * 1024)     /* one task's accumulators (positions x channels) */

/* Register blocks: positions x vectors of output channels (AVX-512; AVX2 and baseline), and
 * the narrow blocks of one vector, for groups of at most one vector of output channels */
#define FC_IG_NP512 14
#define FC_IG_NV512 2
#define FC_IG_NP256 6
#define FC_IG_NV256 2
#define FC_IG_NP512N 14 /* 28 measured slower: 3x3 512 g32 @7 0.20 against 0.13 ms */
#define FC_IG_NP256N 12

typedef struct {
    int64_t M, Cg, taps;   /* output channels per group, input channels per group, taps */
    int64_t np, L, nv;     /* register block: np positions x nv vectors of L channels */
    int64_t mbw, nmb;      /* channels per channel block (nv*L), blocks per group */
    int64_t mchunk, nmc;   /* channel blocks per task, chunks per group */
    int64_t kc;            /* taps per tap chunk */
    int64_t Wq, Rq, PS;    /* phase plane: row length, rows, size with its slack */
    int64_t expand, xcols; /* planes per column tap (then xcols = KW) or per phase (sw) */
    int64_t rows, nrb;     /* output rows per task, row blocks per (image, group) */
    int64_t strip_elems, acc_elems, wq_elems, ntasks;
    int nthreads;
} igemm_plan;

static int plan_igemm(const fc_conv_shape *s, int64_t es, int64_t vbytes, int64_t np,
                      int64_t nv, int nthreads, int64_t work_bytes, igemm_plan *pl) {
    pl->M = s->OC / s->G;
    pl->Cg = s->C / s->G;
    pl->taps = pl->Cg * s->KH * s->KW;
    pl->np = np;
    pl->nv = nv;
    pl->L = vbytes / es;
    pl->mbw = nv * pl->L;
    pl->nmb = ceil_div(pl->M, pl->mbw);
    pl->wq_elems = s->G * pl->nmb * pl->taps * pl->mbw;
    pl->mchunk = max64(1, min64(pl->nmb, FC_IG_WCHUNK_BYTES / (pl->taps * pl->mbw * es)));
    pl->nmc = ceil_div(pl->nmb, pl->mchunk);
    pl->kc = max64(1, min64(pl->taps, FC_IG_KC_BYTES / (pl->mbw * es)));
    pl->kc = ceil_div(pl->taps, ceil_div(pl->taps, pl->kc)); /* equal chunks */
    /* one plane per column tap where a row's input span fits 32 floats (small planes: no
     * discarded positions, and the fill permutes each input row once into every plane), else
     * one per column phase (rows (KW-1)*dw/sw longer, their ends discarded) */
#if defined(__x86_64__)
    pl->expand = es == 4 && vbytes >= 32 && s->sw * (s->OW - 1) + (s->KW - 1) * s->dw < 32;
#else
    pl->expand = 0;
#endif
    pl->xcols = pl->expand ? s->KW : s->sw;
    pl->Wq = pl->expand ? s->OW : s->OW + (s->KW - 1) * s->dw / s->sw;
    const int64_t extra_rows = (s->KH - 1) * s->dh / s->sh;
    /* past a plane's rows: the last position block's reads (np; per column phase also up
     * to a row, the discarded columns), and per column tap the fill's stores (15 values) */
    const int64_t slack = pl->expand ? max64(np, 16) : pl->Wq + np;
    const int64_t planes = pl->Cg * s->sh * pl->xcols;
    int64_t rows = s->OH;
    /* 4 tasks per thread (each task's positions are rounded up to np: few long tasks waste
     * less), within the bounds below */
    const int64_t per_plane = ceil_div(4 * (int64_t)nthreads, s->N * s->G * pl->nmc);
    if (per_plane > 1) rows = ceil_div(s->OH, per_plane);
    for (;;) { /* the strip (every phase plane) and the accumulators within their bounds */
        const int64_t ps = (rows + extra_rows) * pl->Wq + slack;
        const int64_t acc = round_up(rows * pl->Wq, np) * pl->mbw;
        if (rows == 1 || (planes * ps * es <= FC_IG_STRIP_BYTES && acc * es <= FC_IG_ACC_BYTES))
            break;
        rows = ceil_div(rows, 2);
    }
    pl->rows = rows;
    pl->Rq = rows + extra_rows;
    pl->PS = pl->Rq * pl->Wq + slack;
    pl->strip_elems = planes * pl->PS;
    pl->acc_elems = round_up(rows * pl->Wq, np) * pl->mbw;
    pl->nrb = ceil_div(s->OH, rows);
    pl->ntasks = s->N * s->G * pl->nmc * pl->nrb;
    pl->nthreads = (int)min64(nthreads < 1 ? 1 : nthreads, pl->ntasks);
    const int64_t per_thread = pl->strip_elems + pl->acc_elems + 32;
    return (pl->wq_elems + 16 + per_thread * pl->nthreads) * es > work_bytes;
}

/* The packed weights' buffer of the last call, kept for the next one (a buffer of its own
 * each time came back from the kernel as fresh pages: a third of 3x3 512 g32 @14's time went
 * to page faults, `perf`). One spare at a time, taken and put back by atomic exchanges (a
 * concurrent call allocates its own); at most FC_IG_SPARE_MAX bytes are kept. */
#define FC_IG_SPARE_MAX ((size_t)16 << 20)
typedef struct {
    size_t bytes;
    max_align_t pad[]; /* the buffer */
} fc_ig_spare_t;
static fc_ig_spare_t *_Atomic fc_ig_spare;

static fc_ig_spare_t *fc_ig_spare_take(size_t bytes) {
    fc_ig_spare_t *sp = atomic_exchange(&fc_ig_spare, NULL);
    if (sp && sp->bytes >= bytes) return sp;
    free(sp);
    sp = malloc(sizeof(fc_ig_spare_t) + bytes);
    if (sp) sp->bytes = bytes;
    return sp;
}

static void fc_ig_spare_give(fc_ig_spare_t *sp) {
    if (sp && sp->bytes > FC_IG_SPARE_MAX) {
        free(sp);
        return;
    }
    free(atomic_exchange(&fc_ig_spare, sp));
}

int fc_igemm_choice(const fc_conv_shape *s, int is_f64, int level) {
    if (level < 1 || !fc_direct_choice(s, is_f64)) return 0;
    /* a group fills a vector: 8 floats at either level (with AVX-512, groups of 8 to 15
     * run AVX2's blocks, fc_conv2d_igemm), 8 doubles with AVX-512, 4 with AVX2 */
    const int64_t lanes = is_f64 ? (level == 2 ? 8 : 4) : 8;
    const int64_t px = s->OH * s->OW;
    return s->OC / s->G >= lanes && (px <= 64 || (px <= 196 && s->C / s->G >= 16));
}

/* Per tap (c, kh, kw): its offset in the strip of planes: plane (c, kh*dh % sh, kw) then
 * kh*dh / sh rows into it, or with planes per column phase, plane (c, kh*dh % sh,
 * kw*dw % sw) then also kw*dw / sw columns. */
static int64_t *igemm_tap_offsets(const fc_conv_shape *s, const igemm_plan *pl) {
    int64_t *toff = malloc((size_t)pl->taps * sizeof(int64_t));
    if (!toff) return NULL;
    for (int64_t c = 0, t = 0; c < pl->Cg; c++)
        for (int64_t kh = 0; kh < s->KH; kh++)
            for (int64_t kw = 0; kw < s->KW; kw++, t++) {
                const int64_t fx = pl->expand ? kw : kw * s->dw % s->sw;
                toff[t] = ((c * s->sh + kh * s->dh % s->sh) * pl->xcols + fx) * pl->PS +
                          kh * s->dh / s->sh * pl->Wq + (pl->expand ? 0 : kw * s->dw / s->sw);
            }
    return toff;
}

#if defined(__x86_64__)
/* dst[t*ld + k] = src[k*taps + t] for t, k < 16: a 16 x 16 float block transposed in
 * registers (common.h's fc_transpose16_f32: 64 shuffles where the scalar loop made 256
 * strided stores). */
FC_T512 static void fc_ig_transpose16(const float *src, int64_t taps, float *dst, int64_t ld)
{
    __m512 r[16];
    for (int k = 0; k < 16; k++) r[k] = _mm512_loadu_ps(src + k * taps);
    fc_transpose16_f32(r);
    for (int t = 0; t < 16; t++) _mm512_storeu_ps(dst + t * ld, r[t]);
}

/* The same for an 8 x 8 block with AVX2 (pairs of lanes, pairs of pairs, then 128-bit halves:
 * 24 shuffles for 64 values). */
FC_T256 static void fc_ig_transpose8(const float *src, int64_t taps, float *dst, int64_t ld)
{
    __m256 r[8], u[8];
    for (int k = 0; k < 8; k++) r[k] = _mm256_loadu_ps(src + k * taps);
    for (int i = 0; i < 4; i++) {
        u[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        u[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        r[4 * i] = _mm256_shuffle_ps(u[4 * i], u[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm256_shuffle_ps(u[4 * i], u[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm256_shuffle_ps(u[4 * i + 1], u[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm256_shuffle_ps(u[4 * i + 1], u[4 * i + 3], 0xEE);
    }
    for (int m = 0; m < 4; m++) {
        _mm256_storeu_ps(dst + m * ld, _mm256_permute2f128_ps(r[m], r[m + 4], 0x20));
        _mm256_storeu_ps(dst + (m + 4) * ld, _mm256_permute2f128_ps(r[m], r[m + 4], 0x31));
    }
}

#define FC_IG_FILL_OUTS 64 /* column planes x chunks of 16: at most 31 (span < 32) */
/* The rows of one (channel, row phase): per input row (pairs: two), the span's masked loads
 * va, vb and per output vector o a permute and a store. Instantiated for the common counts
 * of output vectors (KW column planes of one chunk each: 3x3, 1x3 and 1x1 on rows of at most
 * 16) with the indices in registers; the generic loop reloaded them, and its loop over
 * planes and chunks took most of the fill's time (3x3 1024 g32 @7, `perf`). */
FC_T512 FC_INLINE void fc_ig_rows512(const float *xc, const fc_conv_shape *s, int64_t Wq,
                                     int64_t PS, float *plane, int64_t i0, int64_t fh,
                                     int64_t rows, __mmask16 ma, __mmask16 mb,
                                     const __m512i *idx, const int64_t KW, const int64_t nch,
                                     const int pairs) {
    const int64_t sh = s->sh;
    for (int64_t r = 0; r < rows; r += 1 + pairs) {
        int64_t ih = (i0 + r) * sh + fh - s->ph;
        __m512 va = _mm512_setzero_ps(), vb = va;
        if (ih >= 0 && ih < s->H) va = _mm512_maskz_loadu_ps(ma, xc + ih * s->W);
        if (pairs) { /* vb: the next row's span */
            ih += sh;
            if (r + 1 < rows && ih >= 0 && ih < s->H)
                vb = _mm512_maskz_loadu_ps(ma, xc + ih * s->W);
        } else if (mb && ih >= 0 && ih < s->H)
            vb = _mm512_maskz_loadu_ps(mb, xc + ih * s->W + 16);
        float *d = plane + r * Wq;
        int64_t o = 0;
        for (int64_t kw = 0; kw < KW; kw++, d += PS)
            for (int64_t j = 0; j < nch; j++, o++) /* nch chunks of 16 per plane row */
                _mm512_storeu_ps(d + 16 * j, _mm512_permutex2var_ps(va, idx[o], vb));
    }
}

/* ig_fill for float with AVX-512 where an output row's input span, sw*(Wq-1) + (KW-1)*dw + 1
 * values, fits two vectors (7x7 and 14x14 outputs of a 3x3 conv, stride 1 or 2): per input
 * row, masked loads of the span (the masks keep every read within the row) and, per column
 * plane kw, a permute of lanes sw*j + kw*dw and a store; where the span fits one vector and
 * plane rows are at most 8 long, one permute and one store make two plane rows (a 64-byte
 * store each row, 28 bytes of it used, was the fill's cost on 7x7). Stores run up to 15
 * values past a plane row (into rows written after it, or the plane's slack). The scalar
 * rows took a third of 3x3 512 g32 @7 (7-value rows, one call each). */
FC_T512 static void fc_ig_fill512(const float *x, const fc_conv_shape *s, const igemm_plan *pl,
                                  int64_t n, int64_t g, int64_t i0, int64_t nr, float *strip) {
    const int64_t sh = s->sh, Wq = pl->Wq, KW = s->KW, PS = pl->PS;
    const int64_t rows = nr + (s->KH - 1) * s->dh / sh;
    /* the span starts at input column -pw; lanes [lo, hi) of the two vectors lie in the row */
    const int64_t lo = s->pw, hi = s->pw + s->W;
    const __mmask16 ma = (__mmask16)fc_lanes16(lo, hi);
    const __mmask16 mb = (__mmask16)fc_lanes16(lo - 16, hi - 16); /* 0: lanes 16.. padding */
    /* two plane rows a vector where the span fits 16 lanes (lanes 16.. then hold the next
     * row; with a longer span they are this row's, zero where they are padding) */
    const int pairs = s->sw * (Wq - 1) + (KW - 1) * s->dw < 16 && Wq <= 8;
    __m512i idx[FC_IG_FILL_OUTS];
    int64_t o = 0;
    for (int64_t kw = 0; kw < KW; kw++)
        for (int64_t j0 = 0; j0 < Wq; j0 += 16) {
            int32_t lane[16];
            for (int64_t j = 0; j < 16; j++) /* pairs: lanes Wq.. are the next row's (16..) */
                lane[j] = (int32_t)(pairs && j >= Wq ? 16 + s->sw * (j - Wq) + kw * s->dw
                                                     : s->sw * (j0 + j) + kw * s->dw) & 31;
            idx[o++] = _mm512_loadu_si512(lane);
        }
    /* the instantiation: KW planes of one chunk (0: the generic loop) */
    const int64_t kws = Wq <= 16 && KW <= 3 ? KW : 0;
    for (int64_t c = 0; c < pl->Cg; c++) {
        const float *xc = x + ((n * s->C + g * pl->Cg + c) * s->H) * s->W - s->pw;
        for (int64_t fh = 0; fh < sh; fh++) {
            float *pc = strip + (c * sh + fh) * KW * PS;
#define FC_IG_ROWS(K, NC, P)                                                                 \
    fc_ig_rows512(xc, s, Wq, PS, pc, i0, fh, rows, ma, mb, idx, K, NC, P)
            switch (kws * 2 + pairs) {
            case 2: FC_IG_ROWS(1, 1, 0); break;
            case 3: FC_IG_ROWS(1, 1, 1); break;
            case 4: FC_IG_ROWS(2, 1, 0); break;
            case 5: FC_IG_ROWS(2, 1, 1); break;
            case 6: FC_IG_ROWS(3, 1, 0); break;
            case 7: FC_IG_ROWS(3, 1, 1); break;
            default: FC_IG_ROWS(KW, ceil_div(Wq, 16), pairs);
            }
#undef FC_IG_ROWS
        }
    }
}

/* The same with AVX2: the span in at most four masked loads of 8, each output vector picked
 * from them by in-lane permutes of lanes sw*j + kw*dw and blends on which of them holds each
 * lane (indices and blend masks per column plane and chunk computed once per call; the rows'
 * loop instantiated per count of vectors, where a generic one spilled them to the stack). */
#define FC_IG_FILL256_OUTS 64 /* column planes x chunks of 8: at most 46 (span < 32) */
FC_T256 FC_INLINE void fc_ig_rows256(const float *xc, const fc_conv_shape *s, int64_t KW,
                                     int64_t Wq, int64_t PS, float *plane, int64_t i0,
                                     int64_t fh, int64_t rows, const __m256i *m,
                                     const __m256i *idx, const __m256 (*sel)[4], const int nv) {
    for (int64_t r = 0; r < rows; r++) {
        const int64_t ih = (i0 + r) * s->sh + fh - s->ph;
        __m256 v[4];
        for (int k = 0; k < nv; k++)
            v[k] = ih >= 0 && ih < s->H ? _mm256_maskload_ps(xc + ih * s->W + 8 * k, m[k])
                                        : _mm256_setzero_ps();
        int64_t o = 0;
        for (int64_t kw = 0; kw < KW; kw++)
            for (int64_t j0 = 0; j0 < Wq; j0 += 8, o++) {
                __m256 out = _mm256_permutevar8x32_ps(v[0], idx[o]);
                for (int k = 1; k < nv; k++)
                    out = _mm256_blendv_ps(out, _mm256_permutevar8x32_ps(v[k], idx[o]), sel[o][k]);
                _mm256_storeu_ps(plane + kw * PS + r * Wq + j0, out);
            }
    }
}

FC_T256 static void fc_ig_fill256(const float *x, const fc_conv_shape *s, const igemm_plan *pl,
                                  int64_t n, int64_t g, int64_t i0, int64_t nr, float *strip) {
    const int64_t sh = s->sh, Wq = pl->Wq, KW = s->KW;
    const int64_t rows = nr + (s->KH - 1) * s->dh / sh;
    const int nv = (int)ceil_div(s->sw * (Wq - 1) + (KW - 1) * s->dw + 1, 8);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m[4], idx[FC_IG_FILL256_OUTS];
    __m256 sel[FC_IG_FILL256_OUTS][4];
    for (int k = 0; k < 4; k++) { /* lanes of the span within the row: [pw, pw + W) */
        const __m256i col = _mm256_add_epi32(iota, _mm256_set1_epi32(8 * k));
        m[k] = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)s->pw), col),
                                   _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(s->pw + s->W)), col));
    }
    int64_t o = 0;
    for (int64_t kw = 0; kw < KW; kw++)
        for (int64_t j0 = 0; j0 < Wq; j0 += 8, o++) {
            const __m256i lane = _mm256_add_epi32(
                _mm256_mullo_epi32(iota, _mm256_set1_epi32((int)s->sw)),
                _mm256_set1_epi32((int)(s->sw * j0 + kw * s->dw)));
            idx[o] = lane;
            for (int k = 0; k < 4; k++)
                sel[o][k] = _mm256_castsi256_ps(
                    _mm256_cmpeq_epi32(_mm256_srli_epi32(lane, 3), _mm256_set1_epi32(k)));
        }
    for (int64_t c = 0; c < pl->Cg; c++) {
        const float *xc = x + ((n * s->C + g * pl->Cg + c) * s->H) * s->W - s->pw;
        for (int64_t fh = 0; fh < sh; fh++) {
            float *plane = strip + (c * sh + fh) * KW * pl->PS;
            const int64_t PS = pl->PS;
            switch (nv) {
            case 1: fc_ig_rows256(xc, s, KW, Wq, PS, plane, i0, fh, rows, m, idx, sel, 1); break;
            case 2: fc_ig_rows256(xc, s, KW, Wq, PS, plane, i0, fh, rows, m, idx, sel, 2); break;
            case 3: fc_ig_rows256(xc, s, KW, Wq, PS, plane, i0, fh, rows, m, idx, sel, 3); break;
            default: fc_ig_rows256(xc, s, KW, Wq, PS, plane, i0, fh, rows, m, idx, sel, 4);
            }
        }
    }
}
#endif

#define FC_INSTANTIATE "conv_igemm.c"
#include "common.h"

#else /* ------------------------------------------------------------ typed section */

/* The planes of output rows [i0, i0 + nr) of image n, group g. Per column tap (pl->expand,
 * float with AVX2 or AVX-512 only): plane (c, fh, kw) row a, column j holds padded input
 * (row (i0 + a)*sh + fh, column j*sw + kw*dw), filled by fc_ig_fill512 / fc_ig_fill256. Per
 * column phase: plane (c, fh, fw) row a, column q holds padded input (row (i0 + a)*sh + fh,
 * column q*sw + fw). Zero in the padding; rows past what nr output rows read are left as
 * they are (only discarded outputs read them). */
FC_NO_MEMCPY static void FN(ig_fill)(const T *x, const fc_conv_shape *s, const igemm_plan *pl,
                                     int64_t n, int64_t g, int64_t i0, int64_t nr, T *strip,
                                     int level) {
#if defined(__x86_64__)
    if (!IS_F64 && pl->expand) {
        if (level == 2)
            fc_ig_fill512((const float *)(const void *)x, s, pl, n, g, i0, nr,
                          (float *)(void *)strip);
        else
            fc_ig_fill256((const float *)(const void *)x, s, pl, n, g, i0, nr,
                          (float *)(void *)strip);
        return;
    }
#endif
    (void)level;
    const int64_t sh = s->sh, sw = s->sw, Wq = pl->Wq;
    const int64_t rows = nr + (s->KH - 1) * s->dh / sh;
    for (int64_t fw = 0; fw < sw; fw++) {
        int64_t qlo, qhi;
        fc_phase_span(s->W, s->pw, fw, sw, Wq, &qlo, &qhi);
        for (int64_t c = 0; c < pl->Cg; c++) {
            const T *xc = x + ((n * s->C + g * pl->Cg + c) * s->H) * s->W + fw - s->pw;
            for (int64_t fh = 0; fh < sh; fh++) {
                T *plane = strip + ((c * sh + fh) * sw + fw) * pl->PS;
                for (int64_t r = 0; r < rows; r++) {
                    const int64_t ih = (i0 + r) * sh + fh - s->ph;
                    FN(fc_strip_row)(plane + r * Wq, ih < 0 || ih >= s->H ? NULL : xc + ih * s->W,
                                     sw, Wq, qlo, qhi);
                }
            }
        }
    }
}

/* acc[p*NV*L + v*L + l] (+)= sum over taps t < kc of s[toff[t] + p] * wq[t*NV*L + v*L + l]:
 * one register block of NP positions x NV vectors of L output channels over one tap chunk
 * (first: start from zero instead of acc). */
#define FC_IG_BLOCK(NAME, ATTR, VBYTES, NP, NV)                                               \
    ATTR FC_INLINE void NAME(const T *restrict s, const int64_t *restrict toff, int64_t kc,   \
                             const T *restrict wq, T *restrict accb, int first)              \
    {                                                                                        \
        typedef T vt __attribute__((vector_size(VBYTES), aligned(sizeof(T)), may_alias));   \
        enum { L = VBYTES / sizeof(T) };                                                     \
        vt acc[NP][NV];                                                                      \
        _Pragma("GCC unroll 16") for (int p = 0; p < NP; p++)                                \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[p][v] =                 \
                first ? (vt){0} : *(const vt *)(accb + (p * NV + v) * L);                    \
        for (int64_t t = 0; t < kc; t++) {                                                   \
            const T *sp = s + toff[t];                                                       \
            /* sp in one register: the NP broadcasts then address it with constant           \
             * displacements (without this gcc rebuilt each address from stack slots) */    \
            __asm__("" : "+r"(sp));                                                          \
            const T *wt = wq + t * (NV * L);                                                 \
            vt wv[NV];                                                                       \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) wv[v] =                     \
                *(const vt *)(wt + v * L);                                                   \
            _Pragma("GCC unroll 16") for (int p = 0; p < NP; p++)                            \
            {                                                                                \
                const vt xb = sp[p] - (vt){0};                                               \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[p][v] += xb * wv[v]; \
            }                                                                                \
        }                                                                                    \
        _Pragma("GCC unroll 16") for (int p = 0; p < NP; p++)                                \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                             \
                *(vt *)(accb + (p * NV + v) * L) = acc[p][v];                                \
    }

/* The arguments of the task loop, for fc_parallel_for. */
typedef struct {
    const T *x, *w, *b;
    T *y;
    const fc_conv_shape *s;
    const igemm_plan *pl;
    const int64_t *toff;
    const T *wq;         /* packed weights */
    const fc_epilogue *ep;
    int level;
    T **works;
    _Atomic int failed;
} FN(ig_args);

/* y0[k*P + o] = accb[o*mbw + k] for k < nm, o < npos: a channel block's position-major
 * accumulators into y where its rows are contiguous (Wq = OW); float with AVX-512 / AVX2 by
 * 16 x 16 / 8 x 8 register transposes, the edges element by element (the element loop took
 * an eighth of 3x3 512 g32 @14, `perf`). */
static void FN(ig_to_y)(const T *accb, int64_t mbw, int64_t nm, int64_t npos, T *y0, int64_t P,
                        int level) {
    int64_t kf = 0, of = 0;
#if defined(__x86_64__)
    if (!IS_F64 && level >= 1) {
        const int64_t B = level == 2 ? 16 : 8;
        kf = nm / B * B;
        of = npos / B * B;
        const float *af = (const float *)(const void *)accb;
        float *yf = (float *)(void *)y0;
        for (int64_t k0 = 0; k0 < kf; k0 += B)
            for (int64_t o0 = 0; o0 < of; o0 += B) {
                if (level == 2)
                    fc_ig_transpose16(af + o0 * mbw + k0, mbw, yf + k0 * P + o0, P);
                else
                    fc_ig_transpose8(af + o0 * mbw + k0, mbw, yf + k0 * P + o0, P);
            }
    }
#endif
    (void)level;
    for (int64_t k = 0; k < nm; k++) /* what the transposes left: o >= of, or k >= kf */
        for (int64_t o = k < kf ? of : 0; o < npos; o++) y0[k * P + o] = accb[o * mbw + k];
}

/* One channel block of a task: for each tap chunk (its weights stay in L1), every block of NP
 * flat positions o = r*Wq + j of the task's rows up to its last output (positions with
 * j >= OW are computed and discarded), the last by a block of NP/2 (HALF) where that covers
 * it, accumulated in accb; then accb (position-major) to y (channel-major). On a 7x7 plane
 * the 61 positions took 5 blocks of 14 (70), now 4 and a half (63). */
#define FC_IG_TASK(NAME, ATTR, BLOCK, HALF, NP)                                              \
    ATTR FC_NO_MEMCPY static void NAME(const FN(ig_args) *a, int64_t n, int64_t g,           \
                                       int64_t mb, int64_t i0, int64_t nr, const T *strip,   \
                                       T *accb)                                              \
    {                                                                                        \
        const fc_conv_shape *s = a->s;                                                       \
        const igemm_plan *pl = a->pl;                                                        \
        const int64_t mbw = pl->mbw, Wq = pl->Wq, last = (nr - 1) * Wq + s->OW;              \
        const T *wblk = a->wq + (g * pl->nmb + mb) * pl->taps * mbw;                         \
        for (int64_t t0 = 0; t0 < pl->taps; t0 += pl->kc) {                                  \
            const int64_t kc = min64(pl->kc, pl->taps - t0);                                 \
            for (int64_t o = 0; o < last; o += NP) {                                         \
                if (last - o <= NP / 2)                                                      \
                    HALF(strip + o, a->toff + t0, kc, wblk + t0 * mbw, accb + o * mbw,       \
                         t0 == 0);                                                           \
                else                                                                         \
                    BLOCK(strip + o, a->toff + t0, kc, wblk + t0 * mbw, accb + o * mbw,      \
                          t0 == 0);                                                          \
            }                                                                                \
        }                                                                                    \
        const int64_t P = s->OH * s->OW, m0 = mb * mbw, nm = min64(mbw, pl->M - m0);         \
        T *y0 = a->y + (n * s->OC + g * pl->M + m0) * P + i0 * s->OW;                        \
        if (Wq == s->OW) {                                                                   \
            FN(ig_to_y)(accb, mbw, nm, nr * Wq, y0, P, a->level);                            \
            return;                                                                          \
        }                                                                                    \
        for (int64_t k = 0; k < nm; k++) {                                                   \
            T *yk = y0 + k * P;                                                              \
            for (int64_t r = 0; r < nr; r++)                                                 \
                for (int64_t j = 0; j < s->OW; j++)                                          \
                    yk[r * s->OW + j] = accb[(r * Wq + j) * mbw + k];                        \
        }                                                                                    \
    }

/* Each task with its whole block and its half block (the _h twins) */
#define FC_IG_KERNELS(SUF, ATTR, VBYTES, NP, NV)                                             \
    FC_IG_BLOCK(FN(ig_block_##SUF), ATTR, VBYTES, NP, NV)                                    \
    FC_IG_BLOCK(FN(ig_block_##SUF##_h), ATTR, VBYTES, NP / 2, NV)                            \
    FC_IG_TASK(FN(ig_task_##SUF), ATTR, FN(ig_block_##SUF), FN(ig_block_##SUF##_h), NP)

FC_IG_KERNELS(base, , 16, FC_IG_NP256, FC_IG_NV256)
#if defined(__x86_64__)
FC_IG_KERNELS(avx2, FC_T256, 32, FC_IG_NP256, FC_IG_NV256)
FC_IG_KERNELS(avx512, FC_T512, 64, FC_IG_NP512, FC_IG_NV512)
FC_IG_KERNELS(avx2n, FC_T256, 32, FC_IG_NP256N, 1)
FC_IG_KERNELS(avx512n, FC_T512, 64, FC_IG_NP512N, 1)
#endif
#undef FC_IG_KERNELS

/* Pack slivers [q0, q1) (q = group * nmb + channel block) of the weights tap-major, nv*L
 * channels per tap, zero past M. */
static void FN(ig_pack)(void *ctx, int64_t q0, int64_t q1, int slot) {
    const FN(ig_args) *a = ctx;
    const igemm_plan *pl = a->pl;
    T *wq = (T *)a->wq;
    (void)slot;
    for (int64_t q = q0; q < q1; q++) {
        const int64_t g = q / pl->nmb, m0 = q % pl->nmb * pl->mbw;
        T *dst = wq + q * pl->taps * pl->mbw;
        /* 16 taps at a time: each channel's 16 weights read in a row, written into a block
         * of 16 x mbw values that stays in L1 (tap by tap, the reads would be strided); with
         * AVX-512, float, every 16 whole channels of 16 taps are one register transpose (a
         * ResNeXt 3x3 1024 g32 @7 spent 29% of its call in the scalar loop), with AVX2 every
         * 8 whole channels two */
        for (int64_t t0 = 0; t0 < pl->taps; t0 += 16) {
            const int64_t t1 = min64(pl->taps, t0 + 16);
            int64_t k = 0;
#if defined(__x86_64__)
            if (!IS_F64 && t1 - t0 == 16 && a->level >= 1) {
                const float *wf = (const float *)(const void *)a->w +
                                  (g * pl->M + m0) * pl->taps + t0;
                float *df = (float *)(void *)dst + t0 * pl->mbw;
                if (a->level == 2)
                    for (; k + 16 <= pl->mbw && m0 + k + 16 <= pl->M; k += 16)
                        fc_ig_transpose16(wf + k * pl->taps, pl->taps, df + k, pl->mbw);
                else /* AVX2: two 8 x 8 per 8 channels */
                    for (; k + 8 <= pl->mbw && m0 + k + 8 <= pl->M; k += 8) {
                        fc_ig_transpose8(wf + k * pl->taps, pl->taps, df + k, pl->mbw);
                        fc_ig_transpose8(wf + k * pl->taps + 8, pl->taps, df + 8 * pl->mbw + k,
                                         pl->mbw);
                    }
            }
#endif
            for (; k < pl->mbw; k++) {
                const T *src = a->w + (g * pl->M + m0 + k) * pl->taps;
                if (m0 + k < pl->M)
                    for (int64_t t = t0; t < t1; t++) dst[t * pl->mbw + k] = src[t];
                else
                    for (int64_t t = t0; t < t1; t++) dst[t * pl->mbw + k] = 0;
            }
        }
    }
}

static void FN(ig_tasks)(void *ctx, int64_t t0, int64_t t1, int slot) {
    FN(ig_args) *a = ctx;
    const fc_conv_shape *s = a->s;
    const igemm_plan *pl = a->pl;
    if (!a->works[slot]) {
        /* zeroed once: the slack past the planes' rows is read only for discarded outputs */
        a->works[slot] = calloc((size_t)(pl->strip_elems + pl->acc_elems + 32), sizeof(T));
        if (!a->works[slot]) {
            a->failed = 1;
            return;
        }
    }
    T *strip = a->works[slot];
    T *accb = (T *)(((uintptr_t)(strip + pl->strip_elems) + 63) & ~(uintptr_t)63);
    for (int64_t task = t0; task < t1; task++) {
        int64_t q = task;
        const int64_t rb = q % pl->nrb;
        q /= pl->nrb;
        const int64_t mc = q % pl->nmc;
        q /= pl->nmc;
        /* images inside groups: a group's packed weights serve its images while in L2
         * (all of 3x3 1024 g32's are 1.2 MB) */
        const int64_t n = q % s->N, g = q / s->N;
        const int64_t i0 = rb * pl->rows, nr = min64(s->OH - i0, pl->rows);
        const int64_t mb0 = mc * pl->mchunk, mb1 = min64(pl->nmb, mb0 + pl->mchunk);
        FN(ig_fill)(a->x, s, pl, n, g, i0, nr, strip, a->level);
        for (int64_t mb = mb0; mb < mb1; mb++) {
            switch (a->level) {
#if defined(__x86_64__)
            case 2:
                if (pl->nv == 1) FN(ig_task_avx512n)(a, n, g, mb, i0, nr, strip, accb);
                else FN(ig_task_avx512)(a, n, g, mb, i0, nr, strip, accb);
                break;
            case 1:
                if (pl->nv == 1) FN(ig_task_avx2n)(a, n, g, mb, i0, nr, strip, accb);
                else FN(ig_task_avx2)(a, n, g, mb, i0, nr, strip, accb);
                break;
#endif
            default: FN(ig_task_base)(a, n, g, mb, i0, nr, strip, accb);
            }
        }
        /* bias and epilogue on the task's rows of its output channels, still in cache */
        FN(fc_direct_finish)(a->y, a->b, a->ep, s, n, g * pl->M + mb0 * pl->mbw,
                             g * pl->M + min64(pl->M, mb1 * pl->mbw), i0, nr);
    }
}

int FN(fc_conv2d_igemm)(const T *x, const T *w, const T *b, T *y, const fc_conv_shape *s,
                        int kernel, int nthreads, int64_t work_bytes, const fc_epilogue *ep) {
    FC_ASSERT_CONV_SHAPE(s);
    if (s->N <= 0 || s->OC <= 0 || s->OH <= 0 || s->OW <= 0) return 0;
    const int64_t es = sizeof(T);
    /* groups of at most 8 floats (4 doubles) run AVX2's one-vector blocks with AVX-512 too:
     * 16-lane blocks left half their lanes idle (3x3 256 g32 @7, one thread: 0.073 -> 0.050
     * ms) */
    const int level = fc_direct_level(kernel) == 2 && s->OC / s->G * es <= 32
                          ? 1 : fc_direct_level(kernel);
    const int64_t vbytes = level == 2 ? 64 : level == 1 ? 32 : 16;
    /* groups of at most one vector of output channels: blocks of one vector (with AVX2 or
     * AVX-512; FC_IG_NP512N / FC_IG_NP256N positions) */
    const int narrow = level >= 1 && s->OC / s->G <= vbytes / es;
    const int64_t np = level == 2 ? (narrow ? FC_IG_NP512N : FC_IG_NP512)
                                  : (narrow ? FC_IG_NP256N : FC_IG_NP256);
    const int64_t nv = narrow ? 1 : level == 2 ? FC_IG_NV512 : FC_IG_NV256;
    const int64_t macs = s->N * s->OC * s->OH * s->OW * (s->C / s->G) * s->KH * s->KW;
    /* the work estimate at 3x fc_cost_macs: it runs 18-33 MACs per ns on the small planes
     * the automatic choice gives it (3x3 512 g32 @7: 3.6 M MACs in 0.21 ms on one thread),
     * not the packed GEMM's 50, and the lower estimate kept such calls on one thread */
    const int team = fc_team_for(fc_cost_macs(macs) * 3, nthreads);
    igemm_plan pl;
    if (plan_igemm(s, es, vbytes, np, nv, team, work_bytes, &pl)) return FC_DIRECT_DECLINED;
    int64_t *toff = igemm_tap_offsets(s, &pl);
    fc_ig_spare_t *spare = fc_ig_spare_take((size_t)(pl.wq_elems + 16) * sizeof(T));
    T *wbuf = spare ? (T *)(void *)spare->pad : NULL;
    if (!toff || !wbuf) {
        free(toff);
        fc_ig_spare_give(spare);
        return 1;
    }
    T *works[FC_POOL_SLOTS] = {0};
    FN(ig_args) a = {.x = x, .w = w, .b = b, .y = y, .s = s, .pl = &pl, .toff = toff,
                     .wq = (const T *)(((uintptr_t)wbuf + 63) & ~(uintptr_t)63),
                     .ep = fc_epilogue_active(ep) ? ep : NULL, .level = level, .works = works,
                     .failed = 0};
    /* pack the weights once (shared by every task), then the tasks */
    const int64_t nsl = s->G * pl.nmb;
    const int64_t pcost = fc_cost_mem(2 * pl.wq_elems * es, 0);
    const int pteam = fc_team_for(pcost, pl.nthreads);
    fc_parallel_for(nsl, fc_chunk_for(nsl, pcost, pteam), pteam, FN(ig_pack), &a);
    fc_parallel_for(pl.ntasks, 1, pl.nthreads, FN(ig_tasks), &a);
    for (int i = 0; i < FC_POOL_SLOTS; i++) free(works[i]);
    free(toff);
    fc_ig_spare_give(spare);
    return a.failed;
}

#endif /* FC_TYPED */
