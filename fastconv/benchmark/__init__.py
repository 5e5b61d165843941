"""The benchmark harness behind ``fastconv bench``: probe, check, time, tabulate.

For each layer of a suite (``fastconv._bench_layers``) the harness

1. computes the expected output once, in float64, with the reference engine (or with
   PyTorch in float64 for layers over ``REF_MAX_MACS`` when it is installed);
2. calls every runner once (fastconv engines, the NumPy baseline, torch) and checks its
   output against the expected one: shape, dtype, finiteness, and the largest error relative
   to the largest expected magnitude. A mismatch is WRONG and is not timed; an engine that
   lacks the op is "n/a"; an exception is "error";
3. calls each runner once more to warm it up, and picks how many calls make one sample
   (at least ``MIN_SAMPLE_S`` long, so the clock's resolution does not matter);
4. takes ``repeat`` samples of every runner, interleaved (round r starts with runner r mod n,
   so every runner sees the same machine load on average), and keeps the median. The NumPy
   baseline is the exception: OpenBLAS's worker threads keep spinning for a while after each
   call, which starves the next runner's threads when there are as many threads as cores, so
   its samples are taken in one block after the interleaved rounds. Before each interleaved
   sample the harness waits ``SETTLE_S`` (the other runners' OpenMP threads, which spin for
   a few milliseconds after a call, go to sleep) and makes one untimed call of the same
   runner (which wakes its own thread pool): each runner is timed as if alone on the
   machine, with its threads awake, as in a loop of calls.

Figures per runner: milliseconds per call, GFLOP/s (2 * MACs / time), GB/s (least traffic
/ time), % of the roofline bound max(flops / FMA peak, bytes / copy bandwidth) over the
threads used, and speed-ups over NumPy and torch, all from the same run. The speed-up over
torch is the median of the per-round ratios (each round times every interleaved runner once,
so a disturbance that slows a whole round cancels out); the one over NumPy, timed in its own
block, is the ratio of the medians.
"""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import json
import math
import os
import platform
import re
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO

import numpy as np

import fastconv

from ..backends import _registry
from .baselines import run_fastconv, run_numpy, run_torch
from .layers import Case

#: Layers with more multiply-adds than this are checked against torch in float64 (when
#: installed) instead of the slower reference engine.
REF_MAX_MACS = 10**9
#: Shortest sample: calls are repeated within one sample until it lasts this long.
MIN_SAMPLE_S = 0.002
#: Busy pause before each interleaved sample. OpenMP runtimes (the C engine's, numba's and
#: torch's each have their own) keep their threads spinning for a few milliseconds after a
#: parallel region, and with as many threads as cores those threads slow the next runner's:
#: on 2 cores a 53 us torch call took 79 us right after a C engine call, and 56 us after a
#: 3 ms pause. The pause spins rather than sleeps: after a sleep the idle virtual CPUs of
#: the test machine woke only on the next 4 ms scheduler tick (samples of 8, 16, 32 ms).
SETTLE_S = 0.003
#: Largest error, relative to the largest expected magnitude, accepted per dtype.
TOLERANCE = {"float32": 1e-3, "float64": 1e-9}
#: Names of the two comparators (they are not fastconv engines).
BASELINES = ("numpy", "torch")


class NotAvailable(Exception):
    """The runner cannot run this op here (shown as n/a)."""


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


# --------------------------------------------------------------------------- the machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _openblas():
    """(set, get) of NumPy's OpenBLAS thread count, or None when it cannot be found."""
    try:
        with open("/proc/self/maps") as f:
            libs = sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", f.read())))
    except OSError:
        return None
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_", "64_"), ("", "64_"), ("", ""), ("scipy_", "")):
            setter = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
            getter = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            if setter is not None and getter is not None:
                setter.argtypes = [ctypes.c_int]
                return setter, getter
    return None


def set_threads(n: int) -> None:
    """Use ``n`` threads in fastconv's engines, NumPy's OpenBLAS (when found) and torch."""
    fastconv.set_num_threads(n)
    blas = _openblas()
    if blas is not None:
        blas[0](n)
    if torch_installed():
        import torch

        torch.set_num_threads(n)


def _describe_kernels() -> str:
    """The C engine's own account of the kernels it picked (cpu_info), if it has one."""
    mod = _registry._load("c")
    info = getattr(mod, "cpu_info", None) if mod is not None else None
    if info is None:
        return "n/a (C engine has no cpu_info)" if mod is not None else "n/a (no C engine)"
    try:
        value = info()
    except Exception as exc:  # a half-written engine must not stop the benchmark
        return f"n/a (cpu_info failed: {exc})"
    if isinstance(value, dict) and "gemm_kernel" in value:
        tile = value.get("micro_tile", {}).get("float32")
        tile_s = f" {tile[0]}x{tile[1]} micro-tile (fp32)" if tile else ""
        return f"C GEMM {value['gemm_kernel']}{tile_s}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def probe_peak(threads: int) -> Dict[str, Any]:
    """Measured single-core float32 FMA peak and copy bandwidth (csrc/probe.c).

    The peak is the best of several short runs (others may share the core) times
    ``threads``; float64 peaks are half (same FMA rate, half the lanes).
    """
    out: Dict[str, Any] = {
        "isa": None,
        "fma_gflops_core": None,
        "fma_gflops": None,
        "bandwidth_gbs": None,
        "probe": "csrc/probe.c",
    }
    try:
        from .._fastconv_c import ffi, lib

        if not hasattr(lib, "fc_probe_fma_peak"):
            raise ImportError("extension built without csrc/probe.c")
    except ImportError:
        out["probe"] = "numpy copy (no compiled probe: FMA peak unknown)"
        out["bandwidth_gbs"] = _numpy_bandwidth()
        return out
    isa = lib.fc_probe_best_isa()
    out["isa"] = {2: "avx512f", 1: "avx2+fma", 0: "portable"}.get(isa, str(isa))
    iters = 200_000
    while True:  # size the run to about 20 ms
        t0 = time.perf_counter()
        lib.fc_probe_fma_peak(-1, iters)
        if time.perf_counter() - t0 > 0.005 or iters > 10**9:
            break
        iters *= 4
    iters = int(iters * 0.02 / max(time.perf_counter() - t0, 1e-6))
    best = max(lib.fc_probe_fma_peak(-1, iters) for _ in range(7))
    out["fma_gflops_core"] = best
    out["fma_gflops"] = best * threads
    n = 1 << 24  # 64 MiB per array: larger than the last-level caches of most CPUs
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    out["bandwidth_gbs"] = lib.fc_probe_copy_bandwidth(
        ffi.cast("float *", dst.ctypes.data),
        ffi.cast("const float *", src.ctypes.data),
        n,
        5,
        threads,
    )
    return out


def _numpy_bandwidth() -> float:
    src = np.ones(1 << 24, np.float32)
    dst = np.empty_like(src)
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best * 1e-9


def machine_info(threads: int, with_torch: bool = True) -> Dict[str, Any]:
    info: Dict[str, Any] = {
        "cpu": _cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "threads": threads,
        "kernels": _describe_kernels(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "fastconv": fastconv.__version__,
        "engines": fastconv.available_backends(),
    }
    try:
        info["load_average_1min"] = os.getloadavg()[0]
    except OSError:
        info["load_average_1min"] = None
    blas = _openblas()
    info["numpy_blas_threads"] = int(blas[1]()) if blas is not None else None
    if with_torch and torch_installed():
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    info.update(probe_peak(threads))
    return info


# --------------------------------------------------------------------------- checking


def expected(case: Case, arrays: Dict[str, np.ndarray], use_torch: bool) -> tuple:
    """(float64 output, what computed it)."""
    a64 = {k: v.astype(np.float64) for k, v in arrays.items()}
    if case.macs > REF_MAX_MACS and use_torch:
        return run_torch(case, a64), "torch float64"
    return run_fastconv(case, a64, "reference"), "reference float64"


def check(y: Any, ref: np.ndarray, dtype: np.dtype) -> tuple:
    """(status, error): status "ok" or "WRONG: why"; error = max|y - ref| / max|ref|."""
    if not isinstance(y, np.ndarray):
        return f"WRONG: returned {type(y).__name__}", None
    if y.shape != ref.shape:
        return f"WRONG: shape {y.shape}, expected {ref.shape}", None
    if y.dtype != dtype:
        return f"WRONG: dtype {y.dtype}, expected {dtype}", None
    if not np.all(np.isfinite(y)):
        return "WRONG: non-finite values", None
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    err = float(np.max(np.abs(y.astype(np.float64) - ref))) / max(scale, 1e-30) if ref.size else 0.0
    if err > TOLERANCE[dtype.name]:
        return f"WRONG: error {err:.1e}", err
    return "ok", err


# --------------------------------------------------------------------------- timing


@dataclass
class Runner:
    label: str  # engine name, "numpy" or "torch"
    fn: Callable[[], Any]
    interleave: bool = True  # False: timed in a block of its own, after the others


def _time_calls(fn: Callable[[], Any], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def _spin(seconds: float) -> None:
    """Wait ``seconds`` without sleeping (see SETTLE_S)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _speedup(base: Dict[str, Any], res: Dict[str, Any]) -> float:
    """base's time over res's. Runners timed in the same interleaved rounds are compared
    round by round (the median of the per-round ratios), which cancels the machine's drift
    between rounds (another process waking up slows every runner of a round alike); others
    (the NumPy baseline, timed in its own block) by the ratio of their medians."""
    sb, sr = base.get("samples_s"), res.get("samples_s")
    if base.get("interleaved") and res.get("interleaved") and sb and sr and len(sb) == len(sr):
        return statistics.median(b / r for b, r in zip(sb, sr))
    return base["median_s"] / res["median_s"]


def time_interleaved(runners: Sequence[Runner], repeat: int, budget_s: float) -> Dict[str, Dict]:
    """Warm up, then ``repeat`` interleaved samples of each runner (fewer, but at least 3,
    when that would take over ``budget_s``). Returns per-runner stats in seconds per call."""
    calls: Dict[str, int] = {}
    per_round = 0.0
    for r in runners:
        t = _time_calls(r.fn, 1)  # warm-up (the check call was the first)
        calls[r.label] = max(1, math.ceil(MIN_SAMPLE_S / max(t, 1e-9)))
        per_round += t * calls[r.label]
    rounds = max(1, repeat)
    if per_round * rounds > budget_s:
        rounds = max(min(3, rounds), int(budget_s / max(per_round, 1e-9)))
    samples: Dict[str, List[float]] = {r.label: [] for r in runners}
    gc_was = gc.isenabled()
    gc.disable()
    mixed = [r for r in runners if r.interleave]
    try:
        for i in range(rounds):
            k = i % max(len(mixed), 1)
            for r in mixed[k:] + mixed[:k]:
                _spin(SETTLE_S)  # the previous runner's threads stop spinning
                r.fn()  # lead-in: wakes this runner's threads
                samples[r.label].append(_time_calls(r.fn, calls[r.label]))
        for r in runners:
            if not r.interleave:
                for _ in range(rounds):
                    samples[r.label].append(_time_calls(r.fn, calls[r.label]))
    finally:
        if gc_was:
            gc.enable()
    return {
        label: {
            "median_s": statistics.median(s),
            "min_s": min(s),
            "samples_s": s,
            "calls_per_sample": calls[label],
            "interleaved": label in {r.label for r in mixed},
        }
        for label, s in samples.items()
    }


# --------------------------------------------------------------------------- one case


def _engine_runner(case: Case, arrays, engine: str) -> Runner:
    return Runner(engine, lambda: run_fastconv(case, arrays, engine))


def _first_call(fn: Callable[[], Any]) -> tuple:
    """(output, seconds, None) or (None, seconds, (status, message))."""
    t0 = time.perf_counter()
    try:
        y = fn()
    except NotImplementedError as exc:
        return None, time.perf_counter() - t0, ("n/a", str(exc) or "not implemented")
    except ValueError as exc:
        msg = str(exc)
        if "does not implement" in msg or "unavailable" in msg:
            return None, time.perf_counter() - t0, ("n/a", msg)
        return None, time.perf_counter() - t0, ("error", f"ValueError: {msg}")
    except Exception as exc:  # an engine being written must not stop the others' figures
        return None, time.perf_counter() - t0, ("error", f"{type(exc).__name__}: {exc}")
    return y, time.perf_counter() - t0, None


def bench_case(
    case: Case,
    engines: Sequence[str],
    baselines: Sequence[str],
    dtype: Any,
    repeat: int,
    machine: Dict[str, Any],
    budget_s: float = 4.0,
) -> Dict[str, Any]:
    """Check and time one case on every engine and baseline; returns its JSON record."""
    dt = np.dtype(dtype)
    arrays = case.arrays(dt)
    ref, ref_by = expected(case, arrays, "torch" in baselines)
    runners = [_engine_runner(case, arrays, e) for e in engines]
    if "numpy" in baselines:
        runners.append(Runner("numpy", lambda: run_numpy(case, arrays), interleave=False))
    if "torch" in baselines:
        runners.append(Runner("torch", lambda: run_torch(case, arrays)))

    results: Dict[str, Dict[str, Any]] = {}
    timed = []
    for r in runners:
        y, first, failure = _first_call(r.fn)
        res: Dict[str, Any] = {"first_call_ms": first * 1e3}
        if failure is not None:
            res["status"], res["message"] = failure
        else:
            res["status"], res["error"] = check(y, ref, dt)
            if res["status"] == "ok":
                timed.append(r)
        results[r.label] = res
    if timed:
        for label, stats in time_interleaved(timed, repeat, budget_s).items():
            results[label].update(stats)

    flops, nbytes = case.flops, case.bytes(dt.itemsize)
    peak = machine.get("fma_gflops")
    if peak and dt == np.float64:
        peak /= 2
    bw = machine.get("bandwidth_gbs")
    t_compute = flops / (peak * 1e9) if peak else None
    t_memory = nbytes / (bw * 1e9) if bw else None
    bounds = [t for t in (t_compute, t_memory) if t is not None]
    roof_s = max(bounds) if bounds else None
    bound = None
    if t_compute is not None and t_memory is not None:
        bound = "compute" if t_compute >= t_memory else "memory"
    elif t_memory is not None:
        bound = "memory"
    base = {b: results[b].get("median_s") for b in BASELINES if b in results}
    for res in results.values():
        t = res.get("median_s")
        if t is None:
            continue
        res["ms"] = t * 1e3
        res["gflops"] = flops / t * 1e-9 if flops else None
        res["gbs"] = nbytes / t * 1e-9
        res["pct_roof"] = 100 * roof_s / t if roof_s else None
        for b, tb in base.items():
            res[f"speedup_vs_{b}"] = _speedup(results[b], res) if tb else None
    return {
        "name": case.name,
        "call": case.describe(),
        "params": case.params(),
        "dtype": dt.name,
        "macs": case.macs,
        "flops": flops,
        "bytes": nbytes,
        "bound": bound,
        "roofline_ms": roof_s * 1e3 if roof_s else None,
        "checked_against": ref_by,
        "results": results,
    }


# --------------------------------------------------------------------------- a suite


def resolve_engines(requested: Optional[Sequence[str]]) -> List[str]:
    """The fastconv engines to time: the requested ones (each must be available), or by
    default the compiled engines (c, numba) that are available."""
    avail = fastconv.available_backends()
    if requested is None:
        return [e for e in ("c", "numba") if avail.get(e, "").startswith("available")]
    out = []
    for e in requested:
        if e not in avail:
            raise ValueError(f"unknown engine {e!r}; choose from {', '.join(avail)}")
        if not avail[e].startswith("available"):
            raise ValueError(f"engine {e!r} is {avail[e]}")
        if e not in out:
            out.append(e)
    return out


def resolve_baselines(requested: Optional[Sequence[str]]) -> List[str]:
    """NumPy always (unless excluded); torch when installed. Asking for torch without it
    installed is an error."""
    if requested is None:
        return ["numpy"] + (["torch"] if torch_installed() else [])
    out = []
    for b in requested:
        if b == "none":
            continue
        if b not in BASELINES:
            raise ValueError(f"unknown baseline {b!r}; choose from numpy, torch, none")
        if b == "torch" and not torch_installed():
            raise ValueError("baseline 'torch' needs PyTorch, which is not installed")
        if b not in out:
            out.append(b)
    return out


def run_suite(
    cases: Sequence[Case],
    engines: Sequence[str],
    baselines: Sequence[str],
    dtype: Any = "float32",
    repeat: int = 7,
    threads: Optional[int] = None,
    progress: Optional[TextIO] = None,
    suite: str = "",
) -> Dict[str, Any]:
    """Benchmark ``cases``; returns the whole report (the JSON document)."""
    start = time.perf_counter()
    if threads is not None:
        set_threads(threads)
    n_threads = threads if threads is not None else fastconv.get_num_threads()
    if "torch" in baselines:
        import torch

        if threads is None:
            torch.set_num_threads(n_threads)
    machine = machine_info(n_threads, "torch" in baselines)
    report: Dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "suite": suite,
        "dtype": np.dtype(dtype).name,
        "repeat": repeat,
        "engines": list(engines),
        "baselines": list(baselines),
        "method": (
            "check against float64 reference, warm-up, then interleaved samples "
            f"(each >= {MIN_SAMPLE_S * 1e3:g} ms), median"
        ),
        "machine": machine,
        "cases": [],
    }
    for i, case in enumerate(cases, 1):
        if progress is not None:
            print(f"[{i}/{len(cases)}] {case.name}", file=progress, flush=True)
        report["cases"].append(bench_case(case, engines, baselines, dtype, repeat, machine))
    report["summary"] = summarize(report)
    report["elapsed_s"] = time.perf_counter() - start
    return report


def summarize(report: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Per runner: geometric-mean speed-up over each baseline across the cases it passed."""
    out: Dict[str, Dict[str, Any]] = {}
    labels = list(report["engines"]) + list(report["baselines"])
    for label in labels:
        row: Dict[str, Any] = {}
        for b in report["baselines"]:
            vals = [
                c["results"][label].get(f"speedup_vs_{b}")
                for c in report["cases"]
                if label in c["results"]
            ]
            vals = [v for v in vals if v]
            row[f"geomean_speedup_vs_{b}"] = (
                math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None
            )
            row["cases_timed"] = len(vals)
        statuses = [c["results"][label]["status"] for c in report["cases"] if label in c["results"]]
        row["wrong"] = sum(s.startswith("WRONG") for s in statuses)
        row["errors"] = sum(s == "error" for s in statuses)
        row["n/a"] = sum(s == "n/a" for s in statuses)
        out[label] = row
    return out


# --------------------------------------------------------------------------- output


def _num(v: Optional[float], fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _ms(v: Optional[float]) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def machine_line(m: Dict[str, Any]) -> str:
    peak = (
        f"FMA peak {m['fma_gflops_core']:.1f} GFLOP/s/core x {m['threads']} = "
        f"{m['fma_gflops']:.0f} GFLOP/s fp32"
        if m.get("fma_gflops")
        else "FMA peak unknown"
    )
    bw = f"copy {m['bandwidth_gbs']:.1f} GB/s" if m.get("bandwidth_gbs") else "bandwidth unknown"
    isa = f" ({m['isa']})" if m.get("isa") else ""
    load = m.get("load_average_1min")
    busy = ""
    if load is not None:
        busy = f"; load {load:.1f}" + (
            " (BUSY: other work shares the cores, figures are noisy)"
            if load > 0.5 * (m.get("cores") or 1)
            else ""
        )
    return (
        f"machine: {m['cpu']}, {m['cores']} cores{isa}; kernels: {m['kernels']}; "
        f"{m['threads']} thread(s); {peak}; {bw}{busy}"
    )


def format_report(report: Dict[str, Any]) -> str:
    m = report["machine"]
    blas = m.get("numpy_blas_threads")
    lines = [
        f"fastconv bench: suite {report['suite'] or '-'}, {report['dtype']}, "
        f"median of {report['repeat']} interleaved samples",
        machine_line(m),
        "baselines: numpy "
        + m["numpy"]
        + " (sliding_window_view + einsum"
        + (f", OpenBLAS {blas} threads)" if blas else ")")
        + (
            f"; torch {m['torch']} ({m['torch_threads']} threads)"
            if "torch" in report["baselines"]
            else "; torch not run"
        ),
        "%roof: share of the roofline bound max(flops/peak, bytes/bandwidth); "
        "xnumpy/xtorch: speed-up (>1 = faster)",
    ]
    head = (
        f"  {'engine':<10}{'ms':>10}{'GFLOP/s':>10}{'GB/s':>8}{'%roof':>7}"
        f"{'xnumpy':>9}{'xtorch':>9}  check"
    )
    for c in report["cases"]:
        lines.append("")
        work = (
            (f"{c['flops'] / 1e9:.3g} GFLOP, " if c["flops"] else "")
            + f"{c['bytes'] / 1e6:.3g} MB"
            + (f", {c['bound']}-bound" if c["bound"] else "")
        )
        lines.append(f"{c['name']}   [{c['call']}; {work}]")
        lines.append(head)
        for label, r in c["results"].items():
            if "ms" in r:
                err = f" {r['error']:.0e}" if r.get("error") is not None else ""
                lines.append(
                    f"  {label:<10}{_ms(r['ms']):>10}{_num(r['gflops'], '.1f'):>10}"
                    f"{_num(r['gbs'], '.1f'):>8}{_num(r['pct_roof'], '.0f'):>7}"
                    f"{_num(r.get('speedup_vs_numpy'), '.2f'):>9}"
                    f"{_num(r.get('speedup_vs_torch'), '.2f'):>9}  ok{err}"
                )
            else:
                why = (
                    r["status"]
                    if r["status"].startswith("WRONG")
                    else f"{r['status']}: {r.get('message', '')}"
                )
                lines.append(f"  {label:<10}{'':>53}  {_clip(why, 70)}")
    lines.append("")
    lines.append("summary (geometric mean of speed-ups over the cases each engine passed):")
    for label, s in report["summary"].items():
        parts = [
            f"x{s[k]:.2f} vs {k.rsplit('_', 1)[1]}"
            for k in s
            if k.startswith("geomean") and s[k] and not k.endswith("_" + label)
        ]
        bad = [f"{s[k]} {k}" for k in ("wrong", "errors", "n/a") if s[k]]
        lines.append(
            f"  {label:<10}" + (", ".join(parts) or "-") + (f"  ({', '.join(bad)})" if bad else "")
        )
    if report.get("model"):
        lines.append("")
        lines += format_model(report["model"])
    lines.append("")
    lines.append(f"elapsed {report['elapsed_s']:.1f} s")
    return "\n".join(lines)


def _clip(s: str, n: int) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 3] + "..."


def write_json(report: Dict[str, Any], path: str) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=1, default=str)
        f.write("\n")


def require_matplotlib() -> None:
    """Raise a clear error now, before a long run, if --plot cannot be honoured."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError(
            "--plot needs matplotlib, which is not installed: pip install matplotlib "
            "(or pip install 'fastconv[plot]')"
        ) from None


def plot(report: Dict[str, Any], path: str) -> None:
    """Horizontal bars: each runner's speed-up over NumPy per case, log scale."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [lb for lb in list(report["engines"]) + list(report["baselines"]) if lb != "numpy"]
    cases = report["cases"]
    fig, ax = plt.subplots(figsize=(9, 0.45 * max(1, len(cases)) * max(1, len(labels)) + 1.5))
    height = 0.8 / max(1, len(labels))
    for j, label in enumerate(labels):
        vals = [c["results"].get(label, {}).get("speedup_vs_numpy") or 0.0 for c in cases]
        ys = [i + j * height for i in range(len(cases))]
        ax.barh(ys, vals, height=height, label=label)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(cases))])
    ax.set_yticklabels([c["name"] for c in cases], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="k", lw=0.8)
    if any(c["results"].get(lb, {}).get("speedup_vs_numpy") for c in cases for lb in labels):
        ax.set_xscale("log")
    ax.set_xlabel("speed-up over the NumPy baseline (sliding_window_view + einsum)")
    m = report["machine"]
    ax.set_title(
        f"fastconv bench, {report['dtype']}, {m['threads']} threads, {m['cpu']}", fontsize=9
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- a whole model


MODELS = ("resnet50",)


def bench_model(
    name: str,
    engines: Sequence[str],
    baselines: Sequence[str],
    dtype: Any,
    repeat: int,
    progress: Optional[TextIO] = None,
) -> Dict[str, Any]:
    """Time one forward pass of a model of ``fastconv.models`` per engine (and torch)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    try:
        from .. import models
    except ImportError as exc:
        raise ValueError(f"--model needs fastconv.models, which is not available: {exc}") from None
    build = getattr(models, name, None)
    if build is None:
        raise ValueError(f"--model {name}: fastconv.models has no {name}()")
    from .models import model_runners

    return model_runners(name, build, engines, baselines, dtype, repeat, progress)


def format_model(rec: Dict[str, Any]) -> List[str]:
    lines = [
        f"model {rec['model']} forward, input {tuple(rec['input'])}, {rec['dtype']}"
        f" [{rec.get('gflop', 0):.3g} GFLOP]"
    ]
    lines.append(f"  {'engine':<10}{'ms':>10}{'GFLOP/s':>10}{'xtorch':>9}  check")
    for label, r in rec["results"].items():
        if "ms" in r:
            lines.append(
                f"  {label:<10}{_ms(r['ms']):>10}{_num(r.get('gflops'), '.1f'):>10}"
                f"{_num(r.get('speedup_vs_torch'), '.2f'):>9}  {r['status']}"
            )
        else:
            why = _clip(r["status"] + ": " + r.get("message", ""), 70)
            lines.append(f"  {label:<10}{'':>29}  {why}")
    return lines
