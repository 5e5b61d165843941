"""Parametrises the bench_*.py files: (layer, runner) pairs, real or tiny (see layers.py).

Each test function ``test_<op>(benchmark, case, runner)`` gets every layer of ``<op>``; a
bench file may declare ``VARIANT_LAYERS`` (layer names on which every conv2d variant of every
engine is timed; the other layers time each engine's best).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import layers  # noqa: E402


def _smoke(config) -> bool:
    """As pytest-benchmark decides: --benchmark-enable overrides --benchmark-disable."""
    disabled = config.getoption("benchmark_disable", default=True)
    return bool(disabled) and not config.getoption("benchmark_enable", default=False)


def pytest_generate_tests(metafunc):
    if not {"case", "runner"} <= set(metafunc.fixturenames):
        return
    op = metafunc.function.__name__[len("test_") :]
    smoke = _smoke(metafunc.config)
    with_variants = getattr(metafunc.module, "VARIANT_LAYERS", ())
    params, ids = [], []
    for case in layers.cases(op, smoke):
        full = case.name in with_variants or (smoke and op == "conv2d")
        for r in layers.runners(op, with_variants=bool(full)):
            if not layers.fits(case, r):
                continue
            params.append((case, r))
            ids.append(f"{case.name}|{layers.runner_id(r)}")
    metafunc.parametrize(("case", "runner"), params, ids=ids)
