"""The worker pool of the filtering engines.

The engines cut an output into independent tiles; ``run(work, n, threads)`` calls
``work(i)`` for i < n on up to ``threads`` Python threads (the caller's thread is one of
them). It pays off because every step of a tile releases the GIL: NumPy copies, the C
kernels (cffi releases it during the call) and the FFTs (numpy.fft and scipy.fft both
release it). Tiles are handed out one at a time from a shared counter, so a slow tile
does not hold up the others. The pool is made once and kept.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

_pool: Optional[ThreadPoolExecutor] = None
_pool_size = 0
_lock = threading.Lock()


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastconv-filter")
            _pool_size = workers
        return _pool


def run(work: Callable[[int], None], n: int, threads: int) -> None:
    """Call work(i) for every i < n, on min(threads, n) threads; re-raise the first error."""
    threads = max(1, min(int(threads), n))
    if threads == 1:
        for i in range(n):
            work(i)
        return
    counter = iter(range(n))
    lock = threading.Lock()
    failed: list = []

    def loop() -> None:
        while not failed:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                work(i)
            except BaseException as exc:  # stop the others, re-raise in the caller
                failed.append(exc)
                return

    futures = [_executor(threads - 1).submit(loop) for _ in range(threads - 1)]
    loop()
    for f in futures:
        f.result()
    if failed:
        raise failed[0]
