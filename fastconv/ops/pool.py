"""Public pooling functions, with torch.nn.functional's names, order and semantics.

Each function: validate and size (``fastconv._shapes``) -> refuse an output that would not
fit in memory -> convert and allocate -> run one backend's kernel; a call repeated with the
same input shape, dtype and arguments reuses the first one's plan (``_plans``). Max pooling
propagates NaN and can return torch's indices (flat positions into each channel's H*W, or L
for 1-D). 1-D ops run the 2-D kernels with H = 1.
"""

from typing import Any, Optional, Tuple

import numpy as np

from .. import _shapes
from ..backends._registry import Call, begin, outputs
from . import _plans


def _check_memory(op: str, call: Call, g: _shapes.PoolGeometry, idx: bool) -> None:
    """Refuse an output (and its int64 indices) too large for memory, before allocating."""
    n = g.N * g.C * g.OH * g.OW
    _shapes.check_memory(op, ((g.culprit, n * (call.compute.itemsize + (8 if idx else 0))),))


# One op, the fastest kernel: a pool whose window is the whole plane is the global adaptive
# pool (the adaptive kernels have a path for it: 8x2048x7x7 in 0.12 ms against 2.2 ms through
# the windowed avg kernel, C engine), and an adaptive pool whose bins tile the plane evenly is
# the windowed pool with kernel = stride = H / OH (56 -> 28: 1.5 ms against 13.7 ms). Same
# windows, same indices and NaN rules; sums may differ in the last bit (another order).


def is_global_window(g: _shapes.PoolGeometry) -> bool:
    """A pooling window covering the whole plane, no padding, no dilation: a 1x1 output."""
    return (g.KH == g.H and g.KW == g.W and g.ph == 0 and g.pw == 0 and g.dh == 1
            and g.dw == 1 and g.OH == 1 and g.OW == 1)


def even_bins(g: _shapes.PoolGeometry) -> bool:
    """Adaptive bins that tile the plane with one window size (H = OH*k, W = OW*k'), more
    than one bin: the windowed pool with kernel = stride."""
    return (g.OH >= 1 and g.OW >= 1 and g.H % g.OH == 0 and g.W % g.OW == 0
            and (g.OH, g.OW) != (1, 1))


def _pool(op: str, call: Call, g: Any, want_idx: bool, kernel: str, args: Tuple[Any, ...],
          key: Any) -> Any:
    """Refuse an output too large, convert the input, allocate, run ``kernel`` (its
    arguments: x, y, idx where it takes one, then ``args``; nothing for an empty output),
    hand back; and keep the plan of the call under ``key`` (None: none;
    fastconv/ops/_plans.py)."""
    _check_memory(op, call, g, want_idx)
    x = call.prepare("input", (g.N, g.C, g.H, g.W))
    y = call.empty((g.N, g.C, g.OH, g.OW))
    idx = call.empty((g.N, g.C, g.OH, g.OW), np.int64) if want_idx else None
    ran: Optional[str] = None
    if y.size:
        call.kernel(kernel)(x, *outputs(kernel, y, idx), *args)
        ran = kernel
    out_shape = g.output_shape()
    _plans.keep(key, call, ran, args, (x,), y, idx, out_shape)
    out = call.finish(y, out_shape)
    if want_idx:
        return out, call.finish(idx, out_shape, np.int64)
    return out


def _max_pool(
    op, nd, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, backend
):
    key, hit = _plans.lookup(op, backend, (input,), (kernel_size, stride, padding, dilation,
                                                     ceil_mode, return_indices))
    if hit is not None:
        return hit
    want_idx = _shapes.as_bool(return_indices, "return_indices", op=op)
    call = begin("max_pool2d", backend, caller=op, input=input)
    g = _shapes.pool_geometry(
        op, call.shapes["input"], kernel_size, stride, padding, dilation, ceil_mode, nd
    )
    if is_global_window(g) and call.has("adaptive_max_pool2d"):
        kernel, args = "adaptive_max_pool2d", ()
    else:
        kernel, args = "max_pool2d", (g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw)
    return _pool(op, call, g, want_idx, kernel, args, key)


def max_pool2d(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    backend: str = "auto",
):
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W) or unbatched (C, H, W)
    kernel_size : int or (int, int)
        KH, KW >= 1.
    stride : int or (int, int), optional
        sh, sw; None (the default) means kernel_size.
    padding : int or (int, int), default 0
        ph, pw, at most half the (dilated) kernel; padded positions never win.
    dilation : int or (int, int), default 1
    ceil_mode : bool, default False
        Round the output size up; a window that would start in the right padding is dropped.
    return_indices : bool, default False
        Also return where each maximum is: int64 ih*W + iw within its channel's plane.
    backend : str, default 'auto'
        'auto', 'reference', 'c', 'numba' or 'cuda' (see :func:`fastconv.available_backends`).

    Returns
    -------
    ndarray, shape (N, C, OH, OW) (or (C, OH, OW)), and the indices (same shape) if asked
        OH = floor((H + 2*ph - dh*(KH-1) - 1) / sh) + 1 (ceil in ceil_mode), likewise OW.
        A NaN in a window is its maximum.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(16.).reshape(1, 1, 4, 4)
    >>> fastconv.max_pool2d(x, 2)
    array([[[[ 5.,  7.],
             [13., 15.]]]])
    >>> y, idx = fastconv.max_pool2d(x, 3, stride=1, return_indices=True)
    >>> idx
    array([[[[10, 11],
             [14, 15]]]])
    """
    return _max_pool(
        "max_pool2d",
        2,
        input,
        kernel_size,
        stride,
        padding,
        dilation,
        ceil_mode,
        return_indices,
        backend,
    )


def max_pool1d(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    *,
    backend: str = "auto",
):
    """1-D max pooling, as ``torch.nn.functional.max_pool1d``.

    Parameters
    ----------
    input : array_like, shape (N, C, L) or unbatched (C, L)
    kernel_size, stride, padding, dilation : int
        As :func:`max_pool2d`'s, along the one axis (stride None means kernel_size).
    ceil_mode, return_indices : bool, default False
        As :func:`max_pool2d`'s; the indices are positions along L.
    backend : str, default 'auto'
        'auto', 'reference', 'c', 'numba' or 'cuda' (see :func:`fastconv.available_backends`).

    Returns
    -------
    ndarray, shape (N, C, OL) (or (C, OL)), and the indices if asked
        OL = floor((L + 2*p - d*(K-1) - 1) / s) + 1 (ceil in ceil_mode).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.max_pool1d(np.array([[[1., 3., 2., 5.]]]), 2)
    array([[[3., 5.]]])
    >>> fastconv.max_pool1d(np.array([[[1., 3., 2.]]]), 2, ceil_mode=True, return_indices=True)
    (array([[[3., 2.]]]), array([[[1, 2]]]))
    """
    return _max_pool(
        "max_pool1d",
        1,
        input,
        kernel_size,
        stride,
        padding,
        dilation,
        ceil_mode,
        return_indices,
        backend,
    )


def _avg_pool(
    op,
    nd,
    input,
    kernel_size,
    stride,
    padding,
    ceil_mode,
    count_include_pad,
    divisor_override,
    backend,
):
    key, hit = _plans.lookup(op, backend, (input,), (kernel_size, stride, padding, ceil_mode,
                                                     count_include_pad, divisor_override))
    if hit is not None:
        return hit
    cip = _shapes.as_bool(count_include_pad, "count_include_pad", op=op)
    div = _shapes.divisor_override(divisor_override, op)
    call = begin("avg_pool2d", backend, caller=op, input=input)
    g = _shapes.pool_geometry(
        op, call.shapes["input"], kernel_size, stride, padding, 1, ceil_mode, nd
    )
    if is_global_window(g) and not div and call.has("adaptive_avg_pool2d"):
        kernel, args = "adaptive_avg_pool2d", ()
    else:
        kernel, args = "avg_pool2d", (g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, cip, div)
    return _pool(op, call, g, False, kernel, args, key)


def avg_pool2d(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Any = None,
    *,
    backend: str = "auto",
):
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W) or unbatched (C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        None (the default) means kernel_size.
    padding : int or (int, int), default 0
        Zeros, at most half the kernel.
    ceil_mode : bool, default False
        As :func:`max_pool2d`'s.
    count_include_pad : bool, default True
        Divide by the window's size including its zero padding (clipped to the padded input)
        rather than by the number of input elements it covers.
    divisor_override : int, optional
        A non-zero divisor for every window instead.
    backend : str, default 'auto'
        'auto', 'reference', 'c', 'numba' or 'cuda' (see :func:`fastconv.available_backends`).

    Returns
    -------
    ndarray, shape (N, C, OH, OW) (or (C, OH, OW))
        OH = floor((H + 2*ph - KH) / sh) + 1 (ceil in ceil_mode), likewise OW.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(16.).reshape(1, 1, 4, 4)
    >>> fastconv.avg_pool2d(x, 2)
    array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]])
    >>> fastconv.avg_pool2d(np.ones((1, 1, 2, 2)), 2, padding=1, count_include_pad=False)
    array([[[[1., 1.],
             [1., 1.]]]])
    """
    return _avg_pool(
        "avg_pool2d",
        2,
        input,
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        divisor_override,
        backend,
    )


def avg_pool1d(
    input: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    *,
    backend: str = "auto",
):
    """1-D average pooling, as ``torch.nn.functional.avg_pool1d``.

    Parameters
    ----------
    input : array_like, shape (N, C, L) or unbatched (C, L)
    kernel_size, stride, padding : int
        As :func:`avg_pool2d`'s, along the one axis.
    ceil_mode, count_include_pad : bool
        As :func:`avg_pool2d`'s.
    backend : str, default 'auto'
        'auto', 'reference', 'c', 'numba' or 'cuda' (see :func:`fastconv.available_backends`).

    Returns
    -------
    ndarray, shape (N, C, OL) (or (C, OL))
        OL = floor((L + 2*p - K) / s) + 1 (ceil in ceil_mode).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.avg_pool1d(np.array([[[1., 3., 2., 6.]]]), 2)
    array([[[2., 4.]]])
    >>> fastconv.avg_pool1d(np.array([[[1., 3., 2., 6.]]]), 3, stride=1, padding=1)
    array([[[1.33333333, 2.        , 3.66666667, 2.66666667]]])
    """
    return _avg_pool(
        "avg_pool1d",
        1,
        input,
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        None,
        backend,
    )


def _adaptive(op, kernel, nd, input, output_size, return_indices, backend):
    key, hit = _plans.lookup(op, backend, (input,), (output_size, return_indices))
    if hit is not None:
        return hit
    want_idx = _shapes.as_bool(return_indices, "return_indices", op=op)
    call = begin(kernel, backend, caller=op, input=input)
    g = _shapes.adaptive_geometry(op, call.shapes["input"], output_size, nd)
    is_max = kernel == "adaptive_max_pool2d"
    args: Tuple[Any, ...] = ()
    if even_bins(g):
        kh, kw = g.H // g.OH, g.W // g.OW
        if is_max:
            kernel, args = "max_pool2d", (kh, kw, kh, kw, 0, 0, 1, 1)
        else:
            kernel, args = "avg_pool2d", (kh, kw, kh, kw, 0, 0, True, 0)
    return _pool(op, call, g, want_idx, kernel, args, key)


def adaptive_avg_pool2d(input: Any, output_size: Any, *, backend: str = "auto"):
    """2-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool2d``.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W) or unbatched (C, H, W)
        C may be 0 (an empty output).
    output_size : int or (int or None, int or None)
        OH, OW >= 0; None keeps the input's size along that axis.
    backend : str, default 'auto'
        'auto', 'reference', 'c', 'numba' or 'cuda' (see :func:`fastconv.available_backends`).

    Returns
    -------
    ndarray, shape (N, C, OH, OW) (or (C, OH, OW))
        Output row i averages input rows floor(i*H/OH) to ceil((i+1)*H/OH) - 1 (likewise
        columns): bins that cover the input and may overlap.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(16.).reshape(1, 1, 4, 4)
    >>> fastconv.adaptive_avg_pool2d(x, 1)
    array([[[[7.5]]]])
    >>> fastconv.adaptive_avg_pool2d(x, (None, 1))[0, 0, :, 0]  # the mean of each row
    array([ 1.5,  5.5,  9.5, 13.5])
    """
    return _adaptive(
        "adaptive_avg_pool2d", "adaptive_avg_pool2d", 2, input, output_size, False, backend
    )


def adaptive_max_pool2d(
    input: Any, output_size: Any, return_indices: bool = False, *, backend: str = "auto"
):
    """2-D adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool2d``.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W) or unbatched (C, H, W)
    output_size : int or (int or None, int or None)
        As :func:`adaptive_avg_pool2d`'s.
    return_indices : bool, default False
        Also return where each maximum is (ih*W + iw, as :func:`max_pool2d`).
    backend : str, default 'auto'
        'auto', 'reference', 'c', 'numba' or 'cuda' (see :func:`fastconv.available_backends`).

    Returns
    -------
    ndarray, shape (N, C, OH, OW) (or (C, OH, OW)), and the indices if asked
        Bins as :func:`adaptive_avg_pool2d`'s; a NaN in a bin is its maximum.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(16.).reshape(1, 1, 4, 4)
    >>> fastconv.adaptive_max_pool2d(x, 1)
    array([[[[15.]]]])
    >>> fastconv.adaptive_max_pool2d(x, (2, 1), return_indices=True)[1]
    array([[[[ 7],
             [15]]]])
    """
    return _adaptive(
        "adaptive_max_pool2d", "adaptive_max_pool2d", 2, input, output_size, return_indices, backend
    )


def adaptive_avg_pool1d(input: Any, output_size: Any, *, backend: str = "auto"):
    """1-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool1d``.

    Parameters
    ----------
    input : array_like, shape (N, C, L) or unbatched (C, L)
    output_size : int or None
        OL >= 0; None keeps L.
    backend : str, default 'auto'
        'auto', 'reference', 'c', 'numba' or 'cuda' (see :func:`fastconv.available_backends`).

    Returns
    -------
    ndarray, shape (N, C, OL) (or (C, OL))
        Output i averages input positions floor(i*L/OL) to ceil((i+1)*L/OL) - 1.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.adaptive_avg_pool1d(np.array([[[1., 3., 2., 6.]]]), 2)
    array([[[2., 4.]]])
    >>> fastconv.adaptive_avg_pool1d(np.array([[[1., 3., 2.]]]), 2)  # bins [0, 2) and [1, 3)
    array([[[2. , 2.5]]])
    """
    return _adaptive(
        "adaptive_avg_pool1d", "adaptive_avg_pool2d", 1, input, output_size, False, backend
    )


def adaptive_max_pool1d(
    input: Any, output_size: Any, return_indices: bool = False, *, backend: str = "auto"
):
    """1-D adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool1d``.

    Parameters
    ----------
    input : array_like, shape (N, C, L) or unbatched (C, L)
    output_size : int or None
        As :func:`adaptive_avg_pool1d`'s.
    return_indices : bool, default False
        Also return the position along L of each maximum.
    backend : str, default 'auto'
        'auto', 'reference', 'c', 'numba' or 'cuda' (see :func:`fastconv.available_backends`).

    Returns
    -------
    ndarray, shape (N, C, OL) (or (C, OL)), and the indices if asked
        Bins as :func:`adaptive_avg_pool1d`'s.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.adaptive_max_pool1d(np.array([[[1., 3., 2., 6.]]]), 2)
    array([[[3., 6.]]])
    >>> fastconv.adaptive_max_pool1d(np.array([[[1., 3., 2., 6.]]]), 1, return_indices=True)
    (array([[[6.]]]), array([[[3]]]))
    """
    return _adaptive(
        "adaptive_max_pool1d", "adaptive_max_pool2d", 1, input, output_size, return_indices, backend
    )


# dask arrays in, lazy dask arrays out (fastconv/ops/_dask_entry.py; dask loads only then)
from ._dask_entry import accept_dask_arrays  # noqa: E402

accept_dask_arrays(globals())
