"""Row loops of the numba CPU backend, shared by its convolution and pooling kernels.

  valid_range  the outputs i of one axis whose input position i*s + off lies inside the image
  axpy_row     ys[i] += wv * xr[start + i*s]: one tap added to a row of outputs
  copy_row     ds[i] = xr[start + i*s]: a (strided) input row copied out
  fill         ds[:] = v

Serial ``@njit(cache=True)`` helpers that LLVM inlines into the kernels of direct.py, gemm.py,
transpose.py and pool.py; tested through those kernels: ``pytest tests/test_numba_cpu.py``.
"""

from __future__ import annotations

from numba import njit


@njit(cache=True)
def valid_range(out, s, off, size):
    """Outputs i in [lo, hi) of an axis of length ``out`` with 0 <= i*s + off < size."""
    lo = 0 if off >= 0 else (-off + s - 1) // s
    hi = 0 if off >= size else (size - 1 - off) // s + 1
    hi = min(hi, out)
    lo = min(lo, hi)
    return lo, hi


# Inner loops index views with the bare loop counter (ys[i], xs[i]): Numba then knows the index
# is not negative and drops its negative-index wraparound, without which LLVM turns the loop
# into gathers (an 8x slower loop, measured on x[off + i]).


@njit(cache=True)
def axpy_row(ys, wv, xr, start, s):
    """ys[i] += wv * xr[start + i*s] for i < len(ys); the reads must be inside xr."""
    n = ys.shape[0]
    if s == 1:
        xs = xr[start : start + n]
        for i in range(n):
            ys[i] += wv * xs[i]
    else:
        xg = xr[start:]
        for i in range(n):
            ys[i] += wv * xg[i * s]


@njit(cache=True)
def copy_row(ds, xr, start, s):
    """ds[i] = xr[start + i*s] for i < len(ds); the reads must be inside xr."""
    n = ds.shape[0]
    if s == 1:
        xs = xr[start : start + n]
        for i in range(n):
            ds[i] = xs[i]
    else:
        xg = xr[start:]
        for i in range(n):
            ds[i] = xg[i * s]


@njit(cache=True)
def fill(ds, v):
    for i in range(ds.shape[0]):
        ds[i] = v
