"""Gradients of the pools: max, average and adaptive, 1-D and 2-D.

- max_pool{1,2}d_input            max_pool2d again for the indices of the maxima, then
                                  max_pool2d_backward
- avg_pool{1,2}d_input            avg_pool2d_backward
- adaptive_avg_pool{1,2}d_input   adaptive_avg_pool2d_backward
- adaptive_max_pool{1,2}d_input   adaptive_max_pool2d for the indices, then max_pool2d_backward

Each takes the forward arguments and grad_output and returns dL/dx, on the chosen backend's
kernels. Tests: ``pytest tests/test_grad.py``.
"""

from typing import Any, Optional, Sequence

import numpy as np

from ... import _shapes
from ...backends._registry import Call, begin
from ._plumbing import check_grad_output, check_memory, zeros

Shape = Sequence[int]


def _max_size(call: Call, g: _shapes.PoolGeometry) -> int:
    """Elements (of the compute dtype) a max pool's gradient allocates: the gradient, and the
    forward output and its int64 indices recomputed. The input sizes it all: a max pool's
    output is never much larger than its input (padding is at most half the kernel), and an
    adaptive one's is grad_output's, an array the caller already holds."""
    int64 = 8 // call.compute.itemsize  # an int64 index, in elements of the compute dtype
    return g.N * g.C * (g.H * g.W + (1 + int64) * g.OH * g.OW)


def _max_pool_input(op, nd, input, grad_output, kernel_size, stride, padding, dilation,
                    ceil_mode, backend):
    call = begin(("max_pool2d", "max_pool2d_backward"), backend, caller=op, input=input,
                 grad_output=grad_output)
    g = _shapes.pool_geometry(op, call.shapes["input"], kernel_size, stride, padding, dilation,
                              ceil_mode, nd)
    check_grad_output(op, call.shapes["grad_output"], g.output_shape())
    check_memory(call, op, ("input", _max_size(call, g)))
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    gy = call.prepare("grad_output", (g.N, g.C, g.OH, g.OW))
    gx = call.empty((g.N, g.C, g.H, g.W))
    if gx.size:
        # the forward pass again, for the position of each window's maximum
        y = call.empty((g.N, g.C, g.OH, g.OW))
        idx = call.empty((g.N, g.C, g.OH, g.OW), np.int64)
        call.kernel("max_pool2d")(x, y, idx, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw)
        call.kernel("max_pool2d_backward")(gy, idx, gx)
    return call.finish(gx, call.shapes["input"])


def max_pool2d_input(input: Any, grad_output: Any, kernel_size: Any, stride: Any = None,
                     padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False, *,
                     backend: str = "auto"):
    """Gradient of :func:`fastconv.max_pool2d` with respect to its input.

    Runs the backend's ``max_pool2d`` (for where each maximum is) and ``max_pool2d_backward``.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W) or unbatched (C, H, W)
        The forward input.
    grad_output : array_like, shape (N, C, OH, OW) (or (C, OH, OW)), the forward output's
    kernel_size, stride, padding, dilation, ceil_mode : as :func:`fastconv.max_pool2d`'s
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape of ``input``
        Each grad_output element added at its window's maximum (the first in scan order on
        ties, the last NaN if the window has NaN).

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.max_pool2d_input(np.arange(4.).reshape(1, 1, 2, 2), np.ones((1, 1, 1, 1)), 2)
    array([[[[0., 0.],
             [0., 1.]]]])
    """
    return _max_pool_input("max_pool2d_input", 2, input, grad_output, kernel_size, stride,
                           padding, dilation, ceil_mode, backend)


def max_pool1d_input(input: Any, grad_output: Any, kernel_size: Any, stride: Any = None,
                     padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False, *,
                     backend: str = "auto"):
    """Gradient of :func:`fastconv.max_pool1d` with respect to its input.

    Parameters
    ----------
    input : array_like, shape (N, C, L) or unbatched (C, L)
    grad_output : array_like, shape (N, C, OL) (or (C, OL))
    kernel_size, stride, padding, dilation, ceil_mode : as :func:`fastconv.max_pool1d`'s
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape of ``input``

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.max_pool1d_input(np.array([[[1., 3., 2., 5.]]]), np.array([[[10., 20.]]]), 2)
    array([[[ 0., 10.,  0., 20.]]])
    """
    return _max_pool_input("max_pool1d_input", 1, input, grad_output, kernel_size, stride,
                           padding, dilation, ceil_mode, backend)


def _avg_pool_input(op, nd, input_shape, grad_output, kernel_size, stride, padding, ceil_mode,
                    count_include_pad, divisor_override, backend):
    xs = _shapes.as_shape(input_shape, "input_shape", (nd + 1, nd + 2), op=op)
    cip = _shapes.as_bool(count_include_pad, "count_include_pad", op=op)
    div = _shapes.divisor_override(divisor_override, op)
    call = begin(("avg_pool2d_backward",), backend, caller=op, grad_output=grad_output)
    g = _shapes.pool_geometry(op, xs, kernel_size, stride, padding, 1, ceil_mode, nd,
                              "input_shape")
    check_grad_output(op, call.shapes["grad_output"], g.output_shape())
    check_memory(call, op, ("input_shape", g.N * g.C * g.H * g.W))
    gy = call.prepare("grad_output", (g.N, g.C, g.OH, g.OW))
    gx = call.empty((g.N, g.C, g.H, g.W))
    if gx.size:
        call.kernel("avg_pool2d_backward")(gy, gx, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, cip, div)
    return call.finish(gx, xs)


def avg_pool2d_input(input_shape: Shape, grad_output: Any, kernel_size: Any, stride: Any = None,
                     padding: Any = 0, ceil_mode: bool = False, count_include_pad: bool = True,
                     divisor_override: Optional[int] = None, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.avg_pool2d` with respect to its input.

    Parameters
    ----------
    input_shape : sequence of int, (N, C, H, W) or unbatched (C, H, W)
    grad_output : array_like, shape (N, C, OH, OW) (or (C, OH, OW)), the forward output's
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override : as
        :func:`fastconv.avg_pool2d`'s.
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape ``input_shape``
        Each grad_output element divided by its window's divisor and added over the window's
        input positions.

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.avg_pool2d_input((1, 1, 2, 2), np.full((1, 1, 1, 1), 4.), 2)
    array([[[[1., 1.],
             [1., 1.]]]])
    """
    return _avg_pool_input("avg_pool2d_input", 2, input_shape, grad_output, kernel_size, stride,
                           padding, ceil_mode, count_include_pad, divisor_override, backend)


def avg_pool1d_input(input_shape: Shape, grad_output: Any, kernel_size: Any, stride: Any = None,
                     padding: Any = 0, ceil_mode: bool = False, count_include_pad: bool = True,
                     *, backend: str = "auto"):
    """Gradient of :func:`fastconv.avg_pool1d` with respect to its input.

    Parameters
    ----------
    input_shape : sequence of int, (N, C, L) or unbatched (C, L)
    grad_output : array_like, shape (N, C, OL) (or (C, OL))
    kernel_size, stride, padding, ceil_mode, count_include_pad : as
        :func:`fastconv.avg_pool1d`'s.
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape ``input_shape``

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.avg_pool1d_input((1, 1, 4), np.array([[[2., 4.]]]), 2)
    array([[[1., 1., 2., 2.]]])
    """
    return _avg_pool_input("avg_pool1d_input", 1, input_shape, grad_output, kernel_size, stride,
                           padding, ceil_mode, count_include_pad, None, backend)


def _adaptive_geometry(op, nd, x_shape, gy_shape, x_name):
    """Adaptive pooling's geometry, the output size read from grad_output's shape; the input
    (shape) is called ``x_name``."""
    _shapes._spatial_input(tuple(x_shape), nd, op, x_name)  # its dimensions first
    if len(gy_shape) != len(x_shape):
        raise ValueError(
            f"{op}: grad_output must have as many dimensions as the input ({len(x_shape)}), "
            f"got shape {tuple(gy_shape)}"
        )
    g = _shapes.adaptive_geometry(op, x_shape, tuple(gy_shape[-nd:]), nd, x_name)
    check_grad_output(op, gy_shape, g.output_shape())
    return g


def _adaptive_input(op, nd, kernel, input_or_shape, grad_output, backend):
    if kernel == "adaptive_avg_pool2d_backward":
        xs = _shapes.as_shape(input_or_shape, "input_shape", (nd + 1, nd + 2), op=op)
        call = begin((kernel,), backend, caller=op, grad_output=grad_output)
    else:
        call = begin(("adaptive_max_pool2d", kernel), backend, caller=op, input=input_or_shape,
                     grad_output=grad_output)
        xs = call.shapes["input"]
    x_name = "input_shape" if kernel == "adaptive_avg_pool2d_backward" else "input"
    g = _adaptive_geometry(op, nd, xs, call.shapes["grad_output"], x_name)
    if kernel == "adaptive_avg_pool2d_backward":
        check_memory(call, op, ("input_shape", g.N * g.C * g.H * g.W))
    else:
        check_memory(call, op, ("input", _max_size(call, g)))
    gy = call.prepare("grad_output", (g.N, g.C, g.OH, g.OW))
    if g.N == 0:
        return call.finish(call.empty((g.N, g.C, g.H, g.W)), xs)
    if gy.size == 0:  # output_size 0: nothing flows back
        return call.finish(zeros(call, (g.N, g.C, g.H, g.W)), xs)
    gx = call.empty((g.N, g.C, g.H, g.W))
    if kernel == "adaptive_avg_pool2d_backward":
        call.kernel(kernel)(gy, gx)
    else:
        x = call.prepare("input", (g.N, g.C, g.H, g.W))
        y = call.empty((g.N, g.C, g.OH, g.OW))
        idx = call.empty((g.N, g.C, g.OH, g.OW), np.int64)
        call.kernel("adaptive_max_pool2d")(x, y, idx)
        call.kernel(kernel)(gy, idx, gx)
    return call.finish(gx, xs)


def adaptive_avg_pool2d_input(input_shape: Shape, grad_output: Any, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.adaptive_avg_pool2d` with respect to its input.

    Parameters
    ----------
    input_shape : sequence of int, (N, C, H, W) or unbatched (C, H, W)
    grad_output : array_like, shape (N, C, OH, OW) (or (C, OH, OW))
        Its shape gives the output size.
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape ``input_shape``
        Each grad_output element spread evenly over its bin.

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.adaptive_avg_pool2d_input((1, 1, 2, 2), np.full((1, 1, 1, 1), 4.))
    array([[[[1., 1.],
             [1., 1.]]]])
    """
    return _adaptive_input("adaptive_avg_pool2d_input", 2, "adaptive_avg_pool2d_backward",
                           input_shape, grad_output, backend)


def adaptive_avg_pool1d_input(input_shape: Shape, grad_output: Any, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.adaptive_avg_pool1d` with respect to its input.

    Parameters
    ----------
    input_shape : sequence of int, (N, C, L) or unbatched (C, L)
    grad_output : array_like, shape (N, C, OL) (or (C, OL)); its shape gives the output size
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape ``input_shape``

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.adaptive_avg_pool1d_input((1, 1, 4), np.array([[[2., 4.]]]))
    array([[[1., 1., 2., 2.]]])
    """
    return _adaptive_input("adaptive_avg_pool1d_input", 1, "adaptive_avg_pool2d_backward",
                           input_shape, grad_output, backend)


def adaptive_max_pool2d_input(input: Any, grad_output: Any, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.adaptive_max_pool2d` with respect to its input.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W) or unbatched (C, H, W)
        The forward input.
    grad_output : array_like, shape (N, C, OH, OW) (or (C, OH, OW))
        Its shape gives the output size.
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape of ``input``
        Each grad_output element added at its bin's maximum.

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.adaptive_max_pool2d_input(np.arange(4.).reshape(1, 1, 2, 2), np.ones((1, 1, 1, 1)))
    array([[[[0., 0.],
             [0., 1.]]]])
    """
    return _adaptive_input("adaptive_max_pool2d_input", 2, "max_pool2d_backward", input,
                           grad_output, backend)


def adaptive_max_pool1d_input(input: Any, grad_output: Any, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.adaptive_max_pool1d` with respect to its input.

    Parameters
    ----------
    input : array_like, shape (N, C, L) or unbatched (C, L)
    grad_output : array_like, shape (N, C, OL) (or (C, OL)); its shape gives the output size
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape of ``input``

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.adaptive_max_pool1d_input(np.array([[[1., 3., 2., 6.]]]), np.array([[[1., 2.]]]))
    array([[[0., 1., 0., 2.]]])
    """
    return _adaptive_input("adaptive_max_pool1d_input", 1, "max_pool2d_backward", input,
                           grad_output, backend)
