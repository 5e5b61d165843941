"""The exact theoretical receptive field (fastconv.analysis.support), checked against an
independent oracle: a NaN placed at one input pixel reaches exactly the outputs that depend
on it (IEEE: NaN * 0 = NaN, so every connection carries it, whatever the weights)."""

import numpy as np
import pytest

from fastconv import nn
from fastconv.analysis import erf
from fastconv.analysis.support import support


def _nan_oracle(model, shape, pos):
    C, H, W = shape
    model.set_backend("reference")
    out = np.zeros((H, W), dtype=bool)
    for h in range(H):
        for w in range(W):
            x = np.zeros((1, C, H, W))
            x[0, :, h, w] = np.nan
            y = model(x)
            out[h, w] = bool(np.isnan(y[0, :, pos[0], pos[1]]).any())
    return out


def _random_model(rng):
    C = C0 = int(rng.integers(1, 3))
    layers = []
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.choice(["conv", "pool", "avg", "tconv", "res", "cat", "sep"])
        k = int(rng.integers(1, 4))
        d = int(rng.integers(1, 3))
        s = int(rng.integers(1, 3))
        if kind == "conv":
            mode = str(rng.choice(["zeros", "reflect", "replicate", "circular"]))
            p = int(rng.integers(0, 2))
            layers.append(nn.Conv2d(C, C, (k, int(rng.integers(1, 4))), stride=s, padding=p,
                                    dilation=d, padding_mode=mode))
        elif kind == "pool":
            layers.append(nn.MaxPool2d(k, stride=s, padding=min(k // 2, 1) if k > 1 else 0,
                                       dilation=d, ceil_mode=bool(rng.integers(0, 2))))
        elif kind == "avg":
            layers.append(nn.AvgPool2d(k, stride=s, ceil_mode=bool(rng.integers(0, 2))))
        elif kind == "tconv":
            layers.append(nn.ConvTranspose2d(C, C, k, stride=s, dilation=d))
        elif kind == "res":
            layers.append(nn.Residual(nn.Sequential(nn.Conv2d(C, C, 3, padding=d, dilation=d),
                                                    nn.ReLU())))
        elif kind == "cat":
            layers.append(nn.Concat(nn.Conv2d(C, 1, 3, padding=1),
                                    nn.Conv2d(C, 1, 1)))
            C = 2
        else:
            layers.append(nn.DepthwiseSeparableConv2d(C, C, 3, padding=1))
    return nn.Sequential(*layers), C0


def test_stacked_all_one_convs_cover_the_whole_square():
    # 8 stacked 3x3 convolutions with all-one weights: the corner pixels have 1 path against
    # 1107^2 at the centre, far under a 1e-6 threshold, and still belong to the field
    m = erf.build("linear:8", channels=1)
    for c in m:
        c.weight[...] = 1
    r = erf.effective_receptive_field(m, (1, 25, 25))
    assert r.theoretical_pixels == 17 * 17 == int(r.support.sum())
    assert r.nonzero_pixels < 17 * 17


def test_dilation_leaves_holes():
    m = nn.Sequential(nn.Conv2d(1, 1, 3, dilation=3), nn.Conv2d(1, 1, 2))
    got = support(m, (1, 12, 12), (1, 1))
    assert int(got.sum()) == 36  # 3x3 taps, each widened by the 2x2 conv: 6 x 6, not 8 x 8
    np.testing.assert_array_equal(got, _nan_oracle(m, (1, 12, 12), (1, 1)))


@pytest.mark.parametrize("seed", range(12))
def test_support_matches_nan_propagation(seed):
    rng = np.random.default_rng(seed)
    for _ in range(20):  # draw until the model's output has spatial positions
        m, C = _random_model(rng)
        shape = (C, int(rng.integers(5, 11)), int(rng.integers(5, 11)))
        try:
            out = m.output_shape((1,) + shape)
        except ValueError:
            continue
        if out[2] >= 1 and out[3] >= 1:
            break
    else:
        pytest.skip("no valid model drawn")
    pos = (int(rng.integers(0, out[2])), int(rng.integers(0, out[3])))
    np.testing.assert_array_equal(support(m, shape, pos), _nan_oracle(m, shape, pos))


def test_circular_padding_wraps():
    m = nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular")
    got = support(m, (1, 6, 6), (0, 0))
    assert got[5, 5] and got[0, 5] and got[5, 0] and int(got.sum()) == 9
    np.testing.assert_array_equal(got, _nan_oracle(m, (1, 6, 6), (0, 0)))


def test_conv1d_model():
    m = nn.Sequential(nn.Conv1d(2, 2, 3, dilation=2), nn.Conv1d(2, 1, 2, stride=2))
    got = support(m, (2, 16), (0, 3))
    assert got.shape == (1, 16)
    want = np.zeros(16, bool)
    for o2 in (6, 7):  # second conv reads 6, 7; first reads o, o + 2, o + 4
        want[[o2, o2 + 2, o2 + 4]] = True
    np.testing.assert_array_equal(got[0], want)
