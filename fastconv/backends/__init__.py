"""Engines ("backends") of fastconv and the kernel contract they all implement.

Every engine is a module in this package exposing kernels with the same names and
signatures. The public functions in ``fastconv.conv`` / ``fastconv.pool`` / ``fastconv.grad``
validate every argument, compute every output size (``fastconv._shapes``), convert the
arrays and allocate every output; a kernel only computes. Kernels never validate, never
allocate their outputs and never return anything: they fill the output arrays they are given.

Contract for every kernel
-------------------------
- Arrays are C-contiguous, all of one dtype, float32 or float64 (``idx`` arrays are int64).
  Output arrays arrive uninitialised (the tests fill them with NaN first): a kernel must
  write every element of every output it is given.
- Integer parameters are Python ints, already validated and normalised to 2-D pairs;
  1-D ops reach the kernels as 2-D ops with H = 1 (KH = 1, sh = dh = 1, ph = 0).
- ``ph, pw`` are the top / left zero padding. Input positions outside [0, H) x [0, W) read
  as zero for convolutions and are skipped by pooling; the bottom / right padding is implied
  by the output size (it may differ from the top / left, as with padding='same').
- Non-zero padding modes (reflect, replicate, circular) are applied by the public function
  with ``numpy.pad`` before the kernel runs; kernels only ever see zero padding.
- Output sizes are taken from the output arrays' shapes.

Kernels (names are the same in every engine)
--------------------------------------------
conv2d(x, w, b, y, sh, sw, ph, pw, dh, dw, groups, variant=None)
    x (N, C, H, W), w (OC, C/G, KH, KW), b (OC,) or None, y (N, OC, OH, OW).
    y[n, o, i, j] = b[o] + sum_{c in group(o), kh, kw}
                    w[o, c', kh, kw] * x[n, c, i*sh - ph + kh*dh, j*sw - pw + kw*dw]
    ``variant`` names an optimisation step of the engine's ladder (None = the best).
depthwise_conv2d(x, w, b, y, sh, sw, ph, pw, dh, dw)
    x (N, C, H, W), w (C*m, 1, KH, KW), y (N, C*m, OH, OW); output channel o reads input
    channel o // m (the same as conv2d with groups = C).
separable_conv2d(x, wd, bd, wp, bp, y, sh, sw, ph, pw, dh, dw)            (optional)
    depthwise (wd (C*m, 1, KH, KW), bd) then pointwise (wp (OC, C*m, 1, 1), bp), y (N, OC, OH, OW).
    An engine without it gets depthwise_conv2d followed by a 1x1 conv2d.
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

Engine-level hooks (optional; defaults in ``fastconv.backends._registry``)
------------------------------------------------------------------
AVAILABLE_REASON: str     "available", or why the engine cannot run here.
prepare(a, dtype)         turn an input into what the kernels take (default: a contiguous
                          NumPy array of ``dtype``).
empty(shape, dtype)       allocate an output (default: numpy.empty).
finish(y, host)           turn an output back into what the user gets (default: identity).
"""
