/* depthwise_conv2d.c: depthwise and depthwise-separable 2-D convolution, float32 / float64.
 *
 * Kernels (each as _f32 and _f64; shapes and rules in fastconv/backends/__init__.py):
 *   fc_depthwise_conv2d   direct per-channel loops, channel multiplier m = OC / C
 *   fc_separable_conv2d   depthwise then pointwise (1x1), fused per tile of output rows
 * Both take the depthwise stage's geometry as an fc_conv_shape with G = C (a depthwise conv
 * is the grouped conv2d with one input channel per group); separable adds the pointwise OC.
 *
 * fc_depthwise_conv2d: chunks of the N*OC output planes on fastconv's thread pool
 * (fc_parallel_for, parallel.c; one thread when the call is small); in a plane one output
 * row at a time, two ways (dw_rows), or all at once (flat):
 *   direct   reads x in place: border columns (a tap outside [0, W)) one by one with bounds
 *            checks, interior columns by branch-free loops along the output width that gcc
 *            vectorises. Used for wide strided rows (where the padded copy costs more than
 *            the two border columns) and for planes too big for the buffer.
 *   padded   first copies the input rows with their zero padding into a per-thread buffer,
 *            so every output goes through the vector loops; with stride 1 and narrow rows
 *            (7x7, 14x14 planes) the padded rows are processed as one long row, so the
 *            vectors stay full instead of running a scalar tail per short row.
 *   flat     (AVX-512, float32) stride 1 and OW == W ('same' width, e.g. 3x3 pad 1 on
 *            rows narrower than 16): the plane as one row of 16-output blocks read with
 *            masked loads, in chunks of 16 blocks, no padded copy and no per-row work (see
 *            fc_dws_make); with KW = 3, 5, 7 adjacent taps on planes of 16 blocks or more,
 *            a kernel row's taps from two loads and lane shifts (fc_dws_chunk_rows).
 *   lanes    (AVX-512, float32) the flat path's planes up to 56x56 with windows past 3x3
 *            and m = 1: 16 channels at a time, the channels in the vector lanes
 *            (fc_dwl_planes16); the flat path's sums, bit for bit.
 *   3x3      (AVX-512, float32) 3x3, stride 1, padding 1, rows of 16 and more (MobileNet's
 *            stride-1 layers from 28x28 up): two output rows at a time, each input vector
 *            loaded once per row pair (the one after a step's last vectors twice) and
 *            shifted a lane left and right in registers (fc_dw3x3_rows_f32_avx512); the
 *            flat path's sums, bit for bit. One thread,
 *            from L2: a 56x56 plane 0.65 -> 0.49 us, 112x112 2.6-2.8 -> 1.6 us; narrower
 *            rows stay flat (7x7: 34 against 45 us for 960 planes).
 *   3x3 AVX2 (float32, AVX2 without AVX-512; any row width): the same sums, 8 columns a
 *            vector, the neighbours loaded at -1 and +1 (fc_dw3x3_rows_f32_avx2), the same
 *            bits as the AVX-512 kernels. Against the padded path it replaced, 2 threads:
 *            MobileNetV2's 32 @112 0.234 -> 0.078 ms, batch 8 of 144 @56 1.94 -> 0.87.
 * In direct and padded, a 3x3 window (dilation 1) is one fused pass of 9 taps with the
 * accumulator in a register; other windows accumulate one input row (KW taps) at a time into
 * the output row. Stride 1 and 2 get their own copies so the loads have a constant stride.
 * Each plane function is compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked at run
 * time (FC_MULTIVERSION and fc_dwpool_isa, common.h / runtime.c); other CPUs get portable C.
 *
 * fc_separable_conv2d: the pool's threads over tiles (image n, a few output rows). A tile's
 * depthwise output for all CM = C*m channels goes to a per-thread buffer (CM x P pixels,
 * sized to stay in L2; 3x3 'same' rows by the 3x3 kernels above (fc_dw3x3_takes), an even
 * number of rows a tile), then a register-blocked 1x1 kernel (NO output channels x NV
 * vectors of pixels held in registers, one FMA per weight and vector; the tile's last pixels
 * one vector, partly stored) writes the tile of y. MobileNetV2's 144 @56 -> 24, one thread:
 * 0.70 -> 0.38 ms (the rows' padded copies and a scalar loop over 32 of each tile's 224
 * pixels were half of it).
 *
 * The file instantiates itself twice (float, double, see common.h): the typed part below
 * FC_TYPED is included once per type with T the element type and FN(name) adding the _f32 /
 * _f64 suffix.
 *
 * Build: `python csrc/build_ffi.py` (in place) or `pip install -e .`.
 * Test: `pytest tests/test_c_pool.py -k "depthwise or separable"`; time: `pytest
 * bench/bench_depthwise.py --benchmark-enable`.
 */
#ifndef FC_TYPED

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* -std=c11 turns floating-point contraction off; a*b + c may become one FMA here. */
#pragma GCC optimize("fp-contract=fast")

/* The window geometry of a depthwise shape. */
static inline fc_win dw_win(const fc_conv_shape *s)
{
    return fc_win_make(s->H, s->W, s->OH, s->OW, s->KH, s->KW, s->sh, s->sw, s->ph, s->pw,
                       s->dh, s->dw);
}

/* Padded copy of the input rows read by `rows` output rows: Wp columns, fc_dw_hp rows. */
static inline int64_t fc_dw_wp(const fc_win *g) { return (g->OW - 1) * g->sw + (g->KW - 1) * g->dw + 1; }
static inline int64_t fc_dw_hp(const fc_win *g, int64_t rows)
{
    return (rows - 1) * g->sh + (g->KH - 1) * g->dh + 1;
}

/* Largest padded-path buffer (bytes); bigger planes are computed in place. */
#define FC_DW_PAD_MAX (1 << 20)

/* Elements of the padded-path buffer for `rows` output rows (the padded rows, a tail the
 * flattened stride-1 loop may read, and its Wp-wide output lines), or 0 when too big. */
static int64_t fc_dw_buf_elems(const fc_win *g, int64_t rows, int64_t elem)
{
    const int64_t lim = FC_DW_PAD_MAX / elem, wp = fc_dw_wp(g), hp = fc_dw_hp(g, rows);
    if (wp > lim || hp > lim || (g->KW - 1) * g->dw > lim)
        return 0;
    const int64_t n = hp * wp + (g->KW - 1) * g->dw + rows * wp;
    return n <= lim ? n : 0;
}

/* Whether rows with a padded-path buffer go through it (stride 1, or narrow rows whose two
 * border columns cost less than the copy); else they are read in place (dw_rows_body). */
static inline int fc_dw_padded(const fc_win *g) { return g->sw == 1 || g->OW < 32; }

/* Pointwise tile sizes: output channels x vectors of pixels held in registers. */
#define FC_PW_NO512 6
#define FC_PW_NV512 4
#define FC_PW_NO256 4
#define FC_PW_NV256 3
#define FC_PW_NO128 4
#define FC_PW_NV128 2
#define FC_PW_SLACK 16 /* elements after the pointwise buffer: one vector of 64 bytes */

/* ------------------------------------------------------------------ flat planes, AVX-512 */

/* Stride-1 planes whose output is as wide as the input (OW == W: 'same' width, e.g. 3x3
 * pad 1) have one flat form: output q = oh*W + ow reads input q + (kh*dh - ph)*W +
 * (kw*dw - pw), the same shift for every q, and the taps outside [0, H) x [0, W) are
 * exactly the lanes a fixed mask per (tap, 16-output block) switches off. A masked-off lane
 * loads zero (and never faults), so the padding taps multiply zero as with a padded copy,
 * and no copy is made. A plane is computed in chunks of up to 16 blocks of 16 outputs,
 * whose accumulators stay in registers across the taps: per tap one broadcast weight and,
 * per block, one masked load and one FMA. The shifts and masks depend only on the
 * geometry: made once per call (a table of (taps + KW) x blocks masks, at most
 * FC_DWS_MAXMASK entries).
 * Against the padded path this drops the per-plane copy and the per-row tails: on
 * 56x56 planes 3x3 it is ~1.4x faster. */
#define FC_DWS_CHUNK 16          /* blocks of 16 outputs per chunk (accumulator registers) */
#define FC_DWS_MAXTAP 64         /* taps (KH*KW) */
#define FC_DWS_MAXMASK (1 << 20) /* entries of the mask table (2 MiB) */

typedef struct {
    int64_t nblk, taps, out;
    int64_t KH, in;             /* kernel rows; input values (H*W) */
    int64_t rows;               /* KW where a kernel row goes by fc_dws_chunk_rows, else 0 */
    int64_t off[FC_DWS_MAXTAP]; /* input shift of tap t */
    uint16_t *mask;             /* tap t, block b at t * nblk + b (malloc'd; fc_dws_free) */
} fc_dws;

/* The bits [a, b) that fall in word k of a bit string (16 bits per word). */
static inline uint16_t fc_dws_bits(int64_t k, int64_t a, int64_t b)
{
    const int64_t w0 = k << 4, lo = a > w0 ? a - w0 : 0, hi = b < w0 + 16 ? b - w0 : 16;
    return hi > lo ? (uint16_t)(((1u << (hi - lo)) - 1u) << lo) : 0;
}

/* m &= ~bits [a, b): one operation per word. */
static void fc_dws_clear_bits(uint16_t *m, int64_t a, int64_t b)
{
    for (int64_t k = a >> 4; a < b && k <= (b - 1) >> 4; k++)
        m[k] &= (uint16_t)~fc_dws_bits(k, a, b);
}

/* Fill s for the geometry g; returns 0 when the flat form does not apply (or there is no
 * memory for its masks). Tap (kh, kw) is valid for the outputs of rows [r0, r1) (from
 * kh) and columns [c0, c1) (from kw). The column part is built once per kw (all ones, then
 * each row's invalid columns cleared), and each tap's mask is a copy of it over the words
 * of its row range, its two end words trimmed: about (KW * OH + taps) word operations and
 * taps copies of at most nblk words. */
static int fc_dws_make(fc_dws *s, const fc_win *g)
{
    const int64_t out = g->OH * g->OW, taps = g->KH * g->KW, nblk = ceil_div(out, 16);
    s->mask = NULL;
    if (g->sh != 1 || g->sw != 1 || g->OW != g->W || taps > FC_DWS_MAXTAP ||
        nblk > FC_DWS_MAXMASK / (taps + g->KW))
        return 0;
    /* taps masks, then KW column masks */
    s->mask = calloc((size_t)((taps + g->KW) * nblk), sizeof(uint16_t));
    if (!s->mask)
        return 0;
    s->nblk = nblk;
    s->taps = taps;
    s->out = out;
    s->KH = g->KH;
    s->in = g->H * g->W;
    /* by kernel rows on planes of a whole chunk or more: on 7x7 and 14x14 planes most of
     * the pairs of loads leave the plane (masked, from per-block bounds), and by taps was
     * faster (5x5 1152 @7 0.093 against 0.116 ms, 3x3 960 @7 0.039 against 0.053) */
    s->rows = g->dw == 1 && (g->KW == 3 || g->KW == 5 || g->KW == 7) && nblk >= FC_DWS_CHUNK
                  ? g->KW : 0;
    const int64_t OW = g->OW;
    uint16_t *cols = s->mask + taps * nblk;
    for (int64_t kw = 0; kw < g->KW; kw++) { /* valid: 0 <= ow + dx < W */
        uint16_t *cm = cols + kw * nblk;
        const int64_t dx = kw * g->dw - g->pw;
        int64_t c0 = dx < 0 ? -dx : 0, c1 = g->W - dx;
        c0 = c0 < OW ? c0 : OW;
        c1 = c1 < OW ? (c1 > c0 ? c1 : c0) : OW;
        memset(cm, 0xFF, (size_t)(out >> 4) * sizeof(uint16_t));
        if (out & 15)
            cm[out >> 4] = (uint16_t)((1u << (out & 15)) - 1u);
        for (int64_t oh = 0; oh < g->OH; oh++) {
            fc_dws_clear_bits(cm, oh * OW, oh * OW + c0);
            fc_dws_clear_bits(cm, oh * OW + c1, oh * OW + OW);
        }
    }
    for (int64_t kh = 0; kh < g->KH; kh++) { /* valid: 0 <= oh + dy < H */
        const int64_t dy = kh * g->dh - g->ph;
        const int64_t r0 = dy < 0 ? -dy : 0, r1 = g->H - dy < g->OH ? g->H - dy : g->OH;
        const int64_t a = r0 * OW, b = r1 * OW, ka = a >> 4, kb = (b - 1) >> 4;
        for (int64_t kw = 0; kw < g->KW; kw++) {
            const int64_t t = kh * g->KW + kw;
            uint16_t *mt = s->mask + t * nblk;
            s->off[t] = dy * g->W + kw * g->dw - g->pw;
            if (a >= b)
                continue; /* the tap never meets the input: its masks stay 0 */
            memcpy(mt + ka, cols + kw * nblk + ka, (size_t)(kb - ka + 1) * sizeof(uint16_t));
            mt[ka] &= fc_dws_bits(ka, a, b);
            mt[kb] &= fc_dws_bits(kb, a, b);
        }
    }
    return 1;
}

static void fc_dws_free(fc_dws *s)
{
    free(s->mask);
    s->mask = NULL;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* A chunk's NB accumulators into blocks b0.. of the plane's s->out outputs (the last block
 * partial). */
FC_T512 FC_INLINE void fc_dws_store(float *y, const fc_dws *s, int64_t b0, const __m512 *acc,
                                    const int NB)
{
#pragma GCC unroll 16
    for (int b = 0; b < NB; b++) {
        const int64_t left = s->out - 16 * (b0 + b);
        const __mmask16 st = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        _mm512_mask_storeu_ps(y + 16 * (b0 + b), st, acc[b]);
    }
}

/* Blocks b0 <= b < b0 + NB of one plane: x is (H, W) (one input channel), w is (KH, KW),
 * y is (OH, OW) = (OH, W). */
FC_T512 FC_INLINE void fc_dws_chunk(const float *x, const float *w, float bias, float *y,
                                    const fc_dws *s, int64_t b0, const int NB)
{
    FC_ASSERT(1 <= NB && NB <= FC_DWS_CHUNK && 0 <= b0 && b0 + NB <= s->nblk);
    __m512 acc[FC_DWS_CHUNK];
#pragma GCC unroll 16
    for (int b = 0; b < NB; b++)
        acc[b] = _mm512_set1_ps(bias);
    for (int64_t t = 0; t < s->taps; t++) {
        const float *xt = x + s->off[t] + 16 * b0;
        const uint16_t *mt = s->mask + t * s->nblk + b0;
        const __m512 wv = _mm512_set1_ps(w[t]);
#pragma GCC unroll 16
        for (int b = 0; b < NB; b++)
            acc[b] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mt[b], xt + 16 * b), wv, acc[b]);
    }
    fc_dws_store(y, s, b0, acc, NB);
}

/* fc_dws_chunk where a kernel row's KW taps are adjacent (dw = 1; KW = 3, 5, 7, a constant
 * per copy): per kernel row and block, two loads of 16 inputs (masked only where they would
 * leave the plane) and per tap a lane shift of the pair (valignd) that the tap's mask zeroes
 * where the tap reads padding, then the FMA: 2 loads for KW taps where fc_dws_chunk made KW
 * masked loads, most of them across two cache lines (5x5 and 7x7 planes ran at a third of
 * the FMA peak; ConvNeXt's 7x7 192 @28 0.37 ms where torch took 0.25). The same operands in
 * the same order: the same sums, bit for bit. */
FC_T512 FC_INLINE void fc_dws_chunk_rows(const float *x, const float *w, float bias, float *y,
                                         const fc_dws *s, int64_t b0, const int NB,
                                         const int KW)
{
    FC_ASSERT(1 <= NB && NB <= FC_DWS_CHUNK && 0 <= b0 && b0 + NB <= s->nblk && KW <= 7);
    __m512 acc[FC_DWS_CHUNK], wv[7];
#pragma GCC unroll 16
    for (int b = 0; b < NB; b++)
        acc[b] = _mm512_set1_ps(bias);
    for (int64_t kh = 0; kh < s->KH; kh++) {
        const int64_t t0 = kh * KW, o = s->off[t0] + 16 * b0; /* tap (kh, 0), block b0 */
        const uint16_t *mt = s->mask + t0 * s->nblk + b0;
#pragma GCC unroll 7
        for (int kw = 0; kw < KW; kw++)
            wv[kw] = _mm512_set1_ps(w[t0 + kw]);
#pragma GCC unroll 16
        for (int b = 0; b < NB; b++) {
            const int64_t p = o + 16 * b; /* the plane position of v0's lane 0 */
            const float *xb = x + p;
            __m512i v0, v1;
            if (p >= 0 && p + 32 <= s->in) {
                v0 = _mm512_loadu_si512(xb);
                v1 = _mm512_loadu_si512(xb + 16);
            } else {
                v0 = _mm512_maskz_loadu_epi32((__mmask16)fc_lanes16(-p, s->in - p), xb);
                v1 = _mm512_maskz_loadu_epi32((__mmask16)fc_lanes16(-p - 16, s->in - p - 16),
                                              xb + 16);
            }
#pragma GCC unroll 7
            for (int kw = 0; kw < KW; kw++) {
                const __m512i v = _mm512_maskz_alignr_epi32(mt[kw * s->nblk + b], v1, v0, kw);
                acc[b] = _mm512_fmadd_ps(_mm512_castsi512_ps(v), wv[kw], acc[b]);
            }
        }
    }
    fc_dws_store(y, s, b0, acc, NB);
}

/* 3x3, stride 1, dilation 1, padding 1 (OH = H, OW = W): two output rows at a time from
 * four input rows, 16 columns per vector. Each input vector is loaded once per row pair,
 * and its neighbours one column left and right come from two lane shifts (valignd) of it
 * and the vectors beside it, zero past either end of the row, as are rows above and below
 * the image: per 16 outputs of a row pair 4 loads, 8 shifts and 18 FMAs, where the flat
 * path (fc_dws_chunk) loads each of the 9 taps and its mask for every output vector. The
 * taps are summed in the flat path's order (kh, then kw, from the bias) with the same zeros
 * on the padding, so the same bits. The loads past a row's last vector have a zero mask:
 * they read nothing (AVX-512 masked loads do not fault on masked-off lanes), although their
 * address may lie past the end of x. */

/* The narrowest rows that take this kernel: on 7x7 planes the flat path is faster (960
 * planes: 34 against 45 us), on 14x14 they are even. */
#define DW3X3_MIN_W 16

/* Vectors a step of the AVX2 3x3 kernel (below): 2 rows x 2 accumulators beside the 9
 * weights in the 16 vector registers. Batch 8 of 144 @56, one thread: 2 vectors 1.08-1.12 ms,
 * 3 (all 16 registers) 1.18, 4 (weights spilled) 1.35-1.38. */
#define DW3A_NJ 2

/* The mask of vector j of a row of nv vectors whose last one holds `last`'s lanes (0 past
 * the row: such lanes load zero and are not stored). */
FC_T512 FC_INLINE __mmask16 fc_dw3_mask(int64_t j, int64_t nv, __mmask16 last)
{
    return j + 1 < nv ? (__mmask16)0xFFFF : j + 1 == nv ? last : (__mmask16)0;
}

/* Vectors j .. j + NJ - 1 of output rows yr and yr + W (NR = 1 or 2 rows) from input rows
 * row[0 .. NR + 1] (NULL: outside the image); prev[r]: vector j - 1 of input row r (updated
 * to vector j + NJ - 1). One vector's 9 FMAs form a chain of 9 latencies: NR x NJ = 8
 * accumulators side by side keep both FMA units busy (one vector at a time ran at the
 * chain's latency: a 56 x 56 plane in 0.6 us from L2, no faster than the flat path). Input
 * row r feeds output row 0 as its tap row kh = r and row 1 as kh = r - 1, rows in order, so
 * each accumulator still sums kh = 0, 1, 2. */
FC_T512 FC_INLINE void fc_dw3_step(const float *const *row, __m512 *prev, const __m512 *wv,
                                   float bias, float *yr, int64_t W, int64_t j, int64_t nv,
                                   __mmask16 last, const int NR, const int NJ)
{
    const __m512 zero = _mm512_setzero_ps();
    __m512 acc[2][4];
#pragma GCC unroll 2
    for (int o = 0; o < NR; o++)
#pragma GCC unroll 4
        for (int i = 0; i < NJ; i++)
            acc[o][i] = _mm512_set1_ps(bias);
#pragma GCC unroll 4
    for (int r = 0; r < NR + 2; r++) {
        __m512 v[6]; /* vectors j - 1 .. j + NJ of input row r */
        v[0] = prev[r];
#pragma GCC unroll 5
        for (int i = 0; i <= NJ; i++)
            v[i + 1] = row[r] ? _mm512_maskz_loadu_ps(fc_dw3_mask(j + i, nv, last),
                                                      row[r] + 16 * (j + i))
                              : zero;
#pragma GCC unroll 4
        for (int i = 0; i < NJ; i++) {
            const __m512 left = _mm512_castsi512_ps(_mm512_alignr_epi32(
                _mm512_castps_si512(v[i + 1]), _mm512_castps_si512(v[i]), 15));
            const __m512 right = _mm512_castsi512_ps(_mm512_alignr_epi32(
                _mm512_castps_si512(v[i + 2]), _mm512_castps_si512(v[i + 1]), 1));
#pragma GCC unroll 2
            for (int o = 0; o < NR; o++) {
                const int kh = r - o;
                if (kh < 0 || kh > 2)
                    continue;
                acc[o][i] = _mm512_fmadd_ps(left, wv[3 * kh], acc[o][i]);
                acc[o][i] = _mm512_fmadd_ps(v[i + 1], wv[3 * kh + 1], acc[o][i]);
                acc[o][i] = _mm512_fmadd_ps(right, wv[3 * kh + 2], acc[o][i]);
            }
        }
        prev[r] = v[NJ];
    }
#pragma GCC unroll 2
    for (int o = 0; o < NR; o++)
#pragma GCC unroll 4
        for (int i = 0; i < NJ; i++)
            _mm512_mask_storeu_ps(yr + o * W + 16 * (j + i), fc_dw3_mask(j + i, nv, last),
                                  acc[o][i]);
}

/* Output rows oh .. oh + NR - 1 (NR = 1 or 2) of a plane, 4, then 2, then 1 vectors at a
 * time; yr is output row oh. */
FC_T512 FC_INLINE void fc_dw3_rows(const float *x, const __m512 *wv, float bias, float *yr,
                                   int64_t H, int64_t W, int64_t oh, const int NR)
{
    const int64_t nv = ceil_div(W, 16);
    const __mmask16 last = (W & 15) ? (__mmask16)((1u << (W & 15)) - 1u) : (__mmask16)0xFFFF;
    const float *row[4];
    __m512 prev[4];
#pragma GCC unroll 4
    for (int r = 0; r < NR + 2; r++) {
        const int64_t ih = oh + r - 1;
        row[r] = ih >= 0 && ih < H ? x + ih * W : NULL;
        prev[r] = _mm512_setzero_ps();
    }
    int64_t j = 0;
    for (; j + 4 <= nv; j += 4)
        fc_dw3_step(row, prev, wv, bias, yr, W, j, nv, last, NR, 4);
    if (j + 2 <= nv) {
        fc_dw3_step(row, prev, wv, bias, yr, W, j, nv, last, NR, 2);
        j += 2;
    }
    if (j < nv)
        fc_dw3_step(row, prev, wv, bias, yr, W, j, nv, last, NR, 1);
}

/* Output rows oh0 .. oh1 - 1 of a plane into y (row oh0 first, rows of W). */
FC_T512 static void fc_dw3x3_rows_f32_avx512(const float *x, const float *w, float bias,
                                             float *y, int64_t H, int64_t W, int64_t oh0,
                                             int64_t oh1)
{
    __m512 wv[9];
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++)
        wv[t] = _mm512_set1_ps(w[t]);
    int64_t oh = oh0;
    for (; oh + 2 <= oh1; oh += 2)
        fc_dw3_rows(x, wv, bias, y + (oh - oh0) * W, H, W, oh, 2);
    if (oh < oh1)
        fc_dw3_rows(x, wv, bias, y + (oh - oh0) * W, H, W, oh, 1);
}


/* The same 3x3 kernel on AVX2 (8 columns a vector): the AVX-512 kernel's sums, lane for lane
 * (the bias, then kh = 0, 1, 2 and kw = 0, 1, 2, one FMA each, zeros on the padding), so the
 * same bits on either instruction set. AVX2 has no shift across the two halves of a vector,
 * so the neighbours one column left and right are loads at -1 and +1 (2-3 loads a cycle on
 * current cores, against two FMAs): per 8 outputs of a row pair 12 loads and 18 FMAs. A load
 * that would meet a column outside [0, W) (the first vector's left one, the last vector's
 * right one) is masked (vmaskmovps: masked-off lanes read zero and never fault). A row of at
 * least 8 ends with a vector that overlaps the one before it (columns W - 8 .. W - 1; the
 * outputs it recomputes get the same values), so every store is whole; a narrower row is one
 * partly stored vector. Only stride 1, padding 1, dilation 1 ('same' size). */

/* Lanes l with 0 <= c + l < W of the 8 columns from column c: the mask of a masked load. */
FC_T256 FC_INLINE __m256i fc_dw3a_mask(int64_t c, int64_t W)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i col = _mm256_add_epi32(lane, _mm256_set1_epi32((int)c));
    const __m256i ge0 = _mm256_cmpgt_epi32(col, _mm256_set1_epi32(-1));
    const __m256i ltw = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)W), col);
    return _mm256_and_si256(ge0, ltw);
}

/* Output columns c .. c + 7 of output rows yr and yr + W (NR = 1 or 2 rows), NJ vectors of
 * them 8 columns apart (c, c + 8, ...), from input rows row[0 .. NR + 1] (NULL: outside the
 * image). EDGE: the loads are masked to the row (NJ = 1 then). ST: lanes stored (8: all). */
FC_T256 FC_INLINE void fc_dw3a_step(const float *const *row, const __m256 *wv, float bias,
                                    float *yr, int64_t W, int64_t c, const int NR,
                                    const int NJ, const int EDGE, int st)
{
    const __m256 zero = _mm256_setzero_ps();
    __m256 acc[2][4];
    __m256i ml = _mm256_setzero_si256(), mm = ml, mr = ml;
    if (EDGE) {
        ml = fc_dw3a_mask(c - 1, W);
        mm = fc_dw3a_mask(c, W);
        mr = fc_dw3a_mask(c + 1, W);
    }
#pragma GCC unroll 2
    for (int o = 0; o < NR; o++)
#pragma GCC unroll 4
        for (int i = 0; i < NJ; i++)
            acc[o][i] = _mm256_set1_ps(bias);
#pragma GCC unroll 4
    for (int r = 0; r < NR + 2; r++) {
#pragma GCC unroll 3
        for (int d = 0; d < 3; d++) { /* kw = d: the column c - 1 + d */
#pragma GCC unroll 4
            for (int i = 0; i < NJ; i++) {
                const float *p = row[r] ? row[r] + c + 8 * i + d - 1 : NULL;
                __m256 v = zero;
                if (p)
                    v = EDGE ? _mm256_maskload_ps(p, d == 0 ? ml : d == 1 ? mm : mr)
                             : _mm256_loadu_ps(p);
#pragma GCC unroll 2
                for (int o = 0; o < NR; o++) {
                    const int kh = r - o;
                    if (kh >= 0 && kh <= 2)
                        acc[o][i] = _mm256_fmadd_ps(v, wv[3 * kh + d], acc[o][i]);
                }
            }
        }
    }
#pragma GCC unroll 2
    for (int o = 0; o < NR; o++)
#pragma GCC unroll 4
        for (int i = 0; i < NJ; i++) {
            float *q = yr + o * W + c + 8 * i;
            if (st == 8) {
                _mm256_storeu_ps(q, acc[o][i]);
            } else {
                float t[8];
                _mm256_storeu_ps(t, acc[o][i]);
                memcpy(q, t, (size_t)st * sizeof(float));
            }
        }
}

/* Output rows oh .. oh + NR - 1 (NR = 1 or 2) of a plane; yr is output row oh. */
FC_T256 FC_INLINE void fc_dw3a_rows(const float *x, const __m256 *wv, float bias, float *yr,
                                    int64_t H, int64_t W, int64_t oh, const int NR)
{
    const float *row[4];
#pragma GCC unroll 4
    for (int r = 0; r < NR + 2; r++) {
        const int64_t ih = oh + r - 1;
        row[r] = ih >= 0 && ih < H ? x + ih * W : NULL;
    }
    if (W < 8) { /* one vector, partly stored */
        fc_dw3a_step(row, wv, bias, yr, W, 0, NR, 1, 1, (int)W);
        return;
    }
    /* the first vector (its left column is padding), the inner ones (columns 1 .. W - 2 read
     * in place: c + 8 <= W - 1), the last (columns W - 8 .. W - 1) */
    fc_dw3a_step(row, wv, bias, yr, W, 0, NR, 1, 1, 8);
    int64_t c = 8;
    for (; c + 8 * DW3A_NJ + 1 <= W; c += 8 * DW3A_NJ)
        fc_dw3a_step(row, wv, bias, yr, W, c, NR, DW3A_NJ, 0, 8);
    for (; c + 9 <= W; c += 8)
        fc_dw3a_step(row, wv, bias, yr, W, c, NR, 1, 0, 8);
    if (c < W)
        fc_dw3a_step(row, wv, bias, yr, W, W - 8, NR, 1, 1, 8);
}

/* Output rows oh0 .. oh1 - 1 of a plane into y (row oh0 first, rows of W). */
FC_T256 static void fc_dw3x3_rows_f32_avx2(const float *x, const float *w, float bias,
                                           float *y, int64_t H, int64_t W, int64_t oh0,
                                           int64_t oh1)
{
    __m256 wv[9];
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++)
        wv[t] = _mm256_set1_ps(w[t]);
    int64_t oh = oh0;
    for (; oh + 2 <= oh1; oh += 2)
        fc_dw3a_rows(x, wv, bias, y + (oh - oh0) * W, H, W, oh, 2);
    if (oh < oh1)
        fc_dw3a_rows(x, wv, bias, y + (oh - oh0) * W, H, W, oh, 1);
}

/* The 3x3 kernel's case: 3x3, stride 1, dilation 1, padding 1, 'same' size, float32, rows
 * of at least DW3X3_MIN_W on AVX-512 (narrower ones take the flat path), of any width on
 * AVX2 (which has no flat path). */
static inline int fc_dw3x3_takes(const fc_conv_shape *s, int f64)
{
    const int isa = fc_dwpool_isa(-1);
    return !f64 && isa >= 1 && s->KH == 3 && s->KW == 3 && s->sh == 1 && s->sw == 1 &&
           s->dh == 1 && s->dw == 1 && s->ph == 1 && s->pw == 1 && s->OH == s->H &&
           s->OW == s->W && (isa == 1 || s->W >= DW3X3_MIN_W);
}

/* Rows oh0 .. oh1 - 1 of a plane by the 3x3 kernel of this CPU (fc_dw3x3_takes). */
static void fc_dw3x3_rows_f32(const float *x, const float *w, float bias, float *y, int64_t H,
                              int64_t W, int64_t oh0, int64_t oh1)
{
    if (fc_dwpool_isa(-1) == 2)
        fc_dw3x3_rows_f32_avx512(x, w, bias, y, H, W, oh0, oh1);
    else
        fc_dw3x3_rows_f32_avx2(x, w, bias, y, H, W, oh0, oh1);
}

/* A plane in chunks of FC_DWS_CHUNK blocks, then the last chunk: one copy per block count,
 * so that the accumulators stay in registers (CHUNK(x, w, bias, y, s, b0, nb) is
 * fc_dws_chunk or a kernel-row width of fc_dws_chunk_rows). */
#define FC_DWS_CASE(CHUNK, nb) case nb: CHUNK(x, w, bias, y, s, b0, nb); break;
#define FC_DWS_PLANE(NAME, CHUNK)                                                           \
    FC_T512 static void NAME(const float *x, const float *w, float bias, float *y,           \
                             const fc_dws *s)                                               \
    {                                                                                       \
        int64_t b0 = 0;                                                                     \
        for (; b0 + FC_DWS_CHUNK <= s->nblk; b0 += FC_DWS_CHUNK)                            \
            CHUNK(x, w, bias, y, s, b0, FC_DWS_CHUNK);                                      \
        switch (s->nblk - b0) {                                                             \
        FC_DWS_CASE(CHUNK, 1) FC_DWS_CASE(CHUNK, 2) FC_DWS_CASE(CHUNK, 3)                   \
        FC_DWS_CASE(CHUNK, 4) FC_DWS_CASE(CHUNK, 5) FC_DWS_CASE(CHUNK, 6)                   \
        FC_DWS_CASE(CHUNK, 7) FC_DWS_CASE(CHUNK, 8) FC_DWS_CASE(CHUNK, 9)                   \
        FC_DWS_CASE(CHUNK, 10) FC_DWS_CASE(CHUNK, 11) FC_DWS_CASE(CHUNK, 12)                \
        FC_DWS_CASE(CHUNK, 13) FC_DWS_CASE(CHUNK, 14) FC_DWS_CASE(CHUNK, 15)                \
        default: break;                                                                     \
        }                                                                                   \
    }
#define FC_DWS_ROWS3(x, w, bias, y, s, b0, nb) fc_dws_chunk_rows(x, w, bias, y, s, b0, nb, 3)
#define FC_DWS_ROWS5(x, w, bias, y, s, b0, nb) fc_dws_chunk_rows(x, w, bias, y, s, b0, nb, 5)
#define FC_DWS_ROWS7(x, w, bias, y, s, b0, nb) fc_dws_chunk_rows(x, w, bias, y, s, b0, nb, 7)
FC_DWS_PLANE(fc_dws_plane_taps, fc_dws_chunk)
FC_DWS_PLANE(fc_dws_plane_rows3, FC_DWS_ROWS3)
FC_DWS_PLANE(fc_dws_plane_rows5, FC_DWS_ROWS5)
FC_DWS_PLANE(fc_dws_plane_rows7, FC_DWS_ROWS7)
#undef FC_DWS_ROWS3
#undef FC_DWS_ROWS5
#undef FC_DWS_ROWS7
#undef FC_DWS_PLANE
#undef FC_DWS_CASE

/* One plane of the flat path: by kernel rows where fc_dws_make allowed it, else by taps. */
FC_T512 static void fc_dws_plane_f32_avx512(const float *x, const float *w, float bias,
                                            float *y, const fc_dws *s)
{
    switch (s->rows) {
    case 3: fc_dws_plane_rows3(x, w, bias, y, s); break;
    case 5: fc_dws_plane_rows5(x, w, bias, y, s); break;
    case 7: fc_dws_plane_rows7(x, w, bias, y, s); break;
    default: fc_dws_plane_taps(x, w, bias, y, s);
    }
}

/* ---- 16 channels in the lanes (AVX-512, float32, m = 1): flat planes, windows past 3x3
 *
 * The flat path loads each tap's vector of one plane with a mask, mostly across two cache
 * lines, and on small planes (14x14, 7x7) most of a vector is padding or another row (7x7
 * 384 @14: 0.154 ms, torch 0.145; by kernel rows, 7x7 192 @28: 0.287, torch 0.247). Here 16
 * channels' planes go into one padded buffer with the channels in the lanes,
 * P[row][column][16] (16x16 transposes in, zero padding around), the weights likewise
 * (Wt[tap][16]); the outputs of a row's column chunk (at most 16) stay in registers over
 * the taps, each tap one weight vector and one aligned load per output, no masks; then the
 * 16 planes back out by transposes. Each lane sums the bias and then the taps in the flat
 * path's order with the same operands (padding: zeros): the same bits as the flat path. */
#define FC_DWL_MAX_BYTES (512 * 1024) /* in L2 */

/* Elements of fc_dwl_planes16's workspace for the flat path's geometry s, or 0 where it
 * does not take s: m > 1, windows up to 3x3, a buffer past FC_DWL_MAX_BYTES (planes past
 * 56x56 with 7x7), fewer than 16 channels, or channels that leave a last group of fewer than
 * 16 under 64 (40 channels on two threads: one thread's 32 in the lanes, the other's 8 by
 * the flat path, 5x5 40 @56 0.072 -> 0.081 ms). */
static int64_t fc_dwl_elems(const fc_conv_shape *s)
{
    const int64_t taps = s->KH * s->KW, out = s->OH * s->OW;
    const int64_t Hp = s->OH + (s->KH - 1) * s->dh, Wp = s->OW + (s->KW - 1) * s->dw;
    if (s->OC != s->C || s->C < 16 || (s->C % 16 && s->C < 64) || s->sh != 1 || s->sw != 1 ||
        s->OW != s->W || taps <= 9)
        return 0;
    const int64_t n = (Hp * Wp + out + taps) * 16;
    return n * (int64_t)sizeof(float) <= FC_DWL_MAX_BYTES ? n : 0;
}

/* Output columns [j0, j0 + NJ) of every row of the 16 channels: Q[(oh*OW + j)*16 + c]
 * (NJ <= 16, a constant per copy). */
FC_T512 FC_INLINE void fc_dwl_rows(const float *P, const float *Wt, __m512 bv, float *Q,
                                   const fc_conv_shape *s, int64_t Wp, int64_t j0, const int NJ)
{
    __m512 acc[16];
    for (int64_t oh = 0; oh < s->OH; oh++) {
#pragma GCC unroll 16
        for (int j = 0; j < NJ; j++)
            acc[j] = bv;
        for (int64_t kh = 0; kh < s->KH; kh++) {
            const float *pr = P + ((oh + kh * s->dh) * Wp + j0) * 16;
            const float *wt = Wt + kh * s->KW * 16;
            for (int64_t kw = 0; kw < s->KW; kw++) {
                const __m512 wv = _mm512_load_ps(wt + kw * 16);
                const float *pk = pr + kw * s->dw * 16;
#pragma GCC unroll 16
                for (int j = 0; j < NJ; j++)
                    acc[j] = _mm512_fmadd_ps(_mm512_load_ps(pk + j * 16), wv, acc[j]);
            }
        }
#pragma GCC unroll 16
        for (int j = 0; j < NJ; j++)
            _mm512_store_ps(Q + (oh * s->OW + j0 + j) * 16, acc[j]);
    }
}

/* Planes of 16 consecutive channels (x: their input planes, w: their filters, b: their
 * biases or NULL, y: their output planes), ws: fc_dwl_elems(s) floats, 64-byte aligned. */
FC_T512 static void fc_dwl_planes16(const float *x, const float *w, const float *b, float *y,
                                    const fc_conv_shape *s, float *ws)
{
    const int64_t taps = s->KH * s->KW, in = s->H * s->W, out = s->OH * s->OW;
    const int64_t Hp = s->OH + (s->KH - 1) * s->dh, Wp = s->OW + (s->KW - 1) * s->dw;
    float *P = ws, *Q = P + Hp * Wp * 16, *Wt = Q + out * 16;
    __m512 r[16];
    memset(P, 0, (size_t)(Hp * Wp * 16) * sizeof(float));
    for (int64_t q0 = 0, ih = 0, iw = 0; q0 < in; q0 += 16) { /* the planes, transposed in */
        const __mmask16 m = (__mmask16)fc_lanes16(0, in - q0);
#pragma GCC unroll 16
        for (int c = 0; c < 16; c++)
            r[c] = _mm512_maskz_loadu_ps(m, x + c * in + q0);
        fc_transpose16_f32(r);
        for (int k = 0; k < 16 && q0 + k < in; k++) { /* position q0 + k is (ih, iw) */
            const int64_t pr = ih + s->ph, pc = iw + s->pw;
            if (pr < Hp && pc < Wp) /* rows past the last output's window are not read */
                _mm512_store_ps(P + (pr * Wp + pc) * 16, r[k]);
            if (++iw == s->W)
                iw = 0, ih++;
        }
    }
    for (int64_t t0 = 0; t0 < taps; t0 += 16) { /* the filters, transposed */
        const __mmask16 m = (__mmask16)fc_lanes16(0, taps - t0);
#pragma GCC unroll 16
        for (int c = 0; c < 16; c++)
            r[c] = _mm512_maskz_loadu_ps(m, w + c * taps + t0);
        fc_transpose16_f32(r);
        for (int k = 0; k < 16 && t0 + k < taps; k++)
            _mm512_store_ps(Wt + (t0 + k) * 16, r[k]);
    }
    const __m512 bv = b ? _mm512_loadu_ps(b) : _mm512_setzero_ps();
    /* the rows in column chunks of equal width, at most 16 (28: 14 + 14), whose
     * accumulators stay in registers: one copy per width */
    const int64_t nch = ceil_div(s->OW, 16), cw = ceil_div(s->OW, nch);
    for (int64_t j0 = 0; j0 < s->OW; j0 += cw) {
        switch (s->OW - j0 < cw ? s->OW - j0 : cw) {
#define FC_DWL_CASE(nj) case nj: fc_dwl_rows(P, Wt, bv, Q, s, Wp, j0, nj); break;
        FC_DWL_CASE(1) FC_DWL_CASE(2) FC_DWL_CASE(3) FC_DWL_CASE(4) FC_DWL_CASE(5)
        FC_DWL_CASE(6) FC_DWL_CASE(7) FC_DWL_CASE(8) FC_DWL_CASE(9) FC_DWL_CASE(10)
        FC_DWL_CASE(11) FC_DWL_CASE(12) FC_DWL_CASE(13) FC_DWL_CASE(14) FC_DWL_CASE(15)
        FC_DWL_CASE(16)
#undef FC_DWL_CASE
        default: FC_ASSERT(0);
        }
    }
    for (int64_t q0 = 0; q0 < out; q0 += 16) { /* the output planes, transposed out */
        const int64_t n = out - q0 < 16 ? out - q0 : 16;
#pragma GCC unroll 16
        for (int k = 0; k < 16; k++)
            r[k] = k < n ? _mm512_load_ps(Q + (q0 + k) * 16) : _mm512_setzero_ps();
        fc_transpose16_f32(r);
        const __mmask16 m = (__mmask16)fc_lanes16(0, n);
#pragma GCC unroll 16
        for (int c = 0; c < 16; c++)
            _mm512_mask_storeu_ps(y + c * out + q0, m, r[c]);
    }
}
#endif

#define FC_INSTANTIATE "depthwise_conv2d.c"
#include "common.h"

#else /* FC_TYPED: everything below is compiled once per element type T */

/* ------------------------------------------------------------------ depthwise */

/* x is (H, W), w is (KH, KW): one output (oh, ow) with every bounds check. */
FC_INLINE T FN(dw_point)(const T *x, const T *w, T bias, const fc_win *g, int64_t oh,
                        int64_t ow)
{
    const int64_t hs = oh * g->sh - g->ph, ws = ow * g->sw - g->pw;
    T s = bias;
    for (int64_t kh = 0; kh < g->KH; kh++) {
        const int64_t ih = hs + kh * g->dh;
        if (ih < 0 || ih >= g->H)
            continue;
        for (int64_t kw = 0; kw < g->KW; kw++) {
            const int64_t iw = ws + kw * g->dw;
            if (iw >= 0 && iw < g->W)
                s += w[kh * g->KW + kw] * x[ih * g->W + iw];
        }
    }
    return s;
}

/* ym[j] = bias + the 9 taps of a 3x3 window (dilation 1) over rows r0, r1, r2. */
FC_INLINE void FN(dw_row3x3)(T *restrict ym, const T *restrict r0, const T *restrict r1,
                            const T *restrict r2, const T *restrict w, T bias, int64_t n,
                            int64_t sw)
{
    const T w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6],
            w7 = w[7], w8 = w[8];
    for (int64_t j = 0; j < n; j++) {
        const int64_t i = j * sw;
        T a = bias + w0 * r0[i] + w1 * r0[i + 1] + w2 * r0[i + 2];
        T b = w3 * r1[i] + w4 * r1[i + 1] + w5 * r1[i + 2];
        T c = w6 * r2[i] + w7 * r2[i + 1] + w8 * r2[i + 2];
        ym[j] = a + b + c;
    }
}

/* ym[j] += taps xr[j*sw + kw*dw] * w[kw], kw < K (K = 1, 3 or 5 unrolled). */
FC_INLINE void FN(dw_acc_k)(T *restrict ym, const T *restrict xr, const T *restrict w, int64_t n,
                           int64_t sw, int64_t dw, int K)
{
    const T w0 = w[0], w1 = K > 1 ? w[1] : 0, w2 = K > 2 ? w[2] : 0, w3 = K > 3 ? w[3] : 0,
            w4 = K > 4 ? w[4] : 0;
    for (int64_t j = 0; j < n; j++) {
        const int64_t i = j * sw;
        T s = ym[j] + w0 * xr[i];
        if (K > 1) s += w1 * xr[i + dw];
        if (K > 2) s += w2 * xr[i + 2 * dw];
        if (K > 3) s += w3 * xr[i + 3 * dw];
        if (K > 4) s += w4 * xr[i + 4 * dw];
        ym[j] = s;
    }
}

FC_INLINE void FN(dw_acc_row)(T *restrict ym, const T *restrict xr, const T *restrict w,
                             int64_t n, int64_t sw, int64_t dw, int64_t KW)
{
    if (KW == 3 || KW == 5) {
        const int K = (int)KW;
        if (sw == 1 && dw == 1)
            FN(dw_acc_k)(ym, xr, w, n, 1, 1, K);
        else if (sw == 2 && dw == 1)
            FN(dw_acc_k)(ym, xr, w, n, 2, 1, K);
        else
            FN(dw_acc_k)(ym, xr, w, n, sw, dw, K);
        return;
    }
    for (int64_t kw = 0; kw < KW; kw++) {
        if (sw == 1)
            FN(dw_acc_k)(ym, xr + kw * dw, w + kw, n, 1, 1, 1);
        else if (sw == 2)
            FN(dw_acc_k)(ym, xr + kw * dw, w + kw, n, 2, 1, 1);
        else
            FN(dw_acc_k)(ym, xr + kw * dw, w + kw, n, sw, 1, 1);
    }
}

/* x is (H, W) (one input channel), w is (KH, KW) (one filter); writes output rows
 * oh0 <= oh < oh1 of the plane to y, row oh at y + (oh - oh0) * OW, reading x in place:
 * border columns one by one with bounds checks, interior columns vectorised. */
FC_INLINE void FN(dw_rows_direct)(const T *restrict x, const T *restrict w, T bias,
                               T *restrict y, const fc_win *g, int64_t oh0, int64_t oh1)
{
    const int64_t H = g->H, W = g->W, OW = g->OW, lo = g->lo, hi = g->hi, n = hi - lo;
    const int64_t sw = g->sw, KW = g->KW;
    const int fused3x3 = g->KH == 3 && KW == 3 && g->dh == 1 && g->dw == 1;
    for (int64_t oh = oh0; oh < oh1; oh++) {
        T *restrict yr = y + (oh - oh0) * OW;
        for (int64_t ow = 0; ow < lo; ow++)
            yr[ow] = FN(dw_point)(x, w, bias, g, oh, ow);
        for (int64_t ow = hi; ow < OW; ow++)
            yr[ow] = FN(dw_point)(x, w, bias, g, oh, ow);
        if (n <= 0)
            continue;
        const int64_t hs = oh * g->sh - g->ph, x0 = lo * sw - g->pw;
        T *restrict ym = yr + lo;
        if (fused3x3 && hs >= 0 && hs + 2 < H) {
            const T *r0 = x + hs * W + x0;
            if (sw == 1)
                FN(dw_row3x3)(ym, r0, r0 + W, r0 + 2 * W, w, bias, n, 1);
            else if (sw == 2)
                FN(dw_row3x3)(ym, r0, r0 + W, r0 + 2 * W, w, bias, n, 2);
            else
                FN(dw_row3x3)(ym, r0, r0 + W, r0 + 2 * W, w, bias, n, sw);
            continue;
        }
        for (int64_t j = 0; j < n; j++)
            ym[j] = bias;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            const int64_t ih = hs + kh * g->dh;
            if (ih < 0 || ih >= H)
                continue;
            FN(dw_acc_row)(ym, x + ih * W + x0, w + kh * KW, n, sw, g->dw, KW);
        }
    }
}
/* The same rows through a zero-padded copy of the input rows they read: every window is then
 * inside the copy, so there is no border code and every output goes through the vector
 * loops. buf holds fc_dw_buf_elems(g, oh1 - oh0) elements. With stride 1 and a narrow
 * output (OW < 32: a row is only one or two vectors), the padded rows are treated as one
 * long row of Wp-wide lines: yf[q] = sum w[kh, kw] * xp[q + kh*dh*Wp + kw*dw] for every q
 * < rows*Wp, then the first OW of each Wp-wide line of yf is the output row. */
FC_INLINE void FN(dw_rows_padded)(const T *restrict x, const T *restrict w, T bias,
                                 T *restrict y, const fc_win *g, int64_t oh0, int64_t oh1,
                                 T *restrict buf)
{
    const int64_t H = g->H, W = g->W, OW = g->OW, KH = g->KH, KW = g->KW;
    const int64_t sh = g->sh, sw = g->sw, dh = g->dh, dw = g->dw, pw = g->pw;
    const int64_t rows = oh1 - oh0, Wp = fc_dw_wp(g), Hp = fc_dw_hp(g, rows);
    const int64_t ih0 = oh0 * sh - g->ph; /* input row of padded row 0 */
    const int64_t ncopy = W < Wp - pw ? W : Wp - pw, slack = (KW - 1) * dw;
    T *restrict xp = buf;
    for (int64_t r = 0; r < Hp; r++) {
        T *restrict xr = xp + r * Wp;
        const int64_t ih = ih0 + r;
        if (ih < 0 || ih >= H || ncopy <= 0) {
            for (int64_t c = 0; c < Wp; c++)
                xr[c] = 0;
            continue;
        }
        for (int64_t c = 0; c < pw; c++)
            xr[c] = 0;
        memcpy(xr + pw, x + ih * W, (size_t)ncopy * sizeof(T));
        for (int64_t c = pw + ncopy; c < Wp; c++)
            xr[c] = 0;
    }
    for (int64_t c = 0; c < slack; c++)
        xp[Hp * Wp + c] = 0;
    const int fused3x3 = KH == 3 && KW == 3 && dh == 1 && dw == 1;
    if (sh == 1 && sw == 1 && OW < 32) {
        T *restrict yf = buf + Hp * Wp + slack;
        const int64_t n = rows * Wp;
        if (fused3x3) {
            FN(dw_row3x3)(yf, xp, xp + Wp, xp + 2 * Wp, w, bias, n, 1);
        } else {
            for (int64_t q = 0; q < n; q++)
                yf[q] = bias;
            for (int64_t kh = 0; kh < KH; kh++)
                FN(dw_acc_row)(yf, xp + kh * dh * Wp, w + kh * KW, n, 1, dw, KW);
        }
        for (int64_t r = 0; r < rows; r++)
            memcpy(y + r * OW, yf + r * Wp, (size_t)OW * sizeof(T));
        return;
    }
    for (int64_t r = 0; r < rows; r++) {
        T *restrict yr = y + r * OW;
        const T *r0 = xp + r * sh * Wp;
        if (fused3x3) {
            if (sw == 1)
                FN(dw_row3x3)(yr, r0, r0 + Wp, r0 + 2 * Wp, w, bias, OW, 1);
            else if (sw == 2)
                FN(dw_row3x3)(yr, r0, r0 + Wp, r0 + 2 * Wp, w, bias, OW, 2);
            else
                FN(dw_row3x3)(yr, r0, r0 + Wp, r0 + 2 * Wp, w, bias, OW, sw);
            continue;
        }
        for (int64_t j = 0; j < OW; j++)
            yr[j] = bias;
        for (int64_t kh = 0; kh < KH; kh++)
            FN(dw_acc_row)(yr, r0 + kh * dh * Wp, w + kh * KW, OW, sw, dw, KW);
    }
}

/* Rows oh0 <= oh < oh1 of one plane: padded when a buffer is given, else in place. */
FC_INLINE void FC_CAT(FN(dw_rows), _body)(const T *restrict x, const T *restrict w, T bias,
                                         T *restrict y, const fc_win *g, int64_t oh0,
                                         int64_t oh1, T *restrict buf)
{
    if (buf && fc_dw_padded(g))
        FN(dw_rows_padded)(x, w, bias, y, g, oh0, oh1, buf);
    else
        FN(dw_rows_direct)(x, w, bias, y, g, oh0, oh1);
}
FC_MULTIVERSION(FN(dw_rows),
                (const T *restrict x, const T *restrict w, T bias, T *restrict y,
                 const fc_win *g, int64_t oh0, int64_t oh1, T *restrict buf),
                (x, w, bias, y, g, oh0, oh1, buf))

/* The arguments of the depthwise plane loops, for fc_parallel_for. */
typedef struct {
    const T *x, *w, *b;
    T *y;
    const fc_conv_shape *s;
    const fc_win *g;
    const void *flat;  /* the flat path's fc_dws (float32, AVX-512) */
    int64_t lanes;     /* with it, fc_dwl_elems: 16 channels at a time by fc_dwl_planes16 */
    int64_t buf_elems; /* the padded path's buffer per thread (0: rows read in place) */
    T **bufs;          /* one per pool slot, made by the slot's thread on first use */
    const fc_epilogue *ep; /* NULL: none */
} FN(fc_dw_args);

/* The epilogue on output plane p (image n, channel o), while it is in cache. */
static inline void FN(dw_plane_epilogue)(const FN(fc_dw_args) *a, int64_t p, int64_t o,
                                         int64_t out_sz) {
    if (a->ep) {
        const T *res = a->ep->residual;
        FN(fc_epilogue_row)(a->ep, o, a->y + p * out_sz, res ? res + p * out_sz : NULL, out_sz);
    }
}

#if defined(__x86_64__)
/* The float32 plane kernels: the AVX-512 flat one (a->flat), or the 3x3 one of this CPU
 * (fc_dw3x3_rows_f32) where the caller left a->flat NULL. */
static void FN(dw_flat_planes)(void *ctx, int64_t p0, int64_t p1, int slot)
{
    const FN(fc_dw_args) *a = ctx;
    const fc_conv_shape *s = a->s;
    const int64_t OC = s->OC, m = OC / s->C, in_sz = s->H * s->W, out_sz = s->OH * s->OW;
    const float *xf = (const float *)(const void *)a->x, *wf = (const float *)(const void *)a->w;
    const float *bf = (const float *)(const void *)a->b;
    float *yf = (float *)(void *)a->y;
    float *ws = NULL; /* fc_dwl_planes16's workspace, made on the first group of 16 */
    (void)slot;
    for (int64_t p = p0; p < p1; p++) {
        const int64_t n = p / OC, o = p % OC;
        const float *xp = xf + (n * s->C + o / m) * in_sz, *wp = wf + o * s->KH * s->KW;
        if (a->lanes && o % 16 == 0 && o + 16 <= OC && p + 16 <= p1) {
            if (!ws)
                ws = aligned_alloc(64, (size_t)round_up(a->lanes * (int64_t)sizeof(float), 64));
            if (ws) { /* (without it, plane by plane below) */
                fc_dwl_planes16(xp, wp, bf ? bf + o : NULL, yf + p * out_sz, s, ws);
                for (int64_t k = 0; k < 16; k++)
                    FN(dw_plane_epilogue)(a, p + k, o + k, out_sz);
                p += 15;
                continue;
            }
        }
        if (a->flat)
            fc_dws_plane_f32_avx512(xp, wp, bf ? bf[o] : 0.0f, yf + p * out_sz, a->flat);
        else
            fc_dw3x3_rows_f32(xp, wp, bf ? bf[o] : 0.0f, yf + p * out_sz, s->H, s->W, 0, s->H);
        FN(dw_plane_epilogue)(a, p, o, out_sz);
    }
    free(ws);
}
#endif

static void FN(dw_planes)(void *ctx, int64_t p0, int64_t p1, int slot)
{
    const FN(fc_dw_args) *a = ctx;
    const fc_conv_shape *s = a->s;
    const int64_t OC = s->OC, m = OC / s->C, in_sz = s->H * s->W, out_sz = s->OH * s->OW;
    /* the padded path's buffer; without it (too big, no memory) rows are read in place */
    if (a->buf_elems && !a->bufs[slot])
        a->bufs[slot] = malloc((size_t)a->buf_elems * sizeof(T));
    for (int64_t p = p0; p < p1; p++) {
        const int64_t n = p / OC, o = p % OC;
        FN(dw_rows)(a->x + (n * s->C + o / m) * in_sz, a->w + o * s->KH * s->KW,
                   a->b ? a->b[o] : (T)0, a->y + p * out_sz, a->g, 0, s->OH, a->bufs[slot]);
        FN(dw_plane_epilogue)(a, p, o, out_sz);
    }
}

/* The path of a depthwise call (enum fc_dw_path): the 3x3 row-pair kernel of this CPU, the
 * AVX-512 flat plane (its masks made in *flat, which the caller frees; flat->mask NULL on
 * every other path), or the row loops, through the padded copy or in place. */
static int FN(dw_path)(const fc_conv_shape *s, const fc_win *g, fc_dws *flat)
{
    flat->mask = NULL;
#if defined(__x86_64__)
    if (fc_dw3x3_takes(s, IS_F64))
        return fc_dwpool_isa(-1) == 2 ? FC_DW_3X3_AVX512 : FC_DW_3X3_AVX2;
    if (!IS_F64 && fc_dwpool_isa(-1) == 2 && fc_dws_make(flat, g))
        return fc_dwl_elems(s) ? FC_DW_LANES_AVX512 : FC_DW_FLAT_AVX512;
#endif
    return fc_dw_buf_elems(g, s->OH, (int64_t)sizeof(T)) && fc_dw_padded(g)
               ? FC_DW_ROWS_PADDED
               : FC_DW_ROWS_DIRECT;
}

/* x is (N, C, H, W), w is (OC, 1, KH, KW) with OC = C*m, b is (OC,) or NULL,
 * y is (N, OC, OH, OW); output channel o reads input channel o / m. s->G = C; sizes >= 1
 * (N >= 0), strides and dilations >= 1, padding >= 0. */
void FN(fc_depthwise_conv2d)(const T *x, const T *w, const T *b, T *y, const fc_conv_shape *s)
{
    FN(fc_depthwise_conv2d_ep)(x, w, b, y, s, NULL);
}

/* fc_depthwise_conv2d with a fused epilogue (NULL: none), applied to each output plane. */
void FN(fc_depthwise_conv2d_ep)(const T *x, const T *w, const T *b, T *y,
                                const fc_conv_shape *s, const fc_epilogue *ep)
{
    FC_ASSERT_CONV_SHAPE(s);
    FC_ASSERT(s->G == s->C && s->OC >= 1 && s->OH >= 1 && s->OW >= 1);
    const fc_win g = dw_win(s);
    const int64_t planes = s->N * s->OC, in_sz = s->H * s->W, out_sz = s->OH * s->OW;
    const int64_t cost = fc_cost_mem(planes * (in_sz + out_sz) * (int64_t)sizeof(T),
                                     planes * out_sz * s->KH * s->KW);
    const int team = fc_team_for(cost, fc_threads());
    int64_t chunk = fc_chunk_for(planes, cost, team);
    FN(fc_dw_args) a = {.x = x, .w = w, .b = b, .y = y, .s = s, .g = &g,
                        .ep = fc_epilogue_active(ep) ? ep : NULL};
    fc_dws flat;
    const int path = FN(dw_path)(s, &g, &flat);
#if defined(__x86_64__)
    if (path == FC_DW_3X3_AVX512 || path == FC_DW_3X3_AVX2 || path == FC_DW_FLAT_AVX512 ||
        path == FC_DW_LANES_AVX512) {
        a.flat = flat.mask ? &flat : NULL; /* NULL: the 3x3 kernel, fc_dw3x3_rows_f32 */
        a.lanes = path == FC_DW_LANES_AVX512 ? fc_dwl_elems(s) : 0;
        if (a.lanes) /* whole groups of 16 channels per chunk (the same sums either way) */
            chunk = round_up(chunk, 16);
        fc_parallel_for(planes, chunk, team, FN(dw_flat_planes), &a);
        fc_dws_free(&flat);
        return;
    }
#endif
    (void)path; /* the row loops: dw_rows_body takes the padded copy where dw_path says so */
    T *bufs[FC_POOL_SLOTS] = {0};
    a.buf_elems = fc_dw_buf_elems(&g, s->OH, (int64_t)sizeof(T)); /* rows 0 .. OH */
    a.bufs = bufs;
    fc_parallel_for(planes, chunk, team, FN(dw_planes), &a);
    for (int i = 0; i < FC_POOL_SLOTS; i++)
        free(bufs[i]);
}

/* The path fc_depthwise_conv2d_ep takes for s (enum fc_dw_path, dw_path): what
 * fastconv.cpu_info reports per layer. */
int FN(fc_depthwise_path)(const fc_conv_shape *s)
{
    const fc_win g = dw_win(s);
    fc_dws flat;
    const int path = FN(dw_path)(s, &g, &flat);
    fc_dws_free(&flat);
    return path;
}

/* ------------------------------------------------------------------ separable */

/* y[o*ys + p] = bp[o] + sum_c wp[o*CM + c] * mid[c*P + p] for o < OC, p < P: the pointwise
 * step on one tile. The block of `no` output channels x `nv` vectors of L pixels lives in
 * registers across the whole c loop (inlined with constant no, nv: NOB x NVB at most). The
 * last vector of a block holds `last` pixels (L but at the tile's end): it reads the L - last
 * floats after them (mid has FC_PW_SLACK elements after its end) and stores the first `last`
 * lanes. A 56-wide tile of 224 pixels left 32 of them to a scalar loop: 1x1 144->24 @56 took
 * 2.3 times its vector time. */
#define FC_PW_BLOCK(NAME, VBYTES, NOB, NVB)                                                  \
    FC_INLINE void NAME(const T *restrict mid, const T *restrict wp, const T *restrict bp,  \
                        T *restrict y, int64_t ys, int64_t CM, int64_t o, int64_t p,         \
                        int64_t P, const int no, const int nv, const int last)               \
    {                                                                                        \
        typedef T vt __attribute__((vector_size(VBYTES), aligned(sizeof(T)), may_alias));   \
        enum { L = VBYTES / sizeof(T) };                                                     \
        vt acc[NOB][NVB];                                                                    \
        _Pragma("GCC unroll 8") for (int a = 0; a < no; a++)                                 \
        {                                                                                    \
            const T bias = bp ? bp[o + a] : (T)0;                                            \
            _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) acc[a][v] = (vt){0} + bias; \
        }                                                                                    \
        for (int64_t c = 0; c < CM; c++) {                                                   \
            const T *mc = mid + c * P + p;                                                   \
            vt xv[NVB];                                                                      \
            _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) xv[v] =                     \
                *(const vt *)(mc + v * L);                                                   \
            _Pragma("GCC unroll 8") for (int a = 0; a < no; a++)                             \
            {                                                                                \
                const vt wv = (vt){0} + wp[(o + a) * CM + c];                                \
                _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) acc[a][v] += wv * xv[v]; \
            }                                                                                \
        }                                                                                    \
        _Pragma("GCC unroll 8") for (int a = 0; a < no; a++)                                 \
        {                                                                                    \
            _Pragma("GCC unroll 8") for (int v = 0; v + 1 < nv; v++)                         \
                *(vt *)(y + (o + a) * ys + p + v * L) = acc[a][v];                           \
            T *yl = y + (o + a) * ys + p + (nv - 1) * L;                                     \
            if (last == L) {                                                                 \
                *(vt *)yl = acc[a][nv - 1];                                                  \
            } else {                                                                         \
                T lanes[L];                                                                  \
                memcpy(lanes, &acc[a][nv - 1], sizeof lanes);                                \
                memcpy(yl, lanes, (size_t)last * sizeof(T));                                 \
            }                                                                                \
        }                                                                                    \
    }

/* The tile: blocks of NVB vectors, then of one vector (the last one holding the last pixels). */
#define FC_PW_TILE(NAME, BLOCK, VBYTES, NOB, NVB)                                            \
    FC_INLINE void NAME(const T *restrict mid, const T *restrict wp, const T *restrict bp,  \
                        T *restrict y, int64_t ys, int64_t CM, int64_t OC, int64_t P)        \
    {                                                                                        \
        enum { L = VBYTES / sizeof(T) };                                                     \
        int64_t p = 0, o;                                                                    \
        for (; p + NVB * L <= P; p += NVB * L) {                                             \
            for (o = 0; o + NOB <= OC; o += NOB)                                             \
                BLOCK(mid, wp, bp, y, ys, CM, o, p, P, NOB, NVB, L);                         \
            for (; o < OC; o++)                                                              \
                BLOCK(mid, wp, bp, y, ys, CM, o, p, P, 1, NVB, L);                           \
        }                                                                                    \
        for (; p < P; p += L) {                                                              \
            const int last = P - p < L ? (int)(P - p) : L;                                   \
            for (o = 0; o + NOB <= OC; o += NOB)                                             \
                BLOCK(mid, wp, bp, y, ys, CM, o, p, P, NOB, 1, last);                        \
            for (; o < OC; o++)                                                              \
                BLOCK(mid, wp, bp, y, ys, CM, o, p, P, 1, 1, last);                          \
        }                                                                                    \
    }

FC_PW_BLOCK(FN(pw_block128), 16, FC_PW_NO128, FC_PW_NV128)
FC_PW_TILE(FN(pw_tile128), FN(pw_block128), 16, FC_PW_NO128, FC_PW_NV128)
#if defined(__x86_64__)
FC_PW_BLOCK(FN(pw_block256), 32, FC_PW_NO256, FC_PW_NV256)
FC_PW_TILE(FN(pw_tile256), FN(pw_block256), 32, FC_PW_NO256, FC_PW_NV256)
FC_PW_BLOCK(FN(pw_block512), 64, FC_PW_NO512, FC_PW_NV512)
FC_PW_TILE(FN(pw_tile512), FN(pw_block512), 64, FC_PW_NO512, FC_PW_NV512)

static void FN(pw_tile_base)(const T *restrict mid, const T *restrict wp, const T *restrict bp,
                            T *restrict y, int64_t ys, int64_t CM, int64_t OC, int64_t P)
{
    FN(pw_tile128)(mid, wp, bp, y, ys, CM, OC, P);
}
FC_T256 static void FN(pw_tile_avx2)(const T *restrict mid, const T *restrict wp,
                                    const T *restrict bp, T *restrict y, int64_t ys,
                                    int64_t CM, int64_t OC, int64_t P)
{
    FN(pw_tile256)(mid, wp, bp, y, ys, CM, OC, P);
}
FC_T512 static void FN(pw_tile_avx512)(const T *restrict mid, const T *restrict wp,
                                      const T *restrict bp, T *restrict y, int64_t ys,
                                      int64_t CM, int64_t OC, int64_t P)
{
    FN(pw_tile512)(mid, wp, bp, y, ys, CM, OC, P);
}
static void FN(pw_tile)(const T *mid, const T *wp, const T *bp, T *y, int64_t ys, int64_t CM,
                       int64_t OC, int64_t P)
{
    switch (fc_dwpool_isa(-1)) {
    case 2: FN(pw_tile_avx512)(mid, wp, bp, y, ys, CM, OC, P); break;
    case 1: FN(pw_tile_avx2)(mid, wp, bp, y, ys, CM, OC, P); break;
    default: FN(pw_tile_base)(mid, wp, bp, y, ys, CM, OC, P);
    }
}
#else
static void FN(pw_tile)(const T *mid, const T *wp, const T *bp, T *y, int64_t ys, int64_t CM,
                       int64_t OC, int64_t P)
{
    FN(pw_tile128)(mid, wp, bp, y, ys, CM, OC, P);
}
#endif

/* The arguments of the separable tile loop, for fc_parallel_for. */
typedef struct {
    const T *x, *wd, *bd, *wp, *bp;
    T *y;
    const fc_conv_shape *s;
    const fc_win *g;
    int64_t OC, rows, per_img, buf_elems;
    int dw3; /* the depthwise step takes the 3x3 kernel (fc_dw3x3_takes) */
    T **mids, **bufs; /* one per pool slot, made by the slot's thread on first use */
    _Atomic int failed;
} FN(fc_sep_args);

static void FN(sep_tiles)(void *ctx, int64_t t0, int64_t t1, int slot)
{
    FN(fc_sep_args) *a = ctx;
    const fc_conv_shape *s = a->s;
    const int64_t C = s->C, CM = s->OC, KH = s->KH, KW = s->KW, OH = s->OH, OW = s->OW;
    const int64_t m = CM / C, in_sz = s->H * s->W, out_sz = OH * OW, rows = a->rows;
    if (!a->mids[slot]) {
        /* zeroed slack after the end: the last vector of a tile reads past its pixels */
        if (!(a->mids[slot] = calloc((size_t)(CM * rows * OW + FC_PW_SLACK), sizeof(T)))) {
            a->failed = 1; /* y stays incomplete; the caller reports it */
            return;
        }
        if (a->buf_elems) /* without it rows are read in place */
            a->bufs[slot] = malloc((size_t)a->buf_elems * sizeof(T));
    }
    T *mid = a->mids[slot], *buf = a->bufs[slot];
    for (int64_t t = t0; t < t1; t++) {
        const int64_t n = t / a->per_img, oh0 = (t % a->per_img) * rows;
        const int64_t oh1 = oh0 + rows < OH ? oh0 + rows : OH, P = (oh1 - oh0) * OW;
        /* the tile fits mid (CM x rows*OW) and buf (made for `rows` rows) */
        FC_ASSERT(0 <= oh0 && oh0 < oh1 && oh1 - oh0 <= rows);
        for (int64_t c = 0; c < CM; c++) {
            const T *xc = a->x + (n * C + c / m) * in_sz, *wc = a->wd + c * KH * KW;
            const T bias = a->bd ? a->bd[c] : (T)0;
#if defined(__x86_64__)
            if (a->dw3) { /* float32 only (fc_dw3x3_takes) */
                fc_dw3x3_rows_f32((const float *)(const void *)xc,
                                  (const float *)(const void *)wc, (float)bias,
                                  (float *)(void *)(mid + c * P), s->H, s->W, oh0, oh1);
                continue;
            }
#endif
            FN(dw_rows)(xc, wc, bias, mid + c * P, a->g, oh0, oh1, buf);
        }
        FN(pw_tile)(mid, a->wp, a->bp, a->y + n * a->OC * out_sz + oh0 * OW, out_sz, CM, a->OC,
                    P);
    }
}

/* x is (N, C, H, W), wd is (CM, 1, KH, KW) with CM = C*m, bd is (CM,) or NULL,
 * wp is (OC, CM, 1, 1), bp is (OC,) or NULL, y is (N, OC, OH, OW); s is the depthwise
 * stage's shape (its OC is CM, G = C), with the preconditions of fc_depthwise_conv2d; OC >= 1.
 * Returns 0, or -1 when a per-thread buffer could not be allocated (y is then incomplete). */
int FN(fc_separable_conv2d)(const T *x, const T *wd, const T *bd, const T *wp, const T *bp,
                           T *y, const fc_conv_shape *s, int64_t OC)
{
    FC_ASSERT_CONV_SHAPE(s);
    FC_ASSERT(s->G == s->C && s->OC >= 1 && s->OH >= 1 && s->OW >= 1 && OC >= 1);
    const fc_win g = dw_win(s);
    const int64_t N = s->N, CM = s->OC, KH = s->KH, KW = s->KW, OH = s->OH, OW = s->OW;
    const int64_t in_sz = s->H * s->W, out_sz = OH * OW;
    /* rows per tile: about 256 pixels, and the CM x P buffer at most ~512 KiB */
    int64_t rows = 256 / OW;
    const int64_t cap = (int64_t)(512 * 1024 / sizeof(T)) / (CM * OW);
    if (rows > cap) rows = cap;
    if (rows < 1) rows = 1;
    if (rows > OH) rows = OH;
#if defined(__x86_64__)
    const int dw3 = fc_dw3x3_takes(s, IS_F64);
#else
    const int dw3 = 0;
#endif
    if (dw3 && rows > 1)
        rows &= ~(int64_t)1; /* the 3x3 kernel makes two rows at a time */
    const int64_t per_img = ceil_div(OH, rows), tiles = N * per_img;
    /* the depthwise stage (memory) plus the pointwise one (CM x OC multiply-adds a pixel) */
    const int64_t cost =
        fc_cost_mem(N * (s->C * in_sz + (CM + OC) * out_sz) * (int64_t)sizeof(T),
                    N * CM * out_sz * KH * KW) +
        fc_cost_macs(N * out_sz * CM * OC);
    const int team = fc_team_for(cost, fc_threads());
    T *mids[FC_POOL_SLOTS] = {0}, *bufs[FC_POOL_SLOTS] = {0};
    FN(fc_sep_args) a = {.x = x, .wd = wd, .bd = bd, .wp = wp, .bp = bp, .y = y, .s = s,
                         .g = &g, .OC = OC, .rows = rows, .per_img = per_img, .dw3 = dw3,
                         .buf_elems = fc_dw_buf_elems(&g, rows, (int64_t)sizeof(T)),
                         .mids = mids, .bufs = bufs, .failed = 0};
    fc_parallel_for(tiles, 1, team, FN(sep_tiles), &a);
    for (int i = 0; i < FC_POOL_SLOTS; i++) {
        free(mids[i]);
        free(bufs[i]);
    }
    return a.failed ? -1 : 0;
}

#endif /* FC_TYPED */
