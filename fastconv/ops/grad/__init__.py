"""Gradients of fastconv's ops, with torch.nn.grad's names and argument order where it has them.

Every function here is the backward pass of one forward op: given the forward arguments and
``grad_output`` (dL/dy, the shape of the forward output) it returns dL/d(one argument). Each
one validates like the forward op (``fastconv._shapes``), checks ``grad_output`` against the
forward geometry, and runs on the chosen engine's own kernels, so every gradient runs on
every engine that implements the kernels it uses:

- conv input gradients        -> the engine's ``conv_transpose2d`` (the adjoint of conv2d)
- conv weight / bias grads    -> the engine's ``conv2d`` on regrouped arrays (a correlation)
- transposed-conv input grad  -> the engine's ``conv2d``
- transposed-conv weight grad -> the engine's ``conv2d`` (a correlation, roles swapped)
- max / adaptive max pools    -> the forward kernel for the indices, then
                                 ``max_pool2d_backward``
- avg / adaptive avg pools    -> ``avg_pool2d_backward`` / ``adaptive_avg_pool2d_backward``

The formulas and why they hold are in docs/backward.md. Dtypes follow the forward ops
(``fastconv.backends._registry``): float32 and float64 compute natively, the result has the
``numpy.result_type`` of the array arguments.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ... import _shapes
from ...backends._registry import Call, begin, is_device_array

Padding = Union[int, tuple, str]
Shape = Sequence[int]

# --------------------------------------------------------------------------- plumbing


def _begin(kernels: Tuple[str, ...], backend: Any, **arrays: Any) -> Call:
    """A Call on an engine that has every kernel in ``kernels`` (auto: the best such)."""
    return begin(kernels, backend, **arrays)


def _host(a: Any) -> np.ndarray:
    """A kernel array as a NumPy array (a copy for device arrays)."""
    return a.copy_to_host() if is_device_array(a) else np.asarray(a)


def _put(call: Call, a: np.ndarray):
    """A host array as the engine's kernels take it (the engine's ``prepare``)."""
    prep = getattr(call.engine, "prepare", None)
    return prep(a, call.compute) if prep else np.ascontiguousarray(a, dtype=call.compute)


def _rearranged(call: Call, a: Any, fn: Callable[[np.ndarray], np.ndarray]):
    """``fn`` (a transpose / reshape) applied to a kernel array, made contiguous again.

    NumPy engines get a contiguous copy; device arrays make the trip through the host."""
    return _put(call, fn(_host(a)))


def _zeros(call: Call, shape: Tuple[int, ...]):
    return _put(call, np.zeros(shape, call.compute))


def _shape_arg(value: Any, name: str, ndims: Tuple[int, ...]) -> Tuple[int, ...]:
    """Validate a shape argument (input_shape, weight_shape): a sequence of ints >= 0."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a sequence of ints, got {value!r}")
    shape = tuple(_shapes.as_int(v, name) for v in value)
    if len(shape) not in ndims:
        want = " or ".join(str(n) for n in ndims)
        raise ValueError(f"{name} must have {want} entries, got {shape}")
    return shape


def _check_grad_output(op: str, got: Tuple[int, ...], want: Tuple[int, ...]) -> None:
    if tuple(got) != tuple(want):
        raise ValueError(
            f"{op}: grad_output must have the forward output's shape {tuple(want)}, "
            f"got {tuple(got)}"
        )


def _run_conv(call: Call, x, w, y, sh, sw, ph, pw, dh, dw, groups) -> None:
    """The engine's conv2d (its depthwise kernel when the grouping is depthwise)."""
    if groups == x.shape[1] and w.shape[1] == 1 and call.has("depthwise_conv2d"):
        call.kernel("depthwise_conv2d")(x, w, None, y, sh, sw, ph, pw, dh, dw)
    else:
        call.kernel("conv2d")(x, w, None, y, sh, sw, ph, pw, dh, dw, groups)


# --------------------------------------------------------------------------- conv cores
# The cores work on kernel arrays (4-D, the engine's type, compute dtype) and return one.


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


def _conv_input_core(call: Call, gy, w, H: int, W: int, geo: _shapes.ConvGeometry):
    """dL/dx of y = conv2d(x, w): the adjoint of conv2d is conv_transpose2d.

    gy (N, OC, OH, OW), w (OC, C/G, KH, KW) -> gx (N, C, H, W)."""
    N, OC, OH, OW = gy.shape
    C = w.shape[1] * geo.groups
    qh, RH, oh = _transpose_axis(H, OH, geo.KH, geo.sh, geo.ph, geo.dh)
    qw, RW, ow = _transpose_axis(W, OW, geo.KW, geo.sw, geo.pw, geo.dw)
    buf = call.empty((N, C, RH, RW))
    if buf.size:
        call.kernel("conv_transpose2d")(gy, w, None, buf, geo.sh, geo.sw, qh, qw, geo.dh, geo.dw,
                                        geo.groups)
    if (RH, RW, oh, ow) == (H, W, 0, 0):
        return buf
    # the input rows / columns the conv never read get zero gradient
    src = _host(buf)
    gx = np.zeros((N, C, H, W), call.compute)
    h0, h1 = max(oh, 0), min(oh + H, RH)
    w0, w1 = max(ow, 0), min(ow + W, RW)
    if h1 > h0 and w1 > w0:
        gx[:, :, h0 - oh : h1 - oh, w0 - ow : w1 - ow] = src[:, :, h0:h1, w0:w1]
    return _put(call, gx)


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
        return _zeros(call, (OC, Cg, KH, KW))
    xt = _rearranged(call, x, lambda a: a.reshape(N, G, Cg, H, W).transpose(2, 1, 0, 3, 4)
                     .reshape(Cg, G * N, H, W))
    gyt = _rearranged(call, gy, lambda a: a.transpose(1, 0, 2, 3))  # (OC, N, OH, OW)
    out = call.empty((Cg, OC, KH, KW))
    _run_conv(call, xt, gyt, out, dh, dw, ph, pw, sh, sw, G)
    if Cg == 1:
        return _rearranged(call, out, lambda a: a.reshape(OC, 1, KH, KW))
    return _rearranged(call, out, lambda a: a.transpose(1, 0, 2, 3))


def _bias_core(call: Call, gy):
    """dL/db of y = conv(x, w) + b: gy summed over batch and positions, as a conv2d.

    The bias is the weight of a constant input of ones, so gb is the correlation of gy with
    ones: a conv of gy (channels as batch, N as channels) with a (1, N, OH, OW) kernel of ones.
    """
    N, OC, OH, OW = gy.shape
    if gy.size == 0:
        return _zeros(call, (OC,))
    gyt = _rearranged(call, gy, lambda a: a.transpose(1, 0, 2, 3))  # (OC, N, OH, OW)
    ones = _put(call, np.ones((1, N, OH, OW), call.compute))
    out = call.empty((OC, 1, 1, 1))
    call.kernel("conv2d")(gyt, ones, None, out, 1, 1, 0, 0, 1, 1, 1)
    return _rearranged(call, out, lambda a: a.reshape(OC))


# --------------------------------------------------------------------------- convolutions


def _conv_input(op, nd, input_shape, weight, grad_output, stride, padding, dilation, groups,
                backend):
    xs = _shape_arg(input_shape, "input_shape", (nd + 1, nd + 2))
    call = _begin(("conv_transpose2d",), backend, weight=weight, grad_output=grad_output)
    g = _shapes.conv_geometry(op, xs, call.shapes["weight"], None, stride, padding, dilation,
                              groups, nd)
    _check_grad_output(op, call.shapes["grad_output"], g.output_shape())
    w = call.prepare("weight", (g.OC, g.C // g.groups, g.KH, g.KW))
    gy = call.prepare("grad_output", (g.N, g.OC, g.OH, g.OW))
    if g.N == 0 or g.C == 0:
        return call.finish(call.empty((g.N, g.C, g.H, g.W)), xs)
    return call.finish(_conv_input_core(call, gy, w, g.H, g.W, g), xs)


def _conv_weight(op, nd, input, weight_shape, grad_output, stride, padding, dilation, groups,
                 backend):
    ws = _shape_arg(weight_shape, "weight_shape", (nd + 2,))
    call = _begin(("conv2d",), backend, input=input, grad_output=grad_output)
    g = _shapes.conv_geometry(op, call.shapes["input"], ws, None, stride, padding, dilation,
                              groups, nd)
    _check_grad_output(op, call.shapes["grad_output"], g.output_shape())
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    gy = call.prepare("grad_output", (g.N, g.OC, g.OH, g.OW))
    gw = _conv_weight_core(call, x, gy, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw,
                           g.groups)
    return call.finish(gw, ws)


def _conv_bias(op, nd, grad_output, backend):
    call = _begin(("conv2d",), backend, grad_output=grad_output)
    s = call.shapes["grad_output"]
    if len(s) not in (nd + 1, nd + 2):
        raise ValueError(
            f"{op}: grad_output must be {nd + 1}-D (unbatched) or {nd + 2}-D (batched), "
            f"got shape {tuple(s)}"
        )
    full = (1,) * (nd + 2 - len(s)) + tuple(s)
    N, OC = full[0], full[1]
    OH, OW = (full[2], full[3]) if nd == 2 else (1, full[2])
    gy = call.prepare("grad_output", (N, OC, OH, OW))
    return call.finish(_bias_core(call, gy), (OC,))


def conv2d_input(input_shape: Shape, weight: Any, grad_output: Any, stride: Any = 1,
                 padding: Padding = 0, dilation: Any = 1, groups: int = 1, *,
                 backend: str = "auto"):
    """Gradient of :func:`fastconv.conv2d` with respect to its input.

    Parameters
    ----------
    input_shape : sequence of ints, (N, C, H, W) or unbatched (C, H, W)
    weight : array_like, (OC, C/groups, KH, KW)
    grad_output : array_like, (N, OC, OH, OW) (or (OC, OH, OW)), the forward output's shape
    stride, padding, dilation, groups : as :func:`fastconv.conv2d` (padding may be 'same'
        or 'valid')
    backend : 'auto' or an engine name; runs that engine's ``conv_transpose2d`` kernel

    Returns
    -------
    ndarray of shape ``input_shape``: dL/dx given dL/dy = grad_output.

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

    input_shape (N, C, L) or (C, L); weight (OC, C/groups, K); grad_output (N, OC, OL).
    Other arguments as :func:`conv2d_input`.

    >>> import numpy as np, fastconv.grad as G
    >>> G.conv1d_input((1, 1, 4), np.ones((1, 1, 2)), np.ones((1, 1, 3)))
    array([[[1., 2., 2., 1.]]])
    """
    return _conv_input("conv1d_input", 1, input_shape, weight, grad_output, stride, padding,
                       dilation, groups, backend)


def conv2d_weight(input: Any, weight_shape: Shape, grad_output: Any, stride: Any = 1,
                  padding: Padding = 0, dilation: Any = 1, groups: int = 1, *,
                  backend: str = "auto"):
    """Gradient of :func:`fastconv.conv2d` with respect to its weight.

    Parameters
    ----------
    input : array_like, (N, C, H, W) or (C, H, W)
    weight_shape : sequence of 4 ints, (OC, C/groups, KH, KW)
    grad_output : array_like, (N, OC, OH, OW) (or (OC, OH, OW))
    stride, padding, dilation, groups : as :func:`fastconv.conv2d`
    backend : 'auto' or an engine name; runs that engine's ``conv2d`` kernel

    Returns
    -------
    ndarray of shape ``weight_shape``.

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

    input (N, C, L) or (C, L); weight_shape (OC, C/groups, K); grad_output (N, OC, OL).

    >>> import numpy as np, fastconv.grad as G
    >>> G.conv1d_weight(np.arange(4.).reshape(1, 1, 4), (1, 1, 2), np.ones((1, 1, 3)))
    array([[[3., 6.]]])
    """
    return _conv_weight("conv1d_weight", 1, input, weight_shape, grad_output, stride, padding,
                        dilation, groups, backend)


def conv2d_bias(grad_output: Any, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.conv2d` (or conv_transpose2d) with respect to its bias.

    grad_output (N, OC, OH, OW) or (OC, OH, OW) -> (OC,): grad_output summed over the batch
    and all positions.

    >>> import numpy as np, fastconv.grad as G
    >>> G.conv2d_bias(np.ones((2, 3, 4, 5)))
    array([40., 40., 40.])
    """
    return _conv_bias("conv2d_bias", 2, grad_output, backend)


def conv1d_bias(grad_output: Any, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.conv1d` (or conv_transpose1d) with respect to its bias.

    grad_output (N, OC, OL) or (OC, OL) -> (OC,).

    >>> import numpy as np, fastconv.grad as G
    >>> G.conv1d_bias(np.ones((2, 3, 4)))
    array([8., 8., 8.])
    """
    return _conv_bias("conv1d_bias", 1, grad_output, backend)


conv_transpose2d_bias = conv2d_bias
conv_transpose1d_bias = conv1d_bias


# --------------------------------------------------------------------------- transposed conv


def _conv_transpose_input(op, nd, input_shape, weight, grad_output, stride, padding,
                          output_padding, groups, dilation, backend):
    xs = _shape_arg(input_shape, "input_shape", (nd + 1, nd + 2))
    call = _begin(("conv2d",), backend, weight=weight, grad_output=grad_output)
    g = _shapes.conv_transpose_geometry(op, xs, call.shapes["weight"], None, stride, padding,
                                        output_padding, groups, dilation, nd)
    _check_grad_output(op, call.shapes["grad_output"], g.output_shape())
    w = call.prepare("weight", (g.C, g.OC // g.groups, g.KH, g.KW))
    gy = call.prepare("grad_output", (g.N, g.OC, g.OH, g.OW))
    gx = call.empty((g.N, g.C, g.H, g.W))
    if gx.size:
        # y = conv_transpose2d(x, w) is the adjoint of x = conv2d(y, w): its adjoint is conv2d
        _run_conv(call, gy, w, gx, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.groups)
    return call.finish(gx, xs)


def _conv_transpose_weight(op, nd, input, weight_shape, grad_output, stride, padding,
                           output_padding, groups, dilation, backend):
    ws = _shape_arg(weight_shape, "weight_shape", (nd + 2,))
    call = _begin(("conv2d",), backend, input=input, grad_output=grad_output)
    g = _shapes.conv_transpose_geometry(op, call.shapes["input"], ws, None, stride, padding,
                                        output_padding, groups, dilation, nd)
    _check_grad_output(op, call.shapes["grad_output"], g.output_shape())
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

    Parameters
    ----------
    input_shape : sequence of ints, (N, C, H, W) or (C, H, W)
    weight : array_like, (C, OC/groups, KH, KW)
    grad_output : array_like, (N, OC, OH, OW), the forward output's shape
    stride, padding, output_padding, groups, dilation : as :func:`fastconv.conv_transpose2d`
        (same order)
    backend : 'auto' or an engine name; runs that engine's ``conv2d`` kernel

    Returns
    -------
    ndarray of shape ``input_shape``.

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

    input_shape (N, C, L) or (C, L); weight (C, OC/groups, K); grad_output (N, OC, OL).

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

    input (N, C, H, W) or (C, H, W); weight_shape (C, OC/groups, KH, KW); grad_output
    (N, OC, OH, OW). Other arguments as :func:`conv_transpose2d_input`.

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

    input (N, C, L) or (C, L); weight_shape (C, OC/groups, K); grad_output (N, OC, OL).

    >>> import numpy as np, fastconv.grad as G
    >>> G.conv_transpose1d_weight(np.ones((1, 1, 2)), (1, 1, 2), np.arange(3.).reshape(1, 1, 3))
    array([[[1., 3.]]])
    """
    return _conv_transpose_weight("conv_transpose1d_weight", 1, input, weight_shape,
                                  grad_output, stride, padding, output_padding, groups,
                                  dilation, backend)


# --------------------------------------------------------------------------- depthwise


def _depthwise_geometry(op, x_shape, w_shape, wname, stride, padding, dilation):
    if len(w_shape) != 4 or w_shape[1] != 1:
        raise ValueError(f"{op}: {wname} must be (C*m, 1, KH, KW), got shape {tuple(w_shape)}")
    C = x_shape[-3] if len(x_shape) in (3, 4) else 1
    if C > 0 and w_shape[0] % C:
        raise ValueError(
            f"{op}: {wname}.shape[0] = {w_shape[0]} must be a multiple of the input's "
            f"channels {C}"
        )
    return _shapes.conv_geometry(op, x_shape, w_shape, None, stride, padding, dilation,
                                 max(C, 1), 2)


def depthwise_conv2d_input(input_shape: Shape, weight: Any, grad_output: Any, stride: Any = 1,
                           padding: Padding = 0, dilation: Any = 1, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.depthwise_conv2d` with respect to its input.

    input_shape (N, C, H, W) or (C, H, W); weight (C*m, 1, KH, KW); grad_output
    (N, C*m, OH, OW). The same as :func:`conv2d_input` with groups = C.

    >>> import numpy as np, fastconv.grad as G
    >>> G.depthwise_conv2d_input((1, 2, 3, 3), np.ones((2, 1, 3, 3)), np.ones((1, 2, 1, 1))).shape
    (1, 2, 3, 3)
    """
    op = "depthwise_conv2d_input"
    xs = _shape_arg(input_shape, "input_shape", (3, 4))
    call = _begin(("conv_transpose2d",), backend, weight=weight, grad_output=grad_output)
    g = _depthwise_geometry(op, xs, call.shapes["weight"], "weight", stride, padding, dilation)
    _check_grad_output(op, call.shapes["grad_output"], g.output_shape())
    w = call.prepare("weight", (g.OC, 1, g.KH, g.KW))
    gy = call.prepare("grad_output", (g.N, g.OC, g.OH, g.OW))
    if g.N == 0:
        return call.finish(call.empty((g.N, g.C, g.H, g.W)), xs)
    return call.finish(_conv_input_core(call, gy, w, g.H, g.W, g), xs)


def depthwise_conv2d_weight(input: Any, weight_shape: Shape, grad_output: Any, stride: Any = 1,
                            padding: Padding = 0, dilation: Any = 1, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.depthwise_conv2d` with respect to its weight.

    input (N, C, H, W) or (C, H, W); weight_shape (C*m, 1, KH, KW); grad_output
    (N, C*m, OH, OW). The same as :func:`conv2d_weight` with groups = C.

    >>> import numpy as np, fastconv.grad as G
    >>> G.depthwise_conv2d_weight(np.ones((1, 2, 3, 3)), (2, 1, 3, 3), np.ones((1, 2, 1, 1))).shape
    (2, 1, 3, 3)
    """
    op = "depthwise_conv2d_weight"
    ws = _shape_arg(weight_shape, "weight_shape", (4,))
    call = _begin(("conv2d",), backend, input=input, grad_output=grad_output)
    g = _depthwise_geometry(op, call.shapes["input"], ws, "weight_shape", stride, padding,
                            dilation)
    _check_grad_output(op, call.shapes["grad_output"], g.output_shape())
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
        self.call = call = _begin(kernels, backend, **arrays)
        shapes = call.shapes
        xs = shapes["input"] if x_shape_arg is None else x_shape_arg
        dws = shapes["depthwise_weight"] if dw_shape_arg is None else dw_shape_arg
        pws = shapes["pointwise_weight"] if pw_shape_arg is None else pw_shape_arg
        dwname = "depthwise_weight" if dw_shape_arg is None else "depthwise_weight_shape"
        pwname = "pointwise_weight" if pw_shape_arg is None else "pointwise_weight_shape"
        g = _depthwise_geometry(op, xs, dws, dwname, stride, padding, dilation)
        if len(pws) != 4 or pws[1] != g.OC or tuple(pws[2:]) != (1, 1) or pws[0] == 0:
            raise ValueError(f"{op}: {pwname} must be (OC, {g.OC}, 1, 1), got shape {tuple(pws)}")
        _shapes.check_bias(op, shapes.get("depthwise_bias"), g.OC, "depthwise_bias")
        self.g, self.OC, self.xs, self.dws, self.pws = g, pws[0], tuple(xs), tuple(dws), tuple(pws)
        out = ((g.N,) if g.batched else ()) + (self.OC, g.OH, g.OW)
        _check_grad_output(op, shapes["grad_output"], out)
        self.gy = call.prepare("grad_output", (g.N, self.OC, g.OH, g.OW))

    def grad_mid(self, wp):
        """dL/d(depthwise output): the pointwise (1x1) conv's input gradient."""
        g = self.g
        one = _shapes.conv_geometry("pointwise", (g.N, g.OC, g.OH, g.OW), wp.shape, None, 1, 0,
                                    1, 1, 2)
        if g.N == 0:
            return _zeros(self.call, (g.N, g.OC, g.OH, g.OW))
        return _conv_input_core(self.call, self.gy, wp, g.OH, g.OW, one)

    def mid(self, x, wd, bd):
        """The depthwise step's output, recomputed (the pointwise weight's input)."""
        g, call = self.g, self.call
        mid = call.empty((g.N, g.OC, g.OH, g.OW))
        if mid.size:
            if call.has("depthwise_conv2d"):
                call.kernel("depthwise_conv2d")(x, wd, bd, mid, g.sh, g.sw, g.ph, g.pw, g.dh,
                                                g.dw)
            else:
                call.kernel("conv2d")(x, wd, bd, mid, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.C)
        return mid


def separable_conv2d_input(input_shape: Shape, depthwise_weight: Any, pointwise_weight: Any,
                           grad_output: Any, stride: Any = 1, padding: Padding = 0,
                           dilation: Any = 1, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.separable_conv2d` with respect to its input.

    input_shape (N, C, H, W) or (C, H, W); depthwise_weight (C*m, 1, KH, KW);
    pointwise_weight (OC, C*m, 1, 1); grad_output (N, OC, OH, OW). Runs the engine's
    ``conv_transpose2d`` twice (pointwise, then depthwise).

    >>> import numpy as np, fastconv.grad as G
    >>> G.separable_conv2d_input((1, 2, 3, 3), np.ones((2, 1, 3, 3)), np.ones((4, 2, 1, 1)),
    ...                          np.ones((1, 4, 1, 1)))[0, 0, 0]
    array([4., 4., 4.])
    """
    op = "separable_conv2d_input"
    xs = _shape_arg(input_shape, "input_shape", (3, 4))
    s = _Separable(op, ("conv_transpose2d",), backend, xs,
                   dict(depthwise_weight=depthwise_weight, pointwise_weight=pointwise_weight,
                        grad_output=grad_output), None, None, stride, padding, dilation)
    g, call = s.g, s.call
    wd = call.prepare("depthwise_weight", (g.OC, 1, g.KH, g.KW))
    wp = call.prepare("pointwise_weight")
    if g.N == 0:
        return call.finish(call.empty((g.N, g.C, g.H, g.W)), xs)
    return call.finish(_conv_input_core(call, s.grad_mid(wp), wd, g.H, g.W, g), xs)


def separable_conv2d_depthwise_weight(input: Any, depthwise_weight_shape: Shape,
                                      pointwise_weight: Any, grad_output: Any, stride: Any = 1,
                                      padding: Padding = 0, dilation: Any = 1, *,
                                      backend: str = "auto"):
    """Gradient of :func:`fastconv.separable_conv2d` with respect to its depthwise weight.

    input (N, C, H, W) or (C, H, W); depthwise_weight_shape (C*m, 1, KH, KW);
    pointwise_weight (OC, C*m, 1, 1); grad_output (N, OC, OH, OW).

    >>> import numpy as np, fastconv.grad as G
    >>> G.separable_conv2d_depthwise_weight(np.ones((1, 2, 3, 3)), (2, 1, 3, 3),
    ...     np.ones((4, 2, 1, 1)), np.ones((1, 4, 1, 1)))[0, 0, 0]
    array([4., 4., 4.])
    """
    op = "separable_conv2d_depthwise_weight"
    dws = _shape_arg(depthwise_weight_shape, "depthwise_weight_shape", (4,))
    s = _Separable(op, ("conv2d", "conv_transpose2d"), backend, None,
                   dict(input=input, pointwise_weight=pointwise_weight, grad_output=grad_output),
                   dws, None, stride, padding, dilation)
    g, call = s.g, s.call
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

    input (N, C, H, W); depthwise_weight (C*m, 1, KH, KW); pointwise_weight_shape
    (OC, C*m, 1, 1); grad_output (N, OC, OH, OW); depthwise_bias (C*m,) if the forward had
    one (the depthwise output is recomputed, bias included).

    >>> import numpy as np, fastconv.grad as G
    >>> G.separable_conv2d_pointwise_weight(np.ones((1, 2, 3, 3)), np.ones((2, 1, 3, 3)),
    ...     (1, 2, 1, 1), np.ones((1, 1, 1, 1)))
    array([[[[9.]],
    <BLANKLINE>
            [[9.]]]])
    """
    op = "separable_conv2d_pointwise_weight"
    pws = _shape_arg(pointwise_weight_shape, "pointwise_weight_shape", (4,))
    s = _Separable(op, ("conv2d",), backend, None,
                   dict(input=input, depthwise_weight=depthwise_weight,
                        depthwise_bias=depthwise_bias, grad_output=grad_output),
                   None, pws, stride, padding, dilation)
    g, call = s.g, s.call
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    wd = call.prepare("depthwise_weight", (g.OC, 1, g.KH, g.KW))
    bd = call.prepare("depthwise_bias")
    gw = _conv_weight_core(call, s.mid(x, wd, bd), s.gy, 1, 1, 1, 1, 0, 0, 1, 1, 1)
    return call.finish(gw, pws)


def separable_conv2d_depthwise_bias(pointwise_weight: Any, grad_output: Any, *,
                                    backend: str = "auto"):
    """Gradient of :func:`fastconv.separable_conv2d` with respect to its depthwise bias.

    pointwise_weight (OC, C*m, 1, 1); grad_output (N, OC, OH, OW) or (OC, OH, OW) -> (C*m,):
    the depthwise bias reaches the output only through the pointwise conv, so its gradient
    is the pointwise weight's transpose applied to the pointwise bias gradient.

    >>> import numpy as np, fastconv.grad as G
    >>> G.separable_conv2d_depthwise_bias(np.ones((3, 2, 1, 1)), np.ones((1, 3, 2, 2)))
    array([12., 12.])
    """
    op = "separable_conv2d_depthwise_bias"
    call = _begin(("conv2d", "conv_transpose2d"), backend, pointwise_weight=pointwise_weight,
                  grad_output=grad_output)
    pws, gys = call.shapes["pointwise_weight"], call.shapes["grad_output"]
    if len(pws) != 4 or tuple(pws[2:]) != (1, 1) or 0 in pws:
        raise ValueError(f"{op}: pointwise_weight must be (OC, C*m, 1, 1), got shape {pws}")
    if len(gys) not in (3, 4) or gys[-3] != pws[0]:
        raise ValueError(
            f"{op}: grad_output must be (N, {pws[0]}, OH, OW) or ({pws[0]}, OH, OW), "
            f"got shape {tuple(gys)}"
        )
    full = (1,) * (4 - len(gys)) + tuple(gys)
    gy = call.prepare("grad_output", full)
    wp = call.prepare("pointwise_weight")
    gb = _bias_core(call, gy)  # (OC,): the pointwise bias gradient
    gbt = _rearranged(call, gb, lambda a: a.reshape(1, pws[0], 1, 1))
    out = call.empty((1, pws[1], 1, 1))
    call.kernel("conv_transpose2d")(gbt, wp, None, out, 1, 1, 0, 0, 1, 1, 1)
    return call.finish(out, (pws[1],))


def separable_conv2d_pointwise_bias(grad_output: Any, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.separable_conv2d` with respect to its pointwise bias.

    The same as :func:`conv2d_bias`: grad_output (N, OC, OH, OW) summed to (OC,).

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

    Arguments as the forward op (plus grad_output (N, OC, OH, OW)). Returns the tuple
    (grad_input, grad_depthwise_weight, grad_pointwise_weight, grad_depthwise_bias,
    grad_pointwise_bias), shaped as input, depthwise_weight, pointwise_weight, (C*m,), (OC,).

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
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    wd = call.prepare("depthwise_weight", (g.OC, 1, g.KH, g.KW))
    bd = call.prepare("depthwise_bias")
    wp = call.prepare("pointwise_weight")
    gmid = s.grad_mid(wp)
    if g.N == 0:
        gx = call.empty((g.N, g.C, g.H, g.W))
    else:
        gx = _conv_input_core(call, gmid, wd, g.H, g.W, g)
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


# --------------------------------------------------------------------------- pooling


def _max_pool_input(op, nd, input, grad_output, kernel_size, stride, padding, dilation,
                    ceil_mode, backend):
    call = _begin(("max_pool2d", "max_pool2d_backward"), backend, input=input,
                  grad_output=grad_output)
    g = _shapes.pool_geometry(op, call.shapes["input"], kernel_size, stride, padding, dilation,
                              ceil_mode, nd)
    _check_grad_output(op, call.shapes["grad_output"], g.output_shape())
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

    Parameters
    ----------
    input : array_like, (N, C, H, W) or (C, H, W), the forward input
    grad_output : array_like, (N, C, OH, OW), the forward output's shape
    kernel_size, stride, padding, dilation, ceil_mode : as :func:`fastconv.max_pool2d`
    backend : 'auto' or an engine name; runs its ``max_pool2d`` (for the indices of the
        maxima) and ``max_pool2d_backward`` kernels

    Returns
    -------
    ndarray shaped as input: each grad_output element added at its window's maximum (the
    first one in scan order on ties, the last NaN if the window has NaN).

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
    """Gradient of :func:`fastconv.max_pool1d` with respect to its input: input (N, C, L).

    >>> import numpy as np, fastconv.grad as G
    >>> G.max_pool1d_input(np.array([[[1., 3., 2., 5.]]]), np.array([[[10., 20.]]]), 2)
    array([[[ 0., 10.,  0., 20.]]])
    """
    return _max_pool_input("max_pool1d_input", 1, input, grad_output, kernel_size, stride,
                           padding, dilation, ceil_mode, backend)


def _avg_pool_input(op, nd, input_shape, grad_output, kernel_size, stride, padding, ceil_mode,
                    count_include_pad, divisor_override, backend):
    xs = _shape_arg(input_shape, "input_shape", (nd + 1, nd + 2))
    cip = _shapes.as_bool(count_include_pad, "count_include_pad")
    div = _shapes.divisor_override(divisor_override)
    call = _begin(("avg_pool2d_backward",), backend, grad_output=grad_output)
    g = _shapes.pool_geometry(op, xs, kernel_size, stride, padding, 1, ceil_mode, nd)
    _check_grad_output(op, call.shapes["grad_output"], g.output_shape())
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
    input_shape : sequence of ints, (N, C, H, W) or (C, H, W)
    grad_output : array_like, (N, C, OH, OW), the forward output's shape
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override : as
        :func:`fastconv.avg_pool2d`
    backend : 'auto' or an engine name; runs its ``avg_pool2d_backward`` kernel

    Returns
    -------
    ndarray of shape ``input_shape``: each grad_output element divided by its window's
    divisor and added over the window's input positions.

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
    """Gradient of :func:`fastconv.avg_pool1d` with respect to its input: (N, C, L).

    >>> import numpy as np, fastconv.grad as G
    >>> G.avg_pool1d_input((1, 1, 4), np.array([[[2., 4.]]]), 2)
    array([[[1., 1., 2., 2.]]])
    """
    return _avg_pool_input("avg_pool1d_input", 1, input_shape, grad_output, kernel_size, stride,
                           padding, ceil_mode, count_include_pad, None, backend)


def _adaptive_geometry(op, nd, x_shape, gy_shape):
    """Adaptive pooling's geometry, the output size read from grad_output's shape."""
    if len(gy_shape) != len(x_shape):
        raise ValueError(
            f"{op}: grad_output must have as many dimensions as the input ({len(x_shape)}), "
            f"got shape {tuple(gy_shape)}"
        )
    g = _shapes.adaptive_geometry(op, x_shape, tuple(gy_shape[-nd:]), nd)
    _check_grad_output(op, gy_shape, g.output_shape())
    return g


def _adaptive_input(op, nd, kernel, input_or_shape, grad_output, backend):
    if kernel == "adaptive_avg_pool2d_backward":
        xs = _shape_arg(input_or_shape, "input_shape", (nd + 1, nd + 2))
        call = _begin((kernel,), backend, grad_output=grad_output)
    else:
        call = _begin(("adaptive_max_pool2d", kernel), backend, input=input_or_shape,
                      grad_output=grad_output)
        xs = call.shapes["input"]
    g = _adaptive_geometry(op, nd, xs, call.shapes["grad_output"])
    gy = call.prepare("grad_output", (g.N, g.C, g.OH, g.OW))
    if g.N == 0:
        return call.finish(call.empty((g.N, g.C, g.H, g.W)), xs)
    if gy.size == 0:  # output_size 0: nothing flows back
        return call.finish(_zeros(call, (g.N, g.C, g.H, g.W)), xs)
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

    input_shape (N, C, H, W) or (C, H, W); grad_output (N, C, OH, OW) (its shape gives the
    output size). Each grad_output element is spread evenly over its bin.

    >>> import numpy as np, fastconv.grad as G
    >>> G.adaptive_avg_pool2d_input((1, 1, 2, 2), np.full((1, 1, 1, 1), 4.))
    array([[[[1., 1.],
             [1., 1.]]]])
    """
    return _adaptive_input("adaptive_avg_pool2d_input", 2, "adaptive_avg_pool2d_backward",
                           input_shape, grad_output, backend)


def adaptive_avg_pool1d_input(input_shape: Shape, grad_output: Any, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.adaptive_avg_pool1d` with respect to its input: (N, C, L).

    >>> import numpy as np, fastconv.grad as G
    >>> G.adaptive_avg_pool1d_input((1, 1, 4), np.array([[[2., 4.]]]))
    array([[[1., 1., 2., 2.]]])
    """
    return _adaptive_input("adaptive_avg_pool1d_input", 1, "adaptive_avg_pool2d_backward",
                           input_shape, grad_output, backend)


def adaptive_max_pool2d_input(input: Any, grad_output: Any, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.adaptive_max_pool2d` with respect to its input.

    input (N, C, H, W) or (C, H, W), the forward input; grad_output (N, C, OH, OW) (its
    shape gives the output size). Each grad_output element goes to its bin's maximum.

    >>> import numpy as np, fastconv.grad as G
    >>> G.adaptive_max_pool2d_input(np.arange(4.).reshape(1, 1, 2, 2), np.ones((1, 1, 1, 1)))
    array([[[[0., 0.],
             [0., 1.]]]])
    """
    return _adaptive_input("adaptive_max_pool2d_input", 2, "max_pool2d_backward", input,
                           grad_output, backend)


def adaptive_max_pool1d_input(input: Any, grad_output: Any, *, backend: str = "auto"):
    """Gradient of :func:`fastconv.adaptive_max_pool1d` with respect to its input: (N, C, L).

    >>> import numpy as np, fastconv.grad as G
    >>> G.adaptive_max_pool1d_input(np.array([[[1., 3., 2., 6.]]]), np.array([[[1., 2.]]]))
    array([[[0., 1., 0., 2.]]])
    """
    return _adaptive_input("adaptive_max_pool1d_input", 1, "max_pool2d_backward", input,
                           grad_output, backend)


__all__ = [
    "adaptive_avg_pool1d_input",
    "adaptive_avg_pool2d_input",
    "adaptive_max_pool1d_input",
    "adaptive_max_pool2d_input",
    "avg_pool1d_input",
    "avg_pool2d_input",
    "conv1d_bias",
    "conv1d_input",
    "conv1d_weight",
    "conv2d_bias",
    "conv2d_input",
    "conv2d_weight",
    "conv_transpose1d_bias",
    "conv_transpose1d_input",
    "conv_transpose1d_weight",
    "conv_transpose2d_bias",
    "conv_transpose2d_input",
    "conv_transpose2d_weight",
    "depthwise_conv2d_input",
    "depthwise_conv2d_weight",
    "max_pool1d_input",
    "max_pool2d_input",
    "separable_conv2d_backward",
    "separable_conv2d_depthwise_bias",
    "separable_conv2d_depthwise_weight",
    "separable_conv2d_input",
    "separable_conv2d_pointwise_bias",
    "separable_conv2d_pointwise_weight",
]
