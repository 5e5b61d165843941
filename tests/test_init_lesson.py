"""The initialisation lesson's claims, measured on short runs; its arguments (depth, seed,
steps, inits, the plot path) checked before any training, in the API and the command line."""

import math
import sys

import numpy as np
import pytest
from _cli import argparse_failure, clean_failure

from fastconv import cli
from fastconv.lessons import init_lesson


def test_bars_are_bars():
    x, y = init_lesson.make_bars(64, size=12, noise=0.0, generator=3)
    assert x.shape == (64, 1, 12, 12) and x.dtype == np.float32
    assert set(np.unique(y)) == {0, 1, 2, 3}
    for img, label in zip(x[:, 0], y):
        ii, jj = np.nonzero(img)
        assert len(ii) == 6 and np.all(img[ii, jj] == 1)
        key = {0: ii, 1: jj, 2: ii - jj, 3: ii + jj}[int(label)]
        assert len(set(key.tolist())) == 1  # one row / column / diagonal
    noisy, _ = init_lesson.make_bars(8, generator=0)
    assert 0.2 < float(np.std(noisy)) < 0.5


def test_cross_entropy_gradient():
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(5, 4)), rng.integers(0, 4, 5)
    loss, g = init_lesson.cross_entropy(z, y)
    v, h = rng.normal(size=z.shape), 1e-6
    fd = (init_lesson.cross_entropy(z + h * v, y)[0]
          - init_lesson.cross_entropy(z - h * v, y)[0]) / (2 * h)
    assert fd == pytest.approx(float(np.sum(g * v)), rel=1e-6)
    assert init_lesson.cross_entropy(np.zeros((3, 4)), np.array([0, 1, 2]))[0] == (
        pytest.approx(math.log(4)))


@pytest.mark.parametrize("backend", ["reference", "c"])
def test_symmetry_never_breaks_from_zeros_or_constant(backend):
    for init in ("zeros", "constant"):
        r = init_lesson.train(init, steps=15, batch=16, backend=backend)
        assert all(v == 0.0 for v in r["spread_before"].values())
        assert all(v == 0.0 for v in r["spread_after"].values()), (init, r["spread_after"])
    he = init_lesson.train("he", steps=15, batch=16, backend=backend)
    assert all(v > 0.1 for v in he["spread_after"].values())


def test_constant_filters_move_but_stay_identical():
    r = init_lesson.train("constant", steps=15, batch=16)
    model = init_lesson.apply_init(init_lesson.make_model(), "constant")
    assert r["spread_after"] == init_lesson.filter_spread(model)  # all zero
    assert r["losses"][-1] != r["losses"][0]  # but the weights did change


def test_variance_through_depth():
    he = init_lesson.activation_variances("he", depth=8, networks=3)
    small = init_lesson.activation_variances("small", depth=8, networks=3)
    xavier = init_lesson.activation_variances("xavier", depth=8, networks=3)
    assert max(he) / min(he) < 4  # He: about constant under ReLU
    assert he[0] == pytest.approx(2.0, rel=0.1)  # fan_in * (2 / fan_in) * E[x^2] = 2
    assert small[-1] / small[0] < 1e-8  # N(0, 0.01): ~0.03 per layer, vanishes
    # Xavier with equal fans: Var(w) = 1/fan_in, ReLU halves the second moment each layer
    assert xavier[-1] / xavier[0] == pytest.approx(0.5 ** 7, rel=0.75)


def test_he_and_xavier_learn_zeros_does_not():
    runs = {n: init_lesson.train(n, steps=50, seed=1) for n in ("zeros", "xavier", "he")}
    final = {n: float(np.mean(r["losses"][-10:])) for n, r in runs.items()}
    assert final["zeros"] == pytest.approx(math.log(4), abs=0.02)  # only the output bias learns
    assert final["he"] < final["zeros"] - 0.3 and final["xavier"] < final["zeros"] - 0.3
    assert runs["he"]["accuracy"] > 0.5 and runs["xavier"]["accuracy"] > 0.5
    assert runs["zeros"]["accuracy"] < 0.35


def test_invalid_arguments():
    with pytest.raises(ValueError, match="init"):
        init_lesson.apply_init(init_lesson.make_model(), "ones")
    with pytest.raises(ValueError, match="steps"):
        init_lesson.train("he", steps=0)
    with pytest.raises(TypeError, match="n"):
        init_lesson.make_bars(2.5)


def test_report_and_cli(capsys, tmp_path, monkeypatch):
    r = init_lesson.run_lesson(steps=4, inits=("zeros", "he"), depth=3)
    text = init_lesson.report(r)
    assert "zeros" in text and "he" in text and "small" in text
    assert cli.main(["demo", "init", "--steps", "3", "--depth", "2"]) == 0
    captured = capsys.readouterr()
    assert "training from he" in captured.err and "accuracy" in captured.out
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert cli.main(["demo", "init", "--steps", "2", "--depth", "2", "--plot",
                     str(tmp_path / "a.png")]) == 2


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    r = init_lesson.run_lesson(steps=3, inits=("zeros", "normal1", "he"), depth=3)
    init_lesson.plot(r, str(tmp_path / "lesson.png"))
    assert (tmp_path / "lesson.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------- arguments


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
