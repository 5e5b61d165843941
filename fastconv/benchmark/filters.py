"""The filters suite: fastconv.ndimage / fastconv.signal against SciPy and OpenCV.

Run: ``fastconv bench --suite filters`` or ``python bench/filters.py`` (4096 x 4096
float32, 2 threads, the table of bench/RESULTS.md "Filtering"); ``--size 1024 --repeat 3``
for a quick look; ``python bench/filters.py --calibrate`` measures the cost-model constants
of fastconv/_filters/plan.py. Columns of a library that is not installed are left out.

Cases: dense random kernels 3x3 ... 31x31 (``correlate``, mode 'reflect') and Gaussian
filters sigma 1, 4, 16 (truncate 4: 9, 33 and 129 taps). Per case, in interleaved rounds
(the median is kept):

- fastconv     fastconv.ndimage.correlate / gaussian_filter (method 'auto')
- ndimage      scipy.ndimage.correlate / gaussian_filter (SciPy filters directly, one thread)
- signal       scipy.signal.correlate(mode='same', method=SciPy's own choose_conv_method),
               against fastconv.signal.correlate with the same arguments (dense only)
- opencv       cv2.filter2D / cv2.GaussianBlur, BORDER_REFLECT (= ndimage 'reflect'),
               on the same number of threads (opencv-python-headless, the bench extra)

Every result is first checked against fastconv's (max |difference| / max |value|), so
that the libraries are seen to compute the same thing. GB/s counts the input read and the
output written once (2 x 64 MiB at 4096^2); %copy compares it with this machine's copy
bandwidth (numpy copies on the same threads), the bound of the memory-bound small kernels.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .probe import cpu_model

KERNELS = (3, 5, 9, 15, 31)
SIGMAS = (1, 4, 16)


def copy_bandwidth(a: np.ndarray, threads: int, repeat: int = 5) -> float:
    """GB/s of copying ``a`` (read + write) into a touched buffer on ``threads`` threads."""
    dst = np.empty_like(a)
    dst[...] = 0
    parts = np.array_split(np.arange(a.shape[0]), threads)

    def part(rows: np.ndarray) -> None:
        np.copyto(dst[rows[0] : rows[-1] + 1], a[rows[0] : rows[-1] + 1])

    best = float("inf")
    with ThreadPoolExecutor(threads) as ex:
        for _ in range(repeat):
            t0 = time.perf_counter()
            list(ex.map(part, parts))
            best = min(best, time.perf_counter() - t0)
    return 2 * a.nbytes / best / 1e9


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a64 - b64)) / max(np.max(np.abs(b64)), 1e-30))


def cases(size: int, seed: int = 0) -> List[Dict[str, Any]]:
    """The suite's cases: name, the fastconv call and the baselines' calls."""
    import fastconv.ndimage as fnd
    import fastconv.signal as fsig

    rng = np.random.default_rng(seed)
    img = rng.random((size, size), dtype=np.float32)
    out: List[Dict[str, Any]] = []
    for k in KERNELS:
        w = rng.random((k, k), dtype=np.float32) - 0.25
        out.append(
            {
                "name": f"correlate {k}x{k}",
                "img": img,
                "kind": "dense",
                "k": k,
                "w": w,
                "fastconv": lambda img=img, w=w: fnd.correlate(img, w),
                "fastconv_signal": lambda img=img, w=w: fsig.correlate(img, w, "same"),
            }
        )
    for s in SIGMAS:
        out.append(
            {
                "name": f"gaussian sigma {s}",
                "img": img,
                "kind": "gaussian",
                "sigma": s,
                "fastconv": lambda img=img, s=s: fnd.gaussian_filter(img, s),
            }
        )
    return out


def baselines(case: Dict[str, Any], slow_ok: bool) -> Dict[str, Callable[[], Any]]:
    """The case's SciPy and OpenCV calls (those that are installed)."""
    img = case["img"]
    out: Dict[str, Callable[[], Any]] = {}
    try:
        import scipy.ndimage as snd
        import scipy.signal as ssig
    except ImportError:
        snd = ssig = None
    cv2: Any = None
    try:
        import cv2  # type: ignore[no-redef]
    except ImportError:
        pass
    if case["kind"] == "dense":
        w = case["w"]
        if snd is not None and (slow_ok or case["k"] <= 9):
            out["ndimage"] = lambda: snd.correlate(img, w)
        if ssig is not None:
            method = ssig.choose_conv_method(img, w, mode="same")
            case["signal_method"] = method
            out["signal"] = lambda: ssig.correlate(img, w, "same", method=method)
        if cv2 is not None:
            out["opencv"] = lambda: cv2.filter2D(img, -1, w, borderType=cv2.BORDER_REFLECT)
    else:
        s = case["sigma"]
        if snd is not None:
            out["ndimage"] = lambda: snd.gaussian_filter(img, s)
        if cv2 is not None:
            out["opencv"] = lambda: cv2.GaussianBlur(img, (0, 0), s, borderType=cv2.BORDER_REFLECT)
    return out


def time_interleaved(
    calls: Dict[str, Callable[[], Any]],
    repeat: int,
    once: Tuple[str, ...] = (),
    clock: Callable[[], float] = time.perf_counter,
) -> Dict[str, float]:
    """Median seconds per call, in rounds that call every library once (a short pause
    before each call lets the previous library's threads go idle); names in ``once`` are
    timed a single time (SciPy's slowest cases). ``clock``: wall time, or the calling
    thread's CPU time (``--cpu``: one thread, every library working on the caller's thread,
    so that other processes on a busy machine do not count)."""
    samples: Dict[str, List[float]] = {n: [] for n in calls}
    for r in range(repeat):
        for name, f in calls.items():
            if name in once and r > 0:
                continue
            time.sleep(0.05)
            t0 = clock()
            f()
            samples[name].append(clock() - t0)
    return {n: statistics.median(v) for n, v in samples.items()}


def run_suite(
    size: int = 4096,
    threads: int = 2,
    repeat: int = 5,
    slow_ok: bool = True,
    cpu: bool = False,
    log: Callable[[str], None] = print,
) -> Dict[str, Any]:
    import fastconv

    fastconv.set_num_threads(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
        cv_version: Optional[str] = cv2.__version__
    except ImportError:
        cv_version = None
    try:
        import scipy

        sp_version: Optional[str] = scipy.__version__
    except ImportError:
        sp_version = None
    from fastconv._filters import fft as fft_engine

    all_cases = cases(size)
    img = all_cases[0]["img"]
    bw = copy_bandwidth(img, threads)
    gib = img.nbytes / 2**20
    head = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "image": f"{size}x{size} float32 ({gib:.0f} MiB)",
        "copy_GBps": bw,
        "numpy": np.__version__,
        "scipy": sp_version,
        "opencv": cv_version,
        "fft": fft_engine.library()[0],
        "load": os.getloadavg()[0],
    }
    clock = "CPU time of the calling thread" if cpu else "wall time"
    log(f"filters suite: {head['image']}, {threads} thread(s), median of {repeat} ({clock})")
    log(
        f"machine: {head['cpu']}, {head['cores']} cores; copy {bw:.1f} GB/s "
        f"({threads} threads); load {head['load']:.1f}; {head['date']}"
    )
    log(
        f"versions: numpy {np.__version__}, scipy {sp_version}, opencv {cv_version}; "
        f"FFT {head['fft']}.fft"
    )
    log(
        "ratios: x<lib> = <lib>'s time / fastconv's (>1: fastconv faster); check: max rel "
        "difference from fastconv"
    )
    log("")
    has_scipy, has_cv = sp_version is not None, cv_version is not None
    log(
        f"{'case':<20} {'fastconv ms':>11} {'GB/s':>6} {'%copy':>5}"
        + (f" {'x ndimage':>9} {'x signal':>13}" if has_scipy else "")
        + (f" {'x opencv':>8}" if has_cv else "")
        + "  check"
    )
    rows = []
    for case in all_cases:
        calls = {"fastconv": case["fastconv"]}
        calls.update(baselines(case, slow_ok))
        if "fastconv_signal" in case and "signal" in calls:
            calls["fastconv_signal"] = case["fastconv_signal"]
        ref = case["fastconv"]()
        checks = {}
        for name, f in calls.items():
            if name in ("fastconv", "ndimage") and case["kind"] == "dense" and case["k"] > 9:
                continue  # SciPy's direct 15x15 and 31x31 take seconds: checked below
            if name == "fastconv_signal" or name == "signal":
                checks[name] = _rel(f(), case["fastconv_signal"]()) if name == "signal" else 0
            elif name != "fastconv":
                checks[name] = _rel(f(), ref)
        once = ("ndimage",) if case["kind"] == "dense" and case["k"] > 9 else ()
        t = time_interleaved(calls, repeat, once, time.thread_time if cpu else time.perf_counter)
        if "ndimage" in once and "ndimage" in calls:
            checks["ndimage"] = _rel(calls["ndimage"](), ref)
        tf = t["fastconv"]
        gbs = 2 * img.nbytes / tf / 1e9
        row = {
            "case": case["name"],
            "ms": tf * 1e3,
            "GBps": gbs,
            "pct_copy": 100 * gbs / bw,
            "times_ms": {n: v * 1e3 for n, v in t.items()},
            "check": checks,
            "signal_method": case.get("signal_method"),
        }
        x_nd = t["ndimage"] / tf if "ndimage" in t else None
        x_sig = t["signal"] / t["fastconv_signal"] if "signal" in t else None
        x_cv = t["opencv"] / tf if "opencv" in t else None
        row.update(x_ndimage=x_nd, x_signal=x_sig, x_opencv=x_cv)
        rows.append(row)
        sig = f"{x_sig:.2f} ({case.get('signal_method')})" if x_sig else "-"
        worst = max(checks.values(), default=0.0)
        log(
            f"{case['name']:<20} {tf * 1e3:>11.1f} {gbs:>6.1f} {100 * gbs / bw:>5.0f}"
            + (f" {(f'{x_nd:.1f}' if x_nd else '-'):>9} {sig:>13}" if has_scipy else "")
            + (f" {(f'{x_cv:.2f}' if x_cv else '-'):>8}" if has_cv else "")
            + f"  {'ok' if worst < 1e-3 else 'DIFF'} {worst:.0e}"
        )
    log("")
    log(
        "bars: >= 1.0x OpenCV everywhere; >= 10x scipy.ndimage; >= 3x scipy.signal where "
        "SciPy picks its FFT (9x9 and up)"
    )
    for r in rows:
        misses = []
        if r["x_opencv"] is not None and r["x_opencv"] < 1.0:
            misses.append(f"opencv {r['x_opencv']:.2f}")
        if r["x_ndimage"] is not None and r["x_ndimage"] < 10:
            misses.append(f"ndimage {r['x_ndimage']:.1f}")
        big = r["case"].startswith("correlate") and int(r["case"].split()[1].split("x")[0]) >= 9
        if r["x_signal"] is not None and r["signal_method"] == "fft" and big and r["x_signal"] < 3:
            misses.append(f"signal {r['x_signal']:.2f}")
        log(f"  {r['case']:<20} {'met' if not misses else 'MISSED: ' + ', '.join(misses)}")
    return {"machine": head, "rows": rows}


def calibrate(size: int = 2048, log: Callable[[str], None] = print) -> Dict[str, float]:
    """Fit the cost constants of fastconv/_filters/plan.py on this machine: one thread,
    float32, each strategy timed through the public functions (best of 5, in CPU time of
    the calling thread, which does all the work with one thread) and fitted by
    least squares to the model's form (see plan.py). Prints lines to paste into plan.py."""
    import fastconv
    import fastconv.ndimage as fnd
    from fastconv._filters import fft as fft_engine
    from fastconv._filters import plan
    from fastconv._filters.plan import Problem

    fastconv.set_num_threads(1)
    rng = np.random.default_rng(1)
    img = rng.random((size, size), dtype=np.float32)
    px = float(img.size)

    def best(f: Callable[[], Any]) -> float:
        # CPU time of this thread (everything runs on it with one thread): a busy machine
        # slows the wall clock, much less the work done
        f()
        out = float("inf")
        for _ in range(5):
            t0 = time.thread_time()
            f()
            out = min(out, time.thread_time() - t0)
        return out

    res: Dict[str, float] = {}
    # dense kernels (not separable): t / px = k^2 * DENSE_MAC + DENSE_PIXEL
    pts = []
    for k in (3, 5, 7, 9, 11):
        wd: np.ndarray = rng.random((k, k), dtype=np.float32)
        pts.append((k * k, best(partial(fnd.correlate, img, wd, method="direct")) / px))
    (a_, b_) = np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)
    res["DENSE_MAC"], res["DENSE_PIXEL"] = float(a_), float(b_)
    # separable, fused 1-D passes: t / px = 2K * SEP_MAC + SEP_PIXEL
    pts = []
    for k in (7, 11, 15, 33, 65):
        g = np.exp(-(np.linspace(-2, 2, k) ** 2)).astype(np.float32)
        ws: np.ndarray = np.outer(g, g)
        pts.append((2 * k, best(partial(fnd.correlate, img, ws, method="direct")) / px))
    (a_, b_) = np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)
    res["SEP_MAC"], res["SEP_PIXEL"] = float(a_), float(b_)
    # (GEMM_MAC, the band GEMM of 3-D separable kernels' long factors, is not refitted: 2-D
    # kernels run on the fused passes of csrc/filter2d.c)
    # FFT tiles of a 31 x 31 kernel: t / tile = N log2 N * FFT_POINT_LOG + N * FFT_POINT + FFT_TILE
    k = 31
    w = rng.random((k, k), dtype=np.float32)
    out = np.empty_like(img)
    prob = Problem(
        img,
        w,
        (k // 2, k // 2),
        (k // 2, k // 2),
        ("reflect", "reflect"),
        0.0,
        out,
        lambda v: v,
        np.dtype(np.float32),
    )
    rows, ys = [], []
    for n in (96, 128, 192, 256, 384, 512):
        tp = fft_engine.TilePlan([0, 1], (n, n), (n - k + 1, n - k + 1), 1, 0.0)
        tiles = (-(-size // (n - k + 1))) ** 2
        t = best(lambda tp=tp: fft_engine.correlate(prob, 1, tp)) / tiles  # type: ignore[misc]
        rows.append([n * n * np.log2(n * n), n * n, 1.0])
        ys.append(t)
    (c_, d_, e_), *_ = np.linalg.lstsq(np.array(rows), np.array(ys), rcond=None)
    res["FFT_POINT_LOG"], res["FFT_POINT"], res["FFT_TILE"] = float(c_), float(d_), float(e_)
    # float64 against float32 (the dense path)
    img64 = img.astype(np.float64)
    w7 = rng.random((7, 7))
    res["DOUBLE"] = best(lambda: fnd.correlate(img64, w7, method="direct")) / best(
        lambda: fnd.correlate(img, w7.astype(np.float32), method="direct")
    )
    log(f"# fitted by `python bench/filters.py --calibrate` ({cpu_model()}, {size}^2, 1 thread)")
    for name, v in res.items():
        current = getattr(plan, name, None)
        log(f"{name} = {v:.3g}  # was {current}")
    return res


def _once(f: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096, help="image side (default 4096)")
    ap.add_argument("--threads", type=int, default=2, help="threads of every library")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved rounds (median)")
    ap.add_argument(
        "--quick", action="store_true", help="skip scipy.ndimage's slow 15x15 and 31x31 (minutes)"
    )
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument(
        "--cpu",
        action="store_true",
        help="one thread, timed in CPU time of the calling thread (a busy machine)",
    )
    ap.add_argument("--calibrate", action="store_true", help="fit the cost-model constants")
    args = ap.parse_args(argv)
    if args.calibrate:
        calibrate()
        return 0
    threads = 1 if args.cpu else args.threads
    res = run_suite(args.size, threads, args.repeat, slow_ok=not args.quick, cpu=args.cpu)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
    return 0


if __name__ == "__main__":  # pragma: no cover - bench/filters.py is the script
    sys.exit(main())
