"""The cuda backend on a real GPU against torch (cuDNN), data resident on the device.

Every case runs at batch N=1 and N=32, float32 by default, with TF32 off in torch
(``torch.backends.cudnn.allow_tf32 = False``, likewise for matmul) so that both sides do
full-precision float32 arithmetic. fastconv reads torch's CUDA tensors in place (through
``__cuda_array_interface__``) and returns numba device arrays, so no host copy is timed.
Each result is checked against torch before it is timed. GFLOP/s = 2 * MACs / time with
fastconv's own MAC count (``fastconv.accounting``); pools report GB/s of input read.

Run on a machine with a GPU, numba-cuda and torch with CUDA:
    python bench/bench_cuda.py [--repeat 50] [--dtype float32|float64]
Under pytest (``pytest bench/bench_cuda.py -m gpu``) it is one test marked ``gpu`` that runs
every case once with a short timing; without a real GPU it is skipped.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest

import fastconv
from fastconv.analysis import accounting

# name, (C, H, W), conv weight (OC, C/G, KH, KW) or pool kernel, stride, padding, groups
CONV_CASES = [
    ("resnet50 3x3 64->64 @56", (64, 56, 56), (64, 64, 3, 3), 1, 1, 1),
    ("resnet50 1x1 256->64 @56", (256, 56, 56), (64, 256, 1, 1), 1, 0, 1),
    ("resnet50 3x3 256->256 @14", (256, 14, 14), (256, 256, 3, 3), 1, 1, 1),
    ("resnet50 7x7/2 3->64 @224", (3, 224, 224), (64, 3, 7, 7), 2, 3, 1),
    ("resnext 3x3 g32 256 @28", (256, 28, 28), (256, 8, 3, 3), 1, 1, 32),
    ("mobilenet dw 3x3 144 @56", (144, 56, 56), (144, 1, 3, 3), 1, 1, 144),
]
POOL_CASES = [
    ("max_pool 3x3/2 64 @112", (64, 112, 112), 3, 2, 1),
    ("avg_pool 2x2/2 256 @56", (256, 56, 56), 2, 2, 0),
]
BATCHES = (1, 32)


def gpu_reason() -> str:
    """"" when a real GPU, the cuda backend and torch with CUDA are all here, else why not."""
    reason = fastconv.available_backends()["cuda"]
    if reason != "available":
        return f"cuda backend: {reason}"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch has no CUDA"
    return ""


def _host(a) -> np.ndarray:
    """A numba device array, a torch tensor or a NumPy array as a NumPy array."""
    if hasattr(a, "copy_to_host"):
        return a.copy_to_host()
    if hasattr(a, "cpu"):
        return a.cpu().numpy()
    return np.asarray(a)


def _time(fn: Callable[[], object], repeat: int, sync: Callable[[], None]) -> float:
    """Median seconds per call over ``repeat`` timed calls, after two warm-up calls."""
    fn()
    fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run(repeat: int = 20, dtype: str = "float32", verbose: bool = True) -> List[Dict]:
    import torch
    import torch.nn.functional as F
    from numba import cuda

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True  # let cuDNN pick its best algorithm

    def sync():
        cuda.synchronize()
        torch.cuda.synchronize()

    tdt = getattr(torch, dtype)
    tol = 1e-3 if dtype == "float32" else 1e-9
    rows: List[Dict] = []

    def record(name, N, what, work, unit, fns, want):
        for label, fn in fns:
            got = _host(fn())
            err = float(np.max(np.abs(got - want)) / max(1.0, float(np.max(np.abs(want)))))
            if not err <= tol:
                raise AssertionError(f"{name} N={N} {label}: max relative error {err:.2e}")
            t = _time(fn, repeat, sync)
            rows.append(dict(case=name, N=N, label=label, ms=t * 1e3, rate=work / t / 1e9,
                             unit=unit, what=what))
            if verbose:
                print(f"{name:28s} N={N:<3d} {label:22s} {t * 1e3:9.3f} ms "
                      f"{work / t / 1e9:9.1f} {unit}", flush=True)

    gen = torch.Generator(device="cuda").manual_seed(0)
    for N in BATCHES:
        for name, (C, H, W), wshape, s, p, g in CONV_CASES:
            x = torch.randn((N, C, H, W), generator=gen, device="cuda", dtype=tdt)
            w = torch.randn(wshape, generator=gen, device="cuda", dtype=tdt)
            want = F.conv2d(x, w, None, s, p, 1, g).cpu().numpy()
            macs = accounting.conv2d_macs((N, C, H, W), wshape, s, p, 1, g)
            fns = [("torch (cuDNN)", lambda: F.conv2d(x, w, None, s, p, 1, g))]
            fns += [
                (f"fastconv {v}",
                 lambda v=v: fastconv.conv2d(x, w, None, s, p, 1, g, backend="cuda", variant=v))
                for v in ("v1_direct", "v2_tiled")
            ]
            if g == C and wshape[1] == 1:
                fns.append(("fastconv depthwise",
                            lambda: fastconv.depthwise_conv2d(x, w, None, s, p, backend="cuda")))
            record(name, N, "conv2d", 2 * macs, "GFLOP/s", fns, want)
        for name, (C, H, W), k, s, p in POOL_CASES:
            x = torch.randn((N, C, H, W), generator=gen, device="cuda", dtype=tdt)
            if name.startswith("max"):
                tf = lambda: F.max_pool2d(x, k, s, p)  # noqa: E731
                ff = lambda: fastconv.max_pool2d(x, k, s, p, backend="cuda")  # noqa: E731
            else:
                tf = lambda: F.avg_pool2d(x, k, s, p)  # noqa: E731
                ff = lambda: fastconv.avg_pool2d(x, k, s, p, backend="cuda")  # noqa: E731
            read = x.numel() * x.element_size()
            record(name, N, "pool", read, "GB/s", [("torch", tf), ("fastconv", ff)],
                   tf().cpu().numpy())
    return rows


@pytest.mark.gpu
def test_cuda_vs_torch():
    """Every case checked against torch and timed briefly (timings are printed, never
    asserted); skipped without a real GPU."""
    why = gpu_reason()
    if why:
        pytest.skip(why)
    rows = run(repeat=3, verbose=False)
    assert {r["label"] for r in rows} >= {"torch (cuDNN)", "fastconv v1_direct",
                                          "fastconv v2_tiled", "fastconv"}


def _main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = ap.parse_args()
    why = gpu_reason()
    if why:
        print(f"skipped: {why}")
        return
    rows = run(args.repeat, args.dtype)
    best: Dict[Tuple[str, int], Dict[str, float]] = {}
    for r in rows:
        best.setdefault((r["case"], r["N"]), {})[r["label"]] = r["ms"]
    print("\nfastconv's best vs torch (time ratio, < 1 means fastconv is faster):")
    for (case, N), t in best.items():
        ref = t.get("torch (cuDNN)", t.get("torch"))
        mine = min(v for k, v in t.items() if k.startswith("fastconv"))
        print(f"  {case:28s} N={N:<3d} {mine / ref:6.2f}x")


if __name__ == "__main__":
    _main()
