"""GEMM kernels of the numba CPU backend: im2col, packing and the register-tile micro-kernels.

  im2col        v2_im2col / v3_packed: one image into the (C*KH*KW, OH*OW) column matrix
  gemm_rows     v2_im2col: the GEMM in plain Numba loops, 4 x 512 tiles of y (store-bound)
  conv_packed   v3_packed / v4_implicit: pack_a once, then gemm_packed
  pack_a        the weights (A) into panels of MR rows
  gemm_packed   B packed straight from x in KC x NR blocks (_pack_b), times every panel of A
  _micro        the 6 x 2-vector register tile on packed A and packed B
  _micro_ind    the same tile reading A and B in place through offset tables (transpose.py)
  _micro_ind12  a 12 x 1-vector tile of _micro_ind, for grids of at most one vector of pixels

The micro-kernels hold their tile of C in registers through the explicit vectors of simd.py.
Run: ``pytest tests/test_numba_cpu.py``; speed: ``python bench/bench_numba.py perf``.
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange

from .rows import axpy_row, copy_row, fill, valid_range
from .simd import vbroadcast, vfma, vload, vstore, vwidth

#: Rows of the micro-kernel's C tile (its columns are two vectors: 32 float32 / 16 float64).
MR = 6
#: Depth of one packed block of A and B (a B block of KC x 32 float32 is 32 KiB: L1-sized).
KC = 256


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


# --------------------------------------------------------------------------- indexed operands


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
