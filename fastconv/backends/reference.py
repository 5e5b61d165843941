"""Reference backend: plain NumPy, the living definition of every fastconv op.

Readable first, never fast: each kernel loops over the kernel window (kh, kw) and does the
rest with whole-array NumPy operations, accumulating in float64 whatever the dtype, so that
it is exact to float64 rounding. Every other backend is tested against it.

Kernel signatures and the conventions they share are in ``fastconv/backends/__init__.py``.
"""

from __future__ import annotations

import numpy as np

from .._shapes import adaptive_bins

AVAILABLE_REASON = "available"
ACC = np.float64  # accumulation dtype


def _window_slice(k: int, d: int, s: int, out: int) -> slice:
    """Positions k*d, k*d + s, ... (out of them) of a padded axis: one tap of the window."""
    return slice(k * d, k * d + (out - 1) * s + 1, s)


def _zero_padded(x: np.ndarray, ph: int, pw: int, need_h: int, need_w: int) -> np.ndarray:
    """x (N, C, H, W) in float64 with ph rows / pw columns of zeros before it and enough
    zeros after it to be at least need_h x need_w."""
    N, C, H, W = x.shape
    xp = np.zeros((N, C, max(need_h, ph + H), max(need_w, pw + W)), ACC)
    xp[:, :, ph : ph + H, pw : pw + W] = x
    return xp


# --------------------------------------------------------------------------- convolutions


def conv2d(x, w, b, y, sh, sw, ph, pw, dh, dw, groups, variant=None):
    # x is (N, C, H, W), w is (OC, C/G, KH, KW), b is (OC,) or None, y is (N, OC, OH, OW)
    N, C, H, W = x.shape
    OC, Cg, KH, KW = w.shape
    OH, OW = y.shape[2:]
    G = groups
    xp = _zero_padded(
        x, ph, pw, (OH - 1) * sh + (KH - 1) * dh + 1, (OW - 1) * sw + (KW - 1) * dw + 1
    )
    wg = w.astype(ACC).reshape(G, OC // G, Cg, KH, KW)
    acc = np.zeros((N, G, OC // G, OH, OW), ACC)
    for kh in range(KH):
        for kw in range(KW):
            tap = xp[:, :, _window_slice(kh, dh, sh, OH), _window_slice(kw, dw, sw, OW)]
            tap = tap.reshape(N, G, Cg, OH, OW)
            acc += np.einsum("goc,ngchw->ngohw", wg[:, :, :, kh, kw], tap)
    acc = acc.reshape(N, OC, OH, OW)
    if b is not None:
        acc += b.astype(ACC)[None, :, None, None]
    y[...] = acc


def epilogue(y, scale, shift, residual, activation):
    """The fused epilogue's definition, in place on y (N, OC, OH, OW):
    y = act(scale[o] * y + shift[o] + residual), act None, 'relu' or 'relu6' (NaN stays NaN).
    Backends without fused kernels get this after their conv (``fastconv.ops.conv``)."""
    if scale is not None:
        y *= scale[None, :, None, None]
    if shift is not None:
        y += shift[None, :, None, None]
    if residual is not None:
        y += residual
    if activation == "relu":
        np.maximum(y, 0, out=y)
    elif activation == "relu6":
        np.clip(y, 0, 6, out=y)


def depthwise_conv2d(x, w, b, y, sh, sw, ph, pw, dh, dw):
    # x is (N, C, H, W), w is (C*m, 1, KH, KW), y is (N, C*m, OH, OW): conv2d with groups = C
    conv2d(x, w, b, y, sh, sw, ph, pw, dh, dw, x.shape[1])


def separable_conv2d(x, wd, bd, wp, bp, y, sh, sw, ph, pw, dh, dw):
    # depthwise (wd (C*m, 1, KH, KW)) then pointwise (wp (OC, C*m, 1, 1)); y is (N, OC, OH, OW)
    N, _, OH, OW = y.shape
    mid = np.empty((N, wd.shape[0], OH, OW), y.dtype)
    depthwise_conv2d(x, wd, bd, mid, sh, sw, ph, pw, dh, dw)
    conv2d(mid, wp, bp, y, 1, 1, 0, 0, 1, 1, 1)


def conv_transpose2d(x, w, b, y, sh, sw, ph, pw, dh, dw, groups):
    # x is (N, C, H, W), w is (C, OC/G, KH, KW), b is (OC,) or None, y is (N, OC, OH, OW)
    # Scatter form, the adjoint of conv2d: every input pixel adds w * x at the output
    # positions it would have been read from.
    N, C, H, W = x.shape
    _, OCg, KH, KW = w.shape
    OH, OW = y.shape[2:]
    G = groups
    full_h = max((H - 1) * sh + (KH - 1) * dh + 1, ph + OH)
    full_w = max((W - 1) * sw + (KW - 1) * dw + 1, pw + OW)
    buf = np.zeros((N, G, OCg, full_h, full_w), ACC)
    xg = x.astype(ACC).reshape(N, G, C // G, H, W)
    wg = w.astype(ACC).reshape(G, C // G, OCg, KH, KW)
    for kh in range(KH):
        for kw in range(KW):
            contrib = np.einsum("gco,ngchw->ngohw", wg[:, :, :, kh, kw], xg)
            buf[:, :, :, _window_slice(kh, dh, sh, H), _window_slice(kw, dw, sw, W)] += contrib
    out = buf[:, :, :, ph : ph + OH, pw : pw + OW].reshape(N, G * OCg, OH, OW)
    if b is not None:
        out = out + b.astype(ACC)[None, :, None, None]
    y[...] = out


# --------------------------------------------------------------------------- pooling


def _taps(out: int, k: int, s: int, p: int, d: int):
    """For each tap t of the window: the input positions of all outputs along one axis."""
    starts = np.arange(out) * s - p
    return [starts + t * d for t in range(k)]


def _first_valid(out: int, s: int, p: int, d: int) -> np.ndarray:
    """Position of each window's first tap at or after 0 (the max-pool starting index)."""
    starts = np.arange(out) * s - p
    return np.where(starts < 0, starts + (-starts + d - 1) // d * d, starts)


def max_pool2d(x, y, idx, kh, kw, sh, sw, ph, pw, dh, dw):
    # x is (N, C, H, W), y and idx are (N, C, OH, OW); idx holds ih * W + iw
    N, C, H, W = x.shape
    OH, OW = y.shape[2:]
    best = np.full((N, C, OH, OW), -np.inf, x.dtype)
    first = _first_valid(OH, sh, ph, dh)[:, None] * W + _first_valid(OW, sw, pw, dw)[None, :]
    where = np.broadcast_to(first, (N, C, OH, OW)).astype(np.int64)
    for ih in _taps(OH, kh, sh, ph, dh):
        for iw in _taps(OW, kw, sw, pw, dw):
            inside = ((ih >= 0) & (ih < H))[:, None] & ((iw >= 0) & (iw < W))[None, :]
            vals = x[:, :, np.clip(ih, 0, H - 1)[:, None], np.clip(iw, 0, W - 1)[None, :]]
            take = inside & ((vals > best) | np.isnan(vals))
            best = np.where(take, vals, best)
            where = np.where(take, ih[:, None] * W + iw[None, :], where)
    y[...] = best
    if idx is not None:
        idx[...] = where


def _avg_divisor(out, size, k, s, p):
    """(window size counting padding, window size inside the input) along one axis."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)
    pool = end - start
    inside = np.minimum(end, size) - np.maximum(start, 0)
    return pool, inside


def avg_pool2d(x, y, kh, kw, sh, sw, ph, pw, count_include_pad, divisor):
    # x is (N, C, H, W), y is (N, C, OH, OW); divisor 0 = none (see the kernel contract)
    N, C, H, W = x.shape
    OH, OW = y.shape[2:]
    xp = _zero_padded(x, ph, pw, (OH - 1) * sh + kh, (OW - 1) * sw + kw)
    acc = np.zeros((N, C, OH, OW), ACC)
    for th in range(kh):
        for tw in range(kw):
            acc += xp[:, :, _window_slice(th, 1, sh, OH), _window_slice(tw, 1, sw, OW)]
    y[...] = acc / _avg_divisors(H, W, OH, OW, kh, kw, sh, sw, ph, pw, count_include_pad, divisor)


def _avg_divisors(H, W, OH, OW, kh, kw, sh, sw, ph, pw, count_include_pad, divisor):
    if divisor:
        return float(divisor)
    pool_h, in_h = _avg_divisor(OH, H, kh, sh, ph)
    pool_w, in_w = _avg_divisor(OW, W, kw, sw, pw)
    if count_include_pad:
        return (pool_h[:, None] * pool_w[None, :]).astype(ACC)
    return (in_h[:, None] * in_w[None, :]).astype(ACC)


def adaptive_avg_pool2d(x, y):
    # x is (N, C, H, W), y is (N, C, OH, OW)
    H, W = x.shape[2:]
    OH, OW = y.shape[2:]
    for i, (h0, h1) in enumerate(adaptive_bins(H, OH)):
        for j, (w0, w1) in enumerate(adaptive_bins(W, OW)):
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].astype(ACC).mean(axis=(2, 3))


def adaptive_max_pool2d(x, y, idx):
    # x is (N, C, H, W), y and idx are (N, C, OH, OW); same NaN / index rules as max_pool2d
    N, C, H, W = x.shape
    OH, OW = y.shape[2:]
    for i, (h0, h1) in enumerate(adaptive_bins(H, OH)):
        for j, (w0, w1) in enumerate(adaptive_bins(W, OW)):
            win = x[:, :, h0:h1, w0:w1].reshape(N, C, -1)
            nan = np.isnan(win)
            # the last NaN in scan order wins; without NaN, the first maximum
            last_nan = win.shape[2] - 1 - np.argmax(nan[:, :, ::-1], axis=2)
            pos = np.where(nan.any(axis=2), last_nan, np.argmax(win, axis=2))
            y[:, :, i, j] = np.take_along_axis(win, pos[:, :, None], 2)[:, :, 0]
            if idx is not None:
                ww = w1 - w0
                idx[:, :, i, j] = (h0 + pos // ww) * W + (w0 + pos % ww)


# --------------------------------------------------------------------------- backward


def max_pool2d_backward(gy, idx, gx):
    # gy and idx are (N, C, OH, OW), gx is (N, C, H, W): scatter-add through the indices.
    # An index outside [0, H*W) (the -inf output of a window that lies wholly in the
    # padding, whose index points past the plane as torch's does) depends on no input and
    # is skipped.
    N, C, H, W = gx.shape
    acc = np.zeros((N * C, H * W), ACC)
    rows = np.repeat(np.arange(N * C), gy.shape[2] * gy.shape[3])
    flat = idx.reshape(-1)
    ok = (flat >= 0) & (flat < H * W)
    np.add.at(acc, (rows[ok], flat[ok]), gy.reshape(-1)[ok])
    gx[...] = acc.reshape(N, C, H, W)


def avg_pool2d_backward(gy, gx, kh, kw, sh, sw, ph, pw, count_include_pad, divisor):
    # gy is (N, C, OH, OW), gx is (N, C, H, W): the adjoint of avg_pool2d
    N, C, H, W = gx.shape
    OH, OW = gy.shape[2:]
    g = gy.astype(ACC) / _avg_divisors(
        H, W, OH, OW, kh, kw, sh, sw, ph, pw, count_include_pad, divisor
    )
    buf = _zero_padded(np.zeros((N, C, H, W)), ph, pw, (OH - 1) * sh + kh, (OW - 1) * sw + kw)
    for th in range(kh):
        for tw in range(kw):
            buf[:, :, _window_slice(th, 1, sh, OH), _window_slice(tw, 1, sw, OW)] += g
    gx[...] = buf[:, :, ph : ph + H, pw : pw + W]


def adaptive_avg_pool2d_backward(gy, gx):
    # gy is (N, C, OH, OW), gx is (N, C, H, W): the adjoint of adaptive_avg_pool2d
    H, W = gx.shape[2:]
    OH, OW = gy.shape[2:]
    acc = np.zeros(gx.shape, ACC)
    for i, (h0, h1) in enumerate(adaptive_bins(H, OH)):
        for j, (w0, w1) in enumerate(adaptive_bins(W, OW)):
            area = (h1 - h0) * (w1 - w0)
            acc[:, :, h0:h1, w0:w1] += gy[:, :, i, j, None, None].astype(ACC) / area
    gx[...] = acc
