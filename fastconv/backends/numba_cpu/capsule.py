"""Numba CPU kernels of the capsule ops, used by :mod:`fastconv.capsule`.

The kernel names and arguments are those of ``fastconv.backends.c.capsule`` (its docstring
holds the contract). The same plan as the C kernels (csrc/capsule.c):

- prediction vectors: ``prange`` over the input capsules i; W[i] is copied transposed into a
  (Din, J*Dout) panel, so each sample's J*Dout outputs are Din broadcast-multiply-adds along
  a contiguous row, which LLVM vectorises; the backward pass walks the same order, each task
  owning its slices gW[i] (no races).
- routing: ``prange`` over the samples; one sample's uhat (I, J, D) stays in cache over the
  2r - 1 passes of r iterations; squash's norms and coefficients are computed in float64.
  The backward pass recomputes the iterations (keeping each one's c, s, v) and walks them
  back (the formulas are in csrc/capsule.c and docs/capsules.md).

Each kernel compiles once per dtype (float32, float64) and caches on disk; outputs that may
be None (gu, gw, c) reach the kernels as an empty array plus a flag.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import _sync_threads

__all__ = [
    "capsule_predict",
    "capsule_predict_backward",
    "dynamic_routing",
    "dynamic_routing_backward",
]

AVAILABLE_REASON = "available"
# reassociation lets LLVM vectorise the dot products; no other fast-math flag (NaN stays NaN)
_FM = {"reassoc", "contract"}


# --------------------------------------------------------------------------- predictions


@njit(parallel=True, cache=True, fastmath=_FM)
def _predict(u, w, uhat):
    # u is (N, I, Din), w is (I, J, Dout, Din), uhat is (N, I, J, Dout)
    N, I, Din = u.shape
    K = w.shape[1] * w.shape[2]
    for i in prange(I):
        wi = w[i].reshape((K, Din))
        wt = np.empty((Din, K), w.dtype)
        for r in range(K):
            for k in range(Din):
                wt[k, r] = wi[r, k]
        for n in range(N):
            x = u[n, i]
            out = uhat[n, i].reshape(K)
            x0 = x[0]
            for r in range(K):
                out[r] = x0 * wt[0, r]
            for k in range(1, Din):
                xk = x[k]
                for r in range(K):
                    out[r] += xk * wt[k, r]


@njit(parallel=True, cache=True, fastmath=_FM)
def _predict_backward(u, w, guhat, gu, want_gu, gw, want_gw):
    # gu[n, i, k] = sum_r W[i][r, k] g[n, i, r]; gw[i][r, k] = sum_n g[n, i, r] u[n, i, k]
    N, I, Din = u.shape
    K = w.shape[1] * w.shape[2]
    for i in prange(I):
        wi = w[i].reshape((K, Din))
        wt = np.empty((Din, K), w.dtype)
        for r in range(K):
            for k in range(Din):
                wt[k, r] = wi[r, k]
        gwt = np.zeros((Din, K), w.dtype)
        for n in range(N):
            g = guhat[n, i].reshape(K)
            x = u[n, i]
            if want_gu:
                for k in range(Din):
                    acc = x.dtype.type(0)
                    for r in range(K):
                        acc += wt[k, r] * g[r]
                    gu[n, i, k] = acc
            if want_gw:
                for k in range(Din):
                    xk = x[k]
                    for r in range(K):
                        gwt[k, r] += xk * g[r]
        if want_gw:
            gi = gw[i].reshape((K, Din))
            for r in range(K):
                for k in range(Din):
                    gi[r, k] = gwt[k, r]


# --------------------------------------------------------------------------- routing


@njit(cache=True, fastmath=_FM)
def _squash(s, v):
    # v[j] = s[j] |s[j]| / (1 + |s[j]|^2), the norm in float64
    J, D = s.shape
    for j in range(J):
        n2 = 0.0
        for d in range(D):
            n2 += float(s[j, d]) * float(s[j, d])
        f = math.sqrt(n2) / (1.0 + n2)
        for d in range(D):
            v[j, d] = s[j, d] * f


@njit(cache=True, fastmath=_FM)
def _squash_back(s, gv, gs):
    # gs = f gv + s (s . gv) (1 - n^2) / (n (1 + n^2)^2), second term 0 at n = 0
    J, D = s.shape
    for j in range(J):
        n2 = 0.0
        sg = 0.0
        for d in range(D):
            n2 += float(s[j, d]) * float(s[j, d])
            sg += float(s[j, d]) * float(gv[j, d])
        n = math.sqrt(n2)
        q = 1.0 + n2
        f = n / q
        k = sg * (1.0 - n2) / (n * q * q) if n > 0 else 0.0
        for d in range(D):
            gs[j, d] = f * gv[j, d] + k * s[j, d]


@njit(cache=True, fastmath=_FM)
def _softmax(b, c):
    # c[i, :] = softmax(b[i, :]) over the J output capsules
    I, J = b.shape
    for i in range(I):
        m = b[i, 0]
        for j in range(1, J):
            if b[i, j] > m:
                m = b[i, j]
        total = 0.0
        for j in range(J):
            e = math.exp(b[i, j] - m)
            c[i, j] = e
            total += e
        inv = 1.0 / total
        for j in range(J):
            c[i, j] *= inv


@njit(cache=True, fastmath=_FM)
def _route_one(u, c, s, vh, b, iterations, keep):
    # Procedure 1 for one sample u (I, J, D); iteration t uses c[t], s[t], vh[t] when keep
    # (the backward pass needs them all), else slot 0; returns the slot of the last one
    I, J, D = u.shape
    for t in range(iterations):
        k = t if keep else 0
        ct, st, vt = c[k], s[k], vh[k]
        if t == 0:
            ct[:, :] = 1.0 / J  # softmax of b = 0
        else:
            _softmax(b, ct)
        st[:, :] = 0
        for i in range(I):
            for j in range(J):
                cij = ct[i, j]
                for d in range(D):
                    st[j, d] += cij * u[i, j, d]
        _squash(st, vt)
        if t < iterations - 1:
            for i in range(I):
                for j in range(J):
                    a = u.dtype.type(0)
                    for d in range(D):
                        a += u[i, j, d] * vt[j, d]
                    b[i, j] = a if t == 0 else b[i, j] + a
    return iterations - 1 if keep else 0


@njit(parallel=True, cache=True, fastmath=_FM)
def _routing(uhat, v, c, want_c, iterations):
    # uhat is (N, I, J, D), v is (N, J, D), c is (N, I, J) when want_c
    N, I, J, D = uhat.shape
    for n in prange(N):
        cw = np.empty((1, I, J), uhat.dtype)
        s = np.empty((1, J, D), uhat.dtype)
        vh = np.empty((1, J, D), uhat.dtype)
        b = np.empty((I, J), uhat.dtype)
        _route_one(uhat[n], cw, s, vh, b, iterations, False)
        v[n] = vh[0]
        if want_c:
            c[n] = cw[0]


@njit(parallel=True, cache=True, fastmath=_FM)
def _routing_backward(uhat, gv, guhat, iterations):
    # guhat = dL/duhat for dL/dv = gv; see csrc/capsule.c (caps_route_back_one) for the steps
    N, I, J, D = uhat.shape
    for n in prange(N):
        u = uhat[n]
        gu = guhat[n]
        c = np.empty((iterations, I, J), uhat.dtype)
        s = np.empty((iterations, J, D), uhat.dtype)
        vh = np.empty((iterations, J, D), uhat.dtype)
        b = np.empty((I, J), uhat.dtype)
        gb = np.zeros((I, J), uhat.dtype)
        gvt = np.empty((J, D), uhat.dtype)
        gs = np.empty((J, D), uhat.dtype)
        gc = np.empty(J, uhat.dtype)
        _route_one(u, c, s, vh, b, iterations, True)
        gu[:, :, :] = 0
        for t in range(iterations - 1, -1, -1):
            ct, st, vt = c[t], s[t], vh[t]
            if t == iterations - 1:
                gvt[:, :] = gv[n]
            else:  # b_{t+1} = b_t + u . v_t
                gvt[:, :] = 0
                for i in range(I):
                    for j in range(J):
                        g = gb[i, j]
                        for d in range(D):
                            gvt[j, d] += g * u[i, j, d]
                            gu[i, j, d] += g * vt[j, d]
            _squash_back(st, gvt, gs)  # v_t = squash(s_t)
            for i in range(I):  # s_t = sum_i c u, and c_t = softmax(b_t)
                dotc = 0.0
                for j in range(J):
                    cij = ct[i, j]
                    a = u.dtype.type(0)
                    for d in range(D):
                        a += u[i, j, d] * gs[j, d]
                        gu[i, j, d] += cij * gs[j, d]
                    gc[j] = a
                    dotc += cij * a
                if t > 0:  # b_0 = 0 is a constant
                    for j in range(J):
                        gb[i, j] += ct[i, j] * (gc[j] - dotc)


# --------------------------------------------------------------------------- entry points


def _none(dtype):
    return np.empty((0, 0, 0, 0), dtype)


def capsule_predict(u, w, uhat):
    # u is (N, I, Din), w is (I, J, Dout, Din), uhat is (N, I, J, Dout)
    _sync_threads()
    _predict(u, w, uhat)


def capsule_predict_backward(u, w, guhat, gu, gw):
    # u is (N, I, Din), w is (I, J, Dout, Din), guhat is (N, I, J, Dout); gu, gw or None
    _sync_threads()
    want_gu, want_gw = gu is not None, gw is not None
    _predict_backward(u, w, guhat, gu if want_gu else np.empty((0, 0, 0), u.dtype), want_gu,
                      gw if want_gw else _none(u.dtype), want_gw)


def dynamic_routing(uhat, v, c, iterations):
    # uhat is (N, I, J, D), v is (N, J, D), c is (N, I, J) or None
    _sync_threads()
    want_c = c is not None
    _routing(uhat, v, c if want_c else np.empty((0, 0, 0), uhat.dtype), want_c,
             int(iterations))


def dynamic_routing_backward(uhat, gv, guhat, iterations):
    # uhat and guhat are (N, I, J, D), gv is (N, J, D)
    _sync_threads()
    _routing_backward(uhat, gv, guhat, int(iterations))
