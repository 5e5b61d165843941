"""Numba pooling kernels, forward and backward.

Every kernel is one ``@njit(parallel=True, cache=True)`` function taking float32 and float64,
parallel over the N*C planes (each task owns one plane of its outputs, so no two tasks write
the same element). Forward kernels work row by row: each tap of the window updates a whole
output row with a loop over ow whose bounds are clipped once, so the loop has no branches
other than the max-pool comparison.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._numba_conv import fill, valid_range


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


@njit(parallel=True, cache=True)
def adaptive_avg_pool2d(x, y):
    # x is (N, C, H, W), y is (N, C, OH, OW); the mean of each bin, summed in float64
    N, C, H, W = x.shape
    OH = y.shape[2]
    OW = y.shape[3]
    if OH == 1 and OW == 1:
        # global pooling: each plane is one contiguous row, summed by a vectorised loop
        xf = x.reshape(N * C, H * W)
        yf = y.reshape(N * C)
        for t in prange(N * C):
            yf[t] = _sum_row(xf[t]) / (H * W)
        return
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
    # gx[n, c].flat[idx[n, c, i, j]] += gy[n, c, i, j]. An index outside [0, H*W) (which no
    # max pool produces) is skipped rather than written out of bounds.
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
