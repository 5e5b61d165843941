"""Reuse of large output buffers that nobody holds any more.

The C library serves allocations of 32 MiB and more with fresh memory from the OS every time
(glibc's mmap threshold never rises above that) and returns it on free: each new output of
that size is faulted in and zeroed by the kernel page by page while fastconv's kernel first
writes it. Measured on the Intel Xeon of bench/RESULTS.md: a 3x3 filter of a 4096 x 4096
float32 image took 7.0 ms into an existing output and 14.6 ms into a new one. Loops over
large images or batches allocate the same output size again and again. Smaller outputs fare
little better: glibc gives the top of its heap back to the OS once enough of it is free, and
NumPy asks for huge pages from 4 MiB on, which the kernel then zeroes 2 MiB at a time on
the first write: a ResNet-50 forward at batch 8 spent 22% of its time in the kernel's
clear_page (perf), and took 600-650 ms with the pool from 32 MiB, 334 ms from 4 MiB and
315 ms from 1 MiB (2 threads; torch 390-410), in a phase of the guest where faults were
dear; in a quieter one 296-321 ms either way. Below NumPy's 4 MiB the pool measured slower
(a 3.2 MB conv output, 1 thread: 0.61-0.66 ms into np.empty, 0.71-0.76 into a pooled
buffer; cause not found), so it starts there.

So outputs of at least :data:`MIN_BYTES` come from a pool: a buffer is handed out again
only when no array refers to it any more (CPython's reference count: the output, every view
of it and every buffer export hold a reference), so a result the caller still holds is never
overwritten. The most recently handed-out free buffer of the exact size goes first. The pool
keeps at most ``limit`` bytes (default 512 MiB: :func:`set_limit`, or
``fastconv.set_large_buffer_pool_limit``; 0 turns it off and lets its buffers go); beyond it
the least recently used buffers leave the pool (any still in use live on with their arrays).
``FASTCONV_BUFFER_POOL=0`` in the environment starts with it off. Thread-safe.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import numpy as np

#: Outputs smaller than this are plain np.empty (below NumPy's huge-page threshold the C
#: library recycles them well enough).
MIN_BYTES = 4 * 2**20
DEFAULT_LIMIT = 512 * 2**20

_lock = threading.Lock()
#: id -> buffer (1-D uint8), least recently handed out first
_buffers: OrderedDict[int, np.ndarray] = OrderedDict()
_held = 0
_limit = 0 if os.environ.get("FASTCONV_BUFFER_POOL", "").strip() == "0" else DEFAULT_LIMIT
_stats = {"hits": 0, "misses": 0}

#: sys.getrefcount(_buffers[key]) of a buffer only the pool holds: the dict's reference and
#: getrefcount's argument
_FREE_REFS = 2


def set_limit(nbytes: int) -> None:
    """The most bytes the pool keeps (0: off; the buffers it holds are let go)."""
    global _limit
    with _lock:
        _limit = int(nbytes)
        _trim()


def info() -> Dict[str, int]:
    """``entries``, ``bytes`` held (buffers in use included), ``hits``, ``misses``, ``limit``."""
    with _lock:
        return {"entries": len(_buffers), "bytes": _held, "hits": _stats["hits"],
                "misses": _stats["misses"], "limit": _limit}


def _trim() -> None:
    global _held
    while _held > _limit and _buffers:
        _, buf = _buffers.popitem(last=False)
        _held -= buf.nbytes


def _take(nbytes: int) -> Optional[np.ndarray]:
    # most recently used first; no local name is bound to a buffer while its count is read
    for key in [k for k, b in reversed(_buffers.items()) if b.nbytes == nbytes]:
        if sys.getrefcount(_buffers[key]) == _FREE_REFS:
            _buffers.move_to_end(key)
            return _buffers[key]
    return None


def empty(shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array, on a pooled buffer when it is large."""
    global _held
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize  # np.prod took 2.5 us of every op's call
    if nbytes < MIN_BYTES or _limit <= 0 or dtype.hasobject:
        return np.empty(shape, dtype)
    with _lock:
        buf = _take(nbytes)
        if buf is not None:
            _stats["hits"] += 1
            return buf.view(dtype).reshape(shape)
        _stats["misses"] += 1
        buf = np.empty(nbytes, np.uint8)
        out = buf.view(dtype).reshape(shape)  # holds buf before _trim may let it go
        if nbytes <= _limit:
            _buffers[id(buf)] = buf
            _held += nbytes
            _trim()
        return out
