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


def as_generator(generator: Any, op: str = "") -> np.random.Generator:
    """A numpy Generator from a Generator, an int seed or None; a message starts with ``op``
    (the public function or layer given ``generator``)."""
    if isinstance(generator, np.random.Generator):
        return generator
    if generator is None:
        return np.random.default_rng()
    at = f"{op}: " if op else ""
    if isinstance(generator, (bool, np.bool_)) or not isinstance(generator, numbers.Integral):
        raise TypeError(
            f"{at}generator must be a numpy.random.Generator, an int seed or None, "
            f"got {generator!r}"
        )
    if generator < 0:
        raise ValueError(f"{at}generator (a seed) must be >= 0, got {generator}")
    return np.random.default_rng(int(generator))


def _check_array(array: Any, op: str) -> np.ndarray:
    """The array an init function of name ``op`` fills: a writeable floating ndarray."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{op}: array must be a numpy.ndarray, got {type(array).__name__}")
    if array.dtype.kind != "f":
        raise TypeError(f"{op}: array must have a floating dtype, got {array.dtype}")
    if not array.flags.writeable:
        raise ValueError(f"{op}: array is read-only")
    return array


def _number(value: Any, name: str, op: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{op}: {name} must be finite, got {value!r}")
    return v


def calculate_fan_in_and_fan_out(array: Any) -> Tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (d0, d1, *k) (module docstring)."""
    return _fans(array, "calculate_fan_in_and_fan_out")


def _fans(array: Any, op: str) -> Tuple[int, int]:
    shape = np.shape(array)
    if len(shape) < 2:
        raise ValueError(
            f"{op}: array must have at least 2 dimensions for fan in and fan out, "
            f"got shape {shape}"
        )
    receptive = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fan(array: Any, mode: str, op: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{op}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(array, op)
    return fan_in if mode == "fan_in" else fan_out


def calculate_gain(nonlinearity: str, param: Optional[float] = None) -> float:
    """The recommended gain for a nonlinearity (torch's table).

    Parameters
    ----------
    nonlinearity : str
        linear, conv1d/2d/3d, conv_transpose1d/2d/3d, sigmoid: 1; tanh: 5/3; relu: sqrt(2);
        leaky_relu: sqrt(2 / (1 + negative_slope**2)); selu: 3/4.
    param : float, optional
        leaky_relu's negative_slope (default 0.01).

    Returns
    -------
    float

    Examples
    --------
    >>> from fastconv import init
    >>> round(init.calculate_gain("relu"), 6)
    1.414214
    >>> round(init.calculate_gain("leaky_relu", 0.2), 6)
    1.38675
    """
    return _gain(nonlinearity, param, "param", "calculate_gain")


def _gain(nonlinearity: Any, param: Any, param_name: str, op: str) -> float:
    """calculate_gain for the public function ``op``, where ``param`` is called
    ``param_name`` ("a" in the kaiming functions)."""
    if not isinstance(nonlinearity, str):
        raise TypeError(f"{op}: nonlinearity must be a string, got {nonlinearity!r}")
    if nonlinearity in _LINEAR_LIKE:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else _number(param, param_name, op)
        return math.sqrt(2.0 / (1.0 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    raise ValueError(f"{op}: nonlinearity: unsupported value {nonlinearity!r}")


#: Draws are made this many at a time (a VGG-16 classifier weight has 10**8 elements: no
#: float64 copy of it all).
_CHUNK = 1 << 20


def _draw(array: np.ndarray, gen: np.random.Generator, normal: bool, scale: float,
          shift: float) -> None:
    """Fill ``array`` with scale * U[0, 1) + shift, or scale * N(0, 1) + shift. Drawn and
    computed in float64 whatever the array's dtype, then cast, so one seed gives the same
    values in float32 as in float64 (rounded to float32): a float32 model and its float64
    copy built with the same seed hold the same weights."""
    draw = gen.standard_normal if normal else gen.random
    if not array.flags.c_contiguous:
        array[...] = draw(array.shape) * scale + shift
        return
    flat = array.reshape(-1)
    for lo in range(0, flat.size, _CHUNK):  # the stream is the same as one draw of it all
        block = draw(min(_CHUNK, flat.size - lo))
        block *= scale
        block += shift
        flat[lo : lo + block.size] = block


def _uniform(array: np.ndarray, a: Any, b: Any, generator: Any, op: str) -> np.ndarray:
    """uniform_ on behalf of the public function ``op`` (its messages start with ``op``)."""
    _check_array(array, op)
    lo, hi = _number(a, "a", op), _number(b, "b", op)
    if lo > hi:
        raise ValueError(f"{op}: a must be <= b, got a={a}, b={b}")
    _draw(array, as_generator(generator, op), normal=False, scale=hi - lo, shift=lo)
    return array


def _normal(array: np.ndarray, mean: Any, std: Any, generator: Any, op: str) -> np.ndarray:
    """normal_ on behalf of the public function ``op``."""
    _check_array(array, op)
    m, s = _number(mean, "mean", op), _number(std, "std", op)
    if s < 0:
        raise ValueError(f"{op}: std must be >= 0, got {std}")
    _draw(array, as_generator(generator, op), normal=True, scale=s, shift=m)
    return array


def uniform_(array: np.ndarray, a: float = 0.0, b: float = 1.0, *, generator: Any = None):
    """Fill ``array`` with values drawn from U(a, b).

    Parameters
    ----------
    array : numpy.ndarray
        A writeable floating array, filled in place.
    a, b : float, default 0 and 1
        Finite bounds, a <= b.
    generator : numpy.random.Generator, int or None, default None
        Draws the values (an int is a seed; None a fresh, unseeded generator).

    Returns
    -------
    numpy.ndarray
        ``array`` itself.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import init
    >>> w = init.uniform_(np.empty((2, 3)), -1.0, 1.0, generator=0)
    >>> bool(((w >= -1) & (w < 1)).all())
    True
    """
    return _uniform(array, a, b, generator, "uniform_")


def normal_(array: np.ndarray, mean: float = 0.0, std: float = 1.0, *, generator: Any = None):
    """Fill ``array`` with values drawn from N(mean, std**2).

    Parameters
    ----------
    array : numpy.ndarray
        A writeable floating array, filled in place.
    mean : float, default 0
    std : float, default 1
        A finite number >= 0.
    generator : numpy.random.Generator, int or None, default None
        Draws the values (an int is a seed; None a fresh, unseeded generator).

    Returns
    -------
    numpy.ndarray
        ``array`` itself.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import init
    >>> w = init.normal_(np.empty(10000), 2.0, 0.5, generator=0)
    >>> round(float(w.mean()), 1), round(float(w.std()), 1)
    (2.0, 0.5)
    """
    return _normal(array, mean, std, generator, "normal_")


def _constant(array: np.ndarray, val: Any, op: str) -> np.ndarray:
    _check_array(array, op)
    array[...] = _number(val, "val", op)
    return array


def constant_(array: np.ndarray, val: float):
    """Fill ``array`` with ``val``.

    Parameters
    ----------
    array : numpy.ndarray
        A writeable floating array, filled in place.
    val : float
        A finite number.

    Returns
    -------
    numpy.ndarray
        ``array`` itself.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import init
    >>> init.constant_(np.empty(3), 0.5)
    array([0.5, 0.5, 0.5])
    """
    return _constant(array, val, "constant_")


def zeros_(array: np.ndarray):
    """Fill ``array`` with 0.

    Parameters
    ----------
    array : numpy.ndarray
        A writeable floating array, filled in place.

    Returns
    -------
    numpy.ndarray
        ``array`` itself.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import init
    >>> init.zeros_(np.ones((2, 2)))
    array([[0., 0.],
           [0., 0.]])
    """
    return _constant(array, 0.0, "zeros_")


def ones_(array: np.ndarray):
    """Fill ``array`` with 1.

    Parameters
    ----------
    array : numpy.ndarray
        A writeable floating array, filled in place.

    Returns
    -------
    numpy.ndarray
        ``array`` itself.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import init
    >>> init.ones_(np.zeros(3, np.float32))
    array([1., 1., 1.], dtype=float32)
    """
    return _constant(array, 1.0, "ones_")


def _xavier_std(array: np.ndarray, gain: Any, op: str) -> float:
    """gain * sqrt(2 / (fan_in + fan_out)), checking ``gain`` (>= 0: torch rejects negative
    gains too, through the range it then asks for) and the fans."""
    _check_array(array, op)
    g = _number(gain, "gain", op)
    if g < 0:
        raise ValueError(f"{op}: gain must be >= 0, got {gain!r}")
    fan_in, fan_out = _fans(array, op)
    if fan_in + fan_out == 0:
        raise ValueError(f"{op}: array of shape {array.shape} has fan_in + fan_out = 0: "
                         "Xavier initialisation is undefined for it")
    return g * math.sqrt(2.0 / float(fan_in + fan_out))


def xavier_uniform_(array: np.ndarray, gain: float = 1.0, *, generator: Any = None):
    """Glorot uniform: fill ``array`` with U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)).

    Parameters
    ----------
    array : numpy.ndarray, shape (d0, d1, *k)
        A writeable floating array of at least 2 dimensions, filled in place; fan_in =
        d1 * prod(k), fan_out = d0 * prod(k).
    gain : float, default 1
        A finite number >= 0 (see :func:`calculate_gain`).
    generator : numpy.random.Generator, int or None, default None
        Draws the values (an int is a seed; None a fresh, unseeded generator).

    Returns
    -------
    numpy.ndarray
        ``array`` itself.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import init
    >>> w = init.xavier_uniform_(np.empty((64, 32)), generator=0)
    >>> bool(np.abs(w).max() <= np.sqrt(6 / (32 + 64)))
    True
    """
    op = "xavier_uniform_"
    bound = math.sqrt(3.0) * _xavier_std(array, gain, op)
    return _uniform(array, -bound, bound, generator, op)


def xavier_normal_(array: np.ndarray, gain: float = 1.0, *, generator: Any = None):
    """Glorot normal: fill ``array`` with N(0, std**2), std = gain * sqrt(2 / (fan_in + fan_out)).

    Parameters
    ----------
    array : numpy.ndarray, shape (d0, d1, *k)
        As :func:`xavier_uniform_`'s.
    gain : float, default 1
        A finite number >= 0.
    generator : numpy.random.Generator, int or None, default None
        Draws the values (an int is a seed; None a fresh, unseeded generator).

    Returns
    -------
    numpy.ndarray
        ``array`` itself.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import init
    >>> w = init.xavier_normal_(np.empty((200, 300)), generator=0)
    >>> round(float(w.std() / np.sqrt(2 / (200 + 300))), 1)
    1.0
    """
    op = "xavier_normal_"
    return _normal(array, 0.0, _xavier_std(array, gain, op), generator, op)


def kaiming_uniform_(
    array: np.ndarray,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    *,
    generator: Any = None,
):
    """He uniform: fill ``array`` with U(-b, b), b = gain * sqrt(3 / fan).

    gain = calculate_gain(nonlinearity, a). An empty array is left as it is (torch warns and
    does the same).

    Parameters
    ----------
    array : numpy.ndarray, shape (d0, d1, *k)
        A writeable floating array of at least 2 dimensions, filled in place.
    a : float, default 0
        leaky_relu's negative slope.
    mode : {'fan_in', 'fan_out'}, default 'fan_in'
        fan = d1 * prod(k) (fan_in) or d0 * prod(k) (fan_out).
    nonlinearity : str, default 'leaky_relu'
        As :func:`calculate_gain`'s.
    generator : numpy.random.Generator, int or None, default None
        Draws the values (an int is a seed; None a fresh, unseeded generator).

    Returns
    -------
    numpy.ndarray
        ``array`` itself.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import init
    >>> w = init.kaiming_uniform_(np.empty((64, 16, 3, 3)), nonlinearity="relu", generator=0)
    >>> bool(np.abs(w).max() <= np.sqrt(2) * np.sqrt(3 / (16 * 9)))
    True
    """
    op = "kaiming_uniform_"
    _check_array(array, op)
    if array.size == 0:
        return array
    fan = _fan(array, mode, op)
    bound = math.sqrt(3.0) * _gain(nonlinearity, a, "a", op) / math.sqrt(fan)
    return _uniform(array, -bound, bound, generator, op)


def kaiming_normal_(
    array: np.ndarray,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    *,
    generator: Any = None,
):
    """He normal: fill ``array`` with N(0, std**2), std = gain / sqrt(fan).

    gain = calculate_gain(nonlinearity, a). An empty array is left as it is.

    Parameters
    ----------
    array : numpy.ndarray, shape (d0, d1, *k)
        A writeable floating array of at least 2 dimensions, filled in place.
    a : float, default 0
    mode : {'fan_in', 'fan_out'}, default 'fan_in'
    nonlinearity : str, default 'leaky_relu'
        As :func:`kaiming_uniform_`'s.
    generator : numpy.random.Generator, int or None, default None
        Draws the values (an int is a seed; None a fresh, unseeded generator).

    Returns
    -------
    numpy.ndarray
        ``array`` itself.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import init
    >>> w = init.kaiming_normal_(np.empty((256, 128, 3, 3)), mode="fan_out",
    ...                          nonlinearity="relu", generator=0)
    >>> round(float(w.std() * np.sqrt(256 * 9 / 2)), 2)  # std = sqrt(2 / fan_out)
    1.0
    """
    op = "kaiming_normal_"
    _check_array(array, op)
    if array.size == 0:
        return array
    std = _gain(nonlinearity, a, "a", op) / math.sqrt(_fan(array, mode, op))
    return _normal(array, 0.0, std, generator, op)
