"""fastconv: native-accelerated convolution and pooling kernels for NumPy arrays.

The functions have torch.nn.functional's names, argument order and semantics; every one
takes ``backend=`` ("auto", "reference", "c", "numba", "cuda"). See README.md.
"""

from . import accounting, erf, grad, init, init_lesson, models, nn
from ._dispatch import available_backends, cpu_info, get_num_threads, set_num_threads
from .conv import (
    conv1d,
    conv2d,
    conv_transpose1d,
    conv_transpose2d,
    depthwise_conv2d,
    separable_conv2d,
)
from .erf import effective_receptive_field
from .pool import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    adaptive_max_pool1d,
    adaptive_max_pool2d,
    avg_pool1d,
    avg_pool2d,
    max_pool1d,
    max_pool2d,
)
from .receptive_field import receptive_field
from .summary import summary

__version__ = "0.1.0"

__all__ = [
    "accounting",
    "effective_receptive_field",
    "erf",
    "init_lesson",
    "init",
    "models",
    "nn",
    "receptive_field",
    "summary",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "available_backends",
    "avg_pool1d",
    "avg_pool2d",
    "conv1d",
    "cpu_info",
    "conv2d",
    "conv_transpose1d",
    "conv_transpose2d",
    "depthwise_conv2d",
    "get_num_threads",
    "grad",
    "max_pool1d",
    "max_pool2d",
    "separable_conv2d",
    "set_num_threads",
]
