"""The base of every layer: registration, state_dict, modes, backward records, tracing.

- Module: children, parameters and buffers by torch's names; state_dict / load_state_dict;
  train / eval, set_backend, retain_inputs and the forward-call records backward consumes;
  output_shape and _trace (shape propagation without computing)
- Tracer: the hooks _trace calls at each leaf layer and at each merge (Residual, Concat)
- IncompatibleKeys: what load_state_dict(strict=False) did not match
- helpers the layer modules share: the input and grad_output checks, the parameter dtype
  check, torch's default Conv / Linear initialisation, non-negative hyperparameters
"""

import math
import threading
from collections import OrderedDict
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import numpy as np

from .. import _shapes
from ..backends._registry import array_spec, backend_names, resolve_dtypes
from . import init as _init

Shape = Tuple[int, ...]


_calling = threading.local()  # .depth: how many Module calls are running in this thread


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _as_numpy(value: Any, key: str, op: str) -> np.ndarray:
    """A state_dict value as a NumPy array (NumPy arrays, torch CPU tensors, lists)."""
    try:
        if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
            value = value.detach().cpu().numpy()
        return np.asarray(value)
    except Exception as exc:
        raise TypeError(f"{op}: state_dict[{key!r}] is not an array: {exc}") from None


def _converted(value: np.ndarray, like: np.ndarray, key: str, op: str) -> np.ndarray:
    """``value`` converted to ``like``'s dtype, as loading will write it; only real numbers
    (bool, integer, floating) are accepted, so the write itself cannot fail."""
    if value.dtype.kind not in "biuf":
        raise TypeError(
            f"{op}: state_dict[{key!r}] has dtype {value.dtype}; expected real numbers for the "
            f"model's {like.dtype} array"
        )
    if not like.flags.writeable:
        raise ValueError(f"{op}: cannot load state_dict[{key!r}]: the model's array is read-only")
    return value.astype(like.dtype, copy=False)


def _check_input(x: Any, op: str) -> None:
    """Every layer's input check (run by :meth:`Module.__call__`, ``op`` the layer's class
    name): real numbers only, as fastconv's functions (``_registry.resolve_dtypes``) accept.
    Device arrays are not copied."""
    dt = x.dtype if type(x) is np.ndarray else array_spec(x, "input", op)[1]
    if dt.kind not in "biuf":  # the only kinds resolve_dtypes accepts: its message
        resolve_dtypes({"input": dt}, op)


class IncompatibleKeys(NamedTuple):
    """What :meth:`Module.load_state_dict` with ``strict=False`` did not match.

    Parameters
    ----------
    missing_keys : list of str
        The model's keys the state_dict lacks (those arrays were left as they were).
    unexpected_keys : list of str
        The state_dict's keys the model does not have (ignored).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> lin = nn.Linear(2, 2)
    >>> lin.load_state_dict({"weight": np.zeros((2, 2)), "extra": np.ones(1)}, strict=False)
    IncompatibleKeys(missing_keys=['bias'], unexpected_keys=['extra'])
    """

    missing_keys: List[str]
    unexpected_keys: List[str]


class Tracer:
    """Hooks called by ``Module._trace`` while it propagates shapes through a model.

    Each leaf layer calls ``leaf(name, module, in_shape, out_shape, state)``; each Residual
    add or Concat join calls ``merge(name, module, how, in_shapes, out_shape, states)``; both
    return the new state. ``state`` is whatever the tracer carries along one path
    (receptive-field geometry, say); containers pass it down their paths and hand the paths'
    states to ``merge``. The accounting, receptive-field and summary tools are tracers.

    Examples
    --------
    >>> from fastconv import nn
    >>> class Shapes(nn.Tracer):  # records every leaf's output shape
    ...     def leaf(self, name, module, in_shape, out_shape, state):
    ...         return state + [(name, out_shape)]
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2))
    >>> net._trace(Shapes(), "", (1, 3, 10, 10), [])[1]
    [('0', (1, 8, 8, 8)), ('1', (1, 8, 8, 8)), ('2', (1, 8, 4, 4))]
    """

    def leaf(self, name: str, module: "Module", in_shape: Shape, out_shape: Shape, state: Any):
        return state

    def merge(
        self,
        name: str,
        module: "Module",
        how: str,
        in_shapes: List[Shape],
        out_shape: Shape,
        states: List[Any],
    ):
        """``how`` is "add" (Residual) or "concat" (Concat); one state per path."""
        return states[0]


class Module:
    """The base class of every layer: children, parameters, buffers, state_dict, modes, backward.

    A layer subclass registers its parameters (``register_parameter``) and buffers
    (``register_buffer``) under torch's names; setting an attribute to a Module makes it a
    child. It defines ``forward(x)``, ``output_shape(input_shape)`` and, to be trained,
    ``backward(grad_output)``. Calling a module checks that the input holds real numbers,
    then runs ``forward``.

    Attributes
    ----------
    backend : str
        The backend its ops run on ("auto" by default; :meth:`set_backend` sets a tree).
    training : bool
        False (inference mode) until :meth:`train`.
    grads : dict of str to ndarray
        Parameter gradients added by ``backward`` (see :meth:`retain_inputs`).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> class Scale(nn.Module):
    ...     def __init__(self, c):
    ...         super().__init__()
    ...         self.register_parameter("weight", np.ones(c))
    ...     def forward(self, x):
    ...         return x * self.weight[:, None, None]
    ...     def output_shape(self, input_shape):
    ...         return input_shape
    >>> net = nn.Sequential(nn.Conv2d(3, 2, 1), Scale(2))
    >>> list(net.state_dict()), net(np.ones((1, 3, 4, 4))).shape
    (['0.weight', '0.bias', '1.weight'], (1, 2, 4, 4))
    """

    _modules: "OrderedDict[str, Module]"
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
            raise TypeError(
                f"{type(self).__name__}: cannot replace child module {name!r} by a "
                f"{type(value).__name__}"
            )
        object.__setattr__(self, name, value)

    def add_module(self, name: str, module: "Module") -> None:
        """Register ``module`` as the child ``name`` (also the attribute ``self.<name>``)."""
        self._add_child(name, module, f"{type(self).__name__}.add_module")

    def _add_child(self, name: str, module: "Module", op: str) -> None:
        """:meth:`add_module`, its messages starting with ``op`` (a constructor passes its
        class name: the user called the constructor, not add_module)."""
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(
                f"{op}: module name must be a non-empty string without '.', got {name!r}"
            )
        if not isinstance(module, Module):
            raise TypeError(
                f"{op}: module {name!r} must be a fastconv.nn.Module, got {type(module).__name__}"
            )
        if name in self._param_names or name in self._buffer_names:
            raise ValueError(f"{op}: {name!r} is already a parameter or buffer")
        if name not in self._modules and hasattr(self, name):
            # as torch: a child must not shadow a method or attribute ("forward", "cache", ...)
            raise ValueError(
                f"{op}: cannot add child module {name!r} to {type(self).__name__}: attribute "
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
    def children(self) -> Iterator["Module"]:
        return iter(self._modules.values())

    def named_children(self) -> Iterator[Tuple[str, "Module"]]:
        return iter(self._modules.items())

    def named_modules(self, prefix: str = "") -> Iterator[Tuple[str, "Module"]]:
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
        op = f"{type(self).__name__}.load_state_dict"
        strict = _shapes.as_bool(strict, "strict", op=op)
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(
                f"{op}: state_dict must be a mapping of key names to arrays, got "
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
            v = _as_numpy(state_dict[k], k, op)
            if v.shape != own[k].shape:
                mismatched.append(f"{k}: checkpoint {v.shape}, model {own[k].shape}")
                continue
            values[k] = _converted(v, own[k], k, op)
        problems = []
        if strict and missing:
            problems.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if mismatched:
            problems.append(f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched)}")
        if problems:
            raise ValueError(
                f"{op}: error loading state_dict into {type(self).__name__}: "
                + " | ".join(problems)
            )
        for k, v in values.items():
            own[k][...] = v
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ modes
    def set_backend(self, backend: str) -> "Module":
        """Set the engine of this module and all its descendants ("auto", "c", ...)."""
        op = f"{type(self).__name__}.set_backend"
        if not isinstance(backend, str):
            raise TypeError(
                f"{op}: backend must be a string, one of {backend_names()}, got {backend!r}"
            )
        if backend not in backend_names():
            raise ValueError(f"{op}: backend must be one of {backend_names()}, got {backend!r}")
        for _, m in self.named_modules():
            m.backend = backend
        return self

    def retain_inputs(self, flag: bool = True) -> "Module":
        """Keep (or stop keeping) what each layer's backward will need in ``layer.cache``."""
        flag = _shapes.as_bool(flag, "flag", op=f"{type(self).__name__}.retain_inputs")
        for _, m in self.named_modules():
            m.keep_cache = flag
            if not flag:
                m.cache = None
        if not flag:
            self.discard_retained()
        return self

    def discard_retained(self) -> "Module":
        """Forget the retained forward calls of this module and its descendants that were not
        back-propagated (``cache``, the latest call's record, stays). Each outer forward call
        does this first, so records of earlier passes never pile up."""
        # every outer forward call runs this: a plain walk, not named_modules' generators
        seen, stack = set(), [self]
        while stack:
            m = stack.pop()
            if id(m) not in seen:
                seen.add(id(m))
                if m._calls:
                    m._calls = []
                stack.extend(m._modules.values())
        return self

    def train(self, mode: bool = True) -> "Module":
        """Set ``training`` of this module and its descendants, as ``torch.nn.Module.train``:
        True makes BatchNorm2d use (and update) batch statistics and Dropout drop elements;
        False (:meth:`eval`, the state layers are built in) runs them in inference mode."""
        mode = _shapes.as_bool(mode, "mode", op=f"{type(self).__name__}.train")
        for _, m in self.named_modules():
            m.training = mode
        return self

    def eval(self) -> "Module":
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
        if getattr(_calling, "depth", 0) == 0:
            self.discard_retained()
        _check_input(x, type(self).__name__)
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

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Whether backward computes parameter gradients in this module and its descendants
        (input gradients are always computed); False saves the weight-gradient convolutions
        when only dL/d(input) is wanted, as for effective receptive fields."""
        op = f"{type(self).__name__}.requires_grad_"
        flag = _shapes.as_bool(requires_grad, "requires_grad", op=op)
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
            if not name:  # the model itself: its message names its class already
                raise
            raise type(exc)(f"{name}: {exc}") from None
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


def _factory(dtype: Any, op: str = "") -> np.dtype:
    """A layer's parameter dtype (``op``: the layer's class name): a floating dtype."""
    at = f"{op}: " if op else ""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{at}dtype must be a floating dtype, got {dtype!r}: {exc}") from None
    if dt.kind != "f":
        raise TypeError(f"{at}dtype must be a floating dtype, got {dt}")
    return dt


def _nonneg(value: Any, name: str, op: str) -> float:
    """A hyperparameter (learning rate, momentum, eps) of ``op`` as a finite float >= 0."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{op}: {name} must be a real number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{op}: {name} must be a finite number >= 0, got {value!r}")
    return v
