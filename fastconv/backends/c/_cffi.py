"""Small helpers shared by the C engine's wrappers: ndarray -> cffi pointer, geometry -> cffi
shape struct."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from ..._fastconv_c import ffi

#: The cffi array type of each dtype the kernels take (a type object: ffi.from_buffer looks a
#: type name up on every call).
CTYPES = {
    np.dtype(np.float32): ffi.typeof("float[]"),
    np.dtype(np.float64): ffi.typeof("double[]"),
    np.dtype(np.int64): ffi.typeof("int64_t[]"),
}

#: Distinct geometries kept per shape struct type before its cache starts over.
SHAPE_CACHE_SIZE = 256

_CONV_SHAPE = ffi.typeof("fc_conv_shape *")
_POOL_SHAPE = ffi.typeof("fc_pool_shape *")
_conv_shapes: Dict[Tuple[int, ...], Any] = {}
_pool_shapes: Dict[Tuple[int, ...], Any] = {}


def ptr(a):
    """A C pointer to the data of the C-contiguous array ``a`` (NULL for None).

    ``ffi.from_buffer`` views the array's buffer directly (and keeps the array alive for the
    call): about 0.15 us, against about 1.1 us for a cast of ``a.ctypes.data``, which builds a
    ctypes object; a small call passes three or four arrays, so this is much of its fixed
    cost. The buffer protocol refuses (ValueError) an array that is not C-contiguous.
    """
    if a is None:
        return ffi.NULL
    return ffi.from_buffer(CTYPES[a.dtype], a)


#: fastconv.fused's activation names -> enum fc_activation (csrc/fastconv.h).
ACTIVATION_CODES = {None: 0, "relu": 1, "relu6": 2}


def epilogue(scale, shift, residual, activation):
    """An ``fc_epilogue *`` for one call (NULL when it does nothing); the arrays must stay
    alive for the call (the caller holds them)."""
    if scale is None and shift is None and residual is None and activation is None:
        return ffi.NULL
    return ffi.new("fc_epilogue *", (ptr(scale), ptr(shift), ptr(residual),
                                     ACTIVATION_CODES[activation]))


def is_f32(a) -> bool:
    return a.dtype == np.float32


def conv_shape(fields: Tuple[int, ...]):
    """An ``fc_conv_shape *`` holding ``fields``, in the struct's order:
    (N, C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, G).

    One struct per distinct geometry, made on first use and then looked up: a tiny
    max_pool2d call measured 3.0 us with ``ffi.new`` per call (from a sequence; a dict
    initialises ~2x slower) and 2.25 us with the lookup (about 0.1 us), below the 2.35 us of
    passing 14 scalar arguments. The kernels only read the struct (``const``), so any number
    of threads may pass the same one at once.
    """
    s = _conv_shapes.get(fields)
    if s is None:
        s = _new_shape(_conv_shapes, _CONV_SHAPE, fields)
    return s


def pool_shape(fields: Tuple[int, ...]):
    """An ``fc_pool_shape *`` holding ``fields``, in the struct's order:
    (N, C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw); made once per geometry as
    :func:`conv_shape`."""
    s = _pool_shapes.get(fields)
    if s is None:
        s = _new_shape(_pool_shapes, _POOL_SHAPE, fields)
    return s


def _new_shape(cache: Dict[Tuple[int, ...], Any], ctype, fields: Tuple[int, ...]):
    if len(cache) >= SHAPE_CACHE_SIZE:  # a bound, not an LRU: geometries repeat in practice
        cache.clear()
    s = cache[fields] = ffi.new(ctype, fields)
    return s
