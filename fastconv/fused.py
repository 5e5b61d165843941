"""Fused convolutions: a convolution and what follows it in a network, in one pass.

``y = activation(scale * conv(x) + shift + residual)``: ``scale`` and ``shift`` are one
value per output channel (a batch norm in inference, folded: :func:`batch_norm_scale_shift`),
``residual`` an array of the output's shape (a ResNet block's shortcut), ``activation`` None,
``"relu"`` or ``"relu6"``. Each is optional. These are fastconv extensions, not names of
torch.nn.functional: without them the functions are :func:`fastconv.conv2d` and
:func:`fastconv.depthwise_conv2d`, and with them they compute, up to float32 rounding, what
torch computes with the separate ops (``F.relu(F.batch_norm(F.conv2d(x, w, b), ...) + r)``).

The C backend applies the epilogue to each block of output while the block is still in
cache, so the output is written once instead of three or four times; the other backends run
their convolution, then the same arithmetic with NumPy. fastconv.nn uses these in
inference mode (``model.eval()``): a Conv2d followed by BatchNorm2d and ReLU / ReLU6, and a
residual block's final add and ReLU, run as one call.

NaN and infinities follow IEEE arithmetic; relu and relu6 keep NaN (as torch's do).
"""

from typing import Any, Optional, Tuple

import numpy as np

from .ops.conv import Epilogue, Padding, _conv_nd, _depthwise

__all__ = ["conv2d", "depthwise_conv2d", "batch_norm_scale_shift"]


def conv2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Padding = 0,
    dilation: Any = 1,
    groups: int = 1,
    *,
    scale: Any = None,
    shift: Any = None,
    residual: Any = None,
    activation: Optional[str] = None,
    padding_mode: str = "zeros",
    backend: str = "auto",
    variant: Optional[str] = None,
):
    """:func:`fastconv.conv2d` followed by ``activation(scale * y + shift + residual)``.

    Parameters
    ----------
    input, weight, bias, stride, padding, dilation, groups, padding_mode, backend, variant
        As :func:`fastconv.conv2d`.
    scale : array_like, shape (OC,), optional
        Multiplies output channel o (after the bias). Default: 1.
    shift : array_like, shape (OC,), optional
        Added to output channel o after the scale. Default: 0.
    residual : array_like, the output's shape, optional
        Added after the shift.
    activation : {None, 'relu', 'relu6'}, default None
        Applied last.

    Returns
    -------
    ndarray, the shape and dtype of :func:`fastconv.conv2d`'s output (the dtype also takes
    the epilogue's arrays into account, as ``numpy.result_type``).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.ones((1, 1, 3, 3)); w = np.ones((2, 1, 3, 3))
    >>> fastconv.fused.conv2d(x, w, scale=[1.0, -1.0], shift=[0.5, 0.5], activation="relu")
    array([[[[9.5]],
    <BLANKLINE>
            [[0. ]]]])
    """
    return _conv_nd("conv2d", 2, input, weight, bias, stride, padding, dilation, groups,
                    padding_mode, backend, variant,
                    Epilogue(scale, shift, residual, activation))


def depthwise_conv2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Padding = 0,
    dilation: Any = 1,
    *,
    scale: Any = None,
    shift: Any = None,
    residual: Any = None,
    activation: Optional[str] = None,
    backend: str = "auto",
):
    """:func:`fastconv.depthwise_conv2d` followed by ``activation(scale * y + shift +
    residual)`` (the arguments as :func:`conv2d`'s).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> y = fastconv.fused.depthwise_conv2d(np.ones((1, 2, 4, 4)), np.ones((2, 1, 3, 3)),
    ...                                     padding=1, shift=[-5.0, 0.0], activation="relu6")
    >>> y[0, :, 0, :]
    array([[0., 1., 1., 0.],
           [4., 6., 6., 4.]])
    """
    return _depthwise("depthwise_conv2d", input, weight, bias, stride, padding, dilation,
                      backend, Epilogue(scale, shift, residual, activation))


def batch_norm_scale_shift(
    running_mean: Any,
    running_var: Any,
    weight: Any = None,
    bias: Any = None,
    eps: float = 1e-5,
) -> Tuple[np.ndarray, np.ndarray]:
    """A batch norm in inference as a per-channel ``(scale, shift)``: ``scale = weight /
    sqrt(running_var + eps)``, ``shift = bias - running_mean * scale`` (weight 1 and bias 0
    when None), so that ``scale * y + shift`` equals ``batch_norm(y, running_mean,
    running_var, weight, bias, training=False, eps=eps)``.

    Parameters
    ----------
    running_mean, running_var : array_like, shape (C,)
    weight, bias : array_like, shape (C,), optional
    eps : float, default 1e-5
        Non-negative.

    Returns
    -------
    (scale, shift) : two ndarrays of shape (C,), in the inputs' floating dtype (float64 for
    integers).

    Examples
    --------
    >>> import fastconv
    >>> fastconv.fused.batch_norm_scale_shift([1.0, 2.0], [4.0, 1.0], eps=0.0)
    (array([0.5, 1. ]), array([-0.5, -2. ]))
    """
    op = "batch_norm_scale_shift"
    arrays = {"running_mean": running_mean, "running_var": running_var, "weight": weight,
              "bias": bias}
    for k in ("running_mean", "running_var"):
        if arrays[k] is None:
            raise TypeError(f"{op}: {k} must be an array, got None")
    given = {k: np.asarray(v) for k, v in arrays.items() if v is not None}
    for k, a in given.items():
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{op}: {k} must be a real array, got dtype {a.dtype}")
        if a.ndim != 1:
            raise ValueError(f"{op}: {k} must be 1-D (one value per channel), got shape "
                             f"{a.shape}")
    C = given["running_mean"].shape[0]
    for k, a in given.items():
        if a.shape[0] != C:
            raise ValueError(f"{op}: {k} has {a.shape[0]} channels, running_mean has {C}")
    _check_eps(eps, op)
    return _scale_shift(given["running_mean"], given["running_var"], given.get("weight"),
                        given.get("bias"), eps, _fold_dtype(*given.values()))


def _check_eps(eps: Any, op: str) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)):
        raise TypeError(f"{op}: eps must be a number, got {type(eps).__name__}")
    if not eps >= 0:
        raise ValueError(f"{op}: eps must be non-negative, got {eps}")


def _fold_dtype(*arrays: np.ndarray) -> np.dtype:
    """The dtype :func:`batch_norm_scale_shift` computes in for these (real) arrays."""
    dtype = np.result_type(*arrays, np.float32)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def _scale_shift(mean: np.ndarray, var: np.ndarray, weight: Optional[np.ndarray],
                 bias: Optional[np.ndarray], eps: Any, dtype: np.dtype) -> Tuple[np.ndarray,
                                                                           np.ndarray]:
    """:func:`batch_norm_scale_shift`'s arithmetic on checked 1-D arrays, in ``dtype``
    (fastconv.nn's fused inference calls it directly, for the same bits)."""
    scale = 1 / np.sqrt(var.astype(dtype) + dtype.type(eps))
    if weight is not None:
        scale = scale * weight.astype(dtype)
    shift = -mean.astype(dtype) * scale
    if bias is not None:
        shift = shift + bias.astype(dtype)
    return scale.astype(dtype, copy=False), shift.astype(dtype, copy=False)
