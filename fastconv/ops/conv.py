"""Public convolution functions, with torch.nn.functional's names, order and semantics.

Each function: validate and size (``fastconv._shapes``) -> convert and allocate
(``fastconv.backends._registry``) -> run one engine's kernel. 1-D ops run the 2-D kernels
with H = 1.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

import numpy as np

from .. import _shapes
from ..backends._registry import Call, begin

Padding = Union[int, tuple, str]
_PAD_MODE: Dict[str, Any] = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


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
):
    mode = _shapes.padding_mode(padding_mode)
    call = begin("conv2d", backend, input=input, weight=weight, bias=bias)
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
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    w = call.prepare("weight", (g.OC, g.C // g.groups, g.KH, g.KW))
    b = call.prepare("bias")
    ph, pw = g.ph, g.pw
    if mode != "zeros" and any(g.pad):
        _shapes.check_explicit_padding(mode, g)
        x = _pad_explicit(call, x, g.pad, mode)
        ph = pw = 0
    y = call.empty((g.N, g.OC, g.OH, g.OW))
    if y.size:
        if (
            g.groups == g.C
            and g.C // g.groups == 1
            and call.has("depthwise_conv2d")
            and variant is None
        ):
            call.kernel("depthwise_conv2d")(x, w, b, y, g.sh, g.sw, ph, pw, g.dh, g.dw)
        else:
            kwargs = {} if variant is None else {"variant": variant}
            call.kernel("conv2d")(x, w, b, y, g.sh, g.sw, ph, pw, g.dh, g.dw, g.groups, **kwargs)
    return call.finish(y, g.output_shape())


def _pad_explicit(call: Call, x, pad, mode: str):
    """Apply a non-zero padding mode on the host (as nn.Conv2d does before its conv)."""
    host = np.asarray(x) if not call.device else x.copy_to_host()
    (pt, pb, pl, pr) = pad
    out = np.ascontiguousarray(np.pad(host, ((0, 0), (0, 0), (pt, pb), (pl, pr)), _PAD_MODE[mode]))
    if call.device:
        prep = call.engine.prepare
        return prep(out, call.compute)
    return out


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
    input : array_like, (N, C, H, W) or unbatched (C, H, W)
    weight : array_like, (OC, C/groups, KH, KW)
    bias : array_like, (OC,), optional
    stride, dilation : int or (int, int), >= 1
    padding : int, (int, int), 'same' or 'valid'. 'same' pads d*(K-1) in total per axis,
        the extra element after (bottom / right), and requires stride 1.
    groups : int, divides C and OC
    padding_mode : 'zeros', 'reflect', 'replicate' or 'circular' (as ``nn.Conv2d``)
    backend : 'auto', 'reference', 'c', 'numba' or 'cuda'
    variant : optional name of an engine's optimisation step (see the engine's docs)

    Returns
    -------
    ndarray, (N, OC, OH, OW) (or (OC, OH, OW)), with
    OH = floor((H + pad_top + pad_bottom - dh*(KH-1) - 1) / sh) + 1 (likewise OW).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.ones((1, 2, 5, 5), np.float32); w = np.ones((4, 2, 3, 3), np.float32)
    >>> fastconv.conv2d(x, w, padding=1).shape
    (1, 4, 5, 5)
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
    """1-D convolution, as ``torch.nn.functional.conv1d``.

    input (N, C, L) or (C, L); weight (OC, C/groups, K); bias (OC,); returns (N, OC, OL) with
    OL = floor((L + p0 + p1 - d*(K-1) - 1) / s) + 1. Other arguments as :func:`conv2d`.

    >>> import numpy as np, fastconv
    >>> fastconv.conv1d(np.ones((1, 2, 7)), np.ones((3, 2, 3))).shape
    (1, 3, 5)
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
    call = begin("conv_transpose2d", backend, input=input, weight=weight, bias=bias)
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
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    w = call.prepare("weight", (g.C, g.OC // g.groups, g.KH, g.KW))
    b = call.prepare("bias")
    y = call.empty((g.N, g.OC, g.OH, g.OW))
    if y.size:
        call.kernel("conv_transpose2d")(x, w, b, y, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.groups)
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

    Parameters
    ----------
    input : array_like, (N, C, H, W) or (C, H, W)
    weight : array_like, (C, OC/groups, KH, KW)
    bias : array_like, (OC,), optional
    stride, padding, dilation : int or (int, int)
    output_padding : int or (int, int), smaller than stride or dilation
    groups : int, divides C

    Returns
    -------
    ndarray, (N, OC, OH, OW) with OH = (H-1)*sh - 2*ph + dh*(KH-1) + output_padding + 1.

    >>> import numpy as np, fastconv
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

    input (N, C, L) or (C, L); weight (C, OC/groups, K); returns (N, OC, OL) with
    OL = (L-1)*s - 2*p + d*(K-1) + output_padding + 1.

    >>> import numpy as np, fastconv
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

    Parameters
    ----------
    input : array_like, (N, C, H, W) or (C, H, W)
    weight : array_like, (C*m, 1, KH, KW); m is the channel multiplier
    bias : array_like, (C*m,), optional

    Returns (N, C*m, OH, OW), the same as ``conv2d(input, weight, bias, stride, padding,
    dilation, groups=C)``; output channel o reads input channel o // m.

    >>> import numpy as np, fastconv
    >>> fastconv.depthwise_conv2d(np.ones((1, 3, 8, 8)), np.ones((6, 1, 3, 3)), padding=1).shape
    (1, 6, 8, 8)
    """
    op = "depthwise_conv2d"
    call = begin(op, backend, input=input, weight=weight, bias=bias)
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
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    w = call.prepare("weight", (g.OC, 1, g.KH, g.KW))
    b = call.prepare("bias")
    y = call.empty((g.N, g.OC, g.OH, g.OW))
    if y.size:
        call.kernel("depthwise_conv2d")(x, w, b, y, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw)
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

    Parameters
    ----------
    input : array_like, (N, C, H, W) or (C, H, W)
    depthwise_weight : (C*m, 1, KH, KW); depthwise_bias : (C*m,), optional
    pointwise_weight : (OC, C*m, 1, 1); pointwise_bias : (OC,), optional
    stride, padding, dilation : of the depthwise step (as :func:`depthwise_conv2d`)

    Returns (N, OC, OH, OW), with OH, OW of the depthwise step.

    >>> import numpy as np, fastconv
    >>> x = np.ones((1, 3, 8, 8)); dw = np.ones((3, 1, 3, 3)); pw = np.ones((5, 3, 1, 1))
    >>> fastconv.separable_conv2d(x, dw, pw, padding=1).shape
    (1, 5, 8, 8)
    """
    op = "separable_conv2d"
    # the engine needs depthwise_conv2d; a fused separable_conv2d kernel is used if it has one
    call = begin(
        "depthwise_conv2d",
        backend,
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
