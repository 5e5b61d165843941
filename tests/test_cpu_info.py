"""fastconv.cpu_info(model): the kernel each conv / pooling layer takes on the C backend,
and what inference fusion adds to it."""

import pytest

import fastconv as fc
from fastconv import models, nn

needs_c = pytest.mark.skipif(fc.available_backends()["c"] != "available",
                             reason="the C engine is not built")


@needs_c
def test_resnet18_layers():
    rows = fc.cpu_info("resnet18", (3, 64, 64))["layers"]
    by = {r["layer"]: r for r in rows}
    n_conv = sum(isinstance(m, nn.Conv2d) for _, m in models.resnet18(initialize=False)
                 .named_modules())
    assert sum(r["type"] == "Conv2d" for r in rows) == n_conv
    assert by["conv1"]["kernel"] == "direct (no im2col)"  # the 7x7/2 stem: 3 input channels
    assert by["layer3.0.conv2"]["kernel"] == "im2col + packed gemm"  # 3x3/2, 128 channels
    assert by["conv1"]["fused"] == "batch norm + relu"
    assert by["layer1.0.conv2"]["fused"] == "batch norm + residual add + relu"
    assert by["layer2.0.downsample.0"]["fused"] == "batch norm"
    assert by["layer2.0.downsample.0"]["input"] == (1, 64, 16, 16)
    assert by["maxpool"]["kernel"] == "max_pool2d"
    assert by["avgpool"]["kernel"].startswith("adaptive_avg_pool2d")
    assert by["fc"]["kernel"] == "linear (C kernel, the engine's threads)"
    big = {r["layer"]: r for r in fc.cpu_info("resnet18", (3, 64, 64), batch=17)["layers"]}
    assert big["fc"]["kernel"] == "numpy matmul (BLAS)"  # more than 16 rows


@needs_c
def test_paths_follow_the_geometry():
    net = nn.Sequential(nn.Conv2d(8, 64, 1), nn.Conv2d(64, 64, 3, groups=64),
                        nn.AvgPool2d(6), nn.AdaptiveMaxPool2d(1), nn.AdaptiveAvgPool2d(1))
    rows = fc.cpu_info(net, (8, 8, 8), batch=2)["layers"]
    thin = fc.cpu_info(nn.Sequential(nn.Conv2d(8, 16, 1), nn.Conv2d(16, 32, 3, groups=4),
                                     nn.Conv2d(32, 16, 3, groups=4)), (8, 8, 8))["layers"]
    # small planes (8x8, 6x6, 4x4) with at least 8 output channels per group (an AVX2 vector
    # of floats; AVX-512 runs AVX2's blocks for groups of 8 to 15): the implicit GEMM; else
    # the direct kernel
    from fastconv.backends.c import pool

    lanes = {"avx512": 8, "avx2": 8}.get(pool.isa_level(), 10**9)
    want = ["implicit gemm" if m >= lanes else "direct" for m in (16, 8, 4)]
    assert [r["kernel"] for r in thin] == [k + " (no im2col)" for k in want]
    assert [r["kernel"].split(" (")[0] for r in rows] == [
        "gemm 1x1", "depthwise_conv2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
        "adaptive_avg_pool2d"]
    assert rows[0]["input"] == (2, 8, 8, 8) and rows[0]["fused"] == ""
    rows = fc.cpu_info(nn.Sequential(nn.AdaptiveAvgPool2d(4)), (3, 8, 8))["layers"]
    assert rows[0]["kernel"].startswith("avg_pool2d (kernel = stride = 2x2")


@needs_c
def test_depthwise_paths_follow_level_and_geometry():
    """The depthwise path each layer takes, at each instruction-set level the CPU runs: the
    3x3 'same' layers by the row-pair kernels (AVX-512 on rows of 16 and more, else its flat
    path; AVX2 on any width), float64 and other windows by the row loops."""
    from fastconv.backends.c import pool

    net = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4),      # 20 x 20, 'same'
                        nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4),  # -> 10 x 10
                        nn.Conv2d(4, 4, 3, padding=1, groups=4),      # 10 x 10, 'same'
                        nn.Conv2d(4, 4, 5, padding=1, groups=4))      # -> 8 x 8
    want = {2: ["3x3 row-pair kernel, avx512", "rows through a padded copy",
                "flat plane, avx512", "rows through a padded copy"],
            1: ["3x3 row-pair kernel, avx2", "rows through a padded copy",
                "3x3 row-pair kernel, avx2", "rows through a padded copy"],
            0: ["rows through a padded copy"] * 4}
    before = pool.ISA_NAMES.index(pool.isa_level())
    try:
        for level in range(before + 1):
            pool.isa_level(level)
            rows = fc.cpu_info(net, (4, 20, 20))["layers"]
            assert [r["kernel"] for r in rows] == [f"depthwise_conv2d ({k})"
                                                  for k in want[level]], level
            rows = fc.cpu_info(net, (4, 20, 20), dtype="float64")["layers"]
            assert {r["kernel"] for r in rows} == {"depthwise_conv2d (rows through a padded copy)"}
        if before == 2:  # 16 channels and more, small planes, windows past 3x3: in the lanes
            lanes = fc.cpu_info(nn.Sequential(nn.Conv2d(16, 16, 7, padding=3, groups=16),
                                              nn.Conv2d(16, 16, 3, padding=1, groups=16)),
                                (16, 14, 14))["layers"]
            assert [r["kernel"] for r in lanes] == [
                "depthwise_conv2d (16 channels in the lanes, avx512)",
                "depthwise_conv2d (flat plane, avx512)"]
        # rows wider than the padded copy's limit (1 MiB): read in place
        wide = fc.cpu_info(nn.Sequential(nn.Conv2d(2, 2, 3, stride=2, groups=2)),
                           (2, 8, 300000))["layers"]
        assert wide[0]["kernel"] == "depthwise_conv2d (rows read in place)"
    finally:
        pool.isa_level(before)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(model=3), TypeError, "model must be"),
    (dict(model="nope"), ValueError, "unknown model"),
    (dict(model="resnet18", batch=0), ValueError, "batch"),
    (dict(model="resnet18", dtype="int8"), ValueError, "dtype"),
    (dict(model="resnet18", input_shape=(3, -1, 5)), ValueError, "input_shape"),
])
def test_invalid(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fc.cpu_info(**kwargs)


@needs_c
def test_depthwise_groupings_take_the_faster_kernel():
    """A depthwise grouping (groups = C, OC = m*C) runs the depthwise kernel where it is the
    faster one (m = 1; windows of at most 3x3 at stride 1 for any m; m = 2 up to 5x5 at
    stride 1) and conv2d's own choice elsewhere (a raw-audio front end, 1 -> 64 channels over
    80 taps at stride 4, ran 10x slower on the depthwise kernel): what cpu_info reports, and
    what conv2d, depthwise_conv2d and fused.conv2d run (recorded here), for both routes."""
    import numpy as np

    from fastconv import fused
    from fastconv.backends import c
    from fastconv.ops import _plans

    pays = c.depthwise_conv2d_pays
    assert pays(32, 32, 7, 7, 2, 2) and pays(1, 32, 3, 3, 1, 1) and pays(8, 16, 5, 5, 1, 1)
    assert not pays(1, 64, 1, 80, 1, 4) and not pays(8, 16, 3, 3, 2, 2)
    assert not pays(8, 32, 5, 5, 1, 1) and not pays(8, 16, 1, 31, 1, 1)
    cases = [(1, 64, (1, 80), (1, 4), False), (4, 4, 7, 2, True), (3, 24, 3, 1, True),
             (2, 4, 5, 1, True), (2, 4, 5, 2, False), (4, 32, 5, 1, False)]
    for C, OC, k, s, dw in cases:
        net = nn.Sequential(nn.Conv2d(C, OC, k, stride=s, groups=C))
        kernel = fc.cpu_info(net, (C, 9, 90))["layers"][0]["kernel"]
        assert kernel.startswith("depthwise_conv2d") == dw, (C, OC, k, s, kernel)
    ran = []
    real = {name: getattr(c, name) for name in ("conv2d", "depthwise_conv2d", "conv2d_fused",
                                                "depthwise_conv2d_fused")}

    def spy(name):
        def run(*args, **kwargs):
            ran.append(name.replace("_fused", ""))
            return real[name](*args, **kwargs)
        return run

    rng = np.random.default_rng(5)
    try:
        for name in real:
            setattr(c, name, spy(name))
        _plans._plans.clear()
        for C, OC, k, s, dw in cases:
            kh, kw = (k, k) if isinstance(k, int) else k
            x = rng.standard_normal((2, C, 9, 90)).astype(np.float32)
            w = rng.standard_normal((OC, 1, kh, kw)).astype(np.float32)
            want = fc.conv2d(x.astype(np.float64), w.astype(np.float64), stride=s, groups=C,
                             backend="reference")
            tol = 1e-5 * np.abs(want).max()
            del ran[:]
            np.testing.assert_allclose(fc.conv2d(x, w, stride=s, groups=C, backend="c"), want,
                                       atol=tol, rtol=0)
            np.testing.assert_allclose(fc.depthwise_conv2d(x, w, stride=s, backend="c"), want,
                                       atol=tol, rtol=0)
            got = fused.conv2d(x, w, stride=s, groups=C, activation="relu", backend="c")
            np.testing.assert_allclose(got, np.maximum(want, 0), atol=tol, rtol=0)
            assert ran == ["depthwise_conv2d" if dw else "conv2d"] * 3, (C, OC, k, s, ran)
    finally:
        for name, fn in real.items():
            setattr(c, name, fn)
        _plans._plans.clear()
