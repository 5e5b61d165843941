"""The numba backend, kernel by kernel and variant by variant, against the reference backend.

Kernels are called directly with outputs poisoned with NaN (indices with -7), so an element a
kernel forgets to write fails. Shapes are seeded random draws; the kernels compile once per
dtype whatever the shape, so many shapes cost no extra JIT time. float32 must be within 1e-5
of max|ref|, float64 within 1e-10; max-pool indices must be identical.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv.backends import reference as ref

nb = pytest.importorskip("fastconv.backends.numba_cpu")
if nb.AVAILABLE_REASON != "available":  # pragma: no cover - depends on the installation
    pytest.skip(f"numba backend: {nb.AVAILABLE_REASON}", allow_module_level=True)

import numba  # noqa: E402

DTYPES = [(np.float32, 1e-5), (np.float64, 1e-10)]
DT_IDS = ["f32", "f64"]


def close(got, want, tol):
    assert not np.isnan(got).any() or np.isnan(want).any(), "an output element left unwritten"
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    scale = max(float(np.abs(want[ok]).max()) if ok.any() else 0.0, 1e-30)
    assert float(np.abs(got[ok] - want[ok]).max(initial=0.0)) <= tol * scale


def poison(shape, dtype):
    return np.full(shape, np.nan, dtype)


def rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def conv_out(size, k, s, p0, p1, d):
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def draw_conv(rng):
    """A random conv2d problem: groups, strides, dilations, asymmetric kernels and padding
    (bottom / right padding differ from top / left, as padding='same' gives)."""
    G = int(rng.choice([1, 1, 2, 3]))
    Cg, OCg = int(rng.integers(1, 5)), int(rng.integers(1, 14))
    KH, KW = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    dh, dw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    pt, pb, pl, pr = (int(v) for v in rng.integers(0, 3, 4))
    H = int(rng.integers(dh * (KH - 1) + 1, 14))
    W = int(rng.integers(dw * (KW - 1) + 1, 40))
    N = int(rng.integers(1, 3))
    OH, OW = conv_out(H, KH, sh, pt, pb, dh), conv_out(W, KW, sw, pl, pr, dw)
    return (N, G * Cg, H, W, G * OCg, Cg, KH, KW), (sh, sw, pt, pl, dh, dw, G), (OH, OW)


# --------------------------------------------------------------------------- conv2d


@pytest.mark.parametrize("variant", (None,) + nb.CONV2D_VARIANTS)
@pytest.mark.parametrize("dtype,tol", DTYPES, ids=DT_IDS)
def test_conv2d_variants_random(variant, dtype, tol):
    rng = np.random.default_rng(1234)
    for trial in range(12):
        (N, C, H, W, OC, Cg, KH, KW), geo, (OH, OW) = draw_conv(rng)
        x, w = rand(rng, (N, C, H, W), dtype), rand(rng, (OC, Cg, KH, KW), dtype)
        b = rand(rng, (OC,), dtype) if trial % 2 else None
        got, want = poison((N, OC, OH, OW), dtype), poison((N, OC, OH, OW), dtype)
        nb.conv2d(x, w, b, got, *geo, variant=variant)
        ref.conv2d(x, w, b, want, *geo)
        close(got, want, tol)


@pytest.mark.parametrize("variant", nb.CONV2D_VARIANTS)
@pytest.mark.parametrize("dtype,tol", DTYPES, ids=DT_IDS)
def test_conv2d_variants_gemm_edges(variant, dtype, tol):
    """Shapes that exercise the packed GEMM's blocking: depth above one KC block, output
    channels not a multiple of the 6-row tile, panels spanning several output rows, groups."""
    rng = np.random.default_rng(7)
    for N, C, H, W, OC, G, K in [
        (1, 40, 9, 7, 13, 1, 3),
        (2, 12, 5, 37, 20, 2, 3),
        (1, 8, 3, 3, 7, 1, 1),
        (1, 600, 2, 3, 6, 2, 1),
    ]:
        x, w = rand(rng, (N, C, H, W), dtype), rand(rng, (OC, C // G, K, K), dtype)
        b = rand(rng, (OC,), dtype)
        got, want = poison((N, OC, H, W), dtype), poison((N, OC, H, W), dtype)
        nb.conv2d(x, w, b, got, 1, 1, K // 2, K // 2, 1, 1, G, variant=variant)
        ref.conv2d(x, w, b, want, 1, 1, K // 2, K // 2, 1, 1, G)
        close(got, want, tol)


def test_conv2d_unknown_variant_lists_the_valid_ones():
    x, w = np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3))
    with pytest.raises(ValueError, match="v1_direct.*v4_implicit"):
        fastconv.conv2d(x, w, backend="numba", variant="v9_magic")
    with pytest.raises(ValueError, match="v2_im2col"):
        fastconv.conv2d(x, w, backend="numba", variant="nope")


@pytest.mark.parametrize("variant", (None,) + nb.CONV2D_VARIANTS)
def test_conv2d_public_api_same_even_kernel_noncontiguous(variant):
    rng = np.random.default_rng(3)
    base = rand(rng, (2, 12, 11, 16), np.float64)
    x = base[:, ::2, :, ::2]  # non-contiguous (2, 6, 11, 8)
    w = rand(rng, (4, 3, 4, 2), np.float64)  # even kernel: 'same' pads 1 before, 2 after
    b = rand(rng, (4,), np.float64)
    kw = dict(padding="same", dilation=(1, 2), groups=2)
    got = fastconv.conv2d(x, w, b, backend="numba", variant=variant, **kw)
    want = fastconv.conv2d(x, w, b, backend="reference", **kw)
    assert got.shape == want.shape == (2, 4, 11, 8)
    close(got, want, 1e-10)
    x1, w1 = x[:, :, 3, :].astype(np.float32), w[:, :, 0, :].astype(np.float32)
    kw = dict(stride=2, padding=1, groups=2)
    got = fastconv.conv1d(x1, w1, None, backend="numba", variant=variant, **kw)
    want = fastconv.conv1d(x1, w1, None, backend="reference", **kw)
    close(got, want, 1e-5)


# --------------------------------------------------------------------------- other convolutions


@pytest.mark.parametrize("dtype,tol", DTYPES, ids=DT_IDS)
def test_depthwise_and_separable_random(dtype, tol):
    rng = np.random.default_rng(99)
    for trial in range(10):
        (N, C, H, W, _, _, KH, KW), (sh, sw, pt, pl, dh, dw, _), (OH, OW) = draw_conv(rng)
        m = int(rng.integers(1, 4))
        x, wd = rand(rng, (N, C, H, W), dtype), rand(rng, (C * m, 1, KH, KW), dtype)
        bd = rand(rng, (C * m,), dtype) if trial % 2 else None
        got, want = poison((N, C * m, OH, OW), dtype), poison((N, C * m, OH, OW), dtype)
        nb.depthwise_conv2d(x, wd, bd, got, sh, sw, pt, pl, dh, dw)
        ref.depthwise_conv2d(x, wd, bd, want, sh, sw, pt, pl, dh, dw)
        close(got, want, tol)
        # conv2d with groups = C and variant None takes the depthwise path too
        got2 = poison((N, C * m, OH, OW), dtype)
        nb.conv2d(x, wd, bd, got2, sh, sw, pt, pl, dh, dw, C)
        close(got2, want, tol)
        OC = int(rng.integers(1, 9))
        wp, bp = rand(rng, (OC, C * m, 1, 1), dtype), rand(rng, (OC,), dtype)
        got, want = poison((N, OC, OH, OW), dtype), poison((N, OC, OH, OW), dtype)
        nb.separable_conv2d(x, wd, bd, wp, bp, got, sh, sw, pt, pl, dh, dw)
        ref.separable_conv2d(x, wd, bd, wp, bp, want, sh, sw, pt, pl, dh, dw)
        close(got, want, tol)


def draw_tconv(rng):
    """A random conv_transpose2d problem; output_padding up to max(stride, dilation) - 1."""
    G = int(rng.choice([1, 2]))
    C, OCg = G * int(rng.integers(1, 4)), int(rng.integers(1, 15))
    KH, KW = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    sh, sw, dh, dw = (int(v) for v in rng.integers(1, 4, 4))
    ph, pw = int(rng.integers(0, KH)), int(rng.integers(0, KW))
    N, H, W = int(rng.integers(1, 3)), int(rng.integers(1, 7)), int(rng.integers(1, 9))
    oph, opw = int(rng.integers(0, max(sh, dh))), int(rng.integers(0, max(sw, dw)))
    OH = (H - 1) * sh - 2 * ph + dh * (KH - 1) + oph + 1
    OW = (W - 1) * sw - 2 * pw + dw * (KW - 1) + opw + 1
    return (N, C, H, W, OCg, KH, KW), (sh, sw, ph, pw, dh, dw, G), (OH, OW)


#: Hand-picked transposed convolutions: (N, C, H, W, OCg, KH, KW, sh, sw, ph, pw, dh, dw, G,
#: oph, opw). DCGAN 4x4/2 at tiny and larger inputs (phases of <= 1 and > 1 vectors of
#: pixels), depth C/G*T*U above one KC block (300*4), rows not a multiple of 6 or 12, kernel 1
#: with stride 3 (phases without taps: bias only), dilation sharing a factor with the stride,
#: padding beyond the kernel reach, groups, a 1-pixel input, strides far beyond the kernel
#: (runs of phases without taps between those with panels; 250 phases along a row).
TCONV_EDGES = [
    (1, 16, 2, 2, 13, 4, 4, 2, 2, 1, 1, 1, 1, 1, 0, 0),
    (1, 8, 9, 11, 7, 4, 4, 2, 2, 1, 1, 1, 1, 1, 1, 0),
    (2, 300, 3, 3, 5, 4, 4, 2, 2, 1, 1, 1, 1, 1, 0, 0),
    (1, 6, 5, 7, 25, 3, 3, 2, 2, 1, 1, 1, 1, 3, 1, 1),
    (1, 4, 4, 5, 3, 1, 1, 3, 3, 0, 0, 1, 1, 1, 2, 1),
    (2, 4, 4, 6, 4, 3, 2, 2, 4, 2, 1, 2, 2, 2, 1, 3),
    (1, 3, 6, 5, 8, 3, 3, 2, 3, 4, 3, 3, 2, 1, 0, 0),
    (1, 5, 1, 1, 9, 2, 3, 2, 2, 0, 1, 1, 1, 1, 1, 0),
    (3, 2, 3, 40, 2, 2, 3, 1, 1, 1, 2, 1, 1, 2, 0, 0),
    (1, 2, 3, 4, 3, 2, 3, 9, 40, 1, 2, 2, 3, 1, 5, 7),
    (2, 4, 2, 3, 5, 3, 1, 13, 250, 0, 0, 4, 1, 2, 3, 17),
]


def tconv_cases(rng, trials):
    for _ in range(trials):
        yield draw_tconv(rng)
    for N, C, H, W, OCg, KH, KW, sh, sw, ph, pw, dh, dw, G, oph, opw in TCONV_EDGES:
        OH = (H - 1) * sh - 2 * ph + dh * (KH - 1) + oph + 1
        OW = (W - 1) * sw - 2 * pw + dw * (KW - 1) + opw + 1
        yield (N, C, H, W, OCg, KH, KW), (sh, sw, ph, pw, dh, dw, G), (OH, OW)


@pytest.mark.parametrize("wstat", [None, False, True], ids=["auto", "packed_w", "wstat"])
@pytest.mark.parametrize("dtype,tol", DTYPES, ids=DT_IDS)
def test_conv_transpose2d_random(wstat, dtype, tol):
    """Both GEMM schedules (packed weights; weights in place, 6 x 2 and 12 x 1 tiles), and the
    choice between them, against the reference."""
    from fastconv.backends.numba_cpu import transpose

    rng = np.random.default_rng(5)
    for trial, ((N, C, H, W, OCg, KH, KW), geo, (OH, OW)) in enumerate(tconv_cases(rng, 14)):
        if OH < 1 or OW < 1:
            continue
        G = geo[-1]
        x, w = rand(rng, (N, C, H, W), dtype), rand(rng, (C, OCg, KH, KW), dtype)
        b = rand(rng, (G * OCg,), dtype) if trial % 2 else None
        got, want = poison((N, G * OCg, OH, OW), dtype), poison((N, G * OCg, OH, OW), dtype)
        if wstat is None:
            nb.conv_transpose2d(x, w, b, got, *geo)
        else:
            bb, has_b = nb._bias(b, dtype)
            transpose.conv_transpose_packed(x, w, bb, has_b, got, *geo, 2, wstat=wstat)
        ref.conv_transpose2d(x, w, b, want, *geo)
        close(got, want, tol)


def test_conv_transpose2d_public_api_output_padding_noncontiguous():
    rng = np.random.default_rng(6)
    x = rand(rng, (2, 8, 7, 12), np.float32)[:, ::2, :, ::-2]  # (2, 4, 7, 6), non-contiguous
    w = rand(rng, (4, 3, 3, 3), np.float32)
    b = rand(rng, (6,), np.float32)
    kw = dict(stride=2, padding=1, output_padding=1, groups=2, dilation=1)
    got = fastconv.conv_transpose2d(x, w, b, backend="numba", **kw)
    want = fastconv.conv_transpose2d(x, w, b, backend="reference", **kw)
    assert got.shape == want.shape == (2, 6, 14, 12)
    close(got, want, 1e-5)


# --------------------------------------------------------------------------- pooling


def pool_input(rng, shape, dtype, nan):
    """Small integers (many ties, so the first-maximum rule matters), some NaN."""
    x = rng.integers(-3, 4, shape).astype(dtype)
    if nan:
        x[rng.random(shape) < 0.1] = np.nan
    return x


def draw_pool(rng):
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    dh, dw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    ph, pw = int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))
    H, W = int(rng.integers(dh * (kh - 1) + 1, 12)), int(rng.integers(dw * (kw - 1) + 1, 30))
    ceil = bool(rng.random() < 0.5)
    from fastconv._shapes import pool_output_size

    OH = pool_output_size(H, kh, sh, ph, dh, ceil)
    OW = pool_output_size(W, kw, sw, pw, dw, ceil)
    return (
        (int(rng.integers(1, 3)), int(rng.integers(1, 4)), H, W),
        (kh, kw, sh, sw, ph, pw, dh, dw),
        (OH, OW),
    )


@pytest.mark.parametrize("dtype,tol", DTYPES, ids=DT_IDS)
def test_max_pool2d_random_nan_ties_indices(dtype, tol):
    rng = np.random.default_rng(11)
    for trial in range(16):
        (N, C, H, W), geo, (OH, OW) = draw_pool(rng)
        x = pool_input(rng, (N, C, H, W), dtype, nan=trial % 2 == 0)
        got, want = poison((N, C, OH, OW), dtype), poison((N, C, OH, OW), dtype)
        gi, wi = np.full((N, C, OH, OW), -7, np.int64), np.full((N, C, OH, OW), -7, np.int64)
        nb.max_pool2d(x, got, gi, *geo)
        ref.max_pool2d(x, want, wi, *geo)
        close(got, want, tol)
        np.testing.assert_array_equal(gi, wi)
        got2 = poison((N, C, OH, OW), dtype)
        nb.max_pool2d(x, got2, None, *geo)
        close(got2, want, tol)
        # backward through those indices
        gy = rand(rng, (N, C, OH, OW), dtype)
        gx, wx = poison((N, C, H, W), dtype), poison((N, C, H, W), dtype)
        nb.max_pool2d_backward(gy, gi, gx)
        ref.max_pool2d_backward(gy, wi, wx)
        close(gx, wx, tol)


def test_max_pool2d_nan_and_minus_inf_windows():
    x = np.full((1, 1, 4, 4), -np.inf)
    x[0, 0, 0, 1] = x[0, 0, 0, 2] = np.nan
    y, i = poison((1, 1, 2, 2), np.float64), np.full((1, 1, 2, 2), -7, np.int64)
    nb.max_pool2d(x, y, i, 3, 3, 2, 2, 1, 1, 1, 1)
    assert np.isnan(y[0, 0, 0]).all()
    assert i[0, 0, 0].tolist() == [1, 2]  # the last NaN of each window
    assert (y[0, 0, 1] == -np.inf).all()
    assert i[0, 0, 1].tolist() == [4, 5]  # all -inf: the window's first in-bounds position


@pytest.mark.parametrize("dtype,tol", DTYPES, ids=DT_IDS)
def test_avg_pool2d_and_backward_random(dtype, tol):
    rng = np.random.default_rng(12)
    for trial in range(16):
        (N, C, H, W), (kh, kw, sh, sw, ph, pw, _, _), (OH, OW) = draw_pool(rng)
        cip = bool(trial % 2)
        div = int(rng.choice([0, 0, 3, -2]))
        x = rand(rng, (N, C, H, W), dtype)
        got, want = poison((N, C, OH, OW), dtype), poison((N, C, OH, OW), dtype)
        nb.avg_pool2d(x, got, kh, kw, sh, sw, ph, pw, cip, div)
        ref.avg_pool2d(x, want, kh, kw, sh, sw, ph, pw, cip, div)
        close(got, want, tol)
        gy = rand(rng, (N, C, OH, OW), dtype)
        gx, wx = poison((N, C, H, W), dtype), poison((N, C, H, W), dtype)
        nb.avg_pool2d_backward(gy, gx, kh, kw, sh, sw, ph, pw, cip, div)
        ref.avg_pool2d_backward(gy, wx, kh, kw, sh, sw, ph, pw, cip, div)
        close(gx, wx, tol)


@pytest.mark.parametrize("dtype,tol", DTYPES, ids=DT_IDS)
def test_adaptive_pools_and_backward_random(dtype, tol):
    rng = np.random.default_rng(13)
    for trial in range(12):
        N, C = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        H, W = int(rng.integers(1, 12)), int(rng.integers(1, 12))
        OH, OW = int(rng.integers(1, 2 * H + 1)), int(rng.integers(1, 2 * W + 1))
        x = pool_input(rng, (N, C, H, W), dtype, nan=trial % 3 == 0)
        got, want = poison((N, C, OH, OW), dtype), poison((N, C, OH, OW), dtype)
        gi, wi = np.full((N, C, OH, OW), -7, np.int64), np.full((N, C, OH, OW), -7, np.int64)
        nb.adaptive_max_pool2d(x, got, gi)
        ref.adaptive_max_pool2d(x, want, wi)
        close(got, want, tol)
        np.testing.assert_array_equal(gi, wi)
        got2 = poison((N, C, OH, OW), dtype)
        nb.adaptive_max_pool2d(x, got2, None)
        close(got2, want, tol)
        x = rand(rng, (N, C, H, W), dtype)
        got, want = poison((N, C, OH, OW), dtype), poison((N, C, OH, OW), dtype)
        nb.adaptive_avg_pool2d(x, got)
        ref.adaptive_avg_pool2d(x, want)
        close(got, want, tol)
        gy = rand(rng, (N, C, OH, OW), dtype)
        gx, wx = poison((N, C, H, W), dtype), poison((N, C, H, W), dtype)
        nb.adaptive_avg_pool2d_backward(gy, gx)
        ref.adaptive_avg_pool2d_backward(gy, wx)
        close(gx, wx, tol)


@pytest.mark.parametrize("dtype,tol", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("threads", [1, 2])
def test_global_avg_many_planes(dtype, tol, threads):
    # 1x1 output: the SIMD path sums 16 planes side by side, planes of at least one vector
    # and at most GLOBAL_SIMD_MAX values, the ragged end of each plane as a masked last
    # vector; the other planes (fewer than 16 left, or sizes outside that range) one by one.
    # Plane counts around multiples of 16, sizes around the vector widths (8, 16) and the
    # limit; NaN and infinities must stay in their own plane.
    rng = np.random.default_rng(23)
    shapes = [
        (1, 16, 1, 1), (1, 17, 2, 3), (1, 16, 2, 4), (3, 31, 4, 4), (2, 16, 3, 3),
        (2, 48, 7, 7), (1, 250, 1, 17), (4, 333, 7, 7), (1, 40, 10, 10), (1, 32, 64, 64),
        (1, 33, 1, 4097), (2, 9, 64, 65), (1, 64, 1, 15),
    ]
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        for shape in shapes:
            x = rand(rng, shape, dtype) + 0.5
            for v in (np.nan, np.inf, -np.inf):
                x.flat[rng.integers(0, x.size)] = v
            got, want = poison(shape[:2] + (1, 1), dtype), poison(shape[:2] + (1, 1), dtype)
            nb.adaptive_avg_pool2d(x, got)
            ref.adaptive_avg_pool2d(x, want)
            fin = np.isfinite(want)
            np.testing.assert_array_equal(got[~fin], want[~fin])  # NaN, +inf, -inf planes
            close(got[fin], want[fin], tol)
    finally:
        fastconv.set_num_threads(before)


def test_pools_public_api_noncontiguous():
    rng = np.random.default_rng(4)
    x = rand(rng, (2, 3, 15, 20), np.float32)[:, :, 1::2, ::-1]
    for fn, args in [
        (fastconv.max_pool2d, (3, 2, 1)),
        (fastconv.avg_pool2d, ((2, 3), 1, (1, 1))),
        (fastconv.adaptive_avg_pool2d, ((3, 5),)),
        (fastconv.adaptive_max_pool2d, ((4, 3),)),
    ]:
        close(fn(x, *args, backend="numba"), fn(x, *args, backend="reference"), 1e-5)
    y, i = fastconv.max_pool2d(x, 2, return_indices=True, ceil_mode=True, backend="numba")
    y0, i0 = fastconv.max_pool2d(x, 2, return_indices=True, ceil_mode=True, backend="reference")
    close(y, y0, 1e-5)
    np.testing.assert_array_equal(i, i0)


# --------------------------------------------------------------------------- backend level


def test_threads_follow_fastconv_and_are_capped():
    rng = np.random.default_rng(8)
    x, w = rand(rng, (2, 8, 12, 12), np.float64), rand(rng, (12, 8, 3, 3), np.float64)
    want = fastconv.conv2d(x, w, padding=1, backend="reference")
    before = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(1)
        got = fastconv.conv2d(x, w, padding=1, backend="numba")
        assert numba.get_num_threads() == 1
        close(got, want, 1e-10)
        nb.set_num_threads(10**6)
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    finally:
        fastconv.set_num_threads(before)
    assert numba.get_num_threads() == min(before, numba.config.NUMBA_NUM_THREADS)


def test_one_specialisation_per_dtype():
    """Bias / indices given or None, any shape: each kernel compiles at most once per dtype."""
    from numba.core.registry import CPUDispatcher

    from fastconv.backends.numba_cpu import direct, gemm, pool, rows, transpose

    def ref_pool(x):
        return fastconv.max_pool2d(x, 2, backend="reference")

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = rand(rng, (1, 4, 6, 7), dtype)
        for b in (None, np.ones(6, dtype)):
            for v in nb.CONV2D_VARIANTS:
                nb.conv2d(
                    x,
                    rand(rng, (6, 2, 3, 2), dtype),
                    b,
                    poison((1, 6, 4, 6), dtype),
                    1,
                    1,
                    0,
                    0,
                    1,
                    1,
                    2,
                    variant=v,
                )
            for wstat in (False, True):
                for hw in (2, 6):  # wstat: 12 x 1-vector tiles at 2 x 2, 6 x 2-vector at 6 x 6
                    transpose.conv_transpose_packed(
                        x[:, :, :hw, :hw].copy(),
                        rand(rng, (4, 7, 4, 4), dtype),
                        *nb._bias(b if b is None else np.ones(14, dtype), dtype),
                        poison((1, 14, 2 * hw, 2 * hw), dtype),
                        2,
                        2,
                        1,
                        1,
                        1,
                        1,
                        2,
                        2,
                        wstat=wstat,
                    )
        for idx in (None, np.empty((1, 4, 3, 3), np.int64)):
            nb.max_pool2d(x, poison((1, 4, 3, 3), dtype), idx, 2, 2, 2, 2, 0, 0, 1, 1)
        ro = x.copy()
        ro.setflags(write=False)  # a read-only input is copied by the backend's prepare()
        close(fastconv.max_pool2d(ro, 2, backend="numba"), ref_pool(x), 1e-5)
    kernels = [
        f
        for m in (rows, direct, gemm, transpose, pool)
        for f in vars(m).values()
        if isinstance(f, CPUDispatcher) and f.targetoptions.get("parallel")
    ]
    assert kernels
    for k in kernels:
        assert len(k.signatures) <= 2, (k.py_func.__name__, k.signatures)
