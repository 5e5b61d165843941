"""Seeded random configurations of every op, and torch as the oracle.

Each generator draws a small configuration (shapes, strides, paddings incl. 'same',
dilation, groups, asymmetric kernels, unbatched inputs) as (args, kwargs) for fastconv's
function; ``torch_call`` runs the same call through torch.nn.functional. The generators also
produce some invalid configurations: there torch must raise, and fastconv must raise
ValueError / TypeError.
"""

from __future__ import annotations

import numpy as np

import fastconv

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - depends on the environment
    torch = None
    F = None


def available_engines():
    """Engines that run here (the CUDA one possibly in Numba's simulator)."""
    return [n for n, r in fastconv.available_backends().items() if r.startswith("available")]


def isa_fixture(name: str = "isa"):
    """A fixture that runs a test once per instruction-set level the C engine's own kernels
    (depthwise, pooling, filters, direct conv) may use here: 0 (portable) up to the level in
    force (the CPU's, or FASTCONV_ISA's cap), each by capping them there, then puts back the
    level it found (so an AVX2-only run stays AVX2-only). Use: ``isa = isa_fixture()`` (the
    fixture's name is ``name``, as pytest takes it from the decorator, not the variable)."""
    import pytest

    from fastconv.backends.c import pool

    levels = range(pool.ISA_NAMES.index(pool.isa_level()) + 1)

    @pytest.fixture(name=name, params=levels, ids=lambda lvl: pool.ISA_NAMES[lvl])
    def isa(request):
        before = pool.ISA_NAMES.index(pool.isa_level())
        pool.isa_level(request.param)
        assert pool.isa_level() == pool.ISA_NAMES[request.param]
        yield request.param
        pool.isa_level(before)

    return isa


def is_simulated(engine: str) -> bool:
    return engine == "cuda" and "simulator" in fastconv.available_backends()["cuda"]


def _maybe_unbatched(rng, shape):
    return shape[1:] if rng.random() < 0.2 else shape


def _pad_choice(rng, nd, k, stride_is_one):
    r = rng.random()
    if r < 0.2 and stride_is_one:
        return "same"
    if r < 0.3:
        return "valid"
    if r < 0.65 or nd == 1:
        return int(rng.integers(0, 3))
    return tuple(int(v) for v in rng.integers(0, 3, nd))


def _tup(rng, nd, lo, hi):
    if rng.random() < 0.5:
        return int(rng.integers(lo, hi + 1))
    return tuple(int(v) for v in rng.integers(lo, hi + 1, nd))


def _as_tuple(v, nd):
    return v if isinstance(v, tuple) else (v,) * nd


def gen_conv(rng, nd=2):
    G = int(rng.choice([1, 1, 2, 3]))
    Cg, OCg = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    k = tuple(int(v) for v in rng.integers(1, 5, nd))
    stride = _tup(rng, nd, 1, 3)
    dilation = _tup(rng, nd, 1, 3)
    padding = _pad_choice(rng, nd, k, all(s == 1 for s in _as_tuple(stride, nd)))
    spatial = tuple(int(v) for v in rng.integers(1, 12, nd))
    N = int(rng.integers(1, 4))
    x_shape = _maybe_unbatched(rng, (N, G * Cg) + spatial)
    w_shape = (G * OCg, Cg) + k
    kwargs = {}
    if rng.random() < 0.2:
        kwargs["padding_mode"] = str(rng.choice(["reflect", "replicate", "circular"]))
    bias = rng.random() < 0.5
    return dict(
        x=x_shape,
        w=w_shape,
        b=(G * OCg,) if bias else None,
        args=(stride, padding, dilation, G),
        kwargs=kwargs,
    )


def gen_conv_transpose(rng, nd=2):
    G = int(rng.choice([1, 1, 2, 3]))
    Cg, OCg = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    k = tuple(int(v) for v in rng.integers(1, 5, nd))
    stride = _as_tuple(_tup(rng, nd, 1, 3), nd)
    dilation = _as_tuple(_tup(rng, nd, 1, 3), nd)
    padding = _tup(rng, nd, 0, 2)
    out_pad = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    spatial = tuple(int(v) for v in rng.integers(1, 8, nd))
    N = int(rng.integers(1, 4))
    x_shape = _maybe_unbatched(rng, (N, G * Cg) + spatial)
    w_shape = (G * Cg, OCg) + k
    bias = rng.random() < 0.5
    return dict(
        x=x_shape,
        w=w_shape,
        b=(G * OCg,) if bias else None,
        args=(stride, padding, out_pad, G, dilation),
        kwargs={},
    )


def gen_max_pool(rng, nd=2):
    k = tuple(int(v) for v in rng.integers(1, 5, nd))
    d = tuple(int(v) for v in rng.integers(1, 4, nd))
    p = tuple(
        int(rng.integers(0, min(kk // 2, (dd * (kk - 1) + 1) // 2) + 1)) for kk, dd in zip(k, d)
    )
    stride = None if rng.random() < 0.3 else _tup(rng, nd, 1, 3)
    spatial = tuple(int(v) for v in rng.integers(1, 12, nd))
    x_shape = _maybe_unbatched(rng, (int(rng.integers(1, 3)), int(rng.integers(1, 4))) + spatial)
    return dict(x=x_shape, args=(k, stride, p, d, bool(rng.random() < 0.5), True))


def gen_avg_pool(rng, nd=2):
    k = tuple(int(v) for v in rng.integers(1, 5, nd))
    p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
    stride = None if rng.random() < 0.3 else _tup(rng, nd, 1, 3)
    spatial = tuple(int(v) for v in rng.integers(1, 12, nd))
    x_shape = _maybe_unbatched(rng, (int(rng.integers(1, 3)), int(rng.integers(1, 4))) + spatial)
    args = (k, stride, p, bool(rng.random() < 0.5), bool(rng.random() < 0.5))
    if nd == 2:
        args += (None if rng.random() < 0.6 else int(rng.choice([-3, 1, 2, 5])),)
    return dict(x=x_shape, args=args)


def gen_adaptive(rng, nd=2):
    spatial = tuple(int(v) for v in rng.integers(1, 12, nd))
    out = tuple(None if rng.random() < 0.15 else int(rng.integers(1, s + 3)) for s in spatial)
    if nd == 1 or rng.random() < 0.3:
        out = out[0] if out[0] is not None else 2
    x_shape = _maybe_unbatched(rng, (int(rng.integers(1, 3)), int(rng.integers(1, 4))) + spatial)
    return dict(x=x_shape, args=(out,))


def gen_depthwise(rng):
    C, m = int(rng.integers(1, 5)), int(rng.integers(1, 3))
    k = tuple(int(v) for v in rng.integers(1, 5, 2))
    stride = _tup(rng, 2, 1, 3)
    dilation = _tup(rng, 2, 1, 2)
    padding = _pad_choice(rng, 2, k, all(s == 1 for s in _as_tuple(stride, 2)))
    spatial = tuple(int(v) for v in rng.integers(1, 12, 2))
    x_shape = _maybe_unbatched(rng, (int(rng.integers(1, 3)), C) + spatial)
    bias = rng.random() < 0.5
    return dict(
        x=x_shape,
        w=(C * m, 1) + k,
        b=(C * m,) if bias else None,
        args=(stride, padding, dilation),
        kwargs={},
    )


def gen_separable(rng):
    cfg = gen_depthwise(rng)
    OC = int(rng.integers(1, 5))
    cfg["pw"] = (OC, cfg["w"][0], 1, 1)
    cfg["pb"] = (OC,) if rng.random() < 0.5 else None
    return cfg


# --------------------------------------------------------------------------- arrays


def make_input(rng, shape, dtype, *, ties=False, nan=False):
    """A random array of ``shape`` that is often non-contiguous or has negative strides."""
    if ties:
        a = rng.integers(-2, 3, shape).astype(np.float64)
    else:
        a = rng.standard_normal(shape)
    if nan and a.size:
        flat = a.reshape(-1)
        flat[rng.integers(0, a.size, max(1, a.size // 20))] = np.nan
        if rng.random() < 0.5:
            flat[rng.integers(0, a.size, max(1, a.size // 20))] = -np.inf
    a = a.astype(dtype)
    r = rng.random()
    if r < 0.25 and a.ndim:
        big = np.empty(a.shape[:-1] + (2 * a.shape[-1],), dtype)
        big[..., ::2] = a
        return big[..., ::2]  # strided last axis
    if r < 0.45 and a.ndim:
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]  # negative strides, same values
    if r < 0.6 and a.ndim >= 2:
        return np.swapaxes(np.ascontiguousarray(np.swapaxes(a, -1, -2)), -1, -2)  # F-order-ish
    return a


def t(a):
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def rel_err(got, want) -> float:
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    if want.size == 0:
        return 0.0
    scale = max(np.max(np.abs(np.nan_to_num(want, nan=0.0, posinf=0.0, neginf=0.0))), 1e-300)
    ok_nan = np.isnan(got) == np.isnan(want)
    assert ok_nan.all(), "NaN positions differ"
    same_inf = np.isinf(want)
    assert (got[same_inf] == want[same_inf]).all(), "infinities differ"
    fin = ~np.isnan(want) & ~same_inf
    return float(np.max(np.abs(got[fin] - want[fin]), initial=0.0) / scale)


TOL = {np.float64: 1e-10, np.float32: 1e-5}


def torch_conv(nd, x, w, b, stride, padding, dilation, groups, padding_mode="zeros"):
    if padding_mode == "zeros":
        fn = F.conv2d if nd == 2 else F.conv1d
        return fn(t(x), t(w), t(b), stride, padding, dilation, groups)
    cls = torch.nn.Conv2d if nd == 2 else torch.nn.Conv1d
    layer = cls(
        w.shape[1] * groups,
        w.shape[0],
        w.shape[2:],
        stride,
        padding,
        dilation,
        groups,
        b is not None,
        padding_mode,
        dtype=torch.float64,
    )
    with torch.no_grad():
        layer.weight.copy_(t(w))
        if b is not None:
            layer.bias.copy_(t(b))
        return layer(t(x))


def variants(engine: str):
    """None (the best) and every named conv2d variant of the engine."""
    from fastconv.backends import _registry

    return (None,) + tuple(getattr(_registry.backend_module(engine), "CONV2D_VARIANTS", ()))


def fits(engine: str, variant, w_shape, stride, dilation, nd: int) -> bool:
    """Whether ``variant`` runs this kernel size, stride and dilation (the C engine's Winograd
    variants run 3x3 stride-1 layers only and raise ValueError on others)."""
    def pair(v):
        t = (v,) * nd if isinstance(v, (int, np.integer)) else tuple(v)
        return ((1,) + t) if nd == 1 else t

    from fastconv.backends import _registry

    try:
        k, s, d = pair(tuple(w_shape[2:]) if nd == 2 else w_shape[2]), pair(stride), pair(dilation)
        return _registry.variant_fits(_registry.backend_module(engine), variant, *k, *s, *d)
    except (TypeError, ValueError):
        return False  # an invalid geometry: the call's own check raises
