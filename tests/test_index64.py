"""64-bit index arithmetic: a plane of more than 2**31 elements.

The input is a lazily allocated zero array (8.6 GB of address space, of which only the pages
written here take memory) with a few non-zero values near its end. Strides as large as the
plane make every op read a handful of elements only, whose flat indices are beyond 2**31: a
32-bit index would wrap and read zeros (or fault) instead of those values.
"""

from __future__ import annotations

import numpy as np
import pytest
from _cases import available_engines

import fastconv as fc

S = 46341  # S * S = 2_147_488_281 > 2**31
#: The native engines, whose kernels compute flat indices themselves. The reference engine
#: indexes through NumPy (intp, 64-bit) and computes in float64 on a zero-padded copy of the
#: whole input: 17 GB and about 140 s for these two tests, the slowest of the suite, for an
#: index width NumPy already guarantees.
ENGINES = [e for e in available_engines() if e not in ("cuda", "reference")]


@pytest.fixture(scope="module")
def big():
    try:
        x = np.zeros((1, 1, S, S), np.float32)
    except MemoryError:  # pragma: no cover - a machine without the address space
        pytest.skip("cannot reserve 8.6 GB of address space")
    x[0, 0, S - 1, S - 1] = 3.0  # flat index 2_147_488_280
    x[0, 0, S - 1, 0] = 5.0  # flat index 2_147_441_940
    x[0, 0, S - 2, S - 1] = 7.0
    assert S * S > 2**31
    return x


@pytest.mark.parametrize("engine", ENGINES)
def test_conv_reads_beyond_2_31(big, engine):
    w = np.full((1, 1, 1, 1), 2.0, np.float32)
    y = fc.conv2d(big, w, stride=S - 1, backend=engine)  # reads rows / columns 0 and S-1
    np.testing.assert_array_equal(y[0, 0], [[0, 0], [10, 6]])
    w2 = np.ones((1, 1, 2, 1), np.float32)  # rows S-2 and S-1 of column S-1
    y = fc.conv2d(big, w2, stride=(S - 2, S - 1), backend=engine)
    np.testing.assert_array_equal(y[0, 0], [[0, 0], [5, 10]])
    y = fc.depthwise_conv2d(big, w, stride=S - 1, backend=engine)
    np.testing.assert_array_equal(y[0, 0], [[0, 0], [10, 6]])


@pytest.mark.parametrize("engine", ENGINES)
def test_pools_read_beyond_2_31(big, engine):
    y = fc.max_pool2d(big, 2, stride=S - 2, backend=engine)  # windows at rows / columns S-2, S-1
    np.testing.assert_array_equal(y[0, 0], [[0, 0], [5, 7]])
    y, idx = fc.max_pool2d(big, 2, stride=S - 2, return_indices=True, backend=engine)
    assert idx[0, 0, 1, 0] == (S - 1) * S and idx[0, 0, 1, 1] == (S - 2) * S + S - 1
    y = fc.avg_pool2d(big, 2, stride=S - 2, backend=engine)
    np.testing.assert_allclose(y[0, 0], [[0, 0], [1.25, 2.5]])
