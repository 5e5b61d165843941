"""Numba CPU backend: ``@njit(parallel=True, cache=True)`` kernels with explicit prange.

This module holds the kernel-contract entry points, which only turn "None" arguments into
flags and pick a conv2d variant; the kernels live in modules named after their family:

  rows.py       the row loops every kernel shares (valid_range, axpy_row, copy_row, fill)
  direct.py     conv_direct (v1_direct) and the depthwise kernel conv_depthwise_same
  gemm.py       im2col, packing, the GEMMs of v2 / v3 / v4 and the SIMD micro-kernels
  transpose.py  conv_transpose_packed and its phase GEMMs
  pool.py       pooling, forward and backward
  simd.py       the explicit vector type and intrinsics of the micro-kernels

Kernel signatures and conventions: ``fastconv/backends/__init__.py``.

conv2d variants (``variant=``; None = the best, see ``best_conv2d_variant``):

  v1_direct    one task per output plane, rows of y updated tap by tap
  v2_im2col    im2col buffer + GEMM in plain Numba loops (4 x 512 tiles of C, store-bound)
  v3_packed    im2col buffer + packed GEMM with a 6 x 32 register-blocked SIMD micro-kernel
  v4_implicit  the packed GEMM packing B straight from x: no im2col buffer

conv_transpose2d runs ``transpose.conv_transpose_packed``: the transposed convolution split
into sh*sw stride-1 convolutions (one per output phase), each a GEMM with the same SIMD register
tile, reading B in place from a zero-padded copy of x and writing every output element once.
Weights holding NaN or +-Inf go to ``transpose.conv_transpose_gather`` instead (the padded
zeros would turn them into NaN on outputs they do not reach; docs/nonfinite.md).

GEMM: Numba micro-kernel or BLAS?
---------------------------------
The backend uses its own GEMM (``gemm._micro``: 6 x 2-vector register tile through
explicit LLVM vector intrinsics, ``simd``), not BLAS. Measured on the 3x3 layers'
GEMMs (M x K x N = 64x576x3136, 128x1152x784, 256x2304x196), float32, one thread, GFLOP/s per
CPU-second on the 2-core AVX-512 development machine (bench numbers vary run to run):

  ========================================  =========  ==========  ==========
  1 thread                                   64 @ 56    128 @ 28    256 @ 14
  ========================================  =========  ==========  ==========
  GEMM: Numba SIMD micro-kernel (packed)          54          73          73
  GEMM: np.dot inside @njit (SciPy OpenBLAS)      88          98          99
  whole conv, v1_direct                            7           4           2
  whole conv, v2_im2col (plain-loop GEMM)         23          30          25
  whole conv, v3_packed                           49          62          62
  whole conv, v4_implicit                         58          68          66
  ========================================  =========  ==========  ==========

With 2 threads (wall clock, best of alternating runs): v4_implicit 91 / 105 / 106 GFLOP/s
against torch's 194 / 188 / 146 in the same run; v3_packed only 34 / 45 / 62, as its
im2col buffer (7 MB for 64 @ 56) is allocated, written and read again on every call.

BLAS is 1.3-1.6x faster on the bare GEMM, and still not the choice:

- np.dot inside Numba needs SciPy (a large dependency fastconv does not have) and a
  materialised im2col buffer of C*KH*KW x OH*OW, which v4_implicit never builds;
- BLAS runs its own thread pool, which ``numba.set_num_threads`` (hence
  ``fastconv.set_num_threads``) does not control. Interleaving Numba's OpenMP pool with
  OpenBLAS's on 2 cores measured 6-10 GFLOP/s for both: each pool spins while the other works;
- the Numba GEMM already clears the bar set for this backend (3x3 convs >= 0.3x torch; it
  reaches about 0.5-0.6x, see ``bench/bench_numba.py perf``).

JIT cost: each kernel is compiled lazily, once per dtype (float32, float64), never per shape:
bias / indices that may be None reach the kernels as an array plus a flag. ``cache=True``
stores the machine code next to the modules (``__pycache__``), so a second process loads it
instead of compiling; ``bench/bench_numba.py`` reports both times.

Threads: ``set_num_threads(n)`` (called by ``fastconv.set_num_threads``) caps n at
``numba.config.NUMBA_NUM_THREADS``; the count is re-applied before every kernel because Numba
keeps it per calling thread. Without a call the backend starts with
``fastconv.get_num_threads()`` (FASTCONV_NUM_THREADS or all cores).
"""

from __future__ import annotations

import threading
from typing import Dict, Optional

import numpy as np

from ..._shapes import is_depthwise

try:
    import numba

    from . import direct as _direct
    from . import gemm as _gemm
    from . import pool as _pool
    from . import transpose as _transpose
except Exception as exc:  # pragma: no cover - depends on the installation
    AVAILABLE_REASON = f"unavailable: numba import failed ({type(exc).__name__}: {exc})"
else:
    AVAILABLE_REASON = "available"

#: conv2d optimisation steps, slowest first.
CONV2D_VARIANTS = ("v1_direct", "v2_im2col", "v3_packed", "v4_implicit")

_threads: Optional[int] = None
_NO_BIAS: Dict[np.dtype, np.ndarray] = {}
_NO_IDX = np.empty((0, 0, 0, 0), np.int64)


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (at most ``numba.config.NUMBA_NUM_THREADS``) in every kernel."""
    global _threads
    _threads = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    numba.set_num_threads(_threads)
    _synced.n = _threads


#: The count this Python thread last gave Numba (Numba's count is per calling thread, and
#: numba.get_num_threads() costs ~0.7 us, a tenth of a small call).
_synced = threading.local()


def _sync_threads() -> int:
    """Make Numba use fastconv's thread count on this thread; return that count."""
    if _threads is None:
        from .._registry import get_num_threads

        set_num_threads(get_num_threads())
    elif getattr(_synced, "n", None) != _threads:
        numba.set_num_threads(_threads)
        _synced.n = _threads
    return _threads  # type: ignore[return-value]


def _bias(b, dtype):
    """(bias array, has_bias): None becomes an empty array of the right dtype."""
    if b is not None:
        return b, True
    dt = np.dtype(dtype)
    if dt not in _NO_BIAS:
        _NO_BIAS[dt] = np.empty(0, dt)
    return _NO_BIAS[dt], False


def prepare(a, dtype):
    """An input as the kernels take it: C-contiguous, ``dtype``, writeable and aligned (Numba
    types a read-only or an unaligned array differently, so one would compile every kernel a
    second time)."""
    arr = np.ascontiguousarray(a, dtype=dtype)
    return arr if arr.flags.writeable and arr.flags.aligned else arr.copy()


# --------------------------------------------------------------------------- convolutions


def best_conv2d_variant(x, w, y, groups: int) -> str:
    """The variant ``variant=None`` runs for this problem."""
    if w.shape[0] // groups < 4:  # a GEMM with fewer than 4 rows wastes most of its tile
        return "v1_direct"
    return "v4_implicit"


def conv2d(x, w, b, y, sh, sw, ph, pw, dh, dw, groups, variant=None):
    # x is (N, C, H, W), w is (OC, C/G, KH, KW), b is (OC,) or None, y is (N, OC, OH, OW);
    # variant is None or one of CONV2D_VARIANTS (the public function checked it)
    if variant is None:
        if is_depthwise(x.shape[1], groups):
            depthwise_conv2d(x, w, b, y, sh, sw, ph, pw, dh, dw)
            return
        variant = best_conv2d_variant(x, w, y, groups)
    _sync_threads()
    bb, has_b = _bias(b, y.dtype)
    args = (sh, sw, ph, pw, dh, dw, groups)
    if variant == "v1_direct":
        _direct.conv_direct(x, w, bb, has_b, y, *args)
    elif variant == "v4_implicit":
        _gemm.conv_packed(x, w, bb, has_b, y, *args)
    else:
        _conv2d_im2col(x, w, bb, has_b, y, args, variant)


def _conv2d_im2col(x, w, bb, has_b, y, args, variant):
    """v2 / v3: per image, im2col into one reused buffer, then a GEMM per group."""
    sh, sw, ph, pw, dh, dw, G = args
    N, C = x.shape[:2]
    OC, Cg, KH, KW = w.shape
    OH, OW = y.shape[2:]
    P = OH * OW
    col = np.empty((C * KH * KW, P), y.dtype)
    wf = w.reshape(OC, Cg * KH * KW)
    for n in range(N):
        _gemm.im2col(x, n, col, KH, KW, sh, sw, ph, pw, dh, dw, OH, OW)
        if variant == "v2_im2col":
            _gemm.gemm_rows(wf, col, bb, has_b, y.reshape(N, OC, P), n, G)
        else:  # the col buffer is the input of a 1x1 convolution over a 1 x P image
            _gemm.conv_packed(
                col.reshape(1, C * KH * KW, 1, P),
                wf.reshape(OC, Cg * KH * KW, 1, 1),
                bb,
                has_b,
                y[n : n + 1].reshape(1, OC, 1, P),
                1,
                1,
                0,
                0,
                1,
                1,
                G,
            )


def depthwise_conv2d(x, w, b, y, sh, sw, ph, pw, dh, dw):
    # x is (N, C, H, W), w is (C*m, 1, KH, KW), y is (N, C*m, OH, OW): conv2d with groups = C
    nth = _sync_threads()
    bb, has_b = _bias(b, y.dtype)
    if sh == 1 and sw == 1 and y.shape[3] == x.shape[3]:
        _direct.conv_depthwise_same(x, w, bb, has_b, y, ph, pw, dh, dw, nth)
    else:
        _direct.conv_direct(x, w, bb, has_b, y, sh, sw, ph, pw, dh, dw, x.shape[1])


def separable_conv2d(x, wd, bd, wp, bp, y, sh, sw, ph, pw, dh, dw):
    # depthwise (wd (C*m, 1, KH, KW), bd) into a workspace, then pointwise (wp (OC, C*m, 1, 1))
    N, _, OH, OW = y.shape
    mid = np.empty((N, wd.shape[0], OH, OW), y.dtype)
    depthwise_conv2d(x, wd, bd, mid, sh, sw, ph, pw, dh, dw)
    conv2d(mid, wp, bp, y, 1, 1, 0, 0, 1, 1, 1)


def conv_transpose2d(x, w, b, y, sh, sw, ph, pw, dh, dw, groups):
    # x is (N, C, H, W), w is (C, OC/G, KH, KW), b is (OC,) or None, y is (N, OC, OH, OW)
    nth = _sync_threads()
    bb, has_b = _bias(b, y.dtype)
    if not np.isfinite(w).all():  # the phase GEMMs would also multiply 0 by NaN / Inf
        _transpose.conv_transpose_gather(x, w, bb, has_b, y, sh, sw, ph, pw, dh, dw, groups)
        return
    _transpose.conv_transpose_packed(x, w, bb, has_b, y, sh, sw, ph, pw, dh, dw, groups, nth)


# --------------------------------------------------------------------------- pooling


def max_pool2d(x, y, idx, kh, kw, sh, sw, ph, pw, dh, dw):
    # x is (N, C, H, W), y and idx (int64 or None) are (N, C, OH, OW)
    _sync_threads()
    want = idx is not None
    _pool.max_pool2d(x, y, idx if want else _NO_IDX, want, kh, kw, sh, sw, ph, pw, dh, dw)


def avg_pool2d(x, y, kh, kw, sh, sw, ph, pw, count_include_pad, divisor):
    # x is (N, C, H, W), y is (N, C, OH, OW); divisor 0 = none
    _sync_threads()
    cip = bool(count_include_pad)  # 0 / 1 would compile another specialisation
    _pool.avg_pool2d(x, y, kh, kw, sh, sw, ph, pw, cip, divisor)


def adaptive_avg_pool2d(x, y):
    # x is (N, C, H, W), y is (N, C, OH, OW)
    threads = _sync_threads()
    N, C, H, W = x.shape
    if y.shape[2] == 1 and y.shape[3] == 1:
        _pool.global_avg_pool(x.reshape(N * C, H * W), y.reshape(N * C), threads)
    else:
        _pool.adaptive_avg_pool2d(x, y)


def adaptive_max_pool2d(x, y, idx):
    # x is (N, C, H, W), y and idx (int64 or None) are (N, C, OH, OW)
    _sync_threads()
    want = idx is not None
    _pool.adaptive_max_pool2d(x, y, idx if want else _NO_IDX, want)


def max_pool2d_backward(gy, idx, gx):
    # gy and idx are (N, C, OH, OW), gx is (N, C, H, W)
    _sync_threads()
    _pool.max_pool2d_backward(gy, idx, gx)


def avg_pool2d_backward(gy, gx, kh, kw, sh, sw, ph, pw, count_include_pad, divisor):
    # gy is (N, C, OH, OW), gx is (N, C, H, W)
    _sync_threads()
    cip = bool(count_include_pad)
    _pool.avg_pool2d_backward(gy, gx, kh, kw, sh, sw, ph, pw, cip, divisor)


def adaptive_avg_pool2d_backward(gy, gx):
    # gy is (N, C, OH, OW), gx is (N, C, H, W)
    _sync_threads()
    _pool.adaptive_avg_pool2d_backward(gy, gx)
