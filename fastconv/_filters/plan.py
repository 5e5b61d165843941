"""The one operation behind fastconv.signal and fastconv.ndimage, and the choice of engine.

``correlate(problem, method, backend)`` computes, for every output index i (per axis
0 <= i < m = n + before + after - k + 1)::

    out[i] = cast( sum_j w[j] * x_ext[i + j - before] )

where x_ext is x extended past its ends by the axis' boundary mode (``boundary``). Every
public function is this with its own ``before``/``after`` (signal's 'full' / 'same' /
'valid', ndimage's origin), kernel (flipped for a convolution, conjugated for a complex
correlation) and ``cast`` (SciPy's output conversions, ``casting``). The output array is
allocated once by the caller and written tile by tile, so memory stays input + output +
a few tiles.

Engines: ``direct`` (fastconv's kernels on tiles; a separable kernel as 1-D passes) and
``fft`` (overlap-save tiles of real FFTs). ``method="auto"`` takes the one the cost model
below expects to be faster.

Cost model (one thread, float32, seconds; float64 costs DOUBLE times as much, a complex
problem four real ones), fitted on the machine of bench/RESULTS.md ("Filtering") by
``python bench/filters.py --calibrate``, which prints them again on another machine:

    dense kernel      pixels * (KH*KW * DENSE_MAC + DENSE_PIXEL)
    separable kernel  pixels * (KW * SEP_MAC + vertical + SEP_PIXEL), vertical = KH * SEP_MAC
                      (2-D kernels: the C engine's fused passes, csrc/filter2d.c; 3-D ones
                      from GEMM_MIN_TAPS taps on: (GEMM_ROWS + KH - 1) * GEMM_MAC, the band
                      GEMM)
    fft               tiles * (N * log2(N) * FFT_POINT_LOG + N * FFT_POINT + FFT_TILE)

pixels is the output's size, N the FFT size of a tile (the product over the filtered
axes; ``fft.plan_tiles`` picks the tile that minimises the last line), and both are
divided by the threads. 3-D kernels multiply the direct cost by their depth taps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

import numpy as np

from ..backends import _bigbuf

#: Cost constants (seconds, one thread, float32), see the module docstring.
DENSE_MAC = 0.021e-9
DENSE_PIXEL = 0.30e-9
SEP_MAC = 0.026e-9
SEP_PIXEL = 0.21e-9
GEMM_MAC = 0.074e-9
FFT_POINT_LOG = 0.45e-9
FFT_POINT = 0.5e-9
FFT_TILE = 30e-6
DOUBLE = 2.6
#: Vertical factors of at least this many taps run as a band GEMM of GEMM_ROWS rows
#: (direct._separable_rows; the measured crossover).
GEMM_MIN_TAPS = 49
GEMM_ROWS = 56


@dataclass
class Problem:
    """One correlation: out = cast(correlate(x_ext, w)) (see the module docstring).

    x        input, any strides; its dtype is read through ``compute`` tile by tile
    w        dense kernel, x.ndim axes, in the compute dtype (float or complex)
    before   per axis: extended positions read before index 0 (output i reads
             x_ext[i - before : i - before + k])
    after    per axis: positions read past the end
    modes    per axis: a name of ``boundary.MODES``
    cval     the constant of mode 'constant'
    out      the output array, shape n + before + after - k + 1 per axis, any dtype
    cast     tile in the compute dtype -> values stored into ``out``
    compute  float32, float64, complex64 or complex128
    factors  per axis, the 1-D factors of a separable kernel (w = their outer product);
             None when w is not separable
    fresh_out  the caller takes the array ``correlate`` returns, and out may be a
             ``placeholder``: an engine may then return an output it made itself (one
             kernel call's), or call ``materialize`` before writing into out
    """

    x: np.ndarray
    w: np.ndarray
    before: Tuple[int, ...]
    after: Tuple[int, ...]
    modes: Tuple[str, ...]
    cval: float
    out: np.ndarray
    cast: Callable[[np.ndarray], np.ndarray]
    compute: np.dtype
    factors: Optional[List[np.ndarray]] = field(default=None)
    fresh_out: bool = False

    @property
    def ksize(self) -> Tuple[int, ...]:
        return tuple(self.w.shape)

    def materialize(self) -> np.ndarray:
        """p.out, allocated now if it is a ``placeholder``."""
        if not self.out.flags.writeable:
            self.out = _bigbuf.empty(self.out.shape, self.out.dtype)
        return self.out

    def filtered_axes(self) -> List[int]:
        """Axes along which anything happens (a kernel longer than 1, or extension)."""
        return [
            i for i in range(self.x.ndim) if self.w.shape[i] > 1 or self.before[i] or self.after[i]
        ]


def placeholder(shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
    """A read-only array of this shape and dtype that holds no memory: the output of a
    fresh_out Problem until an engine needs a real one (``Problem.materialize``), so that a
    call whose kernel makes the output itself allocates it once."""
    return np.broadcast_to(np.empty((), dtype), tuple(shape))


def merge_leading(a: np.ndarray, n: int) -> Optional[np.ndarray]:
    """a with its first n axes merged into one, as a view; None if that needs a copy."""
    if n == 1:
        return a
    shape = (int(np.prod(a.shape[:n])),) + a.shape[n:]
    try:
        return np.reshape(a, shape, copy=False)  # numpy >= 2.1
    except TypeError:  # pragma: no cover - older numpy: the view's shape refuses a copy
        v = a.view()
        try:
            v.shape = shape
        except AttributeError:
            return None
        return v
    except ValueError:
        return None


def factorize(w: np.ndarray, compute: Any = None) -> Optional[List[np.ndarray]]:
    """The 1-D factors of w when w is their outer product to the rounding of the compute
    dtype (max |w - outer| <= 4 * eps * max |w| * ndim, eps of ``compute``, default w's);
    None otherwise. Exact for kernels built as outer products of small integers (Sobel,
    Scharr, box); a Gaussian built in float32 is separable for float32 inputs."""
    if w.ndim == 0 or w.size == 0:
        return None
    if sum(s > 1 for s in w.shape) <= 1:
        return [_line(w, i) for i in range(w.ndim)]
    mag = np.abs(w)
    p = np.unravel_index(int(np.argmax(mag)), w.shape)
    peak = w[p]
    if peak == 0:
        return None
    factors = []
    for i in range(w.ndim):
        sel: List[Any] = list(p)
        sel[i] = slice(None)
        f = np.array(w[tuple(sel)], copy=True)
        if i > 0:
            f = f / peak
        factors.append(f)
    rebuilt = factors[0]
    for f in factors[1:]:
        rebuilt = np.multiply.outer(rebuilt, f)
    eps = np.finfo(np.result_type(w.dtype if compute is None else compute, np.float32)).eps
    if np.max(np.abs(rebuilt - w)) <= 4 * eps * float(mag[p]) * w.ndim:
        return factors
    return None


def _line(w: np.ndarray, axis: int) -> np.ndarray:
    """Factor ``axis`` of a kernel with at most one axis longer than 1: its values on the
    longest axis, a one elsewhere."""
    if axis == int(np.argmax(w.shape)):
        return np.array(w.reshape(-1), copy=True)
    return np.ones(1, dtype=w.dtype)


def _scale(p: Problem) -> float:
    double = p.compute not in (np.float32, np.complex64)
    return (DOUBLE if double else 1.0) * (4.0 if p.compute.kind == "c" else 1.0)


def estimate_direct(p: Problem, threads: int) -> float:
    """Seconds the direct engine is expected to take (the module docstring's model)."""
    pixels = float(np.prod(p.out.shape))
    filt = p.filtered_axes()
    ks = [p.w.shape[i] for i in filt] or [1]
    KH, KW = (ks[-2], ks[-1]) if len(ks) >= 2 else (1, ks[-1])
    depth = math.prod(ks[:-2]) if len(ks) > 2 else 1
    if p.factors is not None and KH * KW > 2 * (KH + KW) + 15:
        if depth == 1:  # the fused column + row passes of csrc/filter2d.c
            vertical = KH * SEP_MAC
        elif KH >= GEMM_MIN_TAPS:
            vertical = (GEMM_ROWS + KH - 1) * GEMM_MAC
        else:
            vertical = KH * SEP_MAC
        per = KW * SEP_MAC + vertical + SEP_PIXEL + (depth - 1) * DENSE_PIXEL
    else:
        per = depth * (KH * KW * DENSE_MAC + DENSE_PIXEL)
    return _scale(p) * pixels * per / max(threads, 1)


def estimate_fft(p: Problem, threads: int) -> float:
    from . import fft

    return _scale(p) * fft.plan_tiles(p).seconds / max(threads, 1)


def choose(p: Problem, threads: int) -> str:
    """'direct' or 'fft', whichever the cost model expects to be faster."""
    if p.out.size == 0 or not p.filtered_axes():
        return "direct"
    return "fft" if estimate_fft(p, threads) < estimate_direct(p, threads) else "direct"


def correlate(p: Problem, method: str, backend: str, threads: int) -> np.ndarray:
    """Run problem p with method 'direct', 'fft' or 'auto'; returns the output: p.out, or
    an array of the same shape and dtype when p.fresh_out."""
    if p.out.size == 0:
        return p.materialize()
    if method == "auto":
        method = choose(p, threads)
    if method == "fft" and p.filtered_axes():
        from . import fft

        p.materialize()
        fft.correlate(p, threads)
        return p.out
    from . import direct

    return direct.correlate(p, backend, threads)
