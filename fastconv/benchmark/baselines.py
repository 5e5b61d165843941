"""How the benchmark calls each op three ways: fastconv, plain NumPy, PyTorch.

The NumPy baseline is the code people write today without fastconv:
``numpy.lib.stride_tricks.sliding_window_view`` for the windows, then ``numpy.einsum`` with
``optimize=True`` (which hands the contraction to BLAS through tensordot where it can) for the
convolutions, and a max / mean over the window axes for pooling. A transposed convolution is
one einsum to every (output channel, tap) column, then a strided add per tap (col2im).

Every ``run_*`` function takes a :class:`fastconv.benchmark.layers.Case` and the dict of its
arrays (``Case.arrays``) and returns the output as a NumPy array. torch is optional: without
it (``torch_installed()`` False) the torch baseline is simply not run.
"""

from __future__ import annotations

import importlib.util
from typing import Callable, Dict

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import fastconv

from .layers import Case

#: Names of the two comparators (they are not fastconv engines).
BASELINES = ("numpy", "torch")


def torch_installed() -> bool:
    """Whether PyTorch can be imported here (without importing it)."""
    return importlib.util.find_spec("torch") is not None


# --------------------------------------------------------------------------- fastconv


def run_fastconv(case: Case, a: Dict[str, np.ndarray], backend: str) -> np.ndarray:
    """Call the public fastconv function of ``case`` with ``backend``."""
    c, op = case, case.op
    if op == "conv2d":
        return fastconv.conv2d(
            a["x"], a["w"], a["b"], c.stride, c.padding, c.dilation, c.groups, backend=backend
        )
    if op == "conv_transpose2d":
        return fastconv.conv_transpose2d(
            a["x"],
            a["w"],
            a["b"],
            c.stride,
            c.padding,
            c.output_padding,
            c.groups,
            c.dilation,
            backend=backend,
        )
    if op == "depthwise_conv2d":
        return fastconv.depthwise_conv2d(
            a["x"], a["w"], a["b"], c.stride, c.padding, c.dilation, backend=backend
        )
    if op == "separable_conv2d":
        return fastconv.separable_conv2d(
            a["x"],
            a["w"],
            a["w2"],
            a["b"],
            a["b2"],
            c.stride,
            c.padding,
            c.dilation,
            backend=backend,
        )
    if op == "max_pool2d":
        return fastconv.max_pool2d(
            a["x"], c.kernel, c.stride, c.padding, c.dilation, backend=backend
        )
    if op == "avg_pool2d":
        return fastconv.avg_pool2d(a["x"], c.kernel, c.stride, c.padding, backend=backend)
    if op == "adaptive_avg_pool2d":
        return fastconv.adaptive_avg_pool2d(a["x"], 1, backend=backend)
    raise ValueError(f"run_fastconv: case.op must be one of the benchmark's ops, got {op!r}")


# --------------------------------------------------------------------------- NumPy


def _windows(x: np.ndarray, k, s: int, p: int, d: int, fill: float = 0.0) -> np.ndarray:
    """(N, C, OH, OW, KH, KW) view of the padded input's windows (stride s, dilation d)."""
    if p:
        x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=fill)
    span = (d * (k[0] - 1) + 1, d * (k[1] - 1) + 1)
    return sliding_window_view(x, span, axis=(2, 3))[:, :, ::s, ::s, ::d, ::d]


def _np_conv2d(c: Case, a) -> np.ndarray:
    x, w = a["x"], a["w"]
    N, G = x.shape[0], c.groups
    OC, Cg, KH, KW = w.shape
    win = _windows(x, (KH, KW), c.stride, c.padding, c.dilation)
    OH, OW = win.shape[2:4]
    if G == 1:
        y = np.einsum("nchwkl,ockl->nohw", win, w, optimize=True)
    else:
        win = win.reshape(N, G, Cg, OH, OW, KH, KW)
        y = np.einsum(
            "ngchwkl,gockl->ngohw", win, w.reshape(G, OC // G, Cg, KH, KW), optimize=True
        ).reshape(N, OC, OH, OW)
    return y + a["b"][None, :, None, None]


def _np_depthwise(x, w, b, c: Case) -> np.ndarray:
    N, C = x.shape[:2]
    KH, KW = w.shape[2:]
    m = w.shape[0] // C
    win = _windows(x, (KH, KW), c.stride, c.padding, c.dilation)
    OH, OW = win.shape[2:4]
    y = np.einsum("nchwkl,cmkl->ncmhw", win, w.reshape(C, m, KH, KW), optimize=True)
    return y.reshape(N, C * m, OH, OW) + b[None, :, None, None]


def _np_conv_transpose2d(c: Case, a) -> np.ndarray:
    x, w = a["x"], a["w"]
    N, C, H, W = x.shape
    _, OCg, KH, KW = w.shape
    G, s, p, d = c.groups, c.stride, c.padding, c.dilation
    OC = OCg * G
    OH, OW = c.output_shape()[2:]
    # every input pixel times every (output channel, tap) weight ...
    cols = np.einsum(
        "ngchw,gcokl->ngoklhw",
        x.reshape(N, G, C // G, H, W),
        w.reshape(G, C // G, OCg, KH, KW),
        optimize=True,
    )
    cols = cols.reshape(N, OC, KH, KW, H, W)
    # ... added where that tap lands in the (uncropped) output
    full = np.zeros(
        (
            N,
            OC,
            max((H - 1) * s + d * (KH - 1) + 1, p + OH),
            max((W - 1) * s + d * (KW - 1) + 1, p + OW),
        ),
        x.dtype,
    )
    for kh in range(KH):
        for kw in range(KW):
            full[
                :, :, kh * d : kh * d + (H - 1) * s + 1 : s, kw * d : kw * d + (W - 1) * s + 1 : s
            ] += cols[:, :, kh, kw]
    return full[:, :, p : p + OH, p : p + OW] + a["b"][None, :, None, None]


def _np_separable(c: Case, a) -> np.ndarray:
    mid = _np_depthwise(a["x"], a["w"], a["b"], c)
    y = np.einsum("oc,nchw->nohw", a["w2"][:, :, 0, 0], mid, optimize=True)
    return y + a["b2"][None, :, None, None]


def _np_max_pool2d(c: Case, a) -> np.ndarray:
    win = _windows(a["x"], c.kernel, c.stride, c.padding, c.dilation, fill=-np.inf)
    return win.max(axis=(-2, -1))


def _np_avg_pool2d(c: Case, a) -> np.ndarray:
    # count_include_pad=True (torch's default): zeros in the padding count in the mean
    win = _windows(a["x"], c.kernel, c.stride, c.padding, 1)
    return win.mean(axis=(-2, -1), dtype=a["x"].dtype)


NUMPY: Dict[str, Callable] = {
    "conv2d": _np_conv2d,
    "conv_transpose2d": _np_conv_transpose2d,
    "depthwise_conv2d": lambda c, a: _np_depthwise(a["x"], a["w"], a["b"], c),
    "separable_conv2d": _np_separable,
    "max_pool2d": _np_max_pool2d,
    "avg_pool2d": _np_avg_pool2d,
    "adaptive_avg_pool2d": lambda c, a: a["x"].mean(axis=(2, 3), keepdims=True),
}


def run_numpy(case: Case, a: Dict[str, np.ndarray]) -> np.ndarray:
    return NUMPY[case.op](case, a)


# --------------------------------------------------------------------------- PyTorch


def run_torch(case: Case, a: Dict[str, np.ndarray]) -> np.ndarray:
    """torch.nn.functional on tensors sharing the arrays' memory (no copies timed)."""
    import torch
    import torch.nn.functional as F

    t = {k: torch.from_numpy(v) for k, v in a.items()}
    c, op = case, case.op
    with torch.no_grad():
        if op == "conv2d":
            y = F.conv2d(t["x"], t["w"], t["b"], c.stride, c.padding, c.dilation, c.groups)
        elif op == "conv_transpose2d":
            y = F.conv_transpose2d(
                t["x"], t["w"], t["b"], c.stride, c.padding, c.output_padding, c.groups, c.dilation
            )
        elif op in ("depthwise_conv2d", "separable_conv2d"):
            y = F.conv2d(t["x"], t["w"], t["b"], c.stride, c.padding, c.dilation, c.x[1])
            if op == "separable_conv2d":
                y = F.conv2d(y, t["w2"], t["b2"])
        elif op == "max_pool2d":
            y = F.max_pool2d(t["x"], c.kernel, c.stride, c.padding, c.dilation)
        elif op == "avg_pool2d":
            y = F.avg_pool2d(t["x"], c.kernel, c.stride, c.padding)
        elif op == "adaptive_avg_pool2d":
            y = F.adaptive_avg_pool2d(t["x"], 1)
        else:
            raise ValueError(f"run_torch: case.op must be one of the benchmark's ops, got {op!r}")
    return y.numpy()
