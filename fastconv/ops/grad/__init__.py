"""Gradients of fastconv's ops, with torch.nn.grad's names and argument order where it has them.

Every function here is the backward pass of one forward op: given the forward arguments and
``grad_output`` (dL/dy, the shape of the forward output) it returns dL/d(one argument). Each
one validates like the forward op (``fastconv._shapes``), checks ``grad_output`` against the
forward geometry, refuses outputs and workspaces too large for memory before allocating
them, and runs on the chosen backend's own kernels, so every gradient runs on every backend
that implements the kernels it uses:

- conv input gradients        -> the backend's ``conv_transpose2d`` (the adjoint of conv2d)
- conv weight / bias grads    -> the backend's ``conv2d`` on regrouped arrays (a correlation)
- transposed-conv input grad  -> the backend's ``conv2d``
- transposed-conv weight grad -> the backend's ``conv2d`` (a correlation, roles swapped)
- max / adaptive max pools    -> the forward kernel for the indices, then
                                 ``max_pool2d_backward``
- avg / adaptive avg pools    -> ``avg_pool2d_backward`` / ``adaptive_avg_pool2d_backward``

Files:

- conv.py       convolutions: conv1d / conv2d, transposed, depthwise, separable, biases
- pool.py       pools: max, average, adaptive (1-D and 2-D)
- _plumbing.py  what both share: shape arguments, the grad_output and memory checks,
                moving arrays between the host and the backend

The formulas and why they hold are in docs/backward.md. Dtypes follow the forward ops
(``fastconv.backends._registry``): float32 and float64 compute natively, the result has the
``numpy.result_type`` of the array arguments. Tests: ``pytest tests/test_grad.py``.

The gradients of y = conv2d(x, w) for an upstream gradient gy (dL/dy):

>>> import numpy as np, fastconv, fastconv.grad as G
>>> x, w = np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3))
>>> gy = np.ones(fastconv.conv2d(x, w).shape)
>>> G.conv2d_input(x.shape, w, gy).shape, G.conv2d_weight(x, w.shape, gy).shape
((1, 2, 5, 5), (3, 2, 3, 3))
"""

from .conv import (
    conv1d_bias,
    conv1d_input,
    conv1d_weight,
    conv2d_bias,
    conv2d_input,
    conv2d_weight,
    conv_transpose1d_bias,
    conv_transpose1d_input,
    conv_transpose1d_weight,
    conv_transpose2d_bias,
    conv_transpose2d_input,
    conv_transpose2d_weight,
    depthwise_conv2d_input,
    depthwise_conv2d_weight,
    separable_conv2d_backward,
    separable_conv2d_depthwise_bias,
    separable_conv2d_depthwise_weight,
    separable_conv2d_input,
    separable_conv2d_pointwise_bias,
    separable_conv2d_pointwise_weight,
)
from .pool import (
    adaptive_avg_pool1d_input,
    adaptive_avg_pool2d_input,
    adaptive_max_pool1d_input,
    adaptive_max_pool2d_input,
    avg_pool1d_input,
    avg_pool2d_input,
    max_pool1d_input,
    max_pool2d_input,
)

__all__ = [
    "adaptive_avg_pool1d_input",
    "adaptive_avg_pool2d_input",
    "adaptive_max_pool1d_input",
    "adaptive_max_pool2d_input",
    "avg_pool1d_input",
    "avg_pool2d_input",
    "conv1d_bias",
    "conv1d_input",
    "conv1d_weight",
    "conv2d_bias",
    "conv2d_input",
    "conv2d_weight",
    "conv_transpose1d_bias",
    "conv_transpose1d_input",
    "conv_transpose1d_weight",
    "conv_transpose2d_bias",
    "conv_transpose2d_input",
    "conv_transpose2d_weight",
    "depthwise_conv2d_input",
    "depthwise_conv2d_weight",
    "max_pool1d_input",
    "max_pool2d_input",
    "separable_conv2d_backward",
    "separable_conv2d_depthwise_bias",
    "separable_conv2d_depthwise_weight",
    "separable_conv2d_input",
    "separable_conv2d_pointwise_bias",
    "separable_conv2d_pointwise_weight",
]


# dask arrays in, lazy dask arrays out (fastconv/ops/_dask_entry.py; dask loads only then)
from .._dask_entry import accept_dask_arrays  # noqa: E402

accept_dask_arrays(globals())
