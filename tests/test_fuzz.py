"""Hypothesis fuzzing of every public op and every gradient, in every engine.

Strategies draw shapes (N = 0, unbatched inputs, empty spatial axes), strides, paddings
(ints, tuples, lists, 'same', 'valid', every padding mode), dilations, groups, ceil_mode,
count_include_pad, divisor_override, output sizes, conv2d variants, dtypes (float16 / 32 /
64, int32, int64, uint8, bool, mixed between arguments) and memory layouts (contiguous,
strided, negative strides, Fortran order, zero-stride broadcast views, unaligned buffers,
non-native byte order).
Each example runs on one engine and is compared with the reference engine and with torch
(float64) where torch is installed. A configuration torch rejects must raise ValueError or
TypeError in every engine; the ``invalid`` tests break one argument of a valid call and
expect ValueError or TypeError naming that argument. Any other exception fails.

Examples per op x engine: FASTCONV_FUZZ_EXAMPLES (default 50; the CUDA engine, which runs in
Numba's simulator without a GPU, takes at most 2 by default and 20 otherwise, on tiny
shapes). With the CI environment variable set the examples are derandomized (the same every
run). Failures found here and shrunk are kept as regular tests at the end of the file.

    FASTCONV_FUZZ_EXAMPLES=10000 python -m pytest tests/test_fuzz.py
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import pytest
from _cases import available_engines, fits, is_simulated, rel_err, torch, torch_conv, variants

import fastconv as fc
import fastconv.ops.grad as G
from fastconv.backends import _registry

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

if torch is not None:
    import torch.nn.functional as F

ENGINES = available_engines()
EXAMPLES = int(os.environ.get("FASTCONV_FUZZ_EXAMPLES", "0") or 0)
CI = bool(os.environ.get("CI"))


@pytest.fixture(autouse=True, scope="module")
def torch_one_thread():
    """torch's thread pool costs more than it gains on these tiny oracles."""
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def n_examples(engine: str) -> int:
    if is_simulated(engine):
        return min(EXAMPLES, 20) if EXAMPLES else 2
    return EXAMPLES or 50


def fuzz(engine: str):
    return settings(
        max_examples=n_examples(engine),
        deadline=None,
        derandomize=CI,
        database=None,  # no .hypothesis/ folder in the tree; shrunk failures become tests
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )


# --------------------------------------------------------------------------- arrays

FLOATS = (np.float32, np.float64, np.float16)
DTYPES = FLOATS * 3 + (np.int32, np.int64, np.uint8, np.bool_)
LAYOUTS = (
    "contiguous",
    "contiguous",
    "strided",
    "reversed",
    "fortran",
    "broadcast",
    "unaligned",
    "byteswapped",
)


def make_array(rng, shape, dtype, layout):
    """Random values of ``dtype`` (small integers for integer and bool dtypes) in ``layout``."""
    dtype = np.dtype(dtype)
    bshape = shape
    if layout == "broadcast" and len(shape):  # one axis of length 1, broadcast (stride 0)
        ax = int(rng.integers(0, len(shape)))
        bshape = shape[:ax] + (1,) + shape[ax + 1 :]
    if dtype.kind == "f":
        a = rng.standard_normal(bshape).astype(dtype)
    elif dtype.kind == "b":
        a = rng.random(bshape) < 0.5
    else:
        lo = 0 if dtype.kind == "u" else -3
        a = rng.integers(lo, 4, bshape).astype(dtype)
    if layout == "broadcast":
        return np.broadcast_to(a, shape)
    if not a.ndim:
        return a
    if layout == "strided":
        big = np.zeros(shape[:-1] + (2 * shape[-1],), dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "reversed":  # every axis reversed: negative strides, same values
        rev = tuple(slice(None, None, -1) for _ in shape)
        return np.ascontiguousarray(a[rev])[rev]
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "byteswapped":  # non-native byte order, same values
        return a.astype(a.dtype.newbyteorder("S"))
    if layout == "unaligned" and dtype.itemsize > 1:
        buf = np.zeros(a.nbytes + 1, np.uint8)
        u = buf[1 : 1 + a.nbytes].view(dtype).reshape(shape)
        u[...] = a
        assert a.size == 0 or not u.flags.aligned
        return u
    return a


@st.composite
def arrays(draw, shape, dtype):
    seed = draw(st.integers(0, 2**32 - 1))
    layout = draw(st.sampled_from(LAYOUTS))
    return make_array(np.random.default_rng(seed), tuple(shape), dtype, layout)


@st.composite
def dtypes(draw, n):
    """n dtypes, usually all the same."""
    first = draw(st.sampled_from(DTYPES))
    return [first if draw(st.integers(0, 4)) else draw(st.sampled_from(DTYPES)) for _ in range(n)]


def int_or_tuple(nd, lo, hi):
    one = st.integers(lo, hi)
    return st.one_of(one, st.tuples(*[one] * nd), st.lists(one, min_size=nd, max_size=nd))


def spatial(nd, engine, lo=1):
    hi = 5 if is_simulated(engine) else 9
    return st.tuples(*[st.integers(lo, hi)] * nd)


def batch(x_shape, unbatched):
    return x_shape[1:] if unbatched else x_shape


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    """A call ``fn(*args, **kwargs, backend=...)`` and torch's float64 version of it."""

    fn: Callable
    args: Tuple
    kwargs: Dict[str, Any] = field(default_factory=dict)
    oracle: Optional[Callable] = None
    arrays: Tuple = ()

    def run(self, engine):
        return self.fn(*self.args, **self.kwargs, backend=engine)

    def __repr__(self):  # what hypothesis prints for a failing example
        def show(v):
            if isinstance(v, np.ndarray):
                return f"array{v.shape}:{v.dtype}:strides={v.strides}"
            return repr(v)

        args = ", ".join(show(a) for a in self.args)
        kw = ", ".join(f"{k}={show(v)}" for k, v in self.kwargs.items())
        return f"{self.fn.__module__}.{self.fn.__name__}({args}{', ' if kw else ''}{kw})"


def T(a):
    return None if a is None else torch.from_numpy(np.array(a, dtype=np.float64))


def Tg(a):
    """A float64 tensor of ``a`` that records gradients."""
    return T(a).requires_grad_(True)


def out_dtype(*arrays_):
    dt = np.result_type(*[a.dtype for a in arrays_ if a is not None])
    return np.dtype(np.float64) if dt.kind in "biu" else dt


def tol(dtype) -> float:
    return TOL[np.dtype(dtype).newbyteorder("=")]


TOL = {np.dtype(np.float16): 2e-3, np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-10}
TORCH_ERRORS = (RuntimeError, ValueError, TypeError, IndexError)


def compare(got, want, dtype, what):
    if isinstance(want, (tuple, list)):
        assert isinstance(got, tuple) and len(got) == len(want), what
        for i, (g, w) in enumerate(zip(got, want)):
            compare(g, w, dtype, f"{what}[{i}]")
        return
    if hasattr(want, "detach"):
        want = want.detach().numpy()
    assert isinstance(got, np.ndarray), (what, type(got))
    assert got.shape == want.shape, (what, got.shape, want.shape)
    if got.dtype == np.int64:  # max-pool indices
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    assert got.dtype == dtype, (what, got.dtype, dtype)
    err = rel_err(got, want)
    assert err <= tol(dtype), f"{what}: relative error {err:.3g}"


def check(engine, case: Case):
    """The engine against torch (float64) and against the reference engine; where torch
    rejects the call, every engine must raise ValueError or TypeError."""
    dtype = out_dtype(*case.arrays)
    want = None
    if torch is not None and case.oracle is not None:
        try:
            want = case.oracle()  # None: no torch comparison for this example
        except TORCH_ERRORS:
            with pytest.raises((ValueError, TypeError)):
                case.run(engine)
            return
    try:
        ref = case.run("reference")
    except (ValueError, TypeError) as exc:
        empty = any(isinstance(a, np.ndarray) and a.size == 0 for a in case.args)
        if want is not None and not empty:  # torch checks few arguments of empty inputs
            raise AssertionError(f"torch accepts the call, fastconv raises {exc!r}") from exc
        with pytest.raises(type(exc)):
            case.run(engine)
        return
    got = ref if engine == "reference" else case.run(engine)
    if engine != "reference":
        compare(got, ref, dtype, "engine vs reference")
    if want is not None:
        compare(got, want, dtype, "engine vs torch")


# --- convolutions


@st.composite
def conv_parts(draw, nd, engine, modes=True):
    """(x, w, b, stride, padding, dilation, groups, padding_mode) of a convolution."""
    G_ = draw(st.sampled_from([1, 1, 1, 2, 3]))
    Cg, OCg = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    k = draw(st.tuples(*[st.integers(1, 4)] * nd))
    stride = draw(int_or_tuple(nd, 1, 3))
    dilation = draw(int_or_tuple(nd, 1, 3))
    padding = draw(
        st.one_of(
            st.integers(0, 3),
            st.tuples(*[st.integers(0, 3)] * nd),
            st.sampled_from(["same", "valid"]),
        )
    )
    sp = draw(spatial(nd, engine, lo=0 if draw(st.integers(0, 20)) == 0 else 1))
    N = draw(st.integers(0, 2))
    x_shape = batch((N, G_ * Cg) + sp, draw(st.integers(0, 4)) == 0)
    dts = draw(dtypes(3))
    x = draw(arrays(x_shape, dts[0]))
    w = draw(arrays((G_ * OCg, Cg) + k, dts[1]))
    b = draw(arrays((G_ * OCg,), dts[2])) if draw(st.booleans()) else None
    mode = (
        draw(st.sampled_from(["zeros"] * 4 + ["reflect", "replicate", "circular"]))
        if modes
        else "zeros"
    )
    return x, w, b, stride, padding, dilation, G_, mode


@st.composite
def conv_cases(draw, nd, engine):
    x, w, b, stride, padding, dilation, groups, mode = draw(conv_parts(nd, engine))
    variant = draw(st.sampled_from(
        [v for v in variants(engine) if fits(engine, v, w.shape, stride, dilation, nd)]
    ))
    fn = fc.conv2d if nd == 2 else fc.conv1d
    kwargs = {"padding_mode": mode}
    if variant is not None:
        kwargs["variant"] = variant
    return Case(
        fn,
        (x, w, b, stride, padding, dilation, groups),
        kwargs,
        lambda: torch_conv(nd, x, w, b, _tup(stride), _tup(padding), _tup(dilation), groups, mode),
        (x, w, b),
    )


def _tup(v):
    return tuple(v) if isinstance(v, list) else v


@st.composite
def conv_transpose_parts(draw, nd, engine):
    G_ = draw(st.sampled_from([1, 1, 2, 3]))
    Cg, OCg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k = draw(st.tuples(*[st.integers(1, 4)] * nd))
    stride = draw(st.tuples(*[st.integers(1, 3)] * nd))
    dilation = draw(st.tuples(*[st.integers(1, 3)] * nd))
    padding = draw(st.one_of(st.integers(0, 2), st.tuples(*[st.integers(0, 2)] * nd)))
    out_pad = tuple(draw(st.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    sp = draw(spatial(nd, engine))
    N = draw(st.integers(0, 2))
    x_shape = batch((N, G_ * Cg) + sp, draw(st.integers(0, 4)) == 0)
    dts = draw(dtypes(3))
    x = draw(arrays(x_shape, dts[0]))
    w = draw(arrays((G_ * Cg, OCg) + k, dts[1]))
    b = draw(arrays((G_ * OCg,), dts[2])) if draw(st.booleans()) else None
    if draw(st.booleans()):  # ints for the scalars sometimes
        stride, dilation, out_pad = stride[0], dilation[0], min(out_pad)
    return x, w, b, stride, padding, out_pad, G_, dilation


@st.composite
def conv_transpose_cases(draw, nd, engine):
    x, w, b, s, p, op, g, d = draw(conv_transpose_parts(nd, engine))
    fn = fc.conv_transpose2d if nd == 2 else fc.conv_transpose1d
    tfn = "conv_transpose2d" if nd == 2 else "conv_transpose1d"
    return Case(
        fn,
        (x, w, b, s, p, op, g, d),
        {},
        lambda: getattr(F, tfn)(T(x), T(w), T(b), s, p, op, g, d),
        (x, w, b),
    )


@st.composite
def depthwise_parts(draw, engine):
    C, m = draw(st.integers(1, 4)), draw(st.integers(1, 2))
    k = draw(st.tuples(st.integers(1, 4), st.integers(1, 4)))
    stride = draw(int_or_tuple(2, 1, 3))
    dilation = draw(int_or_tuple(2, 1, 2))
    padding = draw(
        st.one_of(
            st.integers(0, 2),
            st.tuples(st.integers(0, 2), st.integers(0, 2)),
            st.sampled_from(["same", "valid"]),
        )
    )
    sp = draw(spatial(2, engine))
    x_shape = batch((draw(st.integers(0, 2)), C) + sp, draw(st.integers(0, 4)) == 0)
    dts = draw(dtypes(3))
    x = draw(arrays(x_shape, dts[0]))
    w = draw(arrays((C * m, 1) + k, dts[1]))
    b = draw(arrays((C * m,), dts[2])) if draw(st.booleans()) else None
    return x, w, b, stride, padding, dilation, C


@st.composite
def depthwise_cases(draw, engine):
    x, w, b, s, p, d, C = draw(depthwise_parts(engine))
    return Case(
        fc.depthwise_conv2d,
        (x, w, b, s, p, d),
        {},
        lambda: F.conv2d(T(x), T(w), T(b), _tup(s), _tup(p), _tup(d), C),
        (x, w, b),
    )


@st.composite
def separable_cases(draw, engine):
    x, wd, bd, s, p, d, C = draw(depthwise_parts(engine))
    OC = draw(st.integers(1, 4))
    wp = draw(arrays((OC, wd.shape[0], 1, 1), draw(st.sampled_from(DTYPES))))
    bp = draw(arrays((OC,), wp.dtype)) if draw(st.booleans()) else None
    return Case(
        fc.separable_conv2d,
        (x, wd, wp, bd, bp, s, p, d),
        {},
        lambda: F.conv2d(F.conv2d(T(x), T(wd), T(bd), _tup(s), _tup(p), _tup(d), C), T(wp), T(bp)),
        (x, wd, wp, bd, bp),
    )


# --- pooling


@st.composite
def pool_input(draw, nd, engine):
    sp = draw(spatial(nd, engine))
    shape = batch(
        (draw(st.integers(0, 2)), draw(st.integers(1, 3))) + sp, draw(st.integers(0, 4)) == 0
    )
    return draw(arrays(shape, draw(st.sampled_from(DTYPES))))


@st.composite
def max_pool_parts(draw, nd, engine):
    x = draw(pool_input(nd, engine))
    k = draw(int_or_tuple(nd, 1, 4))
    stride = draw(st.one_of(st.none(), int_or_tuple(nd, 1, 3)))
    padding = draw(int_or_tuple(nd, 0, 2))
    dilation = draw(int_or_tuple(nd, 1, 3))
    return x, k, stride, padding, dilation, draw(st.booleans())


@st.composite
def max_pool_cases(draw, nd, engine):
    x, k, s, p, d, ceil = draw(max_pool_parts(nd, engine))
    ri = draw(st.booleans())
    fn = fc.max_pool2d if nd == 2 else fc.max_pool1d
    tfn = getattr(F, "max_pool2d" if nd == 2 else "max_pool1d") if torch is not None else None
    return Case(
        fn,
        (x, k, s, p, d, ceil, ri),
        {},
        lambda: tfn(T(x), _tup(k), _tup(s), _tup(p), _tup(d), ceil, ri),
        (x,),
    )


@st.composite
def avg_pool_parts(draw, nd, engine):
    x = draw(pool_input(nd, engine))
    k = draw(int_or_tuple(nd, 1, 4))
    stride = draw(st.one_of(st.none(), int_or_tuple(nd, 1, 3)))
    padding = draw(int_or_tuple(nd, 0, 2))
    extra = (draw(st.booleans()), draw(st.booleans()))
    if nd == 2:
        extra += (draw(st.sampled_from([None, None, None, -3, 1, 2, 5])),)
    return (x, k, stride, padding) + extra


@st.composite
def avg_pool_cases(draw, nd, engine):
    parts = draw(avg_pool_parts(nd, engine))
    x = parts[0]
    fn = fc.avg_pool2d if nd == 2 else fc.avg_pool1d
    tfn = getattr(F, "avg_pool2d" if nd == 2 else "avg_pool1d") if torch is not None else None
    return Case(fn, parts, {}, lambda: tfn(T(x), *map(_tup, parts[1:])), (x,))


@st.composite
def adaptive_size(draw, nd, x):
    sizes = [st.integers(1, max(x.shape[-i], 1) + 2) for i in range(nd, 0, -1)]
    if nd == 1:
        return draw(st.one_of(sizes[0], st.tuples(sizes[0])))
    return draw(st.one_of(sizes[0], st.tuples(*[st.one_of(s, st.none()) for s in sizes])))


@st.composite
def adaptive_cases(draw, kind, nd, engine):
    x = draw(pool_input(nd, engine))
    out = draw(adaptive_size(nd, x))
    name = f"adaptive_{kind}_pool{nd}d"
    args = (x, out) + ((draw(st.booleans()),) if kind == "max" else ())
    tfn = getattr(F, name) if torch is not None else None
    return Case(getattr(fc, name), args, {}, lambda: tfn(T(x), *args[1:]), (x,))


# --- gradients: torch autograd (float64) is the oracle


def _grad_of(forward, inputs, gy):
    """torch.autograd.grad of forward(*inputs) with upstream gradient gy; None for each input
    where torch's backward itself fails on a forward it accepted (torch 2.13's transposed
    conv backward raised "grad_weight needs to be contiguous" on some size-1 windows): no
    torch comparison for that example, rather than a rejection of its arguments."""
    leaves = [Tg(a) for a in inputs]
    y = forward(*leaves)  # an error here: torch rejects the call
    if isinstance(y, tuple):
        y = y[0]
    try:
        return torch.autograd.grad(y, leaves, T(gy), allow_unused=True)
    except RuntimeError:
        return (None,) * len(leaves)


def _gy(draw, forward, inputs, dtype):
    """An upstream gradient shaped like forward's output (torch computes the shape); None
    when torch rejects the configuration."""
    if torch is None:
        return None
    try:
        with torch.no_grad():
            y = forward(*[T(a) for a in inputs])
    except TORCH_ERRORS:
        return None
    y = y[0] if isinstance(y, tuple) else y
    return draw(arrays(tuple(y.shape), dtype))


@st.composite
def conv_grad_cases(draw, nd, engine, which):
    x, w, b, stride, padding, dilation, groups, _ = draw(conv_parts(nd, engine, modes=False))
    s, p, d = _tup(stride), _tup(padding), _tup(dilation)
    tfn = (F.conv2d if nd == 2 else F.conv1d) if torch is not None else None
    fwd = lambda xx, ww: tfn(xx, ww, None, s, p, d, groups)  # noqa: E731
    gy = _gy(draw, fwd, (x, w), draw(st.sampled_from(DTYPES)))
    if gy is None:
        gy = draw(arrays((1, 1) + (1,) * nd, np.float64))  # torch rejects: so must fastconv
    name = f"conv{nd}d_{which}"
    if which == "input":
        args = (x.shape, w, gy, stride, padding, dilation, groups)
        return Case(getattr(G, name), args, {}, lambda: _grad_of(fwd, (x, w), gy)[0], (w, gy))
    if which == "weight":
        args = (x, w.shape, gy, stride, padding, dilation, groups)
        return Case(getattr(G, name), args, {}, lambda: _grad_of(fwd, (x, w), gy)[1], (x, gy))
    axes = (0,) + tuple(range(2, gy.ndim)) if gy.ndim == nd + 2 else tuple(range(1, gy.ndim))
    return Case(getattr(G, name), (gy,), {}, lambda: T(gy).sum(dim=axes), (gy,))


@st.composite
def conv_transpose_grad_cases(draw, nd, engine, which):
    x, w, _, s, p, op, g, d = draw(conv_transpose_parts(nd, engine))
    tfn = getattr(F, f"conv_transpose{nd}d") if torch is not None else None
    fwd = lambda xx, ww: tfn(xx, ww, None, s, p, op, g, d)  # noqa: E731
    gy = _gy(draw, fwd, (x, w), draw(st.sampled_from(DTYPES)))
    if gy is None:
        gy = draw(arrays((1, 1) + (1,) * nd, np.float64))
    name = f"conv_transpose{nd}d_{which}"
    if which == "input":
        args = (x.shape, w, gy, s, p, op, g, d)
        return Case(getattr(G, name), args, {}, lambda: _grad_of(fwd, (x, w), gy)[0], (w, gy))
    args = (x, w.shape, gy, s, p, op, g, d)
    return Case(getattr(G, name), args, {}, lambda: _grad_of(fwd, (x, w), gy)[1], (x, gy))


@st.composite
def depthwise_grad_cases(draw, engine, which):
    x, w, _, s, p, d, C = draw(depthwise_parts(engine))
    fwd = lambda xx, ww: F.conv2d(xx, ww, None, _tup(s), _tup(p), _tup(d), C)  # noqa: E731
    gy = _gy(draw, fwd, (x, w), draw(st.sampled_from(DTYPES)))
    if gy is None:
        gy = draw(arrays((1, 1, 1, 1), np.float64))
    if which == "input":
        return Case(
            G.depthwise_conv2d_input,
            (x.shape, w, gy, s, p, d),
            {},
            lambda: _grad_of(fwd, (x, w), gy)[0],
            (w, gy),
        )
    return Case(
        G.depthwise_conv2d_weight,
        (x, w.shape, gy, s, p, d),
        {},
        lambda: _grad_of(fwd, (x, w), gy)[1],
        (x, gy),
    )


@st.composite
def separable_grad_cases(draw, engine):
    x, wd, bd, s, p, d, C = draw(depthwise_parts(engine))
    OC = draw(st.integers(1, 3))
    wp = draw(arrays((OC, wd.shape[0], 1, 1), draw(st.sampled_from(FLOATS))))
    bd0 = bd if bd is not None else np.zeros(wd.shape[0])

    def fwd(xx, wwd, wwp, bbd):
        return F.conv2d(F.conv2d(xx, wwd, bbd, _tup(s), _tup(p), _tup(d), C), wwp)

    gy = _gy(draw, fwd, (x, wd, wp, bd0), draw(st.sampled_from(FLOATS)))
    if gy is None:
        gy = draw(arrays((1, 1, 1, 1), np.float64))

    def oracle():
        gx, gwd, gwp, gbd = _grad_of(fwd, (x, wd, wp, bd0), gy)
        if gx is None and gwd is None:  # torch's backward failed: no comparison
            return None
        axes = (0, 2, 3) if gy.ndim == 4 else (1, 2)
        return (gx, gwd, gwp, gbd, T(gy).sum(dim=axes))

    return Case(
        G.separable_conv2d_backward, (x, wd, wp, gy, bd, s, p, d), {}, oracle, (x, wd, wp, gy, bd)
    )


def _max_pool_wholly_padded(y) -> bool:
    """A max-pool window lying wholly in the padding (-inf out of finite inputs): torch's
    gradient for it differs from fastconv's on purpose (README)."""
    return bool(torch.isneginf(y).any())


@st.composite
def max_pool_grad_cases(draw, nd, engine):
    x, k, s, p, d, ceil = draw(max_pool_parts(nd, engine))
    tfn = getattr(F, f"max_pool{nd}d") if torch is not None else None
    fwd = lambda xx: tfn(xx, _tup(k), _tup(s), _tup(p), _tup(d), ceil)  # noqa: E731
    gy = _gy(draw, fwd, (x,), draw(st.sampled_from(DTYPES)))
    if gy is None:
        gy = draw(arrays((1, 1) + (1,) * nd, np.float64))

    def oracle():
        with torch.no_grad():
            if _max_pool_wholly_padded(fwd(T(x))):
                return None
        return _grad_of(fwd, (x,), gy)[0]

    return Case(getattr(G, f"max_pool{nd}d_input"), (x, gy, k, s, p, d, ceil), {}, oracle, (x, gy))


@st.composite
def avg_pool_grad_cases(draw, nd, engine):
    parts = draw(avg_pool_parts(nd, engine))
    x = parts[0]
    tfn = getattr(F, f"avg_pool{nd}d") if torch is not None else None
    fwd = lambda xx: tfn(xx, *map(_tup, parts[1:]))  # noqa: E731
    gy = _gy(draw, fwd, (x,), draw(st.sampled_from(DTYPES)))
    if gy is None:
        gy = draw(arrays((1, 1) + (1,) * nd, np.float64))
    return Case(
        getattr(G, f"avg_pool{nd}d_input"),
        (x.shape, gy) + parts[1:],
        {},
        lambda: _grad_of(fwd, (x,), gy)[0],
        (gy,),
    )


@st.composite
def adaptive_grad_cases(draw, kind, nd, engine):
    x = draw(pool_input(nd, engine))
    out = draw(adaptive_size(nd, x))
    tfn = getattr(F, f"adaptive_{kind}_pool{nd}d") if torch is not None else None
    fwd = lambda xx: tfn(xx, out)  # noqa: E731
    gy = _gy(draw, fwd, (x,), draw(st.sampled_from(DTYPES)))
    if gy is None:
        gy = draw(arrays((1, 1) + (1,) * nd, np.float64))
    fn = getattr(G, f"adaptive_{kind}_pool{nd}d_input")
    first = x.shape if kind == "avg" else x
    return Case(
        fn, (first, gy), {}, lambda: _grad_of(fwd, (x,), gy)[0], (gy,) if kind == "avg" else (x, gy)
    )


# --------------------------------------------------------------------------- the tests

#: name -> strategy factory taking the engine
STRATEGIES: Dict[str, Callable[[str], Any]] = {
    "conv1d": lambda e: conv_cases(1, e),
    "conv2d": lambda e: conv_cases(2, e),
    "conv_transpose1d": lambda e: conv_transpose_cases(1, e),
    "conv_transpose2d": lambda e: conv_transpose_cases(2, e),
    "depthwise_conv2d": depthwise_cases,
    "separable_conv2d": separable_cases,
    "max_pool1d": lambda e: max_pool_cases(1, e),
    "max_pool2d": lambda e: max_pool_cases(2, e),
    "avg_pool1d": lambda e: avg_pool_cases(1, e),
    "avg_pool2d": lambda e: avg_pool_cases(2, e),
    "adaptive_avg_pool1d": lambda e: adaptive_cases("avg", 1, e),
    "adaptive_avg_pool2d": lambda e: adaptive_cases("avg", 2, e),
    "adaptive_max_pool1d": lambda e: adaptive_cases("max", 1, e),
    "adaptive_max_pool2d": lambda e: adaptive_cases("max", 2, e),
    "grad_conv1d_input": lambda e: conv_grad_cases(1, e, "input"),
    "grad_conv2d_input": lambda e: conv_grad_cases(2, e, "input"),
    "grad_conv1d_weight": lambda e: conv_grad_cases(1, e, "weight"),
    "grad_conv2d_weight": lambda e: conv_grad_cases(2, e, "weight"),
    "grad_conv1d_bias": lambda e: conv_grad_cases(1, e, "bias"),
    "grad_conv2d_bias": lambda e: conv_grad_cases(2, e, "bias"),
    "grad_conv_transpose1d_input": lambda e: conv_transpose_grad_cases(1, e, "input"),
    "grad_conv_transpose2d_input": lambda e: conv_transpose_grad_cases(2, e, "input"),
    "grad_conv_transpose1d_weight": lambda e: conv_transpose_grad_cases(1, e, "weight"),
    "grad_conv_transpose2d_weight": lambda e: conv_transpose_grad_cases(2, e, "weight"),
    "grad_depthwise_conv2d_input": lambda e: depthwise_grad_cases(e, "input"),
    "grad_depthwise_conv2d_weight": lambda e: depthwise_grad_cases(e, "weight"),
    "grad_separable_conv2d_backward": separable_grad_cases,
    "grad_max_pool1d_input": lambda e: max_pool_grad_cases(1, e),
    "grad_max_pool2d_input": lambda e: max_pool_grad_cases(2, e),
    "grad_avg_pool1d_input": lambda e: avg_pool_grad_cases(1, e),
    "grad_avg_pool2d_input": lambda e: avg_pool_grad_cases(2, e),
    "grad_adaptive_avg_pool1d_input": lambda e: adaptive_grad_cases("avg", 1, e),
    "grad_adaptive_avg_pool2d_input": lambda e: adaptive_grad_cases("avg", 2, e),
    "grad_adaptive_max_pool1d_input": lambda e: adaptive_grad_cases("max", 1, e),
    "grad_adaptive_max_pool2d_input": lambda e: adaptive_grad_cases("max", 2, e),
}


def _make_test(name, engine):
    @fuzz(engine)
    @given(case=STRATEGIES[name](engine))
    def test(case):
        check(engine, case)

    test.__name__ = f"test_{name}_{engine}"
    return test


for _name in STRATEGIES:
    for _engine in ENGINES:
        globals()[f"test_{_name}_{_engine}"] = _make_test(_name, _engine)


# --------------------------------------------------------------------------- invalid calls

# (argument, bad values): each replaces one argument of a valid call; the error must name it
BAD_COMMON = {
    "stride": [0, -1, 1.5, "2", True, (1, 1, 1)],
    "dilation": [0, -2, 2.5, (1, 0)],
    "padding": [-1, 1.0, "full", (1, -1, 0)],
}
BAD = {
    "conv2d": dict(
        BAD_COMMON, groups=[0, -1, 1.5, 4], padding_mode=["mirror", 3], variant=["v9", 3]
    ),
    "conv_transpose2d": dict(BAD_COMMON, output_padding=[-1, 5, 1.5], groups=[0, 3]),
    "depthwise_conv2d": BAD_COMMON,
    "max_pool2d": {
        "kernel_size": [0, -1, 1.5, (2, 2, 2)],
        "stride": [0, -1, 1.5, "2"],
        "padding": [-1, 9, 1.5],
        "dilation": [0, 1.5],
        "ceil_mode": [1, "yes", None],
        "return_indices": [1, "yes"],
    },
    "avg_pool2d": {
        "kernel_size": [0, -1, 1.5],
        "stride": [0, -1, 1.5],
        "padding": [-1, 9, 1.5],
        "ceil_mode": [1, "yes"],
        "count_include_pad": [1, "yes"],
        "divisor_override": [0, 1.5, "2"],
    },
    "adaptive_avg_pool2d": {"output_size": [-1, 1.5, (1, 2, 3), "2"]},  # 0 is valid (empty)
    "adaptive_max_pool2d": {"output_size": [-1, 1.5, (1, 2, 3)], "return_indices": [1, "yes"]},
}
VALID = {
    "conv2d": dict(
        input=(2, 4, 7, 7), weight=(6, 2, 3, 3), stride=1, padding=1, dilation=1, groups=2
    ),
    "conv_transpose2d": dict(
        input=(2, 4, 5, 5), weight=(4, 3, 3, 3), stride=2, padding=1, output_padding=1, groups=2
    ),
    "depthwise_conv2d": dict(
        input=(2, 3, 7, 7), weight=(6, 1, 3, 3), stride=1, padding=1, dilation=1
    ),
    "max_pool2d": dict(input=(2, 3, 7, 7), kernel_size=3, stride=2, padding=1, dilation=1),
    "avg_pool2d": dict(input=(2, 3, 7, 7), kernel_size=3, stride=2, padding=1),
    "adaptive_avg_pool2d": dict(input=(2, 3, 7, 7), output_size=3),
    "adaptive_max_pool2d": dict(input=(2, 3, 7, 7), output_size=3),
}
# arrays: (argument, bad arrays) with the word the error names
BAD_ARRAYS = [
    ("input", lambda a: a.astype(np.complex64)),
    ("input", lambda a: a[0, 0]),
    ("input", lambda a: np.array(["a"] * a.size).reshape(a.shape)),
]


@st.composite
def invalid_calls(draw, op, engine):
    """(call, the argument's name): a valid call of ``op`` with one argument broken. (An
    engine without conv2d variants ignores ``variant``, as the kernel contract says.)"""
    spec = dict(VALID[op])
    bad = {k: v for k, v in BAD[op].items() if k != "variant" or variants(engine)[1:]}
    arrays_ = {
        k: np.random.default_rng(0).standard_normal(spec.pop(k))
        for k in ("input", "weight")
        if k in spec
    }
    if draw(st.integers(0, 5)) == 0:
        name, bad = draw(st.sampled_from(BAD_ARRAYS))
        arrays_[name] = bad(arrays_[name])
    else:
        name = draw(st.sampled_from(sorted(bad)))
        spec[name] = draw(st.sampled_from(bad[name]))
    return getattr(fc, op), {**arrays_, **spec}, name


def _make_invalid_test(op, engine):
    @fuzz(engine)
    @given(bad=invalid_calls(op, engine))
    def test(bad):
        fn, kwargs, name = bad
        with pytest.raises((ValueError, TypeError)) as info:
            fn(**kwargs, backend=engine)
        assert name in str(info.value), (name, str(info.value))

    test.__name__ = f"test_invalid_{op}_{engine}"
    return test


for _op in VALID:
    for _engine in ENGINES:
        globals()[f"test_invalid_{_op}_{_engine}"] = _make_invalid_test(_op, _engine)


# --------------------------------------------------------------------------- shrunk failures
# Examples the fuzzer found, shrunk, kept as plain tests.


@pytest.mark.parametrize("engine", [e for e in ENGINES if e != "cuda"])
def test_unaligned_inputs_reach_the_kernels_aligned(engine, monkeypatch):
    """An input in an unaligned buffer (the fuzzer's "unaligned" layout) used to reach the
    C kernels as it was: a float pointer at an odd address, undefined behaviour in C that
    x86 happens to tolerate; numba compiled every kernel a second time for it. Both now get
    an aligned copy."""
    module = _registry.backend_module(engine)
    seen = []
    kernel = module.conv2d

    def spy(x, w, *args, **kwargs):
        seen.append(x.flags.aligned and w.flags.aligned)
        return kernel(x, w, *args, **kwargs)

    monkeypatch.setattr(module, "conv2d", spy)
    x = make_array(np.random.default_rng(0), (2, 3, 6, 6), np.float32, "unaligned")
    w = make_array(np.random.default_rng(1), (4, 3, 3, 3), np.float32, "unaligned")
    got = fc.conv2d(x, w, padding=1, backend=engine)
    assert seen == [True]
    want = fc.conv2d(np.array(x), np.array(w), padding=1, backend="reference")
    assert rel_err(got, want) <= 1e-5
