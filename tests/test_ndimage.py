"""fastconv.ndimage against scipy.ndimage (the oracle) on random small configurations.

Every function x engine: random shapes (1-D to 3-D, axes of length 1, kernels longer than
the input, even kernels), every mode and its grid- alias, cval, origins, axes (stacks),
input dtypes, output dtypes and arrays, non-contiguous inputs, both methods. Float results
agree to rounding, integer and bool results exactly (SciPy's truncation and its order of
operations). Bad arguments raise SciPy's exception class, which is also a ValueError or
TypeError naming the parameter. Dask arrays give dask arrays with the same values.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastconv
from fastconv import ndimage as fn
from fastconv._filters import fft as fft_engine

sn = pytest.importorskip("scipy.ndimage")

ENGINES = [
    e
    for e in ("c", "numba", "reference")
    if fastconv.available_backends()[e].startswith("available")
]
MODES = [
    "reflect",
    "constant",
    "nearest",
    "mirror",
    "wrap",
    "grid-mirror",
    "grid-constant",
    "grid-wrap",
]
IN_DTYPES = [np.float64, np.float32, np.int32, np.uint8, np.int16, np.uint16, np.int64]
OUT_DTYPES = [None, np.float64, np.float32, np.int32, np.uint8, np.int8]


def _input(rng, nd, dtype, max_len=9):
    shape = tuple(int(rng.integers(1, max_len)) for _ in range(nd))
    dt = np.dtype(dtype)
    if dt.kind == "b":
        a = rng.random(shape) > 0.5
    elif dt.kind in "iu":
        a = rng.integers(0 if dt.kind == "u" else -60, 120, shape).astype(dt)
    else:
        a = (rng.standard_normal(shape) * 3).astype(dt)
    r = rng.random()
    if r < 0.25 and nd >= 2:  # Fortran order
        a = np.asfortranarray(a)
    elif r < 0.5:  # a strided view
        a = np.repeat(a, 2, axis=0)[::2]
    elif r < 0.6:  # negative strides
        a = np.ascontiguousarray(a[::-1])[::-1]
    return a


def _origin(rng, k):
    return int(rng.integers(-(k // 2), (k - 1) // 2 + 1))


def _compare(r, e, src_dtype):
    assert type(r) is np.ndarray
    assert r.dtype == e.dtype and r.shape == e.shape
    if e.dtype.kind in "biu":
        np.testing.assert_array_equal(r, e)
        return
    single = np.float32 in (e.dtype, src_dtype) or e.dtype == np.complex64
    tol = 2e-5 if single else 1e-10
    finite = np.abs(e[np.isfinite(e)])
    scale = max(1.0, float(np.max(finite, initial=0)))
    np.testing.assert_allclose(r, e, rtol=tol, atol=tol * scale)


def _case(rng, name, engine):
    """A random call of ``name``: (args, kwargs for both, fastconv-only kwargs)."""
    nd = int(rng.integers(1, 4))
    a = _input(rng, nd, IN_DTYPES[rng.integers(len(IN_DTYPES))])
    kw = {"mode": MODES[rng.integers(len(MODES))], "cval": float(np.round(rng.normal() * 2, 2))}
    if rng.random() < 0.3:
        kw["output"] = OUT_DTYPES[rng.integers(len(OUT_DTYPES))]
    extra = {"backend": engine}
    if name in ("correlate", "convolve"):
        if nd > 1 and rng.random() < 0.4:
            axes = sorted(rng.choice(nd, int(rng.integers(1, nd)), replace=False).tolist())
            kw["axes"] = axes
        else:
            axes = list(range(nd))
        w = np.round(rng.standard_normal([int(rng.integers(1, 7)) for _ in axes]), 2)
        if rng.random() < 0.2:
            w[w < 0] = 0  # holes in the footprint
        kw["origin"] = [_origin(rng, k) for k in w.shape]
        extra["method"] = ["auto", "direct", "fft"][rng.integers(3)]
        return (a, w), kw, extra
    if name in ("correlate1d", "convolve1d"):
        w = np.round(rng.standard_normal(int(rng.integers(1, 7))), 2)
        if rng.random() < 0.3:  # symmetric and antisymmetric kernels take SciPy's paired sums
            w = np.concatenate([w, (1 if rng.random() < 0.5 else -1) * w[:-1][::-1]])
            w[len(w) // 2] *= rng.random() < 0.5
        kw.update(axis=int(rng.integers(-nd, nd)), origin=_origin(rng, len(w)))
        return (a, w), kw, extra
    if name == "uniform_filter":
        size = [int(rng.integers(1, 6)) for _ in range(nd)]
        kw.update(size=size, origin=[_origin(rng, s) for s in size])
        return (a,), kw, extra
    if name == "uniform_filter1d":
        s = int(rng.integers(1, 7))
        kw.update(size=s, axis=int(rng.integers(-nd, nd)), origin=_origin(rng, s))
        return (a,), kw, extra
    if name == "gaussian_filter":
        kw.update(
            sigma=[float(rng.choice([0, 0.5, 1, 1.7, 3])) for _ in range(nd)],
            order=[int(rng.integers(0, 3)) for _ in range(nd)],
        )
        if rng.random() < 0.3:
            kw["truncate"] = float(rng.choice([1.0, 2.5]))
        if rng.random() < 0.2:
            kw["radius"] = int(rng.integers(0, 4))
        return (a,), kw, extra
    kw.update(
        sigma=float(rng.choice([0.5, 1, 1.7, 3])),
        order=int(rng.integers(0, 3)),
        axis=int(rng.integers(-nd, nd)),
    )
    return (a,), kw, extra


NAMES = [
    "correlate",
    "convolve",
    "correlate1d",
    "convolve1d",
    "uniform_filter",
    "uniform_filter1d",
    "gaussian_filter",
    "gaussian_filter1d",
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", NAMES)
def test_random_against_scipy(name, engine):
    rng = np.random.default_rng(abs(hash((name, engine))) % 2**32)
    n = 40 if engine != "reference" else 20
    for _ in range(n):
        args, kw, extra = _case(rng, name, engine)
        e = getattr(sn, name)(*args, **kw)
        r = getattr(fn, name)(*args, **kw, **extra)
        _compare(r, e, args[0].dtype)


def test_random_with_numpy_fft():
    """The FFT engine without scipy.fft gives the same results."""
    rng = np.random.default_rng(5)
    fft_engine.use("numpy")
    try:
        for _ in range(15):
            args, kw, extra = _case(rng, "correlate", "auto")
            extra["method"] = "fft"
            _compare(fn.correlate(*args, **kw, **extra), sn.correlate(*args, **kw), args[0].dtype)
    finally:
        fft_engine.use(None)
    assert fft_engine.library()[0] in ("scipy", "numpy")


@pytest.mark.parametrize("mode", MODES)
def test_kernel_longer_than_input(mode):
    # the extension keeps going past one period (reflect 2n, mirror 2n - 2, wrap n)
    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 5):
        a = rng.standard_normal((n, n + 1))
        w = rng.standard_normal((3 * n + 2, 2 * n + 3))
        for method in ("direct", "fft"):
            r = fn.correlate(a, w, mode=mode, cval=0.5, method=method)
            _compare(r, sn.correlate(a, w, mode=mode, cval=0.5), a.dtype)
        r = fn.correlate1d(a, w[:, 0], axis=0, mode=mode, cval=0.5)
        _compare(r, sn.correlate1d(a, w[:, 0], axis=0, mode=mode, cval=0.5), a.dtype)


def test_stack_through_axes():
    # a stack of 7 images filtered with one kernel: the batch axis is not filtered
    rng = np.random.default_rng(2)
    stack = rng.random((6, 20, 7)).astype(np.float32)
    w = rng.random((3, 5))
    for method in ("direct", "fft"):
        r = fn.correlate(stack, w, axes=(0, 1), method=method)
        assert r.dtype == np.float32
        _compare(r, sn.correlate(stack, w, axes=(0, 1)), np.float32)
    _compare(
        fn.gaussian_filter(stack, (1.0, 2.0), axes=(1, 2)),
        sn.gaussian_filter(stack, (1.0, 2.0), axes=(1, 2)),
        np.float32,
    )
    _compare(
        fn.uniform_filter(stack, (3, 2), axes=(2, 0)),
        sn.uniform_filter(stack, (3, 2), axes=(2, 0)),
        np.float32,
    )


def test_integer_outputs_exact():
    # SciPy's truncation after its own order of operations: sums like 2.9999999999999996
    # truncate to 2 in SciPy, and so here
    a = np.full((6, 7), 3, np.int32)
    w = np.full((3, 3), 1 / 9)
    np.testing.assert_array_equal(fn.correlate(a, w), sn.correlate(a, w))
    x = np.arange(40, dtype=np.uint8).reshape(5, 8) * 7
    for size in (2, 3, 5):
        np.testing.assert_array_equal(fn.uniform_filter(x, size), sn.uniform_filter(x, size))
    for sigma in (0.7, 1.3, 4):
        np.testing.assert_array_equal(fn.gaussian_filter(x, sigma), sn.gaussian_filter(x, sigma))
    v = np.array([-1.5, -0.5, 0.7, 300.2, 2.5])
    for dt in (np.uint8, np.int8, np.int32, np.uint16, np.bool_):
        np.testing.assert_array_equal(
            fn.correlate1d(v, [1.0], output=dt), sn.correlate1d(v, [1.0], output=dt)
        )


def test_gaussian_kernel_bits():
    # the impulse response is the kernel itself, bit for bit
    delta = np.zeros(41)
    delta[20] = 1
    for sigma, order in ((0.6, 0), (1.0, 0), (2.3, 1), (3.0, 2), (1.5, 3)):
        np.testing.assert_array_equal(
            fn.gaussian_filter1d(delta, sigma, order=order),
            sn.gaussian_filter1d(delta, sigma, order=order),
        )


def test_output_argument():
    rng = np.random.default_rng(3)
    a = rng.random((8, 9))
    out = np.zeros((8, 9), np.float32)
    r = fn.correlate(a, np.ones((3, 3)), output=out)
    assert r is out
    _compare(out, sn.correlate(a, np.ones((3, 3)), output=np.float32), np.float32)
    # in place: the output is the input
    b = a.copy()
    fn.gaussian_filter(b, 2, output=b)
    _compare(b, sn.gaussian_filter(a, 2), a.dtype)
    c = a.copy()
    fn.correlate(c, np.ones((4, 2)), output=c)
    _compare(c, sn.correlate(a, np.ones((4, 2))), a.dtype)


def test_complex():
    rng = np.random.default_rng(4)
    a = rng.random((7, 6)) + 1j * rng.random((7, 6))
    w = rng.random((3, 2)) + 1j * rng.random((3, 2))
    for f in ("correlate", "convolve"):
        for x, k in ((a, w), (a.real, w), (a, w.real), (a.astype(np.complex64), w.real)):
            _compare(
                getattr(fn, f)(x, k, mode="constant", cval=0.5),
                getattr(sn, f)(x, k, mode="constant", cval=0.5),
                x.dtype,
            )
    _compare(fn.correlate1d(a, w[:, 0], axis=0), sn.correlate1d(a, w[:, 0], axis=0), a.dtype)
    _compare(fn.gaussian_filter(a, 1.5), sn.gaussian_filter(a, 1.5), a.dtype)
    _compare(fn.uniform_filter(a, 3), sn.uniform_filter(a, 3), a.dtype)
    with pytest.raises(ValueError, match="cval"):
        fn.correlate(a.real, w, mode="constant", cval=1j)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="complex"):
            fn.correlate1d(a, [1.0, 2.0], output=np.float64)


def test_nonfinite_and_footprint():
    # zero weights are outside SciPy's footprint: an inf under a zero weight is not read
    a = np.array([[1.0, np.inf, 2.0, 3.0]])
    w = np.array([[0.0, 1.0, 0.0]])
    _compare(fn.correlate(a, w), sn.correlate(a, w), a.dtype)
    _compare(fn.correlate1d(a, w[0]), sn.correlate1d(a, w[0]), a.dtype)


def test_zero_size_and_0d():
    for shape in ((0, 3), (4, 0)):
        a = np.ones(shape)
        assert fn.correlate(a, np.ones((2, 2))).shape == shape
        assert fn.gaussian_filter(a, 1).shape == shape
    assert fn.correlate(np.array(3.0), np.array(2.0)) == sn.correlate(np.array(3.0), np.array(2.0))


BAD = [
    ("correlate", (np.ones((4, 4)), np.ones(3)), {}, "weights"),
    ("correlate", (np.ones((4, 4)), np.ones((3, 3))), {"mode": "foo"}, "mode"),
    ("correlate", (np.ones((4, 4)), np.ones((3, 3))), {"mode": ["reflect", "wrap"]}, "mode"),
    ("correlate", (np.ones((4, 4)), np.ones((3, 3))), {"origin": 2}, "origin"),
    ("correlate", (np.ones((4, 4)), np.ones((3, 3))), {"output": np.zeros(3)}, "output"),
    ("correlate", (np.ones((4, 4)), np.ones((3,))), {"axes": (2,)}, "axis"),
    ("correlate", (np.ones((4, 4)), np.ones((3, 3))), {"axes": (1, 1)}, "axes"),
    ("correlate", (np.ones((4, 4)), np.ones((3, 3))), {"cval": "a"}, "cval"),
    ("correlate", (np.ones((4, 4), np.float16), np.ones((3, 3))), {}, "float16"),
    ("correlate", (np.ones((4, 4)), np.ones((3, 3))), {"output": np.complex128}, "complex"),
    ("correlate1d", (np.ones((4, 4)), []), {}, "weights"),
    ("correlate1d", (np.ones((4, 4)), [1, 2, 3]), {"origin": -2}, "origin"),
    ("correlate1d", (np.ones((4, 4)), [1, 2, 3]), {"axis": 2}, "axis"),
    ("uniform_filter1d", (np.ones(5), 0), {}, "size"),
    ("uniform_filter", (np.ones(5),), {"size": [1, 2]}, "size"),
    ("gaussian_filter", (np.ones(5), 1), {"order": -1}, "order"),
    ("gaussian_filter", (np.ones(5), 1), {"radius": -1}, "radius"),
    ("gaussian_filter", (np.ones(5), 1), {"radius": 1.5}, "radius"),
    ("gaussian_filter", (np.ones((3, 3)), [1, 2, 3]), {}, "sigma"),
    ("gaussian_filter1d", (np.ones(5), 0), {}, "sigma"),
    ("gaussian_filter1d", (np.ones(5), -1), {}, "adius"),
]


@pytest.mark.parametrize("name, args, kw, word", BAD, ids=[f"{b[0]}-{b[3]}" for b in BAD])
def test_bad_arguments_raise_scipys_class(name, args, kw, word):
    with pytest.raises(Exception) as scipy_err:
        getattr(sn, name)(*args, **kw)
    with pytest.raises(type(scipy_err.value)) as ours:
        getattr(fn, name)(*args, **kw)
    assert isinstance(ours.value, (ValueError, TypeError))  # fastconv's own rule as well
    assert word in str(ours.value)


def test_bad_fastconv_arguments():
    with pytest.raises(ValueError, match="method"):
        fn.correlate(np.ones(4), np.ones(2), method="fast")
    with pytest.raises(ValueError, match="backend"):
        fn.correlate(np.ones(4), np.ones(2), backend="gpu")


def test_fft_and_direct_agree_on_large_kernels():
    rng = np.random.default_rng(6)
    a = rng.random((150, 130)).astype(np.float32)
    w = rng.random((31, 25)).astype(np.float32)
    d = fn.correlate(a, w, method="direct")
    f = fn.correlate(a, w, method="fft")
    bound = np.finfo(np.float32).eps * np.log2(a.size) * np.abs(w).sum() * np.abs(a).max()
    assert np.max(np.abs(d - f)) < bound
    _compare(d, sn.correlate(a, w), np.float32)


def test_dask_in_dask_out():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(7)
    a = rng.random((37, 29))
    d = da.from_array(a, chunks=(10, 8))
    w = rng.random((5, 4))
    for mode in ("reflect", "constant", "nearest", "mirror", "wrap"):
        r = fn.correlate(d, w, mode=mode, origin=(1, -1), cval=0.3)
        assert isinstance(r, da.Array)
        _compare(r.compute(), sn.correlate(a, w, mode=mode, origin=(1, -1), cval=0.3), a.dtype)
        _compare(
            fn.gaussian_filter(d, 2.5, mode=mode).compute(),
            sn.gaussian_filter(a, 2.5, mode=mode),
            a.dtype,
        )
        _compare(
            fn.uniform_filter1d(d, 4, axis=0, mode=mode).compute(),
            sn.uniform_filter1d(a, 4, axis=0, mode=mode),
            a.dtype,
        )
    # a window wider than the image: the whole axis in one chunk
    big = rng.random((45, 3))
    _compare(
        fn.correlate(d, big, mode="wrap").compute(), sn.correlate(a, big, mode="wrap"), a.dtype
    )
    assert fn.gaussian_filter(d.astype(np.float32), 1).dtype == np.float32
    with pytest.raises(TypeError, match="output"):
        fn.gaussian_filter(d, 1, output=np.zeros(a.shape))
