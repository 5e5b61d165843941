"""fastconv.capsule and fastconv.nn.capsule: every capsule op on every engine against the
reference engine, against torch autograd of the same algorithm (float64) and against finite
differences; the CapsNet's parameter counts, accounting and receptive field; bad input."""

import numpy as np
import pytest

import fastconv
from fastconv import capsule, models
from fastconv.analysis import accounting
from fastconv.analysis.receptive_field import receptive_field
from fastconv.analysis.summary import summary
from fastconv.nn.capsule import CapsNet, CapsNetDecoder, CapsuleLayer, CapsuleMask, PrimaryCaps

try:
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

ENGINES = [e for e, r in capsule.capsule_backends().items() if r == "available"]
needs_torch = pytest.mark.skipif(torch is None, reason="torch is the oracle")


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


def _shapes(rng):
    """A random (N, I, J, Dout, Din) of small capsule layers."""
    return (int(rng.integers(1, 4)), int(rng.integers(1, 9)), int(rng.integers(1, 6)),
            int(rng.integers(1, 7)), int(rng.integers(1, 6)))


# --------------------------------------------------------------------------- torch oracle


def _torch_squash(s):
    n2 = (s * s).sum(-1, keepdim=True)
    return s * (n2.sqrt() / (1 + n2))


def _torch_routing(u_hat, iterations):
    """Procedure 1 in torch, as written (autograd differentiates through every iteration)."""
    b = torch.zeros(u_hat.shape[:3], dtype=u_hat.dtype)
    for t in range(iterations):
        c = torch.softmax(b, dim=2)
        v = _torch_squash((c[..., None] * u_hat).sum(1))
        if t < iterations - 1:
            b = b + (u_hat * v[:, None]).sum(-1)
    return v, c


def _t(a, grad=False):
    return torch.tensor(np.asarray(a, np.float64), requires_grad=grad)


# --------------------------------------------------------------------------- engines


def test_engines_listed():
    got = capsule.capsule_backends()
    assert got["reference"] == "available"
    assert got["cuda"].startswith("unavailable")
    assert set(got) == set(fastconv.available_backends())
    if fastconv.available_backends()["c"] == "available":
        assert got["c"] == "available"  # the extension is built with csrc/capsule.c


@pytest.mark.parametrize("seed", range(6))
def test_random_shapes_against_reference(engine, seed):
    rng = np.random.default_rng(seed)
    N, I, J, Dout, Din = _shapes(rng)
    iterations = int(rng.integers(1, 5))
    u = rng.normal(size=(N, I, Din))
    w = rng.normal(size=(I, J, Dout, Din)) * 0.5
    for dt, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        ud, wd = u.astype(dt), w.astype(dt)
        u_hat = capsule.prediction_vectors(ud, wd, backend=engine)
        ref = capsule.prediction_vectors(u, w, backend="reference")
        assert u_hat.dtype == dt and u_hat.shape == (N, I, J, Dout)
        np.testing.assert_allclose(u_hat, ref, rtol=tol, atol=tol)
        v, c = capsule.dynamic_routing(u_hat, iterations, return_coupling=True, backend=engine)
        vr, cr = capsule.dynamic_routing(ref, iterations, return_coupling=True,
                                         backend="reference")
        assert v.dtype == c.dtype == dt
        np.testing.assert_allclose(v, vr, rtol=tol * 10, atol=tol * 10)
        np.testing.assert_allclose(c, cr, rtol=tol * 10, atol=tol * 10)
        gv = rng.normal(size=v.shape)
        gu = capsule.dynamic_routing_input(u_hat, gv.astype(dt), iterations, backend=engine)
        gur = capsule.dynamic_routing_input(ref, gv, iterations, backend="reference")
        scale = np.abs(gur).max()
        np.testing.assert_allclose(gu, gur, rtol=tol * 10, atol=tol * 10 * scale)
        g = rng.normal(size=u_hat.shape)
        gx, gw = capsule.prediction_vectors_backward(ud, wd, g.astype(dt), backend=engine)
        gxr = capsule.prediction_vectors_input(u.shape, w, g, backend="reference")
        gwr = capsule.prediction_vectors_weight(u, w.shape, g, backend="reference")
        np.testing.assert_allclose(gx, gxr, rtol=tol * 10, atol=tol * 10 * np.abs(gxr).max())
        np.testing.assert_allclose(gw, gwr, rtol=tol * 10, atol=tol * 10 * np.abs(gwr).max())
        np.testing.assert_allclose(
            capsule.prediction_vectors_input(u.shape, wd, g.astype(dt), backend=engine), gx,
            rtol=tol, atol=tol * np.abs(gxr).max())
        np.testing.assert_allclose(
            capsule.prediction_vectors_weight(ud, w.shape, g.astype(dt), backend=engine), gw,
            rtol=tol, atol=tol * np.abs(gwr).max())


@needs_torch
@pytest.mark.parametrize("seed", range(4))
def test_random_shapes_against_torch(engine, seed):
    rng = np.random.default_rng(100 + seed)
    N, I, J, Dout, Din = _shapes(rng)
    iterations = int(rng.integers(1, 5))
    u, w = rng.normal(size=(N, I, Din)), rng.normal(size=(I, J, Dout, Din)) * 0.5
    gv = rng.normal(size=(N, J, Dout))
    tu, tw = _t(u, True), _t(w, True)
    t_hat = torch.einsum("ijdk,nik->nijd", tw, tu)
    t_hat.retain_grad()
    tv, tc = _torch_routing(t_hat, iterations)
    (tv * _t(gv)).sum().backward()
    u_hat = capsule.prediction_vectors(u, w, backend=engine)
    v, c = capsule.dynamic_routing(u_hat, iterations, return_coupling=True, backend=engine)
    np.testing.assert_allclose(u_hat, t_hat.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(v, tv.detach().numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(c, tc.detach().numpy(), rtol=1e-11, atol=1e-12)
    g_hat = capsule.dynamic_routing_input(u_hat, gv, iterations, backend=engine)
    np.testing.assert_allclose(g_hat, t_hat.grad.numpy(), rtol=1e-9, atol=1e-11)
    gx, gw = capsule.prediction_vectors_backward(u, w, g_hat, backend=engine)
    np.testing.assert_allclose(gx, tu.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_routing_gradient_matches_finite_differences(engine):
    rng = np.random.default_rng(7)
    u_hat = rng.normal(size=(2, 5, 3, 4))
    gv = rng.normal(size=(2, 3, 4))
    for iterations in (1, 2, 3):
        g = capsule.dynamic_routing_input(u_hat, gv, iterations, backend=engine)
        direction = rng.normal(size=u_hat.shape)
        h = 1e-6

        def f(a):
            return float((capsule.dynamic_routing(a, iterations, backend=engine) * gv).sum())

        fd = (f(u_hat + h * direction) - f(u_hat - h * direction)) / (2 * h)
        assert fd == pytest.approx(float((g * direction).sum()), rel=1e-6, abs=1e-8)


def test_iterations_matter_and_are_unrolled():
    # the coupling coefficients depend on u_hat: differentiating only the last weighted sum
    # (c held constant) gives another gradient
    rng = np.random.default_rng(3)
    u_hat, gv = rng.normal(size=(1, 6, 3, 2)), rng.normal(size=(1, 3, 2))
    g3 = capsule.dynamic_routing_input(u_hat, gv, 3, backend="reference")
    _, c = capsule.dynamic_routing(u_hat, 3, return_coupling=True, backend="reference")
    s = np.einsum("nij,nijd->njd", c, u_hat)
    frozen = c[..., None] * capsule.squash_input(s, gv)[:, None]
    assert not np.allclose(g3, frozen, atol=1e-3)
    v1 = capsule.dynamic_routing(u_hat, 1)
    v3 = capsule.dynamic_routing(u_hat, 3)
    assert not np.allclose(v1, v3)


def test_one_iteration_is_uniform_coupling(engine):
    rng = np.random.default_rng(11)
    u_hat = rng.normal(size=(3, 7, 4, 5))
    v, c = capsule.dynamic_routing(u_hat, 1, return_coupling=True, backend=engine)
    np.testing.assert_array_equal(c, np.full((3, 7, 4), 0.25))
    np.testing.assert_allclose(v, capsule.squash(u_hat.sum(axis=1) / 4), rtol=1e-13, atol=1e-15)


def test_coupling_rows_sum_to_one_and_lengths_below_one(engine):
    u_hat = np.random.default_rng(2).normal(size=(2, 9, 5, 3)) * 10
    v, c = capsule.dynamic_routing(u_hat, 4, return_coupling=True, backend=engine)
    np.testing.assert_allclose(c.sum(axis=2), 1.0, rtol=1e-12)
    assert np.all(c > 0) and np.all(np.linalg.norm(v, axis=-1) < 1)


def test_dtypes_layouts_and_empty_batch(engine):
    rng = np.random.default_rng(5)
    u = rng.normal(size=(3, 4, 2))
    w = rng.normal(size=(4, 3, 5, 2))
    ref = capsule.prediction_vectors(u, w, backend="reference")
    # non-contiguous views, integer and float16 inputs
    uf = np.asfortranarray(u)
    wt = np.ascontiguousarray(w.transpose(3, 2, 1, 0)).transpose(3, 2, 1, 0)
    np.testing.assert_allclose(capsule.prediction_vectors(uf, wt, backend=engine), ref,
                               rtol=1e-12)
    ints = capsule.prediction_vectors(np.ones((1, 4, 2), np.int32), np.ones((4, 3, 5, 2), int),
                                      backend=engine)
    assert ints.dtype == np.float64 and np.all(ints == 2)
    half = capsule.dynamic_routing(ref.astype(np.float16), backend=engine)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half, capsule.dynamic_routing(ref), rtol=2e-2, atol=2e-3)
    # N = 0
    assert capsule.prediction_vectors(np.zeros((0, 4, 2)), w, backend=engine).shape == (0, 4, 3,
                                                                                          5)
    v, c = capsule.dynamic_routing(np.zeros((0, 4, 3, 5)), return_coupling=True, backend=engine)
    assert v.shape == (0, 3, 5) and c.shape == (0, 4, 3)
    assert capsule.dynamic_routing_input(np.zeros((0, 4, 3, 5)), np.zeros((0, 3, 5)),
                                         backend=engine).shape == (0, 4, 3, 5)
    gw = capsule.prediction_vectors_weight(np.zeros((0, 4, 2)), w.shape, np.zeros((0, 4, 3, 5)),
                                           backend=engine)
    assert gw.shape == w.shape and not gw.any()


def test_threads_do_not_change_results():
    if "c" not in ENGINES:
        pytest.skip("the C engine is not built")
    u_hat = np.random.default_rng(0).normal(size=(8, 64, 10, 16)).astype(np.float32)
    before = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(1)
        one = capsule.dynamic_routing(u_hat, backend="c")
        g1 = capsule.dynamic_routing_input(u_hat, one, backend="c")
        fastconv.set_num_threads(2)
        two = capsule.dynamic_routing(u_hat, backend="c")
        g2 = capsule.dynamic_routing_input(u_hat, two, backend="c")
    finally:
        fastconv.set_num_threads(before)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(g1, g2)


# --------------------------------------------------------------------------- squash, margin loss


def test_squash_at_zero_and_tiny_values():
    z = np.zeros((2, 3, 4))
    assert np.array_equal(capsule.squash(z), z)
    assert np.array_equal(capsule.squash_input(z, np.ones_like(z)), z)
    for dt, tiny in ((np.float32, 1e-30), (np.float32, 1e-41), (np.float64, 1e-300)):
        s = np.full((1, 4), tiny, dt)
        v, g = capsule.squash(s), capsule.squash_input(s, np.ones_like(s))
        assert v.dtype == g.dtype == dt
        assert np.all(np.isfinite(v)) and np.all(np.isfinite(g))
    big = capsule.squash(np.array([[1e3, 0.0]]))
    assert 0.999 < big[0, 0] < 1.0
    # the routing kernels' squash handles zero predictions too (all engines)
    for e in ENGINES:
        v = capsule.dynamic_routing(np.zeros((1, 3, 2, 4)), 3, backend=e)
        gu = capsule.dynamic_routing_input(np.zeros((1, 3, 2, 4)), np.ones((1, 2, 4)), 3,
                                           backend=e)
        assert np.array_equal(v, np.zeros((1, 2, 4))) and np.all(np.isfinite(gu))


@needs_torch
def test_squash_against_torch_and_finite_differences():
    rng = np.random.default_rng(1)
    s, g = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 4))
    for axis in (-1, 1, 0):
        ts = _t(np.moveaxis(s, axis, -1), True)
        tv = _torch_squash(ts)
        (tv * _t(np.moveaxis(g, axis, -1))).sum().backward()
        np.testing.assert_allclose(np.moveaxis(capsule.squash(s, axis), axis, -1),
                                   tv.detach().numpy(), rtol=1e-13)
        np.testing.assert_allclose(np.moveaxis(capsule.squash_input(s, g, axis), axis, -1),
                                   ts.grad.numpy(), rtol=1e-11, atol=1e-13)
    d, h = rng.normal(size=s.shape), 1e-6
    fd = ((capsule.squash(s + h * d) - capsule.squash(s - h * d)) * g).sum() / (2 * h)
    assert fd == pytest.approx(float((capsule.squash_input(s, g) * d).sum()), rel=1e-7)


@needs_torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_margin_loss_against_torch(reduction):
    rng = np.random.default_rng(4)
    lengths, labels = rng.uniform(0, 1, (6, 5)), rng.integers(0, 5, 6)
    t = _t(lengths, True)
    onehot = torch.nn.functional.one_hot(torch.tensor(labels), 5).double()
    per = (onehot * torch.clamp(0.9 - t, min=0) ** 2
           + 0.5 * (1 - onehot) * torch.clamp(t - 0.1, min=0) ** 2).sum(1)
    ref = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    ours = capsule.margin_loss(lengths, labels, reduction=reduction)
    np.testing.assert_allclose(ours, ref.detach().numpy(), rtol=1e-13)
    go = rng.normal(size=6) if reduction == "none" else 1.7
    ref.backward(torch.tensor(go, dtype=torch.float64))
    np.testing.assert_allclose(capsule.margin_loss_input(lengths, labels, go,
                                                         reduction=reduction),
                               t.grad.numpy(), rtol=1e-13)
    assert capsule.margin_loss(lengths.astype(np.float32), labels).dtype == np.float32
    assert np.isnan(capsule.margin_loss(np.zeros((0, 5)), np.zeros(0, int)))


def test_margin_loss_values():
    # present at 0.95 and absent at 0.05: no loss; absent at 0.5: 0.5 * 0.4^2
    assert capsule.margin_loss(np.array([[0.95, 0.05]]), np.array([0])) == 0
    assert capsule.margin_loss(np.array([[0.95, 0.5]]), np.array([0])) == pytest.approx(0.08)
    assert capsule.margin_loss(np.array([[0.5, 0.05]]), np.array([0]), m_plus=0.6) == \
        pytest.approx(0.01)


# --------------------------------------------------------------------------- bad input


def test_bad_input_names_the_parameter():
    u_hat = np.zeros((1, 2, 3, 4))
    cases = [
        (ValueError, "u_hat must be 4-D", lambda: capsule.dynamic_routing(np.zeros((2, 3, 4)))),
        (ValueError, "iterations must be positive",
         lambda: capsule.dynamic_routing(u_hat, 0)),
        (ValueError, "iterations must be positive",
         lambda: capsule.dynamic_routing_input(u_hat, np.zeros((1, 3, 4)), -1)),
        (TypeError, "iterations must be an integer", lambda: capsule.dynamic_routing(u_hat, 2.0)),
        (TypeError, "iterations must be an integer", lambda: capsule.dynamic_routing(u_hat, True)),
        (TypeError, "return_coupling must be a bool",
         lambda: capsule.dynamic_routing(u_hat, return_coupling=1)),
        (ValueError, "u_hat .* sizes >= 1", lambda: capsule.dynamic_routing(np.zeros((1, 0, 3, 4)))),
        (ValueError, "grad_output must have the forward output's shape",
         lambda: capsule.dynamic_routing_input(u_hat, np.zeros((1, 4, 3)))),
        (ValueError, "input must be 3-D",
         lambda: capsule.prediction_vectors(np.zeros((2, 3)), np.zeros((3, 2, 2, 3)))),
        (ValueError, "weight must be 4-D",
         lambda: capsule.prediction_vectors(np.zeros((1, 3, 2)), np.zeros((3, 2, 2)))),
        (ValueError, "weight has 4 input capsules",
         lambda: capsule.prediction_vectors(np.zeros((1, 3, 2)), np.zeros((4, 2, 2, 2)))),
        (ValueError, "Din",
         lambda: capsule.prediction_vectors(np.zeros((1, 3, 2)), np.zeros((3, 2, 2, 5)))),
        (ValueError, "input_shape must have 3 entries",
         lambda: capsule.prediction_vectors_input((1, 3), np.zeros((3, 2, 2, 2)),
                                                  np.zeros((1, 3, 2, 2)))),
        (TypeError, "weight_shape must be a sequence",
         lambda: capsule.prediction_vectors_weight(np.zeros((1, 3, 2)), 5, np.zeros((1, 3)))),
        (TypeError, "u_hat has dtype complex",
         lambda: capsule.dynamic_routing(np.zeros((1, 2, 3, 4), complex))),
        (ValueError, "backend must be one of", lambda: capsule.dynamic_routing(u_hat, backend="x")),
        (TypeError, "backend must be a string", lambda: capsule.dynamic_routing(u_hat, backend=1)),
        (ValueError, "backend 'cuda' cannot run the capsule kernels",
         lambda: capsule.dynamic_routing(u_hat, backend="cuda")),
        (ValueError, "labels must be class indices in \\[0, 3\\), got 3",
         lambda: capsule.margin_loss(np.zeros((2, 3)), np.array([0, 3]))),
        (ValueError, "labels must be class indices in \\[0, 3\\), got -1",
         lambda: capsule.margin_loss_input(np.zeros((2, 3)), np.array([-1, 0]))),
        (TypeError, "labels must be integers",
         lambda: capsule.margin_loss(np.zeros((2, 3)), np.array([0.0, 1.0]))),
        (ValueError, "labels must have shape \\(N,\\)",
         lambda: capsule.margin_loss(np.zeros((2, 3)), np.array([0]))),
        (ValueError, "lengths must be 2-D", lambda: capsule.margin_loss(np.zeros(3), np.zeros(3, int))),
        (ValueError, "reduction must be one of",
         lambda: capsule.margin_loss(np.zeros((1, 3)), np.zeros(1, int), reduction="avg")),
        (TypeError, "m_plus must be a real number",
         lambda: capsule.margin_loss(np.zeros((1, 3)), np.zeros(1, int), m_plus="0.9")),
        (ValueError, "grad_output must be a scalar",
         lambda: capsule.margin_loss_input(np.zeros((1, 3)), np.zeros(1, int), np.ones(2))),
        (ValueError, "s must have at least 1 dimension", lambda: capsule.squash(np.float64(2.0))),
        (ValueError, "axis 2 is out of range", lambda: capsule.squash(np.zeros((2, 3)), axis=2)),
        (TypeError, "axis must be an integer", lambda: capsule.squash(np.zeros((2, 3)), axis=1.0)),
        (ValueError, "squash_input: grad_output must have",
         lambda: capsule.squash_input(np.zeros((2, 3)), np.zeros((3, 2)))),
    ]
    for exc, match, call in cases:
        with pytest.raises(exc, match=match):
            call()


def test_layer_bad_input():
    with pytest.raises(ValueError, match="routing_iterations must be positive"):
        CapsuleLayer(4, 2, 3, 5, routing_iterations=0)
    with pytest.raises(TypeError, match="in_dim must be an integer"):
        CapsuleLayer(4, 2.0, 3, 5)
    layer = CapsuleLayer(4, 2, 3, 5, generator=0)
    with pytest.raises(ValueError, match="input has 5 capsules"):
        layer(np.zeros((1, 5, 2), np.float32))
    with pytest.raises(ValueError, match="dimension 3 \\(dim 2\\), expected 2"):
        layer(np.zeros((1, 4, 3), np.float32))
    with pytest.raises(ValueError, match="input must be 3-D"):
        layer(np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="PrimaryCaps: input must be 4-D"):
        PrimaryCaps(3, 2, 4, 3)(np.zeros((3, 9, 9), np.float32))
    mask = CapsuleMask().train()
    with pytest.raises(ValueError, match="labels are required in training mode"):
        mask(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="labels must be class indices in \\[0, 3\\), got 5"):
        mask(np.zeros((2, 3, 4)), np.array([0, 5]))
    with pytest.raises(ValueError, match="image_shape must be"):
        CapsNetDecoder(3, 4, (28, 28))
    with pytest.raises(ValueError, match="decoder=False"):
        models.capsnet(decoder=False, initialize=False).reconstruct(np.zeros((1, 10, 16)))


# --------------------------------------------------------------------------- layers


def test_mask_by_label_in_training_and_longest_in_inference():
    v = np.zeros((2, 3, 2))
    v[0, 1] = [0.3, 0.4]
    v[0, 2] = [0.1, 0.0]
    v[1, 0] = [0.0, 0.9]
    mask = CapsuleMask().retain_inputs()
    out = mask(v)  # inference: the longest capsule
    assert np.array_equal(out[0], [[0, 0], [0.3, 0.4], [0, 0]])
    assert np.array_equal(out[1], [[0, 0.9], [0, 0], [0, 0]])
    mask.train()
    out = mask(v, np.array([2, 1]))
    assert np.array_equal(out[0], [[0, 0], [0, 0], [0.1, 0.0]]) and not out[1].any()
    g = mask.backward(np.ones_like(v))
    assert np.array_equal(g[:, :, 0], [[0, 0, 1], [0, 1, 0]])


def _small_capsnet(engine, decoder=True):
    return CapsNet(1, (12, 12), num_classes=3, routing_iterations=3, decoder=decoder,
                   conv_channels=4, kernel_size=3, primary_capsules=2, primary_dim=4,
                   digit_dim=5, decoder_hidden=(8, 12), dtype=np.float64,
                   generator=1).set_backend(engine)


def _torch_capsnet(net, x, labels):
    """The same CapsNet in torch with the same weights, on the tensor x: (v, reconstruction,
    parameters)."""
    F = torch.nn.functional
    sd = {k: _t(v, True) for k, v in net.state_dict().items()}
    h = F.relu(F.conv2d(x, sd["conv1.weight"], sd["conv1.bias"]))
    y = F.conv2d(h, sd["primary_caps.conv.weight"], sd["primary_caps.conv.bias"], stride=2)
    N, _, OH, OW = y.shape
    T, D = net.primary_caps.num_capsules, net.primary_caps.capsule_dim
    u = _torch_squash(y.reshape(N, T, D, OH, OW).permute(0, 1, 3, 4, 2).reshape(N, -1, D))
    u_hat = torch.einsum("ijdk,nik->nijd", sd["digit_caps.weight"], u)
    v, _ = _torch_routing(u_hat, net.digit_caps.routing_iterations)
    masked = v * F.one_hot(torch.tensor(labels), v.shape[1]).double()[..., None]
    z = F.relu(F.linear(masked.reshape(N, -1), sd["decoder.fc1.weight"], sd["decoder.fc1.bias"]))
    z = F.relu(F.linear(z, sd["decoder.fc2.weight"], sd["decoder.fc2.bias"]))
    recon = torch.sigmoid(F.linear(z, sd["decoder.fc3.weight"], sd["decoder.fc3.bias"]))
    return v, recon.reshape(N, *x.shape[1:]), sd


@needs_torch
def test_capsnet_forward_and_backward_match_torch(engine):
    rng = np.random.default_rng(0)
    net = _small_capsnet(engine).retain_inputs().train()
    x = rng.uniform(0, 1, (3, 1, 12, 12))
    labels = np.array([2, 0, 1])
    v = net(x)
    recon = net.reconstruct(v, labels)
    tx = _t(x, True)
    tv, trecon, sd = _torch_capsnet(net, tx, labels)
    np.testing.assert_allclose(v, tv.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(recon, trecon.detach().numpy(), rtol=1e-10, atol=1e-12)
    gv, gr = rng.normal(size=v.shape), rng.normal(size=recon.shape)
    ((tv * _t(gv)).sum() + (trecon * _t(gr)).sum()).backward()
    gx = net.backward(gv, gr)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-8, atol=1e-11)
    grads = dict(net.named_grads())
    assert set(grads) == set(sd)
    for k, g in grads.items():
        np.testing.assert_allclose(g, sd[k].grad.numpy(), rtol=1e-8, atol=1e-11, err_msg=k)


def test_capsule_layer_gradient_matches_finite_differences(engine):
    rng = np.random.default_rng(9)
    layer = CapsuleLayer(5, 3, 4, 2, routing_iterations=3, dtype=np.float64,
                         generator=2).set_backend(engine)
    layer.weight *= 30  # make the routing non-trivial
    x = capsule.squash(rng.normal(size=(2, 5, 3)))
    gv = rng.normal(size=(2, 4, 2))
    layer.retain_inputs()
    layer(x)
    gx = layer.backward(gv)
    gw = layer.grads["weight"]
    h = 1e-6
    dx, dw = rng.normal(size=x.shape), rng.normal(size=layer.weight.shape)
    w0 = layer.weight.copy()

    def f(xx, ww):
        layer.weight[...] = ww
        return float((layer(xx) * gv).sum())

    fd_x = (f(x + h * dx, w0) - f(x - h * dx, w0)) / (2 * h)
    fd_w = (f(x, w0 + h * dw) - f(x, w0 - h * dw)) / (2 * h)
    assert fd_x == pytest.approx(float((gx * dx).sum()), rel=1e-6)
    assert fd_w == pytest.approx(float((gw * dw).sum()), rel=1e-6)


def test_coupling_and_state_dict_keys():
    net = _small_capsnet("auto")
    keys = list(net.state_dict())
    assert keys == ["conv1.weight", "conv1.bias", "primary_caps.conv.weight",
                    "primary_caps.conv.bias", "digit_caps.weight", "decoder.fc1.weight",
                    "decoder.fc1.bias", "decoder.fc2.weight", "decoder.fc2.bias",
                    "decoder.fc3.weight", "decoder.fc3.bias"]
    assert net.digit_caps.weight.shape == (32, 3, 5, 4)  # 2 types x 4x4 grid, no bias
    u = net.primary_caps(net.relu(net.conv1(np.ones((2, 1, 12, 12)))))
    assert u.shape == (2, 32, 4)
    c = net.digit_caps.coupling(u)
    assert c.shape == (2, 32, 3) and np.allclose(c.sum(-1), 1)
    assert net.predict(np.ones((2, 1, 12, 12))).shape == (2,)


# --------------------------------------------------------------------------- the paper's model


def test_capsnet_parameter_counts():
    with_decoder = models.capsnet(initialize=False)
    without = models.get_model("capsnet", decoder=False, initialize=False)
    assert with_decoder.num_parameters() == 8_215_568
    assert without.num_parameters() == 6_804_224
    assert sum(int(p.size) for p in with_decoder.parameters()) == 8_215_568
    assert with_decoder.digit_caps.weight.shape == (1152, 10, 16, 8)


def test_capsnet_accounting_summary_and_receptive_field():
    m = models.capsnet(initialize=False)
    acc = accounting.count(m, (1, 28, 28))
    rows = {r.name: r for r in acc.layers}
    assert acc.params == 8_215_568 and acc.output_shape == (1, 10, 16)
    assert rows["conv1"].macs == 20 * 20 * 256 * 81
    assert rows["primary_caps.conv"].macs == 6 * 6 * 256 * 256 * 81
    # prediction vectors 1152*10*16*8, routing (2*3 - 1) * 1152*10*16
    assert rows["digit_caps"].macs == 1_474_560 + 921_600
    assert rows["digit_caps"].other_ops == 4 * 2 * 11_520 + 2 * 3 * 160
    assert rows["primary_caps"].other_ops == 2 * 9216
    assert rows["decoder.fc3"].macs == 1024 * 784
    assert acc.macs == 8_294_400 + 191_102_976 + 2_396_160 + 81_920 + 524_288 + 802_816
    assert accounting.count(m, (1, 28, 28), batch=4).macs == 4 * acc.macs
    rf = receptive_field(m, (1, 28, 28))
    assert rf.layer.name == "primary_caps.conv"
    assert rf.size == (17, 17) and rf.jump == (2, 2) and rf.start == (8, 8)
    assert rf.layer.region((5, 5)) == ((10.0, 26.0), (10.0, 26.0))
    caps_row = next(r for r in rf.layers if r.name == "primary_caps")
    assert not caps_row.spatial and "grid" not in caps_row.note and "row, col" in caps_row.note
    s = summary(m, (1, 28, 28))
    assert s.params == 8_215_568 and s.macs == acc.macs
    assert [r.name for r in s.layers][:5] == ["conv1", "relu", "primary_caps.conv",
                                              "primary_caps", "digit_caps"]
    assert "CapsuleLayer" in str(s)
    no_dec = accounting.count(models.capsnet(decoder=False, initialize=False), (1, 28, 28))
    assert no_dec.params == 6_804_224 and [r.name for r in no_dec.layers][-1] == "digit_caps"


def test_capsnet_forward_shapes_and_input_checks():
    m = models.capsnet(num_classes=4, conv_channels=8, primary_capsules=2, generator=0)
    v = m(np.random.default_rng(0).uniform(size=(2, 1, 28, 28)).astype(np.float32))
    assert v.shape == (2, 4, 16) and v.dtype == np.float32
    assert m.reconstruct(v).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="input_shape must be"):
        models.capsnet(input_shape=(28, 28))
    with pytest.raises(ValueError, match="num_classes"):
        models.capsnet(num_classes=0)
