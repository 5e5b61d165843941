"""`fastconv bench` on the tiny suite: the table, the JSON, the checks, the errors; `--model`
with and without torch; tables printed as they are done; numba compiled before it is timed;
the roof of each case; the busy-machine advice; the chart; `fastconv --version`.

Timings are never asserted (the machines are noisy); only the harness's behaviour is.
"""

import io
import json
import sys
import threading
import time

import numpy as np
import pytest

import fastconv
from fastconv import benchmark as B
from fastconv import models
from fastconv.analysis import accounting
from fastconv.benchmark.baselines import NUMPY, run_fastconv, run_numpy
from fastconv.benchmark.layers import CASES, OPS, SUITES, expand_ops, select
from fastconv.benchmark.probe import cache_sizes, probe_peak, roofline
from fastconv.benchmark.timing import NumbaWarmup
from fastconv.cli import main
from fastconv.nn import init

TINY = ["bench", "--suite", "tiny", "--repeat", "2", "--baselines", "numpy", "--quiet"]


def test_table_and_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(TINY + ["--engines", "reference", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "machine:" in text and "elapsed" in text
    for op in OPS:
        assert f"tiny {op}" in text
    doc = json.loads(out.read_text())
    assert doc["engines"] == ["reference"] and doc["baselines"] == ["numpy"]
    assert len(doc["cases"]) == len(OPS)
    for case in doc["cases"]:
        for label in ("reference", "numpy"):
            r = case["results"][label]
            assert r["status"] == "ok", (case["name"], label, r)
            assert r["ms"] > 0 and len(r["samples_s"]) >= 1
            assert r["speedup_vs_numpy"] > 0
        assert case["results"]["numpy"]["speedup_vs_numpy"] == pytest.approx(1.0)


def test_ops_filter_and_list(capsys):
    assert main(["bench", "--suite", "full", "--ops", "pool,transpose", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines and all(("pool" in ln) or ("conv_transpose2d" in ln) for ln in lines)


def test_wrong_result_is_reported_not_timed(monkeypatch):
    case = select("tiny", ("max_pool2d",))[0]

    def broken(c, a, engine):
        return B.Runner(engine, lambda: run_fastconv(c, a, engine) + 1.0)

    monkeypatch.setattr(B, "engine_runner", broken)
    machine = {"fma_gflops": 100.0, "bandwidth_gbs": 10.0}
    rec = B.bench_case(case, ["reference"], ["numpy"], "float32", 2, machine)
    assert rec["results"]["reference"]["status"].startswith("WRONG")
    assert "ms" not in rec["results"]["reference"]
    assert rec["results"]["numpy"]["status"] == "ok"


def test_engine_lacking_an_op_is_na(monkeypatch):
    case = select("tiny", ("avg_pool2d",))[0]

    def lacking():
        raise ValueError("backend 'reference' does not implement avg_pool2d")

    monkeypatch.setattr(B, "engine_runner", lambda c, a, engine: B.Runner(engine, lacking))
    rec = B.bench_case(case, ["reference"], ["numpy"], "float64", 1, {})
    assert rec["results"]["reference"]["status"] == "n/a"
    text = B.format_report(
        {**_report_shell(), "cases": [rec], "summary": {}, "engines": ["reference"]}
    )
    assert "n/a" in text


def _report_shell():
    return {
        "suite": "tiny",
        "dtype": "float64",
        "repeat": 1,
        "engines": [],
        "baselines": ["numpy"],
        "elapsed_s": 0.0,
        "machine": {
            "cpu": "cpu",
            "cores": 1,
            "threads": 1,
            "kernels": "-",
            "numpy": np.__version__,
            "numpy_blas_threads": None,
        },
    }


def test_baselines_line_names_torchs_level():
    from fastconv.benchmark.report import format_header

    rep = _report_shell()
    rep["baselines"] = ["numpy", "torch"]
    rep["machine"].update(torch="2.x", torch_threads=2, torch_isa="AVX2",
                          torch_onednn_max_isa="AVX2")
    line = next(t for t in format_header(rep) if t.startswith("baselines:"))
    assert "torch 2.x (2 threads, AVX2; oneDNN capped at AVX2)" in line
    rep["machine"].update(torch_isa=None, torch_onednn_max_isa=None)  # an older torch
    line = next(t for t in format_header(rep) if t.startswith("baselines:"))
    assert "torch 2.x (2 threads)" in line


def test_plot_without_matplotlib(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code = main(TINY + ["--plot", str(tmp_path / "p.png")])
    assert code == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "not installed" in err
    assert not (tmp_path / "p.png").exists()


def test_plot_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "p.png"
    assert main(TINY + ["--engines", "reference", "--ops", "max_pool2d", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--suite", "nope"], "invalid choice"),
        (["--repeat", "0"], "positive integer"),
        (["--threads", "x"], "positive integer"),
        (["--ops", "conv9d"], "unknown op"),
        (["--engines", "fortran"], "unknown engine"),
        (["--baselines", "matlab"], "unknown baseline"),
        (["--model", "lenet"], "unknown model"),
        (["--plot", "out.svg"], ".png"),
    ],
)
def test_bad_arguments_exit_2(argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        code = main(["bench", "--suite", "tiny", *argv])
        raise SystemExit(code)
    assert exc.value.code == 2
    assert words in capsys.readouterr().err


def test_suites_are_consistent():
    assert set(SUITES) >= {"quick", "full", "resnet50", "mobilenet_v2"}
    assert len(select("full")) == len(CASES)
    for c in CASES:
        c.geometry()  # every case is a valid call
        assert c.macs >= 0 and c.bytes(4) > 0
        assert c.op in NUMPY
    assert expand_ops(["pool"]) == ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d")


def test_macs_by_hand():
    conv = next(c for c in CASES if c.name == "resnet50 3x3 64->64 @56")
    assert conv.macs == 64 * 56 * 56 * 64 * 9
    tconv = next(c for c in CASES if c.name == "tconv 4x4/2 128->64 @16")
    assert tconv.macs == 128 * 16 * 16 * 64 * 16
    grouped = next(c for c in CASES if "g32" in c.name)
    assert grouped.macs == 256 * 28 * 28 * (256 // 32) * 9


@pytest.mark.parametrize("case", select("tiny"), ids=lambda c: c.op)
def test_numpy_baseline_matches_reference(case):
    a = case.arrays(np.float64)
    np.testing.assert_allclose(
        run_numpy(case, a), run_fastconv(case, a, "reference"), rtol=1e-10, atol=1e-10
    )


# ------------------------------------------------------------------ the newcomer's run


def _fast_engine():
    """The C engine when it is built here, else the reference engine (both need no JIT)."""
    return "c" if fastconv.available_backends()["c"] == "available" else "reference"


@pytest.mark.parametrize(
    "fill",
    [
        lambda a: init.uniform_(a, -0.5, 2.0, generator=0),
        lambda a: init.normal_(a, 0.3, 1.5, generator=0),
        lambda a: init.xavier_uniform_(a, generator=0),
        lambda a: init.xavier_normal_(a, gain=2.0, generator=0),
        lambda a: init.kaiming_uniform_(a, a=5**0.5, generator=0),
        lambda a: init.kaiming_normal_(a, mode="fan_out", nonlinearity="relu", generator=0),
        lambda a: init.constant_(a, 0.1),
        init.zeros_,
        init.ones_,
    ],
    ids=["uniform", "normal", "xavier_uniform", "xavier_normal", "kaiming_uniform",
         "kaiming_normal", "constant", "zeros", "ones"],
)
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_init_gives_the_same_values_in_float32_and_float64(fill, layout):
    """One seed, one set of weights: a float32 model and its float64 twin built with the same
    seed hold the same values (the float64 ones rounded to float32), as `bench --model`'s
    check needs."""
    def make(dt):
        a = np.empty((16, 8, 3, 3), dt)
        return a if layout == "contiguous" else np.empty((16, 8, 3, 6), dt)[..., ::2]

    a32, a64 = fill(make(np.float32)), fill(make(np.float64))
    np.testing.assert_array_equal(a32, a64.astype(np.float32))
    assert np.unique(a64).size > 1 or fill in (init.zeros_, init.ones_) or a64.flat[0] == 0.1


def test_zoo_models_share_their_weights_across_dtypes():
    m32 = models.resnet18(generator=0, dtype=np.float32)
    m64 = models.resnet18(generator=0, dtype=np.float64)
    for (k, a), b in zip(m32.state_dict().items(), m64.state_dict().values()):
        np.testing.assert_array_equal(a, b.astype(a.dtype), err_msg=k)


def _no_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails, find_spec: None
    assert not B.torch_installed()


def test_model_without_torch_checks_ok_and_runs_no_suite(monkeypatch, tmp_path, capsys):
    _no_torch(monkeypatch)
    engine = _fast_engine()
    out = tmp_path / "m.json"
    argv = ["bench", "--model", "resnet18", "--input", "3x32x32", "--engines", engine,
            "--repeat", "2", "--quiet", "--json", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["cases"] == [] and doc["suite"] == ""  # the model alone: no layer suite
    assert doc["baselines"] == ["numpy"]
    rec = doc["model"]
    assert rec["checked_against"] == "reference float64" and rec["input"] == [1, 3, 32, 32]
    assert rec["results"][engine]["status"] == "ok", rec["results"][engine]
    assert "torch" not in rec["results"]
    assert rec["gflop"] == pytest.approx(
        2 * accounting.count(models.resnet18(initialize=False), (3, 32, 32)).macs / 1e9
    )
    assert "model resnet18" in text and "WRONG" not in text and "summary" not in text


def test_model_with_a_suite_runs_both(tmp_path):
    out = tmp_path / "m.json"
    argv = ["bench", "--model", "resnet18", "--input", "3x32x32", "--suite", "tiny",
            "--ops", "max_pool2d", "--engines", "reference", "--baselines", "numpy",
            "--repeat", "1", "--quiet", "--json", str(out)]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert [c["name"] for c in doc["cases"]] == ["tiny max_pool2d"]
    assert doc["model"]["results"]["reference"]["status"] == "ok"


@pytest.mark.parametrize("name", ["mobilenet_v2", "vgg16"])
def test_model_batches_against_torch(tmp_path, capsys, name):
    pytest.importorskip("torch")
    out = tmp_path / "m.json"
    argv = ["bench", "--model", name, "--input", "3x32x32", "--batch", "1", "2",
            "--engines", _fast_engine(), "--baselines", "torch", "--repeat", "1", "--quiet",
            "--json", str(out)]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert [m["input"][0] for m in doc["models"]] == [1, 2] and doc["model"] == doc["models"][0]
    for rec in doc["models"]:
        assert rec["checked_against"] == "torch float64"
        assert {r["status"] for r in rec["results"].values()} == {"ok"}, rec["results"]
        assert rec["results"]["torch"]["ms"] > 0
    assert capsys.readouterr().out.count(f"model {name} forward") == 2


def test_batch_needs_a_model():
    with pytest.raises(SystemExit):
        main(["bench", "--batch", "0", "--model", "resnet18"])
    assert main(["bench", "--batch", "2", "--suite", "tiny", "--engines", "reference",
                 "--quiet"]) != 0


def test_each_table_is_printed_as_its_case_finishes(monkeypatch):
    events = []
    prepare = B._prepare_case

    def spy(case, *args, **kwargs):
        events.append("start " + case.name)
        return prepare(case, *args, **kwargs)

    monkeypatch.setattr(B, "_prepare_case", spy)
    progress = io.StringIO()
    cases = select("tiny", ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"))
    report = B.run(
        cases, ["reference"], ["numpy"], "float64", 1, progress=progress, suite="tiny",
        on_start=lambda rep: events.append("header"),
        on_case=lambda rec: events.append("table " + "\n".join(B.format_case(rec)).split()[0]),
    )
    names = [c.name for c in cases]
    want = ["header"]
    for n in names:
        want += ["start " + n, "table " + n.split()[0]]
    assert events == want
    assert len(report["cases"]) == len(cases)
    lines = progress.getvalue().splitlines()
    assert lines[0] == f"[1/{len(cases)}] {names[0]}"
    assert all("left)" in ln for ln in lines[1:]) and len(lines) == len(cases)


def test_cli_streams_header_then_tables(capsys):
    assert main(TINY + ["--engines", "reference", "--ops", "pool"]) == 0
    out = capsys.readouterr().out
    assert out.index("machine:") < out.index("tiny max_pool2d") < out.index("summary")


def test_numba_warmup_compiles_only_the_suite_ops():
    cases = select("quick", ("max_pool2d", "adaptive_avg_pool2d"))
    warm = B.numba_warmup(cases, "float32")
    assert list(warm.calls) == ["max_pool2d", "adaptive_avg_pool2d"]
    warm = B.numba_warmup(select("tiny"), "float32", model=("resnet18", (1, 3, 32, 32)))
    assert list(warm.calls) == list(OPS) + ["model resnet18"]


def test_numba_warmup_says_when_it_compiles():
    said = []

    def note(ops, helpers):
        said.append((ops, helpers))

    slow = NumbaWarmup({"a": lambda: time.sleep(0.3), "b": lambda: None}, note, 0.05, cores=1)
    assert slow.start().wait() >= 0.3
    assert slow.compiling and said == [(["a", "b"], 0)]
    fast = NumbaWarmup({"a": lambda: None}, note, 5.0).start()
    fast.wait()
    assert not fast.compiling and len(said) == 1
    broken = NumbaWarmup({"a": lambda: 1 / 0}).start()
    broken.wait()
    assert "ZeroDivisionError" in broken.errors["a"]


def test_numba_warmup_shares_the_compiling_out_with_helper_processes():
    """Once numba compiles, the ops not started go to helpers (here fake ones) by weight; an
    op needing others' kernels waits for them; the thread then loads the helpers' ops."""
    log = []

    class FakeHelper:
        def __init__(self, ops):
            self.ops = ops
            log.append(("helper starts", tuple(ops)))

        def wait(self):
            time.sleep(0.05)
            log.append(("helper done", tuple(self.ops)))

    calls = {op: (lambda op=op: log.append(("call", op)) or time.sleep(0.2 if op == "conv" else 0))
             for op in ("conv", "tconv", "dw", "sep", "pool")}
    warm = NumbaWarmup(calls, None, 0.05, helper=FakeHelper, cores=2,
                       weights={"conv": 4, "tconv": 3, "dw": 2, "pool": 1},
                       needs={"sep": ("dw", "conv")})
    assert warm.plan("conv", ["tconv", "dw", "sep", "pool"], 1) == {
        "tconv": 1, "dw": 1, "pool": 0, "sep": -1}
    warm.start().wait()
    assert warm.compiling and warm.handed_off == {"tconv": 1, "dw": 1}
    assert log == [
        ("call", "conv"),
        ("helper starts", ("tconv", "dw")),
        ("call", "pool"),
        ("helper done", ("tconv", "dw")),
        ("call", "tconv"),  # loaded from the cache the helper filled
        ("call", "dw"),
        ("call", "sep"),  # after the helper: it runs dw's kernels
    ]
    # a helper that cannot start: the thread compiles everything itself
    warm = NumbaWarmup(calls, None, 0.05, helper=lambda ops: None, cores=4).start()
    warm.wait()
    assert warm.compiling and not warm.handed_off and set(warm.seconds) == set(calls)


@pytest.mark.skipif(
    fastconv.available_backends()["numba"] != "available", reason="numba engine unavailable"
)
def test_compile_numba_helper_process_runs_the_calls(tmp_path):
    """The helper's entry point, run here in-process: it makes the numba calls it is given."""
    case = select("tiny", ("max_pool2d",))[0]
    B.compile_numba(json.dumps({"dtype": "float32",
                                "calls": [{"case": case.name, "params": case.params()}]}))
    rebuilt = B.Case.from_params(case.name, case.params())
    assert rebuilt == case


@pytest.mark.skipif(
    fastconv.available_backends()["numba"] != "available", reason="numba engine unavailable"
)
def test_numba_is_ready_before_it_is_timed(monkeypatch):
    order = []
    real = B.NumbaWarmup.wait

    def wait(self):
        order.append("jit ready")
        return real(self)

    monkeypatch.setattr(B.NumbaWarmup, "wait", wait)
    timed = B.time_interleaved
    monkeypatch.setattr(B, "time_interleaved", lambda r, *a: order.append("timed") or timed(r, *a))
    report = B.run(select("tiny", ("max_pool2d",)), ["numba"], [], "float32", 1)
    assert order[0] == "jit ready" and "timed" in order
    assert report["numba_jit"]["per_op_s"].keys() == {"max_pool2d"}
    assert report["cases"][0]["results"]["numba"]["status"] == "ok"


_ROOFS = {
    "fma_gflops": 100.0,
    "bandwidth_gbs": 10.0,
    "roofs": [
        {"level": "L2", "capacity_bytes": 4 << 20, "gbs": 80.0},
        {"level": "L3", "capacity_bytes": 32 << 20, "gbs": 40.0},
        {"level": "DRAM", "capacity_bytes": None, "gbs": 10.0},
    ],
}


def test_roofline_uses_the_level_the_working_set_fits_in():
    gpool = next(c for c in CASES if c.op == "adaptive_avg_pool2d")
    nbytes = gpool.bytes(4)
    assert nbytes <= 4 << 20  # 3.3 MB: held by the L2 of two cores
    r = roofline(0, nbytes, 4, _ROOFS)
    assert r["roof"] == "L2" and r["bound"] == "memory"
    assert r["seconds"] == pytest.approx(nbytes / 80e9)
    assert roofline(0, 10 << 20, 4, _ROOFS)["roof"] == "L3"
    assert roofline(0, 100 << 20, 4, _ROOFS)["roof"] == "DRAM"
    conv = next(c for c in CASES if c.name == "resnet50 3x3 64->64 @56")
    r = roofline(conv.flops, conv.bytes(4), 4, _ROOFS)
    assert r["roof"] == "FMA" and r["seconds"] == pytest.approx(conv.flops / 100e9)
    assert roofline(conv.flops, conv.bytes(8), 8, _ROOFS)["seconds"] == pytest.approx(
        conv.flops / 50e9
    )
    # a machine probed without cache levels (older JSON, no compiled probe): DRAM only
    assert roofline(0, nbytes, 4, {"bandwidth_gbs": 10.0})["roof"] == "DRAM"


def test_roof_column_says_which_roof_and_why_it_is_over_100():
    case = select("tiny", ("adaptive_avg_pool2d",))[0]
    rec = B.bench_case(case, ["reference"], ["numpy"], "float32", 1, _ROOFS)
    assert rec["roof"] == "L2"
    text = "\n".join(B.format_case(rec))
    assert "memory-bound (L2 roof)" in text
    rec["results"]["numpy"]["pct_roof"] = 150.0
    text = "\n".join(B.format_case(rec))
    assert "150*" in text and "over 100%" in text and "L2 roof" in text
    for res in rec["results"].values():
        res["pct_roof"] = 99.6
    assert "*" not in "\n".join(B.format_case(rec))


@pytest.mark.skipif(fastconv.available_backends()["c"] != "available", reason="no C engine")
def test_probe_measures_each_level():
    m = probe_peak(1)
    levels = [r["level"] for r in m["roofs"]]
    assert levels[-1] == "DRAM" and m["roofs"][-1]["gbs"] == m["bandwidth_gbs"] > 0
    gbs = [r["gbs"] for r in m["roofs"]]
    assert gbs == sorted(gbs, reverse=True)  # a smaller level is never slower
    caps = [r["capacity_bytes"] for r in m["roofs"][:-1]]
    assert caps == sorted(caps) and all(c > 0 for c in caps)
    if cache_sizes().get(2):
        assert levels[0] == "L2"


def test_busy_machine_says_what_to_do():
    shell = _report_shell()
    shell["machine"].update(load_average_1min=3.0, cores=2)
    text = B.format_report({**shell, "cases": [], "summary": {}})
    assert "BUSY" in text and "--threads 1" in text
    shell["machine"].update(load_average_1min=0.2)
    assert "--threads 1" not in B.format_report({**shell, "cases": [], "summary": {}})


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastconv {fastconv.__version__}"


def test_plot_labels_machine_date_and_busy_note(monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    case = select("tiny", ("max_pool2d",))[0]
    rec = B.bench_case(case, ["reference"], ["numpy"], "float32", 1, {})
    rec["results"]["reference"]["speedup_vs_numpy"] = 2.5
    shell = _report_shell()
    shell["machine"].update(load_average_1min=3.0, cores=2, cpu="Test CPU")
    report = {**shell, "cases": [rec], "summary": {}, "engines": ["reference"],
              "date": "2026-01-02 03:04:05 UTC"}
    seen = {}
    save = Figure.savefig

    def spy(fig, path, **kw):
        ax = fig.axes[0]
        seen["labels"] = [t.get_text() for t in ax.texts]
        seen["title"] = ax.get_title()
        seen["notes"] = [t.get_text() for t in fig.texts]
        return save(fig, path, **kw)

    monkeypatch.setattr(Figure, "savefig", spy)
    path = tmp_path / "p.png"
    B.plot(report, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "x2.50" in seen["labels"]
    assert "Test CPU" in seen["title"] and "2026-01-02 03:04:05 UTC" in seen["title"]
    assert any("BUSY" in n for n in seen["notes"])


@pytest.mark.parametrize(
    "call, start",
    [
        (lambda: B.resolve_engines(["fortran"]), "resolve_engines: requested"),
        (lambda: B.resolve_baselines(["matlab"]), "resolve_baselines: requested"),
        (lambda: expand_ops(["conv9d"]), "expand_ops: names"),
        (lambda: select("nope"), "select: suite"),
        (lambda: B.bench_model("lenet", [], [], "float32", 1), "bench_model: name"),
    ],
)
def test_errors_start_with_the_function_then_the_parameter(call, start):
    with pytest.raises(ValueError) as exc:
        call()
    assert str(exc.value).startswith(start)


@pytest.mark.parametrize("option", ["--engines", "--baselines", "--ops", "--model"])
def test_cli_errors_name_the_option(option, capsys):
    with pytest.raises(SystemExit):
        main(["bench", option, "nonsense"])
    assert f"argument {option}: unknown" in capsys.readouterr().err


def test_macs_are_counted_by_accounting(monkeypatch):
    calls = []
    for name in ("conv2d_macs", "conv_transpose2d_macs"):
        real = getattr(accounting, name)
        monkeypatch.setattr(
            accounting, name, lambda *a, _r=real, _n=name, **k: calls.append(_n) or _r(*a, **k)
        )
    for op in ("conv2d", "conv_transpose2d", "depthwise_conv2d", "separable_conv2d"):
        assert select("tiny", (op,))[0].macs > 0
    assert calls == ["conv2d_macs", "conv_transpose2d_macs", "conv2d_macs", "conv2d_macs",
                     "conv2d_macs"]


def test_no_private_names_of_other_modules():
    """The harness uses other modules' public names only (no `module._name`)."""
    import ast
    import pathlib

    root = pathlib.Path(fastconv.__file__).parent
    files = sorted((root / "benchmark").glob("*.py")) + [root / "cli" / "bench.py"]
    files.append(pathlib.Path(__file__).parents[1] / "bench" / "layers.py")
    bad = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                bad.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert not bad, bad


FILTERS = ["bench", "--suite", "filters", "--size", "40", "--repeat", "1", "--threads", "1"]


def test_filters_suite_table_and_json(tmp_path, capsys):
    out = tmp_path / "f.json"
    assert main(FILTERS + ["--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "filters suite: 40x40 float32" in text
    for name in ("correlate 3x3", "correlate 31x31", "gaussian sigma 16"):
        assert name in text
    assert "DIFF" not in text  # every library computed what fastconv did
    doc = json.loads(out.read_text())
    assert len(doc["rows"]) == 8 and doc["machine"]["threads"] == 1


def test_filters_suite_without_scipy_or_opencv(monkeypatch, capsys):
    # a library that is not installed: its columns are left out, the table still prints
    monkeypatch.setitem(sys.modules, "cv2", None)
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.ndimage", None)
    monkeypatch.setitem(sys.modules, "scipy.signal", None)
    assert main(FILTERS) == 0
    text = capsys.readouterr().out
    assert "correlate 9x9" in text
    assert "x opencv" not in text and "x ndimage" not in text


def test_filters_suite_refuses_layer_options(capsys):
    code = main(FILTERS + ["--engines", "c"])
    assert code != 0
    assert "--engines" in capsys.readouterr().err


def test_settle_waits_until_no_other_thread_runs(monkeypatch):
    """Before each interleaved sample the harness waits until the other threads of the
    process (other runners' OpenMP workers) stop running, polling every SETTLE_POLL_S."""
    from fastconv.benchmark import timing

    seen = iter([{"7"}] * 5 + [set()])
    calls = []

    def running(skip):
        calls.append(set(skip))
        return next(seen, set())

    monkeypatch.setattr(timing, "_running_threads", running)
    monkeypatch.setattr(timing, "SETTLE_MAX_S", 5.0)  # never reached, on a loaded machine too
    settle = timing.Settle()
    settle()
    assert len(calls) == 6 and calls[0] == set()
    assert settle.longest_s >= timing.SETTLE_S + 5 * timing.SETTLE_POLL_S
    assert settle.ignored == set()


def test_settle_clears_the_c_pools_lost_time(monkeypatch):
    """Each pause ends with the C engine's pool forgetting the time it saw lost to other
    programs, so that a sample starts from a quiet machine's state."""
    from fastconv.backends import c
    from fastconv.benchmark import timing

    monkeypatch.setattr(timing, "_running_threads", lambda skip: set())
    settle = timing.Settle()
    if c.AVAILABLE_REASON != "available":
        assert settle.forget is None
        return
    assert settle.forget is c.lib.fc_pool_forget_losses
    calls = []
    settle.forget = lambda: calls.append(1)
    settle()
    settle()
    assert calls == [1, 1]


def test_settle_stops_waiting_for_a_thread_that_never_sleeps(monkeypatch):
    """A thread still running after SETTLE_MAX_S is not a worker winding down: the pause ends
    and later pauses do not wait for it (but do for others)."""
    from fastconv.benchmark import timing

    monkeypatch.setattr(timing, "SETTLE_MAX_S", 0.03)
    busy = {"7", "8"}
    looks = []

    def running(skip):
        looks.append(1)
        return busy - skip

    monkeypatch.setattr(timing, "_running_threads", running)
    settle = timing.Settle()
    t0 = time.perf_counter()
    settle()
    assert time.perf_counter() - t0 >= 0.03 and len(looks) > 1
    assert settle.ignored == {"7", "8"}
    looks.clear()
    settle()
    assert len(looks) == 1  # one look, nothing left to wait for
    busy.add("9")  # a new thread that runs is waited for
    t0 = time.perf_counter()
    settle()
    assert time.perf_counter() - t0 >= 0.03 and settle.ignored == {"7", "8", "9"}


def test_running_threads_sees_a_thread_in_native_code():
    """_running_threads reads /proc: a thread computing in C (the GIL released) is seen
    running, and the calling thread never is."""
    from fastconv.benchmark import timing

    if timing._running_threads(set()) is None:
        pytest.skip("no /proc/self/task here")
    stop, tid = threading.Event(), []
    x = np.random.default_rng(0).standard_normal((600, 600))

    def work():
        tid.append(str(threading.get_native_id()))
        while not stop.is_set():
            np.linalg.eigvals(x)  # LAPACK, the GIL released

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        seen = False
        end = time.perf_counter() + 5
        while not seen and time.perf_counter() < end:
            running = timing._running_threads(set())
            assert str(threading.get_native_id()) not in running
            seen = bool(tid) and tid[0] in running
        assert seen
        assert tid[0] not in timing._running_threads({tid[0]})
    finally:
        stop.set()
        t.join()
