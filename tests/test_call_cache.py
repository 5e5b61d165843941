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


# Pooling plans (fastconv/ops/pool.py): a repeated call with the same input shape, dtype and
# arguments runs the kernel the first call chose, without validating again.
X1 = X[:, :, 0].copy()
POOL_CALLS = [  # (function, input, positional arguments, keywords)
    (fc.max_pool2d, X, (3,), dict(stride=2, padding=1)),
    (fc.max_pool2d, X, (2,), dict(return_indices=True)),
    (fc.max_pool2d, X, ((9, 9),), {}),  # the whole plane: the global kernel
    (fc.max_pool2d, X[0], (2,), dict(ceil_mode=True, dilation=2)),  # unbatched
    (fc.avg_pool2d, X, (3,), dict(stride=1, padding=1, count_include_pad=False)),
    (fc.avg_pool2d, X, (2,), dict(ceil_mode=True, divisor_override=3)),
    (fc.avg_pool2d, X, (9,), {}),
    (fc.adaptive_avg_pool2d, X, (1,), {}),
    (fc.adaptive_avg_pool2d, X, ((4, None),), {}),
    (fc.adaptive_avg_pool2d, X, (3,), {}),  # bins that divide the plane: the windowed kernel
    (fc.adaptive_max_pool2d, X, ((4, 5),), dict(return_indices=True)),
    (fc.adaptive_max_pool2d, X, (0,), {}),  # an empty output
    (fc.max_pool1d, X1, (3,), dict(stride=2, return_indices=True)),
    (fc.avg_pool1d, X1, (4,), dict(padding=2)),
    (fc.adaptive_avg_pool1d, X1, (5,), {}),
    (fc.adaptive_max_pool1d, X1, (3,), dict(return_indices=True)),
]


def _pool_call(case, x, backend):
    f, _, args, kw = POOL_CALLS[case]
    return f(x, *args, backend=backend, **kw)


def _as_list(r):
    return list(r) if isinstance(r, tuple) else [r]


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("case", range(len(POOL_CALLS)))
def test_pool_plans_give_fresh_results(backend, case):
    from fastconv.ops import _plans as pool_ops

    x = POOL_CALLS[case][1].copy()
    pool_ops._plans.clear()
    first = _as_list(_pool_call(case, x, backend))
    # the C engine and the reference keep a plan; numba converts its inputs (none)
    assert len(pool_ops._plans) == (backend in ("c", "reference"))
    again = _as_list(_pool_call(case, x, backend))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
        assert a.shape == b.shape and a.dtype == b.dtype
        assert not np.shares_memory(a, b)  # every call a new output
    x *= -2.0  # new values through the same plan
    for a, b in zip(_as_list(_pool_call(case, x, backend)),
                    _as_list(_pool_call(case, x, "reference"))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", HOST)
def test_pool_plans_keep_every_check(backend, monkeypatch):
    fc.max_pool2d(X, 2, backend=backend)
    fc.adaptive_avg_pool2d(X, 2, backend=backend)
    # an equal argument of another type, or an invalid one, still raises
    for bad in (2.0, True, np.float32(2)):
        with pytest.raises(TypeError, match="kernel_size"):
            fc.max_pool2d(X, bad, backend=backend)
    with pytest.raises(TypeError, match="output_size"):
        fc.adaptive_avg_pool2d(X, 2.0, backend=backend)
    with pytest.raises(ValueError, match="padding"):
        fc.max_pool2d(X, 2, padding=2, backend=backend)
    # other dtypes and layouts of the same shape: converted, the same values
    want = fc.max_pool2d(X, 2, backend=backend)
    for x in (X.astype(np.float16), X.astype(">f4"), np.asfortranarray(X), X.astype(np.int64)):
        got = fc.max_pool2d(x, 2, backend=backend)
        np.testing.assert_allclose(got, fc.max_pool2d(x.astype(np.float64), 2,
                                                      backend=backend), rtol=1e-3)
    assert want.dtype == np.float32
    # the memory bound is checked on planned calls too: (2, 4, 4, 4) float32 is 512 bytes
    monkeypatch.setattr(_shapes, "MEMORY_BYTES", 512)
    assert fc.max_pool2d(X, 2, backend=backend).shape == (2, 4, 4, 4)
    monkeypatch.setattr(_shapes, "MEMORY_BYTES", 511)
    with pytest.raises(ValueError, match="too large"):
        fc.max_pool2d(X, 2, backend=backend)


def test_pool_plans_follow_an_engine_that_goes_away(monkeypatch):
    if "c" not in HOST:
        pytest.skip("C backend unavailable")
    fc.avg_pool2d(X, 3, backend="c")  # planned
    monkeypatch.setitem(_registry._reasons, "c", "unavailable: testing")
    monkeypatch.delitem(_registry._modules, "c", raising=False)
    with pytest.raises(ValueError, match="unavailable: testing"):
        fc.avg_pool2d(X, 3, backend="c")


def test_pool_plans_are_bounded():
    from fastconv.ops import _plans as pool_ops

    x = np.ones((1, 1, 4, 4), np.float32)
    for k in range(pool_ops.PLAN_CACHE_SIZE + 10):
        fc.avg_pool2d(x, 1, stride=1, divisor_override=k + 1, backend="reference")
    assert 0 < len(pool_ops._plans) <= pool_ops.PLAN_CACHE_SIZE


# Conv plans: the same, for conv2d, conv1d and conv_transpose2d.
W1 = np.random.default_rng(2).standard_normal((6, 4, 3)).astype(np.float32)
WT = np.random.default_rng(3).standard_normal((4, 3, 3, 3)).astype(np.float32)
B6 = np.random.default_rng(4).standard_normal(6).astype(np.float32)
CONV_CALLS = [  # (function, input, weight, bias, keywords)
    (fc.conv2d, X, W, None, dict(stride=2, padding=1)),
    (fc.conv2d, X, W, B6, dict(padding="same", dilation=2)),
    (fc.conv2d, X, W[:, :2], B6, dict(groups=2, padding=(1, 0))),
    (fc.conv2d, X, np.ones((8, 1, 3, 3), np.float32), None, dict(groups=4)),  # depthwise
    (fc.conv2d, X[0], W, B6, dict(padding="valid")),  # unbatched
    (fc.conv2d, X, W, None, dict(padding=1, padding_mode="reflect")),  # padded on the host
    (fc.conv2d, X[:0], W, None, {}),  # an empty batch
    (fc.conv1d, X1, W1, B6, dict(stride=2, padding=2)),
    (fc.conv_transpose2d, X, WT, None, dict(stride=2, padding=1, output_padding=1)),
    (fc.conv_transpose2d, X[0], WT, np.ones(3, np.float32), dict(dilation=2)),
]


def _conv_call(case, x, w, b, backend):
    f, _, _, _, kw = CONV_CALLS[case]
    return f(x, w, b, backend=backend, **kw)


@pytest.mark.parametrize("backend", HOST)
@pytest.mark.parametrize("case", range(len(CONV_CALLS)))
def test_conv_plans_give_fresh_results(backend, case):
    from fastconv.ops import _plans

    _, x, w, b, _ = CONV_CALLS[case]
    x, w = x.copy(), w.copy()
    _plans._plans.clear()
    first = _conv_call(case, x, w, b, backend)
    # a plan for the C engine and the reference (numba converts its inputs), none where the
    # padding is made on the host
    host_padded = CONV_CALLS[case][4].get("padding_mode", "zeros") != "zeros"
    assert len(_plans._plans) == (backend in ("c", "reference") and not host_padded)
    again = _conv_call(case, x, w, b, backend)
    np.testing.assert_array_equal(first, again)
    assert first.shape == again.shape and first.dtype == again.dtype
    assert not np.shares_memory(first, again)
    x *= -2.0  # new values of the input and the weights through the same plan
    w += 0.5
    got = _conv_call(case, x, w, b, backend)
    want = _conv_call(case, x.astype(np.float64), w.astype(np.float64),
                      None if b is None else b.astype(np.float64), "reference")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # with and without a bias are different calls (the key has the bias's shape or None)
    if b is not None:
        nsp = 1 if CONV_CALLS[case][0] is fc.conv1d else 2
        nob = _conv_call(case, x, w, None, backend)
        np.testing.assert_allclose(got, nob + b.reshape((-1,) + (1,) * nsp), rtol=1e-5,
                                   atol=1e-5)


@pytest.mark.parametrize("backend", HOST)
def test_conv_plans_keep_every_check(backend, monkeypatch):
    fc.conv2d(X, W, B6, padding=1, backend=backend)
    fc.conv_transpose2d(X, WT, stride=2, backend=backend)
    for bad in (1.0, True, np.float32(1)):
        with pytest.raises(TypeError, match="padding"):
            fc.conv2d(X, W, B6, padding=bad, backend=backend)
        with pytest.raises(TypeError, match="stride"):
            fc.conv_transpose2d(X, WT, stride=bad, backend=backend)
    with pytest.raises(ValueError, match="channels"):
        fc.conv2d(X[:, :3], W, B6, padding=1, backend=backend)
    with pytest.raises(ValueError, match="bias"):
        fc.conv2d(X, W, B6[:5], padding=1, backend=backend)
    # mixed dtypes and other layouts: converted, the same values
    want = fc.conv2d(X, W, B6, padding=1, backend=backend)
    np.testing.assert_allclose(fc.conv2d(X, W.astype(np.float64), B6, padding=1,
                                         backend=backend), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fc.conv2d(np.asfortranarray(X), W, B6, padding=1,
                                         backend=backend), want, rtol=1e-5, atol=1e-5)
    # the memory bound: the output (2, 6, 9, 9) float32 is 3888 bytes
    monkeypatch.setattr(_shapes, "MEMORY_BYTES", 3888)
    assert fc.conv2d(X, W, B6, padding=1, backend=backend).shape == (2, 6, 9, 9)
    monkeypatch.setattr(_shapes, "MEMORY_BYTES", 3887)
    with pytest.raises(ValueError, match="too large"):
        fc.conv2d(X, W, B6, padding=1, backend=backend)


def test_conv_plans_follow_an_engine_that_goes_away(monkeypatch):
    if "c" not in HOST:
        pytest.skip("C backend unavailable")
    fc.conv2d(X, W, backend="c")  # planned
    monkeypatch.setitem(_registry._reasons, "c", "unavailable: testing")
    monkeypatch.delitem(_registry._modules, "c", raising=False)
    with pytest.raises(ValueError, match="unavailable: testing"):
        fc.conv2d(X, W, backend="c")


def test_repeated_calls_run_their_plans(monkeypatch):
    # a repeated call does not validate again: with the call machinery gone, the planned
    # calls still run (and a call without a plan cannot)
    from fastconv.ops import conv as conv_ops
    from fastconv.ops import pool as pool_ops

    if "c" not in HOST:
        pytest.skip("C backend unavailable")
    calls = [lambda: fc.conv2d(X, W, B6, padding=1, backend="c"),
             lambda: fc.conv_transpose2d(X, WT, stride=2, backend="c"),
             lambda: fc.max_pool2d(X, 3, 2, 1, return_indices=True, backend="c"),
             lambda: fc.adaptive_avg_pool2d(X, (4, 5), backend="c")]
    first = [_as_list(f()) for f in calls]

    def gone(*args, **kwargs):
        raise AssertionError("validated again")

    monkeypatch.setattr(conv_ops, "begin", gone)
    monkeypatch.setattr(pool_ops, "begin", gone)
    for f, want in zip(calls, first):
        for a, b in zip(_as_list(f()), want):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(AssertionError, match="validated again"):
        fc.max_pool2d(X, 2, backend="c")  # not planned yet


# Bound kernels: the C engine's plans run its kernels bound to the call's shapes (the backend's
# ``bind``), passing only the pointers, the thread count and the workspace bound.
def _random_call(rng, dtype):
    """A random planned call (op, input, the rest of its arguments as a dict)."""
    N, C = int(rng.integers(1, 3)), int(rng.integers(1, 6))
    H, W_ = int(rng.integers(4, 12)), int(rng.integers(4, 12))
    x = rng.standard_normal((N, C, H, W_)).astype(dtype)
    kind = rng.integers(0, 7)
    k = int(rng.integers(1, 4))
    if kind == 0:
        g = int(rng.choice([d for d in range(1, C + 1) if C % d == 0]))
        oc = g * int(rng.integers(1, 4))
        w = rng.standard_normal((oc, C // g, k, k)).astype(dtype)
        b = rng.standard_normal(oc).astype(dtype) if rng.integers(0, 2) else None
        return fc.conv2d, x, dict(weight=w, bias=b, stride=int(rng.integers(1, 3)),
                                  padding=int(rng.integers(0, 2)), dilation=int(rng.integers(1, 3)),
                                  groups=g)
    if kind == 1:  # depthwise (groups = C)
        w = rng.standard_normal((C, 1, k, k)).astype(dtype)
        b = rng.standard_normal(C).astype(dtype) if rng.integers(0, 2) else None
        return fc.conv2d, x, dict(weight=w, bias=b, padding=k // 2, groups=C)
    if kind == 2:
        oc = int(rng.integers(1, 5))
        w = rng.standard_normal((C, oc, k, k)).astype(dtype)
        b = rng.standard_normal(oc).astype(dtype) if rng.integers(0, 2) else None
        s = int(rng.integers(1, 3))
        return fc.conv_transpose2d, x, dict(weight=w, bias=b, stride=s,
                                            output_padding=int(rng.integers(0, s)))
    if kind == 3:
        return fc.max_pool2d, x, dict(kernel_size=k + 1, stride=int(rng.integers(1, 3)),
                                      padding=int(rng.integers(0, (k + 1) // 2 + 1)),
                                      return_indices=bool(rng.integers(0, 2)))
    if kind == 4:
        return fc.avg_pool2d, x, dict(kernel_size=k + 1, padding=int(rng.integers(0, 2)),
                                      ceil_mode=bool(rng.integers(0, 2)),
                                      count_include_pad=bool(rng.integers(0, 2)),
                                      divisor_override=[None, 3][int(rng.integers(0, 2))])
    if kind == 5:
        return fc.adaptive_max_pool2d, x, dict(output_size=(int(rng.integers(1, H + 1)),
                                                            int(rng.integers(1, W_ + 1))),
                                               return_indices=bool(rng.integers(0, 2)))
    return fc.adaptive_avg_pool2d, x, dict(output_size=int(rng.integers(1, 4)))


def test_bound_kernels_give_the_kernels_bits():
    # the first call runs the engine's kernel, the next ones the plan's bound form: the same
    # bits, on random shapes of every op with a bound form, both dtypes, with and without
    # bias and indices, unbatched inputs too
    if "c" not in HOST:
        pytest.skip("C backend unavailable")
    from fastconv.ops import _plans

    rng = np.random.default_rng(11)
    for trial in range(150):
        dtype = (np.float32, np.float64)[trial % 2]
        f, x, kw = _random_call(rng, dtype)
        if trial % 5 == 0:
            x = x[0]
        _plans._plans.clear()
        first = _as_list(f(x, backend="c", **kw))
        (plan,) = _plans._plans.values()
        assert plan.run is None  # bound on its first rerun
        for _ in range(2):
            again = _as_list(f(x, backend="c", **kw))
            for a, b in zip(first, again):
                assert a.shape == b.shape and a.dtype == b.dtype
                np.testing.assert_array_equal(a, b)
        (plan,) = _plans._plans.values()
        assert plan.kernel is None or "bind" in plan.run.__qualname__, plan.run.__qualname__


def test_a_replaced_kernel_runs_as_it_is(monkeypatch):
    # a kernel replaced before the plan is bound (on its first rerun; a spy) is what the
    # plan runs, every time; one replaced after that is not (the plan holds the engine's
    # bound kernel)
    if "c" not in HOST:
        pytest.skip("C backend unavailable")
    from fastconv.backends import c
    from fastconv.ops import _plans

    seen = []
    own = c.max_pool2d

    def spy(*args):
        seen.append(args[0].shape)
        return own(*args)

    _plans._plans.clear()
    monkeypatch.setattr(c, "max_pool2d", spy)
    want = [fc.max_pool2d(X, 3, backend="c") for _ in range(3)]
    assert len(seen) == 3
    monkeypatch.setattr(c, "max_pool2d", own)
    _plans._plans.clear()
    fc.max_pool2d(X, 3, backend="c")
    fc.max_pool2d(X, 3, backend="c")  # the plan's first rerun: bound

    def gone(*args):
        raise AssertionError("the module's kernel ran")

    monkeypatch.setattr(c, "max_pool2d", gone)
    np.testing.assert_array_equal(fc.max_pool2d(X, 3, backend="c"), want[0])


def test_bound_convs_follow_the_engine_settings():
    # the thread count and the workspace bound are read on every run of a plan
    if "c" not in HOST:
        pytest.skip("C backend unavailable")
    from fastconv.backends import c

    x = np.random.default_rng(5).standard_normal((4, 32, 40, 40)).astype(np.float32)
    w = np.random.default_rng(6).standard_normal((32, 32, 3, 3)).astype(np.float32)
    threads, limit = fc.get_num_threads(), c.get_workspace_limit()
    try:
        # the plan made with every thread; then one thread (a loaded machine may give a
        # shared call fewer threads, never more: only the 1-thread count is certain)
        fc.set_num_threads(_registry.max_threads())
        want = fc.conv2d(x, w, padding=1, backend="c", variant="v5_threads")
        fc.set_num_threads(1)
        for _ in range(3):
            fc.conv2d(x, w, padding=1, backend="c", variant="v5_threads")
            assert c.lib.fc_last_team() == 1
        c.set_workspace_limit(1)  # many im2col chunks: the same values
        np.testing.assert_allclose(fc.conv2d(x, w, padding=1, backend="c", variant="v5_threads"),
                                   want, rtol=1e-5, atol=1e-4)
    finally:
        fc.set_num_threads(threads)
        c.set_workspace_limit(limit)
