"""Transposed convolution of the numba CPU backend: sh*sw stride-1 phase convolutions.

  conv_transpose_packed  the phase table and the zero-padded x, then one of two schedules:
  pack_a_phases          the weights of every phase packed into MR-row panels, for ...
  gemm_phases            ... one task per panel of grid pixels, B read in place from the padded x
  gemm_phases_wstat      weights read in place from w, one task per block of output channels
                         (for weights larger than the phases' B matrices)
  conv_transpose_gather  plain loops, for weights holding NaN or +-Inf (see its docstring)

The micro-kernels (_micro_ind, _micro_ind12) are gemm.py's. How the phases are formed is told
below, above the phase table. Run: ``pytest tests/test_numba_cpu.py -k conv_transpose2d``.
"""

from __future__ import annotations

import threading
from math import gcd

import numpy as np
from numba import njit, prange

from .gemm import KC, MR, _micro_ind, _micro_ind12
from .rows import fill
from .simd import VECTOR_BYTES, vwidth

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
    V = VECTOR_BYTES // y.dtype.itemsize  # elements in one vector of simd.py
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
def _phase_of_panel(tab, pan):
    # The phase whose panels hold panel ``pan`` of one (n, g): the last q with
    # tab[q, PH_PAN0] <= pan (phases without panels share the next phase's PH_PAN0, and the
    # column never decreases), by bisection: a stride of s has s phases per axis, and a scan
    # per task made a large stride quadratic (stride 10**5 on 11 inputs: 9 s).
    lo, hi = 0, tab.shape[0]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if tab[mid, PH_PAN0] <= pan:
            lo = mid
        else:
            hi = mid
    return lo


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
            q = _phase_of_panel(tab, pan)
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


@njit(parallel=True, cache=True)
def conv_transpose_gather(x, w, b, has_b, y, sh, sw, ph, pw, dh, dw, G):
    # x is (N, C, H, W), w is (C, OC/G, KH, KW), b is (OC,) (read if has_b), y is (N, OC, OH, OW)
    # The contract's scatter as a gather, one task per output plane: output row i receives
    # input row ih through tap kh when ih*sh - ph + kh*dh == i. Each output sums exactly the
    # products the scatter gives it, so a NaN or +-Inf weight reaches only those outputs; the
    # phase GEMMs multiply it by the zero rows of the padded x as well (0 x Inf = NaN on
    # outputs that never receive it). Slow; run only for non-finite weights.
    N, C, H, W = x.shape
    OCg, KH, KW = w.shape[1], w.shape[2], w.shape[3]
    OC, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    Cg = C // G
    z = np.zeros(1, y.dtype)[0]
    for t in prange(N * OC):
        n = t // OC
        o = t % OC
        c0 = (o // OCg) * Cg
        oo = o % OCg
        bias = b[o] if has_b else z
        for i in range(OH):
            for j in range(OW):
                acc = bias
                for kh in range(KH):
                    th = i + ph - kh * dh
                    if th < 0 or th % sh != 0 or th // sh >= H:
                        continue
                    ih = th // sh
                    for kw in range(KW):
                        tw = j + pw - kw * dw
                        if tw < 0 or tw % sw != 0 or tw // sw >= W:
                            continue
                        iw = tw // sw
                        for c in range(Cg):
                            acc += x[n, c0 + c, ih, iw] * w[c0 + c, oo, kh, kw]
                y[n, o, i, j] = acc
