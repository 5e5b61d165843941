"""The machine under the benchmark: what it is, what it can do at best, how busy it is.

  cpu_model        the CPU's name (/proc/cpuinfo)
  cache_sizes      L2 (per core) and L3 (shared) sizes from Linux sysfs
  probe_peak       float32 FMA peak and the bandwidth of each memory level, measured by
                   csrc/probe.c (a NumPy copy when the extension lacks the probe)
  machine_info     all of it, plus versions, threads and the load average (the JSON's
                   "machine")
  is_busy          whether the load average says other work shares the cores
  roofline         the bound a case cannot beat here: max(flops / peak, bytes / bandwidth of
                   the level its working set fits in)
  set_threads      one thread count for fastconv, NumPy's OpenBLAS and torch

Why several bandwidths: a benchmark calls one op again and again on the same arrays, so a
working set that fits in a cache is read from that cache after the first call. Measured
against the memory (DRAM) bandwidth alone, global pooling (3.3 MB, inside the L2 of two cores)
showed 178-420% of its roof. Each level is probed on a working set that fits it; a case is
held to the roof of the smallest level that holds its least traffic (inputs, weights and
output once each).
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
import re
import time
from typing import Any, Dict, List, Optional

import numpy as np

import fastconv

from .baselines import torch_installed

#: Largest working set the L3 probe uses (its time grows with the size; 32 MiB is far above
#: any L2 and small enough to allocate anywhere).
L3_PROBE_MAX_BYTES = 32 << 20
#: Each cache-level timing lasts about this long (many passes over the working set).
LEVEL_TIMING_S = 0.002


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cache_sizes() -> Dict[int, int]:
    """{level: bytes} of the data caches of CPU 0 from Linux sysfs: level 2 is per core,
    level 3 shared; {} where sysfs does not say (other systems, some containers)."""
    out: Dict[int, int] = {}
    root = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return out
    for entry in entries:
        if not entry.startswith("index"):
            continue
        try:
            with open(f"{root}/{entry}/level") as f:
                level = int(f.read())
            with open(f"{root}/{entry}/type") as f:
                kind = f.read().strip()
            with open(f"{root}/{entry}/size") as f:
                size = f.read().strip()
        except (OSError, ValueError):
            continue
        m = re.fullmatch(r"(\d+)\s*([KMG]?)", size)
        if kind == "Instruction" or m is None:
            continue
        out[level] = int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]
    return out


def openblas():
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
    blas = openblas()
    if blas is not None:
        blas[0](n)
    if torch_installed():
        import torch

        torch.set_num_threads(n)


def describe_kernels() -> str:
    """The C engine's own account of the kernels it picked (``fastconv.cpu_info()``)."""
    try:
        value = fastconv.cpu_info()
    except Exception as exc:  # a half-written engine must not stop the benchmark
        return f"n/a (cpu_info failed: {exc})"
    if isinstance(value, dict) and value.get("available") is False:
        return f"n/a (no C engine: {value.get('reason', 'unavailable')})"
    if isinstance(value, dict) and "gemm_kernel" in value:
        tile = value.get("micro_tile", {}).get("float32")
        tile_s = f" {tile[0]}x{tile[1]} micro-tile (fp32)" if tile else ""
        return f"C GEMM {value['gemm_kernel']}{tile_s}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


# --------------------------------------------------------------------------- the probes


def probe_peak(threads: int) -> Dict[str, Any]:
    """Measured float32 FMA peak and bandwidths (csrc/probe.c).

    The peak is the best of several short single-core runs (others may share the core)
    times ``threads``; float64 peaks are half (same FMA rate, half the lanes).
    ``bandwidth_gbs`` is the memory (DRAM) copy bandwidth; ``roofs`` lists every level
    probed, fastest first: {"level", "capacity_bytes" (None: no limit), "gbs"}.
    """
    out: Dict[str, Any] = {
        "isa": None,
        "fma_gflops_core": None,
        "fma_gflops": None,
        "bandwidth_gbs": None,
        "roofs": [],
        "probe": "csrc/probe.c",
    }
    try:
        from .._fastconv_c import ffi, lib

        if not hasattr(lib, "fc_probe_cache_bandwidth"):
            raise ImportError("extension built without csrc/probe.c")
    except ImportError:
        out["probe"] = "numpy copy (no compiled probe: FMA peak and cache bandwidths unknown)"
        out["bandwidth_gbs"] = _numpy_bandwidth()
        out["roofs"] = [{"level": "DRAM", "capacity_bytes": None, "gbs": out["bandwidth_gbs"]}]
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

    def ptr(a: Optional[np.ndarray], kind: str):
        return ffi.NULL if a is None else ffi.cast(kind, a.ctypes.data)

    n = 1 << 24  # 64 MiB per array: larger than the last-level caches of most CPUs
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    dram = lib.fc_probe_copy_bandwidth(ptr(dst, "float *"), ptr(src, "const float *"), n, 5,
                                       threads)
    out["bandwidth_gbs"] = dram
    del src, dst

    def level(working_set: int) -> float:
        """Best of the read and copy bandwidths of ``working_set`` bytes split over the
        threads (copy: half in the source, half in the destination)."""
        src = np.ones(max(working_set // 4, 64), np.float32)
        dst = np.empty(src.size // 2, np.float32)
        best = 0.0
        for half, d in ((src[: dst.size], dst), (src, None)):
            passes = 1
            while True:  # size one timing to about LEVEL_TIMING_S
                t0 = time.perf_counter()
                lib.fc_probe_cache_bandwidth(ptr(d, "float *"), ptr(half, "const float *"),
                                             half.size, passes, 1, threads)
                t = time.perf_counter() - t0
                if t > LEVEL_TIMING_S / 4 or passes > 1 << 20:
                    break
                passes *= 4
            passes = max(1, int(passes * LEVEL_TIMING_S / max(t, 1e-9)))
            best = max(best, *(
                lib.fc_probe_cache_bandwidth(ptr(d, "float *"), ptr(half, "const float *"),
                                             half.size, passes, 3, threads)
                for _ in range(3)
            ))
        return best

    sizes = cache_sizes()
    roofs: List[Dict[str, Any]] = []
    l2 = sizes.get(2)
    if l2:
        # each thread's share is half its core's L2 (the other half: the rest of the program)
        roofs.append({"level": "L2", "capacity_bytes": l2 * threads,
                      "gbs": level(l2 // 2 * threads)})
    l3 = sizes.get(3)
    if l3 and l3 > 2 * (l2 or 0) * threads:
        ws = min(l3 // 2, L3_PROBE_MAX_BYTES)
        if ws > 2 * (l2 or 0) * threads:  # else the L2s would hold it
            roofs.append({"level": "L3", "capacity_bytes": l3, "gbs": level(ws)})
    roofs.append({"level": "DRAM", "capacity_bytes": None, "gbs": dram})
    # a smaller level is never slower than a larger one: a probe that says so was disturbed
    for i in range(len(roofs) - 2, -1, -1):
        roofs[i]["gbs"] = max(roofs[i]["gbs"], roofs[i + 1]["gbs"])
    out["roofs"] = roofs
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


def is_busy(machine: Dict[str, Any]) -> bool:
    """Whether the 1-minute load average (taken before the run) exceeds half the cores:
    other work then shares the cores and the figures are noisy."""
    load = machine.get("load_average_1min")
    return load is not None and load > 0.5 * (machine.get("cores") or 1)


def machine_info(threads: int, with_torch: bool = True) -> Dict[str, Any]:
    """The JSON's "machine": CPU, versions, threads, load, peak and bandwidths."""
    info: Dict[str, Any] = {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "threads": threads,
        "kernels": describe_kernels(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "fastconv": fastconv.__version__,
        "engines": fastconv.available_backends(),
    }
    try:
        info["load_average_1min"] = os.getloadavg()[0]
    except OSError:
        info["load_average_1min"] = None
    blas = openblas()
    info["numpy_blas_threads"] = int(blas[1]()) if blas is not None else None
    if with_torch and torch_installed():
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        # the instruction set of torch's own kernels (ATEN_CPU_CAPABILITY caps it) and
        # oneDNN's cap, so that a run timing AVX2 paths says what torch ran too
        cap = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
        info["torch_isa"] = cap() if cap is not None else None
        info["torch_onednn_max_isa"] = os.environ.get("ONEDNN_MAX_CPU_ISA") or None
    info.update(probe_peak(threads))
    return info


# --------------------------------------------------------------------------- the roofline


def roofline(flops: int, nbytes: int, itemsize: int, machine: Dict[str, Any]) -> Dict[str, Any]:
    """The fastest a call doing ``flops`` and moving at least ``nbytes`` can run here.

    Returns {"seconds" (None when nothing is known), "bound": "compute" / "memory" / None,
    "roof": "FMA" or the memory level ("L2", "L3", "DRAM")}. The memory level is the
    smallest one of ``machine["roofs"]`` whose capacity holds ``nbytes``; float64
    (``itemsize`` 8) has half the float32 peak.
    """
    peak = machine.get("fma_gflops")
    if peak and itemsize == 8:
        peak /= 2
    roofs = machine.get("roofs") or (
        [{"level": "DRAM", "capacity_bytes": None, "gbs": machine["bandwidth_gbs"]}]
        if machine.get("bandwidth_gbs")
        else []
    )
    level = next(
        (r for r in roofs if r["capacity_bytes"] is None or nbytes <= r["capacity_bytes"]), None
    )
    t_compute = flops / (peak * 1e9) if peak and flops else None
    t_memory = nbytes / (level["gbs"] * 1e9) if level and level["gbs"] else None
    if t_compute is None and t_memory is None:
        return {"seconds": None, "bound": None, "roof": None}
    if t_memory is None or (t_compute is not None and t_compute >= t_memory):
        return {"seconds": t_compute, "bound": "compute", "roof": "FMA"}
    return {"seconds": t_memory, "bound": "memory", "roof": level["level"] if level else None}
