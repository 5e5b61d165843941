"""Padding modes of convolutions (``padding_mode``): the one home of what each mode does.

- NUMPY_MODES: each mode other than "zeros" -> the ``numpy.pad`` mode that pads the same way
  ("zeros" needs no copy: the kernels pad with zeros themselves)
- pad(x, widths, mode): x padded along its trailing spatial axes, as the convolution pads it
- unpad(gp, widths, mode): the adjoint of pad, for backward passes: the gradient of the padded
  array folded back onto the input's positions

``widths`` holds (before, after) per padded axis, flat, for the trailing axes of the array:
(top, bottom, left, right) for 2-D ops, (left, right) for 1-D ones, as
``fastconv._shapes.conv_padding`` gives them. Whether an input is large enough for a mode
is checked by ``fastconv._shapes.check_explicit_padding``.

>>> import numpy as np
>>> pad(np.array([[1, 2, 3]]), (1, 1), "reflect")
array([[2, 1, 2, 3, 2]])
>>> unpad(np.ones((1, 5)), (1, 1), "reflect")  # x[1] is read three times
array([[1., 3., 1.]])
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

import numpy as np

from .. import _shapes

# Any: numpy.pad types its mode as a Literal of its own names
NUMPY_MODES: Dict[str, Any] = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
assert set(NUMPY_MODES) == set(_shapes.PADDING_MODES) - {"zeros"}


def _axes(ndim: int, widths: Sequence[int]):
    """(axis, before, after) of each padded axis: the trailing len(widths) // 2 axes."""
    nd = len(widths) // 2
    return [(ndim - nd + i, widths[2 * i], widths[2 * i + 1]) for i in range(nd)]


def pad(x: np.ndarray, widths: Sequence[int], mode: str) -> np.ndarray:
    """``x`` padded by ``widths`` along its trailing axes as ``padding_mode`` = ``mode`` pads."""
    full = [(0, 0)] * x.ndim
    for ax, p0, p1 in _axes(x.ndim, widths):
        full[ax] = (p0, p1)
    return np.pad(x, full, NUMPY_MODES[mode])


def unpad(gp: np.ndarray, widths: Sequence[int], mode: str) -> np.ndarray:
    """The adjoint of :func:`pad`: each padded position's gradient is added back to the input
    position it copies (padding reads x[idx] along each axis; its adjoint scatters)."""
    for ax, p0, p1 in _axes(gp.ndim, widths):
        n = gp.shape[ax] - p0 - p1
        idx = np.pad(np.arange(n), (p0, p1), NUMPY_MODES[mode])
        moved = np.moveaxis(gp, ax, 0)
        out = np.zeros((n,) + moved.shape[1:], gp.dtype)
        np.add.at(out, idx, moved)
        gp = np.moveaxis(out, 0, ax)
    return gp
