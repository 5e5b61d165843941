"""Backward passes of fastconv.nn layers: torch autograd on small float64 models, central
finite differences (no torch needed), records and errors, SGD against torch.optim.SGD."""

from collections import OrderedDict

import numpy as np
import pytest
from _cases import available_engines, is_simulated

from fastconv import nn

# every engine that runs here for real (the CUDA simulator is far too slow for models)
BACKENDS = [e for e in available_engines() if not is_simulated(e) and e != "cuda"]
F64 = dict(dtype=np.float64)
# torch warns that it pads a copy for padding='same' with an even kernel; that is expected
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def _bn(c, rng, track=True):
    bn = nn.BatchNorm2d(c, track_running_stats=track, **F64)
    bn.weight[...] = rng.uniform(0.5, 1.5, c)
    bn.bias[...] = rng.normal(size=c)
    if track:
        bn.running_mean[...] = rng.normal(size=c)
        bn.running_var[...] = rng.uniform(0.5, 2.0, c)
    return bn


def plain_model(rng):
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, generator=rng, **F64), _bn(4, rng), nn.ReLU(),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(4, 6, 3, stride=2, padding=(1, 2), dilation=(1, 2), groups=2, generator=rng,
                  **F64),
        nn.ReLU6(), nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
        nn.AdaptiveAvgPool2d((2, 3)), nn.Flatten(), nn.Dropout(0.3),
        nn.Linear(36, 5, generator=rng, **F64))


def residual_model(rng):
    relu = nn.ReLU(inplace=True)  # shared by the body and the activation, as torch blocks do
    block = nn.Residual(
        [("conv1", nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=False, generator=rng, **F64)),
         ("bn1", _bn(5, rng)), ("relu", relu),
         ("conv2", nn.Conv2d(5, 5, 3, padding=1, bias=False, generator=rng, **F64)),
         ("bn2", _bn(5, rng))],
        shortcut=nn.Sequential(nn.Conv2d(3, 5, 1, stride=2, bias=False, generator=rng, **F64),
                               _bn(5, rng)),
        activation=relu)
    ident = nn.Residual(nn.Sequential(nn.Conv2d(5, 5, 3, padding=1, generator=rng, **F64),
                                      _bn(5, rng, track=False)), activation=nn.ReLU())
    return nn.Sequential(block, ident, nn.AdaptiveMaxPool2d((2, 3)), nn.Flatten(),
                         nn.Linear(30, 4, generator=rng, **F64))


def concat_model(rng):
    return nn.Sequential(
        nn.Concat(OrderedDict(
            a=nn.Conv2d(3, 2, 1, generator=rng, **F64),
            b=nn.Sequential(nn.Conv2d(3, 3, 4, padding="same", generator=rng, **F64),
                            nn.ReLU()),
            c=nn.Sequential(nn.MaxPool2d(3, 1, 1),
                            nn.Conv2d(3, 2, 3, padding=1, padding_mode="reflect",
                                      generator=rng, **F64)))),
        nn.ConvTranspose2d(7, 4, 3, stride=2, padding=1, output_padding=1, generator=rng,
                           **F64),
        nn.DepthwiseSeparableConv2d(4, 3, 3, stride=2, padding=1, depth_multiplier=2,
                                    generator=rng, **F64),
        nn.Conv2d(3, 2, 3, padding=2, padding_mode="circular", generator=rng, **F64),
        nn.Identity())


def shared_model(rng):
    conv = nn.Conv2d(3, 3, 3, padding=1, padding_mode="replicate", generator=rng, **F64)
    relu = nn.ReLU()
    return nn.Sequential(conv, relu, conv, relu,
                         nn.DepthwiseSeparableConv2d(3, 2, 3, padding="same", generator=rng,
                                                     **F64))


def conv1d_model(rng):
    return nn.Sequential(nn.Conv1d(2, 3, 3, stride=2, padding=2, generator=rng, **F64),
                         nn.ReLU(),
                         nn.Conv1d(3, 2, 3, padding=1, padding_mode="circular",
                                   generator=rng, **F64))


MODELS = {"plain": (plain_model, (2, 3, 9, 10)), "residual": (residual_model, (2, 3, 8, 11)),
          "concat": (concat_model, (2, 3, 7, 6)), "shared": (shared_model, (2, 3, 6, 5)),
          "conv1d": (conv1d_model, (2, 2, 11))}


def build(name, backend, seed=0):
    rng = np.random.default_rng(seed)
    make, shape = MODELS[name]
    model = make(rng).set_backend(backend).retain_inputs()
    x = rng.normal(size=shape)
    return model, x, rng


# ------------------------------------------------------------------ torch mirror


def torch_forward(model, params, x):
    """The forward pass of a fastconv model written with torch.nn.functional, reading the
    parameters from ``params`` (state_dict key -> tensor)."""
    import torch
    import torch.nn.functional as F

    prefix = {id(m): p for p, m in model.named_modules()}

    def par(m, name):
        return params.get(f"{prefix[id(m)]}.{name}" if prefix[id(m)] else name)

    def conv_input(m, x):
        if m.padding_mode == "zeros" or isinstance(m.padding, str):
            return x, m.padding
        pads = []
        for p in reversed(m.padding):
            pads += [p, p]
        return F.pad(x, pads, mode=m.padding_mode), 0

    def run(m, x):
        if isinstance(m, nn.Conv2d):
            x, pad = conv_input(m, x)
            return F.conv2d(x, par(m, "weight"), par(m, "bias"), m.stride, pad, m.dilation,
                            m.groups)
        if isinstance(m, nn.Conv1d):
            x, pad = conv_input(m, x)
            return F.conv1d(x, par(m, "weight"), par(m, "bias"), m.stride, pad, m.dilation,
                            m.groups)
        if isinstance(m, nn.ConvTranspose2d):
            return F.conv_transpose2d(x, par(m, "weight"), par(m, "bias"), m.stride, m.padding,
                                      m.output_padding, m.groups, m.dilation)
        if isinstance(m, nn.DepthwiseSeparableConv2d):
            return run(m.pointwise, run(m.depthwise, x))
        if isinstance(m, nn.MaxPool2d):
            return F.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
        if isinstance(m, nn.AvgPool2d):
            return F.avg_pool2d(x, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                m.count_include_pad, m.divisor_override)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return F.adaptive_avg_pool2d(x, m.output_size)
        if isinstance(m, nn.AdaptiveMaxPool2d):
            return F.adaptive_max_pool2d(x, m.output_size)
        if isinstance(m, nn.BatchNorm2d):
            rm, rv = m.running_mean, m.running_var
            training = rm is None
            return F.batch_norm(x, None if training else torch.from_numpy(rm),
                                None if training else torch.from_numpy(rv),
                                par(m, "weight"), par(m, "bias"), training, 0.0, m.eps)
        if isinstance(m, nn.ReLU):
            return F.relu(x)
        if isinstance(m, nn.ReLU6):
            return F.relu6(x)
        if isinstance(m, nn.Linear):
            return F.linear(x, par(m, "weight"), par(m, "bias"))
        if isinstance(m, nn.Flatten):
            return torch.flatten(x, m.start_dim, m.end_dim)
        if isinstance(m, (nn.Dropout, nn.Identity)):
            return x
        if isinstance(m, nn.Sequential):
            for c in m:
                x = run(c, x)
            return x
        if isinstance(m, nn.Residual):
            y = x
            for _, c in m._steps:
                y = run(c, y)
            s = x if m._shortcut is None else run(m._shortcut, x)
            out = y + s
            return out if m._activation is None else run(m._activation, out)
        if isinstance(m, nn.Concat):
            return torch.cat([run(c, x) for c in m.children()], dim=1)
        raise AssertionError(f"no torch mirror for {type(m).__name__}")

    return run(model, x)


def torch_grads(model, x, gy):
    torch = pytest.importorskip("torch")
    params = {k: torch.tensor(v, requires_grad=True) for k, v in model.named_parameters()}
    xt = torch.tensor(x, requires_grad=True)
    out = torch_forward(model, params, xt)
    (out * torch.from_numpy(gy)).sum().backward()
    return out.detach().numpy(), xt.grad.numpy(), {k: p.grad.numpy() for k, p in params.items()}


def assert_close(a, b, what):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11, err_msg=what)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_backward_matches_torch(backend, name):
    model, x, rng = build(name, backend)
    y = model(x)
    gy = rng.normal(size=y.shape)
    ty, tgx, tgrads = torch_grads(model, x, gy)
    assert_close(y, ty, "forward")
    gx = model.backward(gy)
    assert gx.shape == x.shape
    assert_close(gx, tgx, "input gradient")
    grads = dict(model.named_grads())
    assert sorted(grads) == sorted(tgrads)
    for k in tgrads:
        assert grads[k].shape == tgrads[k].shape
        assert_close(grads[k], tgrads[k], k)


def test_zoo_block_matches_torch():
    """A ResNet-18 stage as fastconv.models builds it (in-place ReLU shared three ways)."""
    from fastconv import models

    net = models.resnet18(num_classes=3, generator=0, dtype=np.float64)
    part = nn.Sequential(net.layer2, net.avgpool, net.flatten).retain_inputs()
    rng = np.random.default_rng(1)
    for _, m in part.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean[...] = rng.normal(size=m.num_features) * 0.1
            m.running_var[...] = rng.uniform(0.5, 1.5, m.num_features)
    x = rng.normal(size=(1, 64, 6, 6))
    y = part(x)
    gy = rng.normal(size=y.shape)
    _, tgx, tgrads = torch_grads(part, x, gy)
    assert_close(part.backward(gy), tgx, "input gradient")
    grads = dict(part.named_grads())
    assert len(grads) == len(tgrads) == 15  # 5 convs, 5 BNs with weight and bias
    for k in tgrads:
        assert_close(grads[k], tgrads[k], k)


# ------------------------------------------------------------------ finite differences


def _loss(model, x, gy):
    return float(np.sum(model(x) * gy))


@pytest.mark.parametrize("name", list(MODELS))
def test_finite_differences(name):
    """<grad, v> against (L(p + h v) - L(p - h v)) / 2h along a random direction, for the
    input and every parameter; no torch involved."""
    model, x, rng = build(name, "reference", seed=3)
    gy = rng.normal(size=model(x).shape)
    gx = model.backward(gy)
    grads = dict(model.named_grads())
    h = 1e-6
    v = rng.normal(size=x.shape)
    fd = (_loss(model, x + h * v, gy) - _loss(model, x - h * v, gy)) / (2 * h)
    assert fd == pytest.approx(np.sum(gx * v), rel=1e-5, abs=1e-8)
    for key, p in model.named_parameters():
        v = rng.normal(size=p.shape)
        p += h * v
        up = _loss(model, x, gy)
        p -= 2 * h * v
        down = _loss(model, x, gy)
        p += h * v
        assert (up - down) / (2 * h) == pytest.approx(np.sum(grads[key] * v), rel=1e-5,
                                                       abs=1e-8), key


# ------------------------------------------------------------------ records and errors


def test_backward_needs_a_retained_forward():
    model, x, _ = build("plain", "reference")
    model.retain_inputs(False)
    y = model(x)
    with pytest.raises(RuntimeError, match="retain_inputs"):
        model.backward(np.ones_like(y))
    model.retain_inputs()
    y = model(x)
    model.backward(np.ones_like(y))
    with pytest.raises(RuntimeError, match="once"):  # the records were consumed
        model.backward(np.ones_like(y))


def test_grad_output_shape_is_checked():
    lin = nn.Linear(3, 2, **F64).retain_inputs()
    lin(np.ones((4, 3)))
    with pytest.raises(ValueError, match="grad_output"):
        lin.backward(np.ones((4, 3)))
    relu = nn.ReLU().retain_inputs()
    relu(np.ones((2, 2)))
    with pytest.raises(ValueError, match="grad_output"):
        relu.backward(np.ones(3))


def test_adaptive_pool_checks_grad_output_shape():
    m = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AdaptiveAvgPool2d(2)).retain_inputs()
    m(np.ones((1, 1, 6, 6), np.float32))
    with pytest.raises(ValueError, match="grad_output"):
        m.backward(np.ones((1, 2, 3, 3), np.float32))


@pytest.mark.parametrize("layer", [nn.AdaptiveAvgPool2d(2), nn.AdaptiveMaxPool2d((2, 3)),
                                   nn.Dropout(0.3), nn.Identity()])
def test_layers_check_grad_output_shape(layer):
    layer.retain_inputs()
    x = np.random.default_rng(4321).standard_normal((1, 2, 6, 6)).astype(np.float32)
    y = layer(x)
    with pytest.raises(ValueError, match="grad_output"):
        layer.backward(np.ones((1, 2, 3, 4), np.float32))
    layer(x)
    with pytest.raises(ValueError, match="grad_output"):
        layer.backward(np.ones(y.shape[1:], np.float32))
    layer(x)
    gx = layer.backward(np.ones(y.shape, np.float32))
    assert gx.shape == x.shape



def test_gradients_accumulate_until_zero_grad():
    model, x, rng = build("residual", "reference")
    gy = rng.normal(size=model(x).shape)
    model.backward(gy)
    first = {k: g.copy() for k, g in model.named_grads()}
    model(x)
    model.backward(gy)
    for k, g in model.named_grads():
        assert_close(g, 2 * first[k], k)
    model.zero_grad()
    assert list(model.named_grads()) == []


def test_unconsumed_records_are_dropped_by_the_next_forward():
    model, x, rng = build("shared", "reference")
    for _ in range(3):
        model(x)
    relu = model[1]
    assert len(relu._calls) == 2  # one forward pass uses the shared ReLU twice
    model.backward(np.ones(model(x).shape))
    assert all(not m._calls for _, m in model.named_modules())


def test_discard_retained_forgets_unconsumed_records_only():
    model, x, _ = build("shared", "reference")
    y = model(x)
    cache = model[1].cache
    assert model.discard_retained() is model
    assert all(not m._calls for _, m in model.named_modules())
    assert model[1].cache is cache and model[1].keep_cache  # still retaining
    with pytest.raises(RuntimeError, match="retain_inputs"):
        model.backward(np.ones(y.shape))
    model(x)
    model.backward(np.ones(y.shape))  # the next forward call is retained again


def test_bias_false_and_no_affine_have_no_gradients():
    conv = nn.Conv2d(2, 2, 3, bias=False, **F64)
    bn = nn.BatchNorm2d(2, affine=False, **F64)
    net = nn.Sequential(conv, bn).retain_inputs()
    y = net(np.random.default_rng(0).normal(size=(1, 2, 5, 5)))
    net.backward(np.ones_like(y))
    assert [k for k, _ in net.named_grads()] == ["0.weight"]


# ------------------------------------------------------------------ SGD


def _sgd_run(model, x, gy, steps, **kw):
    opt = nn.SGD(model, **kw)
    for _ in range(steps):
        opt.zero_grad()
        model(x)
        model.backward(gy)
        opt.step()
    return dict(model.state_dict())


@pytest.mark.parametrize("kw", [dict(lr=0.1), dict(lr=0.05, momentum=0.9, weight_decay=1e-2),
                                dict(lr=0.05, momentum=0.8, nesterov=True),
                                dict(lr=0.05, momentum=0.5, dampening=0.3)])
def test_sgd_matches_torch(kw):
    torch = pytest.importorskip("torch")
    model, x, rng = build("plain", "reference", seed=5)
    gy = rng.normal(size=model(x).shape)
    params = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in model.named_parameters()}
    opt = torch.optim.SGD(list(params.values()), **kw)
    ours = _sgd_run(model, x, gy, 3, **kw)
    # the torch run starts from the same initial values
    model2, _, _ = build("plain", "reference", seed=5)
    params = {k: torch.tensor(v.copy(), requires_grad=True)
              for k, v in model2.named_parameters()}
    opt = torch.optim.SGD(list(params.values()), **kw)
    for _ in range(3):
        opt.zero_grad()
        (torch_forward(model2, params, torch.from_numpy(x)) * torch.from_numpy(gy)).sum().backward()
        opt.step()
    for k, p in params.items():
        assert_close(ours[k], p.detach().numpy(), k)


def test_sgd_step_in_place_and_rule():
    model, x, rng = build("conv1d", "reference")
    gy = rng.normal(size=model(x).shape)
    model.backward(gy)
    before = {k: v.copy() for k, v in model.named_parameters()}
    arrays = {k: v for k, v in model.named_parameters()}
    nn.SGD(model, lr=0.3, weight_decay=0.1).step()
    for k, g in model.named_grads():
        assert model.state_dict()[k] is arrays[k]
        assert_close(arrays[k], before[k] - 0.3 * (g + 0.1 * before[k]), k)


def test_sgd_arguments():
    lin = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="lr"):
        nn.SGD(lin, lr=-1)
    with pytest.raises(TypeError, match="momentum"):
        nn.SGD(lin, lr=0.1, momentum="0.9")
    with pytest.raises(TypeError, match="model"):
        nn.SGD([lin.weight], lr=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        nn.SGD(lin, lr=0.1, nesterov=True)


def test_requires_grad_off_skips_parameter_gradients_only():
    model, x, rng = build("concat", "reference")
    gy = rng.normal(size=model(x).shape)
    full = model.backward(gy)
    model.zero_grad()
    model.requires_grad_(False)
    model(x)
    assert_close(model.backward(gy), full, "input gradient")
    assert list(model.named_grads()) == []
