"""The numba backend's own costs: JIT compile time per op, cached start, and its speed bars.

Run as a script (the numbers in the numba backend's report come from it):

    python bench/bench_numba.py jit        # first-call compile time per op, cold and cached
    python bench/bench_numba.py perf       # numba vs torch (2 threads, float32) on the bar layers

``jit`` runs two fresh processes on one empty NUMBA_CACHE_DIR: the first compiles every kernel
(float32, then float64: the second dtype is the backend's only other specialisation), the second
loads them from the on-disk cache. ``perf`` interleaves numba and torch calls and keeps each
one's best time, so that a busy machine slows both alike.

Under pytest (``--benchmark-disable``, the default) the two tests are smoke tests: the JIT probe
on one op, and each bar layer shrunk and checked against the reference backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest

import fastconv
from fastconv.backends import KERNEL_NAMES

# The child process: time the first call of each op (its compilation) for each dtype.
_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from fastconv.backends import numba_cpu as nb
t_import = time.perf_counter() - t0
ops = sys.argv[1].split(",")
x = np.random.default_rng(0).standard_normal((2, 4, 9, 9))
w = np.random.default_rng(1).standard_normal((6, 4, 3, 3))
wd = np.random.default_rng(2).standard_normal((8, 1, 3, 3))
calls = {
    "conv2d": lambda x, d: nb.conv2d(x, w.astype(d), None, np.empty((2, 6, 9, 9), d),
                                     1, 1, 1, 1, 1, 1, 1),
    "conv2d_v1_direct": lambda x, d: nb.conv2d(x, w.astype(d), None, np.empty((2, 6, 9, 9), d),
                                               1, 1, 1, 1, 1, 1, 1, variant="v1_direct"),
    "conv2d_v2_im2col": lambda x, d: nb.conv2d(x, w.astype(d), None, np.empty((2, 6, 9, 9), d),
                                               1, 1, 1, 1, 1, 1, 1, variant="v2_im2col"),
    "depthwise_conv2d": lambda x, d: nb.depthwise_conv2d(x, wd.astype(d), None,
                                                         np.empty((2, 8, 9, 9), d), 1, 1, 1, 1, 1, 1),
    "conv_transpose2d": lambda x, d: nb.conv_transpose2d(x, w.transpose(1, 0, 2, 3).copy().astype(d),
                                                         None, np.empty((2, 6, 9, 9), d),
                                                         1, 1, 1, 1, 1, 1, 1),
    "max_pool2d": lambda x, d: nb.max_pool2d(x, np.empty((2, 4, 5, 5), d),
                                             np.empty((2, 4, 5, 5), np.int64), 3, 3, 2, 2, 1, 1, 1, 1),
    "avg_pool2d": lambda x, d: nb.avg_pool2d(x, np.empty((2, 4, 5, 5), d), 3, 3, 2, 2, 1, 1, True, 0),
    "adaptive_avg_pool2d": lambda x, d: nb.adaptive_avg_pool2d(x, np.empty((2, 4, 4, 4), d)),
    "adaptive_max_pool2d": lambda x, d: nb.adaptive_max_pool2d(x, np.empty((2, 4, 4, 4), d), None),
    "max_pool2d_backward": lambda x, d: nb.max_pool2d_backward(
        np.ones((2, 4, 5, 5), d), np.zeros((2, 4, 5, 5), np.int64), np.empty_like(x)),
    "avg_pool2d_backward": lambda x, d: nb.avg_pool2d_backward(
        np.ones((2, 4, 5, 5), d), np.empty_like(x), 3, 3, 2, 2, 1, 1, True, 0),
    "adaptive_avg_pool2d_backward": lambda x, d: nb.adaptive_avg_pool2d_backward(
        np.ones((2, 4, 4, 4), d), np.empty_like(x)),
}
out = {"import": t_import}
for op in ops:
    for d in (np.float32, np.float64):
        t = time.perf_counter()
        calls[op](x.astype(d), d)
        out[op + "/" + np.dtype(d).name] = time.perf_counter() - t
out["total"] = time.perf_counter() - t0
from numba.core.registry import CPUDispatcher
from fastconv.backends.numba_cpu import direct, gemm, pool, rows, transpose
disp = [f for m in (rows, direct, gemm, transpose, pool) for f in vars(m).values()
        if isinstance(f, CPUDispatcher) and f.targetoptions.get("parallel")]
out["cache_hits"] = sum(sum(d.stats.cache_hits.values()) for d in disp)
out["cache_misses"] = sum(sum(d.stats.cache_misses.values()) for d in disp)
out["specialisations"] = max(len(d.signatures) for d in disp)
print(json.dumps(out))
"""

#: Every kernel of the contract but separable_conv2d (here depthwise_conv2d then conv2d: nothing
#: of its own to compile), and conv2d also as the two variants whose kernels the default skips.
JIT_OPS = ("conv2d", "conv2d_v1_direct", "conv2d_v2_im2col") + tuple(
    k for k in KERNEL_NAMES if k not in ("conv2d", "separable_conv2d")
)


def jit_times(ops=JIT_OPS) -> Tuple[Dict[str, float], Dict[str, float]]:
    """(cold, cached): seconds per first call, from two fresh processes sharing one cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = []
        for _ in range(2):
            res = subprocess.run(
                [sys.executable, "-c", _CHILD, ",".join(ops)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return runs[0], runs[1]


# --------------------------------------------------------------------------- speed bars

#: (name, op, input shape, weight shape or pool args, bar: numba speed / torch speed)
BARS = [
    ("conv3x3 64@56", "conv2d", (1, 64, 56, 56), (64, 64, 3, 3), 0.3),
    ("conv3x3 128@28", "conv2d", (1, 128, 28, 28), (128, 128, 3, 3), 0.3),
    ("conv3x3 256@14", "conv2d", (1, 256, 14, 14), (256, 256, 3, 3), 0.3),
    ("depthwise 144@56 N=8", "depthwise", (8, 144, 56, 56), (144, 1, 3, 3), 1.0),
    ("maxpool 3x3/2 64@112", "max_pool2d", (1, 64, 112, 112), None, 1.5),
    ("avgpool 3x3/1 256@56", "avg_pool2d", (1, 256, 56, 56), None, 1.5),
]


def _fns(op: str, x: np.ndarray, w, backend: str) -> Callable[[], object]:
    if backend == "torch":
        import torch
        import torch.nn.functional as F

        xt = torch.from_numpy(x)
        wt = None if w is None else torch.from_numpy(w)
        return {
            "conv2d": lambda: F.conv2d(xt, wt, padding=1),
            "depthwise": lambda: F.conv2d(xt, wt, padding=1, groups=x.shape[1]),
            "max_pool2d": lambda: F.max_pool2d(xt, 3, 2, 1),
            "avg_pool2d": lambda: F.avg_pool2d(xt, 3, 1, 1),
        }[op]
    return {
        "conv2d": lambda: fastconv.conv2d(x, w, padding=1, backend=backend),
        "depthwise": lambda: fastconv.depthwise_conv2d(x, w, padding=1, backend=backend),
        "max_pool2d": lambda: fastconv.max_pool2d(x, 3, 2, 1, backend=backend),
        "avg_pool2d": lambda: fastconv.avg_pool2d(x, 3, 1, 1, backend=backend),
    }[op]


def _arrays(xs, ws, scale: int = 1):
    rng = np.random.default_rng(0)
    if scale > 1:  # smoke mode: same op, small sizes
        xs = (1, min(xs[1], 8), max(xs[2] // scale, 6), max(xs[3] // scale, 6))
        ws = None if ws is None else (xs[1], 1 if ws[1] == 1 else xs[1]) + tuple(ws[2:])
    x = rng.standard_normal(xs).astype(np.float32)
    w = None if ws is None else rng.standard_normal(ws).astype(np.float32)
    return x, w


def race(a: Callable, b: Callable, reps: int = 15) -> Tuple[float, float]:
    """Best times of a and b over ``reps`` alternating rounds (after one warm-up each)."""
    a()
    b()
    ta = tb = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a()
        ta = min(ta, time.perf_counter() - t)
        t = time.perf_counter()
        b()
        tb = min(tb, time.perf_counter() - t)
    return ta, tb


def perf_table(threads: int = 2) -> List[Tuple[str, float, float, float]]:
    """[(layer, numba ms, torch ms, torch time / numba time)] with ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    fastconv.set_num_threads(threads)
    rows = []
    for name, op, xs, ws, _bar in BARS:
        x, w = _arrays(xs, ws)
        tn, tt = race(_fns(op, x, w, "numba"), _fns(op, x, w, "torch"))
        rows.append((name, tn * 1e3, tt * 1e3, tt / tn))
    return rows


# --------------------------------------------------------------------------- pytest


def _numba_available() -> bool:
    return fastconv.available_backends()["numba"].startswith("available")


_REASON = f"numba backend: {fastconv.available_backends()['numba']}"


@pytest.mark.skipif(not _numba_available(), reason=_REASON)
def test_jit_cache(benchmark):
    """A second process must load the kernels from the on-disk cache, compiling nothing."""
    cold, cached = benchmark.pedantic(jit_times, args=(("max_pool2d",),), rounds=1, iterations=1)
    benchmark.extra_info.update(cold=cold, cached=cached)
    assert cold["cache_misses"] > 0 and cold["cache_hits"] == 0
    assert cached["cache_hits"] > 0 and cached["cache_misses"] == 0
    assert cold["specialisations"] <= 2  # one per dtype


@pytest.mark.skipif(not _numba_available(), reason=_REASON)
@pytest.mark.parametrize("bar", BARS, ids=[b[0] for b in BARS])
def test_bar_layer(benchmark, bar):
    name, op, xs, ws, _ = bar
    smoke = benchmark.disabled
    x, w = _arrays(xs, ws, scale=4 if smoke else 1)
    got = _fns(op, x, w, "numba")()
    want = _fns(op, x, w, "reference")()
    assert np.abs(got - want).max() <= 1e-5 * max(np.abs(want).max(), 1e-30)
    benchmark.group = name
    benchmark(_fns(op, x, w, "numba"))


def main(argv: List[str]) -> None:
    what = argv[1] if len(argv) > 1 else "all"
    if what in ("jit", "all"):
        cold, cached = jit_times()
        print(
            f"import fastconv.backends.numba_cpu: cold {cold['import']:.2f} s, "
            f"cached {cached['import']:.2f} s"
        )
        print(f"{'first call (s)':34s} {'cold f32':>9s} {'cold f64':>9s} {'cached f32':>11s}")
        for op in JIT_OPS:
            print(
                f"{op:34s} {cold[op + '/float32']:9.2f} {cold[op + '/float64']:9.2f} "
                f"{cached[op + '/float32']:11.3f}"
            )
        print(
            f"{'whole process (every op, both dtypes)':34s} {cold['total']:9.2f} "
            f"{'':9s} {cached['total']:11.2f}"
        )
        print(
            f"compiled specialisations per kernel: at most {cold['specialisations']}; "
            f"cache hits in the second process: {cached['cache_hits']}, "
            f"misses: {cached['cache_misses']}"
        )
    if what in ("perf", "all"):
        print(
            f"{'layer (float32, 2 threads)':26s} {'numba ms':>9s} {'torch ms':>9s} "
            f"{'numba/torch speed':>18s} {'bar':>5s}"
        )
        for (name, tn, tt, ratio), bar in zip(perf_table(), BARS):
            print(f"{name:26s} {tn:9.2f} {tt:9.2f} {ratio:18.2f} {bar[4]:5.1f}")


if __name__ == "__main__":
    main(sys.argv)
