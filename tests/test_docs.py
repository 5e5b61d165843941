"""The docstring examples of every fastconv module run and print what they say."""

import doctest
import importlib
import pathlib

import pytest

import fastconv

PACKAGE = pathlib.Path(fastconv.__file__).parent


def _modules_with_examples():
    """Every module of the package whose source holds a ``>>>`` example, found from the files
    (no import needed), as dotted names."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>>" not in path.read_text(encoding="utf-8"):
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


MODULES = _modules_with_examples()


def test_modules_found():
    # the finder sees the modules known to carry examples (a broken finder cannot pass)
    for name in ("fastconv.ops.conv", "fastconv.ops.pool", "fastconv.ops.grad",
                 "fastconv.analysis.summary", "fastconv.analysis.receptive_field",
                 "fastconv.analysis.accounting", "fastconv.analysis.erf", "fastconv.models",
                 "fastconv.nn.init"):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    # import_module returns sys.modules[name]: the module even where the package re-exports
    # a function of the same name (fastconv.summary, fastconv.receptive_field)
    module = importlib.import_module(name)
    assert module.__name__ == name
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
