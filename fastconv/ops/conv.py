"""Public convolution functions, with torch.nn.functional's names, order and semantics.

Each function: validate and size (``fastconv._shapes``) -> refuse what would not fit in
memory (``_shapes.check_memory``, from the sizes alone) -> convert and allocate
(``fastconv.backends._registry``) -> run one backend's kernel. 1-D ops run the 2-D kernels
with H = 1.
"""

from typing import Any, Optional, Union

import numpy as np

from .. import _shapes
from ..backends import reference
from ..backends._registry import Call, begin, takes_depthwise
from . import _padding, _plans

Padding = Union[int, tuple, str]


class Epilogue:
    """What ``fastconv.fused`` asks to be done to a convolution's output in the same pass:
    y = act(scale[o] * y + shift[o] + residual) (``reference.epilogue`` defines it)."""

    def __init__(self, scale: Any, shift: Any, residual: Any, activation: Any):
        self.scale, self.shift, self.residual = scale, shift, residual
        self.activation = activation

    def arrays(self) -> dict:
        """The arrays given, by name, for the call's dtype and shape checks."""
        named = {"scale": self.scale, "shift": self.shift, "residual": self.residual}
        return {k: v for k, v in named.items() if v is not None}

    def prepare(self, call: Call, out4: tuple) -> tuple:
        """(scale, shift, residual, activation) as the kernels take them."""
        return (call.prepare("scale"), call.prepare("shift"),
                call.prepare("residual", out4) if self.residual is not None else None,
                self.activation)


def _run(call: Call, op: str, ep: Optional[tuple], *args, **kwargs) -> None:
    """Run kernel ``op``, with the epilogue ``ep`` fused where the backend has the fused
    kernel, else after it (the reference definition, on the host)."""
    if ep is None:
        call.kernel(op)(*args, **kwargs)
    elif call.has(op + "_fused"):
        call.kernel(op + "_fused")(*args, *ep, **kwargs)
    else:
        call.kernel(op)(*args, **kwargs)
        y = args[3]
        if call.device:  # a device array: the epilogue runs on a host copy
            host = y.copy_to_host()
            scale, shift, res, act = (a.copy_to_host() if hasattr(a, "copy_to_host") else a
                                      for a in ep)
            reference.epilogue(host, scale, shift, res, act)
            y.copy_to_device(host)
        else:
            reference.epilogue(y, *ep)


def _conv_nd(
    op: str,
    nd: int,
    input: Any,
    weight: Any,
    bias: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: Any,
    padding_mode: str,
    backend: str,
    variant: Optional[str],
    epilogue: Optional[Epilogue] = None,
):
    key = None
    if epilogue is None:  # fastconv/ops/_plans.py; fused calls from fastconv.nn have their own
        key, hit = _plans.lookup(op, backend, (input, weight, bias),
                                 (stride, padding, dilation, groups, padding_mode, variant))
        if hit is not None:
            return hit
    mode = _shapes.padding_mode(padding_mode, op)
    ep_arrays = {} if epilogue is None else epilogue.arrays()
    call = begin("conv2d", backend, caller=op, input=input, weight=weight, bias=bias, **ep_arrays)
    call.check_variant(variant, op)
    g = _shapes.conv_geometry(
        op,
        call.shapes["input"],
        call.shapes["weight"],
        call.shapes.get("bias"),
        stride,
        padding,
        dilation,
        groups,
        nd,
    )
    call.check_variant_geometry(variant, g, op)
    if epilogue is not None:
        _shapes.check_epilogue(op, call.shapes, g.output_shape(), g.OC, epilogue.activation)
    explicit = mode != "zeros" and any(g.pad)
    if explicit:
        _shapes.check_explicit_padding(mode, g, op)
    isz = call.compute.itemsize
    parts = [(g.culprit, g.N * g.OC * g.OH * g.OW * isz)]
    if explicit:  # the padded copy of the input (_pad_explicit)
        (pt, pb, pl, pr) = g.pad
        parts.append(("padding", g.N * g.C * (g.H + pt + pb) * (g.W + pl + pr) * isz))
    _shapes.check_memory(op, parts)
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    w = call.prepare("weight", (g.OC, g.C // g.groups, g.KH, g.KW))
    b = call.prepare("bias")
    ph, pw = g.ph, g.pw
    if explicit:
        x = _pad_explicit(call, x, g.pad, mode)
        ph = pw = 0
    y = call.empty((g.N, g.OC, g.OH, g.OW))
    ep = None if epilogue is None else epilogue.prepare(call, (g.N, g.OC, g.OH, g.OW))
    if y.size:
        kernel, geometry = _conv_kernel(call, g, variant, ph, pw)
        kwargs = {} if variant is None else {"variant": variant}
        _run(call, kernel, ep, x, w, b, y, *geometry, **kwargs)
        if not explicit:  # a plan runs the kernel alone: no epilogue
            _plans.keep(key, call, kernel, geometry, (x, w, b), y, None, g.output_shape(),
                        kwargs)
    else:
        _plans.keep(key, call, None, (), (x, w, b), y, None, g.output_shape())
    return call.finish(y, g.output_shape())


def _conv_kernel(call: Call, g: Any, variant: Optional[str], ph: int, pw: int) -> tuple:
    """The kernel a conv2d of geometry ``g`` runs (its name) and the arguments that follow
    (x, w, b, y): a depthwise conv takes the depthwise kernel (``takes_depthwise``) unless a
    variant is asked for."""
    if variant is None and takes_depthwise(call.backend_module, g.C, g.groups, g.OC, g.KH, g.KW,
                                           g.sh, g.sw):
        return "depthwise_conv2d", (g.sh, g.sw, ph, pw, g.dh, g.dw)
    return "conv2d", (g.sh, g.sw, ph, pw, g.dh, g.dw, g.groups)


def _fused_conv2d_plan(input: Any, weight: Any, bias: Any, stride: Any, padding: Any,
                       dilation: Any, groups: Any, padding_mode: str, backend: str) -> Any:
    """What :func:`fastconv.fused.conv2d` with these arguments (and host scale, shift and
    residual of the input's dtype) runs, for calling it again without the checks:
    ``(kernel, geometry, output shape)``, the kernel called as ``kernel(x, w, b, y,
    *geometry, scale, shift, residual, activation)`` on C-contiguous arrays of one dtype.
    None where such a call is not that simple: device arrays, a backend that converts its
    arrays, an explicit padding mode, an empty output, no fused kernel. The arguments must
    be valid (the caller has just run the call)."""
    call = begin("conv2d", backend, caller="conv2d", input=input, weight=weight, bias=bias)
    if call.device or any(h is not None for h in call._hooks):
        return None
    g = _shapes.conv_geometry("conv2d", call.shapes["input"], call.shapes["weight"],
                              call.shapes.get("bias"), stride, padding, dilation, groups, 2)
    if (_shapes.padding_mode(padding_mode, "conv2d") != "zeros" and any(g.pad)) \
            or not g.N * g.OC * g.OH * g.OW:
        return None
    kernel, geometry = _conv_kernel(call, g, None, g.ph, g.pw)
    if not call.has(kernel + "_fused"):
        return None
    return call.kernel(kernel + "_fused"), geometry, (g.N, g.OC, g.OH, g.OW)


def _pad_explicit(call: Call, x, pad, mode: str):
    """Apply a non-zero padding mode on the host (as nn.Conv2d does before its conv)."""
    host = np.asarray(x) if not call.device else x.copy_to_host()
    out = np.ascontiguousarray(_padding.pad(host, pad, mode))  # pad: (top, bottom, left, right)
    return call.prepare_array(out)


def conv2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Padding = 0,
    dilation: Any = 1,
    groups: int = 1,
    *,
    padding_mode: str = "zeros",
    backend: str = "auto",
    variant: Optional[str] = None,
):
    """2-D convolution (cross-correlation), as ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W) or unbatched (C, H, W)
    weight : array_like, shape (OC, C/groups, KH, KW)
    bias : array_like, shape (OC,), optional
    stride : int or (int, int), default 1
        sh, sw >= 1.
    padding : int, (int, int), 'same' or 'valid', default 0
        ph, pw >= 0 zeros on both sides. 'same' pads dh*(KH-1) in total along H (floor half
        at the top, the rest at the bottom; likewise W) and needs stride 1; 'valid' is 0.
    dilation : int or (int, int), default 1
        dh, dw >= 1: spacing between kernel taps.
    groups : int, default 1
        G, dividing C and OC: input channels g*C/G..(g+1)*C/G-1 make output channels
        g*OC/G..(g+1)*OC/G-1.
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, default 'zeros'
        What the padding holds (as ``torch.nn.Conv2d``'s argument).
    backend : str, default 'auto'
        'auto', 'reference', 'c', 'numba' or 'cuda' (see :func:`fastconv.available_backends`).
    variant : str, optional
        A step of the backend's optimisation ladder (the backend module's
        ``CONV2D_VARIANTS``, e.g. "v1_direct" for backend="c"); None runs the best one.

    Returns
    -------
    ndarray, shape (N, OC, OH, OW) (or (OC, OH, OW) for an unbatched input)
        OH = floor((H + pad_top + pad_bottom - dh*(KH-1) - 1) / sh) + 1, likewise OW. The
        dtype is ``numpy.result_type`` of the inputs (float64 for integer inputs).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(16.).reshape(1, 1, 4, 4); w = np.ones((1, 1, 2, 2))
    >>> fastconv.conv2d(x, w)
    array([[[[10., 14., 18.],
             [26., 30., 34.],
             [42., 46., 50.]]]])
    >>> fastconv.conv2d(np.ones((2, 4, 5, 5), np.float32), np.ones((6, 2, 3, 3), np.float32),
    ...                 stride=2, padding="valid", groups=2).shape
    (2, 6, 2, 2)
    """
    return _conv_nd(
        "conv2d",
        2,
        input,
        weight,
        bias,
        stride,
        padding,
        dilation,
        groups,
        padding_mode,
        backend,
        variant,
    )


def conv1d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Padding = 0,
    dilation: Any = 1,
    groups: int = 1,
    *,
    padding_mode: str = "zeros",
    backend: str = "auto",
    variant: Optional[str] = None,
):
    """1-D convolution (cross-correlation), as ``torch.nn.functional.conv1d``.

    Parameters
    ----------
    input : array_like, shape (N, C, L) or unbatched (C, L)
    weight : array_like, shape (OC, C/groups, K)
    bias : array_like, shape (OC,), optional
    stride : int, default 1
    padding : int, 'same' or 'valid', default 0
        p zeros on both ends; 'same' pads d*(K-1) in total (the extra one at the end).
    dilation : int, default 1
    groups : int, default 1
        Divides C and OC.
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, default 'zeros'
    backend : str, default 'auto'
        'auto', 'reference', 'c', 'numba' or 'cuda' (see :func:`fastconv.available_backends`).
    variant : str, optional
        As :func:`conv2d`'s.

    Returns
    -------
    ndarray, shape (N, OC, OL) (or (OC, OL))
        OL = floor((L + p0 + p1 - d*(K-1) - 1) / s) + 1.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.conv1d(np.array([[[1., 2., 3., 4.]]]), np.array([[[1., -1.]]]))
    array([[[-1., -1., -1.]]])
    >>> fastconv.conv1d(np.ones((1, 2, 7)), np.ones((3, 2, 3)), padding="same").shape
    (1, 3, 7)
    """
    return _conv_nd(
        "conv1d",
        1,
        input,
        weight,
        bias,
        stride,
        padding,
        dilation,
        groups,
        padding_mode,
        backend,
        variant,
    )


def _conv_transpose_nd(
    op, nd, input, weight, bias, stride, padding, output_padding, groups, dilation, backend
):
    key, hit = _plans.lookup(op, backend, (input, weight, bias),
                             (stride, padding, output_padding, groups, dilation))
    if hit is not None:
        return hit
    call = begin("conv_transpose2d", backend, caller=op, input=input, weight=weight, bias=bias)
    g = _shapes.conv_transpose_geometry(
        op,
        call.shapes["input"],
        call.shapes["weight"],
        call.shapes.get("bias"),
        stride,
        padding,
        output_padding,
        groups,
        dilation,
        nd,
    )
    nbytes = g.N * g.OC * g.OH * g.OW * call.compute.itemsize
    _shapes.check_memory(op, ((g.culprit, nbytes),))
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    w = call.prepare("weight", (g.C, g.OC // g.groups, g.KH, g.KW))
    b = call.prepare("bias")
    y = call.empty((g.N, g.OC, g.OH, g.OW))
    kernel = None
    geometry = (g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.groups)
    if y.size:
        kernel = "conv_transpose2d"
        call.kernel(kernel)(x, w, b, y, *geometry)
    _plans.keep(key, call, kernel, geometry, (x, w, b), y, None, g.output_shape())
    return call.finish(y, g.output_shape())


def conv_transpose2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
    *,
    backend: str = "auto",
):
    """2-D transposed convolution, as ``torch.nn.functional.conv_transpose2d``.

    Each input element scatters ``weight`` (times the element) into the output; this is the
    gradient of :func:`conv2d` with respect to its input.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W) or unbatched (C, H, W)
    weight : array_like, shape (C, OC/groups, KH, KW)
    bias : array_like, shape (OC,), optional
    stride : int or (int, int), default 1
    padding : int or (int, int), default 0
        Removes ph rows at the top and at the bottom of the full output (likewise pw).
    output_padding : int or (int, int), default 0
        Extra rows / columns at the bottom / right; smaller than stride or dilation.
    groups : int, default 1
        Divides C.
    dilation : int or (int, int), default 1
    backend : str, default 'auto'
        'auto', 'reference', 'c', 'numba' or 'cuda' (see :func:`fastconv.available_backends`).

    Returns
    -------
    ndarray, shape (N, OC, OH, OW) (or (OC, OH, OW))
        OH = (H-1)*sh - 2*ph + dh*(KH-1) + output_padding + 1, likewise OW.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.conv_transpose2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)))
    array([[[[1., 2., 1.],
             [2., 4., 2.],
             [1., 2., 1.]]]])
    >>> x, w = np.ones((1, 4, 4, 4)), np.ones((4, 2, 4, 4))
    >>> fastconv.conv_transpose2d(x, w, stride=2, padding=1).shape
    (1, 2, 8, 8)
    """
    return _conv_transpose_nd(
        "conv_transpose2d",
        2,
        input,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
        backend,
    )


def conv_transpose1d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
    *,
    backend: str = "auto",
):
    """1-D transposed convolution, as ``torch.nn.functional.conv_transpose1d``.

    Parameters
    ----------
    input : array_like, shape (N, C, L) or unbatched (C, L)
    weight : array_like, shape (C, OC/groups, K)
    bias : array_like, shape (OC,), optional
    stride, padding, output_padding, groups, dilation : int
        As :func:`conv_transpose2d`'s, along the one axis.
    backend : str, default 'auto'
        'auto', 'reference', 'c', 'numba' or 'cuda' (see :func:`fastconv.available_backends`).

    Returns
    -------
    ndarray, shape (N, OC, OL) (or (OC, OL))
        OL = (L-1)*s - 2*p + d*(K-1) + output_padding + 1.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.conv_transpose1d(np.array([[[1., 2.]]]), np.array([[[1., 1., 1.]]]))
    array([[[1., 3., 3., 2.]]])
    >>> fastconv.conv_transpose1d(np.ones((1, 2, 7)), np.ones((2, 3, 3)), stride=2).shape
    (1, 3, 15)
    """
    return _conv_transpose_nd(
        "conv_transpose1d",
        1,
        input,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
        backend,
    )


def depthwise_conv2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Padding = 0,
    dilation: Any = 1,
    *,
    backend: str = "auto",
):
    """Depthwise 2-D convolution: each input channel convolved with its own m filters.

    The same as ``conv2d(input, weight, bias, stride, padding, dilation, groups=C)``, with
    kernels made for it (which the C engine runs where they are faster than its conv2d:
    docs/conv_variants.md); output channel o reads input channel o // m.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W) or unbatched (C, H, W)
    weight : array_like, shape (C*m, 1, KH, KW)
        m >= 1 is the channel multiplier.
    bias : array_like, shape (C*m,), optional
    stride, padding, dilation : as :func:`conv2d`'s (padding may be 'same' or 'valid')
    backend : str, default 'auto'
        'auto', 'reference', 'c', 'numba' or 'cuda' (see :func:`fastconv.available_backends`).

    Returns
    -------
    ndarray, shape (N, C*m, OH, OW) (or (C*m, OH, OW))
        OH = floor((H + pad_top + pad_bottom - dh*(KH-1) - 1) / sh) + 1, likewise OW.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.stack([np.ones((3, 3)), 2 * np.ones((3, 3))])[None]  # channels of 1s and 2s
    >>> fastconv.depthwise_conv2d(x, np.ones((2, 1, 3, 3)))
    array([[[[ 9.]],
    <BLANKLINE>
            [[18.]]]])
    >>> fastconv.depthwise_conv2d(np.ones((1, 3, 8, 8)), np.ones((6, 1, 3, 3)), padding=1).shape
    (1, 6, 8, 8)
    """
    return _depthwise("depthwise_conv2d", input, weight, bias, stride, padding, dilation,
                      backend)


def _depthwise(op: str, input: Any, weight: Any, bias: Any, stride: Any, padding: Any,
               dilation: Any, backend: str, epilogue: Optional[Epilogue] = None):
    ep_arrays = {} if epilogue is None else epilogue.arrays()
    call = begin("depthwise_conv2d", backend, caller=op, input=input, weight=weight, bias=bias,
                 **ep_arrays)
    xs, ws = call.shapes["input"], call.shapes["weight"]
    _check_depthwise_weight(op, ws, "weight")
    C = _channels(xs)
    if C >= 0 and ws[0] % max(C, 1):
        raise ValueError(
            f"{op}: weight.shape[0] = {ws[0]} must be a multiple of the input's channels {C}"
        )
    g = _shapes.conv_geometry(
        op, xs, ws, call.shapes.get("bias"), stride, padding, dilation, max(C, 1), 2
    )
    if epilogue is not None:
        _shapes.check_epilogue(op, call.shapes, g.output_shape(), g.OC, epilogue.activation)
    nbytes = g.N * g.OC * g.OH * g.OW * call.compute.itemsize
    _shapes.check_memory(op, ((g.culprit, nbytes),))
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    w = call.prepare("weight", (g.OC, 1, g.KH, g.KW))
    b = call.prepare("bias")
    y = call.empty((g.N, g.OC, g.OH, g.OW))
    ep = None if epilogue is None else epilogue.prepare(call, (g.N, g.OC, g.OH, g.OW))
    if y.size:
        if takes_depthwise(call.backend_module, g.C, g.C, g.OC, g.KH, g.KW, g.sh, g.sw):
            _run(call, "depthwise_conv2d", ep, x, w, b, y, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw)
        else:  # the backend's conv2d is faster here (large windows or strides, m > 1)
            _run(call, "conv2d", ep, x, w, b, y, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.C)
    return call.finish(y, g.output_shape())


def _channels(x_shape) -> int:
    """Channels of a 2-D op's input, -1 when the shape is invalid (conv_geometry reports it)."""
    return x_shape[-3] if len(x_shape) in (3, 4) else -1


def _check_depthwise_weight(op: str, shape, name: str) -> None:
    if len(shape) != 4 or shape[1] != 1:
        raise ValueError(f"{op}: {name} must be (C*m, 1, KH, KW), got shape {tuple(shape)}")


def separable_conv2d(
    input: Any,
    depthwise_weight: Any,
    pointwise_weight: Any,
    depthwise_bias: Any = None,
    pointwise_bias: Any = None,
    stride: Any = 1,
    padding: Padding = 0,
    dilation: Any = 1,
    *,
    backend: str = "auto",
):
    """Depthwise-separable 2-D convolution: depthwise, then a 1x1 (pointwise) convolution.

    The same as ``conv2d(depthwise_conv2d(input, depthwise_weight, depthwise_bias, stride,
    padding, dilation), pointwise_weight, pointwise_bias)``, fused where the backend can.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W) or unbatched (C, H, W)
    depthwise_weight : array_like, shape (C*m, 1, KH, KW)
    pointwise_weight : array_like, shape (OC, C*m, 1, 1)
    depthwise_bias : array_like, shape (C*m,), optional
    pointwise_bias : array_like, shape (OC,), optional
    stride, padding, dilation : of the depthwise step, as :func:`depthwise_conv2d`'s
    backend : str, default 'auto'
        'auto', 'reference', 'c', 'numba' or 'cuda' (see :func:`fastconv.available_backends`).

    Returns
    -------
    ndarray, shape (N, OC, OH, OW) (or (OC, OH, OW))
        OH, OW of the depthwise step: floor((H + pad_top + pad_bottom - dh*(KH-1) - 1) / sh) + 1.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.ones((1, 2, 3, 3)); dw = np.ones((2, 1, 3, 3)); pw = np.ones((1, 2, 1, 1))
    >>> fastconv.separable_conv2d(x, dw, pw)  # 9 per channel, summed over 2 channels
    array([[[[18.]]]])
    >>> x = np.ones((1, 3, 8, 8)); dw = np.ones((3, 1, 3, 3)); pw = np.ones((5, 3, 1, 1))
    >>> fastconv.separable_conv2d(x, dw, pw, padding=1).shape
    (1, 5, 8, 8)
    """
    op = "separable_conv2d"
    # the backend needs depthwise_conv2d; a fused separable_conv2d kernel is used if it has one
    call = begin(
        "depthwise_conv2d",
        backend,
        caller=op,
        input=input,
        depthwise_weight=depthwise_weight,
        pointwise_weight=pointwise_weight,
        depthwise_bias=depthwise_bias,
        pointwise_bias=pointwise_bias,
    )
    xs = call.shapes["input"]
    dws, pws = call.shapes["depthwise_weight"], call.shapes["pointwise_weight"]
    _check_depthwise_weight(op, dws, "depthwise_weight")
    C = _channels(xs)
    if C >= 0 and dws[0] % max(C, 1):
        raise ValueError(
            f"{op}: depthwise_weight.shape[0] = {dws[0]} must be a multiple of the input's "
            f"channels {C}"
        )
    g = _shapes.conv_geometry(op, xs, dws, None, stride, padding, dilation, max(C, 1), 2)
    _shapes.check_bias(op, call.shapes.get("depthwise_bias"), g.OC, "depthwise_bias")
    if len(pws) != 4 or pws[1] != g.OC or pws[2:] != (1, 1) or pws[0] == 0:
        raise ValueError(
            f"{op}: pointwise_weight must be (OC, {g.OC}, 1, 1), got shape {tuple(pws)}"
        )
    OC = pws[0]
    _shapes.check_bias(op, call.shapes.get("pointwise_bias"), OC, "pointwise_bias")
    isz = call.compute.itemsize
    mid = "depthwise_weight" if g.culprit == "weight" else g.culprit  # of the depthwise step
    out = "pointwise_weight" if OC > g.OC else mid
    _shapes.check_memory(
        op, [(mid, g.N * g.OC * g.OH * g.OW * isz), (out, g.N * OC * g.OH * g.OW * isz)]
    )
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    wd = call.prepare("depthwise_weight", (g.OC, 1, g.KH, g.KW))
    bd = call.prepare("depthwise_bias")
    wp = call.prepare("pointwise_weight")
    bp = call.prepare("pointwise_bias")
    y = call.empty((g.N, OC, g.OH, g.OW))
    if y.size:
        if call.has("separable_conv2d"):
            call.kernel("separable_conv2d")(
                x, wd, bd, wp, bp, y, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw
            )
        else:
            mid = call.empty((g.N, g.OC, g.OH, g.OW))
            call.kernel("depthwise_conv2d")(x, wd, bd, mid, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw)
            call.kernel("conv2d")(mid, wp, bp, y, 1, 1, 0, 0, 1, 1, 1)
    shape = ((g.N,) if g.batched else ()) + (OC, g.OH, g.OW)
    return call.finish(y, shape)


# dask arrays in, lazy dask arrays out (fastconv/ops/_dask_entry.py; dask loads only then)
from ._dask_entry import accept_dask_arrays  # noqa: E402

accept_dask_arrays(globals())
