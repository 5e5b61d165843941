"""scipy.ndimage's linear filters on fastconv's engines: ``from fastconv import ndimage``.

Functions, with SciPy's names, arguments, defaults, output shapes and dtypes:

=====================================  ===================================================
``correlate``, ``convolve``            N-D kernel, ``mode``, ``cval``, ``origin``, ``axes``
``correlate1d``, ``convolve1d``        1-D kernel along ``axis``
``uniform_filter``, ``uniform_filter1d``  box filter (separable)
``gaussian_filter``, ``gaussian_filter1d``  Gaussian and its derivatives (``order``,
                                       ``truncate``, ``radius``), separable
=====================================  ===================================================

Every function also takes the keyword-only ``backend="auto"`` (fastconv's engine of the
direct path: "c", "numba", "reference") and ``correlate``/``convolve`` take
``method="auto"`` ('direct', 'fft' or the cost model's pick, see docs/filtering.md).

Semantics are SciPy's: output = input's dtype unless ``output`` names another (an array is
written in place and returned), float32 stays float32, integer outputs truncate toward
zero exactly as SciPy's C cast does (integer outputs are computed in SciPy's own order of
operations, so a truncated 2.9999999999999996 agrees too), complex inputs and weights are
split into real filters as SciPy splits them, and every invalid argument raises the
class SciPy raises (RuntimeError cases raise ``ArgumentRuntimeError``, which is both a
RuntimeError and a ValueError) with a message naming the parameter. Dask arrays in give
dask arrays out (see docs/filtering.md). Modes: 'reflect' (= 'grid-mirror'), 'constant',
'grid-constant', 'nearest', 'mirror', 'wrap' (= 'grid-wrap').
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any, List, Optional, Tuple

import numpy as np

from ._filters import casting, direct, plan
from ._filters.errors import ArgumentRuntimeError, ArgumentZeroDivisionError, AxisError
from ._filters.plan import Problem
from .backends import _bigbuf

__all__ = [
    "convolve",
    "convolve1d",
    "correlate",
    "correlate1d",
    "gaussian_filter",
    "gaussian_filter1d",
    "uniform_filter",
    "uniform_filter1d",
]

#: scipy.ndimage's filter modes -> the boundary module's names.
_MODES = {
    "reflect": "reflect",
    "grid-mirror": "reflect",
    "constant": "constant",
    "grid-constant": "constant",
    "nearest": "nearest",
    "mirror": "mirror",
    "wrap": "wrap",
    "grid-wrap": "wrap",
}
_SUPPORTED = {
    np.dtype(t)
    for t in (
        np.bool_,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.float32,
        np.float64,
    )
}
_DBL_EPSILON = float(np.finfo(np.float64).eps)


# --------------------------------------------------------------------------- arguments


def _is_dask(a: Any) -> bool:
    return type(a).__module__.split(".")[0] == "dask" and hasattr(a, "map_overlap")


def _mode(mode: Any, name: str = "mode") -> str:
    if isinstance(mode, str) and mode in _MODES:
        return _MODES[mode]
    raise ArgumentRuntimeError(
        f"boundary mode not supported: {name}={mode!r} (one of {', '.join(_MODES)})"
    )


def _cval(cval: Any) -> float:
    if not isinstance(cval, (str, bytes, complex)):
        try:
            return float(cval)
        except (TypeError, ValueError):
            pass
    raise TypeError(f"cval must be a real number, got {cval!r}")


def _sequence(value: Any, rank: int, name: str) -> list:
    """SciPy's per-axis argument: a string or scalar repeated, or a sequence of ``rank``."""
    if isinstance(value, str):
        return [value] * rank
    if isinstance(value, (list, tuple, np.ndarray)) or (
        hasattr(value, "__iter__") and not np.isscalar(value)
    ):
        seq = list(value)
        if len(seq) != rank:
            raise ArgumentRuntimeError(
                f"sequence argument must have length equal to input rank: {name} has "
                f"{len(seq)} entries for {rank} axes"
            )
        return seq
    return [value] * rank


def _axes(axes: Any, ndim: int) -> Tuple[int, ...]:
    if axes is None:
        return tuple(range(ndim))
    if np.isscalar(axes) or isinstance(axes, numbers.Integral):
        axes = (axes,)
    elif not hasattr(axes, "__iter__"):
        raise ValueError(f"axes must be an integer, iterable of integers, or None, got {axes!r}")
    out = []
    for ax in axes:
        if not isinstance(ax, numbers.Integral):
            raise TypeError(f"axes must hold integers, got {ax!r}")
        ax = int(ax)
        if ax < -ndim or ax > ndim - 1:
            raise ValueError(f"specified axis: {ax} is out of range for axes of a {ndim}-D input")
        out.append(int(ax) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"axes must be unique, got axes={tuple(axes)}")
    return tuple(out)


def _axis(axis: Any, ndim: int) -> int:
    if not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    axis = int(axis)
    if axis < -ndim or axis >= ndim:
        raise AxisError(f"axis {axis} is out of bounds for array of dimension {ndim}")
    return int(axis) % ndim


def _origin_ok(origin: int, size: int) -> bool:
    return -(size // 2) <= origin <= (size - 1) // 2


def _int(value: Any, name: str) -> int:
    if isinstance(value, numbers.Integral):
        return int(value)
    raise TypeError(f"{name} must be an integer, got {value!r}")


def _output(
    output: Any, input: np.ndarray, complex_output: bool = False, lazy: bool = False
) -> np.ndarray:
    """SciPy's output argument: None, a dtype, or an array of the input's shape. With
    ``lazy``, a new output is a ``plan.placeholder`` (no memory): the engine that computes
    it allocates it, once (``_real`` where this module writes into it)."""
    shape = input.shape
    if output is None:
        dt = input.dtype
        if complex_output:
            dt = np.promote_types(dt, np.complex64)
        return plan.placeholder(shape, dt) if lazy else np.zeros(shape, dt)
    if isinstance(output, np.ndarray):
        if complex_output and output.dtype.kind != "c":
            raise ArgumentRuntimeError("output must have complex dtype")
        if output.shape != shape:
            raise ArgumentRuntimeError(
                f"output shape not correct: output has shape {output.shape}, the input {shape}"
            )
        return output
    try:
        dt = np.dtype(output)
    except TypeError as exc:
        raise TypeError(f"output must be None, a dtype or an array, got {output!r}") from exc
    if complex_output and dt.kind != "c":
        warnings.warn("promoting specified output dtype to complex", UserWarning, stacklevel=3)
        dt = np.promote_types(dt, np.complex64)
    return plan.placeholder(shape, dt) if lazy else np.zeros(shape, dt)


def _real(out: np.ndarray) -> np.ndarray:
    """out, or an array for it when it is a placeholder (see ``_output``)."""
    return out if out.flags.writeable else _bigbuf.empty(out.shape, out.dtype)


def _check_types(input: np.ndarray, output: np.ndarray) -> None:
    for what, a in (("input", input), ("output", output)):
        if a.dtype not in _SUPPORTED:
            raise ArgumentRuntimeError(f"array type {a.dtype!r} not supported ({what})")


def _method(method: Any) -> str:
    if method not in ("auto", "direct", "fft"):
        raise ValueError(f"method must be 'auto', 'direct' or 'fft', got {method!r}")
    return method


def _backend(backend: Any) -> str:
    import fastconv

    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {backend!r}")
    avail = fastconv.available_backends()
    if backend != "auto" and backend not in avail:
        raise ValueError(f"backend must be 'auto' or one of {tuple(avail)}, got {backend!r}")
    if backend != "auto" and not avail[backend].startswith("available"):
        raise ValueError(f"backend {backend!r} is {avail[backend]}")
    return backend


def _threads() -> int:
    import fastconv

    return fastconv.get_num_threads()


def _compute(input: np.ndarray, output: np.ndarray) -> np.dtype:
    single = input.dtype == np.float32 and output.dtype == np.float32
    return np.dtype(np.float32 if single else np.float64)


def _fresh(input: np.ndarray, output: np.ndarray) -> np.ndarray:
    """The input, copied when it shares memory with the output (an in-place call)."""
    return input.copy() if np.may_share_memory(input, output) else input


# --------------------------------------------------------------------------- correlate


def correlate(
    input: Any,
    weights: Any,
    output: Any = None,
    mode: str = "reflect",
    cval: float = 0.0,
    origin: Any = 0,
    *,
    axes: Any = None,
    method: str = "auto",
    backend: str = "auto",
):
    """Multidimensional correlation, as ``scipy.ndimage.correlate``.

    Parameters
    ----------
    input : array_like, any shape (D0, ..., Dn-1); a dask array gives a dask array
    weights : array_like, len(axes) dimensions (all of input's by default), sizes >= 1
    output : array (input's shape, written and returned) or dtype, optional; default the
        input's dtype
    mode : 'reflect', 'constant', 'nearest', 'mirror', 'wrap' or a 'grid-' alias
    cval : float, the value past the edges with mode 'constant'
    origin : int or sequence of len(axes); shifts the window: output[i] reads
        input[i + j - (k // 2 + origin)] for j < k, with -(k // 2) <= origin <= (k - 1) // 2
    axes : int or sequence of int, optional; the filtered axes (the others are a batch)
    method : 'auto', 'direct' or 'fft' (fastconv's; 'auto' asks the cost model)
    backend : fastconv engine of the direct method

    Returns
    -------
    ndarray, the input's shape: output[i] = sum_j weights[j] * input_ext[i + j - k//2 - origin]

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import ndimage
    >>> a = np.arange(16.0).reshape(4, 4)
    >>> ndimage.correlate(a, np.ones((3, 3)) / 9, mode="nearest")[1]
    array([4.33333333, 5.        , 6.        , 6.66666667])
    """
    return _correlate_or_convolve(
        input, weights, output, mode, cval, origin, axes, False, method, backend
    )


def convolve(
    input: Any,
    weights: Any,
    output: Any = None,
    mode: str = "reflect",
    cval: float = 0.0,
    origin: Any = 0,
    *,
    axes: Any = None,
    method: str = "auto",
    backend: str = "auto",
):
    """Multidimensional convolution, as ``scipy.ndimage.convolve``.

    The correlation (:func:`correlate`) with the weights flipped on every axis and the
    origin negated (minus one more on an axis of even length). Arguments, shapes and dtypes
    as :func:`correlate`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import ndimage
    >>> ndimage.convolve(np.array([1.0, 2, 3, 4]), np.array([1.0, 0, -1]), mode="constant")
    array([ 2.,  2.,  2., -3.])
    """
    return _correlate_or_convolve(
        input, weights, output, mode, cval, origin, axes, True, method, backend
    )


def _correlate_or_convolve(
    input, weights, output, mode, cval, origin, axes, convolution, method, backend
):
    method, backend = _method(method), _backend(backend)
    if _is_dask(input):
        from ._filters import lazy_dask

        name = "convolve" if convolution else "correlate"
        return lazy_dask.ndimage_call(
            name,
            input,
            weights,
            output=output,
            mode=mode,
            cval=cval,
            origin=origin,
            axes=axes,
            method=method,
            backend=backend,
        )
    input = np.asarray(input)
    weights = np.asarray(weights)
    if input.dtype.kind == "c" or weights.dtype.kind == "c":
        if weights.dtype.kind == "c" and not convolution:
            weights = weights.conj()  # a complex correlation conjugates the weights
        out = _output(output, input, complex_output=True)
        f = convolve if convolution else correlate
        return _complex_parts(
            f,
            input,
            weights,
            out,
            cval,
            mode=mode,
            origin=origin,
            axes=axes,
            method=method,
            backend=backend,
        )
    ax = tuple(sorted(_axes(axes, input.ndim)))  # weights' axes follow the input's order
    try:
        weights = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"weights must be numbers, got dtype {weights.dtype}") from exc
    if weights.ndim != len(ax):
        raise ArgumentRuntimeError(
            f"weights.ndim ({weights.ndim}) must match len(axes) ({len(ax)})"
        )
    origins = [_int(o, "origin") for o in _sequence(origin, len(ax), "origin")]
    if any(s < 1 for s in weights.shape):
        raise ArgumentRuntimeError(
            f"filter weights array has incorrect shape: weights.shape = {weights.shape}"
        )
    if convolution:
        weights = weights[(slice(None, None, -1),) * weights.ndim]
        origins = [-o - (0 if s & 1 else 1) for o, s in zip(origins, weights.shape)]
    for o, s in zip(origins, weights.shape):
        if not _origin_ok(o, s):
            raise ValueError(
                "Invalid origin; origin must satisfy -(weights.shape[k] // 2) <= origin[k] "
                f"<= (weights.shape[k]-1) // 2, got origin={origin!r} for weights of shape "
                f"{weights.shape}"
            )
    out = _output(output, input, lazy=True)
    fresh = not isinstance(output, np.ndarray)
    if not isinstance(mode, str) and hasattr(mode, "__iter__"):
        raise ArgumentRuntimeError(f"A sequence of modes is not supported (mode={mode!r})")
    m = _mode(mode)
    cv = _cval(cval)
    _check_types(input, out)
    # expand to every axis of the input: the others have a kernel of length 1
    shape = [1] * input.ndim
    orig = [0] * input.ndim
    for a, s, o in zip(ax, weights.shape, origins):
        shape[a], orig[a] = s, o
    w = weights.reshape(shape)
    x = _fresh(input, out)
    before = tuple(k // 2 + o for k, o in zip(shape, orig))
    after = tuple(k - 1 - b for k, b in zip(shape, before))
    modes = (m,) * input.ndim
    footprint = np.abs(w) > _DBL_EPSILON
    if out.dtype.kind in "bui" or (not footprint.all() and not _all_finite(x)):
        out = _real(out)
        _replay_correlate(x, w, footprint, before, modes, cv, out)
        return out
    w = np.where(footprint, w, 0.0)
    if input.ndim == 0:
        out = _real(out)
        out[()] = x * w[()]
        return out
    ct = _compute(x, out)
    p = Problem(
        x,
        w.astype(ct),
        before,
        after,
        modes,
        cv,
        out,
        casting.ndimage_cast(out.dtype),
        ct,
        plan.factorize(w, ct),
        fresh_out=fresh,
    )
    return plan.correlate(p, method, backend, _threads())


def _all_finite(x: np.ndarray) -> bool:
    return x.dtype.kind in "bui" or bool(np.isfinite(x).all())


def _complex_parts(f, input, weights, output, cval, **kw):
    """A complex filter as real ones, as SciPy splits it (the same parts, the same order)."""
    ci, cw = input.dtype.kind == "c", weights.dtype.kind == "c"
    if ci and cw:
        f(input.real, weights.real, output=output.real, cval=np.real(cval), **kw)
        output.real -= f(input.imag, weights.imag, output=None, cval=np.imag(cval), **kw)
        f(input.real, weights.imag, output=output.imag, cval=np.real(cval), **kw)
        output.imag += f(input.imag, weights.real, output=None, cval=np.imag(cval), **kw)
    elif ci:
        f(input.real, weights, output=output.real, cval=np.real(cval), **kw)
        f(input.imag, weights, output=output.imag, cval=np.imag(cval), **kw)
    else:
        if np.iscomplexobj(cval):
            raise ValueError("Cannot provide a complex-valued cval when the input is real.")
        f(input, weights.real, output=output.real, cval=cval, **kw)
        f(input, weights.imag, output=output.imag, cval=cval, **kw)
    return output


def _replay_correlate(x, w, footprint, before, modes, cval, out) -> None:
    """SciPy's N-D correlation, operation for operation: a sum from 0.0 over the weights
    with |w| > DBL_EPSILON in C order, each term weight * value in double."""
    taps = [(j, float(w[j])) for j in np.ndindex(w.shape) if footprint[j]]
    cast = casting.ndimage_cast(out.dtype)

    def combine(shifted, shape, block):
        acc = np.zeros(shape)
        for j, wj in taps:
            acc += wj * shifted(j)
        return cast(acc)

    direct.taps_correlate(x, w, before, modes, cval, out, np.float64, combine)


# --------------------------------------------------------------------------- 1-D filters


def correlate1d(
    input: Any,
    weights: Any,
    axis: int = -1,
    output: Any = None,
    mode: str = "reflect",
    cval: float = 0.0,
    origin: int = 0,
    *,
    backend: str = "auto",
):
    """1-D correlation along ``axis``, as ``scipy.ndimage.correlate1d``.

    Parameters
    ----------
    input : array_like, any shape; weights : 1-D array_like of length k >= 1
    axis : int; output, mode, cval : as :func:`correlate`
    origin : int, -(k // 2) <= origin <= (k - 1) // 2

    Returns
    -------
    ndarray, the input's shape: output[..., i, ...] = sum_j weights[j] *
    input_ext[..., i + j - k//2 - origin, ...] along ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import ndimage
    >>> ndimage.correlate1d(np.array([2, 8, 0, 4, 1, 9, 9, 0]), weights=[1, 3])
    array([ 8, 26,  8, 12,  7, 28, 36,  9])
    """
    return _filter1d(input, weights, axis, output, mode, cval, origin, False, backend)


def convolve1d(
    input: Any,
    weights: Any,
    axis: int = -1,
    output: Any = None,
    mode: str = "reflect",
    cval: float = 0.0,
    origin: int = 0,
    *,
    backend: str = "auto",
):
    """1-D convolution along ``axis``, as ``scipy.ndimage.convolve1d``: :func:`correlate1d`
    with the weights reversed and the origin negated (minus one for an even length).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import ndimage
    >>> ndimage.convolve1d(np.array([2, 8, 0, 4, 1, 9, 9, 0]), weights=[1, 3])
    array([14, 24,  4, 13, 12, 36, 27,  0])
    """
    return _filter1d(input, weights, axis, output, mode, cval, origin, True, backend)


def _filter1d(input, weights, axis, output, mode, cval, origin, convolution, backend):
    backend = _backend(backend)
    if _is_dask(input):
        from ._filters import lazy_dask

        name = "convolve1d" if convolution else "correlate1d"
        return lazy_dask.ndimage_call(
            name,
            input,
            weights,
            axis=axis,
            output=output,
            mode=mode,
            cval=cval,
            origin=origin,
            backend=backend,
        )
    w = np.asarray(weights)
    if convolution:
        w = w[::-1] if w.ndim == 1 else w
        origin = -_int(origin, "origin")
        if w.ndim == 1 and not len(w) & 1:
            origin -= 1
    return _correlate1d(np.asarray(input), w, axis, output, mode, cval, origin, backend)


def _correlate1d(input, weights, axis, output, mode, cval, origin, backend):
    if input.dtype.kind == "c" or weights.dtype.kind == "c":
        if weights.dtype.kind == "c":
            weights = weights.conj().astype(np.complex128, copy=False)
        out = _output(output, input, complex_output=True)
        f = lambda i, w, output, cval: _correlate1d(  # noqa: E731
            np.asarray(i), np.asarray(w), axis, output, mode, cval, origin, backend
        )
        return _complex_parts(f, input, weights, out, cval)
    out = _output(output, input, lazy=True)
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"weights must be numbers, got {weights!r}") from exc
    if w.ndim != 1 or w.shape[0] < 1:
        raise ArgumentRuntimeError(
            f"no filter weights given: weights must be 1-D with at least one element, got "
            f"shape {w.shape}"
        )
    ax = _axis(axis, input.ndim)
    origin = _int(origin, "origin")
    if not _origin_ok(origin, len(w)):
        raise ValueError(
            "Invalid origin; origin must satisfy -(len(weights) // 2) <= origin <= "
            f"(len(weights)-1) // 2, got origin={origin} for {len(w)} weights"
        )
    m = _mode(mode)
    cv = _cval(cval)
    _check_types(input, out)
    return _run1d(
        [(ax, w, origin, m)],
        input,
        out,
        cv,
        backend,
        exact="correlate1d",
        fresh=not isinstance(output, np.ndarray),
    )


def _run1d(passes, input, out, cval, backend, exact: str, fresh: bool = False) -> np.ndarray:
    """Apply 1-D passes [(axis, weights, origin, mode), ...] in order, as SciPy applies its
    sequence of 1-D filters (each pass's result stored in the output dtype). Float outputs
    run as one separable problem when that gives the same result (see ``_fusable``);
    integer outputs replay SciPy's arithmetic pass by pass (``exact``: 'correlate1d' or
    'uniform'). Returns the output (``out``, or a new array when ``fresh`` allows)."""
    if not passes:
        out = _real(out)
        out[...] = input
        return out
    nd = input.ndim
    distinct = len({p[0] for p in passes}) == len(passes)
    if out.dtype.kind in "fc" and _fusable(passes, cval) and distinct:
        x = _fresh(input, out)
        shape, before, modes = [1] * nd, [0] * nd, ["constant"] * nd
        factors: List[np.ndarray] = [np.ones(1) for _ in range(nd)]
        for ax, w, origin, m in passes:
            shape[ax], before[ax], modes[ax] = len(w), len(w) // 2 + origin, m
            factors[ax] = w
        dense = factors[0].reshape([-1 if i == 0 else 1 for i in range(nd)])
        for i in range(1, nd):
            dense = dense * factors[i].reshape([-1 if j == i else 1 for j in range(nd)])
        ct = _compute(x, out)
        after = tuple(k - 1 - b for k, b in zip(shape, before))
        p = Problem(
            x,
            dense.astype(ct),
            tuple(before),
            after,
            tuple(modes),
            cval,
            out,
            casting.ndimage_cast(out.dtype),
            ct,
            [f.astype(ct) for f in factors],
            fresh_out=fresh,
        )
        return plan.correlate(p, "auto", backend, _threads())
    out = _real(out)
    src = input
    for ax, w, origin, m in passes:
        dst = out
        if np.may_share_memory(src, dst):
            src = src.copy()
        if out.dtype.kind in "fc":
            _pass_fast(src, dst, ax, w, origin, m, cval, backend)
        elif exact == "uniform":
            _replay_uniform(src, dst, ax, len(w), origin, m, cval)
        else:
            _replay_correlate1d(src, dst, ax, w, origin, m, cval)
        src = dst
    return out


def _fusable(passes, cval: float) -> bool:
    """Passes in sequence equal one separable filter, except that SciPy's later pass reads
    cval past the edge where the fused filter reads cval times the earlier kernels' sums:
    equal when cval is 0 or those sums are 1."""
    if cval == 0:
        return True
    total = 1.0
    for _, w, _, m in passes:
        if m == "constant" and abs(total - 1.0) > 1e-12:
            return False
        total *= float(np.sum(w))
    return True


def _pass_fast(src, dst, ax, w, origin, m, cval, backend) -> None:
    nd = src.ndim
    shape = [1] * nd
    shape[ax] = len(w)
    before = [0] * nd
    before[ax] = len(w) // 2 + origin
    after = [0] * nd
    after[ax] = len(w) - 1 - before[ax]
    ct = _compute(src, dst)
    p = Problem(
        src,
        w.reshape(shape).astype(ct),
        tuple(before),
        tuple(after),
        (m,) * nd,
        cval,
        dst,
        casting.ndimage_cast(dst.dtype),
        ct,
    )
    plan.correlate(p, "direct", backend, _threads())


def _replay_correlate1d(src, dst, ax, w, origin, m, cval) -> None:
    """SciPy's correlate1d, operation for operation: symmetric and antisymmetric kernels
    (odd length, within DBL_EPSILON) pair the taps around the centre; others sum from the
    last tap, then the first to the one before last."""
    k = len(w)
    s1 = k // 2
    sym = 0
    if k & 1:
        if all(abs(w[s1 + i] - w[s1 - i]) <= _DBL_EPSILON for i in range(1, s1 + 1)):
            sym = 1
        elif all(abs(w[s1 + i] + w[s1 - i]) <= _DBL_EPSILON for i in range(1, s1 + 1)):
            sym = -1
    nd = src.ndim
    cast = casting.ndimage_cast(dst.dtype)
    xs, ys = np.moveaxis(src, ax, -1), np.moveaxis(dst, ax, -1)
    if nd == 1:  # a leading axis: the slabs of taps_correlate never cut the line
        xs, ys, nd = xs[None], ys[None], 2
    wk = np.zeros([1] * (nd - 1) + [k])

    def combine(shifted, shape, block):
        at = lambda j: shifted((0,) * (nd - 1) + (j,))  # noqa: E731
        if sym:
            acc = at(s1) * w[s1]
            for j in range(s1):
                pair = at(j) + at(k - 1 - j) if sym > 0 else at(j) - at(k - 1 - j)
                acc = acc + pair * w[j]
        else:
            acc = at(k - 1) * w[k - 1]
            for j in range(k - 1):
                acc = acc + at(j) * w[j]
        return cast(acc)

    before = [0] * (nd - 1) + [s1 + origin]
    direct.taps_correlate(
        xs, wk, before, ["constant"] * (nd - 1) + [m], cval, ys, np.float64, combine
    )


def _replay_uniform(src, dst, ax, size, origin, m, cval) -> None:
    """SciPy's running-sum box filter: the first window summed in order, then each step
    adds (entering - leaving); every output is that running sum divided by the size."""
    nd = src.ndim
    cast = casting.ndimage_cast(dst.dtype)
    xs, ys = np.moveaxis(src, ax, -1), np.moveaxis(dst, ax, -1)
    if nd == 1:  # a leading axis: the slabs of taps_correlate never cut the line
        xs, ys, nd = xs[None], ys[None], 2
    L = xs.shape[-1]
    wk = np.zeros([1] * (nd - 1) + [size])

    def combine(shifted, shape, block):
        first = np.zeros(block.shape[:-1])
        for j in range(size):
            first = first + block[..., j]
        steps = block[..., size : size + L - 1] - block[..., : L - 1]
        tmp = np.add.accumulate(np.concatenate([first[..., None], steps], axis=-1), axis=-1)
        return cast(tmp / size)

    before = [0] * (nd - 1) + [size // 2 + origin]
    direct.taps_correlate(
        xs, wk, before, ["constant"] * (nd - 1) + [m], cval, ys, np.float64, combine
    )


def uniform_filter1d(
    input: Any,
    size: int,
    axis: int = -1,
    output: Any = None,
    mode: str = "reflect",
    cval: float = 0.0,
    origin: int = 0,
    *,
    backend: str = "auto",
):
    """1-D box (moving average) filter of ``size`` along ``axis``, as
    ``scipy.ndimage.uniform_filter1d``.

    Returns the input's shape: the mean of input_ext[i - size//2 - origin + j], j < size.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import ndimage
    >>> ndimage.uniform_filter1d(np.array([2, 8, 0, 4, 1, 9, 9, 0]), size=3)
    array([4, 3, 4, 1, 4, 6, 6, 3])
    """
    backend = _backend(backend)
    if _is_dask(input):
        from ._filters import lazy_dask

        return lazy_dask.ndimage_call(
            "uniform_filter1d",
            input,
            size,
            axis=axis,
            output=output,
            mode=mode,
            cval=cval,
            origin=origin,
            backend=backend,
        )
    input = np.asarray(input)
    ax = _axis(axis, input.ndim)
    size = _int(size, "size")
    if size < 1:
        raise ArgumentRuntimeError(f"incorrect filter size: size must be >= 1, got {size}")
    cplx = input.dtype.kind == "c"
    out = _output(output, input, complex_output=cplx, lazy=not cplx)
    origin = _int(origin, "origin")
    if not (0 <= size // 2 + origin < size):
        raise ValueError(f"invalid origin: origin={origin} for size={size}")
    m = _mode(mode)
    if cplx:
        _uniform_passes(input.real, out.real, [(ax, size, origin, m)], np.real(cval), backend)
        _uniform_passes(input.imag, out.imag, [(ax, size, origin, m)], np.imag(cval), backend)
        return out
    return _uniform_passes(
        input,
        out,
        [(ax, size, origin, m)],
        _cval(cval),
        backend,
        fresh=not isinstance(output, np.ndarray),
    )


def _uniform_passes(input, out, passes, cval, backend, fresh: bool = False) -> np.ndarray:
    _check_types(input, out)
    p1 = [(ax, np.full(size, 1.0 / size), origin, m) for ax, size, origin, m in passes]
    return _run1d(p1, input, out, cval, backend, exact="uniform", fresh=fresh)


def uniform_filter(
    input: Any,
    size: Any = 3,
    output: Any = None,
    mode: Any = "reflect",
    cval: float = 0.0,
    origin: Any = 0,
    *,
    axes: Any = None,
    backend: str = "auto",
):
    """Multidimensional box filter, as ``scipy.ndimage.uniform_filter``: one
    :func:`uniform_filter1d` per axis (sizes, modes and origins per axis), run as one
    separable pass over the data.

    Parameters
    ----------
    input : array_like, any shape
    size : int or sequence of len(axes); axes with size <= 1 are left alone
    mode, origin : one or one per axis; output, cval, axes : as :func:`correlate`

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import ndimage
    >>> ndimage.uniform_filter(np.eye(3), size=3, mode="constant")
    array([[0.22222222, 0.22222222, 0.11111111],
           [0.22222222, 0.33333333, 0.22222222],
           [0.11111111, 0.22222222, 0.22222222]])
    """
    backend = _backend(backend)
    if _is_dask(input):
        from ._filters import lazy_dask

        return lazy_dask.ndimage_call(
            "uniform_filter",
            input,
            size=size,
            output=output,
            mode=mode,
            cval=cval,
            origin=origin,
            axes=axes,
            backend=backend,
        )
    input = np.asarray(input)
    cplx = input.dtype.kind == "c"
    out = _output(output, input, complex_output=cplx, lazy=not cplx)
    ax = _axes(axes, input.ndim)
    sizes = _sequence(size, len(ax), "size")
    origins = _sequence(origin, len(ax), "origin")
    modes = _sequence(mode, len(ax), "mode")
    passes = []
    for a, s, o, m in zip(ax, sizes, origins, modes):
        if s > 1:
            s = int(s)
            o = _int(o, "origin")
            if not (0 <= s // 2 + o < s):
                raise ValueError(f"invalid origin: origin={o} for size={s} on axis {a}")
            passes.append((a, s, o, _mode(m)))
    if cplx:
        _uniform_passes(input.real, out.real, passes, np.real(cval), backend)
        _uniform_passes(input.imag, out.imag, passes, np.imag(cval), backend)
        return out
    return _uniform_passes(
        input, out, passes, _cval(cval), backend, fresh=not isinstance(output, np.ndarray)
    )


# --------------------------------------------------------------------------- Gaussian


def _gaussian_kernel1d(sigma: float, order: int, radius: int) -> np.ndarray:
    """Samples x = -radius..radius of the Gaussian of standard deviation sigma, normalised
    to sum 1, times the polynomial q_order with d^n/dx^n exp(-x^2 / 2s^2) = q_n(x) exp(...):
    q_0 = 1, q_{n+1} = q_n' - x q_n / s^2."""
    if order < 0:
        raise ValueError(f"order must be non-negative, got order={order}")
    x = np.arange(-radius, radius + 1)
    s2 = sigma * sigma
    phi = np.exp(-0.5 / s2 * x**2)
    phi = phi / phi.sum()
    if order == 0:
        return phi
    q = np.zeros(order + 1)
    q[0] = 1.0
    powers = np.arange(1, order + 1)
    for _ in range(order):
        nq = np.zeros(order + 1)
        nq[:-1] += powers * q[1:]  # q'
        nq[1:] += q[:-1] * (1.0 / -s2)  # - x q / s^2
        q = nq
    return (x[:, None] ** np.arange(order + 1)).dot(q) * phi


def _gaussian_weights(sigma: Any, order: Any, truncate: Any, radius: Any) -> np.ndarray:
    sd = float(sigma)
    lw = int(float(truncate) * sd + 0.5)
    if radius is not None:
        lw = radius
    if not isinstance(lw, numbers.Integral) or lw < 0:
        raise ValueError(f"Radius must be a nonnegative integer, got radius={lw!r}")
    if not isinstance(order, numbers.Integral):
        raise TypeError(f"order must be an integer, got {order!r}")
    if sd == 0:
        raise ArgumentZeroDivisionError(f"sigma must not be zero, got sigma={sigma!r}")
    return _gaussian_kernel1d(sd, int(order), int(lw))[::-1]


def gaussian_filter1d(
    input: Any,
    sigma: float,
    axis: int = -1,
    order: int = 0,
    output: Any = None,
    mode: str = "reflect",
    cval: float = 0.0,
    truncate: float = 4.0,
    *,
    radius: Optional[int] = None,
    backend: str = "auto",
):
    """1-D Gaussian filter (or its ``order``-th derivative) along ``axis``, as
    ``scipy.ndimage.gaussian_filter1d``.

    Parameters
    ----------
    sigma : float > 0, the standard deviation in samples
    order : int >= 0, 0 smooths, n convolves with the n-th derivative of the Gaussian
    truncate : float; the kernel radius is int(truncate * sigma + 0.5) unless ``radius``
    radius : int >= 0, optional; the kernel has 2 * radius + 1 taps

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import ndimage
    >>> ndimage.gaussian_filter1d(np.array([1.0, 2, 3, 4, 5]), 1)
    array([1.42704095, 2.06782203, 3.        , 3.93217797, 4.57295905])
    """
    backend = _backend(backend)
    if _is_dask(input):
        from ._filters import lazy_dask

        return lazy_dask.ndimage_call(
            "gaussian_filter1d",
            input,
            sigma,
            axis=axis,
            order=order,
            output=output,
            mode=mode,
            cval=cval,
            truncate=truncate,
            radius=radius,
            backend=backend,
        )
    w = _gaussian_weights(sigma, order, truncate, radius)
    return _correlate1d(np.asarray(input), w, axis, output, mode, cval, 0, backend)


def gaussian_filter(
    input: Any,
    sigma: Any,
    order: Any = 0,
    output: Any = None,
    mode: Any = "reflect",
    cval: float = 0.0,
    truncate: float = 4.0,
    *,
    radius: Any = None,
    axes: Any = None,
    backend: str = "auto",
):
    """Multidimensional Gaussian filter, as ``scipy.ndimage.gaussian_filter``: one
    :func:`gaussian_filter1d` per axis (axes with sigma <= 1e-15 are left alone), run as
    one separable pass over the data (two 1-D passes per tile, or FFT tiles for very large
    sigmas when the cost model says so).

    Parameters
    ----------
    input : array_like, any shape
    sigma, order, mode, radius : one value or one per axis of ``axes``
    truncate, output, cval, axes : as :func:`gaussian_filter1d` and :func:`correlate`

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import ndimage
    >>> a = np.zeros((5, 5)); a[2, 2] = 1
    >>> ndimage.gaussian_filter(a, sigma=1)[2]
    array([0.02330747, 0.09658632, 0.15915589, 0.09658632, 0.02330747])
    """
    backend = _backend(backend)
    if _is_dask(input):
        from ._filters import lazy_dask

        return lazy_dask.ndimage_call(
            "gaussian_filter",
            input,
            sigma,
            order=order,
            output=output,
            mode=mode,
            cval=cval,
            truncate=truncate,
            radius=radius,
            axes=axes,
            backend=backend,
        )
    input = np.asarray(input)
    cplx = input.dtype.kind == "c"
    out = _output(output, input, complex_output=cplx, lazy=not cplx)
    ax = _axes(axes, input.ndim)
    orders = _sequence(order, len(ax), "order")
    sigmas = _sequence(sigma, len(ax), "sigma")
    modes = _sequence(mode, len(ax), "mode")
    radii = _sequence(radius, len(ax), "radius")
    passes = []
    for a, s, o, m, r in zip(ax, sigmas, orders, modes, radii):
        if s > 1e-15:
            passes.append((a, _gaussian_weights(s, o, truncate, r), 0, _mode(m)))
    if input.dtype.kind == "c":
        for part_in, part_out, cv in (
            (input.real, out.real, np.real(cval)),
            (input.imag, out.imag, np.imag(cval)),
        ):
            _check_types(part_in, part_out)
            _run1d(passes, part_in, part_out, float(cv), backend, exact="correlate1d")
        return out
    cv = _cval(cval)
    _check_types(input, out)
    return _run1d(
        passes,
        input,
        out,
        cv,
        backend,
        exact="correlate1d",
        fresh=not isinstance(output, np.ndarray),
    )
