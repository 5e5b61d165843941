"""Numba convolution kernels: the conv2d ladder, depthwise, transposed.

depthwise_conv2d runs conv_depthwise_same (stride 1, OW == W: whole-plane taps under column
masks) or else conv_direct with G = C; conv_transpose2d runs conv_transpose_direct.

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

import numpy as np
from numba import get_num_threads, njit, prange

from ._numba_simd import vbroadcast, vfma, vload, vstore, vwidth

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


@njit(parallel=True, cache=True)
def conv_transpose_direct(x, w, b, has_b, y, sh, sw, ph, pw, dh, dw, G):
    # x is (N, C, H, W), w is (C, OC/G, KH, KW), b is (OC,) (read if has_b), y is (N, OC, OH, OW)
    # The adjoint of conv2d as a gather per output plane (n, o), so tasks never write the same
    # element: every input row i and tap (c, kh, kw) adds w * x[n, c, i] to output row
    # i*sh - ph + kh*dh at columns j*sw - pw + kw*dw (those inside y).
    N, C, H, W = x.shape
    OCg = w.shape[1]
    KH = w.shape[2]
    KW = w.shape[3]
    OH = y.shape[2]
    OW = y.shape[3]
    OC = OCg * G
    Cg = C // G
    for t in prange(N * OC):
        n = t // OC
        o = t % OC
        g = o // OCg
        oo = o % OCg
        bias = b[o] if has_b else 0.0
        yp = y[n, o]
        for oh in range(OH):
            fill(yp[oh], bias)
        for ci in range(Cg):
            c = g * Cg + ci
            for kh in range(KH):
                for i in range(H):
                    oh = i * sh - ph + kh * dh
                    if oh < 0 or oh >= OH:
                        continue
                    yr = yp[oh]
                    xr = x[n, c, i]
                    for kw in range(KW):
                        wv = w[c, oo, kh, kw]
                        off = kw * dw - pw
                        lo, hi = valid_range(W, sw, off, OW)
                        if lo >= hi:
                            continue
                        xs = xr[lo:hi]
                        if sw == 1:
                            ys = yr[lo + off : hi + off]
                            for j in range(hi - lo):
                                ys[j] += wv * xs[j]
                        else:
                            yg = yr[lo * sw + off :]
                            for j in range(hi - lo):
                                yg[j * sw] += wv * xs[j]
