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
    thin = fc.cpu_info(nn.Sequential(nn.Conv2d(8, 16, 1), nn.Conv2d(16, 32, 3, groups=4)),
                       (8, 8, 8))["layers"]
    assert [r["kernel"] for r in thin] == ["direct (no im2col)"] * 2
    assert [r["kernel"].split(" (")[0] for r in rows] == [
        "gemm 1x1", "depthwise_conv2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
        "adaptive_avg_pool2d"]
    assert rows[0]["input"] == (2, 8, 8, 8) and rows[0]["fused"] == ""
    rows = fc.cpu_info(nn.Sequential(nn.AdaptiveAvgPool2d(4)), (3, 8, 8))["layers"]
    assert rows[0]["kernel"].startswith("avg_pool2d (kernel = stride = 2x2")


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
