"""Backend registry: lazy import, availability with reasons, dtype rules, array preparation,
and the checks of the kernel options each backend declares.

A public function asks :func:`begin` for a :class:`Call`, which picks the backend, decides the
compute and output dtypes and converts every array once. Kernels then run on what the call
prepared (see ``fastconv/backends/__init__.py`` for the kernel contract). A backend is a module
of this package; ``backend=`` names it by its key in :data:`BACKENDS`.

Dtype rules (the same in every backend): the output dtype is ``numpy.result_type`` of the
inputs; float32 and float64 compute natively; integer and bool inputs compute in float64;
float16 computes in float32 and returns float16; complex, object and other kinds raise
TypeError.
"""

import importlib
import os
import warnings
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import numpy as np

from . import KERNEL_NAMES, _bigbuf

#: Backend name -> module. The order is the order of preference of backend="auto".
BACKENDS: Dict[str, str] = {
    "c": "fastconv.backends.c",
    "numba": "fastconv.backends.numba_cpu",
    "reference": "fastconv.backends.reference",
    "cuda": "fastconv.backends.numba_cuda",
}
#: Backends that backend="auto" may pick for host (NumPy) arrays, best first.
AUTO_HOST = ("c", "numba", "reference")

#: Outputs start as NaN (ints as -7) when set: the tests use it to catch unwritten elements.
POISON = bool(os.environ.get("FASTCONV_POISON"))

_modules: Dict[str, Any] = {}
_reasons: Dict[str, str] = {}
_num_threads: Optional[int] = None


def _load(name: str):
    """Import a backend once; remember why it is unavailable if it cannot run."""
    if name in _reasons:
        return _modules.get(name)
    try:
        mod = importlib.import_module(BACKENDS[name])
    except Exception as exc:  # an optional piece is missing: only this backend is disabled
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
    """Which backends run here, and why the others do not.

    Importing a backend the first time may take a moment (numba compiles lazily, the C
    backend loads its extension); the answer is then kept.

    Returns
    -------
    dict of str to str
        ``{backend name: "available" or "unavailable: <reason>"}`` for every backend, in the
        order ``backend="auto"`` prefers them ("available (CUDA simulator)" marks the
        simulator).

    Examples
    --------
    >>> import fastconv
    >>> backends = fastconv.available_backends()
    >>> list(backends)
    ['c', 'numba', 'reference', 'cuda']
    >>> backends["reference"]
    'available'
    """
    for name in BACKENDS:
        _load(name)
    return {name: _reasons[name] for name in BACKENDS}


def backend_module(name: str) -> Any:
    """The module of backend ``name`` (imported on first use), or None when it cannot run
    here (``available_backends()`` says why): for tools that read what a backend declares,
    such as its ``CONV2D_VARIANTS``."""
    if name not in BACKENDS:
        raise ValueError(f"backend_module: name must be one of {tuple(BACKENDS)}, got {name!r}")
    return _load(name)


def support_matrix() -> Dict[str, Dict[str, bool]]:
    """``{kernel: {backend: implemented and available}}`` for every kernel of the contract."""
    mods = {name: _load(name) for name in BACKENDS}
    return {k: {n: m is not None and hasattr(m, k) for n, m in mods.items()} for k in KERNEL_NAMES}


def backend_names() -> Tuple[str, ...]:
    return ("auto",) + tuple(BACKENDS)


def set_num_threads(n: int) -> None:
    """Set the number of threads every backend uses (C: OpenMP, numba: its thread pool).

    Parameters
    ----------
    n : int
        At least 1. More than :func:`max_threads`, the CPUs this process may run on, is capped
        there with a warning (more threads would only wait for one another).

    Returns
    -------
    None

    Examples
    --------
    >>> import fastconv
    >>> fastconv.set_num_threads(1)
    >>> fastconv.get_num_threads()
    1
    """
    from .._shapes import as_int

    global _num_threads
    n = as_int(n, "n", minimum=1, op="set_num_threads")
    cap = max_threads()
    if n > cap:
        warnings.warn(f"set_num_threads: n={n} is more than the {cap} CPU(s) this process may "
                      f"run on; using {cap}", stacklevel=2)
        n = cap
    _num_threads = n
    for mod in _modules.values():
        if hasattr(mod, "set_num_threads"):
            mod.set_num_threads(_num_threads)


def max_threads() -> int:
    """The CPUs this process may run on (its affinity mask): the most threads any backend
    uses."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cpu_info(model: Any = None, input_shape: Any = (3, 224, 224), *, batch: int = 1,
             dtype: Any = "float32") -> Dict[str, Any]:
    """The CPU's features and the kernels the C backend picked for it; with a model, the
    kernel each of its layers takes.

    Parameters
    ----------
    model : fastconv.nn.Module or str, optional
        A network (or the name of a zoo model, built uninitialised): adds ``layers``.
    input_shape : (C, H, W) or str such as "3x224x224", default (3, 224, 224)
        The model's input without the batch.
    batch : int, default 1
    dtype : {"float32", "float64"}, default "float32"

    Returns
    -------
    dict
        ``available`` (bool); with the C backend: ``features`` (ISA extensions found),
        ``gemm_kernel`` (the GEMM micro-kernel in use), ``gemm_kernels`` (those built),
        ``micro_tile`` (rows x columns per dtype), ``num_threads``, ...; without it,
        ``reason``. With ``model``: ``layers``, one dict per conv / pooling / linear layer
        (``layer``, ``type``, ``input``, ``output``, ``kernel``, ``fused``: what inference
        fusion adds).

    Examples
    --------
    >>> import fastconv
    >>> info = fastconv.cpu_info()
    >>> info["available"] in (True, False)
    True
    >>> "gemm_kernel" in info or "reason" in info
    True
    >>> rows = fastconv.cpu_info("resnet18", (3, 64, 64))["layers"]
    >>> rows[0]["layer"], rows[0]["fused"]
    ('conv1', 'batch norm + relu')
    """
    mod = _load("c")
    info = {"available": False, "reason": _reasons["c"]} if mod is None else mod.cpu_info()
    if model is not None:
        from .. import _shapes
        from ..analysis.kernels import kernel_plan

        op = "cpu_info"
        if isinstance(model, str):
            from ..models import get_model

            model = get_model(model, initialize=False)
        from ..nn import Module

        if not isinstance(model, Module):
            raise TypeError(f"{op}: model must be a fastconv.nn.Module or a model name, got "
                            f"{type(model).__name__}")
        n = _shapes.as_int(batch, "batch", minimum=1, op=op)
        if dtype not in ("float32", "float64", np.float32, np.float64):
            raise ValueError(f"{op}: dtype must be 'float32' or 'float64', got {dtype!r}")
        info["layers"] = kernel_plan(model, input_shape, np.dtype(dtype).name, n)
    return info


_env_threads: Optional[Tuple[str, int]] = None  # (FASTCONV_NUM_THREADS, what it gave)
_ENV_THREADS = "FASTCONV_NUM_THREADS"
_ENV_THREADS_KEY = os.environ.encodekey(_ENV_THREADS)  # type: ignore[attr-defined]


def _env_threads_value() -> Optional[str]:
    """FASTCONV_NUM_THREADS (None: unset), read on every call of :func:`get_num_threads`,
    which every C conv call makes. os.environ.get of an unset name costs about 0.7 us (the
    mapping raises KeyError inside and catches it), a tenth of a small call: CPython's
    os.environ keeps its items in ``_data`` (encoded keys and values), which a dict lookup
    reads in a few tens of ns; any other os.environ falls back to ``get``."""
    data = getattr(os.environ, "_data", None)
    if type(data) is not dict:
        return os.environ.get(_ENV_THREADS)
    v = data.get(_ENV_THREADS_KEY)
    return v if v is None else os.environ.decodevalue(v)  # type: ignore[attr-defined]


def set_buffer_pool_limit(nbytes: Optional[int]) -> None:
    """Bound the memory of the pool of large output buffers (None: the default, 512 MiB;
    0: off, and the buffers it holds are let go).

    New outputs of 4 MiB and more (conv, pooling, the ndimage / signal filters) reuse the
    buffer of an earlier output of the same size once no array refers to it any more, so
    that a loop over large images, or a network's forward, does not fault fresh memory in
    on every call (a 3x3 filter of a 4096 x 4096 float32 image: 14.6 ms into a new output,
    7.0 ms into an existing one; ResNet-50 at batch 8: 600 -> 334 ms); a result you still
    hold, or any view of it, is never reused
    (``fastconv/backends/_bigbuf.py``). ``FASTCONV_BUFFER_POOL=0`` starts with it off.

    Parameters
    ----------
    nbytes : int >= 0 or None
        The most bytes the pool keeps (its buffers in use included).

    Returns
    -------
    None

    Raises ``TypeError`` when ``nbytes`` is not an integer or None, ``ValueError`` when it is
    negative.

    Examples
    --------
    >>> import fastconv
    >>> fastconv.set_buffer_pool_limit(0)     # off: every large output gets fresh memory
    >>> fastconv.buffer_pool_info()["entries"]
    0
    >>> fastconv.set_buffer_pool_limit(None)  # back to the default, 512 MiB
    """
    from .._shapes import as_int

    _bigbuf.set_limit(_bigbuf.DEFAULT_LIMIT if nbytes is None
                      else as_int(nbytes, "nbytes", minimum=0, op="set_buffer_pool_limit"))


def buffer_pool_info() -> Dict[str, int]:
    """The pool of large output buffers (see :func:`set_buffer_pool_limit`).

    Returns
    -------
    dict of str to int
        ``entries`` and ``bytes`` held (buffers in use included), ``hits`` and ``misses``
        (outputs of 4 MiB and more served from the pool or freshly allocated, since the
        process started) and ``limit``.

    Examples
    --------
    >>> import fastconv
    >>> sorted(fastconv.buffer_pool_info())
    ['bytes', 'entries', 'hits', 'limit', 'misses']
    """
    return _bigbuf.info()


def get_num_threads() -> int:
    """The number of threads the backends use.

    That is the value given to :func:`set_num_threads`; else the environment variable
    ``FASTCONV_NUM_THREADS`` (a positive integer, capped at :func:`max_threads`; any other value
    is ignored with a warning); else every CPU this process may run on.

    Returns
    -------
    int
        At least 1.

    Examples
    --------
    >>> import fastconv
    >>> fastconv.get_num_threads() >= 1
    True
    """
    global _env_threads
    if _num_threads is not None:
        return _num_threads
    cap = max_threads()
    env = _env_threads_value()
    if env is None or env.strip() == "":
        return cap
    if _env_threads is not None and _env_threads[0] == env:
        return _env_threads[1]
    t = env.strip()
    if t.isascii() and t.isdigit() and int(t) > 0:
        n = int(t)
        if n > cap:
            warnings.warn(f"FASTCONV_NUM_THREADS={env!r} is more than the {cap} CPU(s) this "
                          f"process may run on; using {cap}", stacklevel=2)
            n = cap
    else:
        warnings.warn(f"FASTCONV_NUM_THREADS={env!r} is not a positive integer; ignored "
                      f"(using all {cap} CPU(s))", stacklevel=2)
        n = cap
    _env_threads = (env, n)
    return n


# --------------------------------------------------------------------------- arrays


def is_device_array(a: Any) -> bool:
    """A CUDA device array: one with ``__cuda_array_interface__`` (numba, CuPy, torch.cuda),
    or a numba device array of the CUDA simulator (marked ``__cuda_ndarray__``)."""
    if isinstance(a, np.ndarray):
        return False
    return hasattr(a, "__cuda_array_interface__") or bool(getattr(a, "__cuda_ndarray__", False))


def array_spec(a: Any, name: str, op: str = "") -> Tuple[Tuple[int, ...], np.dtype, Any]:
    """(shape, dtype, array) of an input named ``name``; host inputs become NumPy arrays
    (TypeError naming ``op``, the public function, and ``name`` if they cannot), device
    arrays are not copied."""
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
        raise TypeError(
            f"{_at(op)}{name} must be an array, got {type(a).__name__}: {exc}"
        ) from None
    return arr.shape, arr.dtype, arr


def resolve_dtypes(dtypes: Dict[str, np.dtype], op: str = "") -> Tuple[np.dtype, np.dtype]:
    """(compute dtype, output dtype) for inputs of the given dtypes (see module docstring);
    a TypeError names ``op`` (the public function) and the input."""
    for name, dt in dtypes.items():
        if dt.kind not in "biuf":
            raise TypeError(
                f"{_at(op)}{name} has dtype {dt}; fastconv computes on real numbers "
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


#: The kernels whose argument after y is idx (None: no indices wanted).
KERNELS_WITH_INDICES = frozenset(("max_pool2d", "adaptive_max_pool2d"))


def outputs(op: str, y: Any, idx: Any) -> Tuple[Any, ...]:
    """Kernel ``op``'s arguments after its inputs and before the rest: y, and idx where it
    takes one (KERNELS_WITH_INDICES)."""
    return (y, idx) if op in KERNELS_WITH_INDICES else (y,)


def bound_kernel(module: Any, op: str, arrays: Tuple[Any, ...], y: Any, idx: Any,
                 args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Callable[..., None]:
    """Kernel ``op`` of the backend ``module`` as run(*arrays, y, idx) on arrays of these
    shapes and dtype, with the other arguments ``args`` and ``kwargs``: the backend's bound
    form (its ``bind``, fastconv/backends/__init__.py) where it has one, else the kernel
    called with them (``idx`` passed to the kernels that take it). What a plan runs."""
    bind = getattr(module, "bind", None)
    run = None if bind is None else bind(op, arrays, y, idx, args, kwargs)
    if run is not None:
        return run
    fn = getattr(module, op)
    return lambda *a: fn(*a[:-2], *outputs(op, a[-2], a[-1]), *args, **kwargs)


class Call:
    """One public call: the backend chosen (``name``, ``backend_module``), the dtypes and the
    prepared arrays. Arrays given as None are absent (only those whose name ends in "bias" may
    be). ``caller`` is the public function's name, the start of every message it raises."""

    def __init__(self, op: Any, backend: Any, arrays: Dict[str, Any], caller: str):
        for k, v in arrays.items():  # only biases are optional
            if v is None and not k.endswith("bias"):
                raise TypeError(f"{caller}: {k} must be an array, got None")
        fast = host_dtype(arrays.values())
        if fast is not None:  # the common case: NumPy float32 / float64 arrays of one dtype
            self.raw = {k: v for k, v in arrays.items() if v is not None}
            self.shapes = {k: v.shape for k, v in self.raw.items()}
            self.compute = self.out_dtype = fast
            self.device = False
        else:
            specs = {k: array_spec(v, k, caller) for k, v in arrays.items() if v is not None}
            self.shapes = {k: s[0] for k, s in specs.items()}
            self.raw = {k: s[2] for k, s in specs.items()}
            dtypes = {k: s[1] for k, s in specs.items()}
            self.compute, self.out_dtype = resolve_dtypes(dtypes, caller)
            self.device = any(is_device_array(a) for a in self.raw.values())
        key = (op, backend, self.device)
        name = _picked.get(key) if type(backend) is str else None
        module = _modules.get(name) if name is not None else None
        if module is None:  # first call of its kind, or the backend was unloaded since
            name = pick(op, backend, self.device, caller)
            _picked[key] = name
            module = _modules[name]
        self.name = name
        self.backend_module = module
        self.op = op
        self._hooks = _hooks(module)

    def has(self, op: str) -> bool:
        return hasattr(self.backend_module, op)

    def kernel(self, op: str):
        return getattr(self.backend_module, op)

    def check_variant(self, variant: Any, op: str) -> None:
        """See :func:`check_variant` (``op``: the public function); call it before running a
        kernel with ``variant=``."""
        check_variant(self.backend_module, variant, op)

    def check_variant_geometry(self, variant: Any, g: Any, op: str) -> None:
        """See :func:`check_variant_geometry`; call it once the geometry ``g`` is known."""
        check_variant_geometry(self.backend_module, variant, g, op)

    def prepare(self, name: str, shape: Optional[Tuple[int, ...]] = None):
        """The input ``name`` as the kernels take it, reshaped to ``shape`` if given."""
        return self.prepare_array(self.raw.get(name), shape)

    def prepare_array(self, a: Any, shape: Optional[Tuple[int, ...]] = None):
        """Any array as the kernels take it (None stays None): the backend's ``prepare``
        hook, else a C-contiguous NumPy array of the compute dtype. The one way an array
        reaches a kernel: the call's inputs and the arrays a public function builds on the
        host (a padded input, a rearranged gradient) alike."""
        if a is None:
            return None
        prep = self._hooks[0]
        if prep is not None:
            a = prep(a, self.compute)
        elif not kernel_ready(a, self.compute):
            a = np.ascontiguousarray(a, dtype=self.compute)
            if not a.flags.aligned:  # e.g. np.frombuffer at an odd offset: C may not read it
                a = a.copy()
        return a if shape is None else a.reshape(shape)

    def empty(self, shape: Tuple[int, ...], dtype: Any = None):
        dtype = self.compute if dtype is None else np.dtype(dtype)
        alloc = self._hooks[1]
        if alloc is not None:
            return alloc(shape, dtype)
        return host_empty(shape, dtype)

    def finish(self, y: Any, shape: Tuple[int, ...], dtype: Any = "out"):
        """Reshape to the user's shape, cast to the output dtype, hand back."""
        y = y.reshape(shape)
        fin = self._hooks[2]
        dt = self.out_dtype if dtype == "out" else np.dtype(dtype)
        if fin is not None:
            return fin(y, dt, self.device)
        return y if y.dtype == dt else y.astype(dt)


def kernel_ready(a: Any, dtype: np.dtype) -> bool:
    """Whether ``a`` is a NumPy array a host kernel takes as it is: exactly ndarray, of
    ``dtype``, C-contiguous and aligned."""
    return (type(a) is np.ndarray and a.dtype == dtype and a.flags.c_contiguous
            and a.flags.aligned)


def host_empty(shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A host output of a host engine (``dtype`` a np.dtype): 4 MiB and more on a reused
    buffer nobody holds (_bigbuf); filled with NaN under FASTCONV_POISON."""
    y = _bigbuf.empty(shape, dtype)
    if POISON:
        y.fill(np.nan if dtype.kind == "f" else -7)
    return y


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
#: (op, backend, device) -> the backend pick() chose; backends load once, so the choice stays.
_picked: Dict[Tuple[Any, str, bool], str] = {}
_hook_cache: Dict[str, Tuple[Any, Any, Any]] = {}


def host_dtype(arrays: Iterable[Any]) -> Optional[np.dtype]:
    """The dtype shared by ``arrays`` when every one given (None: absent) is a NumPy float32
    or float64 array of that one dtype (no conversion needed), else None."""
    dt = None
    for v in arrays:
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


def _hooks(module: Any) -> Tuple[Any, Any, Any]:
    """A backend's optional (prepare, empty, finish) hooks; None where the default applies."""
    name = module.__name__
    hooks = _hook_cache.get(name)
    if hooks is None:
        hooks = (
            getattr(module, "prepare", None),
            getattr(module, "empty", None),
            getattr(module, "finish", None),
        )
        _hook_cache[name] = hooks
    return hooks


def _at(op: str) -> str:
    """The start of a message raised on behalf of the public function ``op`` ("op: ")."""
    return f"{op}: " if op else ""


def pick(op: Any, backend: Any, device: bool = False, caller: str = "") -> str:
    """Resolve ``backend`` ("auto" or a backend name) to an available backend having ``op``
    (a kernel name, or a tuple of kernel names that must all be there); messages start with
    ``caller``, the public function's name."""
    kernels = (op,) if isinstance(op, str) else tuple(op)
    what = ", ".join(kernels)
    at = _at(caller)
    if not isinstance(backend, str):
        raise TypeError(
            f"{at}backend must be a string, one of {backend_names()}, got {backend!r}"
        )
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"{at}backend must be one of {backend_names()}, got {backend!r}")
    if backend == "auto":
        for name in ("cuda",) if device else AUTO_HOST:
            mod = _load(name)
            if mod is not None and all(hasattr(mod, k) for k in kernels):
                return name
        if device:
            raise ValueError(
                f"{at}backend='auto': the input is a CUDA device array but the 'cuda' backend "
                f"is {_reasons.get('cuda')}"
            )
        raise ValueError(f"{at}backend='auto': no available backend implements {what}")
    mod = _load(backend)
    if mod is None:
        raise ValueError(f"{at}backend {backend!r} is {_reasons[backend]}")
    missing = [k for k in kernels if not hasattr(mod, k)]
    if missing:
        raise ValueError(f"{at}backend {backend!r} does not implement {', '.join(missing)}")
    if device and backend != "cuda":
        raise ValueError(
            f"{at}backend: CUDA device arrays need backend='cuda' or 'auto', got "
            f"backend={backend!r}; copy the array to the host first to use a CPU backend"
        )
    return backend


def begin(op: Any, backend: Any, *, caller: str, **arrays: Any) -> Call:
    """Start a public call (see :class:`Call`); ``op`` is the kernel the call needs, or a
    tuple of kernels that the backend must all implement; ``caller`` is the public function
    (the start of its error messages)."""
    return Call(op, backend, arrays, caller)


# --------------------------------------------------------------------------- kernel options
#
# Kernels take their options unchecked (the contract): a backend declares the values it
# accepts as data, and the public path checks a value against them once, here.


def _backend_name(module: Any) -> str:
    for name, path in BACKENDS.items():
        if path == module.__name__:
            return name
    return module.__name__


def check_variant(backend_module: Any, variant: Any, op: str = "") -> None:
    """Raise ValueError unless ``variant`` is None (the best) or one of the conv2d variants
    the backend declares in its ``CONV2D_VARIANTS``. A backend that declares none has a
    single conv2d and ignores ``variant``."""
    valid = getattr(backend_module, "CONV2D_VARIANTS", None)
    if variant is None or valid is None or (isinstance(variant, str) and variant in valid):
        return
    raise ValueError(
        f"{_at(op)}variant must be one of {valid} or None (the best) for backend "
        f"{_backend_name(backend_module)!r}, got {variant!r}"
    )


def variant_fits(backend_module: Any, variant: Any, KH: int, KW: int, sh: int, sw: int,
                 dh: int, dw: int) -> bool:
    """Whether ``variant`` runs a conv2d with this kernel size, stride and dilation: a backend
    lists the variants that run only one geometry in ``CONV2D_VARIANT_GEOMETRY`` (variant ->
    (KH, KW, sh, sw, dh, dw), None where any value runs), e.g. the C backend's Winograd
    variants (3x3, stride 1, any dilation); every other variant runs any geometry."""
    need = getattr(backend_module, "CONV2D_VARIANT_GEOMETRY", {}).get(variant)
    return need is None or all(
        n is None or n == v for n, v in zip(need, (KH, KW, sh, sw, dh, dw)))


def check_variant_geometry(backend_module: Any, variant: Any, g: Any, op: str = "") -> None:
    """Raise ValueError when ``variant`` does not run the conv2d geometry ``g``
    (:class:`fastconv._shapes.ConvGeometry`; see :func:`variant_fits`)."""
    if variant is None or variant_fits(backend_module, variant, g.KH, g.KW, g.sh, g.sw, g.dh,
                                       g.dw):
        return
    KH, KW, sh, sw, dh, dw = backend_module.CONV2D_VARIANT_GEOMETRY[variant]
    runs = f"{KH}x{KW} kernels with stride ({sh}, {sw})"
    if dh is not None or dw is not None:
        runs += f" and dilation ({dh}, {dw})"
    raise ValueError(
        f"{_at(op)}variant {variant!r} runs only {runs}, got a {g.KH}x{g.KW} kernel, stride "
        f"({g.sh}, {g.sw}) and dilation ({g.dh}, {g.dw}); use variant=None or another variant"
    )


def check_isa(backend_module: Any, isa: Any) -> None:
    """Raise ValueError unless ``isa`` is None (the best the CPU runs) or one of the GEMM
    micro-kernels the backend declares in its ``GEMM_KERNELS`` (the C backend's ``isa=``)."""
    valid = tuple(getattr(backend_module, "GEMM_KERNELS", ()))
    if isa is not None and isa not in valid:
        raise ValueError(f"isa must be one of {valid} or None, got {isa!r}")


def takes_depthwise(module: Any, C: int, groups: int, OC: int, KH: int, KW: int, sh: int,
                    sw: int) -> bool:
    """Whether a conv on backend ``module`` runs its depthwise kernel: a depthwise grouping
    (one input channel per group) on a backend that has one, where the backend does not say
    its conv2d is faster for this window, stride and channel multiplier
    (``depthwise_conv2d_pays``, the C engine)."""
    from .._shapes import is_depthwise

    if not (is_depthwise(C, groups) and hasattr(module, "depthwise_conv2d")):
        return False
    pays = getattr(module, "depthwise_conv2d_pays", None)
    return pays is None or pays(C, OC, KH, KW, sh, sw)
