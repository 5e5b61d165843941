"""The cuda backend: every kernel against the reference backend, the device-array hooks, and
the backend's availability report.

Without a GPU everything runs in numba's CUDA simulator (tests/conftest.py turns it on
before numba.cuda is imported), so the shapes are tiny. Tests marked ``gpu`` need a real
GPU and are skipped otherwise. ``test_kernels_lower_for_a_real_gpu`` type-checks and
lowers every launch for the real CUDA target (no GPU needed), since the simulator runs
kernels as plain Python and would not catch code that numba.cuda cannot compile.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

if not os.path.exists("/dev/nvidia0"):  # as tests/conftest.py, for runs of this file alone
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastconv  # noqa: E402
from fastconv import _shapes  # noqa: E402
from fastconv.backends import numba_cuda as nc  # noqa: E402
from fastconv.backends import reference as ref  # noqa: E402

if not nc.AVAILABLE_REASON.startswith("available"):
    pytest.skip(f"cuda backend: {nc.AVAILABLE_REASON}", allow_module_level=True)

from numba import cuda  # noqa: E402

SIM = nc.AVAILABLE_REASON == "available (CUDA simulator)"
DTYPES = (np.float32, np.float64)
gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(SIM, reason="needs a real CUDA GPU")


@pytest.fixture(autouse=True)
def _poison(monkeypatch):
    monkeypatch.setenv("FASTCONV_POISON", "1")


def tol(dtype):
    return dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)


def is_device(a) -> bool:
    return not isinstance(a, np.ndarray) and getattr(a, "__cuda_ndarray__", False)


def run_both(op, ins, outs, *params, **kw):
    """Run kernel ``op`` of the cuda backend (inputs copied to the device, outputs poisoned)
    and of the reference backend on the same data; return both backends' outputs on the host.
    ``ins``: input arrays or None; ``outs``: (shape, dtype) of each output, or None."""
    dev_in = [None if a is None else nc.prepare(a, a.dtype) for a in ins]
    dev_out = [None if o is None else nc.empty(*o) for o in outs]
    getattr(nc, op)(*dev_in, *dev_out, *params, **kw)
    ref_out = [
        None if o is None else np.full(o[0], np.nan if o[1] != np.int64 else -7, o[1]) for o in outs
    ]
    getattr(ref, op)(*ins, *ref_out, *params, **kw)
    got = [None if d is None else nc.finish(d, d.dtype, False) for d in dev_out]
    return got, ref_out


def check(got, want, dtype):
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        elif w.dtype == np.int64:
            np.testing.assert_array_equal(g, w)
        else:
            assert g.dtype == w.dtype
            np.testing.assert_allclose(g, w, **tol(dtype))


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------- convolutions


def conv_case(rng, dtype, max_groups=3):
    """A tiny random conv2d: groups, stride, dilation, top/left padding, and a bottom/right
    padding that may differ (as padding='same' makes it)."""
    while True:
        G = int(rng.integers(1, max_groups + 1))
        Cg, OCg = int(rng.integers(1, 4)), int(rng.integers(1, 5))
        N = int(rng.integers(1, 3))
        H, W = (int(v) for v in rng.integers(2, 8, 2))
        KH, KW = (int(v) for v in rng.integers(1, 4, 2))
        sh, sw, dh, dw = (int(v) for v in rng.integers(1, 3, 4))
        ph, pw, pb, pr = (int(v) for v in rng.integers(0, 3, 4))
        OH = (H + ph + pb - dh * (KH - 1) - 1) // sh + 1
        OW = (W + pw + pr - dw * (KW - 1) - 1) // sw + 1
        if OH >= 1 and OW >= 1 and N * G * OCg * OH * OW <= 250:
            break
    x = randn(rng, (N, G * Cg, H, W), dtype)
    w = randn(rng, (G * OCg, Cg, KH, KW), dtype)
    b = randn(rng, (G * OCg,), dtype) if rng.random() < 0.7 else None
    return x, w, b, (N, G * OCg, OH, OW), (sh, sw, ph, pw, dh, dw, G)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", nc.CONV2D_VARIANTS)
def test_conv2d(variant, dtype):
    rng = np.random.default_rng(10 + nc.CONV2D_VARIANTS.index(variant))
    for _ in range(3 if variant == "v2_tiled" else 5):
        x, w, b, yshape, params = conv_case(rng, dtype)
        got, want = run_both("conv2d", [x, w, b], [(yshape, dtype)], *params, variant=variant)
        check(got, want, dtype)


def test_conv2d_tiled_spans_several_tiles():
    # more output channels than one row tile and more pixels than one column tile, with a
    # reduction longer than one K step: every edge of the tiling is crossed
    from fastconv.backends.numba_cuda import conv_kernels as CK

    rng = np.random.default_rng(3)
    OC, C, KH, KW = CK.BM + 3, 2, 2, 2
    assert C * KH * KW > CK.BK
    H = W = 1 + int(np.ceil(np.sqrt(CK.BN + 5)))
    x, w = randn(rng, (1, C, H, W), np.float32), randn(rng, (OC, C, KH, KW), np.float32)
    yshape = (1, OC, H - 1, W - 1)
    assert yshape[2] * yshape[3] > CK.BN
    got, want = run_both("conv2d", [x, w, None], [(yshape, np.float32)], 1, 1, 0, 0, 1, 1, 1)
    check(got, want, np.float32)


def test_conv2d_unknown_variant_lists_the_valid_ones():
    x = np.ones((1, 1, 3, 3))
    with pytest.raises(ValueError, match="v1_direct.*v2_tiled"):
        fastconv.conv2d(x, x, backend="cuda", variant="v9_magic")


@pytest.mark.parametrize("dtype", DTYPES)
def test_depthwise_and_separable(dtype):
    rng = np.random.default_rng(20)
    for _ in range(3):
        x, _, _, _, (sh, sw, ph, pw, dh, dw, _) = conv_case(rng, dtype, max_groups=1)
        N, C, H, W = x.shape
        m = int(rng.integers(1, 3))
        KH, KW = (int(v) for v in rng.integers(1, 4, 2))
        OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
        OW = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
        if OH < 1 or OW < 1:
            continue
        wd = randn(rng, (C * m, 1, KH, KW), dtype)
        bd = randn(rng, (C * m,), dtype) if rng.random() < 0.7 else None
        got, want = run_both(
            "depthwise_conv2d", [x, wd, bd], [((N, C * m, OH, OW), dtype)], sh, sw, ph, pw, dh, dw
        )
        check(got, want, dtype)
        OC = int(rng.integers(1, 5))
        wp = randn(rng, (OC, C * m, 1, 1), dtype)
        bp = randn(rng, (OC,), dtype) if rng.random() < 0.7 else None
        got, want = run_both(
            "separable_conv2d",
            [x, wd, bd, wp, bp],
            [((N, OC, OH, OW), dtype)],
            sh,
            sw,
            ph,
            pw,
            dh,
            dw,
        )
        check(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_transpose2d(dtype):
    rng = np.random.default_rng(30)
    done = 0
    while done < 5:
        G = int(rng.integers(1, 3))
        Cg, OCg, N = (int(v) for v in rng.integers(1, 4, 3))
        H, W = (int(v) for v in rng.integers(1, 5, 2))
        k = tuple(int(v) for v in rng.integers(1, 4, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        d = tuple(int(v) for v in rng.integers(1, 3, 2))
        p = tuple(int(v) for v in rng.integers(0, 3, 2))
        op = tuple(int(rng.integers(0, max(si, di))) for si, di in zip(s, d))
        xs, ws = (N, G * Cg, H, W), (G * Cg, OCg) + k
        try:
            g = _shapes.conv_transpose_geometry("t", xs, ws, None, s, p, op, G, d, 2)
        except ValueError:
            continue
        if g.N * g.OC * g.OH * g.OW > 300:
            continue
        x, w = randn(rng, xs, dtype), randn(rng, ws, dtype)
        b = randn(rng, (g.OC,), dtype) if rng.random() < 0.7 else None
        got, want = run_both(
            "conv_transpose2d",
            [x, w, b],
            [((g.N, g.OC, g.OH, g.OW), dtype)],
            g.sh,
            g.sw,
            g.ph,
            g.pw,
            g.dh,
            g.dw,
            G,
        )
        check(got, want, dtype)
        done += 1


# --------------------------------------------------------------------------- pooling


def pool_case(rng, dtype, dilation=True, special=False):
    """A tiny random pooling geometry (ceil_mode included) and its input; ``special`` puts
    NaN, -inf and repeated values into the input."""
    while True:
        N, C = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        H, W = (int(v) for v in rng.integers(1, 8, 2))
        k = tuple(int(v) for v in rng.integers(1, 4, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        p = tuple(int(rng.integers(0, ki // 2 + 1)) for ki in k)
        d = tuple(int(v) for v in rng.integers(1, 3, 2)) if dilation else (1, 1)
        try:
            g = _shapes.pool_geometry("p", (N, C, H, W), k, s, p, d, bool(rng.random() < 0.5), 2)
        except ValueError:
            continue
        if N * C * g.OH * g.OW <= 200:
            break
    x = randn(rng, (N, C, H, W), dtype)
    if special:
        x = np.round(x)  # ties: the first maximum must win
        flat = x.reshape(-1)
        flat[rng.random(flat.size) < 0.1] = np.nan
        flat[rng.random(flat.size) < 0.1] = -np.inf
    return x, g


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_nan_ties_and_indices(dtype):
    rng = np.random.default_rng(40)
    for i in range(6):
        x, g = pool_case(rng, dtype, special=True)
        shape = (g.N, g.C, g.OH, g.OW)
        idx = (shape, np.int64) if i % 3 else None
        got, want = run_both(
            "max_pool2d", [x], [(shape, dtype), idx], g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw
        )
        check(got, want, dtype)


def test_max_pool2d_all_minus_inf_window_points_at_its_first_position():
    x = np.full((1, 1, 3, 3), -np.inf, np.float32)
    got, want = run_both(
        "max_pool2d",
        [x],
        [((1, 1, 2, 2), np.float32), ((1, 1, 2, 2), np.int64)],
        2,
        2,
        2,
        2,
        1,
        1,
        1,
        1,
    )
    check(got, want, np.float32)
    np.testing.assert_array_equal(got[1][0, 0], [[0, 1], [3, 4]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool2d_every_divisor_rule(dtype):
    rng = np.random.default_rng(50)
    for cip, divisor in [(True, 0), (False, 0), (True, 3), (False, -2)]:
        x, g = pool_case(rng, dtype, dilation=False)
        got, want = run_both(
            "avg_pool2d",
            [x],
            [((g.N, g.C, g.OH, g.OW), dtype)],
            g.KH,
            g.KW,
            g.sh,
            g.sw,
            g.ph,
            g.pw,
            cip,
            divisor,
        )
        check(got, want, dtype)


def test_avg_pool2d_ceil_mode_window_clipped_at_the_padded_edge():
    # k = 3, s = 2, p = 1, ceil_mode: the last window is rows [3, 6). With H = 4 it is cut
    # to [3, 5) by the padded edge H + p (count_include_pad divides by 2, not 3) and to
    # [3, 4) by the input; with H = 5 the padded edge is 6 and only the input cuts it.
    for H in (4, 5):
        g = _shapes.pool_geometry("p", (1, 1, H, H), 3, 2, 1, 1, True, 2)
        x = np.arange(H * H, dtype=np.float64).reshape(1, 1, H, H)
        for cip in (True, False):
            got, want = run_both(
                "avg_pool2d", [x], [((1, 1, g.OH, g.OW), np.float64)], 3, 3, 2, 2, 1, 1, cip, 0
            )
            check(got, want, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_pools(dtype):
    rng = np.random.default_rng(60)
    for OH, OW, H, W in [(3, 2, 7, 5), (4, 5, 3, 2), (1, 1, 4, 3), (3, 3, 3, 3)]:
        x = np.round(randn(rng, (2, 2, H, W), dtype))
        x.reshape(-1)[rng.random(x.size) < 0.15] = np.nan
        shape = (2, 2, OH, OW)
        got, want = run_both("adaptive_avg_pool2d", [x], [(shape, dtype)])
        check(got, want, dtype)
        got, want = run_both("adaptive_max_pool2d", [x], [(shape, dtype), (shape, np.int64)])
        check(got, want, dtype)
        got, want = run_both("adaptive_max_pool2d", [x], [(shape, dtype), None])
        check(got, want, dtype)


# --------------------------------------------------------------------------- backward


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_backward(dtype):
    rng = np.random.default_rng(70)
    for i in range(4):
        x, g = pool_case(rng, dtype, special=i % 2 == 0)
        shape = (g.N, g.C, g.OH, g.OW)
        idx = np.empty(shape, np.int64)
        ref.max_pool2d(
            x, np.empty(shape, dtype), idx, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw
        )
        gy = randn(rng, shape, dtype)
        got, want = run_both("max_pool2d_backward", [gy, idx], [(x.shape, dtype)])
        check(got, want, dtype)
    # overlapping windows sharing one maximum: the gradients add up
    x = np.zeros((1, 1, 3, 3), dtype)
    x[0, 0, 1, 1] = 5
    idx = np.full((1, 1, 2, 2), 4, np.int64)
    got, want = run_both(
        "max_pool2d_backward", [np.ones((1, 1, 2, 2), dtype), idx], [(x.shape, dtype)]
    )
    check(got, want, dtype)
    assert got[0][0, 0, 1, 1] == 4


@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool2d_backward(dtype):
    rng = np.random.default_rng(80)
    for cip, divisor in [(True, 0), (False, 0), (False, 5)]:
        x, g = pool_case(rng, dtype, dilation=False)
        gy = randn(rng, (g.N, g.C, g.OH, g.OW), dtype)
        got, want = run_both(
            "avg_pool2d_backward",
            [gy],
            [(x.shape, dtype)],
            g.KH,
            g.KW,
            g.sh,
            g.sw,
            g.ph,
            g.pw,
            cip,
            divisor,
        )
        check(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_avg_pool2d_backward(dtype):
    rng = np.random.default_rng(90)
    for OH, OW, H, W in [(3, 2, 7, 5), (4, 5, 3, 2), (2, 2, 2, 2)]:
        gy = randn(rng, (1, 2, OH, OW), dtype)
        got, want = run_both("adaptive_avg_pool2d_backward", [gy], [((1, 2, H, W), dtype)])
        check(got, want, dtype)


# --------------------------------------------------------------------------- hooks


def test_prepare_copies_host_data_to_the_device():
    a = np.arange(12.0).reshape(3, 4)[:, ::2]  # non-contiguous float64 host data
    d = nc.prepare(a, np.float32)
    assert is_device(d) and d.dtype == np.float32 and d.is_c_contiguous()
    np.testing.assert_array_equal(d.copy_to_host(), a.astype(np.float32))


def test_prepare_uses_a_fitting_device_array_in_place_and_converts_others():
    host = np.arange(24.0).reshape(2, 3, 4)
    d = cuda.to_device(host)
    assert nc.prepare(d, np.float64) is d
    f = nc.prepare(d, np.float32)  # cast on the device
    assert is_device(f) and f.dtype == np.float32
    np.testing.assert_array_equal(f.copy_to_host(), host.astype(np.float32))
    s = nc.prepare(d[:, ::2, 1:], np.float64)  # strided view: a contiguous copy
    assert is_device(s) and s.is_c_contiguous()
    np.testing.assert_array_equal(s.copy_to_host(), host[:, ::2, 1:])
    i = nc.prepare(cuda.to_device(np.arange(6).reshape(1, 1, 2, 3)), np.float64)  # int input
    np.testing.assert_array_equal(i.copy_to_host(), np.arange(6.0).reshape(1, 1, 2, 3))


def test_empty_poisons_when_asked(monkeypatch):
    f = nc.empty((2, 3), np.float32)
    i = nc.empty((4,), np.int64)
    assert is_device(f) and is_device(i)
    assert np.isnan(f.copy_to_host()).all()
    assert (i.copy_to_host() == -7).all()
    monkeypatch.delenv("FASTCONV_POISON")
    assert nc.empty((0, 3), np.float64).shape == (0, 3)


def test_finish_returns_device_arrays_to_device_callers_and_numpy_to_others():
    y = nc.prepare(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3), np.float32)
    assert nc.finish(y, np.float32, True) is y
    h = nc.finish(y, np.float16, True)
    assert is_device(h) and h.dtype == np.float16
    np.testing.assert_array_equal(h.copy_to_host(), y.copy_to_host().astype(np.float16))
    out = nc.finish(y, np.float64, False)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_array_equal(out, y.copy_to_host())


# --------------------------------------------------------------------------- public API


def test_public_api_numpy_in_numpy_out():
    rng = np.random.default_rng(100)
    x = rng.standard_normal((1, 4, 5, 6)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    wt = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    calls = [
        lambda be: fastconv.conv2d(x, w, None, 1, "same", 1, 2, backend=be),
        lambda be: fastconv.conv1d(x[:, :, 0], w[:, :, 0], stride=2, groups=2, backend=be),
        lambda be: fastconv.conv_transpose2d(
            x, wt, stride=2, padding=1, output_padding=1, backend=be
        ),
        lambda be: fastconv.depthwise_conv2d(x, w[:4, :1], padding=1, backend=be),
        lambda be: fastconv.max_pool2d(x, 2, return_indices=True, backend=be),
        lambda be: fastconv.avg_pool2d(x.astype(np.float16), 3, 2, 1, backend=be),
        lambda be: fastconv.adaptive_max_pool2d(x, (2, 4), return_indices=True, backend=be),
    ]
    for call in calls:
        got, want = call("cuda"), call("reference")
        for gv, wv in zip(
            got if isinstance(got, tuple) else [got], want if isinstance(want, tuple) else [want]
        ):
            assert isinstance(gv, np.ndarray) and gv.dtype == wv.dtype and gv.shape == wv.shape
            np.testing.assert_allclose(gv, wv, rtol=1e-3, atol=1e-3)


def test_public_api_device_in_device_out():
    from fastconv.backends import _registry

    rng = np.random.default_rng(110)
    x = rng.standard_normal((2, 3, 5, 5))
    dx = cuda.to_device(x)
    if not _registry.is_device_array(dx):
        pytest.skip("fastconv.backends._registry does not recognise numba's simulator device arrays")
    w = rng.standard_normal((4, 3, 2, 2))
    y = fastconv.conv2d(dx, cuda.to_device(w), backend="auto")
    assert is_device(y) and y.dtype == np.float64
    np.testing.assert_allclose(
        y.copy_to_host(), fastconv.conv2d(x, w, backend="reference"), **tol(np.float64)
    )
    p, i = fastconv.max_pool2d(dx, 2, return_indices=True)
    rp, ri = fastconv.max_pool2d(x, 2, return_indices=True, backend="reference")
    assert is_device(p) and is_device(i)
    np.testing.assert_array_equal(p.copy_to_host(), rp)
    np.testing.assert_array_equal(i.copy_to_host(), ri)


def test_matches_torch_when_installed():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(120)
    x = rng.standard_normal((1, 4, 6, 5))
    x[0, 1, 2, 2] = np.nan
    w = rng.standard_normal((4, 2, 3, 2))
    y = fastconv.conv2d(x, w, None, (2, 1), (1, 0), (1, 2), 2, backend="cuda")
    t = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), None, (2, 1), (1, 0), (1, 2), 2)
    np.testing.assert_allclose(y, t.numpy(), rtol=1e-10, atol=1e-10)
    p, i = fastconv.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True, backend="cuda")
    tp, ti = F.max_pool2d(torch.from_numpy(x), 3, 2, 1, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(p, tp.numpy())
    np.testing.assert_array_equal(i, ti.numpy())


# --------------------------------------------------------------------------- availability


def test_available_backends_reports_the_engine():
    reason = fastconv.available_backends()["cuda"]
    assert reason == nc.AVAILABLE_REASON
    assert reason == ("available (CUDA simulator)" if SIM else "available")


def _reason_in_subprocess(env_extra, prelude=""):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env.update(env_extra)
    code = prelude + "from fastconv.backends import numba_cuda; print(numba_cuda.AVAILABLE_REASON)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_reason_without_the_simulator():
    reason = _reason_in_subprocess({})
    if os.path.exists("/dev/nvidia0"):
        assert reason == "available" or reason.startswith("no GPU found"), reason
    else:
        assert reason == "no CUDA driver" or reason.startswith("no GPU found"), reason


def test_reason_without_numba_cuda():
    prelude = textwrap.dedent("""
        import importlib.util
        _find = importlib.util.find_spec
        importlib.util.find_spec = lambda n, *a: None if n == "numba_cuda" else _find(n, *a)
    """)
    assert _reason_in_subprocess({}, prelude) == "numba-cuda is not installed"


LOWER_ALL = r"""
import types as pytypes
import numpy as np
from numba import types, typeof
import numba.cuda.dispatcher as disp
from numba.cuda.compiler import compile_cuda
# no GPU here: give device functions a compute capability instead of asking the driver
disp.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=(8, 0))
from fastconv.backends.numba_cuda import conv_kernels as CK, launch as L, pool_kernels as PK
assert not CK.SIMULATOR
seen = set()
def lower(kernel, grid, block, *args):
    sig = tuple(types.none if a is None else typeof(a) for a in args)
    ir = compile_cuda(kernel.py_func, types.void, sig, cc=(8, 0)).library.get_llvm_str()
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    if kernel is not PK.fill and all(a.dtype in (np.float32, np.int64) for a in arrays):
        # float32 kernels must not compute in float64 (a folded constant is fine)
        bad = [l for l in ir.splitlines() if "double" in l and "fptrunc double 0x" not in l]
        assert not bad, (kernel.py_func.__name__, sig, bad[:3])
    seen.add(kernel.py_func.__name__)
L._launch = lower
for dt in (np.float32, np.float64):
    z = lambda *s: np.zeros(s, dt)
    i64 = np.zeros((1, 4, 2, 2), np.int64)
    x = z(1, 4, 5, 5)
    for bias in (True, False):
        b = (lambda n: z(n)) if bias else (lambda n: None)
        for v in L.CONV2D_VARIANTS:
            L.conv2d(x, z(6, 2, 3, 3), b(6), z(1, 6, 3, 3), 1, 1, 0, 0, 1, 1, 2, variant=v)
        L.depthwise_conv2d(x, z(8, 1, 3, 3), b(8), z(1, 8, 3, 3), 1, 1, 0, 0, 1, 1)
        L.separable_conv2d(x, z(8, 1, 3, 3), b(8), z(5, 8, 1, 1), b(5), z(1, 5, 3, 3),
                           1, 1, 0, 0, 1, 1)
        L.conv_transpose2d(x, z(4, 3, 3, 3), b(6), z(1, 6, 7, 7), 1, 1, 0, 0, 1, 1, 2)
    for idx in (i64, None):
        L.max_pool2d(x, z(1, 4, 2, 2), idx, 2, 2, 2, 2, 0, 0, 1, 1)
        L.adaptive_max_pool2d(x, z(1, 4, 2, 2), idx)
    L.avg_pool2d(x, z(1, 4, 2, 2), 2, 2, 2, 2, 0, 0, True, 0)
    L.adaptive_avg_pool2d(x, z(1, 4, 2, 2))
    L.max_pool2d_backward(z(1, 4, 2, 2), i64, x)
    L.avg_pool2d_backward(z(1, 4, 2, 2), x, 2, 2, 2, 2, 0, 0, True, 0)
    L.adaptive_avg_pool2d_backward(z(1, 4, 2, 2), x)
for nd in (1, 2, 3, 4):
    shape = (3,) * nd
    L._copy(np.zeros(shape + (2,))[..., 0], np.zeros(shape, np.float32))  # strided, cast
    for src, dst in [(np.float16, np.float32), (np.float32, np.float16), (np.int64, np.float64),
                     (np.bool_, np.float64)]:
        L._copy(np.zeros(shape, src), np.zeros(shape, dst))
lower(PK.fill, 1, 1, np.zeros(3, np.float32), np.nan)
lower(PK.fill, 1, 1, np.zeros(3, np.int64), -7)
print(" ".join(sorted(seen)))
"""


def test_kernels_lower_for_a_real_gpu():
    """Type inference and lowering to LLVM IR for the real CUDA target, for every launch the
    launchers make (float32 and float64, with and without bias / indices) and every hook
    copy. Needs numba-cuda's compiler but no GPU and no CUDA toolkit."""
    pytest.importorskip("numba.cuda.compiler")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run(
        [sys.executable, "-c", LOWER_ALL], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = set(out.stdout.split())
    assert {
        "conv2d_direct",
        "gemm",
        "depthwise_conv2d",
        "conv_transpose2d",
        "max_pool2d",
        "adaptive_max_pool2d",
        "avg_pool2d",
        "adaptive_avg_pool2d",
        "max_pool2d_backward",
        "avg_pool2d_backward",
        "adaptive_avg_pool2d_backward",
        "fill",
        "copy1",
        "copy2",
        "copy3",
        "copy4",
    } <= seen


# --------------------------------------------------------------------------- real GPU only


@gpu
@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_conv2d_realistic_shapes(dtype):
    rng = np.random.default_rng(200)
    x = randn(rng, (4, 32, 28, 28), dtype)
    for groups, stride in [(1, 1), (4, 2), (32, 1)]:
        w = randn(rng, (64, 32 // groups, 3, 3), dtype)
        b = randn(rng, (64,), dtype)
        want = fastconv.conv2d(x, w, b, stride, 1, 1, groups, backend="reference")
        for v in nc.CONV2D_VARIANTS:
            got = fastconv.conv2d(x, w, b, stride, 1, 1, groups, backend="cuda", variant=v)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@gpu
@needs_gpu
def test_gpu_torch_cuda_tensors_flow_through():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    x = torch.randn(2, 8, 16, 16, device="cuda")
    w = torch.randn(16, 8, 3, 3, device="cuda")
    y = fastconv.conv2d(x, w, padding=1)
    assert is_device(y)
    want = torch.nn.functional.conv2d(x.double(), w.double(), padding=1).cpu().numpy()
    np.testing.assert_allclose(y.copy_to_host(), want, rtol=1e-4, atol=1e-4)
