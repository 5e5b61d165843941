"""CUDA backend: numba.cuda kernels on device arrays, with the kernel contract's names.

Variants of conv2d (``variant=``):
  v1_direct   one thread per output element, loops over C/G x KH x KW reading global memory
  v2_tiled    (default) implicit GEMM: y = W (OC x C/G*KH*KW) times the im2col matrix,
              computed in BM x BN tiles staged through shared memory; im2col is never built,
              each B tile is gathered from x while it is loaded
Other kernels: depthwise_conv2d (direct), separable_conv2d (one launch: the tiled GEMM whose
B tile is the depthwise output computed on the fly), conv_transpose2d (gather: one thread per
output, no atomics), the max / avg / adaptive pools and their backward kernels.
Sources: conv_kernels.py and pool_kernels.py (the @cuda.jit kernels), launch.py (launchers,
hooks).

Running: ``pip install numba-cuda`` and a CUDA driver + GPU; ``backend="cuda"`` (or "auto"
with device-array inputs). Without a GPU, NUMBA_ENABLE_CUDASIM=1 (set before numba.cuda is
first imported) runs the same kernels in numba's Python simulator: correct but very slow,
for tests on tiny shapes only. See docs/cuda.md.

Backend hooks: ``prepare`` copies host inputs to the device once and uses device inputs in
place; ``empty`` allocates on the device; ``finish`` returns device arrays to device
callers and NumPy arrays to host callers.
"""

from __future__ import annotations

import importlib.util


def _availability() -> str:
    """ "available", "available (CUDA simulator)", or why the backend cannot run; never raises."""
    if importlib.util.find_spec("numba_cuda") is None:
        return "numba-cuda is not installed"
    try:
        from numba import cuda
        from numba.cuda.core import config
    except Exception as exc:  # e.g. numba-cuda without its CUDA Python bindings
        return f"numba-cuda is not installed ({type(exc).__name__}: {exc})"
    if config.ENABLE_CUDASIM:
        return "available (CUDA simulator)"
    try:
        if cuda.is_available():
            return "available"
        from numba.cuda.cudadrv.driver import driver

        err = str(getattr(driver, "initialization_error", "") or "")
    except Exception as exc:  # pragma: no cover - depends on the machine
        err = f"{type(exc).__name__}: {exc}"
    if "cannot be found" in err or "libcuda" in err:
        return "no CUDA driver"
    return "no GPU found" + (f" ({err.strip().splitlines()[0]})" if err.strip() else "")


AVAILABLE_REASON = _availability()

if not AVAILABLE_REASON.startswith("numba-cuda"):
    # Defining the kernels needs numba.cuda but no GPU: @cuda.jit compiles on first launch.
    from .launch import *  # noqa: E402,F401,F403
