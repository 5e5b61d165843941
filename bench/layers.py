"""Shared by the bench_*.py files: the layer suite of ``fastconv bench``, the runners
(fastconv engines x variants, the NumPy baseline, torch) and one checked, timed call.

Two modes, chosen by pytest-benchmark's ``--benchmark-disable`` (on in pytest's addopts):

- disabled (plain ``pytest``): a smoke test; every layer shrunk with ``Case.tiny()``
  (duplicates dropped), each runner called once and checked against the reference engine;
- enabled (``pytest bench/ --benchmark-enable``): the real layers, timed by pytest-benchmark,
  grouped per layer, with GFLOP/s and GB/s in ``extra_info``.

Run: ``pytest bench/bench_conv2d.py --benchmark-enable --benchmark-columns=median,ops``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from typing import List, Optional, Tuple

import numpy as np
import pytest

import fastconv
from fastconv.backends._registry import backend_module
from fastconv.benchmark import check, expected
from fastconv.benchmark.baselines import run_fastconv, run_numpy, run_torch
from fastconv.benchmark.layers import CASES, Case

Runner = Tuple[str, Optional[str]]  # (engine or baseline, conv2d variant or None = best)


def engines() -> List[str]:
    """Compiled engines available here; cuda only on a real GPU (not the simulator)."""
    avail = fastconv.available_backends()
    out = [e for e in ("c", "numba") if avail[e].startswith("available")]
    if avail["cuda"] == "available":
        out.append("cuda")
    return out


def variants(engine: str, op: str) -> Tuple[Optional[str], ...]:
    """None (the engine's best) plus the engine's named conv2d variants."""
    if op != "conv2d":
        return (None,)
    mod = backend_module(engine)
    names = getattr(mod, "CONV2D_VARIANTS", ())
    return (None,) + tuple(names)


def fits(case, runner: Runner) -> bool:
    """Whether the runner's conv2d variant runs the case's geometry (Winograd: 3x3 stride 1)."""
    from fastconv.backends._registry import variant_fits

    engine, variant = runner
    if variant is None or case.op != "conv2d":
        return True
    s, d = case.stride, case.dilation
    return variant_fits(backend_module(engine), variant, case.w[2], case.w[3], s, s, d, d)


def runners(op: str, with_variants: bool) -> List[Runner]:
    out: List[Runner] = []
    for e in engines():
        out += [(e, v) for v in (variants(e, op) if with_variants else (None,))]
    out.append(("numpy", None))
    if importlib.util.find_spec("torch") is not None:
        out.append(("torch", None))
    return out


def runner_id(r: Runner) -> str:
    return r[0] if r[1] is None else f"{r[0]}-{r[1]}"


def cases(op: str, smoke: bool, names: Optional[Tuple[str, ...]] = None) -> List[Case]:
    """The suite's layers of ``op`` (only ``names`` if given); tiny and deduplicated in
    smoke mode."""
    chosen = [c for c in CASES if c.op == op and (names is None or c.name in names)]
    if not smoke:
        return chosen
    seen, out = set(), []
    for c in chosen:
        t = c.tiny()
        if t.describe() not in seen:
            seen.add(t.describe())
            out.append(replace(t, name="tiny " + t.describe()))
    return out


def call(case: Case, arrays, runner: Runner):
    name, variant = runner
    if name == "numpy":
        return lambda: run_numpy(case, arrays)
    if name == "torch":
        return lambda: run_torch(case, arrays)
    if variant is not None:
        return lambda: fastconv.conv2d(
            arrays["x"],
            arrays["w"],
            arrays["b"],
            case.stride,
            case.padding,
            case.dilation,
            case.groups,
            backend=name,
            variant=variant,
        )
    return lambda: run_fastconv(case, arrays, name)


def check_and_time(benchmark, case: Case, runner: Runner, dtype=np.float32) -> None:
    """Check the runner's output against the float64 reference, then time it."""
    arrays = case.arrays(dtype)
    fn = call(case, arrays, runner)
    try:
        y = fn()
    except ValueError as exc:
        if "does not implement" in str(exc):
            pytest.skip(f"n/a: {exc}")
        raise
    ref, by = expected(case, arrays, use_torch=importlib.util.find_spec("torch") is not None)
    status, err = check(y, ref, np.dtype(dtype))
    assert status == "ok", f"{runner_id(runner)} on {case.name}: {status} (vs {by})"
    benchmark.group = case.name
    benchmark.extra_info.update(
        call=case.describe(), macs=case.macs, bytes=case.bytes(np.dtype(dtype).itemsize), error=err
    )
    benchmark(fn)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        median = stats.stats.median
        if case.macs:
            benchmark.extra_info["gflops"] = 2 * case.macs / median * 1e-9
        benchmark.extra_info["gbs"] = case.bytes(np.dtype(dtype).itemsize) / median * 1e-9
