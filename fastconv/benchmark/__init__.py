"""The benchmark harness behind ``fastconv bench``: probe, check, time, tabulate.

  layers     the suites: real layers of real networks (Case), their MACs and bytes
  baselines  each op called three ways: fastconv, plain NumPy, PyTorch
  probe      the machine: CPU, FMA peak, bandwidth of each memory level, load; the roofline
  checking   every output against the float64 reference, before anything is timed
  timing     Runner, interleaved timing, speed-ups; numba's kernels compiled before timing
  report     text tables, JSON, the PNG chart
  models     a whole forward pass of a zoo network per engine (``--model``)
  (here)     run: the whole run, case by case; bench_case: one case

For each layer of a suite the harness

1. computes the expected output once, in float64 (``checking.expected``);
2. calls every runner once (fastconv engines, the NumPy baseline, torch) and checks its output
   (``checking.check``). A mismatch is WRONG and is not timed; an engine that lacks the op is
   "n/a"; an exception is "error";
3. times the runners that passed in interleaved rounds and keeps the median
   (``timing.time_interleaved``);
4. hands the case's record to ``on_case`` at once, so each table can be printed as it is done.

The numba engine compiles its kernels on first use, seconds per op, and caches them on disk.
The run compiles what its cases need first, in a background thread (``timing.NumbaWarmup``),
while it does the work that is not timed; no runner is timed until the compiler is done.

Figures per runner: milliseconds per call, GFLOP/s (2 * MACs / time), GB/s (least traffic
/ time), % of the roofline bound (``probe.roofline``) over the threads used, and speed-ups
over NumPy and torch, all from the same run. The speed-up over torch is the median of the
per-round ratios (each round times every interleaved runner once, so a disturbance that slows
a whole round cancels out); the one over NumPy, timed in its own block, is the ratio of the
medians.

Errors: each raised here starts with the function's name, then the parameter at fault.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

import numpy as np

import fastconv

from .baselines import BASELINES, run_fastconv, run_numpy, run_torch, torch_installed
from .checking import REF_MAX_MACS, TOLERANCE, check, expected
from .layers import Case
from .models import INPUT, bench_model, model_names, model_warmup
from .probe import machine_info, roofline, set_threads
from .report import (
    format_case,
    format_footer,
    format_header,
    format_report,
    plot,
    require_matplotlib,
    summarize,
    write_json,
)
from .timing import (
    MIN_SAMPLE_S,
    SETTLE_S,
    NumbaWarmup,
    Runner,
    first_call,
    speedup,
    time_interleaved,
)

__all__ = [
    "BASELINES",
    "INPUT",
    "MIN_SAMPLE_S",
    "REF_MAX_MACS",
    "SETTLE_S",
    "TOLERANCE",
    "Case",
    "Runner",
    "bench_case",
    "bench_model",
    "check",
    "compile_numba",
    "engine_runner",
    "expected",
    "first_call",
    "format_case",
    "format_footer",
    "format_header",
    "format_report",
    "machine_info",
    "model_names",
    "numba_warmup",
    "plot",
    "require_matplotlib",
    "resolve_baselines",
    "resolve_engines",
    "run",
    "run_suite",
    "summarize",
    "time_interleaved",
    "write_json",
]

#: Seconds of timing per case at most (fewer rounds, at least 3, when over).
CASE_BUDGET_S = 4.0
#: Relative numba compile times per op, to share the compiling out evenly between processes
#: (shares of a first run's compile, float32, one op after another in one process: conv2d
#: 34%, depthwise 26%, conv_transpose2d 18%, adaptive_avg_pool2d 12%, max_pool2d 10%).
JIT_WEIGHTS = {
    "conv2d": 4.0,
    "depthwise_conv2d": 3.0,
    "conv_transpose2d": 2.0,
    "separable_conv2d": 0.5,
    "adaptive_avg_pool2d": 1.4,
    "max_pool2d": 1.2,
    "avg_pool2d": 1.2,
}
#: Ops whose numba path runs the kernels of other ops (compiled with them, not apart).
JIT_NEEDS: Dict[str, Tuple[str, ...]] = {"separable_conv2d": ("depthwise_conv2d", "conv2d")}


# --------------------------------------------------------------------------- one case


def engine_runner(case: Case, arrays: Dict[str, np.ndarray], engine: str) -> Runner:
    """The runner that calls ``case``'s op on ``engine``."""
    return Runner(engine, lambda: run_fastconv(case, arrays, engine))


class _Pending:
    """A case between its untimed part (arrays, reference, first calls) and its timing."""

    def __init__(self, case: Case, dtype: np.dtype, baselines: Sequence[str]):
        self.case = case
        self.dtype = dtype
        self.arrays = case.arrays(dtype)
        self.ref, self.ref_by = expected(case, self.arrays, "torch" in baselines)
        self.runners: List[Runner] = []
        self.results: Dict[str, Dict[str, Any]] = {}
        self.passed: List[Runner] = []

    def add(self, r: Runner) -> None:
        self.runners.append(r)

    def first_call(self, r: Runner) -> None:
        """Call ``r`` once and check its output (not timed)."""
        y, seconds, failure = first_call(r.fn)
        res: Dict[str, Any] = {"first_call_ms": seconds * 1e3}
        if failure is not None:
            res["status"], res["message"] = failure
        else:
            res["status"], res["error"] = check(y, self.ref, self.dtype)
            if res["status"] == "ok":
                self.passed.append(r)
        self.results[r.label] = res


def _prepare_case(
    case: Case,
    engines: Sequence[str],
    baselines: Sequence[str],
    dt: np.dtype,
    skip: Sequence[str] = (),
) -> _Pending:
    """The untimed part of a case: its arrays, the reference, every runner's first call and
    check except those of the runners in ``skip`` (left for later)."""
    p = _Pending(case, dt, baselines)
    arrays = p.arrays
    for e in engines:
        p.add(engine_runner(case, arrays, e))
    if "numpy" in baselines:
        p.add(Runner("numpy", lambda: run_numpy(case, arrays), interleave=False))
    if "torch" in baselines:
        p.add(Runner("torch", lambda: run_torch(case, arrays)))
    for r in p.runners:
        if r.label not in skip:
            p.first_call(r)
    return p


def _finish_case(p: _Pending, repeat: int, machine: Dict[str, Any], budget_s: float) -> Dict:
    """The first calls left, the timing, the figures: the case's JSON record."""
    for r in p.runners:
        if r.label not in p.results:
            p.first_call(r)
    results = {r.label: p.results[r.label] for r in p.runners}  # in runner order
    timed = [r for r in p.runners if r in p.passed]
    if timed:
        for label, stats in time_interleaved(timed, repeat, budget_s).items():
            results[label].update(stats)

    case, dt = p.case, p.dtype
    flops, nbytes = case.flops, case.bytes(dt.itemsize)
    roof = roofline(flops, nbytes, dt.itemsize, machine)
    roof_s = roof["seconds"]
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
            res[f"speedup_vs_{b}"] = speedup(results[b], res) if tb else None
    return {
        "name": case.name,
        "call": case.describe(),
        "params": case.params(),
        "dtype": dt.name,
        "macs": case.macs,
        "flops": flops,
        "bytes": nbytes,
        "bound": roof["bound"],
        "roof": roof["roof"],
        "roofline_ms": roof_s * 1e3 if roof_s else None,
        "checked_against": p.ref_by,
        "results": results,
    }


def bench_case(
    case: Case,
    engines: Sequence[str],
    baselines: Sequence[str],
    dtype: Any,
    repeat: int,
    machine: Dict[str, Any],
    budget_s: float = CASE_BUDGET_S,
) -> Dict[str, Any]:
    """Check and time one case on every engine and baseline; returns its JSON record."""
    p = _prepare_case(case, engines, baselines, np.dtype(dtype))
    return _finish_case(p, repeat, machine, budget_s)


# --------------------------------------------------------------------------- choices


def resolve_engines(requested: Optional[Sequence[str]]) -> List[str]:
    """The fastconv engines to time: the requested ones (each must be available), or by
    default the compiled engines (c, numba) that are available."""
    avail = fastconv.available_backends()
    if requested is None:
        return [e for e in ("c", "numba") if avail.get(e, "").startswith("available")]
    out = []
    for e in requested:
        if e not in avail:
            raise ValueError(
                f"resolve_engines: requested holds an unknown engine {e!r}; choose from "
                f"{', '.join(avail)}"
            )
        if not avail[e].startswith("available"):
            raise ValueError(f"resolve_engines: requested engine {e!r} is {avail[e]}")
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
            raise ValueError(
                f"resolve_baselines: requested holds an unknown baseline {b!r}; choose from "
                "numpy, torch, none"
            )
        if b == "torch" and not torch_installed():
            raise ValueError(
                "resolve_baselines: requested baseline 'torch' needs PyTorch, which is not "
                "installed"
            )
        if b not in out:
            out.append(b)
    return out


# --------------------------------------------------------------------------- a run


def numba_warmup(
    cases: Sequence[Case],
    dtype: Any,
    model: Optional[Tuple[str, Sequence[int]]] = None,
    notice: Optional[Callable[[Sequence[str], int], None]] = None,
) -> NumbaWarmup:
    """A NumbaWarmup (not started) for what the run needs: one small call per op of
    ``cases`` (the case shrunk with ``Case.tiny``, same stride, padding and dilation, so the
    same kernels), and one small forward pass of ``model`` = (name, input shape). While it
    compiles, ops not started yet may go to helper processes (``compile_numba``)."""
    dt = np.dtype(dtype)
    specs: Dict[str, Dict[str, Any]] = {}
    for c in cases:
        if c.op not in specs:
            tiny = c.tiny()
            specs[c.op] = {"case": tiny.name, "params": tiny.params()}
    if model is not None:
        specs[f"model {model[0]}"] = {"model": model[0], "input": list(model[1])}
    calls = {op: _warm_call(spec, dt) for op, spec in specs.items()}
    needs: Dict[str, Sequence[str]] = {op: d for op, d in JIT_NEEDS.items() if op in specs}
    if model is not None:
        needs[f"model {model[0]}"] = tuple(op for op in specs if not op.startswith("model"))
    return NumbaWarmup(calls, notice, helper=functools.partial(_start_helper, specs, dt),
                       weights=JIT_WEIGHTS, needs=needs)


def _warm_call(spec: Dict[str, Any], dt: np.dtype) -> Callable[[], Any]:
    """The warm-up call a spec of ``numba_warmup`` describes."""
    if "model" in spec:
        return model_warmup(spec["model"], dt, spec["input"])
    case = Case.from_params(spec["case"], spec["params"])
    return functools.partial(run_fastconv, case, case.arrays(dt), "numba")


def _start_helper(specs: Dict[str, Dict[str, Any]], dt: np.dtype, ops: List[str]) -> Any:
    """Start a process that compiles ``ops`` into numba's cache; None if it cannot start."""
    doc = json.dumps({"dtype": dt.name, "calls": [specs[op] for op in ops]})
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ, FASTCONV_NUM_THREADS="1",
               PYTHONPATH=root + (os.pathsep + path if path else ""))
    code = "import sys; from fastconv.benchmark import compile_numba; compile_numba(sys.argv[1])"
    try:
        return subprocess.Popen(
            [sys.executable, "-c", code, doc],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    except OSError:
        return None


def compile_numba(doc: str) -> None:
    """The helper process of ``numba_warmup``: make the warm-up calls ``doc`` lists (JSON
    {"dtype", "calls"}), which leaves their kernels in numba's on-disk cache."""
    spec = json.loads(doc)
    dt = np.dtype(spec["dtype"])
    for item in spec["calls"]:
        try:
            _warm_call(item, dt)()
        except Exception:  # the run's own call of this op reports what is wrong
            pass


def _say(stream: Optional[TextIO], text: str) -> None:
    if stream is not None:
        print(text, file=stream, flush=True)


def _left(seconds: float) -> str:
    return f"about {seconds:.0f} s left" if seconds >= 1.5 else "about a second left"


def run(
    cases: Sequence[Case],
    engines: Sequence[str],
    baselines: Sequence[str],
    dtype: Any = "float32",
    repeat: int = 7,
    threads: Optional[int] = None,
    progress: Optional[TextIO] = None,
    suite: str = "",
    model: Optional[str] = None,
    input_shape: Sequence[int] = INPUT,
    on_start: Optional[Callable[[Dict[str, Any]], None]] = None,
    on_case: Optional[Callable[[Dict[str, Any]], None]] = None,
    batches: Sequence[int] = (),
) -> Dict[str, Any]:
    """Benchmark ``cases`` (and the zoo network ``model``, if given); returns the whole
    report (the JSON document).

    ``batches``: the model's batch sizes, one timed forward pass each (default: the batch of
    ``input_shape``); the report's "models" holds one record per batch, "model" the first.

    ``on_start(report)`` is called once the machine is probed (the report has no case yet),
    ``on_case(record)`` as each case is done; ``progress`` gets one line per case with an
    estimate of the time left, and a line when numba compiles its kernels.
    """
    start = time.perf_counter()
    dt = np.dtype(dtype)
    if threads is not None:
        set_threads(threads)
    n_threads = threads if threads is not None else fastconv.get_num_threads()
    if "torch" in baselines:
        import torch

        if threads is None:
            torch.set_num_threads(n_threads)
    machine = machine_info(n_threads, "torch" in baselines)  # before anything runs beside it
    report: Dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "suite": suite,
        "dtype": dt.name,
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
    if on_start is not None:
        on_start(report)

    def notice(ops: Sequence[str], helpers: int) -> None:
        where = f", in {helpers + 1} processes" if helpers else ""
        _say(
            progress,
            f"numba: compiling its kernels for {', '.join(ops)} ({dt.name}{where}); this "
            "happens on the first run only, the kernels are cached for later runs (several "
            "seconds per op; nothing is timed meanwhile)",
        )

    warm = None
    if "numba" in engines:
        warm = numba_warmup(cases, dt, (model, input_shape) if model else None, notice).start()
    # while numba compiles, do the untimed part of the cases ahead (never numba's own)
    ahead: Dict[int, _Pending] = {}
    while warm is not None and not warm.done() and len(ahead) < len(cases):
        ahead[len(ahead)] = _prepare_case(cases[len(ahead)], engines, baselines, dt, ("numba",))
    if warm is not None:
        jit_s = warm.wait()
        report["numba_jit"] = {"compiled": warm.compiling, "seconds": jit_s,
                               "per_op_s": warm.seconds, "errors": warm.errors,
                               "helper_processes": len(set(warm.handed_off.values())),
                               "compiled_by_helpers": sorted(warm.handed_off)}
        if warm.compiling:
            _say(progress, f"numba: kernels ready after {jit_s:.1f} s")

    t_cases = time.perf_counter()
    for i, case in enumerate(cases):
        left = ""
        if i:
            per_case = (time.perf_counter() - t_cases) / i
            left = f" ({_left(per_case * (len(cases) - i))})"
        _say(progress, f"[{i + 1}/{len(cases)}] {case.name}{left}")
        p = ahead.pop(i, None) or _prepare_case(case, engines, baselines, dt)
        record = _finish_case(p, repeat, machine, CASE_BUDGET_S)
        report["cases"].append(record)
        if on_case is not None:
            on_case(record)
    report["summary"] = summarize(report)
    if model is not None:
        shape = tuple(input_shape)
        report["models"] = [
            bench_model(model, engines, baselines, dt, repeat, progress, (n,) + shape[1:],
                        before_numba=warm.wait if warm is not None else None)
            for n in (batches or shape[:1])
        ]
        report["model"] = report["models"][0]
    report["elapsed_s"] = time.perf_counter() - start
    return report


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
    """Benchmark ``cases``; returns the whole report (``run`` without a model)."""
    return run(cases, engines, baselines, dtype, repeat, threads, progress, suite)
