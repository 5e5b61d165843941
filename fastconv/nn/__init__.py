"""Layers on NumPy arrays, with torch.nn's class names, constructor arguments and state_dict keys.

Parameters and buffers are plain NumPy arrays held in attributes with torch's names (``weight``,
``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``); children are attributes
too, so ``model.layer1[0].conv1.weight`` and the state_dict key ``layer1.0.conv1.weight`` name
the same array. Weights exported from torch (``{k: v.numpy() for k, v in sd.items()}``, saved
with ``numpy.savez``) load unchanged with :meth:`Module.load_state_dict`.

Modes: layers are built in inference mode (``training`` False, unlike torch, where a new
module trains): BatchNorm2d uses its running statistics, Dropout is the identity.
:meth:`Module.train` switches a tree to torch's training behaviour (BatchNorm2d normalises
with the batch's statistics and updates its running statistics with ``momentum``; Dropout
zeroes elements with probability ``p`` and scales the rest by 1/(1-p)); :meth:`Module.eval`
switches back. Convolutions and pooling go through fastconv's ops with the layer's
``backend`` attribute ("auto" by default; :meth:`Module.set_backend` sets a whole tree).
Every layer takes real inputs (floating, integer or bool); complex, object and string
arrays raise TypeError, as fastconv's functions do.

Layer list: Conv1d, Conv2d, ConvTranspose2d, DepthwiseSeparableConv2d, MaxPool2d, AvgPool2d,
AdaptiveAvgPool2d, AdaptiveMaxPool2d, BatchNorm2d, ReLU, ReLU6, Linear, Flatten, Dropout,
Identity; containers Sequential, Residual (add, optional projection), Concat (channel concat).

Backward: :meth:`Module.retain_inputs` makes every layer keep what its backward needs
(its input; max pooling also its argmax indices; Concat its branch channel counts) on each
forward call; ``layer.cache`` shows the latest call's record (None when not retaining).
``model.backward(grad_output)`` then returns dL/d(input) for dL/d(output) = grad_output
and adds each parameter's gradient into ``layer.grads[name]`` (``name`` as in the
state_dict: "weight", "bias"; ``model.named_grads()`` gives the qualified keys). Gradients
accumulate over backward calls until :meth:`Module.zero_grad`, as in torch. Convolutions
and pools differentiate with :mod:`fastconv.grad` on the layer's backend. Every forward call
can be back-propagated once (its records are consumed, latest first, so a module used
several times in one forward pass, like a shared ReLU, is handled); backward without a
retained forward raises RuntimeError. :class:`SGD` steps the parameters in place.

Shape propagation without computing (used by accounting, receptive fields and summaries):
every layer has ``output_shape(input_shape)``, sized by ``fastconv._shapes``, and ``_trace``
walks the tree calling a tracer's ``leaf`` and ``merge`` hooks (see :class:`Tracer`).

>>> import numpy as np
>>> from fastconv import nn
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
>>> net(np.ones((1, 3, 8, 8), np.float32)).shape
(1, 8, 4, 4)
>>> sorted(net.state_dict())
['0.bias', '0.weight']
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _shapes
from ..backends._registry import _spec, backend_names, resolve_dtypes
from ..ops import grad as _grad
from ..ops.conv import conv1d, conv2d, conv_transpose2d, separable_conv2d
from ..ops.pool import adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, max_pool2d
from . import init as _init

__all__ = [
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AvgPool2d",
    "BatchNorm2d",
    "Concat",
    "Conv1d",
    "Conv2d",
    "ConvTranspose2d",
    "DepthwiseSeparableConv2d",
    "Dropout",
    "Flatten",
    "Identity",
    "IncompatibleKeys",
    "Linear",
    "MaxPool2d",
    "Module",
    "ReLU",
    "ReLU6",
    "Residual",
    "SGD",
    "Sequential",
    "Tracer",
]

Shape = Tuple[int, ...]


_calling = threading.local()  # .depth: how many Module calls are running in this thread


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _as_numpy(value: Any, key: str) -> np.ndarray:
    """A state_dict value as a NumPy array (NumPy arrays, torch CPU tensors, lists)."""
    try:
        if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
            value = value.detach().cpu().numpy()
        return np.asarray(value)
    except Exception as exc:
        raise TypeError(f"state_dict[{key!r}] is not an array: {exc}") from None


def _converted(value: np.ndarray, like: np.ndarray, key: str) -> np.ndarray:
    """``value`` converted to ``like``'s dtype, as loading will write it; only real numbers
    (bool, integer, floating) are accepted, so the write itself cannot fail."""
    if value.dtype.kind not in "biuf":
        raise TypeError(
            f"state_dict[{key!r}] has dtype {value.dtype}; expected real numbers for the "
            f"model's {like.dtype} array"
        )
    if not like.flags.writeable:
        raise ValueError(f"cannot load state_dict[{key!r}]: the model's array is read-only")
    return value.astype(like.dtype, copy=False)


def _check_input(x: Any) -> None:
    """Every layer's input check (run by :meth:`Module.__call__`): real numbers only, as
    fastconv's functions (``_registry.resolve_dtypes``) accept. Device arrays are not copied."""
    resolve_dtypes({"input": x.dtype if type(x) is np.ndarray else _spec(x, "input")[1]})


class IncompatibleKeys(NamedTuple):
    """What :meth:`Module.load_state_dict` with ``strict=False`` did not match."""

    missing_keys: List[str]
    unexpected_keys: List[str]


class Tracer:
    """Hooks called by :meth:`Module._trace` while it propagates shapes through a model.

    ``state`` is whatever the tracer carries along one path (receptive-field geometry, say);
    containers pass it down their paths and hand the paths' states to ``merge``.
    """

    def leaf(self, name: str, module: Module, in_shape: Shape, out_shape: Shape, state: Any):
        return state

    def merge(
        self,
        name: str,
        module: Module,
        how: str,
        in_shapes: List[Shape],
        out_shape: Shape,
        states: List[Any],
    ):
        """``how`` is "add" (Residual) or "concat" (Concat); one state per path."""
        return states[0]


class Module:
    """Base class: children, parameters, buffers, state_dict, backend, cache, tracing."""

    _modules: OrderedDict[str, Module]
    _param_names: List[str]
    _buffer_names: List[str]

    def __init__(self) -> None:
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_param_names", [])
        object.__setattr__(self, "_buffer_names", [])
        self.backend = "auto"
        self.keep_cache = False
        self.cache: Optional[Dict[str, Any]] = None
        # parameter gradients by parameter name, filled by backward, emptied by zero_grad
        self.grads: Dict[str, np.ndarray] = {}
        self.requires_grad = True  # False: backward skips this layer's parameter gradients
        self.training = False  # see train(): fastconv layers are built in inference mode
        # one record per retained forward call not yet back-propagated (latest last)
        self._calls: List[Dict[str, Any]] = []

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Module):
            self.add_module(name, value)
            return
        if name in self.__dict__.get("_modules", {}):
            raise TypeError(f"cannot replace child module {name!r} by a {type(value).__name__}")
        object.__setattr__(self, name, value)

    def add_module(self, name: str, module: Module) -> None:
        """Register ``module`` as the child ``name`` (also the attribute ``self.<name>``)."""
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"module name must be a non-empty string without '.', got {name!r}")
        if not isinstance(module, Module):
            raise TypeError(f"{name} must be a fastconv.nn.Module, got {type(module).__name__}")
        if name in self._param_names or name in self._buffer_names:
            raise ValueError(f"{name!r} is already a parameter or buffer")
        if name not in self._modules and hasattr(self, name):
            # as torch: a child must not shadow a method or attribute ("forward", "cache", ...)
            raise ValueError(
                f"cannot add child module {name!r} to {type(self).__name__}: attribute "
                f"{name!r} already exists"
            )
        self._modules[name] = module
        object.__setattr__(self, name, module)

    def register_parameter(self, name: str, array: Optional[np.ndarray]) -> None:
        """Register a parameter (None allowed: e.g. ``bias=False`` keeps ``self.bias = None``)."""
        if name not in self._param_names:
            self._param_names.append(name)
        object.__setattr__(self, name, array)

    def register_buffer(self, name: str, array: Optional[np.ndarray]) -> None:
        """Register a buffer: state that is saved but is not a parameter (BN running stats)."""
        if name not in self._buffer_names:
            self._buffer_names.append(name)
        object.__setattr__(self, name, array)

    # ------------------------------------------------------------------ traversal
    def children(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def named_children(self) -> Iterator[Tuple[str, Module]]:
        return iter(self._modules.items())

    def named_modules(self, prefix: str = "") -> Iterator[Tuple[str, Module]]:
        """(qualified name, module) of self and every descendant, each module once."""
        seen: set = set()

        def walk(mod: Module, pre: str):
            if id(mod) in seen:
                return
            seen.add(id(mod))
            yield pre, mod
            for n, child in mod._modules.items():
                yield from walk(child, _join(pre, n))

        yield from walk(self, prefix)

    def _named_tensors(self, which: str) -> Iterator[Tuple[str, np.ndarray]]:
        for pre, mod in self.named_modules():
            for n in getattr(mod, which):
                arr = getattr(mod, n)
                if arr is not None:
                    yield _join(pre, n), arr

    def named_parameters(self) -> Iterator[Tuple[str, np.ndarray]]:
        return self._named_tensors("_param_names")

    def parameters(self) -> Iterator[np.ndarray]:
        return (a for _, a in self.named_parameters())

    def named_buffers(self) -> Iterator[Tuple[str, np.ndarray]]:
        return self._named_tensors("_buffer_names")

    def num_parameters(self) -> int:
        """Number of parameter elements (as ``sum(p.numel() for p in m.parameters())``)."""
        seen: Dict[int, int] = {}
        for p in self.parameters():
            seen[id(p)] = int(p.size)
        return sum(seen.values())

    # ------------------------------------------------------------------ state dict
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Parameters and buffers by torch's key names, in torch's order (the arrays, not
        copies)."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()

        def walk(mod: Module, pre: str):
            for n in mod._param_names + mod._buffer_names:
                arr = getattr(mod, n)
                if arr is not None:
                    out[_join(pre, n)] = arr
            for n, child in mod._modules.items():
                walk(child, _join(pre, n))

        walk(self, "")
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> IncompatibleKeys:
        """Copy arrays from a mapping of torch key names (a dict, an ``np.load``-ed .npz file,
        a torch state_dict) into this model's parameters and buffers, in place.

        With ``strict`` (the default) missing and unexpected keys are an error; shape
        mismatches always are. Nothing is modified unless every check passes. Returns the
        missing and unexpected keys.
        """
        strict = _shapes.as_bool(strict, "strict")
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(
                f"state_dict must be a mapping of key names to arrays, got "
                f"{type(state_dict).__name__}"
            )
        own = self.state_dict()
        given = list(state_dict.keys())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in given if k not in own]
        # every value is converted (and so checked) before anything is written
        values = {}
        mismatched = []
        for k in given:
            if k not in own:
                continue
            v = _as_numpy(state_dict[k], k)
            if v.shape != own[k].shape:
                mismatched.append(f"{k}: checkpoint {v.shape}, model {own[k].shape}")
                continue
            values[k] = _converted(v, own[k], k)
        problems = []
        if strict and missing:
            problems.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if mismatched:
            problems.append(f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched)}")
        if problems:
            raise ValueError(
                f"error loading state_dict into {type(self).__name__}: " + " | ".join(problems)
            )
        for k, v in values.items():
            own[k][...] = v
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ modes
    def set_backend(self, backend: str) -> Module:
        """Set the engine of this module and all its descendants ("auto", "c", ...)."""
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a string, one of {backend_names()}, got {backend!r}")
        if backend not in backend_names():
            raise ValueError(f"backend must be one of {backend_names()}, got {backend!r}")
        for _, m in self.named_modules():
            m.backend = backend
        return self

    def retain_inputs(self, flag: bool = True) -> Module:
        """Keep (or stop keeping) what each layer's backward will need in ``layer.cache``."""
        flag = _shapes.as_bool(flag, "flag")
        for _, m in self.named_modules():
            m.keep_cache = flag
            if not flag:
                m.cache = None
                m._calls = []
        return self

    def train(self, mode: bool = True) -> Module:
        """Set ``training`` of this module and its descendants, as ``torch.nn.Module.train``:
        True makes BatchNorm2d use (and update) batch statistics and Dropout drop elements;
        False (:meth:`eval`, the state layers are built in) runs them in inference mode."""
        mode = _shapes.as_bool(mode, "mode")
        for _, m in self.named_modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        """Inference mode, as ``torch.nn.Module.eval``: ``self.train(False)``."""
        return self.train(False)

    def _remember(self, **items: Any) -> None:
        if self.keep_cache:
            self.cache = items
            self._calls.append(items)

    def _recall(self) -> Dict[str, Any]:
        """The latest retained forward call's record, consumed (backward runs calls in reverse)."""
        if not self._calls:
            raise RuntimeError(
                f"{type(self).__name__}.backward: no retained forward call to differentiate; "
                "call model.retain_inputs() and run forward first (each forward call can be "
                "back-propagated once)"
            )
        return self._calls.pop()

    # ------------------------------------------------------------------ running
    def forward(self, x: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def __call__(self, x: Any) -> Any:
        # a call from outside any forward pass starts a new pass: records of earlier passes
        # that were never back-propagated are dropped so they do not pile up
        outer = getattr(_calling, "depth", 0) == 0
        if outer:
            for _, m in self.named_modules():
                if m._calls:
                    m._calls = []
        _check_input(x)
        _calling.depth = getattr(_calling, "depth", 0) + 1
        try:
            return self.forward(x)
        finally:
            _calling.depth -= 1

    # ------------------------------------------------------------------ gradients
    def backward(self, grad_output: Any) -> Any:
        """dL/d(input) of the latest retained forward call, given dL/d(output) = grad_output
        (the forward output's shape); parameter gradients are added into ``self.grads``."""
        raise NotImplementedError(f"{type(self).__name__} does not define backward")

    def _accumulate(self, name: str, g: Any) -> None:
        p = getattr(self, name)
        if p is None:
            return
        g = np.asarray(g).astype(p.dtype, copy=False).reshape(p.shape)
        if name in self.grads:
            self.grads[name] = self.grads[name] + g
        else:
            self.grads[name] = g

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Whether backward computes parameter gradients in this module and its descendants
        (input gradients are always computed); False saves the weight-gradient convolutions
        when only dL/d(input) is wanted, as for effective receptive fields."""
        flag = _shapes.as_bool(requires_grad, "requires_grad")
        for _, m in self.named_modules():
            m.requires_grad = flag
        return self

    def zero_grad(self) -> None:
        """Forget every parameter gradient of this module and its descendants."""
        for _, m in self.named_modules():
            m.grads = {}

    def named_grads(self) -> Iterator[Tuple[str, np.ndarray]]:
        """(state_dict key, gradient) of every parameter that has a gradient."""
        for pre, mod in self.named_modules():
            for n in mod._param_names:
                if n in mod.grads and getattr(mod, n) is not None:
                    yield _join(pre, n), mod.grads[n]

    def output_shape(self, input_shape: Shape) -> Shape:
        """The shape ``forward`` returns for an input of ``input_shape``, without computing."""
        raise NotImplementedError(f"{type(self).__name__} does not define output_shape")

    def _trace(self, tracer: Tracer, name: str, shape: Shape, state: Any) -> Tuple[Shape, Any]:
        """Propagate ``shape`` (and the tracer's ``state``) through this module."""
        try:
            out = tuple(self.output_shape(tuple(shape)))
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{name or type(self).__name__}: {exc}") from None
        return out, tracer.leaf(name, self, tuple(shape), out, state)

    # ------------------------------------------------------------------ display
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for n, m in self._modules.items():
                sub = repr(m).replace("\n", "\n  ")
                lines.append(f"  ({n}): {sub}")
            return "\n".join(lines) + "\n)"
        return lines[0] + ")"


def _check_grad_shape(op: str, grad_output: Any, shape: Shape) -> None:
    """grad_output must have the forward output's ``shape`` (device arrays are not copied)."""
    got = tuple(np.shape(grad_output))
    if got != tuple(shape):
        raise ValueError(
            f"{op}.backward: grad_output must have the forward output's shape {tuple(shape)}, "
            f"got {got}"
        )


def _check_grad(op: str, grad_output: Any, shape: Shape) -> np.ndarray:
    gy = np.asarray(grad_output)
    _check_grad_shape(op, gy, shape)
    return gy


def _torch_default_init(weight: np.ndarray, bias: Optional[np.ndarray], generator: Any) -> None:
    """torch's default init of Conv*d and Linear (see ``_ConvNd.reset_parameters``)."""
    gen = _init.as_generator(generator)
    _init.kaiming_uniform_(weight, a=math.sqrt(5), generator=gen)
    if bias is not None:
        fan_in, _ = _init.calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        _init.uniform_(bias, -bound, bound, generator=gen)


def _factory(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"dtype must be a floating dtype, got {dt}")
    return dt


# ====================================================================== convolutions


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
        nd = self.nd
        self.in_channels = _shapes.as_int(in_channels, "in_channels", minimum=1)
        self.out_channels = _shapes.as_int(out_channels, "out_channels", minimum=1)
        self.kernel_size = _shapes.as_tuple(kernel_size, "kernel_size", nd, minimum=1)
        self.stride = _shapes.as_tuple(stride, "stride", nd, minimum=1)
        self.dilation = _shapes.as_tuple(dilation, "dilation", nd, minimum=1)
        self.groups = _shapes.as_int(groups, "groups", minimum=1)
        self.padding_mode = _shapes.padding_mode(padding_mode)
        if isinstance(padding, str):
            if self.transposed:
                raise TypeError(
                    f"{name}: padding must be an int or a tuple of ints, got {padding!r}"
                )
            # validates 'same' / 'valid' (and 'same' needs stride 1) as the op will
            _shapes.conv_padding(padding, nd, self.kernel_size, self.dilation, self.stride, name)
            self.padding: Any = padding
        else:
            self.padding = _shapes.as_tuple(padding, "padding", nd, minimum=0)
        self.output_padding = _shapes.as_tuple(output_padding, "output_padding", nd, minimum=0)
        if self.transposed:
            if self.padding_mode != "zeros":
                raise ValueError(f"{name}: padding_mode must be 'zeros', got {padding_mode!r}")
            for op_, s, d in zip(self.output_padding, self.stride, self.dilation):
                if op_ >= max(s, d):
                    raise ValueError(
                        f"{name}: output_padding must be smaller than either stride or dilation, "
                        f"got output_padding={self.output_padding}, stride={self.stride}, "
                        f"dilation={self.dilation}"
                    )
        if self.in_channels % self.groups:
            raise ValueError(
                f"{name}: in_channels ({in_channels}) must be divisible by groups ({groups})"
            )
        if self.out_channels % self.groups:
            raise ValueError(
                f"{name}: out_channels ({out_channels}) must be divisible by groups ({groups})"
            )
        dt = _factory(dtype)
        if self.transposed:
            wshape = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
        else:
            wshape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.register_parameter("weight", np.zeros(wshape, dt))
        self.register_parameter(
            "bias", np.zeros(self.out_channels, dt) if _shapes.as_bool(bias, "bias") else None
        )
        if _shapes.as_bool(initialize, "initialize"):
            self.reset_parameters(generator)

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
            _shapes.check_explicit_padding(self.padding_mode, g)
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
            if explicit:  # the forward pass padded x itself; differentiate through the pad
                xp = _pad(x, g, self.padding_mode)
                pad = 0
            gx = f_in(
                xp.shape, self.weight, gy, self.stride, pad, self.dilation, self.groups, backend=be
            )
            if explicit:
                gx = _unpad(gx, g, self.padding_mode)
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


_PAD_MODE: Dict[str, Any] = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad_axes(g: _shapes.ConvGeometry, ndim: int) -> List[Tuple[int, int, int]]:
    """(axis, before, after) for each padded spatial axis of an input with ``ndim`` dims."""
    axes = [(ndim - 1, g.pad[2], g.pad[3])]
    if g.nd == 2:
        axes.insert(0, (ndim - 2, g.pad[0], g.pad[1]))
    return axes


def _pad(x: np.ndarray, g: _shapes.ConvGeometry, mode: str) -> np.ndarray:
    """x padded as the forward conv pads it for ``padding_mode`` = mode."""
    widths = [(0, 0)] * x.ndim
    for ax, p0, p1 in _pad_axes(g, x.ndim):
        widths[ax] = (p0, p1)
    return np.pad(x, widths, _PAD_MODE[mode])


def _unpad(gp: np.ndarray, g: _shapes.ConvGeometry, mode: str) -> np.ndarray:
    """The adjoint of :func:`_pad`: every padded position's gradient is added back to the
    input position it copies (padding reads x[idx] along each axis; its adjoint scatters)."""
    for ax, p0, p1 in _pad_axes(g, gp.ndim):
        n = gp.shape[ax] - p0 - p1
        idx = np.pad(np.arange(n), (p0, p1), _PAD_MODE[mode])
        moved = np.moveaxis(gp, ax, 0)
        out = np.zeros((n,) + moved.shape[1:], gp.dtype)
        np.add.at(out, idx, moved)
        gp = np.moveaxis(out, 0, ax)
    return gp


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
    """2-D convolution layer, as ``torch.nn.Conv2d``: weight (OC, C/G, KH, KW), bias (OC,).

    Input (N, C, H, W) or (C, H, W); output sizes as :func:`fastconv.conv2d`.
    """

    nd = 2
    _function = staticmethod(conv2d)


class Conv1d(_Conv):
    """1-D convolution layer, as ``torch.nn.Conv1d``: weight (OC, C/G, K), bias (OC,).

    Input (N, C, L) or (C, L); output sizes as :func:`fastconv.conv1d`.
    """

    nd = 1
    _function = staticmethod(conv1d)


class ConvTranspose2d(_ConvNd):
    """2-D transposed convolution layer, as ``torch.nn.ConvTranspose2d``: weight
    (C, OC/G, KH, KW), bias (OC,). Output sizes as :func:`fastconv.conv_transpose2d`.
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
    """Depthwise KxK convolution (groups = in_channels, ``depth_multiplier`` filters per
    channel) followed by a 1x1 pointwise convolution, run as one :func:`fastconv.separable_conv2d`.

    Children ``depthwise`` (Conv2d(C, C*m, K, groups=C)) and ``pointwise`` (Conv2d(C*m, OC, 1)),
    so the keys are ``depthwise.weight``, ``depthwise.bias``, ``pointwise.weight``,
    ``pointwise.bias``. Stride, padding and dilation are the depthwise step's.
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
        m = _shapes.as_int(depth_multiplier, "depth_multiplier", minimum=1)
        c = _shapes.as_int(in_channels, "in_channels", minimum=1)
        gen = _init.as_generator(generator) if initialize else None
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


# ====================================================================== pooling


class MaxPool2d(Module):
    """2-D max pooling layer, as ``torch.nn.MaxPool2d`` (see :func:`fastconv.max_pool2d`)."""

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
        self.kernel_size = _shapes.as_tuple(kernel_size, "kernel_size", 2, minimum=1)
        self.stride = (
            self.kernel_size if stride is None else _shapes.as_tuple(stride, "stride", 2, minimum=1)
        )
        self.padding = _shapes.as_tuple(padding, "padding", 2, minimum=0)
        self.dilation = _shapes.as_tuple(dilation, "dilation", 2, minimum=1)
        self.return_indices = _shapes.as_bool(return_indices, "return_indices")
        self.ceil_mode = _shapes.as_bool(ceil_mode, "ceil_mode")

    def geometry(self, input_shape: Shape) -> _shapes.PoolGeometry:
        return _shapes.pool_geometry(
            "MaxPool2d",
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
    """2-D average pooling layer, as ``torch.nn.AvgPool2d`` (see :func:`fastconv.avg_pool2d`)."""

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
        self.kernel_size = _shapes.as_tuple(kernel_size, "kernel_size", 2, minimum=1)
        self.stride = (
            self.kernel_size if stride is None else _shapes.as_tuple(stride, "stride", 2, minimum=1)
        )
        self.padding = _shapes.as_tuple(padding, "padding", 2, minimum=0)
        self.dilation = (1, 1)
        self.ceil_mode = _shapes.as_bool(ceil_mode, "ceil_mode")
        self.count_include_pad = _shapes.as_bool(count_include_pad, "count_include_pad")
        _shapes.divisor_override(divisor_override)
        self.divisor_override = divisor_override

    def geometry(self, input_shape: Shape) -> _shapes.PoolGeometry:
        return _shapes.pool_geometry(
            "AvgPool2d",
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
    """2-D adaptive average pooling, as ``torch.nn.AdaptiveAvgPool2d``."""

    def forward(self, x: Any) -> np.ndarray:
        self._remember(input=x)
        return adaptive_avg_pool2d(x, self.output_size, backend=self.backend)

    def backward(self, grad_output: Any) -> np.ndarray:
        shape = np.shape(self._recall()["input"])
        _check_grad_shape(type(self).__name__, grad_output, self.output_shape(shape))
        return _grad.adaptive_avg_pool2d_input(shape, grad_output, backend=self.backend)


class AdaptiveMaxPool2d(_AdaptivePool2d):
    """2-D adaptive max pooling, as ``torch.nn.AdaptiveMaxPool2d``."""

    def __init__(self, output_size: Any, return_indices: bool = False):
        super().__init__(output_size)
        self.return_indices = _shapes.as_bool(return_indices, "return_indices")

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


# ====================================================================== normalisation etc.


class BatchNorm2d(Module):
    """Batch normalisation, as ``torch.nn.BatchNorm2d``.

    y = (x - running_mean) / sqrt(running_var + eps) * weight + bias, per channel; input
    (N, C, H, W). Parameters weight, bias (C,) (if ``affine``); buffers running_mean,
    running_var (C,) and num_batches_tracked () (if ``track_running_stats``; without them the
    batch's own statistics are used, as torch does).

    That is inference mode (:meth:`Module.eval`, the state layers are built in). In training
    mode (:meth:`Module.train`) the batch's mean and (biased) variance normalise, and each
    call updates running_mean and running_var (with the unbiased variance) as
    ``(1 - f) * running + f * batch``, f = ``momentum``, or 1 / num_batches_tracked (a
    cumulative average) when ``momentum`` is None; num_batches_tracked counts the calls.
    ``eps`` is a finite number > 0, ``momentum`` None or a number in [0, 1].
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
        self.num_features = _shapes.as_int(num_features, "num_features", minimum=1)
        self.eps = _nonneg(eps, "eps")
        if not self.eps > 0:  # torch fails in training for eps = 0
            raise ValueError(f"eps must be positive, got {eps!r}")
        self.momentum = None if momentum is None else _nonneg(momentum, "momentum")
        if self.momentum is not None and self.momentum > 1:
            raise ValueError(f"momentum must be None or between 0 and 1, got {momentum!r}")
        self.affine = _shapes.as_bool(affine, "affine")
        self.track_running_stats = _shapes.as_bool(track_running_stats, "track_running_stats")
        dt = _factory(dtype)
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
    """max(x, 0) elementwise (NaN stays NaN), as ``torch.nn.ReLU``."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = _shapes.as_bool(inplace, "inplace")

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
    """min(max(x, 0), 6) elementwise, as ``torch.nn.ReLU6``."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = _shapes.as_bool(inplace, "inplace")

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
    """Dropout, as ``torch.nn.Dropout``. In inference mode (:meth:`Module.eval`, the state
    layers are built in) the identity, returning its input itself; in training mode
    (:meth:`Module.train`) each element is zeroed with probability ``p`` and the others are
    scaled by 1/(1-p). ``generator`` (a ``numpy.random.Generator``, an int seed or None)
    draws the masks."""

    def __init__(self, p: float = 0.5, inplace: bool = False, *, generator: Any = None):
        super().__init__()
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, float, np.number)):
            raise TypeError(f"p must be a number, got {p!r}")
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability p must be between 0 and 1, got {p}")
        self.p = float(p)
        self.inplace = _shapes.as_bool(inplace, "inplace")
        self.generator = _init.as_generator(generator)

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
    """Returns its input."""

    def forward(self, x: Any) -> Any:
        self._remember(input_shape=tuple(np.shape(x)))
        return x

    def backward(self, grad_output: Any) -> Any:
        shape = self._recall()["input_shape"]
        _check_grad_shape("Identity", grad_output, shape)
        return grad_output


class Flatten(Module):
    """Flattens dims start_dim..end_dim into one, as ``torch.nn.Flatten`` (default 1..-1)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = _shapes.as_int(start_dim, "start_dim", minimum=-_shapes.MAX_PARAM)
        self.end_dim = _shapes.as_int(end_dim, "end_dim", minimum=-_shapes.MAX_PARAM)

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


class Linear(Module):
    """y = x @ weight.T + bias, as ``torch.nn.Linear``: weight (out, in), bias (out,);
    input (..., in_features)."""

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
        self.in_features = _shapes.as_int(in_features, "in_features", minimum=1)
        self.out_features = _shapes.as_int(out_features, "out_features", minimum=1)
        dt = _factory(dtype)
        self.register_parameter("weight", np.zeros((self.out_features, self.in_features), dt))
        self.register_parameter(
            "bias", np.zeros(self.out_features, dt) if _shapes.as_bool(bias, "bias") else None
        )
        if _shapes.as_bool(initialize, "initialize"):
            self.reset_parameters(generator)

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


# ====================================================================== containers


def _named_items(args: Sequence[Any], what: str) -> List[Tuple[str, Module]]:
    """Sequential-style arguments: modules (named 0, 1, ...) or one OrderedDict/dict."""
    if len(args) == 1 and isinstance(args[0], dict):
        items = list(args[0].items())
    else:
        items = [(str(i), m) for i, m in enumerate(args)]
    for n, m in items:
        if not isinstance(m, Module):
            raise TypeError(
                f"{what}: item {n!r} must be a fastconv.nn.Module, got {type(m).__name__}"
            )
    return items


class Sequential(Module):
    """Runs its children in order, as ``torch.nn.Sequential``: ``Sequential(m0, m1, ...)``
    (children named "0", "1", ...) or ``Sequential(OrderedDict(name=module, ...))``."""

    def __init__(self, *args: Any):
        super().__init__()
        for n, m in _named_items(args, "Sequential"):
            self.add_module(n, m)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, idx: Union[int, slice, str]) -> Any:
        if isinstance(idx, str):
            return self._modules[idx]
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        return items[idx][1]

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), module)
        return self

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, grad_output: Any) -> Any:
        g = grad_output
        for m in reversed(list(self._modules.values())):
            g = m.backward(g)
        return g

    def output_shape(self, input_shape: Shape) -> Shape:
        for m in self._modules.values():
            input_shape = m.output_shape(input_shape)
        return tuple(input_shape)

    def _trace(self, tracer, name, shape, state):
        for n, m in self._modules.items():
            shape, state = m._trace(tracer, _join(name, n), shape, state)
        return shape, state


class Residual(Module):
    """out = activation(body(x) + shortcut(x)); the shortcut is the identity or a projection.

    Parameters
    ----------
    body : a Module (child "body"), a dict / OrderedDict of named steps, or a list of
        (name, module) steps. Steps become children under their own names, so a ResNet block
        is ``Residual([("conv1", c1), ("bn1", b1), ("relu", r), ("conv2", c2), ("bn2", b2)],
        shortcut=proj, activation=r)`` with keys ``conv1.weight``, ``downsample.0.weight``. A
        name may repeat only with the same module (one ReLU used several times, as torch
        blocks do).
    shortcut : Module or None (identity); registered as ``shortcut_name`` ("downsample").
    activation : Module or None, applied after the add; registered as ``activation_name``
        ("relu"), which may be a step's name if it is the same module.

    The two paths' outputs must have the same shape (ValueError otherwise).
    """

    _shortcut: Optional[Module]
    _activation: Optional[Module]

    def __init__(
        self,
        body: Any,
        shortcut: Optional[Module] = None,
        activation: Optional[Module] = None,
        *,
        shortcut_name: str = "downsample",
        activation_name: str = "relu",
    ):
        super().__init__()
        if isinstance(body, Module):
            steps = [("body", body)]
        elif isinstance(body, dict):
            steps = list(body.items())
        elif isinstance(body, (list, tuple)):
            steps = [tuple(s) for s in body]
            if any(len(s) != 2 for s in steps):
                raise TypeError("Residual: body steps must be (name, module) pairs")
        else:
            raise TypeError(
                f"Residual: body must be a Module, a dict or a list of (name, module), got "
                f"{type(body).__name__}"
            )
        if not steps:
            raise ValueError("Residual: body must have at least one step")
        # set before the children, so that a child cannot take these attributes' names
        self.shortcut_name = shortcut_name
        self.activation_name = activation_name
        self._steps: List[Tuple[str, Module]] = []
        for n, m in steps:
            self._register_once(n, m, "body")
            self._steps.append((n, m))
        if shortcut is not None:
            self._register_once(shortcut_name, shortcut, "shortcut")
        if activation is not None:
            self._register_once(activation_name, activation, "activation")
        # plain attributes, not children: they are registered above under their own names
        object.__setattr__(self, "_shortcut", shortcut)
        object.__setattr__(self, "_activation", activation)

    def _register_once(self, name: str, module: Any, what: str) -> None:
        if not isinstance(module, Module):
            raise TypeError(
                f"Residual: {what} {name!r} must be a Module, got {type(module).__name__}"
            )
        if name in self._modules:
            if self._modules[name] is not module:
                raise ValueError(f"Residual: name {name!r} is used for two different modules")
            return
        self.add_module(name, module)

    def forward(self, x: Any) -> np.ndarray:
        y = x
        for _, m in self._steps:
            y = m(y)
        s = x if self._shortcut is None else self._shortcut(x)
        y, s = np.asarray(y), np.asarray(s)
        if y.shape != s.shape:
            raise ValueError(
                f"Residual: body output {y.shape} and shortcut output {s.shape} differ"
            )
        out = y + s
        return out if self._activation is None else self._activation(out)

    def backward(self, grad_output: Any) -> np.ndarray:
        # reverse order of the forward calls: activation, shortcut, body steps backwards
        g = grad_output if self._activation is None else self._activation.backward(grad_output)
        g_short = g if self._shortcut is None else self._shortcut.backward(g)
        g_body = g
        for _, m in reversed(self._steps):
            g_body = m.backward(g_body)
        return np.asarray(g_body) + np.asarray(g_short)

    def output_shape(self, input_shape: Shape) -> Shape:
        return self._trace(Tracer(), "", input_shape, None)[0]

    def _trace(self, tracer, name, shape, state):
        b_shape, b_state = shape, state
        for n, m in self._steps:
            b_shape, b_state = m._trace(tracer, _join(name, n), b_shape, b_state)
        if self._shortcut is None:
            s_shape, s_state = tuple(shape), state
        else:
            s_shape, s_state = self._shortcut._trace(
                tracer, _join(name, self.shortcut_name), shape, state
            )
        if tuple(b_shape) != tuple(s_shape):
            raise ValueError(
                f"{name or 'Residual'}: body output {tuple(b_shape)} and shortcut output "
                f"{tuple(s_shape)} differ"
            )
        out_state = tracer.merge(
            name, self, "add", [b_shape, s_shape], tuple(b_shape), [b_state, s_state]
        )
        if self._activation is not None:
            return self._activation._trace(
                tracer, _join(name, self.activation_name), b_shape, out_state
            )
        return tuple(b_shape), out_state


def _spatial_dims(module: Module) -> Optional[int]:
    """1 or 2: the number of spatial dimensions ``module`` works on; None if it has none."""
    if isinstance(module, _ConvNd):
        return module.nd
    if isinstance(module, (MaxPool2d, AvgPool2d, _AdaptivePool2d, BatchNorm2d)):
        return 2
    return None


class Concat(Module):
    """Runs each branch on the same input and concatenates the outputs along channels.

    ``Concat(branch0, branch1, ...)`` (children "0", "1", ...) or ``Concat(OrderedDict(...))``.
    Branch outputs must agree in every dimension but the channel one: dim 1 of a batched
    output ((N, C, H, W) or, for 1-D networks, (N, C, L)), dim 0 of an unbatched one
    ((C, H, W) or (C, L)); a 2-D output (N, F) of a 2-D network joins along dim 1.

    ``spatial_dims`` (keyword, 1 or 2) says which; by default it is read from the branches'
    layers: 1 if they are 1-D (Conv1d), else 2. Pass it when the layers do not tell (only
    elementwise layers, or both 1-D and 2-D ones, as after ``Flatten(2)``).
    """

    def __init__(self, *branches: Any, spatial_dims: Optional[int] = None):
        super().__init__()
        if spatial_dims is not None:
            spatial_dims = _shapes.as_int(spatial_dims, "spatial_dims", minimum=1)
            if spatial_dims > 2:
                raise ValueError(f"spatial_dims must be 1 or 2, got {spatial_dims}")
        items = _named_items(branches, "Concat")
        if not items:
            raise ValueError("Concat: needs at least one branch")
        if spatial_dims is None:
            dims = {_spatial_dims(m) for _, b in items for _, m in b.named_modules()} - {None}
            # no layer tells: 2 (the rule for 2-D networks); both 1-D and 2-D layers: None, and
            # a 3-D output, (N, C, L) or (C, H, W), is an error
            spatial_dims = dims.pop() if len(dims) == 1 else None if dims else 2
        self.spatial_dims: Optional[int] = spatial_dims
        for n, m in items:
            self.add_module(n, m)

    def _axis(self, shape: Shape) -> int:
        """The channel dimension of a branch output of ``shape``."""
        n = len(shape)
        if self.spatial_dims == 1:
            if n not in (2, 3):
                raise ValueError(
                    f"Concat (spatial_dims=1): branch outputs must be (N, C, L) or (C, L), got "
                    f"shape {tuple(shape)}"
                )
            return n - 2
        if self.spatial_dims is None and n == 3:
            raise ValueError(
                f"Concat: cannot tell whether branch output shape {tuple(shape)} is (N, C, L) or "
                "(C, H, W): the branches hold both 1-D and 2-D layers; pass spatial_dims=1 or 2"
            )
        return 1 if n in (2, 4) else 0

    def _check(self, name: str, shapes: List[Shape]) -> Shape:
        first = tuple(shapes[0])
        ax = self._axis(first)
        for s in shapes[1:]:
            s = tuple(s)
            if len(s) != len(first) or s[:ax] + s[ax + 1 :] != first[:ax] + first[ax + 1 :]:
                raise ValueError(
                    f"{name or 'Concat'}: branch outputs {[tuple(x) for x in shapes]} differ "
                    "outside the channel dimension"
                )
        return first[:ax] + (sum(s[ax] for s in shapes),) + first[ax + 1 :]

    def forward(self, x: Any) -> np.ndarray:
        outs = [np.asarray(m(x)) for m in self._modules.values()]
        self._check("Concat", [o.shape for o in outs])
        ax = self._axis(outs[0].shape)
        y = np.concatenate(outs, axis=ax)
        self._remember(channels=[o.shape[ax] for o in outs], axis=ax, output_shape=y.shape)
        return y

    def backward(self, grad_output: Any) -> np.ndarray:
        rec = self._recall()
        channels, ax = rec["channels"], rec["axis"]  # split as the forward call joined
        gy = np.asarray(grad_output)
        if gy.shape != rec["output_shape"]:
            raise ValueError(
                f"Concat.backward: grad_output must have the forward output's shape "
                f"{rec['output_shape']} ({sum(channels)} channels along dim {ax}), got shape "
                f"{gy.shape}"
            )
        parts = np.split(gy, np.cumsum(channels)[:-1], axis=ax)
        grads = [
            np.asarray(m.backward(part))
            for m, part in reversed(list(zip(self._modules.values(), parts)))
        ]
        return sum(grads[1:], grads[0])

    def output_shape(self, input_shape: Shape) -> Shape:
        return self._trace(Tracer(), "", input_shape, None)[0]

    def _trace(self, tracer, name, shape, state):
        shapes, states = [], []
        for n, m in self._modules.items():
            s, st = m._trace(tracer, _join(name, n), shape, state)
            shapes.append(s)
            states.append(st)
        out = self._check(name, shapes)
        return out, tracer.merge(name, self, "concat", shapes, out, states)


# ====================================================================== optimiser


def _nonneg(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


class SGD:
    """Stochastic gradient descent on a model's parameters, with ``torch.optim.SGD``'s rule.

    For every parameter p with a gradient g in its layer's ``grads``::

        d = g + weight_decay * p
        b = d (first step), else momentum * b + (1 - dampening) * d    (if momentum)
        d = d + momentum * b if nesterov else b                        (if momentum)
        p -= lr * d                                                     (in place)

    The parameter arrays are updated in place, so ``model.state_dict()`` sees the new values.
    Momentum buffers are kept per state_dict key.

    >>> import numpy as np
    >>> from fastconv import nn
    >>> lin = nn.Linear(2, 1, dtype=np.float64, generator=0).retain_inputs()
    >>> opt = nn.SGD(lin, lr=0.1)
    >>> before = lin.weight.copy()
    >>> _ = lin.backward(np.ones((1, 1))) if lin(np.ones((1, 2))) is not None else None
    >>> opt.step()
    >>> bool(np.allclose(lin.weight, before - 0.1))
    True
    """

    def __init__(
        self,
        model: Module,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        if not isinstance(model, Module):
            raise TypeError(f"model must be a fastconv.nn.Module, got {type(model).__name__}")
        self.model = model
        self.lr = _nonneg(lr, "lr")
        self.momentum = _nonneg(momentum, "momentum")
        self.dampening = _nonneg(dampening, "dampening")
        self.weight_decay = _nonneg(weight_decay, "weight_decay")
        self.nesterov = _shapes.as_bool(nesterov, "nesterov")
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError("nesterov needs a momentum > 0 and dampening = 0")
        self.state: Dict[str, np.ndarray] = {}

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        for pre, mod in self.model.named_modules():
            for n in mod._param_names:
                p = getattr(mod, n)
                g = mod.grads.get(n)
                if p is None or g is None:
                    continue
                d = g + self.weight_decay * p if self.weight_decay else g
                if self.momentum:
                    key = _join(pre, n)
                    buf = self.state.get(key)
                    if buf is None:
                        buf = np.array(d, dtype=p.dtype, copy=True)
                    else:
                        buf = self.momentum * buf + (1 - self.dampening) * d
                    self.state[key] = buf
                    d = d + self.momentum * buf if self.nesterov else buf
                p -= (self.lr * d).astype(p.dtype, copy=False)

    def zero_grad(self) -> None:
        """The model's :meth:`Module.zero_grad`."""
        self.model.zero_grad()
