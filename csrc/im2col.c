/* im2col.c: im2col (image -> column matrix) and col2im (its adjoint), with stride, padding
 * and dilation, on any block of rows and output pixels, so that callers can bound their
 * workspace by converting one chunk at a time.
 *
 *   fc_im2col_{f32,f64}  col[r - r0, p - p0] = x[c, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw]
 *                        (0 outside the image), for r = (c*KH + kh)*KW + kw in [r0, r1) and
 *                        p = oh*OW + ow in [p0, p1)
 *   fc_im2col_packed_*   the same values in the GEMM's packed-B layout (slivers of nr pixels)
 *   fc_col2im_{f32,f64}  the adjoint: x[c, ih, iw] += col(r, p) for the same (r, p),
 *                        positions outside the image dropped; col may be row-major or
 *                        transposed (strides ldr, ldp)
 *
 * x is one image of one group, (C/G, H, W); col is (r1 - r0) x (p1 - p0), row-major. The
 * fields H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw of the shape give the geometry; C/G only
 * bounds the rows (checked in debug builds). conv2d multiplies the weights (OC/G) x
 * (C/G*KH*KW) by col; conv_transpose2d multiplies the transposed weights by its input and
 * scatters the product back with col2im (its shape is the adjoint conv's: C and OC swapped).
 *
 * For each row the columns ow whose input column iw lies inside [0, W) form one interval
 * [lo, hi), computed once per row, so the inner loops have no bounds tests: zeros, then a
 * copy (a memcpy at stride 1), then zeros. col2im at column stride 2 adds the rows of taps
 * kw and kw + 1 together (even and odd output columns); with AVX-512 (float) by masked loads
 * and permutes (fc_col2im_pair512), and a transposed col a kernel row at a time
 * (fc_col2im_t512).
 *
 * Build: `python csrc/build_ffi.py` (part of the fastconv._fastconv_c extension).
 * Test: `pytest tests/test_c_conv.py -k im2col` (and every conv test, which runs through it).
 */
#ifndef FC_TYPED

#include <stdint.h>
#include <string.h>

#include "common.h"

/* floor(a / b) for b > 0 and any a. */
static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* Output columns ow in [0, OW) that read an input column inside [0, W) for kernel column kw:
 * 0 <= ow*sw + off < W with off = kw*dw - pw. */
static void valid_columns(const fc_conv_shape *s, int64_t kw, int64_t *lo, int64_t *hi) {
    int64_t off = kw * s->dw - s->pw;
    int64_t a = floor_div(-off + s->sw - 1, s->sw); /* ceil(-off / sw) */
    int64_t b = floor_div(s->W - 1 - off, s->sw) + 1;
    *lo = a < 0 ? 0 : (a > s->OW ? s->OW : a);
    *hi = b < *lo ? *lo : (b > s->OW ? s->OW : b);
}

#if defined(__x86_64__)
#include <immintrin.h>

/* Most masks of im2col_packed_flat_f32 (16-pixel blocks x taps): 8 KB on the stack. */
#define IM2COL_FLAT_MAXMASK 4096

/* The masks of the AVX-512 float im2col forms: mask[t*nb + j] has lane l set where pixel
 * p = p0 + 16*j + l (p < p1) of tap t = kh*KW + kw reads inside the image,
 * 0 <= (p / OW)*sh - ph + kh*dh < H and 0 <= (p % OW)*sw - pw + kw*dw < W; idx (unless
 * NULL) gets the pixel's input index at tap (0, 0), ((p / OW)*sh - ph)*W + (p % OW)*sw - pw
 * (pixels past p1: p0's). The caller has checked that the indices fit in int32. */
__attribute__((target("avx512f"))) static void im2col_masks16(const fc_conv_shape *s,
                                                              int64_t p0, int64_t p1,
                                                              int64_t nb, __mmask16 *mask,
                                                              int32_t *idx) {
    for (int64_t j = 0; j < nb; j++) {
        int32_t ih[16], iw[16];
        __mmask16 in = 0;
        for (int l = 0; l < 16; l++) {
            const int64_t p = p0 + 16 * j + l, q = p < p1 ? p : p0;
            ih[l] = (int32_t)(q / s->OW * s->sh - s->ph);
            iw[l] = (int32_t)(q % s->OW * s->sw - s->pw);
            if (idx) idx[16 * j + l] = ih[l] * (int32_t)s->W + iw[l];
            if (p < p1) in |= (__mmask16)(1u << l);
        }
        const __m512i ihv = _mm512_loadu_si512(ih), iwv = _mm512_loadu_si512(iw);
        for (int64_t kh = 0; kh < s->KH; kh++) {
            const __m512i h = _mm512_add_epi32(ihv, _mm512_set1_epi32((int)(kh * s->dh)));
            const __mmask16 rows = _mm512_mask_cmpge_epi32_mask(in, h, _mm512_setzero_si512()) &
                                   _mm512_cmplt_epi32_mask(h, _mm512_set1_epi32((int)s->H));
            for (int64_t kw = 0; kw < s->KW; kw++) {
                const __m512i w = _mm512_add_epi32(iwv, _mm512_set1_epi32((int)(kw * s->dw)));
                mask[(kh * s->KW + kw) * nb + j] =
                    _mm512_mask_cmpge_epi32_mask(rows, w, _mm512_setzero_si512()) &
                    _mm512_cmplt_epi32_mask(w, _mm512_set1_epi32((int)s->W));
            }
        }
    }
}

/* fc_im2col_packed for float slivers of 32 pixels (the AVX-512 GEMM's) when the stride is 1
 * and the output as wide as the input (3x3 pad 1, 'same'): pixel p = oh*W + ow of tap
 * (kh, kw) reads input p + (kh*dh - ph)*W + (kw*dw - pw) of its channel, the same shift for
 * every pixel, so a row of the matrix is 16 pixels per masked load (a masked-off lane reads
 * nothing and gives the zero of the padding), one mask per (tap, block) made once per call.
 * The general loop makes a call per output row and sliver: on 7x7 images (3x3 512->512,
 * 4608 rows of 49 pixels) it was 12% of the conv on one thread and each of two threads
 * repeated it. Returns 0 (nothing written) where the masks would not fit. */
__attribute__((target("avx512f"))) static int im2col_packed_flat_f32(
    const float *x, const fc_conv_shape *s, int64_t r0, int64_t r1, int64_t p0, int64_t p1,
    int64_t ldk, float *Bp) {
    const int64_t KK = s->KH * s->KW, nb = ceil_div(p1 - p0, 32) * 2; /* whole slivers */
    if (KK * nb > IM2COL_FLAT_MAXMASK) return 0;
    __mmask16 mask[IM2COL_FLAT_MAXMASK];
    im2col_masks16(s, p0, p1, nb, mask, NULL);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t c = r / KK, t = r % KK, kh = t / s->KW, kw = t % s->KW;
        /* pixel p's input, at a fixed offset from p (any address: only valid lanes load) */
        const float *src = x + c * s->H * s->W + p0 + (kh * s->dh - s->ph) * s->W +
                           (kw * s->dw - s->pw);
        float *dst = Bp + (r - r0) * 32;
        const __mmask16 *mt = mask + t * nb;
        for (int64_t j = 0; j < nb; j++)
            _mm512_storeu_ps(dst + (j >> 1) * ldk * 32 + (j & 1) * 16,
                             _mm512_maskz_loadu_ps(mt[j], src + 16 * j));
    }
    return 1;
}

/* Whether every pixel index and tap offset of the gather forms, valid lanes or not, fits in
 * int32. */
static int im2col_idx_fits(const fc_conv_shape *s) {
    const int64_t span = (s->OH * s->sh + s->KH * s->dh + s->ph + 1) * s->W +
                         s->OW * s->sw + s->KW * s->dw + s->pw + 1;
    return span < INT32_MAX / 2;
}

/* Most 16-pixel blocks of im2col_packed_gather_f32 (their indices: 32 KB on the stack). */
#define IM2COL_GATHER_MAXBLK 512

/* 16 floats at p[0], p[2], ..., p[30], the lanes of m only (the others 0; nothing is read
 * for them): two masked loads, their even values picked by one two-source permute. */
__attribute__((target("avx512f,bmi2"))) static inline __m512 im2col_even16(const float *p,
                                                                          __mmask16 m) {
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512 lo = _mm512_maskz_loadu_ps((__mmask16)_pdep_u32(m & 0xFFu, 0x5555u), p);
    const __m512 hi = _mm512_maskz_loadu_ps((__mmask16)_pdep_u32(m >> 8, 0x5555u), p + 16);
    return _mm512_permutex2var_ps(lo, ev, hi);
}

/* Most runs of one 16-pixel block that im2col_packed_gather_f32 loads by im2col_even16 (an
 * output 7 wide: 1 + 7 + 7 + 1); blocks of more runs keep the gather. */
#define IM2COL_S2_RUNS 4

/* fc_im2col_packed for the AVX-512 GEMM's float slivers of 32 pixels in the cases the flat
 * form does not take (a stride of 2 and more, an output narrower than the input): pixel
 * p = oh*OW + ow of tap (kh, kw) reads input (oh*sh - ph + kh*dh)*W + ow*sw - pw + kw*dw of
 * its channel, a per-pixel index plus a per-tap offset, so a row of the matrix is 16 pixels
 * per masked gather (the masked-off lanes read nothing and give the padding's zero), the
 * indices of each 16-pixel block and a mask per (tap, block) made once per call. The general
 * loop's call per output row and sliver (runs of 28 pixels and less, copied at stride 2) was
 * 13-18% of ResNet-50's 3x3/2 convs on one thread. At a column stride of 2 a block's pixels
 * of one output row (a run) read every other input value from the run's first, 16 of them
 * by im2col_even16 in place of the gather; a block across row ends is up to IM2COL_S2_RUNS
 * such runs, each one's lanes blended in (the gathers were a fifth of ResNet-50's 3x3/2
 * 128->128 @56 on one thread, perf). Returns 0 (nothing written) where the indices or masks
 * would not fit. */
__attribute__((target("avx512f,bmi2"))) static int im2col_packed_gather_f32(
    const float *x, const fc_conv_shape *s, int64_t r0, int64_t r1, int64_t p0, int64_t p1,
    int64_t ldk, float *Bp) {
    const int64_t KK = s->KH * s->KW, nb = ceil_div(p1 - p0, 32) * 2; /* whole slivers */
    if (KK * nb > IM2COL_FLAT_MAXMASK || nb > IM2COL_GATHER_MAXBLK) return 0;
    if (!im2col_idx_fits(s)) return 0;
    __mmask16 mask[IM2COL_FLAT_MAXMASK];
    int32_t idx[IM2COL_GATHER_MAXBLK * 16];
    /* per block: its runs (0: the gather), each run's lanes and the input index, at tap
     * (0, 0), that the run's lane 0 would read */
    uint8_t nrun[IM2COL_GATHER_MAXBLK];
    __mmask16 lanes[IM2COL_GATHER_MAXBLK][IM2COL_S2_RUNS];
    int32_t base[IM2COL_GATHER_MAXBLK][IM2COL_S2_RUNS];
    im2col_masks16(s, p0, p1, nb, mask, idx);
    for (int64_t j = 0; j < nb; j++) {
        const int32_t *id = idx + 16 * j;
        const int n = (int)min64(16, max64(0, p1 - p0 - 16 * j)); /* lanes in [p0, p1) */
        int k = s->sw == 2 ? 0 : IM2COL_S2_RUNS + 1;
        for (int l = 0, a = 0; l <= n && k <= IM2COL_S2_RUNS; l++)
            if (l == n || (l > a && id[l] != id[a] + 2 * (l - a))) { /* run [a, l) ends */
                if (k < IM2COL_S2_RUNS) {
                    /* the last run takes the lanes past p1 too (masked off in every tap) */
                    lanes[j][k] = (__mmask16)((l == n ? 0xFFFFu : (1u << l) - 1u) &
                                              ~((1u << a) - 1u));
                    base[j][k] = id[a] - 2 * a;
                }
                k++;
                a = l;
            }
        nrun[j] = (uint8_t)(k <= IM2COL_S2_RUNS ? k : 0);
    }
    for (int64_t r = r0; r < r1; r++) {
        const int64_t c = r / KK, t = r % KK, kh = t / s->KW, kw = t % s->KW;
        const float *src = x + c * s->H * s->W + kh * s->dh * s->W + kw * s->dw;
        float *dst = Bp + (r - r0) * 32;
        const __mmask16 *mt = mask + t * nb;
        for (int64_t j = 0; j < nb; j++) {
            const __mmask16 m = mt[j];
            __m512 v;
            if (nrun[j] == 1) {
                v = im2col_even16(src + base[j][0], m);
            } else if (nrun[j]) {
                v = im2col_even16(src + base[j][0], m & lanes[j][0]);
                for (int k = 1; k < nrun[j]; k++)
                    v = _mm512_mask_mov_ps(v, lanes[j][k],
                                           im2col_even16(src + base[j][k], m & lanes[j][k]));
            } else {
                v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m,
                                             _mm512_loadu_si512(idx + 16 * j), src, 4);
            }
            _mm512_storeu_ps(dst + (j >> 1) * ldk * 32 + (j & 1) * 16, v);
        }
    }
    return 1;
}

/* The masks of the AVX2 float im2col forms, im2col_masks16's on blocks of 8 pixels kept as
 * bytes: bit l of mask[t*nb + j] is set where pixel p = p0 + 8*j + l (p < p1) of tap t reads
 * inside the image; idx (unless NULL) gets the pixel's input index at tap (0, 0) (pixels
 * past p1: p0's). The caller has checked that the indices fit in int32. */
static void im2col_masks8(const fc_conv_shape *s, int64_t p0, int64_t p1, int64_t nb,
                          uint8_t *mask, int32_t *idx) {
    const int64_t KK = s->KH * s->KW;
    memset(mask, 0, (size_t)(KK * nb));
    for (int64_t j = 0; j < nb; j++)
        for (int l = 0; l < 8; l++) {
            const int64_t p = p0 + 8 * j + l, q = p < p1 ? p : p0;
            const int64_t ih = q / s->OW * s->sh - s->ph, iw = q % s->OW * s->sw - s->pw;
            if (idx) idx[8 * j + l] = (int32_t)(ih * s->W + iw);
            for (int64_t t = 0; p < p1 && t < KK; t++) {
                const int64_t h = ih + t / s->KW * s->dh, w = iw + t % s->KW * s->dw;
                if (h >= 0 && h < s->H && w >= 0 && w < s->W)
                    mask[t * nb + j] |= (uint8_t)(1u << l);
            }
        }
}

/* A mask byte of im2col_masks8 widened to the 8 lanes of a masked load or gather. */
__attribute__((target("avx2"))) static inline __m256i im2col_lanes8(uint8_t m) {
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(m), bit), bit);
}

/* The same on the AVX2 GEMM's slivers of 16 floats: 8 pixels per masked load, the masks kept
 * as bytes (a lane per bit) and widened per load. 3x3 512->512 @7 on the AVX2 kernel, one
 * thread: 2.91 -> 2.68 ms. */
__attribute__((target("avx2"))) static int im2col_packed_flat8_f32(
    const float *x, const fc_conv_shape *s, int64_t r0, int64_t r1, int64_t p0, int64_t p1,
    int64_t ldk, float *Bp) {
    const int64_t KK = s->KH * s->KW, nb = ceil_div(p1 - p0, 16) * 2; /* whole slivers */
    if (KK * nb > IM2COL_FLAT_MAXMASK) return 0;
    uint8_t mask[IM2COL_FLAT_MAXMASK];
    im2col_masks8(s, p0, p1, nb, mask, NULL);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t c = r / KK, t = r % KK, kh = t / s->KW, kw = t % s->KW;
        const float *src = x + c * s->H * s->W + p0 + (kh * s->dh - s->ph) * s->W +
                           (kw * s->dw - s->pw);
        float *dst = Bp + (r - r0) * 16;
        const uint8_t *mt = mask + t * nb;
        for (int64_t j = 0; j < nb; j++)
            _mm256_storeu_ps(dst + (j >> 1) * ldk * 16 + (j & 1) * 8,
                             _mm256_maskload_ps(src + 8 * j, im2col_lanes8(mt[j])));
    }
    return 1;
}

/* im2col_packed_gather_f32 on the AVX2 GEMM's slivers of 16 floats: 8 pixels per masked
 * gather (the masks kept as bytes, a lane per bit, and widened per gather; the indices made
 * once per call). The general loop's call per output row and sliver (runs of 28 pixels and
 * less, copied at stride 2) was 22% of ResNet-50's 3x3/2 128->128 @56 on the AVX2 kernel,
 * two threads. Returns 0 (nothing written) where the indices or masks would not fit. */
__attribute__((target("avx2"))) static int im2col_packed_gather8_f32(
    const float *x, const fc_conv_shape *s, int64_t r0, int64_t r1, int64_t p0, int64_t p1,
    int64_t ldk, float *Bp) {
    const int64_t KK = s->KH * s->KW, nb = ceil_div(p1 - p0, 16) * 2; /* whole slivers */
    if (KK * nb > IM2COL_FLAT_MAXMASK || nb > 2 * IM2COL_GATHER_MAXBLK) return 0;
    if (!im2col_idx_fits(s)) return 0;
    uint8_t mask[IM2COL_FLAT_MAXMASK];
    int32_t idx[2 * IM2COL_GATHER_MAXBLK * 8];
    im2col_masks8(s, p0, p1, nb, mask, idx);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t c = r / KK, t = r % KK, kh = t / s->KW, kw = t % s->KW;
        const float *src = x + c * s->H * s->W + kh * s->dh * s->W + kw * s->dw;
        float *dst = Bp + (r - r0) * 16;
        const uint8_t *mt = mask + t * nb;
        for (int64_t j = 0; j < nb; j++)
            _mm256_storeu_ps(dst + (j >> 1) * ldk * 16 + (j & 1) * 8,
                             _mm256_mask_i32gather_ps(
                                 _mm256_setzero_ps(), src,
                                 _mm256_loadu_si256((const __m256i *)(idx + 8 * j)),
                                 _mm256_castsi256_ps(im2col_lanes8(mt[j])), 4));
    }
    return 1;
}
#endif

#define FC_INSTANTIATE "im2col.c"
#include "common.h"

#else /* ------------------------------------------------------------ typed section */

/* Strided copies (stride-2 convs) are gathers, which the baseline ISA does one element at a
 * time: compiled per instruction set and picked by the level in force (FC_MULTIVERSION, so
 * FASTCONV_ISA's cap holds; an ifunc chose by the CPU alone). */
FC_INLINE void FC_CAT(FN(copy_strided), _body)(T *restrict dst, const T *restrict src,
                                               int64_t n, int64_t stride) {
    if (stride == 2) /* the common case, with a constant stride the compiler uses shuffles */
        for (int64_t i = 0; i < n; i++) dst[i] = src[2 * i];
    else
        for (int64_t i = 0; i < n; i++) dst[i] = src[i * stride];
}
FC_MULTIVERSION(FN(copy_strided), (T *restrict dst, const T *restrict src, int64_t n,
                                   int64_t stride), (dst, src, n, stride))

/* dst[0 .. e-a) = the tap's inputs for output columns [a, e) of one output row whose input
 * row is ih: zeros, then the in-image run [lo, hi) (a memcpy at stride 1), then zeros. */
static void FN(tap_run)(const T *xc, const fc_conv_shape *s, int64_t ih, int64_t off,
                        int64_t lo, int64_t hi, int64_t a, int64_t e, T *dst) {
    if (ih < 0 || ih >= s->H) {
        memset(dst, 0, (size_t)(e - a) * sizeof(T));
        return;
    }
    const T *row = xc + ih * s->W; /* read at ow*sw + off, inside [0, W) for ow in [lo, hi) */
    /* the in-image run clipped to [a, e): a <= l <= h <= e (lo may lie past e, hi before a) */
    int64_t l = lo > a ? lo : a, h = hi < e ? hi : e;
    if (l > e) l = e;
    if (h < l) h = l;
    for (int64_t ow = a; ow < l; ow++) dst[ow - a] = 0;
    if (s->sw == 1)
        memcpy(dst + (l - a), row + l + off, (size_t)(h - l) * sizeof(T));
    else if (h > l)
        FN(copy_strided)(dst + (l - a), row + l * s->sw + off, h - l, s->sw);
    for (int64_t ow = h; ow < e; ow++) dst[ow - a] = 0;
}

void FN(fc_im2col)(const T *x, const fc_conv_shape *s, int64_t r0, int64_t r1, int64_t p0,
                   int64_t p1, T *col) {
    /* 0 <= r0 <= r1 <= C/G*KH*KW, 0 <= p0 <= p1 <= OH*OW */
    FC_ASSERT_CONV_SHAPE(s);
    FC_ASSERT(0 <= r0 && r0 <= r1 && r1 <= s->C / s->G * s->KH * s->KW);
    FC_ASSERT(0 <= p0 && p0 <= p1 && p1 <= s->OH * s->OW);
    const int64_t KK = s->KH * s->KW, np = p1 - p0;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t c = r / KK, kh = (r % KK) / s->KW, kw = r % s->KW;
        const int64_t off = kw * s->dw - s->pw;
        int64_t lo, hi;
        valid_columns(s, kw, &lo, &hi);
        const T *xc = x + c * s->H * s->W;
        T *dst = col + (r - r0) * np;
        for (int64_t p = p0; p < p1;) { /* one output row (or its part inside [p0, p1)) */
            const int64_t oh = p / s->OW, a = p % s->OW;
            const int64_t e = (p1 - p < s->OW - a) ? a + (p1 - p) : s->OW; /* columns [a, e) */
            FN(tap_run)(xc, s, oh * s->sh - s->ph + kh * s->dh, off, lo, hi, a, e, dst);
            dst += e - a;
            p += e - a;
        }
    }
}

/* The same matrix written straight into the GEMM's packed-B layout: slivers of nr pixels,
 * each k-major (Bp[(q / nr)*R*nr + (r - r0)*nr + q % nr] for pixel p0 + q, R = r1 - r0),
 * with the columns past p1 zero. This saves the GEMM's copy of col into its packed panel. */
void FN(fc_im2col_packed)(const T *x, const fc_conv_shape *s, int64_t r0, int64_t r1,
                          int64_t p0, int64_t p1, int64_t nr, T *Bp) {
    /* the ranges of fc_im2col; nr >= 1; Bp holds round_up(p1 - p0, nr) * (r1 - r0) elements */
    FC_ASSERT_CONV_SHAPE(s);
    FC_ASSERT(0 <= r0 && r0 <= r1 && r1 <= s->C / s->G * s->KH * s->KW);
    FC_ASSERT(0 <= p0 && p0 <= p1 && p1 <= s->OH * s->OW && nr >= 1);
    const int64_t KK = s->KH * s->KW, R = r1 - r0, np = p1 - p0;
    const int64_t last = np / nr, tail = np % nr; /* the last sliver is partial if tail > 0 */
#if defined(__x86_64__)
    /* slivers of 32 / 16 floats: the AVX-512 / AVX2 GEMM's (the levels: FASTCONV_ISA's cap) */
    if (!IS_F64 && s->sh == 1 && s->sw == 1 && s->OW == s->W && s->H < INT32_MAX / 2 &&
        s->W < INT32_MAX / 2) {
        const float *xf = (const float *)(const void *)x;
        float *bf = (float *)(void *)Bp;
        if (nr == 32 && fc_dwpool_isa(-1) == 2 &&
            im2col_packed_flat_f32(xf, s, r0, r1, p0, p1, R, bf))
            return;
        if (nr == 16 && fc_dwpool_isa(-1) >= 1 &&
            im2col_packed_flat8_f32(xf, s, r0, r1, p0, p1, R, bf))
            return;
    } else if (!IS_F64 && nr == 32 && fc_dwpool_isa(-1) == 2 &&
               im2col_packed_gather_f32((const float *)(const void *)x, s, r0, r1, p0, p1, R,
                                        (float *)(void *)Bp)) {
        return;
    } else if (!IS_F64 && nr == 16 && fc_dwpool_isa(-1) >= 1 &&
               im2col_packed_gather8_f32((const float *)(const void *)x, s, r0, r1, p0, p1, R,
                                         (float *)(void *)Bp)) {
        return;
    }
#endif
    for (int64_t r = r0; r < r1; r++) {
        const int64_t c = r / KK, kh = (r % KK) / s->KW, kw = r % s->KW;
        const int64_t off = kw * s->dw - s->pw;
        int64_t lo, hi;
        valid_columns(s, kw, &lo, &hi);
        const T *xc = x + c * s->H * s->W;
        T *base = Bp + (r - r0) * nr;
        /* runs that stay in one output row and one sliver, stepped without divisions */
        int64_t oh = p0 / s->OW, ow = p0 % s->OW, sl = 0, so = 0;
        for (int64_t left = np; left > 0;) {
            int64_t len = min64(min64(s->OW - ow, nr - so), left);
            FN(tap_run)(xc, s, oh * s->sh - s->ph + kh * s->dh, off, lo, hi, ow, ow + len,
                        base + sl * R * nr + so);
            left -= len;
            if ((ow += len) == s->OW) ow = 0, oh++;
            if ((so += len) == nr) so = 0, sl++;
        }
        if (tail)
            memset(base + last * R * nr + tail, 0, (size_t)(nr - tail) * sizeof(T));
    }
}

#if defined(__x86_64__) && !IS_F64
/* col2im_rows' stride-2 pair (rows kw and kw + 1 of one channel and kh; their col rows s0
 * and s1 = s0 + ldr) with AVX-512, over pixels [p0, p1): per output row, rw[2*ow] +=
 * s0[ow] for ow in [l0, h0) and rw[2*ow + 1] += s1[ow] for ow in [l1, h1) (the ranges as in
 * col2im_rows; a row without a partner, the last of an odd KW, passes [lo1, hi1) empty and
 * s1 is not read), 16 values of each a step: masked loads, two permutes interleave them, and
 * masked loads, adds and stores of the 32 outputs (their masks interleaved by pdep, as in
 * im2col_even16) write exactly the elements the scalar
 * loops write, each once, so the sums are the same. gcc's vectorised loops spent most of
 * their time outside the vectors on rows of 16 (tconv 4x4/2 128->64 @16: col2im 16% of the
 * call, `perf`). */
__attribute__((target("avx512f,bmi2"))) static void fc_col2im_pair512(
    const float *s0, int64_t ldr, float *xc, const fc_conv_shape *s, int64_t kh, int64_t off,
    int64_t lo, int64_t hi, int64_t lo1, int64_t hi1, int64_t p0, int64_t p1) {
    const __m512i ilo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ihi = _mm512_add_epi32(ilo, _mm512_set1_epi32(8));
    int64_t oh = p0 / s->OW, a = p0 % s->OW;
    for (int64_t p = p0; p < p1;) { /* one output row (or its part inside [p0, p1)) */
        const int64_t e = (p1 - p < s->OW - a) ? a + (p1 - p) : s->OW;
        const int64_t ih = oh * s->sh - s->ph + kh * s->dh;
        if (ih >= 0 && ih < s->H) {
            float *rw = xc + ih * s->W + off;
            const float *r0 = s0 - a, *r1 = s0 + ldr - a;
            const int64_t l0 = max64(lo, a), h0 = min64(hi, e);
            const int64_t l1 = max64(lo1, a), h1 = min64(hi1, e);
            for (int64_t ow = min64(l0, l1); ow < max64(h0, h1); ow += 16) {
                const uint32_t m0 = fc_lanes16(l0 - ow, h0 - ow);
                const uint32_t m1 = fc_lanes16(l1 - ow, h1 - ow);
                const __m512 v0 = _mm512_maskz_loadu_ps((__mmask16)m0, r0 + ow);
                const __m512 v1 = _mm512_maskz_loadu_ps((__mmask16)m1, r1 + ow);
                const uint32_t mm = _pdep_u32(m0, 0x55555555u) | _pdep_u32(m1, 0xAAAAAAAAu);
                const __mmask16 ma = (__mmask16)mm, mb = (__mmask16)(mm >> 16);
                float *d = rw + 2 * ow;
                _mm512_mask_storeu_ps(d, ma, _mm512_add_ps(_mm512_maskz_loadu_ps(ma, d),
                                                           _mm512_permutex2var_ps(v0, ilo, v1)));
                if (mb)
                    _mm512_mask_storeu_ps(d + 16, mb,
                                          _mm512_add_ps(_mm512_maskz_loadu_ps(mb, d + 16),
                                                        _mm512_permutex2var_ps(v0, ihi, v1)));
            }
        }
        s0 += e - a;
        p += e - a;
        a = 0;
        oh++;
    }
}

/* fc_col2im's transposed col with AVX-512, for one whole channel's KH*KW rows (col: its
 * first row at pixel p0, pixels ldp apart) where a kernel row's taps are adjacent columns
 * (dw = 1, KW <= 16): per pixel and kh, the KW values of that kernel row go to KW adjacent
 * elements of one row of x, one masked load, add and store (lanes outside x's row masked
 * off), in place of a scalar add per tap with its bounds test (tconv 4x4/2 256->128 @8, one
 * thread: the scalar loop 27% of the call, `perf`). Each element still gets its values in
 * pixel order, one per pixel at most: the same sums. */
FC_T512 static void fc_col2im_t512(const float *col, int64_t ldp, float *xc,
                                   const fc_conv_shape *s, int64_t p0, int64_t p1) {
    const __mmask16 taps = (__mmask16)fc_lanes16(0, s->KW);
    int64_t oh = p0 / s->OW, ow = p0 % s->OW;
    for (int64_t p = p0; p < p1; p++, col += ldp) {
        const int64_t iw = ow * s->sw - s->pw;
        const __mmask16 m = taps & (__mmask16)fc_lanes16(-iw, s->W - iw);
        for (int64_t kh = 0; kh < s->KH; kh++) {
            const int64_t ih = oh * s->sh - s->ph + kh * s->dh;
            if (ih < 0 || ih >= s->H || !m) continue;
            float *d = xc + ih * s->W + iw;
            const __m512 v = _mm512_maskz_loadu_ps(m, col + kh * s->KW);
            _mm512_mask_storeu_ps(d, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), v));
        }
        if (++ow == s->OW) ow = 0, oh++;
    }
}
#endif

static void FN(col2im_rows)(const T *col, int64_t ldr, int64_t ldp, const fc_conv_shape *s,
                            int64_t r0, int64_t r1, int64_t p0, int64_t p1, T *x);

void FN(fc_col2im)(const T *col, int64_t ldr, int64_t ldp, const fc_conv_shape *s, int64_t r0,
                   int64_t r1, int64_t p0, int64_t p1, T *x) {
    /* same ranges as fc_im2col; col(r, p) = col[(r - r0)*ldr + (p - p0)*ldp] (row-major:
     * ldr = p1 - p0, ldp = 1; transposed: ldr = 1, ldp = r1 - r0); x is added to */
    FC_ASSERT_CONV_SHAPE(s);
    FC_ASSERT(0 <= r0 && r0 <= r1 && r1 <= s->C / s->G * s->KH * s->KW);
    FC_ASSERT(0 <= p0 && p0 <= p1 && p1 <= s->OH * s->OW);
    FC_ASSERT((ldr >= p1 - p0 && ldp == 1) || (ldr == 1 && ldp >= r1 - r0));
    const int64_t KK = s->KH * s->KW;
    if (ldr == 1 && r1 - r0 > 1) {
        /* Transposed col: one channel's rows at a time (KH*KW of them, contiguous in col),
         * all pixels, so the writes stay inside one channel of x and the reads are short
         * contiguous runs. (Walking all rows per pixel would write to every channel, often
         * 4 KiB apart, and thrash L1.) Callers pad ldp off multiples of 4 KiB for the same
         * reason. */
#if defined(__x86_64__) && !IS_F64
        const int t512 = s->dw == 1 && s->KW <= 16 && fc_dwpool_isa(-1) == 2;
#endif
        for (int64_t rc = r0; rc < r1;) {
            const int64_t c = rc / KK, re = (c + 1) * KK < r1 ? (c + 1) * KK : r1;
            T *xc = x + c * s->H * s->W;
#if defined(__x86_64__) && !IS_F64
            if (t512 && rc == c * KK && re - rc == KK) { /* a whole channel */
                fc_col2im_t512(col + (rc - r0), ldp, xc, s, p0, p1);
                rc = re;
                continue;
            }
#endif
            int64_t oh = p0 / s->OW, ow = p0 % s->OW;
            for (int64_t p = p0; p < p1; p++) {
                const T *src = col + (p - p0) * ldp + (rc - r0);
                int64_t kh = (rc % KK) / s->KW, kw = rc % s->KW;
                for (int64_t r = rc; r < re; r++) {
                    int64_t ih = oh * s->sh - s->ph + kh * s->dh;
                    int64_t iw = ow * s->sw - s->pw + kw * s->dw;
                    if (ih >= 0 && ih < s->H && iw >= 0 && iw < s->W)
                        xc[ih * s->W + iw] += src[r - rc];
                    if (++kw == s->KW) kw = 0, kh++;
                }
                if (++ow == s->OW) ow = 0, oh++;
            }
            rc = re;
        }
        return;
    }
    FN(col2im_rows)(col, ldr, ldp, s, r0, r1, p0, p1, x);
}

/* fc_col2im's row-major case, compiled per instruction set (the stride-2 loops interleave
 * two rows' values: vector permutes where the ISA has them). */
FC_INLINE void FC_CAT(FN(col2im_rows), _body)(const T *col, int64_t ldr, int64_t ldp,
                                              const fc_conv_shape *s, int64_t r0, int64_t r1,
                                              int64_t p0, int64_t p1, T *x) {
    const int64_t KK = s->KH * s->KW;
#if defined(__x86_64__) && !IS_F64
    const int v512 = fc_dwpool_isa(-1) == 2; /* the pairs by fc_col2im_pair512 */
#endif
    for (int64_t r = r0; r < r1; r++) {
        int64_t c = r / KK, kh = (r % KK) / s->KW, kw = r % s->KW;
        int64_t lo, hi;
        valid_columns(s, kw, &lo, &hi);
        T *xc = x + c * s->H * s->W;
        const int64_t off = kw * s->dw - s->pw;
        const T *src = col + (r - r0) * ldr;
        /* Stride 2: rows kw and kw + 1 add to the even and the odd columns of the same input
         * rows, so they run together, their two values side by side (a loop gcc vectorises;
         * one row alone is a stride-2 scatter). No element gets a value from both, so each
         * element's sum is in the same order as one row after the other. (ldp is 1 here:
         * a transposed col of several rows took the branch above.) */
        const int pair = s->sw == 2 && s->dw == 1 && kw + 1 < s->KW && r + 1 < r1;
        int64_t lo1 = 0, hi1 = 0;
        if (pair) valid_columns(s, kw + 1, &lo1, &hi1);
#if defined(__x86_64__) && !IS_F64
        if (v512 && s->sw == 2 && ldp == 1) { /* the pair, or a row alone (odd columns: none) */
            fc_col2im_pair512(src, ldr, xc, s, kh, off, lo, hi, pair ? lo1 : lo, pair ? hi1 : lo,
                              p0, p1);
            r += pair; /* row kw + 1 is done too */
            continue;
        }
#endif
        int64_t oh = p0 / s->OW, a = p0 % s->OW;
        for (int64_t p = p0; p < p1;) { /* one output row (or its part inside [p0, p1)) */
            int64_t e = (p1 - p < s->OW - a) ? a + (p1 - p) : s->OW;
            int64_t ih = oh * s->sh - s->ph + kh * s->dh;
            if (ih >= 0 && ih < s->H) {
                T *row = xc + ih * s->W;
                const int64_t l0 = lo > a ? lo : a, h0 = hi < e ? hi : e;
                if (pair) {
                    T *restrict rw = row + off;
                    const T *restrict s0 = src - a, *restrict s1 = src + ldr - a;
                    /* tap kw + 1 reaches one column further right: its valid outputs
                     * [l1, h1) start and end at or before kw's [l0, h0) */
                    const int64_t l1 = lo1 > a ? lo1 : a, h1 = hi1 < e ? hi1 : e;
                    FC_ASSERT(ldp == 1 && l1 <= l0 && h1 <= h0);
                    for (int64_t ow = l1; ow < h1 && ow < l0; ow++) rw[2 * ow + 1] += s1[ow];
                    for (int64_t ow = l0; ow < h1; ow++) {
                        rw[2 * ow] += s0[ow];
                        rw[2 * ow + 1] += s1[ow];
                    }
                    for (int64_t ow = l0 > h1 ? l0 : h1; ow < h0; ow++) rw[2 * ow] += s0[ow];
                } else if (s->sw == 2 && ldp == 1) {
                    /* A row without a partner (the last of an odd KW): the columns between
                     * its own get + 0 where they lie in the row, so that the loop is the
                     * pair's (vector permutes) instead of a scalar stride-2 scatter. x + 0
                     * is x for every x but -0.0, which x never holds here: the caller's
                     * output starts at +0.0, and sums that start there never give -0.0. */
                    T *restrict rw = row + off;
                    const T *restrict s0 = src - a;
                    int64_t hz = floor_div(s->W - 2 - off, 2) + 1; /* 2*ow + off + 1 < W */
                    hz = hz < l0 ? l0 : (hz > h0 ? h0 : hz);
                    for (int64_t ow = l0; ow < hz; ow++) {
                        rw[2 * ow] += s0[ow];
                        rw[2 * ow + 1] += (T)0;
                    }
                    for (int64_t ow = hz; ow < h0; ow++) rw[2 * ow] += s0[ow];
                } else {
                    for (int64_t ow = l0; ow < h0; ow++)
                        row[ow * s->sw + off] += src[(ow - a) * ldp];
                }
            }
            src += (e - a) * ldp;
            p += e - a;
            a = 0;
            oh++;
        }
        r += pair; /* row kw + 1 is done too */
    }
}
FC_MULTIVERSION(FN(col2im_rows),
                (const T *col, int64_t ldr, int64_t ldp, const fc_conv_shape *s, int64_t r0,
                 int64_t r1, int64_t p0, int64_t p1, T *x),
                (col, ldr, ldp, s, r0, r1, p0, p1, x))

#endif /* FC_TYPED */
