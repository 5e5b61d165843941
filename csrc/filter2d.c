/* filter2d.c: 2-D correlation of single planes with SciPy's boundary modes, float32 / float64:
 * the direct engine of fastconv.ndimage and fastconv.signal.
 *
 * Kernels (each as _f32 and _f64; shapes in fc_filter_shape, fastconv.h):
 *   fc_filter2d      dense KH x KW correlation, register-blocked (below)
 *   fc_sepfilter2d   separable correlation u (KH) x v (KW): the column pass then the row
 *                    pass on each block of rows, fused, the intermediate rows in cache
 * Both read the input in place through one pointer per extended row (the row mode decides
 * which input row, or a row of the constant, an extended row reads); columns past the
 * edges are resolved by the column mode on copies of a few columns only. Memory: input +
 * output + per thread O((RB + KH) x (KW + a few vectors)) for dense, O(RB x W) for separable.
 *
 * Register blocking (fc_filter2d). A block of RB output rows x NV vectors of L outputs
 * keeps its RB * NV sums in registers over all taps. Output rows i .. i + RB - 1 read the
 * input rows i .. i + RB + KH - 2; each input row a is loaded once per kw (NV vectors) and
 * feeds the RB output rows that read it (kh = a - i), so one load feeds up to RB FMAs
 * (the depthwise kernel's row updates load and store the output for every tap).
 * AVX-512: RB 4 x NV 4 (16 sums, 4 inputs, 1 weight of the 32 registers), AVX2 and
 * baseline: RB 3 x NV 3 (of 16). The blocks of output rows start at multiples of RB in
 * every plane whatever the threads, so results do not depend on the thread count.
 *
 * Separable (fc_sepfilter2d): per block of RB output rows, the column pass (the dense
 * block with KW = 1: one load of an input row feeds the RB rows reading it) writes RB rows
 * of W sums to a per-thread buffer, which the column mode extends by a few columns (a
 * constant column holds cval * sum(u)); the row pass then reads that buffer (in L1/L2)
 * and writes the output rows. A symmetric v (Gaussian, uniform) adds the two inputs of
 * each pair of equal taps before multiplying: (KW + 1) / 2 multiplies per output.
 *
 * Each row-block loop is compiled for AVX-512, AVX2+FMA and baseline x86-64 (GCC vector
 * extensions of 64, 32 and 16 bytes) and picked at run time by fc_dwpool_isa, whose cap the
 * tests use to run every copy; other CPUs get the 16-byte copy. Threads: blocks of rows on
 * fastconv's pool (fc_parallel_for), up to fc_threads().
 *
 * Build: `python csrc/build_ffi.py`. Test: `pytest tests/test_filter2d.py`; time:
 * `python bench/filters.py --cpu`.
 */
#ifndef FC_TYPED

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#pragma GCC optimize("fp-contract=fast")

/* Rows per block (the largest of the ISA copies sizes the per-thread buffers). */
#define FC_F2_RB512 4
#define FC_F2_NV512 4
#define FC_F2_RB256 3
#define FC_F2_NV256 3
#define FC_F2_RB128 3
#define FC_F2_NV128 3
#define FC_F2_RBMAX 4
/* Vectors per block of the separable row pass. */
#define FC_F2_NH512 8
#define FC_F2_NH256 4
#define FC_F2_NH128 4
/* Elements of the widest vector (64 bytes of float32): the slack past a buffer's row. */
#define FC_F2_LMAX 16

/* Source index of extended position i on an axis of n >= 1 elements, or -1 where the
 * constant is read: SciPy's modes (fastconv/_filters/boundary.py draws them). */
static inline int64_t fc_border_index(int64_t i, int64_t n, int mode)
{
    if (i >= 0 && i < n)
        return i;
    int64_t p, m;
    switch (mode) {
    case FC_BORDER_NEAREST:
        return i < 0 ? 0 : n - 1;
    case FC_BORDER_WRAP:
        m = i % n;
        return m < 0 ? m + n : m;
    case FC_BORDER_REFLECT:
        p = 2 * n;
        m = i % p;
        m = m < 0 ? m + p : m;
        return m < n ? m : p - 1 - m;
    case FC_BORDER_MIRROR:
        if (n == 1)
            return 0;
        p = 2 * n - 2;
        m = i % p;
        m = m < 0 ? m + p : m;
        return m < n ? m : p - m;
    default:
        return -1;
    }
}

#define FC_INSTANTIATE "filter2d.c"
#include "common.h"

#else /* FC_TYPED: everything below is compiled once per element type T */

/* The arguments of a call, for fc_parallel_for. */
typedef struct {
    const T *x, *w, *u, *v;
    T *y;
    const fc_filter_shape *s;
    T cval, ccol;       /* the constant; a constant column's column-pass sum (separable) */
    const T *crow;      /* W + slack elements of cval: the rows the row mode makes constant */
    int64_t jl, jr;     /* dense: interior output columns [jl, jr), read in place */
    int64_t ev, ew;     /* dense: vectors of the widest edge strip; its buffer row width */
    int64_t vw, lp;     /* separable: buffer row width, columns before input column 0 */
    int64_t nrb;        /* blocks of rows per plane (RB rows of the ISA's copy) */
    int isa, sym;       /* fc_dwpool_isa at the call; v symmetric */
    int64_t scratch;    /* elements of the per-thread buffer */
    T **bufs;           /* one per pool slot, made by the slot's thread on first use */
    _Atomic int failed;
} FN(fc_f2_args);

/* dst[j] = the extended row (xr, or the constant when xr is NULL) at columns c0 + j,
 * j < n, the column mode resolving columns outside [0, W). */
static void FN(f2_ext_row)(T *restrict dst, const T *restrict xr, int64_t W, int64_t c0,
                           int64_t n, int mode, T cval)
{
    for (int64_t j = 0; j < n; j++) {
        const int64_t src = xr ? fc_border_index(c0 + j, W, mode) : -1;
        dst[j] = src < 0 ? cval : xr[src];
    }
}

/* Pointers to the extended rows r0 .. r0 + nr - 1 of plane n (the constant row where the
 * row mode reads the constant). */
static void FN(f2_row_ptrs)(const FN(fc_f2_args) *a, int64_t n, int64_t r0, int64_t nr,
                            const T **rows)
{
    const fc_filter_shape *s = a->s;
    for (int64_t r = 0; r < nr; r++) {
        const int64_t src = fc_border_index(r0 + r, s->H, s->mrow);
        rows[r] = src < 0 ? a->crow : a->x + n * s->xn + src * s->xh;
    }
}

/* BLOCK: ys[i][yc + q] = sum_{kh, kw} w[kh*KW + kw] * rows[i + kh][c + q + kw] for i < rb
 * (<= RB) output rows and q < nv * L columns (nv <= NVM vectors of L elements). Every read
 * lies in rows[i + kh][c .. c + nv*L + KW - 2]; the sums stay in registers over all taps.
 * STRIP: the same over nvec vectors, NVM at a time. */
#define FC_F2_BLOCK(NAME, STRIP, VBYTES, RB, NVM)                                                   \
    FC_INLINE void NAME(const T *const *rows, int64_t c, const T *restrict w, int64_t KH,     \
                        int64_t KW, T *const *ys, int64_t yc, int rb, const int nv)           \
    {                                                                                          \
        typedef T vt __attribute__((vector_size(VBYTES), aligned(sizeof(T)), may_alias));     \
        enum { L = VBYTES / sizeof(T) };                                                       \
        vt acc[RB][NVM];                                                                       \
        _Pragma("GCC unroll 8") for (int i = 0; i < RB; i++)                                   \
            _Pragma("GCC unroll 8") for (int q = 0; q < nv; q++) acc[i][q] = (vt){0};          \
        for (int64_t r = 0; r < rb + KH - 1; r++) {                                            \
            const T *xr = rows[r] + c;                                                         \
            if (rb == RB && r >= RB - 1 && r < KH) { /* every row of the block reads row r */  \
                const T *wr = w + r * KW;                                                      \
                for (int64_t kw = 0; kw < KW; kw++) {                                          \
                    vt xv[NVM];                                                                \
                    _Pragma("GCC unroll 8") for (int q = 0; q < nv; q++) xv[q] =               \
                        *(const vt *)(xr + kw + q * L);                                        \
                    _Pragma("GCC unroll 8") for (int i = 0; i < RB; i++)                       \
                    {                                                                          \
                        const vt wv = (vt){0} + wr[kw - i * KW];                               \
                        _Pragma("GCC unroll 8") for (int q = 0; q < nv; q++) acc[i][q] +=      \
                            wv * xv[q];                                                        \
                    }                                                                          \
                }                                                                              \
                continue;                                                                      \
            }                                                                                  \
            for (int64_t kw = 0; kw < KW; kw++) {                                              \
                vt xv[NVM];                                                                    \
                _Pragma("GCC unroll 8") for (int q = 0; q < nv; q++) xv[q] =                   \
                    *(const vt *)(xr + kw + q * L);                                            \
                _Pragma("GCC unroll 8") for (int i = 0; i < RB; i++)                           \
                {                                                                              \
                    const int64_t kh = r - i;                                                  \
                    if (i < rb && kh >= 0 && kh < KH) {                                        \
                        const vt wv = (vt){0} + w[kh * KW + kw];                               \
                        _Pragma("GCC unroll 8") for (int q = 0; q < nv; q++) acc[i][q] +=      \
                            wv * xv[q];                                                        \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        _Pragma("GCC unroll 8") for (int i = 0; i < RB; i++) if (i < rb)                       \
            _Pragma("GCC unroll 8") for (int q = 0; q < nv; q++)                               \
                *(vt *)(ys[i] + yc + q * L) = acc[i][q];                                       \
    }                                                                                          \
    FC_INLINE void STRIP(const T *const *rows, int64_t c, const T *restrict w,         \
                                int64_t KH, int64_t KW, T *const *ys, int64_t yc, int rb,      \
                                int64_t nvec)                                                  \
    {                                                                                          \
        enum { L = VBYTES / sizeof(T) };                                                       \
        int64_t q = 0;                                                                         \
        for (; q + NVM <= nvec; q += NVM)                                                      \
            NAME(rows, c + q * L, w, KH, KW, ys, yc + q * L, rb, NVM);                         \
        switch (nvec - q) {                                                                    \
        case 1: NAME(rows, c + q * L, w, KH, KW, ys, yc + q * L, rb, 1); break;                \
        case 2: NAME(rows, c + q * L, w, KH, KW, ys, yc + q * L, rb, 2); break;                \
        case 3: NAME(rows, c + q * L, w, KH, KW, ys, yc + q * L, rb, 3); break;                \
        default: break;                                                                        \
        }                                                                                      \
    }

/* DENSE: the dense correlation's row blocks [b0, b1) (block b: plane b / nrb, rows
 * (b % nrb) * RB ..), buf the per-thread buffer (row pointers, edge strips, their sums). */
#define FC_F2_DENSE(NAME, STRIP, VBYTES, RB)                                                  \
    FC_INLINE void NAME(const FN(fc_f2_args) *a, int64_t b0, int64_t b1, T *buf)              \
    {                                                                                          \
        enum { L = VBYTES / sizeof(T) };                                                       \
        const fc_filter_shape *s = a->s;                                                       \
        const int64_t KH = s->KH, KW = s->KW, OH = s->OH, OW = s->OW, W = s->W;               \
        const int64_t nrb = ceil_div(OH, RB), jl = a->jl, jr = a->jr, ew = a->ew;             \
        const int64_t nr = RB + KH - 1, eo = a->ev * FC_F2_LMAX;                               \
        const T **rows = (const T **)(void *)buf;                                              \
        T *ebuf = buf + round_up(2 * nr * (int64_t)sizeof(T *), sizeof(T)) / (int64_t)sizeof(T); \
        T *eout = ebuf + nr * ew;                                                              \
        const T **er = rows + nr; /* the edge strips' row pointers */                          \
        for (int64_t b = b0; b < b1; b++) {                                                    \
            const int64_t n = b / nrb, i0 = (b % nrb) * RB;                                    \
            const int rb = (int)min64(RB, OH - i0);                                            \
            T *ys[RB], *es[RB];                                                                \
            for (int i = 0; i < RB; i++) {                                                     \
                ys[i] = a->y + n * s->yn + (i0 + (i < rb ? i : 0)) * s->yh;                    \
                es[i] = eout + i * eo;                                                         \
            }                                                                                  \
            FN(f2_row_ptrs)(a, n, i0 - s->bh, rb + KH - 1, rows);                              \
            if (jr > jl)                                                                       \
                STRIP(rows, jl - s->bw, a->w, KH, KW, ys, jl, rb, (jr - jl) / L);      \
            for (int side = 0; side < 2; side++) { /* the edge strips [0, jl), [jr, OW) */     \
                const int64_t j0 = side ? jr : 0, j1 = side ? OW : jl;                        \
                if (j1 <= j0)                                                                  \
                    continue;                                                                  \
                const int64_t nvec = ceil_div(j1 - j0, L), width = nvec * L + KW - 1;         \
                for (int64_t r = 0; r < rb + KH - 1; r++) {                                    \
                    T *e = ebuf + r * ew;                                                      \
                    FN(f2_ext_row)(e, rows[r] == a->crow ? NULL : rows[r], W, j0 - s->bw,     \
                                   width, s->mcol, a->cval);                                   \
                    er[r] = e;                                                                 \
                }                                                                              \
                STRIP(er, 0, a->w, KH, KW, es, 0, rb, nvec);                           \
                for (int i = 0; i < rb; i++)                                                   \
                    memcpy(ys[i] + j0, es[i], (size_t)(j1 - j0) * sizeof(T));                  \
            }                                                                                  \
        }                                                                                      \
    }

/* SEP: the separable correlation's row blocks [b0, b1): the column pass (BLOCK with
 * KW = 1) into RB buffer rows, their extension, then the row pass into the output. */
#define FC_F2_SEP(NAME, STRIP, VBYTES, RB, NH)                                                \
    FC_INLINE void NAME(const FN(fc_f2_args) *a, int64_t b0, int64_t b1, T *buf)              \
    {                                                                                          \
        typedef T vt __attribute__((vector_size(VBYTES), aligned(sizeof(T)), may_alias));     \
        enum { L = VBYTES / sizeof(T) };                                                       \
        const fc_filter_shape *s = a->s;                                                       \
        const int64_t KH = s->KH, KW = s->KW, OH = s->OH, OW = s->OW, W = s->W;               \
        const int64_t nrb = ceil_div(OH, RB), vw = a->vw, lp = a->lp, nr = RB + KH - 1;       \
        const int64_t q0 = lp - s->bw, wv = W / L * L, half = KW / 2;                         \
        const T *u = a->u, *v = a->v;                                                          \
        const T **rows = (const T **)(void *)buf;                                              \
        T *vb = buf + round_up(nr * (int64_t)sizeof(T *), 64) / (int64_t)sizeof(T);           \
        for (int64_t b = b0; b < b1; b++) {                                                    \
            const int64_t n = b / nrb, i0 = (b % nrb) * RB;                                    \
            const int rb = (int)min64(RB, OH - i0);                                            \
            T *vs[RB];                                                                         \
            for (int i = 0; i < RB; i++)                                                       \
                vs[i] = vb + i * vw + lp;                                                      \
            FN(f2_row_ptrs)(a, n, i0 - s->bh, rb + KH - 1, rows);                              \
            STRIP(rows, 0, u, KH, 1, vs, 0, rb, wv / L);                               \
            for (int i = 0; i < rb; i++) {                                                     \
                T *vr = vs[i];                                                                 \
                for (int64_t j = wv; j < W; j++) { /* the tail columns */                      \
                    T acc = 0;                                                                 \
                    for (int64_t k = 0; k < KH; k++)                                           \
                        acc += u[k] * rows[i + k][j];                                          \
                    vr[j] = acc;                                                               \
                }                                                                              \
                for (int64_t q = -lp; q < 0; q++) { /* the extension, left */                  \
                    const int64_t src = fc_border_index(q, W, s->mcol);                        \
                    vr[q] = src < 0 ? a->ccol : vr[src];                                       \
                }                                                                              \
                for (int64_t q = W; q < vw - lp; q++) { /* and right */                        \
                    const int64_t src = fc_border_index(q, W, s->mcol);                        \
                    vr[q] = src < 0 ? a->ccol : vr[src];                                       \
                }                                                                              \
                const T *xr = vr - lp + q0;                                                    \
                T *yr = a->y + n * s->yn + (i0 + i) * s->yh;                                   \
                /* a first block of ja < L outputs, so that the others store aligned */       \
                const int64_t ja =                                                             \
                    min64(OW, (int64_t)((-(uintptr_t)yr) & (VBYTES - 1)) / (int64_t)sizeof(T)); \
                for (int64_t j = 0, cnt; j < OW; j += cnt) {                                   \
                    vt acc[NH];                                                                \
                    cnt = j == 0 && ja ? ja : min64(OW - j, NH * L);                           \
                    const int nh = (int)ceil_div(cnt, L);                                      \
                    _Pragma("GCC unroll 8") for (int h = 0; h < NH; h++) acc[h] = (vt){0};     \
                    if (a->sym) {                                                              \
                        for (int64_t k = 0; k < half; k++) {                                   \
                            const vt vk = (vt){0} + v[k];                                      \
                            _Pragma("GCC unroll 8") for (int h = 0; h < NH; h++) if (h < nh)   \
                                acc[h] += vk * (*(const vt *)(xr + j + h * L + k) +            \
                                                *(const vt *)(xr + j + h * L + KW - 1 - k));   \
                        }                                                                      \
                        if (KW & 1) {                                                          \
                            const vt vk = (vt){0} + v[half];                                   \
                            _Pragma("GCC unroll 8") for (int h = 0; h < NH; h++) if (h < nh)   \
                                acc[h] += vk * *(const vt *)(xr + j + h * L + half);           \
                        }                                                                      \
                    } else {                                                                   \
                        for (int64_t k = 0; k < KW; k++) {                                     \
                            const vt vk = (vt){0} + v[k];                                      \
                            _Pragma("GCC unroll 8") for (int h = 0; h < NH; h++) if (h < nh)   \
                                acc[h] += vk * *(const vt *)(xr + j + h * L + k);              \
                        }                                                                      \
                    }                                                                          \
                    _Pragma("GCC unroll 8") for (int h = 0; h < NH; h++) {                     \
                        if ((h + 1) * L <= cnt)                                                \
                            *(vt *)(yr + j + h * L) = acc[h];                                  \
                        else if (h < nh) { /* a partial vector: the first or the last */       \
                            T tmp[L];                                                          \
                            memcpy(tmp, &acc[h], sizeof(tmp));                                 \
                            memcpy(yr + j + h * L, tmp, (size_t)(cnt - h * L) * sizeof(T));    \
                        }                                                                      \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

FC_F2_BLOCK(FN(f2_block128), FN(f2_strip128), 16, FC_F2_RB128, FC_F2_NV128)
FC_F2_DENSE(FN(f2_dense128), FN(f2_strip128), 16, FC_F2_RB128)
FC_F2_SEP(FN(f2_sep128), FN(f2_strip128), 16, FC_F2_RB128, FC_F2_NH128)

#if defined(__x86_64__)
FC_F2_BLOCK(FN(f2_block256), FN(f2_strip256), 32, FC_F2_RB256, FC_F2_NV256)
FC_F2_DENSE(FN(f2_dense256), FN(f2_strip256), 32, FC_F2_RB256)
FC_F2_SEP(FN(f2_sep256), FN(f2_strip256), 32, FC_F2_RB256, FC_F2_NH256)
FC_F2_BLOCK(FN(f2_block512), FN(f2_strip512), 64, FC_F2_RB512, FC_F2_NV512)
FC_F2_DENSE(FN(f2_dense512), FN(f2_strip512), 64, FC_F2_RB512)
FC_F2_SEP(FN(f2_sep512), FN(f2_strip512), 64, FC_F2_RB512, FC_F2_NH512)

static void FN(f2_dense_base)(const FN(fc_f2_args) *a, int64_t b0, int64_t b1, T *buf)
{
    FN(f2_dense128)(a, b0, b1, buf);
}
FC_T256 static void FN(f2_dense_avx2)(const FN(fc_f2_args) *a, int64_t b0, int64_t b1, T *buf)
{
    FN(f2_dense256)(a, b0, b1, buf);
}
FC_T512 static void FN(f2_dense_avx512)(const FN(fc_f2_args) *a, int64_t b0, int64_t b1,
                                        T *buf)
{
    FN(f2_dense512)(a, b0, b1, buf);
}
static void FN(f2_sep_base)(const FN(fc_f2_args) *a, int64_t b0, int64_t b1, T *buf)
{
    FN(f2_sep128)(a, b0, b1, buf);
}
FC_T256 static void FN(f2_sep_avx2)(const FN(fc_f2_args) *a, int64_t b0, int64_t b1, T *buf)
{
    FN(f2_sep256)(a, b0, b1, buf);
}
FC_T512 static void FN(f2_sep_avx512)(const FN(fc_f2_args) *a, int64_t b0, int64_t b1, T *buf)
{
    FN(f2_sep512)(a, b0, b1, buf);
}
#endif

/* Rows per block and vector elements of the copy fc_dwpool_isa picks. */
static int FN(f2_rb)(int isa) { return isa == 2 ? FC_F2_RB512 : isa == 1 ? FC_F2_RB256 : FC_F2_RB128; }
static int64_t FN(f2_lanes)(int isa)
{
    return (isa == 2 ? 64 : isa == 1 ? 32 : 16) / (int64_t)sizeof(T);
}

/* The per-thread buffer; 0 when the slot has none and it cannot be made. */
static T *FN(f2_buf)(FN(fc_f2_args) *a, int slot)
{
    if (!a->bufs[slot]) { /* 64-byte aligned, zeroed (the slack read past a row is finite) */
        const size_t bytes = (size_t)round_up(a->scratch * (int64_t)sizeof(T), 64);
        a->bufs[slot] = aligned_alloc(64, bytes);
        if (a->bufs[slot])
            memset(a->bufs[slot], 0, bytes);
        else
            a->failed = 1; /* y stays incomplete; the caller reports it */
    }
    return a->bufs[slot];
}

/* The pool's loop body of one kernel family (dense or sep): this slot's buffer, then the copy
 * compiled for the instruction set the call picked. */
#if defined(__x86_64__)
#define FC_F2_ITEMS(FAM)                                                                     \
    static void FN(f2_##FAM##_items)(void *ctx, int64_t b0, int64_t b1, int slot)            \
    {                                                                                        \
        FN(fc_f2_args) *a = ctx;                                                             \
        T *buf = FN(f2_buf)(a, slot);                                                        \
        if (!buf)                                                                            \
            return;                                                                          \
        switch (a->isa) {                                                                    \
        case 2: FN(f2_##FAM##_avx512)(a, b0, b1, buf); break;                                \
        case 1: FN(f2_##FAM##_avx2)(a, b0, b1, buf); break;                                  \
        default: FN(f2_##FAM##_base)(a, b0, b1, buf);                                        \
        }                                                                                    \
    }
#else
#define FC_F2_ITEMS(FAM)                                                                     \
    static void FN(f2_##FAM##_items)(void *ctx, int64_t b0, int64_t b1, int slot)            \
    {                                                                                        \
        FN(fc_f2_args) *a = ctx;                                                             \
        T *buf = FN(f2_buf)(a, slot);                                                        \
        if (buf)                                                                             \
            FN(f2_##FAM##128)(a, b0, b1, buf);                                               \
    }
#endif
FC_F2_ITEMS(dense)
FC_F2_ITEMS(sep)
#undef FC_F2_ITEMS

/* The shape's preconditions (fastconv.h): sizes >= 1, strides large enough that rows and
 * planes do not overlap. */
static void FN(f2_check)(const fc_filter_shape *s)
{
    FC_ASSERT(s->N >= 1 && s->H >= 1 && s->W >= 1 && s->OH >= 1 && s->OW >= 1);
    FC_ASSERT(s->KH >= 1 && s->KW >= 1);
    FC_ASSERT(s->xh >= s->W && s->yh >= s->OW);
    FC_ASSERT(s->N == 1 || (s->xn >= s->H * s->xh && s->yn >= s->OH * s->yh));
    FC_ASSERT(s->mrow >= FC_BORDER_CONSTANT && s->mrow <= FC_BORDER_WRAP);
    FC_ASSERT(s->mcol >= FC_BORDER_CONSTANT && s->mcol <= FC_BORDER_WRAP);
    (void)s;
}

/* Run the items (row blocks) on the pool; frees the buffers and the constant row. */
static int FN(f2_run)(FN(fc_f2_args) *a, fc_range_fn fn, int64_t items, int64_t taps)
{
    const fc_filter_shape *s = a->s;
    const int64_t px = s->N * s->OH * s->OW;
    const int64_t cost = fc_cost_mem((s->N * s->H * s->W + px) * (int64_t)sizeof(T), px * taps);
    const int team = fc_team_for(cost, fc_threads());
    T *bufs[FC_POOL_SLOTS] = {0};
    a->bufs = bufs;
    fc_parallel_for(items, fc_chunk_for(items, cost, team), team, fn, a);
    for (int i = 0; i < FC_POOL_SLOTS; i++)
        free(bufs[i]);
    return a->failed ? -1 : 0;
}

/* A row of W + slack elements of the constant, or NULL when out of memory. */
static T *FN(f2_crow)(int64_t W, T cval)
{
    T *r = malloc((size_t)(W + FC_F2_LMAX) * sizeof(T));
    if (r)
        for (int64_t j = 0; j < W + FC_F2_LMAX; j++)
            r[j] = cval;
    return r;
}

/* x is (N, H, W) with strides (xn, xh, 1), w is (KH, KW) C-contiguous, y is (N, OH, OW) with
 * strides (yn, yh, 1): y[n, i, j] = sum w[kh, kw] * x_ext[n, i - bh + kh, j - bw + kw],
 * x_ext the input extended by the row and column modes (cval where they read the
 * constant). Returns 0, or -1 when out of memory (y is then incomplete). */
int FN(fc_filter2d)(const T *x, const T *w, T *y, const fc_filter_shape *s, double cval)
{
    FN(f2_check)(s);
    const int isa = fc_dwpool_isa(-1);
    const int64_t RB = FN(f2_rb)(isa), L = FN(f2_lanes)(isa);
    const int64_t KH = s->KH, KW = s->KW, OW = s->OW;
    /* interior columns: every tap j - bw + kw inside [0, W), whole vectors */
    const int64_t jl = min64(max64(s->bw, 0), OW);
    const int64_t jend = min64(OW, s->W - KW + 1 + s->bw);
    const int64_t jr = jend > jl ? jl + (jend - jl) / L * L : jl;
    const int64_t ev = max64(ceil_div(jl, L), ceil_div(OW - jr, L));
    const int64_t ew = ev * L + KW - 1, nr = FC_F2_RBMAX + KH - 1;
    /* row pointers (the input's and the edge strips'), the edge strips and their sums
     * (RBMAX rows of ev vectors of the widest lanes) */
    const int64_t ptrs = round_up(2 * nr * (int64_t)sizeof(T *), sizeof(T)) / (int64_t)sizeof(T);
    FN(fc_f2_args) a = {.x = x, .w = w, .y = y, .s = s, .cval = (T)cval, .jl = jl, .jr = jr,
                        .ev = ev, .ew = ew, .nrb = ceil_div(s->OH, RB), .isa = isa,
                        .scratch = ptrs + nr * ew + FC_F2_RBMAX * ev * FC_F2_LMAX,
                        .failed = 0};
    T *crow = FN(f2_crow)(s->W, (T)cval);
    if (!crow)
        return -1;
    a.crow = crow;
    const int r = FN(f2_run)(&a, FN(f2_dense_items), s->N * a.nrb, KH * KW);
    free(crow);
    return r;
}

/* x, y, s as fc_filter2d; the kernel is the outer product of u (KH) and v (KW):
 * y[n, i, j] = sum_kw v[kw] * sum_kh u[kh] * x_ext[n, i - bh + kh, j - bw + kw] (a constant
 * column of the column pass holds cval * sum(u), the 2-D filter's value). */
int FN(fc_sepfilter2d)(const T *x, const T *u, const T *v, T *y, const fc_filter_shape *s,
                       double cval)
{
    FN(f2_check)(s);
    const int isa = fc_dwpool_isa(-1);
    const int64_t RB = FN(f2_rb)(isa), KH = s->KH, KW = s->KW;
    T usum = 0;
    for (int64_t k = 0; k < KH; k++)
        usum += u[k];
    int sym = 1;
    for (int64_t k = 0; k < KW / 2; k++)
        sym &= v[k] == v[KW - 1 - k];
    /* buffer row: lp columns before input column 0, W, the columns read past W, slack */
    /* buffer rows start at 64-byte boundaries, and input column 0 is at one (lp) */
    const int64_t A = 64 / (int64_t)sizeof(T);
    const int64_t lp = round_up(max64(s->bw, 0), A);
    const int64_t rp = max64(s->OW + KW - 1 - s->bw - s->W, 0);
    const int64_t vw = round_up(lp + s->W + rp + FC_F2_LMAX, A), nr = FC_F2_RBMAX + KH - 1;
    const int64_t ptrs = round_up(nr * (int64_t)sizeof(T *), 64) / (int64_t)sizeof(T);
    FN(fc_f2_args) a = {.x = x, .u = u, .v = v, .y = y, .s = s, .cval = (T)cval,
                        .ccol = (T)cval * usum, .vw = vw, .lp = lp,
                        .nrb = ceil_div(s->OH, RB), .isa = isa, .sym = sym,
                        .scratch = ptrs + FC_F2_RBMAX * vw, .failed = 0};
    T *crow = FN(f2_crow)(s->W, (T)cval);
    if (!crow)
        return -1;
    a.crow = crow;
    const int r = FN(f2_run)(&a, FN(f2_sep_items), s->N * a.nrb, KH + KW);
    free(crow);
    return r;
}

#endif /* FC_TYPED */
