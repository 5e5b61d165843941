/* conv2d.c: 2-D convolution (cross-correlation), float32 and float64, the ladder of variants.
 *
 * x is (N, C, H, W), w is (OC, C/G, KH, KW), b is (OC,) or NULL, y is (N, OC, OH, OW);
 * y[n, o, i, j] = b[o] + sum_{c, kh, kw} w[o, c, kh, kw] * x[n, g*C/G + c, i*sh - ph + kh*dh,
 * j*sw - pw + kw*dw] with g = o / (OC/G), reading zero outside the image. The bottom / right
 * padding is whatever OH, OW imply.
 *
 * Variants (the `variant` argument, enum fc_conv_variant in fastconv.h):
 *   v1_direct   seven nested loops, one output at a time
 *   v2_im2col   im2col + naive GEMM per image and group
 *   v3_blocked  im2col + packed, cache-blocked GEMM (portable C micro-kernel)
 *   v4_simd     v3 with the CPU's vector micro-kernel (AVX-512 / AVX2+FMA / portable)
 *   v5_threads  v4 run by the thread pool (parallel.c) over (image, group, output-channel
 *               block, pixel block)
 *   best (0)    v5 with im2col writing straight into the GEMM's packed-B layout (one copy
 *               of the input instead of two), the weights packed once per call (or per
 *               chunk in L2 when no two tasks share them), bias and epilogue in the GEMM's
 *               tiles; a 1x1 stride-1 unpadded conv multiplies x itself (no im2col)
 *   winograd_f2, winograd_f3, winograd_f4  3x3 stride-1 convs (any dilation) by Winograd
 *               F(2x2,3x3) / F(3x3,3x3) / F(4x4,3x3): transforms around alpha^2 packed GEMMs
 *               (winograd.c); chosen by `best` for float32 layers with enough channels
 *               (fc_winograd_choice)
 *   direct      no im2col: register blocks of output channels x pixel vectors over a padded,
 *               stride-phased strip of input rows (conv_direct.c); chosen by `best` for
 *               grouped convs with few output channels per group, for few input channels
 *               with a large window (fc_direct_choice) and for 1-D convs (float32: at most
 *               128 input channels per group; fc_direct_1d_choice)
 *   implicit_gemm  no im2col: register blocks of pixels x output-channel vectors, the input
 *               broadcast from the same strip (conv_igemm.c); chosen by `best`, before
 *               direct, for the direct kernel's layers on small planes (7x7, or 14x14
 *               with 16 input channels per group) with at least one vector of output
 *               channels per group (fc_igemm_choice)
 * Grouped convs are one GEMM per group; dilation, stride and padding live in im2col (and in
 * the other variants' own indexing).
 *
 * Returns 0, or 1 when a workspace could not be allocated (the output is then incomplete).
 * `work_bytes` bounds the memory a call allocates (im2col chunks and packed panels, all
 * threads together): the column matrix is built one chunk of rows x output pixels at a time
 * so that it fits, whatever the input. `kernel` picks the GEMM micro-kernel of v4 / v5 / best
 * (FC_GEMM_AUTO = the best the CPU runs); `nthreads` is the most threads v5 / best use
 * (fewer when the call is too small to share, fc_team_for).
 *
 * Build: `python csrc/build_ffi.py`.
 * Test: `pytest tests/test_c_conv.py`; time: `pytest bench/bench_conv2d.py --benchmark-enable`.
 */
#ifndef FC_TYPED

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* How one conv call is cut into independent tasks. A task computes the output block
 * y[n, g*M + m0 : g*M + m1, pixels p0 : p1] (M = OC/G) from its own im2col chunks, so tasks
 * share nothing but the inputs and run on any thread in any order. */
typedef struct {
    int64_t M, K, P;     /* GEMM sizes of one (image, group): OC/G, C/G*KH*KW, OH*OW */
    int64_t mstep, nm;   /* output channels per task, number of channel blocks */
    int64_t pstep, np;   /* output pixels per task, number of pixel blocks */
    int64_t kstep;       /* col rows per im2col chunk (K unless the bound forces less) */
    int64_t ntasks;      /* N * G * nm * np */
    int64_t work_elems;  /* per-thread workspace: col chunk + GEMM panels */
    int64_t a_elems;     /* MODE_PACKED: weights packed once per call (0: per chunk instead) */
    int nthreads;        /* threads actually used */
} conv_plan;

/* How a task gets its B operand (the column matrix).
 *   MODE_COL     im2col into a plain row-major chunk, then the GEMM packs it  (v2 .. v5)
 *   MODE_PACKED  im2col straight into the packed-B layout, weights packed once per call
 *                (or per chunk, see plan_conv), then the macro-kernel loops only  (best)
 *   MODE_DIRECT  1x1, stride 1, no padding: x already is the column matrix      (best)
 * In every mode the GEMM applies bias and epilogue to each micro-tile as it stores the
 * tile's last K block (fc_gemm_tail). */
enum { MODE_COL, MODE_PACKED, MODE_DIRECT };

/* A 1x1, stride-1, unpadded conv: x already is the column matrix (MODE_DIRECT). */
static inline int conv_is_direct(const fc_conv_shape *s) {
    return s->KH == 1 && s->KW == 1 && s->sh == 1 && s->sw == 1 && s->ph == 0 && s->pw == 0 &&
           s->OH == s->H && s->OW == s->W;
}

/* Target size of one column chunk: small enough to stay in L2 (1-2 MiB on current x86)
 * between im2col writing it and the GEMM reading it, large enough that re-packing the
 * weights per task is cheap next to the multiply. */
#define COL_TARGET_BYTES (384 * 1024)

/* Per-thread workspace of a task of this plan, in elements (with slack for alignment). */
static int64_t task_work(const conv_plan *pl, int mode, int kernel, int is_f64) {
    const int64_t mr = fc_gemm_mr(kernel, is_f64), nr = fc_gemm_nr(kernel, is_f64);
    if (mode == MODE_PACKED)
        return ((pl->a_elems ? 0 : round_up(pl->mstep, mr)) + round_up(pl->pstep, nr)) *
                   pl->kstep + 32;
    return (mode == MODE_COL ? pl->kstep * pl->pstep : 0) +
           fc_gemm_work_elems(kernel, is_f64, pl->mstep, pl->pstep, pl->kstep);
}

static void plan_conv(const fc_conv_shape *s, int kernel, int is_f64, int nthreads,
                      int64_t work_bytes, int mode, conv_plan *pl) {
    const int64_t es = is_f64 ? 8 : 4;
    const int64_t mr = fc_gemm_mr(kernel, is_f64), nr = fc_gemm_nr(kernel, is_f64);
    const int use_col = mode != MODE_DIRECT;
    pl->M = s->OC / s->G;
    pl->K = s->C / s->G * s->KH * s->KW;
    pl->P = s->OH * s->OW;
    pl->mstep = pl->M;
    pl->pstep = pl->P;
    pl->kstep = pl->K;

    if (mode == MODE_COL && pl->K * pl->P * es > COL_TARGET_BYTES) {
        /* pixel blocks that keep the col chunk near the target (at least one micro-tile) */
        pl->pstep = min64(pl->P, max64(nr, COL_TARGET_BYTES / (pl->K * es) / nr * nr));
    } else if (mode == MODE_PACKED) {
        /* pixel blocks of 512 .. 1024 (or the whole image up to 320), then as many chunks
         * of rows as keep the packed panel near the target. Each pixel block reads all of
         * its rows' packed weights again (from L3 once they exceed L2): blocks of 96-128 on a
         * K = 2304 layer read 21-28 MB of weights per call for 10 MB of columns; from 512 up
         * ASPP 3x3 256@33 ran 5-12% faster (1 and 2 threads), shorter K chunks included;
         * with the widths equalised, VGG-16's 3x3 @28 and ResNet-50's 3x3/2 128@56 10-16%. */
        if (pl->P > 320) {
            pl->pstep = min64(pl->P, min64(1024, max64(512, COL_TARGET_BYTES / (pl->K * es) /
                                                               nr * nr)));
            /* blocks of equal width (784 pixels: 416 + 368, not 512 + 272) */
            pl->pstep = round_up(ceil_div(pl->P, ceil_div(pl->P, pl->pstep)), nr);
        }
        int64_t nk = ceil_div(pl->K * round_up(pl->pstep, nr) * es, COL_TARGET_BYTES);
        /* and a chunk's weights (all M rows) with its columns within twice the target, so
         * that a task packing its own rows keeps both in L2. From M and this pstep only,
         * never from the thread split or the batch below: K is summed chunk by chunk, and
         * the same chunks keep results bit-identical across thread counts and batches. */
        nk = max64(nk, ceil_div(pl->K * (round_up(pl->M, mr) + round_up(pl->pstep, nr)) * es,
                                2 * COL_TARGET_BYTES));
        pl->kstep = ceil_div(pl->K, nk);
    }
    /* Pack the weights once per call (shared by all tasks) when several tasks use the same
     * rows (several images or pixel blocks) and they take at most half the bound; else every
     * task packs its rows per chunk into its workspace, which stays in L2 (writing the whole
     * packed copy out and reading it back measured 6-10% slower on 3x3 512@7, batch 1). */
    pl->a_elems = 0;
    const int shared = s->N * ceil_div(pl->P, pl->pstep) > 1;
    if (mode == MODE_PACKED && shared && s->G * round_up(pl->M, mr) * pl->K * es <= work_bytes / 2)
        pl->a_elems = s->G * round_up(pl->M, mr) * pl->K + 32;

    /* Enough tasks for the threads: with N*G*nm*np a multiple of nthreads (or many tasks)
     * every thread gets the same work. Split pixels while blocks stay >= 4 micro-tiles wide,
     * else output channels while blocks stay >= 2 micro-tiles tall. */
    const int64_t ng = s->N * s->G, np0 = ceil_div(pl->P, pl->pstep), base = ng * np0;
    if (nthreads > 1 && base % nthreads != 0 && base < 8 * nthreads) {
        int64_t parts = nthreads / gcd64(base, nthreads);
        /* Output channels per task: where each task packs (or reads in place) its own rows,
         * any row offset works and the rows split evenly (256 rows on 2 threads: 128 + 128,
         * 9 strips of 14 and one of 2 each, not 140 + 116, 10 strips against 8 and one of
         * 4); a shared packed copy is read a strip at a time, so whole strips there. */
        const int64_t mpart = pl->a_elems ? round_up(ceil_div(pl->M, parts), mr)
                                          : ceil_div(pl->M, parts);
        int64_t even = 0; /* pixel blocks of at least 2 micro-tiles, as many as share evenly */
        if (np0 > 1)
            for (int64_t nb = np0 + 1; nb <= 2 * np0 && !even; nb++) {
                const int64_t ps = round_up(ceil_div(pl->P, nb), nr);
                if (ps >= 2 * nr && ng * ceil_div(pl->P, ps) % nthreads == 0) even = ps;
            }
        if (np0 == 1 && pl->P >= parts * 4 * nr)
            pl->pstep = round_up(ceil_div(pl->P, parts), nr);
        else if (even)
            pl->pstep = even;
        else if (pl->M >= parts * 2 * mr)
            pl->mstep = mpart;
        else if (pl->P >= parts * nr && np0 == 1)
            pl->pstep = round_up(ceil_div(pl->P, parts), nr);
        else if (round_up(ceil_div(pl->M, parts), mr) < pl->M)
            pl->mstep = mpart;
    }
    pl->nm = ceil_div(pl->M, pl->mstep);
    pl->np = ceil_div(pl->P, pl->pstep);
    pl->ntasks = s->N * s->G * pl->nm * pl->np;
    pl->nthreads = (int)min64(nthreads < 1 ? 1 : nthreads, pl->ntasks);

    /* The bound: each thread holds one col chunk (kstep x pstep) and the GEMM panels. Shrink
     * the pixel block first (down to one micro-tile), then the rows per chunk, then pixels to 1. */
    int64_t budget = (work_bytes / es - pl->a_elems) / pl->nthreads;
    while (task_work(pl, mode, kernel, is_f64) > budget) {
        if (use_col && pl->pstep > nr) {
            pl->pstep = max64(nr, pl->pstep / 2 / nr * nr);
        } else if (use_col && pl->kstep > 1) {
            pl->kstep = pl->kstep / 2;
        } else if (pl->pstep > 1) {
            pl->pstep = pl->pstep / 2;
        } else {
            break; /* the smallest workspace there is: one row, one pixel */
        }
    }
    pl->np = ceil_div(pl->P, pl->pstep);
    pl->ntasks = s->N * s->G * pl->nm * pl->np;
    pl->work_elems = task_work(pl, mode, kernel, is_f64);
}

#define FC_INSTANTIATE "conv2d.c"
#include "common.h"

#else /* ------------------------------------------------------------ typed section */

/* v1_direct: the definition, written as loops. Every output sums C/G*KH*KW products; a tap
 * in the padding reads zero and is multiplied like any other, so that a NaN or Inf weight
 * gives NaN there (0 x Inf = NaN), as im2col's zeros do in the GEMM variants
 * (docs/nonfinite.md). Slow: each weight and input is reloaded for every output and nothing
 * is vectorised across outputs. */
static void FN(conv2d_v1_direct)(const T *x, const T *w, const T *b, T *y,
                                 const fc_conv_shape *s) {
    const int64_t Cg = s->C / s->G, M = s->OC / s->G;
    for (int64_t n = 0; n < s->N; n++)
        for (int64_t o = 0; o < s->OC; o++) {
            const int64_t g = o / M;
            const T *xg = x + (n * s->C + g * Cg) * s->H * s->W;
            const T *wo = w + o * Cg * s->KH * s->KW;
            T *yo = y + (n * s->OC + o) * s->OH * s->OW;
            for (int64_t i = 0; i < s->OH; i++)
                for (int64_t j = 0; j < s->OW; j++) {
                    T acc = b ? b[o] : 0;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t kh = 0; kh < s->KH; kh++) {
                            int64_t ih = i * s->sh - s->ph + kh * s->dh;
                            const int row_in = ih >= 0 && ih < s->H;
                            for (int64_t kw = 0; kw < s->KW; kw++) {
                                int64_t iw = j * s->sw - s->pw + kw * s->dw;
                                T v = row_in && iw >= 0 && iw < s->W
                                          ? xg[(c * s->H + ih) * s->W + iw]
                                          : (T)0;
                                acc += wo[(c * s->KH + kh) * s->KW + kw] * v;
                            }
                        }
                    yo[i * s->OW + j] = acc;
                }
        }
}

/* One task of the GEMM variants: y block = w block (mstep x K) * col (K x pixel block), built
 * and multiplied one chunk of kstep col rows at a time (accumulating after the first), then
 * + bias. How col is made depends on the mode (see MODE_COL above). */
static void FN(conv2d_task)(const T *x, const T *w, const T *b, T *y, const fc_conv_shape *s,
                            const conv_plan *pl, int kernel, int mode, int64_t task,
                            const T *Aall, T *work, const fc_epilogue *ep) {
    int64_t pb = task % pl->np, t = task / pl->np;
    int64_t mb = t % pl->nm;
    t /= pl->nm;
    const int64_t g = t % s->G, n = t / s->G;
    const int64_t p0 = pb * pl->pstep, p1 = min64(pl->P, p0 + pl->pstep), np = p1 - p0;
    const int64_t m0 = mb * pl->mstep, m = min64(pl->M, m0 + pl->mstep) - m0;
    const int64_t Cg = s->C / s->G;
    const T *xg = x + (n * s->C + g * Cg) * s->H * s->W;
    const T *A = w + (g * pl->M + m0) * pl->K;
    T *C = y + (n * s->OC + g * pl->M + m0) * pl->P + p0;
    /* the task's block lies inside the (image, group) and its chunks inside the workspace */
    FC_ASSERT(0 <= p0 && p0 < p1 && p1 <= pl->P && np <= pl->pstep);
    FC_ASSERT(0 <= m0 && m >= 1 && m <= pl->mstep && m0 + m <= pl->M);
    /* Bias and epilogue run in the GEMM, on each tile of its last K block while the tile is
     * in registers or L1 (fc_gemm_tail). */
    const fc_gemm_tail tail = {
        .bias = b ? b + g * pl->M + m0 : NULL,
        .scale = ep && ep->scale ? (const T *)ep->scale + g * pl->M + m0 : NULL,
        .shift = ep && ep->shift ? (const T *)ep->shift + g * pl->M + m0 : NULL,
        .residual = ep && ep->residual
                        ? (const T *)ep->residual + (n * s->OC + g * pl->M + m0) * pl->P + p0
                        : NULL,
        .ldr = pl->P,
        .activation = ep ? ep->activation : FC_ACT_NONE};
    const fc_gemm_tail *tl = b || ep ? &tail : NULL;
    if (mode == MODE_DIRECT) {
        FC_ASSERT(fc_gemm_work_elems(kernel, IS_F64, m, np, pl->K) <= pl->work_elems);
        FN(fc_gemm_ep)(kernel, m, np, pl->K, A, pl->K, 1, xg + p0, s->H * s->W, C, pl->P, 0,
                       work, tl);
    } else if (mode == MODE_COL) {
        T *col = work, *gw = work + pl->kstep * pl->pstep;
        for (int64_t k0 = 0; k0 < pl->K; k0 += pl->kstep) {
            int64_t k1 = min64(pl->K, k0 + pl->kstep);
            FC_ASSERT(pl->kstep * pl->pstep +
                          fc_gemm_work_elems(kernel, IS_F64, m, np, k1 - k0) <=
                      pl->work_elems);
            FN(fc_im2col)(xg, s, k0, k1, p0, p1, col);
            FN(fc_gemm_ep)(kernel, m, np, k1 - k0, A + k0, pl->K, 1, col, np, C, pl->P, k0 > 0,
                           gw, k1 == pl->K ? tl : NULL);
        }
    } else {
        const int64_t mr = fc_gemm_mr(kernel, IS_F64), nr = fc_gemm_nr(kernel, IS_F64);
        T *Ap = (T *)(((uintptr_t)work + 63) & ~(uintptr_t)63);
        T *Bp = Aall ? Ap : Ap + round_up(m, mr) * pl->kstep;
        const T *Ablk = Aall ? Aall + (g * round_up(pl->M, mr) + m0) * pl->K : Ap;
        FC_ASSERT((Bp - work) + round_up(np, nr) * pl->kstep <= pl->work_elems);
        /* a task packing its own rows for few pixels reads them in place instead (the edge
         * strip of fewer than mr rows packed into Ap): 3x3 512@7 packed 9.4 MB of weights
         * per call for 2 slivers of 49 pixels, 18% of the call */
        const int in_place = !Aall && FN(fc_gemm_a_in_place_ok)(kernel, np);
        for (int64_t k0 = 0; k0 < pl->K; k0 += pl->kstep) {
            int64_t k1 = min64(pl->K, k0 + pl->kstep);
            const fc_gemm_tail *tk = k1 == pl->K ? tl : NULL;
            if (!Aall && !in_place) FN(fc_pack_a)(kernel, m, k1 - k0, A + k0, pl->K, 1, Ap);
            FN(fc_im2col_packed)(xg, s, k0, k1, p0, p1, nr, Bp);
            if (Aall)
                FN(fc_gemm_packed_ep)(kernel, m, np, k1 - k0, Ablk + k0 * mr, pl->K, Bp, C,
                                      pl->P, k0 > 0, tk);
            else if (in_place)
                FN(fc_gemm_a_in_place_ep)(kernel, m, np, k1 - k0, A + k0, pl->K, Bp, C, pl->P,
                                          k0 > 0, tk, Ap);
            else
                FN(fc_gemm_packed_ep)(kernel, m, np, k1 - k0, Ap, k1 - k0, Bp, C, pl->P, k0 > 0,
                                      tk);
        }
    }
}

/* The arguments of the two pool loops of conv2d_gemm (weight slivers, tasks). */
typedef struct {
    const T *x, *w, *b;
    T *y;
    const fc_conv_shape *s;
    const conv_plan *pl;
    int kernel, mode;
    T *Aall;     /* the weights packed once per call, or NULL */
    T **works;   /* one workspace per pool slot, made by the slot's thread on first use */
    const fc_epilogue *ep; /* NULL: none */
    _Atomic int failed;
} FN(conv_args);

/* Pack slivers [q0, q1) of every group's weights (mr output channels each) into Aall. */
static void FN(conv_pack_slivers)(void *ctx, int64_t q0, int64_t q1, int slot) {
    const FN(conv_args) *a = ctx;
    const conv_plan *pl = a->pl;
    const int64_t mr = fc_gemm_mr(a->kernel, IS_F64), nsl = round_up(pl->M, mr) / mr;
    (void)slot;
    for (int64_t q = q0; q < q1; q++) {
        const int64_t g = q / nsl, i0 = q % nsl * mr;
        FN(fc_pack_a)(a->kernel, min64(mr, pl->M - i0), pl->K, a->w + (g * pl->M + i0) * pl->K,
                      pl->K, 1, a->Aall + (g * nsl * mr + i0) * pl->K);
    }
}

static void FN(conv_tasks)(void *ctx, int64_t t0, int64_t t1, int slot) {
    FN(conv_args) *a = ctx;
    if (!a->works[slot] &&
        !(a->works[slot] = malloc((size_t)(a->pl->work_elems + 1) * sizeof(T)))) {
        a->failed = 1; /* y stays incomplete; the caller reports it */
        return;
    }
    for (int64_t task = t0; task < t1; task++)
        FN(conv2d_task)(a->x, a->w, a->b, a->y, a->s, a->pl, a->kernel, a->mode, task, a->Aall,
                        a->works[slot], a->ep);
}

/* The GEMM variants share this driver and differ in the GEMM kernel (v2: naive, v3: portable
 * blocked, v4: vector blocked), the thread count (v5) and the mode (best). Threads: at most
 * `nthreads`, fewer when the call is too small to share (fc_team_for); each allocates its
 * workspace on its first task and takes tasks one at a time from the pool (parallel.c). */
static int FN(conv2d_gemm)(const T *x, const T *w, const T *b, T *y, const fc_conv_shape *s,
                           int kernel, int nthreads, int64_t work_bytes, int mode,
                           const fc_epilogue *ep) {
    const int64_t macs = s->N * s->OC * s->OH * s->OW * (s->C / s->G) * s->KH * s->KW;
    const int team = fc_team_for(fc_cost_macs(macs), nthreads);
    conv_plan pl;
    plan_conv(s, kernel, IS_F64, team, work_bytes, mode, &pl);
    const int64_t mr = fc_gemm_mr(kernel, IS_F64), Mr = round_up(pl.M, mr);
    T *abuf = pl.a_elems ? malloc((size_t)pl.a_elems * sizeof(T)) : NULL;
    if (pl.a_elems && !abuf) return 1;
    T *works[FC_POOL_SLOTS] = {0};
    FN(conv_args) a = {.x = x, .w = w, .b = b, .y = y, .s = s, .pl = &pl, .kernel = kernel,
                       .mode = mode, .works = works, .ep = ep, .failed = 0};
    if (abuf) { /* pack every group's weights, one sliver of mr output channels each */
        a.Aall = (T *)(((uintptr_t)abuf + 63) & ~(uintptr_t)63);
        const int64_t nsl = s->G * (Mr / mr);
        const int64_t cost = fc_cost_mem(2 * s->G * Mr * pl.K * (int64_t)sizeof(T), 0);
        const int pteam = fc_team_for(cost, pl.nthreads);
        fc_parallel_for(nsl, fc_chunk_for(nsl, cost, pteam), pteam, FN(conv_pack_slivers), &a);
    }
    fc_parallel_for(pl.ntasks, 1, pl.nthreads, FN(conv_tasks), &a);
    for (int i = 0; i < FC_POOL_SLOTS; i++) free(works[i]);
    free(abuf);
    return a.failed;
}

/* Which path the default variant takes for this geometry (enum fc_conv_path): what
 * fastconv.cpu_info reports per layer. Must follow the `default:` branch of conv2d_any. */
int FN(fc_conv2d_path)(const fc_conv_shape *s, int nthreads) {
    if (fc_igemm_choice(s, IS_F64, fc_direct_level(FC_GEMM_AUTO))) return FC_PATH_IMPLICIT_GEMM;
    if (fc_direct_choice(s, IS_F64) || fc_direct_1d_choice(s, IS_F64, nthreads))
        return FC_PATH_DIRECT;
    const int wm = fc_winograd_choice(s, IS_F64, nthreads);
    if (wm) return wm == 2 ? FC_PATH_WINOGRAD_F2 : wm == 3 ? FC_PATH_WINOGRAD_F3
                                                            : FC_PATH_WINOGRAD_F4;
    return conv_is_direct(s) ? FC_PATH_GEMM_1X1 : FC_PATH_IM2COL_GEMM;
}

/* The epilogue over whole output planes, after a variant that has no fused one. */
typedef struct {
    T *y;
    int64_t OC, P;
    const fc_epilogue *ep;
} FN(conv_ep_args);

static void FN(conv_ep_planes)(void *ctx, int64_t p0, int64_t p1, int slot) {
    const FN(conv_ep_args) *a = ctx;
    const T *res = a->ep->residual;
    (void)slot;
    for (int64_t p = p0; p < p1; p++)
        FN(fc_epilogue_row)(a->ep, p % a->OC, a->y + p * a->P, res ? res + p * a->P : NULL,
                            a->P);
}

static int FN(conv2d_any)(const T *x, const T *w, const T *b, T *y, const fc_conv_shape *s,
                          int variant, int kernel, int nthreads, int64_t work_bytes,
                          const fc_epilogue *ep);

int FN(fc_conv2d)(const T *x, const T *w, const T *b, T *y, const fc_conv_shape *s, int variant,
                  int kernel, int nthreads, int64_t work_bytes) {
    return FN(conv2d_any)(x, w, b, y, s, variant, kernel, nthreads, work_bytes, NULL);
}

int FN(fc_conv2d_ep)(const T *x, const T *w, const T *b, T *y, const fc_conv_shape *s,
                     int variant, int kernel, int nthreads, int64_t work_bytes,
                     const fc_epilogue *ep) {
    if (!fc_epilogue_active(ep)) ep = NULL;
    /* the default path fuses the epilogue into its tasks; the ladder steps get it after */
    const int fused = variant == FC_CONV_BEST || variant == FC_CONV_WINOGRAD_F2 ||
                      variant == FC_CONV_WINOGRAD_F3 || variant == FC_CONV_WINOGRAD_F4 ||
                      variant == FC_CONV_DIRECT ||
                      variant == FC_CONV_IMPLICIT_GEMM;
    int rc = FN(conv2d_any)(x, w, b, y, s, variant, kernel, nthreads, work_bytes,
                            fused ? ep : NULL);
    if (rc || !ep || fused || s->N <= 0 || s->OC <= 0 || s->OH <= 0 || s->OW <= 0) return rc;
    FN(conv_ep_args) a = {.y = y, .OC = s->OC, .P = s->OH * s->OW, .ep = ep};
    const int64_t planes = s->N * s->OC, P = s->OH * s->OW;
    const int64_t cost = fc_cost_mem(planes * P * (ep->residual ? 3 : 2) * (int64_t)sizeof(T), 0);
    const int team = fc_team_for(cost, nthreads);
    fc_parallel_for(planes, fc_chunk_for(planes, cost, team), team, FN(conv_ep_planes), &a);
    return 0;
}

static int FN(conv2d_any)(const T *x, const T *w, const T *b, T *y, const fc_conv_shape *s,
                          int variant, int kernel, int nthreads, int64_t work_bytes,
                          const fc_epilogue *ep) {
    /* C, H, W, KH, KW >= 1; N, OC, OH, OW >= 0 (0: nothing to do); G divides C and OC;
     * s*, d* >= 1; p* >= 0 */
    FC_ASSERT_CONV_SHAPE(s);
    if (s->N <= 0 || s->OC <= 0 || s->OH <= 0 || s->OW <= 0) return 0;
    switch (variant) {
    case FC_CONV_V1_DIRECT:
        FN(conv2d_v1_direct)(x, w, b, y, s);
        return 0;
    case FC_CONV_V2_IM2COL:
        /* v2_im2col: what changed from v1: the input patches are copied once into a column
         * matrix (im2col, chunked to bound the workspace) and the conv becomes a matrix
         * product per image and group, computed by an i-k-j triple loop. Why faster: the
         * inner loop runs over contiguous output pixels with one weight held fixed, so the
         * compiler vectorises it and there are no bounds tests left in it. */
        return FN(conv2d_gemm)(x, w, b, y, s, FC_GEMM_NAIVE, 1, work_bytes, MODE_COL, NULL);
    case FC_CONV_V3_BLOCKED:
        /* v3_blocked: what changed from v2: the product is cache-blocked (gemm.c): panels of
         * weights and columns are packed into contiguous slivers and a 4x8 register tile of
         * the output is accumulated over a whole K block. Why faster: each value loaded from
         * memory now feeds 4 or 8 multiply-adds from registers instead of one, and the packed
         * panels stay in L1/L2 while they are reused. */
        return FN(conv2d_gemm)(x, w, b, y, s, FC_GEMM_PORTABLE, 1, work_bytes, MODE_COL, NULL);
    case FC_CONV_V4_SIMD:
        /* v4_simd: what changed from v3: the micro-kernel is written with the CPU's vector
         * instructions, chosen at run time (AVX-512 14x32, AVX2+FMA 6x16, else portable).
         * Why faster: fused multiply-adds on 8 or 16 lanes, 24-28 accumulator registers that
         * hide the FMA latency, and a tile large enough that loads stay below the FMA rate.
         * (A chunk of at most 256 pixels multiplies the weights in place, unpacked: gemm.c.) */
        return FN(conv2d_gemm)(x, w, b, y, s, kernel, 1, work_bytes, MODE_COL, NULL);
    case FC_CONV_V5_THREADS:
        /* v5_threads: what changed from v4: threads take independent tasks (image, group,
         * block of output channels, block of pixels), each with its own workspace, with
         * enough tasks that every thread gets the same share. Why faster: all cores. */
        return FN(conv2d_gemm)(x, w, b, y, s, kernel, nthreads, work_bytes, MODE_COL, NULL);
    case FC_CONV_WINOGRAD_F2:
    case FC_CONV_WINOGRAD_F3:
    case FC_CONV_WINOGRAD_F4:
    case FC_CONV_DIRECT:
    case FC_CONV_IMPLICIT_GEMM:
    default: {
        /* implicit GEMM (conv_igemm.c), explicitly or by the automatic choice
         * (fc_igemm_choice: what the direct kernel would take, on small planes with at
         * least 8 float or one vector of double output channels per group); a call
         * it declines (workspace bound) goes on below */
        if (variant == FC_CONV_IMPLICIT_GEMM ||
            (variant == FC_CONV_BEST && fc_igemm_choice(s, IS_F64, fc_direct_level(kernel)))) {
            int rc = FN(fc_conv2d_igemm)(x, w, b, y, s, kernel, nthreads, work_bytes, ep);
            if (rc != FC_DIRECT_DECLINED) return rc;
        }
        /* direct (conv_direct.c), explicitly or by the automatic choice (fc_direct_choice:
         * few channels per group; fc_direct_1d_choice: 1-D convs); a call it declines
         * (workspace bound) goes on below */
        const int dm = variant == FC_CONV_DIRECT ||
                       (variant == FC_CONV_BEST && (fc_direct_choice(s, IS_F64) ||
                                                    fc_direct_1d_choice(s, IS_F64, nthreads)));
        if (dm) {
            int rc = FN(fc_conv2d_direct)(x, w, b, y, s, kernel, nthreads, work_bytes, ep);
            if (rc != FC_DIRECT_DECLINED) return rc;
        }
        /* then winograd_f2 / f3 / f4 (winograd.c), explicitly or by the automatic choice
         * (fc_winograd_choice: float32 3x3 stride-1 layers with enough channels); a call it
         * declines (another geometry, a non-finite x or w) runs the best im2col path below. */
        int wm = variant == FC_CONV_WINOGRAD_F2   ? 2
                 : variant == FC_CONV_WINOGRAD_F3 ? 3
                 : variant == FC_CONV_WINOGRAD_F4 ? 4
                 : variant == FC_CONV_BEST        ? fc_winograd_choice(s, IS_F64, nthreads)
                                                  : 0;
        if (wm) {
            int rc = FN(fc_winograd_conv2d)(x, w, b, y, s, wm, kernel, nthreads, work_bytes,
                                            ep);
            if (rc != FC_WINOGRAD_DECLINED) return rc;
        }
        /* best: what changed from v5: the weights are packed once per call and shared by
         * every task, and im2col writes straight into the packed layout the micro-kernel
         * reads; a 1x1 stride-1 unpadded conv skips im2col and packs x itself. Why faster:
         * one copy of the input instead of two and no per-task repacking of the weights
         * (which dominated on small images such as 7x7). */
        const int direct = conv_is_direct(s);
        if (kernel == FC_GEMM_NAIVE) kernel = FC_GEMM_PORTABLE; /* the best has no naive path */
        return FN(conv2d_gemm)(x, w, b, y, s, kernel, nthreads, work_bytes,
                               direct ? MODE_DIRECT : MODE_PACKED, ep);
    }
    }
}

#endif /* FC_TYPED */
