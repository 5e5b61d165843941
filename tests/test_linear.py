"""fastconv.nn.Linear on the C engine's linear kernel (csrc/linear.c, inputs of at most 16
rows) and on NumPy's matmul (larger inputs, or without the C engine): the same values, in
every dtype and shape, against a float64 product and torch."""

from __future__ import annotations

import numpy as np
import pytest

from fastconv import nn
from fastconv.nn import layers

c = pytest.importorskip("fastconv.backends.c")
needs_c = pytest.mark.skipif(c.AVAILABLE_REASON != "available", reason=c.AVAILABLE_REASON)


def _want(x, lin):
    y = np.asarray(x, np.float64) @ lin.weight.astype(np.float64).T
    return y if lin.bias is None else y + lin.bias


@needs_c
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_kernel_random_shapes(dtype):
    rng = np.random.default_rng(1 if dtype == np.float32 else 2)
    for _ in range(60):
        N, K, O = int(rng.integers(1, 20)), int(rng.integers(0, 300)), int(rng.integers(1, 70))
        x = rng.standard_normal((N, K)).astype(dtype)
        w = rng.standard_normal((O, K)).astype(dtype)
        b = rng.standard_normal(O).astype(dtype) if rng.random() < 0.7 else None
        y = np.full((N, O), np.nan, dtype)
        c.linear(x, w, b, y)
        want = x.astype(np.float64) @ w.astype(np.float64).T + (0 if b is None else b)
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(y, want, rtol=tol, atol=tol * max(1.0, np.sqrt(K)))


@pytest.mark.parametrize("rows_shape", [(1,), (7,), (16,), (17,), (40,), (2, 3), (4, 5)])
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("bias", (True, False))
def test_layer_both_paths_agree(rows_shape, dtype, bias, monkeypatch):
    rng = np.random.default_rng(len(rows_shape) * 100 + rows_shape[-1])
    lin = nn.Linear(37, 11, bias=bias, dtype=dtype, generator=3)
    x = rng.standard_normal(rows_shape + (37,)).astype(dtype)
    got = lin(x)
    assert got.shape == rows_shape + (11,) and got.dtype == dtype
    monkeypatch.setattr(layers, "_c_linear", lambda: None)  # NumPy's matmul only
    plain = lin(x)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, plain, rtol=tol, atol=tol)
    np.testing.assert_allclose(got, _want(x, lin), rtol=tol, atol=tol)


def test_layer_mixed_dtypes_and_views():
    lin = nn.Linear(8, 5, dtype=np.float32, generator=0)
    x64 = np.arange(24, dtype=np.float64).reshape(3, 8) / 7
    y = lin(x64)  # float64 input: computed in float64, as numpy's result_type says
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, _want(x64, lin), rtol=1e-12)
    xi = np.arange(16).reshape(2, 8)  # integers: float64
    assert lin(xi).dtype == np.float64
    xv = np.asfortranarray(np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32))
    np.testing.assert_allclose(lin(xv[::2]), _want(xv[::2], lin), rtol=1e-5, atol=1e-6)


def test_layer_rejects_wrong_width():
    lin = nn.Linear(8, 5)
    with pytest.raises(ValueError, match="in_features"):
        lin(np.zeros((2, 7), np.float32))


def test_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    for rows in (1, 8, 16, 32):
        lin = nn.Linear(64, 10, generator=rows)
        tl = torch.nn.Linear(64, 10)
        with torch.no_grad():
            tl.weight.copy_(torch.from_numpy(lin.weight))
            tl.bias.copy_(torch.from_numpy(lin.bias))
        x = rng.standard_normal((rows, 64)).astype(np.float32)
        with torch.no_grad():
            want = tl(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(lin(x), want, rtol=1e-5, atol=1e-5)
