"""scipy.signal's convolutions on fastconv's engines: ``from fastconv import signal``.

=================================  ======================================================
``correlate2d``, ``convolve2d``    2-D, mode 'full' / 'same' / 'valid', boundary 'fill'
                                   (fillvalue) / 'wrap' / 'symm'
``correlate``, ``convolve``        N-D, mode as above, method 'auto' / 'direct' / 'fft'
``fftconvolve``, ``oaconvolve``    N-D by FFT, over ``axes`` (others broadcast)
``choose_conv_method``             'direct' or 'fft', from fastconv's cost model (or timed)
=================================  ======================================================

SciPy's names, arguments, defaults, output shapes and dtypes: the output dtype is
``numpy.result_type`` of the inputs (integers computed exactly, wrapping on overflow as
SciPy's integer arithmetic does; float32 stays float32), fftconvolve returns float32 for
float16/float32 inputs and float64 otherwise; complex correlations conjugate ``in2``; in
'valid' mode the larger input is swapped in as SciPy does. Invalid arguments raise SciPy's
exception class with a message naming the parameter. The engines are fastconv's
(``backend=`` picks the direct one, keyword-only here), and ``method='auto'`` asks
fastconv's cost model, calibrated on the machine (docs/filtering.md), which picks the
faster method more often than SciPy's own choice does; results agree either way to
rounding, and exactly for integers. correlate2d and convolve2d also take
``method=`` (SciPy's are always direct).
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._filters import casting, direct, plan
from ._filters.errors import ArgumentIndexError
from ._filters.plan import Problem

__all__ = [
    "choose_conv_method",
    "convolve",
    "convolve2d",
    "correlate",
    "correlate2d",
    "fftconvolve",
    "oaconvolve",
]

_MODES = ("full", "same", "valid")
_BOUNDARIES = {
    "fill": "constant",
    "pad": "constant",
    "wrap": "wrap",
    "circular": "wrap",
    "symm": "reflect",
    "symmetric": "reflect",
}


# --------------------------------------------------------------------------- arguments


def _mode(mode: Any) -> str:
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(
            f"Acceptable mode flags are 'valid', 'same', or 'full', got mode={mode!r}."
        )
    return mode


def _method(method: Any) -> str:
    if method not in ("auto", "direct", "fft"):
        raise ValueError(
            f"Acceptable method flags are 'auto', 'direct', or 'fft', got method={method!r}."
        )
    return method


def _boundary(boundary: Any) -> str:
    if not isinstance(boundary, str) or boundary not in _BOUNDARIES:
        raise ValueError(
            "Acceptable boundary flags are 'fill', 'circular' (or 'wrap'), and 'symmetric' "
            f"(or 'symm'), got boundary={boundary!r}."
        )
    return _BOUNDARIES[boundary]


def _backend(backend: Any) -> str:
    from .ndimage import _backend as check

    return check(backend)


def _threads() -> int:
    import fastconv

    return fastconv.get_num_threads()


def _swap_needed(
    mode: str, s1: Sequence[int], s2: Sequence[int], axes: Optional[Sequence[int]] = None
) -> bool:
    """'valid' mode needs one input at least as large as the other on every axis; SciPy
    then makes the larger one in1."""
    if mode != "valid" or not s1:
        return False
    ax = range(len(s1)) if axes is None else axes
    ok1 = all(s1[i] >= s2[i] for i in ax)
    ok2 = all(s2[i] >= s1[i] for i in ax)
    if not (ok1 or ok2):
        raise ValueError(
            "For 'valid' mode, one must be at least as large as the other in every "
            f"dimension: in1 has shape {tuple(s1)}, in2 {tuple(s2)}"
        )
    return not ok1


def _extent(n: int, k: int, mode: str, same_before: str) -> Tuple[int, int]:
    """(before, after) of one axis: 'full' reads k - 1 past both ends, 'valid' none, 'same'
    keeps n outputs centred as SciPy centres them (k // 2 before, or (k - 1) // 2 for
    correlate2d: ``same_before`` 'floor')."""
    if mode == "full":
        return k - 1, k - 1
    if mode == "valid":
        return 0, 0
    b = (k - 1) // 2 if same_before == "floor" else k // 2
    return b, k - 1 - b


def _run(
    x: np.ndarray,
    w: np.ndarray,
    before,
    after,
    bmode: str,
    fill: Any,
    result: np.dtype,
    method: str,
    backend: str,
) -> np.ndarray:
    """out = correlate(x_ext, w) in dtype ``result`` (see plan.correlate)."""
    nd = x.ndim
    shape = tuple(n + b + a - k + 1 for n, k, b, a in zip(x.shape, w.shape, before, after))
    modes = (bmode,) * nd
    if int(np.prod(shape)) == 0 or x.size == 0 or w.size == 0 or result.kind in "iu":
        out = np.empty(shape, result)
        if out.size == 0:
            return out
        if x.size == 0 or w.size == 0:  # every read is the fill value (or none is read)
            out[...] = fill * np.sum(w) if (w.size and bmode == "constant") else 0
        else:
            _run_integer(x, w, before, after, modes, fill, out, backend)
        return out
    ct = casting.compute_dtype(x.dtype, w.dtype)
    if result.kind == "c" and ct.kind != "c":
        ct = np.dtype(np.complex64 if ct == np.float32 else np.complex128)
    p = Problem(
        x,
        np.ascontiguousarray(w, dtype=ct),
        tuple(before),
        tuple(after),
        modes,
        fill,
        plan.placeholder(shape, result),  # the engine allocates the output, once
        lambda v: v,
        ct,
        plan.factorize(w, ct) if ct.kind == "f" else None,
        fresh_out=True,
    )
    return plan.correlate(p, method, backend, _threads())


def _run_integer(x, w, before, after, modes, fill, out, backend) -> None:
    """Integer results, exactly: in float64 on the fast engines when every partial sum is
    an integer below 2**53 (then order and FMAs cannot round), else in 64-bit integer
    arithmetic tap by tap (wrapping like SciPy's C integers)."""
    bound = float(np.max(np.abs(x), initial=0)) * float(np.sum(np.abs(w.astype(np.float64))))
    bound += abs(float(fill)) * float(np.sum(np.abs(w.astype(np.float64))))
    if bound < 2.0**53:
        tmp_cast = lambda v: _wrap_int(v, out.dtype)  # noqa: E731
        p = Problem(
            x,
            np.ascontiguousarray(w, dtype=np.float64),
            tuple(before),
            tuple(after),
            modes,
            float(fill),
            out,
            tmp_cast,
            np.dtype(np.float64),
            plan.factorize(w.astype(np.float64)),
        )
        plan.correlate(p, "direct", backend, _threads())
        return
    acc = casting.integer_accumulator(out.dtype)
    wi = w.astype(acc)
    taps = [(j, wi[j]) for j in np.ndindex(w.shape) if wi[j] != 0]

    def combine(shifted, shape, block):
        s = np.zeros(shape, acc)
        for j, wj in taps:
            s += wj * shifted(j)
        return s.astype(out.dtype)

    direct.taps_correlate(x, w, before, modes, np.asarray(fill).astype(acc), out, acc, combine)


def _wrap_int(v: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Exact integer-valued floats (|v| < 2**53) -> the integer dtype, wrapping as integer
    arithmetic does."""
    return np.rint(v).astype(np.int64).astype(dtype)


def _fill_value(fillvalue: Any, result: np.dtype):
    fv = np.asarray(fillvalue)
    if fv.size != 1:
        raise ValueError(
            f"`fillvalue` must be scalar or an array with one element, got shape {fv.shape}."
        )
    try:
        c = complex(fv.reshape(()).item())
    except (TypeError, ValueError) as exc:
        raise ValueError(f"fillvalue must be a number, got {fillvalue!r}") from exc
    if result.kind == "c":
        return np.asarray(c).astype(result)[()]
    bad = fv.dtype.kind == "c" or c.imag != 0
    if result.kind in "iu" and not bad:  # the value must fit: no wrap, no NaN
        info = np.iinfo(result)
        bad = not np.isfinite(c.real) or not info.min <= int(np.trunc(c.real)) <= info.max
    if bad:
        raise ValueError(
            "could not cast `fillvalue` directly to the output type (it was first converted "
            f"to complex): fillvalue={fillvalue!r}, output dtype {result}."
        )
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(c.real).astype(result)[()]


def _conv2d_dtype(in1: np.ndarray, in2: np.ndarray) -> np.dtype:
    rt = np.result_type(in1, in2)
    if rt.kind in "bOSUV" or rt == np.float16 or rt.kind == "M" or rt.kind == "m":
        raise ValueError(f"convolve2d not available for this type: {rt} (in1, in2)")
    return rt


# --------------------------------------------------------------------------- 2-D


def correlate2d(
    in1: Any,
    in2: Any,
    mode: str = "full",
    boundary: str = "fill",
    fillvalue: Any = 0,
    *,
    method: str = "auto",
    backend: str = "auto",
):
    """2-D cross-correlation, as ``scipy.signal.correlate2d``.

    Parameters
    ----------
    in1 : array_like, (M, N)
    in2 : array_like, (K, L); conjugated when complex
    mode : 'full' ((M+K-1, N+L-1)), 'valid' ((M-K+1, N-L+1); the inputs are swapped when
        in2 is the larger, and the result reversed) or 'same' ((M, N), centred with
        (K-1)//2 rows before)
    boundary : 'fill' (fillvalue), 'wrap' (periodic) or 'symm' (mirrored with the edge)
    fillvalue : scalar, cast to the output dtype
    method : 'auto', 'direct' or 'fft' (fastconv's); backend : the direct engine

    Returns
    -------
    ndarray of ``numpy.result_type(in1, in2)``: out[i, j] = sum in1_ext[i + p - pt,
    j + q - pl] * conj(in2[p, q]), with pt, pl the rows and columns read before the first.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import signal
    >>> signal.correlate2d(np.arange(9).reshape(3, 3), np.array([[1, 0], [0, -1]]), "valid")
    array([[-4, -4],
           [-4, -4]])
    """
    return _conv2d(in1, in2, mode, boundary, fillvalue, method, backend, correlate=True)


def convolve2d(
    in1: Any,
    in2: Any,
    mode: str = "full",
    boundary: str = "fill",
    fillvalue: Any = 0,
    *,
    method: str = "auto",
    backend: str = "auto",
):
    """2-D convolution, as ``scipy.signal.convolve2d``: in2 flipped on both axes, 'same'
    centred with K//2 rows before; otherwise as :func:`correlate2d`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import signal
    >>> signal.convolve2d(np.eye(3), np.array([[1, 2], [3, 4]]), mode="same")
    array([[1., 2., 0.],
           [3., 5., 2.],
           [0., 3., 5.]])
    """
    return _conv2d(in1, in2, mode, boundary, fillvalue, method, backend, correlate=False)


def _conv2d(in1, in2, mode, boundary, fillvalue, method, backend, correlate: bool):
    in1, in2 = np.asarray(in1), np.asarray(in2)
    name = "correlate2d" if correlate else "convolve2d"
    if not in1.ndim == in2.ndim == 2:
        raise ValueError(
            f"{name} inputs must both be 2-D arrays: in1.ndim = {in1.ndim}, in2.ndim = {in2.ndim}"
        )
    swapped = _swap_needed(mode, in1.shape, in2.shape)
    if swapped:
        in1, in2 = in2, in1
    mode = _mode(mode)
    bmode = _boundary(boundary)
    method, backend = _method(method), _backend(backend)
    result = _conv2d_dtype(in1, in2)
    fill = _fill_value(fillvalue, result) if bmode == "constant" else 0
    if correlate:
        w = in2.conj() if in2.dtype.kind == "c" else in2
    else:
        w = in2[::-1, ::-1]
    ext = [
        _extent(n, k, mode, "floor" if correlate else "ceil") for n, k in zip(in1.shape, in2.shape)
    ]
    out = _run(
        in1, w, [e[0] for e in ext], [e[1] for e in ext], bmode, fill, result, method, backend
    )
    return out[::-1, ::-1] if swapped and correlate else out


# --------------------------------------------------------------------------- N-D


def correlate(
    in1: Any, in2: Any, mode: str = "full", method: str = "auto", *, backend: str = "auto"
):
    """N-D cross-correlation, as ``scipy.signal.correlate``.

    Parameters
    ----------
    in1, in2 : array_like with the same number of dimensions (in2 conjugated if complex)
    mode : 'full' (n1 + n2 - 1 per axis), 'valid' (n1 - n2 + 1, the larger input first; a
        swap reverses and conjugates the result as SciPy does) or 'same' (n1, centred: n2 // 2
        before)
    method : 'auto' (fastconv's cost model), 'direct' or 'fft'

    Returns
    -------
    ndarray of ``numpy.result_type(in1, in2)`` (integers exact with 'direct', rounded with
    'fft'): out[i] = sum_j in1_ext[i + j - before] * conj(in2[j]), zero outside in1.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import signal
    >>> signal.correlate(np.array([1, 2, 3]), np.array([0, 1, 0.5]))
    array([0.5, 2. , 3.5, 3. , 0. ])
    """
    in1, in2 = np.asarray(in1), np.asarray(in2)
    if in1.ndim == in2.ndim == 0:
        return in1 * in2.conj()
    if in1.ndim != in2.ndim:
        raise ValueError(
            f"in1 and in2 should have the same dimensionality: {in1.ndim} and {in2.ndim}"
        )
    mode = _mode(mode)
    method, backend = _method(method), _backend(backend)
    swapped = _swap_needed(mode, in1.shape, in2.shape)
    x, k = (in2, in1) if swapped else (in1, in2)
    w = k.conj() if k.dtype.kind == "c" else k
    out = _nd(x, w, mode, method, backend, "correlate")
    if swapped:
        out = out[(slice(None, None, -1),) * out.ndim]
        out = out.conj() if out.dtype.kind == "c" else out
    return out


def convolve(
    in1: Any, in2: Any, mode: str = "full", method: str = "auto", *, backend: str = "auto"
):
    """N-D convolution, as ``scipy.signal.convolve``: :func:`correlate` with in2 reversed
    on every axis (and not conjugated); 'valid' swaps the inputs freely (it commutes).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import signal
    >>> signal.convolve(np.array([1, 2, 3]), np.array([0, 1, 0.5]), mode="same")
    array([1. , 2.5, 4. ])
    """
    in1, in2 = np.asarray(in1), np.asarray(in2)
    if in1.ndim == in2.ndim == 0:
        return in1 * in2
    if in1.ndim != in2.ndim:
        raise ValueError(
            f"volume and kernel should have the same dimensionality: {in1.ndim} and "
            f"{in2.ndim} (in1, in2)"
        )
    mode = _mode(mode)
    method, backend = _method(method), _backend(backend)
    if _swap_needed(mode, in1.shape, in2.shape):
        in1, in2 = in2, in1
    w = in2[(slice(None, None, -1),) * in2.ndim]
    return _nd(in1, w, mode, method, backend, "convolve")


def _nd(x: np.ndarray, w: np.ndarray, mode: str, method: str, backend: str, name: str):
    """correlate / convolve after argument handling: x extended by zeros, kernel w."""
    if x.size == 0 or w.size == 0:
        err = ArgumentIndexError if method == "fft" else ValueError
        raise err(f"{name}: in1 and in2 must not be empty (shapes {x.shape}, {w.shape})")
    result = np.result_type(x, w)
    chosen = method == "auto"
    if chosen:
        method = _choose(x, w, mode)
    ext = [_extent(n, k, mode, "ceil") for n, k in zip(x.shape, w.shape)]
    before, after = [e[0] for e in ext], [e[1] for e in ext]
    if method == "direct":
        if result.kind in "bOSUV" or (result == np.float16 and not chosen):
            if x.ndim == 1 and (mode != "same" or x.size >= w.size):
                # SciPy's 1-D direct path is numpy's, which takes any dtype
                if name == "correlate":  # np.correlate conjugates its second argument
                    return np.correlate(x, w.conj() if w.dtype.kind == "c" else w, mode)  # type: ignore[call-overload]
                return np.convolve(x, w[::-1], mode)  # type: ignore[call-overload]
            raise ValueError(
                f"{name}: method 'direct' does not support dtype {result} (Unsupported type)"
            )
        return _run(x, w, before, after, "constant", 0, result, "direct", backend)
    # method 'fft': SciPy's fftconvolve, rounded for integers, cast to the result type
    fres = _fft_dtype(x, w)
    out = _run(x, w, before, after, "constant", 0, fres, "fft", backend)
    if out.size and not np.isfinite(out.flat[0]):
        warnings.warn(
            "Use of fft convolution on input with NAN or inf results in NAN or inf output. "
            "Consider using method='direct' instead.",
            RuntimeWarning,
            stacklevel=3,
        )
    if result.kind in "iu":
        out = np.around(out)
    with np.errstate(invalid="ignore", over="ignore"):
        return out.astype(result)


def _fft_dtype(*arrays: np.ndarray) -> np.dtype:
    """fftconvolve's output dtype: single precision when every input is float16, float32
    or complex64; complex when any input is."""
    ct = casting.compute_dtype(*(a.dtype for a in arrays))
    return ct


def _choose(x: np.ndarray, w: np.ndarray, mode: str) -> str:
    """The method 'auto' runs: integers exact (direct) unless an FFT is provably exact
    after rounding, bool and object direct, otherwise fastconv's cost model."""
    rt = np.result_type(x, w)
    if rt.kind in "bOSUV" or x.dtype.kind in "bO" or w.dtype.kind in "bO":
        return "direct"
    if x.dtype.kind in "iu" or w.dtype.kind in "iu":
        big = float(np.max(np.abs(x))) * float(np.max(np.abs(w))) * min(x.size, w.size)
        if big > 2.0**40:
            return "direct"
        if rt.kind in "iu":
            return "direct"
    ext = [_extent(n, k, mode, "ceil") for n, k in zip(x.shape, w.shape)]
    shape = tuple(n + b + a - k + 1 for n, k, (b, a) in zip(x.shape, w.shape, ext))
    ct = casting.compute_dtype(x.dtype, w.dtype)
    p = Problem(
        x,
        w,
        tuple(e[0] for e in ext),
        tuple(e[1] for e in ext),
        ("constant",) * x.ndim,
        0,
        np.broadcast_to(np.empty((), np.int8), shape),  # the shape only, no memory
        lambda v: v,
        ct,
        plan.factorize(w, ct) if ct.kind == "f" and w.size <= 2**16 else None,
    )
    return plan.choose(p, _threads())


def choose_conv_method(in1: Any, in2: Any, mode: str = "full", measure: bool = False):
    """The faster method of :func:`convolve` / :func:`correlate` for these inputs, as
    ``scipy.signal.choose_conv_method``: 'direct' or 'fft' from fastconv's cost model
    (calibrated on the machine, see docs/filtering.md), or, with ``measure=True``,
    ``(method, {'fft': seconds, 'direct': seconds})`` from timing both.

    Integer inputs whose FFT could round wrong, bool and object inputs give 'direct'.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import signal
    >>> w = np.random.default_rng(0).random((63, 63))
    >>> signal.choose_conv_method(np.ones((512, 512)), w[:3, :3])
    'direct'
    >>> signal.choose_conv_method(np.ones((512, 512)), w)
    'fft'
    >>> signal.choose_conv_method(np.ones((512, 512)), np.ones((21, 21)))  # separable
    'direct'
    """
    volume, kernel = np.asarray(in1), np.asarray(in2)
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"Acceptable mode flags are 'valid', 'same', or 'full', not mode={mode}")
    if measure:
        times: Dict[str, float] = {}
        for m in ("fft", "direct"):
            times[m] = _time(lambda m=m: convolve(volume, kernel, mode=mode, method=m))
        return ("fft" if times["fft"] < times["direct"] else "direct"), times
    if volume.ndim != kernel.ndim or volume.size == 0 or kernel.size == 0 or volume.ndim == 0:
        return "direct"
    if _swap_needed(mode, volume.shape, kernel.shape):
        volume, kernel = kernel, volume
    return _choose(volume, kernel[(slice(None, None, -1),) * kernel.ndim], mode)


def _time(f) -> float:
    """Median of a few calls, seconds (at least 3 calls or 0.2 s)."""
    times: List[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < 0.2 and len(times) < 50):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


# --------------------------------------------------------------------------- FFT


def fftconvolve(in1: Any, in2: Any, mode: str = "full", axes: Any = None):
    """N-D convolution by FFT, as ``scipy.signal.fftconvolve``.

    Parameters
    ----------
    in1, in2 : array_like, the same number of dimensions
    mode : 'full', 'valid' or 'same' (as :func:`convolve`)
    axes : int or sequence of int, optional (all by default); the axes to convolve over.
        Along the others the inputs must be equal or 1 and are broadcast (multiplied).

    Returns
    -------
    ndarray, float32 / complex64 when both inputs are float16, float32 or complex64,
    float64 / complex128 otherwise. fastconv transforms overlap-save tiles of real FFTs on
    several threads; float32 stays float32 (error ~ eps32 * log2(N) * max|in1| * sum|in2|).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import signal
    >>> np.round(signal.fftconvolve(np.array([1.0, 2, 3]), np.array([0, 1, 0.5])), 12)
    array([0. , 1. , 2.5, 4. , 1.5])
    """
    return _fftconv(in1, in2, mode, axes, "fftconvolve")


def oaconvolve(in1: Any, in2: Any, mode: str = "full", axes: Any = None):
    """N-D convolution by overlap-add, as ``scipy.signal.oaconvolve``: the same result as
    :func:`fftconvolve` (fastconv's FFT engine always works in tiles: overlap-save, which
    needs no additions between tiles).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import signal
    >>> signal.oaconvolve(np.ones(1000), np.ones(5), mode="valid").shape
    (996,)
    """
    return _fftconv(in1, in2, mode, axes, "oaconvolve")


def _fft_axes(in1: np.ndarray, in2: np.ndarray, axes: Any) -> List[int]:
    nd = in1.ndim
    if axes is None:
        ax = list(range(nd))
    else:
        ax_in = [axes] if np.isscalar(axes) else list(axes)
        if not ax_in:
            raise ValueError("when provided, axes cannot be empty")
        ax = []
        for a in ax_in:
            try:
                a = int(a)  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                raise TypeError(f"axes must be integers, got {axes!r}") from exc
            if a < -nd or a >= nd:
                raise ValueError(f"axes exceeds dimensionality of input: axes={axes!r}, ndim={nd}")
            ax.append(a % nd)
        if len(set(ax)) != len(ax):
            raise ValueError(f"all axes must be unique, got axes={axes!r}")
    return ax


def _fftconv(in1, in2, mode, axes, name):
    in1, in2 = np.asarray(in1), np.asarray(in2)
    if in1.ndim == in2.ndim == 0:
        return in1 * in2
    if in1.ndim != in2.ndim:
        raise ValueError(
            f"in1 and in2 should have the same dimensionality: {in1.ndim} and {in2.ndim}"
        )
    if in1.size == 0 or in2.size == 0:
        return np.array([])
    mode = _mode(mode)
    ax = _fft_axes(in1, in2, axes)
    s1, s2 = in1.shape, in2.shape
    ax = [a for a in ax if s1[a] != 1 and s2[a] != 1]  # length 1: a broadcast product
    for a in range(in1.ndim):
        if a not in ax and not (s1[a] == s2[a] or s1[a] == 1 or s2[a] == 1):
            raise ValueError(f"incompatible shapes for in1 and in2: {s1} and {s2}")
    if _swap_needed(mode, s1, s2, ax):
        in1, in2 = in2, in1
        s1, s2 = s2, s1
    if in1.dtype.kind not in "biufc" or in2.dtype.kind not in "biufc":
        raise TypeError(f"{name}: inputs must be numeric, got {in1.dtype} and {in2.dtype}")
    if not ax:  # nothing to transform: SciPy multiplies (numpy's dtype), then crops
        ret = in1 * in2
        if mode == "same":
            ret = ret[tuple(slice((r - n) // 2, (r - n) // 2 + n) for r, n in zip(ret.shape, s1))]
        return ret.copy()
    res = _fft_dtype(in1, in2)
    nd = in1.ndim
    # broadcast axes: 'same' keeps in1's length, taking in2's middle entry if in1 has one
    for a in range(nd):
        if a in ax:
            continue
        if mode == "same" and s1[a] == 1 and s2[a] > 1:
            mid = (s2[a] - 1) // 2
            in2 = in2[(slice(None),) * a + (slice(mid, mid + 1),)]
    s2 = in2.shape
    w = in2[tuple(slice(None, None, -1) if a in ax else slice(None) for a in range(nd))]
    vary = [a for a in range(nd) if a not in ax and s2[a] > 1]
    ext = [_extent(in1.shape[a], s2[a], mode, "ceil") if a in ax else (0, 0) for a in range(nd)]
    shape = tuple(
        max(in1.shape[a], s2[a])
        if a not in ax
        else in1.shape[a] + ext[a][0] + ext[a][1] - s2[a] + 1
        for a in range(nd)
    )
    out = np.empty(shape, res)
    if out.size == 0:
        return out
    for idx in np.ndindex(*[s2[a] for a in vary]):
        sel_w = [slice(None)] * nd
        sel_x = [slice(None)] * nd
        sel_o = [slice(None)] * nd
        for a, i in zip(vary, idx):
            sel_w[a] = slice(i, i + 1)
            sel_x[a] = slice(0, 1) if in1.shape[a] == 1 else slice(i, i + 1)
            sel_o[a] = slice(i, i + 1)
        x, wk, sub = in1[tuple(sel_x)], w[tuple(sel_w)], out[tuple(sel_o)]
        p = Problem(
            x,
            np.ascontiguousarray(wk, dtype=res),
            tuple(e[0] for e in ext),
            tuple(e[1] for e in ext),
            ("constant",) * nd,
            0,
            sub,
            lambda v: v,
            res,
        )
        plan.correlate(p, "fft", "auto", _threads())
    return out
