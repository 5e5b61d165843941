/* fc_multiversion.h: private helpers of depthwise_conv2d.c and pool2d.c (not part of the
 * cffi API): one kernel body compiled for AVX-512, AVX2+FMA and portable C, picked at run
 * time by fc_dwpool_isa (pool2d.c), and the interior-window geometry both use. Only x86-64
 * gets the targeted copies.
 */
#include <stdint.h>
#ifndef FC_MULTIVERSION_H
#define FC_MULTIVERSION_H

#define FC_INLINE static inline __attribute__((always_inline))
#define FC_CAT_(a, b) a##b
#define FC_CAT(a, b) FC_CAT_(a, b)

/* FC_MULTIVERSION(name, params, args): from `name_body`, an always-inline function, make
 * `name` that runs the copy compiled for the best instruction set available. */
#if defined(__x86_64__)
#define FC_T512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#define FC_T256 __attribute__((target("avx2,fma")))
#define FC_MULTIVERSION(name, params, args)                                         \
    static void FC_CAT(name, _base) params { FC_CAT(name, _body) args; }            \
    FC_T256 static void FC_CAT(name, _avx2) params { FC_CAT(name, _body) args; }    \
    FC_T512 static void FC_CAT(name, _avx512) params { FC_CAT(name, _body) args; }  \
    static void name params                                                         \
    {                                                                               \
        switch (fc_dwpool_isa(-1)) {                                                \
        case 2: FC_CAT(name, _avx512) args; break;                                  \
        case 1: FC_CAT(name, _avx2) args; break;                                    \
        default: FC_CAT(name, _base) args;                                          \
        }                                                                           \
    }
#else
#define FC_MULTIVERSION(name, params, args) \
    static void name params { FC_CAT(name, _body) args; }
#endif

/* Geometry of one plane of a depthwise convolution or a pooling window along W; lo..hi are
 * the interior output columns, those whose every tap iw = ow*sw - pw + kw*dw (0 <= kw < KW)
 * lies inside [0, W). */
typedef struct {
    int64_t H, W, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, lo, hi;
} fc_win;

static inline fc_win fc_win_make(int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t KH,
                            int64_t KW, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                            int64_t dh, int64_t dw)
{
    fc_win g = {H, W, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, 0, 0};
    int64_t lo = (pw + sw - 1) / sw;
    int64_t last = W - 1 - (KW - 1) * dw + pw; /* interior needs ow*sw <= last */
    int64_t hi = last >= 0 ? last / sw + 1 : 0;
    if (lo > OW) lo = OW;
    if (hi > OW) hi = OW;
    if (hi < lo) hi = lo;
    g.lo = lo;
    g.hi = hi;
    return g;
}

#endif /* FC_MULTIVERSION_H */
