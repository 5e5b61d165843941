"""fastconv.receptive_field: the study notes' table, the zoo at 224x224, hand-derived starts,
and a perturbation check on the forward pass (outside the field: no change; at its edge: a
change)."""

import json
import math

import numpy as np
import pytest

from fastconv import cli, models, nn
from fastconv.analysis.receptive_field import receptive_field


def test_vgg_style_table():
    c = lambda: nn.Conv2d(1, 1, 3)  # noqa: E731
    p = lambda: nn.MaxPool2d(2, 2)  # noqa: E731
    net = nn.Sequential(c(), c(), p(), c(), c(), p(), c(), c())
    rf = receptive_field(net, (1, 64, 64))
    assert [r.size for r in rf.layers] == [(s, s) for s in (3, 5, 6, 10, 14, 16, 24, 32)]
    assert [r.jump[0] for r in rf.layers] == [1, 1, 2, 2, 2, 4, 4, 4]
    assert rf.size == (32, 32) and rf.jump == (4, 4) and rf.start == (15.5, 15.5)


@pytest.mark.parametrize("name,size,layer", [
    ("alexnet", 195, "avgpool"), ("vgg16", 212, "avgpool"), ("resnet18", 435, "layer4.1.relu"),
    ("resnet50", 427, "layer4.2.relu"), ("mobilenet_v2", 491, "features.18.2"),
])
def test_zoo(name, size, layer):
    rf = receptive_field(models.get_model(name, initialize=False), (3, 224, 224))
    assert rf.size == (size, size) and rf.jump == (32, 32) and rf.layer.name == layer
    assert not rf.layers[-1].spatial and len(rf.layers) > 10
    assert all(r.padding[0] == (r.size[0] - 1) / 2 - r.start[0] for r in rf.layers if r.spatial)


def test_start_rules():
    # dilation: the start moves by (K-1)*d/2 - p jumps
    rf = receptive_field(nn.Conv2d(1, 1, 3, padding=1, dilation=2), (1, 9, 9))
    assert rf.size == (5, 5) and rf.start == (1, 1) and rf.padding == (1, 1)
    rf = receptive_field(nn.Sequential(nn.Conv2d(1, 1, 2, stride=2), nn.Conv2d(1, 1, (3, 1),
                                                                             padding=(0, 0))),
                         (1, 8, 8))
    assert rf.size == (6, 2) and rf.jump == (2, 2) and rf.start == (2.5, 0.5)
    # transposed: fractional jump, start moves by (p - (K-1)*d/2) / s input jumps
    rf = receptive_field(nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1), (1, 5, 5))
    assert rf.jump == (0.5, 0.5) and rf.start == (-0.25, -0.25) and rf.size == (2.5, 2.5)
    # a divisible adaptive pool is a regular pool; to 1x1 it is global
    rf = receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d((3, 2)),
                                       nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(1, 2)),
                         (1, 8, 10))
    assert rf.layers[1].size == (4, 6) and rf.layers[1].jump == (2, 4)
    assert rf.layer.name == "1" and [r.spatial for r in rf.layers] == [True, True, False, False,
                                                                        False]
    assert "global" in str(rf)


def test_conv1d_model():
    rf = receptive_field(nn.Sequential(nn.Conv1d(2, 2, 5, 2, 2), nn.Conv1d(2, 2, 3, dilation=3)),
                         (2, 40))
    assert rf.size == (1, 1 + 4 + 2 * 3 * 2) and rf.jump == (1, 2) and rf.start == (0, 6)


def test_misaligned_branches():
    ok = nn.Concat(nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 5, padding=2),
                   nn.MaxPool2d(3, 1, 1))
    assert receptive_field(ok, (2, 8, 8)).size == (5, 5)
    bad = nn.Concat(nn.Conv2d(2, 2, 2, stride=2), nn.Conv2d(2, 2, 3, stride=2, padding=1))
    with pytest.raises(ValueError, match="misaligned along H"):
        receptive_field(bad, (2, 8, 8))
    with pytest.raises(ValueError, match="misaligned"):
        receptive_field(nn.Residual(nn.Conv2d(2, 2, 2, stride=2), shortcut=nn.Conv2d(2, 2, 1, 2)),
                        (2, 8, 8))

    class Odd(nn.Module):
        def output_shape(self, s):
            return s

    with pytest.raises(TypeError, match="no rule"):
        receptive_field(nn.Sequential(Odd()), (2, 8, 8))


# ---------------------------------------------------------------------------- perturbation


def _positive(model, seed):
    """Positive weights and biases: every activation is positive, so ReLU passes everything
    and a large positive input change reaches every output it is connected to (no ReLU6:
    it would saturate)."""
    rng = np.random.default_rng(seed)
    for _, a in model.named_parameters():
        a[...] = rng.uniform(0.1, 1.0, a.shape)
    return model


def _check(model, shape, index=None, exact=True, seed=0):
    """Perturb input pixels around the computed field of one output element."""
    rf = receptive_field(model, shape)
    layer = rf.layer
    assert layer is rf.layers[-1], "the model must end with its last spatial layer"
    x = np.random.default_rng(seed).uniform(0.5, 1.0, (1,) + shape)
    y = model(x)
    assert y.shape == (1,) + layer.output_shape[1:]
    oh, ow = index or (y.shape[2] // 2, y.shape[3] // 2)
    (h0, h1), (w0, w1) = layer.region((oh, ow))
    H, W = shape[1:]
    ch, cw = int(round((h0 + h1) / 2)), int(round((w0 + w1) / 2))

    def changed(h, w):
        xp = x.copy()
        xp[0, :, h, w] += 100.0
        return not np.array_equal(model(xp)[0, :, oh, ow], y[0, :, oh, ow])

    outside = [(math.ceil(h0) - 1, cw), (math.floor(h1) + 1, cw), (ch, math.ceil(w0) - 1),
               (ch, math.floor(w1) + 1), (math.ceil(h0) - 1, math.ceil(w0) - 1)]
    outside = [(h, w) for h, w in outside if 0 <= h < H and 0 <= w < W]
    assert outside, "choose an input larger than the field"
    for h, w in outside:
        assert not changed(h, w), f"pixel {(h, w)} outside the field changed output {(oh, ow)}"
    edges = [(math.ceil(h0), cw), (math.floor(h1), cw), (ch, math.ceil(w0)), (ch, math.floor(w1))]
    if exact:  # the field is tight: its edge pixels reach the output
        for h, w in edges:
            assert changed(h, w), f"edge pixel {(h, w)} did not change output {(oh, ow)}"
    else:  # a bound: something inside reaches it
        assert any(changed(h, w) for h, w in edges + [(ch, cw)])
    return rf


def test_perturbation_strides_dilation_pooling():
    net = _positive(nn.Sequential(
        nn.Conv2d(2, 3, (3, 5), padding=(1, 0)), nn.ReLU(),
        nn.Conv2d(3, 3, 3, padding=1, dilation=2), nn.BatchNorm2d(3),
        nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        nn.Conv2d(3, 3, (1, 3), stride=(1, 2)), nn.ReLU(), nn.AvgPool2d(2),
    ), 0)
    rf = _check(net, (2, 40, 48))
    assert rf.size[0] != rf.size[1]  # per-axis fields differ and are both checked


def test_perturbation_residual_and_concat():
    relu = nn.ReLU()
    net = _positive(nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1),
        nn.Residual([("conv1", nn.Conv2d(4, 4, 3, padding=1)), ("relu", relu),
                     ("conv2", nn.Conv2d(4, 4, 3, padding=2, dilation=2))],
                    shortcut=nn.Conv2d(4, 4, 1), activation=relu),
        nn.Concat(nn.Conv2d(4, 2, 3, padding=1), nn.Conv2d(4, 2, 5, padding=2),
                  nn.MaxPool2d(3, 1, 1)),
    ), 1)
    rf = _check(net, (2, 48, 40))
    assert rf.size == (23, 23) and rf.layer.kind == "concat"  # 3, +2*2, +4*2, +4*2 (5x5 path)


def test_perturbation_transposed_and_uneven_adaptive():
    net = _positive(nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1),
                                  nn.ConvTranspose2d(3, 3, 4, stride=2, padding=1),
                                  nn.Conv2d(3, 3, 3)), 2)
    for idx in [(9, 9), (9, 10), (10, 10)]:  # every residue of the output mod the stride
        _check(net, (2, 28, 28), idx, exact=False)
    net = _positive(nn.Sequential(nn.Conv2d(2, 2, 3), nn.AdaptiveAvgPool2d((5, 7))), 3)
    rf = _check(net, (2, 22, 25), exact=False)
    assert "bound" in rf.layer.note


def test_cli_rf(capsys):
    assert cli.main(["rf", "vgg16"]) == 0
    out = capsys.readouterr().out
    assert "receptive field 212" in out and "features.30" in out
    assert cli.main(["rf", "mobilenet_v2", "--json", "--input", "3x224x224"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["size"] == [491, 491] and data["layer"] == "features.18.2"
    assert cli.main(["rf", "vgg19"]) == 2
    assert "alexnet, vgg16" in capsys.readouterr().err
    assert cli.main(["rf", "vgg16", "--input", "3x0x224"]) == 2
    assert "--input" in capsys.readouterr().err
