"""Max, average and adaptive pooling on many geometries, fastconv's C engine against torch.

    python bench/pool_shapes.py [--threads N] [--top K]

The layer suite (``fastconv bench``) has four pooling layers, all on large planes or a
global window. This sweep covers what a network's later stages and small models run: 4x4
to 112x112 planes, 3x3 / 2x2 / 5x5 windows, stride 1 and 2, padding, with and without
indices, whole-plane windows, adaptive outputs of 3x3 and 5x5 (bins that mostly do not
divide the plane). Each library runs in its own process (torch's idle threads
spin after a call and slow the next library's calls in the same process); a call is timed
as the best of 5 rounds of a loop of about 3 ms, float32, the same threads for both; before
each round fastconv's pool forgets the time it saw lost to other programs, as ``fastconv
bench`` does before each sample (a few vCPU stalls of the guest would otherwise make the
next geometries run on one thread). The table lists the geometries sorted by torch's time
over fastconv's, the lowest first.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

#: (N, C, H) planes H x H
PLANES = [(8, 2048, 7), (1, 512, 14), (1, 64, 112), (8, 256, 28), (1, 1024, 4), (32, 64, 9),
          (4, 96, 35)]
#: (op, kernel, stride, padding, return_indices); kernel 0 = the whole plane
WINDOWS = [("max", 3, 2, 1, False), ("max", 3, 2, 1, True), ("max", 2, 2, 0, False),
           ("max", 3, 1, 1, False), ("max", 3, 2, 0, False), ("max", 5, 1, 2, False),
           ("max", 0, 0, 0, False), ("avg", 3, 2, 1, False), ("avg", 2, 2, 0, False),
           ("avg", 3, 1, 1, False), ("avg", 0, 0, 0, False)]
#: (op, output size) of the adaptive pools
ADAPTIVE = [("avg", 3), ("avg", 5), ("max", 3), ("max", 5)]


def _best(f, forget=None) -> float:
    for _ in range(3):
        f()
    t = time.perf_counter()
    f()
    n = max(1, int(0.003 / max(time.perf_counter() - t, 1e-7)))
    best = float("inf")
    for _ in range(5):
        if forget is not None:
            forget()
        t = time.perf_counter()
        for _ in range(n):
            f()
        best = min(best, (time.perf_counter() - t) / n)
    return best


def _measure(lib: str, threads: int) -> dict:
    """Seconds per call of every geometry, in this process, with ``lib``."""
    rng = np.random.default_rng(0)
    if lib == "torch":
        import torch
        import torch.nn.functional as F
        torch.set_num_threads(threads)
        mod = F
    else:
        import fastconv
        fastconv.set_num_threads(threads)
        mod = fastconv
    out = {}
    for n, c, h in PLANES:
        x = rng.standard_normal((n, c, h, h), dtype=np.float32)
        if lib == "torch":
            x = torch.from_numpy(x)
        for op, k, s, p, idx in WINDOWS:
            k, s = (k, s) if k else (h, h)
            name = f"{op} {k}x{k}/{s} pad {p}{' +indices' if idx else ''} on {n}x{c}x{h}x{h}"
            if op == "max":
                def f(x=x, k=k, s=s, p=p, idx=idx):
                    return mod.max_pool2d(x, k, s, p, return_indices=idx)
            else:
                def f(x=x, k=k, s=s, p=p):
                    return mod.avg_pool2d(x, k, s, p)
            out[name] = _timed(lib, f)
        for op, o in ADAPTIVE:
            name = f"adaptive {op} -> {o}x{o} on {n}x{c}x{h}x{h}"
            fn = mod.adaptive_avg_pool2d if op == "avg" else mod.adaptive_max_pool2d
            out[name] = _timed(lib, lambda x=x, o=o, fn=fn: fn(x, o))
    return out


def _timed(lib: str, f) -> float:
    """_best(f), under torch.inference_mode() for torch."""
    if lib == "torch":
        import torch

        with torch.inference_mode():
            return _best(f)
    from fastconv.benchmark.timing import _forget_losses

    return _best(f, _forget_losses())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=0, help="print only the K lowest ratios")
    ap.add_argument("--measure", choices=["fastconv", "torch"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.measure:
        json.dump(_measure(a.measure, a.threads), sys.stdout)
        return
    runs = {}
    for lib in ("fastconv", "torch"):
        cmd = [sys.executable, __file__, "--measure", lib, "--threads", str(a.threads)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"{lib}: {res.stderr.strip().splitlines()[-1] if res.stderr else 'failed'}")
        runs[lib] = json.loads(res.stdout)
    fc, tc = runs["fastconv"], runs["torch"]
    rows = sorted((tc[k] / fc[k], k) for k in fc)
    print(f"{'geometry':<44} {'fastconv us':>11} {'torch us':>9} {'x torch':>8}"
          f"   ({a.threads} threads, float32)")
    for r, k in rows[:a.top or len(rows)]:
        print(f"{k:<44} {fc[k] * 1e6:>11.1f} {tc[k] * 1e6:>9.1f} {r:>8.2f}")
    print(f"lowest {rows[0][0]:.2f}x, median {rows[len(rows) // 2][0]:.2f}x over {len(rows)}")


if __name__ == "__main__":
    main()
