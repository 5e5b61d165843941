"""@cuda.jit convolution kernels of the numba_cuda backend, built once per dtype by :func:`build`.

  conv2d_direct     v1_direct: one thread per output element, loops over C/G x KH x KW
  conv2d_gemm       v2_tiled: shared-memory tiled implicit GEMM, B gathered from x (im2col)
  separable_gemm    the same GEMM whose B tile is the depthwise output computed on the fly
  depthwise_conv2d  one thread per output element; channel o reads input channel o // m
  conv_transpose2d  gather form: one thread per output element sums what reaches it

Each kernel is built by a factory closing over the scalar type ``dt`` (numpy.float32 or
numpy.float64), so accumulators, shared tiles and constants are of the array's dtype: a
literal ``0.0`` would be float64 and would make float32 kernels run at float64 speed.
launch.py picks the grids and launches them. Run: ``pytest tests/test_cuda_engine.py`` (in
numba's CUDA simulator without a GPU).
"""

from __future__ import annotations

from numba import cuda
from numba.cuda.core import config as _cuda_config

SIMULATOR = bool(_cuda_config.ENABLE_CUDASIM)

# Under NUMBA_ENABLE_CUDASIM=1 every thread is a Python thread, so the tiles are made small
# there (the index arithmetic is the same code with other constants).
if SIMULATOR:
    TX = TY = 4  # implicit-GEMM block: TY x TX threads ...
    RM = RN = 2  # ... each computing an RM x RN register tile
    BK = 4  # depth of one K step of the shared tiles
else:
    TX = TY = 16
    RM = RN = 4
    BK = 8
BM, BN = TY * RM, TX * RN  # output tile: BM output channels x BN output pixels
NT = TX * TY  # threads of a GEMM block
# The tile loaders rely on these: each thread loads a fixed column of B and a fixed k of A.
assert NT % BN == 0 and NT % BK == 0 and BM * BK % NT == 0 and BN * BK % NT == 0


def build(dt):
    """The convolution kernels for the scalar type ``dt``, by name."""

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
                    for kw in range(KW):
                        iw = j * sw - pw + kw * dw
                        # a padded tap reads zero and still multiplies: 0 x NaN = NaN
                        xv = dt(0)
                        if 0 <= ih < H and 0 <= iw < W:
                            xv = x[n, c0 + c, ih, iw]
                        acc += w[o, c, kh, kw] * xv
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
            for kw in range(KW):
                iw = wb + kw * dw
                xv = dt(0)  # zero padding, multiplied as in conv2d_direct
                if 0 <= ih < H and 0 <= iw < W:
                    xv = x[n, c, ih, iw]
                acc += wd[k, 0, kh, kw] * xv
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
                for kw in range(KW):
                    iw = j * sw - pw + kw * dw
                    xv = dt(0)  # zero padding, multiplied as in conv2d_direct
                    if 0 <= ih < H and 0 <= iw < W:
                        xv = x[n, c, ih, iw]
                    acc += w[o, 0, kh, kw] * xv
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

    return {
        "conv2d_direct": conv2d_direct,
        "conv2d_gemm": conv2d_gemm,
        "separable_gemm": separable_gemm,
        "depthwise_conv2d": depthwise_conv2d,
        "conv_transpose2d": conv_transpose2d,
    }
