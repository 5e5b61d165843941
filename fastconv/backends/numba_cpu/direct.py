"""Direct convolution kernels of the numba CPU backend (no GEMM, no workspace).

  conv_direct          conv2d v1_direct: one task per output plane, rows of y updated tap by
                       tap; with G = C also depthwise_conv2d when conv_depthwise_same does not apply
  conv_depthwise_same  depthwise_conv2d at stride 1 with OW == W: whole-plane taps under
                       column masks, three taps per pass
  padded_taps          what both skip: a non-finite weight times the zero padding (NaN)

Run: ``pytest tests/test_numba_cpu.py -k "conv2d or depthwise"``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .rows import axpy_row, fill, valid_range


@njit(parallel=True, cache=True)
def conv_direct(x, w, b, has_b, y, sh, sw, ph, pw, dh, dw, G):
    # x is (N, C, H, W), w is (OC, C/G, KH, KW), b is (OC,) (read if has_b), y is (N, OC, OH, OW)
    # One task per output plane (n, o). For each output row, each tap (c, kh, kw) adds
    # w * (a shifted input row) to the row of y: the inner loop is over ow, contiguous when
    # sw == 1, and its bounds are clipped once per tap instead of testing every element.
    # With G = C and C/G = 1 this is the depthwise convolution.
    N, C, H, W = x.shape
    OC, Cg, KH, KW = w.shape
    OH = y.shape[2]
    OW = y.shape[3]
    OCg = OC // G
    for t in prange(N * OC):
        n = t // OC
        o = t % OC
        g = o // OCg
        bias = b[o] if has_b else 0.0
        for oh in range(OH):
            yr = y[n, o, oh]
            fill(yr, bias)
            for ci in range(Cg):
                c = g * Cg + ci
                for kh in range(KH):
                    ih = oh * sh - ph + kh * dh
                    if ih < 0 or ih >= H:
                        continue
                    xr = x[n, c, ih]
                    for kw in range(KW):
                        off = kw * dw - pw
                        lo, hi = valid_range(OW, sw, off, W)
                        if lo < hi:
                            axpy_row(yr[lo:hi], w[o, ci, kh, kw], xr, lo * sw + off, sw)
        for ci in range(Cg):
            padded_taps(y[n, o], w[o, ci], sh, sw, ph, pw, dh, dw, H, W)


@njit(cache=True)
def padded_taps(yp, wt, sh, sw, ph, pw, dh, dw, H, W):
    """yp (OH, OW) += wt[kh, kw] * 0 at every output whose tap (kh, kw) lies in the zero
    padding, for the non-finite taps of wt (KH, KW) only.

    The direct kernels skip the padded taps, which is exact for a finite weight (it adds 0)
    but not for NaN or +-Inf: the contract's padding is a zero input and 0 x NaN = 0 x Inf =
    NaN, as the GEMM variants compute it. A finite filter costs KH*KW tests per plane.
    """
    OH, OW = yp.shape
    KH, KW = wt.shape
    for kh in range(KH):
        for kw in range(KW):
            v = wt[kh, kw]
            if np.isfinite(v):
                continue
            nan = v - v
            lo, hi = valid_range(OW, sw, kw * dw - pw, W)
            for oh in range(OH):
                ih = oh * sh - ph + kh * dh
                inside = ih >= 0 and ih < H
                for ow in range(OW):
                    if not inside or ow < lo or ow >= hi:
                        yp[oh, ow] += nan


@njit(cache=True)
def _taps3(xf, i, z, Ta, wa, ma, Tb, wb, mb, Tc, wc, mc):
    """One element of _axpy3_masked, reading xf only where the mask allows."""
    return (
        (wa * xf[i + Ta] if ma[i] else z)
        + (wb * xf[i + Tb] if mb[i] else z)
        + (wc * xf[i + Tc] if mc[i] else z)
    )


@njit(cache=True)
def _axpy3_masked(ys, write, init, xf, a, b, z, Ta, wa, ma, Tb, wb, mb, Tc, wc, mc):
    """ys[i] += sum over taps t of (w_t * xf[i + T_t] if m_t[i] else z), for a <= i < b;
    if ``write``, ys[i] = init + that sum instead (the pass that writes the bias).

    Reads outside xf happen only where the mask is False (a column that wrapped into the
    neighbouring row), so the vector loop runs where every read is inside xf and the few
    elements at the ends of the plane go through the scalar loops, which test the mask first.
    """
    HW = xf.shape[0]
    lo = min(max(a, -min(Ta, min(Tb, Tc))), b)
    hi = max(min(b, HW - max(Ta, max(Tb, Tc))), lo)
    for i in range(a, lo):
        t = _taps3(xf, i, z, Ta, wa, ma, Tb, wb, mb, Tc, wc, mc)
        ys[i] = init + t if write else ys[i] + t
    n = hi - lo
    yv = ys[lo:hi]
    xa = xf[lo + Ta : hi + Ta]
    xb = xf[lo + Tb : hi + Tb]
    xc = xf[lo + Tc : hi + Tc]
    va = ma[lo:hi]
    vb = mb[lo:hi]
    vc = mc[lo:hi]
    if write:
        for i in range(n):
            yv[i] = init + (
                (wa * xa[i] if va[i] else z)
                + (wb * xb[i] if vb[i] else z)
                + (wc * xc[i] if vc[i] else z)
            )
    else:
        for i in range(n):
            yv[i] += (
                (wa * xa[i] if va[i] else z)
                + (wb * xb[i] if vb[i] else z)
                + (wc * xc[i] if vc[i] else z)
            )
    for i in range(hi, b):
        t = _taps3(xf, i, z, Ta, wa, ma, Tb, wb, mb, Tc, wc, mc)
        ys[i] = init + t if write else ys[i] + t


@njit(parallel=True, cache=True)
def conv_depthwise_same(x, w, b, has_b, y, ph, pw, dh, dw, nth):
    # x is (N, C, H, W), w is (C*m, 1, KH, KW), b is (C*m,) (read if has_b), y is (N, C*m, OH, W)
    # Precondition: stride 1 and OW == W (padding 'same' along W; other cases: conv_direct).
    # x and y planes then have the same row length, so tap (kh, kw) is
    # y.flat[i] += w * x.flat[i + T] with one offset T for the whole plane, except in columns
    # where the read wraps into the neighbouring row: a per-kw column mask (built once per call)
    # zeroes those. One long loop per three taps instead of one short loop per row and tap,
    # and no padded copy of the input.
    N, C, H, W = x.shape
    OC = w.shape[0]
    KH = w.shape[2]
    KW = w.shape[3]
    OH = y.shape[2]
    m = OC // C
    ntask = N * C
    nth = max(1, min(nth, ntask))
    z = np.zeros(1, y.dtype)[0]
    colok = np.zeros((KW, OH * W), np.bool_)
    nomask = np.zeros(OH * W, np.bool_)
    for kw in range(KW):
        for i in range(OH * W):
            iw = i % W + kw * dw - pw
            colok[kw, i] = iw >= 0 and iw < W
    for th in prange(nth):
        for task in range(th, ntask, nth):
            n = task // C
            c = task % C
            xf = x[n, c].reshape(H * W)
            for j in range(m):
                o = c * m + j
                yf = y[n, o].reshape(OH * W)
                bias = b[o] if has_b else z
                # the first row of taps whose input rows cover every output row writes y
                # (with the bias) instead of adding to it; without one, fill with the bias
                first = KH
                for kh in range(KH):
                    if ph - kh * dh <= 0 and H + ph - kh * dh >= OH:
                        first = kh
                        break
                if first == KH:
                    fill(yf, bias)
                for q in range(KH):
                    kh = (first + q) % KH
                    a = max(0, ph - kh * dh) * W  # the output rows whose input row exists
                    e = min(OH, H + ph - kh * dh) * W
                    if a >= e:
                        continue
                    T = (kh * dh - ph) * W - pw
                    for k0 in range(0, KW, 3):
                        # a chunk past the last tap reads tap k0's pixels under an all-False
                        # mask: it adds exactly zero, whatever x holds
                        T0 = T + k0 * dw
                        T1, w1, m1 = T0, z, nomask
                        T2, w2, m2 = T0, z, nomask
                        if k0 + 1 < KW:
                            T1, w1, m1 = T0 + dw, w[o, 0, kh, k0 + 1], colok[k0 + 1]
                        if k0 + 2 < KW:
                            T2, w2, m2 = T0 + 2 * dw, w[o, 0, kh, k0 + 2], colok[k0 + 2]
                        w0 = w[o, 0, kh, k0]
                        write = kh == first and k0 == 0
                        _axpy3_masked(
                            yf, write, bias, xf, a, e, z, T0, w0, colok[k0], T1, w1, m1, T2, w2, m2
                        )
                padded_taps(y[n, o], w[o, 0], 1, 1, ph, pw, dh, dw, H, W)
