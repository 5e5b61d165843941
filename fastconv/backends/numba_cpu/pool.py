"""Pooling kernels of the numba CPU backend, forward and backward.

  max_pool2d                    row by row, each tap a clipped max over a row (with indices
                                when want_idx)
  avg_pool2d                    row by row, each tap a clipped add, then the divisor
  global_avg_pool               adaptive_avg_pool2d to 1 x 1: SIMD sums over whole planes
  adaptive_avg_pool2d           any other adaptive average: one bin at a time
  adaptive_max_pool2d           one bin at a time (with indices when want_idx)
  max_pool2d_backward           scatter-add through the indices, one plane per task
  avg_pool2d_backward           each output spread over its clipped window
  adaptive_avg_pool2d_backward  each output spread over its bin

Run: ``pytest tests/test_numba_cpu.py -k pool``.

Every kernel is one ``@njit(parallel=True, cache=True)`` function taking float32 and float64,
parallel over the N*C planes (each task owns one plane of its outputs, so no two tasks write
the same element). Forward kernels work row by row: each tap of the window updates a whole
output row with a loop over ow whose bounds are clipped once, so the loop has no branches
other than the max-pool comparison.

Global average pooling (a 1x1 adaptive output) has its own kernel, global_avg_pool: planes of
one vector to GLOBAL_SIMD_MAX values are summed 16 at a time with explicit SIMD vectors
(simd.py), the 16 sums brought into one vector by a tree of pairwise adds, and each
thread takes one contiguous range of planes. A per-plane loop summing in float64 reached about
half of the C kernel's speed (LLVM does not vectorise a 49-value float32 row with its 64-wide
unrolled loop, and one horizontal reduction per plane costs more than the adds); this one runs
as fast as the C kernel (28 us for 8 x 2048 x 7 x 7 on 2 cores).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .rows import fill, valid_range
from .simd import vadd, vdiv, vload, vload_last, vpairs, vstore, vwidth, vzero

#: Largest plane the global-average SIMD path sums in vector lanes of the input's dtype
#: (a float32 lane then adds at most 256 values); larger planes are summed in float64.
GLOBAL_SIMD_MAX = 4096


@njit(cache=True)
def _first_tap(start, d):
    """First position start + t*d at or after 0 (the max-pool starting index)."""
    return start if start >= 0 else start + ((-start + d - 1) // d) * d


@njit(cache=True)
def _add_row(ys, xr, start, s):
    # ys[i] += xr[start + i*s]
    n = ys.shape[0]
    if s == 1:
        xs = xr[start : start + n]
        for i in range(n):
            ys[i] += xs[i]
    else:
        xg = xr[start:]
        for i in range(n):
            ys[i] += xg[i * s]


@njit(cache=True)
def _max_row(ys, xr, start, s):
    # ys[i] = xr[start + i*s] if it is greater than ys[i] or NaN (a select: no branch)
    n = ys.shape[0]
    if s == 1:
        xs = xr[start : start + n]
        for i in range(n):
            v = xs[i]
            m = ys[i]
            ys[i] = v if (v > m) | (v != v) else m
    else:
        xg = xr[start:]
        for i in range(n):
            v = xg[i * s]
            m = ys[i]
            ys[i] = v if (v > m) | (v != v) else m


@njit(cache=True)
def _max_row_idx(ys, iy, xr, start, s, base):
    # _max_row, also setting iy[i] = base + start + i*s where ys[i] is replaced
    n = ys.shape[0]
    first = base + start
    if s == 1:
        xs = xr[start : start + n]
        for i in range(n):
            v = xs[i]
            m = ys[i]
            take = (v > m) | (v != v)
            ys[i] = v if take else m
            iy[i] = first + i if take else iy[i]
    else:
        xg = xr[start:]
        for i in range(n):
            v = xg[i * s]
            m = ys[i]
            take = (v > m) | (v != v)
            ys[i] = v if take else m
            iy[i] = first + i * s if take else iy[i]


@njit(parallel=True, cache=True)
def max_pool2d(x, y, idx, want_idx, kh, kw, sh, sw, ph, pw, dh, dw):
    # x is (N, C, H, W), y is (N, C, OH, OW), idx int64 (N, C, OH, OW) (written if want_idx)
    # Window positions are visited row by row (th outer, tw inner) for every output of a row
    # at once, which is each window's own scan order. A value replaces the running maximum
    # when it is greater or NaN, so NaN propagates and the last NaN's index is kept.
    N, C, H, W = x.shape
    OH = y.shape[2]
    OW = y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t % C
        for oh in range(OH):
            hs = oh * sh - ph
            yr = y[n, c, oh]
            fill(yr, -np.inf)
            if want_idx:
                fh = _first_tap(hs, dh)
                ir = idx[n, c, oh]
                for ow in range(OW):
                    ir[ow] = fh * W + _first_tap(ow * sw - pw, dw)
            for th in range(kh):
                ih = hs + th * dh
                if ih < 0 or ih >= H:
                    continue
                xr = x[n, c, ih]
                for tw in range(kw):
                    off = tw * dw - pw
                    lo, hi = valid_range(OW, sw, off, W)
                    if lo >= hi:
                        continue
                    start = lo * sw + off
                    if want_idx:
                        _max_row_idx(yr[lo:hi], idx[n, c, oh, lo:hi], xr, start, sw, ih * W)
                    else:
                        _max_row(yr[lo:hi], xr, start, sw)


@njit(parallel=True, cache=True)
def avg_pool2d(x, y, kh, kw, sh, sw, ph, pw, count_include_pad, divisor):
    # x is (N, C, H, W), y is (N, C, OH, OW); divisor 0 = none (see the kernel contract):
    # window [hs, he) with he = min(hs + kh, H + ph); pool = (he - hs)*(we - ws) before
    # clipping to the input, the sum over the clipped window
    N, C, H, W = x.shape
    OH = y.shape[2]
    OW = y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t % C
        for oh in range(OH):
            hs = oh * sh - ph
            he = min(hs + kh, H + ph)
            pool_h = he - hs
            hs0 = max(hs, 0)
            he0 = min(he, H)
            yr = y[n, c, oh]
            fill(yr, 0.0)
            for ih in range(hs0, he0):
                xr = x[n, c, ih]
                for tw in range(kw):
                    off = tw - pw
                    lo, hi = valid_range(OW, sw, off, W)
                    if lo < hi:
                        _add_row(yr[lo:hi], xr, lo * sw + off, sw)
            for ow in range(OW):
                ws = ow * sw - pw
                we = min(ws + kw, W + pw)
                if divisor != 0:
                    d = divisor
                elif count_include_pad:
                    d = pool_h * (we - ws)
                else:
                    d = (he0 - hs0) * (min(we, W) - max(ws, 0))
                yr[ow] = yr[ow] / d


@njit(cache=True)
def _bin(i, n_in, n_out):
    """Adaptive bin i along an axis: [floor(i*In/Out), ceil((i+1)*In/Out))."""
    return (i * n_in) // n_out, ((i + 1) * n_in + n_out - 1) // n_out


@njit(fastmath={"reassoc"}, cache=True)
def _sum_row(row):
    # the float64 sum of a contiguous row; only reassociation is allowed (no NaN/inf
    # assumptions), which lets LLVM split the sum into vector lanes
    acc = 0.0
    for k in range(row.shape[0]):
        acc += row[k]
    return acc


@njit(cache=True, inline="always")
def _global_avg_16(xf, yf, g, n, nfull, k):
    # yf[16g : 16g + 16] = means of planes 16g.. of n >= vwidth values (row-major in xf):
    # the 16 planes side by side (16 vector accumulators), then a tree of vpairs that turns
    # the 16 vectors into the 16 sums in plane order; k = n % vwidth ragged values per plane
    vw = vwidth(xf)
    b = g * 16 * n
    z = vzero(xf)
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = z
    a8 = a9 = a10 = a11 = a12 = a13 = a14 = a15 = z
    i = 0
    while i < nfull:
        a0 = vadd(a0, vload(xf, b + i))
        a1 = vadd(a1, vload(xf, b + n + i))
        a2 = vadd(a2, vload(xf, b + 2 * n + i))
        a3 = vadd(a3, vload(xf, b + 3 * n + i))
        a4 = vadd(a4, vload(xf, b + 4 * n + i))
        a5 = vadd(a5, vload(xf, b + 5 * n + i))
        a6 = vadd(a6, vload(xf, b + 6 * n + i))
        a7 = vadd(a7, vload(xf, b + 7 * n + i))
        a8 = vadd(a8, vload(xf, b + 8 * n + i))
        a9 = vadd(a9, vload(xf, b + 9 * n + i))
        a10 = vadd(a10, vload(xf, b + 10 * n + i))
        a11 = vadd(a11, vload(xf, b + 11 * n + i))
        a12 = vadd(a12, vload(xf, b + 12 * n + i))
        a13 = vadd(a13, vload(xf, b + 13 * n + i))
        a14 = vadd(a14, vload(xf, b + 14 * n + i))
        a15 = vadd(a15, vload(xf, b + 15 * n + i))
        i += vw
    if k:  # the last vw values of each plane, of which the first vw - k were added above
        a0 = vadd(a0, vload_last(xf, b + n, k))
        a1 = vadd(a1, vload_last(xf, b + 2 * n, k))
        a2 = vadd(a2, vload_last(xf, b + 3 * n, k))
        a3 = vadd(a3, vload_last(xf, b + 4 * n, k))
        a4 = vadd(a4, vload_last(xf, b + 5 * n, k))
        a5 = vadd(a5, vload_last(xf, b + 6 * n, k))
        a6 = vadd(a6, vload_last(xf, b + 7 * n, k))
        a7 = vadd(a7, vload_last(xf, b + 8 * n, k))
        a8 = vadd(a8, vload_last(xf, b + 9 * n, k))
        a9 = vadd(a9, vload_last(xf, b + 10 * n, k))
        a10 = vadd(a10, vload_last(xf, b + 11 * n, k))
        a11 = vadd(a11, vload_last(xf, b + 12 * n, k))
        a12 = vadd(a12, vload_last(xf, b + 13 * n, k))
        a13 = vadd(a13, vload_last(xf, b + 14 * n, k))
        a14 = vadd(a14, vload_last(xf, b + 15 * n, k))
        a15 = vadd(a15, vload_last(xf, b + 16 * n, k))
    # runs of vw/2, vw/4, vw/8 lanes per plane (float64: vw = 8, done after three levels)
    l0, l1, l2, l3 = vpairs(a0, a1), vpairs(a2, a3), vpairs(a4, a5), vpairs(a6, a7)
    l4, l5, l6, l7 = vpairs(a8, a9), vpairs(a10, a11), vpairs(a12, a13), vpairs(a14, a15)
    m0, m1, m2, m3 = vpairs(l0, l1), vpairs(l2, l3), vpairs(l4, l5), vpairs(l6, l7)
    q0, q1 = vpairs(m0, m1), vpairs(m2, m3)
    if vw == 16:
        vstore(yf, g * 16, vdiv(vpairs(q0, q1), n))
    else:
        vstore(yf, g * 16, vdiv(q0, n))
        vstore(yf, g * 16 + 8, vdiv(q1, n))


@njit(parallel=True, cache=True)
def global_avg_pool(xf, yf, threads):
    # yf[p] = mean of row p of xf (P, n): adaptive average pooling to 1x1 of planes of n
    # values; threads = the number of contiguous ranges of planes of the SIMD path
    P, n = xf.shape
    if n >= vwidth(xf) and n <= GLOBAL_SIMD_MAX and P >= 16:
        # 16 planes per step (_global_avg_16), one contiguous range of steps per thread
        flat = xf.reshape(P * n)
        k = n % vwidth(xf)
        groups = P // 16
        nt = max(1, min(threads, groups))
        for t in prange(nt):
            for g in range(groups * t // nt, groups * (t + 1) // nt):
                _global_avg_16(flat, yf, g, n, n - k, k)
        for p in range(groups * 16, P):
            yf[p] = _sum_row(xf[p]) / n
        return
    # each plane is one contiguous row, summed in float64 by a vectorised loop
    for p in prange(P):
        yf[p] = _sum_row(xf[p]) / n


@njit(parallel=True, cache=True)
def adaptive_avg_pool2d(x, y):
    # x is (N, C, H, W), y is (N, C, OH, OW); the mean of each bin, summed in float64
    # (a 1x1 output is global_avg_pool's)
    N, C, H, W = x.shape
    OH = y.shape[2]
    OW = y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t % C
        for i in range(OH):
            h0, h1 = _bin(i, H, OH)
            for j in range(OW):
                w0, w1 = _bin(j, W, OW)
                acc = 0.0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        acc += x[n, c, ih, iw]
                y[n, c, i, j] = acc / ((h1 - h0) * (w1 - w0))


@njit(parallel=True, cache=True)
def adaptive_max_pool2d(x, y, idx, want_idx):
    # x is (N, C, H, W), y is (N, C, OH, OW), idx int64 (N, C, OH, OW) (written if want_idx);
    # the NaN and index rules of max_pool2d, each bin scanned row by row
    N, C, H, W = x.shape
    OH = y.shape[2]
    OW = y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t % C
        for i in range(OH):
            h0, h1 = _bin(i, H, OH)
            for j in range(OW):
                w0, w1 = _bin(j, W, OW)
                m = -np.inf
                at = h0 * W + w0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        v = x[n, c, ih, iw]
                        if (v > m) | (v != v):
                            m = v
                            at = ih * W + iw
                y[n, c, i, j] = m
                if want_idx:
                    idx[n, c, i, j] = at


# --------------------------------------------------------------------------- backward


@njit(parallel=True, cache=True)
def max_pool2d_backward(gy, idx, gx):
    # gy and idx are (N, C, OH, OW), gx is (N, C, H, W): gx = 0, then
    # gx[n, c].flat[idx[n, c, i, j]] += gy[n, c, i, j]. An index outside [0, H*W) (the -inf
    # output of a window wholly in the padding) depends on no input: it is skipped.
    N, C, H, W = gx.shape
    OH = gy.shape[2]
    OW = gy.shape[3]
    HW = H * W
    for t in prange(N * C):
        n = t // C
        c = t % C
        g = gx[n, c].reshape(HW)
        for q in range(HW):
            g[q] = 0
        for i in range(OH):
            for j in range(OW):
                k = idx[n, c, i, j]
                if k >= 0 and k < HW:
                    g[k] += gy[n, c, i, j]


@njit(parallel=True, cache=True)
def avg_pool2d_backward(gy, gx, kh, kw, sh, sw, ph, pw, count_include_pad, divisor):
    # gy is (N, C, OH, OW), gx is (N, C, H, W): the adjoint of avg_pool2d, each gy element
    # divided by its forward divisor and added over its clipped window
    N, C, H, W = gx.shape
    OH = gy.shape[2]
    OW = gy.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t % C
        for ih in range(H):
            for iw in range(W):
                gx[n, c, ih, iw] = 0
        for oh in range(OH):
            hs = oh * sh - ph
            he = min(hs + kh, H + ph)
            pool_h = he - hs
            hs0 = max(hs, 0)
            he0 = min(he, H)
            for ow in range(OW):
                ws = ow * sw - pw
                we = min(ws + kw, W + pw)
                ws0 = max(ws, 0)
                we0 = min(we, W)
                if divisor != 0:
                    d = divisor
                elif count_include_pad:
                    d = pool_h * (we - ws)
                else:
                    d = (he0 - hs0) * (we0 - ws0)
                g = gy[n, c, oh, ow] / d
                for ih in range(hs0, he0):
                    for iw in range(ws0, we0):
                        gx[n, c, ih, iw] += g


@njit(parallel=True, cache=True)
def adaptive_avg_pool2d_backward(gy, gx):
    # gy is (N, C, OH, OW), gx is (N, C, H, W): each gy element divided by its bin's area and
    # added over the bin
    N, C, H, W = gx.shape
    OH = gy.shape[2]
    OW = gy.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t % C
        for ih in range(H):
            for iw in range(W):
                gx[n, c, ih, iw] = 0
        for i in range(OH):
            h0, h1 = _bin(i, H, OH)
            for j in range(OW):
                w0, w1 = _bin(j, W, OW)
                g = gy[n, c, i, j] / ((h1 - h0) * (w1 - w0))
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        gx[n, c, ih, iw] += g
