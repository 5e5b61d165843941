"""The C engine's convolution half: every conv2d variant, every GEMM micro-kernel this CPU
runs, conv_transpose2d, im2col / col2im, the workspace bound, threads and thread safety.

Kernels are called directly with NaN-filled outputs (a kernel that skips an element fails)
and compared with the reference engine: float32 within 1e-5 of max|ref|, float64 1e-10.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import fastconv
from fastconv.backends import _registry
from fastconv.backends import reference as ref
from fastconv.backends._registry import check_isa, variant_fits

c = pytest.importorskip("fastconv.backends.c")
if c.AVAILABLE_REASON != "available":  # pragma: no cover - depends on the build
    pytest.skip(c.AVAILABLE_REASON, allow_module_level=True)

from _cases import isa_fixture  # noqa: E402

from fastconv.backends.c._cffi import ptr  # noqa: E402

TOL = {np.float32: 1e-5, np.float64: 1e-10}
DTYPES = (np.float32, np.float64)
#: GEMM micro-kernels this CPU runs (the engine steps an unsupported request down).
ISAS = [k for k in ("portable", "avx2", "avx512") if k in c.cpu_info()["gemm_kernels"]]


@pytest.fixture(autouse=True)
def _engine_settings():
    """Every test starts and ends with the default workspace bound and 2 threads."""
    c.set_workspace_limit(None)
    c.set_num_threads(2)
    yield
    c.set_workspace_limit(None)
    c.set_num_threads(fastconv.get_num_threads())


def _close(got, want, dtype):
    assert got.shape == want.shape
    assert np.isfinite(got).all(), "the kernel left elements unwritten (NaN)"
    scale = max(float(np.abs(want).max()), 1e-30)
    err = float(np.abs(got.astype(np.float64) - want).max()) / scale
    assert err <= TOL[dtype], f"relative error {err:.3g}"


# --------------------------------------------------------------------------- configurations


def _conv_out(size, k, s, p0, p1, d):
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def random_conv(rng, dtype, big=False):
    """x, w, b and the kernel arguments of a random conv2d; bottom / right padding differs
    from top / left (it is implied by the output size)."""
    while True:
        G = int(rng.choice([1, 1, 2, 3]))
        Cg = int(rng.integers(1, 24 if big else 5))
        OCg = int(rng.integers(1, 40 if big else 7))
        KH, KW = (int(v) for v in rng.integers(1, 5, 2))
        sh, sw = (int(v) for v in rng.integers(1, 4, 2))
        dh, dw = (int(v) for v in rng.integers(1, 4, 2))
        ph, pw = (int(v) for v in rng.integers(0, 4, 2))
        pb, pr = (int(v) for v in rng.integers(0, 3, 2))  # bottom / right
        H, W = (int(v) for v in rng.integers(1, 40 if big else 13, 2))
        N = int(rng.integers(1, 4))
        OH, OW = _conv_out(H, KH, sh, ph, pb, dh), _conv_out(W, KW, sw, pw, pr, dw)
        if OH >= 1 and OW >= 1:
            break
    x = rng.standard_normal((N, G * Cg, H, W)).astype(dtype)
    w = rng.standard_normal((G * OCg, Cg, KH, KW)).astype(dtype)
    b = rng.standard_normal(G * OCg).astype(dtype) if rng.random() < 0.7 else None
    return x, w, b, (N, G * OCg, OH, OW), (sh, sw, ph, pw, dh, dw, G)


def random_convt(rng, dtype, big=False):
    while True:
        G = int(rng.choice([1, 1, 2, 3]))
        Cg = int(rng.integers(1, 24 if big else 5))
        OCg = int(rng.integers(1, 20 if big else 5))
        KH, KW = (int(v) for v in rng.integers(1, 5, 2))
        sh, sw = (int(v) for v in rng.integers(1, 4, 2))
        dh, dw = (int(v) for v in rng.integers(1, 3, 2))
        ph, pw = (int(v) for v in rng.integers(0, 3, 2))
        oph = int(rng.integers(0, max(sh, dh)))
        opw = int(rng.integers(0, max(sw, dw)))
        H, W = (int(v) for v in rng.integers(1, 20 if big else 9, 2))
        N = int(rng.integers(1, 4))
        OH = (H - 1) * sh - 2 * ph + dh * (KH - 1) + oph + 1
        OW = (W - 1) * sw - 2 * pw + dw * (KW - 1) + opw + 1
        if OH >= 1 and OW >= 1:
            break
    x = rng.standard_normal((N, G * Cg, H, W)).astype(dtype)
    w = rng.standard_normal((G * Cg, OCg, KH, KW)).astype(dtype)
    b = rng.standard_normal(G * OCg).astype(dtype) if rng.random() < 0.7 else None
    return x, w, b, (N, G * OCg, OH, OW), (sh, sw, ph, pw, dh, dw, G)


def conv_ref(x, w, b, yshape, args):
    y = np.empty(yshape, np.float64)
    ref.conv2d(x, w, b, y, *args)
    return y


def convt_ref(x, w, b, yshape, args):
    y = np.empty(yshape, np.float64)
    ref.conv_transpose2d(x, w, b, y, *args)
    return y


def run_conv(x, w, b, yshape, args, **kw):
    y = np.full(yshape, np.nan, x.dtype)
    c.conv2d(x, w, b, y, *args, **kw)
    return y


def run_convt(x, w, b, yshape, args, **kw):
    y = np.full(yshape, np.nan, x.dtype)
    c.conv_transpose2d(x, w, b, y, *args, **kw)
    return y


# --------------------------------------------------------------------------- conv2d


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", (None,) + c.CONV2D_VARIANTS)
def test_conv2d_variants_random(variant, dtype):
    rng = np.random.default_rng(hash((str(variant), np.dtype(dtype).name)) % 2**32)
    for i in range(40):
        x, w, b, yshape, args = random_conv(rng, dtype, big=i % 8 == 0)
        got = run_conv(x, w, b, yshape, args, variant=variant)
        _close(got, conv_ref(x, w, b, yshape, args), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("variant", (None, "v4_simd", "v5_threads"))
def test_conv2d_each_micro_kernel(variant, isa, dtype):
    rng = np.random.default_rng(7 + ISAS.index(isa))
    for i in range(15):
        x, w, b, yshape, args = random_conv(rng, dtype, big=i % 3 == 0)
        got = run_conv(x, w, b, yshape, args, variant=variant, isa=isa)
        _close(got, conv_ref(x, w, b, yshape, args), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape",
    [  # (N, C, H, W, OC, K, stride, pad, groups): GEMM edges and the 1x1 fast path
        (2, 16, 9, 11, 40, 1, 1, 0, 1),  # 1x1, stride 1, unpadded: no im2col
        (1, 12, 7, 7, 30, 1, 1, 0, 3),  # grouped 1x1
        (2, 8, 9, 9, 29, 1, 2, 0, 1),  # 1x1 strided: im2col again
        (1, 6, 8, 8, 15, 1, 1, 1, 1),  # 1x1 padded
        (1, 20, 17, 19, 45, 3, 1, 1, 1),  # M, N not multiples of the micro-tile
        (3, 9, 33, 35, 14, 3, 2, 1, 1),
        (1, 300, 6, 6, 17, 3, 1, 1, 1),  # K > KC: several K blocks
    ],
)
def test_conv2d_edge_shapes(shape, dtype):
    N, C, H, W, OC, K, s, p, G = shape
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((OC, C // G, K, K)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype)
    OH, OW = _conv_out(H, K, s, p, p, 1), _conv_out(W, K, s, p, p, 1)
    args = (s, s, p, p, 1, 1, G)
    want = conv_ref(x, w, b, (N, OC, OH, OW), args)
    for variant in (None,) + c.CONV2D_VARIANTS:
        _close(run_conv(x, w, b, (N, OC, OH, OW), args, variant=variant), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_same_padding_even_kernels(dtype):
    """padding='same' with even kernels pads one more at the bottom / right than at the top /
    left, through the public function (which poisons its outputs in the test suite)."""
    rng = np.random.default_rng(11)
    for KH, KW, dh, dw in [(2, 4, 1, 1), (4, 2, 3, 1), (2, 2, 2, 3), (3, 4, 1, 2)]:
        x = rng.standard_normal((2, 6, 10, 9)).astype(dtype)
        w = rng.standard_normal((4, 3, KH, KW)).astype(dtype)
        want = fastconv.conv2d(x, w, None, 1, "same", (dh, dw), 2, backend="reference")
        for variant in (None,) + c.CONV2D_VARIANTS:
            if not variant_fits(c, variant, KH, KW, 1, 1, dh, dw):
                continue  # the Winograd variants run 3x3 stride-1 layers only (test_winograd)
            got = fastconv.conv2d(x, w, None, 1, "same", (dh, dw), 2, backend="c", variant=variant)
            assert got.dtype == dtype
            _close(got, want, dtype)


def test_conv2d_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(5)
    for _ in range(10):
        x, w, b, yshape, (sh, sw, ph, pw, dh, dw, G) = random_conv(rng, np.float64, big=True)
        # torch pads symmetrically: use the output size that implies
        OH, OW = (
            _conv_out(x.shape[2], w.shape[2], sh, ph, ph, dh),
            _conv_out(x.shape[3], w.shape[3], sw, pw, pw, dw),
        )
        if OH < 1 or OW < 1:
            continue
        got = run_conv(x, w, b, (x.shape[0], w.shape[0], OH, OW), (sh, sw, ph, pw, dh, dw, G))
        tb = None if b is None else torch.from_numpy(b)
        want = F.conv2d(
            torch.from_numpy(x), torch.from_numpy(w), tb, (sh, sw), (ph, pw), (dh, dw), G
        ).numpy()
        _close(got, want, np.float64)


def test_unknown_variant_raises():
    x = np.ones((1, 2, 5, 5), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="v1_direct.*v5_threads"):
        fastconv.conv2d(x, w, backend="c", variant="v9_magic")
    with pytest.raises(ValueError, match="v4_simd"):
        fastconv.conv2d(x, w, backend="c", variant="fastest")
    with pytest.raises(ValueError, match="isa"):
        check_isa(c, "sse9")  # kernels take isa unchecked; callers check it first


# --------------------------------------------------------------------------- conv_transpose2d


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", [None, "naive"] + ISAS)
def test_conv_transpose2d_random(isa, dtype):
    rng = np.random.default_rng(100 + (ISAS.index(isa) if isa in ISAS else 9 if isa else 8))
    for i in range(25):
        x, w, b, yshape, args = random_convt(rng, dtype, big=i % 5 == 0)
        got = run_convt(x, w, b, yshape, args, isa=isa)
        _close(got, convt_ref(x, w, b, yshape, args), dtype)


def test_conv_transpose2d_public_and_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(21)
    x = rng.standard_normal((3, 6, 7, 5)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 4)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    got = fastconv.conv_transpose2d(x, w, b, (2, 3), (1, 2), (1, 2), 2, (1, 1), backend="c")
    want = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x),
        torch.from_numpy(w),
        torch.from_numpy(b),
        (2, 3),
        (1, 2),
        (1, 2),
        2,
        (1, 1),
    ).numpy()
    _close(got, want, np.float32)


def test_conv_transpose2d_is_adjoint_of_conv2d():
    """<conv2d(x, w), u> == <x, conv_transpose2d(u, w)> (no bias), the defining property."""
    rng = np.random.default_rng(4)
    for _ in range(10):
        x, w, _, yshape, args = random_conv(rng, np.float64)
        u = rng.standard_normal(yshape)
        y = run_conv(x, w, None, yshape, args)
        xt = run_convt(u, w, None, x.shape, args)
        lhs, rhs = float((y * u).sum()), float((x * xt).sum())
        assert abs(lhs - rhs) <= 1e-9 * max(1.0, abs(lhs))


# --------------------------------------------------------------------------- workspace bound


@pytest.mark.parametrize("limit", [1, 3000, 40_000])
def test_workspace_bound_forces_chunks(limit):
    """A bound far below what one im2col needs gives many chunks (of rows and pixels) and the
    same answer; a bound below the minimum (one micro-tile) still works."""
    rng = np.random.default_rng(limit)
    c.set_workspace_limit(limit)
    for dtype in DTYPES:
        x = rng.standard_normal((2, 40, 19, 23)).astype(dtype)  # K = 360 rows, 21x11 pixels
        w = rng.standard_normal((20, 20, 3, 3)).astype(dtype)
        b = rng.standard_normal(20).astype(dtype)
        args = (2, 2, 1, 0, 2, 1, 2)
        yshape = (2, 20, _conv_out(19, 3, 2, 1, 1, 2), _conv_out(23, 3, 2, 0, 0, 1))
        want = conv_ref(x, w, b, yshape, args)
        for variant in (None,) + c.CONV2D_VARIANTS[1:]:
            _close(run_conv(x, w, b, yshape, args, variant=variant), want, dtype)
        xt = rng.standard_normal((2, 12, 9, 8)).astype(dtype)
        wt = rng.standard_normal((12, 7, 4, 3)).astype(dtype)
        targs = (2, 1, 1, 1, 1, 2, 3)
        tshape = (2, 21, (9 - 1) * 2 - 2 + 3 + 1 + 1, (8 - 1) - 2 + 4 + 1)
        _close(
            run_convt(xt, wt, None, tshape, targs), convt_ref(xt, wt, None, tshape, targs), dtype
        )


def test_tiny_workspace_chunks_inside_the_padding():
    """With the smallest bound a pixel chunk can end before a tap's first in-image column
    (wide left padding, dilation): the chunk must be zeros only, written inside the chunk
    (a chunk [a, e) once got zeros up to that column, past its end, and corrupted the heap).
    Every variant, seeded random convs with wide paddings, and the first case found."""
    c.set_workspace_limit(1)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 1, 13, 13))
    w = rng.standard_normal((1, 1, 2, 5))
    cases = [(x, w, None, (1, 1, 13, 13), (1, 1, 0, 4, 2, 2, 1))]  # 'same' with dilation 2
    for _ in range(40):
        x, w, b, yshape, args = random_conv(rng, np.float64)
        sh, sw, ph, pw, dh, dw, G = args
        pw = int(rng.integers(0, 9))  # wider than random_conv's
        yshape = yshape[:3] + (_conv_out(x.shape[3], w.shape[3], sw, pw, 0, dw),)
        if yshape[3] >= 1:
            cases.append((x, w, b, yshape, (sh, sw, ph, pw, dh, dw, G)))
    for x, w, b, yshape, args in cases:
        want = conv_ref(x, w, b, yshape, args)
        for variant in (None,) + c.CONV2D_VARIANTS[1:]:
            _close(run_conv(x, w, b, yshape, args, variant=variant), want, np.float64)


def test_workspace_limit_validation():
    with pytest.raises(ValueError):
        c.set_workspace_limit(0)
    with pytest.raises(TypeError):
        c.set_workspace_limit(1.5)
    c.set_workspace_limit(12345)
    assert c.get_workspace_limit() == 12345
    c.set_workspace_limit(None)
    assert c.get_workspace_limit() == c.DEFAULT_WORKSPACE_LIMIT == 64 * 2**20


# --------------------------------------------------------------------------- threads


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_and_two_threads_agree(dtype):
    rng = np.random.default_rng(31)
    cases = [random_conv(rng, dtype, big=True) for _ in range(6)]
    # one image, one group: the threads must split channels or pixels of a single GEMM
    cases.append(
        (
            rng.standard_normal((1, 32, 7, 7)).astype(dtype),
            rng.standard_normal((64, 32, 3, 3)).astype(dtype),
            None,
            (1, 64, 7, 7),
            (1, 1, 1, 1, 1, 1, 1),
        )
    )
    cases.append(
        (
            rng.standard_normal((3, 8, 30, 30)).astype(dtype),
            rng.standard_normal((16, 8, 3, 3)).astype(dtype),
            None,
            (3, 16, 30, 30),
            (1, 1, 1, 1, 1, 1, 1),
        )
    )
    for x, w, b, yshape, args in cases:
        out = {}
        for n in (1, 2):
            c.set_num_threads(n)
            out[n] = run_conv(x, w, b, yshape, args, variant="v5_threads")
        _close(out[2], out[1], dtype)
        _close(out[1], conv_ref(x, w, b, yshape, args), dtype)
    for _ in range(4):
        x, w, b, yshape, args = random_convt(rng, dtype, big=True)
        out = {}
        for n in (1, 2):
            c.set_num_threads(n)
            out[n] = run_convt(x, w, b, yshape, args)
        _close(out[2], out[1], dtype)


def test_set_num_threads_follows_fastconv():
    fastconv.set_num_threads(1)
    assert c.get_num_threads() == 1
    fastconv.set_num_threads(2)
    assert c.get_num_threads() == 2
    with pytest.raises(ValueError):
        c.set_num_threads(0)


def test_eight_python_threads_at_once():
    """cffi releases the GIL: eight Python threads run the kernels concurrently (each with two
    OpenMP threads and a bounded workspace) and every one gets the right answer."""
    rng = np.random.default_rng(41)
    jobs = []
    for i in range(8):
        dtype = DTYPES[i % 2]
        if i % 3 == 2:
            x, w, b, yshape, args = random_convt(rng, dtype, big=True)
            jobs.append(
                (run_convt, x, w, b, yshape, args, {}, convt_ref(x, w, b, yshape, args), dtype)
            )
        else:
            x, w, b, yshape, args = random_conv(rng, dtype, big=True)
            kw = {"variant": (None, "v4_simd", "v2_im2col")[i % 3]}
            jobs.append(
                (run_conv, x, w, b, yshape, args, kw, conv_ref(x, w, b, yshape, args), dtype)
            )
    c.set_workspace_limit(20_000)
    results: dict = {}
    barrier = threading.Barrier(len(jobs))

    def work(i, fn, x, w, b, yshape, args, kw):
        barrier.wait()
        results[i] = [fn(x, w, b, yshape, args, **kw) for _ in range(5)]

    threads = [threading.Thread(target=work, args=(i,) + job[:7]) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, job in enumerate(jobs):
        for got in results[i]:
            _close(got, job[7], job[8])


# --------------------------------------------------------------------------- GEMM, im2col


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["naive"] + ISAS)
def test_gemm_against_numpy(kernel, dtype):
    """C = A B and C += A B with A read row-major and transposed, on sizes around the
    micro-tile and the cache blocks (fc_gemm is what every GEMM variant calls)."""
    lib, ffi = c.lib, c.ffi
    code = c.GEMM_KERNELS[kernel]
    f64 = dtype == np.float64
    gemm = lib.fc_gemm_f64 if f64 else lib.fc_gemm_f32
    rng = np.random.default_rng(code + 10)
    for M, N, K in [
        (1, 1, 1),
        (13, 31, 7),
        (14, 32, 256),
        (15, 33, 257),
        (130, 70, 300),
        (29, 2100, 5),
        (3, 5, 600),
        (17, 49, 300),  # an edge tile of 17 columns: 16 + 8 lanes on AVX-512
        (15, 12, 40),  # 12 columns: one vector of 16
        (16, 88, 33),  # 88 = 2 x 32 + 24
    ]:
        A = rng.standard_normal((M, K)).astype(dtype)
        At = np.ascontiguousarray(A.T)
        B = rng.standard_normal((K, N + 3)).astype(dtype)  # ldb > N
        C0 = rng.standard_normal((M, N + 2)).astype(dtype)  # ldc > N
        want = A.astype(np.float64) @ B[:, :N].astype(np.float64)
        work = np.empty(max(1, lib.fc_gemm_work_elems(code, f64, M, N, K)), dtype)
        scale = np.abs(want).max() + np.abs(C0).max()
        for a, rsa, csa in ((A, K, 1), (At, 1, M)):
            C = np.full((M, N + 2), np.nan, dtype)
            C[:, N:] = 7
            gemm(code, M, N, K, ptr(a), rsa, csa, ptr(B), N + 3, ptr(C), N + 2, 0, ptr(work))
            assert (C[:, N:] == 7).all(), "wrote past N"
            assert np.abs(C[:, :N] - want).max() <= TOL[dtype] * scale
            C = C0.copy()
            gemm(code, M, N, K, ptr(a), rsa, csa, ptr(B), N + 3, ptr(C), N + 2, 1, ptr(work))
            assert np.abs(C[:, :N] - (C0[:, :N] + want)).max() <= TOL[dtype] * scale
            assert (C[:, N:] == C0[:, N:]).all()
    name = ffi.string(lib.fc_gemm_kernel_name(code)).decode()
    assert name == kernel


def _tail_want(P, bias, scale, shift, res, act):
    """The GEMM tail in float64, step by step as fc_gemm_tail defines it."""
    y = P + (bias[:, None] if bias is not None else 0)
    if scale is not None:
        y = scale[:, None] * y + (shift[:, None] if shift is not None else 0)
    elif shift is not None:
        y = y + shift[:, None]
    if res is not None:
        y = y + res
    if act == 1:
        y = np.maximum(y, 0)
    elif act == 2:
        y = np.clip(y, 0, 6)
    return y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["naive"] + ISAS)
def test_gemm_tail_against_numpy(kernel, dtype):
    """fc_gemm_ep and fc_gemm_packed_ep: the product, then bias / scale / shift / residual /
    activation (every combination, each part present or not) on every tile, on edge tiles
    and several K blocks, with ldc and the residual's row stride past N; nothing written
    past N, and a NULL tail is the plain GEMM bit for bit."""
    lib, ffi = c.lib, c.ffi
    code = c.GEMM_KERNELS[kernel]
    f64 = dtype == np.float64
    sfx = "f64" if f64 else "f32"
    gemm_ep, gemm = getattr(lib, f"fc_gemm_ep_{sfx}"), getattr(lib, f"fc_gemm_{sfx}")
    packed_ep, pack = getattr(lib, f"fc_gemm_packed_ep_{sfx}"), getattr(lib, f"fc_pack_a_{sfx}")
    rng = np.random.default_rng(code + 40)
    combos = [(b, sc, sh, r, act) for b in (0, 1) for sc in (0, 1) for sh in (0, 1)
              for r in (0, 1) for act in (0, 1, 2)]
    # (45, 49, 300): lane edge tiles on 3 whole strips and a part, the next strip's weights
    # prefetched under the first two; (30, 20, 33): lane edge tiles with no whole sliver
    for M, N, K in [(1, 1, 1), (13, 31, 7), (15, 33, 257), (29, 70, 600), (16, 49, 40),
                    (15, 12, 9), (45, 49, 300), (30, 20, 33)]:
        A = rng.standard_normal((M, K)).astype(dtype)
        B = rng.standard_normal((K, N + 3)).astype(dtype)
        want_p = A.astype(np.float64) @ B[:, :N].astype(np.float64)
        work = np.empty(max(1, lib.fc_gemm_work_elems(code, f64, M, N, K)), dtype)
        if kernel != "naive":
            mr, nr = lib.fc_gemm_mr(code, f64), lib.fc_gemm_nr(code, f64)
            Ap = np.zeros(-(-M // mr) * mr * K + 16, dtype)
            pack(code, M, K, ptr(A), K, 1, ptr(Ap))
            Bp = np.zeros((-(-N // nr), K, nr), dtype)
            for s in range(Bp.shape[0]):
                blk = B[:, s * nr:min(N, (s + 1) * nr)]
                Bp[s, :, :blk.shape[1]] = blk
        for i, (b, sc, sh, r, act) in enumerate(combos):
            if i % 3 != M % 3 and (M, N, K) != (15, 33, 257):
                continue  # every combination on the edge-tile case, a third on the others
            bias = rng.standard_normal(M).astype(dtype) if b else None
            scale = rng.standard_normal(M).astype(dtype) if sc else None
            shift = rng.standard_normal(M).astype(dtype) if sh else None
            resf = rng.standard_normal((M, N + 5)).astype(dtype) if r else None
            res = resf[:, :N] if r else None
            keep = [v for v in (bias, scale, shift, resf) if v is not None]
            tail = ffi.new("fc_gemm_tail *", {
                "bias": ptr(bias) if b else ffi.NULL, "scale": ptr(scale) if sc else ffi.NULL,
                "shift": ptr(shift) if sh else ffi.NULL,
                "residual": ptr(resf) if r else ffi.NULL, "ldr": N + 5, "activation": act})
            want = _tail_want(want_p, *[None if v is None else v.astype(np.float64)
                                        for v in (bias, scale, shift, res)], act)
            tol = TOL[dtype] * (np.abs(want).max() + 1) * 4
            runs = [lambda C: gemm_ep(code, M, N, K, ptr(A), K, 1, ptr(B), N + 3, ptr(C), N + 2,
                                      0, ptr(work), tail)]
            if kernel != "naive":
                runs.append(lambda C: packed_ep(code, M, N, K, ptr(Ap), K, ptr(Bp), ptr(C),
                                                N + 2, 0, tail))
            for run in runs:
                C = np.full((M, N + 2), np.nan, dtype)
                C[:, N:] = 7
                run(C)
                assert (C[:, N:] == 7).all(), "wrote past N"
                assert np.abs(C[:, :N] - want).max() <= tol, (M, N, K, b, sc, sh, r, act)
            del keep
        C1 = np.zeros((M, N + 2), dtype)
        C2 = np.ones((M, N + 2), dtype)
        gemm(code, M, N, K, ptr(A), K, 1, ptr(B), N + 3, ptr(C1), N + 2, 0, ptr(work))
        gemm_ep(code, M, N, K, ptr(A), K, 1, ptr(B), N + 3, ptr(C2), N + 2, 0, ptr(work),
                ffi.NULL)
        assert np.array_equal(C1[:, :N], C2[:, :N])
    assert ffi.string(lib.fc_gemm_kernel_name(code)).decode() == kernel


@pytest.mark.parametrize("kernel", ISAS)
def test_gemm_a_in_place_same_bits_as_packed(kernel):
    """A float GEMM with few columns (N <= 256) on a vector kernel reads A in place (gemm.c,
    gemm_a_in_place; fc_gemm_a_in_place_ep for conv2d's tasks) instead of packing it: the
    same bits as the packed loops (of a wider B whose first N columns are the same; of A
    packed by fc_pack_a), on random sizes with A a row-strided block (rsa > K, some rows
    4 or 8 KB apart, which the AVX-512 kernel's 14-row strips share an L1 set with, so that
    gemm.c reads them as two strips of 7 rows), edge strips of fewer rows, several
    K blocks, accumulating or not, with and without a tail; nothing written past N."""
    lib, ffi = c.lib, c.ffi
    code = c.GEMM_KERNELS[kernel]
    rng = np.random.default_rng(code + 70)
    edges = [1, 8, 9, 16, 17, 18, 19, 20, 21, 24, 25, 32]
    for trial in range(2 * len(edges)):
        # the last tile's columns at each bound of the micro-kernels' widths (ukr_avx512_f32_any:
        # 8, 16, 24 and 32 lanes, 17-20 with rows as lanes (ukr_avx512_f32_lanes); AVX2: 8
        # and 16), on top of 0..7 whole tiles of 32
        edge = edges[trial % len(edges)]
        M, K = int(rng.integers(1, 60)), int(rng.integers(1, 700))
        N = int(rng.integers(0, 8)) * 32 + edge
        Nw = 300 + int(rng.integers(0, 40))  # wide enough for the packed loops
        rsa = K + int(rng.integers(0, 9))
        if trial % 3 == 0:  # rows 4 or 8 KB apart share an L1 set: strips of 7 rows
            rsa = int(rng.choice([1024, 2048]))
        Abuf = rng.standard_normal((M, rsa)).astype(np.float32)
        B = rng.standard_normal((K, Nw)).astype(np.float32)
        C0 = rng.standard_normal((M, Nw)).astype(np.float32)
        bias = rng.standard_normal(M).astype(np.float32)
        tail = ffi.new("fc_gemm_tail *", {"bias": ptr(bias), "scale": ffi.NULL,
                                          "shift": ffi.NULL, "residual": ffi.NULL, "ldr": 0,
                                          "activation": 1})
        # every step of the tail on odd trials: scale, shift, a residual and ReLU6
        scale = rng.uniform(-3, 3, M).astype(np.float32)
        shift = rng.standard_normal(M).astype(np.float32)
        res = (rng.standard_normal((M, Nw)) * 4).astype(np.float32)
        full = ffi.new("fc_gemm_tail *", {"bias": ptr(bias), "scale": ptr(scale),
                                          "shift": ptr(shift), "residual": ptr(res),
                                          "ldr": Nw, "activation": 2})
        if trial % 2:
            tail = full
        work = np.empty(lib.fc_gemm_work_elems(code, 0, M, Nw, K), np.float32)
        for acc in (0, 1):
            for tl in (ffi.NULL, tail):
                narrow, wide = C0.copy(), C0.copy()
                narrow[:, N:] = 7
                lib.fc_gemm_ep_f32(code, M, N, K, ptr(Abuf), rsa, 1, ptr(B), Nw, ptr(narrow),
                                   Nw, acc, ptr(work), tl)
                lib.fc_gemm_ep_f32(code, M, Nw, K, ptr(Abuf), rsa, 1, ptr(B), Nw, ptr(wide),
                                   Nw, acc, ptr(work), tl)
                assert (narrow[:, N:] == 7).all(), "wrote past N"
                assert np.array_equal(narrow[:, :N], wide[:, :N]), (trial, M, N, K, acc)
        # fc_gemm_a_in_place_ep (conv2d's tasks that would pack their own rows) against
        # packing A and fc_gemm_packed_ep, on the same packed B
        if lib.fc_gemm_a_in_place_ok_f32(code, N):
            mr, nr = lib.fc_gemm_mr(code, 0), lib.fc_gemm_nr(code, 0)
            A = np.ascontiguousarray(Abuf[:, :K])
            Ap = np.zeros(-(-M // mr) * mr * K + 16, np.float32)
            lib.fc_pack_a_f32(code, M, K, ptr(A), K, 1, ptr(Ap))
            Bp = np.zeros((-(-N // nr), K, nr), np.float32)
            for q in range(Bp.shape[0]):
                blk = B[:, q * nr:min(N, (q + 1) * nr)]
                Bp[q, :, :blk.shape[1]] = blk
            edge = np.empty(mr * K + 16, np.float32)
            for acc in (0, 1):
                got, ref = C0.copy(), C0.copy()
                got[:, N:] = 7
                lib.fc_gemm_a_in_place_ep_f32(code, M, N, K, ptr(Abuf), rsa, ptr(Bp), ptr(got),
                                              Nw, acc, tail, ptr(edge))
                lib.fc_gemm_packed_ep_f32(code, M, N, K, ptr(Ap), K, ptr(Bp), ptr(ref), Nw, acc,
                                          tail)
                assert (got[:, N:] == 7).all(), "wrote past N"
                assert np.array_equal(got[:, :N], ref[:, :N]), (trial, M, N, K, acc)
        else:
            assert kernel == "portable"
        # and the value: the last call accumulated onto C0 with the tail
        want = Abuf[:, :K].astype(np.float64) @ B[:, :N].astype(np.float64)
        want = C0[:, :N] + want + bias[:, None]
        if tail is full:
            want = want * scale[:, None] + shift[:, None] + res[:, :N]
        bound = TOL[np.float32] * (np.abs(want).max() * 4 + 1)  # scale's factor of up to 3
        want = np.clip(want, 0, 6) if tail is full else np.maximum(want, 0)
        assert np.abs(narrow[:, :N] - want).max() <= bound


@pytest.mark.parametrize("dtype", DTYPES)
def test_default_path_same_bits_on_any_thread_count_and_batch(dtype):
    """The default path sums each output's K the same way however the call is cut: the same
    bits on 1 to 4 threads (as many as this process may use, at least 2), and an image alone gives the bits it gets inside a batch (how
    dask chunks and tiles stay exact). Layers of each path: im2col with weights packed per
    task or once per call, 1x1 in place, dilated, strided, grouped, Winograd, direct; tasks
    whose output channels start inside a strip of the micro-kernel's rows."""
    rng = np.random.default_rng(5)
    # up to the CPUs this process may use (more would leave extra pool workers behind)
    counts = list(range(1, min(4, max(2, _registry.max_threads())) + 1))
    layers = [  # (C, OC, k, hw, stride, pad, dilation, groups)
        (512, 512, 3, 7, 1, 1, 1, 1), (2048, 512, 1, 7, 1, 0, 1, 1),
        (128, 96, 3, 33, 1, 6, 6, 1), (64, 80, 3, 40, 2, 1, 1, 1), (96, 96, 3, 19, 1, 1, 1, 3),
        (256, 256, 3, 14, 1, 1, 1, 1), (3, 32, 7, 48, 2, 3, 1, 1), (40, 300, 1, 25, 1, 0, 1, 1),
        # an image alone splits its output channels off the strips of 14 (128 + 128, 50 + 50)
        (256, 256, 3, 14, 2, 1, 1, 1), (1024, 100, 1, 14, 1, 0, 1, 1),
    ]
    for C, OC, k, hw, st, pad, dil, G in layers:
        x = rng.standard_normal((2, C, hw, hw)).astype(dtype)
        w = (rng.standard_normal((OC, C // G, k, k)) / np.sqrt(C * k * k)).astype(dtype)
        b = rng.standard_normal(OC).astype(dtype)
        got = {}
        for threads in counts:
            c.set_num_threads(threads)
            got[threads] = fastconv.conv2d(x, w, b, st, pad, dil, G, backend="c")
        c.set_num_threads(2)
        alone = fastconv.conv2d(x[:1], w, b, st, pad, dil, G, backend="c")
        for threads in counts[1:]:
            assert np.array_equal(got[threads], got[1]), (C, OC, k, hw, threads)
        assert np.array_equal(alone[0], got[1][0]), (C, OC, k, hw, "batch")


isa_level = isa_fixture("isa_level")


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_packed_matches_im2col(isa_level, dtype):
    """fc_im2col_packed (the default path's column matrix, in the GEMM's sliver layout) holds
    fc_im2col's values, zero past the last pixel, on random geometries: unequal strides,
    dilations and paddings (padding past the window included), row and pixel ranges cut
    anywhere, slivers of 8, 16 and 32; a third of stride 1 with the output as wide as the
    input on slivers of 16 or 32 (the float AVX2 / AVX-512 paths, im2col_packed_flat*); the
    rest on slivers of 32 take the AVX-512 gathers (im2col_packed_gather_f32; at a column
    stride of 2 the even values of two loads, with blocks across row ends in up to four
    runs and blocks of more runs on the gather), on slivers of 16 the AVX2 ones
    (im2col_packed_gather8_f32)."""
    lib = c.lib
    sfx = "f64" if dtype == np.float64 else "f32"
    im2col, packed = getattr(lib, f"fc_im2col_{sfx}"), getattr(lib, f"fc_im2col_packed_{sfx}")
    rng = np.random.default_rng(91 + isa_level)
    for trial in range(90):
        C, H, W = (int(v) for v in rng.integers(1, [5, 20, 40]))
        KH, KW = (int(v) for v in rng.integers(1, 5, 2))
        sh, sw = (int(v) for v in rng.choice([1, 1, 2, 3], 2))
        dh, dw = (int(v) for v in rng.choice([1, 1, 2, 5], 2))
        ph, pw = (int(v) for v in rng.integers(0, 7, 2))
        if trial % 3 == 0:  # stride 1, output as wide as the input: the AVX-512 float path
            sh = sw = 1
            KW = int(rng.choice([1, 3, 5]))
            pw = (KW - 1) * dw // 2
        OH, OW = _conv_out(H, KH, sh, ph, ph, dh), _conv_out(W, KW, sw, pw, pw, dw)
        if OH < 1 or OW < 1:
            continue
        s = c.conv_shape((1, C, H, W, C, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, 1))
        x = rng.standard_normal((C, H, W)).astype(dtype)
        K, P = C * KH * KW, OH * OW
        r0 = int(rng.integers(0, K))
        r1 = int(rng.integers(r0 + 1, K + 1))
        p0 = int(rng.integers(0, P))
        p1 = int(rng.integers(p0 + 1, P + 1))
        col = np.empty((r1 - r0, p1 - p0), dtype)
        im2col(ptr(x), s, r0, r1, p0, p1, ptr(col))
        nr = int(rng.choice([16, 32] if trial % 3 == 0 else [8, 16, 32]))
        nsl = -(-(p1 - p0) // nr)
        Bp = np.full((nsl, r1 - r0, nr), np.nan, dtype)
        packed(ptr(x), s, r0, r1, p0, p1, nr, ptr(Bp))
        want = np.zeros((r1 - r0, nsl * nr), dtype)
        want[:, :p1 - p0] = col
        got = Bp.transpose(1, 0, 2).reshape(r1 - r0, nsl * nr)
        assert np.array_equal(got, want), (C, H, W, KH, KW, sh, sw, dh, dw, ph, pw, r0, r1,
                                           p0, p1, nr)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ISAS)
def test_pack_a_layout(kernel, dtype):
    """fc_pack_a (the weights, packed once per conv2d call) writes slivers of mr rows,
    k-major, zero rows past M, and nothing past its end; row-major and transposed A."""
    lib = c.lib
    f64 = dtype == np.float64
    code = c.GEMM_KERNELS[kernel]
    mr = lib.fc_gemm_mr(code, f64)
    pack = lib.fc_pack_a_f64 if f64 else lib.fc_pack_a_f32
    rng = np.random.default_rng(61)
    for M, K, extra in [(mr, 16, 0), (mr, 37, 3), (2 * mr + 3, 100, 0), (3, 5, 1), (70, 33, 5)]:
        A = rng.standard_normal((M, K + extra)).astype(dtype)
        S = -(-M // mr)
        want = np.zeros((S * mr, K), dtype)
        want[:M] = A[:, :K]
        want = want.reshape(S, mr, K).transpose(0, 2, 1).reshape(-1)
        for a, rsa, csa in ((A, K + extra, 1), (np.ascontiguousarray(A.T), 1, M)):
            out = np.full(S * mr * K + 40, np.nan, dtype)
            pack(code, M, K, ptr(a), rsa, csa, ptr(out))
            assert np.array_equal(out[: S * mr * K], want)
            assert np.isnan(out[S * mr * K :]).all(), "wrote past the packed block"


@pytest.mark.parametrize("dtype", DTYPES)
def test_col2im_stride_2_pairs(dtype):
    """col2im with column stride 2 and dilation 1 adds rows kw and kw + 1 together (even and
    odd input columns: conv_transpose2d.c and conv2d's input gradient), with dilation 2 each
    row alone: exactly the scatter of the definition, on small integers (exact sums) over
    random geometries, with row blocks that start or end inside a pair, pixel blocks cut
    anywhere, paddings past the window, and odd KW (a last row alone); rows of one to several
    vectors of 16 (AVX-512: fc_col2im_pair512, rows alone too)."""
    lib = c.lib
    col2im = lib.fc_col2im_f64 if dtype == np.float64 else lib.fc_col2im_f32
    rng = np.random.default_rng(61)
    for i in range(60):
        C, H, W = (int(v) for v in rng.integers(1, [4, 12, 30 if i % 2 else 90]))
        KH, KW = int(rng.integers(1, 4)), int(rng.integers(2, 6))
        sh, dh = int(rng.choice([1, 2])), int(rng.choice([1, 2]))
        dw = 2 if i % 4 == 0 else 1  # dilation 2: every row alone
        ph, pw = int(rng.integers(0, 4)), int(rng.integers(0, 6))
        OH, OW = _conv_out(H, KH, sh, ph, ph, dh), _conv_out(W, KW, 2, pw, pw, dw)
        if OH < 1 or OW < 1:
            continue
        s = c.conv_shape((1, C, H, W, C, KH, KW, OH, OW, sh, 2, ph, pw, dh, dw, 1))
        R, P = C * KH * KW, OH * OW
        r0, p0 = int(rng.integers(0, R)), int(rng.integers(0, P))
        r1, p1 = int(rng.integers(r0 + 1, R + 1)), int(rng.integers(p0 + 1, P + 1))
        u = rng.integers(-4, 5, (r1 - r0, p1 - p0)).astype(dtype)
        want = np.zeros((C, H, W), dtype)
        for r in range(r0, r1):
            cc, kh, kw = r // (KH * KW), r % (KH * KW) // KW, r % KW
            for q in range(p0, p1):
                ih, iw = q // OW * sh - ph + kh * dh, q % OW * 2 - pw + kw * dw
                if 0 <= ih < H and 0 <= iw < W:
                    want[cc, ih, iw] += u[r - r0, q - p0]
        got = np.zeros((C, H, W), dtype)
        col2im(ptr(u), p1 - p0, 1, s, r0, r1, p0, p1, ptr(got))
        assert np.array_equal(got, want), (C, H, W, KH, KW, sh, dh, ph, pw, r0, r1, p0, p1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_col2im_transposed(dtype):
    """col2im of a transposed col (ldr = 1: a transposed conv on few pixels computes col^T):
    exactly the scatter of the definition on small integers, for row blocks of whole
    channels (AVX-512, dilation 1 along rows and KW <= 16: one masked add per kernel row,
    fc_col2im_t512) and blocks starting or ending inside a channel, KW past 16, column
    dilation 2, any stride, padding past the window, pixel blocks cut anywhere, padded
    pixel rows (ldp > rows)."""
    lib = c.lib
    col2im = lib.fc_col2im_f64 if dtype == np.float64 else lib.fc_col2im_f32
    rng = np.random.default_rng(62)
    for i in range(60):
        C, H, W = (int(v) for v in rng.integers(1, [4, 14, 40]))
        KH, KW = int(rng.integers(1, 5)), int(rng.choice([1, 2, 3, 4, 7, 16, 17]))
        sh, sw = (int(v) for v in rng.integers(1, 4, 2))
        dh, dw = int(rng.choice([1, 2])), 1 if i % 3 else 2
        ph, pw = int(rng.integers(0, 4)), int(rng.integers(0, 18))
        OH, OW = _conv_out(H, KH, sh, ph, ph, dh), _conv_out(W, KW, sw, pw, pw, dw)
        if OH < 1 or OW < 1:
            continue
        s = c.conv_shape((1, C, H, W, C, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, 1))
        R, P, KK = C * KH * KW, OH * OW, KH * KW
        if i % 2:  # whole channels
            c0 = int(rng.integers(0, C))
            r0, r1 = c0 * KK, int(rng.integers(c0 + 1, C + 1)) * KK
        else:
            r0 = int(rng.integers(0, R))
            r1 = int(rng.integers(r0 + 1, R + 1))
        p0 = int(rng.integers(0, P))
        p1 = int(rng.integers(p0 + 1, P + 1))
        ldp = r1 - r0 + int(rng.integers(0, 3)) * 16
        u = rng.integers(-4, 5, (p1 - p0, ldp)).astype(dtype)
        want = np.zeros((C, H, W), dtype)
        for r in range(r0, r1):
            cc, kh, kw = r // KK, r % KK // KW, r % KW
            for q in range(p0, p1):
                ih, iw = q // OW * sh - ph + kh * dh, q % OW * sw - pw + kw * dw
                if 0 <= ih < H and 0 <= iw < W:
                    want[cc, ih, iw] += u[q - p0, r - r0]
        got = np.zeros((C, H, W), dtype)
        col2im(ptr(u), 1, ldp, s, r0, r1, p0, p1, ptr(got))
        assert np.array_equal(got, want), (C, H, W, KH, KW, sh, sw, dh, dw, ph, pw, r0, r1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_col2im_blocks(dtype):
    """im2col on any block of rows x pixels equals the same block of the full matrix (built
    here from the definition), and col2im is its adjoint."""
    lib, ffi = c.lib, c.ffi
    f64 = dtype == np.float64
    im2col = lib.fc_im2col_f64 if f64 else lib.fc_im2col_f32
    col2im = lib.fc_col2im_f64 if f64 else lib.fc_col2im_f32
    rng = np.random.default_rng(51)
    for _ in range(20):
        x, w, _, yshape, (sh, sw, ph, pw, dh, dw, G) = random_conv(rng, dtype)
        _, C, H, W = x.shape
        KH, KW = w.shape[2:]
        OH, OW = yshape[2:]
        img = x[0]
        full = np.zeros((C * KH * KW, OH * OW))
        for cc in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    for i in range(OH):
                        for j in range(OW):
                            ih, iw = i * sh - ph + kh * dh, j * sw - pw + kw * dw
                            if 0 <= ih < H and 0 <= iw < W:
                                full[(cc * KH + kh) * KW + kw, i * OW + j] = img[cc, ih, iw]
        s = ffi.new(
            "fc_conv_shape *",
            {
                "N": 1,
                "C": C,
                "H": H,
                "W": W,
                "OC": 1,
                "KH": KH,
                "KW": KW,
                "OH": OH,
                "OW": OW,
                "sh": sh,
                "sw": sw,
                "ph": ph,
                "pw": pw,
                "dh": dh,
                "dw": dw,
                "G": 1,
            },
        )
        R, P = full.shape
        r0, p0 = int(rng.integers(0, R)), int(rng.integers(0, P))
        r1, p1 = int(rng.integers(r0, R + 1)), int(rng.integers(p0, P + 1))
        col = np.full((r1 - r0, p1 - p0), np.nan, dtype)
        im2col(ptr(img), s, r0, r1, p0, p1, ptr(col))
        assert np.array_equal(col, full[r0:r1, p0:p1].astype(dtype))
        u = rng.standard_normal((r1 - r0, p1 - p0)).astype(dtype)
        back = np.zeros((C, H, W), dtype)
        col2im(ptr(u), p1 - p0, 1, s, r0, r1, p0, p1, ptr(back))
        # the same from the transposed matrix
        ut = np.ascontiguousarray(u.T)
        back_t = np.zeros((C, H, W), dtype)
        col2im(ptr(ut), 1, r1 - r0, s, r0, r1, p0, p1, ptr(back_t))
        assert np.abs(back_t - back).max() <= TOL[dtype] * max(1.0, float(np.abs(back).max()))
        lhs = float((col.astype(np.float64) * u).sum())
        rhs = float((img.astype(np.float64) * back).sum())
        assert abs(lhs - rhs) <= TOL[dtype] * 10 * max(1.0, float(np.abs(u).sum()))


def test_cpu_info():
    info = c.cpu_info()
    assert info["available"] is True
    assert info["gemm_kernel"] in ("portable", "avx2", "avx512")
    assert info["gemm_kernel"] == info["gemm_kernels"][-1]
    if info["gemm_kernel"] == "avx512":
        assert "avx512f" in info["features"]
    if info["gemm_kernel"] == "avx2":
        assert {"avx2", "fma"} <= set(info["features"])
    mr, nr = info["micro_tile"]["float32"]
    assert mr >= 1 and nr >= 1
    assert info["num_threads"] == c.get_num_threads()


def test_cpu_feature_bits_match_the_c_enum():
    """cpu_info names the bits of fc_cpu_features (enum fc_cpu_feature, fastconv.h), the one
    CPU probe the GEMM, depthwise and pooling kernels all choose from."""
    lib = c.lib
    for i, name in enumerate(c._FEATURE_BITS):
        assert getattr(lib, "FC_CPU_" + name.replace(".", "").upper()) == 1 << i
    bits = lib.fc_cpu_features()
    assert bits == lib.fc_cpu_features()  # probed once, then the same mask
    avx512 = lib.FC_CPU_AVX512F | lib.FC_CPU_AVX512VL | lib.FC_CPU_AVX512BW | lib.FC_CPU_AVX512DQ
    avx2 = lib.FC_CPU_AVX2 | lib.FC_CPU_FMA
    best = 2 if bits & avx512 == avx512 else 1 if bits & avx2 == avx2 else 0
    cap = lib.fc_dwpool_isa(-1)
    try:
        assert lib.fc_dwpool_isa(2) == best  # the depthwise / pooling level, uncapped
    finally:
        lib.fc_dwpool_isa(cap)
    # the GEMM's best is the CPU's best AVX-512 kernel unless the cap (FASTCONV_ISA) is lower
    assert (lib.fc_gemm_best_kernel() == lib.FC_GEMM_AVX512) == (
        bool(bits & lib.FC_CPU_AVX512F) and lib.fc_isa_cap_level() >= 2)
