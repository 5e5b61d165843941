"""Convolution layers, as torch.nn's, running fastconv's ops (forward) and fastconv.grad (backward).

- _ConvNd: what every convolution layer shares: arguments, parameters, torch's init, output
  shape, backward (padding modes other than "zeros" differentiate through fastconv.ops._padding)
- Conv1d, Conv2d (on _Conv): convolutions, weight (OC, C/G, K) / (OC, C/G, KH, KW)
- ConvTranspose2d: transposed convolution, weight (C, OC/G, KH, KW)
- DepthwiseSeparableConv2d: a depthwise KxK then a pointwise 1x1 convolution, run as one op
"""

from typing import Any, Optional, Tuple

import numpy as np

from .. import _shapes
from ..ops import _padding
from ..ops import grad as _grad
from ..ops.conv import conv1d, conv2d, conv_transpose2d, separable_conv2d
from . import init as _init
from .module import Module, Shape, _factory, _join, _torch_default_init


def _conv_arguments(
    name: str,
    nd: int,
    transposed: bool,
    in_channels: Any,
    out_channels: Any,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: Any,
    padding_mode: Any,
    output_padding: Any,
) -> Tuple[Any, ...]:
    """A convolution layer's arguments, checked and normalised; every message starts with
    ``name``, the layer the user built. Returns (in_channels, out_channels, kernel_size,
    stride, padding, dilation, groups, padding_mode, output_padding), tuples of ``nd`` ints
    for the per-axis ones (padding may stay 'same' / 'valid')."""
    C = _shapes.as_int(in_channels, "in_channels", minimum=1, op=name)
    OC = _shapes.as_int(out_channels, "out_channels", minimum=1, op=name)
    k = _shapes.as_tuple(kernel_size, "kernel_size", nd, minimum=1, op=name)
    s = _shapes.as_tuple(stride, "stride", nd, minimum=1, op=name)
    d = _shapes.as_tuple(dilation, "dilation", nd, minimum=1, op=name)
    G = _shapes.as_int(groups, "groups", minimum=1, op=name)
    mode = _shapes.padding_mode(padding_mode, name)
    p: Any
    if isinstance(padding, str):
        if transposed:
            raise TypeError(f"{name}: padding must be an int or a tuple of ints, got {padding!r}")
        # validates 'same' / 'valid' (and 'same' needs stride 1) as the op will
        _shapes.conv_padding(padding, nd, k, d, s, name)
        p = padding
    else:
        p = _shapes.as_tuple(padding, "padding", nd, minimum=0, op=name)
    if transposed and mode != "zeros":
        raise ValueError(f"{name}: padding_mode must be 'zeros', got {padding_mode!r}")
    # (Conv1d and Conv2d pass 0, which every stride and dilation accept)
    op_ = _shapes.output_padding_tuple(output_padding, s, d, name)
    _shapes.check_groups(name, f"in_channels = {C}", C, G)
    _shapes.check_groups(name, f"out_channels = {OC}", OC, G)
    return C, OC, k, s, p, d, G, mode, op_


class _ConvNd(Module):
    """Shared by Conv1d / Conv2d / ConvTranspose2d: arguments, parameters, torch's init."""

    nd = 2
    transposed = False
    weight: np.ndarray
    bias: Optional[np.ndarray]

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride,
        padding,
        dilation,
        groups,
        bias,
        padding_mode,
        output_padding,
        dtype,
        generator,
        initialize,
    ):
        super().__init__()
        name = type(self).__name__
        (
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.padding_mode,
            self.output_padding,
        ) = _conv_arguments(
            name,
            self.nd,
            self.transposed,
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            padding_mode,
            output_padding,
        )
        dt = _factory(dtype, name)
        if self.transposed:
            wshape = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
        else:
            wshape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.register_parameter("weight", np.zeros(wshape, dt))
        has_bias = _shapes.as_bool(bias, "bias", op=name)
        self.register_parameter("bias", np.zeros(self.out_channels, dt) if has_bias else None)
        if _shapes.as_bool(initialize, "initialize", op=name):
            self.reset_parameters(_init.as_generator(generator, name))

    def reset_parameters(self, generator: Any = None) -> None:
        """torch's default: weight ~ kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(fan_in),
        1/sqrt(fan_in)); bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        _torch_default_init(self.weight, self.bias, generator)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding not in ((0,) * self.nd, "valid"):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self.nd:
            s += f", dilation={self.dilation}"
        if self.transposed and self.output_padding != (0,) * self.nd:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s

    def geometry(self, input_shape: Shape) -> _shapes.ConvGeometry:
        """The op's validated geometry for an input of ``input_shape`` (``fastconv._shapes``)."""
        bshape = None if self.bias is None else self.bias.shape
        op = type(self).__name__
        if self.transposed:
            return _shapes.conv_transpose_geometry(
                op,
                input_shape,
                self.weight.shape,
                bshape,
                self.stride,
                self.padding,
                self.output_padding,
                self.groups,
                self.dilation,
                self.nd,
            )
        return _shapes.conv_geometry(
            op,
            input_shape,
            self.weight.shape,
            bshape,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.nd,
        )

    def output_shape(self, input_shape: Shape) -> Shape:
        g = self.geometry(input_shape)
        if not self.transposed and self.padding_mode != "zeros" and any(g.pad):
            _shapes.check_explicit_padding(self.padding_mode, g, type(self).__name__)
        return g.output_shape()

    def backward(self, grad_output: Any) -> np.ndarray:
        x = np.asarray(self._recall()["input"])
        gy = np.asarray(grad_output)
        be = self.backend
        if self.transposed:
            targs = (self.stride, self.padding, self.output_padding, self.groups, self.dilation)
            gx = _grad.conv_transpose2d_input(x.shape, self.weight, gy, *targs, backend=be)
            if not self.requires_grad:
                return gx
            gw = _grad.conv_transpose2d_weight(x, self.weight.shape, gy, *targs, backend=be)
        else:
            f_in, f_w = (
                (_grad.conv2d_input, _grad.conv2d_weight)
                if self.nd == 2
                else (_grad.conv1d_input, _grad.conv1d_weight)
            )
            pad: Any = self.padding
            xp = x
            g = self.geometry(x.shape)
            explicit = self.padding_mode != "zeros" and any(g.pad)
            # the padded axes' (before, after): (top, bottom, left, right), or (left, right)
            widths = g.pad[4 - 2 * self.nd :]
            if explicit:  # the forward pass padded x itself; differentiate through the pad
                xp = _padding.pad(x, widths, self.padding_mode)
                pad = 0
            gx = f_in(
                xp.shape, self.weight, gy, self.stride, pad, self.dilation, self.groups, backend=be
            )
            if explicit:
                gx = _padding.unpad(gx, widths, self.padding_mode)
            if not self.requires_grad:
                return gx
            gw = f_w(
                xp, self.weight.shape, gy, self.stride, pad, self.dilation, self.groups, backend=be
            )
        self._accumulate("weight", gw)
        if self.bias is not None:
            bias_grad = _grad.conv2d_bias if self.nd == 2 else _grad.conv1d_bias
            self._accumulate("bias", bias_grad(gy, backend=be))
        return gx


class _Conv(_ConvNd):
    """What Conv1d and Conv2d share: torch's constructor and a forward through the op."""

    _function: Any = None  # fastconv.conv1d / conv2d, set by the subclass

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        dtype: Any = np.float32,
        generator: Any = None,
        initialize: bool = True,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            0,
            dtype,
            generator,
            initialize,
        )

    def forward(self, x: Any) -> np.ndarray:
        self._remember(input=x)
        return self._function(
            x,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            padding_mode=self.padding_mode,
            backend=self.backend,
        )


class Conv2d(_Conv):
    """2-D convolution layer, as ``torch.nn.Conv2d``: y = conv2d(x, weight) + bias.

    Parameters
    ----------
    in_channels : int
        C, the input's channels.
    out_channels : int
        OC.
    kernel_size : int or (int, int)
        KH, KW.
    stride, padding, dilation, groups : as :func:`fastconv.conv2d`'s
        padding may be 'same' or 'valid'; groups divides in_channels and out_channels.
    bias : bool, default True
        Whether the layer has a bias.
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, default 'zeros'
    dtype : floating dtype, default numpy.float32
        Of the parameters.
    generator : numpy.random.Generator, int or None, default None
        Draws the initial weights (an int is a seed; None a fresh, unseeded generator).
    initialize : bool, default True
        Initialise as torch does (see ``reset_parameters``); False leaves zeros.

    Attributes
    ----------
    weight : ndarray, shape (OC, C/groups, KH, KW)
    bias : ndarray, shape (OC,), or None
        Initialised as torch does: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C/groups*KH*KW.

    Calling the layer on an input (N, C, H, W) (or (C, H, W)) returns (N, OC, OH, OW) with
    OH = floor((H + pad_top + pad_bottom - dh*(KH-1) - 1) / sh) + 1, likewise OW.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> conv = nn.Conv2d(3, 8, 3, padding=1, generator=0)
    >>> conv
    Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    >>> conv.weight.shape, conv(np.ones((2, 3, 16, 16), np.float32)).shape
    ((8, 3, 3, 3), (2, 8, 16, 16))
    >>> box = nn.Conv2d(1, 1, 3, padding=1, bias=False, dtype=np.float64, initialize=False)
    >>> box.weight[...] = 1
    >>> box(np.ones((1, 1, 3, 3)))[0, 0]
    array([[4., 6., 4.],
           [6., 9., 6.],
           [4., 6., 4.]])
    """

    nd = 2
    _function = staticmethod(conv2d)


class Conv1d(_Conv):
    """1-D convolution layer, as ``torch.nn.Conv1d``: y = conv1d(x, weight) + bias.

    Parameters
    ----------
    in_channels, out_channels : int
        C and OC.
    kernel_size : int
        K.
    stride, padding, dilation, groups : as :func:`fastconv.conv1d`'s
    bias : bool, default True
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, default 'zeros'
    dtype : floating dtype, default numpy.float32
        Of the parameters.
    generator : numpy.random.Generator, int or None, default None
        Draws the initial weights (an int is a seed; None a fresh, unseeded generator).
    initialize : bool, default True
        Initialise as torch does (see ``reset_parameters``); False leaves zeros.

    Attributes
    ----------
    weight : ndarray, shape (OC, C/groups, K)
    bias : ndarray, shape (OC,), or None

    Calling the layer on an input (N, C, L) (or (C, L)) returns (N, OC, OL) with
    OL = floor((L + p0 + p1 - d*(K-1) - 1) / s) + 1.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> conv = nn.Conv1d(2, 4, 3, stride=2, generator=0)
    >>> conv.weight.shape, conv(np.ones((1, 2, 9), np.float32)).shape
    ((4, 2, 3), (1, 4, 4))
    """

    nd = 1
    _function = staticmethod(conv1d)


class ConvTranspose2d(_ConvNd):
    """2-D transposed convolution layer, as ``torch.nn.ConvTranspose2d``.

    Parameters
    ----------
    in_channels, out_channels : int
        C and OC.
    kernel_size : int or (int, int)
    stride, padding, output_padding, groups, dilation : as :func:`fastconv.conv_transpose2d`'s
        (in torch's order: output_padding and groups come before bias, dilation after).
    bias : bool, default True
    padding_mode : 'zeros'
        The only mode of transposed convolutions (as torch).
    dtype : floating dtype, default numpy.float32
        Of the parameters.
    generator : numpy.random.Generator, int or None, default None
        Draws the initial weights (an int is a seed; None a fresh, unseeded generator).
    initialize : bool, default True
        Initialise as torch does (see ``reset_parameters``); False leaves zeros.

    Attributes
    ----------
    weight : ndarray, shape (C, OC/groups, KH, KW)
    bias : ndarray, shape (OC,), or None

    Calling the layer on an input (N, C, H, W) returns (N, OC, OH, OW) with
    OH = (H-1)*sh - 2*ph + dh*(KH-1) + output_padding + 1, likewise OW.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> up = nn.ConvTranspose2d(4, 2, 2, stride=2, generator=0)  # doubles H and W
    >>> up.weight.shape, up(np.ones((1, 4, 3, 3), np.float32)).shape
    ((4, 2, 2, 2), (1, 2, 6, 6))
    """

    nd = 2
    transposed = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        output_padding: Any = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: Any = 1,
        padding_mode: str = "zeros",
        *,
        dtype: Any = np.float32,
        generator: Any = None,
        initialize: bool = True,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            output_padding,
            dtype,
            generator,
            initialize,
        )

    def forward(self, x: Any) -> np.ndarray:
        self._remember(input=x)
        return conv_transpose2d(
            x,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
            backend=self.backend,
        )


class DepthwiseSeparableConv2d(Module):
    """A depthwise KxK convolution, then a 1x1 pointwise one, run as one
    :func:`fastconv.separable_conv2d`.

    The children ``depthwise`` (Conv2d(C, C*m, K, groups=C)) and ``pointwise``
    (Conv2d(C*m, OC, 1)) hold the parameters, so the state_dict keys are
    ``depthwise.weight``, ``depthwise.bias``, ``pointwise.weight``, ``pointwise.bias``.

    Parameters
    ----------
    in_channels, out_channels : int
        C and OC.
    kernel_size : int or (int, int)
        Of the depthwise step.
    stride, padding, dilation : of the depthwise step, as :func:`fastconv.conv2d`'s
    bias : bool, default True
        Both steps have a bias.
    depth_multiplier : int, default 1
        m, the filters per input channel.
    dtype : floating dtype, default numpy.float32
        Of the parameters.
    generator : numpy.random.Generator, int or None, default None
        Draws the initial weights (an int is a seed; None a fresh, unseeded generator).
    initialize : bool, default True
        Initialise as torch does (see ``reset_parameters``); False leaves zeros.

    Calling the layer on an input (N, C, H, W) returns (N, OC, OH, OW), OH and OW those of
    the depthwise step (as :class:`Conv2d`'s).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> block = nn.DepthwiseSeparableConv2d(3, 8, 3, padding=1, depth_multiplier=2, generator=0)
    >>> sorted(block.state_dict())
    ['depthwise.bias', 'depthwise.weight', 'pointwise.bias', 'pointwise.weight']
    >>> block.depthwise.weight.shape, block(np.ones((1, 3, 5, 5), np.float32)).shape
    ((6, 1, 3, 3), (1, 8, 5, 5))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        bias: bool = True,
        depth_multiplier: int = 1,
        *,
        dtype: Any = np.float32,
        generator: Any = None,
        initialize: bool = True,
    ):
        super().__init__()
        name = type(self).__name__
        m = _shapes.as_int(depth_multiplier, "depth_multiplier", minimum=1, op=name)
        c = _shapes.as_int(in_channels, "in_channels", minimum=1, op=name)
        if c * m > _shapes.MAX_PARAM:
            raise ValueError(
                f"{name}: depth_multiplier is too large: in_channels * depth_multiplier = "
                f"{c * m} (at most {_shapes.MAX_PARAM})"
            )
        # the children's arguments, checked here so that every message names this layer
        _conv_arguments(
            name, 2, False, c, c * m, kernel_size, stride, padding, dilation, c, "zeros", 0
        )
        _conv_arguments(name, 2, False, c * m, out_channels, 1, 1, 0, 1, 1, "zeros", 0)
        _shapes.as_bool(bias, "bias", op=name)
        _factory(dtype, name)
        initialize = _shapes.as_bool(initialize, "initialize", op=name)
        gen = _init.as_generator(generator, name) if initialize else None
        self.depthwise = Conv2d(
            c,
            c * m,
            kernel_size,
            stride,
            padding,
            dilation,
            groups=c,
            bias=bias,
            dtype=dtype,
            generator=gen,
            initialize=initialize,
        )
        self.pointwise = Conv2d(
            c * m, out_channels, 1, bias=bias, dtype=dtype, generator=gen, initialize=initialize
        )

    def forward(self, x: Any) -> np.ndarray:
        self._remember(input=x)
        dw, pw = self.depthwise, self.pointwise
        if isinstance(dw.padding, str):
            return pw(dw(x))
        return separable_conv2d(
            x,
            dw.weight,
            pw.weight,
            dw.bias,
            pw.bias,
            dw.stride,
            dw.padding,
            dw.dilation,
            backend=self.backend,
        )

    def output_shape(self, input_shape: Shape) -> Shape:
        return self.pointwise.output_shape(self.depthwise.output_shape(input_shape))

    def backward(self, grad_output: Any) -> np.ndarray:
        x = np.asarray(self._recall()["input"])
        dw, pw = self.depthwise, self.pointwise
        if isinstance(dw.padding, str):  # forward ran the two children
            return dw.backward(pw.backward(grad_output))
        if not (dw.requires_grad or pw.requires_grad):
            return _grad.separable_conv2d_input(
                x.shape,
                dw.weight,
                pw.weight,
                grad_output,
                dw.stride,
                dw.padding,
                dw.dilation,
                backend=self.backend,
            )
        gx, gwd, gwp, gbd, gbp = _grad.separable_conv2d_backward(
            x,
            dw.weight,
            pw.weight,
            grad_output,
            dw.bias,
            dw.stride,
            dw.padding,
            dw.dilation,
            backend=self.backend,
        )
        for m, gw, gb in ((dw, gwd, gbd), (pw, gwp, gbp)):
            if m.requires_grad:
                m._accumulate("weight", gw)
                if m.bias is not None:
                    m._accumulate("bias", gb)
        return gx

    def _trace(self, tracer, name, shape, state):
        shape, state = self.depthwise._trace(tracer, _join(name, "depthwise"), shape, state)
        return self.pointwise._trace(tracer, _join(name, "pointwise"), shape, state)
