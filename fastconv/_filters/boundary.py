"""Boundary modes and blocks of an extended input.

A filter reads past the ends of each axis; the mode says what it reads there. The names
are scipy.ndimage's (scipy.signal's boundaries are three of them), drawn for an axis
``a b c d`` (n = 4), with the extension continuing periodically when a window is wider
than the axis:

=========  ==================================  ==========================================
mode       extension                           also called
=========  ==================================  ==========================================
constant   ``k k k k | a b c d | k k k k``     ndimage 'grid-constant'; signal 'fill'
nearest    ``a a a a | a b c d | d d d d``
reflect    ``d c b a | a b c d | d c b a``     ndimage 'grid-mirror'; signal 'symm'
mirror     ``d c b | a b c d | c b a``         (n = 1: as nearest)
wrap       ``a b c d | a b c d | a b c d``     ndimage 'grid-wrap'; signal 'wrap'
=========  ==================================  ==========================================

:func:`source_index` maps extended positions to source indices (-1: the constant).
:func:`fill` copies a box of the extended input into a buffer: per axis the box splits
into runs (a slice of the source, a few reflected indices, or the constant), and the
buffer is written run by run, so the bulk of it is one strided slice copy and nothing
the size of the padded array is ever made.
"""

from __future__ import annotations

import itertools
from typing import Any, List, Sequence, Tuple

import numpy as np

MODES = ("constant", "nearest", "reflect", "mirror", "wrap")

#: A run of positions along one axis: (dst_start, dst_stop, kind, source) with kind
#: "slice" (source = (start, stop) of the source axis), "index" (source = index array) or
#: "constant" (source = None).
Run = Tuple[int, int, str, Any]


def source_index(pos: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Source index of each extended position ``pos`` on an axis of length n >= 1; -1 where
    the constant is read (mode 'constant')."""
    pos = np.asarray(pos, dtype=np.int64)
    if mode == "constant":
        return np.where((pos >= 0) & (pos < n), pos, -1)
    if mode == "nearest":
        return np.clip(pos, 0, n - 1)
    if mode == "wrap":
        return np.mod(pos, n)
    if mode == "reflect":  # period 2n: a window past the far copy keeps reflecting
        m = np.mod(pos, 2 * n)
        return np.where(m < n, m, 2 * n - 1 - m)
    if mode == "mirror":  # period 2n - 2, edge samples not repeated
        if n == 1:
            return np.zeros_like(pos)
        m = np.mod(pos, 2 * n - 2)
        return np.where(m < n, m, 2 * n - 2 - m)
    raise ValueError(f"unknown boundary mode {mode!r}")  # pragma: no cover - checked by faces


def runs(start: int, length: int, n: int, mode: str) -> List[Run]:
    """Split extended positions [start, start + length) of an axis of length n into runs:
    maximal ascending stretches of source indices become slices (the interior is one), the
    rest (reflected or repeated borders, stretches shorter than 4) index arrays."""
    stop = start + length
    if length <= 0:
        return []
    if start >= 0 and stop <= n:  # the common case: wholly inside
        return [(0, length, "slice", (start, stop))]
    src = source_index(np.arange(start, stop), n, mode)
    const = src < 0
    new = np.ones(length, dtype=bool)  # new[i]: a stretch starts at i
    new[1:] = (const[1:] != const[:-1]) | (~const[1:] & (src[1:] != src[:-1] + 1))
    edges = np.append(np.flatnonzero(new), length)
    out: List[Run] = []
    for i, j in zip(edges[:-1].tolist(), edges[1:].tolist()):
        if const[i]:
            out.append((i, j, "constant", None))
        elif j - i >= 4:
            out.append((i, j, "slice", (int(src[i]), int(src[j - 1]) + 1)))
        elif out and out[-1][2] == "index" and out[-1][1] == i:  # grow the index run
            out[-1] = (out[-1][0], j, "index", src[out[-1][0] : j])
        else:
            out.append((i, j, "index", src[i:j]))
    return out


def fill(
    dst: np.ndarray,
    x: np.ndarray,
    starts: Sequence[int],
    modes: Sequence[str],
    cval: float,
) -> np.ndarray:
    """dst[...] = the extended x over the box starting at ``starts`` (one start per axis of
    x, extended coordinates) with dst's shape. Returns dst."""
    per_axis = [runs(s, d, n, m) for s, d, n, m in zip(starts, dst.shape, x.shape, modes)]
    for combo in itertools.product(*per_axis):
        dsel = tuple(slice(r[0], r[1]) for r in combo)
        if any(r[2] == "constant" for r in combo):
            dst[dsel] = cval
            continue
        arrays = sum(r[2] == "index" for r in combo)
        if arrays <= 1:
            ssel = tuple(slice(*r[3]) if r[2] == "slice" else r[3] for r in combo)
            dst[dsel] = x[ssel]
        else:  # corners where two axes are reflected: an outer-product gather (small)
            idx = [np.arange(*r[3]) if r[2] == "slice" else r[3] for r in combo]
            dst[dsel] = x[np.ix_(*idx)]
    return dst
