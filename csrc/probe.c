/* probe.c: what this machine can do at best, measured, for `fastconv bench` to put each
 * kernel's speed next to: single-core FMA throughput, and the bandwidth of each level of the
 * memory hierarchy (a kernel whose working set fits in L2 is bound by L2's bandwidth, not by
 * memory's).
 *
 *   fc_probe_best_isa         the widest FMA instruction set this CPU runs (2, 1 or 0)
 *   fc_probe_fma_peak         single-core float32 multiply-add throughput, GFLOP/s
 *   fc_probe_copy_bandwidth   memory bandwidth of a large copy, GB/s (bytes read + written)
 *   fc_probe_read_bandwidth   read bandwidth of a sum over an array, GB/s (the array's size
 *                             picks the level: a few MB stay in the last-level cache)
 *   fc_probe_cache_bandwidth  copy or read bandwidth of a working set that stays in a cache
 *                             level: each thread passes over its own slice many times per
 *                             timing, so neither the thread start-up nor the first, cold pass
 *                             counts
 *
 * ISA codes: 0 portable C (whatever the compiler makes of it), 1 AVX2 + FMA (8 floats),
 * 2 AVX-512F (16 floats). The x86 variants carry __attribute__((target(...))), so this file
 * builds without -march flags and the CPU features are tested at run time (fc_cpu_has,
 * common.h: the one CPU-feature test).
 *
 * Build: `python csrc/build_ffi.py` (part of the fastconv._fastconv_c extension).
 */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "common.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* Independent accumulator chains per loop trip. An FMA's result is needed by the next FMA of
 * the same chain only, so with CHAINS >= latency x pipes the FMA units never wait: the loop
 * runs at the machine's multiply-add throughput (4-cycle latency x 2 pipes needs 8). */
#define CHAINS 12

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The accumulators follow c = c * a + b with a just below 1: they converge to b / (1 - a)
 * and never overflow or become denormal, which would slow some CPUs down. */
static const float A = 0.999999f;
static const float B = 1e-6f;

/* Sink for every kernel's sum, so the compiler cannot drop the loops. */
static volatile float probe_sink;

/* v0: portable C. Element-wise loops over CHAINS x 8 floats; the compiler vectorises them with
 * the baseline ISA (SSE2 on x86-64). Returns the floating-point operations done. */
static double fma_portable(int64_t iters) {
    float c[CHAINS * 8];
    for (int j = 0; j < CHAINS * 8; j++) c[j] = 0.0f;
    for (int64_t i = 0; i < iters; i++)
        for (int j = 0; j < CHAINS * 8; j++) c[j] = c[j] * A + B;
    float s = 0.0f;
    for (int j = 0; j < CHAINS * 8; j++) s += c[j];
    probe_sink = s;
    return 2.0 * CHAINS * 8 * (double)iters;
}

#if defined(__x86_64__)
/* v1: AVX2 + FMA, 8 floats per instruction, one fused multiply-add per element. */
__attribute__((target("avx2,fma"))) static double fma_avx2(int64_t iters) {
    const __m256 a = _mm256_set1_ps(A), b = _mm256_set1_ps(B);
    __m256 c[CHAINS];
    for (int j = 0; j < CHAINS; j++) c[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < iters; i++) {
        c[0] = _mm256_fmadd_ps(c[0], a, b);
        c[1] = _mm256_fmadd_ps(c[1], a, b);
        c[2] = _mm256_fmadd_ps(c[2], a, b);
        c[3] = _mm256_fmadd_ps(c[3], a, b);
        c[4] = _mm256_fmadd_ps(c[4], a, b);
        c[5] = _mm256_fmadd_ps(c[5], a, b);
        c[6] = _mm256_fmadd_ps(c[6], a, b);
        c[7] = _mm256_fmadd_ps(c[7], a, b);
        c[8] = _mm256_fmadd_ps(c[8], a, b);
        c[9] = _mm256_fmadd_ps(c[9], a, b);
        c[10] = _mm256_fmadd_ps(c[10], a, b);
        c[11] = _mm256_fmadd_ps(c[11], a, b);
    }
    __m256 s = c[0];
    for (int j = 1; j < CHAINS; j++) s = _mm256_add_ps(s, c[j]);
    float out[8];
    _mm256_storeu_ps(out, s);
    probe_sink = out[0] + out[7];
    return 2.0 * CHAINS * 8 * (double)iters;
}

/* v2: AVX-512F, 16 floats per instruction. On CPUs that split 512-bit operations over two
 * 256-bit units this measures the same peak as v1, which is the truth for those CPUs. */
__attribute__((target("avx512f"))) static double fma_avx512(int64_t iters) {
    const __m512 a = _mm512_set1_ps(A), b = _mm512_set1_ps(B);
    __m512 c[CHAINS];
    for (int j = 0; j < CHAINS; j++) c[j] = _mm512_setzero_ps();
    for (int64_t i = 0; i < iters; i++) {
        c[0] = _mm512_fmadd_ps(c[0], a, b);
        c[1] = _mm512_fmadd_ps(c[1], a, b);
        c[2] = _mm512_fmadd_ps(c[2], a, b);
        c[3] = _mm512_fmadd_ps(c[3], a, b);
        c[4] = _mm512_fmadd_ps(c[4], a, b);
        c[5] = _mm512_fmadd_ps(c[5], a, b);
        c[6] = _mm512_fmadd_ps(c[6], a, b);
        c[7] = _mm512_fmadd_ps(c[7], a, b);
        c[8] = _mm512_fmadd_ps(c[8], a, b);
        c[9] = _mm512_fmadd_ps(c[9], a, b);
        c[10] = _mm512_fmadd_ps(c[10], a, b);
        c[11] = _mm512_fmadd_ps(c[11], a, b);
    }
    __m512 s = c[0];
    for (int j = 1; j < CHAINS; j++) s = _mm512_add_ps(s, c[j]);
    float out[16];
    _mm512_storeu_ps(out, s);
    probe_sink = out[0] + out[15];
    return 2.0 * CHAINS * 16 * (double)iters;
}
#endif

int fc_probe_best_isa(void) {
    if (fc_cpu_has(FC_CPU_AVX512F)) return 2;
    if (fc_cpu_has(FC_CPU_AVX2 | FC_CPU_FMA)) return 1;
    return 0;
}

/* Single-core float32 FMA throughput in GFLOP/s, running `iters` trips of the kernel of
 * instruction set `isa` (-1: the best this CPU has). Returns -1 if the CPU lacks `isa`, or
 * `isa` or `iters` is out of range. The caller repeats and keeps the best (others may share
 * the core). */
double fc_probe_fma_peak(int isa, int64_t iters) {
    int best = fc_probe_best_isa();
    if (isa < 0) isa = best;
    if (isa > best || iters < 1) return -1.0;
    double t0 = now_seconds(), flops;
#if defined(__x86_64__)
    if (isa == 2)
        flops = fma_avx512(iters);
    else if (isa == 1)
        flops = fma_avx2(iters);
    else
        flops = fma_portable(iters);
#else
    flops = fma_portable(iters);
#endif
    double t = now_seconds() - t0;
    return t > 0.0 ? flops / t * 1e-9 : -1.0;
}

/* Copy bandwidth in GB/s, counting the bytes read and the bytes written: the best of `reps`
 * copies of src (n floats) into dst, split over `threads` threads (OpenMP; 1 without it).
 * Make n large enough (>= 4x the last-level cache) to measure memory, not cache. */
double fc_probe_copy_bandwidth(float *dst, const float *src, int64_t n, int reps, int threads) {
    if (n < 1 || reps < 1 || threads < 1) return -1.0;
    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_seconds();
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
        for (int part = 0; part < threads; part++) {
            int64_t lo = n * part / threads, hi = n * (part + 1) / threads;
            memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
        }
        double t = now_seconds() - t0;
        if (t > 0.0) {
            double gbs = 2.0 * (double)n * sizeof(float) / t * 1e-9;
            if (gbs > best) best = gbs;
        }
    }
    return best;
}

/* The sum of src[0 : n), 64 floats per trip in four independent vectors (AVX-512 when the
 * CPU has it): a read-only stream with nothing else to do. */
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static float read_sum_avx512(const float *src, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(src + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(src + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(src + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(src + i + 48));
    }
    float out[16], t = 0.0f;
    _mm512_storeu_ps(out, _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (int j = 0; j < 16; j++) t += out[j];
    for (; i < n; i++) t += src[i];
    return t;
}
#endif

static float read_sum_portable(const float *src, int64_t n) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += src[i + j];
    float t = 0.0f;
    for (int j = 0; j < 8; j++) t += s[j];
    for (; i < n; i++) t += src[i];
    return t;
}

/* Read bandwidth in GB/s: the best of `reps` sums of src (n floats), split over `threads`
 * threads. After the first pass an array smaller than the last-level cache is read from
 * it, so this is the bound of a kernel that reads such an input once (global pooling). */
double fc_probe_read_bandwidth(const float *src, int64_t n, int reps, int threads) {
    if (n < 1 || reps < 1 || threads < 1) return -1.0;
    const int wide = fc_probe_best_isa() == 2;
    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_seconds();
        float total = 0.0f;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : total)
#endif
        for (int part = 0; part < threads; part++) {
            int64_t lo = n * part / threads, hi = n * (part + 1) / threads;
#if defined(__x86_64__)
            total += wide ? read_sum_avx512(src + lo, hi - lo) : read_sum_portable(src + lo, hi - lo);
#else
            (void)wide;
            total += read_sum_portable(src + lo, hi - lo);
#endif
        }
        probe_sink = total;
        double t = now_seconds() - t0;
        if (t > 0.0) {
            double gbs = (double)n * sizeof(float) / t * 1e-9;
            if (gbs > best) best = gbs;
        }
    }
    return best;
}

/* Cache bandwidth in GB/s: the best of `reps` timings, each of `passes` passes over src
 * (n floats), split over `threads` threads. dst NULL: each pass sums the slice (bytes read);
 * else it copies the slice into dst (bytes read + written, as fc_probe_copy_bandwidth).
 * Each thread keeps to its own slice for all the passes of a timing, so with n floats small
 * enough (src and dst together under a thread's share of a cache level) every pass after the
 * first is served by that level; one parallel region per timing keeps the thread start-up out
 * of the figure. Returns -1 if an argument is out of range. */
double fc_probe_cache_bandwidth(float *dst, const float *src, int64_t n, int passes, int reps,
                                int threads) {
    if (n < 1 || passes < 1 || reps < 1 || threads < 1) return -1.0;
    const int wide = fc_probe_best_isa() == 2;
    const double bytes_per_pass = (dst ? 2.0 : 1.0) * (double)n * sizeof(float);
    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_seconds();
        float total = 0.0f;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : total)
#endif
        for (int part = 0; part < threads; part++) {
            int64_t lo = n * part / threads, hi = n * (part + 1) / threads;
            for (int p = 0; p < passes; p++) {
                if (dst) {
                    memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
                    /* a compiler barrier: the same copy repeated must still be done */
                    __asm__ __volatile__("" : : "r"(dst) : "memory");
                    continue;
                }
#if defined(__x86_64__)
                total += wide ? read_sum_avx512(src + lo, hi - lo)
                              : read_sum_portable(src + lo, hi - lo);
#else
                (void)wide;
                total += read_sum_portable(src + lo, hi - lo);
#endif
            }
        }
        probe_sink = total;
        double t = now_seconds() - t0;
        if (t > 0.0) {
            double gbs = bytes_per_pass * passes / t * 1e-9;
            if (gbs > best) best = gbs;
        }
    }
    return best;
}
