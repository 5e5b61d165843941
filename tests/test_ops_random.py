"""Every op x every available engine on seeded random configurations.

The oracle is torch (float64) when it is installed: float64 results must agree to 1e-10 and
float32 results to 1e-5, relative to the largest output magnitude; where torch rejects a
configuration, fastconv must raise ValueError or TypeError. Without torch, the engines are
compared with the reference engine instead. A new engine is picked up automatically
(tests/conftest.py lists fastconv.available_backends()).
"""

from __future__ import annotations

import numpy as np
import pytest
from _cases import (
    TOL,
    F,
    gen_adaptive,
    gen_avg_pool,
    gen_conv,
    gen_conv_transpose,
    gen_depthwise,
    gen_max_pool,
    gen_separable,
    is_simulated,
    make_input,
    rel_err,
    t,
    torch,
    torch_conv,
)

import fastconv as fc


def n_cases(engine: str) -> int:
    return 4 if is_simulated(engine) else 120


def check(engine, ours, oracle, dtype, reference=None):
    """Run ``ours``; compare with torch's ``oracle`` (or the reference engine without torch)."""
    if torch is not None:
        try:
            want = oracle()
        except (RuntimeError, ValueError, TypeError, IndexError):
            with pytest.raises((ValueError, TypeError)):
                ours()
            return
    elif engine != "reference" and reference is not None:
        try:
            want = reference()
        except (ValueError, TypeError) as exc:
            with pytest.raises(type(exc)):
                ours()
            return
    else:
        ours()
        return
    got = ours()
    _compare(got, want, dtype)


def _compare(got, want, dtype):
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        _compare(got[0], want[0], dtype)
        assert got[1].dtype == np.int64
        np.testing.assert_array_equal(got[1], _np(want[1]))
        return
    want = _np(want)
    assert isinstance(got, np.ndarray), type(got)
    assert got.dtype == dtype, (got.dtype, dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert rel_err(got, want) <= TOL[dtype]


def _np(a):
    return a.detach().numpy() if hasattr(a, "detach") else a


def _dtype(i):
    return np.float64 if i % 2 == 0 else np.float32


@pytest.mark.parametrize("nd", [1, 2])
def test_conv(engine, nd):
    rng = np.random.default_rng(100 + nd)
    fn = fc.conv2d if nd == 2 else fc.conv1d
    for i in range(n_cases(engine)):
        cfg, dt = gen_conv(rng, nd), _dtype(i)
        x = make_input(rng, cfg["x"], dt)
        w = make_input(rng, cfg["w"], dt)
        b = None if cfg["b"] is None else make_input(rng, cfg["b"], dt)
        stride, padding, dilation, groups = cfg["args"]
        kw = cfg["kwargs"]
        check(
            engine,
            lambda: fn(x, w, b, stride, padding, dilation, groups, backend=engine, **kw),
            lambda: torch_conv(nd, x, w, b, stride, padding, dilation, groups, **kw),
            dt,
            lambda: fn(x, w, b, stride, padding, dilation, groups, backend="reference", **kw),
        )


@pytest.mark.parametrize("nd", [1, 2])
def test_conv_transpose(engine, nd):
    rng = np.random.default_rng(200 + nd)
    fn = fc.conv_transpose2d if nd == 2 else fc.conv_transpose1d
    tfn = "conv_transpose2d" if nd == 2 else "conv_transpose1d"
    for i in range(n_cases(engine)):
        cfg, dt = gen_conv_transpose(rng, nd), _dtype(i)
        x = make_input(rng, cfg["x"], dt)
        w = make_input(rng, cfg["w"], dt)
        b = None if cfg["b"] is None else make_input(rng, cfg["b"], dt)
        args = cfg["args"]
        check(
            engine,
            lambda: fn(x, w, b, *args, backend=engine),
            lambda: getattr(F, tfn)(t(x), t(w), t(b), *args),
            dt,
            lambda: fn(x, w, b, *args, backend="reference"),
        )


@pytest.mark.parametrize("nd", [1, 2])
def test_max_pool(engine, nd):
    rng = np.random.default_rng(300 + nd)
    fn = fc.max_pool2d if nd == 2 else fc.max_pool1d
    tfn = "max_pool2d" if nd == 2 else "max_pool1d"
    for i in range(n_cases(engine)):
        cfg, dt = gen_max_pool(rng, nd), _dtype(i)
        x = make_input(rng, cfg["x"], dt, ties=i % 3 == 0, nan=i % 4 == 1)
        args = cfg["args"]
        check(
            engine,
            lambda: fn(x, *args, backend=engine),
            lambda: getattr(F, tfn)(t(x), *args),
            dt,
            lambda: fn(x, *args, backend="reference"),
        )


@pytest.mark.parametrize("nd", [1, 2])
def test_avg_pool(engine, nd):
    rng = np.random.default_rng(400 + nd)
    fn = fc.avg_pool2d if nd == 2 else fc.avg_pool1d
    tfn = "avg_pool2d" if nd == 2 else "avg_pool1d"
    for i in range(n_cases(engine)):
        cfg, dt = gen_avg_pool(rng, nd), _dtype(i)
        x = make_input(rng, cfg["x"], dt)
        args = cfg["args"]
        check(
            engine,
            lambda: fn(x, *args, backend=engine),
            lambda: getattr(F, tfn)(t(x), *args),
            dt,
            lambda: fn(x, *args, backend="reference"),
        )


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("nd", [1, 2])
def test_adaptive_pool(engine, kind, nd):
    rng = np.random.default_rng(500 + nd + (kind == "max") * 10)
    name = f"adaptive_{kind}_pool{nd}d"
    fn = getattr(fc, name)
    extra = (True,) if kind == "max" else ()
    for i in range(n_cases(engine)):
        cfg, dt = gen_adaptive(rng, nd), _dtype(i)
        x = make_input(
            rng, cfg["x"], dt, ties=kind == "max" and i % 3 == 0, nan=kind == "max" and i % 4 == 1
        )
        args = cfg["args"] + extra
        check(
            engine,
            lambda: fn(x, *args, backend=engine),
            lambda: getattr(F, name)(t(x), *args),
            dt,
            lambda: fn(x, *args, backend="reference"),
        )


def test_depthwise(engine):
    rng = np.random.default_rng(600)
    for i in range(n_cases(engine)):
        cfg, dt = gen_depthwise(rng), _dtype(i)
        x = make_input(rng, cfg["x"], dt)
        w = make_input(rng, cfg["w"], dt)
        b = None if cfg["b"] is None else make_input(rng, cfg["b"], dt)
        s, p, d = cfg["args"]
        C = cfg["x"][-3]
        check(
            engine,
            lambda: fc.depthwise_conv2d(x, w, b, s, p, d, backend=engine),
            lambda: F.conv2d(t(x), t(w), t(b), s, p, d, C),
            dt,
            lambda: fc.depthwise_conv2d(x, w, b, s, p, d, backend="reference"),
        )


def test_separable(engine):
    rng = np.random.default_rng(700)
    for i in range(n_cases(engine)):
        cfg, dt = gen_separable(rng), _dtype(i)
        x = make_input(rng, cfg["x"], dt)
        wd = make_input(rng, cfg["w"], dt)
        bd = None if cfg["b"] is None else make_input(rng, cfg["b"], dt)
        wp = make_input(rng, cfg["pw"], dt)
        bp = None if cfg["pb"] is None else make_input(rng, cfg["pb"], dt)
        s, p, d = cfg["args"]
        C = cfg["x"][-3]
        check(
            engine,
            lambda: fc.separable_conv2d(x, wd, wp, bd, bp, s, p, d, backend=engine),
            lambda: F.conv2d(F.conv2d(t(x), t(wd), t(bd), s, p, d, C), t(wp), t(bp)),
            dt,
            lambda: fc.separable_conv2d(x, wd, wp, bd, bp, s, p, d, backend="reference"),
        )
