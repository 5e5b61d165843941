"""fastconv.ndimage / fastconv.signal filters against SciPy and OpenCV (pytest-benchmark).

Plain ``pytest`` (benchmarks disabled): a smoke test on a 96 x 96 image, every case run
once per library and checked against fastconv. ``pytest bench/bench_filters.py
--benchmark-enable``: the suite of fastconv.benchmark.filters (4096 x 4096 float32, dense kernels
3x3 ... 31x31 and Gaussians sigma 1, 4, 16) timed per library, grouped per case, with GB/s
in ``extra_info``. scipy.ndimage's direct 15x15 and 31x31 take seconds a call: they are
left to ``python bench/filters.py``.
"""

import importlib.util

import numpy as np
import pytest

from fastconv.benchmark import filters

LIBS = ["fastconv", "fastconv_signal", "ndimage", "signal", "opencv"]
NAMES = [f"correlate {k}x{k}" for k in filters.KERNELS] + [
    f"gaussian sigma {s}" for s in filters.SIGMAS
]


def _smoke(config) -> bool:
    disabled = config.getoption("benchmark_disable", default=True)
    return bool(disabled) and not config.getoption("benchmark_enable", default=False)


@pytest.fixture(scope="module")
def suite(request):
    size = 96 if _smoke(request.config) else 4096
    import fastconv

    fastconv.set_num_threads(2)
    if importlib.util.find_spec("cv2") is not None:
        import cv2

        cv2.setNumThreads(2)
    return {c["name"]: c for c in filters.cases(size)}


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("name", NAMES)
def test_filter(benchmark, suite, name, lib, request):
    case = suite[name]
    smoke = _smoke(request.config)
    calls = {"fastconv": case["fastconv"]}
    if "fastconv_signal" in case:
        calls["fastconv_signal"] = case["fastconv_signal"]
    calls.update(filters.baselines(case, slow_ok=smoke))
    if lib in ("signal", "fastconv_signal") and "fastconv_signal" in case:
        ref = case["fastconv_signal"]()
    else:
        ref = case["fastconv"]()
    if lib not in calls:
        pytest.skip(f"{lib} not installed or not timed on {name}")
    out = calls[lib]()
    assert out.shape == ref.shape
    assert np.max(np.abs(out.astype(np.float64) - ref)) <= 1e-3 * np.max(np.abs(ref))
    benchmark.group = name
    benchmark.extra_info["GB/s"] = None
    result = benchmark(calls[lib])
    del result
    if benchmark.stats is not None and benchmark.stats.stats.median:
        benchmark.extra_info["GB/s"] = 2 * case["img"].nbytes / benchmark.stats.stats.median / 1e9
