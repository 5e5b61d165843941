"""The command line's errors: one clean message naming the option (out of memory, inputs too
large, bad model names, output paths checked before the work, non-ASCII digits), and outputs
written independently of each other."""

import os

import pytest
from _cli import argparse_failure, clean_failure

from fastconv import benchmark as B
from fastconv import cli
from fastconv.analysis import accounting, erf
from fastconv.cli import _args

TINY = ["bench", "--suite", "tiny", "--repeat", "2", "--baselines", "numpy", "--quiet",
        "--engines", "reference", "--ops", "max_pool2d"]


def test_memory_error_is_a_clean_message(monkeypatch, capsys):
    from fastconv.cli import backends as _cmd_backends

    def boom(args):
        raise MemoryError("Unable to allocate 21.8 TiB")

    monkeypatch.setattr(_cmd_backends, "run", boom)
    code = cli.main(["backends"])
    clean_failure(capsys, code, "out of memory", "21.8 TiB")


def test_erf_huge_input_is_rejected_up_front(capsys):
    code = cli.main(["erf", "linear:1", "--input", "3x1000000x1000000"])
    clean_failure(capsys, code, "--input", "too large")
    with pytest.raises(ValueError, match="input_shape"):
        erf.effective_receptive_field(erf.build("linear:1", channels=1),
                                      (1, 10**7, 10**7))


def test_erf_accepts_the_summary_model_names(capsys):
    for name in ("mobilenetv2", "MobileNet-V2"):
        assert cli.main(["summary", name, "--input", "3x32x32"]) == 0
        assert cli.main(["erf", name, "--input", "3x32x32", "--json"]) == 0
    capsys.readouterr()
    code = cli.main(["erf", "lenet"])
    clean_failure(capsys, code, "lenet", "linear:L")


@pytest.mark.parametrize("where", ["missing", "folder"])
def test_erf_out_path_is_checked_before_the_work(where, monkeypatch, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(erf, "effective_receptive_field", lambda *a, **k: pytest.fail("ran"))
    path = tmp_path / "no" / "e.png" if where == "missing" else tmp_path
    code = cli.main(["erf", "linear:2", "--channels", "1", "--out", str(path)])
    clean_failure(capsys, code, "--out")
    assert os.listdir(tmp_path) == []


def test_erf_seed_and_counts_name_the_option(capsys):
    argparse_failure(capsys, ["erf", "linear:2", "--seed", "-1"], "--seed")
    argparse_failure(capsys, ["erf", "linear:2", "--samples", "0"], "--samples")
    argparse_failure(capsys, ["erf", "linear:2", "--channels", "３"], "--channels")


@pytest.mark.parametrize("option, name", [
    ("--json", "missing/r.json"), ("--json", "."), ("--plot", "missing/p.png"),
    ("--plot", "dir.png"),
])
def test_bench_output_paths_are_checked_before_the_run(option, name, monkeypatch, tmp_path,
                                                       capsys):
    if option == "--plot":
        pytest.importorskip("matplotlib")
    (tmp_path / "dir.png").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(B, "run_suite", lambda *a, **k: pytest.fail("ran before the check"))
    code = cli.main(TINY + [option, name])
    clean_failure(capsys, code, option)
    assert sorted(os.listdir(tmp_path)) == ["dir.png"]  # nothing left behind


def test_bench_writes_each_output_independently(monkeypatch, tmp_path, capsys):
    pytest.importorskip("matplotlib")

    def broken(report, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(B, "write_json", broken)
    png = tmp_path / "p.png"
    code = cli.main(TINY + ["--json", str(tmp_path / "r.json"), "--plot", str(png)])
    clean_failure(capsys, code, "--json", "No space left")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_check_writable_leaves_files_alone(tmp_path):
    existing = tmp_path / "a.json"
    existing.write_text("keep")
    _args.check_writable(str(existing), "--json")
    _args.check_writable(str(tmp_path / "new.json"), "--json")
    assert existing.read_text() == "keep" and os.listdir(tmp_path) == ["a.json"]


@pytest.mark.parametrize("text", ["²x8x8", "３x8x8", "3x8x٨"])
def test_input_shape_takes_ascii_digits_only(text, capsys):
    with pytest.raises(ValueError, match="input_shape"):
        accounting.parse_input_shape(text)
    for command in ("summary", "rf"):
        code = cli.main([command, "vgg16", "--input", text])
        clean_failure(capsys, code, "--input", "digits")
    code = cli.main(["erf", "linear:1", "--input", text])
    clean_failure(capsys, code, "--input")


def test_erf_spec_and_position_take_ascii_digits_only(capsys):
    with pytest.raises(ValueError, match="spec"):
        erf.build("linear:³")
    code = cli.main(["erf", "linear:³"])
    clean_failure(capsys, code, "linear:³")
    code = cli.main(["erf", "linear:1", "--position", "３,1"])
    clean_failure(capsys, code, "--position")
