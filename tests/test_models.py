"""fastconv.models: parameter counts, torchvision key names, and outputs equal to the same
architectures written in plain torch.nn (no torchvision needed) with the same weights;
the builders' arguments (width_mult, initialize) checked."""

import numpy as np
import pytest

from fastconv import models, nn

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


def _torch_archs(tnn):
    """The five architectures in plain torch.nn, module names as torchvision's."""

    class Basic(tnn.Module):
        def __init__(self, cin, planes, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU()
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or cin != planes:
                self.downsample = tnn.Sequential(tnn.Conv2d(cin, planes, 1, stride, bias=False),
                                                 tnn.BatchNorm2d(planes))

        def forward(self, x):
            y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(y + (x if self.downsample is None else self.downsample(x)))

    class Bottle(tnn.Module):
        def __init__(self, cin, planes, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, planes, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.conv2 = tnn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.conv3 = tnn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = tnn.BatchNorm2d(planes * 4)
            self.relu = tnn.ReLU()
            self.downsample = None
            if stride != 1 or cin != planes * 4:
                self.downsample = tnn.Sequential(
                    tnn.Conv2d(cin, planes * 4, 1, stride, bias=False), tnn.BatchNorm2d(planes * 4))

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return self.relu(y + (x if self.downsample is None else self.downsample(x)))

    class ResNet(tnn.Module):
        def __init__(self, block, exp, counts):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.relu = tnn.ReLU()
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
            cin = 64
            for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts)):
                blocks = []
                for j in range(n):
                    blocks.append(block(cin, planes, 2 if i and not j else 1))
                    cin = planes * exp
                setattr(self, f"layer{i + 1}", tnn.Sequential(*blocks))
            self.avgpool = tnn.AdaptiveAvgPool2d(1)
            self.fc = tnn.Linear(512 * exp, 1000)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    def cbr6(cin, cout, k=3, s=1, g=1):
        return tnn.Sequential(tnn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=g, bias=False),
                              tnn.BatchNorm2d(cout), tnn.ReLU6())

    class InvRes(tnn.Module):
        def __init__(self, cin, cout, s, t):
            super().__init__()
            hid = cin * t
            layers = ([cbr6(cin, hid, 1)] if t != 1 else []) + [
                cbr6(hid, hid, 3, s, hid), tnn.Conv2d(hid, cout, 1, bias=False),
                tnn.BatchNorm2d(cout)]
            self.conv = tnn.Sequential(*layers)
            self.res = s == 1 and cin == cout

        def forward(self, x):
            return x + self.conv(x) if self.res else self.conv(x)

    class MobileNetV2(tnn.Module):
        def __init__(self):
            super().__init__()
            feats, cin = [cbr6(3, 32, 3, 2)], 32
            for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
                for i in range(n):
                    feats.append(InvRes(cin, c, s if i == 0 else 1, t))
                    cin = c
            feats.append(cbr6(320, 1280, 1))
            self.features = tnn.Sequential(*feats)
            self.classifier = tnn.Sequential(tnn.Dropout(0.2), tnn.Linear(1280, 1000))

        def forward(self, x):
            return self.classifier(tnn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1))

    class Plain(tnn.Module):  # AlexNet and VGG: features, avgpool, classifier
        def __init__(self, features, pool, classifier):
            super().__init__()
            self.features, self.avgpool, self.classifier = features, tnn.AdaptiveAvgPool2d(pool), classifier

        def forward(self, x):
            return self.classifier(self.avgpool(self.features(x)).flatten(1))

    def alexnet():
        C, R, M = tnn.Conv2d, tnn.ReLU, tnn.MaxPool2d
        f = tnn.Sequential(C(3, 64, 11, 4, 2), R(), M(3, 2), C(64, 192, 5, padding=2), R(), M(3, 2),
                           C(192, 384, 3, padding=1), R(), C(384, 256, 3, padding=1), R(),
                           C(256, 256, 3, padding=1), R(), M(3, 2))
        c = tnn.Sequential(tnn.Dropout(), tnn.Linear(9216, 4096), R(), tnn.Dropout(),
                           tnn.Linear(4096, 4096), R(), tnn.Linear(4096, 1000))
        return Plain(f, 6, c)

    def vgg16():
        layers, cin = [], 3
        for v in [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0]:
            if v:
                layers += [tnn.Conv2d(cin, v, 3, padding=1), tnn.ReLU()]
                cin = v
            else:
                layers.append(tnn.MaxPool2d(2, 2))
        c = tnn.Sequential(tnn.Linear(25088, 4096), tnn.ReLU(), tnn.Dropout(),
                           tnn.Linear(4096, 4096), tnn.ReLU(), tnn.Dropout(), tnn.Linear(4096, 1000))
        return Plain(tnn.Sequential(*layers), 7, c)

    return {
        "alexnet": alexnet, "vgg16": vgg16,
        "resnet18": lambda: ResNet(Basic, 1, [2, 2, 2, 2]),
        "resnet50": lambda: ResNet(Bottle, 4, [3, 4, 6, 3]),
        "mobilenet_v2": MobileNetV2,
    }


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_state_dict_keys_and_shapes_match_torch(name):
    torch = pytest.importorskip("torch")
    with torch.device("meta"):  # no memory for the weights
        theirs = _torch_archs(torch.nn)[name]()
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
    theirs = _torch_archs(torch.nn)[name]().eval()
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
