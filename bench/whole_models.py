"""Whole networks, fastconv (C backend, fastconv.nn in inference mode) against torch eager
(``torch.inference_mode()``), each library in its own process so that neither's runtime
(threads spinning, a second libgomp) slows the other.

    python bench/whole_models.py [--models resnet50,mobilenet_v2,vgg16] [--batches 1,8]
                                 [--rounds 3] [--reps 5] [--threads N] [--no-fusion]
                                 [--json OUT.json]

A round runs, for every model and batch, one fastconv child and one torch child (the order
alternating between rounds); each child builds the network with the same weights (fastconv's
zoo model, loaded into its torch twin), runs two warm-up passes, then times ``--reps``
forward passes and prints the fastest and the median. The table gives, per model and batch,
the median over the rounds of each library's median and the median of the per-round ratios
``torch ms / fastconv ms`` (> 1: fastconv is faster). ``--no-fusion`` times fastconv.nn
module by module (``nn.set_fusion(False)``), to see what fusion brings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, statistics, sys, time
import numpy as np
lib, name, batch, reps, threads, fusion = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
import fastconv as fc
from fastconv import models
from fastconv.benchmark.models import TORCH_TWINS
model = models.get_model(name, generator=0).eval()
x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
if lib == "torch":
    import torch
    torch.set_num_threads(threads)
    net = TORCH_TWINS[name](torch).eval()
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    xt = torch.from_numpy(x)
    def run():
        with torch.inference_mode():
            return net(xt)
else:
    fc.set_num_threads(threads)
    fc.nn.set_fusion(fusion)
    model.set_backend("c")
    def run():
        return model(x)
run(); run()
ts = []
for _ in range(reps):
    t0 = time.perf_counter(); run(); ts.append(time.perf_counter() - t0)
print(json.dumps({"min_ms": min(ts) * 1e3, "median_ms": statistics.median(ts) * 1e3}))
"""


def child(lib: str, name: str, batch: int, reps: int, threads: int, fusion: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, lib, name, str(batch), str(reps), str(threads),
         "1" if fusion else "0"], capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise RuntimeError(f"{lib} {name} batch {batch}: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet50,mobilenet_v2,vgg16")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-fusion", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    names = [m for m in a.models.split(",") if m]
    batches = [int(b) for b in a.batches.split(",") if b]
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        cpu = "unknown CPU"
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  {cpu}  threads {a.threads}"
          f"  rounds {a.rounds} x {a.reps} passes  fusion {'off' if a.no_fusion else 'on'}  "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    res: dict = {}
    for r in range(a.rounds):
        for name in names:
            for b in batches:
                order = ("fastconv", "torch") if r % 2 == 0 else ("torch", "fastconv")
                got = {lib: child(lib, name, b, a.reps, a.threads, not a.no_fusion)
                       for lib in order}
                res.setdefault((name, b), []).append(got)
                print(f"  round {r + 1} {name} batch {b}: fastconv "
                      f"{got['fastconv']['median_ms']:.1f} ms, torch "
                      f"{got['torch']['median_ms']:.1f} ms", file=sys.stderr, flush=True)
    print(f"{'model':14s}{'batch':>6s}{'fastconv ms':>13s}{'torch ms':>10s}{'x torch':>9s}")
    rows = []
    for (name, b), rounds in res.items():
        f = statistics.median(g["fastconv"]["median_ms"] for g in rounds)
        t = statistics.median(g["torch"]["median_ms"] for g in rounds)
        ratio = statistics.median(g["torch"]["median_ms"] / g["fastconv"]["median_ms"]
                                  for g in rounds)
        print(f"{name:14s}{b:6d}{f:13.1f}{t:10.1f}{ratio:9.2f}")
        rows.append({"model": name, "batch": b, "fastconv_ms": f, "torch_ms": t,
                     "speedup_vs_torch": ratio, "rounds": rounds})
    print(f"load {os.getloadavg()[0]:.2f}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"cpu": cpu, "threads": a.threads, "fusion": not a.no_fusion,
                       "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
