"""fastconv.models: parameter counts, torchvision key names, and outputs equal to the same
architectures written in plain torch.nn (no torchvision needed) with the same weights;
the builders' arguments (width_mult, initialize) checked."""

import numpy as np
import pytest

from fastconv import models, nn
from fastconv.benchmark.models import TORCH_TWINS

# published torchvision parameter counts (torch's count: BN running statistics are buffers)
PUBLISHED_PARAMS = {
    "alexnet": 61_100_840,
    "vgg16": 138_357_544,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_count(name):
    m = models.get_model(name, initialize=False)
    counted = sum(int(p.size) for p in m.parameters())
    assert counted == m.num_parameters() == PUBLISHED_PARAMS[name]


def test_get_model_errors():
    with pytest.raises(ValueError, match="alexnet, vgg16, resnet18, resnet50, mobilenet_v2"):
        models.get_model("resnet34")
    with pytest.raises(ValueError, match="num_classes"):
        models.resnet18(num_classes=0)
    assert models.get_model("MobileNetV2", initialize=False, num_classes=10).num_parameters() \
        == PUBLISHED_PARAMS["mobilenet_v2"] - 1281 * 990


def test_torchvision_init_rules():
    m = models.resnet18(generator=0)
    w = m.layer1[0].conv1.weight  # kaiming_normal, fan_out = 64 * 9, relu gain
    assert w.std() == pytest.approx(np.sqrt(2 / (64 * 9)), rel=0.03)
    assert np.all(m.bn1.weight == 1) and not m.bn1.bias.any()
    assert np.array_equal(w, models.resnet18(generator=0).layer1[0].conv1.weight)
    mb = models.mobilenet_v2(generator=1)
    assert mb.classifier[1].weight.std() == pytest.approx(0.01, rel=0.03)


# ---------------------------------------------------------------------------- plain torch.nn


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_state_dict_keys_and_shapes_match_torch(name):
    torch = pytest.importorskip("torch")
    with torch.device("meta"):  # no memory for the weights
        theirs = TORCH_TWINS[name](torch)
    ours = models.get_model(name, initialize=False)
    ref = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == ref
    assert list(ours.state_dict()) == list(ref)
    assert sum(p.numel() for p in theirs.parameters()) == ours.num_parameters()


def _randomise_bn(torch, model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)
                m.running_mean.uniform_(-0.2, 0.2, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)


@pytest.mark.parametrize("name,hw", [("resnet18", 64), ("mobilenet_v2", 64), ("resnet50", 32),
                                     ("alexnet", 64)])
def test_outputs_match_torch(name, hw):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = TORCH_TWINS[name](torch).eval()
    _randomise_bn(torch, theirs)
    ours = models.get_model(name, initialize=False)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 3, hw, hw)).astype(np.float32)
    with torch.no_grad():
        ref = theirs(torch.from_numpy(x)).numpy()
    y = ours(x)
    assert y.shape == ref.shape == (2, 1000) and y.dtype == np.float32
    scale = np.abs(ref).max()
    np.testing.assert_allclose(y, ref, rtol=1e-3, atol=1e-4 * scale)
    assert not np.allclose(y[0], y[1])  # the check is not vacuous


def test_vgg16_first_stage_matches_torch():
    """VGG-16's full weights are 0.5 GB; its first stage is checked, the rest by keys."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ours = models.vgg16(initialize=False)
    stage = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.MaxPool2d(2, 2))
    sub = nn.Sequential(*[ours.features[i] for i in range(5)])
    sub.load_state_dict({k: v.numpy() for k, v in stage.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = stage(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sub(x), ref, rtol=1e-4, atol=1e-5)
    assert ours.features[0].weight.any()  # loaded through the shared layer objects


# ---------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("value, exc", [
    (float("inf"), ValueError), (float("nan"), ValueError), (-1.0, ValueError), (0, ValueError),
    (1e12, ValueError), (True, TypeError), ("1", TypeError), (None, TypeError),
])
def test_width_mult_is_checked(value, exc):
    with pytest.raises(exc, match="width_mult"):
        models.mobilenet_v2(width_mult=value, initialize=False)


def test_width_mult_accepts_numbers():
    assert models.mobilenet_v2(width_mult=np.float32(0.5), initialize=False).num_parameters() == (
        models.mobilenet_v2(width_mult=0.5, initialize=False).num_parameters())


@pytest.mark.parametrize("build", [models.alexnet, models.vgg16, models.resnet18,
                                   models.resnet50, models.mobilenet_v2])
@pytest.mark.parametrize("value", ["no", None, 0, 1])
def test_initialize_must_be_a_bool(build, value):
    with pytest.raises(TypeError, match="initialize"):
        build(initialize=value)
