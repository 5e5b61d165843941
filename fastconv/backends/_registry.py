"""Engine registry: lazy import, availability with reasons, dtype rules, array preparation.

A public function asks :func:`begin` for a :class:`Call`, which picks the engine, decides the
compute and output dtypes and converts every array once. Kernels then run on what the call
prepared (see ``fastconv/backends/__init__.py`` for the kernel contract).

Dtype rules (the same in every engine): the output dtype is ``numpy.result_type`` of the
inputs; float32 and float64 compute natively; integer and bool inputs compute in float64;
float16 computes in float32 and returns float16; complex, object and other kinds raise
TypeError.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

#: Engine name -> module. The order is the order of preference of backend="auto".
ENGINES: Dict[str, str] = {
    "c": "fastconv.backends.c",
    "numba": "fastconv.backends.numba_cpu",
    "reference": "fastconv.backends.reference",
    "cuda": "fastconv.backends.numba_cuda",
}
#: Engines that backend="auto" may pick for host (NumPy) arrays, best first.
AUTO_HOST = ("c", "numba", "reference")

#: Outputs start as NaN (ints as -7) when set: the tests use it to catch unwritten elements.
POISON = bool(os.environ.get("FASTCONV_POISON"))

_modules: Dict[str, Any] = {}
_reasons: Dict[str, str] = {}
_num_threads: Optional[int] = None


def _load(name: str):
    """Import an engine once; remember why it is unavailable if it cannot run."""
    if name in _reasons:
        return _modules.get(name)
    try:
        mod = importlib.import_module(ENGINES[name])
    except Exception as exc:  # an optional piece is missing: only this engine is disabled
        _reasons[name] = f"unavailable: {type(exc).__name__}: {exc}"
        return None
    reason = getattr(mod, "AVAILABLE_REASON", "available")
    if not reason.startswith(("available", "unavailable")):
        reason = f"unavailable: {reason}"
    _reasons[name] = reason
    if not reason.startswith("available"):  # e.g. "available (CUDA simulator)"
        return None
    _modules[name] = mod
    if _num_threads is not None and hasattr(mod, "set_num_threads"):
        mod.set_num_threads(_num_threads)
    return mod


def available_backends() -> Dict[str, str]:
    """Return ``{engine name: "available" or the reason it is not}`` for every engine."""
    for name in ENGINES:
        _load(name)
    return {name: _reasons[name] for name in ENGINES}


#: The kernels of the contract (fastconv/backends/__init__.py); separable_conv2d is optional.
KERNELS = (
    "conv2d",
    "depthwise_conv2d",
    "separable_conv2d",
    "conv_transpose2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d_backward",
)


def support_matrix() -> Dict[str, Dict[str, bool]]:
    """``{kernel: {engine: implemented and available}}`` for every kernel of the contract."""
    mods = {name: _load(name) for name in ENGINES}
    return {k: {n: m is not None and hasattr(m, k) for n, m in mods.items()} for k in KERNELS}


def backend_names() -> Tuple[str, ...]:
    return ("auto",) + tuple(ENGINES)


def set_num_threads(n: int) -> None:
    """Set the number of threads every engine uses (C: OpenMP, numba: its thread pool)."""
    from .._shapes import as_int

    global _num_threads
    _num_threads = as_int(n, "n", minimum=1)
    for mod in _modules.values():
        if hasattr(mod, "set_num_threads"):
            mod.set_num_threads(_num_threads)


def cpu_info() -> Dict[str, Any]:
    """The CPU's features and the kernels the C engine picked for it (its reason if it is
    unavailable)."""
    mod = _load("c")
    if mod is None:
        return {"available": False, "reason": _reasons["c"]}
    return mod.cpu_info()


def get_num_threads() -> int:
    """Threads the engines use: set_num_threads, else FASTCONV_NUM_THREADS, else all cores."""
    if _num_threads is not None:
        return _num_threads
    env = os.environ.get("FASTCONV_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- arrays


def is_device_array(a: Any) -> bool:
    """A CUDA device array: one with ``__cuda_array_interface__`` (numba, CuPy, torch.cuda),
    or a numba device array of the CUDA simulator (marked ``__cuda_ndarray__``)."""
    if isinstance(a, np.ndarray):
        return False
    return hasattr(a, "__cuda_array_interface__") or bool(getattr(a, "__cuda_ndarray__", False))


def _spec(a: Any, name: str) -> Tuple[Tuple[int, ...], np.dtype, Any]:
    """(shape, dtype, array) of an input; host inputs become NumPy arrays."""
    if type(a) is np.ndarray:
        return a.shape, a.dtype, a
    if is_device_array(a):
        if getattr(a, "__cuda_ndarray__", False):
            return tuple(a.shape), np.dtype(a.dtype), a
        iface = a.__cuda_array_interface__
        return tuple(iface["shape"]), np.dtype(iface["typestr"]), a
    try:
        arr = np.asarray(a)
    except Exception as exc:
        raise TypeError(f"{name} must be an array, got {type(a).__name__}: {exc}") from None
    return arr.shape, arr.dtype, arr


def resolve_dtypes(dtypes: Dict[str, np.dtype]) -> Tuple[np.dtype, np.dtype]:
    """(compute dtype, output dtype) for inputs of the given dtypes (see module docstring)."""
    for name, dt in dtypes.items():
        if dt.kind not in "biuf":
            raise TypeError(
                f"{name} has dtype {dt}; fastconv computes on real numbers "
                "(float32, float64; float16, integer and bool inputs are converted)"
            )
    out = np.result_type(*dtypes.values())
    if out.kind in "biu":
        return np.dtype(np.float64), np.dtype(np.float64)
    if out == np.float16:
        return np.dtype(np.float32), out
    if out in (np.float32, np.float64):
        return out, out
    return np.dtype(np.float64), out  # longdouble: computed in float64


class Call:
    """One public call: the engine chosen, the dtypes and the prepared arrays. Arrays given
    as None are absent (only those whose name ends in "bias" may be)."""

    def __init__(self, op: Any, backend: Any, arrays: Dict[str, Any]):
        for k, v in arrays.items():  # only biases are optional
            if v is None and not k.endswith("bias"):
                raise TypeError(f"{k} must be an array, got None")
        fast = _host_dtype(arrays)
        if fast is not None:  # the common case: NumPy float32 / float64 arrays of one dtype
            self.raw = {k: v for k, v in arrays.items() if v is not None}
            self.shapes = {k: v.shape for k, v in self.raw.items()}
            self.compute = self.out_dtype = fast
            self.device = False
        else:
            specs = {k: _spec(v, k) for k, v in arrays.items() if v is not None}
            self.shapes = {k: s[0] for k, s in specs.items()}
            self.raw = {k: s[2] for k, s in specs.items()}
            self.compute, self.out_dtype = resolve_dtypes({k: s[1] for k, s in specs.items()})
            self.device = any(is_device_array(a) for a in self.raw.values())
        key = (op, backend, self.device)
        name = _picked.get(key) if type(backend) is str else None
        engine = _modules.get(name) if name is not None else None
        if engine is None:  # first call of its kind, or the engine was unloaded since
            name = pick(op, backend, self.device)
            _picked[key] = name
            engine = _modules[name]
        self.name = name
        self.engine = engine
        self.op = op
        self._hooks = _hooks(self.engine)

    def has(self, op: str) -> bool:
        return hasattr(self.engine, op)

    def kernel(self, op: str):
        return getattr(self.engine, op)

    def prepare(self, name: str, shape: Optional[Tuple[int, ...]] = None):
        """The input ``name`` as the kernels take it, reshaped to ``shape`` if given."""
        a = self.raw.get(name)
        if a is None:
            return None
        prep = self._hooks[0]
        if prep is not None:
            a = prep(a, self.compute)
        elif not (type(a) is np.ndarray and a.dtype is self.compute and a.flags.c_contiguous):
            a = np.ascontiguousarray(a, dtype=self.compute)
        return a if shape is None else a.reshape(shape)

    def empty(self, shape: Tuple[int, ...], dtype: Any = None):
        dtype = self.compute if dtype is None else np.dtype(dtype)
        alloc = self._hooks[1]
        if alloc is not None:
            return alloc(shape, dtype)
        if POISON:
            return np.full(shape, np.nan if dtype.kind == "f" else -7, dtype)
        return np.empty(shape, dtype)

    def finish(self, y: Any, shape: Tuple[int, ...], dtype: Any = "out"):
        """Reshape to the user's shape, cast to the output dtype, hand back."""
        y = y.reshape(shape)
        fin = self._hooks[2]
        dt = self.out_dtype if dtype == "out" else np.dtype(dtype)
        if fin is not None:
            return fin(y, dt, self.device)
        return y if y.dtype == dt else y.astype(dt)


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
#: (op, backend, device) -> the engine pick() chose; engines load once, so the choice stays.
_picked: Dict[Tuple[Any, str, bool], str] = {}
_hook_cache: Dict[str, Tuple[Any, Any, Any]] = {}


def _host_dtype(arrays: Dict[str, Any]) -> Optional[np.dtype]:
    """The dtype shared by ``arrays`` when every one given is a NumPy float32 or float64
    array of that one dtype (no conversion needed), else None."""
    dt = None
    for v in arrays.values():
        if v is None:
            continue
        if type(v) is not np.ndarray:
            return None
        d = v.dtype
        if dt is None:
            if d != _F32 and d != _F64:
                return None
            dt = d
        elif d != dt:
            return None
    return _F32 if dt == _F32 else _F64 if dt is not None else None


def _hooks(engine: Any) -> Tuple[Any, Any, Any]:
    """An engine's optional (prepare, empty, finish) hooks."""
    name = engine.__name__
    hooks = _hook_cache.get(name)
    if hooks is None:
        hooks = (
            getattr(engine, "prepare", None),
            getattr(engine, "empty", None),
            getattr(engine, "finish", None),
        )
        _hook_cache[name] = hooks
    return hooks


def pick(op: Any, backend: Any, device: bool = False) -> str:
    """Resolve ``backend`` ("auto" or an engine name) to an available engine having ``op``
    (a kernel name, or a tuple of kernel names that must all be there)."""
    kernels = (op,) if isinstance(op, str) else tuple(op)
    what = ", ".join(kernels)
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, one of {backend_names()}, got {backend!r}")
    if backend != "auto" and backend not in ENGINES:
        raise ValueError(f"backend must be one of {backend_names()}, got {backend!r}")
    if backend == "auto":
        for name in ("cuda",) if device else AUTO_HOST:
            mod = _load(name)
            if mod is not None and all(hasattr(mod, k) for k in kernels):
                return name
        if device:
            raise ValueError(
                f"{what}: the input is a CUDA device array but the 'cuda' backend is "
                f"{_reasons.get('cuda')}"
            )
        raise ValueError(f"{what}: no available backend implements it")  # pragma: no cover
    mod = _load(backend)
    if mod is None:
        raise ValueError(f"backend {backend!r} is {_reasons[backend]}")
    missing = [k for k in kernels if not hasattr(mod, k)]
    if missing:
        raise ValueError(f"backend {backend!r} does not implement {', '.join(missing)}")
    if device and backend != "cuda":
        raise ValueError(
            f"{what}: CUDA device arrays need backend='cuda' or 'auto', got backend={backend!r}; "
            "copy the array to the host first to use a CPU engine"
        )
    return backend


def begin(op: Any, backend: Any, **arrays: Any) -> Call:
    """Start a public call (see :class:`Call`); ``op`` is the kernel the call needs, or a
    tuple of kernels that the engine must all implement."""
    return Call(op, backend, arrays)
