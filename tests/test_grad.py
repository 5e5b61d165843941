"""fastconv.grad: every gradient on every engine that has the kernels it uses.

- against torch autograd (skipped without torch) on seeded random configurations, float64;
- against finite differences of the reference forward ops (no torch needed): for a random
  direction v, d/dt sum(gy * f(x + t v)) at t = 0 equals sum(grad * v);
- edge cases (the transposed-conv fallback of conv input gradients, empty batches, dtypes,
  non-contiguous inputs) and invalid arguments.
Outputs are poisoned (FASTCONV_POISON) so an element a kernel forgets to write shows as NaN.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
import fastconv.ops.grad as G
from fastconv.backends import _registry

ENGINES = tuple(_registry.BACKENDS)


def _engine_module(name):
    reason = fastconv.available_backends()[name]
    if not reason.startswith("available"):
        pytest.skip(f"{name}: {reason}")
    return _registry._load(name)


def _is_simulator(name):
    return "simulator" in fastconv.available_backends()[name].lower()


def engine_with(name, *kernels, heavy=True):
    """Skip unless engine ``name`` is available and has every kernel; the CUDA simulator only
    runs the tests marked light (heavy=False)."""
    mod = _engine_module(name)
    missing = [k for k in kernels if not hasattr(mod, k)]
    if missing:
        pytest.skip(f"{name} does not implement {missing}")
    if heavy and _is_simulator(name):
        pytest.skip("CUDA simulator: only the tiny cases")
    return name


@pytest.fixture(autouse=True)
def _poison(monkeypatch):
    monkeypatch.setenv("FASTCONV_POISON", "1")


def _tol(a, b, rtol=1e-9, atol=1e-9):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- random configs


def conv_case(rng, nd, transposed=False):
    """A random valid (transposed) convolution: shapes and keyword arguments."""
    groups = int(rng.choice([1, 1, 2, 3]))
    cg, ocg = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    C, OC = cg * groups, ocg * groups
    N = int(rng.integers(1, 3))
    k = tuple(int(v) for v in rng.integers(1, 5, nd))
    d = tuple(int(v) for v in rng.integers(1, 3, nd))
    s = tuple(int(v) for v in rng.integers(1, 4, nd))
    if transposed:
        p = tuple(int(rng.integers(0, d[i] * (k[i] - 1) // 2 + 1)) for i in range(nd))
        op = tuple(int(rng.integers(0, max(s[i], d[i]))) for i in range(nd))
        spatial = tuple(int(v) for v in rng.integers(1, 6, nd))
        kw = dict(stride=s, padding=p, output_padding=op, groups=groups, dilation=d)
        return (N, C) + spatial, (C, ocg) + k, kw
    mode = rng.integers(0, 4)
    if mode == 0:
        padding, s = "same", (1,) * nd
    elif mode == 1:
        padding = "valid"
    else:
        padding = tuple(int(v) for v in rng.integers(0, 4, nd))
    pad = (0,) * nd if isinstance(padding, str) else padding
    spatial = tuple(
        max(int(rng.integers(1, 9)), d[i] * (k[i] - 1) + 1 - 2 * pad[i]) for i in range(nd)
    )
    kw = dict(stride=s, padding=padding, dilation=d, groups=groups)
    return (N, C) + spatial, (OC, cg) + k, kw


def forward_shape(fn, xshape, wshape, kw):
    return fn(np.zeros(xshape), np.zeros(wshape), backend="reference", **kw).shape


def pool_case(rng, kind):
    """A random valid max / avg pooling: input shape and keyword arguments."""
    k = tuple(int(v) for v in rng.integers(1, 5, 2))
    s = tuple(int(v) for v in rng.integers(1, 4, 2))
    d = tuple(int(v) for v in rng.integers(1, 3, 2)) if kind == "max" else (1, 1)
    p = tuple(int(rng.integers(0, min(k[i] // 2, (d[i] * (k[i] - 1) + 1) // 2) + 1))
              for i in range(2))
    H, W = (max(int(rng.integers(1, 10)), d[i] * (k[i] - 1) + 1 - 2 * p[i]) for i in range(2))
    kw = dict(kernel_size=k, stride=s if rng.integers(0, 4) else None, padding=p,
              ceil_mode=bool(rng.integers(0, 2)))
    if kind == "max":
        kw["dilation"] = d
    else:
        kw["count_include_pad"] = bool(rng.integers(0, 2))
        kw["divisor_override"] = [None, None, 3, -2][int(rng.integers(0, 4))]
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 3)), H, W)
    return shape, kw


# --------------------------------------------------------------------------- torch autograd

SEEDS = range(12)


def _torch_grads(fn, arrays, gy):
    torch = pytest.importorskip("torch")
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    y = fn(*ts)
    y.backward(torch.tensor(gy, dtype=torch.float64))
    return [t.grad.numpy() for t in ts]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("seed", SEEDS)
def test_conv_vs_torch(engine, nd, seed):
    engine_with(engine, "conv2d", "conv_transpose2d")
    F = pytest.importorskip("torch.nn.functional")
    rng = np.random.default_rng(1000 * nd + seed)
    xs, ws, kw = conv_case(rng, nd)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    if seed % 4 == 3:  # unbatched
        x = x[0]
    fwd = (F.conv1d, F.conv2d)[nd - 1]
    y_shape = forward_shape((fastconv.conv1d, fastconv.conv2d)[nd - 1], x.shape, ws, kw)
    gy = rng.standard_normal(y_shape)
    gx_t, gw_t, gb_t = _torch_grads(lambda a, c, e: fwd(a, c, e, **kw), [x, w, b], gy)
    fin, fw, fb = ((G.conv1d_input, G.conv1d_weight, G.conv1d_bias),
                   (G.conv2d_input, G.conv2d_weight, G.conv2d_bias))[nd - 1]
    _tol(fin(x.shape, w, gy, **kw, backend=engine), gx_t)
    _tol(fw(x, ws, gy, **kw, backend=engine), gw_t)
    _tol(fb(gy, backend=engine), gb_t)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("seed", SEEDS)
def test_conv_transpose_vs_torch(engine, nd, seed):
    engine_with(engine, "conv2d")
    F = pytest.importorskip("torch.nn.functional")
    rng = np.random.default_rng(2000 * nd + seed)
    xs, ws, kw = conv_case(rng, nd, transposed=True)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    b = rng.standard_normal(ws[1] * kw["groups"])
    if seed % 4 == 1:
        x = x[0]
    fwd = (F.conv_transpose1d, F.conv_transpose2d)[nd - 1]
    ours = (fastconv.conv_transpose1d, fastconv.conv_transpose2d)[nd - 1]
    gy = rng.standard_normal(forward_shape(ours, x.shape, ws, kw))
    gx_t, gw_t, gb_t = _torch_grads(lambda a, c, e: fwd(a, c, e, **kw), [x, w, b], gy)
    fin, fw, fb = ((G.conv_transpose1d_input, G.conv_transpose1d_weight, G.conv_transpose1d_bias),
                   (G.conv_transpose2d_input, G.conv_transpose2d_weight,
                    G.conv_transpose2d_bias))[nd - 1]
    _tol(fin(x.shape, w, gy, **kw, backend=engine), gx_t)
    _tol(fw(x, ws, gy, **kw, backend=engine), gw_t)
    _tol(fb(gy, backend=engine), gb_t)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", range(6))
def test_depthwise_and_separable_vs_torch(engine, seed):
    engine_with(engine, "conv2d", "conv_transpose2d")
    F = pytest.importorskip("torch.nn.functional")
    rng = np.random.default_rng(3000 + seed)
    C, m, OC = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 4))
    k = tuple(int(v) for v in rng.integers(1, 5, 2))
    d = tuple(int(v) for v in rng.integers(1, 3, 2))
    padding = "same" if seed % 2 else tuple(int(v) for v in rng.integers(0, 3, 2))
    stride = (1, 1) if seed % 2 else tuple(int(v) for v in rng.integers(1, 3, 2))
    kw = dict(stride=stride, padding=padding, dilation=d)
    xs = (int(rng.integers(1, 3)), C) + tuple(d[i] * (k[i] - 1) + int(rng.integers(1, 5))
                                              for i in range(2))
    x = rng.standard_normal(xs)
    wd, bd = rng.standard_normal((C * m, 1) + k), rng.standard_normal(C * m)
    wp, bp = rng.standard_normal((OC, C * m, 1, 1)), rng.standard_normal(OC)
    if seed == 4:
        x = x[0]
    # depthwise alone
    mid_shape = fastconv.depthwise_conv2d(x, wd, backend="reference", **kw).shape
    gmid = rng.standard_normal(mid_shape)
    gx_t, gw_t = _torch_grads(lambda a, c: F.conv2d(a, c, None, groups=C, **kw), [x, wd], gmid)
    _tol(G.depthwise_conv2d_input(x.shape, wd, gmid, **kw, backend=engine), gx_t)
    _tol(G.depthwise_conv2d_weight(x, wd.shape, gmid, **kw, backend=engine), gw_t)
    # separable: depthwise then pointwise, biases included
    gy = rng.standard_normal(mid_shape[:-3] + (OC,) + mid_shape[-2:])

    def sep(a, c, f, e, h):
        return F.conv2d(F.conv2d(a, c, e, groups=C, **kw), f, h)

    want = _torch_grads(sep, [x, wd, wp, bd, bp], gy)  # the order of the returned tuple
    got = G.separable_conv2d_backward(x, wd, wp, gy, bd, **kw, backend=engine)
    for a, b in zip(got, want):
        _tol(a, b)
    _tol(G.separable_conv2d_input(x.shape, wd, wp, gy, **kw, backend=engine), want[0])
    _tol(G.separable_conv2d_depthwise_weight(x, wd.shape, wp, gy, **kw, backend=engine), want[1])
    _tol(G.separable_conv2d_pointwise_weight(x, wd, wp.shape, gy, bd, **kw, backend=engine),
         want[2])
    _tol(G.separable_conv2d_depthwise_bias(wp, gy, backend=engine), want[3])
    _tol(G.separable_conv2d_pointwise_bias(gy, backend=engine), want[4])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", SEEDS)
def test_max_pool_vs_torch(engine, seed):
    engine_with(engine, "max_pool2d", "max_pool2d_backward")
    F = pytest.importorskip("torch.nn.functional")
    rng = np.random.default_rng(4000 + seed)
    xs, kw = pool_case(rng, "max")
    x = rng.standard_normal(xs)
    if seed % 4 == 2:
        x = x[0]
    y, idx = fastconv.max_pool2d(x, backend="reference", return_indices=True, **kw)
    gy = rng.standard_normal(y.shape)
    (gx_t,) = _max_pool_grad(lambda a: F.max_pool2d(a, **kw), x, gy, idx, 2)
    _tol(G.max_pool2d_input(x, gy, **kw, backend=engine), gx_t)
    # 1-D: the first row of the 2-D configuration
    kw1 = {k: (v[1] if isinstance(v, tuple) else v) for k, v in kw.items()}
    x1 = x[..., 0, :]
    y1, idx1 = fastconv.max_pool1d(x1, backend="reference", return_indices=True, **kw1)
    gy1 = rng.standard_normal(y1.shape)
    (gx1_t,) = _max_pool_grad(lambda a: F.max_pool1d(a, **kw1), x1, gy1, idx1, 1)
    _tol(G.max_pool1d_input(x1, gy1, **kw1, backend=engine), gx1_t)


def _max_pool_grad(fwd, x, gy, idx, nd):
    """torch autograd's input gradient of an nd-D max pool, unless a window lies wholly in
    the padding (its index points past the plane, and torch's backward then writes out of
    bounds): then the scatter-add of gy through the in-plane indices, computed here."""
    size = int(np.prod(x.shape[-nd:]))
    if (idx < size).all():
        return _torch_grads(fwd, [x], gy)
    rows = idx.reshape(-1, int(np.prod(idx.shape[-nd:])))
    g = np.zeros((rows.shape[0], size))
    for r, (ii, vv) in enumerate(zip(rows, gy.reshape(rows.shape))):
        for i, v in zip(ii, vv):
            if 0 <= i < size:
                g[r, i] += v
    return (g.reshape(x.shape),)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", SEEDS)
def test_avg_pool_vs_torch(engine, seed):
    engine_with(engine, "avg_pool2d_backward")
    F = pytest.importorskip("torch.nn.functional")
    rng = np.random.default_rng(5000 + seed)
    xs, kw = pool_case(rng, "avg")
    x = rng.standard_normal(xs)
    if seed % 4 == 1:
        x = x[0]
    gy = rng.standard_normal(fastconv.avg_pool2d(x, backend="reference", **kw).shape)
    (gx_t,) = _torch_grads(lambda a: F.avg_pool2d(a, **kw), [x], gy)
    _tol(G.avg_pool2d_input(x.shape, gy, **kw, backend=engine), gx_t)
    kw1 = {k: (v[1] if isinstance(v, tuple) else v) for k, v in kw.items()
           if k != "divisor_override"}
    x1 = x[..., 0, :]
    gy1 = rng.standard_normal(fastconv.avg_pool1d(x1, backend="reference", **kw1).shape)
    (gx1_t,) = _torch_grads(lambda a: F.avg_pool1d(a, **kw1), [x1], gy1)
    _tol(G.avg_pool1d_input(x1.shape, gy1, **kw1, backend=engine), gx1_t)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", range(6))
def test_adaptive_pools_vs_torch(engine, seed):
    engine_with(engine, "adaptive_avg_pool2d_backward", "adaptive_max_pool2d",
                "max_pool2d_backward")
    F = pytest.importorskip("torch.nn.functional")
    rng = np.random.default_rng(6000 + seed)
    xs = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) + tuple(
        int(v) for v in rng.integers(1, 9, 2))
    out = tuple(int(v) for v in rng.integers(1, 7, 2))
    x = rng.standard_normal(xs)
    if seed % 3 == 2:
        x = x[0]
    gy = rng.standard_normal(x.shape[:-2] + out)
    (ga,) = _torch_grads(lambda a: F.adaptive_avg_pool2d(a, out), [x], gy)
    (gm,) = _torch_grads(lambda a: F.adaptive_max_pool2d(a, out), [x], gy)
    _tol(G.adaptive_avg_pool2d_input(x.shape, gy, backend=engine), ga)
    _tol(G.adaptive_max_pool2d_input(x, gy, backend=engine), gm)
    x1, gy1 = x[..., 0, :], gy[..., 0, :]
    (ga1,) = _torch_grads(lambda a: F.adaptive_avg_pool1d(a, out[1]), [x1], gy1)
    (gm1,) = _torch_grads(lambda a: F.adaptive_max_pool1d(a, out[1]), [x1], gy1)
    _tol(G.adaptive_avg_pool1d_input(x1.shape, gy1, backend=engine), ga1)
    _tol(G.adaptive_max_pool1d_input(x1, gy1, backend=engine), gm1)


# --------------------------------------------------------------------------- finite differences


def _directional(f, x, v, gy, eps=1e-3):
    """d/dt sum(gy * f(x + t v)) at t = 0, by central differences."""
    return (np.sum(gy * f(x + eps * v)) - np.sum(gy * f(x - eps * v))) / (2 * eps)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", range(6))
def test_conv_finite_differences(engine, seed):
    engine_with(engine, "conv2d", "conv_transpose2d")
    rng = np.random.default_rng(7000 + seed)
    xs, ws, kw = conv_case(rng, 2)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    b = rng.standard_normal(ws[0])
    y = fastconv.conv2d(x, w, b, backend="reference", **kw)
    gy = rng.standard_normal(y.shape)
    vx, vw, vb = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])

    def f_x(a):
        return fastconv.conv2d(a, w, b, backend="reference", **kw)

    def f_w(a):
        return fastconv.conv2d(x, a, b, backend="reference", **kw)

    def f_b(a):
        return fastconv.conv2d(x, w, a, backend="reference", **kw)

    gx = G.conv2d_input(xs, w, gy, **kw, backend=engine)
    gw = G.conv2d_weight(x, ws, gy, **kw, backend=engine)
    gb = G.conv2d_bias(gy, backend=engine)
    _tol(np.sum(gx * vx), _directional(f_x, x, vx, gy), rtol=1e-7, atol=1e-7)
    _tol(np.sum(gw * vw), _directional(f_w, w, vw, gy), rtol=1e-7, atol=1e-7)
    _tol(np.sum(gb * vb), _directional(f_b, b, vb, gy), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", range(6))
def test_conv_transpose_finite_differences(engine, seed):
    engine_with(engine, "conv2d")
    rng = np.random.default_rng(8000 + seed)
    xs, ws, kw = conv_case(rng, 2, transposed=True)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    y = fastconv.conv_transpose2d(x, w, backend="reference", **kw)
    gy = rng.standard_normal(y.shape)
    vx, vw = rng.standard_normal(xs), rng.standard_normal(ws)
    gx = G.conv_transpose2d_input(xs, w, gy, **kw, backend=engine)
    gw = G.conv_transpose2d_weight(x, ws, gy, **kw, backend=engine)
    dx = _directional(lambda a: fastconv.conv_transpose2d(a, w, backend="reference", **kw),
                      x, vx, gy)
    dw = _directional(lambda a: fastconv.conv_transpose2d(x, a, backend="reference", **kw),
                      w, vw, gy)
    _tol(np.sum(gx * vx), dx, rtol=1e-7, atol=1e-7)
    _tol(np.sum(gw * vw), dw, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", range(6))
def test_pool_finite_differences(engine, seed):
    engine_with(engine, "max_pool2d", "max_pool2d_backward", "avg_pool2d_backward")
    rng = np.random.default_rng(9000 + seed)
    xs, kw = pool_case(rng, "avg")
    v = rng.standard_normal(xs)
    x = rng.standard_normal(xs)
    gy = rng.standard_normal(fastconv.avg_pool2d(x, backend="reference", **kw).shape)
    d = _directional(lambda a: fastconv.avg_pool2d(a, backend="reference", **kw), x, v, gy)
    _tol(np.sum(G.avg_pool2d_input(xs, gy, **kw, backend=engine) * v), d, rtol=1e-7, atol=1e-7)
    # max pool away from ties: distinct values at least 0.1 apart, steps of 1e-4
    xs, kw = pool_case(rng, "max")
    x = rng.permutation(np.arange(np.prod(xs))).reshape(xs) * 0.1
    gy = rng.standard_normal(fastconv.max_pool2d(x, backend="reference", **kw).shape)
    v = rng.uniform(-1, 1, xs)
    d = _directional(lambda a: fastconv.max_pool2d(a, backend="reference", **kw), x, v, gy,
                     eps=1e-4)
    _tol(np.sum(G.max_pool2d_input(x, gy, **kw, backend=engine) * v), d, rtol=1e-7, atol=1e-7)


# --------------------------------------------------------------------------- edge cases


def _conv_input_by_definition(xs, w, gy, stride, pad0, dilation):
    """dL/dx of conv2d by scattering gy through every tap (reference for the edge cases)."""
    N, C, H, W = xs
    OC, Cg, KH, KW = w.shape
    out = np.zeros((N, C, H + 64, W + 64))  # room for taps that land past the input
    big = np.zeros((N, C, H + 2 * 64, W + 2 * 64))
    for i in range(gy.shape[2]):
        for j in range(gy.shape[3]):
            for kh in range(KH):
                for kw in range(KW):
                    r = i * stride[0] - pad0[0] + kh * dilation[0] + 64
                    c = j * stride[1] - pad0[1] + kw * dilation[1] + 64
                    big[:, :, r, c] += np.einsum("no,oc->nc", gy[:, :, i, j], w[:, :, kh, kw])
    del out
    return big[:, :, 64 : 64 + H, 64 : 64 + W]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "H, k, stride, padding, dilation",
    [
        (1, 1, 3, 1, 1),  # the conv reads only padding: the natural transposed size is < 1
        (2, 1, 3, 2, 1),
        (5, 2, 1, "same", 1),  # even kernel: one more row of padding after than before
        (6, 4, 1, "same", 3),
        (7, 3, 2, 3, 1),
        (9, 2, 4, 0, 3),  # the conv never reads the input's last rows
    ],
)
def test_conv_input_transposed_geometry_edges(engine, H, k, stride, padding, dilation):
    engine_with(engine, "conv_transpose2d")
    rng = np.random.default_rng(H * 100 + k)
    xs, w = (2, 1, H, H + 1), rng.standard_normal((3, 1, k, k))
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    y = fastconv.conv2d(np.zeros(xs), w, backend="reference", **kw)
    gy = rng.standard_normal(y.shape)
    pad0 = (dilation * (k - 1) // 2,) * 2 if padding == "same" else (padding, padding)
    want = _conv_input_by_definition(xs, w, gy, (stride, stride), pad0, (dilation, dilation))
    _tol(G.conv2d_input(xs, w, gy, **kw, backend=engine), want)


@pytest.mark.parametrize("engine", ENGINES)
def test_empty_batch(engine):
    engine_with(engine, "conv2d", "conv_transpose2d", "max_pool2d", "max_pool2d_backward")
    x, w = np.ones((0, 2, 5, 5)), np.ones((4, 2, 3, 3))
    gy = np.ones((0, 4, 3, 3))
    assert G.conv2d_input(x.shape, w, gy, backend=engine).shape == (0, 2, 5, 5)
    gw = G.conv2d_weight(x, w.shape, gy, backend=engine)
    assert gw.shape == w.shape and not gw.any()
    gb = G.conv2d_bias(gy, backend=engine)
    assert gb.shape == (4,) and not gb.any()
    assert G.max_pool2d_input(x, np.ones((0, 2, 2, 2)), 2, backend=engine).shape == x.shape


@pytest.mark.parametrize("engine", ENGINES)
def test_adaptive_zero_output_size(engine):
    engine_with(engine, "adaptive_avg_pool2d_backward")
    gx = G.adaptive_avg_pool2d_input((1, 2, 3, 3), np.ones((1, 2, 0, 2)), backend=engine)
    assert gx.shape == (1, 2, 3, 3) and not gx.any()


@pytest.mark.parametrize("engine", ENGINES)
def test_dtypes_and_noncontiguous(engine):
    engine_with(engine, "conv2d", "conv_transpose2d", "max_pool2d", "max_pool2d_backward")
    rng = np.random.default_rng(5)
    x64 = rng.standard_normal((2, 4, 6, 7))
    w64 = rng.standard_normal((3, 4, 3, 2))
    gy64 = rng.standard_normal((2, 3, 4, 6))
    ref_x = G.conv2d_input(x64.shape, w64, gy64, backend="reference")
    ref_w = G.conv2d_weight(x64, w64.shape, gy64, backend="reference")
    for dt, tol in ((np.float32, 1e-4), (np.float16, 2e-2)):
        gx = G.conv2d_input(x64.shape, w64.astype(dt), gy64.astype(dt), backend=engine)
        gw = G.conv2d_weight(x64.astype(dt), w64.shape, gy64.astype(dt), backend=engine)
        assert gx.dtype == dt and gw.dtype == dt
        _tol(gx, ref_x, rtol=tol, atol=tol * 10)
        _tol(gw, ref_w, rtol=tol, atol=tol * 10)
    # mixed float32 / float64 -> float64; integers -> float64
    assert G.conv2d_input(x64.shape, w64.astype(np.float32), gy64, backend=engine).dtype == np.float64
    assert G.conv2d_bias(np.ones((1, 2, 3, 3), np.int32), backend=engine).dtype == np.float64
    # non-contiguous views give the same result as their copies
    xt = np.ascontiguousarray(x64.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    gyt = gy64[:, :, ::-1, :][:, :, ::-1, :]
    assert not xt.flags.c_contiguous
    _tol(G.conv2d_weight(xt, w64.shape, gyt[:, :, :, :], backend=engine), ref_w)
    gyp = rng.standard_normal((2, 4, 3, 3))
    xv = x64[:, :, ::1, ::1]
    a = G.max_pool2d_input(xv, gyp[:, :, ::1], 2, backend=engine)
    _tol(a, G.max_pool2d_input(np.ascontiguousarray(xv), gyp, 2, backend="reference"))


@pytest.mark.parametrize("engine", ENGINES)
def test_max_pool_nan_and_ties(engine):
    engine_with(engine, "max_pool2d", "max_pool2d_backward")
    # ties: the first maximum in scan order gets the gradient (as torch); NaN: the last NaN
    x = np.array([[[[1.0, 1.0], [0.0, 1.0]]]])
    gx = G.max_pool2d_input(x, np.ones((1, 1, 1, 1)), 2, backend=engine)
    np.testing.assert_array_equal(gx, [[[[1.0, 0.0], [0.0, 0.0]]]])
    x = np.array([[[[np.nan, 5.0], [np.nan, 1.0]]]])
    gx = G.max_pool2d_input(x, np.full((1, 1, 1, 1), 2.0), 2, backend=engine)
    np.testing.assert_array_equal(gx, [[[[0.0, 0.0], [2.0, 0.0]]]])


@pytest.mark.parametrize("engine", ENGINES)
def test_cuda_simulator_tiny(engine):
    """The only cases run under the CUDA simulator (also run on every other engine)."""
    engine_with(engine, "conv2d", "conv_transpose2d", "max_pool2d", "max_pool2d_backward",
                heavy=False)
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((2, 1, 2, 2))
    gy = rng.standard_normal((1, 2, 4, 4))
    kw = dict(padding="same", groups=2)
    _tol(G.conv2d_input(x.shape, w, gy, **kw, backend=engine),
         G.conv2d_input(x.shape, w, gy, **kw, backend="reference"))
    _tol(G.conv2d_weight(x, w.shape, gy, **kw, backend=engine),
         G.conv2d_weight(x, w.shape, gy, **kw, backend="reference"))
    gp = rng.standard_normal((1, 2, 2, 2))
    _tol(G.max_pool2d_input(x, gp, 2, backend=engine),
         G.max_pool2d_input(x, gp, 2, backend="reference"))
    if engine == "cuda" and not _is_simulator(engine):
        # device arrays in, device arrays out (backend="auto" picks cuda); the simulator's
        # arrays are not device arrays to fastconv, so this runs on a real GPU only
        from numba import cuda

        got = G.conv2d_weight(cuda.to_device(x), w.shape, cuda.to_device(gy), **kw)
        assert _registry.is_device_array(got)
        _tol(got.copy_to_host(), G.conv2d_weight(x, w.shape, gy, **kw, backend="reference"))


# --------------------------------------------------------------------------- invalid arguments

X = np.ones((1, 2, 5, 5))
Wt = np.ones((3, 2, 3, 3))
GY = np.ones((1, 3, 3, 3))


@pytest.mark.parametrize(
    "call, exc, name",
    [
        (lambda: G.conv2d_input((1, 2, 5, 5), Wt, np.ones((1, 3, 3, 4))), ValueError,
         "grad_output"),
        (lambda: G.conv2d_input((1, 2, 5, 5), Wt, np.ones((3, 3, 3))), ValueError, "grad_output"),
        (lambda: G.conv2d_input("1,2,5,5", Wt, GY), TypeError, "input_shape"),
        (lambda: G.conv2d_input(5, Wt, GY), TypeError, "input_shape"),
        (lambda: G.conv2d_input((1, 2, 5.0, 5), Wt, GY), TypeError, "input_shape"),
        (lambda: G.conv2d_input((1, -2, 5, 5), Wt, GY), ValueError, "input_shape"),
        (lambda: G.conv2d_input((2, 5, 5, 5, 5), Wt, GY), ValueError, "input_shape"),
        (lambda: G.conv2d_input((1, 4, 5, 5), Wt, GY), ValueError, "channels"),
        (lambda: G.conv2d_input((1, 2, 5, 5), Wt, GY, stride=0), ValueError, "stride"),
        (lambda: G.conv2d_input((1, 2, 5, 5), Wt, GY, padding="same", stride=2), ValueError,
         "same"),
        (lambda: G.conv2d_input((1, 2, 5, 5), Wt, GY, padding="full"), ValueError, "padding"),
        (lambda: G.conv2d_input((1, 2, 5, 5), Wt, GY, groups=0), ValueError, "groups"),
        (lambda: G.conv2d_input((1, 2, 5, 5), Wt, GY, backend="nope"), ValueError, "backend"),
        (lambda: G.conv2d_input((1, 2, 5, 5), Wt, GY, backend=3), TypeError, "backend"),
        (lambda: G.conv2d_input((1, 2, 5, 5), Wt.astype(complex), GY), TypeError, "complex"),
        (lambda: G.conv2d_weight(X, (3, 2, 3), GY), ValueError, "weight_shape"),
        (lambda: G.conv2d_weight(X, (3, 2, 3, 3), np.ones((1, 3, 4, 3))), ValueError,
         "grad_output"),
        (lambda: G.conv2d_weight(X, [3, 2, 3, None], GY), TypeError, "weight_shape"),
        (lambda: G.conv1d_weight(np.ones((1, 2, 5)), (3, 2, 3), np.ones((1, 3, 2))), ValueError,
         "grad_output"),
        (lambda: G.conv2d_bias(np.ones((3, 3))), ValueError, "grad_output"),
        (lambda: G.conv1d_bias(np.ones((1, 1, 3, 3))), ValueError, "grad_output"),
        (lambda: G.conv_transpose2d_input((1, 3, 3, 3), np.ones((3, 2, 3, 3)),
                                          np.ones((1, 2, 4, 4))), ValueError, "grad_output"),
        (lambda: G.conv_transpose2d_input((1, 3, 3, 3), np.ones((3, 2, 3, 3)),
                                          np.ones((1, 2, 5, 5)), output_padding=1), ValueError,
         "output_padding"),
        (lambda: G.conv_transpose2d_input((1, 3, 3, 3), np.ones((3, 2, 3, 3)),
                                          np.ones((1, 2, 5, 5)), padding="same"), TypeError,
         "padding"),
        (lambda: G.conv_transpose2d_weight(np.ones((1, 3, 3, 3)), (3, 2, 3, 3),
                                           np.ones((1, 2, 5, 6))), ValueError, "grad_output"),
        (lambda: G.depthwise_conv2d_input((1, 2, 5, 5), np.ones((4, 2, 3, 3)), GY), ValueError,
         "weight"),
        (lambda: G.depthwise_conv2d_weight(X, (3, 1, 3, 3), np.ones((1, 3, 3, 3))), ValueError,
         "weight_shape"),
        (lambda: G.separable_conv2d_input((1, 2, 5, 5), np.ones((2, 1, 3, 3)),
                                          np.ones((4, 3, 1, 1)), np.ones((1, 4, 3, 3))),
         ValueError, "pointwise_weight"),
        (lambda: G.separable_conv2d_input((1, 2, 5, 5), np.ones((2, 1, 3, 3)),
                                          np.ones((4, 2, 1, 1)), np.ones((1, 3, 3, 3))),
         ValueError, "grad_output"),
        (lambda: G.separable_conv2d_backward(X, np.ones((2, 1, 3, 3)), np.ones((4, 2, 1, 1)),
                                             np.ones((1, 4, 3, 3)), np.ones(3)), ValueError,
         "depthwise_bias"),
        (lambda: G.separable_conv2d_depthwise_bias(np.ones((4, 2, 1, 1)), np.ones((1, 3, 3, 3))),
         ValueError, "grad_output"),
        (lambda: G.max_pool2d_input(X, np.ones((1, 2, 2, 3)), 2), ValueError, "grad_output"),
        (lambda: G.max_pool2d_input(X, np.ones((1, 2, 2, 2)), 2, padding=2), ValueError,
         "padding"),
        (lambda: G.max_pool2d_input(X, np.ones((1, 2, 2, 2)), 2, ceil_mode=1), TypeError,
         "ceil_mode"),
        (lambda: G.max_pool2d_input(X, np.ones((1, 2, 2, 2)), (2, 2, 2)), ValueError,
         "kernel_size"),
        (lambda: G.avg_pool2d_input((1, 2, 5, 5), np.ones((1, 2, 2, 2)), 2, divisor_override=0),
         ValueError, "divisor_override"),
        (lambda: G.avg_pool2d_input((1, 2, 5, 5), np.ones((1, 2, 2, 2)), 2,
                                    count_include_pad="yes"), TypeError, "count_include_pad"),
        (lambda: G.avg_pool2d_input((1, 2, 5, 5), np.ones((1, 2, 3, 2)), 2), ValueError,
         "grad_output"),
        (lambda: G.avg_pool2d_input((1, 2, 0, 5), np.ones((1, 2, 0, 2)), 2), ValueError,
         "input"),
        (lambda: G.adaptive_avg_pool2d_input((1, 2, 5, 5), np.ones((2, 2, 2))), ValueError,
         "grad_output"),
        (lambda: G.adaptive_avg_pool2d_input((1, 2, 5, 5), np.ones((1, 3, 2, 2))), ValueError,
         "grad_output"),
        (lambda: G.adaptive_max_pool2d_input(X, np.ones((2, 2, 2, 2))), ValueError,
         "grad_output"),
        (lambda: G.adaptive_max_pool1d_input(np.ones((1, 2, 5)), np.ones((1, 2, 2, 2))),
         ValueError, "grad_output"),
    ],
)
def test_invalid_arguments(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


def test_backend_without_kernels_is_refused():
    names = [n for n, r in fastconv.available_backends().items() if r.startswith("available")]
    for n in names:
        mod = _registry._load(n)
        if not hasattr(mod, "conv_transpose2d"):
            with pytest.raises(ValueError, match="conv_transpose2d"):
                G.conv2d_input((1, 2, 5, 5), Wt, GY, backend=n)
            return
    pytest.skip("every available engine implements conv_transpose2d")


def test_docstring_examples():
    import doctest

    attempted = failed = 0
    for module in (G, G.conv, G.pool):  # the package, and the files holding the functions
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        attempted += result.attempted
        failed += result.failed
    assert attempted > 20 and failed == 0
