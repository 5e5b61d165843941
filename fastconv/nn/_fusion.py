"""Inference-mode fusion of fastconv.nn layers: Conv2d -> BatchNorm2d -> ReLU / ReLU6, and a
residual block's last Conv2d -> BatchNorm2d with the shortcut's add and the block's ReLU, run
as one ``fastconv.fused.conv2d`` call (the batch norm as a per-channel scale and shift, the
add and the activation in the convolution's epilogue).

Used by Sequential and Residual in inference mode only (every module involved has
``training`` False and keeps no inputs for backward); anything else runs module by module.
The results equal the unfused forward up to float32 rounding (tests/test_nn_fusion.py).
:func:`set_fusion` turns it off and on (on by default).
"""

from typing import Any, List, Optional, Sequence

import numpy as np

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


def fusable_conv(m: Any) -> bool:
    from .conv import Conv2d

    return isinstance(m, Conv2d) and _plain(m)


def fusable_bn(m: Any, conv: Any) -> bool:
    from .layers import BatchNorm2d

    return (isinstance(m, BatchNorm2d) and _plain(m) and m.running_mean is not None
            and m.running_var is not None and m.num_features == conv.out_channels)


def activation_name(m: Any) -> Optional[str]:
    """'relu' / 'relu6' for a ReLU / ReLU6 module in inference mode, else None."""
    from .layers import ReLU, ReLU6

    if type(m) is ReLU and _plain(m):
        return "relu"
    if type(m) is ReLU6 and _plain(m):
        return "relu6"
    return None


def _fused_call(conv: Any, bn: Any, x: Any, activation: Optional[str],
                residual: Any = None) -> np.ndarray:
    from .. import fused

    x = np.asarray(x)
    out_dt = np.result_type(x.dtype, conv.weight.dtype, np.float32)
    scale, shift = fused.batch_norm_scale_shift(bn.running_mean, bn.running_var, bn.weight,
                                                bn.bias, bn.eps)
    return fused.conv2d(
        x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups,
        scale=scale.astype(out_dt, copy=False), shift=shift.astype(out_dt, copy=False),
        residual=residual, activation=activation, padding_mode=conv.padding_mode,
        backend=conv.backend,
    )


def _input_ok(x: Any) -> bool:
    return isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.ndim == 4


def run(steps: Sequence[Any], x: Any) -> Any:
    """Run ``steps`` in order on x, fusing Conv2d -> BatchNorm2d (-> ReLU / ReLU6)."""
    if not _enabled:
        for m in steps:
            x = m(x)
        return x
    i, n = 0, len(steps)
    while i < n:
        act = group_at(steps, i) if _input_ok(x) else None
        if act is not None:
            x = _fused_call(steps[i], steps[i + 1], x, act or None)
            i += 3 if act else 2
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
