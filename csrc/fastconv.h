/* fastconv.h: the C API of fastconv, read verbatim by csrc/build_ffi.py as the cffi cdef.
 *
 * Only plain declarations go here (no macros, no includes, no comments inside
 * declarations that cffi cannot parse): cffi parses this file. Every array argument is
 * C-contiguous; sizes and indices are int64_t. Each source file owns one section below.
 */

/* ---- runtime.c: version, CPU features, instruction-set level, threads ---- */
enum fc_cpu_feature {
    FC_CPU_SSE42 = 1,
    FC_CPU_AVX = 2,
    FC_CPU_AVX2 = 4,
    FC_CPU_FMA = 8,
    FC_CPU_AVX512F = 16,
    FC_CPU_AVX512VL = 32,
    FC_CPU_AVX512BW = 64,
    FC_CPU_AVX512DQ = 128
};
int fc_abi_version(void);
int fc_cpu_features(void);
int fc_dwpool_isa(int cap);
int fc_isa_cap_level(void);
int fc_openmp_max_threads(void);
void fc_set_threads(int n);
int fc_threads(void);

/* ---- parallel.c: the thread pool of the conv, depthwise and pooling kernels ---- */
int fc_last_team(void);
int fc_pool_workers(void);
int64_t fc_pool_straggle_ns(void);
void fc_pool_set_spin(int64_t worker_ns, int64_t caller_ns);
void fc_pool_forget_losses(void);
void fc_pool_set_straggle(int64_t ns); /* tests: as if a loss of ns was just seen */

/* ---- gemm.c / im2col.c / conv2d.c / conv_transpose2d.c ---- */
enum fc_gemm_kernel {
    FC_GEMM_NAIVE = -1,
    FC_GEMM_PORTABLE = 0,
    FC_GEMM_AVX2 = 1,
    FC_GEMM_AVX512 = 2,
    FC_GEMM_AUTO = 3
};
enum fc_conv_variant {
    FC_CONV_BEST = 0,
    FC_CONV_V1_DIRECT = 1,
    FC_CONV_V2_IM2COL = 2,
    FC_CONV_V3_BLOCKED = 3,
    FC_CONV_V4_SIMD = 4,
    FC_CONV_V5_THREADS = 5,
    FC_CONV_WINOGRAD_F2 = 6,
    FC_CONV_WINOGRAD_F4 = 7,
    FC_CONV_DIRECT = 8,
    FC_CONV_IMPLICIT_GEMM = 9,
    FC_CONV_WINOGRAD_F3 = 10
};
typedef struct {
    int64_t N, C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, G;
} fc_conv_shape;

int fc_gemm_best_kernel(void);
const char *fc_gemm_kernel_name(int kernel);
int64_t fc_gemm_mr(int kernel, int is_f64);
int64_t fc_gemm_nr(int kernel, int is_f64);
int64_t fc_gemm_work_elems(int kernel, int is_f64, int64_t M, int64_t N, int64_t K);
void fc_gemm_f32(int kernel, int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa,
                 int64_t csa, const float *B, int64_t ldb, float *C, int64_t ldc,
                 int accumulate, float *work);
void fc_gemm_f64(int kernel, int64_t M, int64_t N, int64_t K, const double *A, int64_t rsa,
                 int64_t csa, const double *B, int64_t ldb, double *C, int64_t ldc,
                 int accumulate, double *work);
void fc_pack_a_f32(int kernel, int64_t M, int64_t K, const float *A, int64_t rsa, int64_t csa,
                   float *Ap);
void fc_pack_a_f64(int kernel, int64_t M, int64_t K, const double *A, int64_t rsa,
                   int64_t csa, double *Ap);
void fc_gemm_packed_f32(int kernel, int64_t M, int64_t N, int64_t K, const float *Ap,
                        int64_t a_k, const float *Bp, float *C, int64_t ldc, int accumulate);
void fc_gemm_packed_f64(int kernel, int64_t M, int64_t N, int64_t K, const double *Ap,
                        int64_t a_k, const double *Bp, double *C, int64_t ldc, int accumulate);

/* What fc_gemm_ep / fc_gemm_packed_ep do to C once it holds the whole product, tile by tile
 * while each is in L1: C = act(scale[i] * (C + bias[i]) + shift[i] + residual[i, j]) for row
 * i, column j (the fc_epilogue of a conv, per GEMM row). Pointers of the GEMM's dtype, NULL
 * for none; residual is C-shaped with row stride ldr; activation: enum fc_activation. */
typedef struct {
    const void *bias, *scale, *shift, *residual;
    int64_t ldr;
    int activation;
} fc_gemm_tail;
void fc_gemm_ep_f32(int kernel, int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa,
                    int64_t csa, const float *B, int64_t ldb, float *C, int64_t ldc,
                    int accumulate, float *work, const fc_gemm_tail *t);
void fc_gemm_ep_f64(int kernel, int64_t M, int64_t N, int64_t K, const double *A, int64_t rsa,
                    int64_t csa, const double *B, int64_t ldb, double *C, int64_t ldc,
                    int accumulate, double *work, const fc_gemm_tail *t);
void fc_gemm_packed_ep_f32(int kernel, int64_t M, int64_t N, int64_t K, const float *Ap,
                           int64_t a_k, const float *Bp, float *C, int64_t ldc, int accumulate,
                           const fc_gemm_tail *t);
void fc_gemm_packed_ep_f64(int kernel, int64_t M, int64_t N, int64_t K, const double *Ap,
                           int64_t a_k, const double *Bp, double *C, int64_t ldc,
                           int accumulate, const fc_gemm_tail *t);
int fc_gemm_a_in_place_ok_f32(int kernel, int64_t N);
int fc_gemm_a_in_place_ok_f64(int kernel, int64_t N);
void fc_gemm_a_in_place_ep_f32(int kernel, int64_t M, int64_t N, int64_t K, const float *A,
                               int64_t rsa, const float *Bp, float *C, int64_t ldc,
                               int accumulate, const fc_gemm_tail *t, float *Ap);
void fc_gemm_a_in_place_ep_f64(int kernel, int64_t M, int64_t N, int64_t K, const double *A,
                               int64_t rsa, const double *Bp, double *C, int64_t ldc,
                               int accumulate, const fc_gemm_tail *t, double *Ap);

void fc_im2col_f32(const float *x, const fc_conv_shape *s, int64_t r0, int64_t r1,
                   int64_t p0, int64_t p1, float *col);
void fc_im2col_f64(const double *x, const fc_conv_shape *s, int64_t r0, int64_t r1,
                   int64_t p0, int64_t p1, double *col);
void fc_im2col_packed_f32(const float *x, const fc_conv_shape *s, int64_t r0, int64_t r1,
                          int64_t p0, int64_t p1, int64_t nr, float *Bp);
void fc_im2col_packed_f64(const double *x, const fc_conv_shape *s, int64_t r0, int64_t r1,
                          int64_t p0, int64_t p1, int64_t nr, double *Bp);
void fc_col2im_f32(const float *col, int64_t ldr, int64_t ldp, const fc_conv_shape *s,
                   int64_t r0, int64_t r1, int64_t p0, int64_t p1, float *y);
void fc_col2im_f64(const double *col, int64_t ldr, int64_t ldp, const fc_conv_shape *s,
                   int64_t r0, int64_t r1, int64_t p0, int64_t p1, double *y);

/* A fused epilogue, applied to each output block while it is in cache:
 *   y = act(scale[o] * (conv + b[o]) + shift[o] + residual)
 * scale, shift: (OC,) of the output's dtype or NULL (1 and 0); residual: shaped as y, or
 * NULL; activation: enum fc_activation. Batch norm in inference is scale = gamma /
 * sqrt(var + eps), shift = beta - mean * scale. */
enum fc_activation { FC_ACT_NONE = 0, FC_ACT_RELU = 1, FC_ACT_RELU6 = 2 };
typedef struct {
    const void *scale, *shift, *residual;
    int activation;
} fc_epilogue;

int fc_conv2d_f32(const float *x, const float *w, const float *b, float *y,
                  const fc_conv_shape *s, int variant, int kernel, int nthreads,
                  int64_t work_bytes);
int fc_conv2d_f64(const double *x, const double *w, const double *b, double *y,
                  const fc_conv_shape *s, int variant, int kernel, int nthreads,
                  int64_t work_bytes);
/* The path fc_conv2d's default variant takes for a geometry (fc_conv2d_path_*). */
enum fc_conv_path { FC_PATH_GEMM_1X1 = 1, FC_PATH_IM2COL_GEMM = 2, FC_PATH_WINOGRAD_F2 = 3,
                    FC_PATH_WINOGRAD_F4 = 4, FC_PATH_DIRECT = 5, FC_PATH_WINOGRAD_F3 = 6,
                    FC_PATH_IMPLICIT_GEMM = 7 };
int fc_conv2d_path_f32(const fc_conv_shape *s, int nthreads);
int fc_conv2d_path_f64(const fc_conv_shape *s, int nthreads);
/* fc_conv2d with an epilogue (NULL: none); fc_conv2d is this with NULL. */
int fc_conv2d_ep_f32(const float *x, const float *w, const float *b, float *y,
                     const fc_conv_shape *s, int variant, int kernel, int nthreads,
                     int64_t work_bytes, const fc_epilogue *ep);
int fc_conv2d_ep_f64(const double *x, const double *w, const double *b, double *y,
                     const fc_conv_shape *s, int variant, int kernel, int nthreads,
                     int64_t work_bytes, const fc_epilogue *ep);
int fc_conv_transpose2d_f32(const float *x, const float *w, const float *b, float *y,
                            const fc_conv_shape *s, int kernel, int nthreads,
                            int64_t work_bytes);
int fc_conv_transpose2d_f64(const double *x, const double *w, const double *b, double *y,
                            const fc_conv_shape *s, int kernel, int nthreads,
                            int64_t work_bytes);

/* ---- depthwise_conv2d.c / pool2d.c ----
 * depthwise and separable take the depthwise stage's fc_conv_shape (G = C, OC = C*m);
 * max / avg pooling take an fc_pool_shape (avg: dh = dw = 1). */
typedef struct {
    int64_t N, C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw;
} fc_pool_shape;

void fc_depthwise_conv2d_f32(const float *x, const float *w, const float *b, float *y,
                             const fc_conv_shape *s);
void fc_depthwise_conv2d_f64(const double *x, const double *w, const double *b, double *y,
                             const fc_conv_shape *s);
void fc_depthwise_conv2d_ep_f32(const float *x, const float *w, const float *b, float *y,
                                const fc_conv_shape *s, const fc_epilogue *ep);
void fc_depthwise_conv2d_ep_f64(const double *x, const double *w, const double *b,
                                double *y, const fc_conv_shape *s, const fc_epilogue *ep);
/* The path fc_depthwise_conv2d takes for a geometry (fc_depthwise_path_*). */
enum fc_dw_path { FC_DW_ROWS_DIRECT = 1, FC_DW_ROWS_PADDED = 2, FC_DW_FLAT_AVX512 = 3,
                  FC_DW_3X3_AVX512 = 4, FC_DW_3X3_AVX2 = 5, FC_DW_LANES_AVX512 = 6 };
int fc_depthwise_path_f32(const fc_conv_shape *s);
int fc_depthwise_path_f64(const fc_conv_shape *s);
int fc_separable_conv2d_f32(const float *x, const float *wd, const float *bd, const float *wp,
                            const float *bp, float *y, const fc_conv_shape *s, int64_t OC);
int fc_separable_conv2d_f64(const double *x, const double *wd, const double *bd,
                            const double *wp, const double *bp, double *y,
                            const fc_conv_shape *s, int64_t OC);
void fc_max_pool2d_f32(const float *x, float *y, int64_t *idx, const fc_pool_shape *s);
void fc_max_pool2d_f64(const double *x, double *y, int64_t *idx, const fc_pool_shape *s);
void fc_avg_pool2d_f32(const float *x, float *y, const fc_pool_shape *s, int count_include_pad,
                       int64_t divisor);
void fc_avg_pool2d_f64(const double *x, double *y, const fc_pool_shape *s,
                       int count_include_pad, int64_t divisor);
void fc_adaptive_avg_pool2d_f32(const float *x, float *y, int64_t N, int64_t C, int64_t H,
                                int64_t W, int64_t OH, int64_t OW);
void fc_adaptive_avg_pool2d_f64(const double *x, double *y, int64_t N, int64_t C, int64_t H,
                                int64_t W, int64_t OH, int64_t OW);
void fc_adaptive_max_pool2d_f32(const float *x, float *y, int64_t *idx, int64_t N, int64_t C,
                                int64_t H, int64_t W, int64_t OH, int64_t OW);
void fc_adaptive_max_pool2d_f64(const double *x, double *y, int64_t *idx, int64_t N, int64_t C,
                                int64_t H, int64_t W, int64_t OH, int64_t OW);
void fc_max_pool2d_backward_f32(const float *gy, const int64_t *idx, float *gx, int64_t N,
                                int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW);
void fc_max_pool2d_backward_f64(const double *gy, const int64_t *idx, double *gx, int64_t N,
                                int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW);
void fc_avg_pool2d_backward_f32(const float *gy, float *gx, const fc_pool_shape *s,
                                int count_include_pad, int64_t divisor);
void fc_avg_pool2d_backward_f64(const double *gy, double *gx, const fc_pool_shape *s,
                                int count_include_pad, int64_t divisor);
void fc_adaptive_avg_pool2d_backward_f32(const float *gy, float *gx, int64_t N, int64_t C,
                                         int64_t H, int64_t W, int64_t OH, int64_t OW);
void fc_adaptive_avg_pool2d_backward_f64(const double *gy, double *gx, int64_t N, int64_t C,
                                         int64_t H, int64_t W, int64_t OH, int64_t OW);

/* ---- conv_direct.c: direct conv2d (no im2col) for grouped convs with few output channels per
 * group and convs with few input channels; fc_conv2d_direct_*: 0, 1 when out of memory, or
 * FC_DIRECT_DECLINED (workspace bound too small); fc_direct_choice, fc_direct_1d_choice:
 * conv2d's automatic choice. */
enum fc_direct_status { FC_DIRECT_DECLINED = -1 };
int fc_direct_choice(const fc_conv_shape *s, int is_f64);
int fc_direct_1d_choice(const fc_conv_shape *s, int is_f64, int nthreads);
int fc_conv2d_direct_f32(const float *x, const float *w, const float *b, float *y,
                         const fc_conv_shape *s, int kernel, int nthreads, int64_t work_bytes,
                         const fc_epilogue *ep);
int fc_conv2d_direct_f64(const double *x, const double *w, const double *b, double *y,
                         const fc_conv_shape *s, int kernel, int nthreads, int64_t work_bytes,
                         const fc_epilogue *ep);

/* ---- conv_igemm.c: implicit-GEMM conv2d (no im2col), same returns as fc_conv2d_direct_*;
 * fc_igemm_choice: conv2d's automatic choice at instruction-set level `level`
 * (fc_direct_level) */
int fc_igemm_choice(const fc_conv_shape *s, int is_f64, int level);
int fc_conv2d_igemm_f32(const float *x, const float *w, const float *b, float *y,
                        const fc_conv_shape *s, int kernel, int nthreads, int64_t work_bytes,
                        const fc_epilogue *ep);
int fc_conv2d_igemm_f64(const double *x, const double *w, const double *b, double *y,
                        const fc_conv_shape *s, int kernel, int nthreads, int64_t work_bytes,
                        const fc_epilogue *ep);

/* ---- linear.c: y (N, O) = x (N, K) w^T (w: (O, K)) + b, on the thread pool ---- */
void fc_linear_f32(const float *x, const float *w, const float *b, float *y, int64_t N,
                   int64_t K, int64_t O, int nthreads);
void fc_linear_f64(const double *x, const double *w, const double *b, double *y, int64_t N,
                   int64_t K, int64_t O, int nthreads);

/* ---- winograd.c: 3x3 stride-1 conv2d (any dilation) by Winograd F(m x m, 3 x 3), m = 2..4 ----
 * fc_winograd_conv2d_*: 0, 1 when out of memory, or FC_WINOGRAD_DECLINED when the call is
 * left to the im2col path (a geometry it does not cover, a workspace bound below its
 * smallest, a non-finite x or w); fc_winograd_choice: conv2d's automatic choice, 0 (none)
 * or m. */
enum fc_winograd_status { FC_WINOGRAD_DECLINED = -1 };
int fc_winograd_eligible(const fc_conv_shape *s);
int fc_winograd_choice(const fc_conv_shape *s, int is_f64, int nthreads);
void fc_winograd_set_auto(int on); /* 0: the automatic choice never picks Winograd */
/* The cache of transformed weights (winograd.c): its byte budget (0: off; default 256 MiB),
 * and out[0..4] = entries, bytes, hits, misses, budget. */
void fc_winograd_cache_set_limit(int64_t bytes);
void fc_winograd_cache_info(int64_t *out);
int fc_winograd_conv2d_f32(const float *x, const float *w, const float *b, float *y,
                           const fc_conv_shape *s, int m, int kernel, int nthreads,
                           int64_t work_bytes, const fc_epilogue *ep);
int fc_winograd_conv2d_f64(const double *x, const double *w, const double *b, double *y,
                           const fc_conv_shape *s, int m, int kernel, int nthreads,
                           int64_t work_bytes, const fc_epilogue *ep);

/* ---- probe.c: machine peak probes for the benchmarks ---- */
int fc_probe_best_isa(void);
double fc_probe_fma_peak(int isa, int64_t iters);
double fc_probe_copy_bandwidth(float *dst, const float *src, int64_t n, int reps, int threads);
double fc_probe_read_bandwidth(const float *src, int64_t n, int reps, int threads);
double fc_probe_cache_bandwidth(float *dst, const float *src, int64_t n, int passes, int reps,
                                int threads);

/* ---- capsule.c: capsule networks (prediction vectors, dynamic routing) ----
 * u (N, I, Din), w (I, J, Dout, Din), uhat (N, I, J, Dout), v (N, J, D), c (N, I, J);
 * gu / gw / c may be NULL (not computed). Each returns 0, or 1 when out of memory. */
int fc_capsule_predict_f32(const float *u, const float *w, float *uhat, int64_t N, int64_t I,
                           int64_t J, int64_t Dout, int64_t Din);
int fc_capsule_predict_f64(const double *u, const double *w, double *uhat, int64_t N,
                           int64_t I, int64_t J, int64_t Dout, int64_t Din);
int fc_capsule_predict_backward_f32(const float *u, const float *w, const float *guhat,
                                    float *gu, float *gw, int64_t N, int64_t I, int64_t J,
                                    int64_t Dout, int64_t Din);
int fc_capsule_predict_backward_f64(const double *u, const double *w, const double *guhat,
                                    double *gu, double *gw, int64_t N, int64_t I, int64_t J,
                                    int64_t Dout, int64_t Din);
int fc_dynamic_routing_f32(const float *uhat, float *v, float *c, int64_t N, int64_t I,
                           int64_t J, int64_t D, int64_t iters);
int fc_dynamic_routing_f64(const double *uhat, double *v, double *c, int64_t N, int64_t I,
                           int64_t J, int64_t D, int64_t iters);
int fc_dynamic_routing_backward_f32(const float *uhat, const float *gv, float *guhat,
                                    int64_t N, int64_t I, int64_t J, int64_t D, int64_t iters);
int fc_dynamic_routing_backward_f64(const double *uhat, const double *gv, double *guhat,
                                    int64_t N, int64_t I, int64_t J, int64_t D, int64_t iters);

/* ---- filter2d.c: 2-D correlation of planes with boundary modes (fastconv.ndimage / signal)
 * x is (N, H, W) with strides (xn, xh, 1) in elements, y is (N, OH, OW) with strides
 * (yn, yh, 1); output (n, i, j) reads the extended input rows i - bh .. i - bh + KH - 1 and
 * columns j - bw .. j - bw + KW - 1, extended by the modes mrow / mcol (enum fc_border; the
 * constant is cval). fc_filter2d: dense w (KH, KW); fc_sepfilter2d: the outer product of
 * u (KH) and v (KW). Each returns 0, or -1 when out of memory. */
enum fc_border {
    FC_BORDER_CONSTANT = 0,
    FC_BORDER_NEAREST = 1,
    FC_BORDER_REFLECT = 2,
    FC_BORDER_MIRROR = 3,
    FC_BORDER_WRAP = 4
};
typedef struct {
    int64_t N, H, W, OH, OW, KH, KW, bh, bw, xn, xh, yn, yh;
    int mrow, mcol;
} fc_filter_shape;

int fc_filter2d_f32(const float *x, const float *w, float *y, const fc_filter_shape *s,
                    double cval);
int fc_filter2d_f64(const double *x, const double *w, double *y, const fc_filter_shape *s,
                    double cval);
int fc_sepfilter2d_f32(const float *x, const float *u, const float *v, float *y,
                       const fc_filter_shape *s, double cval);
int fc_sepfilter2d_f64(const double *x, const double *u, const double *v, double *y,
                       const fc_filter_shape *s, double cval);
