"""Capsule layers (Sabour, Frosst and Hinton 2017) on fastconv's kernels, with torch-style
names, arguments and state_dict keys.

- PrimaryCaps: a convolution whose output channels are regrouped into capsules and squashed;
  child ``conv`` (keys ``conv.weight``, ``conv.bias``)
- CapsuleLayer: prediction vectors through one weight matrix per (input, output) capsule pair
  (``weight`` (I, J, Dout, Din), no bias, as the paper), then dynamic routing
- CapsuleMask: keeps one capsule per sample (the label's in training, else the longest)
- CapsNetDecoder: the reconstruction network, masked capsules -> 512 -> 1024 -> image, ReLU,
  ReLU, sigmoid; children ``fc1``, ``fc2``, ``fc3`` (Linear) and ``relu``
- CapsNet: Conv1 + ReLU -> PrimaryCaps -> CapsuleLayer ("digit_caps") [-> CapsuleMask ->
  CapsNetDecoder]; :func:`fastconv.models.capsnet` builds the paper's sizes

Every layer has ``backward`` (after ``retain_inputs()``, as the other layers; the routing
iterations are unrolled: :func:`fastconv.capsule.dynamic_routing_input`), ``output_shape``
and tracing support: accounting counts them with their ``count_ops`` (the prediction vectors
and the routing iterations as MACs, see docs/capsules.md), and receptive fields end at the
primary capsules (``ends_spatial``): each primary capsule's field is that of its grid
position in ``primary_caps.conv``. Capsule tensors are (N, capsules, dimension).

>>> import numpy as np
>>> from fastconv.nn.capsule import CapsNet
>>> net = CapsNet(1, (28, 28), conv_channels=16, primary_capsules=4, generator=0)
>>> v = net(np.zeros((2, 1, 28, 28), np.float32))
>>> v.shape, net.reconstruct(v).shape
((2, 10, 16), (2, 1, 28, 28))
"""

import functools
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from .. import _shapes
from .. import capsule as _caps
from . import init as _init
from .conv import Conv2d
from .layers import Linear, ReLU
from .module import Module, Shape, Tracer, _check_grad, _factory, _join

__all__ = ["CapsNet", "CapsNetDecoder", "CapsuleLayer", "CapsuleMask", "PrimaryCaps"]


def _named(method: Callable) -> Callable:
    """Errors of a layer's constructor or forward call start with the layer's class name:
    "CapsuleLayer: in_dim must be positive, got 0" (the project's rule for every message)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        name = type(self).__name__
        try:
            return method(self, *args, **kwargs)
        except (ValueError, TypeError) as exc:
            if str(exc).startswith(f"{name}: "):
                raise
            raise type(exc)(f"{name}: {exc}") from None

    return wrapper


def _capsules_shape(op: str, shape: Shape, capsules: Optional[int], dim: int) -> None:
    """A capsule tensor's shape must be (N, capsules, dim) (capsules None: any number)."""
    if len(shape) != 3:
        raise ValueError(f"{op}: input must be 3-D (N, capsules, dimension), got shape "
                         f"{tuple(shape)}")
    if capsules is not None and shape[1] != capsules:
        raise ValueError(f"{op}: input has {shape[1]} capsules (dim 1), expected {capsules}")
    if shape[2] != dim:
        raise ValueError(f"{op}: input capsules have dimension {shape[2]} (dim 2), expected "
                         f"{dim}")


class PrimaryCaps(Module):
    """The primary capsules: a KxK convolution to ``num_capsules * capsule_dim`` channels,
    regrouped into capsules and squashed.

    Input (N, C, H, W); the convolution gives (N, num_capsules*capsule_dim, OH, OW), channel
    t*capsule_dim + d being component d of capsule type t; capsule i = (t, oh, ow), i =
    (t*OH + oh)*OW + ow. Output (N, num_capsules*OH*OW, capsule_dim), each capsule squashed.
    With the paper's sizes (256 channels of 20x20 in, 32 types, 8-D, 9x9, stride 2): 6x6
    grid, 1152 capsules.

    Parameters
    ----------
    in_channels : C of the input (N, C, H, W)
    num_capsules : capsule types (32 in the paper)
    capsule_dim : components of each capsule (8)
    kernel_size, stride : the convolution's (9, 2)
    dtype, generator, initialize : as for :class:`fastconv.nn.Conv2d`

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.nn.capsule import PrimaryCaps
    >>> caps = PrimaryCaps(16, num_capsules=4, capsule_dim=8, generator=0)
    >>> u = caps(np.ones((2, 16, 20, 20), np.float32))
    >>> u.shape, sorted(caps.state_dict()), bool(np.all(np.linalg.norm(u, axis=-1) < 1))
    ((2, 144, 8), ['conv.bias', 'conv.weight'], True)
    """

    ends_spatial = True  # receptive fields: capsules are a set, not a map
    rf_note = "capsule i = (type, row, col): RF of conv at (row, col)"

    @_named
    def __init__(self, in_channels: int, num_capsules: int = 32, capsule_dim: int = 8,
                 kernel_size: Any = 9, stride: Any = 2, *, dtype: Any = np.float32,
                 generator: Any = None, initialize: bool = True):
        super().__init__()
        self.num_capsules = _shapes.as_int(num_capsules, "num_capsules", minimum=1)
        self.capsule_dim = _shapes.as_int(capsule_dim, "capsule_dim", minimum=1)
        self.conv = Conv2d(in_channels, self.num_capsules * self.capsule_dim, kernel_size,
                           stride, dtype=dtype, generator=generator, initialize=initialize)

    def _grid(self, input_shape: Shape) -> Tuple[int, int, int]:
        if len(input_shape) != 4:
            raise ValueError(f"PrimaryCaps: input must be 4-D (N, C, H, W), got shape "
                             f"{tuple(input_shape)}")
        N, _, OH, OW = self.conv.output_shape(tuple(input_shape))
        return N, OH, OW

    def output_shape(self, input_shape: Shape) -> Shape:
        N, OH, OW = self._grid(input_shape)
        return (N, self.num_capsules * OH * OW, self.capsule_dim)

    def forward(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        N, OH, OW = self._grid(x.shape)
        y = self.conv(x)  # (N, T*D, OH, OW)
        T, D = self.num_capsules, self.capsule_dim
        s = y.reshape(N, T, D, OH, OW).transpose(0, 1, 3, 4, 2).reshape(N, T * OH * OW, D)
        self._remember(s=s, grid=(OH, OW))
        return _caps.squash(s)

    def backward(self, grad_output: Any) -> np.ndarray:
        rec = self._recall()
        s, (OH, OW) = rec["s"], rec["grid"]
        g = _check_grad("PrimaryCaps", grad_output, s.shape)
        gs = _caps.squash_input(s, g)
        N, T, D = s.shape[0], self.num_capsules, self.capsule_dim
        gy = gs.reshape(N, T, OH, OW, D).transpose(0, 1, 4, 2, 3).reshape(N, T * D, OH, OW)
        return self.conv.backward(gy)

    def count_ops(self, input_shape: Shape) -> Dict[str, int]:
        """Accounting of the regroup-and-squash step, whose input is the convolution's output
        (the convolution is ``conv``'s own record): other ops 2 per element (the squared
        norm, then the scaling)."""
        return {"products": 0, "other_ops": 2 * int(np.prod(input_shape))}

    def _trace(self, tracer: Tracer, name: str, shape: Shape, state: Any):
        conv_shape, state = self.conv._trace(tracer, _join(name, "conv"), shape, state)
        out = self.output_shape(tuple(shape))
        return out, tracer.leaf(name, self, tuple(conv_shape), out, state)

    def extra_repr(self) -> str:
        return f"num_capsules={self.num_capsules}, capsule_dim={self.capsule_dim}"


class CapsuleLayer(Module):
    """A fully connected capsule layer with dynamic routing (the paper's DigitCaps).

    Input u (N, in_capsules, in_dim); ``weight`` (in_capsules, out_capsules, out_dim, in_dim),
    one (out_dim, in_dim) matrix per pair, no bias. Forward: u_hat[n, i, j] = weight[i, j] @
    u[n, i] (:func:`fastconv.capsule.prediction_vectors`), then
    :func:`fastconv.capsule.dynamic_routing` with ``routing_iterations``. Output v (N,
    out_capsules, out_dim). Weights start as N(0, 0.01^2) (``reset_parameters``).

    Parameters
    ----------
    in_capsules, in_dim : I input capsules of in_dim components
    out_capsules, out_dim : J output capsules of out_dim components
    routing_iterations : routing passes (>= 1; 3 in the paper)
    dtype, generator, initialize : the weight's dtype and its N(0, 0.01^2) initialisation

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.nn.capsule import CapsuleLayer
    >>> digits = CapsuleLayer(1152, 8, 10, 16, routing_iterations=3, generator=0)
    >>> digits(np.full((2, 1152, 8), 0.1, np.float32)).shape, digits.weight.shape
    ((2, 10, 16), (1152, 10, 16, 8))
    """

    ends_spatial = True
    weight: np.ndarray

    @_named
    def __init__(self, in_capsules: int, in_dim: int, out_capsules: int, out_dim: int,
                 routing_iterations: int = 3, *, dtype: Any = np.float32,
                 generator: Any = None, initialize: bool = True):
        super().__init__()
        self.in_capsules = _shapes.as_int(in_capsules, "in_capsules", minimum=1)
        self.in_dim = _shapes.as_int(in_dim, "in_dim", minimum=1)
        self.out_capsules = _shapes.as_int(out_capsules, "out_capsules", minimum=1)
        self.out_dim = _shapes.as_int(out_dim, "out_dim", minimum=1)
        self.routing_iterations = _shapes.as_int(routing_iterations, "routing_iterations",
                                                 minimum=1)
        shape = (self.in_capsules, self.out_capsules, self.out_dim, self.in_dim)
        self.register_parameter("weight", np.zeros(shape, _factory(dtype)))
        if _shapes.as_bool(initialize, "initialize"):
            self.reset_parameters(generator)

    def reset_parameters(self, generator: Any = None) -> None:
        """weight ~ N(0, 0.01^2), small enough that the first routing does not saturate."""
        _init.normal_(self.weight, 0.0, 0.01, generator=generator)

    def output_shape(self, input_shape: Shape) -> Shape:
        _capsules_shape("CapsuleLayer", tuple(input_shape), self.in_capsules, self.in_dim)
        return (input_shape[0], self.out_capsules, self.out_dim)

    def forward(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        self.output_shape(x.shape)
        u_hat = _caps.prediction_vectors(x, self.weight, backend=self.backend)
        self._remember(input=x, u_hat=u_hat)
        return _caps.dynamic_routing(u_hat, self.routing_iterations, backend=self.backend)

    def coupling(self, x: Any) -> np.ndarray:
        """The coupling coefficients c (N, in_capsules, out_capsules) of the last routing
        iteration for input ``x`` (no record is kept)."""
        x = np.asarray(x)
        self.output_shape(x.shape)
        u_hat = _caps.prediction_vectors(x, self.weight, backend=self.backend)
        return _caps.dynamic_routing(u_hat, self.routing_iterations, return_coupling=True,
                                     backend=self.backend)[1]

    def backward(self, grad_output: Any) -> np.ndarray:
        rec = self._recall()
        x, u_hat = rec["input"], rec["u_hat"]
        g = _check_grad("CapsuleLayer", grad_output, self.output_shape(x.shape))
        g_hat = _caps.dynamic_routing_input(u_hat, g, self.routing_iterations,
                                            backend=self.backend)
        if not self.requires_grad:
            return _caps.prediction_vectors_input(x.shape, self.weight, g_hat,
                                                  backend=self.backend)
        gx, gw = _caps.prediction_vectors_backward(x, self.weight, g_hat, backend=self.backend)
        self._accumulate("weight", gw)
        return gx

    def count_ops(self, input_shape: Shape) -> Dict[str, int]:
        """MACs: N*I*J*Dout*Din for the prediction vectors plus (2r - 1)*N*I*J*Dout for r
        routing iterations (r weighted sums, r - 1 agreements). Other ops: the softmaxes
        (4 per coupling coefficient: subtract the maximum, exp, sum, divide; r - 1 of them,
        the first coupling is uniform) and squash (2 per element of v, r times)."""
        N = int(input_shape[0])
        I, J, Do, Di = self.weight.shape
        r = self.routing_iterations
        return {"products": N * I * J * Do * Di + (2 * r - 1) * N * I * J * Do,
                "other_ops": 4 * (r - 1) * N * I * J + 2 * r * N * J * Do}

    def extra_repr(self) -> str:
        return (f"in_capsules={self.in_capsules}, in_dim={self.in_dim}, out_capsules="
                f"{self.out_capsules}, out_dim={self.out_dim}, routing_iterations="
                f"{self.routing_iterations}")


class CapsuleMask(Module):
    """Zeroes every capsule but one per sample: (N, J, D) -> (N, J, D).

    ``mask(v, labels)`` keeps capsule labels[n] (training: the true class, as the paper);
    ``mask(v)`` keeps the longest capsule (inference: the predicted class). In training mode
    (:meth:`Module.train`) labels are required.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.nn.capsule import CapsuleMask
    >>> v = np.array([[[0.1, 0.0], [0.0, 0.6]]])
    >>> CapsuleMask()(v)                       # the longest capsule: class 1
    array([[[0. , 0. ],
            [0. , 0.6]]])
    >>> CapsuleMask()(v, np.array([0]))        # the label's capsule
    array([[[0.1, 0. ],
            [0. , 0. ]]])
    """

    ends_spatial = True

    @_named
    def __init__(self):
        super().__init__()
        self._labels: Any = None

    def __call__(self, x: Any, labels: Any = None) -> np.ndarray:
        self._labels = labels
        try:
            return super().__call__(x)
        finally:
            self._labels = None

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 3:
            raise ValueError(f"CapsuleMask: input must be 3-D (N, capsules, dimension), got "
                             f"shape {tuple(input_shape)}")
        return tuple(input_shape)

    @_named
    def forward(self, x: Any) -> np.ndarray:
        v = np.asarray(x)
        N, J, _ = self.output_shape(v.shape)
        labels = self._labels
        if labels is None:
            if self.training:
                raise ValueError("labels are required in training mode (mask by "
                                 "the true class); call mask(v, labels), or eval() to mask by "
                                 "the longest capsule")
            keep = np.argmax(np.sum(np.square(v, dtype=np.float64), axis=-1), axis=-1) if N \
                else np.zeros(0, np.int64)
        else:
            keep = np.asarray(labels)
            if keep.dtype.kind not in "iu":
                raise TypeError(f"labels must be integers (class indices), got dtype "
                                f"{keep.dtype}")
            if keep.shape != (N,):
                raise ValueError(f"labels must have shape ({N},), got {keep.shape}")
            if N and (keep.min() < 0 or keep.max() >= J):
                raise ValueError(f"labels must be class indices in [0, {J}), got "
                                 f"{int(keep[(keep < 0) | (keep >= J)][0])}")
        mask = np.zeros((N, J, 1), v.dtype if v.dtype.kind == "f" else np.float64)
        mask[np.arange(N), keep.astype(np.int64)] = 1
        self._remember(mask=mask, shape=v.shape)
        return v * mask

    def backward(self, grad_output: Any) -> np.ndarray:
        rec = self._recall()
        return _check_grad("CapsuleMask", grad_output, rec["shape"]) * rec["mask"]

    def count_ops(self, input_shape: Shape) -> Dict[str, int]:
        """Other ops: 1 per element (kept or zeroed)."""
        return {"products": 0, "other_ops": int(np.prod(input_shape))}


class CapsNetDecoder(Module):
    """The reconstruction network: masked capsules (N, J, D) -> flattened J*D -> Linear 512 ->
    ReLU -> Linear 1024 -> ReLU -> Linear prod(image_shape) -> sigmoid -> (N, *image_shape).

    Children ``fc1``, ``fc2``, ``fc3`` (Linear, torch's keys) and ``relu``; with the paper's
    10 x 16 capsules and 28x28 images: 1,411,344 parameters.

    Parameters
    ----------
    num_capsules, capsule_dim : J and D of the masked capsules (10, 16)
    image_shape : (C, H, W) of the reconstruction ((1, 28, 28))
    hidden : the two hidden widths ((512, 1024))
    dtype, generator, initialize : as for :class:`fastconv.nn.Linear`

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.nn.capsule import CapsNetDecoder
    >>> dec = CapsNetDecoder(10, 16, (1, 28, 28), generator=0)
    >>> dec.num_parameters(), dec(np.zeros((3, 10, 16), np.float32)).shape
    (1411344, (3, 1, 28, 28))
    """

    ends_spatial = True

    @_named
    def __init__(self, num_capsules: int = 10, capsule_dim: int = 16,
                 image_shape: Sequence[int] = (1, 28, 28), hidden: Sequence[int] = (512, 1024),
                 *, dtype: Any = np.float32, generator: Any = None, initialize: bool = True):
        super().__init__()
        self.num_capsules = _shapes.as_int(num_capsules, "num_capsules", minimum=1)
        self.capsule_dim = _shapes.as_int(capsule_dim, "capsule_dim", minimum=1)
        if not _shapes._is_sequence(image_shape) or len(image_shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {image_shape!r}")
        self.image_shape = tuple(_shapes.as_int(s, "image_shape", minimum=1)
                                 for s in image_shape)
        if not _shapes._is_sequence(hidden) or len(hidden) != 2:
            raise ValueError(f"hidden must be two layer widths, got {hidden!r}")
        h1, h2 = (_shapes.as_int(h, "hidden", minimum=1) for h in hidden)
        gen = _init.as_generator(generator) if initialize else None
        kw = {"dtype": dtype, "generator": gen, "initialize": initialize}
        self.fc1 = Linear(self.num_capsules * self.capsule_dim, h1, **kw)
        self.fc2 = Linear(h1, h2, **kw)
        self.fc3 = Linear(h2, int(np.prod(self.image_shape)), **kw)
        self.relu = ReLU()

    def output_shape(self, input_shape: Shape) -> Shape:
        _capsules_shape("CapsNetDecoder", tuple(input_shape), self.num_capsules,
                        self.capsule_dim)
        return (input_shape[0],) + self.image_shape

    def forward(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        out = self.output_shape(x.shape)
        h = self.relu(self.fc1(x.reshape(x.shape[0], -1)))
        z = self.fc3(self.relu(self.fc2(h)))
        y = 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))  # clip: no overflow warning in exp
        y = y.astype(z.dtype, copy=False)
        self._remember(output=y, input_shape=x.shape)
        return y.reshape(out)

    def backward(self, grad_output: Any) -> np.ndarray:
        rec = self._recall()
        y, shape = rec["output"], rec["input_shape"]
        g = _check_grad("CapsNetDecoder", grad_output, self.output_shape(shape))
        gz = g.reshape(y.shape) * y * (1 - y)  # sigmoid' = y (1 - y)
        gh = self.fc1.backward(self.relu.backward(self.fc2.backward(
            self.relu.backward(self.fc3.backward(gz)))))
        return np.asarray(gh).reshape(shape)

    def count_ops(self, input_shape: Shape) -> Dict[str, int]:
        """The sigmoid and reshape after ``fc3`` (whose output is ``input_shape``): other ops
        1 per element."""
        return {"products": 0, "other_ops": int(np.prod(input_shape))}

    def _trace(self, tracer: Tracer, name: str, shape: Shape, state: Any):
        out = self.output_shape(tuple(shape))
        s: Shape = (shape[0], self.num_capsules * self.capsule_dim)
        for child, sub in (("fc1", self.fc1), ("relu", self.relu), ("fc2", self.fc2),
                           ("relu", self.relu), ("fc3", self.fc3)):
            s, state = sub._trace(tracer, _join(name, child), s, state)
        return out, tracer.leaf(name, self, tuple(s), out, state)


class CapsNet(Module):
    """CapsNet (Sabour, Frosst and Hinton 2017): Conv1 + ReLU -> PrimaryCaps -> DigitCaps with
    dynamic routing, and optionally the masked reconstruction decoder.

    Children ``conv1`` (Conv2d, KxK, stride 1), ``relu``, ``primary_caps`` (PrimaryCaps),
    ``digit_caps`` (CapsuleLayer) and, with ``decoder``, ``mask`` (CapsuleMask) and
    ``decoder`` (CapsNetDecoder). ``forward(x)`` (x (N, C, H, W)) returns the class capsules
    v (N, num_classes, digit_dim), whose lengths are the class probabilities;
    :meth:`reconstruct` runs the mask and the decoder; :meth:`backward` takes dL/dv and,
    optionally, dL/d(reconstruction). Tracing (accounting, summary) follows the inference
    path: ..., digit_caps, mask, decoder; the model's output shape is v's.

    Parameters
    ----------
    in_channels, image_size : the input images (C, (H, W)); (1, (28, 28)) in the paper
    num_classes : output capsules (10)
    routing_iterations : routing passes of DigitCaps (3)
    decoder : build the reconstruction decoder (True)
    conv_channels, kernel_size : Conv1's (256, 9)
    primary_capsules, primary_dim, primary_stride : PrimaryCaps' (32, 8, 2)
    digit_dim : components of the class capsules (16)
    decoder_hidden : the decoder's hidden widths ((512, 1024))
    dtype, generator, initialize : as for every layer

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.nn.capsule import CapsNet
    >>> net = CapsNet(1, (28, 28), conv_channels=16, primary_capsules=4, generator=0)
    >>> x = np.zeros((2, 1, 28, 28), np.float32)
    >>> net.retain_inputs().train()                            # doctest: +ELLIPSIS
    CapsNet(...)
    >>> v = net(x)
    >>> recon = net.reconstruct(v, np.array([3, 7]))           # masked by the labels
    >>> gx = net.backward(np.ones_like(v), recon - x)          # dL/dv and dL/d(recon)
    >>> gx.shape, sorted(dict(net.named_grads()))[:3]
    ((2, 1, 28, 28), ['conv1.bias', 'conv1.weight', 'decoder.fc1.bias'])
    """

    @_named
    def __init__(self, in_channels: int = 1, image_size: Sequence[int] = (28, 28),
                 num_classes: int = 10, routing_iterations: int = 3, decoder: bool = True, *,
                 conv_channels: int = 256, kernel_size: int = 9, primary_capsules: int = 32,
                 primary_dim: int = 8, primary_stride: int = 2, digit_dim: int = 16,
                 decoder_hidden: Sequence[int] = (512, 1024), dtype: Any = np.float32,
                 generator: Any = None, initialize: bool = True):
        super().__init__()
        c = _shapes.as_int(in_channels, "in_channels", minimum=1)
        if not _shapes._is_sequence(image_size) or len(image_size) != 2:
            raise ValueError(f"image_size must be (H, W), got {image_size!r}")
        H, W = (_shapes.as_int(s, "image_size", minimum=1) for s in image_size)
        self.input_shape = (c, H, W)
        nc = _shapes.as_int(num_classes, "num_classes", minimum=1)
        # the children's arguments under this constructor's names, before any child is built
        for value, name in ((conv_channels, "conv_channels"), (kernel_size, "kernel_size"),
                            (primary_capsules, "primary_capsules"),
                            (primary_dim, "primary_dim"), (primary_stride, "primary_stride"),
                            (digit_dim, "digit_dim"),
                            (routing_iterations, "routing_iterations")):
            _shapes.as_int(value, name, minimum=1)
        if not _shapes._is_sequence(decoder_hidden) or len(decoder_hidden) != 2:
            raise ValueError(f"decoder_hidden must be two layer widths, got {decoder_hidden!r}")
        for h in decoder_hidden:
            _shapes.as_int(h, "decoder_hidden", minimum=1)
        decoder = _shapes.as_bool(decoder, "decoder")
        gen = _init.as_generator(generator) if initialize else None
        kw = {"dtype": dtype, "generator": gen, "initialize": initialize}
        self.conv1 = Conv2d(c, conv_channels, kernel_size, **kw)
        self.relu = ReLU()
        self.primary_caps = PrimaryCaps(conv_channels, primary_capsules, primary_dim,
                                        kernel_size, primary_stride, **kw)
        # the shapes fix the number of primary capsules (1152 for 28x28 and the paper's sizes)
        _, n_primary, _ = self.primary_caps.output_shape(
            self.conv1.output_shape((1, c, H, W)))
        self.digit_caps = CapsuleLayer(n_primary, primary_dim, nc, digit_dim,
                                       routing_iterations, **kw)
        if decoder:
            self.mask = CapsuleMask()
            self.decoder = CapsNetDecoder(nc, digit_dim, self.input_shape, decoder_hidden,
                                          **kw)

    @property
    def has_decoder(self) -> bool:
        return "decoder" in self._modules

    def output_shape(self, input_shape: Shape) -> Shape:
        s = self.relu.output_shape(self.conv1.output_shape(tuple(input_shape)))
        return self.digit_caps.output_shape(self.primary_caps.output_shape(s))

    def forward(self, x: Any) -> np.ndarray:
        return self.digit_caps(self.primary_caps(self.relu(self.conv1(x))))

    @staticmethod
    def lengths(v: Any) -> np.ndarray:
        """|v| over the last axis: the class probabilities (N, num_classes)."""
        v = np.asarray(v)
        return np.sqrt(np.sum(np.square(v, dtype=np.float64), axis=-1)).astype(
            v.dtype if v.dtype.kind == "f" else np.float64)

    @staticmethod
    def lengths_input(v: Any, grad_lengths: Any) -> np.ndarray:
        """dL/dv from dL/d|v| = ``grad_lengths`` (N, num_classes): g v / |v|, 0 where v = 0."""
        v = np.asarray(v)
        g = np.asarray(grad_lengths)
        n = np.sqrt(np.sum(np.square(v, dtype=np.float64), axis=-1, keepdims=True))
        with np.errstate(divide="ignore", invalid="ignore"):
            unit = np.where(n > 0, v / n, 0.0)
        return (g[..., None] * unit).astype(np.result_type(v.dtype, g.dtype, np.float32))

    def predict(self, x: Any) -> np.ndarray:
        """The class of each sample: the longest class capsule (N,) int64."""
        return np.argmax(self.lengths(self(x)), axis=-1)

    def reconstruct(self, v: Any, labels: Any = None) -> np.ndarray:
        """The decoder's image (N, C, H, W) from the class capsules v, all but the capsule of
        ``labels`` (or, without labels, of the longest capsule) masked out."""
        if not self.has_decoder:
            raise ValueError("reconstruct: this CapsNet was built with decoder=False")
        return self.decoder(self.mask(v, labels))

    def backward(self, grad_output: Any, grad_reconstruction: Any = None) -> np.ndarray:
        """dL/dx from dL/dv = ``grad_output`` (None: zero) and, if the latest forward call was
        followed by :meth:`reconstruct`, dL/d(reconstruction) = ``grad_reconstruction``; the
        parameter gradients are added into each layer's ``grads``."""
        gv = None if grad_output is None else np.asarray(grad_output)
        if grad_reconstruction is not None:
            if not self.has_decoder:
                raise ValueError("backward: grad_reconstruction given but the model has no "
                                 "decoder")
            g_mask = self.mask.backward(self.decoder.backward(grad_reconstruction))
            gv = g_mask if gv is None else gv + g_mask
        if gv is None:
            raise ValueError("backward: give grad_output, grad_reconstruction or both")
        g = self.primary_caps.backward(self.digit_caps.backward(gv))
        return self.conv1.backward(self.relu.backward(g))

    def _trace(self, tracer: Tracer, name: str, shape: Shape, state: Any):
        for child in ("conv1", "relu", "primary_caps", "digit_caps"):
            shape, state = self._modules[child]._trace(tracer, _join(name, child), shape, state)
        out = (shape, state)
        if self.has_decoder:
            s, st = self.mask._trace(tracer, _join(name, "mask"), shape, state)
            self.decoder._trace(tracer, _join(name, "decoder"), s, st)
        return out
