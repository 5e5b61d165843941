"""The docstring examples of the public modules run and print what they say."""

import doctest
import importlib

import pytest

MODULES = ["fastconv.conv", "fastconv.pool", "fastconv.grad"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
