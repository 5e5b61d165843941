"""C backend wrappers of the capsule kernels (csrc/capsule.c), used by :mod:`fastconv.capsule`.

Kernel contract (the same names and arguments in ``fastconv.backends.reference_capsule`` and
``fastconv.backends.numba_cpu.capsule``): arrays C-contiguous, all float32 or all float64;
outputs arrive uninitialised and are written completely; nothing is validated here.

capsule_predict(u, w, uhat)
    u (N, I, Din), w (I, J, Dout, Din), uhat (N, I, J, Dout): uhat[n,i,j] = w[i,j] @ u[n,i]
capsule_predict_backward(u, w, guhat, gu, gw)
    gu (N, I, Din) = sum_j w[i,j]^T guhat[n,i,j]; gw (I, J, Dout, Din) = sum_n guhat u^T;
    either may be None (not computed)
dynamic_routing(uhat, v, c, iterations)
    uhat (N, I, J, D) -> v (N, J, D); c (N, I, J), the last iteration's coupling
    coefficients, or None
dynamic_routing_backward(uhat, gv, guhat, iterations)
    guhat (N, I, J, D) = dL/duhat for dL/dv = gv (N, J, D), the iterations unrolled

Threads: the kernels use the backend's thread count (``fastconv.set_num_threads``); they run
on one thread when the call is small. The C functions release the GIL (cffi does so).
"""

from __future__ import annotations

from ..._fastconv_c import lib
from ._cffi import is_f32, ptr

__all__ = [
    "capsule_predict",
    "capsule_predict_backward",
    "dynamic_routing",
    "dynamic_routing_backward",
]

if not hasattr(lib, "fc_dynamic_routing_f32"):  # an extension built before capsule.c
    raise ImportError("the compiled extension has no capsule kernels; rebuild it "
                      "(python csrc/build_ffi.py or pip install -e .)")


def _fn(name: str, a):
    return getattr(lib, f"fc_{name}_f32" if is_f32(a) else f"fc_{name}_f64")


def _check(rc: int, op: str) -> None:
    if rc:
        raise MemoryError(f"{op}: the C backend could not allocate its per-thread workspace")


def capsule_predict(u, w, uhat):
    # u is (N, I, Din), w is (I, J, Dout, Din), uhat is (N, I, J, Dout)
    N = u.shape[0]
    I, J, Dout, Din = w.shape
    _check(_fn("capsule_predict", u)(ptr(u), ptr(w), ptr(uhat), N, I, J, Dout, Din),
           "capsule_predict")


def capsule_predict_backward(u, w, guhat, gu, gw):
    # u is (N, I, Din), w is (I, J, Dout, Din), guhat is (N, I, J, Dout); gu, gw or None
    N = u.shape[0]
    I, J, Dout, Din = w.shape
    rc = _fn("capsule_predict_backward", u)(ptr(u), ptr(w), ptr(guhat), ptr(gu), ptr(gw), N,
                                            I, J, Dout, Din)
    _check(rc, "capsule_predict_backward")


def dynamic_routing(uhat, v, c, iterations):
    # uhat is (N, I, J, D), v is (N, J, D), c is (N, I, J) or None
    N, I, J, D = uhat.shape
    rc = _fn("dynamic_routing", uhat)(ptr(uhat), ptr(v), ptr(c), N, I, J, D, iterations)
    _check(rc, "dynamic_routing")


def dynamic_routing_backward(uhat, gv, guhat, iterations):
    # uhat and guhat are (N, I, J, D), gv is (N, J, D)
    N, I, J, D = uhat.shape
    rc = _fn("dynamic_routing_backward", uhat)(ptr(uhat), ptr(gv), ptr(guhat), N, I, J, D,
                                               iterations)
    _check(rc, "dynamic_routing_backward")
