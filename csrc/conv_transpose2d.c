/* conv_transpose2d.c: 2-D transposed convolution, float32 and float64, as the adjoint of
 * conv2d: a GEMM with the transposed weights, then col2im.
 *
 * x is (N, C, H, W), w is (C, OC/G, KH, KW), b is (OC,) or NULL, y is (N, OC, OH, OW);
 * y[n, o, i*sh - ph + kh*dh, j*sw - pw + kw*dw] += x[n, c, i, j] * w[c, o', kh, kw] (+ b[o]),
 * positions outside y dropped; OH, OW already include output_padding.
 *
 * One variant. Per image n and group g, with Cg = C/G, M = OC/G:
 *   col = w_g^T x_g          ((M*KH*KW) x Cg) times (Cg x H*W), the blocked vector GEMM of
 *                            gemm.c reading w_g^T in place (A(i, k) = w_g[k, i])
 *   y_g = col2im(col) + b    the adjoint of conv2d's im2col, with the roles of the image
 *                            (here y, OH x OW) and the pixel grid (here x, H x W) swapped
 * Tasks are (image, group, block of output channels), so no two tasks write the same output;
 * the thread pool (parallel.c) hands them out one at a time; small calls run on one thread.
 * Inside a task, col is built one chunk of rows x input pixels at a time, so a call
 * allocates at most `work_bytes` (all threads together), whatever the input: chunks of whole
 * output channels over every pixel where the pixels are fewer than the rows (each chunk's
 * weights then packed once), else chunks of pixels. Returns 0, or 1 when a workspace could
 * not be allocated.
 *
 * Build: `python csrc/build_ffi.py`.
 * Test: `pytest tests/test_c_conv.py -k transpose`; time: `pytest bench/bench_conv_transpose2d.py
 * --benchmark-enable`.
 */
#ifndef FC_TYPED

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

typedef struct {
    int64_t M, KK, P, Cg; /* OC/G, KH*KW, H*W (input pixels), C/G (the GEMM's inner size) */
    int64_t mstep, nm;    /* output channels per task, number of channel blocks */
    int64_t rstep;        /* col rows per chunk (<= mstep*KK) */
    int64_t pstep;        /* input pixels per chunk */
    int64_t ntasks, work_elems;
    int swap;             /* compute col^T = x_g^T w_g instead (few pixels, many rows) */
    int nthreads;
} convt_plan;

/* Target size of one col chunk: it should stay in L2 between the GEMM writing it and col2im
 * reading it. */
#define COL_TARGET_BYTES (384 * 1024)
/* The transposed col's rows are padded by 16 elements, so that its row stride is not a
 * multiple of 4 KiB (L1 set conflicts when col2im walks down a column). */
#define LD_PAD 16

static void plan_convt(const fc_conv_shape *s, int kernel, int is_f64, int nthreads,
                       int64_t work_bytes, convt_plan *pl) {
    const int64_t es = is_f64 ? 8 : 4;
    const int64_t nr = fc_gemm_nr(kernel, is_f64);
    pl->M = s->OC / s->G;
    pl->KK = s->KH * s->KW;
    pl->P = s->H * s->W;
    pl->Cg = s->C / s->G;
    pl->mstep = pl->M;
    int64_t base = s->N * s->G;
    if (nthreads > 1 && base % nthreads != 0 && base < 8 * nthreads) {
        int64_t parts = nthreads / gcd64(base, nthreads);
        pl->mstep = ceil_div(pl->M, min64(parts, pl->M));
    }
    pl->nm = ceil_div(pl->M, pl->mstep);
    pl->ntasks = base * pl->nm;
    pl->nthreads = (int)min64(nthreads < 1 ? 1 : nthreads, pl->ntasks);

    pl->rstep = pl->mstep * pl->KK;
    pl->pstep = pl->P;
    if (pl->rstep * pl->P * es > COL_TARGET_BYTES) {
        /* chunks of whole output channels' rows over every pixel where a channel's rows fit
         * the target: the GEMM packs each chunk's weights once (pixel chunks packed all of
         * them again per chunk), and x's block again per chunk, which is smaller where the
         * pixels are fewer than the rows */
        const int64_t ch = COL_TARGET_BYTES / (pl->KK * pl->P * es);
        if (ch >= 1 && pl->P < pl->rstep)
            pl->rstep = ch * pl->KK;
        else
            pl->pstep = min64(pl->P, max64(nr, COL_TARGET_BYTES / (pl->rstep * es) / nr * nr));
    }
    /* With very few pixels (small inputs, e.g. 4x4 -> 8x8 decoders) the product is
     * computed transposed: the GEMM then packs the small x block as its A (a cheap gather)
     * and the weights as its B (contiguous rows, a memcpy), instead of gathering the whole
     * weight matrix into A slivers for a handful of pixels. */
    pl->swap = pl->pstep < pl->rstep && pl->pstep <= 2 * nr; /* measured crossover */
    int64_t budget = work_bytes / es / pl->nthreads;
    for (;;) {
        int64_t gw = pl->swap ? fc_gemm_work_elems(kernel, is_f64, pl->pstep, pl->rstep, pl->Cg)
                              : fc_gemm_work_elems(kernel, is_f64, pl->rstep, pl->pstep, pl->Cg);
        if ((pl->rstep + LD_PAD) * pl->pstep + gw <= budget) break;
        if (pl->pstep > nr) {
            pl->pstep = max64(nr, pl->pstep / 2 / nr * nr);
        } else if (pl->rstep > 1) {
            int64_t fit = (budget - gw) / pl->pstep;
            pl->rstep = fit >= 1 && fit < pl->rstep ? fit : pl->rstep / 2;
        } else if (pl->pstep > 1) {
            pl->pstep /= 2;
        } else {
            break; /* the smallest workspace there is: one row, one pixel */
        }
    }
    pl->work_elems = (pl->rstep + LD_PAD) * pl->pstep +
                     fc_gemm_work_elems(kernel, is_f64, pl->rstep, pl->pstep, pl->Cg) +
                     fc_gemm_work_elems(kernel, is_f64, pl->pstep, pl->rstep, pl->Cg);
}

#define FC_INSTANTIATE "conv_transpose2d.c"
#include "common.h"

#else /* ------------------------------------------------------------ typed section */

/* One task: output channels [o0, o1) of image n, group g. */
static void FN(convt_task)(const T *x, const T *w, const T *b, T *y, const fc_conv_shape *s,
                           const fc_conv_shape *adj, const convt_plan *pl, int kernel,
                           int64_t task, T *work) {
    const int64_t mb = task % pl->nm, t = task / pl->nm;
    const int64_t g = t % s->G, n = t / s->G;
    const int64_t o0 = mb * pl->mstep, o1 = min64(pl->M, o0 + pl->mstep);
    const int64_t OHW = s->OH * s->OW, Kt = pl->M * pl->KK;
    const T *xg = x + (n * s->C + g * pl->Cg) * pl->P;
    const T *wg = w + g * pl->Cg * Kt;
    T *yg = y + (n * s->OC + g * pl->M) * OHW;
    T *col = work, *gw = work + (pl->rstep + LD_PAD) * pl->pstep;
    FC_ASSERT(0 <= o0 && o0 < o1 && o1 <= pl->M);
    memset(yg + o0 * OHW, 0, (size_t)((o1 - o0) * OHW) * sizeof(T));
    for (int64_t p0 = 0; p0 < pl->P; p0 += pl->pstep) {
        const int64_t np = min64(pl->P - p0, pl->pstep);
        for (int64_t r0 = o0 * pl->KK; r0 < o1 * pl->KK; r0 += pl->rstep) {
            const int64_t r1 = min64(o1 * pl->KK, r0 + pl->rstep);
            /* col (at most (rstep + LD_PAD) x pstep) and the GEMM's panels fit the workspace */
            FC_ASSERT(r1 - r0 <= pl->rstep && np <= pl->pstep);
            FC_ASSERT((pl->rstep + LD_PAD) * pl->pstep +
                          (pl->swap ? fc_gemm_work_elems(kernel, IS_F64, np, r1 - r0, pl->Cg)
                                    : fc_gemm_work_elems(kernel, IS_F64, r1 - r0, np, pl->Cg)) <=
                      pl->work_elems);
            if (pl->swap) {
                /* col^T (np x r1-r0) = x_g block^T (A(i, k) = xg[k*P + p0 + i]) * w_g columns
                 * [r0, r1) (B(k, j) = wg[k*Kt + r0 + j]) */
                FN(fc_gemm)(kernel, np, r1 - r0, pl->Cg, xg + p0, 1, pl->P, wg + r0, Kt, col,
                            r1 - r0 + LD_PAD, 0, gw);
                FN(fc_col2im)(col, 1, r1 - r0 + LD_PAD, adj, r0, r1, p0, p0 + np, yg);
            } else {
                /* col (r1-r0 x np) = w_g^T rows [r0, r1) (A(i, k) = wg[k*Kt + r0 + i]) * x_g */
                FN(fc_gemm)(kernel, r1 - r0, np, pl->Cg, wg + r0, 1, Kt, xg + p0, pl->P, col, np,
                            0, gw);
                FN(fc_col2im)(col, np, 1, adj, r0, r1, p0, p0 + np, yg);
            }
        }
    }
    if (b)
        for (int64_t o = o0; o < o1; o++) {
            const T bo = b[g * pl->M + o];
            T *yo = yg + o * OHW;
            for (int64_t j = 0; j < OHW; j++) yo[j] += bo;
        }
}

/* The arguments of the task loop, for fc_parallel_for. */
typedef struct {
    const T *x, *w, *b;
    T *y;
    const fc_conv_shape *s, *adj;
    const convt_plan *pl;
    int kernel;
    T **works; /* one workspace per pool slot, made by the slot's thread on first use */
    _Atomic int failed;
} FN(convt_args);

static void FN(convt_tasks)(void *ctx, int64_t t0, int64_t t1, int slot) {
    FN(convt_args) *a = ctx;
    if (!a->works[slot] &&
        !(a->works[slot] = malloc((size_t)(a->pl->work_elems + 1) * sizeof(T)))) {
        a->failed = 1; /* y stays incomplete; the caller reports it */
        return;
    }
    for (int64_t task = t0; task < t1; task++)
        FN(convt_task)(a->x, a->w, a->b, a->y, a->s, a->adj, a->pl, a->kernel, task,
                       a->works[slot]);
}

int FN(fc_conv_transpose2d)(const T *x, const T *w, const T *b, T *y, const fc_conv_shape *s,
                            int kernel, int nthreads, int64_t work_bytes) {
    /* H, W here are x's sizes and OH, OW y's; C = w's rows; G divides C and OC; the rest as
     * in fc_conv2d */
    FC_ASSERT_CONV_SHAPE(s);
    if (s->N <= 0 || s->OC <= 0 || s->OH <= 0 || s->OW <= 0) return 0;
    /* The adjoint conv2d's geometry: image = y (OC x OH x OW), pixel grid = x (H x W),
     * whose C channels are the adjoint's output channels. */
    fc_conv_shape adj = *s;
    adj.C = s->OC;
    adj.OC = s->C;
    adj.H = s->OH;
    adj.W = s->OW;
    adj.OH = s->H;
    adj.OW = s->W;
    const int64_t macs = s->N * s->C * s->H * s->W * (s->OC / s->G) * s->KH * s->KW;
    convt_plan pl;
    plan_convt(s, kernel, IS_F64, fc_team_for(fc_cost_macs(macs), nthreads), work_bytes, &pl);
    T *works[FC_POOL_SLOTS] = {0};
    FN(convt_args) a = {.x = x, .w = w, .b = b, .y = y, .s = s, .adj = &adj, .pl = &pl,
                        .kernel = kernel, .works = works, .failed = 0};
    fc_parallel_for(pl.ntasks, 1, pl.nthreads, FN(convt_tasks), &a);
    for (int i = 0; i < FC_POOL_SLOTS; i++) free(works[i]);
    return a.failed;
}

#endif /* FC_TYPED */
