"""C engine wrappers for depthwise / separable convolution and pooling (csrc/depthwise_conv2d.c,
csrc/pool2d.c). Re-exported by fastconv/backends/c/__init__.py.

Each wrapper reads the sizes off the arrays (the kernel contract in
``fastconv/backends/__init__.py``), picks the float32 or float64 C function and passes
pointers and the geometry: depthwise and separable as the ``fc_conv_shape`` of the depthwise
stage (G = C), max / avg pooling as an ``fc_pool_shape`` (both made once per geometry by
``_cffi``), the other kernels as plain sizes. The C functions release the GIL (cffi does so
for every call), so several Python threads may run kernels at once.
"""

from __future__ import annotations

import numpy as np

from ..._fastconv_c import ffi, lib
from .. import KERNEL_NAMES
from ._cffi import CTYPES, conv_shape, epilogue, is_f32, pool_shape, ptr

#: Every kernel of the contract but the two that ``c/__init__.py`` defines.
__all__ = [k for k in KERNEL_NAMES if k not in ("conv2d", "conv_transpose2d", "conv2d_fused")]

#: Names of the instruction-set levels of :func:`isa_level`.
ISA_NAMES = ("portable", "avx2", "avx512")


def _fn(name: str, a):
    return getattr(lib, f"fc_{name}_f32" if is_f32(a) else f"fc_{name}_f64")


def isa_level(cap: int = -1) -> str:
    """The instruction set the depthwise / pooling kernels use ('portable', 'avx2', 'avx512').

    ``cap`` >= 0 first limits them to at most that level (0, 1 or 2) from now on, for every
    thread; the tests use it to run each compiled copy.
    """
    return ISA_NAMES[lib.fc_dwpool_isa(int(cap))]


def _depthwise_shape(x, w, y, sh, sw, ph, pw, dh, dw):
    # the fc_conv_shape of a depthwise stage (G = C)
    N, C, H, W = x.shape
    OC, _, KH, KW = w.shape
    return conv_shape((N, C, H, W, OC, KH, KW, *y.shape[2:], sh, sw, ph, pw, dh, dw, C))


def depthwise_conv2d(x, w, b, y, sh, sw, ph, pw, dh, dw):
    # x is (N, C, H, W), w is (C*m, 1, KH, KW), b is (C*m,) or None, y is (N, C*m, OH, OW)
    _fn("depthwise_conv2d", x)(ptr(x), ptr(w), ptr(b), ptr(y),
                               _depthwise_shape(x, w, y, sh, sw, ph, pw, dh, dw))


def depthwise_conv2d_fused(x, w, b, y, sh, sw, ph, pw, dh, dw, scale, shift, residual,
                           activation):
    # depthwise_conv2d, then the epilogue on each output plane while it is in cache
    _fn("depthwise_conv2d_ep", x)(ptr(x), ptr(w), ptr(b), ptr(y),
                                  _depthwise_shape(x, w, y, sh, sw, ph, pw, dh, dw),
                                  epilogue(scale, shift, residual, activation))


def separable_conv2d(x, wd, bd, wp, bp, y, sh, sw, ph, pw, dh, dw):
    # depthwise (wd (C*m, 1, KH, KW), bd) then pointwise (wp (OC, C*m, 1, 1), bp),
    # y is (N, OC, OH, OW); fused in C, one tile of output rows at a time
    N, C, H, W = x.shape
    CM, _, KH, KW = wd.shape
    s = conv_shape((N, C, H, W, CM, KH, KW, *y.shape[2:], sh, sw, ph, pw, dh, dw, C))
    fn = _fn("separable_conv2d", x)
    if fn(ptr(x), ptr(wd), ptr(bd), ptr(wp), ptr(bp), ptr(y), s, wp.shape[0]):
        raise MemoryError("separable_conv2d: could not allocate the per-thread tile buffer")


# The arguments after the pointers, made from the shapes (one struct per geometry): the same
# for a call of the kernel and for its bound form (bind).
def _max_tail(x, y, kh, kw, sh, sw, ph, pw, dh, dw):
    return (pool_shape((*x.shape, kh, kw, *y.shape[2:], sh, sw, ph, pw, dh, dw)),)


def _avg_tail(x, y, kh, kw, sh, sw, ph, pw, count_include_pad, divisor):
    # divisor 0 = none
    return (pool_shape((*x.shape, kh, kw, *y.shape[2:], sh, sw, ph, pw, 1, 1)),
            int(bool(count_include_pad)), divisor)


def _adaptive_tail(x, y):
    return (*x.shape, *y.shape[2:])


def max_pool2d(x, y, idx, kh, kw, sh, sw, ph, pw, dh, dw):
    # x is (N, C, H, W), y and idx (int64 or None) are (N, C, OH, OW)
    _fn("max_pool2d", x)(ptr(x), ptr(y), ptr(idx),
                         *_max_tail(x, y, kh, kw, sh, sw, ph, pw, dh, dw))


def avg_pool2d(x, y, kh, kw, sh, sw, ph, pw, count_include_pad, divisor):
    # x is (N, C, H, W), y is (N, C, OH, OW)
    _fn("avg_pool2d", x)(ptr(x), ptr(y),
                         *_avg_tail(x, y, kh, kw, sh, sw, ph, pw, count_include_pad, divisor))


def adaptive_avg_pool2d(x, y):
    # x is (N, C, H, W), y is (N, C, OH, OW)
    _fn("adaptive_avg_pool2d", x)(ptr(x), ptr(y), *_adaptive_tail(x, y))


def adaptive_max_pool2d(x, y, idx):
    # x is (N, C, H, W), y and idx (int64 or None) are (N, C, OH, OW)
    _fn("adaptive_max_pool2d", x)(ptr(x), ptr(y), ptr(idx), *_adaptive_tail(x, y))


def max_pool2d_backward(gy, idx, gx):
    # gy and idx are (N, C, OH, OW), gx is (N, C, H, W)
    _fn("max_pool2d_backward", gy)(ptr(gy), ptr(idx), ptr(gx), *gx.shape, *gy.shape[2:])


def avg_pool2d_backward(gy, gx, kh, kw, sh, sw, ph, pw, count_include_pad, divisor):
    # gy is (N, C, OH, OW), gx is (N, C, H, W)
    s = pool_shape((*gx.shape, kh, kw, *gy.shape[2:], sh, sw, ph, pw, 1, 1))
    _fn("avg_pool2d_backward", gy)(ptr(gy), ptr(gx), s, int(bool(count_include_pad)), divisor)


def adaptive_avg_pool2d_backward(gy, gx):
    # gy is (N, C, OH, OW), gx is (N, C, H, W)
    _fn("adaptive_avg_pool2d_backward", gy)(ptr(gy), ptr(gx), *gx.shape, *gy.shape[2:])


_fb, _NULL = ffi.from_buffer, ffi.NULL
_I64 = CTYPES[np.dtype(np.int64)]
#: The pooling kernels with a bound form: what follows their pointers.
_TAILS = {"max_pool2d": _max_tail, "avg_pool2d": _avg_tail,
          "adaptive_avg_pool2d": _adaptive_tail, "adaptive_max_pool2d": _adaptive_tail}


def bind_kernel(name, arrays, y, idx, args):
    """Kernel ``name`` of this file bound to the shapes and dtype of ``arrays``, ``y`` and
    ``idx`` and to its other arguments ``args`` (see ``bind`` in c/__init__.py): the C
    function and what follows the pointers are made once, and a run passes the pointers
    only. None for a kernel without a bound form."""
    x = arrays[0]
    fn, ct = _fn(name, x), CTYPES[x.dtype]
    if name == "depthwise_conv2d":
        s = _depthwise_shape(x, arrays[1], y, *args)
        if arrays[2] is None:
            return lambda x, w, b, y, idx: fn(_fb(ct, x), _fb(ct, w), _NULL, _fb(ct, y), s)
        return lambda x, w, b, y, idx: fn(_fb(ct, x), _fb(ct, w), _fb(ct, b), _fb(ct, y), s)
    if name not in _TAILS:
        return None
    tail = _TAILS[name](x, y, *args)
    if name in ("avg_pool2d", "adaptive_avg_pool2d"):
        return lambda x, y, idx: fn(_fb(ct, x), _fb(ct, y), *tail)
    if idx is None:
        return lambda x, y, idx: fn(_fb(ct, x), _fb(ct, y), _NULL, *tail)
    return lambda x, y, idx: fn(_fb(ct, x), _fb(ct, y), _fb(_I64, idx), *tail)
