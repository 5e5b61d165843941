"""C engine: ndarray -> cffi pointers -> ``lib.fc_*`` kernels compiled from csrc/.

Unavailable (with the reason) when the compiled extension ``fastconv._fastconv_c`` is missing,
e.g. in a source tree that was never built: run ``pip install -e .``.

conv2d variants (``variant=``; None = the best):

- ``"v1_direct"``   plain loops
- ``"v2_im2col"``   im2col + naive GEMM
- ``"v3_blocked"``  im2col + packed, cache-blocked GEMM (portable C micro-kernel)
- ``"v4_simd"``     v3 with the CPU's vector micro-kernel (AVX-512, AVX2+FMA or portable)
- ``"v5_threads"``  v4 on the engine's threads
- ``"winograd_f2"`` 3x3 stride-1 convs (any dilation) by Winograd F(2x2, 3x3): input / output
  transforms around 16 packed GEMMs (csrc/winograd.c); a dilated conv is tiled phase by phase
- ``"winograd_f4"`` the same with F(4x4, 3x3): 36 GEMMs, 4x fewer multiplies than the direct
  sum, float32 error up to a few 1e-6 in norm (docs/conv_variants.md)
- ``"winograd_f3"`` the same with F(3x3, 3x3): 25 GEMMs, 3.24x fewer multiplies; its tiles fit
  the short phases of dilated convs (docs/conv_variants.md)
- ``"direct"``      no im2col: blocks of output channels x vectors of output pixels held in
  registers over every tap, the input rows copied once per task into a padded strip split
  by stride phase (csrc/conv_direct.c); any geometry
- ``"implicit_gemm"`` no im2col: blocks of 14 output pixels x 32 output channels (14 x 16
  for groups of at most 16, AVX2's 12 x 8 for groups of at most 8) in registers, the input
  broadcast from planes per column tap on small planes, else per stride phase
  (csrc/conv_igemm.c); any geometry

None picks winograd_f4 or winograd_f2 by the batch's tile count, and for dilated layers the
one of f2, f3, f4 with the fewest multiplies (docs/conv_variants.md; the transformed weights
are cached between calls, :func:`set_winograd_cache_limit`) for float32 3x3 stride-1 layers
with at least 32 input and output channels per group, ``"direct"`` for
grouped convs with at most 16 output channels per group, for convs with at most 4 input
channels per group and a window of 9 taps or more (a network's stem) and for 1-D convs
(float32: at most 128 input channels per group) whose images x groups share out over the
threads or whose output row folds into rows for them (stride 1, a group's weights at most
512 KB), ``"implicit_gemm"``
where ``"direct"`` would run with at least 8 output channels per group (float64: 8 with
AVX-512, 4 with AVX2) on an output plane of at most 64 pixels, or of at most 196 with
at least 16 input channels per group, else
the im2col path (v5 with im2col into the packed layout); a Winograd call whose x or w holds a
NaN or Inf runs the im2col path (docs/conv_variants.md).

Engine settings: :func:`set_num_threads` (default:
``fastconv.backends._registry.get_num_threads()``, which honours ``FASTCONV_NUM_THREADS``),
:func:`set_workspace_limit` (the most memory one call allocates besides its output, 64 MiB
by default) and :func:`cpu_info`. Any number of Python threads may call at once (cffi releases
the GIL during the call).

Threads: the kernels run on the engine's own thread pool (csrc/parallel.c), not OpenMP. The
thread count is an upper bound: a call uses one thread per ~100 us of estimated work (10 us
when a worker is still awake from the previous call); while other programs take the cores,
calls shorter than 4x the time recently lost to them run alone, but for a probe now and then
that shares to see whether the loss is gone (see parallel.c and ``bench/contention.py``). One
call at a time uses the pool; a call made meanwhile from another Python thread runs on its own
thread. ``lib.fc_last_team()`` is the number of threads the calling thread's last parallel C
call used.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from .._registry import get_num_threads as _default_threads

ABI_VERSION = 8

try:
    from ..._fastconv_c import ffi, lib  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the build
    AVAILABLE_REASON = f"unavailable: compiled extension not built ({exc}); run `pip install -e .`"
else:
    if lib.fc_abi_version() != ABI_VERSION:  # pragma: no cover
        AVAILABLE_REASON = (
            f"unavailable: extension ABI {lib.fc_abi_version()} != {ABI_VERSION}; rebuild it"
        )
    else:
        AVAILABLE_REASON = "available"

#: conv2d variants, in ladder order (the C enum fc_conv_variant numbers them from 1).
CONV2D_VARIANTS = (
    "v1_direct", "v2_im2col", "v3_blocked", "v4_simd", "v5_threads", "winograd_f2", "winograd_f4",
    "direct", "implicit_gemm", "winograd_f3",
)
#: Variants that run one geometry only: variant -> (KH, KW, sh, sw, dh, dw), None: any; the public
#: conv2d raises ValueError on any other (_registry.check_variant_geometry).
CONV2D_VARIANT_GEOMETRY = {
    "winograd_f2": (3, 3, 1, 1, None, None),
    "winograd_f3": (3, 3, 1, 1, None, None),
    "winograd_f4": (3, 3, 1, 1, None, None),
}
#: GEMM micro-kernels (the C enum fc_gemm_kernel), by name: the values ``isa=`` accepts.
GEMM_KERNELS = {"naive": -1, "portable": 0, "avx2": 1, "avx512": 2}
#: Default bound on the extra memory of one call (im2col chunks and packed panels).
DEFAULT_WORKSPACE_LIMIT = 64 * 2**20

# Bits of fc_cpu_features() (enum fc_cpu_feature in csrc/fastconv.h).
_FEATURE_BITS = ("sse4.2", "avx", "avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512dq")

_num_threads: Optional[int] = None
_workspace_limit = DEFAULT_WORKSPACE_LIMIT


def set_num_threads(n: int) -> None:
    """The most threads a C kernel uses; ``fastconv.set_num_threads`` calls this."""
    from ..._shapes import as_int

    global _num_threads
    _num_threads = as_int(n, "n", minimum=1)
    if AVAILABLE_REASON == "available":
        lib.fc_set_threads(_num_threads)


def get_num_threads() -> int:
    # every conv call asks (an import statement here took 1 us of a 5 us call)
    return _default_threads() if _num_threads is None else _num_threads


def set_workspace_limit(nbytes: Optional[int]) -> None:
    """Bound the memory one conv call allocates besides its output (None: back to 64 MiB).

    The im2col column matrix is built in chunks of rows x output pixels small enough for the
    bound; a tiny bound gives many chunks, never a wrong answer. Below what one micro-tile
    needs (a few KiB) the kernels use that minimum.
    """
    from ..._shapes import as_int

    global _workspace_limit
    _workspace_limit = (
        DEFAULT_WORKSPACE_LIMIT if nbytes is None else as_int(nbytes, "nbytes", minimum=1)
    )


def get_workspace_limit() -> int:
    return _workspace_limit


def set_auto_winograd(enabled: bool) -> None:
    """Let conv2d's automatic choice (``variant=None``) use the Winograd variants (the
    default) or not: then None always runs the im2col path (what ``bench/winograd.py``
    times as "best(im2col)"). Explicit ``variant="winograd_f2" / "winograd_f4"`` still run."""
    if AVAILABLE_REASON == "available":
        lib.fc_winograd_set_auto(1 if enabled else 0)


#: Default byte budget of the cache of Winograd's transformed weights.
DEFAULT_WINOGRAD_CACHE_LIMIT = 256 * 2**20


def set_winograd_cache_limit(nbytes: Optional[int]) -> None:
    """Bound the memory of the cache of Winograd's transformed weights (None: back to the
    default, 256 MiB; 0: no cache, every Winograd call transforms its weights).

    The cache keeps, per weight array (its address and geometry), the packed transformed
    weights and a copy of the weights, and serves them only while the weights are equal bit
    for bit to that copy (docs/conv_variants.md). Entries beyond the budget are evicted least
    recently used first; lowering the budget evicts at once (entries in use are freed when
    their call ends).

    Raises ``TypeError`` when ``nbytes`` is not an integer, ``ValueError`` when it is negative.
    """
    from ..._shapes import as_int

    limit = DEFAULT_WINOGRAD_CACHE_LIMIT if nbytes is None else as_int(nbytes, "nbytes")
    if AVAILABLE_REASON == "available":
        lib.fc_winograd_cache_set_limit(limit)


def winograd_cache_info() -> Dict[str, int]:
    """The cache of Winograd's transformed weights: ``entries``, ``bytes`` (transformed
    weights and weight copies held), ``hits``, ``misses`` (calls since the process started,
    counted while the cache is on) and ``limit`` (the byte budget)."""
    if AVAILABLE_REASON != "available":
        return {"entries": 0, "bytes": 0, "hits": 0, "misses": 0, "limit": 0}
    out = ffi.new("int64_t[5]")
    lib.fc_winograd_cache_info(out)
    keys = ("entries", "bytes", "hits", "misses", "limit")
    return {k: int(out[i]) for i, k in enumerate(keys)}


def _kernel_code(isa: Optional[str]) -> int:
    # isa is None or a key of GEMM_KERNELS (callers check it: _registry.check_isa)
    return int(lib.FC_GEMM_AUTO) if isa is None else GEMM_KERNELS[isa]


#: FASTCONV_ISA values -> the instruction-set level the C kernels may use at most.
ISA_LEVELS = {"portable": 0, "avx2": 1, "avx512": 2}


def _cap_isa_from_environment() -> None:
    """FASTCONV_ISA=portable|avx2|avx512 caps the kernels the C backend picks by itself (GEMM
    micro-kernel, depthwise, pooling, Winograd, filters) at that instruction set, e.g. an
    AVX2-only run on an AVX-512 machine; an explicit ``isa=`` still runs what it names."""
    import os
    import warnings

    value = os.environ.get("FASTCONV_ISA")
    if not value:
        return
    level = ISA_LEVELS.get(value.strip().lower())
    if level is None:
        warnings.warn(f"FASTCONV_ISA={value!r} is not one of {', '.join(ISA_LEVELS)}; ignored",
                      stacklevel=2)
        return
    lib.fc_dwpool_isa(level)


def cpu_info() -> Dict[str, Any]:
    """The CPU's features, the GEMM micro-kernel the C engine picked and its thread count."""
    if AVAILABLE_REASON != "available":
        return {"available": False, "reason": AVAILABLE_REASON}
    bits = lib.fc_cpu_features()
    best = lib.fc_gemm_best_kernel()
    name = ffi.string(lib.fc_gemm_kernel_name(best)).decode()
    return {
        "available": True,
        "features": [f for i, f in enumerate(_FEATURE_BITS) if bits >> i & 1],
        "gemm_kernel": name,
        "gemm_kernels": [k for k, v in GEMM_KERNELS.items() if v <= best],
        "micro_tile": {
            "float32": (lib.fc_gemm_mr(best, 0), lib.fc_gemm_nr(best, 0)),
            "float64": (lib.fc_gemm_mr(best, 1), lib.fc_gemm_nr(best, 1)),
        },
        "num_threads": get_num_threads(),
        "pool_workers": lib.fc_pool_workers(),
        "openmp_max_threads": lib.fc_openmp_max_threads(),
        "workspace_limit": _workspace_limit,
    }


if AVAILABLE_REASON == "available":
    from ._cffi import CTYPES, conv_shape, epilogue, is_f32, ptr

    def _shape(x, y, w_shape, sh, sw, ph, pw, dh, dw, groups, oc):
        # the fields of fc_conv_shape in their order; one struct per geometry (_cffi.conv_shape)
        N, C, H, W = x.shape
        return conv_shape(
            (N, C, H, W, oc, w_shape[2], w_shape[3], y.shape[2], y.shape[3], sh, sw, ph, pw,
             dh, dw, groups)
        )

    def _variant_code(variant: Optional[str]) -> int:
        # variant is None or one of CONV2D_VARIANTS (the public function checked it)
        return int(lib.FC_CONV_BEST) if variant is None else CONV2D_VARIANTS.index(variant) + 1

    def _check(rc: int, op: str) -> None:
        if rc:
            raise MemoryError(f"{op}: the C engine could not allocate its workspace")

    def _conv_head(name, x, w, y, geometry, variant=None, isa=None):
        # conv2d's or conv_transpose2d's C function, shape struct and codes: what precedes the
        # thread count and workspace bound, the same for a call and for its bound form (bind)
        if name == "conv2d":
            fn = lib.fc_conv2d_f32 if is_f32(x) else lib.fc_conv2d_f64
            return (fn, _shape(x, y, w.shape, *geometry, w.shape[0]),
                    (_variant_code(variant), _kernel_code(isa)))
        fn = lib.fc_conv_transpose2d_f32 if is_f32(x) else lib.fc_conv_transpose2d_f64
        return fn, _shape(x, y, w.shape, *geometry, y.shape[1]), (_kernel_code(isa),)

    def conv2d(x, w, b, y, sh, sw, ph, pw, dh, dw, groups, variant=None, *, isa=None):
        # x is (N, C, H, W), w is (OC, C/G, KH, KW), b is (OC,) or None, y is (N, OC, OH, OW).
        # isa: the GEMM micro-kernel of v4 / v5 / best (None = the best this CPU runs).
        fn, s, codes = _conv_head("conv2d", x, w, y, (sh, sw, ph, pw, dh, dw, groups), variant,
                                  isa)
        rc = fn(ptr(x), ptr(w), ptr(b), ptr(y), s, *codes, get_num_threads(), _workspace_limit)
        _check(rc, "conv2d")

    #: enum fc_conv_path (csrc/fastconv.h) -> what cpu_info calls it
    CONV_PATHS = {1: "gemm 1x1 (x read in place)", 2: "im2col + packed gemm",
                  3: "winograd F(2x2,3x3)", 4: "winograd F(4x4,3x3)",
                  5: "direct (no im2col)", 6: "winograd F(3x3,3x3)",
                  7: "implicit gemm (no im2col)"}

    def conv2d_path(shape: tuple, dtype: Any) -> str:
        """The path the default conv2d takes for ``shape`` (the fc_conv_shape fields: N, C,
        H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, G) in ``dtype``."""
        fn = lib.fc_conv2d_path_f32 if np.dtype(dtype) == np.float32 else lib.fc_conv2d_path_f64
        return CONV_PATHS[fn(conv_shape(tuple(int(v) for v in shape)), get_num_threads())]

    #: enum fc_dw_path (csrc/fastconv.h) -> what cpu_info calls it
    DEPTHWISE_PATHS = {1: "rows read in place", 2: "rows through a padded copy",
                       3: "flat plane, avx512", 4: "3x3 row-pair kernel, avx512",
                       5: "3x3 row-pair kernel, avx2", 6: "16 channels in the lanes, avx512"}

    def depthwise_path(shape: tuple, dtype: Any) -> str:
        """The path the depthwise kernel takes for ``shape`` (as conv2d_path's) in
        ``dtype``."""
        fn = (lib.fc_depthwise_path_f32 if np.dtype(dtype) == np.float32
              else lib.fc_depthwise_path_f64)
        return DEPTHWISE_PATHS[fn(conv_shape(tuple(int(v) for v in shape)))]

    def depthwise_conv2d_pays(C: int, OC: int, KH: int, KW: int, sh: int, sw: int) -> bool:
        """Whether a depthwise conv (groups = C, OC = m*C) of this window and stride runs
        faster on the depthwise kernel than on conv2d's own choice. The depthwise kernel
        computes each of an input channel's m output channels in a pass of its own, conv2d's
        direct kernel all m from one strip: the depthwise kernel is ahead for m = 1, and on
        3x3-or-smaller windows at stride 1 for any m (m = 4 .. 32: 0.8-1.0x the time), even at
        m = 2 up to 5x5; elsewhere conv2d is (m = 2 at stride 2 and 5x5: 2x; m = 8 on 5x5:
        1.8x; a raw-audio front end, 1 -> 64 channels, 80 taps at stride 4: 0.39 against 3.7
        ms; one thread, AMD EPYC, Zen 4, bench/RESULTS.md)."""
        m, taps = OC // max(C, 1), KH * KW
        return m <= 1 or (sh == 1 and sw == 1 and (taps <= 9 or (m <= 2 and taps <= 25)))

    def conv2d_fused(x, w, b, y, sh, sw, ph, pw, dh, dw, groups, scale, shift, residual,
                     activation, variant=None, *, isa=None):
        # conv2d, then the epilogue on each output block while it is in cache (the default
        # variant; a ladder step gets it in a pass after its conv)
        s = _shape(x, y, w.shape, sh, sw, ph, pw, dh, dw, groups, w.shape[0])
        fn = lib.fc_conv2d_ep_f32 if is_f32(x) else lib.fc_conv2d_ep_f64
        rc = fn(ptr(x), ptr(w), ptr(b), ptr(y), s, _variant_code(variant), _kernel_code(isa),
                get_num_threads(), _workspace_limit, epilogue(scale, shift, residual, activation))
        _check(rc, "conv2d")

    def conv_transpose2d(x, w, b, y, sh, sw, ph, pw, dh, dw, groups, *, isa=None):
        # x is (N, C, H, W), w is (C, OC/G, KH, KW), b is (OC,) or None, y is (N, OC, OH, OW).
        fn, s, codes = _conv_head("conv_transpose2d", x, w, y, (sh, sw, ph, pw, dh, dw, groups),
                                  isa=isa)
        rc = fn(ptr(x), ptr(w), ptr(b), ptr(y), s, *codes, get_num_threads(), _workspace_limit)
        _check(rc, "conv_transpose2d")

    def linear(x, w, b, y):
        # x is (N, K), w is (O, K), b is (O,) or None, y is (N, O), one floating dtype, all
        # C-contiguous: y = x w^T + b on the engine's threads (csrc/linear.c)
        fn = lib.fc_linear_f32 if is_f32(x) else lib.fc_linear_f64
        fn(ptr(x), ptr(w), ptr(b), ptr(y), x.shape[0], x.shape[1], w.shape[0], get_num_threads())

    lib.fc_set_threads(get_num_threads())  # honours FASTCONV_NUM_THREADS from the start
    _cap_isa_from_environment()

    from .pool import *  # noqa: E402,F401,F403  (depthwise, separable and pooling kernels)
    from .pool import bind_kernel

    _fb, _NULL = ffi.from_buffer, ffi.NULL

    def _bind_conv(name, arrays, y, args, kwargs):
        # conv2d / conv_transpose2d bound to one shape: the C function, the shape struct and
        # the codes made once; a run passes the pointers, the thread count and the workspace
        # bound (both settings may change between runs)
        allowed = {"variant"} if name == "conv2d" else set()
        if not kwargs.keys() <= allowed:
            return None
        x, w, _ = arrays
        fn, s, codes = _conv_head(name, x, w, y, args, kwargs.get("variant"))
        ct = CTYPES[x.dtype]

        def run(x, w, b, y, idx):
            rc = fn(_fb(ct, x), _fb(ct, w), _NULL if b is None else _fb(ct, b), _fb(ct, y), s,
                    *codes, get_num_threads(), _workspace_limit)
            if rc:
                _check(rc, name)

        return run

    def bind(name, arrays, y, idx, args, kwargs):
        """Kernel ``name`` bound to the shapes and dtype of ``arrays``, ``y`` and ``idx`` and
        to its other arguments (the backend-level ``bind`` of fastconv/backends/__init__.py):
        what a repeated public call runs, passing only what may change between calls (with
        the rest of the plan's shortening, one thread, us a call: 1x1x7x7 conv2d 3x3 7.2 ->
        4.3, max_pool2d 5.8 -> 3.4, adaptive_avg_pool2d 5.1 -> 3.0; AMD EPYC, Zen 4;
        bench/RESULTS.md).
        None where the kernel has no bound form, or where this module's kernel is not the
        engine's own any more (replaced, as a test's spy is: it then runs as it is)."""
        own = _OWN_KERNELS.get(name)
        if own is None or globals().get(name) is not own:
            return None
        if name in ("conv2d", "conv_transpose2d"):
            return _bind_conv(name, arrays, y, args, kwargs)
        return None if kwargs else bind_kernel(name, arrays, y, idx, args)

    #: The kernels with a bound form, as this module defines them.
    _OWN_KERNELS = {k: globals()[k] for k in (
        "conv2d", "conv_transpose2d", "depthwise_conv2d", "max_pool2d", "avg_pool2d",
        "adaptive_avg_pool2d", "adaptive_max_pool2d")}
