"""`fastconv bench` on the tiny suite: the table, the JSON, the checks, the errors.

Timings are never asserted (the machines are noisy); only the harness's behaviour is.
"""

import json
import sys

import numpy as np
import pytest

from fastconv import benchmark as B
from fastconv.benchmark.baselines import NUMPY, run_fastconv, run_numpy
from fastconv.benchmark.layers import CASES, OPS, SUITES, expand_ops, select
from fastconv.cli import main

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

    monkeypatch.setattr(B, "_engine_runner", broken)
    machine = {"fma_gflops": 100.0, "bandwidth_gbs": 10.0}
    rec = B.bench_case(case, ["reference"], ["numpy"], "float32", 2, machine)
    assert rec["results"]["reference"]["status"].startswith("WRONG")
    assert "ms" not in rec["results"]["reference"]
    assert rec["results"]["numpy"]["status"] == "ok"


def test_engine_lacking_an_op_is_na(monkeypatch):
    case = select("tiny", ("avg_pool2d",))[0]

    def lacking():
        raise ValueError("backend 'reference' does not implement avg_pool2d")

    monkeypatch.setattr(B, "_engine_runner", lambda c, a, engine: B.Runner(engine, lacking))
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
