"""The one hook that lets every public op take dask arrays, without importing dask.

:func:`accept_dask_arrays` wraps the public functions of an ops module once, at the end of
its import. The wrapper costs one dictionary lookup per call while dask has not been
imported (no argument can then be a dask array); once it has, a call with a
``dask.array.Array`` among its arguments goes to the function of the same name in
:mod:`fastconv.dask.ops`, which validates now and returns a lazy dask array. Everything
else reaches the NumPy function unchanged.
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Any, Callable, Dict, Iterable, Optional

_WRAPPED: Dict[int, Callable[..., Any]] = {}  # id(function) -> its wrapper (aliases share one)


def _has_dask_array(args: tuple, kwargs: dict) -> bool:
    """Whether an argument is a dask array (plain loops: this runs on every call)."""
    mod = sys.modules.get("dask.array")
    if mod is None:  # dask not imported: no argument can be a dask array
        return False
    cls = mod.Array
    for a in args:
        if isinstance(a, cls):
            return True
    for a in kwargs.values():
        if isinstance(a, cls):
            return True
    return False


def dask_aware(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` that hands calls with a dask array argument to ``fastconv.dask.ops``."""
    hit = _WRAPPED.get(id(fn))
    if hit is not None:
        return hit
    name = fn.__name__
    modules = sys.modules

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "dask.array" in modules and _has_dask_array(args, kwargs):
            from ..dask import ops

            impl = getattr(ops, name, None)
            if impl is None:
                raise TypeError(f"{name} does not take dask arrays (fastconv.dask has no {name})")
            return impl(*args, **kwargs)
        return fn(*args, **kwargs)

    _WRAPPED[id(fn)] = wrapper
    _WRAPPED[id(wrapper)] = wrapper
    return wrapper


def accept_dask_arrays(namespace: Dict[str, Any], names: Optional[Iterable[str]] = None) -> None:
    """Rebind the public functions of a module (``globals()``) to :func:`dask_aware` ones.

    ``names`` defaults to the module's ``__all__``, else every public function it defines.
    """
    if names is None:
        names = namespace.get("__all__")
    if names is None:
        here = namespace["__name__"]
        names = [
            n for n, f in namespace.items()
            if not n.startswith("_") and inspect.isfunction(f) and f.__module__ == here
        ]
    for n in list(names):
        if inspect.isfunction(namespace.get(n)):
            namespace[n] = dask_aware(namespace[n])
