"""The machine probes of csrc/probe.c (FMA peak, copy and read bandwidth) that `fastconv bench`
and bench/global_pool_ceiling.py report: positive on valid arguments, -1 on invalid ones."""

from __future__ import annotations

import numpy as np
import pytest

c = pytest.importorskip("fastconv._fastconv_c")
ffi, lib = c.ffi, c.lib


def test_fma_peak():
    assert lib.fc_probe_fma_peak(-1, 10_000) > 0
    assert lib.fc_probe_fma_peak(0, 10_000) > 0  # portable C runs everywhere
    assert lib.fc_probe_fma_peak(-1, 0) == -1.0
    assert lib.fc_probe_fma_peak(lib.fc_probe_best_isa() + 1, 10) == -1.0


@pytest.mark.parametrize("threads", [1, 2])
def test_bandwidth_probes(threads):
    src = np.ones(100_003, np.float32)  # not a multiple of the vector width
    dst = np.zeros_like(src)
    s, d = ffi.from_buffer("float[]", src), ffi.from_buffer("float[]", dst)
    assert lib.fc_probe_copy_bandwidth(d, s, src.size, 2, threads) > 0
    assert (dst == 1).all()
    assert lib.fc_probe_read_bandwidth(s, src.size, 2, threads) > 0
    for bad in [(0, 2, threads), (src.size, 0, threads), (src.size, 2, 0)]:
        assert lib.fc_probe_read_bandwidth(s, *bad) == -1.0
        assert lib.fc_probe_copy_bandwidth(d, s, *bad) == -1.0
