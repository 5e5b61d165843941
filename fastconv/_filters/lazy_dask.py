"""Dask arrays in, dask arrays out, for fastconv.ndimage (as dask-image does it).

Each chunk is filtered by the NumPy function with a halo of its neighbours' data
(``dask.array.map_overlap``): per axis, the halo is the filter's reach, k // 2 + |origin|
(the radius of a Gaussian). At the true border of the image no halo is invented: the chunk
there is filtered with the mode itself, which is what the whole array would see. Mode
'wrap' needs the other side of the whole image, so on an axis cut into several chunks the
halo at the border is taken periodically from the opposite end. An axis whose reach is not
smaller than the axis itself is first merged into one chunk (a window wider than the image
reads all of it). dask is imported only here, when a dask array is passed.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np


def _reach(name: str, ndim: int, args: Tuple, kw: Dict[str, Any]) -> Tuple[List[int], List[str]]:
    """Per axis: the halo depth and the mode, for filter ``name``."""
    from .. import ndimage as nd

    depth = [0] * ndim
    modes: List[str] = ["reflect"] * ndim
    mode = kw.get("mode", "reflect")
    if name in ("correlate", "convolve"):
        w = np.asarray(args[0])
        ax = list(sorted(nd._axes(kw.get("axes"), ndim)))
        origins = nd._sequence(kw.get("origin", 0), len(ax), "origin")
        for a, k, o in zip(ax, w.shape[-len(ax) :] if ax else (), origins):
            depth[a] = k // 2 + abs(int(o))
        modes = [mode] * ndim
    elif name in ("correlate1d", "convolve1d", "uniform_filter1d", "gaussian_filter1d"):
        a = nd._axis(kw.get("axis", -1), ndim)
        o = abs(int(kw.get("origin", 0)))
        if name == "gaussian_filter1d":
            w = nd._gaussian_weights(
                args[0], kw.get("order", 0), kw.get("truncate", 4.0), kw.get("radius")
            )
            depth[a] = len(w) // 2
        elif name == "uniform_filter1d":
            depth[a] = int(args[0]) // 2 + o
        else:
            depth[a] = len(np.ravel(args[0])) // 2 + o
        modes = [mode] * ndim
    elif name == "uniform_filter":
        ax = list(nd._axes(kw.get("axes"), ndim))
        sizes = nd._sequence(kw.get("size", 3), len(ax), "size")
        origins = nd._sequence(kw.get("origin", 0), len(ax), "origin")
        ms = nd._sequence(mode, len(ax), "mode")
        for a, s, o, m in zip(ax, sizes, origins, ms):
            depth[a] = int(s) // 2 + abs(int(o))
            modes[a] = m
    elif name == "gaussian_filter":
        ax = list(nd._axes(kw.get("axes"), ndim))
        sig = nd._sequence(args[0], len(ax), "sigma")
        order = nd._sequence(kw.get("order", 0), len(ax), "order")
        radius = nd._sequence(kw.get("radius"), len(ax), "radius")
        ms = nd._sequence(mode, len(ax), "mode")
        for a, s, o, r, m in zip(ax, sig, order, radius, ms):
            if s > 1e-15:
                w = nd._gaussian_weights(s, o, kw.get("truncate", 4.0), r)
                depth[a] = len(w) // 2
            modes[a] = m
    for m in modes:
        nd._mode(m)  # an unknown mode fails now, not when the graph runs
    return depth, [nd._MODES[m] for m in modes]


def ndimage_call(name: str, x: Any, *args: Any, **kw: Any):
    """fastconv.ndimage.<name>(x, *args, **kw) for a dask array x, lazily."""
    import dask.array as da

    from .. import ndimage as nd

    output = kw.pop("output", None)
    if isinstance(output, np.ndarray) or hasattr(output, "chunks"):
        raise TypeError("output must be None or a dtype when the input is a dask array")
    depth, modes = _reach(name, x.ndim, args, kw)
    # output dtype and argument errors: run the filter on a tiny array of the same dtype
    probe = getattr(nd, name)(np.zeros((1,) * x.ndim, x.dtype), *args, output=output, **kw)
    dtype = probe.dtype
    # a reach as long as the axis: that axis in one chunk (dask itself enlarges chunks
    # smaller than their halo)
    chunks = {a: -1 for a in range(x.ndim) if depth[a] and depth[a] >= x.shape[a]}
    if chunks:
        x = x.rechunk(chunks)
    boundary = {}
    for a in range(x.ndim):
        periodic = modes[a] == "wrap" and len(x.chunks[a]) > 1
        boundary[a] = "periodic" if periodic else "none"
    func = getattr(nd, name)

    def block(b: np.ndarray) -> np.ndarray:
        return func(b, *args, output=output, **kw)

    return da.map_overlap(
        block,
        x,
        depth={a: d for a, d in enumerate(depth)},
        boundary=boundary,
        dtype=dtype,
        meta=np.array((), dtype=dtype),
        trim=True,
    )
