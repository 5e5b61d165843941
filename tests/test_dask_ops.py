"""Every public op on dask arrays equals the in-memory call: random configurations of each op
on random chunkings (1-pixel chunks, chunks smaller than the halo, uneven chunks, split
channel and batch axes), validation at call time, backend= inside the tasks."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import fastconv.grad as G  # noqa: E402

import fastconv as fc  # noqa: E402

BACKEND = "reference"  # the living definition: stable and JIT-free, so the suite stays quick
SEEDS = range(6)


def chunking(shape, rng, kind=None):
    """A random chunking of ``shape``: per axis one chunk, 1-element chunks, or uneven cuts."""
    out = []
    for n in shape:
        k = kind or rng.choice(["one", "pixel", "uneven", "uneven", "small"])
        if n <= 1 or k == "one":
            out.append((n,))
        elif k == "pixel":
            out.append((1,) * n)
        elif k == "small":
            c = int(rng.integers(1, 3))
            out.append(tuple([c] * (n // c) + ([n % c] if n % c else [])))
        else:
            cuts = sorted(set(rng.integers(1, n, size=int(rng.integers(1, min(4, n)))).tolist()))
            edges = [0] + cuts + [n]
            out.append(tuple(b - a for a, b in zip(edges[:-1], edges[1:])))
    return tuple(out)


def as_dask(a, rng, kind=None):
    return da.from_array(a, chunks=chunking(a.shape, rng, kind))


def check(got, want, exact=False):
    """dask result (computed here) against the in-memory one: max pooling exactly, the rest
    within 1e-6 (float32) / 1e-12 (float64) of the largest magnitude."""
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            check(g, w, exact)
        return
    assert isinstance(got, da.Array)
    val = got.compute(scheduler="sync")
    assert val.shape == want.shape and val.dtype == want.dtype
    if exact or want.dtype.kind != "f":
        np.testing.assert_array_equal(val, want)
        return
    tol = 1e-6 if want.dtype == np.float32 else 1e-12
    scale = max(float(np.max(np.abs(want), initial=0.0)), 1e-30)
    err = float(np.max(np.abs(val.astype(np.float64) - want), initial=0.0))
    assert err <= tol * scale, f"relative error {err / scale:.3g}"


def rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def conv_case(rng, nd, transposed=False):
    dtype = rng.choice([np.float32, np.float64])
    g = int(rng.choice([1, 1, 2]))
    C, OC = g * int(rng.integers(1, 3)), g * int(rng.integers(1, 3))
    K = tuple(int(v) for v in rng.integers(1, 4, size=nd))
    s = tuple(int(v) for v in rng.integers(1, 4, size=nd))
    d = tuple(int(v) for v in rng.integers(1, 3, size=nd))
    sizes = tuple(int(v) for v in rng.integers(5, 12, size=nd))
    batched = rng.random() < 0.8
    xs = ((int(rng.integers(1, 4)),) if batched else ()) + (C,) + sizes
    if transposed:
        p = tuple(int(rng.integers(0, k)) for k in K)
        op = tuple(int(rng.integers(0, max(a, b))) for a, b in zip(s, d))
        w = rand(rng, (C, OC // g) + K, dtype)
        kw = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    else:
        w = rand(rng, (OC, C // g) + K, dtype)
        pad = rng.choice(["int", "tuple", "same", "valid"])
        if pad == "same":
            s = (1,) * nd
        padding = {"int": int(rng.integers(0, 3)), "tuple": tuple(int(v) for v in rng.integers(0, 3, size=nd)),
                   "same": "same", "valid": "valid"}[pad]
        kw = dict(stride=s, padding=padding, dilation=d, groups=g)
        if rng.random() < 0.3 and pad in ("int", "tuple"):
            kw["padding_mode"] = str(rng.choice(["reflect", "replicate", "circular"]))
    b = rand(rng, (OC,), dtype) if rng.random() < 0.6 else None
    return rand(rng, xs, dtype), w, b, kw


def valid(fn, *args, **kwargs):
    """The in-memory result, or None where the random configuration is invalid."""
    try:
        return fn(*args, **kwargs)
    except ValueError:
        return None


# --------------------------------------------------------------------------- forward ops


@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("seed", SEEDS)
def test_conv(nd, seed):
    rng = np.random.default_rng(100 + seed)
    fn = fc.conv2d if nd == 2 else fc.conv1d
    for _ in range(4):
        x, w, b, kw = conv_case(rng, nd)
        want = valid(fn, x, w, b, backend=BACKEND, **kw)
        if want is None:
            continue
        check(fn(as_dask(x, rng), w, b, backend=BACKEND, **kw), want)


@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("seed", SEEDS)
def test_conv_transpose(nd, seed):
    rng = np.random.default_rng(200 + seed)
    fn = fc.conv_transpose2d if nd == 2 else fc.conv_transpose1d
    for _ in range(4):
        x, w, b, kw = conv_case(rng, nd, transposed=True)
        want = valid(fn, x, w, b, backend=BACKEND, **kw)
        if want is None:
            continue
        check(fn(as_dask(x, rng), w, b, backend=BACKEND, **kw), want)


@pytest.mark.parametrize("seed", SEEDS)
def test_depthwise_and_separable(seed):
    rng = np.random.default_rng(300 + seed)
    dtype = rng.choice([np.float32, np.float64])
    C, m, OC = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 4))
    x = rand(rng, (2, C, int(rng.integers(5, 11)), int(rng.integers(5, 11))), dtype)
    wd, wp = rand(rng, (C * m, 1, 3, 2), dtype), rand(rng, (OC, C * m, 1, 1), dtype)
    bd, bp = rand(rng, (C * m,), dtype), rand(rng, (OC,), dtype)
    kw = dict(stride=int(rng.integers(1, 3)), padding=int(rng.integers(0, 2)),
              dilation=int(rng.integers(1, 3)))
    xd = as_dask(x, rng)
    check(fc.depthwise_conv2d(xd, wd, bd, backend=BACKEND, **kw),
          fc.depthwise_conv2d(x, wd, bd, backend=BACKEND, **kw))
    check(fc.separable_conv2d(xd, wd, wp, bd, bp, backend=BACKEND, **kw),
          fc.separable_conv2d(x, wd, wp, bd, bp, backend=BACKEND, **kw))


def pool_case(rng, nd, kind):
    K = tuple(int(v) for v in rng.integers(1, 4, size=nd))
    kw = dict(kernel_size=K, stride=tuple(int(v) for v in rng.integers(1, 4, size=nd)),
              padding=tuple(int(rng.integers(0, k // 2 + 1)) for k in K),
              ceil_mode=bool(rng.random() < 0.5))
    if kind == "max":
        kw["dilation"] = tuple(int(v) for v in rng.integers(1, 3, size=nd))
        kw["return_indices"] = bool(rng.random() < 0.7)
    else:
        kw["count_include_pad"] = bool(rng.random() < 0.5)
        if nd == 2 and rng.random() < 0.3:
            kw["divisor_override"] = int(rng.integers(1, 5))
    dtype = rng.choice([np.float32, np.float64])
    shape = ((int(rng.integers(1, 4)),) if rng.random() < 0.8 else ()) + (int(rng.integers(1, 4)),)
    x = rand(rng, shape + tuple(int(v) for v in rng.integers(1, 12, size=nd)), dtype)
    if kind == "max":  # ties, -inf and NaN: the index rules must survive the blocking
        x[rng.random(x.shape) < 0.2] = 0.5
        x[rng.random(x.shape) < 0.05] = -np.inf
        if rng.random() < 0.3:
            x[rng.random(x.shape) < 0.05] = np.nan
    return x, kw


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("seed", SEEDS)
def test_pool(kind, nd, seed):
    rng = np.random.default_rng(400 + seed)
    fn = {("max", 1): fc.max_pool1d, ("max", 2): fc.max_pool2d,
          ("avg", 1): fc.avg_pool1d, ("avg", 2): fc.avg_pool2d}[kind, nd]
    for _ in range(5):
        x, kw = pool_case(rng, nd, kind)
        want = valid(fn, x, backend=BACKEND, **kw)
        if want is None:
            continue
        check(fn(as_dask(x, rng), backend=BACKEND, **kw), want, exact=kind == "max")


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("seed", SEEDS)
def test_adaptive(kind, nd, seed):
    rng = np.random.default_rng(500 + seed)
    fn = {("max", 1): fc.adaptive_max_pool1d, ("max", 2): fc.adaptive_max_pool2d,
          ("avg", 1): fc.adaptive_avg_pool1d, ("avg", 2): fc.adaptive_avg_pool2d}[kind, nd]
    for _ in range(4):
        sizes = tuple(int(v) for v in rng.integers(1, 16, size=nd))
        x = rand(rng, (int(rng.integers(1, 3)), 2) + sizes, np.float32)
        x[rng.random(x.shape) < 0.2] = 0.5
        out = tuple(None if rng.random() < 0.15 else int(rng.integers(1, 9)) for _ in sizes)
        kw = {"return_indices": bool(rng.random() < 0.7)} if kind == "max" else {}
        want = fn(x, out, backend=BACKEND, **kw)
        check(fn(as_dask(x, rng), out, backend=BACKEND, **kw), want, exact=kind == "max")


def test_global_pool_over_many_chunks():
    rng = np.random.default_rng(7)
    x = rand(rng, (3, 4, 13, 17), np.float64)
    xd = as_dask(x, rng, "pixel")
    check(fc.adaptive_avg_pool2d(xd, 1, backend=BACKEND), fc.adaptive_avg_pool2d(x, 1, backend=BACKEND))
    check(fc.adaptive_max_pool2d(xd, 1, True, backend=BACKEND),
          fc.adaptive_max_pool2d(x, 1, True, backend=BACKEND), exact=True)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("seed", SEEDS)
def test_conv_grads(nd, seed):
    rng = np.random.default_rng(600 + seed)
    fwd = fc.conv2d if nd == 2 else fc.conv1d
    f_in, f_w, f_b = ((G.conv2d_input, G.conv2d_weight, G.conv2d_bias) if nd == 2 else
                      (G.conv1d_input, G.conv1d_weight, G.conv1d_bias))
    done = 0
    while done < 3:
        x, w, _, kw = conv_case(rng, nd)
        kw.pop("padding_mode", None)
        y = valid(fwd, x, w, backend=BACKEND, **kw)
        if y is None:
            continue
        done += 1
        gy = rand(rng, y.shape, x.dtype)
        gyd, xd = as_dask(gy, rng), as_dask(x, rng)
        args = (kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
        check(f_in(x.shape, w, gyd, *args, backend=BACKEND), f_in(x.shape, w, gy, *args, backend=BACKEND))
        check(f_w(xd, w.shape, gyd, *args, backend=BACKEND), f_w(x, w.shape, gy, *args, backend=BACKEND))
        check(f_b(gyd, backend=BACKEND), f_b(gy, backend=BACKEND))


@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("seed", SEEDS)
def test_conv_transpose_grads(nd, seed):
    rng = np.random.default_rng(700 + seed)
    fwd = fc.conv_transpose2d if nd == 2 else fc.conv_transpose1d
    f_in, f_w, f_b = ((G.conv_transpose2d_input, G.conv_transpose2d_weight, G.conv_transpose2d_bias)
                      if nd == 2 else
                      (G.conv_transpose1d_input, G.conv_transpose1d_weight, G.conv_transpose1d_bias))
    done = 0
    while done < 3:
        x, w, _, kw = conv_case(rng, nd, transposed=True)
        y = valid(fwd, x, w, backend=BACKEND, **kw)
        if y is None:
            continue
        done += 1
        gy = rand(rng, y.shape, x.dtype)
        gyd, xd = as_dask(gy, rng), as_dask(x, rng)
        args = (kw["stride"], kw["padding"], kw["output_padding"], kw["groups"], kw["dilation"])
        check(f_in(x.shape, w, gyd, *args, backend=BACKEND), f_in(x.shape, w, gy, *args, backend=BACKEND))
        check(f_w(xd, w.shape, gyd, *args, backend=BACKEND), f_w(x, w.shape, gy, *args, backend=BACKEND))
        check(f_b(gyd, backend=BACKEND), f_b(gy, backend=BACKEND))


@pytest.mark.parametrize("seed", SEEDS)
def test_depthwise_and_separable_grads(seed):
    rng = np.random.default_rng(800 + seed)
    dtype = rng.choice([np.float32, np.float64])
    C, m, OC = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 4))
    batched = rng.random() < 0.8
    x = rand(rng, ((2,) if batched else ()) + (C, int(rng.integers(5, 11)), int(rng.integers(5, 11))), dtype)
    wd, wp, bd = rand(rng, (C * m, 1, 3, 2), dtype), rand(rng, (OC, C * m, 1, 1), dtype), rand(rng, (C * m,), dtype)
    kw = dict(stride=int(rng.integers(1, 3)), padding=int(rng.integers(0, 2)),
              dilation=int(rng.integers(1, 3)), backend=BACKEND)
    xd = as_dask(x, rng)
    gdw = rand(rng, fc.depthwise_conv2d(x, wd, **kw).shape, dtype)
    gdwd = as_dask(gdw, rng)
    check(G.depthwise_conv2d_input(x.shape, wd, gdwd, **kw), G.depthwise_conv2d_input(x.shape, wd, gdw, **kw))
    check(G.depthwise_conv2d_weight(xd, wd.shape, gdwd, **kw), G.depthwise_conv2d_weight(x, wd.shape, gdw, **kw))
    gy = rand(rng, fc.separable_conv2d(x, wd, wp, **kw).shape, dtype)
    gyd = as_dask(gy, rng)
    check(G.separable_conv2d_input(x.shape, wd, wp, gyd, **kw), G.separable_conv2d_input(x.shape, wd, wp, gy, **kw))
    check(G.separable_conv2d_depthwise_weight(xd, wd.shape, wp, gyd, **kw),
          G.separable_conv2d_depthwise_weight(x, wd.shape, wp, gy, **kw))
    check(G.separable_conv2d_pointwise_weight(xd, wd, wp.shape, gyd, bd, **kw),
          G.separable_conv2d_pointwise_weight(x, wd, wp.shape, gy, bd, **kw))
    check(G.separable_conv2d_depthwise_bias(wp, gyd, backend=BACKEND),
          G.separable_conv2d_depthwise_bias(wp, gy, backend=BACKEND))
    check(G.separable_conv2d_pointwise_bias(gyd, backend=BACKEND), G.separable_conv2d_pointwise_bias(gy, backend=BACKEND))
    check(G.separable_conv2d_backward(xd, wd, wp, gyd, bd, **kw), G.separable_conv2d_backward(x, wd, wp, gy, bd, **kw))


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("seed", SEEDS)
def test_pool_grads(kind, nd, seed):
    rng = np.random.default_rng(900 + seed)
    fwd = {("max", 1): fc.max_pool1d, ("max", 2): fc.max_pool2d,
           ("avg", 1): fc.avg_pool1d, ("avg", 2): fc.avg_pool2d}[kind, nd]
    bwd = {("max", 1): G.max_pool1d_input, ("max", 2): G.max_pool2d_input,
           ("avg", 1): G.avg_pool1d_input, ("avg", 2): G.avg_pool2d_input}[kind, nd]
    done = 0
    while done < 4:
        x, kw = pool_case(rng, nd, kind)
        kw.pop("return_indices", None)
        y = valid(fwd, x, backend=BACKEND, **kw)
        if y is None:
            continue
        done += 1
        gy = rand(rng, y.shape, x.dtype)
        first = as_dask(x, rng) if kind == "max" else x.shape
        want = bwd(x if kind == "max" else x.shape, gy, backend=BACKEND, **kw)
        check(bwd(first, as_dask(gy, rng), backend=BACKEND, **kw), want)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("seed", SEEDS)
def test_adaptive_grads(kind, nd, seed):
    rng = np.random.default_rng(1000 + seed)
    fwd = {("max", 1): fc.adaptive_max_pool1d, ("max", 2): fc.adaptive_max_pool2d,
           ("avg", 1): fc.adaptive_avg_pool1d, ("avg", 2): fc.adaptive_avg_pool2d}[kind, nd]
    bwd = {("max", 1): G.adaptive_max_pool1d_input, ("max", 2): G.adaptive_max_pool2d_input,
           ("avg", 1): G.adaptive_avg_pool1d_input, ("avg", 2): G.adaptive_avg_pool2d_input}[kind, nd]
    for _ in range(3):
        x = rand(rng, (2, 3) + tuple(int(v) for v in rng.integers(1, 14, size=nd)), np.float64)
        out = tuple(int(v) for v in rng.integers(1, 8, size=nd))
        gy = rand(rng, fwd(x, out, backend=BACKEND).shape, np.float64)
        first = as_dask(x, rng) if kind == "max" else x.shape
        want = bwd(x if kind == "max" else x.shape, gy, backend=BACKEND)
        check(bwd(first, as_dask(gy, rng), backend=BACKEND), want)


# --------------------------------------------------------------------------- semantics


def _poisoned(shape, dtype=np.float32):
    """A dask array whose computation fails: a call that computes anything would raise."""
    def boom(block):
        raise AssertionError("computed at call time")
    return da.zeros(shape, dtype, chunks=2).map_blocks(boom, dtype=dtype)


@pytest.mark.parametrize("call", [
    lambda x: fc.conv2d(x, np.ones((4, 3, 3, 3), np.float32)),            # channels
    lambda x: fc.conv2d(x, np.ones((4, 2, 3, 3), np.float32), stride=0),   # stride
    lambda x: fc.conv2d(x, np.ones((4, 2, 9, 9), np.float32)),             # kernel > input
    lambda x: fc.conv2d(x, np.ones((4, 2, 3, 3), np.float32), padding="same", stride=2),
    lambda x: fc.max_pool2d(x, 3, padding=2),                              # padding > k/2
    lambda x: fc.avg_pool2d(x, 2, divisor_override=0),
    lambda x: fc.adaptive_avg_pool2d(x, (1, 2, 3)),
    lambda x: fc.conv_transpose2d(x, np.ones((2, 1, 2, 2)), stride=2, output_padding=2),
    lambda x: fc.max_pool1d(x, 2),                                         # rank
    lambda x: fc.conv2d(x, np.ones((4, 2, 3, 3), np.float32), padding_mode="mirror"),
    lambda x: G.conv2d_input((2, 2, 6, 6), np.ones((3, 2, 3, 3)), x),      # grad_output shape
    lambda x: G.max_pool2d_input(x, x[:, :, :3], 2),
    lambda x: fc.conv2d(x, np.ones((4, 2, 3, 3), np.complex64)),           # dtype
])
def test_errors_at_call_time_equal_in_memory(call):
    x = _poisoned((2, 2, 6, 6))
    with pytest.raises((ValueError, TypeError)) as got:
        call(x)
    with pytest.raises(type(got.value)) as want:
        call(np.zeros((2, 2, 6, 6), np.float32))
    assert str(got.value) == str(want.value)


def test_unbatched_and_dtypes():
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 4, size=(2, 9, 8)).astype(np.int32)  # integers compute in float64
    w = np.ones((3, 2, 3, 3), np.float32)
    xd = as_dask(x, rng, "uneven")
    y = fc.conv2d(xd, w, padding=1, backend=BACKEND)
    assert y.shape == (3, 9, 8) and y.dtype == np.float64
    check(y, fc.conv2d(x, w, padding=1, backend=BACKEND))
    h = (rng.standard_normal((1, 2, 9, 8))).astype(np.float16)
    check(fc.max_pool2d(as_dask(h, rng), 2, backend=BACKEND), fc.max_pool2d(h, 2, backend=BACKEND), exact=True)


def test_empty_batch_and_empty_gradient():
    x = np.zeros((0, 2, 6, 6), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    check(fc.conv2d(da.from_array(x), w), fc.conv2d(x, w))
    x = np.ones((2, 3, 5, 5))
    gy = np.zeros((2, 3, 0, 2))
    check(G.adaptive_avg_pool2d_input(x.shape, da.from_array(gy)), G.adaptive_avg_pool2d_input(x.shape, gy))


def test_lazy_and_graph_holds_weights_once():
    rng = np.random.default_rng(5)
    x = as_dask(rand(rng, (2, 3, 16, 16), np.float32), rng, "pixel")
    w = rand(rng, (4, 3, 3, 3), np.float32)
    y = fc.conv2d(x, w, padding=1)
    graph = dict(y.__dask_graph__())
    holders = [v for v in graph.values() if type(v).__name__ == "Params"]
    assert len(holders) == 1 and holders[0].arrays["weight"] is not None
    assert len(y.__dask_keys__()) > 1


def test_backend_inside_tasks(monkeypatch):
    from fastconv.backends import _registry

    seen = []
    real = _registry.begin

    def spy(op, backend, **arrays):
        seen.append(backend)
        return real(op, backend, **arrays)

    monkeypatch.setattr(_registry, "begin", spy)
    import fastconv.ops.pool as pool_mod
    monkeypatch.setattr(pool_mod, "begin", spy)
    rng = np.random.default_rng(1)
    x = rand(rng, (1, 2, 8, 8), np.float32)
    y = fc.max_pool2d(as_dask(x, rng, "small"), 2, backend="reference")
    seen.clear()
    y.compute(scheduler="sync")
    assert seen and set(seen) == {"reference"}


def test_threaded_scheduler_and_numpy_weights_from_dask():
    rng = np.random.default_rng(11)
    x = rand(rng, (4, 3, 20, 20), np.float32)
    w = rand(rng, (5, 3, 3, 3), np.float32)
    y = fc.conv2d(as_dask(x, rng), da.from_array(w), padding=1)  # a dask weight: computed now
    np.testing.assert_allclose(y.compute(scheduler="threads"), fc.conv2d(x, w, padding=1), rtol=1e-5, atol=1e-5)


def test_import_fastconv_does_not_import_dask():
    import subprocess
    import sys

    code = ("import sys, numpy as np, fastconv, fastconv.grad\n"
            "fastconv.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)))\n"
            "assert not any(m == 'dask' or m.startswith('dask.') for m in sys.modules), 'dask'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("backend", ["auto", "numba"])
def test_fast_backends_on_random_chunks(backend):
    if fc.available_backends().get(backend if backend != "auto" else "c", "available") != "available":
        pytest.skip(f"{backend} unavailable")
    rng = np.random.default_rng(21)
    for _ in range(3):
        x, w, b, kw = conv_case(rng, 2)
        kw.pop("padding_mode", None)
        want = valid(fc.conv2d, x, w, b, backend=backend, **kw)
        if want is not None:
            check(fc.conv2d(as_dask(x, rng), w, b, backend=backend, **kw), want)
        xp, pkw = pool_case(rng, 2, "max")
        want = valid(fc.max_pool2d, xp, backend=backend, **pkw)
        if want is not None:
            check(fc.max_pool2d(as_dask(xp, rng), backend=backend, **pkw), want, exact=True)
