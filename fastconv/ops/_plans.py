"""Plans: a public call repeated with arrays of the same shapes and dtype and the same other
arguments (a layer run on batch after batch, a filter over frame after frame) runs the kernel
its first call chose, without the checks, the geometry and the backend's pick again, through
the backend's bound form of that kernel (``bind``: the C engine's passes the pointers only).
A 1x1x7x7 call, one thread, AMD EPYC (Zen 4): max_pool2d 3.4 us a call against 12.2 for its
first (no plan yet), conv2d 3x3 4.3 against 19 (torch 2.13: 2.4 and 4.4;
``python bench/call_overhead.py --threads 1 --first``).

A call has a plan only when nothing in it needs converting: every array a float32 / float64
NumPy array of one dtype, C-contiguous and aligned; a backend without hooks (the C engine and
the reference; numba converts its inputs); every other argument with an exact key
(``_shapes._key``: ``1``, ``True``, ``1.0`` and ``np.int64(1)`` never share a plan). Only a
call that succeeded leaves a plan, so an invalid call raises every time. Before a plan runs,
its backend must still be the loaded module and its output still within the memory bound
(``_shapes.MEMORY_BYTES``); each run allocates a new output.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .. import _shapes
from ..backends import _bigbuf, _registry
from ..backends._registry import Call, host_empty

_I64 = np.dtype(np.int64)
#: Most plans kept (the cache starts over when full).
PLAN_CACHE_SIZE = 512


class Plan(NamedTuple):
    name: str                      # the backend that ran the first call
    module: Any                    # and its module then
    kernel: Optional[str]          # the kernel it ran (None: an empty output, nothing ran)
    args: Tuple[Any, ...]          # its arguments after the arrays
    kwargs: Dict[str, Any]         # and its keywords
    run: Optional[Callable[..., None]]  # run(*arrays, y, idx), bound on the first rerun
    shapes: Optional[Tuple[Any, ...]]  # what each array is reshaped to (None: as they are)
    y_shape: Tuple[int, ...]
    out_shape: Optional[Tuple[int, ...]]  # what y is reshaped to (None: as it is)
    dtype: np.dtype
    idx: bool                      # also return int64 indices of y's shape
    nbytes: int                    # what a run allocates
    small: bool                    # y and idx below the large-buffer pool (np.empty)


_plans: Dict[Any, Plan] = {}


def key(op: str, backend: Any, arrays: Sequence[Any], args: Tuple[Any, ...]) -> Any:
    """The plan key of a call of ``op`` on ``arrays`` (None where absent, such as a bias)
    with the other arguments ``args``, or None when such a call has no plan."""
    if type(backend) is not str:
        return None
    dt = _registry.host_dtype(arrays)
    if dt is None:
        return None
    shapes: list = []
    for a in arrays:
        if a is None:
            shapes.append(None)
            continue
        flags = a.flags
        if not (flags.c_contiguous and flags.aligned):
            return None
        shapes.append(a.shape)
    try:
        return (op, backend, dt, tuple(shapes), tuple(map(_shapes._key, args)))
    except _shapes._NoKey:
        return None


def run(k: Any, arrays: Sequence[Any]) -> Any:
    """The result of the plan of key ``k`` on ``arrays`` (those the key was made from), or
    None when there is no plan to run (none yet, its backend reloaded, the memory bound
    lowered below its output)."""
    p = _plans.get(k)
    if (p is None or _registry._modules.get(p.name) is not p.module
            or p.nbytes > _shapes.MEMORY_BYTES):
        return None
    alloc = np.empty if p.small and not _registry.POISON else host_empty
    y = alloc(p.y_shape, p.dtype)
    idx = alloc(p.y_shape, _I64) if p.idx else None
    if p.kernel is not None:
        if p.shapes is not None:
            arrays = [a if s is None else a.reshape(s) for a, s in zip(arrays, p.shapes)]
        fn = p.run
        if fn is None:  # the first rerun binds the kernel (a call made once never does)
            fn = _registry.bound_kernel(p.module, p.kernel, tuple(arrays), y, idx, p.args,
                                        p.kwargs)
            _plans[k] = p._replace(run=fn)
        fn(*arrays, y, idx)
    if p.out_shape is not None:
        y = y.reshape(p.out_shape)
        idx = None if idx is None else idx.reshape(p.out_shape)
    return y if idx is None else (y, idx)


def lookup(op: str, backend: Any, arrays: Sequence[Any], args: Tuple[Any, ...]) -> Any:
    """``(key, result)`` of a call (see :func:`key`): the result of its plan, or None when
    it has none to run; then the key to :func:`keep` its plan under (None: it cannot have
    one)."""
    k = key(op, backend, arrays, args)
    return k, (None if k is None else run(k, arrays))


def keep(k: Any, call: Call, kernel: Optional[str], args: Tuple[Any, ...],
         prepared: Sequence[Any], y: np.ndarray, idx: Optional[np.ndarray],
         out_shape: Tuple[int, ...], kwargs: Optional[Dict[str, Any]] = None) -> None:
    """Remember how the call of key ``k`` (None: it has none) ran: kernel ``kernel`` (None:
    an empty output, nothing ran) on the arrays as the kernel took them (``prepared``, y,
    idx) with the other arguments ``args`` and ``kwargs``. The plan's first run binds the
    kernel to the shapes (``_registry.bound_kernel``)."""
    if k is None or call.name is None or call._hooks != (None, None, None):
        return
    if len(_plans) >= PLAN_CACHE_SIZE:
        _plans.clear()
    nbytes = y.size * (y.itemsize + (8 if idx is not None else 0))
    # k[3]: the shapes of the arrays the call was given (see key)
    shapes = tuple(None if a is None or a.shape == s else a.shape
                   for a, s in zip(prepared, k[3]))
    out = tuple(out_shape)
    _plans[k] = Plan(call.name, call.backend_module, kernel, tuple(args), dict(kwargs or {}),
                     None, None if shapes == (None,) * len(shapes) else shapes, y.shape,
                     None if out == y.shape else out, y.dtype, idx is not None, nbytes,
                     y.size * 8 < _bigbuf.MIN_BYTES)
