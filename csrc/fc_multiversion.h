/* fc_multiversion.h: private helpers of depthwise_conv2d.c and pool2d.c (not part of the
 * cffi API): one kernel body compiled for AVX-512, AVX2+FMA and portable C, picked at run
 * time by fc_dwpool_isa (pool2d.c). Only x86-64 gets the targeted copies.
 */
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

#endif /* FC_MULTIVERSION_H */
