"""The C engine's plane filters (csrc/filter2d.c) and the routes to them.

The kernels are run directly on outputs poisoned with NaN and compared with a float64
NumPy reference (np.pad by the row then the column mode, then every tap) on seeded random
configurations: kernel sizes 1..31 (even, 1-wide, non-square), every mode per axis,
origins (``before``), cval, float32 / float64, strided rows, odd image sizes, images
smaller than the kernel, once per compiled instruction-set copy (AVX-512, AVX2 and
portable through the fc_dwpool_isa cap) and on several thread counts, whose results must
be identical. fastconv.ndimage and fastconv.signal are then checked against SciPy where
they take these kernels (correlate, convolve, gaussian_filter, uniform_filter,
correlate1d, signal.correlate2d).
"""

from __future__ import annotations

import numpy as np
import pytest

import fastconv

if not fastconv.available_backends()["c"].startswith("available"):
    pytest.skip("the C engine is not built", allow_module_level=True)

from _cases import isa_fixture  # noqa: E402

import fastconv._filters.direct as D  # noqa: E402
from fastconv.backends.c import filter2d as F  # noqa: E402

sn = pytest.importorskip("scipy.ndimage")
ss = pytest.importorskip("scipy.signal")

MODES = ("constant", "nearest", "reflect", "mirror", "wrap")
PAD = {
    "constant": "constant",
    "nearest": "edge",
    "reflect": "symmetric",
    "mirror": "reflect",
    "wrap": "wrap",
}
TOL = {np.float32: 2e-5, np.float64: 1e-12}


isa = isa_fixture()  # one run per compiled copy of the kernels


@pytest.fixture
def threads():
    old = fastconv.get_num_threads()
    yield
    fastconv.set_num_threads(old)


def _pad_axis(x, axis, lo, hi, mode, cval):
    """x extended by lo / hi positions on one axis (lo, hi may be negative: a crop)."""
    n = x.shape[axis]
    if mode == "mirror" and n == 1:
        mode = "nearest"
    w = [(0, 0)] * x.ndim
    w[axis] = (max(lo, 0), max(hi, 0))
    kw = {"constant_values": cval} if mode == "constant" else {}
    y = np.pad(x, w, mode=PAD[mode], **kw)
    sl = [slice(None)] * x.ndim
    sl[axis] = slice(max(-lo, 0), y.shape[axis] - max(-hi, 0))
    return y[tuple(sl)]


def reference(x, w, OH, OW, bh, bw, mrow, mcol, cval):
    """float64 y[n, i, j] = sum w[kh, kw] * x_ext[n, i - bh + kh, j - bw + kw]."""
    KH, KW = w.shape
    x = np.asarray(x, np.float64)
    H, W = x.shape[1:]
    e = _pad_axis(x, 1, bh, OH - 1 - bh + KH - H, mrow, cval)
    e = _pad_axis(e, 2, bw, OW - 1 - bw + KW - W, mcol, cval)
    y = np.zeros((x.shape[0], OH, OW))
    for kh in range(KH):
        for kw in range(KW):
            y += float(w[kh, kw]) * e[:, kh : kh + OH, kw : kw + OW]
    return y


def _check(got, ref, dtype):
    assert np.all(np.isfinite(got))
    scale = max(1.0, float(np.max(np.abs(ref))))
    np.testing.assert_allclose(got, ref, rtol=0, atol=TOL[dtype] * scale * 10)


def _config(rng, dtype):
    KH = (
        int(rng.choice([1, 2, 3, 4, 5, 7, 9, 12, 15, 31]))
        if rng.random() < 0.9
        else int(rng.integers(1, 32))
    )
    KW = (
        int(rng.choice([1, 2, 3, 4, 5, 6, 9, 11, 16, 31]))
        if rng.random() < 0.9
        else int(rng.integers(1, 32))
    )
    H = int(rng.integers(1, 70))
    W = int(rng.integers(1, 90))
    N = int(rng.integers(1, 3))
    bh = int(rng.integers(0, KH))
    bw = int(rng.integers(0, KW))
    # 'same' output mostly; sometimes signal's 'full' / 'valid' sizes
    kind = rng.integers(0, 4)
    OH, OW = H, W
    if kind == 1:
        OH, OW, bh, bw = H + KH - 1, W + KW - 1, KH - 1, KW - 1
    elif kind == 2 and H >= KH and W >= KW:
        OH, OW, bh, bw = H - KH + 1, W - KW + 1, 0, 0
    mrow, mcol = (str(m) for m in rng.choice(MODES, 2))
    cval = float(rng.choice([0.0, 1.5, -2.0]))
    pad_rows = int(rng.integers(0, 3))  # strided rows: a view of a wider array
    xb = rng.standard_normal((N, H, W + pad_rows)).astype(dtype)
    x = xb[:, :, :W]
    return x, (KH, KW), (OH, OW), (bh, bw), (mrow, mcol), cval


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_random(isa, dtype):
    rng = np.random.default_rng(100 + isa)
    for _ in range(60):
        x, (KH, KW), (OH, OW), before, modes, cval = _config(rng, dtype)
        w = rng.standard_normal((KH, KW)).astype(dtype)
        y = np.full((x.shape[0], OH, OW), np.nan, dtype)
        F.filter2d(x, y, w, before, modes, cval)
        _check(y, reference(x, w, OH, OW, *before, *modes, cval), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_separable_random(isa, dtype):
    rng = np.random.default_rng(200 + isa)
    for i in range(60):
        x, (KH, KW), (OH, OW), before, modes, cval = _config(rng, dtype)
        u = rng.standard_normal(KH).astype(dtype)
        v = rng.standard_normal(KW).astype(dtype)
        if i % 2:  # symmetric row factor: the paired taps
            v = (v + v[::-1]).astype(dtype)
        y = np.full((x.shape[0], OH, OW), np.nan, dtype)
        F.filter2d(x, y, u, before, modes, cval, v=v)
        ref = reference(x, np.outer(u.astype(np.float64), v), OH, OW, *before, *modes, cval)
        _check(y, ref, dtype)


@pytest.mark.parametrize("sep", [False, True])
def test_identical_across_thread_counts(threads, sep):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 301, 517)).astype(np.float32)
    w = rng.standard_normal((7, 5)).astype(np.float32)
    u, v = w[:, 0].copy(), w[0].copy()
    outs = []
    for n in (1, 2):  # (the machines of CI have 2 CPUs or more)
        fastconv.set_num_threads(n)
        y = np.full(x.shape, np.nan, np.float32)
        if sep:
            F.filter2d(x, y, u, (3, 2), ("reflect", "wrap"), 0.0, v=v)
        else:
            F.filter2d(x, y, w, (3, 2), ("reflect", "wrap"), 0.0)
        outs.append(y)
    for y in outs[1:]:
        assert np.array_equal(y, outs[0])


def test_usable_rejects_what_the_kernels_cannot_read():
    a = np.zeros((2, 5, 6), np.float32)
    assert F.usable(a) and F.usable(a[:, ::2]) and F.usable(a[:, :, 1:])
    assert not F.usable(a[:, :, ::2])
    assert not F.usable(a.astype(np.int32))
    assert not F.usable(a[0])


# ------------------------------------------------------------------ the public routes


@pytest.fixture
def spy(monkeypatch):
    """Count the problems the C plane filters took."""
    taken = []
    orig = D.c_planes

    def wrapped(*args):
        r = orig(*args)
        taken.append(r)
        return r

    monkeypatch.setattr(D, "c_planes", wrapped)
    return taken


def _images(rng, dtype):
    H, W = (int(v) for v in rng.integers(1, 60, 2))
    x = rng.standard_normal((H + 3, W + 2)).astype(dtype)
    views = [x[:H, :W], x[::2, 1:], x.T, x[:, ::2]]  # contiguous rows, strided, transposed
    return views[int(rng.integers(0, len(views)))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ndimage_random_against_scipy(isa, dtype, spy):
    import fastconv.ndimage as fn

    rng = np.random.default_rng(300 + isa)
    for _ in range(40):
        x = _images(rng, dtype)
        KH, KW = (int(v) for v in rng.integers(1, 12, 2))
        w = rng.standard_normal((KH, KW))
        mode = str(rng.choice(MODES))
        origin = [
            int(rng.integers(-(KH // 2), (KH - 1) // 2 + 1)),
            int(rng.integers(-(KW // 2), (KW - 1) // 2 + 1)),
        ]
        cval = float(rng.choice([0.0, 2.5]))
        for f in ("correlate", "convolve"):
            got = getattr(fn, f)(x, w.astype(dtype), mode=mode, cval=cval, origin=origin)
            ref = getattr(sn, f)(x.astype(np.float64), w, mode=mode, cval=cval, origin=origin)
            assert got.dtype == dtype
            _check(got, ref, dtype)
        sigma = float(rng.uniform(0.3, 3))
        got = fn.gaussian_filter(x, sigma, mode=mode, cval=cval)
        _check(got, sn.gaussian_filter(x.astype(np.float64), sigma, mode=mode, cval=cval), dtype)
        size = [int(v) for v in rng.integers(1, 9, 2)]
        got = fn.uniform_filter(x, size, mode=mode, cval=cval)
        _check(got, sn.uniform_filter(x.astype(np.float64), size, mode=mode, cval=cval), dtype)
        axis = int(rng.integers(0, 2))
        w1 = rng.standard_normal(int(rng.integers(1, 10)))
        got = fn.correlate1d(x, w1.astype(dtype), axis=axis, mode=mode, cval=cval)
        ref = sn.correlate1d(x.astype(np.float64), w1, axis=axis, mode=mode, cval=cval)
        _check(got, ref, dtype)
    assert sum(spy) >= 100  # most of them ran on the plane filters


def test_large_kernels_and_stacks(spy):
    import fastconv.ndimage as fn

    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 40, 67)).astype(np.float32)
    for K in (16, 31):
        w = rng.standard_normal((K, K - 3)).astype(np.float32)
        got = fn.correlate(x, w[None], mode="mirror", method="direct")
        ref = sn.correlate(x.astype(np.float64), w[None].astype(np.float64), mode="mirror")
        _check(got, ref, np.float32)
    got = fn.gaussian_filter(x, 2.0, axes=(1, 2), mode="wrap")
    ref = sn.gaussian_filter(x.astype(np.float64), 2.0, axes=(1, 2), mode="wrap")
    _check(got, ref, np.float32)
    assert all(spy)


def test_integer_output_through_slabs(spy):
    import fastconv.ndimage as fn

    rng = np.random.default_rng(9)
    x = rng.standard_normal((50, 70))
    w = rng.standard_normal((5, 5))
    out = np.empty((50, 70), np.float32)
    fn.correlate(x, w, output=out, mode="nearest")
    _check(out, sn.correlate(x, w, mode="nearest"), np.float32)
    assert spy and spy[-1]


def test_signal_direct_against_scipy(spy):
    import fastconv.signal as fs

    rng = np.random.default_rng(11)
    for dtype in (np.float32, np.float64):
        for mode in ("full", "same", "valid"):
            for boundary in ("fill", "symm", "wrap"):
                x = rng.standard_normal((23, 31)).astype(dtype)
                w = rng.standard_normal((6, 5)).astype(dtype)
                got = fs.correlate2d(x, w, mode=mode, boundary=boundary, fillvalue=0.5)
                ref = ss.correlate2d(
                    x.astype(np.float64),
                    w.astype(np.float64),
                    mode=mode,
                    boundary=boundary,
                    fillvalue=0.5,
                )
                assert got.shape == ref.shape
                _check(got, ref, dtype)
            got = fs.correlate(x, w, mode=mode, method="direct")
            _check(
                got,
                ss.correlate(
                    x.astype(np.float64), w.astype(np.float64), mode=mode, method="direct"
                ),
                dtype,
            )
    assert sum(spy) >= 20


def test_invalid_inputs_keep_scipys_classes():
    import fastconv.ndimage as fn

    x = np.zeros((8, 8), np.float32)
    with pytest.raises((RuntimeError, ValueError)) as e:
        fn.correlate(x, np.ones((3, 3)), mode="bogus")
    assert "mode" in str(e.value)
    with pytest.raises(ValueError):
        fn.correlate(x, np.ones((3, 3)), origin=5)
    with pytest.raises((RuntimeError, ValueError, TypeError)):
        fn.correlate(x, np.ones((3,)))
