"""Numba convolution kernels: the conv2d ladder, depthwise, transposed.

depthwise_conv2d runs conv_depthwise_same (stride 1, OW == W: whole-plane taps under column
masks) or else conv_direct with G = C; conv_transpose2d runs conv_transpose_packed (sh*sw
stride-1 phase convolutions through the packed GEMM, see the section "transposed").

Variants of conv2d (``numba_cpu.conv2d(..., variant=...)``), each faster than the one before:

  v1_direct    conv_direct: one task per output plane, rows of y updated tap by tap
  v2_im2col    im2col into a (C*KH*KW, OH*OW) buffer, then a GEMM in plain Numba loops
  v3_packed    im2col, then the packed GEMM of conv_packed (register-blocked SIMD micro-kernel)
  v4_implicit  conv_packed straight from x: B panels are packed from the image, no im2col buffer

Every kernel is an ``@njit(parallel=True, cache=True)`` function (v3 / v4 run two: pack_a,
then gemm_packed) taking float32 and float64: two compiled specialisations at most, shared by
every shape. Bias is passed as an array plus
a ``has_b`` flag, so that "no bias" is not a third type. Workspaces (im2col buffer, packed
panels) are allocated inside; outputs never are.
"""

from __future__ import annotations

import threading
from math import gcd

import numpy as np
from numba import get_num_threads, njit, prange

from .simd import vbroadcast, vfma, vload, vstore, vwidth

#: Rows of the micro-kernel's C tile (its columns are two vectors: 32 float32 / 16 float64).
MR = 6
#: Depth of one packed block of A and B (a B block of KC x 32 float32 is 32 KiB: L1-sized).
KC = 256


@njit(cache=True)
def valid_range(out, s, off, size):
    """Outputs i in [lo, hi) of an axis of length ``out`` with 0 <= i*s + off < size."""
    lo = 0 if off >= 0 else (-off + s - 1) // s
    hi = 0 if off >= size else (size - 1 - off) // s + 1
    hi = min(hi, out)
    lo = min(lo, hi)
    return lo, hi


# Inner loops index views with the bare loop counter (ys[i], xs[i]): Numba then knows the index
# is not negative and drops its negative-index wraparound, without which LLVM turns the loop
# into gathers (an 8x slower loop, measured on x[off + i]).


@njit(cache=True)
def axpy_row(ys, wv, xr, start, s):
    """ys[i] += wv * xr[start + i*s] for i < len(ys); the reads must be inside xr."""
    n = ys.shape[0]
    if s == 1:
        xs = xr[start : start + n]
        for i in range(n):
            ys[i] += wv * xs[i]
    else:
        xg = xr[start:]
        for i in range(n):
            ys[i] += wv * xg[i * s]


@njit(cache=True)
def copy_row(ds, xr, start, s):
    """ds[i] = xr[start + i*s] for i < len(ds); the reads must be inside xr."""
    n = ds.shape[0]
    if s == 1:
        xs = xr[start : start + n]
        for i in range(n):
            ds[i] = xs[i]
    else:
        xg = xr[start:]
        for i in range(n):
            ds[i] = xg[i * s]


@njit(cache=True)
def fill(ds, v):
    for i in range(ds.shape[0]):
        ds[i] = v


# --------------------------------------------------------------------------- v1: direct


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


# --------------------------------------------------------------------------- v2: im2col + GEMM


@njit(parallel=True, cache=True)
def im2col(x, n, col, KH, KW, sh, sw, ph, pw, dh, dw, OH, OW):
    # x is (N, C, H, W), col is (C*KH*KW, OH*OW):
    # col[(c*KH + kh)*KW + kw, oh*OW + ow] = x[n, c, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw] or 0
    C = x.shape[1]
    H = x.shape[2]
    W = x.shape[3]
    for r in prange(C * KH * KW):
        c = r // (KH * KW)
        kh = (r // KW) % KH
        kw = r % KW
        off = kw * dw - pw
        lo, hi = valid_range(OW, sw, off, W)
        for oh in range(OH):
            cr = col[r, oh * OW : (oh + 1) * OW]
            ih = oh * sh - ph + kh * dh
            if ih < 0 or ih >= H or lo >= hi:
                fill(cr, 0.0)
                continue
            fill(cr[:lo], 0.0)
            copy_row(cr[lo:hi], x[n, c, ih], lo * sw + off, sw)
            fill(cr[hi:], 0.0)


@njit(cache=True)
def _axpy4(a0, a1, a2, a3, brow, c0, c1, c2, c3, j0, nj):
    # c_r[j0:j0+nj] += a_r * brow[j0:j0+nj] for four rows: one load of b feeds four FMAs
    b = brow[j0 : j0 + nj]
    d0 = c0[j0 : j0 + nj]
    d1 = c1[j0 : j0 + nj]
    d2 = c2[j0 : j0 + nj]
    d3 = c3[j0 : j0 + nj]
    for j in range(nj):
        bj = b[j]
        d0[j] += a0 * bj
        d1[j] += a1 * bj
        d2[j] += a2 * bj
        d3[j] += a3 * bj


@njit(parallel=True, cache=True)
def gemm_rows(wf, col, b, has_b, y3, n, G):
    # wf is (OC, Kd) with Kd = C/G*KH*KW, col is (G*Kd, P), y3 is (N, OC, P):
    # y3[n, g*OCg + i] = b + wf[g*OCg + i] @ col[g*Kd : (g+1)*Kd]
    # Tiles of 4 rows x 512 columns of C, one per task; C stays in L1 but is loaded and stored
    # on every multiply-add (LLVM cannot keep it in registers), so this GEMM is store-bound.
    OC, Kd = wf.shape
    P = col.shape[1]
    OCg = OC // G
    JB = 512
    nib = (OCg + 3) // 4
    njb = (P + JB - 1) // JB
    for t in prange(G * nib * njb):
        g = t // (nib * njb)
        r = t % (nib * njb)
        ib = r // njb
        j0 = (r % njb) * JB
        nj = min(JB, P - j0)
        o0 = g * OCg + ib * 4
        rows = min(4, OCg - ib * 4)
        for i in range(rows):
            fill(y3[n, o0 + i, j0 : j0 + nj], b[o0 + i] if has_b else 0.0)
        if rows == 4:
            c0 = y3[n, o0]
            c1 = y3[n, o0 + 1]
            c2 = y3[n, o0 + 2]
            c3 = y3[n, o0 + 3]
            for p in range(Kd):
                _axpy4(
                    wf[o0, p],
                    wf[o0 + 1, p],
                    wf[o0 + 2, p],
                    wf[o0 + 3, p],
                    col[g * Kd + p],
                    c0,
                    c1,
                    c2,
                    c3,
                    j0,
                    nj,
                )
        else:
            for i in range(rows):
                ci = y3[n, o0 + i, j0 : j0 + nj]
                for p in range(Kd):
                    axpy_row(ci, wf[o0 + i, p], col[g * Kd + p], j0, 1)


# --------------------------------------------------------------------------- v3 / v4: packed GEMM


@njit(cache=True)
def _micro(Ap, aoff, Bp, kc, C, coff, ldc):
    # C[coff + r*ldc + j] += sum_p Ap[aoff + p*MR + r] * Bp[p*NR + j], r < MR = 6, j < NR = 2*V
    # (V = vwidth). The 6 x 2 vectors of C live in 12 registers for the whole p loop; each step
    # loads two vectors of B, broadcasts six values of A and issues 12 FMAs.
    # Preconditions: Ap has aoff + kc*MR elements, Bp kc*NR, C rows coff + r*ldc + NR.
    V = vwidth(Bp)
    c00 = vload(C, coff)
    c01 = vload(C, coff + V)
    c10 = vload(C, coff + ldc)
    c11 = vload(C, coff + ldc + V)
    c20 = vload(C, coff + 2 * ldc)
    c21 = vload(C, coff + 2 * ldc + V)
    c30 = vload(C, coff + 3 * ldc)
    c31 = vload(C, coff + 3 * ldc + V)
    c40 = vload(C, coff + 4 * ldc)
    c41 = vload(C, coff + 4 * ldc + V)
    c50 = vload(C, coff + 5 * ldc)
    c51 = vload(C, coff + 5 * ldc + V)
    for p in range(kc):
        b0 = vload(Bp, p * 2 * V)
        b1 = vload(Bp, p * 2 * V + V)
        ao = aoff + p * 6
        a = vbroadcast(Ap, ao)
        c00 = vfma(a, b0, c00)
        c01 = vfma(a, b1, c01)
        a = vbroadcast(Ap, ao + 1)
        c10 = vfma(a, b0, c10)
        c11 = vfma(a, b1, c11)
        a = vbroadcast(Ap, ao + 2)
        c20 = vfma(a, b0, c20)
        c21 = vfma(a, b1, c21)
        a = vbroadcast(Ap, ao + 3)
        c30 = vfma(a, b0, c30)
        c31 = vfma(a, b1, c31)
        a = vbroadcast(Ap, ao + 4)
        c40 = vfma(a, b0, c40)
        c41 = vfma(a, b1, c41)
        a = vbroadcast(Ap, ao + 5)
        c50 = vfma(a, b0, c50)
        c51 = vfma(a, b1, c51)
    vstore(C, coff, c00)
    vstore(C, coff + V, c01)
    vstore(C, coff + ldc, c10)
    vstore(C, coff + ldc + V, c11)
    vstore(C, coff + 2 * ldc, c20)
    vstore(C, coff + 2 * ldc + V, c21)
    vstore(C, coff + 3 * ldc, c30)
    vstore(C, coff + 3 * ldc + V, c31)
    vstore(C, coff + 4 * ldc, c40)
    vstore(C, coff + 4 * ldc + V, c41)
    vstore(C, coff + 5 * ldc, c50)
    vstore(C, coff + 5 * ldc + V, c51)


def conv_packed(x, w, b, has_b, y, sh, sw, ph, pw, dh, dw, G):
    """v4: pack A (the weights) once, then the packed GEMM reading B straight from x."""
    OC, Cg, KH, KW = w.shape
    Kd = Cg * KH * KW
    mb = (OC // G + MR - 1) // MR
    Ap = np.empty(G * mb * Kd * MR, y.dtype)
    pack_a(w.reshape(OC, Kd), G, Ap)
    gemm_packed(x, Ap, KH, KW, b, has_b, y, sh, sw, ph, pw, dh, dw, G, get_num_threads())


@njit(parallel=True, cache=True)
def pack_a(wf, G, Ap):
    # wf is (OC, Kd), Ap is (G, mb, Kd, MR) flat with mb = ceil(OCg / MR):
    # Ap[g, ib, p, r] = wf[g*OCg + ib*MR + r, p], rows past OCg are zero
    OC, Kd = wf.shape
    OCg = OC // G
    mb = (OCg + MR - 1) // MR
    for t in prange(G * mb):
        g = t // mb
        ib = t % mb
        base = t * Kd * MR
        for r in range(MR):
            i = ib * MR + r
            if i < OCg:
                wr = wf[g * OCg + i]
                for p in range(Kd):
                    Ap[base + p * MR + r] = wr[p]
            else:
                for p in range(Kd):
                    Ap[base + p * MR + r] = 0


@njit(cache=True)
def _pack_b(x, n, g, Cg, KH, KW, sh, sw, ph, pw, dh, dw, pc, kc, segs, nseg, nr, Bp):
    # Bp (kc, NR) flat: Bp[kk, jj] = B[pc + kk, panel column jj] (zero outside the image and
    # past nr); segs[s] = (oh, first ow, length, first column) splits the panel into runs of
    # one output row, so that each run is a clipped copy of an input row (contiguous if sw = 1)
    H = x.shape[2]
    W = x.shape[3]
    NR = Bp.shape[0] // KC
    KK = KH * KW
    for kk in range(kc):
        k = pc + kk
        c = g * Cg + k // KK
        kh = (k % KK) // KW
        kw = k % KW
        off = kw * dw - pw
        bo = kk * NR
        for s in range(nseg):
            ih = segs[s, 0] * sh - ph + kh * dh
            ow0 = segs[s, 1]
            ow1 = ow0 + segs[s, 2]
            d = bo + segs[s, 3] - ow0  # Bp index of output column ow
            if ih < 0 or ih >= H:
                fill(Bp[d + ow0 : d + ow1], 0.0)
                continue
            lo, hi = valid_range(ow1, sw, off, W)
            a = min(max(lo, ow0), ow1)
            e = max(hi, a)
            fill(Bp[d + ow0 : d + a], 0.0)
            if a < e:
                copy_row(Bp[d + a : d + e], x[n, c, ih], a * sw + off, sw)
            fill(Bp[d + e : d + ow1], 0.0)
        fill(Bp[bo + nr : bo + NR], 0.0)


@njit(parallel=True, cache=True)
def gemm_packed(x, Ap, KH, KW, b, has_b, y, sh, sw, ph, pw, dh, dw, G, nth):
    # x is (N, C, H, W), Ap the packed weights (pack_a), b is (OC,) (read if has_b),
    # y is (N, OC, OH, OW). y[n, group g] (OCg x P, P = OH*OW) = W_g (OCg x Kd) @ B (Kd x P),
    # Kd = C/G*KH*KW, where B[(c*KH + kh)*KW + kw, oh*OW + ow] is the input pixel that tap
    # (c, kh, kw) of output (oh, ow) reads. B is never materialised: each task packs KC x NR
    # blocks of it straight from x for one panel of NR output pixels (_pack_b) and multiplies
    # every MR-row panel of A into it with the SIMD micro-kernel.
    # Tasks (n, g, panel) are dealt round-robin to ``nth`` prange iterations, one per thread,
    # so each thread allocates its packing buffers once.
    N, C, H, W = x.shape
    OC = y.shape[1]
    OH = y.shape[2]
    OW = y.shape[3]
    OCg = OC // G
    Cg = C // G
    Kd = Cg * KH * KW
    P = OH * OW
    NR = 2 * vwidth(y)
    mb = (OCg + MR - 1) // MR
    yf = y.reshape(N * OC * P)
    npan = (P + NR - 1) // NR
    ntask = N * G * npan
    nth = max(1, min(nth, ntask))
    for th in prange(nth):
        Bp = np.empty(KC * NR, y.dtype)
        tile = np.empty(MR * NR, y.dtype)
        segs = np.empty((NR + 2, 4), np.int64)
        for task in range(th, ntask, nth):
            n = task // (G * npan)
            g = (task // npan) % G
            j0 = (task % npan) * NR
            nr = min(NR, P - j0)
            nseg = 0
            jj = 0
            while jj < nr:
                ow = (j0 + jj) % OW
                ln = min(OW - ow, nr - jj)
                segs[nseg, 0] = (j0 + jj) // OW
                segs[nseg, 1] = ow
                segs[nseg, 2] = ln
                segs[nseg, 3] = jj
                nseg += 1
                jj += ln
            for i in range(OCg):
                o = g * OCg + i
                base = (n * OC + o) * P + j0
                fill(yf[base : base + nr], b[o] if has_b else 0.0)
            for pc in range(0, Kd, KC):
                kc = min(KC, Kd - pc)
                _pack_b(x, n, g, Cg, KH, KW, sh, sw, ph, pw, dh, dw, pc, kc, segs, nseg, nr, Bp)
                for ib in range(mb):
                    aoff = ((g * mb + ib) * Kd + pc) * MR
                    mr = min(MR, OCg - ib * MR)
                    coff = (n * OC + g * OCg + ib * MR) * P + j0
                    if mr == MR and nr == NR:
                        _micro(Ap, aoff, Bp, kc, yf, coff, P)
                    else:  # an edge tile: through a full-size scratch tile
                        for q in range(MR * NR):
                            tile[q] = 0
                        for r in range(mr):
                            for q in range(nr):
                                tile[r * NR + q] = yf[coff + r * P + q]
                        # (coff - coff: a run-time 0; a literal 0 would compile a second _micro)
                        _micro(Ap, aoff, Bp, kc, tile, coff - coff, NR)
                        for r in range(mr):
                            for q in range(nr):
                                yf[coff + r * P + q] = tile[r * NR + q]


# --------------------------------------------------------------------------- transposed
#
# conv_transpose2d as sh * sw ordinary stride-1 convolutions ("phases"). Output row oh receives
# tap kh from input row i = (oh + ph - kh*dh) / sh when that division is exact, so the rows
# oh = rh + sh*a of one phase rh < sh all use the same taps, those kh with
# (rh + ph - kh*dh) % sh == 0. Taken in decreasing kh they are spaced sh / gcd(sh, dh) apart and
# read input rows a - ph' + t*dh' with dh' = dh / gcd(sh, dh): a stride-1 convolution with
# dilation dh', padding ph' and a sub-kernel of w. Every element of y is then written once,
# from a per-task accumulator: no col buffer, no col2im, no accumulation across tasks, and
# the products a col2im formulation computes only to drop them (outside y) are never computed.
#
# B is never packed. x is copied once into a zero-padded buffer whose planes are Hp x Wp, and
# each phase is computed on a grid of rows Wp wide (output (a, c) is grid pixel a*Wp + c):
# then the B row of tap (c, t, u) is, for any run of grid pixels, the same run of the padded
# plane shifted by one offset, so the micro-kernel loads B straight from the padded x. The
# Wp - OW_q grid columns past the phase's output row are computed and dropped (a few percent
# at real sizes); packing B instead cost more than the multiply-adds it fed when OC/G <= 64.

#: Columns of the phase table (one row per phase q = rh*sw + rw): the phase, its taps T x U,
#: its output size, its GEMM depth Kd = C/G*T*U, the offset of its packed weights in Ap, its
#: grid pixels (OH_q - 1)*Wp + OW_q, the index of its first panel among the panels of one
#: (n, g) and its number of panels.
PH_RH, PH_RW, PH_T, PH_U, PH_OH, PH_OW, PH_KD, PH_AOFF, PH_PG, PH_PAN0, PH_NPAN = range(11)


def _axis_phases(s, p, d, K, out):
    """Per phase r < s of one output axis: (its taps in increasing input offset, ph', rows)."""
    phases = []
    for r in range(s):
        taps = [k for k in range(K - 1, -1, -1) if (r + p - k * d) % s == 0]
        pad = -((r + p - taps[0] * d) // s) if taps else 0
        phases.append((taps, pad, (out - r + s - 1) // s if r < out else 0))
    return phases


def _axis_padding(phases, d2, size):
    """(zero rows before x, padded length) so that every phase reads inside the padding."""
    used = [(taps, pad, n) for taps, pad, n in phases if taps and n]
    before = max([pad for _, pad, _ in used] + [0])
    length = max([before - pad + (len(taps) - 1) * d2 + n for taps, pad, n in used] + [0])
    return before, max(length, before + size)


_scratch = threading.local()


def _workspace(name, size, dtype):
    """A 1-D buffer of ``size`` elements, reused across calls (one per Python thread, name and
    dtype). A fresh multi-megabyte np.empty takes a page fault per 4 KiB page on first touch,
    which measured slower than packing the weights into it (8 MB: 2-5 ms against 0.2 ms)."""
    key = name + np.dtype(dtype).char
    buf = getattr(_scratch, key, None)
    if buf is None or buf.size < size:
        buf = np.empty(size, dtype)
        setattr(_scratch, key, buf)
    return buf[:size]


def conv_transpose_packed(x, w, b, has_b, y, sh, sw, ph, pw, dh, dw, G, nth, wstat=None):
    """Phase table and padded x, then one of two GEMM schedules:

    - weights larger than the phases' B matrices (few input pixels, e.g. 512->256 @4): the
      weights stay where they are (gemm_phases_wstat), with 12 x 1-vector tiles instead of
      6 x 2 when no phase grid has more than one vector of pixels;
    - otherwise the weights are packed (pack_a_phases) for gemm_phases.

    ``wstat`` True / False forces the first / second (the tests run both).
    """
    N, C, H, W = x.shape
    OCg, KH, KW = w.shape[1:]
    Cg = C // G
    mb = (OCg + MR - 1) // MR
    V = 64 // y.dtype.itemsize  # elements in one vector of _numba_simd (VECTOR_BYTES = 64)
    dh2, dw2 = dh // gcd(sh, dh), dw // gcd(sw, dw)
    rows, cols = _axis_phases(sh, ph, dh, KH, y.shape[2]), _axis_phases(sw, pw, dw, KW, y.shape[3])
    PT, Hp = _axis_padding(rows, dh2, H)
    PL, Wp = _axis_padding(cols, dw2, W)
    nq = sh * sw
    taps = np.zeros((nq, KH * KW), np.int64)  # kh*KW + kw of tap k = t*U + u
    boffs = np.zeros((nq, KH * KW), np.int64)  # its offset in a padded plane
    grids = []
    for q in range(nq):
        (th, php, ohq), (tw, pwp, owq) = rows[q // sw], cols[q % sw]
        for t, kh in enumerate(th):
            for u, kw in enumerate(tw):
                taps[q, t * len(tw) + u] = kh * KW + kw
                boffs[q, t * len(tw) + u] = (PT - php + t * dh2) * Wp + PL - pwp + u * dw2
        grids.append((ohq - 1) * Wp + owq if ohq and owq else 0)
    if wstat is None:  # the larger operand stays in place: B (all phases) or the weights
        tus = [len(rows[q // sw][0]) * len(cols[q % sw][0]) for q in range(nq)]
        wstat = N * C * sum(tu * n for tu, n in zip(tus, grids)) <= w.size
    NR = V if wstat and max(grids) <= V else 2 * V

    tab = np.zeros((nq, 11), np.int64)
    aoff = pan0 = 0
    for q in range(nq):
        (th, _, ohq), (tw, _, owq) = rows[q // sw], cols[q % sw]
        kd = Cg * len(th) * len(tw)
        npan = (grids[q] + NR - 1) // NR
        tab[q] = (q // sw, q % sw, len(th), len(tw), ohq, owq, kd, aoff, grids[q], pan0, npan)
        aoff += G * mb * kd * MR
        pan0 += npan
    # the last panel of the last plane reads up to NR - 1 + max offset past the grid: slack
    xp = _workspace("xpad", N * C * Hp * Wp + Hp * Wp + 2 * NR, y.dtype)
    xp[:] = 0
    xp[: N * C * Hp * Wp].reshape(N, C, Hp, Wp)[:, :, PT : PT + H, PL : PL + W] = x
    if wstat:
        mr = 2 * MR if NR == V else MR
        edge = np.zeros((G, Cg, mr, KH * KW), y.dtype)  # the last, partial row block of w
        if OCg % mr:
            edge[:, :, : OCg % mr] = w.reshape(G, Cg, OCg, KH * KW)[:, :, OCg - OCg % mr :]
        gemm_phases_wstat(
            xp, Hp * Wp, Wp, w, edge, tab, taps, boffs, b, has_b, y, sh, sw, G, NR == V, nth
        )
    else:
        Ap = _workspace("ap", max(aoff, 1), y.dtype)
        pack_a_phases(w, G, tab, taps, Ap)
        kmr = np.arange(KH * KW, dtype=np.int64) * MR  # offsets of packed A's rows
        gemm_phases(xp, Hp * Wp, Wp, Ap, kmr, tab, boffs, b, has_b, y, sh, sw, G, nth)


@njit(parallel=True, cache=True)
def pack_a_phases(w, G, tab, taps, Ap):
    # w is (C, OCg, KH, KW); for phase q, group g and row block ib, at Ap[tab[q, PH_AOFF]]:
    # (G, mb, Kd_q, MR) with Ap[g, ib, ci*T*U + k, r] = w[g*Cg + ci, ib*MR + r].flat[taps[q, k]]
    # (zero for rows past OCg), taps[q, k] = kh*KW + kw for the k-th tap (t*U + u) of phase q.
    # One task per (g, ib) reads the MR x KH*KW slab of w of each input channel once and
    # deals its taps to the phases, writing each phase's T*U*MR values contiguously.
    C, OCg, KH, KW = w.shape
    KK = KH * KW
    Cg = C // G
    mb = (OCg + MR - 1) // MR
    wf = w.reshape(C, OCg * KK)
    for t0 in prange(G * mb):
        g = t0 // mb
        ib = t0 % mb
        mr = min(MR, OCg - ib * MR)
        for ci in range(Cg):
            src = wf[g * Cg + ci, ib * MR * KK : (ib * MR + mr) * KK]
            for q in range(tab.shape[0]):
                tu = tab[q, PH_T] * tab[q, PH_U]
                d = tab[q, PH_AOFF] + (t0 * tab[q, PH_KD] + ci * tu) * MR
                dst = Ap[d : d + tu * MR]
                for k in range(tu):
                    tp = taps[q, k]
                    for r in range(mr):
                        dst[k * MR + r] = src[r * KK + tp]
                    for r in range(mr, MR):
                        dst[k * MR + r] = 0


@njit(cache=True)
def _panel_segs(j0, nr, Wp, OWq, segs):
    # Split the grid pixels j0 .. j0+nr-1 of a phase (rows of Wp) into runs of one row, keeping
    # the output columns c < OWq: segs[s] = (row, first column, length, first pixel - j0);
    # returns the number of runs.
    nseg = 0
    jj = 0
    while jj < nr:
        c = (j0 + jj) % Wp
        ln = min(Wp - c, nr - jj)
        if c < OWq:
            segs[nseg, 0] = (j0 + jj) // Wp
            segs[nseg, 1] = c
            segs[nseg, 2] = min(ln, OWq - c)
            segs[nseg, 3] = jj
            nseg += 1
        jj += ln
    return nseg


@njit(cache=True)
def _store_phase_rows(Cb, nrow, o0, bias_ok, b, y, n, rh, rw, sh, sw, segs, nseg, NR):
    # y[n, o0 + i, rh + sh*row, rw + sw*col] = Cb[i*NR + pixel] (+ b[o0 + i]) for i < nrow and
    # the pixels of the runs segs[:nseg]: a block of phase outputs into y's strided lattice.
    for i in range(nrow):
        bias = b[o0 + i] if bias_ok else 0.0
        for s in range(nseg):
            yr = y[n, o0 + i, rh + sh * segs[s, 0], rw + sw * segs[s, 1] :]
            c0 = i * NR + segs[s, 3]
            cr = Cb[c0 : c0 + segs[s, 2]]
            for k in range(cr.shape[0]):
                yr[k * sw] = cr[k] + bias


@njit(cache=True)
def _micro_ind(A, abase, cstra, toffa, lda, Bx, bbase, cstrb, toffb, TU, nci, C, coff, ldc):
    # _micro with both operands read in place through offset tables, for k = ci*TU + kk:
    # C[coff + r*ldc + j] += sum_k A[abase + ci*cstra + toffa[kk] + r*lda]
    #                              * Bx[bbase + ci*cstrb + toffb[kk] + j]
    # (r < MR = 6, j < NR = 2*V). A is the packed weights (cstra = TU*MR, toffa = kk*MR,
    # lda = 1) or w itself (cstra = OCg*KH*KW, toffa = the taps, lda = KH*KW: six broadcasts
    # from six cache lines, cheaper than packing weights used by few panels); B is the padded x
    # (cstrb = a plane, toffb = the taps' shifts), so B is never packed. Two offset loads per
    # step ride along the 12 FMAs.
    V = vwidth(Bx)
    c00 = vload(C, coff)
    c01 = vload(C, coff + V)
    c10 = vload(C, coff + ldc)
    c11 = vload(C, coff + ldc + V)
    c20 = vload(C, coff + 2 * ldc)
    c21 = vload(C, coff + 2 * ldc + V)
    c30 = vload(C, coff + 3 * ldc)
    c31 = vload(C, coff + 3 * ldc + V)
    c40 = vload(C, coff + 4 * ldc)
    c41 = vload(C, coff + 4 * ldc + V)
    c50 = vload(C, coff + 5 * ldc)
    c51 = vload(C, coff + 5 * ldc + V)
    for ci in range(nci):
        a0 = abase + ci * cstra
        b0 = bbase + ci * cstrb
        for k in range(TU):
            bo = b0 + toffb[k]
            bv0 = vload(Bx, bo)
            bv1 = vload(Bx, bo + V)
            ao = a0 + toffa[k]
            a = vbroadcast(A, ao)
            c00 = vfma(a, bv0, c00)
            c01 = vfma(a, bv1, c01)
            a = vbroadcast(A, ao + lda)
            c10 = vfma(a, bv0, c10)
            c11 = vfma(a, bv1, c11)
            a = vbroadcast(A, ao + 2 * lda)
            c20 = vfma(a, bv0, c20)
            c21 = vfma(a, bv1, c21)
            a = vbroadcast(A, ao + 3 * lda)
            c30 = vfma(a, bv0, c30)
            c31 = vfma(a, bv1, c31)
            a = vbroadcast(A, ao + 4 * lda)
            c40 = vfma(a, bv0, c40)
            c41 = vfma(a, bv1, c41)
            a = vbroadcast(A, ao + 5 * lda)
            c50 = vfma(a, bv0, c50)
            c51 = vfma(a, bv1, c51)
    vstore(C, coff, c00)
    vstore(C, coff + V, c01)
    vstore(C, coff + ldc, c10)
    vstore(C, coff + ldc + V, c11)
    vstore(C, coff + 2 * ldc, c20)
    vstore(C, coff + 2 * ldc + V, c21)
    vstore(C, coff + 3 * ldc, c30)
    vstore(C, coff + 3 * ldc + V, c31)
    vstore(C, coff + 4 * ldc, c40)
    vstore(C, coff + 4 * ldc + V, c41)
    vstore(C, coff + 5 * ldc, c50)
    vstore(C, coff + 5 * ldc + V, c51)


@njit(cache=True)
def _micro_ind12(A, abase, cstra, toffa, lda, Bx, bbase, cstrb, toffb, TU, nci, C, coff, ldc):
    # _micro_ind with a 12 x 1-vector tile (rows r < 12, columns j < V): for phase grids of at
    # most V pixels, where the 6 x 2-vector tile would multiply padding in half its columns.
    # 12 broadcasts and one load of B feed 12 FMAs per step.
    c0 = vload(C, coff)
    c1 = vload(C, coff + ldc)
    c2 = vload(C, coff + 2 * ldc)
    c3 = vload(C, coff + 3 * ldc)
    c4 = vload(C, coff + 4 * ldc)
    c5 = vload(C, coff + 5 * ldc)
    c6 = vload(C, coff + 6 * ldc)
    c7 = vload(C, coff + 7 * ldc)
    c8 = vload(C, coff + 8 * ldc)
    c9 = vload(C, coff + 9 * ldc)
    c10 = vload(C, coff + 10 * ldc)
    c11 = vload(C, coff + 11 * ldc)
    for ci in range(nci):
        a0 = abase + ci * cstra
        b0 = bbase + ci * cstrb
        for k in range(TU):
            bv = vload(Bx, b0 + toffb[k])
            ao = a0 + toffa[k]
            c0 = vfma(vbroadcast(A, ao), bv, c0)
            c1 = vfma(vbroadcast(A, ao + lda), bv, c1)
            c2 = vfma(vbroadcast(A, ao + 2 * lda), bv, c2)
            c3 = vfma(vbroadcast(A, ao + 3 * lda), bv, c3)
            c4 = vfma(vbroadcast(A, ao + 4 * lda), bv, c4)
            c5 = vfma(vbroadcast(A, ao + 5 * lda), bv, c5)
            c6 = vfma(vbroadcast(A, ao + 6 * lda), bv, c6)
            c7 = vfma(vbroadcast(A, ao + 7 * lda), bv, c7)
            c8 = vfma(vbroadcast(A, ao + 8 * lda), bv, c8)
            c9 = vfma(vbroadcast(A, ao + 9 * lda), bv, c9)
            c10 = vfma(vbroadcast(A, ao + 10 * lda), bv, c10)
            c11 = vfma(vbroadcast(A, ao + 11 * lda), bv, c11)
    vstore(C, coff, c0)
    vstore(C, coff + ldc, c1)
    vstore(C, coff + 2 * ldc, c2)
    vstore(C, coff + 3 * ldc, c3)
    vstore(C, coff + 4 * ldc, c4)
    vstore(C, coff + 5 * ldc, c5)
    vstore(C, coff + 6 * ldc, c6)
    vstore(C, coff + 7 * ldc, c7)
    vstore(C, coff + 8 * ldc, c8)
    vstore(C, coff + 9 * ldc, c9)
    vstore(C, coff + 10 * ldc, c10)
    vstore(C, coff + 11 * ldc, c11)


@njit(parallel=True, cache=True)
def gemm_phases(xp, HW, Wp, Ap, kmr, tab, boffs, b, has_b, y, sh, sw, G, nth):
    # xp the padded x (N, C, Hp, Wp) flat (HW = Hp*Wp), Ap from pack_a_phases, kmr[k] = k*MR,
    # boffs[q, k] the shift of tap k of phase q in a padded plane, b is (OC,) (read if has_b),
    # y is (N, OC, OH, OW). Phase q of group g: Y_q (OCg x grid) = A_q (OCg x Kd_q) @ B_q with
    # B_q[ci*T*U + k, j] = xp[n, g*Cg + ci].flat[boffs[q, k] + j], and Y_q[o, a*Wp + c] (c < OW_q)
    # is y[n, g*OCg + o, rh + sh*a, rw + sw*c].
    # Tasks (n, g, q, panel of NR grid pixels) are dealt round-robin to ``nth`` threads. A task
    # accumulates its whole OCg x NR block in a scratch Cb (rows padded to MR), KC rows of B at
    # a time so that they stay in L1 across the row blocks, then writes it with the bias.
    OC = y.shape[1]
    N = y.shape[0]
    OCg = OC // G
    NR = 2 * vwidth(y)
    mb = (OCg + MR - 1) // MR
    nq = tab.shape[0]
    per = tab[nq - 1, PH_PAN0] + tab[nq - 1, PH_NPAN]  # panels of one (n, g)
    ntask = N * G * per
    nth = max(1, min(nth, ntask))
    for th in prange(nth):
        Cb = np.empty(mb * MR * NR, y.dtype)
        segs = np.empty((NR + 2, 4), np.int64)
        z = th - th  # a run-time 0: a literal would compile a second micro-kernel
        for task in range(th, ntask, nth):
            n = task // (G * per)
            g = (task // per) % G
            pan = task % per
            q = 0
            while pan >= tab[q, PH_PAN0] + tab[q, PH_NPAN]:
                q += 1
            TU = tab[q, PH_T] * tab[q, PH_U]
            Kd = tab[q, PH_KD]
            Cg = Kd // max(TU, 1)  # (used only when TU > 0)
            j0 = (pan - tab[q, PH_PAN0]) * NR
            nr = min(NR, tab[q, PH_PG] - j0)
            nseg = _panel_segs(j0, nr, Wp, tab[q, PH_OW], segs)
            fill(Cb, 0.0)
            nciblk = max(1, KC // max(TU, 1))
            for ci0 in range(0, Cg if TU > 0 else 0, nciblk):
                nci = min(nciblk, Cg - ci0)
                bb = ((n * G + g) * Cg + ci0) * HW + j0
                for ib in range(mb):
                    ab = tab[q, PH_AOFF] + ((g * mb + ib) * Kd + ci0 * TU) * MR
                    # lda = z + 1: a literal 1 would compile a second _micro_ind
                    _micro_ind(
                        Ap,
                        ab,
                        TU * MR,
                        kmr,
                        z + 1,
                        xp,
                        bb,
                        HW,
                        boffs[q],
                        TU,
                        nci,
                        Cb,
                        ib * MR * NR,
                        NR,
                    )
            _store_phase_rows(
                Cb,
                OCg,
                g * OCg,
                has_b,
                b,
                y,
                n,
                tab[q, PH_RH],
                tab[q, PH_RW],
                sh,
                sw,
                segs,
                nseg,
                NR,
            )


@njit(parallel=True, cache=True)
def gemm_phases_wstat(xp, HW, Wp, w, edge, tab, taps, boffs, b, has_b, y, sh, sw, G, narrow, nth):
    # xp, HW, Wp, boffs, y as in gemm_phases; w is (C, OCg, KH, KW), edge is (G, C/G, MRx, KH*KW):
    # rows OCg - OCg % MRx .. OCg - 1 of w zero-padded to MRx (unused if OCg % MRx == 0). The
    # tile is MRx x NRx = 6 x 2V, or 12 x V if ``narrow``.
    # The phase GEMMs of gemm_phases with the loops turned round for weights larger than B: one
    # task per (n, g, row block ib of MRx output channels) runs every phase and panel, reading
    # its rows of A in place from w (each weight is read from memory once, its slab staying in
    # cache across phases): no packing at all.
    N = y.shape[0]
    C, OCg, KH, KW = w.shape
    KK = KH * KW
    Cg = C // G
    V = vwidth(y)
    NR = V if narrow else 2 * V
    MRx = 2 * MR if narrow else MR
    mb = (OCg + MRx - 1) // MRx
    nq = tab.shape[0]
    wf = w.reshape(C * OCg * KK)
    ef = edge.reshape(edge.size)
    ntask = N * G * mb
    nth = max(1, min(nth, ntask))
    for th in prange(nth):
        tile = np.empty(MR * 2 * V, y.dtype)
        segs = np.empty((NR + 2, 4), np.int64)
        z = th - th  # a run-time 0: a literal would compile a second micro-kernel
        for task in range(th, ntask, nth):
            n = task // (G * mb)
            g = (task // mb) % G
            ib = task % mb
            mr = min(MRx, OCg - ib * MRx)
            for q in range(nq):
                TU = tab[q, PH_T] * tab[q, PH_U]
                nciblk = max(1, KC // max(TU, 1))
                for lp in range(tab[q, PH_NPAN]):
                    j0 = lp * NR
                    nr = min(NR, tab[q, PH_PG] - j0)
                    nseg = _panel_segs(j0, nr, Wp, tab[q, PH_OW], segs)
                    fill(tile, 0.0)
                    for ci0 in range(0, Cg if TU > 0 else 0, nciblk):
                        nci = min(nciblk, Cg - ci0)
                        # rows of A: in place in w, or the zero-padded copy of the last block
                        A, ab, cstr = wf, ((g * Cg + ci0) * OCg + ib * MRx) * KK, OCg * KK
                        if mr < MRx:
                            A, ab, cstr = ef, (g * Cg + ci0) * MRx * KK, MRx * KK
                        bb = ((n * G + g) * Cg + ci0) * HW + j0
                        if narrow:
                            _micro_ind12(
                                A, ab, cstr, taps[q], KK, xp, bb, HW, boffs[q], TU, nci, tile, z, NR
                            )
                        else:
                            _micro_ind(
                                A, ab, cstr, taps[q], KK, xp, bb, HW, boffs[q], TU, nci, tile, z, NR
                            )
                    _store_phase_rows(
                        tile,
                        mr,
                        g * OCg + ib * MRx,
                        has_b,
                        b,
                        y,
                        n,
                        tab[q, PH_RH],
                        tab[q, PH_RW],
                        sh,
                        sw,
                        segs,
                        nseg,
                        NR,
                    )
