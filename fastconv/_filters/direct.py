"""The direct engine: a correlation cut into tiles, each run on fastconv's own kernels.

Layout. The axes of a problem (``plan.Problem``) take one of three roles:

- plane (rows, cols): the last two filtered axes, handed to the 2-D kernel. With one
  filtered axis its partner is a batch axis (or a length-1 axis for 1-D data), chosen so
  that the columns are the input's contiguous axis: a vertical pass (K x 1 kernel) when the
  filtered axis is not the contiguous one, a horizontal pass (1 x K) when it is.
- depth: filtered axes before those two (a 3-D kernel); their taps are summed, tile by tile.
- batch: axes that are not filtered (a stack of images filtered with one kernel).

Tiles. The output plane is cut into tiles of ``rows x cols``. A tile reads a block of
``(rows + KH - 1) x (cols + KW - 1)`` of the extended input, which ``boundary.fill`` copies
from the input (border runs resolved by the mode): the only copy of the input ever made,
bounded by the tile. Tiles are the same size everywhere (the last ones read past the
output's end and are cropped), so several can be stacked into one (g, rows, cols) call of
``fastconv.depthwise_conv2d`` (one channel, g images, cross-correlation like torch).

Threads. Engine 'c' runs tiles on ``threads.run`` (one tile per call: the C kernel is
re-entrant and releases the GIL, so the copies and the kernels of different tiles run at
once); engines that parallelise inside a call ('numba') get stacks of tiles from one
Python thread instead. Memory: input + output + (tile block + tile output) per thread.

Separable kernels (``Problem.factors``) run as a vertical then a horizontal 1-D pass on
each block: KH + KW multiply-adds per output instead of KH * KW.

Exact paths (``taps_*``): SciPy computes some results in a fixed order whose rounding the
integer outputs show (a truncated 2.9999999999999996 is 2, not 3), and scipy.signal
computes integer inputs in integer arithmetic. These paths replay that arithmetic with
NumPy on the same tiles, one tap at a time, in SciPy's order.
"""

from __future__ import annotations

import itertools
import math
import threading
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import boundary, threads
from .plan import GEMM_MIN_TAPS, GEMM_ROWS, Problem, merge_leading

#: Target elements of one tile's input block (1 MiB of float32: two fit the L2 of a core).
BLOCK_ELEMS = 1 << 18


def _engine(backend: str) -> str:
    """The engine ``backend`` names ('auto' resolved as fastconv resolves it)."""
    if backend != "auto":
        return backend
    import fastconv

    avail = fastconv.available_backends()
    for name in ("c", "numba", "reference"):
        if avail.get(name, "").startswith("available"):
            return name
    return "reference"  # pragma: no cover - the reference engine is always there


class Scratch:
    """The arrays of one call's tiles, per thread: buffers reused from tile to tile, and the
    kernel's outputs of the thread's previous tile, kept until the next one exists.

    Why: a tile that frees its arrays (its block, the kernel's outputs: a few MiB) together
    at its end leaves them as one free block that glibc returns to the system, and the
    next tile faults its memory in again (measured on a 4096 x 4096 Gaussian: 30,000 page
    faults per call, twice the time). Freeing each array only once its successor is
    allocated keeps the memory in the heap: 10 faults per call. Dropped with the call."""

    def __init__(self) -> None:
        self._slots: Dict[Tuple[int, str], np.ndarray] = {}

    def buffer(self, name: str, shape: Tuple[int, ...], dtype) -> np.ndarray:
        key = (threading.get_ident(), name)
        b = self._slots.get(key)
        if b is None or b.shape != tuple(shape) or b.dtype != dtype:
            b = self._slots[key] = np.empty(shape, dtype)
        return b

    def keep(self, name: str, a: np.ndarray) -> np.ndarray:
        self._slots[(threading.get_ident(), name)] = a  # frees the previous one, only now
        return a


def kernel2d(block: np.ndarray, w2: np.ndarray, backend: str) -> np.ndarray:
    """block (g, hb, wb) and w2 (KH, KW), both C-contiguous in one float dtype -> the valid
    cross-correlation (g, hb - KH + 1, wb - KW + 1), on fastconv.depthwise_conv2d."""
    if w2.shape == (1, 1):
        return block * w2[0, 0]
    import fastconv

    y = fastconv.depthwise_conv2d(block[:, None], w2[None, None], backend=backend)
    return y[:, 0]


class Layout:
    """Axis roles of a problem and its arrays transposed to (batch, depth, rows, cols)."""

    def __init__(self, p: Problem, filtered: Sequence[int]):
        nd = p.x.ndim
        filt = list(filtered)
        plane: List[Optional[int]]
        self.dummy = False
        if len(filt) >= 2:
            plane = list(filt[-2:])
        else:
            a = filt[0]
            others = [i for i in range(nd) if i != a]
            if not others:
                plane = [None, a]
                self.dummy = True
            else:
                # the batch axis with the smallest stride becomes the partner
                b = min(others, key=lambda i: (abs(p.x.strides[i]), -i))
                plane = [a, b] if abs(p.x.strides[a]) > abs(p.x.strides[b]) else [b, a]
        depth = filt[:-2] if len(filt) >= 2 else []
        batch = [i for i in range(nd) if i not in depth and i not in plane]
        self.batch, self.depth, self.plane = batch, depth, plane
        order = batch + depth + [i for i in plane if i is not None]
        self.identity = order == list(range(nd))
        x, out, w = p.x.transpose(order), p.out.transpose(order), p.w.transpose(order)
        if self.dummy:
            x, out, w = x[..., None, :], out[..., None, :], w[..., None, :]
        w = w.reshape(w.shape[len(batch) :])  # batch axes of the kernel have length 1
        self.x: np.ndarray = x
        self.out: np.ndarray = out
        self.w: np.ndarray = w
        ax = [i if i is not None else -1 for i in plane]
        pick = lambda seq, i, dflt: seq[i] if i >= 0 else dflt  # noqa: E731
        self.before = [p.before[i] for i in depth] + [pick(p.before, i, 0) for i in ax]
        self.modes = [p.modes[i] for i in depth] + [pick(p.modes, i, "constant") for i in ax]
        self.factors: Optional[List[np.ndarray]] = None
        if p.factors is not None:
            scale = np.prod([p.factors[i][0] for i in batch]) if batch else 1
            f = [np.asarray(p.factors[i]) for i in depth] + [
                np.asarray(p.factors[i]) if i >= 0 else np.ones(1, p.w.dtype) for i in ax
            ]
            f[-1] = f[-1] * scale
            self.factors = [np.ascontiguousarray(v, dtype=p.w.dtype) for v in f]
        self.nbatch = len(batch)
        self.ndepth = len(depth)


def correlate(p: Problem, backend: str, nthreads: int) -> np.ndarray:
    """Compute p (see ``plan.correlate``) with the direct engine; returns p.out, or, when
    p.fresh_out allows it, the output array of a single kernel call (``one_call``)."""
    filt = p.filtered_axes()
    if not filt:  # a 1 x ... x 1 kernel: a scaling
        out = p.materialize()
        _tiled_map(out, lambda sl: p.cast(p.x[sl].astype(p.compute) * p.w.reshape(-1)[0]))
        return out
    if p.compute.kind == "c":
        p.materialize()
        _complex(p, backend, nthreads)
        return p.out
    engine = _engine(backend)
    lay = Layout(p, filt)
    KH, KW = lay.w.shape[-2], lay.w.shape[-1]
    if engine == "c" and c_planes(p, lay, filt):
        return p.out
    if p.fresh_out and (lay.factors is None or KH * KW <= 2 * (KH + KW) + 15):
        # small kernels: one dense call beats two separable passes over copied tiles
        y = one_call(p, lay, engine, nthreads)
        if y is not None:
            return y
    c_rows = lay.factors is not None and engine == "c" and not lay.ndepth
    if lay.factors is not None and not c_rows:  # engines that thread inside a call
        y = separable_slabs(p, lay, engine, nthreads)
        if y is not None:
            return y
    if not p.out.flags.writeable:  # the engines below write into the output
        p.materialize()
        lay = Layout(p, filt)
    if c_rows:
        # the C kernel is re-entrant: bands of rows on the Python threads, both passes
        # in cache
        _separable_rows(p, lay, engine, nthreads, gemm=KH >= GEMM_MIN_TAPS)
        return p.out
    _tiles(p, lay, engine, nthreads)
    return p.out


def _c_module():
    try:
        from ..backends.c import filter2d
    except ImportError:  # pragma: no cover - the extension is not built
        return None
    return filter2d


def c_planes(p: Problem, lay: Layout, filt: Sequence[int]) -> bool:
    """Compute p with the C engine's plane filters (csrc/filter2d.c) and return True, or
    return False where they do not apply (the caller then takes the tile paths): a real
    problem with at most two filtered axes, its input in the compute dtype with contiguous
    columns, and its batch axes mergeable into one. The kernels read the input in place,
    resolve the boundary modes themselves and write the output directly (or, when its dtype
    or layout differs, slabs of rows of a compute-dtype buffer, cast into it): memory input +
    output + per thread a few rows.

    Dense or separable: a separable kernel runs as the fused column + row passes when it
    has more taps than 2 * (KH + KW) + 15 (measured on 4096^2 float32, one thread: 5x5
    dense 14.9 ms, separable 16.7; 7x7 24.6 and 16.4); a 1-D kernel (KH or KW of 1) always
    on the dense kernel, which shares each load between RB output rows (K x 1) or reads
    the input rows in place (1 x K)."""
    cf = _c_module()
    if cf is None or lay.ndepth or p.compute.kind != "f":
        return False
    nb = lay.nbatch
    xs = merge_leading(lay.x, nb) if nb else lay.x[None]
    if xs is None or xs.size == 0 or xs.dtype != p.compute or not cf.usable(xs):
        return False
    KH, KW = lay.w.shape[-2], lay.w.shape[-1]
    fac = lay.factors
    sep = fac is not None and KH > 1 and KW > 1 and KH * KW > 2 * (KH + KW) + 15
    if sep:
        assert fac is not None
        u, v = np.ascontiguousarray(fac[-2]), np.ascontiguousarray(fac[-1])
        w2 = u
    else:
        w2 = np.ascontiguousarray(lay.w.reshape(KH, KW), dtype=p.compute)
        v = None
    before = (lay.before[-2], lay.before[-1])
    modes = (lay.modes[-2], lay.modes[-1])
    out = p.materialize()
    lay_out = out.transpose(_order(lay)) if not lay.identity else out
    if lay.dummy:
        lay_out = lay_out[..., None, :]
    os_ = merge_leading(lay_out, nb) if nb else lay_out[None]
    if os_ is None:
        return False
    direct_out = (
        os_.dtype == p.compute
        and p.cast(np.zeros(1, p.compute)).dtype == os_.dtype
        and cf.usable(os_)
    )
    if direct_out:
        cf.filter2d(xs, os_, w2, before, modes, p.cval, v)
        return True
    # slabs of rows into a buffer, then cast into the output (any dtype, any strides)
    B, OH, OW = os_.shape
    rows = max(1, min(OH, BLOCK_ELEMS // max(1, OW)))
    buf = np.empty((1, rows, OW), p.compute)
    for b in range(B):
        for r0 in range(0, OH, rows):
            r1 = min(OH, r0 + rows)
            y = buf[:, : r1 - r0]
            cf.filter2d(xs[b : b + 1], y, w2, (before[0] - r0, before[1]), modes, p.cval, v)
            os_[b, r0:r1] = p.cast(y[0])
    return True


def _order(lay: Layout) -> List[int]:
    return lay.batch + lay.depth + [i for i in lay.plane if i is not None]


def _separable_rows(p: Problem, lay: Layout, engine: str, nthreads: int, gemm: bool) -> None:
    """A separable kernel on bands of R full rows: the vertical pass reads the input rows
    in place (a view; a copy only for the bands at the top and bottom, where the row mode
    applies), the horizontal pass reads the vertical pass's rows extended by the column
    mode (a constant column reads cval * sum(u), the fused filter's value).

    Vertical pass: KH row updates per output row (fastconv.depthwise_conv2d), or, for a
    long factor (``gemm``), a matrix product: output rows r0 .. r0 + R - 1 are T @ X, with X
    the R + KH - 1 input rows they read and T the R x (R + KH - 1) band matrix holding the
    factor u on each row, shifted by one per row: a 1x1 fastconv.conv2d (its GEMM) with R
    output and R + KH - 1 input channels. Half of T is zeros (R ~ KH), yet the GEMM's speed
    makes it faster than KH row updates once KH >= GEMM_MIN_TAPS (measured: 1.1x at 49 taps,
    1.6x at 129)."""
    import fastconv

    nb = lay.nbatch
    xs = merge_leading(lay.x, nb) if nb else lay.x[None]
    os_ = merge_leading(lay.out, nb) if nb else lay.out[None]
    if xs is None or os_ is None:
        _tiles(p, lay, engine, nthreads)
        return
    B, H, W = xs.shape
    OH, OW = os_.shape[-2:]
    assert lay.factors is not None
    u, v = lay.factors[-2], lay.factors[-1]
    KH, KW = len(u), len(v)
    if gemm:
        R = GEMM_ROWS
    else:  # about BLOCK_ELEMS per band, at least KH rows (the halo costs at most 2x)
        R = min(OH, max(KH - 1, 8, BLOCK_ELEMS // max(W, 1) - (KH - 1)))
    C = R + KH - 1
    if gemm:
        T = np.zeros((R, C), p.compute)
        for i in range(R):
            T[i, i : i + KH] = u
        T4 = T[:, :, None, None]
    else:
        u4 = np.ascontiguousarray(u.reshape(1, 1, KH, 1))
    bh, bw = lay.before[-2], lay.before[-1]
    mrow, mcol = lay.modes[-2], lay.modes[-1]
    ccol = p.cval * float(np.sum(u))
    n_r = -(-OH // R)
    dtype = np.dtype(p.compute)
    v2 = np.ascontiguousarray(v.reshape(1, KW))
    aw = KW - 1 - bw
    # 'same' width: the horizontal pass reads the vertical pass's rows in place with the
    # kernel's zero padding (centred with zero taps), and only the bw + aw border columns
    # are computed again with the mode; otherwise the rows are first copied, extended
    pad_ok = OW == W and 0 <= bw < KW
    if pad_ok:
        pw = max(bw, aw)
        vk = np.zeros((1, 1, 1, 2 * pw + 1), p.compute)
        vk[0, 0, 0, pw - bw : pw - bw + KW] = v
        fix_cols = not (mcol == "constant" and ccol == 0)

    # Bands run on the Python threads, every kernel call on one thread: a depthwise call
    # on one plane does, and the GEMM is asked for its single-threaded variant (OpenMP
    # teams inside Python threads oversubscribe the cores, and a parallel region per band
    # stalls at its barrier whenever the machine is busy: measured 20x slower under load).
    py_threads, P = nthreads, 1
    scratch = Scratch()

    def work(item: int) -> None:
        b, rt = divmod(item, n_r)
        r0 = rt * R
        a = r0 - bh
        plane = xs[b]
        if a >= 0 and a + C <= H and plane.dtype == dtype and plane[a : a + C].flags.c_contiguous:
            xin = plane[a : a + C]
        else:
            xin = scratch.buffer("rows", (C, W), dtype)
            boundary.fill(xin, plane, (a, 0), (mrow, "constant"), p.cval)
        if gemm:
            yv = _gemm(xin.reshape(1, C, 1, W), T4, engine).reshape(R, W)
        else:
            yv = fastconv.depthwise_conv2d(xin.reshape(1, 1, C, W), u4, backend=engine)[0, 0]
        scratch.keep("vertical", yv)
        if pad_ok:  # rows are independent here: P planes of one call for the C threads
            y = fastconv.depthwise_conv2d(
                yv.reshape(P, 1, R // P, W), vk, padding=(0, pw), backend=engine
            ).reshape(1, 1, R, W)
            scratch.keep("horizontal", y)
            if fix_cols:
                for c0, c1 in ((0, min(bw, W)), (max(W - aw, 0), W)):
                    if c1 > c0:
                        strip = np.empty((R, c1 - c0 + KW - 1), dtype)
                        boundary.fill(strip, yv, (0, c0 - bw), ("constant", mcol), ccol)
                        y[0, 0, :, c0:c1] = _taps1d(strip, v, c1 - c0)
        else:
            block = scratch.buffer("block", (1, R, OW + KW - 1), dtype)
            boundary.fill(block[0], yv, (0, -bw), ("constant", mcol), ccol)
            y = scratch.keep("horizontal", kernel2d(block, v2, engine))[:, None]
        r1 = min(r0 + R, OH)
        os_[b, r0:r1] = p.cast(y[0, 0, : r1 - r0])

    threads.run(work, B * n_r, py_threads)


def _gemm(x4: np.ndarray, w4: np.ndarray, engine: str) -> np.ndarray:
    """fastconv.conv2d on one thread (the C engine's single-threaded SIMD variant)."""
    import fastconv

    if engine == "c":
        try:
            return fastconv.conv2d(x4, w4, backend=engine, variant="v4_simd")
        except ValueError:  # pragma: no cover - an engine without that variant
            pass
    return fastconv.conv2d(x4, w4, backend=engine)


def _taps1d(strip: np.ndarray, v: np.ndarray, n: int) -> np.ndarray:
    """Columns j < n of the horizontal correlation of a narrow strip (rows, n + K - 1)."""
    acc = strip[:, :n] * v[0]
    for t in range(1, len(v)):
        acc += strip[:, t : t + n] * v[t]
    return acc


def one_call(p: Problem, lay: Layout, engine: str, nthreads: int) -> Optional[np.ndarray]:
    """The whole output of a dense kernel from one kernel call (``same_pass``) on the input
    itself, no copy: for a 'same'-sized output (OH = H, OW = W) of a C-contiguous input in
    the compute dtype, with the batch axes first, when the caller takes a new array. Returns
    None where this does not apply (the caller then uses tiles)."""
    x = lay.x
    if not _same_ok(p, lay):
        return None
    H, W = x.shape[-2:]
    x3 = x.reshape(-1, H, W)
    y = same_pass(
        x3,
        lay.w,
        lay.before[-2],
        lay.before[-1],
        lay.modes[-2],
        lay.modes[-1],
        p.cval,
        engine,
        nthreads,
    )
    return y.reshape(p.out.shape)


def _same_ok(p: Problem, lay: Layout) -> bool:
    x = lay.x
    KH, KW = lay.w.shape[-2], lay.w.shape[-1]
    return bool(
        lay.identity
        and not lay.ndepth
        and x.dtype == p.compute
        and x.flags.c_contiguous
        and lay.out.shape == x.shape
        and x.size
        and p.cast(np.zeros(1, p.compute)).dtype == p.out.dtype
        and 0 <= lay.before[-2] < KH
        and 0 <= lay.before[-1] < KW
    )


def same_pass(
    x3: np.ndarray,
    w2: np.ndarray,
    bh: int,
    bw: int,
    mrow: str,
    mcol: str,
    cval: float,
    engine: str,
    nthreads: int,
    R0: int = 0,
    R1: Optional[int] = None,
) -> np.ndarray:
    """Rows R0 .. R1 - 1 of the 'same'-sized correlation of the stack x3 (B, H, W)
    (C-contiguous, compute dtype) with w2 (KH, KW), output (i, j) reading x3's rows
    i - bh .. i - bh + KH - 1 (extended by ``mrow``) and columns j - bw .. (by ``mcol``), as
    a new (B, R1 - R0, W) array.

    One call of fastconv.depthwise_conv2d on the rows themselves (a view), with its zero
    padding (the kernel padded with zero taps to be centred); a single image is cut into P
    horizontal slabs, P planes of the call, so the engine's threads share it. The outputs
    that read past an edge where the mode is not a zero constant, past the slab, or across
    a cut (K - 1 rows each) are then computed again by tiles, which read the true rows."""
    import fastconv

    B, H, W = x3.shape
    R1 = H if R1 is None else R1
    n = R1 - R0
    KH, KW = w2.shape
    ah, aw = KH - 1 - bh, KW - 1 - bw
    ph, pw = max(bh, ah), max(bw, aw)
    wk = np.zeros((2 * ph + 1, 2 * pw + 1), x3.dtype)  # centred: zero taps added
    wk[ph - bh : ph - bh + KH, pw - bw : pw - bw + KW] = w2
    P = 1
    if B < nthreads:
        for cand in range(nthreads, 4 * nthreads + 1, nthreads):
            if n % cand == 0 and n // cand >= max(16, 4 * KH):
                P = cand
                break
    h = n // P
    y = fastconv.depthwise_conv2d(
        x3[:, R0:R1].reshape(B * P, 1, h, W), wk[None, None], padding=(ph, pw), backend=engine
    ).reshape(B, n, W)
    zero_row = mrow == "constant" and cval == 0
    zero_col = mcol == "constant" and cval == 0
    regions = [(q * h - ah, q * h + bh, 0, W) for q in range(1, P)]  # the cuts
    if R0 > 0 or not zero_row:
        regions.append((0, bh, 0, W))
    if R1 < H or not zero_row:
        regions.append((n - ah, n, 0, W))
    if not zero_col:
        regions += [(0, n, 0, bw), (0, n, W - aw, W)]
    w3 = np.ascontiguousarray(w2[None])
    for r0, r1, c0, c1 in regions:
        r0, r1, c0, c1 = max(r0, 0), min(r1, n), max(c0, 0), min(c1, W)
        if r1 <= r0 or c1 <= c0:
            continue
        sub = Problem(
            x3,
            w3,
            (0, bh - R0 - r0, bw - c0),
            (0, 1, 1),
            ("constant", mrow, mcol),
            cval,
            y[:, r0:r1, c0:c1],
            lambda v: v,
            np.dtype(x3.dtype),
        )
        _tiles(sub, Layout(sub, [1, 2]), engine, 1)  # a few rows: the pool costs more
    return y


#: The most elements a separable filter keeps between its two passes (64 MiB of float32):
#: larger inputs are filtered in slabs of rows.
SLAB_ELEMS = 1 << 24


def separable_slabs(p: Problem, lay: Layout, engine: str, nthreads: int) -> Optional[np.ndarray]:
    """A separable kernel as two ``same_pass`` calls per slab of rows: the vertical factor
    on the input rows in place, the horizontal one on the result (a constant column then
    reads cval * sum(u), the fused filter's value). Returns the output (a new array when
    p.fresh_out and one slab holds everything), or None where ``same_pass`` does not apply.
    Memory: input + output + one slab."""
    if not _same_ok(p, lay) or lay.factors is None:
        return None
    x = lay.x
    H, W = x.shape[-2:]
    x3 = x.reshape(-1, H, W)
    B = x3.shape[0]
    u, v = lay.factors[-2], lay.factors[-1]
    KH, KW = len(u), len(v)
    bh, bw = lay.before[-2], lay.before[-1]
    mrow, mcol = lay.modes[-2], lay.modes[-1]
    ccol = p.cval * float(np.sum(u))
    rows = max(1, min(H, SLAB_ELEMS // max(1, B * W)))
    out3 = None if (p.fresh_out and rows >= H) else p.materialize().reshape(-1, H, W)
    for R0 in range(0, H, rows):
        R1 = min(H, R0 + rows)
        y1 = same_pass(
            x3, u.reshape(KH, 1), bh, 0, mrow, "constant", p.cval, engine, nthreads, R0, R1
        )
        y2 = same_pass(y1, v.reshape(1, KW), 0, bw, "constant", mcol, ccol, engine, nthreads)
        del y1
        if out3 is None:
            return y2.reshape(p.out.shape)
        out3[:, R0:R1] = p.cast(y2)
    return p.out


def _tiles(p: Problem, lay: Layout, engine: str, nthreads: int) -> None:
    """Fill p.out tile by tile (the module docstring)."""
    nb = lay.nbatch
    if nb == 0:
        xs, os_ = lay.x[None], lay.out[None]
        outer: List[tuple] = [()]
    else:
        xm, om = merge_leading(lay.x, nb), merge_leading(lay.out, nb)
        if xm is not None and om is not None:
            xs, os_ = xm, om
            outer = [()]
        else:  # merge needs a copy: loop over all but the last axis
            xs, os_ = lay.x, lay.out
            outer = list(np.ndindex(*lay.x.shape[: nb - 1]))
    x0 = xs[outer[0]] if outer[0] else xs
    o0 = os_[outer[0]] if outer[0] else os_
    B = x0.shape[0]
    kd: Tuple[int, ...] = tuple(int(k) for k in lay.w.shape[: lay.ndepth])
    KH, KW = lay.w.shape[-2], lay.w.shape[-1]
    OD = o0.shape[1 : 1 + lay.ndepth]
    OH, OW = o0.shape[-2:]
    dtype = np.dtype(p.compute)

    # tile geometry (see the module docstring)
    cols = OW if OW + KW - 1 <= 16384 else max(4096, 8 * KW)
    rows = max(1, BLOCK_ELEMS // (cols + KW - 1) - (KH - 1), KH - 1)
    rows = min(rows, OH)
    n_r, n_c = -(-OH // rows), -(-OW // cols)
    per_plane = n_r * n_c
    n_d = int(np.prod(OD)) if OD else 1
    n_sub = len(outer) * B * n_d * per_plane
    if n_sub < 4 * nthreads and rows > 8:  # enough tiles for the threads
        want = -(-4 * nthreads // max(1, n_sub // n_r))
        rows = max(8, -(-OH // want))
        n_r = -(-OH // rows)
        per_plane = n_r * n_c
        n_sub = len(outer) * B * n_d * per_plane
    hb, wb = rows + KH - 1, cols + KW - 1
    if engine == "c":
        group = max(1, BLOCK_ELEMS // (hb * wb))
        py_threads = nthreads if group == 1 else 1
    else:  # the engine threads inside a call: hand it stacks of tiles
        group = max(1, (4 * BLOCK_ELEMS) // (hb * wb), 2 * nthreads if n_sub > 1 else 1)
        py_threads = 1
    group = min(group, n_sub)
    n_items = -(-n_sub // group)
    taps: List[Tuple[int, ...]] = list(itertools.product(*[range(int(k)) for k in kd]))
    bdepth, brow, bcol = lay.before[: lay.ndepth], lay.before[-2], lay.before[-1]
    mdepth, mrow, mcol = lay.modes[: lay.ndepth], lay.modes[-2], lay.modes[-1]
    D_in = x0.shape[1 : 1 + lay.ndepth]
    fac = lay.factors

    def decode(s: int):
        s, c_t = divmod(s, n_c)
        s, r_t = divmod(s, n_r)
        s, d_i = divmod(s, n_d)
        o_i, b = divmod(s, B)
        d_idx = np.unravel_index(d_i, OD) if OD else ()
        return outer[o_i], b, tuple(int(v) for v in d_idx), r_t * rows, c_t * cols

    scratch = Scratch()

    def work(item: int) -> None:
        s0 = item * group
        subs = [decode(s) for s in range(s0, min(s0 + group, n_sub))]
        g = len(subs)
        block = scratch.buffer("block", (g, hb, wb), dtype)
        acc: Optional[np.ndarray] = None
        for t in taps:
            for j, (o_idx, b, d_idx, r0, c0) in enumerate(subs):
                xo = xs[o_idx] if o_idx else xs
                src = []
                const = False
                for a in range(lay.ndepth):
                    si = int(
                        boundary.source_index(
                            np.array(d_idx[a] + t[a] - bdepth[a]), D_in[a], mdepth[a]
                        )
                    )
                    const |= si < 0
                    src.append(si)
                if const:
                    block[j] = p.cval
                else:
                    plane = xo[(b,) + tuple(src)]
                    boundary.fill(block[j], plane, (r0 - brow, c0 - bcol), (mrow, mcol), p.cval)
            if fac is None:
                y = scratch.keep("out", kernel2d(block, np.ascontiguousarray(lay.w[t]), engine))
                acc = y if acc is None else acc.__iadd__(y)
            else:
                scale = math.prod(float(fac[a][t[a]]) for a in range(lay.ndepth)) if t else 1.0
                if acc is None:
                    acc = block * scale if scale != 1.0 else block.copy() if taps[1:] else block
                else:
                    acc += block * scale
        if fac is not None:  # the two 1-D passes (a length-1 factor is a scale)
            u, v = fac[-2], fac[-1]
            y = scratch.keep(
                "vertical", kernel2d(np.ascontiguousarray(acc), u.reshape(KH, 1), engine)
            )
            acc = scratch.keep("out", kernel2d(y, v.reshape(1, KW), engine))
        assert acc is not None
        for j, (o_idx, b, d_idx, r0, c0) in enumerate(subs):
            oo = os_[o_idx] if o_idx else os_
            r1, c1 = min(r0 + rows, OH), min(c0 + cols, OW)
            oo[(b,) + d_idx + (slice(r0, r1), slice(c0, c1))] = p.cast(acc[j, : r1 - r0, : c1 - c0])

    threads.run(work, n_items, py_threads)


def _complex(p: Problem, backend: str, nthreads: int) -> None:
    """A complex problem as real ones: (a + ib) * (c + id) = ac - bd + i(ad + bc)."""
    xr, xi = np.real(p.x), (np.imag(p.x) if np.iscomplexobj(p.x) else None)
    wr, wi = np.ascontiguousarray(p.w.real), np.ascontiguousarray(p.w.imag)
    real = np.dtype(np.float32) if p.compute == np.complex64 else np.dtype(np.float64)
    acc = np.zeros(p.out.shape, np.complex128 if real == np.float64 else np.complex64)
    cv = complex(p.cval)
    terms = [(xr, wr, cv.real, 1), (xr, wi, cv.real, 1j)]
    if xi is not None:
        terms += [(xi, wr, cv.imag, 1j), (xi, wi, cv.imag, -1)]
    for xpart, wpart, c, coef in terms:
        if not np.any(wpart):
            continue
        part = np.empty(p.out.shape, real)
        sub = Problem(xpart, wpart, p.before, p.after, p.modes, c, part, lambda t: t, real)
        correlate(sub, backend, nthreads)
        acc += coef * part
    p.out[...] = p.cast(acc)


def _tiled_map(out: np.ndarray, f: Callable[[tuple], np.ndarray]) -> None:
    """out[sl] = f(sl) over slabs of the first axis (bounded temporaries)."""
    if out.ndim == 0:
        out[()] = f(())
        return
    step = max(1, BLOCK_ELEMS // max(1, int(np.prod(out.shape[1:]))))
    for i in range(0, out.shape[0], step):
        sl = (slice(i, i + step),)
        out[sl] = f(sl)


# --------------------------------------------------------------------------- exact paths


def taps_correlate(
    x: np.ndarray,
    w: np.ndarray,
    before: Sequence[int],
    modes: Sequence[str],
    cval,
    out: np.ndarray,
    acc_dtype,
    combine: Callable,
) -> None:
    """out = combine(shifted, shape, block) over slabs of out's first axis: block is the
    slab's extended input (in ``acc_dtype``), shifted(j) the view of it that tap j (an index
    tuple of w) reads for the whole slab, shape the slab's; combine does the arithmetic in
    SciPy's order."""
    nd = x.ndim
    if nd == 0:
        x0 = np.asarray(x, acc_dtype)
        out[()] = combine(lambda j: x0, (), x0)
        return
    m = out.shape
    inner = int(np.prod(m[1:])) if nd > 1 else 1
    ext_inner = int(np.prod([m[i] + w.shape[i] - 1 for i in range(1, nd)])) if nd > 1 else 1
    step = max(1, (4 * BLOCK_ELEMS) // max(1, ext_inner + inner))
    for i0 in range(0, m[0], step):
        i1 = min(m[0], i0 + step)
        shape = (i1 - i0 + w.shape[0] - 1,) + tuple(m[i] + w.shape[i] - 1 for i in range(1, nd))
        block = np.empty(shape, acc_dtype)
        starts = (i0 - before[0],) + tuple(-before[i] for i in range(1, nd))
        boundary.fill(block, x, starts, modes, cval)
        sub = (i1 - i0,) + tuple(m[1:])

        def shifted(j: Tuple[int, ...], block=block, sub=sub) -> np.ndarray:
            return block[tuple(slice(j[a], j[a] + sub[a]) for a in range(nd))]

        out[i0:i1] = combine(shifted, sub, block)
