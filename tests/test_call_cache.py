"""The per-call shortcuts: memoised geometry, the remembered backend choice, the NumPy fast path.

None of them may change what a call returns or which calls raise: a repeated call must give
the same answer, an argument equal to a cached one but of another type (True, 1.0,
np.int64(1)) must go through validation, and an invalid call must raise every time.
"""

from __future__ import annotations

import numpy as np
import pytest
from _cases import available_engines

import fastconv as fc
from fastconv import _shapes
from fastconv.backends import _registry

HOST = [e for e in available_engines() if e != "cuda"]
X = np.random.default_rng(0).standard_normal((2, 4, 9, 9)).astype(np.float32)
W = np.random.default_rng(1).standard_normal((6, 4, 3, 3)).astype(np.float32)


@pytest.mark.parametrize("backend", HOST)
def test_repeated_calls_agree(backend):
    first = fc.conv2d(X, W, stride=2, padding=1, backend=backend)
    for _ in range(3):
        np.testing.assert_array_equal(fc.conv2d(X, W, stride=2, padding=1, backend=backend), first)
    np.testing.assert_array_equal(
        fc.conv2d(X, W, stride=(2, 2), padding=[1, 1], backend=backend), first
    )


@pytest.mark.parametrize("backend", HOST)
def test_equal_values_of_other_types_are_validated(backend):
    fc.conv2d(X, W, stride=1, backend=backend)  # stride=1 now cached
    fc.max_pool2d(X, 2, stride=1, backend=backend)
    fc.adaptive_avg_pool2d(X, 1, backend=backend)
    for bad in (True, 1.0, np.float32(1)):
        with pytest.raises(TypeError, match="stride"):
            fc.conv2d(X, W, stride=bad, backend=backend)
        with pytest.raises(TypeError, match="stride"):
            fc.conv2d(X, W, stride=(bad, 1), backend=backend)
        with pytest.raises(TypeError, match="stride"):
            fc.max_pool2d(X, 2, stride=bad, backend=backend)
        with pytest.raises(TypeError, match="output_size"):
            fc.adaptive_avg_pool2d(X, bad, backend=backend)
    fc.max_pool2d(X, 2, ceil_mode=True, backend=backend)
    with pytest.raises(TypeError, match="ceil_mode"):
        fc.max_pool2d(X, 2, ceil_mode=1, backend=backend)
    # numpy integers are accepted (not memoised, validated every time)
    np.testing.assert_array_equal(
        fc.conv2d(X, W, stride=np.int64(1), backend=backend), fc.conv2d(X, W, backend=backend)
    )


@pytest.mark.parametrize("backend", HOST)
def test_invalid_calls_raise_every_time(backend):
    for _ in range(3):
        with pytest.raises(ValueError, match="stride"):
            fc.conv2d(X, W, stride=0, backend=backend)
        with pytest.raises(ValueError, match="channels"):
            fc.conv2d(X[:, :3], W, backend=backend)
        with pytest.raises(ValueError, match="padding"):
            fc.max_pool2d(X, 2, padding=2, backend=backend)


def test_memo_keys_are_exact_and_bounded():
    g = _shapes.pool_geometry("max_pool2d", (1, 1, 8, 8), 2, None, 0, 1, False, 2)
    assert _shapes.pool_geometry("max_pool2d", (1, 1, 8, 8), 2, None, 0, 1, False, 2) is g
    assert len({_shapes._key(1), _shapes._key(True), _shapes._key((1,)), _shapes._key([1])}) == 4
    for v in (1.0, np.int64(1), (1, 1.0), np.bool_(True)):
        with pytest.raises(_shapes._NoKey):
            _shapes._key(v)
    assert _shapes._key((1, 2)) != _shapes._key([1, 2])
    assert _shapes._key((1,)) != _shapes._key(1)
    cache = _shapes.pool_geometry.cache  # type: ignore[attr-defined]
    for n in range(_shapes.MEMO_SIZE + 10):
        _shapes.pool_geometry("max_pool2d", (1, 1, 8, 8 + n), 2, None, 0, 1, False, 2)
    assert len(cache) <= _shapes.MEMO_SIZE


def test_engine_choice_follows_an_engine_that_goes_away(monkeypatch):
    if "numba" not in HOST:
        pytest.skip("numba backend unavailable")
    fc.conv2d(X, W, backend="numba")  # the choice is now remembered
    monkeypatch.setitem(_registry._reasons, "numba", "unavailable: testing")
    monkeypatch.delitem(_registry._modules, "numba", raising=False)
    with pytest.raises(ValueError, match="unavailable: testing"):
        fc.conv2d(X, W, backend="numba")


@pytest.mark.parametrize("backend", HOST)
def test_fast_path_keeps_dtype_rules(backend):
    # float32 input, float64 weight: the output is float64 (not the fast path's one dtype)
    y = fc.conv2d(X, W.astype(np.float64), backend=backend)
    assert y.dtype == np.float64
    y = fc.conv2d(X.astype(">f4"), W, backend=backend)  # non-native byte order
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, fc.conv2d(X, W, backend=backend), rtol=1e-6)
    ro = X.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(
        fc.conv2d(ro, W, backend=backend), fc.conv2d(X, W, backend=backend)
    )
    nc = np.asfortranarray(X)
    np.testing.assert_allclose(
        fc.conv2d(nc, W, backend=backend), fc.conv2d(X, W, backend=backend), rtol=1e-6, atol=1e-6
    )
