"""Capsule networks (Sabour, Frosst and Hinton, "Dynamic Routing Between Capsules", 2017).

Ops
---
- :func:`squash`: v = |s|^2 / (1 + |s|^2) * s / |s|, computed as s |s| / (1 + |s|^2), so it is
  finite, 0 and differentiable at s = 0.
- :func:`prediction_vectors`: u_hat[n, i, j] = W[i, j] @ u[n, i], one (Dout, Din) matrix per
  pair (input capsule i, output capsule j).
- :func:`dynamic_routing`: the paper's Procedure 1 on u_hat (N, I, J, D): b = 0; r times
  c = softmax(b) over the J output capsules, s_j = sum_i c_ij u_hat_ij, v_j = squash(s_j),
  and (except after the last iteration) b_ij += u_hat_ij . v_j.
- :func:`margin_loss`: sum over classes of T max(0, m+ - |v|)^2 + lam (1 - T) max(0, |v| - m-)^2.

Gradients, named as :mod:`fastconv.grad` names them (dL/d(one argument) from the forward
arguments and ``grad_output`` = dL/d(output)): :func:`squash_input`,
:func:`prediction_vectors_input`, :func:`prediction_vectors_weight` (both at once:
:func:`prediction_vectors_backward`),
:func:`dynamic_routing_input` (the gradient of the algorithm as written: the r iterations
unrolled, the coupling coefficients differentiated through the softmax) and
:func:`margin_loss_input`.

Backends: the prediction vectors and the routing loop (forward and backward) are kernels of
the "reference" (NumPy, float64), "c" (csrc/capsule.c, OpenMP) and "numba" backends, chosen
with ``backend=`` as for every fastconv op ("auto": c, then numba, then reference). The
kernels live beside the backends' other kernels (``fastconv/backends/c/capsule.py``,
``numba_cpu/capsule.py``, ``reference_capsule.py``); this module finds them through the
backend registry (a backend that is unavailable there is unavailable here, with its reason).
The cuda backend has no capsule kernels. squash and the margin loss are elementwise NumPy
(their cost is negligible next to the kernels'). Dtypes as every fastconv op: float32 and
float64 compute natively, integers in float64, float16 in float32 (returned as float16).

Layers built on these: ``fastconv.nn.capsule`` (PrimaryCaps, CapsuleLayer, CapsuleMask,
CapsNetDecoder, CapsNet); the model: ``fastconv.models.capsnet``; see docs/capsules.md.

>>> import numpy as np
>>> from fastconv import capsule
>>> u_hat = np.random.default_rng(0).normal(size=(2, 6, 3, 4))   # N, I, J, D
>>> v, c = capsule.dynamic_routing(u_hat, iterations=3, return_coupling=True)
>>> v.shape, c.shape, bool(np.allclose(c.sum(axis=2), 1))
((2, 3, 4), (2, 6, 3), True)
>>> bool(np.all(np.linalg.norm(v, axis=-1) < 1))
True
"""

from __future__ import annotations

import functools
import importlib
import math
from typing import Any, Callable, Dict, Tuple

import numpy as np

from . import _shapes
from .backends import _registry

__all__ = [
    "KERNELS",
    "capsule_backends",
    "dynamic_routing",
    "dynamic_routing_input",
    "margin_loss",
    "margin_loss_input",
    "prediction_vectors",
    "prediction_vectors_backward",
    "prediction_vectors_input",
    "prediction_vectors_weight",
    "squash",
    "squash_input",
]

#: The capsule kernels every backend module below implements (same names, same arguments).
KERNELS = ("capsule_predict", "capsule_predict_backward", "dynamic_routing",
           "dynamic_routing_backward")
#: Backend name -> the module holding its capsule kernels.
_KERNEL_MODULES = {
    "c": "fastconv.backends.c.capsule",
    "numba": "fastconv.backends.numba_cpu.capsule",
    "reference": "fastconv.backends.reference_capsule",
}

_modules: Dict[str, Any] = {}
_reasons: Dict[str, str] = {}

Shape = Tuple[int, ...]


# --------------------------------------------------------------------------- dispatch


def _kernels(name: str):
    """The capsule kernel module of backend ``name``, or None (the reason in _reasons)."""
    if name in _reasons:
        return _modules.get(name)
    if name not in _KERNEL_MODULES:
        _reasons[name] = f"unavailable: the {name} backend has no capsule kernels"
        return None
    if _registry._load(name) is None:  # the backend itself (its reason from the registry)
        _reasons[name] = _registry.available_backends()[name]
        return None
    try:
        mod = importlib.import_module(_KERNEL_MODULES[name])
    except Exception as exc:  # e.g. an extension built before csrc/capsule.c existed
        _reasons[name] = f"unavailable: {type(exc).__name__}: {exc}"
        return None
    missing = [k for k in KERNELS if not hasattr(mod, k)]
    if missing:  # pragma: no cover - a broken backend module
        _reasons[name] = f"unavailable: missing kernels {', '.join(missing)}"
        return None
    _reasons[name] = "available"
    _modules[name] = mod
    return mod


def capsule_backends() -> Dict[str, str]:
    """``{backend: "available" or the reason it is not}`` for the capsule kernels.

    >>> capsule_backends()["reference"]
    'available'
    """
    out = {}
    for name in _registry.BACKENDS:
        _kernels(name)
        out[name] = _reasons[name]
    return out


def _pick(backend: Any) -> Tuple[str, Any]:
    """(backend name, kernel module) for ``backend`` ("auto" or a backend name)."""
    names = _registry.backend_names()
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, one of {names}, got {backend!r}")
    if backend not in names:
        raise ValueError(f"backend must be one of {names}, got {backend!r}")
    if backend == "auto":
        for name in _registry.AUTO_HOST:
            mod = _kernels(name)
            if mod is not None:
                return name, mod
        raise ValueError("capsule ops: no available backend")  # pragma: no cover
    mod = _kernels(backend)
    if mod is None:
        raise ValueError(f"backend {backend!r} cannot run the capsule kernels: "
                         f"{_reasons[backend]}")
    return backend, mod


class _Call:
    """One public call: the backend, the compute and output dtypes, the converted arrays."""

    def __init__(self, backend: Any, arrays: Dict[str, Any]):
        self.name, self.kernels = _pick(backend)
        specs = {}
        for k, a in arrays.items():
            if a is None:
                raise TypeError(f"{k} must be an array, got None")
            if _registry.is_device_array(a):
                raise TypeError(f"{k} is a CUDA device array; the capsule ops take host "
                                "(NumPy) arrays: copy it to the host first")
            try:
                arr = np.asarray(a)
            except Exception as exc:
                raise TypeError(f"{k} must be an array, got {type(a).__name__}: {exc}") from None
            specs[k] = arr
        self.arrays = specs
        self.compute, self.out_dtype = _registry.resolve_dtypes(
            {k: a.dtype for k, a in specs.items()})
        backend = _registry._load(self.name)
        self._prepare = getattr(backend, "prepare", None)

    def shape(self, name: str) -> Shape:
        return tuple(self.arrays[name].shape)

    def prepare(self, name: str) -> np.ndarray:
        a = self.arrays[name]
        if self._prepare is not None:
            return self._prepare(a, self.compute)
        return np.ascontiguousarray(a, dtype=self.compute)

    def empty(self, shape: Shape) -> np.ndarray:
        if _registry.POISON:  # the tests catch elements a kernel leaves unwritten
            return np.full(shape, np.nan, self.compute)
        return np.empty(shape, self.compute)

    def finish(self, y: np.ndarray) -> np.ndarray:
        return y if y.dtype == self.out_dtype else y.astype(self.out_dtype)


# --------------------------------------------------------------------------- validation


def _public(fn: Callable) -> Callable:
    """Errors of a public function start with its name: "dynamic_routing: iterations must be
    positive, got 0" (the project's rule for every message)."""
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            if str(exc).startswith(f"{name}: "):
                raise
            raise type(exc)(f"{name}: {exc}") from None

    return wrapper



def _rank(shape: Shape, ndim: int, name: str, layout: str) -> None:
    if len(shape) != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {shape}")


def _positive(shape: Shape, name: str, layout: str, first: int = 1) -> None:
    """Every size from dimension ``first`` on must be >= 1 (the batch may be 0)."""
    if any(s < 1 for s in shape[first:]):
        raise ValueError(f"{name} {layout} must have sizes >= 1 (a batch of 0 is allowed), "
                         f"got shape {shape}")


def _shape_arg(value: Any, name: str, ndim: int) -> Shape:
    if isinstance(value, (str, bytes)) or not _shapes._is_sequence(value):
        raise TypeError(f"{name} must be a sequence of {ndim} ints, got {value!r}")
    shape = tuple(_shapes.as_int(v, name) for v in value)
    if len(shape) != ndim:
        raise ValueError(f"{name} must have {ndim} entries, got {shape}")
    return shape


def _check_prediction(input_shape: Shape, weight_shape: Shape) -> None:
    _rank(input_shape, 3, "input", "(N, I, Din)")
    _rank(weight_shape, 4, "weight", "(I, J, Dout, Din)")
    _positive(input_shape, "input", "(N, I, Din)")
    _positive(weight_shape, "weight", "(I, J, Dout, Din)", first=0)
    if input_shape[1] != weight_shape[0]:
        raise ValueError(f"weight has {weight_shape[0]} input capsules (dim 0) but input has "
                         f"{input_shape[1]} (dim 1): input {input_shape}, weight {weight_shape}")
    if input_shape[2] != weight_shape[3]:
        raise ValueError(f"weight's capsule dimension Din (dim 3) is {weight_shape[3]} but "
                         f"input's (dim 2) is {input_shape[2]}: input {input_shape}, "
                         f"weight {weight_shape}")


def _check_u_hat(shape: Shape) -> None:
    _rank(shape, 4, "u_hat", "(N, I, J, D)")
    _positive(shape, "u_hat", "(N, I, J, D)")


def _check_grad_output(got: Shape, want: Shape) -> None:
    if tuple(got) != tuple(want):
        raise ValueError(f"grad_output must have the forward output's shape {tuple(want)}, "
                         f"got {tuple(got)}")


def _axis(axis: Any, ndim: int) -> int:
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    if not -ndim <= int(axis) < ndim:
        raise ValueError(f"axis {int(axis)} is out of range for an array of {ndim} dimensions")
    return int(axis) % ndim


def _real(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


# --------------------------------------------------------------------------- squash


def _squash_arrays(s: Any, name: str) -> Tuple[np.ndarray, np.dtype, np.dtype]:
    arr = np.asarray(s)
    compute, out = _registry.resolve_dtypes({name: arr.dtype})
    if arr.ndim == 0:
        raise ValueError(f"{name} must have at least 1 dimension (the capsule axis), got a "
                         "scalar")
    return arr.astype(compute, copy=False), compute, out


@_public
def squash(s: Any, axis: int = -1) -> np.ndarray:
    """The capsule non-linearity: v = |s|^2 / (1 + |s|^2) * s / |s| along ``axis``.

    Computed as s |s| / (1 + |s|^2) with the norm in float64: no division, so v is finite,
    0 and differentiable at s = 0 (its derivative there is 0), and |v| < 1 always.

    Parameters
    ----------
    s : array_like, any shape with at least one dimension; ``axis`` holds the capsule's
        D components
    axis : the capsule axis (default -1)

    Returns
    -------
    ndarray of s's shape (float dtype by fastconv's rules).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.capsule import squash
    >>> squash(np.array([[3.0, 4.0], [0.0, 0.0]]))     # |s| = 5: v = 25/26 * s/5
    array([[0.57692308, 0.76923077],
           [0.        , 0.        ]])
    """
    x, compute, out = _squash_arrays(s, "s")
    ax = _axis(axis, x.ndim)
    n2 = np.sum(np.square(x, dtype=np.float64), axis=ax, keepdims=True)
    f = (np.sqrt(n2) / (1.0 + n2)).astype(compute)
    return (x * f).astype(out, copy=False)


@_public
def squash_input(s: Any, grad_output: Any, axis: int = -1) -> np.ndarray:
    """dL/ds of :func:`squash`, given dL/dv = ``grad_output`` (s's shape).

    With n = |s| and f = n / (1 + n^2): dL/ds = f g + s (s . g) (1 - n^2) / (n (1 + n^2)^2);
    the second term tends to 0 with s and is 0 at s = 0, so the gradient is finite there.

    Parameters
    ----------
    s : array_like, the forward input (at least 1-D)
    grad_output : array_like of s's shape, dL/dv
    axis : the capsule axis (default -1)

    Returns
    -------
    ndarray of s's shape, dL/ds.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.capsule import squash_input
    >>> squash_input(np.zeros((1, 3)), np.ones((1, 3)))
    array([[0., 0., 0.]])
    """
    x, compute, out = _squash_arrays(s, "s")
    g = np.asarray(grad_output)
    _check_grad_output(g.shape, x.shape)
    compute, out = _registry.resolve_dtypes({"s": x.dtype, "grad_output": g.dtype})
    ax = _axis(axis, x.ndim)
    x64, g64 = np.moveaxis(x.astype(np.float64), ax, -1), np.moveaxis(g.astype(np.float64),
                                                                      ax, -1)
    from .backends.reference_capsule import squash_backward

    gs = np.moveaxis(squash_backward(x64, g64), -1, ax)
    return gs.astype(out, copy=False)


# --------------------------------------------------------------------------- prediction vectors


@_public
def prediction_vectors(input: Any, weight: Any, *, backend: str = "auto") -> np.ndarray:
    """Prediction vectors u_hat[n, i, j] = weight[i, j] @ input[n, i] (the paper's W_ij u_i).

    Parameters
    ----------
    input : array_like (N, I, Din): the I input capsules of Din components per sample
    weight : array_like (I, J, Dout, Din): one (Dout, Din) matrix per pair (input capsule i,
        output capsule j); no bias, as the paper
    backend : "auto", "reference", "c" or "numba"

    Returns
    -------
    ndarray (N, I, J, Dout); N*I*J*Dout*Din multiply-adds.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.capsule import prediction_vectors
    >>> w = np.zeros((2, 3, 4, 5)); w[:, :, 0, 0] = 2.0     # output component 0 = 2 u[0]
    >>> u_hat = prediction_vectors(np.ones((1, 2, 5)), w)
    >>> u_hat.shape, float(u_hat[0, 1, 2, 0]), float(u_hat[0, 1, 2, 1])
    ((1, 2, 3, 4), 2.0, 0.0)
    """
    call = _Call(backend, {"input": input, "weight": weight})
    _check_prediction(call.shape("input"), call.shape("weight"))
    N = call.shape("input")[0]
    I, J, Dout, _ = call.shape("weight")
    uhat = call.empty((N, I, J, Dout))
    if N:
        call.kernels.capsule_predict(call.prepare("input"), call.prepare("weight"), uhat)
    return call.finish(uhat)


@_public
def prediction_vectors_input(input_shape: Any, weight: Any, grad_output: Any, *,
                             backend: str = "auto") -> np.ndarray:
    """dL/d(input) of :func:`prediction_vectors`: sum_j weight[i, j]^T grad_output[n, i, j].

    Parameters
    ----------
    input_shape : (N, I, Din), the forward input's shape
    weight : array_like (I, J, Dout, Din)
    grad_output : array_like (N, I, J, Dout), dL/du_hat

    Returns
    -------
    ndarray (N, I, Din)

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.capsule import prediction_vectors_input
    >>> prediction_vectors_input((1, 2, 3), np.ones((2, 4, 5, 3)), np.ones((1, 2, 4, 5)))
    array([[[20., 20., 20.],
            [20., 20., 20.]]])
    """
    shape = _shape_arg(input_shape, "input_shape", 3)
    call = _Call(backend, {"weight": weight, "grad_output": grad_output})
    _check_prediction(shape, call.shape("weight"))
    I, J, Dout, Din = call.shape("weight")
    _check_grad_output(call.shape("grad_output"),
                       (shape[0], I, J, Dout))
    gu = call.empty(shape)
    if shape[0]:
        w = call.prepare("weight")
        u = np.zeros(shape, call.compute)  # not read when gw is None
        call.kernels.capsule_predict_backward(u, w, call.prepare("grad_output"), gu, None)
    return call.finish(gu)


@_public
def prediction_vectors_weight(input: Any, weight_shape: Any, grad_output: Any, *,
                              backend: str = "auto") -> np.ndarray:
    """dL/d(weight) of :func:`prediction_vectors`: sum_n grad_output[n, i, j] input[n, i]^T.

    Parameters
    ----------
    input : array_like (N, I, Din)
    weight_shape : (I, J, Dout, Din)
    grad_output : array_like (N, I, J, Dout), dL/du_hat

    Returns
    -------
    ndarray (I, J, Dout, Din); zeros for a batch of 0.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.capsule import prediction_vectors_weight
    >>> g = prediction_vectors_weight(np.ones((3, 1, 2)), (1, 1, 1, 2), np.ones((3, 1, 1, 1)))
    >>> g
    array([[[[3., 3.]]]])
    """
    wshape = _shape_arg(weight_shape, "weight_shape", 4)
    call = _Call(backend, {"input": input, "grad_output": grad_output})
    _check_prediction(call.shape("input"), wshape)
    N = call.shape("input")[0]
    I, J, Dout, _ = wshape
    _check_grad_output(call.shape("grad_output"), (N, I, J, Dout))
    if not N:
        return call.finish(np.zeros(wshape, call.compute))
    gw = call.empty(wshape)
    u = call.prepare("input")
    w = np.zeros(wshape, call.compute)  # not read when gu is None
    call.kernels.capsule_predict_backward(u, w, call.prepare("grad_output"), None, gw)
    return call.finish(gw)


@_public
def prediction_vectors_backward(input: Any, weight: Any, grad_output: Any, *,
                                backend: str = "auto") -> Tuple[np.ndarray, np.ndarray]:
    """(dL/d(input), dL/d(weight)) of :func:`prediction_vectors` in one pass over
    ``grad_output``: what :func:`prediction_vectors_input` and
    :func:`prediction_vectors_weight` return, for the cost of one of them.

    Parameters
    ----------
    input : array_like (N, I, Din)
    weight : array_like (I, J, Dout, Din)
    grad_output : array_like (N, I, J, Dout), dL/du_hat
    backend : "auto", "reference", "c" or "numba"

    Returns
    -------
    (ndarray (N, I, Din), ndarray (I, J, Dout, Din)): dL/d(input), dL/d(weight).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.capsule import prediction_vectors_backward
    >>> gx, gw = prediction_vectors_backward(np.ones((3, 2, 4)), np.ones((2, 5, 6, 4)),
    ...                                      np.ones((3, 2, 5, 6)))
    >>> gx.shape, gw.shape, float(gx[0, 0, 0]), float(gw[0, 0, 0, 0])
    ((3, 2, 4), (2, 5, 6, 4), 30.0, 3.0)
    """
    call = _Call(backend, {"input": input, "weight": weight, "grad_output": grad_output})
    shape, wshape = call.shape("input"), call.shape("weight")
    _check_prediction(shape, wshape)
    I, J, Dout, _ = wshape
    _check_grad_output(call.shape("grad_output"),
                       (shape[0], I, J, Dout))
    gu = call.empty(shape)
    if not shape[0]:
        return call.finish(gu), call.finish(np.zeros(wshape, call.compute))
    gw = call.empty(wshape)
    call.kernels.capsule_predict_backward(call.prepare("input"), call.prepare("weight"),
                                          call.prepare("grad_output"), gu, gw)
    return call.finish(gu), call.finish(gw)


# --------------------------------------------------------------------------- routing


def _iterations(value: Any) -> int:
    return _shapes.as_int(value, "iterations", minimum=1)


@_public
def dynamic_routing(u_hat: Any, iterations: int = 3, *, return_coupling: bool = False,
                    backend: str = "auto"):
    """Routing by agreement, the paper's Procedure 1.

    For each sample: b = 0 (I, J); then ``iterations`` times: c_i = softmax(b_i) over the J
    output capsules, s_j = sum_i c_ij u_hat_ij, v_j = squash(s_j), and, except after the last
    iteration, b_ij += u_hat_ij . v_j. With one iteration c is uniform (1/J) and v_j is the
    squashed mean of the predictions.

    Parameters
    ----------
    u_hat : array_like (N, I, J, D): prediction vectors of I input capsules for J output
        capsules (see :func:`prediction_vectors`)
    iterations : r >= 1 (the paper uses 3)
    return_coupling : also return c (N, I, J), the coupling coefficients of the last
        iteration (rows sum to 1)
    backend : "auto", "reference", "c" or "numba"

    Returns
    -------
    v : ndarray (N, J, D), the output capsules (|v_j| < 1); and c if ``return_coupling``.
    Cost: (2r - 1) * N*I*J*D multiply-adds (r weighted sums, r - 1 agreements), plus r - 1
    softmaxes over N*I*J logits.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.capsule import dynamic_routing
    >>> u_hat = np.zeros((1, 2, 2, 2)); u_hat[0, :, 0] = [3.0, 4.0]   # both vote for j = 0
    >>> v, c = dynamic_routing(u_hat, 2, return_coupling=True)
    >>> np.round(c[0], 3)            # after one agreement most of the coupling goes to j = 0
    array([[0.992, 0.008],
           [0.992, 0.008]])
    """
    r = _iterations(iterations)
    want_c = _shapes.as_bool(return_coupling, "return_coupling")
    call = _Call(backend, {"u_hat": u_hat})
    shape = call.shape("u_hat")
    _check_u_hat(shape)
    N, I, J, D = shape
    v = call.empty((N, J, D))
    c = call.empty((N, I, J)) if want_c else None
    if N:
        call.kernels.dynamic_routing(call.prepare("u_hat"), v, c, r)
    if c is not None:
        return call.finish(v), call.finish(c)
    return call.finish(v)


@_public
def dynamic_routing_input(u_hat: Any, grad_output: Any, iterations: int = 3, *,
                          backend: str = "auto") -> np.ndarray:
    """dL/du_hat of :func:`dynamic_routing`, given dL/dv = ``grad_output`` (N, J, D).

    The gradient of the algorithm as written: the ``iterations`` steps unrolled, with u_hat
    reaching v through the weighted sums and through the agreements and softmaxes that set
    the coupling coefficients (what autograd gives for the same loop). The backend recomputes
    the forward iterations, keeping each one's c, s and v, then walks them back
    (docs/capsules.md has the formulas); about twice the forward's work again.

    Parameters
    ----------
    u_hat : array_like (N, I, J, D), the forward input
    grad_output : array_like (N, J, D), dL/dv
    iterations : r >= 1, as in the forward call
    backend : "auto", "reference", "c" or "numba"

    Returns
    -------
    ndarray (N, I, J, D)

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.capsule import dynamic_routing_input
    >>> u_hat = np.random.default_rng(0).normal(size=(1, 4, 2, 3))
    >>> dynamic_routing_input(u_hat, np.ones((1, 2, 3)), 3).shape
    (1, 4, 2, 3)
    """
    r = _iterations(iterations)
    call = _Call(backend, {"u_hat": u_hat, "grad_output": grad_output})
    shape = call.shape("u_hat")
    _check_u_hat(shape)
    N, I, J, D = shape
    _check_grad_output(call.shape("grad_output"), (N, J, D))
    gu = call.empty(shape)
    if N:
        call.kernels.dynamic_routing_backward(call.prepare("u_hat"),
                                              call.prepare("grad_output"), gu, r)
    return call.finish(gu)


# --------------------------------------------------------------------------- margin loss

_REDUCTIONS = ("mean", "sum", "none")


def _margin_args(lengths, labels, m_plus, m_minus, lam, reduction):
    length = np.asarray(lengths)
    compute, out = _registry.resolve_dtypes({"lengths": length.dtype})
    _rank(tuple(length.shape), 2, "lengths", "(N, J)")
    N, J = length.shape
    if J < 1:
        raise ValueError(f"lengths (N, J) must have J >= 1 classes, got shape {length.shape}")
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers (class indices), got dtype {lab.dtype}")
    if lab.shape != (N,):
        raise ValueError(f"labels must have shape (N,) = ({N},) to match lengths {length.shape}, "
                         f"got {lab.shape}")
    if N and (lab.min() < 0 or lab.max() >= J):
        bad = lab[(lab < 0) | (lab >= J)][0]
        raise ValueError(f"labels must be class indices in [0, {J}), got {int(bad)}")
    mp, mm, la = _real(m_plus, "m_plus"), _real(m_minus, "m_minus"), _real(lam, "lam")
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    onehot = np.zeros((N, J), bool)
    onehot[np.arange(N), lab.astype(np.int64)] = True
    return length.astype(np.float64), onehot, mp, mm, la, compute, out


@_public
def margin_loss(lengths: Any, labels: Any, m_plus: float = 0.9, m_minus: float = 0.1,
                lam: float = 0.5, reduction: str = "mean"):
    """The paper's margin loss on the lengths of the class capsules.

    Per sample n: L_n = sum_k T_k max(0, m+ - |v_k|)^2 + lam (1 - T_k) max(0, |v_k| - m-)^2,
    with T_k = 1 for the sample's label and 0 otherwise.

    Parameters
    ----------
    lengths : array_like (N, J): |v_k| of each class capsule
    labels : integer array (N,), values in [0, J)
    m_plus, m_minus, lam : the margins (0.9, 0.1) and the down-weighting of absent classes (0.5)
    reduction : "mean" (over the batch, default), "sum" or "none" (L_n per sample), as
        torch's losses

    Returns
    -------
    a scalar of lengths' float dtype ("mean", "sum"; the mean of an empty batch is NaN, as
    torch's), or an ndarray (N,) ("none").

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.capsule import margin_loss
    >>> round(float(margin_loss(np.array([[0.95, 0.05], [0.5, 0.5]]), np.array([0, 1]))), 4)
    0.12
    """
    length, onehot, mp, mm, la, compute, out = _margin_args(lengths, labels, m_plus, m_minus,
                                                            lam, reduction)
    present = np.maximum(0.0, mp - length) ** 2
    absent = np.maximum(0.0, length - mm) ** 2
    per = np.where(onehot, present, la * absent).sum(axis=1)
    if reduction == "none":
        return per.astype(out)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = per.sum() if reduction == "sum" else per.sum() / per.size if per.size else np.nan
    return np.asarray(value, out)[()]


@_public
def margin_loss_input(lengths: Any, labels: Any, grad_output: Any = 1.0, m_plus: float = 0.9,
                      m_minus: float = 0.1, lam: float = 0.5,
                      reduction: str = "mean") -> np.ndarray:
    """dL/d(lengths) of :func:`margin_loss`, given dL/d(loss) = ``grad_output`` (a scalar for
    "mean" and "sum", an array (N,) for "none"; default 1).

    Per element: -2 T max(0, m+ - |v|) + 2 lam (1 - T) max(0, |v| - m-), times grad_output,
    divided by N for "mean".

    Parameters
    ----------
    lengths, labels, m_plus, m_minus, lam, reduction : as :func:`margin_loss`
    grad_output : number, or array_like (N,) for reduction="none"

    Returns
    -------
    ndarray (N, J), dL/d(lengths).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.capsule import margin_loss_input
    >>> margin_loss_input(np.array([[0.5, 0.5]]), np.array([0]))
    array([[-0.8,  0.4]])
    """
    length, onehot, mp, mm, la, compute, out = _margin_args(lengths, labels, m_plus, m_minus,
                                                            lam, reduction)
    g = np.asarray(grad_output, dtype=np.float64)
    N = length.shape[0]
    if reduction == "none":
        if g.shape != (N,):
            raise ValueError(f"grad_output must have shape ({N},) for reduction='none', got "
                             f"{g.shape}")
        g = g[:, None]
    elif g.shape != ():
        raise ValueError(f"grad_output must be a scalar for reduction={reduction!r}, got shape "
                         f"{g.shape}")
    grad = np.where(onehot, -2.0 * np.maximum(0.0, mp - length),
                    2.0 * la * np.maximum(0.0, length - mm)) * g
    if reduction == "mean" and N:
        grad = grad / N
    return grad.astype(out)
