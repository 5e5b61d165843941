/* conv_igemm.c: implicit-GEMM 2-D convolution, no im2col: the `implicit_gemm` step of
 * conv2d's ladder, float32 and float64.
 *
 * The GEMM of im2col (output channels x pixels, summed over taps) computed straight from the
 * input: a register block holds NP consecutive output pixels of a row x NV vectors of L
 * output channels (AVX-512 float: 14 pixels x 32 channels, 28 accumulators, the shape of the
 * GEMM micro-kernel); per tap (c, kh, kw) it loads NV vectors of weights (packed once per
 * call as [group][channel block][tap][NV*L], aligned) and broadcasts NP input values, which
 * for consecutive outputs of a row are consecutive values of one phase row of the strip
 * (fc_direct_fill: the input rows with their zero padding, split by stride phase, built per
 * task), whatever the stride, dilation and padding. No copy of the input per tap, no
 * im2col matrix: where im2col + GEMM writes and reads KH*KW copies of the input, this
 * writes one (the strip) and reads it from L1.
 *
 * Tasks: (image, group, chunk of channel blocks whose weights fit in L2, block of output
 * rows); in a task, for each NP pixels of each row, every channel block of the chunk; the
 * block's NP x NV*L outputs go to y through a small tile (transposed: y is channel-major).
 * Bias and the fused epilogue (fc_epilogue) run on the task's outputs while they are in cache.
 *
 * Measured (bench/RESULTS.md, "Direct and implicit-GEMM conv"): about 150 GFLOP/s on one
 * core on 3x3 layers with 64-128 channels (70% of the FMA peak), below im2col + GEMM and
 * Winograd except on some stride-2 layers, and far below on 7x7 images (a 14-pixel block
 * of a 7-wide row is half empty) and large dilations (the strip holds every padded row
 * between the taps). So the automatic choice never takes it; `variant="implicit_gemm"` runs
 * it. What it lacks, measured: the weights of a channel block stream from L2 for every 14
 * pixels (no blocking of the taps that would keep them in L1 across pixel blocks).
 *
 * Returns 0, 1 when a workspace could not be allocated (the output is then incomplete), or
 * FC_DIRECT_DECLINED when the packed weights or one task's strip exceed the workspace bound
 * (conv2d then runs im2col + GEMM).
 * Build: `python csrc/build_ffi.py`. Test: `pytest tests/test_conv_direct.py`.
 */
#ifndef FC_TYPED

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* -std=c11 turns floating-point contraction off; a*b + c may become one FMA here. */
#pragma GCC optimize("fp-contract=fast")

#define FC_IG_STRIP_BYTES (512 * 1024)  /* one task's strip: in L2 */
#define FC_IG_WCHUNK_BYTES (1024 * 1024) /* one task's packed weights: in L2 */

typedef struct {
    int64_t M, Cg, taps;   /* output channels per group, input channels per group, taps */
    int64_t np, L, nv;     /* register block: np pixels x nv vectors of L channels */
    int64_t mbw, nmb;      /* channels per channel block (nv*L), blocks per group */
    int64_t mchunk, nmc;   /* channel blocks per task, chunks per group */
    int64_t Wq, rows, nrb, R;
    int64_t strip_elems, wq_elems, ntasks;
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
    pl->Wq = round_up(s->OW, np) + (s->KW - 1) * s->dw / s->sw;
    const int64_t row_elems = pl->Cg * s->sw * pl->Wq;
    int64_t rows = s->OH;
    const int64_t per_plane = ceil_div(8 * (int64_t)nthreads, s->N * s->G * pl->nmc);
    if (per_plane > 1) rows = ceil_div(s->OH, per_plane);
    while (rows > 1 &&
           ((rows - 1) * s->sh + (s->KH - 1) * s->dh + 1) * row_elems * es > FC_IG_STRIP_BYTES)
        rows = ceil_div(rows, 2);
    pl->rows = rows;
    pl->R = (rows - 1) * s->sh + (s->KH - 1) * s->dh + 1;
    pl->strip_elems = pl->R * row_elems;
    pl->nrb = ceil_div(s->OH, rows);
    pl->ntasks = s->N * s->G * pl->nmc * pl->nrb;
    pl->nthreads = (int)min64(nthreads < 1 ? 1 : nthreads, pl->ntasks);
    const int64_t tile = np * pl->mbw + 16;
    return (pl->wq_elems + 16 + (pl->strip_elems + tile) * pl->nthreads) * es > work_bytes;
}

#define FC_INSTANTIATE "conv_igemm.c"
#include "common.h"

#else /* ------------------------------------------------------------ typed section */

/* tile[p*NV*L + v*L + l] = sum over taps t of s[toff[t] + p] * wq[t*NV*L + v*L + l]: one
 * register block of NP pixels x NV vectors of L output channels. */
#define FC_IG_BLOCK(NAME, ATTR, VBYTES, NP, NV)                                               \
    ATTR FC_INLINE void NAME(const T *restrict s, const int64_t *restrict toff, int64_t taps, \
                             const T *restrict wq, T *restrict tile)                         \
    {                                                                                        \
        typedef T vt __attribute__((vector_size(VBYTES), aligned(sizeof(T)), may_alias));   \
        enum { L = VBYTES / sizeof(T) };                                                     \
        vt acc[NP][NV];                                                                      \
        _Pragma("GCC unroll 16") for (int p = 0; p < NP; p++)                                \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[p][v] = (vt){0};        \
        for (int64_t t = 0; t < taps; t++) {                                                 \
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
                *(vt *)(tile + (p * NV + v) * L) = acc[p][v];                                \
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

/* One task's register blocks: rows, NP pixels at a time, every channel block of the chunk;
 * each block's outputs from the tile to y (channel-major), the last pixels of a row cut. */
#define FC_IG_TASK(NAME, ATTR, BLOCK, NP)                                                    \
    ATTR FC_NO_MEMCPY static void NAME(const FN(ig_args) *a, int64_t n, int64_t g,           \
                                       int64_t mb0, int64_t mb1, int64_t i0, int64_t nr,     \
                                       const T *strip, T *tile)                              \
    {                                                                                        \
        const fc_conv_shape *s = a->s;                                                       \
        const igemm_plan *pl = a->pl;                                                        \
        const int64_t P = s->OH * s->OW, mbw = pl->mbw;                                      \
        for (int64_t r = 0; r < nr; r++)                                                     \
            for (int64_t j0 = 0; j0 < s->OW; j0 += NP) {                                     \
                const T *sp = strip + r * s->sh * s->sw * pl->Wq + j0;                       \
                const int64_t npv = min64(NP, s->OW - j0);                                   \
                for (int64_t mb = mb0; mb < mb1; mb++) {                                     \
                    BLOCK(sp, a->toff, pl->taps, a->wq + (g * pl->nmb + mb) * pl->taps * mbw, \
                          tile);                                                             \
                    const int64_t m0 = mb * mbw, nm = min64(mbw, pl->M - m0);                \
                    T *yb = a->y + (n * s->OC + g * pl->M + m0) * P + (i0 + r) * s->OW + j0; \
                    for (int64_t k = 0; k < nm; k++)                                         \
                        for (int64_t p = 0; p < npv; p++) yb[k * P + p] = tile[p * mbw + k]; \
                }                                                                            \
            }                                                                                \
    }

#define FC_IG_NP512 14
#define FC_IG_NV512 2
#define FC_IG_NP256 6
#define FC_IG_NV256 2

FC_IG_BLOCK(FN(ig_block_base), , 16, FC_IG_NP256, FC_IG_NV256)
FC_IG_TASK(FN(ig_task_base), , FN(ig_block_base), FC_IG_NP256)
#if defined(__x86_64__)
FC_IG_BLOCK(FN(ig_block_avx2), FC_T256, 32, FC_IG_NP256, FC_IG_NV256)
FC_IG_TASK(FN(ig_task_avx2), FC_T256, FN(ig_block_avx2), FC_IG_NP256)
FC_IG_BLOCK(FN(ig_block_avx512), FC_T512, 64, FC_IG_NP512, FC_IG_NV512)
FC_IG_TASK(FN(ig_task_avx512), FC_T512, FN(ig_block_avx512), FC_IG_NP512)
#endif

/* Pack slivers [q0, q1) (q = group * nmb + channel block) of the weights tap-major, nv*L
 * channels per tap, zero past M. */
static void FN(ig_pack)(void *ctx, int64_t q0, int64_t q1, int slot) {
    const FN(ig_args) *a = ctx;
    const igemm_plan *pl = a->pl;
    const T *w = a->w;
    T *wq = (T *)a->wq;
    (void)slot;
    for (int64_t q = q0; q < q1; q++) {
        const int64_t g = q / pl->nmb, m0 = q % pl->nmb * pl->mbw;
        T *dst = wq + q * pl->taps * pl->mbw;
        for (int64_t t = 0; t < pl->taps; t++)
            for (int64_t k = 0; k < pl->mbw; k++)
                dst[t * pl->mbw + k] =
                    m0 + k < pl->M ? w[(g * pl->M + m0 + k) * pl->taps + t] : (T)0;
    }
}

static void FN(ig_tasks)(void *ctx, int64_t t0, int64_t t1, int slot) {
    FN(ig_args) *a = ctx;
    const fc_conv_shape *s = a->s;
    const igemm_plan *pl = a->pl;
    const int64_t tile_elems = pl->np * pl->mbw + 16;
    if (!a->works[slot] &&
        !(a->works[slot] = malloc((size_t)(pl->strip_elems + tile_elems + 16) * sizeof(T)))) {
        a->failed = 1;
        return;
    }
    T *strip = a->works[slot];
    T *tile = (T *)(((uintptr_t)(strip + pl->strip_elems) + 63) & ~(uintptr_t)63);
    for (int64_t task = t0; task < t1; task++) {
        int64_t q = task;
        const int64_t rb = q % pl->nrb;
        q /= pl->nrb;
        const int64_t mc = q % pl->nmc;
        q /= pl->nmc;
        const int64_t g = q % s->G, n = q / s->G;
        const int64_t i0 = rb * pl->rows, nr = min64(s->OH - i0, pl->rows);
        const int64_t mb0 = mc * pl->mchunk, mb1 = min64(pl->nmb, mb0 + pl->mchunk);
        FN(fc_direct_fill)(a->x, s, pl->Cg, pl->R, pl->Wq, n, g, i0, nr, strip);
        switch (a->level) {
#if defined(__x86_64__)
        case 2: FN(ig_task_avx512)(a, n, g, mb0, mb1, i0, nr, strip, tile); break;
        case 1: FN(ig_task_avx2)(a, n, g, mb0, mb1, i0, nr, strip, tile); break;
#endif
        default: FN(ig_task_base)(a, n, g, mb0, mb1, i0, nr, strip, tile);
        }
        /* bias and epilogue on the task's rows of its output channels, still in cache */
        const int64_t P = s->OH * s->OW, run = nr * s->OW;
        for (int64_t k = mb0 * pl->mbw; k < min64(pl->M, mb1 * pl->mbw); k++) {
            const int64_t o = g * pl->M + k;
            T *yo = a->y + (n * s->OC + o) * P + i0 * s->OW;
            if (a->b)
                for (int64_t j = 0; j < run; j++) yo[j] += a->b[o];
            if (a->ep) {
                const T *res = a->ep->residual;
                FN(fc_epilogue_row)(a->ep, o, yo,
                                    res ? (const T *)res + (n * s->OC + o) * P + i0 * s->OW : NULL,
                                    run);
            }
        }
    }
}

int FN(fc_conv2d_igemm)(const T *x, const T *w, const T *b, T *y, const fc_conv_shape *s,
                        int kernel, int nthreads, int64_t work_bytes, const fc_epilogue *ep) {
    FC_ASSERT_CONV_SHAPE(s);
    if (s->N <= 0 || s->OC <= 0 || s->OH <= 0 || s->OW <= 0) return 0;
    int level = fc_dwpool_isa(-1); /* capped by an explicit GEMM kernel (isa=), as direct */
    if (kernel >= FC_GEMM_NAIVE && kernel < FC_GEMM_AUTO && kernel < level)
        level = kernel < 0 ? 0 : kernel;
#if !defined(__x86_64__)
    level = 0;
#endif
    const int64_t es = sizeof(T);
    const int64_t vbytes = level == 2 ? 64 : level == 1 ? 32 : 16;
    const int64_t np = level == 2 ? FC_IG_NP512 : FC_IG_NP256;
    const int64_t nv = level == 2 ? FC_IG_NV512 : FC_IG_NV256;
    const int64_t macs = s->N * s->OC * s->OH * s->OW * (s->C / s->G) * s->KH * s->KW;
    const int team = fc_team_for(fc_cost_macs(macs), nthreads);
    igemm_plan pl;
    if (plan_igemm(s, es, vbytes, np, nv, team, work_bytes, &pl)) return FC_DIRECT_DECLINED;
    int64_t *toff = fc_direct_tap_offsets(s, pl.R, pl.Wq);
    T *wbuf = malloc((size_t)(pl.wq_elems + 16) * sizeof(T));
    if (!toff || !wbuf) {
        free(toff);
        free(wbuf);
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
    free(wbuf);
    return a.failed;
}

#endif /* FC_TYPED */
