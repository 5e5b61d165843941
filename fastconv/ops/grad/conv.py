"""Gradients of the convolutions: conv1d / conv2d, transposed, depthwise, separable, biases.

Each public function is the backward pass of one forward op with respect to one argument,
and runs on the chosen backend's own forward kernels:

- conv{1,2}d_input, depthwise_conv2d_input          conv_transpose2d (the adjoint of conv2d)
- conv{1,2}d_weight, depthwise_conv2d_weight        conv2d on regrouped arrays (a correlation)
- conv{1,2}d_bias (= conv_transpose{1,2}d_bias)     conv2d of grad_output with ones
- conv_transpose{1,2}d_input                        conv2d
- conv_transpose{1,2}d_weight                       conv2d (a correlation, roles swapped)
- separable_conv2d_{input, depthwise_weight, pointwise_weight, depthwise_bias,
  pointwise_bias}, separable_conv2d_backward        the above, step by step

The cores (``_conv_input_core``, ``_conv_weight_core``, ``_bias_core``) work on kernel arrays;
the formulas and why they hold are in docs/backward.md. Tests: ``pytest tests/test_grad.py``.
"""

import functools
from typing import Any, Dict, Sequence, Union

import numpy as np

from ... import _shapes
from ...backends._registry import Call, begin, takes_depthwise
from ._plumbing import check_grad_output, check_memory, host, rearranged, zeros

Padding = Union[int, tuple, str]
Shape = Sequence[int]

# --------------------------------------------------------------------------- conv cores
# The cores work on kernel arrays (4-D, the backend's type, compute dtype) and return one.


def _run_conv(call: Call, x, w, b, y, sh, sw, ph, pw, dh, dw, groups) -> None:
    """The backend's conv2d (its depthwise kernel where the forward conv takes it)."""
    if takes_depthwise(call.backend_module, x.shape[1], groups, w.shape[0], w.shape[2],
                       w.shape[3], sh, sw):
        call.kernel("depthwise_conv2d")(x, w, b, y, sh, sw, ph, pw, dh, dw)
    else:
        call.kernel("conv2d")(x, w, b, y, sh, sw, ph, pw, dh, dw, groups)


def _transpose_axis(size: int, out: int, k: int, s: int, p0: int, d: int):
    """How conv_transpose2d reproduces one axis of a conv's input gradient.

    ``size`` is the conv input's length, ``out`` its output's, ``p0`` its leading padding.
    Returns (q, R, offset): run the transposed conv with padding q and output length R;
    its position u is input position u - offset. Usually q = p0, offset = 0 and R = size,
    which is the transposed conv of output_padding size - natural < max(s, d). When the
    conv's trailing padding is smaller than its leading one (the extra row of 'same') or
    the conv never read the input's last rows because of large padding, the natural length
    is off by more: then R is a natural length and the caller crops and zero-fills.
    """
    full = (out - 1) * s + d * (k - 1) + 1  # extent of the padded input the conv read
    natural = full - 2 * p0
    if natural >= 1 and 0 <= size - natural < max(s, d):
        return p0, size, 0
    # padding q drops q positions at both ends of [0, full): keep every position the input
    # occupies, [p0, p0 + size), that the conv read
    q = min(p0, max(0, full - p0 - size))
    return q, full - 2 * q, p0 - q


def _input_plan(geo: _shapes.ConvGeometry):
    """(qh, RH, oh, qw, RW, ow): _transpose_axis along H and along W."""
    along_h = _transpose_axis(geo.H, geo.OH, geo.KH, geo.sh, geo.ph, geo.dh)
    along_w = _transpose_axis(geo.W, geo.OW, geo.KW, geo.sw, geo.pw, geo.dw)
    return along_h + along_w


def _input_core_size(geo: _shapes.ConvGeometry) -> int:
    """Elements _conv_input_core allocates: the transposed conv's output, and the cropped
    gradient where that is not the same array."""
    _, RH, oh, _, RW, ow = _input_plan(geo)
    n = geo.N * geo.C * RH * RW
    if (RH, RW, oh, ow) != (geo.H, geo.W, 0, 0):
        n += geo.N * geo.C * geo.H * geo.W
    return n


def _conv_input_core(call: Call, gy, w, geo: _shapes.ConvGeometry):
    """dL/dx of y = conv2d(x, w): the adjoint of conv2d is conv_transpose2d.

    gy (N, OC, OH, OW), w (OC, C/G, KH, KW) -> gx (N, C, H, W), sizes those of ``geo``."""
    N, C, H, W = geo.N, geo.C, geo.H, geo.W
    qh, RH, oh, qw, RW, ow = _input_plan(geo)
    buf = call.empty((N, C, RH, RW))
    if buf.size:
        call.kernel("conv_transpose2d")(gy, w, None, buf, geo.sh, geo.sw, qh, qw, geo.dh, geo.dw,
                                        geo.groups)
    if (RH, RW, oh, ow) == (H, W, 0, 0):
        return buf
    # the input rows / columns the conv never read get zero gradient
    src = host(buf)
    gx = np.zeros((N, C, H, W), call.compute)
    h0, h1 = max(oh, 0), min(oh + H, RH)
    w0, w1 = max(ow, 0), min(ow + W, RW)
    if h1 > h0 and w1 > w0:
        gx[:, :, h0 - oh : h1 - oh, w0 - ow : w1 - ow] = src[:, :, h0:h1, w0:w1]
    return call.prepare_array(gx)


def _conv_weight_core(call: Call, x, gy, KH: int, KW: int, sh, sw, ph, pw, dh, dw, groups):
    """dL/dw of y = conv2d(x, w) as a conv2d: the correlation of x with gy.

    x (N, C, H, W), gy (N, OC, OH, OW) -> gw (OC, C/G, KH, KW), where
    gw[o, c, kh, kw] = sum_{n,i,j} gy[n, o, i, j] * x[n, c, i*sh - ph + kh*dh, j*sw - pw + kw*dw].
    Read as a convolution whose batch is C/G, whose channels are (G, N), whose kernel is gy
    (OH x OW taps, dilation sh, sw) and whose stride is the forward dilation (dh, dw); the
    output length KH fixes how much of the input is read, so trailing rows the forward conv
    never reached are not read here either.
    """
    N, C, H, W = x.shape
    OC, OH, OW = gy.shape[1:]
    G = groups
    Cg = C // G
    if N == 0:
        return zeros(call, (OC, Cg, KH, KW))
    xt = rearranged(call, x, lambda a: a.reshape(N, G, Cg, H, W).transpose(2, 1, 0, 3, 4)
                    .reshape(Cg, G * N, H, W))
    gyt = rearranged(call, gy, lambda a: a.transpose(1, 0, 2, 3))  # (OC, N, OH, OW)
    out = call.empty((Cg, OC, KH, KW))
    _run_conv(call, xt, gyt, None, out, dh, dw, ph, pw, sh, sw, G)
    if Cg == 1:
        return rearranged(call, out, lambda a: a.reshape(OC, 1, KH, KW))
    return rearranged(call, out, lambda a: a.transpose(1, 0, 2, 3))


def _weight_core_parts(geo: _shapes.ConvGeometry, x: str, gy: str, w: str):
    """(argument, elements) of what _conv_weight_core allocates for a convolution of
    geometry ``geo``: the rearranged copies of its input ``x`` and output gradient ``gy``,
    the weight gradient ``w`` and its rearranged copy."""
    g = geo
    return (
        (x, g.N * g.C * g.H * g.W),
        (gy, g.N * g.OC * g.OH * g.OW),
        (w, 2 * g.OC * (g.C // g.groups) * g.KH * g.KW),
    )


def _bias_core_size(N: int, OC: int, OH: int, OW: int) -> int:
    """Elements _bias_core allocates for a gradient (N, OC, OH, OW): its rearranged copy, the
    ones, the result."""
    return N * OC * OH * OW + N * OH * OW + OC


def _bias_core(call: Call, gy):
    """dL/db of y = conv(x, w) + b: gy summed over batch and positions, as a conv2d.

    The bias is the weight of a constant input of ones, so gb is the correlation of gy with
    ones: a conv of gy (channels as batch, N as channels) with a (1, N, OH, OW) kernel of ones.
    """
    N, OC, OH, OW = gy.shape
    if gy.size == 0:
        return zeros(call, (OC,))
    gyt = rearranged(call, gy, lambda a: a.transpose(1, 0, 2, 3))  # (OC, N, OH, OW)
    ones = call.prepare_array(np.ones((1, N, OH, OW), call.compute))
    out = call.empty((OC, 1, 1, 1))
    call.kernel("conv2d")(gyt, ones, None, out, 1, 1, 0, 0, 1, 1, 1)
    return rearranged(call, out, lambda a: a.reshape(OC))


# --------------------------------------------------------------------------- convolutions


def _conv_input(op, nd, input_shape, weight, grad_output, stride, padding, dilation, groups,
                backend):
    xs = _shapes.as_shape(input_shape, "input_shape", (nd + 1, nd + 2), op=op)
    call = begin(("conv_transpose2d",), backend, caller=op, weight=weight, grad_output=grad_output)
    g = _shapes.conv_geometry(op, xs, call.shapes["weight"], None, stride, padding, dilation,
                              groups, nd, "input_shape", "weight")
    check_grad_output(op, call.shapes["grad_output"], g.output_shape())
    check_memory(call, op, ("input_shape", _input_core_size(g)))
    w = call.prepare("weight", (g.OC, g.C // g.groups, g.KH, g.KW))
    gy = call.prepare("grad_output", (g.N, g.OC, g.OH, g.OW))
    if g.N == 0 or g.C == 0:
        return call.finish(call.empty((g.N, g.C, g.H, g.W)), xs)
    return call.finish(_conv_input_core(call, gy, w, g), xs)


def _conv_weight(op, nd, input, weight_shape, grad_output, stride, padding, dilation, groups,
                 backend):
    ws = _shapes.as_shape(weight_shape, "weight_shape", (nd + 2,), op=op)
    call = begin(("conv2d",), backend, caller=op, input=input, grad_output=grad_output)
    g = _shapes.conv_geometry(op, call.shapes["input"], ws, None, stride, padding, dilation,
                              groups, nd, "input", "weight_shape")
    check_grad_output(op, call.shapes["grad_output"], g.output_shape())
    check_memory(call, op, *_weight_core_parts(g, "input", "grad_output", "weight_shape"))
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    gy = call.prepare("grad_output", (g.N, g.OC, g.OH, g.OW))
    gw = _conv_weight_core(call, x, gy, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw,
                           g.groups)
    return call.finish(gw, ws)


def _conv_bias(op, nd, grad_output, backend):
    call = begin(("conv2d",), backend, caller=op, grad_output=grad_output)
    s = call.shapes["grad_output"]
    if len(s) not in (nd + 1, nd + 2):
        raise ValueError(
            f"{op}: grad_output must be {nd + 1}-D (unbatched) or {nd + 2}-D (batched), "
            f"got shape {tuple(s)}"
        )
    full = (1,) * (nd + 2 - len(s)) + tuple(s)
    N, OC = full[0], full[1]
    OH, OW = (full[2], full[3]) if nd == 2 else (1, full[2])
    check_memory(call, op, ("grad_output", _bias_core_size(N, OC, OH, OW)))
    gy = call.prepare("grad_output", (N, OC, OH, OW))
    return call.finish(_bias_core(call, gy), (OC,))


def conv2d_input(input_shape: Shape, weight: Any, grad_output: Any, stride: Any = 1,
                 padding: Padding = 0, dilation: Any = 1, groups: int = 1, *,
                 backend: str = "auto"):
    """Gradient of :func:`fastconv.conv2d` with respect to its input (as ``torch.nn.grad``).

    Runs the backend's ``conv_transpose2d``, the adjoint of conv2d.

    Parameters
    ----------
    input_shape : sequence of int, (N, C, H, W) or unbatched (C, H, W)
        The forward input's shape.
    weight : array_like, shape (OC, C/groups, KH, KW)
    grad_output : array_like, shape (N, OC, OH, OW) (or (OC, OH, OW))
        dL/dy, the forward output's shape.
    stride, padding, dilation, groups : as :func:`fastconv.conv2d`'s
        (padding may be 'same' or 'valid').
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape ``input_shape``
        dL/dx.

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.conv2d_input((1, 2, 5, 5), np.ones((3, 2, 3, 3)), np.ones((1, 3, 3, 3)))[0, 0, 0]
    array([3., 6., 9., 6., 3.])
    """
    return _conv_input("conv2d_input", 2, input_shape, weight, grad_output, stride, padding,
                       dilation, groups, backend)


def conv1d_input(input_shape: Shape, weight: Any, grad_output: Any, stride: Any = 1,
                 padding: Padding = 0, dilation: Any = 1, groups: int = 1, *,
                 backend: str = "auto"):
    """Gradient of :func:`fastconv.conv1d` with respect to its input.

    Parameters
    ----------
    input_shape : sequence of int, (N, C, L) or unbatched (C, L)
    weight : array_like, shape (OC, C/groups, K)
    grad_output : array_like, shape (N, OC, OL) (or (OC, OL))
    stride, padding, dilation, groups : as :func:`fastconv.conv1d`'s
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape ``input_shape``

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.conv1d_input((1, 1, 4), np.ones((1, 1, 2)), np.ones((1, 1, 3)))
    array([[[1., 2., 2., 1.]]])
    """
    return _conv_input("conv1d_input", 1, input_shape, weight, grad_output, stride, padding,
                       dilation, groups, backend)


def conv2d_weight(input: Any, weight_shape: Shape, grad_output: Any, stride: Any = 1,
                  padding: Padding = 0, dilation: Any = 1, groups: int = 1, *,
                  backend: str = "auto"):
    """Gradient of :func:`fastconv.conv2d` with respect to its weight (as ``torch.nn.grad``).

    Runs the backend's ``conv2d``: the correlation of the input with grad_output.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W) or unbatched (C, H, W)
    weight_shape : sequence of 4 int, (OC, C/groups, KH, KW)
    grad_output : array_like, shape (N, OC, OH, OW) (or (OC, OH, OW))
    stride, padding, dilation, groups : as :func:`fastconv.conv2d`'s
        (padding may be 'same' or 'valid').
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape ``weight_shape``
        dL/dw.

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.conv2d_weight(np.ones((1, 1, 4, 4)), (1, 1, 3, 3), np.ones((1, 1, 2, 2)))[0, 0]
    array([[4., 4., 4.],
           [4., 4., 4.],
           [4., 4., 4.]])
    """
    return _conv_weight("conv2d_weight", 2, input, weight_shape, grad_output, stride, padding,
                        dilation, groups, backend)


def conv1d_weight(input: Any, weight_shape: Shape, grad_output: Any, stride: Any = 1,
                  padding: Padding = 0, dilation: Any = 1, groups: int = 1, *,
                  backend: str = "auto"):
    """Gradient of :func:`fastconv.conv1d` with respect to its weight.

    Parameters
    ----------
    input : array_like, shape (N, C, L) or unbatched (C, L)
    weight_shape : sequence of 3 int, (OC, C/groups, K)
    grad_output : array_like, shape (N, OC, OL) (or (OC, OL))
    stride, padding, dilation, groups : as :func:`fastconv.conv1d`'s
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape ``weight_shape``

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.conv1d_weight(np.arange(4.).reshape(1, 1, 4), (1, 1, 2), np.ones((1, 1, 3)))
    array([[[3., 6.]]])
    """
    return _conv_weight("conv1d_weight", 1, input, weight_shape, grad_output, stride, padding,
                        dilation, groups, backend)


def conv2d_bias(grad_output: Any, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.conv2d` with respect to its bias.

    Parameters
    ----------
    grad_output : array_like, shape (N, OC, OH, OW) or unbatched (OC, OH, OW)
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape (OC,)
        grad_output summed over the batch and every position.

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.conv2d_bias(np.ones((2, 3, 4, 5)))
    array([40., 40., 40.])
    """
    return _conv_bias("conv2d_bias", 2, grad_output, backend)


def conv1d_bias(grad_output: Any, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.conv1d` with respect to its bias.

    Parameters
    ----------
    grad_output : array_like, shape (N, OC, OL) or unbatched (OC, OL)
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape (OC,)
        grad_output summed over the batch and every position.

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.conv1d_bias(np.ones((2, 3, 4)))
    array([8., 8., 8.])
    """
    return _conv_bias("conv1d_bias", 1, grad_output, backend)


def conv_transpose2d_bias(grad_output: Any, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.conv_transpose2d` with respect to its bias.

    Parameters
    ----------
    grad_output : array_like, shape (N, OC, OH, OW) or unbatched (OC, OH, OW)
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape (OC,)
        grad_output summed over the batch and every position (as :func:`conv2d_bias`).

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.conv_transpose2d_bias(np.ones((1, 2, 3, 3)))
    array([9., 9.])
    """
    return _conv_bias("conv_transpose2d_bias", 2, grad_output, backend)


def conv_transpose1d_bias(grad_output: Any, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.conv_transpose1d` with respect to its bias.

    Parameters
    ----------
    grad_output : array_like, shape (N, OC, OL) or unbatched (OC, OL)
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape (OC,)
        grad_output summed over the batch and every position (as :func:`conv1d_bias`).

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.conv_transpose1d_bias(np.ones((1, 2, 3)))
    array([3., 3.])
    """
    return _conv_bias("conv_transpose1d_bias", 1, grad_output, backend)


# --------------------------------------------------------------------------- transposed conv


def _conv_transpose_input(op, nd, input_shape, weight, grad_output, stride, padding,
                          output_padding, groups, dilation, backend):
    xs = _shapes.as_shape(input_shape, "input_shape", (nd + 1, nd + 2), op=op)
    call = begin(("conv2d",), backend, caller=op, weight=weight, grad_output=grad_output)
    g = _shapes.conv_transpose_geometry(op, xs, call.shapes["weight"], None, stride, padding,
                                        output_padding, groups, dilation, nd,
                                        "input_shape", "weight")
    check_grad_output(op, call.shapes["grad_output"], g.output_shape())
    check_memory(call, op, ("input_shape", g.N * g.C * g.H * g.W))
    w = call.prepare("weight", (g.C, g.OC // g.groups, g.KH, g.KW))
    gy = call.prepare("grad_output", (g.N, g.OC, g.OH, g.OW))
    gx = call.empty((g.N, g.C, g.H, g.W))
    if gx.size:
        # y = conv_transpose2d(x, w) is the adjoint of x = conv2d(y, w): its adjoint is conv2d
        _run_conv(call, gy, w, None, gx, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.groups)
    return call.finish(gx, xs)


def _conv_transpose_weight(op, nd, input, weight_shape, grad_output, stride, padding,
                           output_padding, groups, dilation, backend):
    ws = _shapes.as_shape(weight_shape, "weight_shape", (nd + 2,), op=op)
    call = begin(("conv2d",), backend, caller=op, input=input, grad_output=grad_output)
    g = _shapes.conv_transpose_geometry(op, call.shapes["input"], ws, None, stride, padding,
                                        output_padding, groups, dilation, nd,
                                        "input", "weight_shape")
    check_grad_output(op, call.shapes["grad_output"], g.output_shape())
    check_memory(call, op, *_weight_core_parts(g, "input", "grad_output", "weight_shape"))
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    gy = call.prepare("grad_output", (g.N, g.OC, g.OH, g.OW))
    # the weight gradient of the conv2d that conv_transpose2d is the adjoint of: that conv
    # reads gy (as its input) and produces x's shape (x plays its output gradient)
    gw = _conv_weight_core(call, gy, x, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw,
                           g.groups)
    return call.finish(gw, ws)


def conv_transpose2d_input(input_shape: Shape, weight: Any, grad_output: Any, stride: Any = 1,
                           padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                           dilation: Any = 1, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.conv_transpose2d` with respect to its input.

    Runs the backend's ``conv2d`` (conv_transpose2d is the adjoint of conv2d).

    Parameters
    ----------
    input_shape : sequence of int, (N, C, H, W) or unbatched (C, H, W)
    weight : array_like, shape (C, OC/groups, KH, KW)
    grad_output : array_like, shape (N, OC, OH, OW) (or (OC, OH, OW)), the forward output's
    stride, padding, output_padding, groups, dilation : as :func:`fastconv.conv_transpose2d`'s
        (in the same order).
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape ``input_shape``

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.conv_transpose2d_input((1, 1, 2, 2), np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3)))
    array([[[[4., 4.],
             [4., 4.]]]])
    """
    return _conv_transpose_input("conv_transpose2d_input", 2, input_shape, weight, grad_output,
                                 stride, padding, output_padding, groups, dilation, backend)


def conv_transpose1d_input(input_shape: Shape, weight: Any, grad_output: Any, stride: Any = 1,
                           padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                           dilation: Any = 1, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.conv_transpose1d` with respect to its input.

    Parameters
    ----------
    input_shape : sequence of int, (N, C, L) or unbatched (C, L)
    weight : array_like, shape (C, OC/groups, K)
    grad_output : array_like, shape (N, OC, OL) (or (OC, OL))
    stride, padding, output_padding, groups, dilation : as :func:`fastconv.conv_transpose1d`'s
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape ``input_shape``

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.conv_transpose1d_input((1, 1, 2), np.ones((1, 1, 2)), np.arange(3.).reshape(1, 1, 3))
    array([[[1., 3.]]])
    """
    return _conv_transpose_input("conv_transpose1d_input", 1, input_shape, weight, grad_output,
                                 stride, padding, output_padding, groups, dilation, backend)


def conv_transpose2d_weight(input: Any, weight_shape: Shape, grad_output: Any, stride: Any = 1,
                            padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                            dilation: Any = 1, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.conv_transpose2d` with respect to its weight.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W) or unbatched (C, H, W)
    weight_shape : sequence of 4 int, (C, OC/groups, KH, KW)
    grad_output : array_like, shape (N, OC, OH, OW) (or (OC, OH, OW))
    stride, padding, output_padding, groups, dilation : as :func:`fastconv.conv_transpose2d`'s
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape ``weight_shape``

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.conv_transpose2d_weight(np.ones((1, 1, 2, 2)), (1, 1, 2, 2), np.ones((1, 1, 3, 3)))
    array([[[[4., 4.],
             [4., 4.]]]])
    """
    return _conv_transpose_weight("conv_transpose2d_weight", 2, input, weight_shape,
                                  grad_output, stride, padding, output_padding, groups,
                                  dilation, backend)


def conv_transpose1d_weight(input: Any, weight_shape: Shape, grad_output: Any, stride: Any = 1,
                            padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                            dilation: Any = 1, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.conv_transpose1d` with respect to its weight.

    Parameters
    ----------
    input : array_like, shape (N, C, L) or unbatched (C, L)
    weight_shape : sequence of 3 int, (C, OC/groups, K)
    grad_output : array_like, shape (N, OC, OL) (or (OC, OL))
    stride, padding, output_padding, groups, dilation : as :func:`fastconv.conv_transpose1d`'s
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape ``weight_shape``

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.conv_transpose1d_weight(np.ones((1, 1, 2)), (1, 1, 2), np.arange(3.).reshape(1, 1, 3))
    array([[[1., 3.]]])
    """
    return _conv_transpose_weight("conv_transpose1d_weight", 1, input, weight_shape,
                                  grad_output, stride, padding, output_padding, groups,
                                  dilation, backend)


# --------------------------------------------------------------------------- depthwise


def _depthwise_geometry(op, x_shape, w_shape, xname, wname, stride, padding, dilation):
    """A depthwise convolution's geometry; ``xname``, ``wname``: what the gradient ``op``
    calls its input and weight (or their shapes)."""
    if len(w_shape) != 4 or w_shape[1] != 1:
        raise ValueError(f"{op}: {wname} must be (C*m, 1, KH, KW), got shape {tuple(w_shape)}")
    C = x_shape[-3] if len(x_shape) in (3, 4) else 1
    if C > 0 and w_shape[0] % C:
        raise ValueError(
            f"{op}: {_shapes._dims(wname)}[0] = {w_shape[0]} must be a multiple of the "
            f"{xname}'s channels {C}"
        )
    return _shapes.conv_geometry(op, x_shape, w_shape, None, stride, padding, dilation,
                                 max(C, 1), 2, xname, wname)


def depthwise_conv2d_input(input_shape: Shape, weight: Any, grad_output: Any, stride: Any = 1,
                           padding: Padding = 0, dilation: Any = 1, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.depthwise_conv2d` with respect to its input.

    The same as :func:`conv2d_input` with groups = C.

    Parameters
    ----------
    input_shape : sequence of int, (N, C, H, W) or unbatched (C, H, W)
    weight : array_like, shape (C*m, 1, KH, KW)
    grad_output : array_like, shape (N, C*m, OH, OW) (or (C*m, OH, OW))
    stride, padding, dilation : as :func:`fastconv.depthwise_conv2d`'s
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape ``input_shape``

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.depthwise_conv2d_input((1, 1, 2, 2), np.ones((2, 1, 2, 2)), np.ones((1, 2, 1, 1)))
    array([[[[2., 2.],
             [2., 2.]]]])
    """
    op = "depthwise_conv2d_input"
    xs = _shapes.as_shape(input_shape, "input_shape", (3, 4), op=op)
    call = begin(("conv_transpose2d",), backend, caller=op, weight=weight, grad_output=grad_output)
    g = _depthwise_geometry(op, xs, call.shapes["weight"], "input_shape", "weight", stride,
                            padding, dilation)
    check_grad_output(op, call.shapes["grad_output"], g.output_shape())
    check_memory(call, op, ("input_shape", _input_core_size(g)))
    w = call.prepare("weight", (g.OC, 1, g.KH, g.KW))
    gy = call.prepare("grad_output", (g.N, g.OC, g.OH, g.OW))
    if g.N == 0:
        return call.finish(call.empty((g.N, g.C, g.H, g.W)), xs)
    return call.finish(_conv_input_core(call, gy, w, g), xs)


def depthwise_conv2d_weight(input: Any, weight_shape: Shape, grad_output: Any, stride: Any = 1,
                            padding: Padding = 0, dilation: Any = 1, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.depthwise_conv2d` with respect to its weight.

    The same as :func:`conv2d_weight` with groups = C.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W) or unbatched (C, H, W)
    weight_shape : sequence of 4 int, (C*m, 1, KH, KW)
    grad_output : array_like, shape (N, C*m, OH, OW) (or (C*m, OH, OW))
    stride, padding, dilation : as :func:`fastconv.depthwise_conv2d`'s
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape ``weight_shape``

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> x = np.arange(4.).reshape(1, 1, 2, 2)
    >>> G.depthwise_conv2d_weight(x, (1, 1, 2, 2), np.ones((1, 1, 1, 1)))  # the input itself
    array([[[[0., 1.],
             [2., 3.]]]])
    """
    op = "depthwise_conv2d_weight"
    ws = _shapes.as_shape(weight_shape, "weight_shape", (4,), op=op)
    call = begin(("conv2d",), backend, caller=op, input=input, grad_output=grad_output)
    g = _depthwise_geometry(op, call.shapes["input"], ws, "input", "weight_shape", stride,
                            padding, dilation)
    check_grad_output(op, call.shapes["grad_output"], g.output_shape())
    check_memory(call, op, *_weight_core_parts(g, "input", "grad_output", "weight_shape"))
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    gy = call.prepare("grad_output", (g.N, g.OC, g.OH, g.OW))
    gw = _conv_weight_core(call, x, gy, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw,
                           g.groups)
    return call.finish(gw, ws)


# --------------------------------------------------------------------------- separable


class _Separable:
    """Validated geometry and prepared arrays of one separable_conv2d backward call."""

    def __init__(self, op, kernels, backend, x_shape_arg, arrays: Dict[str, Any],
                 dw_shape_arg, pw_shape_arg, stride, padding, dilation):
        self.call = call = begin(kernels, backend, caller=op, **arrays)
        shapes = call.shapes
        xs = shapes["input"] if x_shape_arg is None else x_shape_arg
        dws = shapes["depthwise_weight"] if dw_shape_arg is None else dw_shape_arg
        pws = shapes["pointwise_weight"] if pw_shape_arg is None else pw_shape_arg
        dwname = "depthwise_weight" if dw_shape_arg is None else "depthwise_weight_shape"
        pwname = "pointwise_weight" if pw_shape_arg is None else "pointwise_weight_shape"
        xname = "input" if x_shape_arg is None else "input_shape"
        g = _depthwise_geometry(op, xs, dws, xname, dwname, stride, padding, dilation)
        if len(pws) != 4 or pws[1] != g.OC or tuple(pws[2:]) != (1, 1) or pws[0] == 0:
            raise ValueError(f"{op}: {pwname} must be (OC, {g.OC}, 1, 1), got shape {tuple(pws)}")
        _shapes.check_bias(op, shapes.get("depthwise_bias"), g.OC, "depthwise_bias")
        self.g, self.OC, self.xs, self.dws, self.pws = g, pws[0], tuple(xs), tuple(dws), tuple(pws)
        out = ((g.N,) if g.batched else ()) + (self.OC, g.OH, g.OW)
        check_grad_output(op, shapes["grad_output"], out)
        # the pointwise (1x1) step, whose input is the depthwise output ("mid")
        self.one = _shapes.conv_geometry(op, (g.N, g.OC, g.OH, g.OW), self.pws, None,
                                         1, 0, 1, 1, 2)
        #: elements of mid (and of its gradient), and the argument that sets its size, as
        #: for the forward depthwise step
        self.mid_size = g.N * g.OC * g.OH * g.OW
        names = {"weight": dwname, "input": "input" if x_shape_arg is None else "input_shape"}
        self.mid_name = names.get(g.culprit, g.culprit)

    @functools.cached_property
    def gy(self):
        """grad_output as the kernels take it (prepared on first use, after the checks)."""
        g = self.g
        return self.call.prepare("grad_output", (g.N, self.OC, g.OH, g.OW))

    def grad_mid(self, wp):
        """dL/d(depthwise output): the pointwise (1x1) conv's input gradient."""
        g = self.g
        if g.N == 0:
            return zeros(self.call, (g.N, g.OC, g.OH, g.OW))
        return _conv_input_core(self.call, self.gy, wp, self.one)

    def mid(self, x, wd, bd):
        """The depthwise step's output, recomputed (the pointwise weight's input)."""
        g, call = self.g, self.call
        mid = call.empty((g.N, g.OC, g.OH, g.OW))
        if mid.size:
            _run_conv(call, x, wd, bd, mid, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.C)
        return mid


def separable_conv2d_input(input_shape: Shape, depthwise_weight: Any, pointwise_weight: Any,
                           grad_output: Any, stride: Any = 1, padding: Padding = 0,
                           dilation: Any = 1, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.separable_conv2d` with respect to its input.

    Runs the backend's ``conv_transpose2d`` twice: pointwise, then depthwise.

    Parameters
    ----------
    input_shape : sequence of int, (N, C, H, W) or unbatched (C, H, W)
    depthwise_weight : array_like, shape (C*m, 1, KH, KW)
    pointwise_weight : array_like, shape (OC, C*m, 1, 1)
    grad_output : array_like, shape (N, OC, OH, OW) (or (OC, OH, OW))
    stride, padding, dilation : of the depthwise step, as :func:`fastconv.separable_conv2d`'s
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape ``input_shape``

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.separable_conv2d_input((1, 2, 3, 3), np.ones((2, 1, 3, 3)), np.ones((4, 2, 1, 1)),
    ...                          np.ones((1, 4, 1, 1)))[0, 0, 0]
    array([4., 4., 4.])
    """
    op = "separable_conv2d_input"
    xs = _shapes.as_shape(input_shape, "input_shape", (3, 4), op=op)
    s = _Separable(op, ("conv_transpose2d",), backend, xs,
                   dict(depthwise_weight=depthwise_weight, pointwise_weight=pointwise_weight,
                        grad_output=grad_output), None, None, stride, padding, dilation)
    g, call = s.g, s.call
    check_memory(call, op, (s.mid_name, s.mid_size), ("input_shape", _input_core_size(g)))
    wd = call.prepare("depthwise_weight", (g.OC, 1, g.KH, g.KW))
    wp = call.prepare("pointwise_weight")
    if g.N == 0:
        return call.finish(call.empty((g.N, g.C, g.H, g.W)), xs)
    return call.finish(_conv_input_core(call, s.grad_mid(wp), wd, g), xs)


def separable_conv2d_depthwise_weight(input: Any, depthwise_weight_shape: Shape,
                                      pointwise_weight: Any, grad_output: Any, stride: Any = 1,
                                      padding: Padding = 0, dilation: Any = 1, *,
                                      backend: str = "auto"):
    """Gradient of :func:`fastconv.separable_conv2d` with respect to its depthwise weight.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W) or unbatched (C, H, W)
    depthwise_weight_shape : sequence of 4 int, (C*m, 1, KH, KW)
    pointwise_weight : array_like, shape (OC, C*m, 1, 1)
    grad_output : array_like, shape (N, OC, OH, OW) (or (OC, OH, OW))
    stride, padding, dilation : of the depthwise step
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape ``depthwise_weight_shape``

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.separable_conv2d_depthwise_weight(np.ones((1, 2, 3, 3)), (2, 1, 3, 3),
    ...     np.ones((4, 2, 1, 1)), np.ones((1, 4, 1, 1)))[0, 0, 0]
    array([4., 4., 4.])
    """
    op = "separable_conv2d_depthwise_weight"
    dws = _shapes.as_shape(depthwise_weight_shape, "depthwise_weight_shape", (4,), op=op)
    s = _Separable(op, ("conv2d", "conv_transpose2d"), backend, None,
                   dict(input=input, pointwise_weight=pointwise_weight, grad_output=grad_output),
                   dws, None, stride, padding, dilation)
    g, call = s.g, s.call
    check_memory(call, op, (s.mid_name, s.mid_size),
                 *_weight_core_parts(g, "input", s.mid_name, "depthwise_weight_shape"))
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    wp = call.prepare("pointwise_weight")
    gw = _conv_weight_core(call, x, s.grad_mid(wp), g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.dh,
                           g.dw, g.groups)
    return call.finish(gw, dws)


def separable_conv2d_pointwise_weight(input: Any, depthwise_weight: Any,
                                      pointwise_weight_shape: Shape, grad_output: Any,
                                      depthwise_bias: Any = None, stride: Any = 1,
                                      padding: Padding = 0, dilation: Any = 1, *,
                                      backend: str = "auto"):
    """Gradient of :func:`fastconv.separable_conv2d` with respect to its pointwise weight.

    The depthwise output is recomputed (bias included), so the forward's depthwise_bias is
    needed if it had one.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W) or unbatched (C, H, W)
    depthwise_weight : array_like, shape (C*m, 1, KH, KW)
    pointwise_weight_shape : sequence of 4 int, (OC, C*m, 1, 1)
    grad_output : array_like, shape (N, OC, OH, OW) (or (OC, OH, OW))
    depthwise_bias : array_like, shape (C*m,), optional
    stride, padding, dilation : of the depthwise step
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape ``pointwise_weight_shape``

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.separable_conv2d_pointwise_weight(np.ones((1, 2, 3, 3)), np.ones((2, 1, 3, 3)),
    ...     (1, 2, 1, 1), np.ones((1, 1, 1, 1)))
    array([[[[9.]],
    <BLANKLINE>
            [[9.]]]])
    """
    op = "separable_conv2d_pointwise_weight"
    pws = _shapes.as_shape(pointwise_weight_shape, "pointwise_weight_shape", (4,), op=op)
    s = _Separable(op, ("conv2d",), backend, None,
                   dict(input=input, depthwise_weight=depthwise_weight,
                        depthwise_bias=depthwise_bias, grad_output=grad_output),
                   None, pws, stride, padding, dilation)
    g, call = s.g, s.call
    check_memory(call, op, (s.mid_name, s.mid_size),
                 *_weight_core_parts(s.one, s.mid_name, "grad_output", "pointwise_weight_shape"))
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    wd = call.prepare("depthwise_weight", (g.OC, 1, g.KH, g.KW))
    bd = call.prepare("depthwise_bias")
    gw = _conv_weight_core(call, s.mid(x, wd, bd), s.gy, 1, 1, 1, 1, 0, 0, 1, 1, 1)
    return call.finish(gw, pws)


def separable_conv2d_depthwise_bias(pointwise_weight: Any, grad_output: Any, *,
                                    backend: str = "auto"):
    """Gradient of :func:`fastconv.separable_conv2d` with respect to its depthwise bias.

    The depthwise bias reaches the output only through the pointwise convolution, so its
    gradient is the pointwise weight's transpose applied to the pointwise bias gradient.

    Parameters
    ----------
    pointwise_weight : array_like, shape (OC, C*m, 1, 1)
    grad_output : array_like, shape (N, OC, OH, OW) or unbatched (OC, OH, OW)
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape (C*m,)

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.separable_conv2d_depthwise_bias(np.ones((3, 2, 1, 1)), np.ones((1, 3, 2, 2)))
    array([12., 12.])
    """
    op = "separable_conv2d_depthwise_bias"
    call = begin(("conv2d", "conv_transpose2d"), backend, caller=op,
                 pointwise_weight=pointwise_weight, grad_output=grad_output)
    pws, gys = call.shapes["pointwise_weight"], call.shapes["grad_output"]
    if len(pws) != 4 or tuple(pws[2:]) != (1, 1) or 0 in pws:
        raise ValueError(f"{op}: pointwise_weight must be (OC, C*m, 1, 1), got shape {pws}")
    if len(gys) not in (3, 4) or gys[-3] != pws[0]:
        raise ValueError(
            f"{op}: grad_output must be (N, {pws[0]}, OH, OW) or ({pws[0]}, OH, OW), "
            f"got shape {tuple(gys)}"
        )
    full = (1,) * (4 - len(gys)) + tuple(gys)
    check_memory(call, op, ("grad_output", _bias_core_size(*full) + pws[1]))
    gy = call.prepare("grad_output", full)
    wp = call.prepare("pointwise_weight")
    gb = _bias_core(call, gy)  # (OC,): the pointwise bias gradient
    gbt = rearranged(call, gb, lambda a: a.reshape(1, pws[0], 1, 1))
    out = call.empty((1, pws[1], 1, 1))
    call.kernel("conv_transpose2d")(gbt, wp, None, out, 1, 1, 0, 0, 1, 1, 1)
    return call.finish(out, (pws[1],))


def separable_conv2d_pointwise_bias(grad_output: Any, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.separable_conv2d` with respect to its pointwise bias.

    Parameters
    ----------
    grad_output : array_like, shape (N, OC, OH, OW) or unbatched (OC, OH, OW)
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    ndarray, shape (OC,)
        grad_output summed over the batch and every position (as :func:`conv2d_bias`).

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> G.separable_conv2d_pointwise_bias(np.ones((1, 2, 2, 2)))
    array([4., 4.])
    """
    return _conv_bias("separable_conv2d_pointwise_bias", 2, grad_output, backend)


def separable_conv2d_backward(input: Any, depthwise_weight: Any, pointwise_weight: Any,
                              grad_output: Any, depthwise_bias: Any = None, stride: Any = 1,
                              padding: Padding = 0, dilation: Any = 1, *,
                              backend: str = "auto"):
    """All gradients of :func:`fastconv.separable_conv2d` at once, sharing the intermediates.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W) or unbatched (C, H, W)
    depthwise_weight : array_like, shape (C*m, 1, KH, KW)
    pointwise_weight : array_like, shape (OC, C*m, 1, 1)
    grad_output : array_like, shape (N, OC, OH, OW) (or (OC, OH, OW))
    depthwise_bias : array_like, shape (C*m,), optional
        The forward's, if it had one (the depthwise output is recomputed).
    stride, padding, dilation : of the depthwise step
    backend : str, default 'auto'
        'auto' or a backend name; the gradient runs on that backend's kernels.

    Returns
    -------
    tuple of 5 ndarrays
        (grad_input, grad_depthwise_weight, grad_pointwise_weight, grad_depthwise_bias,
        grad_pointwise_bias), shaped as input, depthwise_weight, pointwise_weight, (C*m,)
        and (OC,).

    Examples
    --------
    >>> import numpy as np, fastconv.grad as G
    >>> grads = G.separable_conv2d_backward(np.ones((1, 2, 3, 3)), np.ones((2, 1, 3, 3)),
    ...                                     np.ones((4, 2, 1, 1)), np.ones((1, 4, 1, 1)))
    >>> [a.shape for a in grads]
    [(1, 2, 3, 3), (2, 1, 3, 3), (4, 2, 1, 1), (2,), (4,)]
    """
    op = "separable_conv2d_backward"
    s = _Separable(op, ("conv2d", "conv_transpose2d"), backend, None,
                   dict(input=input, depthwise_weight=depthwise_weight,
                        pointwise_weight=pointwise_weight, depthwise_bias=depthwise_bias,
                        grad_output=grad_output),
                   None, None, stride, padding, dilation)
    g, call = s.g, s.call
    check_memory(
        call, op,
        (s.mid_name, 2 * s.mid_size),  # the gradient of mid, and mid recomputed
        ("input", _input_core_size(g)),
        *_weight_core_parts(g, "input", s.mid_name, "depthwise_weight"),
        *_weight_core_parts(s.one, s.mid_name, "grad_output", "pointwise_weight"),
        (s.mid_name, _bias_core_size(g.N, g.OC, g.OH, g.OW)),
        ("grad_output", _bias_core_size(g.N, s.OC, g.OH, g.OW)),
    )
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    wd = call.prepare("depthwise_weight", (g.OC, 1, g.KH, g.KW))
    bd = call.prepare("depthwise_bias")
    wp = call.prepare("pointwise_weight")
    gmid = s.grad_mid(wp)
    if g.N == 0:
        gx = call.empty((g.N, g.C, g.H, g.W))
    else:
        gx = _conv_input_core(call, gmid, wd, g)
    gwd = _conv_weight_core(call, x, gmid, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw,
                            g.groups)
    gwp = _conv_weight_core(call, s.mid(x, wd, bd), s.gy, 1, 1, 1, 1, 0, 0, 1, 1, 1)
    return (
        call.finish(gx, s.xs),
        call.finish(gwd, s.dws),
        call.finish(gwp, s.pws),
        call.finish(_bias_core(call, gmid), (g.OC,)),
        call.finish(_bias_core(call, s.gy), (s.OC,)),
    )
