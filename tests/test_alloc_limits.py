"""Outputs and workspaces too large for memory are refused up front, in every backend.

Each public function estimates what it is about to allocate from the geometry, before it
allocates anything, and raises ValueError naming the argument that makes it so large and the
size in GiB (instead of NumPy's bare MemoryError, or swapping). Here the limit is set to
16 GiB and every case asks for more than 100 GiB: a check that did not fire would go on to
allocate and fail with MemoryError, not pass. Large inputs are broadcast views (no memory).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastconv as fc
import fastconv.ops.grad as G
from fastconv import _shapes

F32 = np.float32
X = np.ones((1, 3, 8, 8), F32)
BIG = 10**6


def ones(*shape):
    return np.ones(shape, F32)


def huge(*shape):
    """A float32 array of ``shape`` that takes no memory (a read-only broadcast view)."""
    return np.broadcast_to(F32(0), shape)


@pytest.fixture(autouse=True)
def limit(monkeypatch):
    monkeypatch.setattr(_shapes, "MEMORY_BYTES", 16 * 2**30)


# (what, the argument the message must name, the call)
FORWARD = [
    ("conv2d padding", "padding", lambda e: fc.conv2d(X, ones(4, 3, 3, 3), padding=10**5, backend=e)),
    ("conv2d padding_mode", "padding", lambda e: fc.conv2d(X, ones(4, 3, 3, 3), padding=10**5, padding_mode="replicate", backend=e)),
    ("conv2d out_channels", "weight", lambda e: fc.conv2d(ones(1, 1, 1000, 1000), ones(10**5, 1, 1, 1), backend=e)),
    ("conv1d padding", "padding", lambda e: fc.conv1d(ones(1, 1, 8), ones(64, 1, 3), padding=10**9, backend=e)),
    ("depthwise padding", "padding", lambda e: fc.depthwise_conv2d(X, ones(3, 1, 3, 3), padding=10**5, backend=e)),
    ("separable padding", "padding", lambda e: fc.separable_conv2d(X, ones(3, 1, 3, 3), ones(2, 3, 1, 1), padding=10**5, backend=e)),
    ("separable out_channels", "pointwise_weight", lambda e: fc.separable_conv2d(ones(1, 3, 1000, 1000), ones(3, 1, 1, 1), ones(10**5, 3, 1, 1), backend=e)),
    ("conv_transpose2d stride", "stride", lambda e: fc.conv_transpose2d(X, ones(3, 2, 3, 3), stride=10**5, backend=e)),
    ("conv_transpose2d dilation", "dilation", lambda e: fc.conv_transpose2d(X, ones(3, 2, 3, 3), dilation=10**5, backend=e)),
    ("conv_transpose1d stride", "stride", lambda e: fc.conv_transpose1d(ones(1, 1, 8), ones(1, 8, 3), stride=2 * 10**9, backend=e)),
    ("max_pool2d", "input", lambda e: fc.max_pool2d(huge(1, 1, 2 * 10**5, 2 * 10**5), 1, return_indices=True, backend=e)),
    ("max_pool1d", "input", lambda e: fc.max_pool1d(huge(1, 16, 2**31 - 1), 1, backend=e)),
    ("avg_pool2d", "input", lambda e: fc.avg_pool2d(huge(1, 1, 2 * 10**5, 2 * 10**5), 1, backend=e)),
    ("adaptive_avg_pool2d", "output_size", lambda e: fc.adaptive_avg_pool2d(X, BIG, backend=e)),
    ("adaptive_avg_pool1d", "output_size", lambda e: fc.adaptive_avg_pool1d(ones(1, 16, 8), 2**31 - 1, backend=e)),
    ("adaptive_max_pool2d", "output_size", lambda e: fc.adaptive_max_pool2d(X, (BIG, 10**5), return_indices=True, backend=e)),
]

BACKWARD = [
    ("conv2d_input", "input_shape", lambda e: G.conv2d_input((1, 1, BIG, BIG), ones(1, 1, 1, 1), ones(1, 1, 1, 1), stride=BIG, backend=e)),
    ("conv1d_input", "input_shape", lambda e: G.conv1d_input((1, 64, 2**31 - 1), ones(1, 64, 1), ones(1, 1, 1), stride=2**31 - 1, backend=e)),
    ("conv2d_weight", "weight_shape", lambda e: G.conv2d_weight(ones(1, 1, 8, 8), (1, 1, 2 * 10**5, 2 * 10**5), ones(1, 1, 9, 9), padding=10**5, backend=e)),
    ("conv2d_bias", "grad_output", lambda e: G.conv2d_bias(huge(1, 16, 10**5, 10**5), backend=e)),
    ("conv_transpose2d_input", "input_shape", lambda e: G.conv_transpose2d_input((1, 1, BIG + 1, BIG + 1), ones(1, 1, 1, 1), ones(1, 1, 1, 1), padding=BIG // 2, backend=e)),
    ("conv_transpose2d_weight", "weight_shape", lambda e: G.conv_transpose2d_weight(ones(1, 1, 1, 1), (1, 1, 2 * 10**5 + 1, 2 * 10**5 + 1), ones(1, 1, 1, 1), padding=10**5, backend=e)),
    ("depthwise_conv2d_input", "input_shape", lambda e: G.depthwise_conv2d_input((1, 1, BIG, BIG), ones(1, 1, 1, 1), ones(1, 1, 1, 1), stride=BIG, backend=e)),
    ("depthwise_conv2d_weight", "weight_shape", lambda e: G.depthwise_conv2d_weight(ones(1, 1, 8, 8), (1, 1, 2 * 10**5, 2 * 10**5), ones(1, 1, 9, 9), padding=10**5, backend=e)),
    ("separable_conv2d_input", "input_shape", lambda e: G.separable_conv2d_input((1, 1, BIG, BIG), ones(1, 1, 1, 1), ones(1, 1, 1, 1), ones(1, 1, 1, 1), stride=BIG, backend=e)),
    ("separable_conv2d_depthwise_weight", "depthwise_weight_shape", lambda e: G.separable_conv2d_depthwise_weight(ones(1, 1, 8, 8), (1, 1, 2 * 10**5, 2 * 10**5), ones(1, 1, 1, 1), ones(1, 1, 9, 9), padding=10**5, backend=e)),
    ("separable_conv2d_pointwise_weight", "grad_output", lambda e: G.separable_conv2d_pointwise_weight(ones(1, 3, 1000, 100), ones(3, 1, 1, 1), (BIG, 3, 1, 1), huge(1, BIG, 1000, 100), backend=e)),
    ("separable_conv2d_depthwise_bias", "grad_output", lambda e: G.separable_conv2d_depthwise_bias(ones(2, 3, 1, 1), huge(1, 2, 10**5, 10**5), backend=e)),
    ("separable_conv2d_backward", "padding", lambda e: G.separable_conv2d_backward(X, ones(3, 1, 3, 3), ones(2, 3, 1, 1), huge(1, 2, 2 * 10**5 + 6, 2 * 10**5 + 6), padding=10**5, backend=e)),
    ("max_pool2d_input", "input", lambda e: G.max_pool2d_input(huge(1, 1, 2 * 10**5, 2 * 10**5), huge(1, 1, 2 * 10**5, 2 * 10**5), 1, backend=e)),
    ("avg_pool2d_input", "input_shape", lambda e: G.avg_pool2d_input((1, 1, BIG, BIG), ones(1, 1, 1, 1), 1, BIG, backend=e)),
    ("avg_pool1d_input", "input_shape", lambda e: G.avg_pool1d_input((1, 64, 2**31 - 1), ones(1, 64, 1), 1, 2**31 - 1, backend=e)),
    ("adaptive_avg_pool2d_input", "input_shape", lambda e: G.adaptive_avg_pool2d_input((1, 1, BIG, BIG), ones(1, 1, 1, 1), backend=e)),
    ("adaptive_max_pool2d_input", "input", lambda e: G.adaptive_max_pool2d_input(huge(1, 1, 2 * 10**5, 2 * 10**5), ones(1, 1, 1, 1), backend=e)),
]


@pytest.mark.parametrize("what, name, fn", FORWARD + BACKWARD, ids=[c[0] for c in FORWARD + BACKWARD])
def test_too_large_is_refused_naming_the_argument(engine, what, name, fn):
    with pytest.raises(ValueError, match=rf": {name} is too large: the call would allocate [0-9.]+ GiB"):
        fn(engine)


def test_padding_1e5_on_a_small_input(engine):
    # the case that once ended in "MemoryError: Unable to allocate ..."; (1, 4, 200006, 200006)
    # float32 is 596.1 GiB
    with pytest.raises(ValueError, match=r"conv2d: padding is too large: .* 596\.1 GiB"):
        fc.conv2d(X, ones(4, 3, 3, 3), padding=10**5, backend=engine)


def test_the_estimate_is_exact_at_the_limit(engine, monkeypatch):
    # conv2d's only allocation is its output, (1, 4, 6, 6) float32 = 576 bytes: a limit of 576
    # lets it through, 575 refuses it (so the estimate counts that array, and not more)
    monkeypatch.setattr(_shapes, "MEMORY_BYTES", 576)
    assert fc.conv2d(X, ones(4, 3, 3, 3), backend=engine).shape == (1, 4, 6, 6)
    monkeypatch.setattr(_shapes, "MEMORY_BYTES", 575)
    with pytest.raises(ValueError, match="conv2d: weight is too large"):
        fc.conv2d(X, ones(4, 3, 3, 3), backend=engine)


def test_beyond_the_element_limit_names_the_argument_too(engine):
    # more than MAX_ELEMENTS output elements: refused by the geometry, whatever the memory
    with pytest.raises(ValueError, match="conv2d: padding is too large: .* elements"):
        fc.conv2d(X, ones(4, 3, 3, 3), padding=10**7, backend=engine)
    with pytest.raises(ValueError, match="conv_transpose2d: stride is too large: .* elements"):
        fc.conv_transpose2d(X, ones(3, 2, 3, 3), stride=2**31 - 1, backend=engine)


def test_default_limit_is_the_machines_memory():
    if not hasattr(os, "sysconf"):
        pytest.skip("no os.sysconf")
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        total = -1
    want = total if total > 0 else _shapes.DEFAULT_MEMORY_BYTES
    assert _shapes._physical_memory() == want


def test_invalid_arguments_are_reported_before_the_size(engine):
    # reflect padding must be smaller than the input: that is the error, not the size
    with pytest.raises(ValueError, match="smaller than the input size 8 for padding_mode='reflect'"):
        fc.conv2d(X, ones(4, 3, 3, 3), padding=10**5, padding_mode="reflect", backend=engine)
    with pytest.raises(ValueError, match="output_padding must be smaller"):
        fc.conv_transpose2d(X, ones(3, 2, 3, 3), stride=10**5, output_padding=10**5, backend=engine)
