/* runtime.c: library-wide runtime entry points: ABI version, CPU features, OpenMP threads.
 *
 *   fc_abi_version         bumped whenever a declaration of fastconv.h changes meaning
 *   fc_cpu_features        bit mask of the x86 features the kernels choose from (0 elsewhere)
 *   fc_openmp_max_threads  threads an OpenMP region would get by default (1 without OpenMP)
 *   fc_set_threads         the process-wide thread count of the pooling and depthwise kernels
 *   fc_threads             that count (0 set = OpenMP's default)
 *
 * The convolution kernels take the thread count, the workspace bound and the micro-kernel as
 * arguments of every call; the pooling and depthwise kernels read the one process-wide thread
 * count (an atomic, set by fastconv.set_num_threads). Any number of Python threads may call
 * in at once.
 *
 * Build: `pip install -e .` (or `python csrc/build_ffi.py` for an in-place rebuild) compiles
 * every C file of csrc/ into fastconv._fastconv_c.
 */
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "fastconv.h"

int fc_abi_version(void) { return 1; }

/* Feature bits, mirrored by fastconv/backends/c.py (_FEATURE_BITS). __builtin_cpu_supports
 * also checks that the OS saves the wide registers (XCR0), so a set bit means usable. */
int fc_cpu_features(void) {
    int f = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) f |= 1;
    if (__builtin_cpu_supports("avx")) f |= 2;
    if (__builtin_cpu_supports("avx2")) f |= 4;
    if (__builtin_cpu_supports("fma")) f |= 8;
    if (__builtin_cpu_supports("avx512f")) f |= 16;
    if (__builtin_cpu_supports("avx512vl")) f |= 32;
    if (__builtin_cpu_supports("avx512bw")) f |= 64;
    if (__builtin_cpu_supports("avx512dq")) f |= 128;
#endif
    return f;
}

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
