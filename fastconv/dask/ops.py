"""fastconv's public ops on dask arrays: the same signatures, results and errors, lazily.

Each function here has the name, signature and semantics of the public function it stands
for (``fastconv.conv2d``, ``fastconv.grad.conv2d_input``, ...); the public functions hand
calls with a dask array argument over to them (``fastconv/ops/_dask_entry.py``).

A call does all its validation now, by running the NumPy function on a stand-in with an
empty batch (every check but the batch's own runs, and nothing is computed), and returns a
lazy dask array. Every task then runs that same NumPy function (with the call's
``backend=``) on one block of the input, gathered with a halo computed from the op's
geometry (``fastconv._shapes``). Per spatial axis, with In / Out the input / output length,
K, s, d, p the kernel, stride, dilation and leading padding and eff = d*(K-1) + 1:

- convolution (conv1d/2d, depthwise, separable): output block [o0, o1) reads input
  [o0*s - p, (o1-1)*s - p + eff), zero-filled outside the input (other padding modes are
  applied to the dask array first), and runs with padding 0: the block is exact.
- max / avg pooling: the block starts on the stride grid, at b0 = s*max(0, o0 - ceil(p/s)),
  and keeps the op's own padding, so windows at the real borders (padding never wins,
  count_include_pad, ceil_mode's last window) are computed as in memory; outputs that see
  the block's inner edge are cropped. Indices are mapped back to the whole plane.
- transposed convolution: output block [o0, o1) gathers inputs
  [ceil((o0 + p - d(K-1))/s), floor((o1-1 + p)/s)], runs with padding 0 and is placed
  back (overlapping outputs of neighbouring inputs are summed inside one task).
- adaptive pooling: output blocks start on multiples of P = Out / gcd(In, Out), where a bin
  starts exactly on an input position; the block's bins are then the op's own bins.
- gradients: the adjoint ranges of the same rules; weight and bias gradients sum one
  partial result per block (a tree of sums, in float64 for float32 results).

Batch chunks map block by block; channel chunks map block by block for pooling and
depthwise convolution and are gathered into one block for the other ops. Weights and biases
are NumPy arrays (a dask weight is computed at call time) held once in the graph.
"""

from __future__ import annotations

import functools
import inspect
import math
from fractions import Fraction
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from .. import _shapes
from ..ops import conv as _conv
from ..ops import grad as _grad
from ..ops import pool as _pool
from ._blocks import OpRef, Params, Source, build, edges, partition, spans

_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _cdiv(a: int, b: int) -> int:
    return -((-a) // b)


def _unwrapped(fn: Callable) -> Callable:
    return inspect.unwrap(fn)


# --------------------------------------------------------------------------- call context


class _Stop(Exception):
    """The probe could not be set up: the exact NumPy call will report the problem."""


class _Ctx:
    """One dask call: bound arguments, validation by a probe call, output metadata.

    Internally every dask argument is batched ((1,) + shape for an unbatched call); the
    ``finish`` step drops that axis again."""

    def __init__(self, fn: Callable, args: tuple, kwargs: dict, nd: int,
                 arrays: Sequence[str], shape_args: Sequence[str], batch_out: bool):
        self.fn = _unwrapped(fn)
        self.op = fn.__name__
        self.nd = nd
        self.result: Any = None
        try:
            bound = inspect.signature(self.fn).bind(*args, **kwargs)
        except TypeError:
            self.fn(*args, **kwargs)  # raises the function's own TypeError
            raise
        bound.apply_defaults()
        a = dict(bound.arguments)
        for k, v in a.items():  # parameters (weights, biases) are NumPy arrays
            if k not in arrays and isinstance(v, da.Array):
                a[k] = v.compute()
        self.a = a
        self.names = [n for n in arrays if n in a]
        self.dask = {n: a[n] for n in self.names if isinstance(a[n], da.Array)}
        for n, v in self.dask.items():
            if any(math.isnan(c) for cs in v.chunks for c in cs):
                raise ValueError(f"{self.op}: {n} has unknown chunk sizes; call "
                                 f"{n}.compute_chunk_sizes() first")
        shape_names = [n for n in shape_args if n in a]
        try:
            metas, batched = self._probe(shape_names)
        except _Stop as stop:
            self._exact_error(stop.__cause__)
            raise AssertionError("unreachable") from None  # pragma: no cover
        self.batched = batched
        self.batch_out = batch_out
        primary = self._primary_shape(shape_names)
        N = primary[0] if batched else 1
        leads = [np.shape(a[n])[:1] for n in self.names] + [tuple(a[n])[:1] for n in shape_names]
        if batched and any(tuple(lead) != (N,) for lead in leads):
            self._exact_error(None)  # batch sizes differ: the NumPy call says how
        self.out = []
        for shape, dtype in metas:
            if batch_out:
                full = (N,) + tuple(shape[1:])
                visible = full if batched else full[1:]
            else:
                full = visible = tuple(shape)
            self.out.append((full, visible, np.dtype(dtype)))
        if any(math.prod(f) > _shapes.MAX_ELEMENTS for f, _, _ in self.out):
            self._exact_error(None)
        # internal arrays: batched dask arrays (NumPy arguments are wrapped in one chunk)
        for n in self.names:
            v = a[n]
            if not isinstance(v, da.Array):
                v = da.from_array(np.asarray(v), chunks=-1)
            a[n] = v if batched else v[None]
        for n in shape_names:
            a[n] = tuple(a[n]) if batched else (1,) + tuple(a[n])
        if any(math.prod(v) == 0 for _, v, _ in self.out):
            self.result = self._finish([da.zeros(v, dtype=t) for _, v, t in self.out], visible=True)
        elif any(math.prod(a[n].shape) == 0 for n in self.names):
            # an empty gradient (or batch) with a non-empty result: nothing flows back
            self.result = self._finish([da.zeros(v, dtype=t) for _, v, t in self.out], visible=True)

    def _primary_shape(self, shape_names: List[str]) -> Tuple[int, ...]:
        for n in self.names:
            return tuple(np.shape(self.a[n]))
        return tuple(self.a[shape_names[0]])

    def _probe(self, shape_names: List[str]):
        """Run the NumPy function on stand-ins with an empty batch: it validates every
        argument and returns the output's shape (but the batch) and dtype."""
        try:
            primary = self._primary_shape(shape_names)
            if len(primary) == self.nd + 2:
                batched, lead = True, lambda s: (0,) + tuple(s[1:])
            elif len(primary) == self.nd + 1:
                batched, lead = False, lambda s: (0,) + tuple(s)
            else:
                raise ValueError("rank")
            probe = dict(self.a)
            for n in self.names:
                v = self.a[n]
                dt = v.dtype if hasattr(v, "dtype") else np.asarray(v).dtype
                probe[n] = np.zeros(lead(np.shape(v)), dt)
            for n in shape_names:
                probe[n] = lead(tuple(self.a[n]))
        except Exception as exc:
            raise _Stop from exc
        try:
            res = self.fn(**probe)
        except Exception as exc:
            raise _Stop from exc
        many = isinstance(res, tuple)
        metas = [(r.shape, r.dtype) for r in (res if many else (res,))]
        self.many = many
        return metas, batched

    def _exact_error(self, cause: Optional[BaseException]) -> None:
        """Raise the error the NumPy call raises for the real shapes (stand-ins that take no
        memory: the call fails in validation, before it allocates)."""
        exact = dict(self.a)
        for n, v in self.dask.items():
            exact[n] = np.broadcast_to(np.zeros((), v.dtype), v.shape)
        self.fn(**exact)
        if cause is not None:
            raise cause
        raise ValueError(f"{self.op}: invalid arguments")  # pragma: no cover

    def _finish(self, arrays: List[Any], visible: bool = False):
        out = []
        for arr in arrays:
            if not visible and not self.batched and self.batch_out:
                arr = arr[0]
            out.append(arr)
        return tuple(out) if self.many else out[0]

    def finish(self, arrays):
        if not isinstance(arrays, (tuple, list)):
            arrays = [arrays]
        return self._finish(list(arrays))

    # ---------------------------------------------------------------- helpers for builders
    def arr(self, name: str):
        return self.a[name]

    @property
    def dtype(self) -> np.dtype:
        return self.out[0][2]

    @property
    def shape(self) -> Tuple[int, ...]:
        return self.out[0][0]

    def name(self, what: str) -> str:
        return f"{self.op}-{what}-" + tokenize(self.op, what, {
            k: (v.name if isinstance(v, da.Array) else v) for k, v in self.a.items()})


def _op(fn: Callable, nd: int, builder: Callable, arrays=("input",), shape_args=(),
        batch_out: bool = True) -> Callable:
    """The dask version of public function ``fn``: same signature; builds with ``builder``."""

    @functools.wraps(fn)
    def op(*args: Any, **kwargs: Any):
        ctx = _Ctx(fn, args, kwargs, nd, arrays, shape_args, batch_out)
        if ctx.result is not None:
            return ctx.result
        return ctx.finish(builder(ctx))

    op.__module__ = __name__
    op.__doc__ = (f"``fastconv.{fn.__name__}`` on dask arrays (same signature, result and "
                  "errors; returns a lazy dask array). See the module docstring.")
    return op


# --------------------------------------------------------------------------- geometry


class _Axis(NamedTuple):
    """One spatial axis of an op: input / output length, kernel, stride, dilation, leading
    and trailing padding."""

    In: int
    Out: int
    K: int
    s: int
    d: int
    p0: int
    p1: int

    @property
    def eff(self) -> int:
        return self.d * (self.K - 1) + 1


def _window(o0: int, o1: int, ax: _Axis) -> Tuple[int, int]:
    """The input range [lo, hi) the windows of outputs [o0, o1) read (padded coordinates
    shifted so that 0 is the input's first element; it may reach outside the input)."""
    return o0 * ax.s - ax.p0, (o1 - 1) * ax.s - ax.p0 + ax.eff


def _conv_axes(g: _shapes.ConvGeometry) -> List[_Axis]:
    axes = [_Axis(g.W, g.OW, g.KW, g.sw, g.dw, g.pad[2], g.pad[3])]
    if g.nd == 2:
        axes.insert(0, _Axis(g.H, g.OH, g.KH, g.sh, g.dh, g.pad[0], g.pad[1]))
    return axes


def _pool_axes(g: _shapes.PoolGeometry) -> List[_Axis]:
    axes = [_Axis(g.W, g.OW, g.KW, g.sw, g.dw, g.pw, g.pw)]
    if g.nd == 2:
        axes.insert(0, _Axis(g.H, g.OH, g.KH, g.sh, g.dh, g.ph, g.ph))
    return axes


def _adaptive_axes(g: _shapes.PoolGeometry) -> List[Tuple[int, int]]:
    axes = [(g.W, g.OW)]
    if g.nd == 2:
        axes.insert(0, (g.H, g.OH))
    return axes


def _period(In: int, Out: int) -> int:
    """Adaptive pooling: bins start on an input position at multiples of this output index."""
    return Out // math.gcd(In, Out)


def _adaptive_cut(In: int, Out: int):
    """Map an input boundary to the nearest bin boundary on the period grid."""
    P = _period(In, Out)
    return lambda e: P * int(round(Fraction(e * Out, In * P)))


def _blocks_of(chunks_1d) -> List[Tuple[int, int]]:
    return spans(chunks_1d)


def _params_key(name: str) -> str:
    return "params-" + name


def _grid(*dims: List[Tuple[int, int]]):
    """All block indices and spans of a grid given per-dimension span lists."""
    import itertools

    idx = itertools.product(*(range(len(d)) for d in dims))
    for ii in idx:
        yield ii, [dims[k][i] for k, i in enumerate(ii)]


def _static(ctx: _Ctx, skip: Sequence[str]) -> Dict[str, Any]:
    return {k: v for k, v in ctx.a.items() if k not in skip}


def _arrays(ctx: _Ctx, names: Sequence[str]) -> Dict[str, Any]:
    return {n: (None if ctx.a.get(n) is None else np.asarray(ctx.a[n])) for n in names
            if n in ctx.a}


def _place(out: np.ndarray, src: np.ndarray, base: Sequence[int], lo: Sequence[int]) -> None:
    """Copy ``src`` (whose spatial origin is ``base``) into ``out`` (origin ``lo``) where
    they overlap, along the trailing len(base) axes."""
    dst_sl, src_sl = [], []
    for b, l, n_src, n_out in zip(base, lo, src.shape[-len(base):], out.shape[-len(base):]):
        a, z = max(b, l), min(b + n_src, l + n_out)
        if a >= z:
            return
        dst_sl.append(slice(a - l, z - l))
        src_sl.append(slice(a - b, z - b))
    lead = (slice(None),) * (out.ndim - len(base))
    out[lead + tuple(dst_sl)] = src[lead + tuple(src_sl)]


# --------------------------------------------------------------------------- forward: conv


def _run_window(P: Params, xb: np.ndarray, wsl: Optional[slice]):
    arrays = P.arrays
    if wsl is not None:  # depthwise: this channel block's filters
        arrays = {k: (None if v is None else v[wsl]) for k, v in arrays.items()}
    return P.fn(xb, padding=0, **arrays, **P.kw)


def _build_window(ctx: _Ctx, kind: str):
    """conv1d, conv2d, depthwise_conv2d, separable_conv2d."""
    a, x, nd = ctx.a, ctx.arr("input"), ctx.nd
    wnames: Tuple[str, ...]
    if kind == "separable":
        wnames = ("depthwise_weight", "pointwise_weight", "depthwise_bias", "pointwise_bias")
        g = _shapes.conv_geometry(ctx.op, x.shape, np.shape(a["depthwise_weight"]), None,
                                  a["stride"], a["padding"], a["dilation"], x.shape[1], 2)
    else:
        wnames = ("weight", "bias")
        groups = x.shape[1] if kind == "depthwise" else a["groups"]
        bshape = None if a["bias"] is None else np.shape(a["bias"])
        g = _shapes.conv_geometry(ctx.op, x.shape, np.shape(a["weight"]), bshape, a["stride"],
                                  a["padding"], a["dilation"], groups, nd)
    axes = _conv_axes(g)
    mode = a.get("padding_mode", "zeros")
    if mode != "zeros" and any(g.pad):
        widths = [(0, 0), (0, 0)] + [(ax.p0, ax.p1) for ax in axes]
        x = da.pad(x, widths, mode=_PAD_MODE[mode])
        axes = [ax._replace(In=ax.In + ax.p0 + ax.p1, p0=0, p1=0) for ax in axes]
    skip = ("input", "padding") + wnames
    kw = _static(ctx, skip)
    if "padding_mode" in kw:
        kw["padding_mode"] = "zeros"
    name = ctx.name("window")
    P = Params(fn=OpRef(ctx.fn), arrays=_arrays(ctx, wnames), kw=kw)
    src = Source(x)
    C = x.shape[1]
    OC = ctx.shape[1]
    if kind == "depthwise":
        m = OC // C
        cblocks = _blocks_of(x.chunks[1])
        out_c = tuple(m * (b - a_) for a_, b in cblocks)
    else:
        m, cblocks, out_c = 0, [(0, C)], (OC,)
    sp_chunks = [partition(edges(x.chunks[2 + i]), ax.Out,
                           lambda e, ax=ax: _cdiv(e + ax.p0, ax.s)) for i, ax in enumerate(axes)]
    tasks = {}
    for idx, sp in _grid(_blocks_of(x.chunks[0]), cblocks, *[spans(c) for c in sp_chunks]):
        (n0, n1), (c0, c1), outs = sp[0], sp[1], sp[2:]
        ranges = [(n0, n1), (c0, c1)] + [
            _window(o0, o1, ax) for (o0, o1), ax in zip(outs, axes)]
        wsl = slice(m * c0, m * c1) if kind == "depthwise" else None
        tasks[idx] = (_run_window, _params_key(name), src.region(ranges, 0), wsl)
    chunks = (x.chunks[0], out_c) + tuple(sp_chunks)
    return build(name, tasks, chunks, ctx.dtype, [x], {_params_key(name): P})


# --------------------------------------------------------------------------- forward: transposed


def _run_transposed(P: Params, xb, plan):
    out_shape, lo, base = plan
    out = np.empty(out_shape, P.dtype)
    bias = P.arrays.get("bias")
    out[...] = 0 if bias is None else bias.astype(P.dtype).reshape((-1,) + (1,) * len(lo))
    if xb is not None:
        y = P.fn(xb, padding=0, output_padding=0, **P.arrays, **P.kw)
        _place(out, y, base, lo)
    return out


def _build_transposed(ctx: _Ctx):
    a, x, nd = ctx.a, ctx.arr("input"), ctx.nd
    bshape = None if a["bias"] is None else np.shape(a["bias"])
    g = _shapes.conv_transpose_geometry(ctx.op, x.shape, np.shape(a["weight"]), bshape,
                                        a["stride"], a["padding"], a["output_padding"],
                                        a["groups"], a["dilation"], nd)
    axes = _conv_axes(g)
    name = ctx.name("transposed")
    kw = _static(ctx, ("input", "weight", "bias", "padding", "output_padding"))
    P = Params(fn=OpRef(ctx.fn), arrays=_arrays(ctx, ("weight", "bias")), kw=kw,
               dtype=ctx.dtype)
    src = Source(x)
    C, OC = x.shape[1], ctx.shape[1]
    sp_chunks = [partition(edges(x.chunks[2 + i]), ax.Out, lambda e, ax=ax: e * ax.s - ax.p0)
                 for i, ax in enumerate(axes)]
    tasks = {}
    for idx, sp in _grid(_blocks_of(x.chunks[0]), [(0, OC)], *[spans(c) for c in sp_chunks]):
        (n0, n1), outs = sp[0], sp[2:]
        ins = []
        for (o0, o1), ax in zip(outs, axes):
            i0 = max(0, _cdiv(o0 + ax.p0 - ax.d * (ax.K - 1), ax.s))
            i1 = min(ax.In, (o1 - 1 + ax.p0) // ax.s + 1)
            ins.append((i0, i1))
        empty = any(i0 >= i1 for i0, i1 in ins)
        region = None if empty else src.region([(n0, n1), (0, C)] + ins)
        plan = ((n1 - n0, OC) + tuple(o1 - o0 for o0, o1 in outs), [o0 for o0, _ in outs],
                [i0 * ax.s - ax.p0 for (i0, _), ax in zip(ins, axes)])
        tasks[idx] = (_run_transposed, _params_key(name), region, plan)
    chunks = (x.chunks[0], (OC,)) + tuple(sp_chunks)
    return build(name, tasks, chunks, ctx.dtype, [x], {_params_key(name): P})


# --------------------------------------------------------------------------- forward: pools


def _map_indices(idx: np.ndarray, Wb: int, W: int, b0h: int, b0w: int) -> np.ndarray:
    """Block-plane indices (ih_b * Wb + iw_b) -> whole-plane indices (ih * W + iw)."""
    q, r = np.divmod(idx, Wb)
    return (q + b0h) * W + r + b0w


def _run_pool(P: Params, xb, plan):
    crop, b0 = plan  # crop: slices of the block result; b0: block origin per spatial axis
    res = P.fn(xb, **P.kw)
    lead = (slice(None), slice(None))
    if not isinstance(res, tuple):
        return res[lead + tuple(crop)]
    y, idx = res
    b0h, b0w = (b0[0], b0[1]) if len(b0) == 2 else (0, b0[0])
    idx = _map_indices(idx[lead + tuple(crop)], xb.shape[-1], P.W, b0h, b0w)
    return y[lead + tuple(crop)], idx


def _build_pool(ctx: _Ctx, kind: str):
    a, x, nd = ctx.a, ctx.arr("input"), ctx.nd
    dil = a.get("dilation", 1)
    g = _shapes.pool_geometry(ctx.op, x.shape, a["kernel_size"], a["stride"], a["padding"],
                              dil, a["ceil_mode"], nd)
    axes = _pool_axes(g)
    want_idx = kind == "max" and _shapes.as_bool(a["return_indices"], "return_indices")
    name = ctx.name("pool")
    P = Params(fn=OpRef(ctx.fn), kw=_static(ctx, ("input",)), W=x.shape[-1])
    src = Source(x)
    sp_chunks = [partition(edges(x.chunks[2 + i]), ax.Out,
                           lambda e, ax=ax: _cdiv(e + ax.p0, ax.s)) for i, ax in enumerate(axes)]
    tasks = {}
    for idx, sp in _grid(_blocks_of(x.chunks[0]), _blocks_of(x.chunks[1]),
                         *[spans(c) for c in sp_chunks]):
        (n0, n1), (c0, c1), outs = sp[0], sp[1], sp[2:]
        ranges, crop, b0s = [(n0, n1), (c0, c1)], [], []
        for (o0, o1), ax in zip(outs, axes):
            k0 = max(0, o0 - _cdiv(ax.p0, ax.s))
            b0 = ax.s * k0
            b1 = min(ax.In, (o1 - 1) * ax.s - ax.p0 + ax.eff)
            ranges.append((b0, b1))
            crop.append(slice(o0 - k0, o1 - k0))
            b0s.append(b0)
        tasks[idx] = (_run_pool, _params_key(name), src.region(ranges), (crop, b0s))
    chunks = (x.chunks[0], x.chunks[1]) + tuple(sp_chunks)
    if want_idx:
        return build(name, tasks, chunks, ctx.dtype, [x], {_params_key(name): P}, nout=2,
                     dtypes=[ctx.out[0][2], ctx.out[1][2]])
    return build(name, tasks, chunks, ctx.dtype, [x], {_params_key(name): P})


def _run_adaptive(P: Params, xb, plan):
    sizes, b0 = plan
    res = P.fn(xb, output_size=sizes if len(sizes) == 2 else sizes[0], **P.kw)
    if not isinstance(res, tuple):
        return res
    y, idx = res
    b0h, b0w = (b0[0], b0[1]) if len(b0) == 2 else (0, b0[0])
    return y, _map_indices(idx, xb.shape[-1], P.W, b0h, b0w)


def _build_adaptive(ctx: _Ctx, kind: str):
    a, x, nd = ctx.a, ctx.arr("input"), ctx.nd
    g = _shapes.adaptive_geometry(ctx.op, x.shape, a["output_size"], nd)
    axes = _adaptive_axes(g)
    want_idx = kind == "max" and _shapes.as_bool(a["return_indices"], "return_indices")
    name = ctx.name("adaptive")
    P = Params(fn=OpRef(ctx.fn), kw=_static(ctx, ("input", "output_size")), W=x.shape[-1])
    src = Source(x)
    sp_chunks = [partition(edges(x.chunks[2 + i]), Out, _adaptive_cut(In, Out))
                 for i, (In, Out) in enumerate(axes)]
    tasks = {}
    for idx, sp in _grid(_blocks_of(x.chunks[0]), _blocks_of(x.chunks[1]),
                         *[spans(c) for c in sp_chunks]):
        ranges = [sp[0], sp[1]]
        sizes, b0s = [], []
        for (o0, o1), (In, Out) in zip(sp[2:], axes):
            lo, hi = o0 * In // Out, (o1 * In // Out if o1 < Out else In)
            ranges.append((lo, hi))
            sizes.append(o1 - o0)
            b0s.append(lo)
        tasks[idx] = (_run_adaptive, _params_key(name), src.region(ranges), (tuple(sizes), b0s))
    chunks = (x.chunks[0], x.chunks[1]) + tuple(sp_chunks)
    if want_idx:
        return build(name, tasks, chunks, ctx.dtype, [x], {_params_key(name): P}, nout=2,
                     dtypes=[ctx.out[0][2], ctx.out[1][2]])
    return build(name, tasks, chunks, ctx.dtype, [x], {_params_key(name): P})


# --------------------------------------------------------------------------- gradients


def _run_conv_input(P: Params, gyb, plan):
    out_shape, lo, base, inner = plan
    out = np.zeros(out_shape, P.dtype)
    if gyb is not None:
        gx = P.fn(input_shape=(out_shape[0], out_shape[1]) + tuple(inner), grad_output=gyb,
                  padding=0, **P.arrays, **P.kw)
        _place(out, gx, base, lo)
    return out


def _grad_geometry(ctx: _Ctx, kind: str, xs: Tuple[int, ...]):
    """The forward conv's geometry of a conv gradient (kind: conv, depthwise, separable)."""
    a = ctx.a
    if kind == "separable":
        dws = (tuple(a["depthwise_weight_shape"]) if "depthwise_weight_shape" in a
               else np.shape(a["depthwise_weight"]))
        return _shapes.conv_geometry(ctx.op, xs, dws, None, a["stride"], a["padding"],
                                     a["dilation"], xs[1], 2)
    ws = tuple(a["weight_shape"]) if "weight_shape" in a else np.shape(a["weight"])
    groups = xs[1] if kind == "depthwise" else a["groups"]
    return _shapes.conv_geometry(ctx.op, xs, ws, None, a["stride"], a["padding"],
                                 a["dilation"], groups, ctx.nd)


def _build_conv_input(ctx: _Ctx, kind: str):
    """conv1d_input, conv2d_input, depthwise_conv2d_input, separable_conv2d_input."""
    xs, gy = ctx.a["input_shape"], ctx.arr("grad_output")
    g = _grad_geometry(ctx, kind, xs)
    axes = _conv_axes(g)
    wnames = (("depthwise_weight", "pointwise_weight") if kind == "separable" else ("weight",))
    name = ctx.name("input-grad")
    kw = _static(ctx, ("input_shape", "grad_output", "padding") + wnames)
    P = Params(fn=OpRef(ctx.fn), arrays=_arrays(ctx, wnames), kw=kw, dtype=ctx.dtype)
    src = Source(gy)
    C, OC = xs[1], gy.shape[1]
    sp_chunks = [partition(edges(gy.chunks[2 + i]), ax.In, lambda e, ax=ax: e * ax.s - ax.p0)
                 for i, ax in enumerate(axes)]
    tasks = {}
    for idx, sp in _grid(_blocks_of(gy.chunks[0]), [(0, C)], *[spans(c) for c in sp_chunks]):
        (n0, n1), outs = sp[0], sp[2:]
        gys, base, inner = [], [], []
        for (i0, i1), ax in zip(outs, axes):
            g0 = max(0, _cdiv(i0 + ax.p0 - ax.d * (ax.K - 1), ax.s))
            g1 = min(ax.Out, (i1 - 1 + ax.p0) // ax.s + 1)
            gys.append((g0, g1))
            base.append(g0 * ax.s - ax.p0)
            inner.append((g1 - g0 - 1) * ax.s + ax.eff)
        empty = any(g0 >= g1 for g0, g1 in gys)
        region = None if empty else src.region([(n0, n1), (0, OC)] + gys)
        plan = ((n1 - n0, C) + tuple(i1 - i0 for i0, i1 in outs), [i0 for i0, _ in outs],
                base, inner)
        tasks[idx] = (_run_conv_input, _params_key(name), region, plan)
    chunks = (gy.chunks[0], (C,)) + tuple(sp_chunks)
    return build(name, tasks, chunks, ctx.dtype, [gy], {_params_key(name): P})


def _run_transposed_input(P: Params, gyr, shape):
    return P.fn(input_shape=shape, grad_output=gyr, padding=0, output_padding=0, **P.arrays,
                **P.kw)


def _build_transposed_input(ctx: _Ctx):
    """conv_transpose1d_input, conv_transpose2d_input: a window op on grad_output."""
    a, xs, gy = ctx.a, ctx.a["input_shape"], ctx.arr("grad_output")
    g = _shapes.conv_transpose_geometry(ctx.op, xs, np.shape(a["weight"]), None, a["stride"],
                                        a["padding"], a["output_padding"], a["groups"],
                                        a["dilation"], ctx.nd)
    axes = _conv_axes(g)
    name = ctx.name("tinput-grad")
    kw = _static(ctx, ("input_shape", "grad_output", "weight", "padding", "output_padding"))
    P = Params(fn=OpRef(ctx.fn), arrays=_arrays(ctx, ("weight",)), kw=kw)
    src = Source(gy)
    C, OC = xs[1], gy.shape[1]
    sp_chunks = [partition(edges(gy.chunks[2 + i]), ax.In,
                           lambda e, ax=ax: _cdiv(e + ax.p0, ax.s)) for i, ax in enumerate(axes)]
    tasks = {}
    for idx, sp in _grid(_blocks_of(gy.chunks[0]), [(0, C)], *[spans(c) for c in sp_chunks]):
        (n0, n1), outs = sp[0], sp[2:]
        ranges = [(n0, n1), (0, OC)] + [
            _window(i0, i1, ax) for (i0, i1), ax in zip(outs, axes)]
        shape = (n1 - n0, C) + tuple(i1 - i0 for i0, i1 in outs)
        tasks[idx] = (_run_transposed_input, _params_key(name), src.region(ranges, 0), shape)
    chunks = (gy.chunks[0], (C,)) + tuple(sp_chunks)
    return build(name, tasks, chunks, ctx.dtype, [gy], {_params_key(name): P})


def _run_partial(P: Params, arrays: list, extra: dict):
    kw = dict(zip(P.names, arrays))
    return P.fn(**kw, **extra, **P.arrays, **P.kw)


def _sum_partials(parts: list, dtype: np.dtype) -> np.ndarray:
    acc = np.float64 if dtype.kind == "f" and dtype.itemsize <= 8 else dtype
    total = np.zeros(parts[0].shape, acc)
    for p in parts:
        total += p
    return total


def _cast(total: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return total.astype(dtype, copy=False)


def _reduce(name: str, partial_tasks: List[tuple], P: Params, shape, dtype, deps):
    """One array of ``shape``: the sum of the partial results (a tree, 8 at a time)."""
    pname = name + "-part"
    dsk: Dict[Any, Any] = {_params_key(name): P}
    keys = []
    for i, t in enumerate(partial_tasks):
        dsk[(pname, i)] = t
        keys.append((pname, i))
    level = 0
    while len(keys) > 8:
        level += 1
        nxt = []
        for j in range(0, len(keys), 8):
            k = (f"{name}-sum{level}", j // 8)
            dsk[k] = (_sum_partials, keys[j:j + 8], dtype)
            nxt.append(k)
        keys = nxt
    dsk[(name + "-total",)] = (_sum_partials, keys, dtype)
    dsk[(name,) + (0,) * len(shape)] = (_cast, (name + "-total",), dtype)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=deps)
    meta = np.empty((0,) * len(shape), dtype)
    return da.Array(graph, name, tuple((n,) for n in shape), meta=meta)


def _build_weight(ctx: _Ctx, kind: str):
    """conv1d_weight, conv2d_weight, depthwise_conv2d_weight, separable_conv2d_depthwise_weight,
    separable_conv2d_pointwise_weight: partial weight gradients per grad_output block."""
    x, gy = ctx.arr("input"), ctx.arr("grad_output")
    g = _grad_geometry(ctx, kind, x.shape)
    axes = _conv_axes(g)
    name = ctx.name("weight-grad")
    wnames = [n for n in ("weight", "depthwise_weight", "pointwise_weight", "depthwise_bias")
              if n in ctx.a]
    kw = _static(ctx, ("input", "grad_output", "padding") + tuple(wnames))
    P = Params(fn=OpRef(ctx.fn), arrays=_arrays(ctx, wnames), kw=kw,
               names=("input", "grad_output"))
    sx, sg = Source(x), Source(gy)
    parts: List[tuple] = []
    for _, sp in _grid(_blocks_of(gy.chunks[0]), *[_blocks_of(c) for c in gy.chunks[2:]]):
        (n0, n1), outs = sp[0], sp[1:]
        xr = [(n0, n1), (0, x.shape[1])] + [
            _window(o0, o1, ax) for (o0, o1), ax in zip(outs, axes)]
        gr = [(n0, n1), (0, gy.shape[1])] + list(outs)
        parts.append((_run_partial, _params_key(name), [sx.region(xr, 0), sg.region(gr)],
                      {"padding": 0}))
    return _reduce(name, parts, P, ctx.shape, ctx.dtype, [x, gy])


def _build_transposed_weight(ctx: _Ctx):
    """conv_transpose1d_weight, conv_transpose2d_weight: partials per input block."""
    a, x, gy = ctx.a, ctx.arr("input"), ctx.arr("grad_output")
    g = _shapes.conv_transpose_geometry(ctx.op, x.shape, tuple(a["weight_shape"]), None,
                                        a["stride"], a["padding"], a["output_padding"],
                                        a["groups"], a["dilation"], ctx.nd)
    axes = _conv_axes(g)
    name = ctx.name("tweight-grad")
    kw = _static(ctx, ("input", "grad_output", "padding", "output_padding"))
    P = Params(fn=OpRef(ctx.fn), arrays={}, kw=kw, names=("input", "grad_output"))
    sx, sg = Source(x), Source(gy)
    parts: List[tuple] = []
    for _, sp in _grid(_blocks_of(x.chunks[0]), *[_blocks_of(c) for c in x.chunks[2:]]):
        (n0, n1), ins = sp[0], sp[1:]
        xr = [(n0, n1), (0, x.shape[1])] + list(ins)
        gr = [(n0, n1), (0, gy.shape[1])] + [
            _window(i0, i1, ax) for (i0, i1), ax in zip(ins, axes)]
        parts.append((_run_partial, _params_key(name), [sx.region(xr), sg.region(gr, 0)],
                      {"padding": 0, "output_padding": 0}))
    return _reduce(name, parts, P, ctx.shape, ctx.dtype, [x, gy])


def _build_bias(ctx: _Ctx):
    """conv1d_bias, conv2d_bias, separable_conv2d_pointwise_bias / _depthwise_bias."""
    gy = ctx.arr("grad_output")
    name = ctx.name("bias-grad")
    wnames = [n for n in ("pointwise_weight",) if n in ctx.a]
    P = Params(fn=OpRef(ctx.fn), arrays=_arrays(ctx, wnames),
               kw=_static(ctx, ["grad_output"] + wnames), names=("grad_output",))
    sg = Source(gy)
    parts: List[tuple] = []
    for _, sp in _grid(_blocks_of(gy.chunks[0]), *[_blocks_of(c) for c in gy.chunks[2:]]):
        gr = [sp[0], (0, gy.shape[1])] + list(sp[1:])
        parts.append((_run_partial, _params_key(name), [sg.region(gr)], {}))
    return _reduce(name, parts, P, ctx.shape, ctx.dtype, [gy])


def _run_pool_input(P: Params, xb, gyb, plan):
    out_shape, lo, b0, inner, gy_shape, gy_at = plan
    out = np.zeros(out_shape, P.dtype)
    if gyb is None:
        return out
    gyp = np.zeros(gy_shape, gyb.dtype)
    _place(gyp, gyb, gy_at, [0] * len(gy_at))
    if xb is not None:
        dx = P.fn(input=xb, grad_output=gyp, **P.kw)
    else:
        dx = P.fn(input_shape=(out_shape[0], out_shape[1]) + tuple(inner), grad_output=gyp,
                  **P.kw)
    _place(out, dx, b0, lo)
    return out


def _build_pool_input(ctx: _Ctx, kind: str):
    """max_pool1d/2d_input (input, grad_output), avg_pool1d/2d_input (input_shape, ...)."""
    a, gy = ctx.a, ctx.arr("grad_output")
    x = ctx.arr("input") if kind == "max" else None
    xs = x.shape if x is not None else a["input_shape"]
    g = _shapes.pool_geometry(ctx.op, xs, a["kernel_size"], a["stride"], a["padding"],
                              a.get("dilation", 1), a["ceil_mode"], ctx.nd)
    axes = _pool_axes(g)
    name = ctx.name("pool-grad")
    P = Params(fn=OpRef(ctx.fn), kw=_static(ctx, ("input", "input_shape", "grad_output")),
               dtype=ctx.dtype)
    sg = Source(gy)
    sx = Source(x) if x is not None else None
    if x is not None:
        n_blocks, c_blocks = _blocks_of(x.chunks[0]), _blocks_of(x.chunks[1])
        sp_chunks = [x.chunks[2 + i] for i in range(len(axes))]
        chunks0, chunks1 = x.chunks[0], x.chunks[1]
    else:
        n_blocks, c_blocks = _blocks_of(gy.chunks[0]), _blocks_of(gy.chunks[1])
        sp_chunks = [partition(edges(gy.chunks[2 + i]), ax.In,
                               lambda e, ax=ax: e * ax.s - ax.p0) for i, ax in enumerate(axes)]
        chunks0, chunks1 = gy.chunks[0], gy.chunks[1]
    tasks = {}
    for idx, sp in _grid(n_blocks, c_blocks, *[spans(c) for c in sp_chunks]):
        (n0, n1), (c0, c1), ins = sp[0], sp[1], sp[2:]
        gys, bs, inner, gy_shape, gy_at = [], [], [], [], []
        for (i0, i1), ax in zip(ins, axes):
            g0 = max(0, _cdiv(i0 + ax.p0 - ax.eff + 1, ax.s))
            g1 = min(ax.Out, (i1 - 1 + ax.p0) // ax.s + 1)
            k0 = max(0, g0 - _cdiv(ax.p0, ax.s))
            b0 = ax.s * k0
            b1 = min(ax.In, (g1 - 1) * ax.s - ax.p0 + ax.eff)
            gys.append((g0, g1))
            bs.append((b0, b1))
            inner.append(b1 - b0)
            gy_shape.append(_shapes.pool_output_size(b1 - b0, ax.K, ax.s, ax.p0, ax.d,
                                                     bool(a["ceil_mode"])) if g0 < g1 else 0)
            gy_at.append(g0 - k0)
        empty = any(g0 >= g1 for g0, g1 in gys)
        out_shape = (n1 - n0, c1 - c0) + tuple(i1 - i0 for i0, i1 in ins)
        greg = None if empty else sg.region([(n0, n1), (c0, c1)] + gys)
        xreg = None if (empty or sx is None) else sx.region([(n0, n1), (c0, c1)] + bs)
        plan = (out_shape, [i0 for i0, _ in ins], [b0 for b0, _ in bs], inner,
                (n1 - n0, c1 - c0) + tuple(gy_shape), gy_at)
        tasks[idx] = (_run_pool_input, _params_key(name), xreg, greg, plan)
    chunks = (chunks0, chunks1) + tuple(sp_chunks)
    deps = [gy] + ([x] if x is not None else [])
    return build(name, tasks, chunks, ctx.dtype, deps, {_params_key(name): P})


def _run_adaptive_input(P: Params, xb, gyb, shape):
    if xb is not None:
        return P.fn(input=xb, grad_output=gyb, **P.kw)
    return P.fn(input_shape=shape, grad_output=gyb, **P.kw)


def _build_adaptive_input(ctx: _Ctx, kind: str):
    """adaptive_avg_pool1d/2d_input (input_shape, ...), adaptive_max_pool1d/2d_input."""
    a, gy = ctx.a, ctx.arr("grad_output")
    x = ctx.arr("input") if kind == "max" else None
    xs = x.shape if x is not None else a["input_shape"]
    g = _shapes.adaptive_geometry(ctx.op, xs, gy.shape[2:], ctx.nd)
    axes = _adaptive_axes(g)
    name = ctx.name("adaptive-grad")
    P = Params(fn=OpRef(ctx.fn), kw=_static(ctx, ("input", "input_shape", "grad_output")))
    sg = Source(gy)
    sx = Source(x) if x is not None else None
    lead = x if x is not None else gy
    bins = []  # output-bin chunks, cut on the period grid
    for i, (In, Out) in enumerate(axes):
        if x is not None:  # input chunk boundaries -> the nearest bin boundary on the grid
            bins.append(partition(edges(x.chunks[2 + i]), Out, _adaptive_cut(In, Out)))
        else:  # grad_output chunk boundaries -> the nearest multiple of the period
            P_ = _period(In, Out)
            bins.append(partition(edges(gy.chunks[2 + i]), Out,
                                  lambda e, P_=P_: P_ * int(round(Fraction(e, P_)))))
    sp_chunks = []
    for (In, Out), b in zip(axes, bins):
        cuts = [int(o) * In // Out for o in edges(b)[:-1]] + [In]
        sp_chunks.append(tuple(z - y for y, z in zip(cuts[:-1], cuts[1:])))
    tasks = {}
    for idx, sp in _grid(_blocks_of(lead.chunks[0]), _blocks_of(lead.chunks[1]),
                         *[spans(b) for b in bins]):
        (n0, n1), (c0, c1), outs = sp[0], sp[1], sp[2:]
        ins = [(o0 * In // Out, (o1 * In // Out if o1 < Out else In))
               for (o0, o1), (In, Out) in zip(outs, axes)]
        greg = sg.region([(n0, n1), (c0, c1)] + list(outs))
        xreg = None if sx is None else sx.region([(n0, n1), (c0, c1)] + ins)
        shape = (n1 - n0, c1 - c0) + tuple(i1 - i0 for i0, i1 in ins)
        tasks[idx] = (_run_adaptive_input, _params_key(name), xreg, greg, shape)
    chunks = (lead.chunks[0], lead.chunks[1]) + tuple(sp_chunks)
    deps = [gy] + ([x] if x is not None else [])
    return build(name, tasks, chunks, ctx.dtype, deps, {_params_key(name): P})


# --------------------------------------------------------------------------- the table

conv1d = _op(_conv.conv1d, 1, lambda c: _build_window(c, "conv"))
conv2d = _op(_conv.conv2d, 2, lambda c: _build_window(c, "conv"))
depthwise_conv2d = _op(_conv.depthwise_conv2d, 2, lambda c: _build_window(c, "depthwise"))
separable_conv2d = _op(_conv.separable_conv2d, 2, lambda c: _build_window(c, "separable"))
conv_transpose1d = _op(_conv.conv_transpose1d, 1, _build_transposed)
conv_transpose2d = _op(_conv.conv_transpose2d, 2, _build_transposed)

max_pool1d = _op(_pool.max_pool1d, 1, lambda c: _build_pool(c, "max"))
max_pool2d = _op(_pool.max_pool2d, 2, lambda c: _build_pool(c, "max"))
avg_pool1d = _op(_pool.avg_pool1d, 1, lambda c: _build_pool(c, "avg"))
avg_pool2d = _op(_pool.avg_pool2d, 2, lambda c: _build_pool(c, "avg"))
adaptive_avg_pool1d = _op(_pool.adaptive_avg_pool1d, 1, lambda c: _build_adaptive(c, "avg"))
adaptive_avg_pool2d = _op(_pool.adaptive_avg_pool2d, 2, lambda c: _build_adaptive(c, "avg"))
adaptive_max_pool1d = _op(_pool.adaptive_max_pool1d, 1, lambda c: _build_adaptive(c, "max"))
adaptive_max_pool2d = _op(_pool.adaptive_max_pool2d, 2, lambda c: _build_adaptive(c, "max"))

_GO = ("grad_output",)
_IN_GO = ("input", "grad_output")
conv1d_input = _op(_grad.conv1d_input, 1, lambda c: _build_conv_input(c, "conv"), _GO,
                   ("input_shape",))
conv2d_input = _op(_grad.conv2d_input, 2, lambda c: _build_conv_input(c, "conv"), _GO,
                   ("input_shape",))
depthwise_conv2d_input = _op(_grad.depthwise_conv2d_input, 2,
                             lambda c: _build_conv_input(c, "depthwise"), _GO, ("input_shape",))
separable_conv2d_input = _op(_grad.separable_conv2d_input, 2,
                             lambda c: _build_conv_input(c, "separable"), _GO, ("input_shape",))
conv_transpose1d_input = _op(_grad.conv_transpose1d_input, 1, _build_transposed_input, _GO,
                             ("input_shape",))
conv_transpose2d_input = _op(_grad.conv_transpose2d_input, 2, _build_transposed_input, _GO,
                             ("input_shape",))
conv1d_weight = _op(_grad.conv1d_weight, 1, lambda c: _build_weight(c, "conv"), _IN_GO,
                    batch_out=False)
conv2d_weight = _op(_grad.conv2d_weight, 2, lambda c: _build_weight(c, "conv"), _IN_GO,
                    batch_out=False)
depthwise_conv2d_weight = _op(_grad.depthwise_conv2d_weight, 2,
                              lambda c: _build_weight(c, "depthwise"), _IN_GO, batch_out=False)
separable_conv2d_depthwise_weight = _op(_grad.separable_conv2d_depthwise_weight, 2,
                                        lambda c: _build_weight(c, "separable"), _IN_GO,
                                        batch_out=False)
separable_conv2d_pointwise_weight = _op(_grad.separable_conv2d_pointwise_weight, 2,
                                        lambda c: _build_weight(c, "separable"), _IN_GO,
                                        batch_out=False)
conv_transpose1d_weight = _op(_grad.conv_transpose1d_weight, 1, _build_transposed_weight,
                              _IN_GO, batch_out=False)
conv_transpose2d_weight = _op(_grad.conv_transpose2d_weight, 2, _build_transposed_weight,
                              _IN_GO, batch_out=False)
conv1d_bias = _op(_grad.conv1d_bias, 1, _build_bias, _GO, batch_out=False)
conv2d_bias = _op(_grad.conv2d_bias, 2, _build_bias, _GO, batch_out=False)
conv_transpose1d_bias = conv1d_bias
conv_transpose2d_bias = conv2d_bias
separable_conv2d_pointwise_bias = _op(_grad.separable_conv2d_pointwise_bias, 2, _build_bias,
                                      _GO, batch_out=False)
separable_conv2d_depthwise_bias = _op(_grad.separable_conv2d_depthwise_bias, 2, _build_bias,
                                      _GO, batch_out=False)
max_pool1d_input = _op(_grad.max_pool1d_input, 1, lambda c: _build_pool_input(c, "max"), _IN_GO)
max_pool2d_input = _op(_grad.max_pool2d_input, 2, lambda c: _build_pool_input(c, "max"), _IN_GO)
avg_pool1d_input = _op(_grad.avg_pool1d_input, 1, lambda c: _build_pool_input(c, "avg"), _GO,
                       ("input_shape",))
avg_pool2d_input = _op(_grad.avg_pool2d_input, 2, lambda c: _build_pool_input(c, "avg"), _GO,
                       ("input_shape",))
adaptive_avg_pool1d_input = _op(_grad.adaptive_avg_pool1d_input, 1,
                                lambda c: _build_adaptive_input(c, "avg"), _GO, ("input_shape",))
adaptive_avg_pool2d_input = _op(_grad.adaptive_avg_pool2d_input, 2,
                                lambda c: _build_adaptive_input(c, "avg"), _GO, ("input_shape",))
adaptive_max_pool1d_input = _op(_grad.adaptive_max_pool1d_input, 1,
                                lambda c: _build_adaptive_input(c, "max"), _IN_GO)
adaptive_max_pool2d_input = _op(_grad.adaptive_max_pool2d_input, 2,
                                lambda c: _build_adaptive_input(c, "max"), _IN_GO)


@functools.wraps(_grad.separable_conv2d_backward)
def separable_conv2d_backward(input: Any, depthwise_weight: Any, pointwise_weight: Any,
                              grad_output: Any, depthwise_bias: Any = None, stride: Any = 1,
                              padding: Any = 0, dilation: Any = 1, *, backend: str = "auto"):
    _Ctx(_grad.separable_conv2d_backward,
         (input, depthwise_weight, pointwise_weight, grad_output, depthwise_bias, stride,
          padding, dilation), {"backend": backend}, 2, _IN_GO, (), True)
    dw = depthwise_weight.compute() if isinstance(depthwise_weight, da.Array) else depthwise_weight
    pw = pointwise_weight.compute() if isinstance(pointwise_weight, da.Array) else pointwise_weight
    shape = tuple(input.shape) if hasattr(input, "shape") else np.shape(input)
    common = dict(stride=stride, padding=padding, dilation=dilation, backend=backend)
    return (
        separable_conv2d_input(shape, dw, pw, grad_output, **common),
        separable_conv2d_depthwise_weight(input, np.shape(dw), pw, grad_output, **common),
        separable_conv2d_pointwise_weight(input, dw, np.shape(pw), grad_output, depthwise_bias,
                                          **common),
        separable_conv2d_depthwise_bias(pw, grad_output, backend=backend),
        separable_conv2d_pointwise_bias(grad_output, backend=backend),
    )


separable_conv2d_backward.__module__ = __name__
separable_conv2d_backward.__doc__ = (
    "``fastconv.grad.separable_conv2d_backward`` on dask arrays: the five gradients, each a "
    "lazy dask array (validated now, as the NumPy function validates).")


__all__ = [n for n in dir() if not n.startswith("_") and callable(globals()[n])
           and getattr(globals()[n], "__module__", None) == __name__]
