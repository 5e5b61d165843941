"""fastconv.nn training and inference modes: train() / eval() flags, BatchNorm2d (eps and
momentum arguments, training against torch) and Dropout in each mode, a torch-style step."""

import numpy as np
import pytest

from fastconv import nn

RNG = np.random.default_rng(4321)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


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
