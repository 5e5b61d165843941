"""fastconv: native-accelerated convolution and pooling kernels for NumPy arrays.

The functions have torch.nn.functional's names, argument order and semantics; every one
takes ``backend=`` ("auto", "reference", "c", "numba", "cuda"). See README.md.

``import fastconv`` loads the ops and the backend registry only. The subpackages (``nn``,
``models``, ``analysis``, ``benchmark``, ``lessons``, ``cli``, ``signal``, ``ndimage``,
``capsule``, ``dask``) and the tools they hold
(``receptive_field``, ``summary``, ``effective_receptive_field``) load on first use
(PEP 562 ``__getattr__``), and so does every backend (``fastconv.backends``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

from .backends._registry import (
    available_backends,
    buffer_pool_info,
    cpu_info,
    get_num_threads,
    set_buffer_pool_limit,
    set_num_threads,
)
from .ops.conv import (
    conv1d,
    conv2d,
    conv_transpose1d,
    conv_transpose2d,
    depthwise_conv2d,
    separable_conv2d,
)
from .ops.pool import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    adaptive_max_pool1d,
    adaptive_max_pool2d,
    avg_pool1d,
    avg_pool2d,
    max_pool1d,
    max_pool2d,
)

__version__ = "0.1.0"

#: Public modules known by a short name -> where they live.
_MODULES = {
    "grad": "fastconv.ops.grad",
    "nn": "fastconv.nn",
    "init": "fastconv.nn.init",
    "models": "fastconv.models",
    "analysis": "fastconv.analysis",
    "accounting": "fastconv.analysis.accounting",
    "erf": "fastconv.analysis.erf",
    "lessons": "fastconv.lessons",
    "init_lesson": "fastconv.lessons.init_lesson",
    "benchmark": "fastconv.benchmark",
    "backends": "fastconv.backends",
    "cli": "fastconv.cli",
    "ops": "fastconv.ops",
    "signal": "fastconv.signal",
    "ndimage": "fastconv.ndimage",
    "capsule": "fastconv.capsule",
    "dask": "fastconv.dask",
    "fused": "fastconv.fused",
}
#: Public functions that live in a lazily loaded module -> (module, name).
_FUNCTIONS = {
    "receptive_field": ("fastconv.analysis.receptive_field", "receptive_field"),
    "summary": ("fastconv.analysis.summary", "summary"),
    "effective_receptive_field": ("fastconv.analysis.erf", "effective_receptive_field"),
}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        mod = importlib.import_module(_MODULES[name])
    elif name in _FUNCTIONS:
        where, attr = _FUNCTIONS[name]
        mod = getattr(importlib.import_module(where), attr)
    else:
        raise AttributeError(f"module 'fastconv' has no attribute {name!r}")
    globals()[name] = mod
    return mod


def __dir__():
    return sorted(set(globals()) | set(_MODULES) | set(_FUNCTIONS))


class _ShortNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import fastconv.grad`` (and the other short names of ``_MODULES`` that are not a
    file of their own) gives the module where it lives: one module object, two names."""

    def find_spec(self, fullname, path=None, target=None):
        short = fullname[len("fastconv."):] if fullname.startswith("fastconv.") else None
        if short in _MODULES and _MODULES[short] != fullname:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        module = importlib.import_module(_MODULES[spec.name[len("fastconv."):]])
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module):
        # the import system has just stamped the short name's spec on the module: give it
        # back its own, so that its name, file and loader stay those of its real home
        module.__spec__ = module.__spec__.loader_state


if not any(isinstance(f, _ShortNames) for f in sys.meta_path):
    sys.meta_path.append(_ShortNames())

__all__ = [
    "accounting",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "available_backends",
    "avg_pool1d",
    "buffer_pool_info",
    "avg_pool2d",
    "conv1d",
    "conv2d",
    "conv_transpose1d",
    "conv_transpose2d",
    "cpu_info",
    "depthwise_conv2d",
    "effective_receptive_field",
    "erf",
    "get_num_threads",
    "grad",
    "init",
    "init_lesson",
    "max_pool1d",
    "max_pool2d",
    "models",
    "ndimage",
    "nn",
    "receptive_field",
    "separable_conv2d",
    "set_buffer_pool_limit",
    "set_num_threads",
    "signal",
    "summary",
]
