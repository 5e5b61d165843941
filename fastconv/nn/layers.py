"""Normalisation, elementwise and linear layers, as torch.nn's, in NumPy.

- BatchNorm2d: per-channel batch normalisation (running statistics in inference mode)
- ReLU, ReLU6, Dropout, Identity (on _Elementwise): layers that keep their input's shape
- Flatten: merges a range of dimensions into one
- Linear: y = x @ weight.T + bias
"""

import math
from typing import Any, Optional

import numpy as np

from .. import _shapes
from . import init as _init
from .module import (
    Module,
    Shape,
    _check_grad,
    _check_grad_shape,
    _factory,
    _nonneg,
    _torch_default_init,
)


class BatchNorm2d(Module):
    """Batch normalisation, as ``torch.nn.BatchNorm2d``.

    In inference mode (the mode layers are built in; :meth:`Module.eval`),
    y = (x - running_mean) / sqrt(running_var + eps) * weight + bias, per channel. In training
    mode (:meth:`Module.train`) the batch's mean and biased variance normalise instead, and each
    call updates running_mean and running_var (with the unbiased variance) as
    ``(1 - f) * running + f * batch``, f = ``momentum``, or 1 / num_batches_tracked (a
    cumulative average) when ``momentum`` is None; num_batches_tracked counts the calls.
    Without running statistics (``track_running_stats=False``) the batch's own are used.

    Parameters
    ----------
    num_features : int
        C, the input's channels.
    eps : float, default 1e-5
        A finite number > 0, added to the variance.
    momentum : float or None, default 0.1
        In [0, 1], or None (cumulative average).
    affine : bool, default True
        Whether the layer has weight (ones) and bias (zeros), shape (C,).
    track_running_stats : bool, default True
        Whether it has the buffers running_mean (zeros), running_var (ones), shape (C,), and
        num_batches_tracked (an int64 scalar).
    dtype : floating dtype, default numpy.float32

    Calling the layer on an input (N, C, H, W) returns the same shape.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> bn = nn.BatchNorm2d(2, dtype=np.float64)
    >>> x = np.arange(8.).reshape(2, 2, 1, 2)
    >>> bn(x)[:, 0, 0].round(3)  # running statistics 0 and 1: (almost) the identity
    array([[0., 1.],
           [4., 5.]])
    >>> bn.train()(x)[:, 0, 0].round(3)  # batch statistics
    array([[-1.213, -0.728],
           [ 0.728,  1.213]])
    >>> bn.running_mean, bn.num_batches_tracked
    (array([0.25, 0.45]), array(1))
    """

    weight: Optional[np.ndarray]
    bias: Optional[np.ndarray]
    running_mean: Optional[np.ndarray]
    running_var: Optional[np.ndarray]
    num_batches_tracked: Optional[np.ndarray]

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        dtype: Any = np.float32,
    ):
        super().__init__()
        name = type(self).__name__
        self.num_features = _shapes.as_int(num_features, "num_features", minimum=1, op=name)
        self.eps = _nonneg(eps, "eps", name)
        if not self.eps > 0:  # torch fails in training for eps = 0
            raise ValueError(f"{name}: eps must be positive, got {eps!r}")
        self.momentum = None if momentum is None else _nonneg(momentum, "momentum", name)
        if self.momentum is not None and self.momentum > 1:
            raise ValueError(f"{name}: momentum must be None or between 0 and 1, got {momentum!r}")
        self.affine = _shapes.as_bool(affine, "affine", op=name)
        self.track_running_stats = _shapes.as_bool(
            track_running_stats, "track_running_stats", op=name
        )
        dt = _factory(dtype, name)
        C = self.num_features
        self.register_parameter("weight", np.ones(C, dt) if self.affine else None)
        self.register_parameter("bias", np.zeros(C, dt) if self.affine else None)
        track = self.track_running_stats
        self.register_buffer("running_mean", np.zeros(C, dt) if track else None)
        self.register_buffer("running_var", np.ones(C, dt) if track else None)
        self.register_buffer("num_batches_tracked", np.zeros((), np.int64) if track else None)

    def reset_parameters(self, generator: Any = None) -> None:
        """weight = 1, bias = 0, running_mean = 0, running_var = 1 (torch's defaults)."""
        for a, v in (
            (self.weight, 1),
            (self.bias, 0),
            (self.running_mean, 0),
            (self.running_var, 1),
            (self.num_batches_tracked, 0),
        ):
            if a is not None:
                a[...] = v

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 4:
            raise ValueError(
                f"BatchNorm2d: input must be 4-D (N, C, H, W), got shape {input_shape}"
            )
        if input_shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm2d: input has {input_shape[1]} channels, expected num_features = "
                f"{self.num_features}"
            )
        return tuple(input_shape)

    def forward(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        self.output_shape(x.shape)
        dt = np.result_type(x.dtype, np.float32)
        running = self.running_mean is not None and self.running_var is not None
        batch = self.training or not running
        self._remember(input=x, batch=batch)
        if batch:
            mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
            var = x.var(axis=(0, 2, 3), dtype=np.float64)
            if self.training:
                self._update_running(x, mean, var)
        else:
            mean = self.running_mean.astype(np.float64)  # type: ignore[union-attr]
            var = self.running_var.astype(np.float64)  # type: ignore[union-attr]
        scale = 1.0 / np.sqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias
        y = np.multiply(x, scale.astype(dt)[:, None, None], dtype=dt)
        y += shift.astype(dt)[:, None, None]  # in place: one pass and one array fewer
        return y

    def _update_running(self, x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> None:
        """Training mode: the running statistics' update of one call, as torch's."""
        n = x.shape[0] * x.shape[2] * x.shape[3]
        if n <= 1:
            raise ValueError(
                f"BatchNorm2d: training needs more than 1 value per channel, got input of "
                f"shape {x.shape}"
            )
        if self.running_mean is None or self.running_var is None:
            return
        if self.num_batches_tracked is not None:
            self.num_batches_tracked += 1
        f = self.momentum
        if f is None:
            f = 1.0 / float(self.num_batches_tracked) if self.num_batches_tracked else 0.0
        self.running_mean[...] = (1 - f) * self.running_mean + f * mean
        self.running_var[...] = (1 - f) * self.running_var + f * var * (n / (n - 1))

    def backward(self, grad_output: Any) -> np.ndarray:
        rec = self._recall()
        x = np.asarray(rec["input"])
        gy = _check_grad(type(self).__name__, grad_output, x.shape)
        dt = np.result_type(x.dtype, gy.dtype, np.float32)
        axes = (0, 2, 3)
        batch_stats = rec["batch"]  # how the forward call normalised
        if batch_stats:
            mean = x.mean(axis=axes, dtype=np.float64)
            var = x.var(axis=axes, dtype=np.float64)
        else:
            mean = self.running_mean.astype(np.float64)  # type: ignore[union-attr]
            var = self.running_var.astype(np.float64)  # type: ignore[union-attr]
        inv = 1.0 / np.sqrt(var + self.eps)
        xhat = (x - mean[:, None, None]) * inv[:, None, None]
        g64 = gy.astype(np.float64)
        if self.weight is not None and self.requires_grad:
            self._accumulate("weight", (g64 * xhat).sum(axis=axes))
        if self.bias is not None and self.requires_grad:
            self._accumulate("bias", g64.sum(axis=axes))
        gamma = np.ones_like(inv) if self.weight is None else self.weight.astype(np.float64)
        gxhat = g64 * gamma[:, None, None]
        if batch_stats:  # mean and var depend on x too
            gxhat = (
                gxhat
                - gxhat.mean(axis=axes, keepdims=True)
                - xhat * (gxhat * xhat).mean(axis=axes, keepdims=True)
            )
        return (gxhat * inv[:, None, None]).astype(dt, copy=False)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class _Elementwise(Module):
    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)


class ReLU(_Elementwise):
    """max(x, 0) elementwise, as ``torch.nn.ReLU`` (NaN stays NaN).

    Parameters
    ----------
    inplace : bool, default False
        Write the result into the input (when it is a writeable array).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> nn.ReLU()(np.array([-1.0, 0.5, 2.0]))
    array([0. , 0.5, 2. ])
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = _shapes.as_bool(inplace, "inplace", op=type(self).__name__)

    def forward(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        self._remember(input=x)
        if self.inplace and x.flags.writeable:
            return np.maximum(x, 0, out=x)
        return np.maximum(x, 0).astype(x.dtype, copy=False)

    def backward(self, grad_output: Any) -> np.ndarray:
        # an in-place forward leaves max(x, 0) in the record: positive exactly where x was
        x = np.asarray(self._recall()["input"])
        gy = _check_grad(type(self).__name__, grad_output, x.shape)
        return np.where(x <= 0, np.zeros((), gy.dtype), gy)


class ReLU6(_Elementwise):
    """min(max(x, 0), 6) elementwise, as ``torch.nn.ReLU6``.

    Parameters
    ----------
    inplace : bool, default False
        Write the result into the input (when it is a writeable array).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> nn.ReLU6()(np.array([-1.0, 3.0, 9.0]))
    array([0., 3., 6.])
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = _shapes.as_bool(inplace, "inplace", op=type(self).__name__)

    def forward(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        self._remember(input=x)
        if self.inplace and x.flags.writeable:
            return np.clip(x, 0, 6, out=x)
        return np.clip(x, 0, 6).astype(x.dtype, copy=False)

    def backward(self, grad_output: Any) -> np.ndarray:
        # in place the record holds clip(x, 0, 6): inside (0, 6) exactly where x was
        x = np.asarray(self._recall()["input"])
        gy = _check_grad(type(self).__name__, grad_output, x.shape)
        return np.where((x <= 0) | (x >= 6), np.zeros((), gy.dtype), gy)


class Dropout(_Elementwise):
    """Dropout, as ``torch.nn.Dropout``.

    In inference mode (the mode layers are built in) the identity, returning its input itself;
    in training mode (:meth:`Module.train`) each element is zeroed with probability ``p`` and
    the others are scaled by 1/(1-p).

    Parameters
    ----------
    p : float, default 0.5
        The probability of zeroing an element, in [0, 1].
    inplace : bool, default False
        Write the result into the input (when it is a writeable array of the output's dtype).
    generator : numpy.random.Generator, int or None, default None
        Draws the masks (an int is a seed).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> drop = nn.Dropout(0.5, generator=0)
    >>> x = np.ones((4, 8))
    >>> drop(x) is x  # inference mode
    True
    >>> np.unique(drop.train()(x))  # dropped, or kept and scaled by 1 / (1 - p)
    array([0., 2.])
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, *, generator: Any = None):
        super().__init__()
        name = type(self).__name__
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, float, np.number)):
            raise TypeError(f"{name}: p must be a number, got {p!r}")
        if not 0 <= p <= 1:
            raise ValueError(
                f"{name}: p (the dropout probability) must be between 0 and 1, got {p}"
            )
        self.p = float(p)
        self.inplace = _shapes.as_bool(inplace, "inplace", op=name)
        self.generator = _init.as_generator(generator, name)

    def forward(self, x: Any) -> Any:
        if not self.training:
            self._remember(input_shape=tuple(np.shape(x)))
            return x
        x = np.asarray(x)
        dt = x.dtype if x.dtype.kind == "f" else np.result_type(x.dtype, np.float32)
        # scale: 0 where dropped, 1/(1-p) where kept (each kept with probability 1-p)
        keep = self.generator.random(x.shape) >= self.p
        scale = keep.astype(dt) * (1 / (1 - self.p)) if self.p < 1 else np.zeros(x.shape, dt)
        scale = scale.astype(dt, copy=False)
        self._remember(input_shape=x.shape, scale=scale)
        if self.inplace and x.flags.writeable and x.dtype == dt:
            return np.multiply(x, scale, out=x)
        return np.multiply(x, scale, dtype=dt)

    def backward(self, grad_output: Any) -> Any:
        rec = self._recall()
        _check_grad_shape("Dropout", grad_output, rec["input_shape"])
        if "scale" not in rec:  # an inference-mode call: the identity
            return grad_output
        return np.asarray(grad_output) * rec["scale"]

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Identity(_Elementwise):
    """Returns its input.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> x = np.ones(3)
    >>> nn.Identity()(x) is x
    True
    """

    def forward(self, x: Any) -> Any:
        self._remember(input_shape=tuple(np.shape(x)))
        return x

    def backward(self, grad_output: Any) -> Any:
        shape = self._recall()["input_shape"]
        _check_grad_shape("Identity", grad_output, shape)
        return grad_output


class Flatten(Module):
    """Merges dimensions start_dim..end_dim into one, as ``torch.nn.Flatten``.

    Parameters
    ----------
    start_dim : int, default 1
    end_dim : int, default -1
        Negative values count from the end.

    An input (d0, d1, ..., dk) gives (d0, ..., d[start_dim-1], prod(d[start_dim..end_dim]),
    d[end_dim+1], ...).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> nn.Flatten()(np.ones((2, 3, 4, 5))).shape
    (2, 60)
    >>> nn.Flatten(0, 1).output_shape((2, 3, 4))
    (6, 4)
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        name, lo = type(self).__name__, -_shapes.MAX_PARAM
        self.start_dim = _shapes.as_int(start_dim, "start_dim", minimum=lo, op=name)
        self.end_dim = _shapes.as_int(end_dim, "end_dim", minimum=lo, op=name)

    def output_shape(self, input_shape: Shape) -> Shape:
        n = len(input_shape)
        s = self.start_dim + n if self.start_dim < 0 else self.start_dim
        e = self.end_dim + n if self.end_dim < 0 else self.end_dim
        if not (0 <= s < max(n, 1) and 0 <= e < max(n, 1)) or s > e:
            raise ValueError(
                f"Flatten: start_dim={self.start_dim}, end_dim={self.end_dim} do not fit an "
                f"input of shape {tuple(input_shape)}"
            )
        mid = int(np.prod(input_shape[s : e + 1], dtype=np.int64))
        return tuple(input_shape[:s]) + (mid,) + tuple(input_shape[e + 1 :])

    def forward(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        self._remember(input_shape=x.shape)
        return x.reshape(self.output_shape(x.shape))

    def backward(self, grad_output: Any) -> np.ndarray:
        shape = self._recall()["input_shape"]
        gy = _check_grad("Flatten", grad_output, self.output_shape(shape))
        return gy.reshape(shape)


#: Linear inputs of at most this many rows (batch) run on the C engine's linear kernel.
_C_LINEAR_ROWS = 16


def _c_linear() -> Any:
    """The C engine's linear kernel, or None where the engine is not built."""
    from ..backends import _registry

    mod = _registry.backend_module("c")
    return None if mod is None else getattr(mod, "linear", None)


def c_linear_for(rows: int, dtype: Any) -> Any:
    """The C engine's linear kernel when Linear runs an input of ``rows`` rows in ``dtype`` on
    it (at most 16 rows, float32 / float64, the engine built), else None (NumPy's matmul):
    the one rule Linear.forward follows and cpu_info reports."""
    if rows > _C_LINEAR_ROWS or np.dtype(dtype) not in (np.float32, np.float64):
        return None
    return _c_linear()


class Linear(Module):
    """y = x @ weight.T + bias, as ``torch.nn.Linear``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default True
    dtype : floating dtype, default numpy.float32
    generator : numpy.random.Generator, int or None, default None
        Draws the initial weights (an int is a seed).
    initialize : bool, default True
        Initialise as torch does: weight and bias ~ U(-1/sqrt(in_features),
        1/sqrt(in_features)); False leaves zeros.

    Attributes
    ----------
    weight : ndarray, shape (out_features, in_features)
    bias : ndarray, shape (out_features,), or None

    An input (..., in_features) gives (..., out_features). Inputs of at most 16 rows (the
    product of the leading dimensions) in float32 / float64 run on the C engine's own kernel
    and threads where it is built (NumPy's BLAS would leave its threads spinning on the cores
    after the call, slowing the layers that follow: bench/RESULTS.md, "Linear"); larger
    inputs, and every input without the C engine, use NumPy's matmul.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> lin = nn.Linear(3, 2, dtype=np.float64, initialize=False)
    >>> lin.weight[...] = [[1, 0, 0], [1, 1, 1]]
    >>> lin.bias[...] = 0.5
    >>> lin(np.array([[1.0, 2.0, 3.0]]))
    array([[1.5, 6.5]])
    """

    weight: np.ndarray
    bias: Optional[np.ndarray]

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        dtype: Any = np.float32,
        generator: Any = None,
        initialize: bool = True,
    ):
        super().__init__()
        name = type(self).__name__
        self.in_features = _shapes.as_int(in_features, "in_features", minimum=1, op=name)
        self.out_features = _shapes.as_int(out_features, "out_features", minimum=1, op=name)
        dt = _factory(dtype, name)
        self.register_parameter("weight", np.zeros((self.out_features, self.in_features), dt))
        has_bias = _shapes.as_bool(bias, "bias", op=name)
        self.register_parameter("bias", np.zeros(self.out_features, dt) if has_bias else None)
        if _shapes.as_bool(initialize, "initialize", op=name):
            self.reset_parameters(_init.as_generator(generator, name))

    def reset_parameters(self, generator: Any = None) -> None:
        """torch's default: weight and bias ~ U(-1/sqrt(in_features), 1/sqrt(in_features))."""
        _torch_default_init(self.weight, self.bias, generator)

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) < 1 or input_shape[-1] != self.in_features:
            raise ValueError(
                f"Linear: input's last dimension must be in_features = {self.in_features}, "
                f"got shape {tuple(input_shape)}"
            )
        return tuple(input_shape[:-1]) + (self.out_features,)

    def forward(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        self.output_shape(x.shape)
        self._remember(input=x)
        dt = np.result_type(x.dtype, self.weight.dtype)
        rows = math.prod(x.shape[:-1])
        kernel = c_linear_for(rows, dt)
        if kernel is not None:
            # a few rows: fastconv's kernel on its own threads (csrc/linear.c), not BLAS's,
            # whose threads keep spinning after the call and slow the next layers
            x2 = np.ascontiguousarray(x.reshape(rows, self.in_features), dt)
            w = np.ascontiguousarray(self.weight, dt)
            b = None if self.bias is None else np.ascontiguousarray(self.bias, dt)
            y = np.empty((rows, self.out_features), dt)
            kernel(x2, w, b, y)
            return y.reshape(x.shape[:-1] + (self.out_features,))
        y = np.matmul(x.astype(dt, copy=False), self.weight.T.astype(dt, copy=False))
        if self.bias is not None:
            y += self.bias.astype(dt, copy=False)
        return y

    def backward(self, grad_output: Any) -> np.ndarray:
        x = np.asarray(self._recall()["input"])
        gy = _check_grad("Linear", grad_output, self.output_shape(x.shape))
        dt = np.result_type(x.dtype, self.weight.dtype, gy.dtype)
        g2 = gy.reshape(-1, self.out_features).astype(dt, copy=False)
        x2 = x.reshape(-1, self.in_features).astype(dt, copy=False)
        if self.requires_grad:
            self._accumulate("weight", g2.T @ x2)
            if self.bias is not None:
                self._accumulate("bias", g2.sum(axis=0))
        return (g2 @ self.weight.astype(dt, copy=False)).reshape(x.shape)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )
