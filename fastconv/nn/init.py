"""Parameter initialisation for NumPy arrays, with torch.nn.init's names, fan rules and gains.

Every function fills its array in place and returns it, as torch's trailing-underscore
functions do. Random ones take ``generator``: a ``numpy.random.Generator``, an int seed, or
None (a fresh, unseeded generator). The same seed gives the same values; the values are not
torch's (different random streams), the distributions are.

Fan rules (as torch): for an array of shape (d0, d1, *k), receptive = prod(k),
fan_in = d1 * receptive, fan_out = d0 * receptive. Conv weights (OC, C/G, KH, KW) give
fan_in = C/G*KH*KW; Linear weights (out, in) give fan_in = in; a transposed conv's weight
(C, OC/G, KH, KW) gives fan_in = OC/G*KH*KW (torch applies the same rule to it).

>>> import numpy as np
>>> from fastconv import init
>>> w = init.kaiming_uniform_(np.empty((8, 3, 3, 3), np.float32), a=5 ** 0.5, generator=0)
>>> bool(np.abs(w).max() <= 1 / np.sqrt(27))
True
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Tuple

import numpy as np

__all__ = [
    "calculate_gain",
    "constant_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]

_LINEAR_LIKE = (
    "linear", "conv1d", "conv2d", "conv3d",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "sigmoid",
)


def as_generator(generator: Any) -> np.random.Generator:
    """A numpy Generator from a Generator, an int seed or None."""
    if isinstance(generator, np.random.Generator):
        return generator
    if generator is None:
        return np.random.default_rng()
    if isinstance(generator, (bool, np.bool_)) or not isinstance(generator, numbers.Integral):
        raise TypeError(
            f"generator must be a numpy.random.Generator, an int seed or None, got {generator!r}"
        )
    if generator < 0:
        raise ValueError(f"generator (a seed) must be >= 0, got {generator}")
    return np.random.default_rng(int(generator))


def _check_array(array: Any, name: str = "array") -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(array).__name__}")
    if array.dtype.kind != "f":
        raise TypeError(f"{name} must have a floating dtype, got {array.dtype}")
    if not array.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return array


def _number(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def calculate_fan_in_and_fan_out(array: Any) -> Tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (d0, d1, *k) (module docstring)."""
    shape = np.shape(array)
    if len(shape) < 2:
        raise ValueError(
            f"fan in and fan out need an array with at least 2 dimensions, got shape {shape}"
        )
    receptive = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fan(array: Any, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(array)
    return fan_in if mode == "fan_in" else fan_out


def calculate_gain(nonlinearity: str, param: Optional[float] = None) -> float:
    """The recommended gain for a nonlinearity (torch's table).

    linear, conv*, conv_transpose*, sigmoid: 1; tanh: 5/3; relu: sqrt(2);
    leaky_relu: sqrt(2 / (1 + negative_slope**2)) with negative_slope = param (default 0.01);
    selu: 3/4.

    >>> round(calculate_gain("relu"), 6)
    1.414214
    """
    if not isinstance(nonlinearity, str):
        raise TypeError(f"nonlinearity must be a string, got {nonlinearity!r}")
    if nonlinearity in _LINEAR_LIKE:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else _number(param, "param")
        return math.sqrt(2.0 / (1.0 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    raise ValueError(f"nonlinearity: unsupported value {nonlinearity!r}")


def _draw(array: np.ndarray, gen: np.random.Generator, normal: bool) -> None:
    """Fill ``array`` with U[0, 1) or N(0, 1) draws, without a float64 copy when possible
    (a VGG-16 classifier weight has 10**8 elements)."""
    draw = gen.standard_normal if normal else gen.random
    if array.dtype in (np.float32, np.float64) and array.flags.c_contiguous:
        draw(dtype=array.dtype, out=array)
    else:
        array[...] = draw(array.shape)


def uniform_(array: np.ndarray, a: float = 0.0, b: float = 1.0, *, generator: Any = None):
    """Fill ``array`` with U(a, b)."""
    _check_array(array)
    lo, hi = _number(a, "a"), _number(b, "b")
    if lo > hi:
        raise ValueError(f"a must be <= b, got a={a}, b={b}")
    _draw(array, as_generator(generator), normal=False)
    array *= hi - lo
    array += lo
    return array


def normal_(array: np.ndarray, mean: float = 0.0, std: float = 1.0, *, generator: Any = None):
    """Fill ``array`` with N(mean, std**2)."""
    _check_array(array)
    m, s = _number(mean, "mean"), _number(std, "std")
    if s < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    _draw(array, as_generator(generator), normal=True)
    array *= s
    array += m
    return array


def constant_(array: np.ndarray, val: float):
    """Fill ``array`` with ``val``."""
    _check_array(array)
    array[...] = _number(val, "val")
    return array


def zeros_(array: np.ndarray):
    """Fill ``array`` with 0."""
    return constant_(array, 0.0)


def ones_(array: np.ndarray):
    """Fill ``array`` with 1."""
    return constant_(array, 1.0)


def _xavier_std(array: np.ndarray, gain: Any) -> float:
    """gain * sqrt(2 / (fan_in + fan_out)), checking ``gain`` (>= 0: torch rejects negative
    gains too, through the range it then asks for) and the fans."""
    _check_array(array)
    g = _number(gain, "gain")
    if g < 0:
        raise ValueError(f"gain must be >= 0, got {gain!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(array)
    if fan_in + fan_out == 0:
        raise ValueError(f"array of shape {array.shape} has fan_in + fan_out = 0: Xavier "
                         "initialisation is undefined for it")
    return g * math.sqrt(2.0 / float(fan_in + fan_out))


def xavier_uniform_(array: np.ndarray, gain: float = 1.0, *, generator: Any = None):
    """Glorot uniform: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)); gain >= 0."""
    bound = math.sqrt(3.0) * _xavier_std(array, gain)
    return uniform_(array, -bound, bound, generator=generator)


def xavier_normal_(array: np.ndarray, gain: float = 1.0, *, generator: Any = None):
    """Glorot normal: N(0, std**2), std = gain * sqrt(2 / (fan_in + fan_out)); gain >= 0."""
    return normal_(array, 0.0, _xavier_std(array, gain), generator=generator)


def kaiming_uniform_(
    array: np.ndarray,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    *,
    generator: Any = None,
):
    """He uniform: U(-b, b), b = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a).

    An empty array is left as it is (torch warns and does the same).
    """
    _check_array(array)
    if array.size == 0:
        return array
    fan = _fan(array, mode)
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return uniform_(array, -bound, bound, generator=generator)


def kaiming_normal_(
    array: np.ndarray,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    *,
    generator: Any = None,
):
    """He normal: N(0, std**2), std = gain / sqrt(fan), gain = calculate_gain(nonlinearity, a)."""
    _check_array(array)
    if array.size == 0:
        return array
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(array, mode))
    return normal_(array, 0.0, std, generator=generator)
