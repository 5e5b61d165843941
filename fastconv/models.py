"""Classic image classifiers built from :mod:`fastconv.nn`, with torchvision's architectures
and module names, so torchvision state_dict keys (``features.0.weight``,
``layer1.0.downsample.1.running_mean``, ...) load unchanged.

=============  ===========  ==================================================
function       parameters   architecture (torchvision's)
=============  ===========  ==================================================
alexnet        61,100,840   5 convs (11x11/4 first), 3 max pools, 3 linears
vgg16          138,357,544  13 3x3 convs in 5 stages, each ending in a 2x2 pool
resnet18       11,689,512   BasicBlock x [2, 2, 2, 2]
resnet50       25,557,032   Bottleneck x [3, 4, 6, 3], stride on the 3x3 conv
mobilenet_v2   3,504,872    inverted residuals, width 1.0, ReLU6
=============  ===========  ==================================================

Where torchvision calls a function rather than a module (``torch.flatten``; MobileNetV2's
``adaptive_avg_pool2d``), the model has a parameter-free module ``flatten`` / ``pool``
instead; it adds no state_dict key. Weights are initialised as torchvision initialises
them (``generator``: a numpy Generator or int seed); ``initialize=False`` leaves
zero-filled arrays, which costs no memory until written (useful for counting and
summaries). Parameter counts above are what ``model.num_parameters()`` returns; they are
checked in tests/test_models.py, not hard-coded here.

>>> from fastconv import models
>>> models.resnet18(initialize=False).num_parameters()
11689512
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from typing import Any, Callable, Dict, List

import numpy as np

from . import _shapes, nn
from .nn import init as _init

__all__ = ["MODELS", "alexnet", "get_model", "mobilenet_v2", "model_key", "resnet18",
           "resnet50", "vgg16"]


def _conv(cin, cout, k, stride=1, padding=0, groups=1, bias=True, dtype=np.float32):
    return nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=bias, dtype=dtype,
                     initialize=False)


def _linear(cin, cout, dtype=np.float32):
    return nn.Linear(cin, cout, dtype=dtype, initialize=False)


def _num_classes(value: Any) -> int:
    return _shapes.as_int(value, "num_classes", minimum=1)


def _initialize(value: Any) -> bool:
    return _shapes.as_bool(value, "initialize")


def _init_torch_default(model: nn.Module, gen: np.random.Generator) -> None:
    for _, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.reset_parameters(gen)


def _init_kaiming_fan_out(model: nn.Module, gen: np.random.Generator, linear: str) -> None:
    """torchvision's VGG / ResNet / MobileNetV2 init: convs kaiming_normal(fan_out, relu) with
    zero bias; BN weight 1, bias 0; linears N(0, 0.01) with zero bias (``linear="normal"``) or
    torch's default (``linear="default"``)."""
    for _, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            _init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
            if m.bias is not None:
                _init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
        elif isinstance(m, nn.Linear):
            if linear == "normal":
                _init.normal_(m.weight, 0.0, 0.01, generator=gen)
                if m.bias is not None:
                    _init.zeros_(m.bias)
            else:
                m.reset_parameters(gen)


# ---------------------------------------------------------------------------- AlexNet


def alexnet(num_classes: int = 1000, *, dropout: float = 0.5, generator: Any = None,
            initialize: bool = True, dtype: Any = np.float32) -> nn.Sequential:
    """AlexNet as torchvision builds it (the one-GPU variant: 64-192-384-256-256 channels)."""
    nc = _num_classes(num_classes)
    initialize = _initialize(initialize)
    features = nn.Sequential(
        _conv(3, 64, 11, 4, 2, dtype=dtype), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        _conv(64, 192, 5, padding=2, dtype=dtype), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        _conv(192, 384, 3, padding=1, dtype=dtype), nn.ReLU(inplace=True),
        _conv(384, 256, 3, padding=1, dtype=dtype), nn.ReLU(inplace=True),
        _conv(256, 256, 3, padding=1, dtype=dtype), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
    )
    classifier = nn.Sequential(
        nn.Dropout(dropout), _linear(256 * 6 * 6, 4096, dtype), nn.ReLU(inplace=True),
        nn.Dropout(dropout), _linear(4096, 4096, dtype), nn.ReLU(inplace=True),
        _linear(4096, nc, dtype),
    )
    model = nn.Sequential(OrderedDict(
        features=features, avgpool=nn.AdaptiveAvgPool2d((6, 6)), flatten=nn.Flatten(1),
        classifier=classifier,
    ))
    if initialize:
        _init_torch_default(model, _init.as_generator(generator))
    return model


# ---------------------------------------------------------------------------- VGG-16


_VGG16: List[Any] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"]


def vgg16(num_classes: int = 1000, *, dropout: float = 0.5, generator: Any = None,
          initialize: bool = True, dtype: Any = np.float32) -> nn.Sequential:
    """VGG-16 (configuration D, no batch norm) as torchvision builds it."""
    nc = _num_classes(num_classes)
    initialize = _initialize(initialize)
    layers: List[nn.Module] = []
    cin = 3
    for v in _VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [_conv(cin, v, 3, padding=1, dtype=dtype), nn.ReLU(inplace=True)]
            cin = v
    classifier = nn.Sequential(
        _linear(512 * 7 * 7, 4096, dtype), nn.ReLU(True), nn.Dropout(dropout),
        _linear(4096, 4096, dtype), nn.ReLU(True), nn.Dropout(dropout),
        _linear(4096, nc, dtype),
    )
    model = nn.Sequential(OrderedDict(
        features=nn.Sequential(*layers), avgpool=nn.AdaptiveAvgPool2d((7, 7)),
        flatten=nn.Flatten(1), classifier=classifier,
    ))
    if initialize:
        _init_kaiming_fan_out(model, _init.as_generator(generator), linear="normal")
    return model


# ---------------------------------------------------------------------------- ResNet


def _basic_block(cin: int, planes: int, stride: int, dtype) -> nn.Residual:
    relu = nn.ReLU(inplace=True)
    steps = [
        ("conv1", _conv(cin, planes, 3, stride, 1, bias=False, dtype=dtype)),
        ("bn1", nn.BatchNorm2d(planes, dtype=dtype)), ("relu", relu),
        ("conv2", _conv(planes, planes, 3, 1, 1, bias=False, dtype=dtype)),
        ("bn2", nn.BatchNorm2d(planes, dtype=dtype)),
    ]
    return nn.Residual(steps, _downsample(cin, planes, stride, dtype), relu)


def _bottleneck(cin: int, planes: int, stride: int, dtype) -> nn.Residual:
    relu = nn.ReLU(inplace=True)
    out = planes * 4
    steps = [
        ("conv1", _conv(cin, planes, 1, bias=False, dtype=dtype)),
        ("bn1", nn.BatchNorm2d(planes, dtype=dtype)), ("relu", relu),
        ("conv2", _conv(planes, planes, 3, stride, 1, bias=False, dtype=dtype)),
        ("bn2", nn.BatchNorm2d(planes, dtype=dtype)), ("relu", relu),
        ("conv3", _conv(planes, out, 1, bias=False, dtype=dtype)),
        ("bn3", nn.BatchNorm2d(out, dtype=dtype)),
    ]
    return nn.Residual(steps, _downsample(cin, out, stride, dtype), relu)


def _downsample(cin: int, cout: int, stride: int, dtype):
    """A 1x1 strided projection + BN when the block changes size or channels, else None."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv(cin, cout, 1, stride, bias=False, dtype=dtype),
                         nn.BatchNorm2d(cout, dtype=dtype))


def _resnet(block: Callable, expansion: int, counts: List[int], num_classes: Any,
            generator: Any, initialize: bool, dtype: Any) -> nn.Sequential:
    nc = _num_classes(num_classes)
    initialize = _initialize(initialize)
    parts: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=_conv(3, 64, 7, 2, 3, bias=False, dtype=dtype),
        bn1=nn.BatchNorm2d(64, dtype=dtype), relu=nn.ReLU(inplace=True),
        maxpool=nn.MaxPool2d(3, 2, 1),
    )
    cin = 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts)):
        blocks = []
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            blocks.append(block(cin, planes, stride, dtype))
            cin = planes * expansion
        parts[f"layer{i + 1}"] = nn.Sequential(*blocks)
    parts["avgpool"] = nn.AdaptiveAvgPool2d((1, 1))
    parts["flatten"] = nn.Flatten(1)
    parts["fc"] = _linear(512 * expansion, nc, dtype)
    model = nn.Sequential(parts)
    if initialize:
        _init_kaiming_fan_out(model, _init.as_generator(generator), linear="default")
    return model


def resnet18(num_classes: int = 1000, *, generator: Any = None, initialize: bool = True,
             dtype: Any = np.float32) -> nn.Sequential:
    """ResNet-18 as torchvision builds it: BasicBlocks [2, 2, 2, 2]."""
    return _resnet(_basic_block, 1, [2, 2, 2, 2], num_classes, generator, initialize, dtype)


def resnet50(num_classes: int = 1000, *, generator: Any = None, initialize: bool = True,
             dtype: Any = np.float32) -> nn.Sequential:
    """ResNet-50 as torchvision builds it: Bottlenecks [3, 4, 6, 3], stride on the 3x3 conv."""
    return _resnet(_bottleneck, 4, [3, 4, 6, 3], num_classes, generator, initialize, dtype)


# ---------------------------------------------------------------------------- MobileNetV2


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never going down by more than 10%."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


def _conv_bn_relu6(cin, cout, k=3, stride=1, groups=1, dtype=np.float32) -> nn.Sequential:
    return nn.Sequential(
        _conv(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False, dtype=dtype),
        nn.BatchNorm2d(cout, dtype=dtype), nn.ReLU6(inplace=True),
    )


def _inverted_residual(cin: int, cout: int, stride: int, t: int, dtype) -> nn.Module:
    hidden = int(round(cin * t))
    layers: List[nn.Module] = []
    if t != 1:
        layers.append(_conv_bn_relu6(cin, hidden, 1, dtype=dtype))
    layers += [
        _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden, dtype=dtype),
        _conv(hidden, cout, 1, bias=False, dtype=dtype),
        nn.BatchNorm2d(cout, dtype=dtype),
    ]
    body = OrderedDict(conv=nn.Sequential(*layers))
    if stride == 1 and cin == cout:
        return nn.Residual(body)
    return nn.Sequential(body)


_MBV2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
         (6, 160, 3, 2), (6, 320, 1, 1)]  # expansion t, channels c, repeats n, stride s


def mobilenet_v2(num_classes: int = 1000, *, width_mult: float = 1.0, dropout: float = 0.2,
                 generator: Any = None, initialize: bool = True,
                 dtype: Any = np.float32) -> nn.Sequential:
    """MobileNetV2 as torchvision builds it (round_nearest 8). ``width_mult`` (a finite
    number > 0) scales every layer's channels."""
    nc = _num_classes(num_classes)
    initialize = _initialize(initialize)
    if isinstance(width_mult, (bool, np.bool_)) or not isinstance(width_mult, numbers.Real):
        raise TypeError(f"width_mult must be a real number, got {width_mult!r} "
                        f"({type(width_mult).__name__})")
    width_mult = float(width_mult)
    if not math.isfinite(width_mult) or width_mult <= 0:
        raise ValueError(f"width_mult must be a finite number > 0, got {width_mult!r}")
    if 1280 * width_mult > _shapes.MAX_PARAM:
        raise ValueError(f"width_mult is too large: {width_mult!r} gives more than "
                         f"{_shapes.MAX_PARAM} channels")
    cin = _make_divisible(32 * width_mult)
    last = _make_divisible(1280 * max(1.0, width_mult))
    features: List[nn.Module] = [_conv_bn_relu6(3, cin, 3, 2, dtype=dtype)]
    for t, c, n, s in _MBV2:
        cout = _make_divisible(c * width_mult)
        for i in range(n):
            features.append(_inverted_residual(cin, cout, s if i == 0 else 1, t, dtype))
            cin = cout
    features.append(_conv_bn_relu6(cin, last, 1, dtype=dtype))
    model = nn.Sequential(OrderedDict(
        features=nn.Sequential(*features), pool=nn.AdaptiveAvgPool2d((1, 1)),
        flatten=nn.Flatten(1),
        classifier=nn.Sequential(nn.Dropout(dropout), _linear(last, nc, dtype)),
    ))
    if initialize:
        _init_kaiming_fan_out(model, _init.as_generator(generator), linear="normal")
    return model


#: name -> constructor, for the CLI and :func:`get_model`.
MODELS: Dict[str, Callable[..., nn.Module]] = {
    "alexnet": alexnet,
    "vgg16": vgg16,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
}


def model_key(name: str) -> str:
    """The :data:`MODELS` key of ``name``: case and "-" / "_" do not matter, and
    "mobilenetv2" is mobilenet_v2 (ValueError for an unknown name)."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {name!r}")
    key = name.lower().replace("-", "_")
    if key == "mobilenetv2":
        key = "mobilenet_v2"
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(MODELS)}")
    return key


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by name (one of :data:`MODELS`, as :func:`model_key` reads it)."""
    return MODELS[model_key(name)](**kwargs)
