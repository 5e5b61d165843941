"""The FFT engine: overlap-save tiles of real FFTs.

The output is cut into tiles of T_1 x ... x T_f positions along the f filtered axes. A tile
reads a block of N_i = T_i + k_i - 1 (rounded up to a size whose factors are 2, 3 and 5) of
the extended input (``boundary.fill``: the mode is applied while copying, nothing bigger
than the block is made), and::

    y = irfftn(rfftn(block) * rfftn(flipped kernel, N))

is the circular convolution of the block with the flipped kernel; its entries from k_i - 1
on are free of wrap-around and are the tile's correlation. Each tile stands alone (no
overlap to add back), so tiles run in parallel on ``threads.run`` (both FFT libraries
release the GIL) and are written straight into the output. Stacks of small images are
transformed several planes per call. The tile size minimises the cost model of ``plan``
(ntiles x (N log N + N) per tile, plus a fixed cost per tile): large tiles waste little on
the k - 1 overlap, small ones stay in cache.

Precision: float32 inputs are transformed in float32 (complex64), as scipy.fft does for
fftconvolve; the error is about eps32 * log2(N) * max|x| * sum|w| (tests/test_signal.py
checks it against the direct path), float64 otherwise. Complex inputs use complex FFTs.

Library: scipy.fft when it is installed (faster here), else numpy.fft; both keep float32
in float32 (numpy >= 2). ``use("numpy" | "scipy" | None)`` forces one (tests run both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import numpy as np

from . import boundary, threads
from .plan import Problem, merge_leading

_forced: Optional[str] = None


def use(name: Optional[str]) -> None:
    """Force the FFT library: 'numpy', 'scipy' or None (scipy.fft when importable)."""
    global _forced
    if name not in (None, "numpy", "scipy"):
        raise ValueError(f"FFT library must be 'numpy', 'scipy' or None, got {name!r}")
    _forced = name


def library() -> Tuple[str, Any]:
    """(name, module) of the FFT library in use."""
    if _forced != "numpy":
        try:
            import scipy.fft as sfft

            return "scipy", sfft
        except ImportError:
            if _forced == "scipy":
                raise
    return "numpy", np.fft


def _transforms(complex_: bool):
    name, lib = library()
    kw = {"workers": 1} if name == "scipy" else {}
    if complex_:
        return (
            lambda a, s, axes: lib.fftn(a, s=s, axes=axes, **kw),
            lambda a, s, axes: lib.ifftn(a, s=s, axes=axes, **kw),
        )
    return (
        lambda a, s, axes: lib.rfftn(a, s=s, axes=axes, **kw),
        lambda a, s, axes: lib.irfftn(a, s=s, axes=axes, **kw),
    )


def smooth_sizes(lo: int, hi: int, dense: bool = True) -> List[int]:
    """Sizes 2^a * {1, 3, 5} (dense) or 2^a in [lo, hi], plus hi itself."""
    out = set()
    p = 1
    while p <= hi:
        for m in (1, 3, 5) if dense else (1,):
            if lo <= p * m <= hi:
                out.add(p * m)
        p *= 2
    out.add(hi)
    return sorted(out)


def next_fast_len(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = p35
            while q < n:
                q *= 2
            best = min(best, q)
            p35 *= 3
        p5 *= 5
    return best


@dataclass
class TilePlan:
    axes: List[int]  # filtered axes
    N: Tuple[int, ...]  # FFT size per filtered axis
    T: Tuple[int, ...]  # output positions per tile
    group: int  # planes per FFT call
    seconds: float  # the cost model's time on one thread


def plan_tiles(p: Problem) -> TilePlan:
    """The tile that minimises the cost model of ``plan`` (float32, one thread).

    Candidate FFT sizes per axis: 2^a, 3 * 2^a and 5 * 2^a from the kernel's length up to
    384 (2-D; larger transforms fall out of cache: 512 x 512 tiles measured 1.5-2x slower
    per point than the model says, against 256 and 384) or
    2K for longer kernels, and the whole axis when that is at most twice as long; every
    combination is costed at once with NumPy."""
    from .plan import FFT_POINT, FFT_POINT_LOG, FFT_TILE

    axes = p.filtered_axes()
    m = [p.out.shape[i] for i in axes]
    k = [p.w.shape[i] for i in axes]
    B = int(np.prod([p.out.shape[i] for i in range(p.x.ndim) if i not in axes]))
    cap = {1: 1 << 16, 2: 384}.get(len(axes), 128)
    cands = []
    for mi, ki in zip(m, k):
        whole = next_fast_len(mi + ki - 1)
        hi = max(cap, next_fast_len(2 * ki))  # a kernel longer than the cap: tiles of 2K
        sizes = [
            n
            for n in smooth_sizes(ki, hi, dense=len(axes) <= 2)
            if n < whole and n == next_fast_len(n)
        ]
        if whole <= 2 * hi or not sizes:  # one tile along the axis: memory ~ 2x the tile cap
            sizes.append(whole)
        cands.append(np.array(sizes, dtype=np.float64))
    grids = np.meshgrid(*cands, indexing="ij")
    N = np.stack([g.ravel() for g in grids])  # (f, combos)
    kk = np.array(k, dtype=np.float64)[:, None]
    mm = np.array(m, dtype=np.float64)[:, None]
    T = np.minimum(N - kk + 1, mm)
    size = np.prod(N, axis=0)
    tiles = np.prod(np.ceil(mm / T), axis=0)
    group = np.maximum(1, np.minimum(B, np.floor((1 << 16) / size)))
    calls = tiles * np.ceil(B / group)
    point = size * group
    sec = calls * (
        point * np.log2(np.maximum(size, 2)) * FFT_POINT_LOG + point * FFT_POINT + FFT_TILE
    )
    i = int(np.argmin(sec))
    return TilePlan(
        axes,
        tuple(int(v) for v in N[:, i]),
        tuple(int(v) for v in T[:, i]),
        int(group[i]),
        float(sec[i]),
    )


def correlate(p: Problem, nthreads: int, plan: Optional[TilePlan] = None) -> None:
    """Fill p.out (see ``plan.correlate``) with the FFT engine."""
    tp = plan or plan_tiles(p)
    axes = tp.axes
    nd = p.x.ndim
    batch = [i for i in range(nd) if i not in axes]
    order = batch + axes
    x, out = p.x.transpose(order), p.out.transpose(order)
    f = len(axes)
    w = p.w.transpose(order).reshape(tuple(p.w.shape[i] for i in axes))
    w = np.ascontiguousarray(w[(slice(None, None, -1),) * f])
    nb = len(batch)
    if nb == 0:
        stacks = [(x[None], out[None])]
    else:
        xm, om = merge_leading(x, nb), merge_leading(out, nb)
        if xm is not None and om is not None:
            stacks = [(xm, om)]
        else:  # merging needs a copy: one stack per index of the leading batch axes
            stacks = [(x[i], out[i]) for i in np.ndindex(*x.shape[: nb - 1])]
    complex_ = p.compute.kind == "c"
    fwd, inv = _transforms(complex_)
    fax = tuple(range(-f, 0))
    N, T = tp.N, tp.T
    W = fwd(w.astype(np.complex128 if complex_ else np.float64), N, fax)
    W = W.astype(np.complex64 if p.compute in (np.float32, np.complex64) else np.complex128)
    k = w.shape
    before = [p.before[i] for i in axes]
    modes = ("constant",) + tuple(p.modes[i] for i in axes)
    dtype = np.dtype(p.compute)
    for xs, os_ in stacks:
        B = xs.shape[0]
        m = os_.shape[1:]
        ntiles = [-(-mi // t) for mi, t in zip(m, T)]
        per_group = math.prod(ntiles)
        n_items = -(-B // tp.group) * per_group

        def work(item: int, xs=xs, os_=os_, m=m, ntiles=ntiles, per_group=per_group, B=B):
            g, t = divmod(item, per_group)
            tidx = np.unravel_index(t, ntiles)
            b0, b1 = g * tp.group, min(B, (g + 1) * tp.group)
            starts = [int(ti) * Ti for ti, Ti in zip(tidx, T)]
            block = np.empty((b1 - b0,) + tuple(N), dtype)
            boundary.fill(
                block, xs[b0:b1], [0] + [s - b for s, b in zip(starts, before)], modes, p.cval
            )
            y = inv(fwd(block, N, fax) * W, N, fax)
            n_out = [min(Ti, mi - s) for Ti, mi, s in zip(T, m, starts)]
            sel = tuple(slice(ki - 1, ki - 1 + n) for ki, n in zip(k, n_out))
            osel = tuple(slice(s, s + n) for s, n in zip(starts, n_out))
            os_[(slice(b0, b1),) + osel] = p.cast(y[(slice(None),) + sel])

        threads.run(work, n_items, nthreads)
