"""The C engine's single-threaded GEMM (csrc/gemm.c) per micro-kernel, against the machine's
measured float32 FMA peak (csrc/probe.c, one core).

    pytest bench/bench_gemm.py --benchmark-enable     # time it (pytest-benchmark)
    python bench/bench_gemm.py                        # quick table: GFLOP/s and % of peak

Sizes: a large square product, and the GEMMs of a few ResNet-50 convolutions (M = output
channels, N = output pixels, K = C*KH*KW). GFLOP/s = 2*M*N*K / time; the float64 peak is
taken as half the float32 one (same FMA units, half the lanes). Without --benchmark-enable
every case runs once on a small size as a smoke test, checked against NumPy.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

c = pytest.importorskip("fastconv.backends.c")
if c.AVAILABLE_REASON != "available":  # pragma: no cover - depends on the build
    pytest.skip(c.AVAILABLE_REASON, allow_module_level=True)

from fastconv.backends.c._cffi import ptr  # noqa: E402

lib, ffi = c.lib, c.ffi

#: name -> (M, N, K)
SIZES = {
    "square 1008x1024x1024": (1008, 1024, 1024),
    "conv 3x3 64->64 @56": (64, 3136, 576),
    "conv 3x3 256->256 @14": (256, 196, 2304),
    "conv 1x1 2048->512 @7": (512, 49, 2048),
}
#: the slow kernels are timed on the smallest size only
SLOW = {"naive", "portable"}
KERNELS = [k for k in c.GEMM_KERNELS if k in c.cpu_info()["gemm_kernels"]]
_ISA = {"naive": 0, "portable": 0, "avx2": 1, "avx512": 2}
_peaks: dict = {}


def fma_peak(kernel: str) -> float:
    """Single-core float32 FMA peak in GFLOP/s for the ISA of ``kernel`` (measured once)."""
    isa = _ISA[kernel]
    if isa not in _peaks:
        _peaks[isa] = max(lib.fc_probe_fma_peak(isa, 20_000_000) for _ in range(3))
    return _peaks[isa]


def make_gemm(kernel: str, M: int, N: int, K: int, dtype):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((M, K)).astype(dtype)
    B = rng.standard_normal((K, N)).astype(dtype)
    C = np.full((M, N), np.nan, dtype)
    f64 = dtype == np.float64
    code = c.GEMM_KERNELS[kernel]
    work = np.empty(max(1, lib.fc_gemm_work_elems(code, f64, M, N, K)), dtype)
    fn = lib.fc_gemm_f64 if f64 else lib.fc_gemm_f32
    args = (code, M, N, K, ptr(A), K, 1, ptr(B), N, ptr(C), N, 0, ptr(work))
    keep = (A, B, C, work)  # the pointers in args do not keep the arrays alive

    def run():
        fn(*args)
        return keep

    return run, A, B, C


def _smoke(config) -> bool:
    disabled = config.getoption("benchmark_disable", default=True)
    return bool(disabled) and not config.getoption("benchmark_enable", default=False)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("size", list(SIZES))
def test_gemm(benchmark, request, size, kernel, dtype):
    smoke = _smoke(request.config)
    if not smoke and kernel in SLOW and size != "conv 3x3 64->64 @56":
        pytest.skip("the slow kernels are timed on one size")
    M, N, K = (23, 45, 300) if smoke else SIZES[size]
    dt = np.dtype(dtype)
    run, A, B, C = make_gemm(kernel, M, N, K, dt)
    benchmark(run)
    want = A.astype(np.float64) @ B.astype(np.float64)
    tol = 1e-5 if dt == np.float32 else 1e-12
    assert np.abs(C - want).max() <= tol * np.abs(want).max()
    if benchmark.stats is not None:
        gflops = 2 * M * N * K / benchmark.stats["min"] / 1e9
        peak = fma_peak(kernel) / (2 if dt == np.float64 else 1)
        benchmark.extra_info.update(gflops=round(gflops, 1), peak_fraction=round(gflops / peak, 3))


def test_fma_peak(benchmark):
    """The probe itself: what 100% means in the table."""
    best = c.cpu_info()["gemm_kernel"]
    peak = benchmark(lambda: lib.fc_probe_fma_peak(_ISA[best], 2_000_000))
    assert peak > 0


def main() -> None:
    print(f"CPU: {c.cpu_info()['features']}; single thread")
    for kernel in KERNELS:
        print(f"{kernel}: FMA peak {fma_peak(kernel):.1f} GFLOP/s (float32, one core)")
    for size, (M, N, K) in SIZES.items():
        for kernel in KERNELS:
            if kernel in SLOW and size != "conv 3x3 64->64 @56":
                continue
            for dtype in (np.float32, np.float64):
                run, *_ = make_gemm(kernel, M, N, K, dtype)
                run()
                best = min(_timed(run) for _ in range(5))
                gflops = 2 * M * N * K / best / 1e9
                peak = fma_peak(kernel) / (2 if dtype == np.float64 else 1)
                print(
                    f"{size:24s} {kernel:9s} {np.dtype(dtype).name:8s} "
                    f"{gflops:7.1f} GFLOP/s  {100 * gflops / peak:5.1f}% of peak"
                )


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
