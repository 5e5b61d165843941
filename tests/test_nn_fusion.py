"""fastconv.nn's inference-mode fusion (nn/_fusion.py): Conv2d -> BatchNorm2d -> ReLU/ReLU6
and residual blocks run as fused calls, with the unfused forward's results (float32
rounding), never in training mode or when inputs are kept for backward."""

import warnings

import numpy as np
import pytest

import fastconv as fc
from fastconv import models, nn
from fastconv.nn import _fusion

BACKENDS = [b for b, why in fc.available_backends().items() if why.startswith("available")
            and b != "cuda"]
#: the planned calls (_fusion._Plan) run the C engine's fused kernels
needs_c = pytest.mark.skipif("c" not in BACKENDS, reason="the C engine is not available")


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


def _calls(monkeypatch, residuals=None):
    """Count fused conv -> batch norm calls (checked or planned); append whether each had a
    residual to ``residuals`` if given."""
    n = {"fused": 0}
    real = _fusion._fused_call

    def counting(conv, bn, x, activation, residual=None):
        n["fused"] += 1
        if residuals is not None:
            residuals.append(residual is not None)
        return real(conv, bn, x, activation, residual)

    monkeypatch.setattr(_fusion, "_fused_call", counting)
    return n


def _random_net(rng, dtype):
    C = int(rng.integers(1, 6))
    layers = []
    for _ in range(int(rng.integers(1, 4))):
        OC = int(rng.integers(1, 7))
        g = int(rng.choice([d for d in range(1, min(C, OC) + 1) if C % d == 0 and OC % d == 0]))
        k = int(rng.choice([1, 3]))
        layers.append(nn.Conv2d(C, OC, k, padding=k // 2, groups=g,
                                bias=bool(rng.random() < .5), dtype=dtype,
                                generator=int(rng.integers(1 << 30))))
        if rng.random() < 0.7:  # else conv -> activation (or nothing), as in VGG
            layers.append(nn.BatchNorm2d(OC, affine=bool(rng.random() < 0.8), dtype=dtype))
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
    _calls(monkeypatch, seen)
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
    _calls(monkeypatch, seen)
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


# ---------------------------------------------------------------- planned calls (_fusion._Plan)


def _checked(conv, bn, x, act, res):
    """The fused call through the checked public path (what _fused_call runs first)."""
    scale = shift = None
    if bn is not None:
        scale, shift = fc.fused.batch_norm_scale_shift(bn.running_mean, bn.running_var,
                                                       bn.weight, bn.bias, bn.eps)
        dt = np.result_type(x.dtype, conv.weight.dtype, np.float32)
        scale, shift = scale.astype(dt), shift.astype(dt)
    return fc.fused.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation,
                           conv.groups, scale=scale, shift=shift, residual=res, activation=act,
                           padding_mode=conv.padding_mode, backend=conv.backend)


def _planned(monkeypatch):
    """Record whether each fused call ran a plan."""
    used = []
    real = _fusion._Plan.run

    def spy(self, *a):
        y = real(self, *a)
        used.append(y is not None)
        return y

    monkeypatch.setattr(_fusion._Plan, "run", spy)
    return used


def _random_layer(rng, dtype, backend):
    C = int(rng.integers(1, 9))
    depthwise = rng.random() < 0.3
    OC = C * int(rng.integers(1, 3)) if depthwise else int(rng.integers(1, 9))
    g = C if depthwise else int(rng.choice([d for d in range(1, min(C, OC) + 1)
                                             if C % d == 0 and OC % d == 0]))
    k = int(rng.choice([1, 2, 3, 5]))
    conv = nn.Conv2d(C, OC, k, stride=int(rng.integers(1, 3)), padding=int(rng.integers(0, 3)),
                     dilation=int(rng.integers(1, 3)), groups=g, bias=bool(rng.random() < .5),
                     dtype=dtype, generator=int(rng.integers(1 << 30)))
    bn = nn.BatchNorm2d(OC, affine=bool(rng.random() < 0.7), dtype=dtype)
    _randomise_bn(nn.Sequential(conv, bn), rng)
    conv.set_backend(backend)
    x = rng.standard_normal((int(rng.integers(1, 3)), C, int(rng.integers(9, 16)),
                             int(rng.integers(9, 16)))).astype(dtype)
    act = [None, "relu", "relu6"][int(rng.integers(3))]
    return conv, bn, x, act


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(12))
def test_planned_calls_equal_checked_calls(backend, seed, monkeypatch):
    rng = np.random.default_rng(100 + seed)
    dtype = np.float32 if seed % 3 else np.float64
    conv, bn, x, act = _random_layer(rng, dtype, backend)
    if seed % 4 == 3:
        bn = None  # conv -> activation
    y0 = _checked(conv, bn, x, act, None)
    res = rng.standard_normal(y0.shape).astype(dtype) if seed % 2 else None
    used = _planned(monkeypatch)
    threads = fc.get_num_threads()
    fc.set_num_threads(1)  # the same bits, call after call
    try:
        first = _fusion._fused_call(conv, bn, x, act, res)
        second = _fusion._fused_call(conv, bn, x, act, res)
        again = _fusion._fused_call(conv, bn, x.copy(), act, res)
        want = _checked(conv, bn, x, act, res)
    finally:
        fc.set_num_threads(threads)
    assert used == ([True, True] if backend == "c" else [])
    for y in (first, second, again):
        assert y.dtype == want.dtype and y.shape == want.shape
        assert np.array_equal(y, want)


@needs_c
@pytest.mark.parametrize("seed", range(4))
def test_plans_follow_every_change(seed, monkeypatch):
    # whatever changes between calls, the planned path gives the checked path's result
    rng = np.random.default_rng(200 + seed)
    dtype = np.float32 if seed % 2 else np.float64
    conv, bn, x, act = _random_layer(rng, dtype, "c")
    used = _planned(monkeypatch)
    threads = fc.get_num_threads()
    fc.set_num_threads(1)

    def check(x, act="relu", res=None):
        y = _fusion._fused_call(conv, bn, x, act, res)
        assert np.array_equal(y, _checked(conv, bn, x, act, res))

    try:
        check(x)
        check(x)
        bn.running_var[...] = rng.random(bn.num_features) + 0.1  # statistics set in place
        check(x)
        bn.running_mean += 1.0
        check(x)
        bn.eps = 0.25
        check(x)
        if bn.weight is not None:
            bn.weight *= -1
            check(x)
            bn.bias = bn.bias + 2  # a new array
            check(x)
        conv.weight[...] = rng.standard_normal(conv.weight.shape)  # weights in place
        check(x)
        conv.weight = conv.weight * 0.5  # a new weight array
        check(x)
        conv.bias = rng.standard_normal(conv.out_channels).astype(dtype)
        check(x)
        check(x, act=None)
        check(x, act="relu6")
        y = _fusion._fused_call(conv, bn, x, "relu", None)
        r = rng.standard_normal(y.shape).astype(dtype)
        check(x, res=r)
        check(x, res=r)
        with pytest.raises(ValueError, match="residual"):  # the checks see another shape
            _fusion._fused_call(conv, bn, x, "relu", np.ascontiguousarray(r[..., :1]))
        check(x)
        check(np.concatenate([x, x]))  # another batch
        check(x[:, :, 1:])  # another size
        check(x[:, :, ::-1])  # not contiguous
        check(x.astype(np.float64 if dtype == np.float32 else np.float32))
        conv.stride = (1, 1)
        check(x)
        conv.padding = (1, 0)
        check(x)
        conv.padding_mode = "reflect"
        check(x)
        conv.padding_mode = "zeros"
        conv.set_backend("reference")
        check(x)
        conv.set_backend("c")
        check(x)
        other = np.float64 if dtype == np.float32 else np.float32
        bn.running_var = bn.running_var.astype(other)  # statistics of another dtype
        check(x)
        check(x)
        bn.eps = -1.0
        with pytest.raises(ValueError, match="eps must be non-negative"):
            _fusion._fused_call(conv, bn, x, "relu")
        bn.eps = 1e-3
        check(x)
        bn.running_mean.shape = (bn.num_features, 1)  # reshaped in place: the checks run
        with pytest.raises(ValueError, match="running_mean must be 1-D"):
            _fusion._fused_call(conv, bn, x, "relu")
    finally:
        fc.set_num_threads(threads)
    assert any(used) and not all(used)


@needs_c
def test_a_plan_goes_with_its_module():
    import gc
    import weakref

    conv, bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
    x = np.ones((1, 3, 5, 5), np.float32)
    _fusion._fused_call(conv, bn, x, "relu")
    assert _fusion._plans.get(conv) is not None
    ref = weakref.ref(conv)
    del conv
    gc.collect()
    assert ref() is None  # the plan kept neither the conv nor itself alive


def test_conv_activation_pairs_fuse(monkeypatch):
    # VGG's Conv2d -> ReLU (no batch norm): one fused call each, planned from the second
    # forward on, with the module-by-module result; cpu_info reports them
    rng = np.random.default_rng(7)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.ReLU6(), nn.MaxPool2d(2), nn.Conv2d(8, 4, 1), nn.ReLU())
    x = rng.standard_normal((2, 3, 12, 12)).astype(np.float32) * 3
    a, b = _both(net, x)
    seen = []
    n = _calls(monkeypatch, seen)
    used = _planned(monkeypatch)
    c = net(x)
    assert n["fused"] == 3 and used == ([True] * 3 if "c" in BACKENDS else [])
    for y in (b, c):
        np.testing.assert_allclose(y, a, rtol=1e-5, atol=1e-5 * np.abs(a).max())
    rows = fc.cpu_info(net, (3, 12, 12))["layers"]
    assert [r["fused"] for r in rows if r["type"] == "Conv2d"] == ["relu", "relu6", "relu"]


@needs_c
def test_plans_of_conv_activation_pairs_follow_changes():
    rng = np.random.default_rng(8)
    conv, _, x, _ = _random_layer(rng, np.float32, "c")
    threads = fc.get_num_threads()
    fc.set_num_threads(1)

    def check(x, act="relu"):
        y = _fusion._fused_call(conv, None, x, act)
        assert np.array_equal(y, _checked(conv, None, x, act, None))

    try:
        check(x)
        check(x)
        conv.weight[...] *= -1
        check(x)
        conv.weight = conv.weight + 1
        check(x)
        conv.bias = None
        check(x)
        check(x, "relu6")
        check(np.concatenate([x, x]))
    finally:
        fc.set_num_threads(threads)


def test_residual_bodies_fuse_their_pairs_whatever_their_end(monkeypatch):
    # a body ending in a ReLU (not conv + batch norm) still runs its conv pairs fused, as
    # cpu_info reports them
    rng = np.random.default_rng(9)
    body = [("c1", nn.Conv2d(4, 4, 3, padding=1)), ("b1", nn.BatchNorm2d(4)), ("r1", nn.ReLU()),
            ("c2", nn.Conv2d(4, 4, 1)), ("r2", nn.ReLU6())]
    net = nn.Sequential(nn.Residual(body, None, nn.ReLU()))
    _randomise_bn(net, rng)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    a, _ = _both(net, x)
    n = _calls(monkeypatch)
    b = net(x)
    assert n["fused"] == 2
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max())
    rows = fc.cpu_info(net, (4, 6, 6))["layers"]
    assert [r["fused"] for r in rows if r["type"] == "Conv2d"] == ["batch norm + relu",
                                                                     "relu6"]


@needs_c
def test_plans_hold_what_they_read_weakly():
    import gc
    import weakref

    conv, bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
    x = np.ones((1, 3, 5, 5), np.float32)
    _fusion._fused_call(conv, bn, x, "relu")
    _fusion._fused_call(conv, bn, x, "relu")
    old_w, old_bn = weakref.ref(conv.weight), weakref.ref(bn)
    conv.weight = conv.weight * 2  # replaced (e.g. the batch norm folded in by hand)
    del bn
    gc.collect()
    assert old_w() is None and old_bn() is None
    y = _fusion._fused_call(conv, None, x, "relu")
    assert np.array_equal(y, _checked(conv, None, x, "relu", None))


@needs_c
def test_a_plan_made_while_attributes_change_checks_what_it_holds(monkeypatch):
    # another thread assigning a weight while a plan is made: the plan holds the objects it
    # checked, so the next call (with the new, larger weight) takes the checked path
    import fastconv.ops.conv as ops_conv

    conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
    x = np.ones((1, 4, 8, 8), np.float32)
    real = ops_conv._fused_conv2d_plan

    def racing(*a):
        made = real(*a)
        conv.weight = np.ones((64, 4, 3, 3), np.float32)
        return made

    monkeypatch.setattr(ops_conv, "_fused_conv2d_plan", racing)
    _fusion._fused_call(conv, None, x, "relu")
    monkeypatch.setattr(ops_conv, "_fused_conv2d_plan", real)
    y = _fusion._fused_call(conv, None, x, "relu")
    assert y.shape == (1, 64, 8, 8)
    assert np.array_equal(y, _checked(conv, None, x, "relu", None))


@pytest.mark.parametrize("order", [">", "<"])
def test_planned_calls_take_other_byte_orders_and_strides(order):
    # a non-native byte order, or a weight whose strides are set in place, take the checked
    # path (which converts), never a kernel that cannot read them
    rng = np.random.default_rng(10)
    dt = np.dtype(order + "f4")
    conv = nn.Conv2d(3, 4, 3, padding=1)
    conv.weight, conv.bias = conv.weight.astype(dt), conv.bias.astype(dt)
    x = rng.standard_normal((1, 3, 6, 6)).astype(dt)
    ys = [_fusion._fused_call(conv, None, x, "relu") for _ in range(3)]
    want = _checked(conv, None, x, "relu", None)
    for y in ys:
        np.testing.assert_array_equal(y, want)
    w = np.zeros((4 * 3 * 3 * 3 * 2,), dt)[::2]  # every other element: not contiguous
    w[...] = conv.weight.ravel()
    conv.weight = np.lib.stride_tricks.as_strided(w, conv.weight.shape,
                                                  tuple(s * 2 for s in conv.weight.strides))
    for _ in range(2):
        np.testing.assert_array_equal(_fusion._fused_call(conv, None, x, "relu"), want)
    # strides set in place (deprecated, still allowed): a view into a buffer twice its size
    buf = np.zeros(2 * w.size, dt)
    conv.weight = buf[:w.size].reshape(conv.weight.shape)
    conv.weight[...] = w.reshape(conv.weight.shape)
    for _ in range(2):
        np.testing.assert_array_equal(_fusion._fused_call(conv, None, x, "relu"), want)
    buf[1::2] = 0.5 * buf[0::2] + 1  # what the strided view then reads, every other value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        conv.weight.strides = tuple(2 * s for s in conv.weight.strides)
    np.testing.assert_array_equal(_fusion._fused_call(conv, None, x, "relu"),
                                  _checked(conv, None, x, "relu", None))


def test_conv_subclasses_with_their_own_forward_are_not_fused():
    class Doubled(nn.Conv2d):
        def forward(self, x):
            return 2 * super().forward(x)

    rng = np.random.default_rng(11)
    net = nn.Sequential(Doubled(3, 4, 3, padding=1), nn.ReLU(),
                        Doubled(4, 4, 1), nn.BatchNorm2d(4), nn.ReLU())
    _randomise_bn(net, rng)
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    a, b = _both(net, x)
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6 * np.abs(a).max())
    rows = fc.cpu_info(net, (3, 6, 6))["layers"]
    assert [r["fused"] for r in rows if r["type"] == "Doubled"] == ["", ""]


def test_one_model_run_by_several_threads_at_once():
    # planned and checked calls of the same layers from four threads, two input sizes
    # alternating (plans made and replaced meanwhile), against each input's serial result
    import threading

    rng = np.random.default_rng(12)
    net, C = _random_net(rng, np.float32)
    _randomise_bn(net, rng)
    net.eval()
    xs = [rng.standard_normal((1, C, h, h)).astype(np.float32) for h in (7, 10)]
    want = [net(x) for x in xs]
    errors = []

    def work(t):
        try:
            for i in range(12):
                k = (i + t) % 2
                np.testing.assert_allclose(net(xs[k]), want[k], rtol=1e-5,
                                           atol=1e-5 * np.abs(want[k]).max())
        except Exception as exc:  # reported below, with the thread's failure
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[0]
