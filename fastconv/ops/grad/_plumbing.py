"""What every gradient function of ``fastconv.grad`` shares: argument checks and array moves.

- check_grad_output    grad_output must have the forward output's shape
- check_memory         refuse outputs and workspaces too large for memory, in elements
- host / rearranged    a kernel array on the host; a transpose / reshape of it, prepared again
- zeros                a zero-filled kernel array

Run the gradients' tests with ``pytest tests/test_grad.py``.
"""

from typing import Any, Callable, Tuple

import numpy as np

from ... import _shapes
from ...backends._registry import Call, is_device_array


def check_grad_output(op: str, got: Tuple[int, ...], want: Tuple[int, ...]) -> None:
    if tuple(got) != tuple(want):
        raise ValueError(
            f"{op}: grad_output must have the forward output's shape {tuple(want)}, "
            f"got {tuple(got)}"
        )


def check_memory(call: Call, op: str, *parts: Tuple[str, int]) -> None:
    """:func:`fastconv._shapes.check_memory` with each part's size in elements of the call's
    compute dtype: (the argument that sets the size, elements)."""
    isz = call.compute.itemsize
    _shapes.check_memory(op, [(name, n * isz) for name, n in parts])


def host(a: Any) -> np.ndarray:
    """A kernel array as a NumPy array (a copy for device arrays)."""
    return a.copy_to_host() if is_device_array(a) else np.asarray(a)


def rearranged(call: Call, a: Any, fn: Callable[[np.ndarray], np.ndarray]):
    """``fn`` (a transpose / reshape) applied to a kernel array, made contiguous again.

    NumPy backends get a contiguous copy; device arrays make the trip through the host."""
    return call.prepare_array(fn(host(a)))


def zeros(call: Call, shape: Tuple[int, ...]):
    return call.prepare_array(np.zeros(shape, call.compute))
