"""The exact theoretical receptive field: the input pixels an output element depends on.

An input pixel belongs to the support of an output element when at least one path of
connections leads from it to that element, whatever the weights (a weight of zero or a
ReLU that is off on some input still leaves the connection). This is the set that
``effective_receptive_field(...).theoretical_pixels`` counts; the recurrence of
:mod:`fastconv.analysis.receptive_field` gives its bounding box (size, jump, start), which
over-counts with dilation (holes) and under-describes circular or mirrored padding.

How: the model's layers are traced once (:meth:`fastconv.nn.Module._trace`); each spatial
layer contributes one boolean connectivity matrix per axis, ``A[o, i]`` = output index o
reads input index i (padding taps dropped for zero padding, folded back onto the input for
reflect / replicate / circular padding). A boolean mask of output pixels is carried back
through the layers as ``A_h.T @ mask @ A_w``; Residual and Concat paths are carried back to
the point where they split and joined there (a union). Channels are not tracked: a mask is
the set of pixels of any channel, which is exact for every layer here (each output channel
of a convolution reads the same taps of each input channel it reads).

>>> from fastconv import nn
>>> from fastconv.analysis.support import support
>>> m = nn.Conv2d(1, 1, 3, dilation=2)  # 9 taps spread over a 5x5 square
>>> int(support(m, (1, 9, 9), (2, 2)).sum())
9
"""

from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from .. import _shapes, nn

Mask = np.ndarray  # (H, W) bool
Back = Callable[[Mask], Mask]


def _fold(i: int, n: int, mode: str) -> Optional[int]:
    """The input index a padded position ``i`` reads along an axis of ``n``, None for zero
    padding outside the input."""
    if 0 <= i < n:
        return i
    if mode == "zeros":
        return None
    if mode == "replicate":
        return min(max(i, 0), n - 1)
    if mode == "circular":
        return i % n
    # reflect (torch's: the edge pixel is not repeated); the padding is < n, one bounce
    return -i if i < 0 else 2 * (n - 1) - i


def _window_axis(n_in: int, n_out: int, k: int, s: int, p: int, d: int,
                 mode: str = "zeros") -> np.ndarray:
    """Connectivity of a sliding window along one axis: output o reads o*s - p + j*d."""
    a = np.zeros((n_out, n_in), dtype=bool)
    for o in range(n_out):
        for j in range(k):
            i = _fold(o * s - p + j * d, n_in, mode)
            if i is not None:
                a[o, i] = True
    return a


def _transpose_axis(n_in: int, n_out: int, k: int, s: int, p: int, d: int) -> np.ndarray:
    """Connectivity of a transposed convolution along one axis: input i writes to
    i*s - p + j*d."""
    a = np.zeros((n_out, n_in), dtype=bool)
    for i in range(n_in):
        for j in range(k):
            o = i * s - p + j * d
            if 0 <= o < n_out:
                a[o, i] = True
    return a


def _adaptive_axis(n_in: int, n_out: int) -> np.ndarray:
    a = np.zeros((n_out, n_in), dtype=bool)
    for o, (b, e) in enumerate(_shapes.adaptive_bins(n_in, n_out)):
        a[o, b:e] = True
    return a


def _spatial(shape: Sequence[int]) -> Tuple[int, int]:
    """(H, W) of an activation (N, C, H, W) or (N, C, L) (H = 1)."""
    return (int(shape[2]), int(shape[3])) if len(shape) == 4 else (1, int(shape[-1]))


def _separable(ah: np.ndarray, aw: np.ndarray) -> Back:
    def back(mask: Mask) -> Mask:
        m = mask.astype(np.float64)
        return (ah.T.astype(np.float64) @ m @ aw.astype(np.float64)) > 0
    return back


class _Node:
    """One point of a traced path: ``back`` carries a mask at this point to ``parent``'s."""

    __slots__ = ("parent", "back", "depth")

    def __init__(self, parent: Optional["_Node"], back: Optional[Back]):
        self.parent, self.back = parent, back
        self.depth: int = 0 if parent is None else parent.depth + 1


def _chain(node: _Node, stop: _Node) -> List[Back]:
    """The back maps from ``node`` up to (not including) ``stop``, nearest first."""
    out = []
    while node is not stop:
        assert node.back is not None and node.parent is not None
        out.append(node.back)
        node = node.parent
    return out


def _common(nodes: Sequence[_Node]) -> _Node:
    """The nearest point that every path passes through (where the paths split)."""
    nodes = list(nodes)
    while True:
        low = min(n.depth for n in nodes)
        nodes = [n if n.depth == low else _up(n, n.depth - low) for n in nodes]
        if all(n is nodes[0] for n in nodes):
            return nodes[0]
        nodes = [n.parent for n in nodes]  # type: ignore[misc]


def _up(n: _Node, k: int) -> _Node:
    for _ in range(k):
        n = n.parent  # type: ignore[assignment]
    return n


class _SupportTracer(nn.Tracer):
    def leaf(self, name: str, m: Any, in_shape, out_shape, node: _Node) -> _Node:
        (H, W), (OH, OW) = _spatial(in_shape), _spatial(out_shape)
        if len(out_shape) < 3 or isinstance(m, (nn.Flatten, nn.Linear)):
            # no spatial output: every output reads every input pixel
            return _Node(node, lambda mask: np.full((H, W), bool(mask.any())))
        if isinstance(m, (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Dropout, nn.Identity)):
            return node
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            g = m.geometry(in_shape)
            mode = getattr(m, "padding_mode", "zeros")
            ah = _window_axis(H, OH, g.KH, g.sh, g.pad[0], g.dh, mode)
            aw = _window_axis(W, OW, g.KW, g.sw, g.pad[2], g.dw, mode)
        elif isinstance(m, nn.ConvTranspose2d):
            g = m.geometry(in_shape)
            ah = _transpose_axis(H, OH, g.KH, g.sh, g.pad[0], g.dh)
            aw = _transpose_axis(W, OW, g.KW, g.sw, g.pad[2], g.dw)
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            pg = m.geometry(in_shape)
            ah = _window_axis(H, OH, pg.KH, pg.sh, pg.ph, pg.dh)
            aw = _window_axis(W, OW, pg.KW, pg.sw, pg.pw, pg.dw)
        elif isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            ah, aw = _adaptive_axis(H, OH), _adaptive_axis(W, OW)
        else:
            raise TypeError(f"support: no rule for layer {name!r} of type {type(m).__name__}")
        return _Node(node, _separable(ah, aw))

    def merge(self, name, m, how, in_shapes, out_shape, nodes: List[_Node]) -> _Node:
        # Residual (add) and Concat (channels of any path): the union over the paths
        split = _common(nodes)
        chains = [_chain(n, split) for n in nodes]

        def back(mask: Mask) -> Mask:
            out = None
            for chain in chains:
                b = mask
                for f in chain:
                    b = f(b)
                out = b if out is None else out | b
            return out  # type: ignore[return-value]

        return _Node(split, back)


def support(model: nn.Module, input_shape: Any, position: Sequence[int]) -> Mask:
    """The (H, W) boolean mask of the input pixels that output element ``position``
    (oh, ow) of ``model`` depends on, over all its output channels; ``input_shape`` is
    (C, H, W) or (C, L) without the batch (a 1-D model's position is (0, ol))."""
    from .accounting import parse_input_shape

    shape = (1,) + tuple(parse_input_shape(input_shape, "input_shape"))
    root = _Node(None, None)
    out_shape, node = model._trace(_SupportTracer(), "", shape, root)
    OH, OW = _spatial(out_shape)
    mask = np.zeros((OH, OW), dtype=bool)
    mask[position[0], position[1]] = True
    for f in _chain(node, root):
        mask = f(mask)
    return mask
