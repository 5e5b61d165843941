"""The C engine's depthwise / separable / pooling kernels (csrc/depthwise_conv2d.c, pool2d.c).

Every kernel is run directly on outputs poisoned with NaN (indices with a sentinel) and
compared with the reference engine on seeded random configurations, once per compiled
instruction-set copy (AVX-512, AVX2, portable) this CPU can run; the public functions are
run with backend="c" as well, and against PyTorch where it is installed.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

import fastconv
import fastconv.ops.grad as G
from fastconv import _shapes
from fastconv.backends import reference as R

if not fastconv.available_backends()["c"].startswith("available"):
    pytest.skip("the C engine is not built", allow_module_level=True)

from _cases import isa_fixture  # noqa: E402

from fastconv.backends.c import pool as C  # noqa: E402

DTYPES = (np.float32, np.float64)
TOL = {np.float32: 1e-5, np.float64: 1e-10}
SENTINEL = -123456789


isa = isa_fixture()  # one run per compiled copy of the kernels


def poisoned(shape, dtype):
    return np.full(shape, np.nan, dtype)


def assert_close(got, ref, dtype):
    """Same NaN positions; elsewhere |got - ref| <= TOL * max|ref| (exact for +-inf)."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    fin = np.isfinite(ref)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(ref)], ref[~fin & ~np.isnan(ref)])
    if fin.any():
        scale = max(np.abs(ref[fin]).max(), 1e-30)
        err = np.abs(got[fin] - ref[fin]).max()
        assert err <= TOL[dtype] * scale, f"max error {err} > {TOL[dtype]} * {scale}"


def rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------- configurations


def conv_configs(seed, count):
    """Random depthwise geometries (asymmetric bottom/right padding included)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        N, Cin, m = int(rng.integers(1, 3)), int(rng.integers(1, 5)), int(rng.integers(1, 4))
        H, W = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        KH, KW = (int(v) for v in rng.integers(1, 6, 2))
        sh, sw = (int(v) for v in rng.integers(1, 4, 2))
        dh, dw = (int(v) for v in rng.integers(1, 3, 2))
        ph, pw, pb, pr = (int(v) for v in rng.integers(0, 3, 4))
        if rng.random() < 0.4:  # the MobileNet case: 3x3, dilation 1, stride 1 or 2
            KH = KW = 3
            dh = dw = 1
            sh = sw = int(rng.integers(1, 3))
            ph = pw = pb = pr = 1
        OH = (H + ph + pb - dh * (KH - 1) - 1) // sh + 1
        OW = (W + pw + pr - dw * (KW - 1) - 1) // sw + 1
        if OH >= 1 and OW >= 1:
            out.append((N, Cin, m, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw))
    return out


def pool_configs(seed, count, dilation=True):
    """Random valid pooling geometries (torch's rules, via fastconv._shapes)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        N, Cc = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        H, W = int(rng.integers(1, 30)), int(rng.integers(1, 30))
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        d = tuple(int(v) for v in rng.integers(1, 3, 2)) if dilation else (1, 1)
        p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
        ceil = bool(rng.integers(0, 2))
        try:
            g = _shapes.pool_geometry("t", (N, Cc, H, W), k, s, p, d, ceil, 2)
        except ValueError:
            continue
        out.append(g)
    return out


def pool_input(rng, shape, dtype, special):
    """Random input; with ``special`` also ties (small integers), NaN and +-inf."""
    if not special:
        return rand(rng, shape, dtype)
    x = rng.integers(-3, 4, shape).astype(dtype)
    u = rng.random(shape)
    x[u < 0.08] = np.nan
    x[(u >= 0.08) & (u < 0.12)] = -np.inf
    x[(u >= 0.12) & (u < 0.14)] = np.inf
    return x


# --------------------------------------------------------------------------- depthwise


@pytest.mark.parametrize("dtype", DTYPES)
def test_depthwise_random(isa, dtype):
    rng = np.random.default_rng(1)
    for N, Cin, m, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw in conv_configs(10 + isa, 40):
        x = rand(rng, (N, Cin, H, W), dtype)
        w = rand(rng, (Cin * m, 1, KH, KW), dtype)
        b = rand(rng, (Cin * m,), dtype) if rng.random() < 0.7 else None
        ref = np.empty((N, Cin * m, OH, OW), dtype)
        R.depthwise_conv2d(x, w, b, ref, sh, sw, ph, pw, dh, dw)
        y = poisoned(ref.shape, dtype)
        C.depthwise_conv2d(x, w, b, y, sh, sw, ph, pw, dh, dw)
        assert_close(y, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_large_plane_direct_path(dtype, stride):
    # a plane whose padded copy would exceed the 1 MiB buffer: rows are read in place
    rng = np.random.default_rng(2)
    H, W = 530, 540
    x = rand(rng, (1, 2, H, W), dtype)
    w = rand(rng, (2, 1, 3, 3), dtype)
    b = rand(rng, (2,), dtype)
    OH, OW = (H - 1) // stride + 1, (W - 1) // stride + 1
    ref = np.empty((1, 2, OH, OW), dtype)
    R.depthwise_conv2d(x, w, b, ref, stride, stride, 1, 1, 1, 1)
    y = poisoned(ref.shape, dtype)
    C.depthwise_conv2d(x, w, b, y, stride, stride, 1, 1, 1, 1)
    assert_close(y, ref, dtype)


def test_depthwise_3x3_row_kernel(isa):
    """3x3, stride 1, padding 1: the float32 3x3 kernels run these a row pair at a time
    (fc_dw3x3_rows_f32_avx512 on rows of 16 and more with lane shifts, fc_dw3x3_rows_f32_avx2
    on rows of any width with loads at -1 and +1 and an overlapping last vector): random
    planes (widths below one vector, a multiple of 8 or 16 or not, 1 to 4 vectors and more,
    odd and even heights, one row), NaN and inf inputs that reach only their own windows, a
    non-finite weight on a padded tap (NaN on the border it reads, as the other paths),
    channel multipliers, bias and the fused epilogue (scale, shift, residual, ReLU6)."""
    rng = np.random.default_rng(31 + isa)
    sizes = [(1, 16), (2, 16), (3, 17), (16, 32), (5, 33), (9, 48), (4, 63), (7, 64), (2, 65),
             (11, 100), (6, 129), (1, 1), (3, 2), (2, 7), (5, 8), (4, 9), (7, 15), (6, 23),
             (3, 24), (8, 25), (2, 26)]
    sizes += [(int(rng.integers(1, 40)), int(rng.integers(1, 150))) for _ in range(10)]
    for k, (H, W) in enumerate(sizes):
        N, Cin, m = int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 3))
        x = pool_input(rng, (N, Cin, H, W), np.float32, special=k % 3 == 0)
        w = rand(rng, (Cin * m, 1, 3, 3), np.float32)
        b = rand(rng, (Cin * m,), np.float32) if k % 2 else None
        ref = np.empty((N, Cin * m, H, W), np.float32)
        R.depthwise_conv2d(x, w, b, ref, 1, 1, 1, 1, 1, 1)
        y = poisoned(ref.shape, np.float32)
        C.depthwise_conv2d(x, w, b, y, 1, 1, 1, 1, 1, 1)
        assert_close(y, ref, np.float32)
    # an inf weight on tap (0, 0): the outputs of the top row and left column read the
    # padding there (0 x inf = NaN), the others a finite nonzero input (+-inf)
    x = rand(rng, (1, 1, 5, 40), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    w[0, 0, 0, 0] = np.inf
    y = poisoned((1, 1, 5, 40), np.float32)
    C.depthwise_conv2d(x, w, None, y, 1, 1, 1, 1, 1, 1)
    assert np.isnan(y[0, 0, 0, :]).all() and np.isnan(y[0, 0, :, 0]).all()
    assert np.isinf(y[0, 0, 1:, 1:]).all()
    # the fused epilogue on the row kernel's planes
    x = rand(rng, (2, 3, 20, 37), np.float32)
    w = rand(rng, (6, 1, 3, 3), np.float32)
    b = rand(rng, (6,), np.float32)
    res = rand(rng, (2, 6, 20, 37), np.float32)
    got = fastconv.fused.depthwise_conv2d(x, w, b, padding=1, scale=np.linspace(0.5, 2, 6),
                                          shift=np.arange(6.0), residual=res,
                                          activation="relu6", backend="c")
    ref = np.empty((2, 6, 20, 37), np.float32)
    R.depthwise_conv2d(x, w, b, ref, 1, 1, 1, 1, 1, 1)
    want = np.clip(np.linspace(0.5, 2, 6)[:, None, None] * ref + np.arange(6.0)[:, None, None]
                   + res, 0, 6)
    assert_close(got, want, np.float32)


def test_depthwise_3x3_kernels_same_bits():
    """The AVX2 3x3 kernel sums each output as the AVX-512 ones do (the bias, then the taps
    kh, kw in order, one FMA each): the same bits on either level, on rows the AVX-512 3x3
    kernel takes (16 and more) and on narrower ones (its flat path, the same sums)."""
    before = C.ISA_NAMES.index(C.isa_level())
    if before < 2:
        pytest.skip("needs AVX-512 (both levels)")
    rng = np.random.default_rng(5)
    try:
        for H, W in [(16, 16), (17, 33), (9, 40), (30, 17), (7, 7), (14, 14), (5, 9), (3, 1),
                     (12, 113), (40, 12), (25, 15)]:  # the last two: flat, by kernel rows
            x = pool_input(rng, (2, 3, H, W), np.float32, special=True)
            w = rand(rng, (6, 1, 3, 3), np.float32)
            b = rand(rng, (6,), np.float32)
            got = []
            for level in (1, 2):
                C.isa_level(level)
                y = poisoned((2, 6, H, W), np.float32)
                C.depthwise_conv2d(x, w, b, y, 1, 1, 1, 1, 1, 1)
                got.append(y)
            np.testing.assert_array_equal(got[0], got[1])
    finally:
        C.isa_level(before)


@pytest.mark.parametrize("threads", (1, 2))
def test_depthwise_channels_in_lanes_same_bits(threads):
    """'Same'-width planes up to 56x56 with windows past 3x3 and channel multiplier 1 go 16
    channels at a time with the channels in the lanes (AVX-512, fc_dwl_planes16; rows in
    column chunks of at most 16): each output the same bits as the flat path gives it alone
    (a one-channel call: its plane by the flat path), on random windows (even and odd,
    dilation 2), vertical padding, rows of 1 to 40, channel counts on both sides of a
    multiple of 16 (20 and 33 keep the flat path: a last group under 16, under 64
    channels), with and without bias and with a fused epilogue; and within the reference's
    tolerance."""
    if C.isa_level() != "avx512":
        pytest.skip("the lanes path is AVX-512's")
    rng = np.random.default_rng(31)
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        done = 0
        while done < 25:
            KH, KW = (int(v) for v in rng.integers(1, 8, 2))
            dh, dw = int(rng.choice([1, 1, 2])), int(rng.choice([1, 1, 2]))
            if KH * KW <= 9 or (KW - 1) * dw % 2:
                continue
            pw, ph = (KW - 1) * dw // 2, int(rng.integers(0, KH * dh))
            H, W = int(rng.integers(1, 41)), int(rng.integers(1, 41))
            OH = H + 2 * ph - (KH - 1) * dh
            if OH < 1:
                continue
            Cn, N = int(rng.choice([16, 20, 32, 33, 48, 80])), int(rng.integers(1, 3))
            x = pool_input(rng, (N, Cn, H, W), np.float32, special=False)
            w = rand(rng, (Cn, 1, KH, KW), np.float32)
            b = rand(rng, (Cn,), np.float32) if done % 2 else None
            kw = dict(padding=(ph, pw), dilation=(dh, dw), backend="c")
            got = fastconv.depthwise_conv2d(x, w, b, **kw)
            for c in range(Cn):  # one channel: the flat path
                one = fastconv.depthwise_conv2d(x[:, c:c + 1], w[c:c + 1],
                                                None if b is None else b[c:c + 1], **kw)
                np.testing.assert_array_equal(got[:, c:c + 1], one, err_msg=str((KH, KW, c)))
            want = fastconv.depthwise_conv2d(x.astype(np.float64), w.astype(np.float64),
                                             None if b is None else b.astype(np.float64),
                                             padding=(ph, pw), dilation=(dh, dw),
                                             backend="reference")
            assert_close(got, want, np.float32)
            res = rand(rng, got.shape, np.float32)
            fused = fastconv.fused.depthwise_conv2d(x, w, b, residual=res, activation="relu",
                                                    **kw)
            np.testing.assert_array_equal(fused, np.maximum(got + res, 0))
            done += 1
    finally:
        fastconv.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_depthwise_inf_input_stays_local(dtype):
    # padding reads as zero even next to inf (no 0 * inf = NaN leaks into other outputs)
    x = np.zeros((1, 1, 6, 6), dtype)
    x[0, 0, 0, 0] = np.inf
    w = np.ones((2, 1, 3, 3), dtype)
    ref = np.empty((1, 2, 6, 6), dtype)
    R.depthwise_conv2d(x, w, None, ref, 1, 1, 1, 1, 1, 1)
    y = poisoned(ref.shape, dtype)
    C.depthwise_conv2d(x, w, None, y, 1, 1, 1, 1, 1, 1)
    assert_close(y, ref, dtype)
    assert np.isinf(y[0, :, :2, :2]).all() and np.isfinite(y[0, :, 2:, :]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_depthwise_same_width_planes(isa, dtype):
    # stride 1 and OW == W: the AVX-512 float32 copy computes these as one flat row of
    # 16-output blocks with masked loads, in chunks of 16 blocks (1 to 16 blocks in the last
    # chunk, the last block partial or full; one chunk or several); the other shapes (more
    # than 64 taps) and copies take the row paths
    rng = np.random.default_rng(21)
    cases = [  # N, C, m, H, W, KH, KW, ph, pw, dh, dw, OH
        (1, 9, 1, 7, 7, 3, 3, 1, 1, 1, 1, 7),
        (2, 5, 2, 14, 14, 3, 3, 1, 1, 1, 1, 14),
        (1, 3, 1, 16, 16, 3, 3, 1, 1, 1, 1, 16),
        (1, 3, 1, 1, 1, 3, 3, 1, 1, 1, 1, 1),
        (1, 2, 3, 4, 4, 1, 1, 0, 0, 1, 1, 4),
        (1, 4, 1, 9, 9, 5, 5, 2, 2, 1, 1, 9),
        (1, 2, 1, 8, 8, 3, 3, 2, 2, 2, 2, 8),
        (1, 2, 1, 11, 5, 3, 3, 0, 1, 1, 1, 9),  # no top padding, 2 rows clipped at the bottom
        (2, 3, 1, 6, 13, 2, 7, 1, 3, 1, 1, 6),  # asymmetric, even kernel height
        (1, 2, 1, 15, 17, 3, 5, 1, 2, 1, 1, 15),  # 255 outputs
        (1, 2, 1, 17, 16, 3, 3, 1, 1, 1, 1, 17),  # 272 outputs: a chunk and one block
        (1, 2, 1, 16, 32, 3, 3, 1, 1, 1, 1, 16),  # 512 outputs: exactly two chunks
        (2, 3, 1, 56, 56, 3, 3, 1, 1, 1, 1, 56),  # 196 blocks: 12 chunks and 4 blocks
        (1, 2, 2, 33, 40, 5, 5, 4, 4, 2, 2, 33),  # dilated, channel multiplier
        (1, 2, 1, 3, 300, 3, 7, 1, 3, 1, 1, 3),  # long rows
        (1, 2, 1, 20, 20, 8, 8, 3, 4, 1, 1, 19),  # 64 taps, even kernel
        (1, 2, 1, 20, 20, 9, 9, 4, 4, 1, 1, 20),  # 81 taps: row paths
        (1, 2, 1, 40, 12, 3, 3, 0, 1, 1, 1, 38),  # no vertical padding
        # 16 blocks and more with KW = 3, 5, 7 at dw = 1: by kernel rows (fc_dws_chunk_rows)
        (1, 2, 1, 28, 28, 7, 7, 3, 3, 1, 1, 28),
        (1, 3, 2, 20, 19, 5, 5, 2, 2, 1, 1, 20),
        (2, 2, 1, 30, 9, 5, 7, 1, 3, 1, 1, 28),  # plane ends inside a pair of loads
        (1, 2, 1, 16, 16, 7, 5, 6, 2, 1, 1, 22),  # rows of padding past the input
    ]
    for N, Cin, m, H, W, KH, KW, ph, pw, dh, dw, OH in cases:
        x = pool_input(rng, (N, Cin, H, W), dtype, special=False)
        x.flat[rng.integers(0, x.size, 3)] = np.nan
        w = rand(rng, (Cin * m, 1, KH, KW), dtype)
        b = rand(rng, (Cin * m,), dtype) if Cin % 2 else None
        ref = np.empty((N, Cin * m, OH, W), dtype)
        R.depthwise_conv2d(x, w, b, ref, 1, 1, ph, pw, dh, dw)
        y = poisoned(ref.shape, dtype)
        C.depthwise_conv2d(x, w, b, y, 1, 1, ph, pw, dh, dw)
        assert_close(y, ref, dtype)


def test_pointers_need_c_contiguous_arrays():
    x = np.ones((1, 2, 5, 5), np.float32)
    y = np.empty((1, 2, 1, 1), np.float32)
    with pytest.raises(ValueError):
        C.adaptive_avg_pool2d(x.transpose(0, 1, 3, 2), y)
    x.flags.writeable = False  # inputs may be read-only
    C.adaptive_avg_pool2d(x, y)
    assert (y == 1).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_separable_random(isa, dtype):
    rng = np.random.default_rng(3)
    for N, Cin, m, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw in conv_configs(20 + isa, 25):
        OC = int(rng.integers(1, 15))
        x = rand(rng, (N, Cin, H, W), dtype)
        wd = rand(rng, (Cin * m, 1, KH, KW), dtype)
        bd = rand(rng, (Cin * m,), dtype) if rng.random() < 0.5 else None
        wp = rand(rng, (OC, Cin * m, 1, 1), dtype)
        bp = rand(rng, (OC,), dtype) if rng.random() < 0.5 else None
        ref = np.empty((N, OC, OH, OW), dtype)
        R.separable_conv2d(x, wd, bd, wp, bp, ref, sh, sw, ph, pw, dh, dw)
        y = poisoned(ref.shape, dtype)
        C.separable_conv2d(x, wd, bd, wp, bp, y, sh, sw, ph, pw, dh, dw)
        assert_close(y, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_separable_same_3x3_tiles(isa, dtype):
    # 3x3 stride 1 pad 1 (the 3x3 depthwise kernels on a tile's rows: AVX-512 on rows of 16
    # and more, AVX2 on any width; odd row counts included) and pointwise tiles whose pixels
    # end inside a vector
    rng = np.random.default_rng(7 + isa)
    for _ in range(12):
        N, Cin, m = int(rng.integers(1, 3)), int(rng.integers(1, 20)), int(rng.integers(1, 3))
        H, W, OC = int(rng.integers(1, 40)), int(rng.integers(1, 70)), int(rng.integers(1, 30))
        x = rand(rng, (N, Cin, H, W), dtype)
        x.flat[rng.integers(0, x.size, 2)] = np.nan
        wd = rand(rng, (Cin * m, 1, 3, 3), dtype)
        bd = rand(rng, (Cin * m,), dtype) if rng.random() < 0.5 else None
        wp = rand(rng, (OC, Cin * m, 1, 1), dtype)
        bp = rand(rng, (OC,), dtype) if rng.random() < 0.5 else None
        ref = np.empty((N, OC, H, W), dtype)
        R.separable_conv2d(x, wd, bd, wp, bp, ref, 1, 1, 1, 1, 1, 1)
        y = poisoned(ref.shape, dtype)
        C.separable_conv2d(x, wd, bd, wp, bp, y, 1, 1, 1, 1, 1, 1)
        assert_close(y, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_separable_mobilenet_block(dtype):
    # wide enough for the register-blocked pointwise tiles (several channel blocks + a rest)
    rng = np.random.default_rng(4)
    x = rand(rng, (2, 40, 29, 31), dtype)
    wd = rand(rng, (40, 1, 3, 3), dtype)
    bd = rand(rng, (40,), dtype)
    wp = rand(rng, (27, 40, 1, 1), dtype)
    bp = rand(rng, (27,), dtype)
    for s in (1, 2):
        OH, OW = (29 - 1) // s + 1, (31 - 1) // s + 1
        ref = np.empty((2, 27, OH, OW), dtype)
        R.separable_conv2d(x, wd, bd, wp, bp, ref, s, s, 1, 1, 1, 1)
        y = poisoned(ref.shape, dtype)
        C.separable_conv2d(x, wd, bd, wp, bp, y, s, s, 1, 1, 1, 1)
        assert_close(y, ref, dtype)


# --------------------------------------------------------------------------- max pooling


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("special", [False, True], ids=["plain", "nan-inf-ties"])
def test_max_pool_random(isa, dtype, special):
    rng = np.random.default_rng(5)
    for g in pool_configs(30 + isa, 40):
        x = pool_input(rng, (g.N, g.C, g.H, g.W), dtype, special)
        shape = (g.N, g.C, g.OH, g.OW)
        ref, ref_idx = np.empty(shape, dtype), np.empty(shape, np.int64)
        R.max_pool2d(x, ref, ref_idx, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw)
        y, idx = poisoned(shape, dtype), np.full(shape, SENTINEL, np.int64)
        C.max_pool2d(x, y, idx, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw)
        assert_close(y, ref, dtype)
        np.testing.assert_array_equal(idx, ref_idx)
        y2 = poisoned(shape, dtype)
        C.max_pool2d(x, y2, None, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw)
        assert_close(y2, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("special", [False, True], ids=["plain", "nan-inf-ties"])
def test_max_pool_3x3_long_rows(isa, dtype, special):
    # 3x3 windows on rows of 16 or more interior outputs: the AVX-512 float32 copy runs
    # them 16 at a time (the last block moved back to the row's end), stride 1 and 2,
    # dilated rows; ties (small integers), NaN and inf check the scan order
    rng = np.random.default_rng(23)
    for H, W, s, p, dh in [
        (9, 18, 1, 0, 1),
        (7, 33, 2, 0, 1),
        (12, 34, 2, 1, 1),
        (10, 40, 1, 1, 2),
        (11, 112, 2, 1, 1),
        (5, 47, 2, 1, 2),
        (6, 16, 1, 0, 1),
    ]:
        g = _shapes.pool_geometry("t", (2, 3, H, W), (3, 3), (s, s), (p, p), (dh, 1), False, 2)
        x = pool_input(rng, (g.N, g.C, g.H, g.W), dtype, special)
        shape = (g.N, g.C, g.OH, g.OW)
        ref, ref_idx = np.empty(shape, dtype), np.empty(shape, np.int64)
        R.max_pool2d(x, ref, ref_idx, 3, 3, s, s, p, p, dh, 1)
        y, idx = poisoned(shape, dtype), np.full(shape, SENTINEL, np.int64)
        C.max_pool2d(x, y, idx, 3, 3, s, s, p, p, dh, 1)
        assert_close(y, ref, dtype)
        np.testing.assert_array_equal(idx, ref_idx)
        y2 = poisoned(shape, dtype)
        C.max_pool2d(x, y2, None, 3, 3, s, s, p, p, dh, 1)
        assert_close(y2, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_nan_rules(dtype):
    # the last NaN of the window (scan order) wins, with its index; the first of equal maxima
    x = np.array([[[[1.0, np.nan, 3.0, 3.0], [np.nan, 2.0, 3.0, -np.inf]]]], dtype)
    y, idx = poisoned((1, 1, 1, 2), dtype), np.full((1, 1, 1, 2), SENTINEL, np.int64)
    C.max_pool2d(x, y, idx, 2, 2, 2, 2, 0, 0, 1, 1)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 4
    assert y[0, 0, 0, 1] == 3 and idx[0, 0, 0, 1] == 2
    # an all -inf window keeps -inf and the index of its first in-bounds position
    x = np.full((1, 1, 3, 3), -np.inf, dtype)
    y, idx = poisoned((1, 1, 2, 2), dtype), np.full((1, 1, 2, 2), SENTINEL, np.int64)
    C.max_pool2d(x, y, idx, 2, 2, 2, 2, 1, 1, 1, 1)
    assert np.all(y == -np.inf)
    np.testing.assert_array_equal(idx[0, 0], [[0, 1], [3, 4]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_window_without_inbounds_tap(dtype):
    # H = 1, kernel 2, dilation 3, padding 1, ceil mode: the only window's taps are -1 and 2
    g = _shapes.pool_geometry("t", (1, 1, 1, 1), 2, 2, 1, 3, True, 2)
    x = np.ones((1, 1, 1, 1), dtype)
    shape = (1, 1, g.OH, g.OW)
    ref, ref_idx = np.empty(shape, dtype), np.empty(shape, np.int64)
    R.max_pool2d(x, ref, ref_idx, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw)
    y, idx = poisoned(shape, dtype), np.full(shape, SENTINEL, np.int64)
    C.max_pool2d(x, y, idx, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw)
    assert_close(y, ref, dtype)
    np.testing.assert_array_equal(idx, ref_idx)
    # the backward kernel skips an index outside the plane instead of writing there
    gx = poisoned((1, 1, 1, 1), dtype)
    C.max_pool2d_backward(np.ones(shape, dtype), idx, gx)
    assert gx[0, 0, 0, 0] == (1 if (idx == 0).any() else 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("special", [False, True], ids=["plain", "nan-inf-ties"])
def test_adaptive_max_random(dtype, special):
    rng = np.random.default_rng(6)
    for _ in range(30):
        N, Cc = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        H, W = int(rng.integers(1, 25)), int(rng.integers(1, 25))
        OH, OW = int(rng.integers(1, H + 3)), int(rng.integers(1, W + 3))
        x = pool_input(rng, (N, Cc, H, W), dtype, special)
        shape = (N, Cc, OH, OW)
        ref, ref_idx = np.empty(shape, dtype), np.empty(shape, np.int64)
        R.adaptive_max_pool2d(x, ref, ref_idx)
        y, idx = poisoned(shape, dtype), np.full(shape, SENTINEL, np.int64)
        C.adaptive_max_pool2d(x, y, idx)
        assert_close(y, ref, dtype)
        np.testing.assert_array_equal(idx, ref_idx)
        y2 = poisoned(shape, dtype)
        C.adaptive_max_pool2d(x, y2, None)
        assert_close(y2, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("special", [False, True], ids=["plain", "nan-inf-ties"])
def test_adaptive_max_wide_bins(isa, dtype, special):
    # bins of 16 or more columns (float32 with AVX-512: 16 columns at a time, the lanes
    # merged by the scan's rules): the reference's values bit for bit (-0.0 / +0.0 apart)
    # and indices, NaN / inf / ties / all -inf bins; columns up to 89, a ragged last vector
    rng = np.random.default_rng(16 + isa)
    for i in range(24):
        N, Cc = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        H, W = int(rng.integers(1, 40)), int(rng.integers(16, 90))
        OH, OW = int(rng.integers(1, 4)), int(rng.integers(1, W // 16 + 1))
        x = pool_input(rng, (N, Cc, H, W), dtype, special)
        if i % 6 == 5:  # bins of -inf and zeros of both signs only (ties of -0.0 and +0.0)
            r = rng.random(x.shape)
            x = np.where(r < 0.3, -0.0, np.where(r < 0.6, 0.0, -np.inf)).astype(dtype)
        shape = (N, Cc, OH, OW)
        ref, ref_idx = np.empty(shape, dtype), np.empty(shape, np.int64)
        R.adaptive_max_pool2d(x, ref, ref_idx)
        y, idx = poisoned(shape, dtype), np.full(shape, SENTINEL, np.int64)
        C.adaptive_max_pool2d(x, y, idx)
        np.testing.assert_array_equal(idx, ref_idx)
        nan = np.isnan(ref)
        np.testing.assert_array_equal(np.isnan(y), nan)
        assert y[~nan].tobytes() == ref[~nan].tobytes()


# --------------------------------------------------------------------------- average pooling


@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool_random(isa, dtype):
    rng = np.random.default_rng(7)
    for g in pool_configs(40 + isa, 40, dilation=False):
        x = rand(rng, (g.N, g.C, g.H, g.W), dtype)
        shape = (g.N, g.C, g.OH, g.OW)
        cip = bool(rng.integers(0, 2))
        div = int(rng.choice([0, 0, 3, -2, 7]))
        ref = np.empty(shape, dtype)
        R.avg_pool2d(x, ref, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, cip, div)
        y = poisoned(shape, dtype)
        C.avg_pool2d(x, y, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, cip, div)
        assert_close(y, ref, dtype)


def _same_bits_but_nan(a, b):
    """NaN at the same places (any sign or payload: which NaN operand an add propagates
    depends on the operand order the compiler picks), every other value bit for bit (-0.0
    and +0.0 apart)."""
    nan = np.isnan(a)
    np.testing.assert_array_equal(nan, np.isnan(b))
    assert a[~nan].tobytes() == b[~nan].tobytes()


def _blocked_configs(seed, count, dilation):
    """pool_configs with 16 or more planes, which the C kernels pool 16 planes at a time
    when OW < 64 (pool2d.c, pool_blocks_ok): 37 (two whole blocks of 16 and a short one),
    48 (three whole), 16 (one) and 17 (a last block of one plane)."""
    out = []
    for i, g in enumerate(pool_configs(seed, count, dilation)):
        n, c = ((1, 37), (3, 16), (1, 16), (1, 17))[i % 4]
        out.append(dataclasses.replace(g, N=n, C=c))
    return out


def _check_blocks(x, g, op, extra, dtype, special):
    """Pool x (all its planes at once) with op ("max" or "avg"; extra: dilation, or
    count_include_pad and divisor); every plane pooled alone must give the same results, bit
    for bit (max: exactly; average: NaN of any sign), and the reference its values. Returns
    the threads the pool used for the call of all planes (fc_last_team)."""
    from fastconv.backends.c import lib

    shape = (g.N, g.C, g.OH, g.OW)
    args = (g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, *extra)
    y = poisoned(shape, dtype)
    if op == "max":
        idx = np.full(shape, SENTINEL, np.int64)
        C.max_pool2d(x, y, idx, *args)
        team = lib.fc_last_team()
        y2 = poisoned(shape, dtype)
        C.max_pool2d(x, y2, None, *args)
        ref, ref_idx = np.empty(shape, dtype), np.empty(shape, np.int64)
        R.max_pool2d(x, ref, ref_idx, *args)
        np.testing.assert_array_equal(idx, ref_idx)
        assert y.tobytes() == y2.tobytes()
    else:
        C.avg_pool2d(x, y, *args)
        team = lib.fc_last_team()
        ref = np.empty(shape, dtype)
        R.avg_pool2d(x, ref, *args)
    if op == "max" or not special:
        assert_close(y, ref, dtype)
    step = max(1, g.N * g.C // 40)  # every plane, or 40 spread over a large call
    for p in range(0, g.N * g.C, step):
        n, c = divmod(p, g.C)
        one = np.ascontiguousarray(x[n:n + 1, c:c + 1])
        y1 = poisoned((1, 1, g.OH, g.OW), dtype)
        if op == "max":
            i1 = np.empty((1, 1, g.OH, g.OW), np.int64)
            C.max_pool2d(one, y1, i1, *args)
            assert y1[0, 0].tobytes() == y[n, c].tobytes()
            np.testing.assert_array_equal(i1[0, 0], idx[n, c])
        else:
            C.avg_pool2d(one, y1, *args)
            _same_bits_but_nan(y1[0, 0], y[n, c])
    return team


def _check_adaptive_blocks(x, OH, OW, op="max"):
    """adaptive_max_pool2d (op "max") or adaptive_avg_pool2d (op "avg") of all planes of x at
    once against each plane alone (values bit for bit, indices exactly; an average's NaN of
    any sign) and the reference; returns the threads the pool used (fc_last_team)."""
    from fastconv.backends.c import lib

    N, Cc = x.shape[:2]
    shape = (N, Cc, OH, OW)
    y, idx = poisoned(shape, x.dtype), np.full(shape, SENTINEL, np.int64)
    ref, ref_idx = np.empty(shape, x.dtype), np.empty(shape, np.int64)
    if op == "max":
        C.adaptive_max_pool2d(x, y, idx)
        team = lib.fc_last_team()
        R.adaptive_max_pool2d(x, ref, ref_idx)
        np.testing.assert_array_equal(idx, ref_idx)
        y2 = poisoned(shape, x.dtype)
        C.adaptive_max_pool2d(x, y2, None)
        assert y.tobytes() == y2.tobytes()
    else:
        C.adaptive_avg_pool2d(x, y)
        team = lib.fc_last_team()
        R.adaptive_avg_pool2d(x, ref)
    assert_close(y, ref, x.dtype.type)
    for p in range(0, N * Cc, max(1, N * Cc // 40)):  # every plane, or 40 of a large call
        n, c = divmod(p, Cc)
        y1, i1 = poisoned((1, 1, OH, OW), x.dtype), np.empty((1, 1, OH, OW), np.int64)
        one = np.ascontiguousarray(x[n:n + 1, c:c + 1])
        if op == "max":
            C.adaptive_max_pool2d(one, y1, i1)
            assert y1[0, 0].tobytes() == y[n, c].tobytes()
            np.testing.assert_array_equal(i1[0, 0], idx[n, c])
        else:
            C.adaptive_avg_pool2d(one, y1)
            _same_bits_but_nan(y1[0, 0], y[n, c])
    return team


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("special", [False, True], ids=["plain", "nan-inf-ties"])
def test_pool_plane_blocks_same_bits_as_one_plane(isa, dtype, special):
    """Max and average pooling of 16 or more planes with short output rows go 16 planes at
    a time (interleaved in a scratch, pool2d.c's plane blocks): the same values, indices and
    NaN / inf / tie rules as each plane pooled alone (the per-plane loops), bit for bit (NaN
    of an average of any sign: _same_bits_but_nan), and the reference's values; random
    geometries (padding, stride, dilation, ceil mode, count_include_pad, divisor), adaptive
    max and average bins, short last blocks, output rows of 63 (blocks) and 64 (per plane)
    and every compiled copy."""
    rng = np.random.default_rng(91 + isa)
    for g in _blocked_configs(60 + isa, 24, dilation=True):
        x = pool_input(rng, (g.N, g.C, g.H, g.W), dtype, special)
        _check_blocks(x, g, "max", (g.dh, g.dw), dtype, special)
    for g in _blocked_configs(70 + isa, 24, dilation=False):
        x = pool_input(rng, (g.N, g.C, g.H, g.W), dtype, special)
        extra = (bool(rng.integers(0, 2)), int(rng.choice([0, 0, 3, 7])))
        _check_blocks(x, g, "avg", extra, dtype, special)
    for i in range(32):  # adaptive max and average, bins overlapping or not (and more bins
        n, c = ((1, 37), (3, 16), (1, 16), (1, 17))[i % 4]  # than inputs)
        H, W = int(rng.integers(1, 25)), int(rng.integers(1, 25))
        OH, OW = int(rng.integers(1, H + 3)), int(rng.integers(1, W + 3))
        if (OH, OW) == (1, 1):  # global pooling has kernels of its own
            OW = 2
        x = pool_input(rng, (n, c, H, W), dtype, special)
        _check_adaptive_blocks(x, OH, OW, "max" if i % 2 else "avg")
    # output rows of 64: past pool_blocks_geometry, every plane alone in the vector order
    # (many planes against one, and the reference)
    _check_adaptive_blocks(pool_input(rng, (1, 20, 70, 64), dtype, special), 5, 64, "avg")
    for W in (63, 64):  # OW = W: at the bound of pool_blocks_ok (and a scratch near 256 KB)
        g = _shapes.pool_geometry("t", (1, 20, 3, W), (3, 3), (1, 1), (1, 1), 1, False, 2)
        x = pool_input(rng, (g.N, g.C, g.H, g.W), dtype, special)
        _check_blocks(x, g, "max", (1, 1), dtype, special)
        _check_blocks(x, g, "avg", (True, 0), dtype, special)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_plane_blocks_on_two_threads(dtype, restore_threads):
    """The plane blocks shared by the pool's threads (a call large enough for two; the
    pool's team checked with fc_last_team, tried again if a busy machine made it run the
    call alone): the same results as each plane alone."""
    from fastconv.backends import _registry
    from fastconv.backends.c import lib

    if _registry.max_threads() < 2:
        pytest.skip("one CPU: the pool has no second thread")
    fastconv.set_num_threads(2)
    rng = np.random.default_rng(17)
    g = _shapes.pool_geometry("t", (8, 512, 20, 20), (3, 3), (2, 2), (1, 1), 1, True, 2)
    x = pool_input(rng, (g.N, g.C, g.H, g.W), dtype, True)
    for op, extra in (("max", (1, 1)), ("avg", (False, 0)), ("adaptive max", ()),
                      ("adaptive avg", ())):
        for _ in range(5):
            lib.fc_pool_forget_losses()  # no straggler rule left from earlier calls
            if op.startswith("adaptive"):
                team = _check_adaptive_blocks(x, 7, 6, op.split()[1])
            else:
                team = _check_blocks(x, g, op, extra, dtype, True)
            if team == 2:
                break
        else:
            pytest.skip(f"{op}: the pool ran every try on one thread (a busy machine)")


@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool_divisor_rules_ceil_mode(dtype):
    # 5 wide, kernel 3, stride 2, padding 1, ceil mode: the last window (starting at 3) is
    # clipped at W + pw = 6 (pool 3) and at W = 5 (2 inputs)
    x = np.arange(5, dtype=dtype).reshape(1, 1, 1, 5) + 1
    g = _shapes.pool_geometry("t", x.shape, (1, 3), (1, 2), (0, 1), 1, True, 2)
    assert g.OW == 3
    for cip, div, want in [
        (True, 0, [3 / 3, 9 / 3, 9 / 3]),
        (False, 0, [3 / 2, 9 / 3, 9 / 2]),
        (True, 4, [3 / 4, 9 / 4, 9 / 4]),
    ]:
        y = poisoned((1, 1, 1, 3), dtype)
        C.avg_pool2d(x, y, 1, 3, 1, 2, 0, 1, cip, div)
        np.testing.assert_allclose(y[0, 0, 0], want, rtol=TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_avg_random(isa, dtype):
    rng = np.random.default_rng(8)
    cases = [(2, 5, 7, 7, 1, 1), (1, 3, 13, 9, 4, 5), (1, 2, 6, 6, 6, 6), (2, 2, 5, 11, 7, 3)]
    for _ in range(20):
        H, W = int(rng.integers(1, 25)), int(rng.integers(1, 25))
        cases.append(
            (
                int(rng.integers(1, 3)),
                int(rng.integers(1, 4)),
                H,
                W,
                int(rng.integers(1, H + 3)),
                int(rng.integers(1, W + 3)),
            )
        )
    for N, Cc, H, W, OH, OW in cases:
        x = rand(rng, (N, Cc, H, W), dtype)
        ref = np.empty((N, Cc, OH, OW), dtype)
        R.adaptive_avg_pool2d(x, ref)
        y = poisoned(ref.shape, dtype)
        C.adaptive_avg_pool2d(x, y)
        assert_close(y, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_global_avg_many_planes(isa, dtype, threads):
    # 1x1 output: the AVX-512 float32 copy sums 16 planes at a time and splits the planes
    # between threads in groups of 16; plane counts around multiples of 16, plane sizes
    # below, at and above one vector, and large enough that the call runs threaded
    rng = np.random.default_rng(22)
    shapes = [
        (1, 16, 1, 1),
        (1, 17, 2, 3),
        (3, 31, 4, 4),
        (2, 48, 7, 7),
        (1, 250, 1, 17),
        (4, 333, 7, 7),
        (1, 40, 10, 10),
        (2, 9, 64, 65),
        (2, 20, 6, 6),   # 36 values: two full vectors, a partial one
        (1, 35, 8, 8),   # 64: four full vectors, no partial one
        (1, 33, 5, 11),  # 55: the unrolled 48-63 branch with a 7-value tail
    ]
    # random plane sizes of every branch (under 16, 16-47, 48-63, 64 and more)
    shapes += [(1, int(rng.integers(16, 70)), 1, int(n)) for n in rng.integers(1, 300, 6)]
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        for shape in shapes:
            x = pool_input(rng, shape, dtype, special=False) + 0.5 * rand(rng, shape, dtype)
            x.flat[rng.integers(0, x.size)] = np.nan
            ref = np.empty(shape[:2] + (1, 1), dtype)
            R.adaptive_avg_pool2d(x, ref)
            y = poisoned(ref.shape, dtype)
            C.adaptive_avg_pool2d(x, y)
            assert_close(y, ref, dtype)
    finally:
        fastconv.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_global_max_many_planes(isa, dtype, threads):
    # 1x1 adaptive max (and a window of the whole plane, which is routed there): the
    # AVX-512 float32 copy scans 16 planes at a time, each lane every 16th value, then
    # merges lanes and planes; values and indices must be the scan's in index order (the
    # later NaN, else the greater value and the earlier of equal ones, the first index of a
    # plane of -inf): planes of ties, NaN, +-inf, all -inf, plane sizes below, at and above
    # one vector, plane counts around multiples of 16, inputs not on a 64-byte line
    rng = np.random.default_rng(23)
    shapes = [(1, 16, 1, 1), (1, 17, 2, 3), (3, 31, 4, 4), (2, 48, 7, 7), (1, 250, 1, 17),
              (4, 333, 7, 7), (1, 40, 10, 10), (2, 9, 64, 65), (1, 33, 4, 8)]
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        for k, shape in enumerate(shapes):
            data = pool_input(rng, shape, dtype, special=k % 2 == 0)
            if k == 3:
                data[0, :5] = -np.inf  # whole planes of -inf
                data[1, :3] = np.nan  # and of NaN
            if k == 1:
                data[0, :4] = -np.inf  # planes of -inf shorter than a vector
            if k in (2, 5):  # -0.0 before a +0.0 maximum: the earlier index, its sign
                data[...] = -1
                data[..., 0, 0] = -0.0
                data[..., -1, -1] = 0.0
            buf = np.empty(data.size + 16, dtype)
            off = k % 16  # the planes start anywhere in a line
            x = buf[off:off + data.size].reshape(shape)
            x[...] = data
            ref = np.empty(shape[:2] + (1, 1), dtype)
            ref_idx = np.empty(ref.shape, np.int64)
            R.adaptive_max_pool2d(x, ref, ref_idx)
            for with_idx in (True, False):
                y = poisoned(ref.shape, dtype)
                idx = np.full(ref.shape, -7, np.int64) if with_idx else None
                C.adaptive_max_pool2d(x, y, idx)
                np.testing.assert_array_equal(y, ref)
                assert (np.signbit(y) == np.signbit(ref)).all()
                if with_idx:
                    np.testing.assert_array_equal(idx, ref_idx)
    finally:
        fastconv.set_num_threads(before)


# --------------------------------------------------------------------------- backward


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_backward_random(dtype):
    rng = np.random.default_rng(9)
    for g in pool_configs(50, 30):
        x = pool_input(rng, (g.N, g.C, g.H, g.W), dtype, bool(rng.integers(0, 2)))
        shape = (g.N, g.C, g.OH, g.OW)
        y, idx = np.empty(shape, dtype), np.empty(shape, np.int64)
        R.max_pool2d(x, y, idx, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw)
        if (idx < 0).any() or (idx >= g.H * g.W).any():
            continue  # a window without an in-bounds tap; covered above
        gy = rand(rng, shape, dtype)
        ref = np.empty((g.N, g.C, g.H, g.W), dtype)
        R.max_pool2d_backward(gy, idx, ref)
        gx = poisoned(ref.shape, dtype)
        C.max_pool2d_backward(gy, idx, gx)
        assert_close(gx, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool_backward_random(isa, dtype):
    rng = np.random.default_rng(10)
    for g in pool_configs(60 + isa, 30, dilation=False):
        cip = bool(rng.integers(0, 2))
        div = int(rng.choice([0, 0, 5, -3]))
        gy = rand(rng, (g.N, g.C, g.OH, g.OW), dtype)
        ref = np.empty((g.N, g.C, g.H, g.W), dtype)
        R.avg_pool2d_backward(gy, ref, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, cip, div)
        gx = poisoned(ref.shape, dtype)
        C.avg_pool2d_backward(gy, gx, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, cip, div)
        assert_close(gx, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_avg_backward_random(dtype):
    rng = np.random.default_rng(11)
    for _ in range(20):
        N, Cc = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        H, W = int(rng.integers(1, 20)), int(rng.integers(1, 20))
        OH, OW = int(rng.integers(1, H + 3)), int(rng.integers(1, W + 3))
        gy = rand(rng, (N, Cc, OH, OW), dtype)
        ref = np.empty((N, Cc, H, W), dtype)
        R.adaptive_avg_pool2d_backward(gy, ref)
        gx = poisoned(ref.shape, dtype)
        C.adaptive_avg_pool2d_backward(gy, gx)
        assert_close(gx, ref, dtype)


# --------------------------------------------------------------------------- public API


@pytest.mark.parametrize("dtype", DTYPES)
def test_public_api_backend_c(dtype, monkeypatch):
    monkeypatch.setenv("FASTCONV_POISON", "1")  # the public functions allocate NaN outputs
    rng = np.random.default_rng(12)
    x = rand(rng, (2, 6, 15, 17), dtype)
    xn = pool_input(rng, (2, 6, 15, 17), dtype, True)
    wd, bd = rand(rng, (12, 1, 3, 3), dtype), rand(rng, (12,), dtype)
    wp, bp = rand(rng, (5, 12, 1, 1), dtype), rand(rng, (5,), dtype)

    def both(fn, *args, **kw):
        return fn(*args, **kw, backend="c"), fn(*args, **kw, backend="reference")

    for got, ref in [
        both(fastconv.depthwise_conv2d, x, wd, bd, stride=2, padding=1, dilation=(1, 2)),
        both(fastconv.conv2d, x, rand(rng, (6, 1, 5, 3), dtype), None, 1, "same", 1, 6),
        both(fastconv.separable_conv2d, x, wd, wp, bd, bp, padding=1),
        both(fastconv.max_pool2d, xn, 3, 2, 1, 1, True),
        both(fastconv.max_pool2d, xn, (2, 3), (1, 2), (1, 1), (2, 1), False),
        both(fastconv.max_pool1d, xn[0], 3, 2, 1),
        both(fastconv.avg_pool2d, x, 3, 2, 1, True, False),
        both(fastconv.avg_pool2d, x, (3, 2), 1, (1, 0), False, True, 5),
        both(fastconv.avg_pool1d, x[0], 4, 3, 2, True),
        both(fastconv.adaptive_avg_pool2d, x, (4, None)),
        both(fastconv.adaptive_max_pool2d, xn, (4, 6)),
        both(G.avg_pool2d_input, x.shape, x[:, :, :8, :9], 3, 2, 1, True, False),
        both(G.adaptive_avg_pool2d_input, x.shape, x[:, :, :4, :3]),
        both(G.max_pool2d_input, x, x[:, :, :8, :9], 3, 2, 1),
        both(G.adaptive_max_pool2d_input, x, x[:, :, :4, :3]),
    ]:
        assert_close(got, ref, dtype)
    for args in [(xn, 3, 2, 1, 1, True), (xn, (3, 2), 1, (1, 1), 2, False)]:
        (y, i), (ry, ri) = both(fastconv.max_pool2d, *args, return_indices=True)
        assert_close(y, ry, dtype)
        np.testing.assert_array_equal(i, ri)
    (y, i), (ry, ri) = both(fastconv.adaptive_max_pool2d, xn, 5, return_indices=True)
    assert_close(y, ry, dtype)
    np.testing.assert_array_equal(i, ri)


def test_threads_concurrent_calls():
    # several Python threads call the kernels at once (cffi drops the GIL); results must
    # match the single-threaded ones
    rng = np.random.default_rng(13)
    x = rand(rng, (2, 8, 33, 35), np.float32)
    w = rand(rng, (16, 1, 3, 3), np.float32)
    want_dw = np.empty((2, 16, 17, 18), np.float32)
    C.depthwise_conv2d(x, w, None, want_dw, 2, 2, 1, 1, 1, 1)
    want_mp = np.empty((2, 8, 17, 18), np.float32)
    C.max_pool2d(x, want_mp, None, 3, 3, 2, 2, 1, 1, 1, 1)
    errors = []

    def work():
        for _ in range(20):
            y = poisoned(want_dw.shape, np.float32)
            C.depthwise_conv2d(x, w, None, y, 2, 2, 1, 1, 1, 1)
            m = poisoned(want_mp.shape, np.float32)
            C.max_pool2d(x, m, None, 3, 3, 2, 2, 1, 1, 1, 1)
            if not (np.array_equal(y, want_dw) and np.array_equal(m, want_mp)):
                errors.append("mismatch")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_shape_structs_are_made_once_per_geometry_and_bounded():
    """The wrappers pass each geometry as a cached shape struct: a repeated geometry reuses
    its struct, more geometries than the cache holds start it over, and every call still
    gets its own geometry (checked against the reference on each)."""
    from fastconv.backends.c import _cffi

    rng = np.random.default_rng(23)
    fields = (1, 2, 9, 9, 3, 3, 4, 4, 2, 2, 0, 0, 1, 1)
    assert _cffi.pool_shape(fields) is _cffi.pool_shape(fields)
    assert _cffi.pool_shape(fields).OW == 4 and _cffi.pool_shape(fields).dh == 1
    for W in range(4, 4 + _cffi.SHAPE_CACHE_SIZE + 40, 7):  # distinct widths and windows
        x = rand(rng, (1, 2, 5, W), np.float32)
        for k in (2, 3):
            OW = (W - k) // 2 + 1
            y = poisoned((1, 2, 2, OW), np.float32)
            ref = poisoned((1, 2, 2, OW), np.float32)
            C.max_pool2d(x, y, None, k, k, 2, 2, 0, 0, 1, 1)
            R.max_pool2d(x, ref, None, k, k, 2, 2, 0, 0, 1, 1)
            np.testing.assert_array_equal(y, ref)
    for k in range(1, 2 * _cffi.SHAPE_CACHE_SIZE, 3):
        _cffi.pool_shape((1, 1, 1, 1, k, k, 1, 1, 1, 1, 0, 0, 1, 1))
    assert len(_cffi._pool_shapes) <= _cffi.SHAPE_CACHE_SIZE


# --------------------------------------------------------------------------- PyTorch


@pytest.mark.parametrize("dtype", DTYPES)
def test_against_torch(dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(14)
    x = rand(rng, (2, 4, 19, 16), dtype)
    xt = torch.from_numpy(x)
    w = rand(rng, (8, 1, 3, 3), dtype)
    b = rand(rng, (8,), dtype)
    got = fastconv.depthwise_conv2d(x, w, b, 2, 1, backend="c")
    want = F.conv2d(xt, torch.from_numpy(w), torch.from_numpy(b), 2, 1, 1, 4).numpy()
    assert_close(got, want, dtype)
    y, i = fastconv.max_pool2d(x, 3, 2, 1, 1, True, True, backend="c")
    ty, ti = F.max_pool2d(xt, 3, 2, 1, 1, True, True)
    assert_close(y, ty.numpy(), dtype)
    np.testing.assert_array_equal(i, ti.numpy())
    got = fastconv.avg_pool2d(x, 3, 2, 1, True, False, backend="c")
    assert_close(got, F.avg_pool2d(xt, 3, 2, 1, True, False).numpy(), dtype)
    got = fastconv.avg_pool2d(x, 3, 2, 1, True, True, 4, backend="c")
    assert_close(got, F.avg_pool2d(xt, 3, 2, 1, True, True, 4).numpy(), dtype)
    got = fastconv.adaptive_avg_pool2d(x, (5, 3), backend="c")
    assert_close(got, F.adaptive_avg_pool2d(xt, (5, 3)).numpy(), dtype)
    y, i = fastconv.adaptive_max_pool2d(x, (5, 3), True, backend="c")
    ty, ti = F.adaptive_max_pool2d(xt, (5, 3), True)
    assert_close(y, ty.numpy(), dtype)
    np.testing.assert_array_equal(i, ti.numpy())
