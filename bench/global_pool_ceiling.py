"""How fast can global average pooling of ResNet-50's head (8 x 2048 x 7 x 7) be here?

    python bench/global_pool_ceiling.py [--threads N]

The op reads 3.2 MB once and writes 64 KB. A benchmark calls it again and again on one input,
which then sits in the last-level cache, so the floor is the time to *read* 3.2 MB from that
cache: measured here with a plain vector sum over the same bytes (csrc/probe.c,
fc_probe_read_bandwidth). Every call also pays a fixed cost (argument checks, allocation,
dispatch; ``fastconv`` and torch alike). The script prints the floor, the kernels alone, the
public calls and torch (medians of interleaved samples, timed as ``fastconv bench`` does), and
the best ratio to torch any engine could reach here: torch's time over (floor + fastconv's
fixed cost, measured on a 1-plane call).
"""

from __future__ import annotations

import argparse

import numpy as np
from fastconv._fastconv_c import ffi, lib

import fastconv
from fastconv.backends import numba_cpu as _nb
from fastconv.backends.c import pool as _c_pool
from fastconv.benchmark import Runner, time_interleaved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=fastconv.get_num_threads())
    args = ap.parse_args()
    fastconv.set_num_threads(args.threads)
    fastconv.available_backends()  # load the engines, so the thread count reaches them

    x = np.random.default_rng(0).random((8, 2048, 7, 7), dtype=np.float32)
    y = np.empty((8, 2048, 1, 1), np.float32)
    tiny = x[:1, :1].copy()
    src = ffi.from_buffer("float[]", x)
    gbs = max(lib.fc_probe_read_bandwidth(src, x.size, 200, args.threads) for _ in range(5))
    floor = x.nbytes / gbs * 1e-3  # us

    runners = [
        Runner("c kernel alone", lambda: _c_pool.adaptive_avg_pool2d(x, y)),
        Runner("numba kernel alone", lambda: _nb.adaptive_avg_pool2d(x, y)),
        Runner("fastconv call, c", lambda: fastconv.adaptive_avg_pool2d(x, 1, backend="c")),
        Runner("fastconv call, numba",
               lambda: fastconv.adaptive_avg_pool2d(x, 1, backend="numba")),
        Runner("fastconv fixed cost (1 plane of 7x7, c)",
               lambda: fastconv.adaptive_avg_pool2d(tiny, 1, backend="c")),
    ]
    torch_us = None
    try:
        import torch

        torch.set_num_threads(args.threads)
        xt = torch.from_numpy(x)
        runners.append(
            Runner("torch adaptive_avg_pool2d", lambda: torch.nn.functional.adaptive_avg_pool2d(xt, 1))
        )
    except ImportError:
        pass
    # interleaved rounds, each sample after a pause and a lead-in call (fastconv.benchmark)
    stats = time_interleaved(runners, repeat=15, budget_s=20.0)
    rows = [("read floor (vector sum of the same 3.2 MB)", floor)]
    rows += [(r.label, stats[r.label]["median_s"] * 1e6) for r in runners]
    fixed = stats[runners[4].label]["median_s"] * 1e6
    if len(runners) > 5:
        torch_us = stats[runners[5].label]["median_s"] * 1e6

    print(f"global average pooling 8x2048x7x7 float32, {args.threads} thread(s)")
    print(f"read bandwidth over 3.2 MB (cache-resident): {gbs:.0f} GB/s")
    for name, us in rows:
        ratio = f"  {torch_us / us:5.2f}x torch" if torch_us else ""
        print(f"  {name:44s} {us:8.1f} us{ratio}")
    if torch_us:
        print(f"best reachable ratio to torch: torch / (floor + fixed cost) = "
              f"{torch_us / (floor + fixed):.2f}x (no per-call cost at all: {torch_us / floor:.2f}x)")


if __name__ == "__main__":
    main()
