"""fastconv.nn's inference-mode fusion (nn/_fusion.py): Conv2d -> BatchNorm2d -> ReLU/ReLU6
and residual blocks run as fused calls, with the unfused forward's results (float32
rounding), never in training mode or when inputs are kept for backward."""

import numpy as np
import pytest

import fastconv as fc
from fastconv import models, nn
from fastconv.nn import _fusion

BACKENDS = [b for b, why in fc.available_backends().items() if why.startswith("available")
            and b != "cuda"]


@pytest.fixture(autouse=True)
def fusion_on():
    yield
    _fusion.set_fusion(True)


def _randomise_bn(model, rng):
    for _, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            C = m.num_features
            if m.running_mean is not None:
                m.running_mean[...] = rng.standard_normal(C) * 0.3
                m.running_var[...] = rng.random(C) + 0.3
            if m.weight is not None:
                m.weight[...] = rng.random(C) + 0.5
                m.bias[...] = rng.standard_normal(C) * 0.3


def _both(model, x):
    _fusion.set_fusion(False)
    a = model(x)
    _fusion.set_fusion(True)
    b = model(x)
    return a, b


def _calls(monkeypatch):
    """Count fastconv.fused.conv2d calls."""
    n = {"fused": 0}
    real = fc.fused.conv2d

    def counting(*a, **k):
        n["fused"] += 1
        return real(*a, **k)

    monkeypatch.setattr(fc.fused, "conv2d", counting)
    return n


def _random_net(rng, dtype):
    C = int(rng.integers(1, 6))
    layers = []
    for _ in range(int(rng.integers(1, 4))):
        OC = int(rng.integers(1, 7))
        g = int(rng.choice([d for d in range(1, min(C, OC) + 1) if C % d == 0 and OC % d == 0]))
        k = int(rng.choice([1, 3]))
        layers += [nn.Conv2d(C, OC, k, padding=k // 2, groups=g, bias=bool(rng.random() < .5),
                             dtype=dtype, generator=int(rng.integers(1 << 30))),
                   nn.BatchNorm2d(OC, affine=bool(rng.random() < 0.8), dtype=dtype)]
        r = rng.random()
        if r < 0.4:
            layers.append(nn.ReLU())
        elif r < 0.7:
            layers.append(nn.ReLU6())
        C = OC
    body = [(f"s{i}", m) for i, m in enumerate(layers)]
    shortcut = nn.Conv2d(layers[0].in_channels, C, 1, dtype=dtype) if rng.random() < 0.5 \
        else None
    if shortcut is None and layers[0].in_channels != C:
        shortcut = nn.Conv2d(layers[0].in_channels, C, 1, dtype=dtype)
    act = [None, nn.ReLU(), nn.ReLU6()][int(rng.integers(3))]
    # a residual block, then the same layers again as a plain sequence
    again = [nn.Conv2d(C, C, 3, padding=1, dtype=dtype), nn.BatchNorm2d(C, dtype=dtype),
             nn.ReLU6()]
    return nn.Sequential(nn.Residual(body, shortcut, act), *again), layers[0].in_channels


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(10))
def test_random_nets_fused_equal_unfused(backend, seed):
    rng = np.random.default_rng(seed)
    dtype = np.float32 if seed % 3 else np.float64
    net, C = _random_net(rng, dtype)
    _randomise_bn(net, rng)
    net.eval().set_backend(backend)
    x = rng.standard_normal((int(rng.integers(1, 3)), C, 9, 7)).astype(dtype)
    a, b = _both(net, x)
    assert a.dtype == b.dtype and a.shape == b.shape
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(b, a, rtol=tol, atol=tol * (1 + np.abs(a).max()))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_models_fused_equal_unfused(name, monkeypatch):
    rng = np.random.default_rng(3)
    model = models.get_model(name, generator=0)
    _randomise_bn(model, rng)
    model.eval()
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    a, _ = _both(model, x)
    n = _calls(monkeypatch)
    b = model(x)
    assert n["fused"] > 10  # the conv + BN (+ ReLU) pairs ran fused
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())


def test_resnet_block_fuses_its_add(monkeypatch):
    rng = np.random.default_rng(4)
    model = models.get_model("resnet18", generator=0)
    _randomise_bn(model, rng)
    model.eval()
    seen = []
    real = fc.fused.conv2d
    monkeypatch.setattr(fc.fused, "conv2d",
                        lambda *a, **k: seen.append(k.get("residual") is not None) or real(*a, **k))
    model(rng.standard_normal((1, 3, 32, 32)).astype(np.float32))
    assert sum(seen) == 8  # one per BasicBlock


def test_inverted_residual_fuses_its_add(monkeypatch):
    # MobileNetV2's residual body is one Sequential: its last conv + BN take the add
    rng = np.random.default_rng(6)
    model = models.get_model("mobilenet_v2", generator=0)
    _randomise_bn(model, rng)
    model.eval()
    x = rng.standard_normal((1, 3, 64, 64)).astype(np.float32)
    a, _ = _both(model, x)
    seen = []
    real = fc.fused.conv2d
    monkeypatch.setattr(fc.fused, "conv2d",
                        lambda *a, **k: seen.append(k.get("residual") is not None) or real(*a, **k))
    b = model(x)
    assert sum(seen) == 10  # the stride-1 blocks whose input and output channels agree
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())
    rows = fc.cpu_info(model, (3, 64, 64))["layers"]
    assert sum("residual add" in r["fused"] for r in rows) == 10


def test_no_fusion_in_training_or_when_inputs_are_kept(monkeypatch):
    rng = np.random.default_rng(5)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    _randomise_bn(net, rng)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    n = _calls(monkeypatch)
    net.train()
    y_train = net(x)
    assert n["fused"] == 0
    net.eval()
    y_eval = net(x)
    assert n["fused"] == 1
    assert not np.allclose(y_train, y_eval)  # batch statistics in training, running ones now
    net.retain_inputs()
    y = net(x)
    assert n["fused"] == 1
    np.testing.assert_allclose(y, y_eval, rtol=1e-5, atol=1e-5)
    g = net.backward(np.ones_like(y))  # the retained inputs are there
    assert g.shape == x.shape
    net.retain_inputs(False)
    net(x)
    assert n["fused"] == 2


def test_set_fusion_rejects_non_bool():
    with pytest.raises(TypeError, match="set_fusion: enabled must be a bool"):
        _fusion.set_fusion("yes")
