/* fastconv.h: the C API of fastconv, read verbatim by csrc/build_ffi.py as the cffi cdef.
 *
 * Only plain declarations go here (no macros, no includes, no comments inside
 * declarations that cffi cannot parse): cffi parses this file. Every array argument is
 * C-contiguous; sizes and indices are int64_t. Each source file owns one section below.
 */

/* ---- runtime.c: version, CPU features, threads ---- */
int fc_abi_version(void);

/* ---- gemm.c / im2col.c / conv2d.c / conv_transpose2d.c ---- */

/* ---- depthwise_conv2d.c / pool2d.c ---- */

/* ---- probe.c: machine peak probes for the benchmarks ---- */
int fc_probe_best_isa(void);
double fc_probe_fma_peak(int isa, long long iters);
double fc_probe_copy_bandwidth(float *dst, const float *src, long long n, int reps, int threads);
