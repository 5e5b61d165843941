"""fastconv.fused: a convolution and its epilogue (scale, shift, residual, activation) in one
call, on every backend, against the separate ops (float64 reference) and torch."""

import numpy as np
import pytest

import fastconv as fc
from fastconv.backends import _registry

BACKENDS = [b for b, why in fc.available_backends().items() if why.startswith("available")
            and b != "cuda"]


def _expected(y, scale, shift, residual, activation):
    y = np.array(y, dtype=np.float64)
    if scale is not None:
        y = y * np.asarray(scale, np.float64)[:, None, None]
    if shift is not None:
        y = y + np.asarray(shift, np.float64)[:, None, None]
    if residual is not None:
        y = y + residual
    if activation == "relu":
        y = np.maximum(y, 0)
    elif activation == "relu6":
        y = np.clip(y, 0, 6)
    return y


def _random_case(rng, depthwise=False):
    N = int(rng.integers(0, 3))
    C = int(rng.integers(1, 9))
    G = C if depthwise else int(rng.choice([g for g in range(1, C + 1) if C % g == 0]))
    OC = G * int(rng.integers(1, 4)) if not depthwise else C * int(rng.integers(1, 3))
    K = int(rng.integers(1, 5))
    H, W = int(rng.integers(K, K + 12)), int(rng.integers(K, K + 12))
    return dict(N=N, C=C, G=G, OC=OC, K=K, H=H, W=W, s=int(rng.integers(1, 3)),
                p=int(rng.integers(0, 3)), d=int(rng.integers(1, 3)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(12))
def test_fused_conv2d_matches_the_separate_ops(backend, dtype, seed, restore_threads):
    rng = np.random.default_rng(seed)
    c = _random_case(rng)
    if c["d"] * (c["K"] - 1) + 1 > min(c["H"], c["W"]) + 2 * c["p"]:
        c["d"] = 1
    fc.set_num_threads(int(rng.integers(1, _registry.max_threads() + 1)))
    x = rng.standard_normal((c["N"], c["C"], c["H"], c["W"])).astype(dtype)
    w = rng.standard_normal((c["OC"], c["C"] // c["G"], c["K"], c["K"])).astype(dtype)
    b = rng.standard_normal(c["OC"]).astype(dtype) if rng.random() < 0.5 else None
    plain = fc.conv2d(x.astype(np.float64), w.astype(np.float64),
                      None if b is None else b.astype(np.float64), c["s"], c["p"], c["d"],
                      c["G"], backend="reference")
    scale = rng.standard_normal(c["OC"]).astype(dtype) if rng.random() < 0.7 else None
    shift = rng.standard_normal(c["OC"]).astype(dtype) if rng.random() < 0.7 else None
    residual = (rng.standard_normal(plain.shape).astype(dtype) * 3
                if rng.random() < 0.6 else None)
    act = rng.choice([None, "relu", "relu6"])
    variant = None
    if backend == "c" and rng.random() < 0.5:
        fits = [v for v in fc.backends.c.CONV2D_VARIANTS
                if _registry.variant_fits(fc.backends.c, v, c["K"], c["K"], c["s"], c["s"],
                                          c["d"], c["d"])]
        variant = str(rng.choice(fits))
    got = fc.fused.conv2d(x, w, b, c["s"], c["p"], c["d"], c["G"], scale=scale, shift=shift,
                          residual=residual, activation=act, backend=backend, variant=variant)
    want = _expected(plain, scale, shift, residual, act)
    assert got.dtype == dtype and got.shape == want.shape
    tol = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * (1 + np.abs(want).max(initial=0)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(8))
def test_fused_depthwise_matches_the_separate_ops(backend, seed):
    rng = np.random.default_rng(100 + seed)
    c = _random_case(rng, depthwise=True)
    dtype = np.float32 if seed % 2 else np.float64
    x = rng.standard_normal((c["N"], c["C"], c["H"], c["W"])).astype(dtype)
    w = rng.standard_normal((c["OC"], 1, c["K"], c["K"])).astype(dtype)
    plain = fc.depthwise_conv2d(x.astype(np.float64), w.astype(np.float64), None, c["s"],
                                c["p"], backend="reference")
    scale = rng.standard_normal(c["OC"]).astype(dtype)
    shift = rng.standard_normal(c["OC"]).astype(dtype)
    residual = rng.standard_normal(plain.shape).astype(dtype) if seed % 3 else None
    act = ["relu", "relu6", None][seed % 3]
    got = fc.fused.depthwise_conv2d(x, w, None, c["s"], c["p"], scale=scale, shift=shift,
                                    residual=residual, activation=act, backend=backend)
    want = _expected(plain, scale, shift, residual, act)
    tol = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * (1 + np.abs(want).max(initial=0)))
    # a conv2d with groups = C takes the depthwise kernel too
    got2 = fc.fused.conv2d(x, w, None, c["s"], c["p"], groups=c["C"], scale=scale, shift=shift,
                           residual=residual, activation=act, backend=backend)
    np.testing.assert_allclose(got2, want, rtol=tol, atol=tol * (1 + np.abs(want).max(initial=0)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_keeps_nan_and_unbatched_inputs(backend):
    x = np.ones((2, 5, 5))
    w = np.ones((3, 2, 3, 3))
    res = np.zeros((3, 3, 3))
    res[0, 1, 1] = np.nan
    res[1, 0, 0] = -np.inf
    y = fc.fused.conv2d(x, w, residual=res, activation="relu6", backend=backend)
    assert y.shape == (3, 3, 3)
    assert np.isnan(y[0, 1, 1]) and y[1, 0, 0] == 0 and y[2, 2, 2] == 6
    assert np.isnan(y).sum() == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_large_call_on_threads_is_exact(backend, restore_threads):
    # a call big enough to be split between threads: the epilogue is per block, and every
    # block gets it exactly once
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 32, 40, 40)).astype(np.float32)
    w = rng.standard_normal((48, 32, 3, 3)).astype(np.float32)
    shift = rng.standard_normal(48).astype(np.float32)
    res = rng.standard_normal((2, 48, 40, 40)).astype(np.float32)
    fc.set_num_threads(_registry.max_threads())
    got = fc.fused.conv2d(x, w, padding=1, shift=shift, residual=res, activation="relu",
                          backend=backend)
    y = fc.conv2d(x, w, padding=1, backend=backend)
    want = np.maximum(y + shift[:, None, None] + res, 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("variant", ["winograd_f2", "winograd_f3", "winograd_f4", None])
@pytest.mark.parametrize("seed", range(4))
def test_fused_winograd(variant, seed, restore_threads):
    # the Winograd paths apply the epilogue per output row segment they write; on dilated
    # columns to the segment's rows before they are spread over the output
    rng = np.random.default_rng(200 + seed)
    N, C, OC, H, W = 2, 40, 48, int(rng.integers(9, 30)), int(rng.integers(9, 30))
    dh, dw = (1, 1) if seed == 0 else (int(v) for v in rng.integers(1, 5, size=2))
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((OC, C, 3, 3)).astype(np.float32)
    scale, shift = rng.random(OC).astype(np.float32) + .5, rng.standard_normal(OC).astype(
        np.float32)
    res = rng.standard_normal((N, OC, H, W)).astype(np.float32)
    fc.set_num_threads(int(rng.integers(1, _registry.max_threads() + 1)))
    got = fc.fused.conv2d(x, w, padding=(dh, dw), dilation=(dh, dw), scale=scale, shift=shift,
                          residual=res, activation="relu6", backend="c", variant=variant)
    plain = fc.conv2d(x.astype(np.float64), w.astype(np.float64), padding=(dh, dw),
                      dilation=(dh, dw), backend="reference")
    want = _expected(plain, scale, shift, res, "relu6")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(scale=np.ones(2)), ValueError, "scale must have shape"),
        (dict(shift=np.ones((3, 1))), ValueError, "shift must have shape"),
        (dict(residual=np.ones((1, 3, 4, 4))), ValueError, "residual must have the output"),
        (dict(activation="gelu"), ValueError, "activation must be"),
        (dict(activation=1), TypeError, "activation must be"),
        (dict(scale="abc"), TypeError, "scale"),
    ],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_invalid_arguments(kwargs, exc, match, backend):
    x, w = np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3))
    with pytest.raises(exc, match=match) as e:
        fc.fused.conv2d(x, w, backend=backend, **kwargs)
    assert str(e.value).startswith("conv2d: ")
    with pytest.raises(exc, match=match):
        fc.fused.depthwise_conv2d(np.ones((1, 3, 5, 5)), np.ones((3, 1, 3, 3)),
                                  backend=backend, **kwargs)


def test_batch_norm_scale_shift_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    C = 7
    mean, var = rng.standard_normal(C), rng.random(C) + 0.1
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    y = rng.standard_normal((2, C, 4, 4))
    scale, shift = fc.fused.batch_norm_scale_shift(mean, var, gamma, beta, eps=1e-3)
    want = torch.nn.functional.batch_norm(
        torch.from_numpy(y), torch.from_numpy(mean), torch.from_numpy(var),
        torch.from_numpy(gamma), torch.from_numpy(beta), training=False, eps=1e-3).numpy()
    np.testing.assert_allclose(y * scale[:, None, None] + shift[:, None, None], want,
                               rtol=1e-12, atol=1e-12)


def test_fused_conv_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    mean, var = rng.standard_normal(16).astype(np.float32), rng.random(16).astype(np.float32)
    res = rng.standard_normal((2, 16, 12, 12)).astype(np.float32)
    scale, shift = fc.fused.batch_norm_scale_shift(mean, var)
    got = fc.fused.conv2d(x, w, padding=1, scale=scale, shift=shift, residual=res,
                          activation="relu")
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    want = F.relu(F.batch_norm(F.conv2d(t(x), t(w), padding=1), t(mean), t(var),
                               training=False) + t(res)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "args, exc, match",
    [
        (([1.0], [1.0, 2.0]), ValueError, "running_var has 2 channels"),
        (([[1.0]], [1.0]), ValueError, "running_mean must be 1-D"),
        ((["a"], [1.0]), TypeError, "running_mean must be a real array"),
        (([1.0], [1.0], None, None, -1.0), ValueError, "eps must be non-negative"),
        (([1.0], [1.0], None, None, "x"), TypeError, "eps must be a number"),
    ],
)
def test_batch_norm_scale_shift_invalid(args, exc, match):
    with pytest.raises(exc, match=match):
        fc.fused.batch_norm_scale_shift(*args)
