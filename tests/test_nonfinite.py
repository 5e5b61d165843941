"""NaN and +-Inf reach exactly the outputs that read them, in every engine and variant.

The rule (docs/nonfinite.md, the kernel contract in fastconv/backends/__init__.py):

- an input element reaches the outputs whose window reads it, and no other output;
- a convolution's zero padding is a zero input: a padded tap multiplies 0 by its weight,
  and IEEE arithmetic gives 0 x NaN = 0 x Inf = NaN. Every output of channel o reads every
  tap of filter o (inside the input or in the padding), so a non-finite weight or bias makes
  its whole output channel non-finite. A transposed convolution has no padded taps: a
  weight reaches the outputs its input pixels are scattered to;
- pooling skips the padding (max pooling: NaN wins, +Inf wins over finite values, -Inf only
  when the whole window is -Inf; average pooling: any non-finite value it reads).

Oracle: which outputs read a non-finite element is computed independently, by running the
same op in torch (float64) on the 0/1 indicator array of the non-finite elements with
all-ones weights, and checking for a non-zero result. The real output's ``np.isfinite`` must
be the complement of that mask, for every engine and every conv2d ``variant=``. Then the
class of each non-finite output (NaN, +Inf, -Inf) and the finite values must agree with the
reference engine and with torch (float64): the class of a sum does not depend on its order.
"""

from __future__ import annotations

import numpy as np
import pytest
from _cases import (
    F,
    available_engines,
    fits,
    gen_adaptive,
    gen_avg_pool,
    gen_conv,
    gen_conv_transpose,
    gen_depthwise,
    gen_max_pool,
    gen_separable,
    is_simulated,
    rel_err,
    torch,
    torch_conv,
    variants,
)

import fastconv as fc
from fastconv.backends import _registry

pytestmark = pytest.mark.skipif(torch is None, reason="the oracle masks are computed by torch")

TOL = {np.float64: 1e-10, np.float32: 1e-5}


def n_cases(engine: str, variant=None) -> int:
    if is_simulated(engine):
        return 2
    return 10 if variant is not None else 30


def conv_variants():
    """(engine, variant) for every engine here and every conv2d variant it declares."""
    return [(e, v) for e in available_engines() for v in variants(e)]


# --------------------------------------------------------------------------- arrays


def poisoned(rng, shape, dtype, rate=0.05, kinds=(np.nan, np.inf, -np.inf)):
    """(array, indicator): normal values with a few NaN / +Inf / -Inf, laid out in memory
    contiguously, strided, reversed or transposed; the 0/1 float64 indicator marks them."""
    a = rng.standard_normal(shape)
    if a.size:
        k = max(1, int(a.size * rate)) if rng.random() < 0.8 else 1
        at = rng.choice(a.size, min(k, a.size), replace=False)
        a.reshape(-1)[at] = rng.choice(np.array(kinds), len(at))
    ind = (~np.isfinite(a)).astype(np.float64)
    return _layout(rng, a.astype(dtype)), ind


def clean(rng, shape, dtype):
    a = rng.standard_normal(shape)
    return _layout(rng, a.astype(dtype)), np.zeros(shape)


def _layout(rng, a):
    r = rng.random()
    if r < 0.25 and a.ndim:
        big = np.empty(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if r < 0.45 and a.ndim:
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    if r < 0.6 and a.ndim >= 2:
        return np.swapaxes(np.ascontiguousarray(np.swapaxes(a, -1, -2)), -1, -2)
    return a


def T(a):
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def N(t):
    return t.detach().numpy()


def channel_mask(out_shape, w_ind, b_ind, channel_axis):
    """Outputs of the channels whose filter or bias holds a non-finite element."""
    bad = w_ind.reshape(w_ind.shape[0], -1).any(axis=1) if w_ind is not None else False
    if b_ind is not None:
        bad = bad | b_ind.astype(bool)
    bad = np.broadcast_to(np.asarray(bad), (out_shape[channel_axis],))
    shape = [1] * len(out_shape)
    shape[channel_axis] = out_shape[channel_axis]
    return np.broadcast_to(bad.reshape(shape), out_shape)


def check(got, mask, ref, want_torch, dtype, what):
    """got's non-finite elements are exactly ``mask``; classes and values as the reference
    engine's and torch's."""
    got = np.asarray(got)
    assert got.shape == mask.shape, (what, got.shape, mask.shape)
    wrong = ~np.isfinite(got) != mask
    assert not wrong.any(), (
        f"{what}: {int(wrong.sum())} outputs wrong, e.g. at {np.argwhere(wrong)[0].tolist()}: "
        f"non-finite expected {bool(mask[tuple(np.argwhere(wrong)[0])])}"
    )
    assert rel_err(got, ref) <= TOL[dtype], what
    if want_torch is not None:
        assert rel_err(got, want_torch) <= TOL[dtype], what


def scenario(rng):
    """Where the non-finite values go: the input, the weights, the bias, or several."""
    return rng.choice(["x", "x", "w", "b", "xw"])


# --------------------------------------------------------------------------- convolutions


@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("engine, variant", conv_variants())
def test_conv(engine, variant, nd):
    rng = np.random.default_rng(11 + nd)
    fn = fc.conv2d if nd == 2 else fc.conv1d
    done = 0
    for i in range(200):
        if done == n_cases(engine, variant):
            break
        cfg, dt = gen_conv(rng, nd), (np.float64, np.float32)[i % 2]
        where = scenario(rng)
        x, xi = (poisoned if "x" in where else clean)(rng, cfg["x"], dt)
        w, wi = (poisoned if "w" in where else clean)(rng, cfg["w"], dt)
        b = bi = None
        if cfg["b"] is not None or where == "b":
            b, bi = (poisoned if "b" in where else clean)(rng, (cfg["w"][0],), dt)
        stride, padding, dilation, groups = cfg["args"]
        kw = cfg["kwargs"]
        try:
            reads = N(
                torch_conv(nd, xi, np.ones(w.shape), None, stride, padding, dilation, groups, **kw)
            )
            want = N(torch_conv(nd, x, w, b, stride, padding, dilation, groups, **kw))
        except RuntimeError:
            continue  # an invalid configuration: tests/test_ops_random.py checks those
        if not fits(engine, variant, w.shape, stride, dilation, nd):
            continue  # a geometry the variant refuses (tests/test_winograd.py)
        done += 1
        mask = (reads != 0) | channel_mask(reads.shape, wi, bi, reads.ndim - nd - 1)
        got = fn(x, w, b, stride, padding, dilation, groups, backend=engine, variant=variant, **kw)
        ref = fn(x, w, b, stride, padding, dilation, groups, backend="reference", **kw)
        check(got, mask, ref, want, dt, f"case {i} ({where}) {cfg}")
    restricted = getattr(_registry.backend_module(engine), "CONV2D_VARIANT_GEOMETRY", {})
    if not done and variant in restricted:
        pytest.skip(f"no random case is a geometry {variant} runs (tests/test_winograd.py)")
    assert done


@pytest.mark.parametrize("engine, variant", conv_variants())
def test_conv2d_hand_picked(engine, variant):
    """The paths the automatic choice takes: 1x1 unpadded (the C engine multiplies x
    itself), few output channels (numba's direct kernel), many (the GEMMs), depthwise at
    stride 1 ('same' kernels) and 2, a tap in the padding with a NaN, an Inf and a -Inf
    weight, a chunked im2col (the C engine's workspace bound)."""
    rng = np.random.default_rng(5)
    cases = [
        ((2, 8, 7, 7), (8, 8, 1, 1), dict()),
        ((2, 8, 7, 7), (2, 8, 3, 3), dict(padding=1)),
        ((2, 8, 9, 9), (16, 8, 3, 3), dict(padding=1)),
        ((2, 8, 9, 9), (16, 4, 3, 3), dict(padding=(2, 1), dilation=2, groups=2)),
        ((2, 4, 9, 9), (8, 1, 3, 3), dict(padding=1, groups=4)),
        ((2, 4, 9, 9), (4, 1, 5, 3), dict(padding="same", groups=4)),
        ((1, 4, 10, 10), (4, 1, 3, 3), dict(stride=2, padding=1, groups=4)),
        ((1, 3, 6, 6), (5, 3, 3, 3), dict(stride=2, padding=2)),
    ]
    if is_simulated(engine):  # every simulated thread is a Python thread: tiny shapes
        cases = [
            ((1, 2, 4, 4), (2, 2, 3, 3), dict(padding=1)),
            ((1, 2, 5, 5), (6, 1, 3, 3), dict(padding=1, groups=2)),
        ]
    for xs, ws, kw in cases:
        if not fits(engine, variant, ws, kw.get("stride", 1), kw.get("dilation", 1), 2):
            continue
        for where in ("x", "w"):
            for kind in (np.nan, np.inf, -np.inf):
                x, xi = (
                    poisoned(rng, xs, np.float32, kinds=(kind,))
                    if where == "x"
                    else clean(rng, xs, np.float32)
                )
                w, wi = clean(rng, ws, np.float32)
                if where == "w":  # a non-finite tap in a corner: it falls in the padding
                    w = np.array(w)
                    w[0, 0, 0, 0] = kind
                    wi = (~np.isfinite(w)).astype(np.float64)
                reads = N(F.conv2d(T(xi), T(np.ones(ws)), None, **kw))
                mask = (reads != 0) | channel_mask(reads.shape, wi, None, 1)
                got = fc.conv2d(x, w, backend=engine, variant=variant, **kw)
                ref = fc.conv2d(x, w, backend="reference", **kw)
                want = N(F.conv2d(T(x), T(w), None, **kw))
                check(got, mask, ref, want, np.float32, f"{xs} {ws} {kw} {where} {kind}")


def test_conv2d_chunked_workspace():
    """The C engine's im2col in chunks (a tiny workspace bound): no chunk edge mixes."""
    if fc.available_backends()["c"] != "available":
        pytest.skip("the C engine is not built")
    from fastconv.backends import c

    rng = np.random.default_rng(8)
    before = c.get_workspace_limit()
    try:
        c.set_workspace_limit(4096)
        for variant in variants("c"):
            x, xi = poisoned(rng, (2, 6, 13, 11), np.float64)
            w, _ = clean(rng, (12, 6, 3, 3), np.float64)
            reads = N(F.conv2d(T(xi), T(np.ones(w.shape)), padding=1)) != 0
            got = fc.conv2d(x, w, padding=1, backend="c", variant=variant)
            ref = fc.conv2d(x, w, padding=1, backend="reference")
            check(got, reads, ref, None, np.float64, f"c {variant} chunked")
    finally:
        c.set_workspace_limit(before)


@pytest.mark.parametrize("nd", [1, 2])
def test_conv_transpose(engine, nd):
    rng = np.random.default_rng(21 + nd)
    fn = fc.conv_transpose2d if nd == 2 else fc.conv_transpose1d
    tfn = F.conv_transpose2d if nd == 2 else F.conv_transpose1d
    done = 0
    for i in range(200):
        if done == n_cases(engine):
            break
        cfg, dt = gen_conv_transpose(rng, nd), (np.float64, np.float32)[i % 2]
        where = scenario(rng)
        x, xi = (poisoned if "x" in where else clean)(rng, cfg["x"], dt)
        w, wi = (poisoned if "w" in where else clean)(rng, cfg["w"], dt)
        b = bi = None
        if cfg["b"] is not None or where == "b":
            OC = cfg["w"][1] * cfg["args"][3]
            b, bi = (poisoned if "b" in where else clean)(rng, (OC,), dt)
        args = cfg["args"]
        try:
            reads_x = N(tfn(T(xi), T(np.ones(w.shape)), None, *args))
            reads_w = N(tfn(T(np.ones(x.shape)), T(wi), None, *args))
            want = N(tfn(T(x), T(w), T(b), *args))
        except RuntimeError:
            continue
        done += 1
        mask = (
            (reads_x != 0)
            | (reads_w != 0)
            | channel_mask(reads_x.shape, None, bi, reads_x.ndim - nd - 1)
        )
        got = fn(x, w, b, *args, backend=engine)
        ref = fn(x, w, b, *args, backend="reference")
        check(got, mask, ref, want, dt, f"case {i} ({where}) {cfg}")
    assert done


def test_depthwise(engine):
    rng = np.random.default_rng(31)
    done = 0
    for i in range(200):
        if done == n_cases(engine):
            break
        cfg, dt = gen_depthwise(rng), (np.float64, np.float32)[i % 2]
        where = scenario(rng)
        x, xi = (poisoned if "x" in where else clean)(rng, cfg["x"], dt)
        w, wi = (poisoned if "w" in where else clean)(rng, cfg["w"], dt)
        b = bi = None
        if cfg["b"] is not None or where == "b":
            b, bi = (poisoned if "b" in where else clean)(rng, (cfg["w"][0],), dt)
        s, p, d = cfg["args"]
        C = cfg["x"][-3]
        try:
            reads = N(F.conv2d(T(xi), T(np.ones(w.shape)), None, s, p, d, C))
            want = N(F.conv2d(T(x), T(w), T(b), s, p, d, C))
        except RuntimeError:
            continue
        done += 1
        mask = (reads != 0) | channel_mask(reads.shape, wi, bi, reads.ndim - 3)
        got = fc.depthwise_conv2d(x, w, b, s, p, d, backend=engine)
        ref = fc.depthwise_conv2d(x, w, b, s, p, d, backend="reference")
        check(got, mask, ref, want, dt, f"case {i} ({where}) {cfg}")
        # conv2d with groups = C takes the depthwise kernels too
        got = fc.conv2d(x, w, b, s, p, d, C, backend=engine)
        check(got, mask, ref, want, dt, f"conv2d groups=C, case {i} ({where}) {cfg}")
    assert done


def test_separable(engine):
    rng = np.random.default_rng(41)
    done = 0
    for i in range(200):
        if done == n_cases(engine):
            break
        cfg, dt = gen_separable(rng), (np.float64, np.float32)[i % 2]
        where = rng.choice(["x", "wd", "bd", "wp", "bp", "x wp"])
        x, xi = (poisoned if "x" in where else clean)(rng, cfg["x"], dt)
        wd, wdi = (poisoned if "wd" in where else clean)(rng, cfg["w"], dt)
        wp, wpi = (poisoned if "wp" in where else clean)(rng, cfg["pw"], dt)
        bd = bdi = bp = bpi = None
        if cfg["b"] is not None or where == "bd":
            bd, bdi = (poisoned if "bd" in where else clean)(rng, (cfg["w"][0],), dt)
        if cfg["pb"] is not None or where == "bp":
            bp, bpi = (poisoned if "bp" in where else clean)(rng, (cfg["pw"][0],), dt)
        s, p, d = cfg["args"]
        C = cfg["x"][-3]
        try:
            mid = N(F.conv2d(T(xi), T(np.ones(wd.shape)), None, s, p, d, C)) != 0
            mid = mid | channel_mask(mid.shape, wdi, bdi, mid.ndim - 3)
            reads = N(F.conv2d(T(mid.astype(np.float64)), T(np.ones(wp.shape)))) != 0
            want = N(F.conv2d(F.conv2d(T(x), T(wd), T(bd), s, p, d, C), T(wp), T(bp)))
        except RuntimeError:
            continue
        done += 1
        mask = reads | channel_mask(reads.shape, wpi, bpi, reads.ndim - 3)
        got = fc.separable_conv2d(x, wd, wp, bd, bp, s, p, d, backend=engine)
        ref = fc.separable_conv2d(x, wd, wp, bd, bp, s, p, d, backend="reference")
        check(got, mask, ref, want, dt, f"case {i} ({where}) {cfg}")
    assert done


# --------------------------------------------------------------------------- pooling


def _pool_case(engine, rng, n, gen, run, oracle, expect):
    """Run ``n`` cases: x with NaN / +-Inf (sometimes only one kind, sometimes whole
    windows of -Inf), the engine's output against ``expect`` built from torch's masks."""
    done = 0
    for i in range(200):
        if done == n:
            break
        cfg, dt = gen(rng), (np.float64, np.float32)[i % 2]
        kinds = [(np.nan, np.inf, -np.inf), (np.nan,), (np.inf,), (-np.inf,)][i % 4]
        x, _ = poisoned(rng, cfg["x"], dt, rate=[0.05, 0.3][i % 3 == 0], kinds=kinds)
        xh = np.asarray(x, np.float64)
        try:
            masks = {
                k: N(oracle(cfg, T(v)))
                for k, v in (
                    ("nan", np.isnan(xh)),
                    ("pinf", np.isposinf(xh)),
                    ("ninf", np.isneginf(xh)),
                    ("fin", np.isfinite(xh)),
                    ("one", np.ones_like(xh)),
                )
            }
            want = oracle(cfg, T(xh))
        except RuntimeError:
            continue
        done += 1
        got = run(cfg, x, engine)
        ref = run(cfg, x, "reference")
        if isinstance(got, tuple):  # (values, indices)
            np.testing.assert_array_equal(got[1], ref[1])
            got, ref = got[0], ref[0]
        exp = expect(masks)
        cls = np.select([np.isnan(got), np.isposinf(got), np.isneginf(got)], [1, 2, 3], 0)
        wrong = cls != exp
        assert not wrong.any(), f"case {i} {cfg}: class {cls[wrong][:5]} expected {exp[wrong][:5]}"
        assert rel_err(got, ref) <= TOL[dt]
        assert rel_err(got, N(want)) <= TOL[dt]
    assert done


def _max_classes(m):
    """max pooling: NaN if the window reads one; else +Inf if it reads one; else -Inf when
    it reads no finite value (all -Inf, or a window wholly in the padding); else finite."""
    nan, pinf, fin = m["nan"] > 0, m["pinf"] > 0, m["fin"] > 0
    return np.select([nan, pinf, ~fin], [1, 2, 3], 0)


def _sum_classes(m):
    """average pooling: NaN if the window reads a NaN or both infinities; else the infinity
    it reads, times the sign of the divisor (divisor_override may be negative: the pool of
    ones is then negative); else finite. (The masks are sums, so != 0.)"""
    nan, pinf, ninf = m["nan"] != 0, m["pinf"] != 0, m["ninf"] != 0
    if (m["one"] < 0).any():
        pinf, ninf = ninf, pinf
    return np.select([nan | (pinf & ninf), pinf, ninf], [1, 2, 3], 0)


@pytest.mark.parametrize("nd", [1, 2])
def test_max_pool(engine, nd):
    fn = fc.max_pool2d if nd == 2 else fc.max_pool1d
    tfn = F.max_pool2d if nd == 2 else F.max_pool1d
    _pool_case(
        engine,
        np.random.default_rng(51 + nd),
        n_cases(engine),
        lambda r: gen_max_pool(r, nd),
        lambda cfg, x, e: fn(x, *cfg["args"], backend=e),
        lambda cfg, t: tfn(t, *cfg["args"][:5]),
        _max_classes,
    )


@pytest.mark.parametrize("nd", [1, 2])
def test_avg_pool(engine, nd):
    fn = fc.avg_pool2d if nd == 2 else fc.avg_pool1d
    tfn = F.avg_pool2d if nd == 2 else F.avg_pool1d
    _pool_case(
        engine,
        np.random.default_rng(61 + nd),
        n_cases(engine),
        lambda r: gen_avg_pool(r, nd),
        lambda cfg, x, e: fn(x, *cfg["args"], backend=e),
        lambda cfg, t: tfn(t, *cfg["args"]),
        _sum_classes,
    )


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("nd", [1, 2])
def test_adaptive_pool(engine, kind, nd):
    name = f"adaptive_{kind}_pool{nd}d"
    fn, tfn = getattr(fc, name), getattr(F, name)
    extra = (True,) if kind == "max" else ()
    _pool_case(
        engine,
        np.random.default_rng(71 + nd + 10 * (kind == "max")),
        n_cases(engine),
        lambda r: gen_adaptive(r, nd),
        lambda cfg, x, e: fn(x, *cfg["args"], *extra, backend=e),
        lambda cfg, t: tfn(t, *cfg["args"]),
        _max_classes if kind == "max" else _sum_classes,
    )


# --------------------------------------------------------------------------- regressions
# Bugs these tests found, shrunk to one case each.


@pytest.mark.parametrize("engine, variant", conv_variants())
@pytest.mark.parametrize("kind", [np.nan, np.inf, -np.inf])
def test_padded_tap_with_a_non_finite_weight(engine, variant, kind):
    """A NaN / Inf weight on a tap that lies in the zero padding makes that output NaN
    (0 x NaN = 0 x Inf = NaN). The direct kernels (C, numba and CUDA v1_direct, numba's
    default for fewer than 4 output channels per group, the numba and CUDA depthwise
    kernels) skipped the padded taps and left the corner outputs finite."""
    x = np.ones((1, 2, 3, 3))
    w = np.ones((2, 1, 3, 3))
    w[0, 0, 0, 0] = kind
    for groups, ww in ((1, np.ones((1, 2, 3, 3))), (2, w)):
        if groups == 1:
            ww = ww.copy()
            ww[0, 0, 0, 0] = kind
        y = fc.conv2d(x, ww, padding=1, groups=groups, backend=engine, variant=variant)
        assert np.isnan(y[0, 0, 0, 0]), (groups, y[0, 0])  # the corner tap reads the padding
        assert not np.isfinite(y[0, 0]).any()
        if groups == 2:
            assert np.isfinite(y[0, 1]).all()
    if variant is None:
        y = fc.depthwise_conv2d(x, w, padding=1, backend=engine)
        assert np.isnan(y[0, 0, 0, 0]) and not np.isfinite(y[0, 0]).any()
        y = fc.separable_conv2d(x, w, np.ones((3, 2, 1, 1)), padding=1, backend=engine)
        assert np.isnan(y[0, :, 0, 0]).all() and not np.isfinite(y).any()


@pytest.mark.parametrize("kind", [np.nan, np.inf])
def test_transposed_weight_reaches_only_its_outputs(engine, kind):
    """conv_transpose1d, stride 2, groups 3: a NaN / Inf at tap 0 reaches the even outputs
    only (input i lands on 2i + 0); the numba engine's phase GEMMs also multiplied it by the
    zero-padded input and made the odd outputs NaN."""
    x = np.ones((1, 3, 3))
    w = np.ones((3, 1, 3))
    w[0, 0, 0] = kind
    y = fc.conv_transpose1d(x, w, stride=2, groups=3, backend=engine)
    assert y.shape == (1, 3, 7)
    reached = ~np.isfinite(y[0, 0])
    np.testing.assert_array_equal(reached, [1, 0, 1, 0, 1, 0, 0])
    assert np.isfinite(y[0, 1:]).all()


def test_padding_is_a_zero_input():
    """The documented rule, spelled out on one case in the reference engine: a NaN weight on
    a tap that lies in the zero padding makes that output NaN (0 x NaN), and an Inf weight
    there too (0 x Inf); average pooling's padding adds nothing, even next to Inf."""
    x = np.ones((1, 1, 3, 3))
    for kind in (np.nan, np.inf):
        w = np.ones((1, 1, 3, 3))
        w[0, 0, 0, 0] = kind
        y = fc.conv2d(x, w, padding=1, backend="reference")
        assert np.isnan(y[0, 0, 0, 0])  # the corner tap reads the padding
        assert (np.isnan(y) | np.isinf(y)).all()
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 0, 0] = np.inf
    y = fc.avg_pool2d(x, 3, 1, 1, backend="reference")
    assert np.isposinf(y[0, 0, :2, :2]).all() and np.isfinite(y[0, 0, 2:, :]).all()
