"""Reference backend of the capsule kernels: plain NumPy in float64, the living definition.

The kernel names and arguments are those of ``fastconv.backends.c.capsule`` (its docstring
holds the contract); :mod:`fastconv.capsule` validates, allocates and dispatches. Readable
first: the routing loop is the paper's Procedure 1 line by line, and its backward pass
recomputes the forward iterations, keeps each one's c, s and v, and walks them back.
"""

from __future__ import annotations

import numpy as np

AVAILABLE_REASON = "available"
ACC = np.float64  # every kernel computes in float64 whatever the dtype


def squash(s: np.ndarray) -> np.ndarray:
    """squash over the last axis: s |s| / (1 + |s|^2) (finite, and 0, at s = 0)."""
    n2 = np.sum(s * s, axis=-1, keepdims=True)
    return s * (np.sqrt(n2) / (1.0 + n2))


def squash_backward(s: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/ds for dL/dv = g through v = squash(s) (last axis): f g + s (s.g) f'(n) / n with
    n = |s|, f = n / (1 + n^2), f'(n) = (1 - n^2) / (1 + n^2)^2; the second term, which
    tends to 0 with s, is 0 at s = 0."""
    n2 = np.sum(s * s, axis=-1, keepdims=True)
    n = np.sqrt(n2)
    q = 1.0 + n2
    sg = np.sum(s * g, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(n > 0, sg * (1.0 - n2) / (n * q * q), 0.0)
    return (n / q) * g + k * s


def _softmax(b: np.ndarray) -> np.ndarray:
    e = np.exp(b - b.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def capsule_predict(u, w, uhat):
    # u is (N, I, Din), w is (I, J, Dout, Din), uhat is (N, I, J, Dout)
    uhat[...] = np.einsum("ijdk,nik->nijd", w.astype(ACC), u.astype(ACC))


def capsule_predict_backward(u, w, guhat, gu, gw):
    # u is (N, I, Din), w is (I, J, Dout, Din), guhat is (N, I, J, Dout); gu, gw or None
    g = guhat.astype(ACC)
    if gu is not None:
        gu[...] = np.einsum("ijdk,nijd->nik", w.astype(ACC), g)
    if gw is not None:
        gw[...] = np.einsum("nijd,nik->ijdk", g, u.astype(ACC))


def _route(u: np.ndarray, iterations: int):
    """Procedure 1 on u (N, I, J, D) in float64: each iteration's (c, s, v)."""
    N, I, J, D = u.shape
    b = np.zeros((N, I, J), ACC)
    history = []
    for t in range(iterations):
        c = _softmax(b)  # over the J output capsules
        s = np.einsum("nij,nijd->njd", c, u)
        v = squash(s)
        history.append((c, s, v))
        if t < iterations - 1:
            b = b + np.einsum("nijd,njd->nij", u, v)
    return history


def dynamic_routing(uhat, v, c, iterations):
    # uhat is (N, I, J, D), v is (N, J, D), c is (N, I, J) or None
    last_c, _, last_v = _route(uhat.astype(ACC), iterations)[-1]
    v[...] = last_v
    if c is not None:
        c[...] = last_c


def dynamic_routing_backward(uhat, gv, guhat, iterations):
    # uhat and guhat are (N, I, J, D), gv is (N, J, D)
    u = uhat.astype(ACC)
    history = _route(u, iterations)
    gu = np.zeros_like(u)
    gb = np.zeros(u.shape[:3], ACC)  # dL/db of the iteration after the current one
    for t in range(iterations - 1, -1, -1):
        c, s, v = history[t]
        g_v = gv.astype(ACC) if t == iterations - 1 else np.zeros_like(v)
        if t < iterations - 1:  # b_{t+1} = b_t + u . v_t
            g_v = g_v + np.einsum("nij,nijd->njd", gb, u)
            gu += gb[..., None] * v[:, None]
        g_s = squash_backward(s, g_v)  # v_t = squash(s_t)
        g_c = np.einsum("nijd,njd->nij", u, g_s)  # s_t = sum_i c u
        gu += c[..., None] * g_s[:, None]
        if t > 0:  # c_t = softmax(b_t); b_0 = 0 is a constant
            gb = gb + c * (g_c - np.sum(c * g_c, axis=-1, keepdims=True))
    guhat[...] = gu
