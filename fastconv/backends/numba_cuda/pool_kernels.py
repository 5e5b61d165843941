"""@cuda.jit pooling kernels of the numba_cuda backend (built once per dtype by :func:`build`)
and the dtype-generic array kernels of its hooks.

  max_pool2d / adaptive_max_pool2d    one thread per output; NaN propagates, indices optional
  avg_pool2d / adaptive_avg_pool2d    one thread per output, divisor as in the kernel contract
  max_pool2d_backward                 an atomic scatter through the indices (gx zeroed first)
  avg_pool2d_backward                 gather: one thread per input element
  adaptive_avg_pool2d_backward        gather: one thread per input element
  fill, copy1 .. copy4 (COPY)         a[:] = value; dst[...] = src[...] cast, for 1-D to 4-D

The kernels see (N*C, H, W) planes: launch.py merges N and C (a free reshape). They are built
by a factory closing over the scalar type ``dt``, as in conv_kernels.py. Run:
``pytest tests/test_cuda_engine.py -k pool``.
"""

from __future__ import annotations

import math

from numba import cuda

NEG_INF = -math.inf


def build(dt):
    """The pooling kernels for the scalar type ``dt``, by name."""

    @cuda.jit
    def max_pool2d(x, y, idx, kh, kw, sh, sw, ph, pw, dh, dw):
        # x is (P, H, W), y and idx (int64 or None) are (P, OH, OW); idx = ih * W + iw.
        # The first in-bounds tap is taken unconditionally (the same as starting from -inf
        # with its index); later taps replace the maximum when greater or NaN.
        P, H, W = x.shape
        OH, OW = y.shape[1], y.shape[2]
        total = P * OH * OW
        t = cuda.grid(1)
        while t < total:
            j = t % OW
            r = t // OW
            i = r % OH
            q = r // OH
            best = dt(NEG_INF)
            # a window with no tap inside the input keeps -inf and the index of its first
            # tap at or after row / column 0 (past the plane), as the other backends and torch
            h0 = i * sh - ph
            w0 = j * sw - pw
            if h0 < 0:
                h0 += ((-h0 + dh - 1) // dh) * dh
            if w0 < 0:
                w0 += ((-w0 + dw - 1) // dw) * dw
            arg = h0 * W + w0
            first = True
            for a in range(kh):
                ih = i * sh - ph + a * dh
                if 0 <= ih < H:
                    for c in range(kw):
                        iw = j * sw - pw + c * dw
                        if 0 <= iw < W:
                            v = x[q, ih, iw]
                            if first or v > best or v != v:
                                best = v
                                arg = ih * W + iw
                                first = False
            y[q, i, j] = best
            if idx is not None:
                idx[q, i, j] = arg
            t += cuda.gridsize(1)

    @cuda.jit
    def adaptive_max_pool2d(x, y, idx):
        # x is (P, H, W), y and idx (int64 or None) are (P, OH, OW); bin i covers rows
        # [floor(i*H/OH), ceil((i+1)*H/OH)). NaN and index rules as max_pool2d.
        P, H, W = x.shape
        OH, OW = y.shape[1], y.shape[2]
        total = P * OH * OW
        t = cuda.grid(1)
        while t < total:
            j = t % OW
            r = t // OW
            i = r % OH
            q = r // OH
            h0 = (i * H) // OH
            h1 = ((i + 1) * H + OH - 1) // OH
            w0 = (j * W) // OW
            w1 = ((j + 1) * W + OW - 1) // OW
            best = x[q, h0, w0]
            arg = h0 * W + w0
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    v = x[q, ih, iw]
                    if v > best or v != v:
                        best = v
                        arg = ih * W + iw
            y[q, i, j] = best
            if idx is not None:
                idx[q, i, j] = arg
            t += cuda.gridsize(1)

    @cuda.jit(device=True)
    def avg_divisor(i, j, H, W, kh, kw, sh, sw, ph, pw, cip, divisor):
        # The divisor of avg_pool2d's output (i, j) (see the kernel contract).
        if divisor != 0:
            return divisor
        hs = i * sh - ph
        ws = j * sw - pw
        he = min(hs + kh, H + ph)
        we = min(ws + kw, W + pw)
        if cip:
            return (he - hs) * (we - ws)
        return (min(he, H) - max(hs, 0)) * (min(we, W) - max(ws, 0))

    @cuda.jit
    def avg_pool2d(x, y, kh, kw, sh, sw, ph, pw, cip, divisor):
        # x is (P, H, W), y is (P, OH, OW); divisor 0 = none
        P, H, W = x.shape
        OH, OW = y.shape[1], y.shape[2]
        total = P * OH * OW
        t = cuda.grid(1)
        while t < total:
            j = t % OW
            r = t // OW
            i = r % OH
            q = r // OH
            hs = max(i * sh - ph, 0)
            ws = max(j * sw - pw, 0)
            he = min(i * sh - ph + kh, H)
            we = min(j * sw - pw + kw, W)
            acc = dt(0)
            for ih in range(hs, he):
                for iw in range(ws, we):
                    acc += x[q, ih, iw]
            d = avg_divisor(i, j, H, W, kh, kw, sh, sw, ph, pw, cip, divisor)
            y[q, i, j] = acc / dt(d)
            t += cuda.gridsize(1)

    @cuda.jit
    def adaptive_avg_pool2d(x, y):
        # x is (P, H, W), y is (P, OH, OW); bins as adaptive_max_pool2d
        P, H, W = x.shape
        OH, OW = y.shape[1], y.shape[2]
        total = P * OH * OW
        t = cuda.grid(1)
        while t < total:
            j = t % OW
            r = t // OW
            i = r % OH
            q = r // OH
            h0 = (i * H) // OH
            h1 = ((i + 1) * H + OH - 1) // OH
            w0 = (j * W) // OW
            w1 = ((j + 1) * W + OW - 1) // OW
            acc = dt(0)
            for ih in range(h0, h1):
                for iw in range(w0, w1):
                    acc += x[q, ih, iw]
            y[q, i, j] = acc / dt((h1 - h0) * (w1 - w0))
            t += cuda.gridsize(1)

    # ------------------------------------------------------------------ backward

    @cuda.jit
    def max_pool2d_backward(gy, idx, gx):
        # gy and idx are (P, OH*OW), gx is (P, H*W) and already zero. Several outputs may
        # share an argmax, so the adds are atomic; their order (and so the last bit of such
        # a sum) is not deterministic. An index outside [0, H*W) (the -inf output of a window
        # that lies wholly in the padding) depends on no input: it is skipped.
        P, Q = gy.shape
        HW = gx.shape[1]
        total = P * Q
        t = cuda.grid(1)
        while t < total:
            q = t // Q
            k = t - q * Q
            i = idx[q, k]
            if i >= 0 and i < HW:
                cuda.atomic.add(gx, (q, i), gy[q, k])
            t += cuda.gridsize(1)

    @cuda.jit
    def avg_pool2d_backward(gy, gx, kh, kw, sh, sw, ph, pw, cip, divisor):
        # gy is (P, OH, OW), gx is (P, H, W). Gather: input row h lies in the window of
        # output row i when i*sh - ph <= h < i*sh - ph + kh, i.e. for i in
        # [floor((h + ph - kh) / sh) + 1, floor((h + ph) / sh)] (floor division).
        P, H, W = gx.shape
        OH, OW = gy.shape[1], gy.shape[2]
        total = P * H * W
        t = cuda.grid(1)
        while t < total:
            w = t % W
            r = t // W
            h = r % H
            q = r // H
            i0 = max((h + ph - kh) // sh + 1, 0)
            i1 = min((h + ph) // sh + 1, OH)
            j0 = max((w + pw - kw) // sw + 1, 0)
            j1 = min((w + pw) // sw + 1, OW)
            acc = dt(0)
            for i in range(i0, i1):
                for j in range(j0, j1):
                    d = avg_divisor(i, j, H, W, kh, kw, sh, sw, ph, pw, cip, divisor)
                    acc += gy[q, i, j] / dt(d)
            gx[q, h, w] = acc
            t += cuda.gridsize(1)

    @cuda.jit
    def adaptive_avg_pool2d_backward(gy, gx):
        # gy is (P, OH, OW), gx is (P, H, W). Gather: row h lies in exactly the bins
        # i in [floor(h*OH/H), ceil((h+1)*OH/H)) (from floor(i*H/OH) <= h < ceil((i+1)*H/OH)).
        P, H, W = gx.shape
        OH, OW = gy.shape[1], gy.shape[2]
        total = P * H * W
        t = cuda.grid(1)
        while t < total:
            w = t % W
            r = t // W
            h = r % H
            q = r // H
            acc = dt(0)
            for i in range((h * OH) // H, ((h + 1) * OH + H - 1) // H):
                area_h = ((i + 1) * H + OH - 1) // OH - (i * H) // OH
                for j in range((w * OW) // W, ((w + 1) * OW + W - 1) // W):
                    area_w = ((j + 1) * W + OW - 1) // OW - (j * W) // OW
                    acc += gy[q, i, j] / dt(area_h * area_w)
            gx[q, h, w] = acc
            t += cuda.gridsize(1)

    return {
        "max_pool2d": max_pool2d,
        "adaptive_max_pool2d": adaptive_max_pool2d,
        "avg_pool2d": avg_pool2d,
        "adaptive_avg_pool2d": adaptive_avg_pool2d,
        "max_pool2d_backward": max_pool2d_backward,
        "avg_pool2d_backward": avg_pool2d_backward,
        "adaptive_avg_pool2d_backward": adaptive_avg_pool2d_backward,
    }


# ------------------------------------------------------------------ dtype-generic helpers


@cuda.jit
def fill(a, value):
    # a is 1-D: a[:] = value
    t = cuda.grid(1)
    while t < a.shape[0]:
        a[t] = value
        t += cuda.gridsize(1)


@cuda.jit
def copy1(src, dst):
    # dst[...] = src[...] (cast to dst's dtype); src may be strided. Likewise copy2..copy4.
    t = cuda.grid(1)
    while t < dst.shape[0]:
        dst[t] = src[t]
        t += cuda.gridsize(1)


@cuda.jit
def copy2(src, dst):
    A, B = dst.shape
    t = cuda.grid(1)
    while t < A * B:
        dst[t // B, t % B] = src[t // B, t % B]
        t += cuda.gridsize(1)


@cuda.jit
def copy3(src, dst):
    A, B, C = dst.shape
    t = cuda.grid(1)
    while t < A * B * C:
        c = t % C
        r = t // C
        dst[r // B, r % B, c] = src[r // B, r % B, c]
        t += cuda.gridsize(1)


@cuda.jit
def copy4(src, dst):
    A, B, C, D = dst.shape
    t = cuda.grid(1)
    while t < A * B * C * D:
        d = t % D
        r = t // D
        c = r % C
        r //= C
        dst[r // B, r % B, c, d] = src[r // B, r % B, c, d]
        t += cuda.gridsize(1)


COPY = {1: copy1, 2: copy2, 3: copy3, 4: copy4}
