"""fastconv.summary: a model that is one merge (Residual, Concat) at the top level, read alike
by the summary, the receptive fields and the accounting; the analysis modules' examples."""

import doctest
import sys

import pytest

import fastconv
from fastconv import nn
from fastconv.analysis import accounting


@pytest.mark.parametrize("model, name", [
    (lambda: nn.Residual(nn.Conv2d(3, 3, 3, padding=1)), "Residual"),
    (lambda: nn.Concat(nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(3, 2, 1)), "Concat"),
])
def test_summary_of_a_top_level_merge(model, name):
    m = model()
    s = fastconv.summary(m, (3, 8, 8))
    assert s.layers[-1].name == name
    rf = fastconv.receptive_field(m, (3, 8, 8))
    acc = accounting.count(m, (3, 8, 8))
    assert [r.name for r in rf.layers] == [r.name for r in acc.layers]
    assert rf.layers[-1].name == name and rf.layer.name == name
    assert name in str(s)


@pytest.mark.parametrize("name", ["fastconv.analysis.summary", "fastconv.analysis.receptive_field"])
def test_module_examples_run(name):
    # fastconv.summary / fastconv.receptive_field are the functions; the modules are here
    module = sys.modules[name]
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
