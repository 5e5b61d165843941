"""fastconv.accounting and fastconv.summary: counts computed from the layers, compared with
torchvision's published figures, torch's FLOP counter and brute-force window counts."""

import json

import numpy as np
import pytest

from fastconv import cli, models, nn
from fastconv.analysis import accounting
from fastconv.analysis.summary import summary as make_summary

# torchvision's published GFLOPS column (conv + linear multiply-accumulates, bias excluded)
PUBLISHED_GMACS = {"alexnet": (0.714, 3), "vgg16": (15.47, 2), "resnet18": (1.814, 3),
                   "resnet50": (4.089, 3), "mobilenet_v2": (0.301, 3)}


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_zoo_macs_round_to_published(name):
    m = models.get_model(name, initialize=False)
    acc = accounting.count(m, (3, 224, 224))
    published, digits = PUBLISHED_GMACS[name]
    assert round(acc.macs / 1e9, digits) == published
    assert acc.flops == 2 * acc.macs and acc.total == acc.macs
    assert acc.params == sum(r.params for r in acc.layers) == m.num_parameters()
    assert acc.backward_input_macs == acc.backward_weight_macs == acc.macs
    # the count is the sum over conv / linear layers only
    assert acc.macs == sum(r.macs for r in acc.layers if r.kind in ("Conv2d", "Linear"))


def test_bias_and_flops_switches():
    m = models.alexnet(initialize=False)
    base = accounting.count(m, "3x224x224")
    with_bias = accounting.count(m, (3, 224, 224), bias=True, flops=True)
    biased_outputs = sum(int(np.prod(r.output_shape)) for r in base.layers
                         if r.kind in ("Conv2d", "Linear"))  # every AlexNet layer has a bias
    assert with_bias.macs == base.macs + biased_outputs
    assert with_bias.total == with_bias.flops == 2 * base.macs + biased_outputs
    assert with_bias.unit == "FLOPs" and "FLOPs" in str(with_bias)
    b4 = accounting.count(m, (3, 224, 224), batch=4)
    assert b4.macs == 4 * base.macs and b4.params == base.params


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_counts_match_torch_flop_counter(groups):
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    def build(lib):
        return lib.Sequential(lib.Conv2d(3, 8, (3, 5), 2, (1, 2)), lib.ReLU(),
                              lib.Conv2d(8, 8, 3, padding=2, dilation=2, groups=groups),
                              lib.ConvTranspose2d(8, 6, 4, 2, 1, groups=groups),
                              lib.Flatten(), lib.Linear(6 * 16 * 28, 10))

    net, tnet = build(nn), build(torch.nn)
    x = torch.randn(2, 3, 16, 27, requires_grad=True)
    with FlopCounterMode(display=False) as fwd:
        y = tnet(x)
    with FlopCounterMode(display=False) as bwd:
        y.sum().backward()
    acc = accounting.count(net, (3, 16, 27), batch=2)
    assert acc.output_shape == tuple(y.shape)
    assert 2 * acc.macs == fwd.get_total_flops()
    # torch's counter sizes a grouped layer's weight gradient as if groups were 1 (G times
    # the products); fastconv counts the products done. With groups=1 they agree.
    torch_weight_side = sum(r.backward_weight_macs * (groups if r.name in ("2", "3") else 1)
                            for r in acc.layers)
    assert 2 * (acc.backward_input_macs + torch_weight_side) == bwd.get_total_flops()
    if groups == 1:
        assert 2 * acc.backward_macs == bwd.get_total_flops()


def test_transposed_input_and_dense():
    inp, w = (1, 4, 5, 5), (4, 6, 3, 3)
    macs = accounting.conv_transpose2d_macs(inp, w, stride=2, padding=1)
    dense = accounting.conv_transpose2d_macs(inp, w, stride=2, padding=1, dense=True)
    assert macs == 4 * 25 * 6 * 9  # every input element meets the whole kernel
    assert dense == 6 * 9 * 9 * 4 * 9  # output 9x9, as a conv over the zero-inserted input
    m = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, 2, 1))
    assert accounting.count(m, (4, 5, 5)).macs == macs
    assert accounting.count(m, (4, 5, 5), transposed="dense").macs == dense
    with pytest.raises(ValueError, match="transposed"):
        accounting.count(m, (4, 5, 5), transposed="output")


def _brute_reads(size, k, s, p, d, ceil):
    from fastconv._shapes import pool_output_size

    out = pool_output_size(size, k, s, p, d, ceil)
    return sum(1 for o in range(out) for j in range(k) if 0 <= o * s - p + j * d < size)


@pytest.mark.parametrize("H,W,k,s,p,d,ceil", [
    (7, 9, 3, 2, 1, 1, True), (8, 8, 2, 2, 0, 1, False), (10, 7, 3, 3, 1, 2, True),
    (5, 5, 2, 2, 0, 1, True), (112, 112, 3, 2, 1, 1, False),
])
def test_pool_reads_exact_at_borders(H, W, k, s, p, d, ceil):
    reads = accounting.pool2d_reads((2, 3, H, W), k, s, p, d, ceil)
    assert reads == 6 * _brute_reads(H, k, s, p, d, ceil) * _brute_reads(W, k, s, p, d, ceil)
    if d == 1:  # independent check: average of ones with divisor 1 counts in-bounds elements
        from fastconv import avg_pool2d

        ones = np.ones((2, 3, H, W))
        assert avg_pool2d(ones, k, s, p, ceil, divisor_override=1).sum() == reads


def test_adaptive_reads_and_other_ops():
    assert accounting.adaptive_pool2d_reads((1, 2, 5, 7), (3, 2)) == 2 * 7 * 8
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.Residual(nn.Conv2d(4, 4, 3, padding=1)), nn.AdaptiveMaxPool2d(1))
    acc = accounting.count(m, (2, 6, 6))
    kinds = [(r.name, r.kind, r.other_ops) for r in acc.layers]
    n = 4 * 36
    assert kinds == [("0", "Conv2d", 0), ("1", "BatchNorm2d", 2 * n), ("2", "ReLU", n),
                     ("3.body", "Conv2d", 0), ("3", "add", n), ("4", "AdaptiveMaxPool2d", n)]


def test_shared_parameters_counted_once_and_errors():
    conv = nn.Conv2d(3, 3, 3, padding=1)
    acc = accounting.count(nn.Sequential(conv, conv), (3, 8, 8))
    assert acc.params == 84 and [r.params for r in acc.layers] == [84, 0]
    assert acc.macs == 2 * 64 * 3 * 27

    class Odd(nn.Module):
        def output_shape(self, s):
            return s

    with pytest.raises(TypeError, match="no counting rule"):
        accounting.count(nn.Sequential(Odd()), (3, 4, 4))
    with pytest.raises(ValueError, match="input_shape"):
        accounting.count(conv, "3 by 8")
    with pytest.raises(ValueError, match="conv1"):
        accounting.count(models.resnet18(initialize=False), (1, 224, 224))


def test_summary_object_and_table():
    s = make_summary(models.mobilenet_v2(initialize=False), (3, 224, 224))
    assert s.params == 3_504_872 and round(s.macs / 1e9, 3) == 0.301
    assert s.rf.size == (491, 491)
    first = s.layers[0]
    assert (first.name, first.kind, first.output_shape) == ("features.0.0", "Conv2d",
                                                            (1, 32, 112, 112))
    assert (first.rf, first.jump, first.start) == ((3, 3), (2, 2), (0, 0))
    assert s.layers[-1].rf is None  # the classifier is global
    text = str(s)
    assert "3,504,872" in text and "total" in text and "global" in text
    assert s.to_dict()["layers"][0]["params"] == 32 * 27


def test_cli_summary(capsys):
    assert cli.main(["summary", "resnet18", "--input", "3x224x224", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"] == 11_689_512 and data["macs"] == data["total"]
    assert data["receptive_field"]["size"] == [435, 435]
    assert cli.main(["summary", "alexnet"]) == 0
    assert "61,100,840" in capsys.readouterr().out
    assert cli.main(["summary", "resnet34"]) == 2
    err = capsys.readouterr().err
    assert "unknown model" in err and "mobilenet_v2" in err
    assert cli.main(["summary", "resnet18", "--input", "3x224"]) == 2
    assert "--input" in capsys.readouterr().err
    assert cli.main(["summary", "resnet18", "--input", "three"]) == 2
