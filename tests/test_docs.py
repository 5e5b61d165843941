"""The docstring examples of every fastconv module run and print what they say."""

import doctest
import importlib
import inspect
import pathlib
import pydoc

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


def _public():
    """(qualified name, object) of every public function and class whose docstring must
    show how to call it: fastconv's functions, the gradients, the layers, the init
    functions, the model functions and the analysis tools."""
    from fastconv import accounting, erf, init, models, nn
    from fastconv import grad as G
    from fastconv.analysis import receptive_field as rf_module
    from fastconv.analysis import summary as summary_module

    spaces = [("fastconv", fastconv), ("fastconv.grad", G), ("fastconv.nn", nn),
              ("fastconv.init", init), ("fastconv.models", models),
              ("fastconv.accounting", accounting), ("fastconv.erf", erf),
              ("fastconv.analysis.receptive_field", rf_module),
              ("fastconv.analysis.summary", summary_module)]
    out = []
    for prefix, space in spaces:
        for name in space.__all__:
            obj = getattr(space, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                out.append((f"{prefix}.{name}", obj))
    return out


PUBLIC = _public()


def test_public_names_found():
    names = {n for n, _ in PUBLIC}
    for name in ("fastconv.conv2d", "fastconv.summary", "fastconv.grad.conv2d_input",
                 "fastconv.nn.Conv2d", "fastconv.nn.Module", "fastconv.init.kaiming_uniform_",
                 "fastconv.models.resnet18", "fastconv.accounting.count"):
        assert name in names
    assert len(PUBLIC) > 100


def _parameters(obj):
    return [p for p in inspect.signature(obj).parameters.values() if p.name != "self"]


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[n for n, _ in PUBLIC])
def test_public_docstring(name, obj):
    # NumPy style: a runnable example for every public name, its parameters and (for a
    # function) what it returns; a new public name without them fails here
    doc = inspect.getdoc(obj) or ""
    assert ">>>" in doc, f"{name}: no example"
    assert "\nExamples\n--------\n" in doc, f"{name}: no Examples section"
    if _parameters(obj):
        assert "\nParameters\n----------\n" in doc, f"{name}: no Parameters section"
    if inspect.isfunction(obj):
        assert "\nReturns\n-------\n" in doc, f"{name}: no Returns section"


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[n for n, _ in PUBLIC])
def test_annotations_are_types(name, obj):
    # help() and inspect.signature show the types themselves (Union[int, tuple, str]), not
    # the names of aliases as strings ('Padding'), as `from __future__ import annotations`
    # would leave them
    sig = inspect.signature(obj)
    for p in sig.parameters.values():
        assert not isinstance(p.annotation, str), f"{name}({p.name}: {p.annotation!r})"
    assert not isinstance(sig.return_annotation, str), f"{name} -> {sig.return_annotation!r}"


def test_padding_annotation_resolves():
    from typing import Union

    annotation = inspect.signature(fastconv.conv2d).parameters["padding"].annotation
    assert annotation == Union[int, tuple, str]
    assert "Union[int, tuple, str]" in pydoc.render_doc(fastconv.conv2d)
