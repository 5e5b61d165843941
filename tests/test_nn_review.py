"""fastconv.nn fixes from review: atomic load_state_dict, Concat of 1-D networks, child names
that would shadow attributes, grad_output shape checks, BatchNorm2d eps / momentum, real
inputs only, train() / eval() against torch."""

from collections import OrderedDict

import numpy as np
import pytest

from fastconv import nn

RNG = np.random.default_rng(4321)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------- load_state_dict


def _conv_bn():
    return nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1))


@pytest.mark.parametrize("key,value,error", [
    ("1.num_batches_tracked", "abc", TypeError),
    ("1.running_var", np.array([1 + 2j]), TypeError),
    ("1.bias", np.array([object()]), TypeError),
    ("1.weight", np.array(["1.0"]), TypeError),
])
def test_load_state_dict_checks_every_value_before_writing(key, value, error):
    m = _conv_bn()
    before = {k: v.copy() for k, v in m.state_dict().items()}
    bad = {k: v.copy() for k, v in m.state_dict().items()}
    bad["0.weight"][...] = 123  # comes first: would be written before the bad value is seen
    bad[key] = value
    with pytest.raises(error, match=key.replace(".", r"\.")):
        m.load_state_dict(bad)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_load_state_dict_read_only_target_named_and_nothing_written():
    m = _conv_bn()
    m[1].running_mean.flags.writeable = False
    sd = {k: np.full_like(v, 2) for k, v in m.state_dict().items()}
    with pytest.raises(ValueError, match=r"1\.running_mean"):
        m.load_state_dict(sd)
    assert m[0].weight[0, 0, 0, 0] != 2 and m[1].weight[0] == 1


def test_load_state_dict_converts_dtypes():
    m = _conv_bn()
    sd = {k: np.full(v.shape, 3, np.int32) for k, v in m.state_dict().items()}
    sd["1.running_var"] = [5.0]  # a list
    sd["1.num_batches_tracked"] = np.float64(7)
    m.load_state_dict(sd)
    assert m[0].weight.dtype == np.float32 and m[0].weight[0, 0, 0, 0] == 3
    assert m[1].running_var[0] == 5 and m[1].num_batches_tracked.dtype == np.int64
    assert m[1].num_batches_tracked == 7


# ---------------------------------------------------------------------------- Concat, 1-D


def test_concat_conv1d_batched_and_unbatched():
    a, b = nn.Conv1d(2, 4, 3, padding=1), nn.Conv1d(2, 3, 1)
    cat = nn.Concat(a, b)
    assert cat.spatial_dims == 1
    x = rand(3, 2, 10)
    y = cat(x)
    assert y.shape == cat.output_shape(x.shape) == (3, 7, 10)
    np.testing.assert_allclose(y, np.concatenate([a(x), b(x)], axis=1), rtol=1e-6)
    xu = rand(2, 10)
    yu = cat(xu)
    assert yu.shape == cat.output_shape(xu.shape) == (7, 10)
    np.testing.assert_allclose(yu, np.concatenate([a(xu), b(xu)], axis=0), rtol=1e-6)
    # nested in a Sequential (the layers are found anywhere below the branches)
    net = nn.Concat(nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU()), nn.Identity())
    assert net(x).shape == net.output_shape(x.shape) == (3, 6, 10)


def test_concat_conv1d_backward_splits_channels():
    a = nn.Conv1d(2, 4, 3, padding=1, dtype=np.float64, generator=0)
    b = nn.Conv1d(2, 3, 1, dtype=np.float64, generator=1)
    cat = nn.Concat(a, b).retain_inputs()
    x = rand(3, 2, 10, dtype=np.float64)
    y = cat(x)
    gy = rand(*y.shape, dtype=np.float64)
    gx = cat.backward(gy)
    ga, gb = dict(a.grads), dict(b.grads)
    ref_a, ref_b = nn.Conv1d(2, 4, 3, padding=1, dtype=np.float64), nn.Conv1d(2, 3, 1,
                                                                              dtype=np.float64)
    ref_a.load_state_dict(a.state_dict())
    ref_b.load_state_dict(b.state_dict())
    ref_a.retain_inputs()(x)
    ref_b.retain_inputs()(x)
    ref = ref_a.backward(gy[:, :4]) + ref_b.backward(gy[:, 4:])
    np.testing.assert_allclose(gx, ref, rtol=1e-12)
    np.testing.assert_allclose(ga["weight"], ref_a.grads["weight"], rtol=1e-12)
    np.testing.assert_allclose(gb["bias"], ref_b.grads["bias"], rtol=1e-12)
    cat(x)
    with pytest.raises(ValueError, match="grad_output"):
        cat.backward(gy[:, :, :9])


def test_concat_spatial_dims_argument():
    x = rand(3, 2, 10)
    # elementwise branches: the layers do not tell, the argument does
    assert nn.Concat(nn.ReLU(), nn.Identity(), spatial_dims=1)(x).shape == (3, 4, 10)
    assert nn.Concat(nn.ReLU(), nn.Identity())(x).shape == (6, 2, 10)  # 2-D: (C, H, W)
    assert nn.Concat(nn.ReLU(), nn.Identity(), spatial_dims=2)(x).shape == (6, 2, 10)
    # 2-D layers then Flatten(2): (N, C, H*W) outputs, joined along C when told
    mixed = nn.Concat(nn.Sequential(nn.Conv2d(2, 3, 1), nn.Flatten(2), nn.Conv1d(3, 2, 1)),
                      nn.Sequential(nn.Conv2d(2, 4, 1), nn.Flatten(2)))
    with pytest.raises(ValueError, match="spatial_dims"):
        mixed(rand(3, 2, 4, 5))
    mixed = nn.Concat(*mixed.children(), spatial_dims=1)
    assert mixed(rand(3, 2, 4, 5)).shape == mixed.output_shape((3, 2, 4, 5)) == (3, 6, 20)
    for bad, error in [(3, ValueError), (0, ValueError), ("1", TypeError), (True, TypeError)]:
        with pytest.raises(error, match="spatial_dims"):
            nn.Concat(nn.ReLU(), spatial_dims=bad)
    with pytest.raises(ValueError, match="spatial_dims"):
        nn.Concat(nn.Identity(), spatial_dims=1)(rand(1, 2, 3, 3))


def test_concat_2d_unchanged():
    a, b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 2, 1)
    cat = nn.Concat(OrderedDict(a=a, b=b))
    assert cat.spatial_dims == 2 and list(cat.state_dict()) == ["a.weight", "a.bias",
                                                                "b.weight", "b.bias"]
    assert cat(rand(2, 3, 5, 5)).shape == (2, 6, 5, 5)
    assert cat(rand(3, 5, 5)).shape == cat.output_shape((3, 5, 5)) == (6, 5, 5)


# ---------------------------------------------------------------------------- child names


ATTRIBUTES = ["forward", "backward", "state_dict", "backend", "grads", "cache", "training",
              "train", "eval", "_modules", "keep_cache", "load_state_dict"]


@pytest.mark.parametrize("name", ATTRIBUTES)
def test_child_name_must_not_shadow_an_attribute(name):
    pat = f"'{name}'"
    with pytest.raises(ValueError, match=pat):
        nn.Sequential(OrderedDict([("0", nn.Conv2d(1, 1, 1)), (name, nn.ReLU())]))
    with pytest.raises(ValueError, match=pat):
        nn.Concat(OrderedDict([(name, nn.ReLU())]))
    with pytest.raises(ValueError, match=pat):
        nn.Residual([(name, nn.ReLU())])
    with pytest.raises(ValueError, match=pat):
        nn.Residual(nn.ReLU(), shortcut=nn.Identity(), shortcut_name=name)
    with pytest.raises(ValueError, match=pat):
        nn.Residual(nn.ReLU(), activation=nn.ReLU(), activation_name=name)
    seq = nn.Sequential(nn.ReLU())
    with pytest.raises(ValueError, match=pat):
        seq.add_module(name, nn.ReLU())
    with pytest.raises(ValueError, match=pat):
        setattr(seq, name, nn.ReLU())
    assert list(seq._modules) == ["0"]


def test_residual_step_cannot_take_its_own_attribute_names():
    for name in ("shortcut_name", "activation_name", "_steps"):
        with pytest.raises(ValueError, match=name):
            nn.Residual([(name, nn.ReLU())])


def test_child_names_still_allowed():
    seq = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 1, 1), weight=nn.ReLU()))
    seq.conv = nn.Conv2d(1, 2, 1)  # replacing a child is fine
    assert seq.conv.out_channels == 2 and list(seq._modules) == ["conv", "weight"]
    assert seq(np.ones((1, 1, 2, 2), np.float32)).shape == (1, 2, 2, 2)


# ---------------------------------------------------------------------------- grad_output shape


def test_adaptive_pool_checks_grad_output_shape():
    m = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AdaptiveAvgPool2d(2)).retain_inputs()
    m(np.ones((1, 1, 6, 6), np.float32))
    with pytest.raises(ValueError, match="grad_output"):
        m.backward(np.ones((1, 2, 3, 3), np.float32))


@pytest.mark.parametrize("layer", [nn.AdaptiveAvgPool2d(2), nn.AdaptiveMaxPool2d((2, 3)),
                                   nn.Dropout(0.3), nn.Identity()])
def test_layers_check_grad_output_shape(layer):
    layer.retain_inputs()
    x = rand(1, 2, 6, 6)
    y = layer(x)
    with pytest.raises(ValueError, match="grad_output"):
        layer.backward(np.ones((1, 2, 3, 4), np.float32))
    layer(x)
    with pytest.raises(ValueError, match="grad_output"):
        layer.backward(np.ones(y.shape[1:], np.float32))
    layer(x)
    gx = layer.backward(np.ones(y.shape, np.float32))
    assert gx.shape == x.shape


# ---------------------------------------------------------------------------- BatchNorm2d args


@pytest.mark.parametrize("kw,error", [
    (dict(eps="a"), TypeError), (dict(eps=None), TypeError), (dict(eps=True), TypeError),
    (dict(eps=0), ValueError), (dict(eps=-1e-5), ValueError), (dict(eps=float("nan")), ValueError),
    (dict(eps=float("inf")), ValueError), (dict(eps=[1e-5]), TypeError),
    (dict(momentum="a"), TypeError), (dict(momentum=-5), ValueError),
    (dict(momentum=1.5), ValueError), (dict(momentum=True), TypeError),
    (dict(momentum=float("nan")), ValueError),
])
def test_batchnorm_eps_momentum_validated(kw, error):
    with pytest.raises(error, match=next(iter(kw))):
        nn.BatchNorm2d(3, **kw)


def test_batchnorm_eps_momentum_accepted():
    bn = nn.BatchNorm2d(3, eps=np.float32(1e-3), momentum=None)
    assert type(bn.eps) is float and bn.momentum is None
    for mom in (0, 1, 0.5, np.float64(0.25)):
        assert nn.BatchNorm2d(3, momentum=mom).momentum == float(mom)
    assert nn.BatchNorm2d(3, eps=1).eps == 1.0


# ---------------------------------------------------------------------------- real inputs only


def _layers():
    return [
        nn.ReLU(), nn.ReLU6(), nn.Linear(3, 2), nn.BatchNorm2d(3), nn.Conv2d(3, 2, 1),
        nn.Conv1d(3, 2, 1), nn.ConvTranspose2d(3, 2, 1), nn.MaxPool2d(1), nn.AvgPool2d(1),
        nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(),
        nn.Identity(), nn.DepthwiseSeparableConv2d(3, 2, 1), nn.Sequential(nn.ReLU()),
        nn.Concat(nn.ReLU()), nn.Residual(nn.ReLU()),
    ]


@pytest.mark.parametrize("layer", _layers(), ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, object, "U3"])
def test_layers_reject_non_real_input(layer, dtype):
    shape = (1, 3, 3) if isinstance(layer, nn.Conv1d) else (1, 3, 3, 3)
    x = np.ones(shape).astype(dtype)
    with pytest.raises(TypeError, match="input"):
        layer(x)
    with pytest.raises(TypeError, match="input"):
        layer.train()(x)


def test_complex_repro_and_real_inputs_still_accepted():
    with pytest.raises(TypeError, match="input"):
        nn.ReLU()(np.array([1 + 1j]))
    with pytest.raises(TypeError, match="input"):
        nn.ReLU()([1 + 1j, 2])
    assert nn.ReLU()([-1, 2]).tolist() == [0, 2]
    assert nn.ReLU()(np.array([True, False])).dtype == np.bool_
    assert nn.Linear(2, 1)(np.ones((1, 2), np.int64)).dtype.kind == "f"


# ---------------------------------------------------------------------------- train / eval


def test_train_eval_flags():
    net = nn.Sequential(nn.Conv2d(2, 3, 1), nn.Sequential(nn.BatchNorm2d(3), nn.Dropout()))
    mods = [m for _, m in net.named_modules()]
    assert all(m.training is False for m in mods)  # built in inference mode (existing behaviour)
    assert net.train() is net and all(m.training is True for m in mods)
    assert net.eval() is net and all(m.training is False for m in mods)
    assert net.train(True) is net and net[1][0].training
    net[1].train(False)
    assert net.training and not net[1].training and not net[1][1].training
    for bad in ("yes", 1, None):
        with pytest.raises(TypeError, match="mode"):
            net.train(bad)


def test_eval_keeps_inference_behaviour():
    bn = nn.BatchNorm2d(3)
    bn.running_mean[:] = [1, 2, 3]
    x = rand(2, 3, 4, 4)
    y = bn.eval()(x)
    np.testing.assert_allclose(y, (x - bn.running_mean[:, None, None]) / np.sqrt(1 + 1e-5),
                               rtol=1e-5, atol=1e-6)
    assert bn.num_batches_tracked == 0 and list(bn.running_mean) == [1, 2, 3]
    assert nn.Dropout(0.5).eval()(x) is x


@pytest.mark.parametrize("momentum", [0.1, None, 0.0, 1.0])
@pytest.mark.parametrize("track", [True, False])
def test_batchnorm_training_matches_torch(momentum, track):
    torch = pytest.importorskip("torch")
    ours = nn.BatchNorm2d(3, momentum=momentum, track_running_stats=track, dtype=np.float64)
    theirs = torch.nn.BatchNorm2d(3, momentum=momentum, track_running_stats=track,
                                  dtype=torch.float64)
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 1.5)
        theirs.bias.uniform_(-1, 1)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    ours.train().retain_inputs()
    theirs.train()
    for step in range(3):
        x = rand(4, 3, 3, 5, dtype=np.float64) * (step + 1) + step
        xt = torch.tensor(x, requires_grad=True)
        ref = theirs(xt)
        y = ours(x)
        np.testing.assert_allclose(y, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
        for k, v in theirs.state_dict().items():
            np.testing.assert_allclose(ours.state_dict()[k], v.numpy(), rtol=1e-10,
                                       err_msg=f"{k} after step {step}")
        gy = rand(*y.shape, dtype=np.float64)
        (ref * torch.from_numpy(gy)).sum().backward()
        ours.zero_grad()
        gx = ours.backward(gy)
        np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(ours.grads["weight"], theirs.weight.grad.numpy(), rtol=1e-9)
        theirs.zero_grad()
    # back in eval mode the updated running statistics are used, as torch's eval
    ours.eval()
    theirs.eval()
    x = rand(2, 3, 3, 5, dtype=np.float64)
    with torch.no_grad():
        np.testing.assert_allclose(ours(x), theirs(torch.from_numpy(x)).numpy(), rtol=1e-10,
                                   atol=1e-12)


def test_batchnorm_training_needs_more_than_one_value_per_channel():
    bn = nn.BatchNorm2d(2).train()
    with pytest.raises(ValueError, match="input"):
        bn(rand(1, 2, 1, 1))
    assert bn.num_batches_tracked == 0
    assert bn(rand(2, 2, 1, 1)).shape == (2, 2, 1, 1)


def test_backward_uses_the_mode_of_its_forward_call():
    bn = nn.BatchNorm2d(2, dtype=np.float64).retain_inputs()
    x = rand(3, 2, 2, 2, dtype=np.float64)
    gy = rand(3, 2, 2, 2, dtype=np.float64)
    bn.eval()(x)
    g_eval = bn.train().backward(gy)  # an eval-mode call: running statistics
    np.testing.assert_allclose(g_eval, gy / np.sqrt(1 + 1e-5), rtol=1e-12)
    bn.train()(x)
    g_train = bn.eval().backward(gy)
    assert not np.allclose(g_train, g_eval)


def test_dropout_training():
    x = np.ones((200, 100), np.float32)
    drop = nn.Dropout(0.25, generator=0).train().retain_inputs()
    y = drop(x)
    assert y.dtype == np.float32 and set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02
    g = drop.backward(np.full(x.shape, 2.0, np.float32))
    np.testing.assert_array_equal(g, 2 * y)  # the forward call's mask
    y2 = nn.Dropout(0.25, generator=0).train()(x)
    np.testing.assert_array_equal(y, y2)  # a seed repeats the masks
    assert not nn.Dropout(1.0).train()(x).any()
    np.testing.assert_array_equal(nn.Dropout(0.0).train()(x), x)
    xi = x.copy()
    out = nn.Dropout(0.5, inplace=True, generator=1).train()(xi)
    assert out is xi and set(np.unique(xi)) <= {0.0, 2.0}
    with pytest.raises(TypeError, match="generator"):
        nn.Dropout(0.5, generator="seed")


def test_model_train_step_ports_from_torch():
    # the usual torch loop: model.train(), forward, backward, step, then model.eval()
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, generator=0), nn.BatchNorm2d(3),
                        nn.ReLU(), nn.Dropout(0.2, generator=0), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(3, 2, generator=0))
    opt = nn.SGD(net, lr=0.1)
    net.train().retain_inputs()
    x = rand(4, 2, 5, 5)
    y = net(x)
    net.backward(np.ones(y.shape, np.float32))
    before = net[0].weight.copy()
    opt.step()
    assert not np.array_equal(before, net[0].weight) and net[1].num_batches_tracked == 1
    net.eval()
    a, b = net(x), net(x)
    np.testing.assert_array_equal(a, b)
