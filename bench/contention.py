"""Thread contention: C-engine calls with the default thread count against one thread, on a
quiet machine and with a busy process pinned on one core.

    python bench/contention.py [--suite issue|resnet50|model] [--modes quiet,busy] [--rounds 15]
                               [--idle-ms 50] [--threads N] [--torch] [--json OUT.json]
    python bench/contention.py --compare-torch-import [--suite resnet50] [--rounds 15] ...

Suites: ``issue`` (the layers of the contention issue and a few more of each op), ``resnet50``
(ResNet-50's convolutions), ``model`` (a whole ResNet-50 forward pass on the C engine).
Each sample is one public call (``backend="c"``) made after ``--idle-ms`` of sleep, as in real
use between layers or requests: the engine's threads have gone to sleep by then and the call
has to wake them. A round times every layer once with the default thread count and once
with one thread (the order rotating from round to round); the modes run one after the other,
each for all its rounds: ``quiet`` first, then ``busy``, in which a separate process spins
on the last CPU of this process's affinity mask for the whole phase (started before, killed
after; it never outlives the run). Times are medians over the rounds.
``--torch`` also times torch's equivalent call (its own default threads) under the same
protocol; torch is then imported after fastconv's C engine has loaded.

Columns: ``dflt`` / ``1t`` are the medians with the default thread count and with one thread,
``dflt/1t`` their ratio (the contention bar: at most 1.25 in the busy mode), ``p90`` the 90th
percentile of the default-thread samples, ``speed-up`` = 1t / dflt, and ``shared`` the share of
default-thread calls that more than one thread worked on (``lib.fc_last_team()``; builds
before the C engine's own thread pool have no such counter). ``--aa`` adds a second 1-thread
series and its column ``A/A`` = 1t / 1t', the ratio of two identical series: how far the
machine's noise alone moves a ratio.

``--compare-torch-import`` runs the suite in child processes, alternately with ``import
torch`` before fastconv and without (torch ships its own ``libgomp.so.1``; the C extension's
OpenMP calls may then resolve to that copy), and prints each layer's default-thread median in
both, with the libgomp each child had mapped.

Writes the figures as JSON with ``--json``. Timings are noisy on a shared machine: compare the
ratios of one run, and look at the load averages printed before and after.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from fastconv.benchmark.probe import cpu_model

#: The bar of the contention issue: default threads at most this much slower than 1 thread.
BAR = 1.25

BUSY_SOURCE = (
    "import time\nend = time.monotonic() + {limit}\nwhile time.monotonic() < end:\n    pass\n"
)


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def gomp_mapped() -> List[str]:
    """The libgomp files mapped into this process."""
    try:
        with open("/proc/self/maps") as f:
            return sorted({ln.split()[-1] for ln in f if "libgomp" in ln})
    except OSError:
        return []


# --------------------------------------------------------------------------- layers

Layer = Tuple[str, Callable[..., Any], tuple, Dict[str, Any], Optional[Callable[..., Any]]]


def make_layers(
    suite: str, with_torch: bool
) -> List[Tuple[str, Callable[[], Any], Optional[Callable[[], Any]]]]:
    """(name, fastconv call, torch call or None) for every layer of the suite."""
    import numpy as np

    import fastconv as fc

    rng = np.random.default_rng(0)

    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    F = None
    if with_torch:
        import torch

        F = torch.nn.functional

    out = []

    def add(name, fn, args, kwargs, tfn=None, targs=None):
        call = lambda: fn(*args, backend="c", **kwargs)  # noqa: E731
        tcall = None
        if F is not None and tfn is not None:
            import torch

            ta = [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in (targs or args)]
            tcall = lambda: tfn(*ta, **kwargs)  # noqa: E731
        out.append((name, call, tcall))

    def conv(name, n, c, hw, oc, k, stride=1, pad=0, **kw):
        x, w = r(n, c, hw, hw), r(oc, c // kw.get("groups", 1), k, k)
        add(name, fc.conv2d, (x, w), dict(stride=stride, padding=pad, **kw), F and F.conv2d)

    if suite == "issue":
        x = r(1, 144, 56, 56)
        wd = r(144, 1, 3, 3)
        add(
            "depthwise 3x3 144 @56",
            fc.depthwise_conv2d,
            (x, wd),
            dict(padding=1),
            F and (lambda a, b, **k: F.conv2d(a, b, groups=144, **k)),
        )
        x = r(8, 2048, 7, 7)
        add(
            "global avgpool 8x2048 @7",
            fc.adaptive_avg_pool2d,
            (x, 1),
            {},
            F and F.adaptive_avg_pool2d,
        )
        x = r(1, 64, 112, 112)
        add("maxpool 3x3/2 64 @112", fc.max_pool2d, (x, 3, 2, 1), {}, F and F.max_pool2d)
        conv("conv 3x3 64->64 @56", 1, 64, 56, 64, 3, pad=1)
        conv("conv 3x3 128->128 @28 N=8", 8, 128, 28, 128, 3, pad=1)
        x = r(1, 256, 56, 56)
        add("avgpool 3x3/1 256 @56", fc.avg_pool2d, (x, 3, 1, 1), {}, F and F.avg_pool2d)
        x = r(1, 960, 7, 7)
        wd = r(960, 1, 3, 3)
        add(
            "depthwise 3x3 960 @7",
            fc.depthwise_conv2d,
            (x, wd),
            dict(padding=1),
            F and (lambda a, b, **k: F.conv2d(a, b, groups=960, **k)),
        )
        x, w = r(1, 128, 16, 16), r(128, 64, 4, 4)
        add(
            "tconv 4x4/2 128->64 @16",
            fc.conv_transpose2d,
            (x, w),
            dict(stride=2, padding=1),
            F and F.conv_transpose2d,
        )
        conv("conv 1x1 2048->512 @7", 1, 2048, 7, 512, 1)
        x = r(8, 64, 56, 56)
        add("maxpool 2x2/2 64 @56 N=8", fc.max_pool2d, (x, 2, 2), {}, F and F.max_pool2d)
    elif suite == "resnet50":
        conv("stem 7x7/2 3->64 @224", 1, 3, 224, 64, 7, stride=2, pad=3)
        conv("3x3 64->64 @56", 1, 64, 56, 64, 3, pad=1)
        conv("1x1 64->256 @56", 1, 64, 56, 256, 1)
        conv("3x3 128->128 @28", 1, 128, 28, 128, 3, pad=1)
        conv("1x1 256->1024 @14", 1, 256, 14, 1024, 1)
        conv("3x3 256->256 @14", 1, 256, 14, 256, 3, pad=1)
        conv("3x3 512->512 @7", 1, 512, 7, 512, 3, pad=1)
        conv("1x1 2048->512 @7", 1, 2048, 7, 512, 1)
    elif suite == "model":
        from fastconv import models

        model = models.MODELS["resnet50"](generator=0, dtype=np.float32)
        model.eval()
        model.set_backend("c")
        x = r(1, 3, 224, 224)
        out.append(("resnet50 forward 1x3x224x224", lambda: model(x), None))
    else:
        raise SystemExit(f"unknown suite {suite!r}")
    return out


# --------------------------------------------------------------------------- busy process


class Busy:
    """A process spinning on one CPU while the ``with`` block runs (killed on exit)."""

    def __init__(self, cpu: int, limit_s: float):
        self.cpu, self.limit_s = cpu, limit_s
        self.proc: Optional[subprocess.Popen] = None

    def __enter__(self):
        cpu = self.cpu
        self.proc = subprocess.Popen(
            [sys.executable, "-c", BUSY_SOURCE.format(limit=self.limit_s)],
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )
        time.sleep(0.3)  # let it start spinning
        return self

    def __exit__(self, *exc):
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


# --------------------------------------------------------------------------- the run


def run_suite(args) -> Dict[str, Any]:
    import fastconv as fc

    fc.available_backends()
    threads = args.threads or fc.get_num_threads()
    layers = make_layers(args.suite, args.torch)
    modes = args.modes
    samples: Dict[str, Dict[str, Dict[str, List[float]]]] = {
        m: {name: {"dflt": [], "1t": [], "1t'": [], "torch": []} for name, _, _ in layers}
        for m in modes
    }
    # threads each default-thread call used (C engine's thread pool; absent in older builds)
    from fastconv.backends import c as c_engine

    last_team = getattr(c_engine.lib, "fc_last_team", None)
    teams: Dict[str, Dict[str, List[int]]] = {m: {name: [] for name, _, _ in layers} for m in modes}
    idle = args.idle_ms / 1e3
    cpu = max(os.sched_getaffinity(0))
    per_block = len(layers) * (2 + args.aa + args.torch) * (idle + 0.05) + 1.0

    def timed(call: Callable[[], Any]) -> float:
        time.sleep(idle)
        t0 = time.perf_counter()
        call()
        return time.perf_counter() - t0

    for _name, call, tcall in layers:  # warm-up: buffers, shape caches, thread start
        for n in (threads, 1):
            fc.set_num_threads(n)
            call()
        if tcall is not None:
            tcall()
    load_before = loadavg()
    for mode in modes:  # one phase per mode: the quiet one is not just after a busy one
        busy = Busy(cpu, per_block * args.rounds + 5) if mode == "busy" else None
        if busy:
            busy.__enter__()
        try:
            for rnd in range(args.rounds):
                for name, call, tcall in layers:
                    order = ["dflt", "1t"] + (["1t'"] if args.aa else [])
                    order = order[rnd % len(order) :] + order[: rnd % len(order)]
                    for key in order:
                        fc.set_num_threads(threads if key == "dflt" else 1)
                        samples[mode][name][key].append(timed(call))
                        if key == "dflt" and last_team is not None:
                            teams[mode][name].append(last_team())
                    if tcall is not None:
                        samples[mode][name]["torch"].append(timed(tcall))
        finally:
            if busy:
                busy.__exit__()
    fc.set_num_threads(threads)
    load_after = loadavg()

    rows = []
    for mode in modes:
        for name, _, _ in layers:
            s = samples[mode][name]
            d, o = statistics.median(s["dflt"]), statistics.median(s["1t"])
            p90 = sorted(s["dflt"])[int(0.9 * (len(s["dflt"]) - 1))]
            row = {
                "mode": mode,
                "layer": name,
                "dflt_ms": d * 1e3,
                "one_ms": o * 1e3,
                "ratio": d / o,
                "dflt_p90_ms": p90 * 1e3,
                "samples_ms": {k: [round(v * 1e3, 4) for v in vs] for k, vs in s.items() if vs},
            }
            if s["torch"]:
                row["torch_ms"] = statistics.median(s["torch"]) * 1e3
            if s["1t'"]:
                row["aa"] = o / statistics.median(s["1t'"])
            if teams[mode][name]:
                row["shared"] = sum(t > 1 for t in teams[mode][name]) / len(teams[mode][name])
                row["teams"] = teams[mode][name]
            rows.append(row)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "busy_cpu": cpu,
        "threads": threads,
        "suite": args.suite,
        "rounds": args.rounds,
        "idle_ms": args.idle_ms,
        "torch_imported": "torch" in sys.modules,
        "libgomp": gomp_mapped(),
        "load_before": load_before,
        "load_after": load_after,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "rows": rows,
    }


def print_report(rec: Dict[str, Any]) -> None:
    print(
        f"{rec['date']}  {rec['cpu']}  {rec['cpus']} CPUs  threads {rec['threads']}  "
        f"suite {rec['suite']}  {rec['rounds']} rounds  idle {rec['idle_ms']} ms  "
        f"torch imported: {rec['torch_imported']}"
    )
    print(
        f"load average before {rec['load_before']}, after {rec['load_after']}; "
        f"busy process on CPU {rec['busy_cpu']}; libgomp: {', '.join(rec['libgomp']) or '-'}"
    )
    has_torch = any("torch_ms" in r for r in rec["rows"])
    has_shared = any("shared" in r for r in rec["rows"])
    has_aa = any("aa" in r for r in rec["rows"])
    head = f"{'mode':6s} {'layer':28s} {'dflt ms':>8s} {'1t ms':>8s} {'dflt/1t':>8s} {'p90':>8s} {'speed-up':>8s}"
    head += f" {'shared':>6s}" if has_shared else ""
    head += f" {'A/A':>5s}" if has_aa else ""
    print(head + (f" {'torch ms':>9s}" if has_torch else ""))
    for r in rec["rows"]:
        flag = ""
        if r["mode"] == "busy":
            flag = "  ok" if r["ratio"] <= BAR else "  OVER"
        line = (
            f"{r['mode']:6s} {r['layer']:28s} {r['dflt_ms']:8.3f} {r['one_ms']:8.3f} "
            f"{r['ratio']:8.2f} {r['dflt_p90_ms']:8.3f} {1 / r['ratio']:8.2f}"
        )
        if has_shared:
            line += f" {r['shared']:6.0%}" if "shared" in r else f" {'-':>6s}"
        if has_aa:
            line += f" {r['aa']:5.2f}"
        if has_torch:
            line += f" {r.get('torch_ms', float('nan')):9.3f}"
        print(line + flag)
    busy = [r for r in rec["rows"] if r["mode"] == "busy"]
    if busy:
        over = [r["layer"] for r in busy if r["ratio"] > BAR]
        print(
            f"busy mode, bar dflt/1t <= {BAR}: "
            + (
                "met on every layer"
                if not over
                else f"NOT met on {len(over)} of {len(busy)}: {', '.join(over)}"
            )
        )


def compare_torch_import(args) -> Dict[str, Any]:
    """Alternate child runs with and without `import torch` first; merge their samples."""
    child = [
        sys.executable,
        os.path.abspath(__file__),
        "--suite",
        args.suite,
        "--modes",
        "quiet",
        "--rounds",
        "1",
        "--idle-ms",
        str(args.idle_ms),
        "--json",
        "-",
    ]
    if args.threads:
        child += ["--threads", str(args.threads)]
    runs: Dict[str, List[Dict[str, Any]]] = {"no torch": [], "torch first": []}
    for rnd in range(args.rounds):
        order = ("no torch", "torch first") if rnd % 2 == 0 else ("torch first", "no torch")
        for key in order:
            cmd = child + (["--import-torch"] if key == "torch first" else [])
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[key].append(json.loads(out))
    rows = []
    names = [r["layer"] for r in runs["no torch"][0]["rows"]]
    for name in names:
        row: Dict[str, Any] = {"layer": name}
        for key, recs in runs.items():
            for k in ("dflt", "1t"):
                vals = [
                    v
                    for rec in recs
                    for r in rec["rows"]
                    if r["layer"] == name
                    for v in r["samples_ms"][k]
                ]
                row[f"{key} {k} ms"] = statistics.median(vals)
        rows.append(row)
    return {
        "date": runs["no torch"][0]["date"],
        "cpu": cpu_model(),
        "suite": args.suite,
        "rounds": args.rounds,
        "idle_ms": args.idle_ms,
        "libgomp": {k: v[0]["libgomp"] for k, v in runs.items()},
        "threads": runs["no torch"][0]["threads"],
        "rows": rows,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
    }


def print_compare(rec: Dict[str, Any]) -> None:
    print(
        f"{rec['date']}  {rec['cpu']}  threads {rec['threads']}  suite {rec['suite']}  "
        f"{rec['rounds']} child runs each  idle {rec['idle_ms']} ms"
    )
    for k, v in rec["libgomp"].items():
        print(f"  {k:12s} libgomp mapped: {', '.join(v) or '-'}")
    print(
        f"{'layer':28s} {'no torch':>9s} {'torch 1st':>9s} {'ratio':>6s}   "
        f"{'1t no':>8s} {'1t torch':>8s}"
    )
    for r in rec["rows"]:
        a, b = r["no torch dflt ms"], r["torch first dflt ms"]
        print(
            f"{r['layer']:28s} {a:9.3f} {b:9.3f} {b / a:6.2f}   {r['no torch 1t ms']:8.3f} "
            f"{r['torch first 1t ms']:8.3f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", default="issue", choices=("issue", "resnet50", "model"))
    ap.add_argument("--modes", default="quiet,busy", type=lambda s: s.split(","))
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--idle-ms", type=float, default=50.0)
    ap.add_argument("--threads", type=int, default=0, help="default: fastconv's default")
    ap.add_argument("--torch", action="store_true", help="also time torch's equivalent calls")
    ap.add_argument(
        "--aa", action="store_true", help="a second 1-thread series: the noise floor (A/A)"
    )
    ap.add_argument("--import-torch", action="store_true", help="import torch before fastconv")
    ap.add_argument("--compare-torch-import", action="store_true")
    ap.add_argument("--json", help="write the figures here ('-': stdout, no table)")
    args = ap.parse_args()
    if set(args.modes) - {"quiet", "busy"}:
        ap.error("--modes takes quiet and/or busy")
    if args.compare_torch_import:
        rec = compare_torch_import(args)
        print_compare(rec)
    else:
        if args.import_torch:
            import torch  # noqa: F401  (before fastconv: its libgomp is then the one loaded)
        rec = run_suite(args)
        if args.json == "-":
            json.dump(rec, sys.stdout)
            return
        print_report(rec)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rec, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
