"""The C engine's Winograd conv2d variants (csrc/winograd.c): winograd_f2, winograd_f3 and
winograd_f4 against the float64 reference on random 3x3 stride-1 layers, dilated ones
included (tiled phase by phase), the automatic choice, the workspace bound, threads, capped
ISAs, non-finite inputs and the refusal of other geometries.

Errors are relative in norm, ||y - y_ref|| / ||y_ref||: float32 within 1e-5 (the bound the
automatic choice keeps), float64 within 1e-10.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv.backends import reference as ref
from fastconv.backends._registry import variant_fits

c = pytest.importorskip("fastconv.backends.c")
if c.AVAILABLE_REASON != "available":  # pragma: no cover - depends on the build
    pytest.skip(c.AVAILABLE_REASON, allow_module_level=True)

TOL = {np.float32: 1e-5, np.float64: 1e-10}
DTYPES = (np.float32, np.float64)
WINOGRAD = ("winograd_f2", "winograd_f3", "winograd_f4")
ISAS = [k for k in ("portable", "avx2", "avx512") if k in c.cpu_info()["gemm_kernels"]]


@pytest.fixture(autouse=True)
def _engine_settings():
    c.set_workspace_limit(None)
    c.set_num_threads(2)
    c.set_auto_winograd(True)
    yield
    c.set_workspace_limit(None)
    c.set_num_threads(fastconv.get_num_threads())
    c.set_auto_winograd(True)


def rel_err(got, want) -> float:
    assert got.shape == want.shape
    assert np.isfinite(got).all(), "the kernel left elements unwritten (NaN)"
    den = float(np.linalg.norm(want))
    return float(np.linalg.norm(got.astype(np.float64) - want)) / (den if den else 1.0)


def conv_ref(x, w, b, pad, G, pb=None, dil=(1, 1)):
    """float64 reference of a 3x3 stride-1 conv; pb: (bottom, right) padding, default pad."""
    ph, pw = pad
    pbh, pbw = pb if pb is not None else pad
    N, C, H, W = x.shape
    y = np.empty((N, w.shape[0], H + ph + pbh - 2 * dil[0], W + pw + pbw - 2 * dil[1]))
    ref.conv2d(x.astype(np.float64), w.astype(np.float64),
               None if b is None else b.astype(np.float64), y, 1, 1, ph, pw, dil[0], dil[1], G)
    return y


def run_kernel(x, w, b, yshape, pad, G, dil=(1, 1), **kw):
    """The kernel itself, NaN-poisoned output (a skipped element fails)."""
    y = np.full(yshape, np.nan, x.dtype)
    c.conv2d(x, w, b, y, 1, 1, pad[0], pad[1], dil[0], dil[1], G, **kw)
    return y


def layer_err(got, want, x, w, b) -> float:
    """rel_err; where that is over the bound because the outputs cancel far below their terms
    (a random layer with one output of a few taps, most on the padding, can sum to a
    thousandth of them), the largest error of an output of channel o against
    sum |w[o]| * max |x| + |b[o]|: the transforms mix every tap's weight into each output,
    the padded ones included (their terms cancel exactly only in exact arithmetic), so that
    is the scale of the rounding errors, while a wrong tap is off by about 1/K of it."""
    err = rel_err(got, want)
    if err <= TOL[got.dtype.type]:
        return err
    scale = np.abs(w).reshape(w.shape[0], -1).sum(1) * np.abs(x).max()
    if b is not None:
        scale = scale + np.abs(b)
    return float(np.max(np.abs(got - want) / scale[None, :, None, None]))


def random_layer(rng, dtype, big=False, dilated=False):
    """A random layer: (x, w, b, padding, bottom / right padding, groups, dilation); dilated:
    dilations 1..7 per axis, padding up to twice the dilation (an output of at least 1)."""
    G = int(rng.choice([1, 1, 1, 2, 3]))
    Cg = int(rng.integers(1, 68 // G if big else 9))
    OCg = int(rng.integers(1, 68 // G if big else 9))
    H, W = (int(v) for v in rng.integers(1, 41 if big else 12, 2))
    N = int(rng.choice([1, 1, 3]))
    dh, dw = (int(v) for v in rng.integers(1, 8, 2)) if dilated else (1, 1)
    ph, pbh = (int(v) for v in rng.integers(0, 2 * dh + 2, 2))
    pw, pbw = (int(v) for v in rng.integers(0, 2 * dw + 2, 2))
    H = max(H, 2 * dh + 1 - ph - pbh)
    W = max(W, 2 * dw + 1 - pw - pbw)
    x = rng.standard_normal((N, G * Cg, H, W)).astype(dtype)
    w = rng.standard_normal((G * OCg, Cg, 3, 3)).astype(dtype)
    b = rng.standard_normal(G * OCg).astype(dtype) if rng.random() < 0.7 else None
    return x, w, b, (ph, pw), (pbh, pbw), G, (dh, dw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", (1, 2))
@pytest.mark.parametrize("variant", WINOGRAD)
def test_random_layers(variant, threads, dtype):
    c.set_num_threads(threads)
    rng = np.random.default_rng(hash((variant, threads, np.dtype(dtype).name)) % 2**32)
    for i in range(40):
        x, w, b, pad, pb, G, dil = random_layer(rng, dtype, big=i % 4 == 0, dilated=i % 2 == 1)
        want = conv_ref(x, w, b, pad, G, pb, dil)
        got = run_kernel(x, w, b, want.shape, pad, G, dil, variant=variant)
        err = layer_err(got, want, x, w, b)
        assert err <= TOL[dtype], (x.shape, w.shape, pad, pb, G, dil)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", WINOGRAD)
def test_few_tiles_many_channels_same_on_any_thread_count(variant, dtype):
    """Layers with too few tiles for the threads split their output channels into parts; the
    parts then share one input transform, made by all threads in channel pieces. Results:
    the definition, and bit for bit the one-thread results (each value is transformed and
    summed the same way); a NaN in x still makes the call follow the definition; a bound
    too small for the shared transform gives the same results too."""
    rng = np.random.default_rng(17)
    for N, C, OC, H, W, pad, G in [(1, 128, 128, 14, 14, (1, 1), 1), (1, 96, 200, 7, 7, (1, 1), 1),
                                   (1, 64, 96, 9, 11, (0, 2), 2), (2, 72, 130, 5, 6, (1, 0), 1)]:
        x = rng.standard_normal((N, C, H, W)).astype(dtype)
        w = (rng.standard_normal((OC, C // G, 3, 3)) / 10).astype(dtype)
        b = rng.standard_normal(OC).astype(dtype)
        want = conv_ref(x, w, b, pad, G)
        got = {}
        for threads in (1, 2):
            c.set_num_threads(threads)
            got[threads] = run_kernel(x, w, b, want.shape, pad, G, variant=variant)
        assert rel_err(got[2], want) <= TOL[dtype], (N, C, OC, H, W)
        assert np.array_equal(got[1], got[2]), (N, C, OC, H, W)
        c.set_workspace_limit(4 << 20)
        small = run_kernel(x, w, b, want.shape, pad, G, variant=variant)
        c.set_workspace_limit(None)
        assert rel_err(small, want) <= TOL[dtype]
        x[0, C - 1, H // 2, W // 2] = np.nan
        got = run_kernel(x, w, b, want.shape, pad, G, variant=variant)
        bad = np.isnan(got)
        assert bad[0, :, max(0, H // 2 + pad[0] - 2):H // 2 + pad[0] + 1].any()
        assert bad.sum() <= OC * 9 and np.isfinite(got[N - 1 if N > 1 else 0]).sum() >= 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("variant", WINOGRAD)
def test_each_micro_kernel(variant, isa, dtype):
    rng = np.random.default_rng(5 + ISAS.index(isa))
    for i in range(8):
        x, w, b, pad, pb, G, dil = random_layer(rng, dtype, big=i % 2 == 0, dilated=i % 4 > 1)
        want = conv_ref(x, w, b, pad, G, pb, dil)
        got = run_kernel(x, w, b, want.shape, pad, G, dil, variant=variant, isa=isa)
        assert layer_err(got, want, x, w, b) <= TOL[dtype]


@pytest.mark.parametrize("variant", WINOGRAD)
@pytest.mark.parametrize(
    "shape",
    [  # (N, C, H, W, OC, pad, G)
        (0, 3, 5, 5, 4, 1, 1),  # empty batch
        (1, 1, 1, 1, 1, 1, 1),  # one pixel, all padding
        (1, 3, 3, 3, 2, 0, 1),  # one output
        (2, 5, 2, 7, 3, 3, 1),  # image smaller than a tile, padding 3
        (3, 67, 17, 13, 67, 1, 1),  # odd channels and sizes, partial edge tiles
        (1, 64, 9, 40, 66, 2, 2),  # groups, wide rows (a block cuts a tile row)
        (2, 32, 14, 14, 64, 1, 32),  # 1 channel per group
    ],
)
def test_edge_shapes(shape, variant):
    N, C, H, W, OC, p, G = shape
    rng = np.random.default_rng(1)
    for dtype in DTYPES:
        x = rng.standard_normal((N, C, H, W)).astype(dtype)
        w = rng.standard_normal((OC, C // G, 3, 3)).astype(dtype)
        b = rng.standard_normal(OC).astype(dtype)
        want = fastconv.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                               1, p, 1, G, backend="reference")
        got = fastconv.conv2d(x, w, b, 1, p, 1, G, backend="c", variant=variant)
        assert got.dtype == dtype and got.shape == want.shape
        if want.size:
            assert rel_err(got, want) <= TOL[dtype]


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("variant", WINOGRAD)
def test_padding_modes_and_same(mode, variant):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 6, 11, 9)).astype(np.float32)
    w = rng.standard_normal((5, 6, 3, 3)).astype(np.float32)
    for padding in (1, (2, 1), "same", "valid"):
        want = fastconv.conv2d(x.astype(np.float64), w.astype(np.float64), None, 1, padding,
                               padding_mode=mode, backend="reference")
        got = fastconv.conv2d(x, w, None, 1, padding, padding_mode=mode, backend="c",
                              variant=variant)
        assert rel_err(got, want) <= TOL[np.float32]


def test_non_contiguous_public_inputs():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 10, 12, 16)).astype(np.float32)[:, ::2, :, ::2]  # strided view
    w = np.asfortranarray(rng.standard_normal((7, 5, 3, 3)).astype(np.float32))
    want = fastconv.conv2d(x.astype(np.float64), w.astype(np.float64), None, 1, 1,
                           backend="reference")
    for variant in WINOGRAD:
        got = fastconv.conv2d(x, w, None, 1, 1, backend="c", variant=variant)
        assert rel_err(got, want) <= TOL[np.float32]


@pytest.mark.parametrize("limit", [1, 4096, 200_000, 3_000_000])
def test_workspace_bound(limit):
    """A small bound cuts the tiles and output channels into smaller blocks (or leaves the
    call to the im2col path below Winograd's smallest workspace): same answer."""
    c.set_workspace_limit(limit)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 48, 19, 23)).astype(np.float32)
    w = rng.standard_normal((40, 48, 3, 3)).astype(np.float32)
    b = rng.standard_normal(40).astype(np.float32)
    want = conv_ref(x, w, b, (1, 1), 1)
    for variant in WINOGRAD:
        got = run_kernel(x, w, b, want.shape, (1, 1), 1, variant=variant)
        assert rel_err(got, want) <= TOL[np.float32]


def test_automatic_choice_and_its_error():
    """variant=None picks Winograd for a float32 layer with enough channels (the same result
    as winograd_f4, bit for bit) and stays within the float32 bound; with the automatic use
    switched off it is the im2col path again."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 64, 48, 48)).astype(np.float32)  # 144 F4 tiles
    w = (rng.standard_normal((64, 64, 3, 3)) / 24).astype(np.float32)
    want = conv_ref(x, w, None, (1, 1), 1)
    auto = fastconv.conv2d(x, w, None, 1, 1, backend="c")
    f4 = fastconv.conv2d(x, w, None, 1, 1, backend="c", variant="winograd_f4")
    assert np.array_equal(auto, f4)
    assert rel_err(auto, want) <= TOL[np.float32]
    c.set_auto_winograd(False)
    im2col = fastconv.conv2d(x, w, None, 1, 1, backend="c")
    assert not np.array_equal(im2col, f4)
    assert rel_err(im2col, want) <= TOL[np.float32]
    # float64 and thin layers never take it
    lib = c.lib
    s = c._shape(x, want, w.shape, 1, 1, 1, 1, 1, 1, 1, 64)
    c.set_auto_winograd(True)
    assert lib.fc_winograd_choice(s, 0, 2) == 4
    assert lib.fc_winograd_choice(s, 1, 2) == 0
    thin = c._shape(x, want, (64, 4, 3, 3), 1, 1, 1, 1, 1, 1, 16, 64)
    assert lib.fc_winograd_choice(thin, 0, 2) == 0
    small = c._shape(x[:, :, :20, :20], want[:, :, :20, :20], w.shape, 1, 1, 1, 1, 1, 1, 1, 64)
    # 25 F4 tiles (too few), 100 F2 tiles of 16 multiplies, 49 F3 tiles of 25: F3
    assert lib.fc_winograd_choice(small, 0, 2) == 3
    x10 = np.zeros((2, 64, 10, 10), np.float32)
    even = c._shape(x10, x10, w.shape, 1, 1, 1, 1, 1, 1, 1, 64)
    assert lib.fc_winograd_choice(even, 0, 2) == 2  # 50 F2 tiles (800), 32 F3 tiles (800)


@pytest.mark.parametrize("N, ch, hw, path", [
    (1, 64, 56, 4), (1, 128, 28, 4), (1, 256, 14, 3), (1, 512, 7, 0), (8, 256, 14, 4),
    (8, 512, 7, 2), (1, 512, 28, 0), (1, 512, 14, 0), (1, 32, 15, 5), (1, 1024, 7, 0),
])
def test_automatic_rule_on_resnet_and_vgg_layers(N, ch, hw, path):
    """The steady-state rule of fc_winograd_choice (bench/RESULTS.md, "Winograd"); narrow
    layers (32 channels) take the direct kernel first (fc_direct_choice), in both dtypes (on
    a plane of more than 196 pixels: smaller ones take the implicit GEMM, test_conv_direct)."""
    names = {0: "im2col + packed gemm", 2: "winograd F(2x2,3x3)", 4: "winograd F(4x4,3x3)",
             5: "direct (no im2col)", 3: "winograd F(3x3,3x3)"}
    shape = (N, ch, hw, hw, ch, 3, 3, hw, hw, 1, 1, 1, 1, 1, 1, 1)
    assert c.conv2d_path(shape, np.float32) == names[path]
    assert c.conv2d_path(shape, np.float64) == names[5 if path == 5 else 0]


@pytest.mark.parametrize("N, ch, hw, d, m", [
    (1, 256, 33, 2, 4), (1, 256, 33, 6, 3), (1, 256, 33, 12, 3), (1, 256, 33, 24, 0),
    (1, 256, 65, 4, 4), (1, 512, 33, 6, 0), (1, 24, 33, 6, 0), (1, 64, 8, 2, 0),
])
def test_automatic_rule_on_dilated_layers(N, ch, hw, d, m):
    """Dilated layers (DeepLab's ASPP): the m with the fewest multiplies once each phase is
    tiled on its own, if that is at most 0.4 of the direct sum (d24 on 33x33: phases of 1-2
    outputs, im2col), at most 256 x 256 channels, at least 32 per group, 48 tiles."""
    shape = (N, ch, hw, hw, ch, 3, 3, hw, hw, 1, 1, d, d, d, d, 1)
    s = c.conv_shape(shape)
    assert c.lib.fc_winograd_choice(s, 0, 2) == m
    assert c.lib.fc_winograd_choice(s, 1, 2) == 0
    if m == 3:
        assert c.conv2d_path(shape, np.float32) == "winograd F(3x3,3x3)"


@pytest.mark.parametrize("dtype", DTYPES)
def test_dilated_default_path_same_bits_on_any_thread_count(dtype):
    """ASPP-like layers (the automatic choice, float32: Winograd tiled by phase) give the
    definition and the same bits on 1 and 2 threads, with a fused epilogue too."""
    rng = np.random.default_rng(21)
    for d, hw in ((2, 21), (6, 25), (5, 17)):
        x = rng.standard_normal((1, 64, hw, hw)).astype(dtype)
        w = (rng.standard_normal((64, 64, 3, 3)) / 20).astype(dtype)
        b = rng.standard_normal(64).astype(dtype)
        res = rng.standard_normal((1, 64, hw, hw)).astype(dtype)
        want = conv_ref(x, w, b, (d, d), 1, dil=(d, d))
        got = {}
        for threads in (1, 2):
            c.set_num_threads(threads)
            got[threads] = fastconv.conv2d(x, w, b, padding=d, dilation=d, backend="c")
            fused = fastconv.fused.conv2d(x, w, b, padding=d, dilation=d, residual=res,
                                          activation="relu", backend="c")
            assert np.array_equal(fused, np.maximum(got[threads] + res, 0))
        assert rel_err(got[1], want) <= TOL[dtype], d
        assert np.array_equal(got[1], got[2]), d


@pytest.mark.parametrize("limit", [1, 20_000, 300_000])
@pytest.mark.parametrize("variant", WINOGRAD)
def test_dilated_under_a_workspace_bound(variant, limit):
    """Tile blocks down to one sliver (several steps of a tile row's phases in one block,
    blocks cutting tile rows), or the im2col path below the smallest workspace."""
    c.set_workspace_limit(limit)
    rng = np.random.default_rng(22)
    x = rng.standard_normal((2, 40, 30, 47)).astype(np.float32)
    w = rng.standard_normal((36, 40, 3, 3)).astype(np.float32)
    want = conv_ref(x, w, None, (3, 7), 1, (2, 6), dil=(3, 5))
    got = run_kernel(x, w, None, want.shape, (3, 7), 1, (3, 5), variant=variant)
    assert rel_err(got, want) <= TOL[np.float32]


@pytest.mark.parametrize("variant", (None,) + WINOGRAD)
def test_non_finite_inputs_follow_the_definition(variant):
    """A NaN / Inf in x or w reaches exactly the outputs whose window holds it (the call runs
    the im2col path; Winograd's transforms would spread it over the tile)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 40, 16, 16)).astype(np.float32)
    w = (rng.standard_normal((40, 40, 3, 3)) / 20).astype(np.float32)
    x[0, 3, 5, 7] = np.inf
    want = conv_ref(np.where(np.isfinite(x), x, 0), w, None, (1, 1), 1)
    got = fastconv.conv2d(x, w, None, 1, 1, backend="c", variant=variant)
    bad = ~np.isfinite(got)
    assert bad[0, :, 4:7, 6:9].all() and bad.sum() == 40 * 9
    assert rel_err(np.where(bad, 0, got), np.where(bad, 0, want)) <= TOL[np.float32]
    w[2, 1, 0, 0] = np.nan
    x[0, 3, 5, 7] = 1.0
    got = fastconv.conv2d(x, w, None, 1, 1, backend="c", variant=variant)
    assert (~np.isfinite(got)).sum() == 16 * 16  # channel 2 only: every tap meets the NaN


@pytest.mark.parametrize("variant", WINOGRAD)
def test_other_geometries_raise_naming_variant(variant):
    x = np.ones((1, 4, 9, 9), np.float32)
    for w_shape, kw in [
        ((4, 4, 3, 3), {"stride": 2}),
        ((4, 4, 3, 3), {"stride": (1, 2), "dilation": 2}),
        ((4, 4, 5, 5), {}),
        ((4, 4, 3, 1), {}),
    ]:
        with pytest.raises(ValueError, match=f"variant '{variant}' runs only 3x3 kernels with "
                                             r"stride \(1, 1\), got"):
            fastconv.conv2d(x, np.ones(w_shape, np.float32), backend="c", variant=variant, **kw)
    assert variant_fits(c, variant, 3, 3, 1, 1, 1, 1)
    assert variant_fits(c, variant, 3, 3, 1, 1, 2, 5)  # any dilation
    assert not variant_fits(c, variant, 3, 3, 2, 2, 1, 1)
    assert variant_fits(c, "v5_threads", 5, 5, 2, 2, 3, 3)


def test_kernel_declines_other_geometries():
    """Called directly (no check), the kernel leaves other geometries to the im2col path."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 3, 10, 10))
    w = rng.standard_normal((2, 3, 5, 5))
    y = np.full((1, 2, 3, 3), np.nan)
    c.conv2d(x, w, None, y, 2, 2, 0, 0, 1, 1, 1, variant="winograd_f4")
    want = np.empty_like(y)
    ref.conv2d(x, w, None, want, 2, 2, 0, 0, 1, 1, 1)
    assert rel_err(y, want) <= 1e-12


def test_resnet50_layer_errors_within_float32_bound():
    """The error table of docs/conv_variants.md, on one ResNet-50 layer per stage (N=1)."""
    rng = np.random.default_rng(9)
    for ch, hw in ((64, 56), (128, 28), (256, 14), (512, 7)):
        x = np.maximum(rng.standard_normal((1, ch, hw, hw)), 0).astype(np.float32)
        w = (rng.standard_normal((ch, ch, 3, 3)) / np.sqrt(9 * ch)).astype(np.float32)
        want = conv_ref(x, w, None, (1, 1), 1)
        errs = {}
        for variant in WINOGRAD:
            errs[variant] = rel_err(run_kernel(x, w, None, want.shape, (1, 1), 1,
                                               variant=variant), want)
        assert errs["winograd_f2"] <= 1e-6 and errs["winograd_f4"] <= TOL[np.float32], errs


# ---- the cache of transformed weights (csrc/winograd.c) ----


@pytest.fixture
def _cache_default():
    c.set_winograd_cache_limit(None)
    yield
    c.set_winograd_cache_limit(None)


def wino_call(x, w, b, variant="winograd_f4"):
    y = np.full((x.shape[0], w.shape[0], x.shape[2], x.shape[3]), np.nan, x.dtype)
    c.conv2d(x, w, b, y, 1, 1, 1, 1, 1, 1, 1, variant)
    return y


def layer(rng, N=1, C=32, OC=48, H=10, dtype=np.float32):
    x = rng.standard_normal((N, C, H, H)).astype(dtype)
    w = (rng.standard_normal((OC, C, 3, 3)) / np.sqrt(9 * C)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype)
    return x, w, b


@pytest.mark.usefixtures("_cache_default")
@pytest.mark.parametrize("variant", WINOGRAD)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cached_results_identical_to_uncached(variant, dtype):
    rng = np.random.default_rng(10)
    x, w, b = layer(rng, N=2, dtype=dtype)
    c.set_winograd_cache_limit(0)
    want = wino_call(x, w, b, variant)
    c.set_winograd_cache_limit(None)
    before = c.winograd_cache_info()
    first, second = wino_call(x, w, b, variant), wino_call(x, w, b, variant)
    after = c.winograd_cache_info()
    assert after["hits"] >= before["hits"] + 1 and after["misses"] >= before["misses"] + 1
    assert np.array_equal(first, want) and np.array_equal(second, want)
    assert rel_err(second, conv_ref(x, w, b, (1, 1), 1)) < TOL[dtype]


@pytest.mark.usefixtures("_cache_default")
def test_cache_with_output_channel_chunks():
    # a small workspace bound splits the output channels into chunks: one entry holds them all
    rng = np.random.default_rng(11)
    x, w, b = layer(rng, C=64, OC=96)
    c.set_workspace_limit(300_000)
    c.set_winograd_cache_limit(0)
    want = wino_call(x, w, b)
    c.set_winograd_cache_limit(None)
    assert np.array_equal(wino_call(x, w, b), want) and np.array_equal(wino_call(x, w, b), want)


@pytest.mark.usefixtures("_cache_default")
def test_weights_changed_in_place_are_seen():
    rng = np.random.default_rng(12)
    x, w, b = layer(rng)
    wino_call(x, w, b)
    wino_call(x, w, b)
    w[3, 5, 1, 1] += 0.5  # one value, same buffer
    assert rel_err(wino_call(x, w, b), conv_ref(x, w, b, (1, 1), 1)) < 1e-5
    w[:] = rng.standard_normal(w.shape).astype(np.float32) / 10  # every value, same buffer
    assert rel_err(wino_call(x, w, b), conv_ref(x, w, b, (1, 1), 1)) < 1e-5
    w[0, 0, 0, 0] = -0.0 if w[0, 0, 0, 0] == 0 else w[0, 0, 0, 0]
    assert rel_err(wino_call(x, w, b), conv_ref(x, w, b, (1, 1), 1)) < 1e-5


@pytest.mark.usefixtures("_cache_default")
def test_new_weights_at_a_recycled_address_are_seen():
    rng = np.random.default_rng(13)
    x, w, b = layer(rng)
    wino_call(x, w, b)
    shape, addr = w.shape, w.ctypes.data
    del w
    for _ in range(20):  # the allocator usually hands the same block back
        w2 = (rng.standard_normal(shape) / 17).astype(np.float32)
        if w2.ctypes.data == addr:
            break
    assert rel_err(wino_call(x, w2, b), conv_ref(x, w2, b, (1, 1), 1)) < 1e-5
    # forced: other weights written into one buffer, through views of that buffer
    buf = np.empty(w2.size, np.float32)
    for seed in range(3):
        buf[:] = np.random.default_rng(seed).standard_normal(buf.size) / 20
        wv = buf.reshape(shape)
        assert rel_err(wino_call(x, wv, b), conv_ref(x, wv, b, (1, 1), 1)) < 1e-5


@pytest.mark.usefixtures("_cache_default")
def test_non_finite_weights_are_never_cached():
    rng = np.random.default_rng(14)
    x, w, b = layer(rng)
    wino_call(x, w, b)
    w[2, 1, 0, 0] = np.inf
    for _ in range(2):  # declined both times: the im2col path gives the definition's outputs
        got = wino_call(x, w, b)
        assert np.isinf(got[:, 2]).any() and np.isfinite(got[:, 3]).all()
    w[2, 1, 0, 0] = 0.25
    assert rel_err(wino_call(x, w, b), conv_ref(x, w, b, (1, 1), 1)) < 1e-5


@pytest.mark.usefixtures("_cache_default")
def test_many_threads_with_different_weights():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(15)
    layers = [layer(rng, C=32, OC=32 + 16 * (i % 3), H=8 + i % 4) for i in range(8)]
    wants = [conv_ref(x, w, b, (1, 1), 1) for x, w, b in layers]
    c.set_winograd_cache_limit(3 * 2**20 // 2)  # room for a few: evictions while in use

    def job(i):
        x, w, b = layers[i % len(layers)]
        return i % len(layers), wino_call(x, w, b, WINOGRAD[i % 2])

    with ThreadPoolExecutor(8) as pool:
        for k, got in pool.map(job, range(96)):
            assert rel_err(got, wants[k]) < 1e-5
    assert c.winograd_cache_info()["bytes"] <= 3 * 2**20 // 2


@pytest.mark.usefixtures("_cache_default")
def test_eviction_under_a_tiny_budget():
    rng = np.random.default_rng(16)
    layers = [layer(rng, C=32, OC=32) for _ in range(6)]
    one = 32 * 32 * 36 * 4 + 32 * 32 * 9 * 4  # F4's U and the weights' copy, about
    limit = int(2.5 * one) + 4096
    c.set_winograd_cache_limit(limit)
    for x, w, b in layers * 2:
        assert rel_err(wino_call(x, w, b), conv_ref(x, w, b, (1, 1), 1)) < 1e-5
        info = c.winograd_cache_info()
        assert info["bytes"] <= limit and 1 <= info["entries"] <= 2
    c.set_winograd_cache_limit(one // 2)  # lowering the budget evicts; too big: not cached
    assert c.winograd_cache_info()["entries"] == 0
    x, w, b = layers[0]
    assert rel_err(wino_call(x, w, b), conv_ref(x, w, b, (1, 1), 1)) < 1e-5
    assert c.winograd_cache_info()["entries"] == 0


@pytest.mark.usefixtures("_cache_default")
def test_limit_zero_disables_the_cache():
    rng = np.random.default_rng(17)
    x, w, b = layer(rng)
    c.set_winograd_cache_limit(0)
    before = c.winograd_cache_info()
    assert before["entries"] == 0 and before["bytes"] == 0 and before["limit"] == 0
    for _ in range(3):
        assert rel_err(wino_call(x, w, b), conv_ref(x, w, b, (1, 1), 1)) < 1e-5
    after = c.winograd_cache_info()
    assert after["entries"] == 0 and (after["hits"], after["misses"]) == (
        before["hits"], before["misses"])


@pytest.mark.usefixtures("_cache_default")
def test_fork_child_uses_the_cache():
    import os

    if not hasattr(os, "fork"):
        pytest.skip("no fork() here")
    rng = np.random.default_rng(18)
    x, w, b = layer(rng)
    want = wino_call(x, w, b)
    pid = os.fork()
    if pid == 0:  # child: the cached entry, a new one, and the lock all usable
        code = 1
        try:
            ok = np.array_equal(wino_call(x, w, b), want)
            x2, w2, b2 = layer(np.random.default_rng(19))
            ok = ok and rel_err(wino_call(x2, w2, b2), conv_ref(x2, w2, b2, (1, 1), 1)) < 1e-5
            c.set_winograd_cache_limit(0)
            code = 0 if ok else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert np.array_equal(wino_call(x, w, b), want)


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (1.5, TypeError), ("1", TypeError),
                                      (True, TypeError)])
def test_invalid_cache_limits_raise_naming_the_parameter(bad, exc):
    with pytest.raises(exc, match="nbytes"):
        c.set_winograd_cache_limit(bad)
