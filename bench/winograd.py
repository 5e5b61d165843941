"""Winograd conv2d (C engine, csrc/winograd.c) against the im2col path and torch, per layer.

    python bench/winograd.py [--threads 2] [--rounds 5]
                             [--suite all|resnet50|vgg16|aspp|other]
                             [--split] [--no-torch]

For each layer (float32): ms of the C engine's im2col path ("best(im2col)", the automatic
choice with Winograd switched off, ``c.set_auto_winograd(False)``), ``winograd_f2``,
``winograd_f3`` and ``winograd_f4`` twice: "1st" is a first call (the cache of transformed
weights emptied before it: the call transforms the weights and stores them) and "cached" the
steady state (the
weights already cached: what inference sees from the 2nd call on), the automatic choice
(``auto``, steady state) and ``torch.nn.functional.conv2d`` under
``torch.inference_mode()`` with ``torch.set_num_threads`` = ``--threads``. Each round times
every method once (best of 3 calls) in an order that rotates from round to round; the table
shows the median over the rounds, GFLOP/s = 2 * direct-conv MACs / time (fastconv's own MAC
count, the same for every method), and each method's relative error in norm
||y - y_ref|| / ||y_ref|| against the float64 reference (the C engine's float64 v1..v5 sum,
which matches ``backend="reference"`` to 1e-15). Dilated layers (DeepLab's ASPP, ``--suite
aspp``) run every variant: each phase of the dilation is tiled on its own.

``--no-cache`` sets the cache's budget to 0 (every call transforms its weights).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

import fastconv
from fastconv.backends import c

# (name, N, C, OC, H, W, groups, dilation, padding)
Layer = Tuple[str, int, int, int, int, int, int, int, int]

RESNET50: List[Layer] = [
    (f"resnet50 {ch}@{hw} N={n}", n, ch, ch, hw, hw, 1, 1, 1)
    for n in (1, 8)
    for ch, hw in ((64, 56), (128, 28), (256, 14), (512, 7))
]
VGG16: List[Layer] = [
    ("vgg16 conv1_2 64@224", 1, 64, 64, 224, 224, 1, 1, 1),
    ("vgg16 conv2_2 128@112", 1, 128, 128, 112, 112, 1, 1, 1),
    ("vgg16 conv3_2 256@56", 1, 256, 256, 56, 56, 1, 1, 1),
    ("vgg16 conv4_2 512@28", 1, 512, 512, 28, 28, 1, 1, 1),
    ("vgg16 conv5_2 512@14", 1, 512, 512, 14, 14, 1, 1, 1),
]
ASPP: List[Layer] = [
    (f"aspp 256@33 d={d}", 1, 256, 256, 33, 33, 1, d, d) for d in (2, 6, 12)
]
OTHER: List[Layer] = [
    ("3x3 256@33, no dilation", 1, 256, 256, 33, 33, 1, 1, 1),
    ("resnext 128@28 g=32 N=1", 1, 128, 128, 28, 28, 32, 1, 1),
    ("resnext 128@28 g=32 N=8", 8, 128, 128, 28, 28, 32, 1, 1),
]
SUITES = {"resnet50": RESNET50, "vgg16": VGG16, "aspp": ASPP, "other": OTHER}

METHODS = ("best(im2col)", "f2 1st", "f2 cached", "f3 1st", "f3 cached", "f4 1st", "f4 cached",
           "auto", "torch")
FIRST = ("f2 1st", "f3 1st", "f4 1st")
CACHED = ("f2 cached", "f3 cached", "f4 cached")


def empty_cache() -> None:
    limit = c.winograd_cache_info()["limit"]
    c.set_winograd_cache_limit(0)
    c.set_winograd_cache_limit(limit)


def macs(layer: Layer) -> int:
    _, N, C, OC, H, W, G, d, p = layer
    OH, OW = H + 2 * p - 2 * d, W + 2 * p - 2 * d
    return N * OC * OH * OW * (C // G) * 9


def runners(layer: Layer, x, w, b, torch) -> Dict[str, Callable[[], np.ndarray]]:
    _, N, C, OC, H, W, G, d, p = layer

    def fc(variant: Optional[str], auto: bool) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            c.set_auto_winograd(auto)
            try:
                return fastconv.conv2d(x, w, b, 1, p, d, G, backend="c", variant=variant)
            finally:
                c.set_auto_winograd(True)

        return run

    out: Dict[str, Callable[[], np.ndarray]] = {"best(im2col)": fc(None, False)}
    for k in ("f2", "f3", "f4"):
        out[f"{k} 1st"] = fc(f"winograd_{k}", True)
        out[f"{k} cached"] = fc(f"winograd_{k}", True)
    out["auto"] = fc(None, True)
    if torch is not None:
        tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))

        def run_torch() -> np.ndarray:
            with torch.inference_mode():
                return torch.nn.functional.conv2d(tx, tw, tb, 1, p, d, G).numpy()

        out["torch"] = run_torch
    return out


def reference(layer: Layer, x, w, b) -> np.ndarray:
    _, N, C, OC, H, W, G, d, p = layer
    return fastconv.conv2d(
        x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1, p, d, G,
        backend="c", variant="v5_threads",
    )


def time_once(fn: Callable[[], np.ndarray], first: bool, reps: int = 3) -> float:
    """Best of reps calls; first: each after emptying the cache, else after one call."""
    best = float("inf")
    if not first:
        fn()
    for _ in range(reps):
        if first:
            empty_cache()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench(layers: List[Layer], rounds: int, torch) -> None:
    rng = np.random.default_rng(0)
    head = f"{'layer':34s}" + "".join(f"{m:>14s}" for m in METHODS)
    print(head + "   (ms, median of rounds; GFLOP/s; rel. error in norm)")
    for layer in layers:
        _, N, C, OC, H, W, G, d, p = layer
        x = rng.standard_normal((N, C, H, W)).astype(np.float32)
        w = (rng.standard_normal((OC, C // G, 3, 3)) / np.sqrt(9 * C / G)).astype(np.float32)
        b = rng.standard_normal(OC).astype(np.float32)
        fns = runners(layer, x, w, b, torch)
        want = reference(layer, x, w, b)
        errs = {
            k: float(np.linalg.norm(f() - want) / np.linalg.norm(want)) for k, f in fns.items()
        }
        times: Dict[str, List[float]] = {k: [] for k in fns}
        keys = list(fns)
        for r in range(rounds):
            for k in keys[r % len(keys):] + keys[: r % len(keys)]:
                times[k].append(time_once(fns[k], k in FIRST))
        ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        gf = {k: 2 * macs(layer) / (v * 1e6) for k, v in ms.items()}
        cell = lambda k, f: f"{f(k):>14s}" if k in ms else f"{'-':>14s}"  # noqa: E731
        print(f"{layer[0]:34s}" + "".join(cell(k, lambda k: f"{ms[k]:.3f}") for k in METHODS))
        print(f"{'  GFLOP/s':34s}" + "".join(cell(k, lambda k: f"{gf[k]:.1f}") for k in METHODS))
        print(f"{'  rel. error':34s}" + "".join(cell(k, lambda k: f"{errs[k]:.1e}")
                                                for k in METHODS))
        if "f4 cached" in ms:
            best = min(ms[k] for k in CACHED)
            print(f"{'  im2col / best cached winograd':34s}{ms['best(im2col)'] / best:14.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--suite", default="all", choices=["all", *SUITES])
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-cache", action="store_true")
    args = ap.parse_args()
    fastconv.set_num_threads(args.threads)
    if args.no_cache:
        c.set_winograd_cache_limit(0)
    torch = None
    if not args.no_torch:
        try:
            import torch  # type: ignore[no-redef]

            torch.set_num_threads(args.threads)
        except ImportError:
            torch = None
    layers = [lay for k, v in SUITES.items() if args.suite in ("all", k) for lay in v]
    print(f"threads={args.threads} rounds={args.rounds} isa={c.cpu_info()['gemm_kernel']} "
          f"cache={c.winograd_cache_info()['limit']}")
    bench(layers, args.rounds, torch)


if __name__ == "__main__":
    main()
