"""Thread settings reach every engine; results do not depend on them."""

import numpy as np
import pytest

import fastconv as fc
from fastconv.backends import _registry


@pytest.fixture
def restore_threads():
    before = _registry._num_threads
    yield
    _registry._num_threads = before
    fc.set_num_threads(fc.get_num_threads())


def test_set_num_threads_reaches_engines(restore_threads):
    fc.max_pool2d(np.ones((1, 1, 4, 4)), 2)  # loads the default engine
    fc.set_num_threads(1)
    assert fc.get_num_threads() == 1
    info = fc.available_backends()
    if info["c"] == "available":
        from fastconv.backends import c

        assert c.get_num_threads() == 1
        assert c.lib.fc_threads() == 1
    if info["numba"] == "available":
        import numba

        fc.max_pool2d(np.ones((1, 1, 4, 4)), 2, backend="numba")
        assert numba.get_num_threads() == 1


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-2, ValueError), (1.5, TypeError), ("2", TypeError)])
def test_set_num_threads_rejects(bad, exc):
    with pytest.raises(exc, match="n"):
        fc.set_num_threads(bad)


def test_results_do_not_depend_on_threads(engine, restore_threads):
    if engine == "cuda":
        pytest.skip("CPU thread settings do not apply to the cuda engine")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 8, 20, 20))
    w = rng.standard_normal((16, 8, 3, 3))
    wd = rng.standard_normal((8, 1, 3, 3))
    outs = []
    for n in (1, 2):
        fc.set_num_threads(n)
        outs.append((fc.conv2d(x, w, padding=1, backend=engine),
                     fc.avg_pool2d(x, 3, 1, 1, backend=engine),
                     fc.depthwise_conv2d(x, wd, backend=engine)))
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_cpu_info():
    info = fc.cpu_info()
    assert isinstance(info, dict)
    if fc.available_backends()["c"] == "available":
        assert info["available"] is True
        assert set(info["features"]) <= {"sse4.2", "avx", "avx2", "fma", "avx512f", "avx512vl",
                                         "avx512bw", "avx512dq"}
        assert info["gemm_kernel"] in info["gemm_kernels"]
    else:
        assert info["available"] is False and info["reason"]


def test_set_num_threads_caps_at_the_cpus_with_a_warning(restore_threads):
    cap = _registry.max_threads()
    with pytest.warns(UserWarning, match=f"set_num_threads: n=1000000 .* using {cap}"):
        fc.set_num_threads(10**6)
    assert fc.get_num_threads() == cap


@pytest.mark.parametrize("env", ["abc", "0", "-3", "1.5", "２"])
def test_bad_environment_thread_count_is_ignored_with_a_warning(env, monkeypatch, restore_threads):
    monkeypatch.setattr(_registry, "_num_threads", None)
    monkeypatch.setattr(_registry, "_env_threads", None)
    monkeypatch.setenv("FASTCONV_NUM_THREADS", env)
    with pytest.warns(UserWarning, match="FASTCONV_NUM_THREADS.*not a positive integer"):
        n = fc.get_num_threads()
    assert n == _registry.max_threads()


def test_environment_thread_count_is_used_and_capped(monkeypatch, restore_threads):
    monkeypatch.setattr(_registry, "_num_threads", None)
    monkeypatch.setattr(_registry, "_env_threads", None)
    monkeypatch.setenv("FASTCONV_NUM_THREADS", "1")
    assert fc.get_num_threads() == 1
    monkeypatch.setenv("FASTCONV_NUM_THREADS", "999999")
    with pytest.warns(UserWarning, match="more than the"):
        assert fc.get_num_threads() == _registry.max_threads()
