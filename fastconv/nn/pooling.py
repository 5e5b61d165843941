"""Pooling layers, as torch.nn's, running fastconv's pooling ops and their gradients.

- MaxPool2d, AvgPool2d: windowed pooling (kernel_size, stride, padding; ceil_mode)
- AdaptiveAvgPool2d, AdaptiveMaxPool2d (on _AdaptivePool2d): pooling to a given output size
"""

from typing import Any

import numpy as np

from .. import _shapes
from ..ops import grad as _grad
from ..ops.pool import adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, max_pool2d
from .module import Module, Shape, _check_grad_shape


class MaxPool2d(Module):
    """2-D max pooling layer, as ``torch.nn.MaxPool2d`` (runs :func:`fastconv.max_pool2d`).

    Parameters
    ----------
    kernel_size : int or (int, int)
        KH, KW.
    stride : int or (int, int), optional
        None (the default) means kernel_size.
    padding : int or (int, int), default 0
        At most half the (dilated) kernel, checked when the layer runs.
    dilation : int or (int, int), default 1
    return_indices : bool, default False
        Also return the indices of the maxima, as :func:`fastconv.max_pool2d`.
    ceil_mode : bool, default False

    Calling the layer on an input (N, C, H, W) (or (C, H, W)) returns (N, C, OH, OW) with
    OH = floor_or_ceil((H + 2*ph - dh*(KH-1) - 1) / sh) + 1, likewise OW.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> x = np.arange(16.).reshape(1, 1, 4, 4)
    >>> nn.MaxPool2d(2)(x)
    array([[[[ 5.,  7.],
             [13., 15.]]]])
    >>> nn.MaxPool2d(3, stride=1, return_indices=True)(x)[1]
    array([[[[10, 11],
             [14, 15]]]])
    """

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _shapes.as_tuple(kernel_size, "kernel_size", 2, minimum=1, op=name)
        self.stride = (
            self.kernel_size
            if stride is None
            else _shapes.as_tuple(stride, "stride", 2, minimum=1, op=name)
        )
        self.padding = _shapes.as_tuple(padding, "padding", 2, minimum=0, op=name)
        self.dilation = _shapes.as_tuple(dilation, "dilation", 2, minimum=1, op=name)
        self.return_indices = _shapes.as_bool(return_indices, "return_indices", op=name)
        self.ceil_mode = _shapes.as_bool(ceil_mode, "ceil_mode", op=name)

    def geometry(self, input_shape: Shape) -> _shapes.PoolGeometry:
        return _shapes.pool_geometry(
            type(self).__name__,
            input_shape,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            2,
        )

    def output_shape(self, input_shape: Shape) -> Shape:
        return self.geometry(input_shape).output_shape()

    def forward(self, x: Any) -> Any:
        want = self.return_indices or self.keep_cache
        out = max_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            want,
            backend=self.backend,
        )
        if want:
            y, idx = out
            self._remember(input=x, indices=idx)
            return (y, idx) if self.return_indices else y
        return out

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )

    def backward(self, grad_output: Any) -> np.ndarray:
        # fastconv.grad finds each window's maximum again with the engine's forward kernel
        # (the same kernel, so the same tie-breaking as the recorded indices)
        x = self._recall()["input"]
        return _grad.max_pool2d_input(
            x,
            grad_output,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            backend=self.backend,
        )


class AvgPool2d(Module):
    """2-D average pooling layer, as ``torch.nn.AvgPool2d`` (runs :func:`fastconv.avg_pool2d`).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        None (the default) means kernel_size.
    padding : int or (int, int), default 0
    ceil_mode : bool, default False
    count_include_pad : bool, default True
    divisor_override : int, optional
        As :func:`fastconv.avg_pool2d`'s.

    Calling the layer on an input (N, C, H, W) returns (N, C, OH, OW) with
    OH = floor_or_ceil((H + 2*ph - KH) / sh) + 1, likewise OW.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> nn.AvgPool2d(2)(np.arange(16.).reshape(1, 1, 4, 4))
    array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]])
    >>> nn.AvgPool2d(3, stride=2, padding=1).output_shape((1, 8, 32, 32))
    (1, 8, 16, 16)
    """

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: Any = None,
    ):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _shapes.as_tuple(kernel_size, "kernel_size", 2, minimum=1, op=name)
        self.stride = (
            self.kernel_size
            if stride is None
            else _shapes.as_tuple(stride, "stride", 2, minimum=1, op=name)
        )
        self.padding = _shapes.as_tuple(padding, "padding", 2, minimum=0, op=name)
        self.dilation = (1, 1)
        self.ceil_mode = _shapes.as_bool(ceil_mode, "ceil_mode", op=name)
        self.count_include_pad = _shapes.as_bool(count_include_pad, "count_include_pad", op=name)
        _shapes.divisor_override(divisor_override, name)
        self.divisor_override = divisor_override

    def geometry(self, input_shape: Shape) -> _shapes.PoolGeometry:
        return _shapes.pool_geometry(
            type(self).__name__,
            input_shape,
            self.kernel_size,
            self.stride,
            self.padding,
            1,
            self.ceil_mode,
            2,
        )

    def output_shape(self, input_shape: Shape) -> Shape:
        return self.geometry(input_shape).output_shape()

    def forward(self, x: Any) -> np.ndarray:
        self._remember(input=x)
        return avg_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
            backend=self.backend,
        )

    def backward(self, grad_output: Any) -> np.ndarray:
        x = np.asarray(self._recall()["input"])
        return _grad.avg_pool2d_input(
            x.shape,
            grad_output,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class _AdaptivePool2d(Module):
    def __init__(self, output_size: Any):
        super().__init__()
        # validated against a dummy input now, so a bad output_size fails at construction
        _shapes.adaptive_geometry(type(self).__name__, (1, 1, 1), output_size, 2)
        self.output_size = output_size

    def geometry(self, input_shape: Shape) -> _shapes.PoolGeometry:
        return _shapes.adaptive_geometry(type(self).__name__, input_shape, self.output_size, 2)

    def output_shape(self, input_shape: Shape) -> Shape:
        return self.geometry(input_shape).output_shape()

    def extra_repr(self) -> str:
        return f"output_size={self.output_size!r}"


class AdaptiveAvgPool2d(_AdaptivePool2d):
    """2-D adaptive average pooling layer, as ``torch.nn.AdaptiveAvgPool2d``.

    Parameters
    ----------
    output_size : int or (int or None, int or None)
        OH, OW; None keeps the input's size along that axis (see
        :func:`fastconv.adaptive_avg_pool2d` for the bins).

    Calling the layer on an input (N, C, H, W) returns (N, C, OH, OW).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> nn.AdaptiveAvgPool2d(1).output_shape((8, 512, 7, 7))
    (8, 512, 1, 1)
    >>> nn.AdaptiveAvgPool2d((1, None))(np.arange(16.).reshape(1, 1, 4, 4))
    array([[[[6., 7., 8., 9.]]]])
    """

    def forward(self, x: Any) -> np.ndarray:
        self._remember(input=x)
        return adaptive_avg_pool2d(x, self.output_size, backend=self.backend)

    def backward(self, grad_output: Any) -> np.ndarray:
        shape = np.shape(self._recall()["input"])
        _check_grad_shape(type(self).__name__, grad_output, self.output_shape(shape))
        return _grad.adaptive_avg_pool2d_input(shape, grad_output, backend=self.backend)


class AdaptiveMaxPool2d(_AdaptivePool2d):
    """2-D adaptive max pooling layer, as ``torch.nn.AdaptiveMaxPool2d``.

    Parameters
    ----------
    output_size : int or (int or None, int or None)
        As :class:`AdaptiveAvgPool2d`'s.
    return_indices : bool, default False
        Also return the indices of the maxima, as :func:`fastconv.adaptive_max_pool2d`.

    Calling the layer on an input (N, C, H, W) returns (N, C, OH, OW).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> nn.AdaptiveMaxPool2d(1)(np.arange(16.).reshape(1, 1, 4, 4))
    array([[[[15.]]]])
    """

    def __init__(self, output_size: Any, return_indices: bool = False):
        super().__init__(output_size)
        self.return_indices = _shapes.as_bool(
            return_indices, "return_indices", op=type(self).__name__
        )

    def forward(self, x: Any) -> Any:
        want = self.return_indices or self.keep_cache
        out = adaptive_max_pool2d(x, self.output_size, want, backend=self.backend)
        if want:
            y, idx = out
            self._remember(input=x, indices=idx)
            return (y, idx) if self.return_indices else y
        return out

    def backward(self, grad_output: Any) -> np.ndarray:
        x = self._recall()["input"]
        _check_grad_shape(type(self).__name__, grad_output, self.output_shape(np.shape(x)))
        return _grad.adaptive_max_pool2d_input(x, grad_output, backend=self.backend)
