"""Inference-mode fusion of fastconv.nn layers: Conv2d -> BatchNorm2d -> ReLU / ReLU6,
Conv2d -> ReLU / ReLU6, and a residual block's last Conv2d -> BatchNorm2d with the shortcut's
add and the block's ReLU, run as one ``fastconv.fused.conv2d`` call (the batch norm as a
per-channel scale and shift, the add and the activation in the convolution's epilogue). A
layer's later calls run what its checked call ran, without the checks (:class:`_Plan`).

Used by Sequential and Residual in inference mode only (every module involved has
``training`` False and keeps no inputs for backward); anything else runs module by module.
The results equal the unfused forward up to float32 rounding (tests/test_nn_fusion.py).
:func:`set_fusion` turns it off and on (on by default).
"""

import weakref
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..backends._registry import _F32, _F64, host_empty
from ..backends._registry import kernel_ready as _host
from .module import Module

_enabled = True


def set_fusion(enabled: bool) -> None:
    """Whether fastconv.nn fuses layers in inference mode (default True); False runs every
    module on its own, as in training.

    Parameters
    ----------
    enabled : bool
        True: Conv2d -> BatchNorm2d -> ReLU and residual blocks' last conv, add and
        activation run as one call each in inference mode; False: module by module.

    Returns
    -------
    None

    Examples
    --------
    >>> from fastconv import nn
    >>> nn.set_fusion(False); nn.set_fusion(True)
    """
    global _enabled
    if not isinstance(enabled, (bool, np.bool_)):
        raise TypeError(f"set_fusion: enabled must be a bool, got {type(enabled).__name__}")
    _enabled = bool(enabled)


def fusion_enabled() -> bool:
    return _enabled


def _plain(m: Any) -> bool:
    """In inference mode and keeping nothing for backward."""
    return not m.training and not m.keep_cache


def _layer_types() -> tuple:
    """(Conv2d, BatchNorm2d, ReLU, ReLU6), imported on first use (they import this module)."""
    global _types
    if _types is None:
        from .conv import Conv2d
        from .layers import BatchNorm2d, ReLU, ReLU6

        _types = (Conv2d, BatchNorm2d, ReLU, ReLU6)
    return _types


_types: Optional[tuple] = None


def _own_forward(m: Any, cls: Any) -> bool:
    """An instance of cls that computes what cls does (a subclass overriding forward is
    run as it is written, not fused)."""
    return isinstance(m, cls) and type(m).forward is cls.forward


def fusable_conv(m: Any) -> bool:
    return _own_forward(m, _layer_types()[0]) and _plain(m)


def fusable_bn(m: Any, conv: Any) -> bool:
    return (_own_forward(m, _layer_types()[1]) and _plain(m) and m.running_mean is not None
            and m.running_var is not None and m.num_features == conv.out_channels)


def activation_name(m: Any) -> Optional[str]:
    """'relu' / 'relu6' for a ReLU / ReLU6 module in inference mode, else None."""
    _, _, relu, relu6 = _layer_types()
    if type(m) is relu and _plain(m):
        return "relu"
    if type(m) is relu6 and _plain(m):
        return "relu6"
    return None


def _fused_call(conv: Any, bn: Any, x: Any, activation: Optional[str],
                residual: Any = None) -> np.ndarray:
    plans = _plans.get(conv)
    if plans is not None:
        plan = plans.get(_Plan.key(x, bn, activation, residual))
        if plan is not None:
            y = plan.run(conv, bn, x, activation, residual)
            if y is not None:
                return y
    from .. import fused

    x = np.asarray(x)
    out_dt = np.result_type(x.dtype, conv.weight.dtype, np.float32)
    scale = shift = None
    if bn is not None:
        scale, shift = fused.batch_norm_scale_shift(bn.running_mean, bn.running_var,
                                                    bn.weight, bn.bias, bn.eps)
        scale, shift = scale.astype(out_dt, copy=False), shift.astype(out_dt, copy=False)
    y = fused.conv2d(
        x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups,
        scale=scale, shift=shift, residual=residual, activation=activation,
        padding_mode=conv.padding_mode, backend=conv.backend,
    )
    _Plan.make(conv, bn, x, activation, residual)
    return y


#: conv module -> {_Plan.key: the _Plan of the latest fused call of that kind}; the plans go
#: with the module, and hold the arrays and the batch norm they read only weakly
_plans: "weakref.WeakKeyDictionary[Any, Dict[tuple, _Plan]]" = weakref.WeakKeyDictionary()
#: Plans kept per conv (one per input shape, activation, ...); beyond, they start over.
PLANS_PER_CONV = 8


def _refs(conv: Any, bn: Any, activation: Optional[str]) -> tuple:
    """Everything a fused call reads besides the data and the conv (the plans' key), read
    once: bn, activation, weight, bias, stride, padding, dilation, groups, padding_mode,
    backend, then the batch norm's running_mean, running_var, weight, bias and eps."""
    own = (bn, activation, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation,
           conv.groups, conv.padding_mode, conv.backend)
    if bn is None:
        return own
    return own + (bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps)


def _meta(refs: tuple) -> tuple:
    """Shape, dtype and strides of the arrays among ``refs`` (NumPy lets all three be set in
    place)."""
    arrays = refs[2:4] + refs[10:14]
    return tuple(None if a is None else (a.shape, a.dtype, a.strides) for a in arrays)


class _Strong:
    """Holds an object that cannot be weakly referenced (tuples, strings, numbers);
    called like a weakref."""

    __slots__ = ("o",)

    def __init__(self, o: Any):
        self.o = o

    def __call__(self) -> Any:
        return self.o


def _hold(o: Any) -> Any:
    """A weakref to an array or module (a plan must not keep a replaced weight or a removed
    batch norm alive), else the object itself, held."""
    return weakref.ref(o) if isinstance(o, (np.ndarray, Module)) else _Strong(o)


class _Plan:
    """A fused call (conv [-> batch norm] [-> residual add] [-> activation]) that ran, to run
    again without the public function's checks (~60 us of Python per layer, most of a small
    layer's time, and more after a large layer has evicted the interpreter from the caches)
    when nothing it read has changed: the same arrays, attributes, batch norm and activation
    (by identity), the arrays' shapes, dtypes and strides, and an input (and residual) of
    the same shape and native float dtype, C-contiguous. Anything else takes the checked
    path, which makes a new plan. The batch norm is folded again on every call (its
    statistics may be changed in place) by the arithmetic of ``fused.batch_norm_scale_shift``,
    and the same kernel runs: the same bits as the checked call (tests/test_nn_fusion.py).
    Each attribute is read once per call, and the objects checked are the ones passed to
    the kernel (another thread may assign attributes meanwhile)."""

    __slots__ = ("held", "meta", "dtype", "x_shape", "res_shape", "fold_dt", "kernel",
                 "geometry", "out_shape")

    def __init__(self, refs: tuple, dtype: np.dtype, x_shape: tuple,
                 res_shape: Optional[tuple], fold_dt: Optional[np.dtype], kernel: Any,
                 geometry: tuple, out_shape: tuple):
        self.held = tuple(_hold(o) for o in refs)
        self.meta, self.dtype, self.x_shape = _meta(refs), dtype, x_shape
        self.res_shape, self.fold_dt = res_shape, fold_dt
        self.kernel, self.geometry, self.out_shape = kernel, geometry, out_shape

    @staticmethod
    def key(x: Any, bn: Any, activation: Optional[str], residual: Any) -> tuple:
        """What tells a conv's plans apart: the input's shape and dtype, the activation,
        whether there is a batch norm, the residual's shape."""
        return (getattr(x, "shape", None), getattr(x, "dtype", None), activation,
                bn is None, getattr(residual, "shape", None))

    @classmethod
    def make(cls, conv: Any, bn: Any, x: np.ndarray, activation: Optional[str],
             residual: Any) -> None:
        """Keep the plan of the fused call that just ran with these arguments, where one
        applies (the plans of other keys stay)."""
        from ..fused import _check_eps, _fold_dtype
        from ..ops.conv import _fused_conv2d_plan

        key = cls.key(x, bn, activation, residual)
        plans = _plans.get(conv)
        if plans is None or len(plans) >= PLANS_PER_CONV:
            plans = _plans[conv] = {}
        plans.pop(key, None)
        refs = _refs(conv, bn, activation)
        dt, w, b = x.dtype, refs[2], refs[3]
        if not ((dt == _F32 or dt == _F64) and _host(x, dt) and _host(w, dt)
                and (b is None or _host(b, dt)) and (residual is None or _host(residual, dt))):
            return
        try:  # the objects read now (not those the checked call read): checked again here
            made = _fused_conv2d_plan(x, w, b, *refs[4:10])
        except (ValueError, TypeError):
            return
        if made is None:
            return
        out_shape = made[2]
        if residual is not None and residual.shape != out_shape:
            return
        stats = [a for a in refs[10:14] if a is not None]
        for a in stats:  # the folded scale and shift: one real value per output channel
            if type(a) is not np.ndarray or a.dtype.kind not in "biuf" \
                    or a.shape != (out_shape[1],):
                return
        if bn is not None:
            try:
                _check_eps(refs[14], "")
            except (TypeError, ValueError):
                return
        fold_dt = None if bn is None else _fold_dtype(*stats)
        plans[key] = cls(refs, dt, x.shape, None if residual is None else residual.shape,
                         fold_dt, *made)

    def run(self, conv: Any, bn: Any, x: Any, activation: Optional[str],
            residual: Any) -> Optional[np.ndarray]:
        """The fused call's output, or None where this plan does not apply."""
        dt = self.dtype
        if not (_host(x, dt) and x.shape == self.x_shape):
            return None
        if residual is None:
            if self.res_shape is not None:
                return None
        elif not (_host(residual, dt) and residual.shape == self.res_shape):
            return None
        refs = _refs(conv, bn, activation)
        if len(refs) != len(self.held):
            return None
        for o, h in zip(refs, self.held):
            if h() is not o:
                return None
        if _meta(refs) != self.meta:
            return None
        scale = shift = None
        if bn is not None and self.fold_dt is not None:
            from ..fused import _scale_shift

            mean, var, weight, bias, eps = refs[10:15]
            scale, shift = _scale_shift(mean, var, weight, bias, eps, self.fold_dt)
            scale, shift = scale.astype(dt, copy=False), shift.astype(dt, copy=False)
        y = host_empty(self.out_shape, dt)
        self.kernel(x, refs[2], refs[3], y, *self.geometry, scale, shift, residual, activation)
        return y


def _input_ok(x: Any) -> bool:
    return isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.ndim == 4


def run(steps: Sequence[Any], x: Any) -> Any:
    """Run ``steps`` in order on x, fusing Conv2d -> BatchNorm2d (-> ReLU / ReLU6) and
    Conv2d -> ReLU / ReLU6."""
    if not _enabled:
        for m in steps:
            x = m(x)
        return x
    i, n = 0, len(steps)
    while i < n:
        ok = _input_ok(x)
        act = group_at(steps, i) if ok else None
        if act is not None:
            x = _fused_call(steps[i], steps[i + 1], x, act or None)
            i += 3 if act else 2
            continue
        act = activation_at(steps, i) if ok else None
        if act is not None:
            x = _fused_call(steps[i], None, x, act)
            i += 2
        else:
            x = steps[i](x)
            i += 1
    return x


def group_at(mods: Sequence[Any], i: int) -> Optional[str]:
    """Whether mods[i], mods[i + 1] are a fusable Conv2d -> BatchNorm2d: the activation that
    follows them and fuses too ('relu', 'relu6', '' for none), or None if they are not."""
    if i + 1 >= len(mods) or not (fusable_conv(mods[i]) and fusable_bn(mods[i + 1], mods[i])):
        return None
    return (activation_name(mods[i + 2]) if i + 2 < len(mods) else None) or ""


def activation_at(mods: Sequence[Any], i: int) -> Optional[str]:
    """Whether mods[i], mods[i + 1] are a fusable Conv2d -> ReLU / ReLU6 (no batch norm
    between them, as in VGG): the activation's name, or None."""
    if i + 1 >= len(mods) or not fusable_conv(mods[i]):
        return None
    return activation_name(mods[i + 1])


def expand_tail(items: List[Any]) -> List[Any]:
    """A residual body's (name, module) steps with a trailing Sequential replaced by its
    children (recursively, names joined with '.'), so that a body written as one Sequential
    (MobileNetV2's inverted residual) ends in its own conv and batch norm."""
    from .container import Sequential

    items = list(items)
    while items and type(items[-1][1]) is Sequential and _plain(items[-1][1]) \
            and len(items[-1][1]):
        name, seq = items.pop()
        items += [(f"{name}.{n}", m) for n, m in seq._modules.items()]
    return items


def residual_tail(steps: List[Any], activation: Any) -> Optional[str]:
    """Whether a residual block ends in a fusable Conv2d -> BatchNorm2d whose output the
    shortcut is added to: returns the activation to fuse ('' for none), or None if not."""
    if not _enabled or len(steps) < 2 or group_at(steps, len(steps) - 2) is None:
        return None
    return "" if activation is None else activation_name(activation)


def fused_tail(conv: Any, bn: Any, h: Any, s: Any, act: str) -> Optional[np.ndarray]:
    """A residual block's last conv and batch norm on the body's h, with the shortcut's s
    added and ``act`` ('' for none) applied, in one call; None when the data does not allow
    it (the caller then runs the two modules and the add itself)."""
    if not (_input_ok(h) and isinstance(s, np.ndarray)):
        return None
    if s.dtype != np.result_type(h.dtype, conv.weight.dtype, np.float32):
        return None
    try:
        return _fused_call(conv, bn, h, act or None, residual=s)
    except ValueError:  # shapes differ: the unfused path raises Residual's own message
        return None
