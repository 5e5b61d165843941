"""The backends of fastconv and the kernel contract they all implement.

A backend is a module (or package) of this one, picked by the ``backend=`` keyword
(``fastconv.backends._registry.BACKENDS``): "c" runs ``c``, "numba" ``numba_cpu``, "cuda"
``numba_cuda`` and "reference" ``reference``, the living definition against which every
other backend is tested. Each exposes kernels with the names in :data:`KERNEL_NAMES` and the
signatures below. The public functions
in ``fastconv.ops`` (conv, pool, grad) validate every argument, compute every output size
(``fastconv._shapes``), convert the arrays and allocate every output; a kernel only computes.
Kernels never validate, never allocate their outputs and never return anything: they fill
the output arrays they are given.

Contract for every kernel
-------------------------
- Arrays are C-contiguous, aligned, all of one dtype, float32 or float64 (``idx`` arrays
  are int64): the public functions copy strided, unaligned or read-only views as needed.
  Output arrays arrive uninitialised (the tests fill them with NaN first): a kernel must
  write every element of every output it is given.
- Integer parameters are Python ints, already validated and normalised to 2-D pairs;
  1-D ops reach the kernels as 2-D ops with H = 1 (KH = 1, sh = dh = 1, ph = 0).
- ``ph, pw`` are the top / left zero padding. Input positions outside [0, H) x [0, W) read
  as zero for convolutions and are skipped by pooling; the bottom / right padding is implied
  by the output size (it may differ from the top / left, as with padding='same').
- Non-zero padding modes (reflect, replicate, circular) are applied by the public function
  with ``numpy.pad`` before the kernel runs; kernels only ever see zero padding.
- Non-finite values follow IEEE arithmetic and reach exactly the outputs that read them
  (docs/nonfinite.md). A convolution's padded tap is a zero input that is multiplied like
  any other: 0 x NaN = 0 x Inf = NaN, so a NaN or +-Inf weight makes every output of its
  channel non-finite, also where its tap lies in the padding. A kernel that skips padded
  taps (exact for finite weights) must still give NaN there. A transposed convolution has
  no padded taps: a weight reaches only the outputs its scatter writes. Pooling skips the
  padding. No kernel may mix values across outputs (a Winograd or FFT scheme would spread
  one NaN over a tile or a plane): such a scheme must detect non-finite inputs and fall back.
- Output sizes are taken from the output arrays' shapes.

Kernels (names are the same in every backend)
---------------------------------------------
conv2d(x, w, b, y, sh, sw, ph, pw, dh, dw, groups, variant=None)
    x (N, C, H, W), w (OC, C/G, KH, KW), b (OC,) or None, y (N, OC, OH, OW).
    y[n, o, i, j] = b[o] + sum_{c in group(o), kh, kw}
                    w[o, c', kh, kw] * x[n, c, i*sh - ph + kh*dh, j*sw - pw + kw*dw]
    ``variant`` names an optimisation step of the backend's ladder (None = the best); it is
    None or one of the backend's ``CONV2D_VARIANTS``, checked before the kernel runs
    (``_registry.check_variant``). A backend without CONV2D_VARIANTS ignores it.
depthwise_conv2d(x, w, b, y, sh, sw, ph, pw, dh, dw)
    x (N, C, H, W), w (C*m, 1, KH, KW), y (N, C*m, OH, OW); output channel o reads input
    channel o // m (the same as conv2d with groups = C).
separable_conv2d(x, wd, bd, wp, bp, y, sh, sw, ph, pw, dh, dw)            (optional)
    depthwise (wd (C*m, 1, KH, KW), bd) then pointwise (wp (OC, C*m, 1, 1), bp), y (N, OC, OH, OW).
    A backend without it gets depthwise_conv2d followed by a 1x1 conv2d.
conv_transpose2d(x, w, b, y, sh, sw, ph, pw, dh, dw, groups)
    x (N, C, H, W), w (C, OC/G, KH, KW), y (N, OC, OH, OW): the adjoint of conv2d,
    y[n, o, i*sh - ph + kh*dh, j*sw - pw + kw*dw] += x[n, c, i, j] * w[c, o', kh, kw]
    (plus b[o]); positions outside y are dropped. OH already includes output_padding.
max_pool2d(x, y, idx, kh, kw, sh, sw, ph, pw, dh, dw)
    x (N, C, H, W), y (N, C, OH, OW), idx int64 (N, C, OH, OW) or None.
    Scan the window's in-bounds positions row by row; a value replaces the running maximum
    when it is greater or NaN (so NaN propagates). The running maximum starts at -inf with
    the index of the window's first in-bounds position. idx holds ih * W + iw.
avg_pool2d(x, y, kh, kw, sh, sw, ph, pw, count_include_pad, divisor)
    divisor = 0 means none. With hs = i*sh - ph, he = min(hs + kh, H + ph) (likewise w):
    pool = (he - hs) * (we - ws) before clipping to the input; after clipping
    (hs = max(hs, 0), he = min(he, H)) the sum runs over the clipped window and is divided
    by ``divisor`` if given, else by ``pool`` if count_include_pad, else by the clipped area.
adaptive_avg_pool2d(x, y) / adaptive_max_pool2d(x, y, idx)
    Output bin i along an axis covers [floor(i*In/Out), ceil((i+1)*In/Out)). Max: same
    NaN and index rules as max_pool2d. idx int64 or None.
Backward kernels (used by ``fastconv.grad``):
max_pool2d_backward(gy, idx, gx)
    gy (N, C, OH, OW), idx int64 (N, C, OH, OW) from a max or adaptive max pool, gx (N, C, H, W):
    gx = 0, then gx[n, c].flat[idx[n, c, i, j]] += gy[n, c, i, j]; an index outside [0, H*W)
    (a window wholly in the padding: output -inf, index past the plane, as torch) is skipped.
avg_pool2d_backward(gy, gx, kh, kw, sh, sw, ph, pw, count_include_pad, divisor)
    the adjoint of avg_pool2d: each gy element spread over its clipped window, divided by
    the same divisor as in the forward pass.
adaptive_avg_pool2d_backward(gy, gx)
    the adjoint of adaptive_avg_pool2d.

Fused kernels (optional; ``fastconv.fused`` and fastconv.nn's inference path use them)
---------------------------------------------------------------------------------------
conv2d_fused(x, w, b, y, sh, sw, ph, pw, dh, dw, groups, scale, shift, residual, activation,
             variant=None)
depthwise_conv2d_fused(x, w, b, y, sh, sw, ph, pw, dh, dw, scale, shift, residual, activation)
    conv2d / depthwise_conv2d, then in the same pass y = act(scale[o] * y + shift[o] +
    residual) (``reference.epilogue`` is the definition): scale and shift (OC,) or None,
    residual shaped as y or None, activation None, "relu" or "relu6". A backend without them
    gets its plain kernel followed by ``reference.epilogue``.

Backend-level names (optional; the defaults live in ``fastconv.backends._registry``)
-----------------------------------------------------------------------------------
AVAILABLE_REASON: str       "available" (or "available (...)"), else why the backend cannot
                            run here (default: "available").
CONV2D_VARIANTS: tuple      the names conv2d's ``variant=`` accepts, slowest first.
prepare(a, dtype)           an input as the kernels take it: ``a`` is what the user passed,
                            ``dtype`` the compute dtype (default: a C-contiguous NumPy array
                            of ``dtype``).
empty(shape, dtype)         allocate an output (default: numpy.empty; NaN-filled when
                            FASTCONV_POISON is set).
finish(y, dtype, device)    an output as the user gets it: ``y`` already has the user's
                            shape, ``dtype`` is the output dtype, ``device`` whether the
                            inputs were CUDA device arrays (default: ``y`` cast to ``dtype``).
bind(name, arrays, y, idx, args, kwargs)
                            kernel ``name`` bound to the shapes and dtype of ``arrays``
                            (its inputs, None where absent), ``y`` and ``idx`` (None where
                            the kernel takes none) and to its other arguments: a callable
                            run(*arrays, y, idx) that a repeated public call of that shape
                            runs (fastconv/ops/_plans.py), or None (default: the kernel
                            itself, called with ``args`` and ``kwargs``). It does only what
                            may change between calls (pointers, the thread count).
"""

#: The kernels of the contract, in the order above (OPTIONAL_KERNELS may be missing): the one
#: list of their names, which every backend uses.
KERNEL_NAMES = (
    "conv2d",
    "depthwise_conv2d",
    "separable_conv2d",
    "conv_transpose2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d_backward",
    "conv2d_fused",
    "depthwise_conv2d_fused",
)
#: Kernels a backend may leave out (the public functions then compose others).
OPTIONAL_KERNELS = ("separable_conv2d", "conv2d_fused", "depthwise_conv2d_fused")
