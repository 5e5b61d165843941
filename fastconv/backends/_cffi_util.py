"""Small helpers shared by the C engine's wrappers: ndarray -> cffi pointer."""

from __future__ import annotations

import numpy as np

from .._fastconv_c import ffi

_CTYPE = {np.dtype(np.float32): "float *", np.dtype(np.float64): "double *",
          np.dtype(np.int64): "int64_t *"}


def ptr(a):
    """A C pointer to the data of the C-contiguous array ``a`` (NULL for None)."""
    if a is None:
        return ffi.NULL
    assert a.flags.c_contiguous, "kernels take C-contiguous arrays"
    return ffi.cast(_CTYPE[a.dtype], a.ctypes.data)


def is_f32(a) -> bool:
    return a.dtype == np.float32
