"""fastconv.signal against scipy.signal (the oracle) on random small configurations.

correlate2d / convolve2d (every mode and boundary, fillvalue), correlate / convolve (N-D,
every method), fftconvolve / oaconvolve (axes, broadcasting), choose_conv_method; input
dtypes from uint8 to complex128, mixed, non-contiguous; engines c, numba, reference and
both FFT libraries. Integer results are exact (SciPy's wrapping integer arithmetic), float
results agree to rounding; the FFT path's error is checked against the direct path; bad
arguments raise SciPy's exception class. The cost model's crossover is checked on shapes
where the answer is not in doubt.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastconv
from fastconv import signal as fs
from fastconv._filters import fft as fft_engine

ss = pytest.importorskip("scipy.signal")

ENGINES = [
    e
    for e in ("c", "numba", "reference")
    if fastconv.available_backends()[e].startswith("available")
]
DTYPES = [
    np.float64,
    np.float32,
    np.int32,
    np.uint8,
    np.int16,
    np.int64,
    np.complex128,
    np.complex64,
]


def _array(rng, shape, dtype):
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        a = rng.integers(0 if dt.kind == "u" else -50, 100, shape).astype(dt)
    elif dt.kind == "c":
        a = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dt)
    else:
        a = (rng.standard_normal(shape) * 3).astype(dt)
    r = rng.random()
    if r < 0.25 and a.ndim >= 2:
        a = np.asfortranarray(a)
    elif r < 0.5:
        a = np.repeat(a, 2, axis=0)[::2]
    return a


def _compare(r, e, *inputs):
    assert type(r) is np.ndarray
    e = np.asarray(e)
    assert r.dtype == e.dtype, (r.dtype, e.dtype)
    assert r.shape == e.shape
    if e.dtype.kind in "biu":
        np.testing.assert_array_equal(r, e)
        return
    single = any(np.dtype(a.dtype) in (np.float32, np.complex64, np.float16) for a in inputs)
    tol = 1e-4 if single else 1e-9
    scale = 1.0 + float(np.abs(inputs[0]).max(initial=0)) * float(np.abs(inputs[1]).sum())
    assert np.max(np.abs(r - e), initial=0) <= tol * scale


def _pair(rng, nd, max1=9, max2=7):
    d1 = DTYPES[rng.integers(len(DTYPES))]
    d2 = DTYPES[rng.integers(len(DTYPES))] if rng.random() < 0.5 else d1
    s1 = tuple(int(rng.integers(1, max1)) for _ in range(nd))
    s2 = tuple(int(rng.integers(1, max2)) for _ in range(nd))
    return _array(rng, s1, d1), _array(rng, s2, d2)


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", ["correlate2d", "convolve2d"])
def test_2d_random_against_scipy(name, engine):
    rng = np.random.default_rng(abs(hash((name, engine))) % 2**32)
    for _ in range(40 if engine != "reference" else 20):
        a, b = _pair(rng, 2)
        kw = {
            "mode": ["full", "same", "valid"][rng.integers(3)],
            "boundary": ["fill", "wrap", "symm", "circular", "symmetric", "pad"][rng.integers(6)],
        }
        if rng.random() < 0.5:
            kw["fillvalue"] = int(rng.integers(-3, 5)) if rng.random() < 0.5 else 1.25
        try:
            e = getattr(ss, name)(a, b, **kw)
        except ValueError:  # SciPy refuses (valid mode shapes, a fill it cannot cast)
            with pytest.raises(ValueError):
                getattr(fs, name)(a, b, **kw, backend=engine)
            continue
        method = ["auto", "direct", "fft"][rng.integers(3)]
        _compare(getattr(fs, name)(a, b, **kw, method=method, backend=engine), e, a, b)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", ["correlate", "convolve"])
def test_nd_random_against_scipy(name, engine):
    rng = np.random.default_rng(abs(hash((name, engine, 1))) % 2**32)
    for _ in range(40 if engine != "reference" else 20):
        a, b = _pair(rng, int(rng.integers(1, 4)))
        mode = ["full", "same", "valid"][rng.integers(3)]
        method = ["auto", "direct", "fft"][rng.integers(3)]
        try:
            e = getattr(ss, name)(a, b, mode=mode, method=method)
        except ValueError:
            with pytest.raises(ValueError):
                getattr(fs, name)(a, b, mode=mode, method=method, backend=engine)
            continue
        _compare(getattr(fs, name)(a, b, mode=mode, method=method, backend=engine), e, a, b)


@pytest.mark.parametrize("library", ["scipy", "numpy"])
@pytest.mark.parametrize("name", ["fftconvolve", "oaconvolve"])
def test_fft_random_against_scipy(name, library):
    rng = np.random.default_rng(abs(hash((name, library))) % 2**32)
    fft_engine.use(library)
    try:
        for _ in range(30):
            nd = int(rng.integers(1, 4))
            a, b = _pair(rng, nd)
            kw = {"mode": ["full", "same", "valid"][rng.integers(3)]}
            if nd > 1 and rng.random() < 0.5:
                axes = sorted(rng.choice(nd, int(rng.integers(1, nd + 1)), replace=False).tolist())
                kw["axes"] = axes
                # the other axes broadcast: equal lengths or 1
                b = b[
                    tuple(
                        slice(None)
                        if i in axes
                        else slice(0, 1 if rng.random() < 0.5 else a.shape[i])
                        for i in range(nd)
                    )
                ]
                if any(b.shape[i] not in (1, a.shape[i]) for i in range(nd) if i not in axes):
                    continue
            try:
                e = getattr(ss, name)(a, b, **kw)
            except ValueError:
                with pytest.raises(ValueError):
                    getattr(fs, name)(a, b, **kw)
                continue
            _compare(getattr(fs, name)(a, b, **kw), e, a, b)
    finally:
        fft_engine.use(None)


def test_integer_arithmetic_wraps_like_scipy():
    a = np.full((5, 5), 200, np.uint8)
    b = np.full((3, 3), 200, np.uint8)
    for mode in ("full", "same", "valid"):
        np.testing.assert_array_equal(fs.correlate2d(a, b, mode), ss.correlate2d(a, b, mode))
        np.testing.assert_array_equal(
            fs.correlate(a, b, mode, method="direct"), ss.correlate(a, b, mode, method="direct")
        )
        np.testing.assert_array_equal(
            fs.convolve(a, b, mode, method="fft"), ss.convolve(a, b, mode, method="fft")
        )
    big = np.array([[2**62, 3], [5, 2**61]], np.int64)  # past 2**53: integer arithmetic
    np.testing.assert_array_equal(fs.convolve2d(big, big), ss.convolve2d(big, big))
    i8, u8 = np.full((3, 3), 100, np.int8), np.full((2, 2), 200, np.uint8)
    _compare(fs.correlate(i8, u8, method="direct"), ss.correlate(i8, u8, method="direct"), i8, u8)


def test_boundaries_with_kernel_larger_than_input():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2, 3))
    k = rng.standard_normal((5, 7))
    for boundary in ("wrap", "symm", "fill"):
        for mode in ("full", "same"):
            _compare(
                fs.correlate2d(a, k, mode, boundary), ss.correlate2d(a, k, mode, boundary), a, k
            )
            _compare(fs.convolve2d(a, k, mode, boundary), ss.convolve2d(a, k, mode, boundary), a, k)


def test_float32_stays_float32_and_fft_error():
    # float32 in, float32 out; the FFT path's error against the direct path stays within
    # eps32 * log2(N) * max|x| * sum|w| (docs/filtering.md)
    rng = np.random.default_rng(4)
    a = rng.random((300, 260)).astype(np.float32)
    for k in (3, 9, 33):
        w = rng.standard_normal((k, k)).astype(np.float32)
        d = fs.correlate(a, w, "same", method="direct")
        f = fs.correlate(a, w, "same", method="fft")
        assert d.dtype == f.dtype == np.float32
        bound = np.finfo(np.float32).eps * np.log2(f.size) * np.abs(a).max() * np.abs(w).sum()
        assert np.max(np.abs(d.astype(np.float64) - f)) < bound
        exact = ss.correlate(a.astype(np.float64), w.astype(np.float64), "same", method="direct")
        assert np.max(np.abs(d - exact)) < bound
    assert fs.fftconvolve(a, w).dtype == np.float32
    assert fs.fftconvolve(a.astype(np.float16), w).dtype == np.float32


def test_choose_conv_method_crossover():
    # small kernels on a large image go direct, large ones go to the FFT; the model is
    # monotonic in the kernel size in between
    img = np.zeros((1024, 1024), np.float32)
    picks = [
        fs.choose_conv_method(img, np.zeros((k, k), np.float32), "same")
        for k in (3, 5, 7, 9, 11, 15, 21, 31, 45)
    ]
    assert picks[0] == "direct" and picks[-1] == "fft"
    first_fft = picks.index("fft")
    assert all(p == "fft" for p in picks[first_fft:])
    assert 5 <= (3, 5, 7, 9, 11, 15, 21, 31, 45)[first_fft] <= 31
    # separable kernels stay direct longer: a Gaussian-like rank-1 kernel of 31 taps
    g = np.exp(-(np.linspace(-3, 3, 31) ** 2)).astype(np.float32)
    assert fs.choose_conv_method(img, np.outer(g, g), "same") == "direct"
    # integers that an FFT could round wrong, and bool, are direct (as SciPy)
    big = np.full((64, 64), 2**40, np.int64)
    assert fs.choose_conv_method(big, big) == "direct"
    assert fs.choose_conv_method(np.ones((64, 64), bool), np.ones((9, 9), bool)) == "direct"
    method, times = fs.choose_conv_method(np.ones(64), np.ones(5), measure=True)
    assert method in ("direct", "fft") and set(times) == {"direct", "fft"}


def test_zero_d_empty_and_nan_warning():
    assert fs.correlate(np.array(2.0), np.array(3j)) == ss.correlate(np.array(2.0), np.array(3j))
    assert fs.fftconvolve(np.ones(0), np.ones(3)).shape == (0,)
    np.testing.assert_array_equal(
        fs.correlate2d(np.ones((0, 3)), np.ones((2, 2)), fillvalue=1),
        ss.correlate2d(np.ones((0, 3)), np.ones((2, 2)), fillvalue=1),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeWarning, match="NAN"):
            fs.correlate(np.array([np.nan, 1, 2]), np.ones(2), method="fft")


BAD = [
    ("correlate2d", (np.ones(3), np.ones(2)), {}, "2-D"),
    ("correlate2d", (np.ones((3, 3)), np.ones((2, 2))), {"mode": "foo"}, "mode"),
    ("correlate2d", (np.ones((3, 3)), np.ones((2, 2))), {"boundary": "foo"}, "boundary"),
    ("correlate2d", (np.ones((3, 3)), np.ones((2, 2))), {"fillvalue": [1, 2]}, "fillvalue"),
    ("correlate2d", (np.ones((3, 3)), np.ones((2, 2))), {"fillvalue": 1j}, "fillvalue"),
    (
        "correlate2d",
        (np.ones((3, 3), np.uint8), np.ones((2, 2), np.uint8)),
        {"fillvalue": -1},
        "fillvalue",
    ),
    ("correlate2d", (np.ones((3, 5)), np.ones((4, 2))), {"mode": "valid"}, "valid"),
    ("convolve2d", (np.ones((3, 3), bool), np.ones((2, 2), bool)), {}, "type"),
    ("convolve2d", (np.ones((3, 3), np.float16), np.ones((2, 2), np.float16)), {}, "type"),
    ("correlate", (np.ones(3), np.ones((2, 2))), {}, "dimensionality"),
    ("correlate", (np.ones(3), np.ones(2)), {"mode": "x"}, "mode"),
    ("correlate", (np.ones(3), np.ones(2)), {"method": "x"}, "method"),
    ("convolve", (np.ones((3, 3), bool), np.ones((2, 2), bool)), {"method": "direct"}, "type"),
    ("fftconvolve", (np.ones((3, 5)), np.ones((2, 2))), {"axes": 1}, "incompatible"),
    ("fftconvolve", (np.ones((3, 5)), np.ones((1, 2))), {"axes": 2}, "axes"),
    ("fftconvolve", (np.ones((3, 5)), np.ones((1, 2))), {"axes": [1, 1]}, "axes"),
    ("fftconvolve", (np.ones((3, 5)), np.ones((1, 2))), {"axes": []}, "axes"),
    ("oaconvolve", (np.ones((2, 4)), np.ones((3, 3))), {"mode": "valid"}, "valid"),
    ("choose_conv_method", (np.ones(10), np.ones(3)), {"mode": "x"}, "mode"),
]


@pytest.mark.parametrize("name, args, kw, word", BAD, ids=[f"{b[0]}-{b[3]}" for b in BAD])
def test_bad_arguments_raise_scipys_class(name, args, kw, word):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as scipy_err:
            getattr(ss, name)(*args, **kw)
        with pytest.raises(type(scipy_err.value)) as ours:
            getattr(fs, name)(*args, **kw)
    assert isinstance(ours.value, (ValueError, TypeError))
    assert word in str(ours.value)


def test_empty_inputs_raise():
    with pytest.raises(ValueError):
        fs.correlate(np.ones(0), np.ones(3))
    with pytest.raises(IndexError):  # SciPy's class on its FFT path, and a ValueError
        fs.correlate(np.ones(0), np.ones(3), method="fft")
