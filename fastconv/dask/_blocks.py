"""Graph building for fastconv.dask: tasks that gather any region of a dask array.

A task reads the region ``ranges`` (one (lo, hi) per dimension, global coordinates, which may
reach outside the array: those positions hold ``fill``) from whichever chunks it overlaps,
however the array is chunked: halos wider than a chunk, 1-pixel chunks and uneven chunks
only change how many chunks a region touches. Ops then run the NumPy function on the
gathered block (see ops.py), so no chunking ever has to match an op's geometry.
"""

from __future__ import annotations

import importlib
import itertools
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

Range = Tuple[int, int]


def edges(chunks: Sequence[int]) -> np.ndarray:
    """Chunk sizes -> boundaries [0, c0, c0+c1, ..., size]."""
    return np.concatenate([[0], np.cumsum(chunks, dtype=np.int64)]).astype(np.int64)


def spans(chunks: Sequence[int]) -> List[Range]:
    """Chunk sizes -> [(lo, hi)] of each chunk."""
    e = edges(chunks)
    return [(int(a), int(b)) for a, b in zip(e[:-1], e[1:])]


def partition(in_edges: Any, out_size: int, to_out) -> Tuple[int, ...]:
    """Output chunk sizes: the images ``to_out(e)`` of the input chunk boundaries, clipped to
    [0, out_size] and deduplicated (so no output chunk is empty)."""
    cut = {0, out_size}
    for e in in_edges:
        cut.add(min(max(int(to_out(int(e))), 0), out_size))
    cut_sorted = sorted(cut)
    return tuple(b - a for a, b in zip(cut_sorted[:-1], cut_sorted[1:])) or (out_size,)


class Placement:
    """Where each gathered chunk piece goes in a region (a plain object: dask does not look
    inside it)."""

    __slots__ = ("shape", "dtype", "fill", "pieces", "whole")

    def __init__(self, shape, dtype, fill, pieces, whole):
        self.shape = shape
        self.dtype = dtype
        self.fill = fill
        self.pieces = pieces  # [(src slices in the chunk, dst slices in the region)]
        self.whole = whole  # one piece covering the whole region: a view, no copy


def assemble(parts: List[np.ndarray], pl: Placement) -> np.ndarray:
    """The region from its chunk pieces (run inside a task)."""
    if pl.whole:
        return parts[0][pl.pieces[0][0]]
    out = np.full(pl.shape, pl.fill, dtype=pl.dtype)
    for part, (src, dst) in zip(parts, pl.pieces):
        out[dst] = part[src]
    return out


class Source:
    """A dask array whose regions tasks read."""

    def __init__(self, arr: Any):
        self.arr = arr
        self.name = arr.name
        self.bounds = [edges(c) for c in arr.chunks]
        self.dtype = arr.dtype

    def region(self, ranges: Sequence[Range], fill: Any = 0) -> tuple:
        """A task returning ``arr[ranges]``; positions outside the array are ``fill``."""
        per_dim: List[list] = []
        for b, (lo, hi) in zip(self.bounds, ranges):
            a, z = max(lo, 0), min(hi, int(b[-1]))
            items = []
            if a < z:
                first = int(np.searchsorted(b, a, "right")) - 1
                last = int(np.searchsorted(b, z, "left"))
                for c in range(first, last):
                    c0, c1 = int(b[c]), int(b[c + 1])
                    s0, s1 = max(a, c0), min(z, c1)
                    if s0 < s1:
                        items.append((c, slice(s0 - c0, s1 - c0), slice(s0 - lo, s1 - lo)))
            per_dim.append(items)
        shape = tuple(hi - lo for lo, hi in ranges)
        keys, pieces = [], []
        if all(per_dim):
            for combo in itertools.product(*per_dim):
                keys.append((self.name,) + tuple(it[0] for it in combo))
                pieces.append((tuple(it[1] for it in combo), tuple(it[2] for it in combo)))
        covered = sum(int(np.prod([d.stop - d.start for d in dst])) for _, dst in pieces)
        whole = len(pieces) == 1 and covered == int(np.prod(shape))
        return (assemble, keys, Placement(shape, self.dtype, fill, pieces, whole))


class Params:
    """What every task of one op shares (weights, arguments): one graph key, so the graph
    holds the arrays once and dask ships them once per worker, not once per task."""

    def __init__(self, **items: Any):
        self.__dict__.update(items)

    def __getattr__(self, name: str) -> Any:  # only for names never set: typed access
        raise AttributeError(name)


class OpRef:
    """A public fastconv function by module and name (resolved in the worker)."""

    __slots__ = ("module", "name")

    def __init__(self, fn: Any):
        self.module = fn.__module__
        self.name = fn.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.name)(*args, **kwargs)

    def __getstate__(self):
        return (self.module, self.name)

    def __setstate__(self, state):
        self.module, self.name = state


def build(name: str, tasks: Dict[tuple, tuple], chunks: tuple, dtype: Any, deps: list,
          extra: Optional[Dict[Any, Any]] = None, nout: int = 1, dtypes: Optional[list] = None):
    """Dask array(s) named ``name`` from ``tasks`` {block index: task}.

    With ``nout`` > 1 each task returns a tuple and one array per item is returned."""
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    dsk: Dict[Any, Any] = dict(extra or {})
    ndim = len(chunks)
    if nout == 1:
        for idx, t in tasks.items():
            dsk[(name,) + idx] = t
        graph = HighLevelGraph.from_collections(name, dsk, dependencies=deps)
        return da.Array(graph, name, chunks, meta=np.empty((0,) * ndim, dtype))
    pair = name + "-pair"
    for idx, t in tasks.items():
        dsk[(pair,) + idx] = t
    graph = HighLevelGraph.from_collections(pair, dsk, dependencies=deps)
    holder = da.Array(graph, pair, chunks, meta=np.empty((0,) * ndim, object))
    outs = []
    for i in range(nout):
        sub = f"{name}-{i}"
        layer: Dict[Any, Any] = {(sub,) + idx: (_item, (pair,) + idx, i) for idx in tasks}
        g = HighLevelGraph.from_collections(sub, layer, dependencies=[holder])  # type: ignore[list-item]
        outs.append(da.Array(g, sub, chunks, meta=np.empty((0,) * ndim, (dtypes or [dtype])[i])))
    return tuple(outs)


def _item(pair: tuple, i: int) -> Any:
    return pair[i]
