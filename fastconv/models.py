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
capsnet        8,215,568    Sabour et al. 2017: 9x9 conv, primary capsules, dynamic
                            routing to 10 x 16-D, decoder (6,804,224 without it)
=============  ===========  ==================================================

Fully convolutional (no classifier; :func:`fastconv.dask.predict` tiles them exactly):
``unet`` (Ronneberger et al. 2015 with same-padded convolutions; 31,031,810 parameters at
its defaults) and ``resnet50_trunk`` (resnet50 without avgpool / fc: 23,508,032, jump 32).

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

import math
import numbers
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import _shapes, nn
from .nn import init as _init
from .nn.module import _factory

__all__ = ["MODELS", "alexnet", "capsnet", "get_model", "mobilenet_v2", "model_key", "resnet18",
           "resnet50", "resnet50_trunk", "unet", "vgg16"]


def _conv(cin, cout, k, stride=1, padding=0, groups=1, bias=True, dtype=np.float32):
    return nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=bias, dtype=dtype,
                     initialize=False)


def _linear(cin, cout, dtype=np.float32):
    return nn.Linear(cin, cout, dtype=dtype, initialize=False)


def _num_classes(value: Any, op: str) -> int:
    return _shapes.as_int(value, "num_classes", minimum=1, op=op)


def _initialize(value: Any, op: str) -> bool:
    return _shapes.as_bool(value, "initialize", op=op)


def _common(op: str, num_classes: Any, initialize: Any, generator: Any, dtype: Any,
            dropout: Any = 0.0) -> Tuple[int, Optional[np.random.Generator]]:
    """Check the arguments every model function takes, naming the model function ``op``:
    returns (num_classes, the generator to initialise with, None without initialisation)."""
    nc = _num_classes(num_classes, op)
    _factory(dtype, op)
    if isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, numbers.Real):
        raise TypeError(f"{op}: dropout must be a number, got {dropout!r}")
    if not 0 <= float(dropout) <= 1:
        raise ValueError(f"{op}: dropout must be between 0 and 1, got {dropout}")
    gen = _init.as_generator(generator, op) if _initialize(initialize, op) else None
    return nc, gen


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
    """AlexNet as torchvision builds it (the one-GPU variant: 64-192-384-256-256 channels).

    Children ``features`` (5 convolutions, 11x11 stride 4 first, and 3 max pools),
    ``avgpool`` (adaptive, 6x6), ``flatten`` and ``classifier`` (dropout and 3 linears); 61.1M
    parameters with 1000 classes.

    Parameters
    ----------
    num_classes : int, default 1000
        Outputs of the classifier.
    dropout : float, default 0.5
        The classifier's dropout probability, in [0, 1].
    generator : numpy.random.Generator, int or None, default None
        Draws the initial weights (an int is a seed).
    initialize : bool, default True
        Initialise as torchvision does; False leaves zero-filled arrays, which cost no memory
        until written (enough for counting and summaries).
    dtype : floating dtype, default numpy.float32
        Of the parameters.

    Returns
    -------
    fastconv.nn.Sequential
        Input (N, 3, H, W) (224x224 for ImageNet), output (N, num_classes).

    Examples
    --------
    >>> from fastconv import models
    >>> net = models.alexnet(initialize=False)
    >>> net.num_parameters(), net.output_shape((1, 3, 224, 224))
    (61100840, (1, 1000))
    """
    nc, gen = _common("alexnet", num_classes, initialize, generator, dtype, dropout)
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
    if gen is not None:
        _init_torch_default(model, gen)
    return model


# ---------------------------------------------------------------------------- VGG-16


_VGG16: List[Any] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"]


def vgg16(num_classes: int = 1000, *, dropout: float = 0.5, generator: Any = None,
          initialize: bool = True, dtype: Any = np.float32) -> nn.Sequential:
    """VGG-16 (configuration D, no batch norm) as torchvision builds it.

    Children ``features`` (13 3x3 convolutions in 5 stages, each ending in a 2x2 max pool),
    ``avgpool`` (adaptive, 7x7), ``flatten`` and ``classifier``; 138.4M parameters with 1000
    classes.

    Parameters
    ----------
    num_classes : int, default 1000
        Outputs of the classifier.
    dropout : float, default 0.5
        The classifier's dropout probability, in [0, 1].
    generator : numpy.random.Generator, int or None, default None
        Draws the initial weights (an int is a seed).
    initialize : bool, default True
        Initialise as torchvision does; False leaves zero-filled arrays, which cost no memory
        until written (enough for counting and summaries).
    dtype : floating dtype, default numpy.float32
        Of the parameters.

    Returns
    -------
    fastconv.nn.Sequential
        Input (N, 3, H, W) (224x224 for ImageNet), output (N, num_classes).

    Examples
    --------
    >>> from fastconv import models
    >>> net = models.vgg16(num_classes=10, initialize=False)
    >>> net.classifier[-1].weight.shape, net.output_shape((2, 3, 224, 224))
    ((10, 4096), (2, 10))
    """
    nc, gen = _common("vgg16", num_classes, initialize, generator, dtype, dropout)
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
    if gen is not None:
        _init_kaiming_fan_out(model, gen, linear="normal")
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


def _resnet(op: str, block: Callable, expansion: int, counts: List[int], num_classes: Any,
            generator: Any, initialize: bool, dtype: Any) -> nn.Sequential:
    nc, gen = _common(op, num_classes, initialize, generator, dtype)
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
    if gen is not None:
        _init_kaiming_fan_out(model, gen, linear="default")
    return model


def resnet18(num_classes: int = 1000, *, generator: Any = None, initialize: bool = True,
             dtype: Any = np.float32) -> nn.Sequential:
    """ResNet-18 as torchvision builds it: BasicBlocks [2, 2, 2, 2].

    Children ``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1`` .. ``layer4`` (Residual
    blocks, keys as torchvision's), ``avgpool``, ``flatten``, ``fc``; 11.7M parameters with
    1000 classes.

    Parameters
    ----------
    num_classes : int, default 1000
        Outputs of the classifier.
    generator : numpy.random.Generator, int or None, default None
        Draws the initial weights (an int is a seed).
    initialize : bool, default True
        Initialise as torchvision does; False leaves zero-filled arrays, which cost no memory
        until written (enough for counting and summaries).
    dtype : floating dtype, default numpy.float32
        Of the parameters.

    Returns
    -------
    fastconv.nn.Sequential
        Input (N, 3, H, W) (224x224 for ImageNet), output (N, num_classes).

    Examples
    --------
    >>> from fastconv import models
    >>> net = models.resnet18(num_classes=10, initialize=False)
    >>> net.fc.weight.shape, "layer1.0.conv1.weight" in net.state_dict()
    ((10, 512), True)
    """
    return _resnet("resnet18", _basic_block, 1, [2, 2, 2, 2], num_classes, generator,
                   initialize, dtype)


def resnet50(num_classes: int = 1000, *, generator: Any = None, initialize: bool = True,
             dtype: Any = np.float32) -> nn.Sequential:
    """ResNet-50 as torchvision builds it: Bottlenecks [3, 4, 6, 3], stride on the 3x3 conv.

    Children as :func:`resnet18`'s; 25.6M parameters with 1000 classes.

    Parameters
    ----------
    num_classes : int, default 1000
        Outputs of the classifier.
    generator : numpy.random.Generator, int or None, default None
        Draws the initial weights (an int is a seed).
    initialize : bool, default True
        Initialise as torchvision does; False leaves zero-filled arrays, which cost no memory
        until written (enough for counting and summaries).
    dtype : floating dtype, default numpy.float32
        Of the parameters.

    Returns
    -------
    fastconv.nn.Sequential
        Input (N, 3, H, W) (224x224 for ImageNet), output (N, num_classes).

    Examples
    --------
    >>> from fastconv import models
    >>> net = models.resnet50(initialize=False)
    >>> net.num_parameters(), net.output_shape((1, 3, 224, 224))
    (25557032, (1, 1000))
    """
    return _resnet("resnet50", _bottleneck, 4, [3, 4, 6, 3], num_classes, generator,
                   initialize, dtype)


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
    """MobileNetV2 as torchvision builds it (inverted residuals, ReLU6, round_nearest 8).

    Children ``features``, ``pool`` (adaptive average, 1x1), ``flatten``, ``classifier``;
    3.5M parameters with width 1 and 1000 classes.

    Parameters
    ----------
    num_classes : int, default 1000
        Outputs of the classifier.
    width_mult : float, default 1.0
        A finite number > 0 scaling every layer's channels (rounded to multiples of 8).
    dropout : float, default 0.2
        The classifier's dropout probability, in [0, 1].
    generator : numpy.random.Generator, int or None, default None
        Draws the initial weights (an int is a seed).
    initialize : bool, default True
        Initialise as torchvision does; False leaves zero-filled arrays, which cost no memory
        until written (enough for counting and summaries).
    dtype : floating dtype, default numpy.float32
        Of the parameters.

    Returns
    -------
    fastconv.nn.Sequential
        Input (N, 3, H, W) (224x224 for ImageNet), output (N, num_classes).

    Examples
    --------
    >>> from fastconv import models
    >>> models.mobilenet_v2(initialize=False).num_parameters()
    3504872
    >>> models.mobilenet_v2(width_mult=0.5, initialize=False).num_parameters()
    1968680
    """
    op = "mobilenet_v2"
    nc, gen = _common(op, num_classes, initialize, generator, dtype, dropout)
    if isinstance(width_mult, (bool, np.bool_)) or not isinstance(width_mult, numbers.Real):
        raise TypeError(f"{op}: width_mult must be a real number, got {width_mult!r} "
                        f"({type(width_mult).__name__})")
    width_mult = float(width_mult)
    if not math.isfinite(width_mult) or width_mult <= 0:
        raise ValueError(f"{op}: width_mult must be a finite number > 0, got {width_mult!r}")
    if 1280 * width_mult > _shapes.MAX_PARAM:
        raise ValueError(f"{op}: width_mult is too large: {width_mult!r} gives more than "
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
    if gen is not None:
        _init_kaiming_fan_out(model, gen, linear="normal")
    return model


# ---------------------------------------------------------------------------- fully convolutional


def resnet50_trunk(*, generator: Any = None, initialize: bool = True,
                   dtype: Any = np.float32) -> nn.Sequential:
    """ResNet-50 without ``avgpool`` and ``fc``: a feature extractor whose output keeps its
    spatial structure.

    2048 channels, jump 32 (one output per 32x32 input pixels). The children and keys are
    resnet50's (``conv1``, ``bn1``, ``layer1`` .. ``layer4``), so a torchvision ResNet-50
    state_dict loads with ``strict=False`` (its ``fc.*`` keys are left over); with the same
    ``generator`` the weights are resnet50's.

    Parameters
    ----------
    generator : numpy.random.Generator, int or None, default None
        Draws the initial weights (an int is a seed).
    initialize : bool, default True
        Initialise as torchvision does; False leaves zero-filled arrays, which cost no memory
        until written (enough for counting and summaries).
    dtype : floating dtype, default numpy.float32
        Of the parameters.

    Returns
    -------
    fastconv.nn.Sequential
        Input (N, 3, H, W), output (N, 2048, ceil(H/32), ceil(W/32)).

    Examples
    --------
    >>> from fastconv import models
    >>> trunk = models.resnet50_trunk(initialize=False)
    >>> trunk.num_parameters(), trunk.output_shape((1, 3, 224, 224))
    (23508032, (1, 2048, 7, 7))
    """
    full = _resnet("resnet50_trunk", _bottleneck, 4, [3, 4, 6, 3], 1000, generator, initialize,
                   dtype)
    return nn.Sequential(OrderedDict(
        (k, m) for k, m in full.named_children() if k not in ("avgpool", "flatten", "fc")))


def _double_conv(cin: int, cout: int, dtype) -> nn.Sequential:
    """Two same-padded 3x3 convolutions, each followed by ReLU."""
    return nn.Sequential(OrderedDict(
        conv1=_conv(cin, cout, 3, padding=1, dtype=dtype), relu1=nn.ReLU(inplace=True),
        conv2=_conv(cout, cout, 3, padding=1, dtype=dtype), relu2=nn.ReLU(inplace=True),
    ))


def _unet_level(cin: int, base: int, level: int, depth: int, dtype) -> nn.Sequential:
    """Level ``level`` of the U: encode, then [skip | pool -> deeper levels -> up-conv]
    joined along channels, then decode. The bottom level only encodes."""
    c = base * 2**level
    if level == depth:
        return _double_conv(cin, c, dtype)
    down = nn.Sequential(OrderedDict(
        pool=nn.MaxPool2d(2),
        inner=_unet_level(c, base, level + 1, depth, dtype),
        up=nn.ConvTranspose2d(2 * c, c, 2, 2, dtype=dtype, initialize=False),
    ))
    return nn.Sequential(OrderedDict(
        encode=_double_conv(cin, c, dtype),
        skip=nn.Concat(OrderedDict(identity=nn.Identity(), down=down)),
        decode=_double_conv(2 * c, c, dtype),
    ))


def unet(in_channels: int = 3, num_classes: int = 2, base: int = 64, depth: int = 4, *,
         generator: Any = None, initialize: bool = True, dtype: Any = np.float32) -> nn.Sequential:
    """U-Net (Ronneberger et al. 2015) with same-padded 3x3 convolutions.

    ``depth`` 2x2 max pools down and as many 2x2 stride-2 transposed convolutions up; level
    l has ``base * 2**l`` channels (64, 128, 256, 512 and 1024 at the bottom by default);
    each up-convolution halves the channels and its output is joined to the encoder's
    feature map of the same level (an ``nn.Concat`` of the skip and the deeper path), then
    two 3x3 convolutions; a 1x1 convolution maps ``base`` channels to ``num_classes``. The
    network is fully convolutional (output jump 1, coarsest inner grid 2**depth), so
    :func:`fastconv.dask.predict` tiles it exactly. Weights: torch's default initialisation.

    Parameters
    ----------
    in_channels : int, default 3
    num_classes : int, default 2
        Output channels.
    base : int, default 64
        Channels of the first level.
    depth : int, default 4
        Pools down (and up-convolutions up), >= 0.
    generator : numpy.random.Generator, int or None, default None
        Draws the initial weights (an int is a seed).
    initialize : bool, default True
        Initialise as torchvision does; False leaves zero-filled arrays, which cost no memory
        until written (enough for counting and summaries).
    dtype : floating dtype, default numpy.float32
        Of the parameters.

    Returns
    -------
    fastconv.nn.Sequential
        Input (N, in_channels, H, W) with H and W multiples of 2**depth (each level halves
        and doubles the size), output (N, num_classes, H, W).

    Examples
    --------
    >>> from fastconv import models
    >>> models.unet(1, 2, base=8, depth=2, initialize=False).output_shape((1, 1, 32, 32))
    (1, 2, 32, 32)
    >>> models.unet(initialize=False).num_parameters()
    31031810
    """
    op = "unet"
    cin = _shapes.as_int(in_channels, "in_channels", minimum=1, op=op)
    nc, gen = _common(op, num_classes, initialize, generator, dtype)
    b = _shapes.as_int(base, "base", minimum=1, op=op)
    dep = _shapes.as_int(depth, "depth", minimum=0, op=op)
    if b * 2**dep > _shapes.MAX_PARAM:
        raise ValueError(f"{op}: base is too large for depth: base * 2**depth = {b * 2**dep} "
                         f"(base={b}, depth={dep}) is more than {_shapes.MAX_PARAM} channels")
    model = nn.Sequential(OrderedDict(
        body=_unet_level(cin, b, 0, dep, dtype), head=_conv(b, nc, 1, dtype=dtype),
    ))
    if gen is not None:
        for _, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.reset_parameters(gen)
    return model


# ---------------------------------------------------------------------------- capsules


def capsnet(input_shape: Any = (1, 28, 28), num_classes: int = 10, routing_iterations: int = 3,
            decoder: bool = True, *, conv_channels: int = 256, primary_capsules: int = 32,
            primary_dim: int = 8, digit_dim: int = 16, generator: Any = None,
            initialize: bool = True, dtype: Any = np.float32) -> nn.Module:
    """CapsNet of Sabour, Frosst and Hinton (2017) (:class:`fastconv.nn.capsule.CapsNet`).

    Conv1 256 9x9 + ReLU -> PrimaryCaps 32 x 8-D, 9x9 stride 2 (1152 capsules at 28x28) ->
    DigitCaps num_classes x 16-D, ``routing_iterations`` of dynamic routing -> decoder
    512-1024-784, sigmoid. 8,215,568 parameters, 6,804,224 with ``decoder=False`` (the
    paper's 8.2M and 6.8M). The keyword sizes shrink it (the ``fastconv demo capsnet`` lesson
    trains a small one). Conv layers start with torch's default initialisation, the capsule
    weights with N(0, 0.01^2).

    Parameters
    ----------
    input_shape : (int, int, int), default (1, 28, 28)
        (C, H, W) of the images.
    num_classes : int, default 10
    routing_iterations : int, default 3
    decoder : bool, default True
        Whether the reconstruction decoder is part of the model.
    conv_channels, primary_capsules, primary_dim, digit_dim : int
        256, 32, 8 and 16 by default: the sizes of the layers.
    generator : numpy.random.Generator, int or None, default None
    initialize : bool, default True
    dtype : floating dtype, default numpy.float32

    Returns
    -------
    fastconv.nn.Module
        A :class:`fastconv.nn.capsule.CapsNet`.

    Examples
    --------
    >>> from fastconv import models
    >>> models.capsnet(initialize=False).num_parameters()
    8215568
    """
    from .nn.capsule import CapsNet

    op = "capsnet"
    if not _shapes._is_sequence(input_shape) or len(input_shape) != 3:
        raise ValueError(f"{op}: input_shape must be (C, H, W), got {input_shape!r}")
    c, h, w = (_shapes.as_int(v, "input_shape", minimum=1, op=op) for v in input_shape)
    return CapsNet(c, (h, w), _num_classes(num_classes, op), routing_iterations, decoder,
                   conv_channels=conv_channels, primary_capsules=primary_capsules,
                   primary_dim=primary_dim, digit_dim=digit_dim, dtype=dtype,
                   generator=generator, initialize=_initialize(initialize, op))


#: name -> constructor, for the CLI and :func:`get_model`.
MODELS: Dict[str, Callable[..., nn.Module]] = {
    "alexnet": alexnet,
    "vgg16": vgg16,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "unet": unet,
    "resnet50_trunk": resnet50_trunk,
    "capsnet": capsnet,
}


def model_key(name: str) -> str:
    """The :data:`MODELS` key of a model name.

    Parameters
    ----------
    name : str
        Case and "-" / "_" do not matter, and "mobilenetv2" is mobilenet_v2.

    Returns
    -------
    str
        A key of :data:`MODELS` (ValueError for an unknown name).

    Examples
    --------
    >>> from fastconv import models
    >>> models.model_key("MobileNetV2"), models.model_key("ResNet18")
    ('mobilenet_v2', 'resnet18')
    """
    return _model_key(name, "model_key")


def _model_key(name: Any, op: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{op}: name must be a string, got {name!r}")
    key = name.lower().replace("-", "_")
    if key == "mobilenetv2":
        key = "mobilenet_v2"
    if key not in MODELS:
        raise ValueError(f"{op}: name {name!r} is an unknown model; available models: "
                         f"{', '.join(MODELS)}")
    return key


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by name.

    Parameters
    ----------
    name : str
        One of :data:`MODELS`, as :func:`model_key` reads it.
    **kwargs
        The model function's arguments.

    Returns
    -------
    fastconv.nn.Module

    Examples
    --------
    >>> from fastconv import models
    >>> models.get_model("resnet18", num_classes=10, initialize=False).fc.weight.shape
    (10, 512)
    """
    return MODELS[_model_key(name, "get_model")](**kwargs)
