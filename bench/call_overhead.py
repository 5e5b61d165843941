"""The time of a small public call, where the call's fixed cost is all there is.

    python bench/call_overhead.py [--threads N]

Each call (a 1x1x7x7 input unless said) in a loop of 20,000, best of 7 loops, us a call, and
torch.nn.functional's same call when torch is installed. A repeated call runs its plan, the
kernel bound to its shapes (fastconv/ops/_plans.py); the first call of a shape costs more
(the checks, the geometry, the backend's pick: see --first). Without --threads the thread
count is the default one (what a script that never calls set_num_threads gets).
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np

import fastconv
from fastconv.ops import _plans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--first", action="store_true", help="also time calls without a plan")
    args = ap.parse_args()
    if args.threads:
        fastconv.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x, w = rng.random((1, 1, 7, 7), np.float32), rng.random((1, 1, 3, 3), np.float32)
    b = np.zeros(1, np.float32)
    x16 = rng.random((1, 16, 14, 14), np.float32)
    w16, wd = rng.random((16, 16, 1, 1), np.float32), rng.random((16, 1, 3, 3), np.float32)
    calls = {  # name -> (fastconv call, torch.nn.functional name, its arguments)
        "conv2d 3x3": (lambda: fastconv.conv2d(x, w, b), "conv2d", (x, w, b)),
        "conv2d 1x1 16 @14": (lambda: fastconv.conv2d(x16, w16), "conv2d", (x16, w16)),
        "depthwise 3x3 16 @14": (lambda: fastconv.conv2d(x16, wd, padding=1, groups=16),
                                 None, ()),
        "conv_transpose2d 3x3": (lambda: fastconv.conv_transpose2d(x, w, b),
                                 "conv_transpose2d", (x, w, b)),
        "max_pool2d k2": (lambda: fastconv.max_pool2d(x, 2), "max_pool2d", (x, 2)),
        "avg_pool2d k2": (lambda: fastconv.avg_pool2d(x, 2), "avg_pool2d", (x, 2)),
        "adaptive_avg_pool2d -> 1": (lambda: fastconv.adaptive_avg_pool2d(x, 1),
                                     "adaptive_avg_pool2d", (x, 1)),
    }
    try:
        import torch

        torch.set_num_threads(fastconv.get_num_threads())
    except ImportError:
        torch = None

    def us(f) -> float:
        f()
        return min(timeit.repeat(f, number=20000, repeat=7)) / 20000 * 1e6

    print(f"threads {fastconv.get_num_threads()}, us a call (best of 7 loops of 20,000)")
    for name, (f, tname, targs) in calls.items():
        line = f"  {name:26s} fastconv {us(f):6.2f}"
        if args.first:
            line += f"  (first call of a shape {us(lambda: (_plans._plans.clear(), f())):6.2f})"
        if torch is not None and tname:
            tf = getattr(torch.nn.functional, tname)
            ta = [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in targs]
            line += f"  torch {us(lambda: tf(*ta)):6.2f}"
        print(line)


if __name__ == "__main__":
    main()
