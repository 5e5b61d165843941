"""A pool reached through another entry point (a whole-plane window is the global adaptive
pool; evenly tiling adaptive bins are a windowed pool with kernel = stride) runs the faster
kernel with the same results: values, indices and NaN, on every backend, against torch."""

import numpy as np
import pytest

import fastconv as fc

BACKENDS = [b for b, why in fc.available_backends().items() if why.startswith("available")
            and b != "cuda"]


def _x(rng, shape, dtype, nan):
    x = rng.standard_normal(shape).astype(dtype)
    if nan and x.size:
        x.flat[rng.integers(x.size, size=3)] = np.nan
    return x


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(6))
def test_whole_plane_window_equals_global_adaptive(backend, seed):
    rng = np.random.default_rng(seed)
    H, W = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    dtype = np.float32 if seed % 2 else np.float64
    x = _x(rng, (int(rng.integers(0, 3)), int(rng.integers(1, 5)), H, W), dtype, seed % 3 == 0)
    s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    a = fc.avg_pool2d(x, (H, W), s, backend=backend)
    ref = fc.adaptive_avg_pool2d(x.astype(np.float64), 1, backend="reference")
    np.testing.assert_allclose(a, ref, rtol=1e-6, atol=1e-6)
    m, i = fc.max_pool2d(x, (H, W), s, return_indices=True, backend=backend)
    mr, ir = fc.max_pool2d(x.astype(np.float64), (H, W), s, return_indices=True,
                           backend="reference")
    np.testing.assert_array_equal(i, ir)
    np.testing.assert_allclose(m, mr)
    # a divisor_override keeps the windowed kernel (the global path has none)
    d = fc.avg_pool2d(x, (H, W), divisor_override=3, backend=backend)
    np.testing.assert_allclose(d, ref * (H * W) / 3, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(6))
def test_even_adaptive_bins_equal_windowed_pool(backend, seed):
    rng = np.random.default_rng(10 + seed)
    OH, OW = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    dtype = np.float32 if seed % 2 else np.float64
    x = _x(rng, (2, 3, OH * kh, OW * kw), dtype, seed % 2 == 0)
    a = fc.adaptive_avg_pool2d(x, (OH, OW), backend=backend)
    np.testing.assert_allclose(
        a, fc.adaptive_avg_pool2d(x.astype(np.float64), (OH, OW), backend="reference"),
        rtol=1e-6, atol=1e-6)
    m, i = fc.adaptive_max_pool2d(x, (OH, OW), return_indices=True, backend=backend)
    mr, ir = fc.adaptive_max_pool2d(x.astype(np.float64), (OH, OW), return_indices=True,
                                    backend="reference")
    np.testing.assert_array_equal(i, ir)
    np.testing.assert_allclose(m, mr)
    one = fc.adaptive_max_pool1d(x[:, :, 0], OW, return_indices=True, backend=backend)
    np.testing.assert_array_equal(
        one[1], fc.adaptive_max_pool1d(x[:, :, 0], OW, return_indices=True,
                                       backend="reference")[1])


def test_routes_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(0).standard_normal((2, 8, 7, 7)).astype(np.float32)
    t = torch.from_numpy(x)
    np.testing.assert_allclose(fc.avg_pool2d(x, 7), F.avg_pool2d(t, 7).numpy(), rtol=1e-5,
                               atol=1e-6)
    m, i = fc.max_pool2d(x, 7, return_indices=True)
    mt, it = F.max_pool2d(t, 7, return_indices=True)
    np.testing.assert_array_equal(i, it.numpy())
    x2 = np.random.default_rng(1).standard_normal((2, 8, 12, 8)).astype(np.float32)
    m, i = fc.adaptive_max_pool2d(x2, (4, 2), return_indices=True)
    mt, it = F.adaptive_max_pool2d(torch.from_numpy(x2), (4, 2), return_indices=True)
    np.testing.assert_array_equal(i, it.numpy())
    np.testing.assert_allclose(fc.adaptive_avg_pool2d(x2, (4, 2)),
                               F.adaptive_avg_pool2d(torch.from_numpy(x2), (4, 2)).numpy(),
                               rtol=1e-5, atol=1e-6)
