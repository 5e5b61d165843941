"""Eight Python threads calling every op on every CPU engine at once, while another thread
keeps changing ``set_num_threads``, get exactly the results of serial calls.

Every CPU engine is deterministic across thread counts: the threads split outputs (planes,
pixel blocks, channel blocks), never the sum of one output, so the order of every sum is
fixed. The results must therefore be bit-identical, whatever the thread count and whatever
the other threads do meanwhile (shared caches: the memoised geometry, the C engine's shape
structs, numba's per-thread scratch buffers and thread counts).
"""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
from _cases import available_engines

import fastconv as fc
import fastconv.ops.grad as G

CPU = [e for e in available_engines() if e != "cuda"]
WORKERS = 8
ROUNDS = 10

rng = np.random.default_rng(0)
# large enough for the C engine to use its threads (over 2**20 multiply-adds a call)
X = rng.standard_normal((2, 16, 20, 20)).astype(np.float32)
W = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
B = rng.standard_normal(32).astype(np.float32)
WT = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
WD = rng.standard_normal((32, 1, 3, 3)).astype(np.float32)
WP = rng.standard_normal((24, 32, 1, 1)).astype(np.float32)
X1 = rng.standard_normal((2, 16, 300)).astype(np.float64)
W1 = rng.standard_normal((32, 16, 5)).astype(np.float64)
GY = rng.standard_normal((2, 32, 20, 20)).astype(np.float32)
GYP = rng.standard_normal((2, 16, 10, 10)).astype(np.float32)

#: name -> call(engine); every public op, several conv2d paths and some gradients
OPS = {
    "conv2d": lambda e: fc.conv2d(X, W, B, padding=1, backend=e),
    "conv2d_strided": lambda e: fc.conv2d(X, W, None, 2, 2, 2, backend=e),
    "conv2d_grouped": lambda e: fc.conv2d(X, W[:, :4], B, padding="same", groups=4, backend=e),
    "conv2d_1x1": lambda e: fc.conv2d(X, W[:, :, :1, :1], backend=e),
    "conv2d_reflect": lambda e: fc.conv2d(X, W, padding=1, padding_mode="reflect", backend=e),
    "conv1d": lambda e: fc.conv1d(X1, W1, None, 1, 2, backend=e),
    "conv_transpose2d": lambda e: fc.conv_transpose2d(X, WT, None, 2, 1, 1, backend=e),
    "conv_transpose1d": lambda e: fc.conv_transpose1d(X1, W1.transpose(1, 0, 2), backend=e),
    "depthwise_conv2d": lambda e: fc.depthwise_conv2d(X, WD, None, 1, 1, backend=e),
    "depthwise_conv2d_strided": lambda e: fc.depthwise_conv2d(X, WD, None, 2, 1, backend=e),
    "separable_conv2d": lambda e: fc.separable_conv2d(X, WD, WP, None, None, 1, 1, backend=e),
    "max_pool2d": lambda e: fc.max_pool2d(X, 3, 2, 1, return_indices=True, backend=e),
    "max_pool1d": lambda e: fc.max_pool1d(X1, 4, 3, 2, backend=e),
    "avg_pool2d": lambda e: fc.avg_pool2d(X, 3, 1, 1, count_include_pad=False, backend=e),
    "avg_pool1d": lambda e: fc.avg_pool1d(X1, 5, 2, 2, backend=e),
    "adaptive_avg_pool2d": lambda e: fc.adaptive_avg_pool2d(X, (7, 5), backend=e),
    "global_avg_pool2d": lambda e: fc.adaptive_avg_pool2d(X, 1, backend=e),
    "adaptive_max_pool2d": lambda e: fc.adaptive_max_pool2d(X, 6, True, backend=e),
    "adaptive_avg_pool1d": lambda e: fc.adaptive_avg_pool1d(X1, 17, backend=e),
    "adaptive_max_pool1d": lambda e: fc.adaptive_max_pool1d(X1, 17, backend=e),
    "grad_conv2d_input": lambda e: G.conv2d_input(X.shape, W, GY, padding=1, backend=e),
    "grad_conv2d_weight": lambda e: G.conv2d_weight(X, W.shape, GY, padding=1, backend=e),
    "grad_max_pool2d_input": lambda e: G.max_pool2d_input(X, GYP, 3, 2, 1, backend=e),
    "grad_avg_pool2d_input": lambda e: G.avg_pool2d_input(X.shape, GYP, 3, 2, 1, backend=e),
}


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(_same, a, b))
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _serial(engines):
    return {(op, e): fn(e) for e in engines for op, fn in OPS.items()}


@pytest.mark.parametrize("engine", CPU)
def test_thread_count_does_not_change_results(engine, restore_threads):
    """Serial calls: 1 thread and 2 threads give the same bits (what the concurrent test
    relies on)."""
    fc.set_num_threads(1)
    one = _serial([engine])
    fc.set_num_threads(2)
    two = _serial([engine])
    differ = [op for op, _ in one if not _same(one[op, engine], two[op, engine])]
    assert not differ, f"{engine}: results depend on the thread count: {differ}"


def test_threads_and_thread_settings_at_once(restore_threads):
    fc.set_num_threads(2)
    want = _serial(CPU)
    keys = list(want)
    errors = []
    done = threading.Event()

    def worker(seed):
        order = random.Random(seed)
        try:
            for _ in range(ROUNDS):
                order.shuffle(keys_local := list(keys))
                for op, e in keys_local:
                    got = OPS[op](e)
                    if not _same(got, want[op, e]):
                        errors.append(f"{op} on {e}: differs from the serial result")
        except Exception as exc:  # any exception fails the test (reported below)
            errors.append(f"{type(exc).__name__}: {exc}")

    def toggler():
        n = 0
        while not done.is_set():
            fc.set_num_threads(1 + n % 2)
            n += 1
            time.sleep(0.002)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    tog = threading.Thread(target=toggler)
    tog.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=600)
    done.set()
    tog.join()
    assert not any(t.is_alive() for t in workers), "a worker hung"
    assert not errors, errors[:10]
