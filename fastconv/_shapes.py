"""The one home of fastconv's geometry: argument normalisation, validation, output sizes.

Every public function calls one of the ``*_geometry`` functions below before anything else,
and :func:`check_memory` before it allocates; nothing else in fastconv computes an output size
or checks an argument. Each invalid argument raises ValueError (a bad value) or TypeError (a
bad type) naming the parameter and its value; an output or workspace too large to allocate
raises ValueError naming the argument that makes it so large. Every message starts with the
name the user called, ``op`` (the public function, layer class or method), once:
"conv2d: stride must be positive, got 0"; the geometry functions take it first, the
scalar checks (as_int, as_tuple, as_shape, as_bool) as the keyword ``op``.

Output-size formulas (per spatial axis; In = input size, K = kernel size, s = stride,
d = dilation, p0 / p1 = padding before / after, op = output_padding):

- convolution:        Out = floor((In + p0 + p1 - d*(K-1) - 1) / s) + 1
- transposed conv:    Out = (In - 1)*s - 2*p + d*(K-1) + op + 1
- pooling:            Out = floor_or_ceil((In + 2*p - d*(K-1) - 1) / s) + 1, and with
                      ceil_mode a last window that would start in the right padding
                      ((Out-1)*s >= In + p) is dropped
- adaptive pooling:   bin i covers [floor(i*In/Out), ceil((i+1)*In/Out))
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import operator
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np

#: Largest accepted value of any size-like parameter (stride, padding, dilation, kernel
#: size, output size). Keeps every index computation inside 64-bit integers in every backend.
MAX_PARAM = 2**31 - 1
#: Largest number of elements of any output or workspace fastconv agrees to allocate.
MAX_ELEMENTS = 2**48
#: Bytes one call may allocate where the system does not say how much memory it has.
DEFAULT_MEMORY_BYTES = 2**40


def _physical_memory() -> int:
    """The machine's total memory in bytes (os.sysconf), or DEFAULT_MEMORY_BYTES if unknown."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX, or the names are unknown
        return DEFAULT_MEMORY_BYTES
    return total if total > 0 else DEFAULT_MEMORY_BYTES


#: Most bytes of outputs and workspace one call may allocate (see :func:`check_memory`).
MEMORY_BYTES = _physical_memory()

IntOrSeq = Union[int, Sequence[int]]
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


# --------------------------------------------------------------------------- memo

_F = TypeVar("_F", bound=Callable[..., Any])
#: Most entries a memoised geometry function keeps (the cache starts over when full).
MEMO_SIZE = 512


class _NoKey(Exception):
    """An argument that cannot be part of an exact cache key."""


def _key(v: Any) -> Any:
    """An exact, hashable key for an argument: its type is part of the key, so ``1``,
    ``True``, ``1.0`` and ``np.int64(1)`` never share an entry; anything but int, bool, str,
    None and tuples / lists of those raises _NoKey (the call is then not memoised)."""
    t = type(v)
    if t is int or t is str or v is None:  # no two of these compare equal
        return v
    if t is bool:
        return (bool, v)
    if t is tuple or t is list:
        return (t, tuple(map(_key, v)))
    raise _NoKey


def memo(fn: _F) -> _F:
    """Memoise a geometry function on exact keys of its arguments.

    The geometry functions depend on their arguments only and return frozen objects, so a
    repeated call (a layer run on batch after batch) may return the earlier result instead of
    validating again. Only successful calls are stored: an invalid call raises every time.
    """
    cache: Dict[Any, Any] = {}

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if kwargs:
            return fn(*args, **kwargs)
        try:
            key = tuple(map(_key, args))
        except _NoKey:
            return fn(*args)
        hit = cache.get(key)
        if hit is None:
            hit = fn(*args)
            if len(cache) >= MEMO_SIZE:
                cache.clear()
            cache[key] = hit
        return hit

    wrapper.cache = cache  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------- scalars


def _at(op: str) -> str:
    """The start of a message raised on behalf of the public function ``op``: "op: ", or
    nothing where no name is given (the caller then prefixes the message itself)."""
    return f"{op}: " if op else ""


def as_int(value: Any, name: str, *, minimum: int = 0, op: str = "") -> int:
    """Return ``value`` as a Python int, checking type and range; a message names ``op`` (the
    public function or layer), then the parameter ``name``."""
    if type(value) is int and minimum <= value <= MAX_PARAM:
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{_at(op)}{name} must be an integer, got {value!r} ({type(value).__name__})"
        )
    v = operator.index(value)
    if v < minimum:
        what = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{_at(op)}{name} must be {what}, got {v}")
    if v > MAX_PARAM:
        raise ValueError(f"{_at(op)}{name} is too large: {v} (at most {MAX_PARAM})")
    return v


def _is_sequence(value: Any) -> bool:
    """A tuple, list or other sequence of sizes (not a string), or a 1-D array."""
    if isinstance(value, np.ndarray):
        return value.ndim == 1
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def as_tuple(value: Any, name: str, n: int, *, minimum: int = 0, op: str = "") -> Tuple[int, ...]:
    """Normalise an int or a sequence of 1 or ``n`` ints to an ``n``-tuple (as torch does)."""
    if type(value) is int:
        return (as_int(value, name, minimum=minimum, op=op),) * n
    if _is_sequence(value):
        items = list(value)
        if len(items) == 1:
            items = items * n
        if len(items) != n:
            raise ValueError(
                f"{_at(op)}{name} must be a single int or a sequence of {n} ints, got {value!r}"
            )
        return tuple(as_int(v, name, minimum=minimum, op=op) for v in items)
    if isinstance(value, (str, bytes, np.ndarray)):  # a string, or an array not 1-D
        raise TypeError(f"{_at(op)}{name} must be an int or a tuple of {n} ints, got {value!r}")
    return (as_int(value, name, minimum=minimum, op=op),) * n


def as_shape(
    value: Any, name: str, ndims: Optional[Tuple[int, ...]] = None, *, op: str = ""
) -> Tuple[int, ...]:
    """Validate a shape argument (input_shape, weight_shape): a sequence of ints >= 0, as many
    as one of ``ndims`` says (None: at least one)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{_at(op)}{name} must be a sequence of ints, got {value!r}")
    shape = tuple(as_int(v, name, op=op) for v in value)
    if ndims is None and not shape:
        raise ValueError(f"{_at(op)}{name} must have at least one entry, got {shape}")
    if ndims is not None and len(shape) not in ndims:
        want = " or ".join(str(n) for n in ndims)
        raise ValueError(f"{_at(op)}{name} must have {want} entries, got {shape}")
    return shape


def as_bool(value: Any, name: str, *, op: str = "") -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{_at(op)}{name} must be a bool, got {value!r} ({type(value).__name__})")
    return bool(value)


def _check_total(op: str, shape: Sequence[int], culprit: str) -> None:
    """Refuse an output of more than MAX_ELEMENTS elements, naming the argument that makes it
    so large (``culprit``, as ConvGeometry.culprit)."""
    total = 1
    for s in shape:
        total *= s
    if total > MAX_ELEMENTS:
        raise ValueError(
            f"{op}: {culprit} is too large: the output would have {total} elements, more than "
            f"{MAX_ELEMENTS} (shape {tuple(shape)})"
        )


def check_memory(op: str, parts: Sequence[Tuple[str, int]]) -> None:
    """Refuse a call whose outputs and workspaces would not fit in the machine's memory.

    ``parts`` lists (argument, bytes): every array the public function is about to allocate,
    estimated from the geometry before anything is allocated, each with the argument that
    sets its size. Over MEMORY_BYTES in total, the ValueError names the argument of the
    largest part and the total in GiB (NumPy would raise a bare MemoryError later, or the
    machine would start swapping).
    """
    total = 0
    for _, nbytes in parts:
        total += nbytes
    if total <= MEMORY_BYTES:
        return
    culprit = max(parts, key=lambda part: part[1])[0]
    raise ValueError(
        f"{op}: {culprit} is too large: the call would allocate {total / 2**30:.1f} GiB "
        f"(outputs and workspace), more than this machine's memory "
        f"({MEMORY_BYTES / 2**30:.1f} GiB)"
    )


# --------------------------------------------------------------------------- shapes


def _spatial_input(shape: Tuple[int, ...], nd: int, op: str, name: str = "input"):
    """Split an input shape into (batched, N, C, spatial) for an ``nd``-D op."""
    if len(shape) == nd + 2:
        return True, shape[0], shape[1], tuple(shape[2:])
    if len(shape) == nd + 1:
        return False, 1, shape[0], tuple(shape[1:])
    raise ValueError(
        f"{op}: {name} must be {nd + 1}-D (unbatched) or {nd + 2}-D (batched), "
        f"got shape {tuple(shape)}"
    )


def _conv_out(size: int, k: int, s: int, p0: int, p1: int, d: int, op: str, axis: str) -> int:
    padded = size + p0 + p1
    eff = d * (k - 1) + 1
    if eff > padded:
        raise ValueError(
            f"{op}: kernel size {k} with dilation {d} (effective {eff}) is larger than the "
            f"padded input {padded} along {axis}"
        )
    return (padded - eff) // s + 1


@dataclass(frozen=True)
class ConvGeometry:
    """Normalised geometry of a (transposed) convolution, as 2-D (1-D ops have H = KH = 1)."""

    batched: bool
    N: int
    C: int
    H: int
    W: int
    OC: int
    KH: int
    KW: int
    OH: int
    OW: int
    sh: int
    sw: int
    pad: Tuple[int, int, int, int]  # top, bottom, left, right
    dh: int
    dw: int
    groups: int
    nd: int
    #: the argument that makes the output large, named when it is too large to allocate
    #: (see _conv_culprit): "input", "padding", "weight" (out_channels or, transposed, the
    #: kernel size), "stride" or "dilation"
    culprit: str = "input"

    @property
    def ph(self) -> int:
        return self.pad[0]

    @property
    def pw(self) -> int:
        return self.pad[2]

    def output_shape(self) -> Tuple[int, ...]:
        """The user-visible output shape (unbatched / 1-D as the input was)."""
        spatial = (self.OH, self.OW) if self.nd == 2 else (self.OW,)
        return ((self.N,) if self.batched else ()) + (self.OC,) + spatial


#: The activations a fused epilogue applies (fastconv.fused), None = none.
ACTIVATIONS = (None, "relu", "relu6")


def check_epilogue(op: str, shapes: Dict[str, Tuple[int, ...]], out_shape: Tuple[int, ...],
                   OC: int, activation: Any) -> None:
    """A fused epilogue's arguments (fastconv.fused): ``scale`` and ``shift`` of shape (OC,),
    ``residual`` of the output's shape, ``activation`` one of :data:`ACTIVATIONS`; ``shapes``
    holds the shapes of the arrays given."""
    for name in ("scale", "shift"):
        if name in shapes and tuple(shapes[name]) != (OC,):
            raise ValueError(
                f"{op}: {name} must have shape ({OC},) (one value per output channel), got "
                f"{tuple(shapes[name])}"
            )
    if "residual" in shapes and tuple(shapes["residual"]) != tuple(out_shape):
        raise ValueError(
            f"{op}: residual must have the output's shape {tuple(out_shape)}, got "
            f"{tuple(shapes['residual'])}"
        )
    if not (activation is None or isinstance(activation, str)):
        raise TypeError(
            f"{op}: activation must be None, 'relu' or 'relu6', got {type(activation).__name__}"
        )
    if activation not in ACTIVATIONS:
        raise ValueError(f"{op}: activation must be None, 'relu' or 'relu6', got {activation!r}")


def is_depthwise(C: int, groups: int) -> bool:
    """Whether a convolution of C input channels in ``groups`` groups is depthwise: one input
    channel per group, so each output channel reads one input channel (o // (OC / C)), which
    is what the ``depthwise_conv2d`` kernels compute."""
    return groups == C


def check_groups(op: str, what: str, channels: int, groups: int) -> None:
    """A grouped convolution's channel count (``channels``, described by ``what``) must be
    divisible by ``groups``: each group takes C/G input and makes OC/G output channels."""
    if channels % groups:
        raise ValueError(f"{op}: {what} must be divisible by groups = {groups}")


def _conv_culprit(g: ConvGeometry, transposed: bool) -> str:
    """The argument that makes a (transposed) convolution's output large: the one to name
    when the output is too large to allocate.

    Along H and W, a convolution's output outgrows its input only through padding
    (Out <= In + p0 + p1), a transposed convolution's through stride, dilation and kernel
    size (Out = (In-1)*s - 2*p + d*(K-1) + op + 1); out_channels (the weight's) scale it
    too. Where neither grows it, the input itself is large.
    """
    spatial, channels = g.OH * g.OW * g.C, g.OC * g.H * g.W  # each growth, times C*H*W
    if max(spatial, channels) <= g.C * g.H * g.W:
        return "input"
    if channels > spatial:
        return "weight"
    if not transposed:
        return "padding"
    growth = (
        ("stride", max((g.H - 1) * (g.sh - 1), (g.W - 1) * (g.sw - 1))),
        ("dilation", max((g.KH - 1) * (g.dh - 1), (g.KW - 1) * (g.dw - 1))),
        ("weight", max(g.KH, g.KW) - 1),
    )
    return max(growth, key=lambda item: item[1])[0]


def _to2d(vals: Tuple[int, ...], fill: int) -> Tuple[int, int]:
    return (vals[0], vals[1]) if len(vals) == 2 else (fill, vals[0])


def _check_weight(op, w_shape, nd, wname="weight"):
    if len(w_shape) != nd + 2:
        raise ValueError(f"{op}: {wname} must be {nd + 2}-D, got shape {tuple(w_shape)}")
    if any(s == 0 for s in w_shape):
        raise ValueError(f"{op}: {wname} must not be empty, got shape {tuple(w_shape)}")


def check_bias(op, b_shape, oc, name="bias"):
    if b_shape is None:
        return
    if tuple(b_shape) != (oc,):
        raise ValueError(
            f"{op}: {name} must be 1-D with {oc} elements (one per output channel), "
            f"got shape {tuple(b_shape)}"
        )


def _dims(name: str) -> str:
    """How a message refers to the shape of the argument ``name``: "weight.shape", or
    "weight_shape" itself where the argument is a shape."""
    return name if name.endswith("_shape") else f"{name}.shape"


def _check_spatial_nonempty(op, N, C, spatial, shape, allow_zero_channels=False, name="input"):
    if any(s == 0 for s in spatial) and not (N == 0 or (allow_zero_channels and C == 0)):
        raise ValueError(
            f"{op}: {name} has a zero-size spatial dimension, shape {tuple(shape)} "
            "(only the batch dimension may be 0)"
        )


def conv_padding(
    padding: Any, nd: int, k: Tuple[int, ...], d: Tuple[int, ...], s: Tuple[int, ...], op: str
) -> Tuple[int, ...]:
    """Resolve ``padding`` (int, tuple, 'same', 'valid') to (before, after) per axis.

    Returns a flat tuple (p0_axis0, p1_axis0, p0_axis1, p1_axis1, ...). 'same' pads
    d*(K-1) in total, floor half before and the rest after (as torch); it needs stride 1.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * (2 * nd)
        if padding == "same":
            if any(si != 1 for si in s):
                raise ValueError(
                    f"{op}: padding='same' is not supported for strided convolutions (stride={s})"
                )
            out: list = []
            for ki, di in zip(k, d):
                total = di * (ki - 1)
                out += [total // 2, total - total // 2]
            return tuple(out)
        raise ValueError(
            f"{op}: padding must be an int, a tuple of ints, 'same' or 'valid', got {padding!r}"
        )
    p = as_tuple(padding, "padding", nd, minimum=0, op=op)
    return tuple(v for pi in p for v in (pi, pi))


@memo
def conv_geometry(
    op: str,
    x_shape: Tuple[int, ...],
    w_shape: Tuple[int, ...],
    b_shape: Optional[Tuple[int, ...]],
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: Any,
    nd: int,
    xn: str = "input",
    wn: str = "weight",
) -> ConvGeometry:
    """Validate a convolution's arguments and compute its output size. ``xn`` and ``wn``
    are what the public function calls the input and the weight (or their shapes:
    "input_shape", "weight_shape"); two strings, which make a cheap memo key."""
    batched, N, C, spatial = _spatial_input(x_shape, nd, op, xn)
    _check_weight(op, w_shape, nd, wn)
    s = as_tuple(stride, "stride", nd, minimum=1, op=op)
    d = as_tuple(dilation, "dilation", nd, minimum=1, op=op)
    g = as_int(groups, "groups", minimum=1, op=op)
    OC, Cg = w_shape[0], w_shape[1]
    k = tuple(w_shape[2:])
    check_groups(op, f"out_channels ({_dims(wn)}[0] = {OC})", OC, g)
    if C != Cg * g:
        raise ValueError(
            f"{op}: {xn} has {C} channels but {wn} expects {Cg} * groups ({g}) = {Cg * g} "
            f"({_dims(xn)} {tuple(x_shape)}, {_dims(wn)} {tuple(w_shape)})"
        )
    check_bias(op, b_shape, OC)
    _check_spatial_nonempty(op, N, C, spatial, x_shape, name=xn)
    pads = conv_padding(padding, nd, k, d, s, op)
    axes = ("H", "W") if nd == 2 else ("L",)
    outs = tuple(
        _conv_out(spatial[i], k[i], s[i], pads[2 * i], pads[2 * i + 1], d[i], op, axes[i])
        for i in range(nd)
    )
    H, W = _to2d(spatial, 1)
    KH, KW = _to2d(k, 1)
    OH, OW = _to2d(outs, 1)
    sh, sw = _to2d(s, 1)
    dh, dw = _to2d(d, 1)
    p4 = pads if nd == 2 else (0, 0) + pads
    pad4 = (p4[0], p4[1], p4[2], p4[3])
    geo = ConvGeometry(batched, N, C, H, W, OC, KH, KW, OH, OW, sh, sw, pad4, dh, dw, g, nd)
    geo = dataclasses.replace(geo, culprit=_conv_culprit(geo, False))
    _check_total(op, (N, OC) + outs, geo.culprit)
    return geo


def output_padding_tuple(
    value: Any, stride: Tuple[int, ...], dilation: Tuple[int, ...], op: str
) -> Tuple[int, ...]:
    """Normalise a transposed convolution's ``output_padding`` against its (normalised)
    stride and dilation: along each axis it must be smaller than either (torch's rule), since
    a larger one would add output positions that no input position reaches."""
    op_ = as_tuple(value, "output_padding", len(stride), minimum=0, op=op)
    for o, s, d in zip(op_, stride, dilation):
        if o >= max(s, d):
            raise ValueError(
                f"{op}: output_padding must be smaller than either stride or dilation, got "
                f"output_padding={op_}, stride={stride}, dilation={dilation}"
            )
    return op_


@memo
def conv_transpose_geometry(
    op: str,
    x_shape: Tuple[int, ...],
    w_shape: Tuple[int, ...],
    b_shape: Optional[Tuple[int, ...]],
    stride: Any,
    padding: Any,
    output_padding: Any,
    groups: Any,
    dilation: Any,
    nd: int,
    xn: str = "input",
    wn: str = "weight",
) -> ConvGeometry:
    """Validate a transposed convolution's arguments and compute its output size (``xn``,
    ``wn`` as :func:`conv_geometry`'s)."""
    batched, N, C, spatial = _spatial_input(x_shape, nd, op, xn)
    _check_weight(op, w_shape, nd, wn)
    s = as_tuple(stride, "stride", nd, minimum=1, op=op)
    d = as_tuple(dilation, "dilation", nd, minimum=1, op=op)
    g = as_int(groups, "groups", minimum=1, op=op)
    if isinstance(padding, str):
        raise TypeError(f"{op}: padding must be an int or a tuple of ints, got {padding!r}")
    p = as_tuple(padding, "padding", nd, minimum=0, op=op)
    op_ = output_padding_tuple(output_padding, s, d, op)
    if w_shape[0] != C:
        raise ValueError(
            f"{op}: {_dims(wn)}[0] = {w_shape[0]} must equal the {xn}'s channels {C} "
            f"({wn} is (in_channels, out_channels/groups, ...))"
        )
    check_groups(op, f"in_channels = {C}", C, g)
    OC = w_shape[1] * g
    k = tuple(w_shape[2:])
    check_bias(op, b_shape, OC)
    _check_spatial_nonempty(op, N, C, spatial, x_shape, name=xn)
    outs = tuple(
        (spatial[i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op_[i] + 1 for i in range(nd)
    )
    if any(o < 1 for o in outs):
        raise ValueError(
            f"{op}: output size {outs} is too small (input {spatial}, stride {s}, "
            f"padding {p}, dilation {d}, kernel {k}, output_padding {op_})"
        )
    H, W = _to2d(spatial, 1)
    KH, KW = _to2d(k, 1)
    OH, OW = _to2d(outs, 1)
    sh, sw = _to2d(s, 1)
    dh, dw = _to2d(d, 1)
    ph, pw = _to2d(p, 0)
    geo = ConvGeometry(
        batched, N, C, H, W, OC, KH, KW, OH, OW, sh, sw, (ph, ph, pw, pw), dh, dw, g, nd
    )
    geo = dataclasses.replace(geo, culprit=_conv_culprit(geo, True))
    _check_total(op, (N, OC) + outs, geo.culprit)
    return geo


def padding_mode(value: Any, op: str = "") -> str:
    """Check a convolution's ``padding_mode`` (one of PADDING_MODES)."""
    if not isinstance(value, str):
        raise TypeError(f"{_at(op)}padding_mode must be a string, got {value!r}")
    if value not in PADDING_MODES:
        raise ValueError(f"{_at(op)}padding_mode must be one of {PADDING_MODES}, got {value!r}")
    return value


def check_explicit_padding(mode: str, g: ConvGeometry, op: str = "") -> None:
    """Check that a non-zero padding mode can pad the input by ``g.pad`` (torch's rules)."""
    sizes = (("H", g.H, g.pad[0], g.pad[1]), ("W", g.W, g.pad[2], g.pad[3]))
    for axis, size, p0, p1 in sizes[2 - g.nd :]:
        if mode == "reflect" and max(p0, p1) >= size:
            raise ValueError(
                f"{_at(op)}padding {(p0, p1)} along {axis} must be smaller than the input size "
                f"{size} for padding_mode='reflect'"
            )
        if mode == "circular" and max(p0, p1) > size:
            raise ValueError(
                f"{_at(op)}padding {(p0, p1)} along {axis} must be at most the input size "
                f"{size} for padding_mode='circular'"
            )


# --------------------------------------------------------------------------- pooling


@dataclass(frozen=True)
class PoolGeometry:
    """Normalised geometry of a pooling op, as 2-D (1-D ops have H = KH = 1)."""

    batched: bool
    N: int
    C: int
    H: int
    W: int
    OH: int
    OW: int
    KH: int
    KW: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    nd: int
    #: the argument that makes the output large (see ConvGeometry.culprit): "input", or an
    #: adaptive pooling's "output_size" where the output outgrows the input. (With padding
    #: at most half the kernel, Out <= In + 1: only a large input gives a large output.)
    culprit: str = "input"

    def output_shape(self) -> Tuple[int, ...]:
        spatial = (self.OH, self.OW) if self.nd == 2 else (self.OW,)
        return ((self.N,) if self.batched else ()) + (self.C,) + spatial


def pool_output_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """Pooling output size along one axis (torch's rule, including the ceil-mode drop)."""
    num = size + 2 * p - d * (k - 1) - 1 + ((s - 1) if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_input(
    op: str, x_shape, nd: int, allow_zero_channels: bool = False, name: str = "input"
):
    batched, N, C, spatial = _spatial_input(x_shape, nd, op, name)
    if (C == 0 and not allow_zero_channels) or any(v == 0 for v in spatial):
        what = "spatial sizes" if allow_zero_channels else "channel and spatial sizes"
        may = "batch and channels" if allow_zero_channels else "batch"
        raise ValueError(
            f"{op}: {name} must have non-zero {what} (only the {may} may be 0), "
            f"got shape {tuple(x_shape)}"
        )
    return batched, N, C, spatial


@memo
def pool_geometry(
    op: str,
    x_shape: Tuple[int, ...],
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: Any,
    nd: int,
    x_name: str = "input",
) -> PoolGeometry:
    """Validate a max / avg pooling's arguments and compute its output size; ``x_name`` is
    what the public function calls the input ("input_shape" where it takes a shape)."""
    batched, N, C, spatial = _pool_input(op, x_shape, nd, name=x_name)
    k = as_tuple(kernel_size, "kernel_size", nd, minimum=1, op=op)
    if stride is None or (_is_sequence(stride) and len(stride) == 0):  # torch: None or []
        s = k
    else:
        s = as_tuple(stride, "stride", nd, minimum=1, op=op)
    p = as_tuple(padding, "padding", nd, minimum=0, op=op)
    d = as_tuple(dilation, "dilation", nd, minimum=1, op=op)
    ceil = as_bool(ceil_mode, "ceil_mode", op=op)
    for i in range(nd):
        eff = d[i] * (k[i] - 1) + 1
        if p[i] > k[i] // 2 or p[i] > eff // 2:
            raise ValueError(
                f"{op}: padding should be at most half of the kernel size, got padding={p}, "
                f"kernel_size={k}, dilation={d}"
            )
    outs = tuple(pool_output_size(spatial[i], k[i], s[i], p[i], d[i], ceil) for i in range(nd))
    if any(o < 1 for o in outs):
        raise ValueError(
            f"{op}: output size {outs} is too small (input {spatial}, kernel_size {k}, "
            f"stride {s}, padding {p}, dilation {d})"
        )
    _check_total(op, (N, C) + outs, "input")
    H, W = _to2d(spatial, 1)
    KH, KW = _to2d(k, 1)
    OH, OW = _to2d(outs, 1)
    sh, sw = _to2d(s, 1)
    ph, pw = _to2d(p, 0)
    dh, dw = _to2d(d, 1)
    return PoolGeometry(batched, N, C, H, W, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, nd)


def divisor_override(value: Any, op: str = "") -> int:
    """None -> 0 (no override); otherwise a non-zero int."""
    if value is None:
        return 0
    v = as_int(value, "divisor_override", minimum=-MAX_PARAM, op=op)
    if v == 0:
        raise ValueError(f"{_at(op)}divisor_override must not be zero")
    return v


@memo
def adaptive_geometry(
    op: str, x_shape: Tuple[int, ...], output_size: Any, nd: int, x_name: str = "input"
) -> PoolGeometry:
    """Validate an adaptive pooling's arguments; ``output_size`` entries may be None.
    Average pooling accepts zero channels (an empty output), as torch does; max does not.
    ``x_name`` as :func:`pool_geometry`'s."""
    avg = "_avg_" in op
    batched, N, C, spatial = _pool_input(op, x_shape, nd, allow_zero_channels=avg, name=x_name)
    if _is_sequence(output_size):
        items = list(output_size)
        if len(items) != nd:  # (2,) for a 2-D pool: torch refuses it too
            raise ValueError(f"{op}: output_size must have {nd} entries, got {output_size!r}")
    elif isinstance(output_size, np.ndarray):  # not 1-D
        raise TypeError(
            f"{op}: output_size must be an int or a tuple of {nd} ints or None, "
            f"got {output_size!r}"
        )
    else:
        items = [output_size] * nd
    outs = tuple(
        spatial[i] if v is None else as_int(v, "output_size", minimum=0, op=op)
        for i, v in enumerate(items)
    )
    H, W = _to2d(spatial, 1)
    OH, OW = _to2d(outs, 1)
    culprit = "output_size" if OH * OW > H * W else "input"
    _check_total(op, (N, C) + outs, culprit)
    return PoolGeometry(batched, N, C, H, W, OH, OW, 0, 0, 0, 0, 0, 0, 1, 1, nd, culprit)


def adaptive_bins(n_in: int, n_out: int) -> list:
    """[(start, end)] of each adaptive-pooling bin along one axis."""
    return [((i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)) for i in range(n_out)]
