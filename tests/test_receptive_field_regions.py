"""LayerRF.region: padding modes (circular padding wraps, and says so; reflect reaches past
the interval), checked against the forward pass and the docs; bad indices named."""

import os
import sys

import numpy as np
import pytest

import fastconv
from fastconv import nn


def _rows_reaching(m, size, out=(0, 0)):
    """The input pixels whose change moves output ``out`` (positive weights)."""
    x = np.zeros((1, 1, size, size))
    base = m(x)[0, 0][out]
    hit = set()
    for i in range(size):
        for j in range(size):
            x2 = x.copy()
            x2[0, 0, i, j] = 1
            if m(x2)[0, 0][out] != base:
                hit.add((i, j))
    return hit


def test_circular_padding_is_reported_and_the_wrap_is_real():
    m = nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular", bias=False)
    m.weight[...] = 1
    layer = fastconv.receptive_field(m, (1, 8, 8)).layer
    assert layer.region((0, 0)) == ((-1.0, 1.0), (-1.0, 1.0))
    assert layer.padding_modes == ("circular",)
    assert "circular" in layer.note and "wraps" in layer.note
    # what the records say: the region, taken modulo the input size, is what reaches (0, 0)
    (h0, h1), (w0, w1) = layer.region((0, 0))
    wrapped = {(int(i) % 8, int(j) % 8) for i in np.arange(h0, h1 + 1)
               for j in np.arange(w0, w1 + 1)}
    assert (7, 7) in wrapped
    assert _rows_reaching(m, 8) == wrapped


def test_padding_modes_propagate_and_zeros_is_clean():
    plain = fastconv.receptive_field(nn.Conv2d(1, 1, 3, padding=1), (1, 8, 8))
    assert plain.layer.padding_modes == () and plain.layer.note == ""
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=2, padding_mode="reflect"),
                          nn.Residual(nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular")),
                          nn.MaxPool2d(2))
    rf = fastconv.receptive_field(model, (1, 8, 8))
    assert rf.layers[0].padding_modes == ("reflect",)
    assert [r.padding_modes for r in rf.layers[1:]] == [("circular", "reflect")] * 3
    # reflect padding 2 really does reach past the interval [-2, 0] (pixels 1 and 2)
    m = nn.Conv2d(1, 1, 3, padding=2, padding_mode="reflect", bias=False)
    m.weight[...] = 1
    assert fastconv.receptive_field(m, (1, 8, 8)).layer.region((0, 0))[0] == (-2.0, 0.0)
    assert {i for i, _ in _rows_reaching(m, 8)} == {0, 1, 2}


def test_circular_padding_is_documented():
    from fastconv.analysis.receptive_field import LayerRF

    doc = sys.modules["fastconv.analysis.receptive_field"]
    for text in (doc.__doc__, fastconv.receptive_field.__doc__, LayerRF.region.__doc__):
        assert "circular" in text and "modulo the input size" in text
    here = os.path.dirname(__file__)
    with open(os.path.join(here, "..", "docs", "receptive_field.md"), encoding="utf-8") as f:
        md = f.read()
    assert "modulo the input size" in md and "padding_modes" in md


def test_region_index_errors_name_index():
    layer = fastconv.receptive_field(nn.Conv2d(1, 1, 3), (1, 8, 8)).layer
    with pytest.raises(ValueError, match="index"):
        layer.region((0,))
    with pytest.raises(TypeError, match="index"):
        layer.region(3)
    with pytest.raises(TypeError, match="index"):
        layer.region((0.5, 1))
    with pytest.raises(ValueError, match="index"):
        layer.region((6, 0))  # the output is 6x6
    assert layer.region((5, 5)) == ((5.0, 7.0), (5.0, 7.0))
