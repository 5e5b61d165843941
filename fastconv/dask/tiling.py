"""Exact tiled inference: a fully convolutional model over an image larger than memory.

:func:`predict` splits the model's *output* into tiles and computes each from a crop of the
image that holds the receptive field of every output in the tile, so every output element
equals the untiled forward pass's. The geometry comes from
:func:`fastconv.receptive_field`, per axis (H and W apart):

- output element o is centred at input coordinate start + o*jump and depends only on input
  positions within (size - 1)/2 of that centre (the RF size, jump and start of the last
  layer); an output tile [o0, o1) needs input [ceil(start + o0*jump - r),
  floor(start + (o1-1)*jump + r)], r = (size - 1)/2;
- J, the coarsest grid inside the network, is the least common multiple of every layer's
  jump (numerators for the fractional jumps of transposed convolutions): 32 in a ResNet
  trunk, 2**depth inside a U-Net. A crop starts on a multiple of J (or at 0) so every
  layer sees it at the same phase as the whole image; it ends at the image's end or where
  its length is congruent to the image's modulo J, so pooling, strides and joins see the
  same remainders as on the whole image (a U-Net's Concat needs it);
- tiles are ``tile`` input pixels wide (rounded up to a multiple of J): tile/jump outputs;
  at the image borders the crops are clipped, and the network's own padding applies there
  exactly as in the untiled pass.

The halo overhead (pixels the crops hold / pixels of the image) is in :func:`plan`'s
result. Layers that are not local refuse with ValueError before anything runs: global
pooling, Flatten and Linear end spatial structure (tile=None still splits the batch),
adaptive pooling to a fixed size, circular padding, BatchNorm with batch statistics,
Dropout in training mode.

On dask.distributed (a ``client`` passed, or an active default client) the model is
scattered to every worker once; each task refers to it, so it is never shipped per task.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import _shapes, nn
from ._blocks import Source, spans

__all__ = ["TilePlan", "plan", "predict"]


@dataclass(frozen=True)
class AxisPlan:
    """Tiles along one axis: output ranges, the crop (input range) of each, and the offset
    of the crop's output index (crop output i is whole-image output i + offset)."""

    size: int          # image length (input pixels)
    out: int           # output length
    grid: int          # J: crops start on multiples of it
    tiles: Tuple[Tuple[int, int], ...]   # output [o0, o1) of each tile
    crops: Tuple[Tuple[int, int], ...]   # input [c0, c1) of each tile
    offsets: Tuple[int, ...]             # c0 / jump


@dataclass(frozen=True)
class TilePlan:
    """How :func:`predict` splits an image: per axis (H, W) an :class:`AxisPlan`."""

    h: AxisPlan
    w: AxisPlan
    rf_size: Tuple[Any, Any]
    jump: Tuple[Any, Any]
    start: Tuple[Any, Any]

    @property
    def n_tiles(self) -> int:
        return len(self.h.tiles) * len(self.w.tiles)

    @property
    def halo_overhead(self) -> float:
        """Input pixels the crops hold, over the image's pixels (1.0 = no halo)."""
        ch = sum(c1 - c0 for c0, c1 in self.h.crops)
        cw = sum(c1 - c0 for c0, c1 in self.w.crops)
        return ch * cw / (self.h.size * self.w.size)


def _lcm(values) -> int:
    out = 1
    for v in values:
        out = out * v // math.gcd(out, v)
    return out


def _axis_plan(size: int, out: int, rf_size, jump, start, grid: int, tile_px: int) -> AxisPlan:
    j, st, r = Fraction(jump), Fraction(start), (Fraction(rf_size) - 1) / 2
    per_tile = Fraction(tile_px) / j
    if per_tile.denominator != 1:  # pragma: no cover - tile_px is a multiple of grid
        raise AssertionError(f"tile of {tile_px} pixels is not a whole number of outputs")
    to = max(1, int(per_tile))
    tiles, crops, offsets = [], [], []
    for o0 in range(0, out, to):
        o1 = min(out, o0 + to)
        lo = math.ceil(st + o0 * j - r)
        hi = math.floor(st + (o1 - 1) * j + r) + 1
        c0 = grid * (max(lo, 0) // grid)
        if hi >= size:
            c1 = size
        else:  # length congruent to the image's modulo the grid
            c1 = min(size, hi + (size - hi) % grid)
        off = Fraction(c0) / j
        if off.denominator != 1:  # pragma: no cover - c0 is on the grid
            raise AssertionError("crop origin off the output grid")
        tiles.append((o0, o1))
        crops.append((c0, c1))
        offsets.append(int(off))
    return AxisPlan(size, out, grid, tuple(tiles), tuple(crops), tuple(offsets))


def _check_local(model: nn.Module) -> None:
    """Refuse layers whose outputs are not a function of a local input window."""
    for name, m in model.named_modules():
        label = name or type(m).__name__
        if isinstance(m, nn.BatchNorm2d) and (m.training or m.running_mean is None):
            raise ValueError(
                f"predict: {label} normalises with the statistics of the batch it sees, so a "
                "tile would not give the untiled result; call model.eval() (and track running "
                "statistics)")
        if isinstance(m, nn.Dropout) and m.training:
            raise ValueError(f"predict: {label} drops at random in training mode; call "
                             "model.eval()")
        if getattr(m, "keep_cache", False):
            raise ValueError(f"predict: {label} retains its inputs for backward; call "
                             "model.retain_inputs(False)")


def _check_tileable(model: nn.Module, rf, image_shape) -> None:
    last = rf.layers[-1] if rf.layers else None
    if last is None or not last.spatial or rf.layer is None:
        what = f"{last.name or last.kind} ({last.kind})" if last is not None else "nothing"
        raise ValueError(
            f"predict: the model's output has no spatial structure (it ends in {what}: global "
            "pooling, Flatten or Linear), so tiles of the image have no tiles of the output "
            "to give; pass tile=None to split the batch only")
    for r in rf.layers:
        if "circular" in r.padding_modes:
            raise ValueError(
                f"predict: {r.name} sees circular padding, which wraps around the whole image; "
                "tiles cannot reproduce it (pass tile=None)")
    for name, m in model.named_modules():
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            raise ValueError(
                f"predict: {name or type(m).__name__} ({type(m).__name__}) pools to a size "
                "fixed in advance, so its bins depend on the whole image; tiles cannot "
                "reproduce it (pass tile=None)")


def plan(model: nn.Module, image_shape: Sequence[int], tile: Any = (1024, 1024)) -> TilePlan:
    """The tiling :func:`predict` uses for an image of ``image_shape`` ((N, C, H, W) or
    (C, H, W)): output tiles, crops and the halo overhead, without computing anything."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a fastconv.nn.Module, got {type(model).__name__}")
    shape = tuple(int(v) for v in image_shape)
    if len(shape) not in (3, 4):
        raise ValueError(f"predict: image must be (N, C, H, W) or (C, H, W), got shape {shape}")
    C, H, W = shape[-3:]
    th, tw = _shapes.as_tuple(tile, "tile", 2, minimum=1)
    from ..analysis.receptive_field import receptive_field

    try:
        rf = receptive_field(model, (C, H, W))
    except TypeError as exc:  # a layer the receptive-field rules do not know
        raise ValueError(f"predict: cannot tile this model: {exc}") from None
    _check_tileable(model, rf, shape)
    out_shape = rf.layers[-1].output_shape
    if len(out_shape) != 4:
        raise ValueError(f"predict: tiling needs a 2-D model with (N, C, H, W) output, got "
                         f"output shape {out_shape}")
    spatial = [r for r in rf.layers if r.spatial]
    last = rf.layer
    assert last is not None  # _check_tileable refused models without spatial output
    axes = []
    for ax, (size, t) in enumerate(((H, th), (W, tw))):
        jumps = [Fraction(r.jump[ax]) for r in spatial] + [Fraction(1)]
        grid = _lcm(jmp.numerator for jmp in jumps)
        tile_px = grid * -(-t // grid)
        axes.append(_axis_plan(size, out_shape[2 + ax], last.size[ax], last.jump[ax],
                               last.start[ax], grid, tile_px))
    return TilePlan(axes[0], axes[1], last.size, last.jump, last.start)


# --------------------------------------------------------------------------- tasks


def _read(array: Any, ranges: Sequence[Tuple[int, int]], batched: bool) -> np.ndarray:
    """A crop of a zarr (or other sliceable) array, batched."""
    sl = tuple(slice(a, b) for a, b in ranges)
    if batched:
        return np.asarray(array[sl])
    return np.asarray(array[sl[1:]])[None]


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view: an in-place layer (ReLU(inplace=True)) then copies instead of
    writing into a chunk that other tiles read too."""
    v = a.view()
    v.flags.writeable = False
    return v


def _run_tiles(model: nn.Module, crops: List[np.ndarray], cuts: List[tuple], dtype) -> list:
    """Run ``model`` on the crops (those of one shape stacked into one batch) and cut each
    output to its tile."""
    out: List[Any] = [None] * len(crops)
    groups: Dict[tuple, List[int]] = {}
    for i, c in enumerate(crops):
        groups.setdefault(c.shape, []).append(i)
    for idxs in groups.values():
        batch = (_readonly(crops[idxs[0]]) if len(idxs) == 1 else
                 np.concatenate([crops[i] for i in idxs]))
        y = np.asarray(model(batch))
        n = crops[idxs[0]].shape[0]
        for k, i in enumerate(idxs):
            sl = (slice(k * n, (k + 1) * n),) + cuts[i]
            part = y[sl]
            for ax, want in zip(range(2, part.ndim), cuts[i][1:]):
                if isinstance(want, slice) and want.stop - want.start != part.shape[ax]:
                    raise RuntimeError(  # pragma: no cover - the plan guarantees it
                        f"predict: the crop's output is too small along axis {ax} "
                        f"({y.shape[ax]} for {want})")
            out[i] = np.ascontiguousarray(part, dtype=dtype)
    return out


def _run_one(model, crop, cut, dtype):
    return _run_tiles(model, [crop], [cut], dtype)[0]


def _pick(results: list, i: int):
    return results[i]


def _model_ref(model: nn.Module, client: Any):
    """(graph entries, reference used in tasks): the model once in the graph, or a future of
    the model scattered to every worker."""
    if client is not None:
        fut = client.scatter(model, broadcast=True, hash=False)
        return {}, fut
    key = "fastconv-model-" + uuid.uuid4().hex
    return {key: model}, key


def _active_client(client: Any):
    if client is not None:
        if not callable(getattr(client, "scatter", None)):
            raise TypeError(f"client must be a dask.distributed Client, got "
                            f"{type(client).__name__}")
        return client
    import sys

    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


def predict(model: nn.Module, image: Any, tile: Any = (1024, 1024),
            batch_size: Optional[int] = None, *, client: Any = None):
    """Run a fully convolutional model over ``image`` tile by tile; a lazy dask array.

    Parameters
    ----------
    model : fastconv.nn.Module in inference mode (``model.eval()``); fully convolutional
        when ``tile`` is given: conv, depthwise, separable and transposed convolutions,
        max / avg pooling (ceil_mode too), BatchNorm, activations, Residual and Concat
    image : (N, C, H, W) or (C, H, W): a dask array, a zarr array or a NumPy array
    tile : int or (th, tw) input pixels per tile, rounded up to a multiple of the network's
        coarsest grid J (see the module docstring); None splits the batch only (any model,
        classifiers too)
    batch_size : stack this many tiles (of one crop shape) into one forward call
    client : a dask.distributed Client; by default the active one, if any. The model is
        scattered to its workers once.

    Returns
    -------
    dask array (N, OC, OH, OW) (or (OC, OH, OW) for an unbatched image), equal to
    ``model(image)``; chunks: the image's batch chunks x one tile per chunk.

    Raises ValueError now (before any compute) for a bad tile, an image of the wrong rank
    or channels, or a model whose output has no spatial structure.

    Example (docs/dask.md has more; not a doctest, so that the documentation tests run
    without dask)::

        import numpy as np
        from fastconv import models
        from fastconv.dask import predict
        net = models.unet(3, 2, base=4, depth=2, generator=0)
        x = np.random.default_rng(0).random((1, 3, 40, 24), np.float32)
        y = predict(net, x, tile=16)     # y.chunks[2:] == ((16, 16, 8), (16, 8))
        np.allclose(y.compute(), net(x), atol=1e-5)   # True
    """
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a fastconv.nn.Module, got {type(model).__name__}")
    if tile is not None:
        tile = _shapes.as_tuple(tile, "tile", 2, minimum=1)
    k = None if batch_size is None else _shapes.as_int(batch_size, "batch_size", minimum=1)
    shape = tuple(int(v) for v in np.shape(image)) if not hasattr(image, "shape") else tuple(
        int(v) for v in image.shape)
    if len(shape) not in (3, 4):
        raise ValueError(f"predict: image must be (N, C, H, W) or (C, H, W), got shape {shape}")
    batched = len(shape) == 4
    N = shape[0] if batched else 1
    C, H, W = shape[-3:]
    dtype = np.dtype(image.dtype) if hasattr(image, "dtype") else np.asarray(image).dtype
    _check_local(model)
    active = _active_client(client)
    try:  # validates the image against the model and gives the output's shape and dtype
        y0 = np.asarray(model(np.zeros((0, C, H, W), dtype)))
    except ValueError as exc:
        raise ValueError(f"predict: the model does not take an image of shape {shape}: "
                         f"{exc}") from None
    out_dtype = y0.dtype
    tp = plan(model, (N, C, H, W), tile) if tile is not None else None

    # where crops come from
    is_dask = isinstance(image, da.Array)
    # zarr (or another array that slices lazily: shape, dtype, __getitem__) is read per crop
    is_numpy = isinstance(image, np.ndarray) or not all(
        hasattr(image, a) for a in ("shape", "dtype", "__getitem__"))
    # a fresh name per call: the model's weights may change between calls
    name = "fastconv-predict-" + uuid.uuid4().hex
    extra: Dict[Any, Any] = {}
    deps: list = []
    if is_dask or is_numpy:
        arr = image if is_dask else da.from_array(np.asarray(image), chunks=shape)
        if not batched:
            arr = arr[None]
        src = Source(arr)
        deps.append(arr)
        n_chunks = arr.chunks[0]

        def region(ranges):
            return src.region(ranges)
    else:  # zarr or another sliceable array: each task reads its crop itself
        akey = name + "-image"
        extra[akey] = image
        chunks0 = getattr(image, "chunks", None)
        step = int(chunks0[0]) if batched and chunks0 else N
        n_chunks = tuple(min(step, N - i) for i in range(0, N, step)) if batched else (1,)

        def region(ranges):
            return (_read, akey, ranges, batched)

    graph_model, mref = _model_ref(model, active)
    extra.update(graph_model)

    n_spans = spans(n_chunks)
    if tp is None:
        tiles_h = [((0, H), (0, H), 0)]
        tiles_w = [((0, W), (0, W), 0)]
        out_rest = y0.shape[1:]
    else:
        tiles_h = list(zip(tp.h.tiles, tp.h.crops, tp.h.offsets))
        tiles_w = list(zip(tp.w.tiles, tp.w.crops, tp.w.offsets))
        out_rest = y0.shape[1:]
    jobs = []  # (block index, crop task, cut)
    for bi, (n0, n1) in enumerate(n_spans):
        for hi, ((oh0, oh1), (ch0, ch1), offh) in enumerate(tiles_h):
            for wi, ((ow0, ow1), (cw0, cw1), offw) in enumerate(tiles_w):
                crop = region([(n0, n1), (0, C), (ch0, ch1), (cw0, cw1)])
                if tp is None:
                    cut: tuple = (slice(None),) * (len(out_rest))
                    idx = (bi,) + (0,) * len(out_rest)
                else:
                    cut = (slice(None), slice(oh0 - offh, oh1 - offh),
                           slice(ow0 - offw, ow1 - offw))
                    idx = (bi, 0, hi, wi)
                jobs.append((idx, crop, cut))
    dsk: Dict[Any, Any] = dict(extra)
    if k is None:
        for idx, crop, cut in jobs:
            dsk[(name,) + idx] = (_run_one, mref, crop, cut, out_dtype)
    else:
        for g in range(0, len(jobs), k):
            group = jobs[g:g + k]
            gkey = (name + "-group", g // k)
            dsk[gkey] = (_run_tiles, mref, [c for _, c, _ in group], [c for _, _, c in group],
                         out_dtype)
            for i, (idx, _, _) in enumerate(group):
                dsk[(name,) + idx] = (_pick, gkey, i)
    if tp is None:
        chunks = (n_chunks,) + tuple((s,) for s in out_rest)
    else:
        chunks = (n_chunks, (out_rest[0],),
                  tuple(b - a for a, b in tp.h.tiles), tuple(b - a for a, b in tp.w.tiles))
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=deps)
    y = da.Array(graph, name, chunks, meta=np.empty((0,) * len(chunks), out_dtype))
    return y if batched else y[0]
