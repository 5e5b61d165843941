"""Memory over long runs and within one call.

- Resident memory stays flat over 10**4 calls of every op on every CPU engine (no leak in
  the output buffers, the C engine's workspaces, numba's scratch buffers or any cache).
- The caches are bounded: the memoised geometry (``fastconv._shapes``), the C engine's shape
  structs, the registry's choice of engine, however many distinct geometries are called.
- One conv call's extra memory stays within the C engine's documented workspace bound
  (64 MiB, ``fastconv.backends.c.set_workspace_limit``) on an input whose im2col matrix would
  take 10 GiB; the numba engine's default path (implicit GEMM, no im2col matrix) stays
  within it too. Peak resident memory is measured by resetting the kernel's high-water mark
  (``/proc/self/clear_refs``) or, where that is refused, by a sampling thread.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time

import numpy as np
import pytest
from _cases import available_engines

import fastconv as fc
import fastconv.ops.grad as G
from fastconv import _shapes
from fastconv.backends import _registry

CPU = [e for e in available_engines() if e != "cuda"]
MiB = 2**20
CALLS = 10_000
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self for resident memory"
)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


rng = np.random.default_rng(0)
X = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
W = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
B = rng.standard_normal(4).astype(np.float32)
WT = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
WD = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
WP = rng.standard_normal((3, 4, 1, 1)).astype(np.float32)
X1 = rng.standard_normal((1, 4, 9))
W1 = rng.standard_normal((3, 4, 3))
GY = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)

#: name -> call(engine): every public op and a gradient of each kind, on tiny shapes
OPS = {
    "conv2d": lambda e: fc.conv2d(X, W, B, padding=1, backend=e),
    "conv1d": lambda e: fc.conv1d(X1, W1, None, 2, 1, backend=e),
    "conv_transpose2d": lambda e: fc.conv_transpose2d(X, WT, None, 2, 1, backend=e),
    "conv_transpose1d": lambda e: fc.conv_transpose1d(X1, W1.transpose(1, 0, 2), backend=e),
    "depthwise_conv2d": lambda e: fc.depthwise_conv2d(X, WD, None, 1, 1, backend=e),
    "separable_conv2d": lambda e: fc.separable_conv2d(X, WD, WP, padding=1, backend=e),
    "max_pool2d": lambda e: fc.max_pool2d(X, 3, 2, 1, return_indices=True, backend=e),
    "max_pool1d": lambda e: fc.max_pool1d(X1, 3, backend=e),
    "avg_pool2d": lambda e: fc.avg_pool2d(X, 3, 2, 1, backend=e),
    "avg_pool1d": lambda e: fc.avg_pool1d(X1, 3, backend=e),
    "adaptive_avg_pool2d": lambda e: fc.adaptive_avg_pool2d(X, 4, backend=e),
    "adaptive_max_pool2d": lambda e: fc.adaptive_max_pool2d(X, 4, True, backend=e),
    "adaptive_avg_pool1d": lambda e: fc.adaptive_avg_pool1d(X1, 4, backend=e),
    "adaptive_max_pool1d": lambda e: fc.adaptive_max_pool1d(X1, 4, backend=e),
    "grad_conv2d_input": lambda e: G.conv2d_input(X.shape, W, GY, padding=1, backend=e),
    "grad_conv2d_weight": lambda e: G.conv2d_weight(X, W.shape, GY, padding=1, backend=e),
    "grad_max_pool2d_input": lambda e: G.max_pool2d_input(X, GY, 3, 1, 1, backend=e),
    "grad_avg_pool2d_input": lambda e: G.avg_pool2d_input(X.shape, GY, 3, 1, 1, backend=e),
}


@pytest.fixture
def one_thread():
    """One thread: waking a pool for each tiny call costs a scheduler tick on a busy machine
    (the numba engine's 2 * 10**5 calls took 14 minutes with 2 threads on a loaded CI
    machine); the buffers and caches under test are the same."""
    before = _registry._num_threads
    fc.set_num_threads(1)
    yield
    _registry._num_threads = before
    fc.set_num_threads(fc.get_num_threads())


@pytest.mark.slow
@pytest.mark.parametrize("engine", CPU)
def test_resident_memory_flat_over_many_calls(engine, one_thread):
    """10**4 calls of each op: resident memory after them is within 2 MiB of what it was
    after the first 10**3 (a leak of 200 bytes a call would show)."""
    grown = {}
    for name, call in OPS.items():
        for _ in range(CALLS // 10):  # warm: JIT, caches, allocator pools
            call(engine)
        gc.collect()
        before = rss()
        for _ in range(CALLS):
            call(engine)
        gc.collect()
        grown[name] = rss() - before
    leaking = {k: f"{v / MiB:.1f} MiB" for k, v in grown.items() if v > 2 * MiB}
    assert not leaking, f"{engine}: resident memory grew over {CALLS} calls: {leaking}"


def test_caches_are_bounded():
    """Many distinct geometries: every memoised geometry function keeps at most MEMO_SIZE
    entries, the C engine at most SHAPE_CACHE_SIZE shape structs per kind, and the
    registry remembers one engine per (kernel, backend, device)."""
    memos = [f for f in vars(_shapes).values() if callable(f) and hasattr(f, "cache")]
    assert memos, "no memoised geometry function found"
    n = max(_shapes.MEMO_SIZE, 256) + 50
    for e in ["c"] if "c" in CPU else CPU[:1]:  # the caches are the public layer's and C's
        for width in range(1, n + 1):
            x = np.ones((1, 1, 2, width), np.float32)
            fc.max_pool2d(x, 1, backend=e)
            fc.avg_pool1d(x[0, :, 0], 1, 1, backend=e)
            fc.conv1d(x[0, :, 0], np.ones((1, 1, 1), np.float32), backend=e)
    for f in memos:
        assert len(f.cache) <= _shapes.MEMO_SIZE, f.__name__
    if "c" in CPU:
        from fastconv.backends.c import _cffi

        assert len(_cffi._conv_shapes) <= _cffi.SHAPE_CACHE_SIZE
        assert len(_cffi._pool_shapes) <= _cffi.SHAPE_CACHE_SIZE
    assert len(_registry._picked) < 100


# --------------------------------------------------------------------------- workspace


class PeakRSS:
    """Peak resident memory during a ``with`` block, above what it was on entry."""

    def __enter__(self):
        gc.collect()
        self.start = rss()
        self.hwm = self._reset_hwm()
        if not self.hwm:  # sample instead
            self.peak = self.start
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.hwm:
            self.peak = self._read_hwm()
        else:
            self.stop.set()
            self.thread.join()
        self.extra = self.peak - self.start

    @staticmethod
    def _reset_hwm() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current resident size
            return True
        except OSError:
            return False

    @staticmethod
    def _read_hwm() -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc/self/status")

    def _sample(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.0005)


def test_peak_measurement_sees_an_allocation():
    """The measurement below can fail: 48 MiB touched inside the block are seen. The block
    maps fresh pages itself (malloc could hand back memory earlier tests freed but that is
    still resident, which would not raise the resident size)."""
    import mmap

    with PeakRSS() as peak:
        m = mmap.mmap(-1, 48 * MiB)
        view = np.frombuffer(m, np.uint8)
        view[:: mmap.PAGESIZE] = 1  # touch every page
        del view
        m.close()
    assert peak.extra >= 40 * MiB, peak.extra


# x (1, 64, 215, 215), w (4, 64, 31, 31), padding 'valid': OH = OW = 185, so the im2col
# matrix is C*KH*KW x OH*OW = 61504 x 34225 floats = 7.8 GiB (10.5 GiB with padding 'same',
# used below); the input takes 11.8 MB, the output (4 x 215 x 215) 0.7 MB.
BIG_X = (1, 64, 215, 215)
BIG_W = (4, 64, 31, 31)


@pytest.mark.slow
@pytest.mark.parametrize("engine", [e for e in ("c", "numba") if e in CPU])
def test_workspace_bound_on_a_10_gib_im2col(engine):
    r = np.random.default_rng(1)
    x = r.standard_normal(BIG_X, dtype=np.float32)
    w = r.standard_normal(BIG_W, dtype=np.float32) / 100
    C, KH, KW = BIG_W[1:]
    im2col = C * KH * KW * BIG_X[2] * BIG_X[3] * 4
    assert im2col > 10 * 2**30
    out = BIG_W[0] * BIG_X[2] * BIG_X[3] * 4
    bound = 64 * MiB
    if engine == "c":
        from fastconv.backends import c

        assert c.get_workspace_limit() == bound  # the documented default
    fc.conv2d(x[:, :, :40, :40], w, padding="same", backend=engine)  # JIT / first-call costs
    with PeakRSS() as peak:
        y = fc.conv2d(x, w, padding="same", backend=engine)
    assert y.shape == (1, 4, 215, 215)
    print(
        f"{engine}: {peak.extra / MiB:.1f} MiB extra for a conv whose im2col is "
        f"{im2col / 2**30:.1f} GiB"
    )
    # spot-check two outputs against a direct sum
    for o, i, j in ((1, 0, 0), (3, 107, 200)):
        xp = np.pad(x[0].astype(np.float64), ((0, 0), (15, 15), (15, 15)))
        want = float((xp[:, i : i + KH, j : j + KW] * w[o]).sum())
        assert abs(y[0, o, i, j] - want) <= 1e-4 * max(1.0, abs(want))
    slack = 16 * MiB  # the interpreter, numpy temporaries, thread stacks
    assert peak.extra <= bound + out + slack, (
        f"{engine}: {peak.extra / MiB:.1f} MiB extra for one conv call "
        f"(bound {bound / MiB:.0f} MiB + output {out / MiB:.1f} MiB)"
    )
