"""The C engine's direct conv2d (csrc/conv_direct.c, ``variant="direct"``), its implicit-GEMM
twin (csrc/conv_igemm.c, ``variant="implicit_gemm"``) and the automatic choice that sends
narrow and grouped layers to the direct kernel: random geometries on every instruction set
and both register-block shapes, row ends, strides 1-4 with dilation, the workspace bound,
threads, non-finite values, the fused epilogue."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import fastconv
from fastconv.backends import reference as ref

c = pytest.importorskip("fastconv.backends.c")
if c.AVAILABLE_REASON != "available":  # pragma: no cover - depends on the build
    pytest.skip(c.AVAILABLE_REASON, allow_module_level=True)

from _cases import isa_fixture  # noqa: E402

TOL = {np.float32: 1e-5, np.float64: 1e-11}
ISAS = [k for k in ("portable", "avx2", "avx512") if k in c.cpu_info()["gemm_kernels"]]
DIRECT = "direct (no im2col)"


def _out(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _random_case(rng, dtype):
    """A geometry the direct kernel may see: few or many output channels per group (both
    block shapes), rows shorter and longer than a vector, any stride / dilation / padding."""
    while True:
        G = int(rng.choice([1, 2, 3, 4, 8]))
        Cg = int(rng.integers(1, 9))
        M = int(rng.integers(1, 21))
        KH, KW = (int(v) for v in rng.integers(1, 8, 2))
        sh, sw = (int(v) for v in rng.integers(1, 5, 2))
        dh, dw = (int(v) for v in rng.integers(1, 4, 2))
        ph, pw = (int(v) for v in rng.integers(0, 5, 2))
        H, W = int(rng.integers(1, 26)), int(rng.integers(1, 80))
        N = int(rng.integers(1, 3))
        OH, OW = _out(H, KH, sh, ph, dh), _out(W, KW, sw, pw, dw)
        if OH >= 1 and OW >= 1 and not (Cg == 1 and M == 1):
            break
    x = rng.standard_normal((N, G * Cg, H, W)).astype(dtype)
    w = rng.standard_normal((G * M, Cg, KH, KW)).astype(dtype)
    b = rng.standard_normal(G * M).astype(dtype) if rng.random() < 0.7 else None
    return x, w, b, dict(stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=G)


def _want(x, w, b, kw):
    return fastconv.conv2d(x.astype(np.float64), w.astype(np.float64),
                           None if b is None else b.astype(np.float64), backend="reference",
                           **kw)


def _run_c(x, w, b, kw, **extra):
    """The backend's conv2d itself (it takes ``isa=``), into a NaN-poisoned output."""
    (sh, sw), (ph, pw), (dh, dw) = kw["stride"], kw["padding"], kw["dilation"]
    N, _, H, W = x.shape
    OC, _, KH, KW = w.shape
    y = np.full((N, OC, _out(H, KH, sh, ph, dh), _out(W, KW, sw, pw, dw)), np.nan, x.dtype)
    c.conv2d(np.ascontiguousarray(x), w, b, y, sh, sw, ph, pw, dh, dw, kw["groups"], **extra)
    return y


def _close(got, want, dtype):
    assert got.shape == want.shape and got.dtype == dtype
    scale = max(float(np.abs(want).max()), 1e-30)
    assert float(np.abs(got - want).max()) <= TOL[dtype] * scale * 10


@pytest.mark.parametrize("variant", ("direct", "implicit_gemm"))
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("isa", ISAS)
def test_random_geometries_every_isa(isa, dtype, variant):
    rng = np.random.default_rng(101 + ISAS.index(isa) + (dtype == np.float64) * 7)
    for i in range(40):
        x, w, b, kw = _random_case(rng, dtype)
        if i % 3 == 0:
            x = x[:, :, ::-1, :]  # not contiguous: the public function copies it
        got = _run_c(x, w, b, kw, variant=variant, isa=isa)
        _close(got, _want(x, w, b, kw), dtype)


def _flat(kw, w, dtype, OW):
    """Whether the AVX-512 direct kernel runs this geometry's vectors across row ends (flat
    positions, plan_direct): stride 1, a padded row shorter than the row's vectors."""
    L = 64 // np.dtype(dtype).itemsize
    KW, dw = w.shape[3], kw["dilation"][1]
    pad = OW + (KW - 1) * dw
    return kw["stride"] == (1, 1) and (KW - 1) * dw < L and pad < -(-OW // L) * L


@pytest.mark.skipif("avx512" not in ISAS, reason="no AVX-512 here")
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("threads", (1, 2))
def test_flat_positions(dtype, threads):
    """Vectors that run on across row ends (28-wide rows: 28 of 30 lanes used): random widths
    and windows at stride 1, row blocks of any height (threads), the epilogue in registers and
    a residual; the lanes past a row's end are computed and must land nowhere (a NaN-poisoned
    output, and an input NaN next to a row's end must stay in its own outputs)."""
    rng = np.random.default_rng(31 + threads + (dtype == np.float64) * 5)
    flat = 0
    for i in range(60):
        G = int(rng.choice([1, 2, 4]))
        Cg, M = int(rng.integers(1, 9)), int(rng.integers(1, 21))
        KH, KW = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        dh, dw = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        ph, pw = int(rng.integers(0, 3)), int(rng.integers(0, 3))
        H, W = int(rng.integers(1, 30)), int(rng.integers(1, 70))
        OH, OW = _out(H, KH, 1, ph, dh), _out(W, KW, 1, pw, dw)
        if OH < 1 or OW < 1 or (Cg == 1 and M == 1):
            continue
        kw = dict(stride=(1, 1), padding=(ph, pw), dilation=(dh, dw), groups=G)
        x = rng.standard_normal((int(rng.integers(1, 3)), G * Cg, H, W)).astype(dtype)
        if i % 4 == 0:
            x[0, 0, rng.integers(H), W - 1] = np.nan
        w = rng.standard_normal((G * M, Cg, KH, KW)).astype(dtype)
        b = rng.standard_normal(G * M).astype(dtype)
        flat += _flat(kw, w, dtype, OW)
        want = _want(x, w, b, kw)
        before = fastconv.get_num_threads()
        fastconv.set_num_threads(threads)
        try:
            if i % 3 == 0:
                res = rng.standard_normal(want.shape).astype(dtype)
                y = np.full(want.shape, np.nan, dtype)
                c.conv2d_fused(x, w, b, y, 1, 1, ph, pw, dh, dw, G, None, None, res, "relu",
                               variant="direct", isa="avx512")
                want = np.where(want + res < 0, 0.0, want + res)
            else:
                y = _run_c(x, w, b, kw, variant="direct", isa="avx512")
        finally:
            fastconv.set_num_threads(before)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
        fin = np.isfinite(want)
        _close(y[fin].reshape(-1), want[fin].reshape(-1), dtype)
    assert flat >= 15, flat


isa_level = isa_fixture("isa_level")


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_cpu_level_cap(dtype, isa_level):
    """FASTCONV_ISA's cap (fc_dwpool_isa) lowers the direct kernel's instruction set too."""
    rng = np.random.default_rng(5 + isa_level)
    for _ in range(8):
        x, w, b, kw = _random_case(rng, dtype)
        got = fastconv.conv2d(x, w, b, backend="c", variant="direct", **kw)
        _close(got, _want(x, w, b, kw), dtype)


@pytest.mark.parametrize("shape, path", [
    # (C, OC, G, K, stride, hw): ResNeXt groups, stems, narrow 3x3 -> direct
    ((256, 256, 32, 3, 1, 28), DIRECT),
    ((512, 512, 32, 3, 2, 56), DIRECT),
    ((3, 64, 1, 7, 2, 224), DIRECT),
    ((3, 32, 1, 3, 2, 224), DIRECT),
    ((32, 64, 1, 3, 1, 56), DIRECT),
    ((32, 16, 1, 1, 1, 112), DIRECT),
    # wide layers stay on im2col / Winograd / the 1x1 GEMM
    ((64, 64, 1, 3, 1, 56), "winograd F(4x4,3x3)"),
    ((128, 128, 1, 3, 2, 56), "im2col + packed gemm"),
    ((64, 256, 1, 1, 1, 56), "gemm 1x1 (x read in place)"),
    ((1024, 16, 1, 1, 1, 14), "gemm 1x1 (x read in place)"),
])
def test_automatic_choice(shape, path):
    C, OC, G, K, s, hw = shape
    o = _out(hw, K, s, K // 2, 1)
    geometry = (1, C, hw, hw, OC, K, K, o, o, s, s, K // 2, K // 2, 1, 1, G)
    assert c.conv2d_path(geometry, np.float32) == path


IGEMM = "implicit gemm (no im2col)"


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_automatic_choice_small_planes(isa_level, dtype):
    """Where the direct kernel would run on a plane of at most 64 output pixels (or at most
    196 with at least 16 input channels per group), groups of at least 8 float output
    channels (one AVX2 vector; AVX-512 runs AVX2's blocks for 8 to 15) or one vector of
    doubles (8 with AVX-512, 4 with AVX2) take the implicit
    GEMM; the portable level keeps direct."""
    lanes = {2: 16, 1: 8}.get(isa_level, 0) // (2 if dtype == np.float64 else 1)
    if isa_level == 2 and dtype == np.float32:
        lanes = 8  # groups of 8 to 15 run AVX2's one-vector blocks
    cases = [  # (C, OC, G, K, stride, hw): output channels per group, output plane
        (1024, 1024, 32, 3, 1, 7),  # 32, 7x7 (ResNeXt-50's last stage)
        (1024, 1024, 32, 3, 2, 14),  # 32, 7x7 by stride 2
        (512, 512, 32, 3, 1, 7),  # 16
        (256, 256, 32, 3, 1, 7),  # 8
        (128, 128, 32, 3, 1, 7),  # 4
        (32, 64, 1, 3, 1, 8),  # 64, 8x8
        (32, 64, 1, 3, 1, 9),  # 81 pixels, 32 input channels
        (512, 512, 32, 3, 1, 14),  # 196 pixels, 16 input channels per group
        (256, 512, 32, 3, 1, 14),  # 196 pixels, 8 input channels per group: direct
        (512, 512, 32, 3, 1, 15),  # 225 pixels, 16 input channels per group: direct
        (256, 256, 8, 3, 1, 28),  # 784 pixels, 32 input channels per group: direct
    ]
    for C, OC, G, K, s, hw in cases:
        o = _out(hw, K, s, K // 2, 1)
        geometry = (1, C, hw, hw, OC, K, K, o, o, s, s, K // 2, K // 2, 1, 1, G)
        small = o * o <= 64 or (o * o <= 196 and C // G >= 16)
        igemm = lanes and OC // G >= lanes and small
        assert c.conv2d_path(geometry, dtype) == (IGEMM if igemm else DIRECT), (C, OC, G, hw)
        if o * o <= 196:  # the default call takes that path and agrees
            rng = np.random.default_rng(C + OC + hw)
            x = rng.standard_normal((2, C, hw, hw)).astype(dtype)
            w = rng.standard_normal((OC, C // G, K, K)).astype(dtype)
            b = rng.standard_normal(OC).astype(dtype)
            kw = dict(stride=s, padding=K // 2, groups=G)
            got = fastconv.conv2d(x, w, b, backend="c", **kw)
            np.testing.assert_array_equal(
                got, fastconv.conv2d(x, w, b, backend="c", variant="implicit_gemm" if igemm
                                     else "direct", **kw))
            _close(got, _want(x, w, b, kw), dtype)


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("isa", ISAS)
def test_implicit_gemm_weight_blocks(isa, dtype):
    """The implicit GEMM packs its weights tap-major in blocks of 16 taps x 16 channels
    (AVX-512 float: a register transpose) and element by element at the edges, and runs
    groups of at most one vector of channels on one-vector blocks: channels per group at,
    above and below multiples of 8 and 16, tap counts with and without a remainder."""
    rng = np.random.default_rng(31)
    for Cg, M, G, K in [(16, 32, 1, 3), (5, 48, 2, 3), (2, 40, 3, 5), (7, 17, 1, 3),
                        (3, 64, 2, 1), (4, 16, 4, 4), (9, 8, 2, 3), (5, 3, 3, 3), (6, 12, 1, 3)]:
        x = rng.standard_normal((1, Cg * G, 9, 11)).astype(dtype)
        w = rng.standard_normal((M * G, Cg, K, K)).astype(dtype)
        kw = dict(stride=(1, 1), padding=(K // 2, K // 2), dilation=(1, 1), groups=G)
        got = _run_c(x, w, None, kw, variant="implicit_gemm", isa=isa)
        _close(got, _want(x, w, None, kw), dtype)


@pytest.mark.parametrize("threads", (1, 2))
@pytest.mark.parametrize("isa", ISAS)
def test_implicit_gemm_short_rows(isa, threads):
    """Where an output row's input span, sw*(OW-1) + (KW-1)*dw + 1 values, fits 32 floats,
    the implicit GEMM gives each column tap a plane of its own, filled by permutes of masked
    loads (two plane rows a store where the span fits 16 and rows are at most 8 long); longer
    spans keep planes per column phase. Spans on both sides of 16 and 32, rows of 1 to 16
    outputs, padding wider than the input, right and bottom padding other than left and top
    (spans over 16 whose lanes past 16 are all padding: such a row once took the next row's
    values there), strides and dilations up to 3, odd row counts (the last pair of rows half
    empty), split across threads."""
    rng = np.random.default_rng(77 + ISAS.index(isa) + 5 * threads)
    seen = set()
    before = c.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        for _ in range(160):
            KW, KH = int(rng.integers(1, 6)), int(rng.integers(1, 4))
            sw, sh = (int(v) for v in rng.integers(1, 4, 2))
            dw, dh = (int(v) for v in rng.integers(1, 4, 2))
            pw, ph = (int(v) for v in rng.integers(0, 5, 2))
            pr, pb = (int(v) for v in rng.integers(0, 9, 2))  # right and bottom
            OW = int(rng.integers(1, 17))
            W = max(1, (OW - 1) * sw + dw * (KW - 1) + 1 - pw - pr + int(rng.integers(0, sw)))
            H = int(rng.integers(1, 16))
            OH = (H + ph + pb - dh * (KH - 1) - 1) // sh + 1
            OW = (W + pw + pr - dw * (KW - 1) - 1) // sw + 1
            if OH < 1 or OW < 1:
                continue
            span = sw * (OW - 1) + (KW - 1) * dw + 1
            seen.add("pairs" if span <= 16 and OW <= 8 else "one" if span <= 16 else
                     "two" if span <= 32 else "phase")
            if 16 < span <= 32 and W + pw <= 16 and OW <= 8:
                seen.add("padding past 16")
            G, Cg = int(rng.choice([1, 2, 4])), int(rng.integers(1, 20))
            M = int(rng.choice([8, 16, 17, 32, 40]))
            x = rng.standard_normal((int(rng.integers(1, 4)), G * Cg, H, W)).astype(np.float32)
            w = rng.standard_normal((G * M, Cg, KH, KW)).astype(np.float32)
            b = rng.standard_normal(G * M).astype(np.float32)
            got = np.full((x.shape[0], G * M, OH, OW), np.nan, np.float32)
            c.conv2d(x, w, b, got, sh, sw, ph, pw, dh, dw, G, variant="implicit_gemm", isa=isa)
            xp = np.pad(x, ((0, 0), (0, 0), (ph, pb), (pw, pr)))
            kw = dict(stride=(sh, sw), padding=(0, 0), dilation=(dh, dw), groups=G)
            _close(got, _want(xp, w, b, kw)[:, :, :OH, :OW], np.float32)
    finally:
        fastconv.set_num_threads(before)
    assert seen == {"pairs", "one", "two", "phase", "padding past 16"}, seen


def test_default_variant_takes_it_and_agrees():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 64, 15, 30)).astype(np.float32)
    w = rng.standard_normal((64, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    kw = dict(padding=1, groups=16)
    got = fastconv.conv2d(x, w, b, backend="c", **kw)
    np.testing.assert_array_equal(got, fastconv.conv2d(x, w, b, backend="c", variant="direct",
                                                       **kw))
    _close(got, _want(x, w, b, kw), np.float32)


@pytest.mark.parametrize("variant", ("direct", "implicit_gemm"))
def test_tiny_workspace_bound_declines_to_im2col(variant):
    """A bound below one row's strip: the call runs im2col + GEMM instead, still right."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 16, 20, 300)).astype(np.float32)
    w = rng.standard_normal((32, 8, 3, 3)).astype(np.float32)
    kw = dict(padding=1, groups=2)
    want = _want(x, w, None, kw)
    try:
        for limit in (1, 4096, 64 * 1024):
            c.set_workspace_limit(limit)
            _close(fastconv.conv2d(x, w, backend="c", variant=variant, **kw), want,
                   np.float32)
    finally:
        c.set_workspace_limit(None)


@pytest.mark.parametrize("variant", ("direct", "implicit_gemm"))
def test_thread_counts_give_identical_results(variant):
    """Each output sums its taps in the same order whatever the row blocks: bit-identical."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 96, 37, 41)).astype(np.float32)
    w = rng.standard_normal((96, 8, 5, 3)).astype(np.float32)
    kw = dict(padding=(2, 1), stride=(1, 2), groups=12)
    from fastconv.backends import _registry

    before = c.get_num_threads()
    try:
        outs = []
        for n in sorted({1, 2, _registry.max_threads()}):
            fastconv.set_num_threads(min(n, _registry.max_threads()))
            outs.append(fastconv.conv2d(x, w, backend="c", variant=variant, **kw))
    finally:
        fastconv.set_num_threads(before)
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])


def test_concurrent_callers():
    rng = np.random.default_rng(6)
    cases = [_random_case(rng, np.float32) for _ in range(6)]
    wants = [_want(*case) for case in cases]
    errors = []

    def work(i):
        try:
            for _ in range(5):
                x, w, b, kw = cases[i]
                _close(fastconv.conv2d(x, w, b, backend="c", variant="direct", **kw), wants[i],
                       np.float32)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


@pytest.mark.parametrize("variant", ("direct", "implicit_gemm"))
def test_non_finite_values_propagate_like_the_reference(variant):
    """A padded tap multiplies a zero like any other: an Inf weight gives NaN at the border
    (0 x Inf), as the reference's and im2col's sums do (docs/nonfinite.md)."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 8, 9, 20)).astype(np.float32)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    x[0, 1, 4, 7] = np.nan
    w[5, 2, 0, 0] = np.inf
    kw = dict(padding=1, groups=2)
    got = fastconv.conv2d(x, w, backend="c", variant=variant, **kw)
    want = np.empty(got.shape, np.float64)
    ref.conv2d(x.astype(np.float64), w.astype(np.float64), None, want, 1, 1, 1, 1, 1, 1, 2)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    _close(got[fin].reshape(-1), want[fin].reshape(-1), np.float32)


@pytest.mark.parametrize("variant", (None, "direct", "implicit_gemm"))
@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
@pytest.mark.parametrize("hw, groups", [(14, 8), (7, 2)])  # (7, 2): the automatic implicit GEMM
def test_fused_epilogue(activation, variant, hw, groups):
    from fastconv import fused

    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 64, hw, hw)).astype(np.float32)
    w = rng.standard_normal((64, 64 // groups, 3, 3)).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    scale = rng.uniform(0.5, 2, 64).astype(np.float32)
    shift = rng.standard_normal(64).astype(np.float32)
    res = rng.standard_normal((2, 64, hw, hw)).astype(np.float32)
    got = fused.conv2d(x, w, b, padding=1, groups=groups, scale=scale, shift=shift,
                       residual=res, activation=activation, backend="c", variant=variant)
    want = _want(x, w, b, dict(padding=1, groups=groups)) * scale[:, None, None]
    want = want + shift[:, None, None] + res
    if activation:
        want = np.clip(want, 0, 6 if activation == "relu6" else None)
    _close(got, want, np.float32)


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("isa", ISAS)
def test_epilogue_in_registers_every_isa(isa, dtype):
    """The direct kernel applies bias, scale, shift and the activation to its register blocks
    before it stores them (a residual and the activation after it in a pass): every subset,
    random geometries (row ends, both block shapes, channel blocks cut short), every
    instruction set, NaN sums kept by ReLU and ReLU6 as the reference keeps them."""
    rng = np.random.default_rng(900 + ISAS.index(isa) + (dtype == np.float64) * 11)
    for i in range(36):
        x, w, b, kw = _random_case(rng, dtype)
        OC = w.shape[0]
        if i % 4 == 1:
            x[0, 0, 0, :] = np.nan  # NaN sums through every epilogue step
        scale = rng.uniform(-2, 2, OC).astype(dtype) if rng.random() < 0.6 else None
        shift = rng.standard_normal(OC).astype(dtype) if rng.random() < 0.6 else None
        act = [None, "relu", "relu6"][i % 3]
        want = _want(x, w, b, kw)
        residual = (rng.standard_normal(want.shape).astype(dtype) * 3
                    if i % 5 == 2 else None)
        y = np.full(want.shape, np.nan, dtype)
        (sh, sw), (ph, pw), (dh, dw) = kw["stride"], kw["padding"], kw["dilation"]
        c.conv2d_fused(np.ascontiguousarray(x), w, b, y, sh, sw, ph, pw, dh, dw, kw["groups"],
                       scale, shift, residual, act, variant="direct", isa=isa)
        if scale is not None:
            want = want * scale[:, None, None]
        if shift is not None:
            want = want + shift[:, None, None]
        if residual is not None:
            want = want + residual
        if act:
            want = np.where(want < 0, 0.0, want)
            if act == "relu6":
                want = np.where(want > 6, 6.0, want)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
        fin = np.isfinite(want)
        _close(y[fin].reshape(-1), want[fin].reshape(-1), dtype)


# 1-D convs: the automatic choice, and the fold of one output row into rows for the threads.
@pytest.mark.parametrize("shape,dtype,threads,path", [
    ((1, 64, 64, 3, 4096), np.float32, 1, DIRECT),
    ((1, 64, 64, 3, 4096), np.float32, 2, DIRECT),  # 4094 = 2 * 23 * 89: folded into 23 rows
    ((8, 128, 128, 5, 512), np.float32, 2, DIRECT),  # 8 images share out
    ((3, 64, 64, 3, 512), np.float32, 2, DIRECT),  # 510 = 2 * 3 * 5 * 17: folded
    ((1, 64, 64, 3, 1000), np.float32, 2, "im2col + packed gemm"),  # 998 = 2 * 499: no fold
    ((1, 256, 256, 3, 512), np.float32, 1, "im2col + packed gemm"),  # wide, float32
    ((1, 256, 256, 3, 512), np.float64, 1, DIRECT),
    ((1, 64, 64, 1, 4096), np.float32, 1, "gemm 1x1 (x read in place)"),
    ((1, 128, 128, 15, 1024), np.float32, 1, DIRECT),
    ((1, 128, 128, 15, 1024), np.float32, 2, "im2col + packed gemm"),  # weights past 512 KB
])
def test_automatic_choice_1d(shape, dtype, threads, path):
    N, C, OC, K, L = shape
    geometry = (N, C, 1, L, OC, 1, K, 1, L - K + 1, 1, 1, 0, 0, 1, 1, 1)
    before = c.get_num_threads()
    try:
        c.set_num_threads(threads)
        assert c.conv2d_path(geometry, dtype) == path
    finally:
        c.set_num_threads(before)


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_1d_fold_same_bits_as_one_thread(dtype):
    # a single signal on two threads is folded into rows (fc_conv2d_direct); each output sums
    # its taps in the same order as the unfolded 1-thread call: the same bits, on random
    # lengths, strides, dilations, padding and bias; and the fused epilogue (scale, shift,
    # residual, ReLU) on the default choice against the reference
    from fastconv import fused
    from fastconv.backends import _registry

    if _registry.max_threads() < 2:
        pytest.skip("one CPU")
    rng = np.random.default_rng(21)
    before = c.get_num_threads()
    try:
        for trial in range(40):
            C, OC = int(rng.integers(1, 40)), int(rng.integers(1, 40))
            K, s, d = int(rng.integers(2, 9)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
            p = int(rng.integers(0, K))
            L = int(rng.integers(600, 6000))
            x = rng.standard_normal((1, C, L)).astype(dtype)
            w = rng.standard_normal((OC, C, K)).astype(dtype)
            b = rng.standard_normal(OC).astype(dtype) if trial % 2 else None
            kw = dict(stride=s, padding=p, dilation=d)
            outs = []
            for n in (1, 2):
                fastconv.set_num_threads(n)
                c.lib.fc_pool_forget_losses()
                outs.append(fastconv.conv1d(x, w, b, backend="c", variant="direct", **kw))
            want = _want(x[:, :, None, :], w[:, :, None, :], b,
                         dict(stride=(1, s), padding=(0, p), dilation=(1, d)))[:, :, 0, :]
            _close(outs[0], want, dtype)
            np.testing.assert_array_equal(outs[1], outs[0])
            if trial % 4 == 0:
                res = rng.standard_normal(want.shape).astype(dtype)[:, :, None, :]
                sc = rng.standard_normal(OC).astype(dtype)
                got = fused.conv2d(x[:, :, None, :], w[:, :, None, :], b, stride=(1, s),
                                   padding=(0, p), dilation=(1, d), scale=sc, shift=sc,
                                   residual=res, activation="relu", backend="c")
                ep = np.maximum(want[:, :, None, :] * sc[:, None, None] + sc[:, None, None]
                                + res, 0)
                _close(got, ep, dtype)
    finally:
        fastconv.set_num_threads(before)
