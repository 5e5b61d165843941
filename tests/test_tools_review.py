"""Regression tests for the review of the model tools: summary, receptive fields, ERF, the
init lesson, initialisers, the model zoo's arguments and the CLI's error handling."""

import doctest
import os
import sys

import numpy as np
import pytest

import fastconv
from fastconv import benchmark as B
from fastconv import cli, models, nn
from fastconv.analysis import accounting, erf
from fastconv.cli import _args
from fastconv.lessons import init_lesson
from fastconv.nn import init

TINY = ["bench", "--suite", "tiny", "--repeat", "2", "--baselines", "numpy", "--quiet",
        "--engines", "reference", "--ops", "max_pool2d"]


def clean_failure(capsys, code, *words):
    """The command failed with a one-line message naming ``words``, no traceback."""
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    for w in words:
        assert w in err, err
    return err


def argparse_failure(capsys, argv, *words):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    return clean_failure(capsys, 2, *words)


# ------------------------------------------------------------------ 1. top-level merges


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


# ------------------------------------------------------------------ 2. circular padding


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


# ------------------------------------------------------------------ 3. the lesson's depth


def test_lesson_supports_depth_one(capsys):
    assert cli.main(["demo", "init", "--steps", "1", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "plain stack of 1 conv3x3" in out and "layer 1" in out and "layer 2" not in out


def test_lesson_checks_arguments_before_training(monkeypatch, capsys):
    def no_training(*a, **k):
        raise AssertionError("trained before checking the arguments")

    monkeypatch.setattr(init_lesson, "train", no_training)
    monkeypatch.setattr(init_lesson, "activation_variances", no_training)
    for kw, word in ((dict(depth=0), "depth"), (dict(depth=1.5), "depth"),
                     (dict(seed=-1), "seed"), (dict(steps=0), "steps"),
                     (dict(inits=("zeros", "nope")), "inits"), (dict(inits=()), "inits")):
        with pytest.raises((ValueError, TypeError), match=word):
            init_lesson.run_lesson(**kw)
    argparse_failure(capsys, ["demo", "init", "--depth", "0"], "--depth")
    argparse_failure(capsys, ["demo", "init", "--seed", "-1"], "--seed")
    argparse_failure(capsys, ["demo", "init", "--steps", "３"], "--steps")


def test_lesson_seed_is_checked_in_the_api():
    with pytest.raises(ValueError, match="seed"):
        init_lesson.train("he", steps=1, seed=-1)
    with pytest.raises(ValueError, match="seed"):
        init_lesson.activation_variances("he", depth=1, seed=-1)


def test_lesson_plot_path_is_checked_first(monkeypatch, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(init_lesson, "run_lesson", lambda **k: pytest.fail("ran"))
    code = cli.main(["demo", "init", "--plot", str(tmp_path / "no" / "a.png")])
    clean_failure(capsys, code, "--plot", "does not exist")


# ------------------------------------------------------------------ 4. docstring examples


@pytest.mark.parametrize("name", ["fastconv.analysis.summary", "fastconv.analysis.receptive_field"])
def test_module_examples_run(name):
    # fastconv.summary / fastconv.receptive_field are the functions; the modules are here
    module = sys.modules[name]
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------ 5. model arguments


@pytest.mark.parametrize("value, exc", [
    (float("inf"), ValueError), (float("nan"), ValueError), (-1.0, ValueError), (0, ValueError),
    (1e12, ValueError), (True, TypeError), ("1", TypeError), (None, TypeError),
])
def test_width_mult_is_checked(value, exc):
    with pytest.raises(exc, match="width_mult"):
        models.mobilenet_v2(width_mult=value, initialize=False)


def test_width_mult_accepts_numbers():
    assert models.mobilenet_v2(width_mult=np.float32(0.5), initialize=False).num_parameters() == (
        models.mobilenet_v2(width_mult=0.5, initialize=False).num_parameters())


@pytest.mark.parametrize("build", [models.alexnet, models.vgg16, models.resnet18,
                                   models.resnet50, models.mobilenet_v2])
@pytest.mark.parametrize("value", ["no", None, 0, 1])
def test_initialize_must_be_a_bool(build, value):
    with pytest.raises(TypeError, match="initialize"):
        build(initialize=value)


# ------------------------------------------------------------------ 6. the CLI


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


# ------------------------------------------------------------------ 7. xavier


@pytest.mark.parametrize("fill", [init.xavier_uniform_, init.xavier_normal_])
def test_xavier_gain_and_empty_fans(fill):
    with pytest.raises(ValueError, match="gain"):
        fill(np.empty((3, 4)), gain=-1)
    with pytest.raises(ValueError, match=r"shape \(0, 0\)"):
        fill(np.empty((0, 0)))
    with pytest.raises(TypeError, match="gain"):
        fill(np.empty((3, 4)), gain="1")
    w = fill(np.empty((3, 4)), gain=0.0, generator=0)
    assert np.all(w == 0)
    assert fill(np.empty((0, 3)), generator=0).shape == (0, 3)  # torch returns too


def test_xavier_negative_gain_matches_torch():
    torch = pytest.importorskip("torch")
    for fill in (torch.nn.init.xavier_uniform_, torch.nn.init.xavier_normal_):
        with pytest.raises(RuntimeError):  # torch rejects it as well
            fill(torch.empty(3, 4), gain=-1)


# ------------------------------------------------------------------ 8. unclear errors


def test_erf_position_errors_name_position():
    model = erf.build("linear:1", channels=1)
    with pytest.raises(TypeError, match="position"):
        erf.effective_receptive_field(model, (1, 8, 8), position=5)
    with pytest.raises(ValueError, match="position"):
        erf.effective_receptive_field(model, (1, 8, 8), position=(1, 2, 3))
    with pytest.raises(ValueError, match="position"):
        erf.effective_receptive_field(model, (1, 8, 8), position=(-1, 2))
    assert erf.effective_receptive_field(model, (1, 8, 8), position=np.array([1, 2])
                                         ).position == (1, 2)


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
