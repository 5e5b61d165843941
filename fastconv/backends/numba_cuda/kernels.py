"""@cuda.jit kernels of the cuda engine, built once per dtype by :func:`kernels`.

Kernels (the launchers in ``_cuda_launch.py`` pick the grid and pass the shapes):
  conv2d_direct        v1: one thread per output element, loops over C/G x KH x KW
  conv2d_gemm          v2: shared-memory tiled implicit GEMM (also the fused separable conv)
  depthwise_conv2d     one thread per output element; channel o reads input channel o // m
  conv_transpose2d     gather form: one thread per output element sums what reaches it
  max_pool2d / adaptive_max_pool2d, avg_pool2d / adaptive_avg_pool2d
  max_pool2d_backward  zero-fill, then an atomic scatter through the indices
  avg_pool2d_backward / adaptive_avg_pool2d_backward   gather: one thread per input element

Every kernel is built by a factory closing over the scalar type ``dt`` (numpy.float32 or
numpy.float64), so accumulators, shared tiles and constants are of the array's dtype: a
literal ``0.0`` would be float64 and would make float32 kernels run at float64 speed.
Pooling kernels see (N*C, H, W) planes: the launchers merge N and C (a free reshape).

Under NUMBA_ENABLE_CUDASIM=1 every thread is a Python thread, so blocks and tiles are made
small there (the index arithmetic is the same code with other constants), and the number of
blocks is capped so that the grid-stride loops really loop in the tests.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda
from numba.cuda.core import config as _cuda_config

SIMULATOR = bool(_cuda_config.ENABLE_CUDASIM)

if SIMULATOR:
    THREADS, MAX_BLOCKS = 32, 4  # 1-D launches
    TX = TY = 4  # implicit-GEMM block: TY x TX threads ...
    RM = RN = 2  # ... each computing an RM x RN register tile
    BK = 4  # depth of one K step of the shared tiles
else:
    THREADS, MAX_BLOCKS = 256, 65535 * 32
    TX = TY = 16
    RM = RN = 4
    BK = 8
BM, BN = TY * RM, TX * RN  # output tile: BM output channels x BN output pixels
NT = TX * TY  # threads of a GEMM block
# The tile loaders rely on these: each thread loads a fixed column of B and a fixed k of A.
assert NT % BN == 0 and NT % BK == 0 and BM * BK % NT == 0 and BN * BK % NT == 0

NEG_INF = -math.inf


def _build(dt):
    """All the dtype-specific kernels for the scalar type ``dt``."""

    # ------------------------------------------------------------------ convolutions

    @cuda.jit
    def conv2d_direct(x, w, b, y, sh, sw, ph, pw, dh, dw, G):
        # x is (N, C, H, W), w is (OC, C/G, KH, KW), b is (OC,) or None, y is (N, OC, OH, OW)
        N, C, H, W = x.shape
        OC, Cg, KH, KW = w.shape
        OH, OW = y.shape[2], y.shape[3]
        OCg = OC // G
        total = N * OC * OH * OW
        t = cuda.grid(1)
        while t < total:
            j = t % OW
            r = t // OW
            i = r % OH
            r //= OH
            o = r % OC
            n = r // OC
            c0 = (o // OCg) * Cg
            acc = dt(0)
            for c in range(Cg):
                for kh in range(KH):
                    ih = i * sh - ph + kh * dh
                    if 0 <= ih < H:
                        for kw in range(KW):
                            iw = j * sw - pw + kw * dw
                            if 0 <= iw < W:
                                acc += w[o, c, kh, kw] * x[n, c0 + c, ih, iw]
            if b is not None:
                acc += b[o]
            y[n, o, i, j] = acc
            t += cuda.gridsize(1)

    @cuda.jit(device=True)
    def load_im2col(x, wd, bd, g, k, n, hb, wb, Cg, KH, KW, dh, dw):
        # B[k, col] of conv2d as a GEMM: k = (c, kh, kw) of group g, col = (n, i, j) with
        # hb = i*sh - ph, wb = j*sw - pw; zero outside the input (the padding). wd, bd unused.
        H, W = x.shape[2], x.shape[3]
        c = k // (KH * KW)
        r = k - c * (KH * KW)
        kh = r // KW
        ih = hb + kh * dh
        iw = wb + (r - kh * KW) * dw
        if 0 <= ih < H and 0 <= iw < W:
            return x[n, g * Cg + c, ih, iw]
        return dt(0)

    @cuda.jit(device=True)
    def load_depthwise(x, wd, bd, g, k, n, hb, wb, m, KH, KW, dh, dw):
        # B[k, col] of the pointwise GEMM of a separable conv: the depthwise output of channel
        # k (which reads input channel k // m) at pixel col, computed on the fly.
        H, W = x.shape[2], x.shape[3]
        c = k // m
        acc = dt(0)
        for kh in range(KH):
            ih = hb + kh * dh
            if 0 <= ih < H:
                for kw in range(KW):
                    iw = wb + kw * dw
                    if 0 <= iw < W:
                        acc += wd[k, 0, kh, kw] * x[n, c, ih, iw]
        if bd is not None:
            acc += bd[k]
        return acc

    def make_gemm(load_b):
        @cuda.jit
        def gemm(x, wd, bd, a, b, y, KH, KW, sh, sw, ph, pw, dh, dw, Cg, OW):
            # y[n, g*OCg + m, p] = b + sum_k a[g*OCg + m, k] * B[k, (n, p)], B from load_b.
            # x is (N, C, H, W), a is (OC, K), b is (OC,) or None, y is (N, OC, OH*OW).
            # Grid: (column tiles, row tiles, G); block (TX, TY). Each K step stages an
            # BK x BM slice of a and a BK x BN slice of B in shared memory, so every value
            # read from global memory is reused BN (resp. BM) times from shared memory, and
            # each thread keeps an RM x RN tile of outputs in registers, reusing each
            # shared value RN (resp. RM) times.
            OC, K = a.shape
            N, P = y.shape[0], y.shape[2]
            g = cuda.blockIdx.z
            OCg = OC // cuda.gridDim.z
            m0 = cuda.blockIdx.y * BM
            col0 = cuda.blockIdx.x * BN
            tx = cuda.threadIdx.x
            ty = cuda.threadIdx.y
            tid = ty * TX + tx
            As = cuda.shared.array((BK, BM), dt)
            Bs = cuda.shared.array((BK, BN), dt)
            acc = cuda.local.array((RM, RN), dt)
            ar = cuda.local.array(RM, dt)
            br = cuda.local.array(RN, dt)
            for u in range(RM):
                for v in range(RN):
                    acc[u, v] = dt(0)
            # The B column this thread loads is the same at every K step (NT % BN == 0).
            bc = tid % BN
            col = col0 + bc
            col_ok = col < N * P
            n = col // P
            p = col - n * P
            i = p // OW
            hb = i * sh - ph
            wb = (p - i * OW) * sw - pw
            ak = tid % BK  # likewise the k of the A elements it loads (NT % BK == 0)
            for k0 in range(0, K, BK):
                mm = tid // BK
                while mm < BM:
                    val = dt(0)
                    if m0 + mm < OCg and k0 + ak < K:
                        val = a[g * OCg + m0 + mm, k0 + ak]
                    As[ak, mm] = val
                    mm += NT // BK
                kk = tid // BN
                while kk < BK:
                    val = dt(0)
                    if col_ok and k0 + kk < K:
                        val = load_b(x, wd, bd, g, k0 + kk, n, hb, wb, Cg, KH, KW, dh, dw)
                    Bs[kk, bc] = val
                    kk += NT // BN
                cuda.syncthreads()
                for kk in range(BK):
                    for u in range(RM):
                        ar[u] = As[kk, ty + u * TY]
                    for v in range(RN):
                        br[v] = Bs[kk, tx + v * TX]
                    for u in range(RM):
                        for v in range(RN):
                            acc[u, v] += ar[u] * br[v]
                cuda.syncthreads()
            for u in range(RM):
                m = m0 + ty + u * TY
                if m < OCg:
                    o = g * OCg + m
                    bias = dt(0)
                    if b is not None:
                        bias = b[o]
                    for v in range(RN):
                        c = col0 + tx + v * TX
                        if c < N * P:
                            nn = c // P
                            y[nn, o, c - nn * P] = acc[u, v] + bias

        return gemm

    conv2d_gemm = make_gemm(load_im2col)
    separable_gemm = make_gemm(load_depthwise)

    @cuda.jit
    def depthwise_conv2d(x, w, b, y, sh, sw, ph, pw, dh, dw):
        # x is (N, C, H, W), w is (C*m, 1, KH, KW), b is (C*m,) or None, y is (N, C*m, OH, OW)
        N, C, H, W = x.shape
        OC, KH, KW = w.shape[0], w.shape[2], w.shape[3]
        OH, OW = y.shape[2], y.shape[3]
        m = OC // C
        total = N * OC * OH * OW
        t = cuda.grid(1)
        while t < total:
            j = t % OW
            r = t // OW
            i = r % OH
            r //= OH
            o = r % OC
            n = r // OC
            c = o // m
            acc = dt(0)
            for kh in range(KH):
                ih = i * sh - ph + kh * dh
                if 0 <= ih < H:
                    for kw in range(KW):
                        iw = j * sw - pw + kw * dw
                        if 0 <= iw < W:
                            acc += w[o, 0, kh, kw] * x[n, c, ih, iw]
            if b is not None:
                acc += b[o]
            y[n, o, i, j] = acc
            t += cuda.gridsize(1)

    @cuda.jit
    def conv_transpose2d(x, w, b, y, sh, sw, ph, pw, dh, dw, G):
        # x is (N, C, H, W), w is (C, OC/G, KH, KW), b is (OC,) or None, y is (N, OC, OH, OW).
        # Gather form of the scatter in the contract: output row i receives input row ih
        # through tap kh when ih*sh - ph + kh*dh == i, i.e. (i + ph - kh*dh) / sh is an
        # integer in [0, H). Each output is written once, by one thread: no atomics.
        N, C, H, W = x.shape
        OCg, KH, KW = w.shape[1], w.shape[2], w.shape[3]
        OC, OH, OW = y.shape[1], y.shape[2], y.shape[3]
        Cg = C // G
        total = N * OC * OH * OW
        t = cuda.grid(1)
        while t < total:
            j = t % OW
            r = t // OW
            i = r % OH
            r //= OH
            o = r % OC
            n = r // OC
            c0 = (o // OCg) * Cg
            oo = o % OCg
            acc = dt(0)
            for kh in range(KH):
                th = i + ph - kh * dh
                if th < 0:
                    break  # th only decreases with kh
                ih = th // sh
                if ih * sh != th or ih >= H:
                    continue
                for kw in range(KW):
                    tw = j + pw - kw * dw
                    if tw < 0:
                        break
                    iw = tw // sw
                    if iw * sw != tw or iw >= W:
                        continue
                    for c in range(Cg):
                        acc += x[n, c0 + c, ih, iw] * w[c0 + c, oo, kh, kw]
            if b is not None:
                acc += b[o]
            y[n, o, i, j] = acc
            t += cuda.gridsize(1)

    # ------------------------------------------------------------------ pooling

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
            # tap at or after row / column 0 (past the plane), as the other engines and torch
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
        "conv2d_direct": conv2d_direct,
        "conv2d_gemm": conv2d_gemm,
        "separable_gemm": separable_gemm,
        "depthwise_conv2d": depthwise_conv2d,
        "conv_transpose2d": conv_transpose2d,
        "max_pool2d": max_pool2d,
        "adaptive_max_pool2d": adaptive_max_pool2d,
        "avg_pool2d": avg_pool2d,
        "adaptive_avg_pool2d": adaptive_avg_pool2d,
        "max_pool2d_backward": max_pool2d_backward,
        "avg_pool2d_backward": avg_pool2d_backward,
        "adaptive_avg_pool2d_backward": adaptive_avg_pool2d_backward,
    }


_CACHE: dict = {}


def kernels(dtype) -> dict:
    """The kernels for float32 or float64 arrays, compiled lazily on first launch."""
    key = np.dtype(dtype).type
    if key not in _CACHE:
        _CACHE[key] = _build(key)
    return _CACHE[key]


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
