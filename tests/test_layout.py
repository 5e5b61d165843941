"""The package's layout rules (README, Layout): `import fastconv` stays light, module-level
imports form no cycle, no library module imports the command line, and the old short module
names stay importable."""

import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

import fastconv

PACKAGE = pathlib.Path(fastconv.__file__).parent


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _graph(top_level_only: bool):
    """{module: set of fastconv modules it imports} (module-level statements only when
    ``top_level_only``)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for mod, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        deps = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                src = _resolve(mod, path.name == "__init__.py", node)
                subs = [f"{src}.{a.name}" for a in node.names]
                # `from pkg import submodule` needs the submodule, not the package's body
                names = subs if all(n in modules for n in subs) else [src] + subs
            else:
                continue
            deps.update(n for n in names if n in modules and n != mod)
        graph[mod] = deps
    return graph


def test_import_fastconv_loads_no_subpackage():
    code = "import sys, fastconv; print(' '.join(sorted(m for m in sys.modules if m.startswith('fastconv'))))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert "fastconv.ops.conv" in loaded  # the finder sees the ops
    for heavy in ("fastconv.nn", "fastconv.models", "fastconv.analysis", "fastconv.benchmark",
                  "fastconv.backends.numba_cuda", "fastconv.backends.numba_cpu",
                  "fastconv.dask", "fastconv.signal", "fastconv.ndimage", "fastconv.capsule",
                  "fastconv.cli", "fastconv.lessons"):
        assert not any(m == heavy or m.startswith(heavy + ".") for m in loaded), heavy


def _find_cycle(graph):
    """A list of modules forming an import cycle in ``graph``, or None."""
    state = {}

    def visit(m, stack):
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack + [m, d]
            if d not in state:
                found = visit(d, stack + [m])
                if found:
                    return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m, [])
            if found:
                return found
    return None


def test_module_level_imports_have_no_cycle():
    cycle = _find_cycle(_graph(top_level_only=True))
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_check_can_fail():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_library_module_imports_the_cli():
    for mod, deps in _graph(top_level_only=False).items():
        if mod.startswith("fastconv.cli"):
            continue
        assert not any(d == "fastconv.cli" or d.startswith("fastconv.cli.") for d in deps), mod


@pytest.mark.parametrize("short, home", [
    ("grad", "fastconv.ops.grad"), ("init", "fastconv.nn.init"),
    ("accounting", "fastconv.analysis.accounting"), ("erf", "fastconv.analysis.erf"),
    ("init_lesson", "fastconv.lessons.init_lesson"),
])
def test_short_module_names_are_the_modules(short, home):
    mod = importlib.import_module(f"fastconv.{short}")
    assert mod is importlib.import_module(home) is getattr(fastconv, short)
    assert mod.__name__ == home and mod.__spec__.name == home
