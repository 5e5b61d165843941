"""fastconv.nn layers and fastconv.init: forward against NumPy formulas and torch, state_dict
keys and loading, validation, torch's initialisation rules."""

import math
from collections import OrderedDict

import numpy as np
import pytest

from fastconv import nn
from fastconv.nn import init

RNG = np.random.default_rng(1234)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------- init


@pytest.mark.parametrize("name,param,expected", [
    ("linear", None, 1.0), ("conv2d", None, 1.0), ("conv_transpose2d", None, 1.0),
    ("sigmoid", None, 1.0), ("tanh", None, 5 / 3), ("relu", None, math.sqrt(2)),
    ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
    ("leaky_relu", math.sqrt(5), math.sqrt(2 / 6)), ("selu", None, 0.75),
])
def test_calculate_gain(name, param, expected):
    assert init.calculate_gain(name, param) == pytest.approx(expected)


def test_calculate_gain_matches_torch():
    torch = pytest.importorskip("torch")
    for name, param in [("relu", None), ("tanh", None), ("leaky_relu", 0.2), ("selu", None),
                        ("conv1d", None), ("leaky_relu", None)]:
        assert init.calculate_gain(name, param) == pytest.approx(
            torch.nn.init.calculate_gain(name, param))


def test_fan_rules():
    assert init.calculate_fan_in_and_fan_out(np.empty((8, 3, 5, 7))) == (3 * 35, 8 * 35)
    assert init.calculate_fan_in_and_fan_out(np.empty((10, 20))) == (20, 10)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(np.empty(5))


@pytest.mark.parametrize("fn,kwargs,kind,expected", [
    (init.kaiming_uniform_, {}, "uniform", lambda fi, fo: math.sqrt(2) * math.sqrt(3 / fi)),
    (init.kaiming_uniform_, {"mode": "fan_out", "nonlinearity": "relu"}, "uniform",
     lambda fi, fo: math.sqrt(2) * math.sqrt(3 / fo)),
    (init.kaiming_normal_, {"mode": "fan_out", "nonlinearity": "relu"}, "normal",
     lambda fi, fo: math.sqrt(2) / math.sqrt(fo)),
    (init.xavier_uniform_, {"gain": 2.0}, "uniform", lambda fi, fo: 2 * math.sqrt(6 / (fi + fo))),
    (init.xavier_normal_, {}, "normal", lambda fi, fo: math.sqrt(2 / (fi + fo))),
])
def test_init_distributions(fn, kwargs, kind, expected):
    a = np.empty((64, 32, 3, 3), np.float32)
    fn(a, generator=0, **kwargs)
    p = expected(32 * 9, 64 * 9)  # uniform: the bound; normal: the std
    assert a.mean() == pytest.approx(0, abs=0.02 * p)
    if kind == "uniform":
        assert np.abs(a).max() <= p
        assert np.abs(a).max() > 0.99 * p
        assert a.std() == pytest.approx(p / math.sqrt(3), rel=0.02)
    else:
        assert a.std() == pytest.approx(p, rel=0.02)


def test_init_seed_and_errors():
    a = init.normal_(np.empty((100,)), generator=7)
    b = init.normal_(np.empty((100,)), generator=np.random.default_rng(7))
    assert np.array_equal(a, b) and not np.array_equal(a, init.normal_(np.empty(100), generator=8))
    u = init.uniform_(np.empty(1000, np.float16), -2, 3, generator=1)
    assert u.min() >= -2 and u.max() <= 3 and u.dtype == np.float16
    assert np.all(init.constant_(np.empty(3), 2.5) == 2.5) and not init.zeros_(np.ones(2)).any()
    with pytest.raises(TypeError, match="generator"):
        init.normal_(np.empty(3), generator="seed")
    with pytest.raises(TypeError, match="array"):
        init.zeros_([1.0, 2.0])
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(np.empty((3, 3)), mode="fan_avg")
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="std"):
        init.normal_(np.empty(3), std=-1)


def test_layer_default_init_is_torchs_rule():
    conv = nn.Conv2d(6, 16, (3, 5), groups=2, generator=0)
    bound = 1 / math.sqrt(3 * 15)  # fan_in = C/G * KH * KW
    for p in (conv.weight, conv.bias):
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.8 * bound
    lin = nn.Linear(400, 10, generator=0)
    assert np.abs(lin.weight).max() <= 1 / 20 and lin.weight.std() == pytest.approx(
        1 / 20 / math.sqrt(3), rel=0.05)
    tconv = nn.ConvTranspose2d(4, 6, 3, generator=0)  # fan_in from dim 1: 6 * 9
    assert np.abs(tconv.weight).max() <= 1 / math.sqrt(54) < np.abs(tconv.weight).max() * 1.3
    same = nn.Conv2d(3, 4, 3, generator=5).weight
    assert np.array_equal(same, nn.Conv2d(3, 4, 3, generator=5).weight)
    assert not nn.Conv2d(3, 4, 3, initialize=False).weight.any()


# ---------------------------------------------------------------------------- forward, no torch


def test_linear_bn_activations_against_formulas():
    lin = nn.Linear(5, 3, generator=0)
    x = rand(2, 4, 5)
    # against the float64 product: float32 rounding of each sum's terms (a sum that cancels
    # may differ from NumPy's float32 one, summed in another order, by more than rtol)
    w64, x64 = lin.weight.astype(np.float64), x.astype(np.float64)
    want = x64 @ w64.T + lin.bias
    bound = 8 * np.finfo(np.float32).eps * (np.abs(x64) @ np.abs(w64).T + np.abs(lin.bias))
    assert (np.abs(lin(x) - want) <= bound).all()
    bn = nn.BatchNorm2d(3)
    bn.weight[:] = [1, 2, 3]
    bn.bias[:] = [0, -1, 1]
    bn.running_mean[:] = [0.5, 0, -1]
    bn.running_var[:] = [4, 1, 0.25]
    x = rand(2, 3, 4, 4)
    ref = ((x - bn.running_mean[:, None, None]) / np.sqrt(bn.running_var[:, None, None] + 1e-5)
           * bn.weight[:, None, None] + bn.bias[:, None, None])
    np.testing.assert_allclose(bn(x), ref, rtol=1e-5, atol=1e-6)
    x = np.array([-1.0, 0.5, 7.0, np.nan], np.float32)
    np.testing.assert_array_equal(nn.ReLU()(x), [0, 0.5, 7, np.nan])
    np.testing.assert_array_equal(nn.ReLU6()(x), [0, 0.5, 6, np.nan])
    assert nn.Dropout(0.3)(x) is x
    assert nn.Flatten()(rand(2, 3, 4, 5)).shape == (2, 60)
    assert nn.Flatten(0, 1)(rand(2, 3, 4)).shape == (6, 4)


def test_containers_forward():
    a, b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 2, 1)
    x = rand(2, 3, 6, 6)
    cat = nn.Concat(a, b)
    np.testing.assert_allclose(cat(x), np.concatenate([a(x), b(x)], axis=1), rtol=1e-6)
    assert cat.output_shape((2, 3, 6, 6)) == (2, 6, 6, 6)
    relu = nn.ReLU()
    res = nn.Residual([("conv", nn.Conv2d(3, 3, 3, padding=1)), ("relu", relu)], activation=relu)
    np.testing.assert_allclose(res(x), np.maximum(relu(res.conv(x)) + x, 0), rtol=1e-6)
    proj = nn.Residual(nn.Conv2d(3, 4, 3, 2, 1), shortcut=nn.Conv2d(3, 4, 1, 2))
    np.testing.assert_allclose(proj(x), proj.body(x) + proj.downsample(x), rtol=1e-6)
    with pytest.raises(ValueError, match="shortcut"):
        nn.Residual(nn.Conv2d(3, 4, 3))(x)
    with pytest.raises(ValueError, match="channel"):
        nn.Concat(nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 1))(x)
    with pytest.raises(ValueError, match="two different modules"):
        nn.Residual([("r", nn.ReLU()), ("r", nn.ReLU())])
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2))
    assert len(seq) == 3 and isinstance(seq[-1], nn.MaxPool2d) and len(seq[:2]) == 2
    assert seq.output_shape((1, 3, 10, 10)) == seq(rand(1, 3, 10, 10)).shape == (1, 4, 4, 4)


def test_retain_inputs_cache():
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.MaxPool2d(2))
    x = rand(1, 2, 6, 6)
    net(x)
    assert net[0].cache is None
    net.retain_inputs()
    y = net(x)
    assert net[0].cache["input"] is x and net[1].cache["indices"].shape == y.shape
    net.retain_inputs(False)
    assert net[1].cache is None


def test_set_backend():
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.AvgPool2d(2)).set_backend("reference")
    assert net[0].backend == net[1].backend == "reference"
    with pytest.raises(ValueError, match="backend"):
        net.set_backend("gpu")


# ---------------------------------------------------------------------------- validation


def test_constructor_validation():
    with pytest.raises(ValueError, match="in_channels"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="out_channels"):
        nn.Conv2d(4, 3, 3, groups=2)
    with pytest.raises(ValueError, match="same"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding"):
        nn.Conv2d(3, 4, 3, padding="full")
    with pytest.raises(TypeError, match="kernel_size"):
        nn.Conv2d(3, 4, 2.5)
    with pytest.raises(ValueError, match="output_padding"):
        nn.ConvTranspose2d(3, 4, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="padding_mode"):
        nn.ConvTranspose2d(3, 4, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match=r"\bp\b"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm2d(0)
    with pytest.raises(ValueError, match="output_size"):
        nn.AdaptiveAvgPool2d((2, 3, 4))
    with pytest.raises(TypeError, match="Module"):
        nn.Sequential(nn.ReLU(), lambda x: x)
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm2d(3)(rand(1, 4, 2, 2))
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(4, 2)(rand(3, 5))


# ---------------------------------------------------------------------------- state dict


def _block():
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, 4, 3, bias=False), bn=nn.BatchNorm2d(4),
        head=nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 2)),
    ))


def test_state_dict_keys_and_roundtrip(tmp_path):
    m = _block()
    assert list(m.state_dict()) == [
        "conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
        "bn.num_batches_tracked", "head.1.weight", "head.1.bias"]
    assert m.num_parameters() == 4 * 27 + 8 + 64 * 2 + 2
    src = _block()
    src.bn.running_var[:] = 3.0
    np.savez(tmp_path / "w.npz", **src.state_dict())
    with np.load(tmp_path / "w.npz") as f:
        m.load_state_dict(f)
    for k, v in src.state_dict().items():
        assert np.array_equal(m.state_dict()[k], v) and m.state_dict()[k] is not v
    x = rand(1, 3, 6, 6)
    np.testing.assert_array_equal(m(x), src(x))


def test_load_state_dict_errors():
    m = _block()
    sd = {k: v.copy() for k, v in _block().state_dict().items()}
    del sd["bn.running_mean"]
    sd["extra.weight"] = np.zeros(3)
    with pytest.raises(ValueError, match="missing keys.*bn.running_mean") as e:
        m.load_state_dict(sd)
    assert "unexpected keys (1): extra.weight" in str(e.value)
    before = m.conv.weight.copy()
    sd["conv.weight"] = np.ones((4, 3, 3, 3), np.float32)
    res = m.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["bn.running_mean"] and res.unexpected_keys == ["extra.weight"]
    assert np.all(m.conv.weight == 1) and not np.array_equal(before, m.conv.weight)
    sd["head.1.weight"] = np.zeros((2, 63))
    m.conv.weight[...] = 0
    with pytest.raises(ValueError, match=r"head.1.weight: checkpoint \(2, 63\), model \(2, 64\)"):
        m.load_state_dict(sd, strict=False)
    assert not m.conv.weight.any()  # nothing was modified
    with pytest.raises(TypeError, match="mapping"):
        m.load_state_dict([1, 2])


# ---------------------------------------------------------------------------- against torch


def _load_from_torch(ours, theirs):
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


@pytest.mark.parametrize("make", [
    lambda t: (nn.Conv2d(4, 6, (3, 2), (2, 1), (1, 2), (2, 1), groups=2),
               t.nn.Conv2d(4, 6, (3, 2), (2, 1), (1, 2), (2, 1), groups=2), (2, 4, 9, 8)),
    lambda t: (nn.Conv2d(3, 5, 3, padding="same", padding_mode="reflect", bias=False),
               t.nn.Conv2d(3, 5, 3, padding="same", padding_mode="reflect", bias=False),
               (1, 3, 7, 6)),
    lambda t: (nn.Conv1d(3, 4, 5, 2, 2), t.nn.Conv1d(3, 4, 5, 2, 2), (2, 3, 17)),
    lambda t: (nn.ConvTranspose2d(4, 6, 4, 2, 1, groups=2), t.nn.ConvTranspose2d(4, 6, 4, 2, 1, groups=2),
               (2, 4, 5, 5)),
    lambda t: (nn.ConvTranspose2d(3, 2, 3, 2, 1, output_padding=1, dilation=2),
               t.nn.ConvTranspose2d(3, 2, 3, 2, 1, output_padding=1, dilation=2), (1, 3, 4, 5)),
    lambda t: (nn.MaxPool2d(3, 2, 1, ceil_mode=True), t.nn.MaxPool2d(3, 2, 1, ceil_mode=True),
               (2, 3, 8, 9)),
    lambda t: (nn.AvgPool2d((2, 3), 2, (1, 1), count_include_pad=False),
               t.nn.AvgPool2d((2, 3), 2, (1, 1), count_include_pad=False), (1, 2, 7, 8)),
    lambda t: (nn.AdaptiveAvgPool2d((3, 5)), t.nn.AdaptiveAvgPool2d((3, 5)), (2, 3, 7, 11)),
    lambda t: (nn.AdaptiveMaxPool2d(2), t.nn.AdaptiveMaxPool2d(2), (1, 3, 5, 7)),
    lambda t: (nn.Linear(7, 3), t.nn.Linear(7, 3), (4, 7)),
    lambda t: (nn.BatchNorm2d(3), t.nn.BatchNorm2d(3), (2, 3, 4, 5)),
])
def test_layer_matches_torch(make):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ours, theirs, shape = make(torch)
    theirs.eval()
    if isinstance(theirs, torch.nn.BatchNorm2d):
        with torch.no_grad():
            for t in (theirs.weight, theirs.bias, theirs.running_mean):
                t.uniform_(-1, 1)
            theirs.running_var.uniform_(0.5, 2)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _load_from_torch(ours, theirs)
    x = rand(*shape)
    with torch.no_grad():
        ref = theirs(torch.from_numpy(x)).numpy()
    y = ours(x)
    assert y.shape == ref.shape == ours.output_shape(shape)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_depthwise_separable_matches_torch():
    torch = pytest.importorskip("torch")
    ours = nn.DepthwiseSeparableConv2d(3, 5, 3, stride=2, padding=1, depth_multiplier=2)
    dw = torch.nn.Conv2d(3, 6, 3, 2, 1, groups=3)
    pw = torch.nn.Conv2d(6, 5, 1)
    sd = {f"depthwise.{k}": v for k, v in dw.state_dict().items()}
    sd.update({f"pointwise.{k}": v for k, v in pw.state_dict().items()})
    ours.load_state_dict(sd)
    x = rand(2, 3, 9, 8)
    with torch.no_grad():
        ref = pw(dw(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(ours(x), ref, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- xavier


@pytest.mark.parametrize("fill", [init.xavier_uniform_, init.xavier_normal_])
def test_xavier_gain_and_empty_fans(fill):
    with pytest.raises(ValueError, match="gain"):
        fill(np.empty((3, 4)), gain=-1)
    with pytest.raises(ValueError, match=r"shape \(0, 0\)"):
        fill(np.empty((0, 0)))
    with pytest.raises(TypeError, match="gain"):
        fill(np.empty((3, 4)), gain="1")
    w = fill(np.empty((3, 4)), gain=0.0, generator=0)
    assert np.all(w == 0)
    assert fill(np.empty((0, 3)), generator=0).shape == (0, 3)  # torch returns too


def test_xavier_negative_gain_matches_torch():
    torch = pytest.importorskip("torch")
    for fill in (torch.nn.init.xavier_uniform_, torch.nn.init.xavier_normal_):
        with pytest.raises(RuntimeError):  # torch rejects it as well
            fill(torch.empty(3, 4), gain=-1)
