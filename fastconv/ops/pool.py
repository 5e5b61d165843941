"""Public pooling functions, with torch.nn.functional's names, order and semantics.

Max pooling propagates NaN and can return torch's indices (flat positions into each
channel's H*W, or L for 1-D). 1-D ops run the 2-D kernels with H = 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _shapes
from ..backends._registry import begin


def _max_pool(
    op, nd, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, backend
):
    want_idx = _shapes.as_bool(return_indices, "return_indices")
    call = begin("max_pool2d", backend, input=input)
    g = _shapes.pool_geometry(
        op, call.shapes["input"], kernel_size, stride, padding, dilation, ceil_mode, nd
    )
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    y = call.empty((g.N, g.C, g.OH, g.OW))
    idx = call.empty((g.N, g.C, g.OH, g.OW), np.int64) if want_idx else None
    if y.size:
        call.kernel("max_pool2d")(x, y, idx, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw)
    out = call.finish(y, g.output_shape())
    if want_idx:
        return out, call.finish(idx, g.output_shape(), np.int64)
    return out


def max_pool2d(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    backend: str = "auto",
):
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``.

    Parameters
    ----------
    input : array_like, (N, C, H, W) or (C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int); None (default) means kernel_size
    padding : int or (int, int), at most half the kernel size; padded positions never win
    dilation : int or (int, int)
    ceil_mode : round the output size up; a window that would start in the right padding
        is dropped
    return_indices : also return int64 indices ih*W + iw of each maximum

    Returns
    -------
    ndarray (N, C, OH, OW) [, indices], OH = floor_or_ceil((H + 2p - d(K-1) - 1)/s) + 1.
    NaN in a window propagates to its output.

    >>> import numpy as np, fastconv
    >>> fastconv.max_pool2d(np.arange(16.).reshape(1, 1, 4, 4), 2)
    array([[[[ 5.,  7.],
             [13., 15.]]]])
    """
    return _max_pool(
        "max_pool2d",
        2,
        input,
        kernel_size,
        stride,
        padding,
        dilation,
        ceil_mode,
        return_indices,
        backend,
    )


def max_pool1d(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    backend: str = "auto",
):
    """1-D max pooling, as ``torch.nn.functional.max_pool1d``: input (N, C, L) or (C, L).

    >>> import numpy as np, fastconv
    >>> fastconv.max_pool1d(np.array([[[1., 3., 2., 5.]]]), 2)
    array([[[3., 5.]]])
    """
    return _max_pool(
        "max_pool1d",
        1,
        input,
        kernel_size,
        stride,
        padding,
        dilation,
        ceil_mode,
        return_indices,
        backend,
    )


def _avg_pool(
    op,
    nd,
    input,
    kernel_size,
    stride,
    padding,
    ceil_mode,
    count_include_pad,
    divisor_override,
    backend,
):
    cip = _shapes.as_bool(count_include_pad, "count_include_pad")
    div = _shapes.divisor_override(divisor_override)
    call = begin("avg_pool2d", backend, input=input)
    g = _shapes.pool_geometry(
        op, call.shapes["input"], kernel_size, stride, padding, 1, ceil_mode, nd
    )
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    y = call.empty((g.N, g.C, g.OH, g.OW))
    if y.size:
        call.kernel("avg_pool2d")(x, y, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, cip, div)
    return call.finish(y, g.output_shape())


def avg_pool2d(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Any = None,
    *,
    backend: str = "auto",
):
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``.

    Parameters
    ----------
    input : array_like, (N, C, H, W) or (C, H, W)
    kernel_size, stride, padding, ceil_mode : as :func:`max_pool2d` (no dilation)
    count_include_pad : divide by the window size including zero padding (clipped to the
        padded input) rather than by the number of input elements in the window
    divisor_override : non-zero int used as the divisor of every window

    Returns
    -------
    ndarray (N, C, OH, OW), sizes as :func:`max_pool2d` with dilation 1.

    >>> import numpy as np, fastconv
    >>> fastconv.avg_pool2d(np.arange(16.).reshape(1, 1, 4, 4), 2)
    array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]])
    """
    return _avg_pool(
        "avg_pool2d",
        2,
        input,
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        divisor_override,
        backend,
    )


def avg_pool1d(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    backend: str = "auto",
):
    """1-D average pooling, as ``torch.nn.functional.avg_pool1d``: input (N, C, L) or (C, L).

    >>> import numpy as np, fastconv
    >>> fastconv.avg_pool1d(np.array([[[1., 3., 2., 6.]]]), 2)
    array([[[2., 4.]]])
    """
    return _avg_pool(
        "avg_pool1d",
        1,
        input,
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        None,
        backend,
    )


def _adaptive(op, kernel, nd, input, output_size, return_indices, backend):
    want_idx = _shapes.as_bool(return_indices, "return_indices")
    call = begin(kernel, backend, input=input)
    g = _shapes.adaptive_geometry(op, call.shapes["input"], output_size, nd)
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    y = call.empty((g.N, g.C, g.OH, g.OW))
    idx = call.empty((g.N, g.C, g.OH, g.OW), np.int64) if want_idx else None
    if y.size:
        if kernel == "adaptive_max_pool2d":
            call.kernel(kernel)(x, y, idx)
        else:
            call.kernel(kernel)(x, y)
    out = call.finish(y, g.output_shape())
    if want_idx:
        return out, call.finish(idx, g.output_shape(), np.int64)
    return out


def adaptive_avg_pool2d(input: Any, output_size: Any, *, backend: str = "auto"):
    """2-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool2d``.

    input (N, C, H, W) or (C, H, W); output_size int or (int|None, int|None) (None keeps the
    input size). Output bin i covers input rows [floor(i*H/OH), ceil((i+1)*H/OH)).

    >>> import numpy as np, fastconv
    >>> fastconv.adaptive_avg_pool2d(np.arange(16.).reshape(1, 1, 4, 4), 1)
    array([[[[7.5]]]])
    """
    return _adaptive(
        "adaptive_avg_pool2d", "adaptive_avg_pool2d", 2, input, output_size, False, backend
    )


def adaptive_max_pool2d(
    input: Any, output_size: Any, return_indices: bool = False, *, backend: str = "auto"
):
    """2-D adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool2d``.

    Bins as :func:`adaptive_avg_pool2d`; NaN and index rules as :func:`max_pool2d`.

    >>> import numpy as np, fastconv
    >>> fastconv.adaptive_max_pool2d(np.arange(16.).reshape(1, 1, 4, 4), 1)
    array([[[[15.]]]])
    """
    return _adaptive(
        "adaptive_max_pool2d", "adaptive_max_pool2d", 2, input, output_size, return_indices, backend
    )


def adaptive_avg_pool1d(input: Any, output_size: Any, *, backend: str = "auto"):
    """1-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool1d``.

    >>> import numpy as np, fastconv
    >>> fastconv.adaptive_avg_pool1d(np.array([[[1., 3., 2., 6.]]]), 2)
    array([[[2., 4.]]])
    """
    return _adaptive(
        "adaptive_avg_pool1d", "adaptive_avg_pool2d", 1, input, output_size, False, backend
    )


def adaptive_max_pool1d(
    input: Any, output_size: Any, return_indices: bool = False, *, backend: str = "auto"
):
    """1-D adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool1d``.

    >>> import numpy as np, fastconv
    >>> fastconv.adaptive_max_pool1d(np.array([[[1., 3., 2., 6.]]]), 2)
    array([[[3., 6.]]])
    """
    return _adaptive(
        "adaptive_max_pool1d", "adaptive_max_pool2d", 1, input, output_size, return_indices, backend
    )
