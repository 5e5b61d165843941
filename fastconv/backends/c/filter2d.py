"""The C engine's plane filters (csrc/filter2d.c): 2-D correlation of a stack of planes with
SciPy's boundary modes, dense or separable. Used by fastconv._filters.direct."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..._fastconv_c import ffi, lib

#: The C enum fc_border, by boundary mode name (fastconv._filters.boundary.MODES).
BORDERS = {"constant": 0, "nearest": 1, "reflect": 2, "mirror": 3, "wrap": 4}

_CPTR = {np.dtype(np.float32): "float *", np.dtype(np.float64): "double *"}


def usable(a: np.ndarray) -> bool:
    """Whether the kernels read / write ``a`` in place: a 3-D float32 / float64 array whose
    columns are contiguous, aligned, with non-negative row and plane strides."""
    return bool(
        a.ndim == 3
        and a.dtype in _CPTR
        and a.shape[2] >= 1
        and (a.strides[2] == a.itemsize or a.shape[2] == 1)
        and a.strides[1] >= 0
        and a.strides[0] >= 0
        and a.strides[1] % a.itemsize == 0
        and a.strides[0] % a.itemsize == 0
        and a.ctypes.data % a.itemsize == 0
    )


def _shape(x: np.ndarray, y: np.ndarray, KH: int, KW: int, bh: int, bw: int, mrow: str, mcol: str):
    N, H, W = x.shape
    _, OH, OW = y.shape
    e = x.itemsize
    xh = x.strides[1] // e if H > 1 else W
    yh = y.strides[1] // e if OH > 1 else OW
    xn = x.strides[0] // e if N > 1 else H * xh
    yn = y.strides[0] // e if N > 1 else OH * yh
    return ffi.new(
        "fc_filter_shape *",
        (N, H, W, OH, OW, KH, KW, bh, bw, xn, xh, yn, yh, BORDERS[mrow], BORDERS[mcol]),
    )


def _p(a: np.ndarray):
    return ffi.cast(_CPTR[a.dtype], a.ctypes.data)


def filter2d(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    before: tuple,
    modes: tuple,
    cval: float,
    v: Optional[np.ndarray] = None,
) -> None:
    """y[n, i, j] = sum w[kh, kw] * x_ext[n, i - bh + kh, j - bw + kw] for x (N, H, W) and
    y (N, OH, OW) (both ``usable``, one dtype), w (KH, KW) C-contiguous in that dtype, or,
    with ``v``, the separable kernel outer(w, v) (w then 1-D, the vertical factor)."""
    bh, bw = int(before[0]), int(before[1])
    f32 = x.dtype == np.float32
    if v is None:
        KH, KW = w.shape
        s = _shape(x, y, KH, KW, bh, bw, modes[0], modes[1])
        fn = lib.fc_filter2d_f32 if f32 else lib.fc_filter2d_f64
        rc = fn(_p(x), _p(w), _p(y), s, float(cval))
    else:
        s = _shape(x, y, len(w), len(v), bh, bw, modes[0], modes[1])
        fn = lib.fc_sepfilter2d_f32 if f32 else lib.fc_sepfilter2d_f64
        rc = fn(_p(x), _p(w), _p(v), _p(y), s, float(cval))
    if rc != 0:
        raise MemoryError("fastconv: out of memory for the filter's per-thread buffers")
