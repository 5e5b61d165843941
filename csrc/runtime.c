/* runtime.c: library-wide runtime entry points: ABI version, CPU features, the instruction
 * set of the depthwise and pooling kernels, OpenMP threads.
 *
 *   fc_abi_version         bumped whenever a declaration of fastconv.h changes meaning
 *   fc_cpu_features        bit mask (enum fc_cpu_feature) of the x86 features the kernels
 *                          choose from (0 elsewhere): the one CPU probe of the library
 *   fc_dwpool_isa          the instruction-set level of depthwise_conv2d.c and pool2d.c
 *                          (0 portable, 1 AVX2+FMA, 2 AVX-512), optionally capped by tests
 *   fc_openmp_max_threads  threads an OpenMP region would get by default (1 without OpenMP)
 *   fc_set_threads         the process-wide thread count of the pooling, depthwise and
 *                          capsule kernels
 *   fc_threads             that count (0 set = OpenMP's default)
 *
 * The convolution kernels take the thread count, the workspace bound and the micro-kernel as
 * arguments of every call; the pooling, depthwise and capsule kernels read the one
 * process-wide thread count (an atomic, set by fastconv.set_num_threads). Either way the count
 * is an upper bound: the thread pool (parallel.c) uses fewer threads for small calls. Any
 * number of Python threads may call in at once.
 *
 * Build: `pip install -e .` (or `python csrc/build_ffi.py` for an in-place rebuild) compiles
 * every C file of csrc/ into fastconv._fastconv_c. Test: `pytest tests/test_c_conv.py
 * tests/test_c_pool.py tests/test_threads.py`.
 */
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "common.h"

int fc_abi_version(void) { return 8; }

static int fc_probe_features(void) {
    int f = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) f |= FC_CPU_SSE42;
    if (__builtin_cpu_supports("avx")) f |= FC_CPU_AVX;
    if (__builtin_cpu_supports("avx2")) f |= FC_CPU_AVX2;
    if (__builtin_cpu_supports("fma")) f |= FC_CPU_FMA;
    if (__builtin_cpu_supports("avx512f")) f |= FC_CPU_AVX512F;
    if (__builtin_cpu_supports("avx512vl")) f |= FC_CPU_AVX512VL;
    if (__builtin_cpu_supports("avx512bw")) f |= FC_CPU_AVX512BW;
    if (__builtin_cpu_supports("avx512dq")) f |= FC_CPU_AVX512DQ;
#endif
    return f;
}

/* Feature bits, mirrored by fastconv/backends/c/__init__.py (_FEATURE_BITS).
 * __builtin_cpu_supports also checks that the OS saves the wide registers (XCR0), so a set
 * bit means usable. Probed on the first call, then read from a relaxed atomic (two threads
 * racing on the first call both store the same mask). */
int fc_cpu_features(void) {
    static int features = -1;
    int f = __atomic_load_n(&features, __ATOMIC_RELAXED);
    if (f < 0) {
        f = fc_probe_features();
        __atomic_store_n(&features, f, __ATOMIC_RELAXED);
    }
    return f;
}

static int fc_isa_cap = 2; /* highest level the caller allows (tests lower it) */

/* 0: portable C, 1: AVX2 + FMA, 2: AVX-512 (F, VL, BW and DQ). cap < 0 only asks; cap >= 0
 * also limits the level used from now on to min(cap, what the CPU supports). Returns the
 * level in use. */
int fc_dwpool_isa(int cap) {
    int s = 0;
    if (fc_cpu_has(FC_CPU_AVX512F | FC_CPU_AVX512VL | FC_CPU_AVX512BW | FC_CPU_AVX512DQ))
        s = 2;
    else if (fc_cpu_has(FC_CPU_AVX2 | FC_CPU_FMA))
        s = 1;
    if (cap >= 0)
        __atomic_store_n(&fc_isa_cap, cap, __ATOMIC_RELAXED);
    int c = __atomic_load_n(&fc_isa_cap, __ATOMIC_RELAXED);
    return s < c ? s : c;
}

/* The cap alone (2 unless tests or FASTCONV_ISA lowered it): the GEMM's own kernel choice
 * (fc_gemm_best_kernel) honours it too. */
int fc_isa_cap_level(void) { return __atomic_load_n(&fc_isa_cap, __ATOMIC_RELAXED); }

static _Atomic int fc_threads_setting = 0;

void fc_set_threads(int n) { fc_threads_setting = n > 0 ? n : 0; }

int fc_threads(void) {
    int n = fc_threads_setting;
    return n > 0 ? n : fc_openmp_max_threads();
}

int fc_openmp_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
