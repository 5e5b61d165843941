"""Launchers and hooks of the numba_cuda backend (re-exported by ``numba_cuda/__init__.py``).

Each launcher has the name and signature of the kernel contract
(``fastconv/backends/__init__.py``), takes numba device arrays (C-contiguous, one float
dtype; idx int64), picks a grid and launches one or two kernels of conv_kernels.py or
pool_kernels.py. Launches are asynchronous on the default stream; ``finish`` copies to the
host (which waits) unless the caller's inputs were device arrays.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import numpy as np
from numba import cuda

from .. import KERNEL_NAMES
from . import conv_kernels as CK
from . import pool_kernels as PK

#: conv2d variants, in ladder order; None means the last (the best).
CONV2D_VARIANTS = ("v1_direct", "v2_tiled")
_GRID_YZ = 65535  # CUDA's limit on gridDim.y and gridDim.z

# 1-D launches: THREADS per block, at most MAX_BLOCKS blocks (the kernels loop over the rest).
# In the simulator every thread is a Python thread: small blocks, and few of them so that the
# grid-stride loops really loop in the tests.
if CK.SIMULATOR:
    THREADS, MAX_BLOCKS = 32, 4
else:
    THREADS, MAX_BLOCKS = 256, 65535 * 32

_CACHE: Dict[Any, Dict[str, Any]] = {}


def kernels(dtype) -> Dict[str, Any]:
    """The convolution and pooling kernels for float32 or float64 arrays, by name (each
    compiled lazily, on its first launch)."""
    key = np.dtype(dtype).type
    if key not in _CACHE:
        _CACHE[key] = {**CK.build(key), **PK.build(key)}
    return _CACHE[key]


def _launch(kernel, grid, block, *args) -> None:
    """The single place kernels are launched (the tests lower every launch through it).
    An empty grid launches nothing (CUDA rejects a zero-size grid)."""
    if min(grid if isinstance(grid, tuple) else (grid,)) > 0:
        kernel[grid, block](*args)


def _grid1(total: int):
    return min((total + THREADS - 1) // THREADS, MAX_BLOCKS), THREADS


def _ceil(a: int, b: int) -> int:
    return (a + b - 1) // b


# --------------------------------------------------------------------------- hooks


def _as_device(a: Any):
    """A numba view of a device array, or None for a host array."""
    if isinstance(a, np.ndarray):
        return None
    if getattr(a, "__cuda_ndarray__", False):  # numba's own (and the simulator's) arrays
        return a
    if hasattr(a, "__cuda_array_interface__"):  # CuPy, torch.cuda, ...
        if CK.SIMULATOR:
            raise TypeError(
                f"{type(a).__name__} is a real CUDA array; the CUDA simulator cannot read it"
            )
        return cuda.as_cuda_array(a)
    return None


def _copy(src, dst) -> None:
    """dst[...] = src[...] on the device, casting; src may be strided, ndim 1 to 4."""
    _launch(PK.COPY[dst.ndim], *_grid1(dst.size), src, dst)


def prepare(a: Any, dtype: Any):
    """An input as the kernels take it: a C-contiguous device array of ``dtype``.

    Host data is copied to the device once. A device array (numba, CuPy, torch.cuda: any
    ``__cuda_array_interface__``) is used in place when it is already C-contiguous and of
    ``dtype``; otherwise it is copied and cast on the device, never through the host.
    """
    dtype = np.dtype(dtype)
    d = _as_device(a)
    if d is None:
        return cuda.to_device(np.ascontiguousarray(a, dtype=dtype))
    if d.dtype == dtype and d.is_c_contiguous():
        return d
    if not 1 <= d.ndim <= 4:
        raise ValueError(f"the cuda backend converts 1-D to 4-D device arrays, got {d.ndim}-D")
    out = cuda.device_array(d.shape, dtype)
    _copy(d, out)
    return out


def empty(shape, dtype: Any):
    """An uninitialised device array; NaN (floats) or -7 (ints) if FASTCONV_POISON is set."""
    dtype = np.dtype(dtype)
    a = cuda.device_array(tuple(shape), dtype)
    if os.environ.get("FASTCONV_POISON"):
        value = np.nan if dtype.kind == "f" else -7
        _launch(PK.fill, *_grid1(a.size), a.reshape(a.size), value)
    return a


def finish(y, dtype: Any, device: bool):
    """The output as the user gets it: a device array of ``dtype`` when the inputs were
    device arrays (cast on the device if needed), else a NumPy array of ``dtype``."""
    dtype = np.dtype(dtype)
    if device:
        if y.dtype == dtype:
            return y
        out = cuda.device_array(y.shape, dtype)
        _copy(y, out)
        return out
    host = y.copy_to_host()
    return host if host.dtype == dtype else host.astype(dtype)


# --------------------------------------------------------------------------- convolutions


def conv2d(x, w, b, y, sh, sw, ph, pw, dh, dw, groups, variant: Optional[str] = None):
    # x is (N, C, H, W), w is (OC, C/G, KH, KW), b is (OC,) or None, y is (N, OC, OH, OW);
    # variant is None or one of CONV2D_VARIANTS (the public function checked it)
    if variant is None:
        variant = CONV2D_VARIANTS[-1]
    k = kernels(y.dtype)
    N, OC, OH, OW = y.shape
    OCg = OC // groups
    if variant == "v1_direct" or groups > _GRID_YZ or _ceil(OCg, CK.BM) > _GRID_YZ:
        _launch(k["conv2d_direct"], *_grid1(y.size), x, w, b, y, sh, sw, ph, pw, dh, dw, groups)
        return
    _, Cg, KH, KW = w.shape
    grid = (_ceil(N * OH * OW, CK.BN), _ceil(OCg, CK.BM), groups)
    _launch(
        k["conv2d_gemm"],
        grid,
        (CK.TX, CK.TY),
        x,
        x,
        None,
        w.reshape(OC, Cg * KH * KW),
        b,
        y.reshape(N, OC, OH * OW),
        KH,
        KW,
        sh,
        sw,
        ph,
        pw,
        dh,
        dw,
        Cg,
        OW,
    )


def depthwise_conv2d(x, w, b, y, sh, sw, ph, pw, dh, dw):
    # x is (N, C, H, W), w is (C*m, 1, KH, KW), b is (C*m,) or None, y is (N, C*m, OH, OW)
    _launch(
        kernels(y.dtype)["depthwise_conv2d"], *_grid1(y.size), x, w, b, y, sh, sw, ph, pw, dh, dw
    )


def separable_conv2d(x, wd, bd, wp, bp, y, sh, sw, ph, pw, dh, dw):
    # x is (N, C, H, W), wd is (C*m, 1, KH, KW), bd is (C*m,) or None, wp is (OC, C*m, 1, 1),
    # bp is (OC,) or None, y is (N, OC, OH, OW). One launch: the pointwise conv is the tiled
    # GEMM whose B operand (the depthwise output) is computed while the tile is loaded, so
    # the intermediate never goes to global memory.
    N, OC, OH, OW = y.shape
    Cm, _, KH, KW = wd.shape
    m = Cm // x.shape[1]
    if _ceil(OC, CK.BM) > _GRID_YZ:  # pragma: no cover - needs OC > 4 million
        raise ValueError(f"separable_conv2d: too many output channels for one launch: {OC}")
    grid = (_ceil(N * OH * OW, CK.BN), _ceil(OC, CK.BM), 1)
    _launch(
        kernels(y.dtype)["separable_gemm"],
        grid,
        (CK.TX, CK.TY),
        x,
        wd,
        bd,
        wp.reshape(OC, Cm),
        bp,
        y.reshape(N, OC, OH * OW),
        KH,
        KW,
        sh,
        sw,
        ph,
        pw,
        dh,
        dw,
        m,
        OW,
    )


def conv_transpose2d(x, w, b, y, sh, sw, ph, pw, dh, dw, groups):
    # x is (N, C, H, W), w is (C, OC/G, KH, KW), b is (OC,) or None, y is (N, OC, OH, OW)
    _launch(
        kernels(y.dtype)["conv_transpose2d"],
        *_grid1(y.size),
        x,
        w,
        b,
        y,
        sh,
        sw,
        ph,
        pw,
        dh,
        dw,
        groups,
    )


# --------------------------------------------------------------------------- pooling


def _planes(a):
    """(N, C, H, W) -> (N*C, H, W), a view."""
    N, C, H, W = a.shape
    return a.reshape(N * C, H, W)


def max_pool2d(x, y, idx, kh, kw, sh, sw, ph, pw, dh, dw):
    # x is (N, C, H, W), y and idx (int64 or None) are (N, C, OH, OW)
    _launch(
        kernels(y.dtype)["max_pool2d"],
        *_grid1(y.size),
        _planes(x),
        _planes(y),
        None if idx is None else _planes(idx),
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
        dh,
        dw,
    )


def avg_pool2d(x, y, kh, kw, sh, sw, ph, pw, count_include_pad, divisor):
    # x is (N, C, H, W), y is (N, C, OH, OW); divisor 0 = none
    _launch(
        kernels(y.dtype)["avg_pool2d"],
        *_grid1(y.size),
        _planes(x),
        _planes(y),
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
        bool(count_include_pad),
        divisor,
    )


def adaptive_avg_pool2d(x, y):
    # x is (N, C, H, W), y is (N, C, OH, OW)
    _launch(kernels(y.dtype)["adaptive_avg_pool2d"], *_grid1(y.size), _planes(x), _planes(y))


def adaptive_max_pool2d(x, y, idx):
    # x is (N, C, H, W), y and idx (int64 or None) are (N, C, OH, OW)
    _launch(
        kernels(y.dtype)["adaptive_max_pool2d"],
        *_grid1(y.size),
        _planes(x),
        _planes(y),
        None if idx is None else _planes(idx),
    )


# --------------------------------------------------------------------------- backward


def max_pool2d_backward(gy, idx, gx):
    # gy and idx are (N, C, OH, OW), gx is (N, C, H, W): gx = 0, then scatter-add
    N, C, H, W = gx.shape
    _launch(PK.fill, *_grid1(gx.size), gx.reshape(gx.size), 0)
    OH, OW = gy.shape[2], gy.shape[3]
    _launch(
        kernels(gx.dtype)["max_pool2d_backward"],
        *_grid1(gy.size),
        gy.reshape(N * C, OH * OW),
        idx.reshape(N * C, OH * OW),
        gx.reshape(N * C, H * W),
    )


def avg_pool2d_backward(gy, gx, kh, kw, sh, sw, ph, pw, count_include_pad, divisor):
    # gy is (N, C, OH, OW), gx is (N, C, H, W): the adjoint of avg_pool2d
    _launch(
        kernels(gx.dtype)["avg_pool2d_backward"],
        *_grid1(gx.size),
        _planes(gy),
        _planes(gx),
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
        bool(count_include_pad),
        divisor,
    )


def adaptive_avg_pool2d_backward(gy, gx):
    # gy is (N, C, OH, OW), gx is (N, C, H, W): the adjoint of adaptive_avg_pool2d
    _launch(
        kernels(gx.dtype)["adaptive_avg_pool2d_backward"],
        *_grid1(gx.size),
        _planes(gy),
        _planes(gx),
    )


__all__ = ["CONV2D_VARIANTS", "prepare", "empty", "finish",
           *[k for k in KERNEL_NAMES if k in globals()]]
