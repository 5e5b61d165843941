"""The capsule lesson on tiny runs: the generated digits, Adam, the training step of both
models, the report, the picture and the command line."""

import numpy as np
import pytest

from fastconv import cli
from fastconv.lessons import capsnet as lesson


def _centre(img):
    h, w = np.indices(img.shape)
    total = img.sum()
    return np.array([(h * img).sum() / total, (w * img).sum() / total])


def test_digits_are_reproducible_and_in_range():
    x, y = lesson.make_digits(40, generator=1)
    assert x.shape == (40, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() >= 0 and x.max() <= 1 and set(np.unique(y)) <= set(range(10))
    assert all(img.sum() > 20 for img in x[:, 0])  # every digit has ink
    x2, y2 = lesson.make_digits(40, generator=1)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert lesson.make_digits(0)[0].shape == (0, 1, 28, 28)


def test_shift_moves_the_digits_out_of_the_centre():
    still, _ = lesson.make_digits(30, shift=(0, 0), rotation=(0, 0), generator=2)
    moved, _ = lesson.make_digits(30, shift=(4, 5), rotation=(0, 0), generator=2)
    d_still = [np.linalg.norm(_centre(i) - 13.5) for i in still[:, 0]]
    d_moved = [np.linalg.norm(_centre(i) - 13.5) for i in moved[:, 0]]
    assert np.median(d_still) < 1.5 and np.median(d_moved) > 3.0


def test_rotation_turns_the_digits():
    # a "1" is a vertical stroke: its ink's principal axis turns with the rotation
    def angle(img):
        h, w = np.nonzero(img > 0.5)
        cov = np.cov(np.stack([w, h]))
        vals, vecs = np.linalg.eigh(cov)
        vx, vy = vecs[:, -1]
        return np.degrees(np.arctan2(abs(vx), abs(vy)))  # 0 = vertical

    x, y = lesson.make_digits(200, shift=(0, 0), rotation=(35, 40), generator=3)
    ones = [angle(img) for img, label in zip(x[:, 0], y) if label == 1]
    upright, yu = lesson.make_digits(200, shift=(0, 0), rotation=(0, 0), generator=3)
    ones_up = [angle(img) for img, label in zip(upright[:, 0], yu) if label == 1]
    assert len(ones) > 5 and np.median(ones) > 25 and np.median(ones_up) < 15


def test_bad_arguments():
    with pytest.raises(ValueError, match="shift must be a pair 0 <= low <= high"):
        lesson.make_digits(2, shift=(3, 1))
    with pytest.raises(TypeError, match="rotation must be a pair"):
        lesson.make_digits(2, rotation=5)
    with pytest.raises(ValueError, match="test_size must be >= 8"):
        lesson.run_lesson(test_size=2)


def test_adam_matches_torch():
    torch = pytest.importorskip("torch")
    from fastconv import nn

    lin = nn.Linear(3, 2, dtype=np.float64, generator=0).retain_inputs()
    tl = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        tl.weight.copy_(torch.from_numpy(lin.weight))
        tl.bias.copy_(torch.from_numpy(lin.bias))
    opt, topt = lesson.Adam(lin, lr=0.01), torch.optim.Adam(tl.parameters(), lr=0.01)
    x = np.random.default_rng(0).normal(size=(4, 3))
    for _ in range(3):
        opt.zero_grad()
        lin.backward(2 * lin(x))  # d(sum y^2)/dy
        opt.step()
        topt.zero_grad()
        (tl(torch.from_numpy(x)) ** 2).sum().backward()
        topt.step()
    np.testing.assert_allclose(lin.weight, tl.weight.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(lin.bias, tl.bias.detach().numpy(), rtol=1e-10)


def test_capsnet_learns_a_batch():
    x, y = lesson.make_digits(16, generator=4)
    model = lesson.make_capsnet(generator=5)
    run = lesson.train_model(model, x, y, epochs=8, batch=16, lr=3e-3)
    assert run["losses"][-1] < 0.6 * run["losses"][0]
    assert not model.training and model.cache is None  # back in inference mode


def test_lesson_runs_and_reports(tmp_path):
    result = lesson.run_lesson(train_size=32, test_size=8, epochs=1, batch=16, steps=1)
    runs = result["runs"]
    assert set(runs) == {"CapsNet", "CNN"}
    for run in runs.values():
        assert set(run["accuracy"]) == set(lesson.TEST_SETS)
        assert all(0 <= a <= 1 for a in run["accuracy"].values())
    assert runs["CapsNet"]["params"] - result["decoder_params"] == 537_216
    assert runs["CNN"]["params"] == 538_556
    f = result["figures"]
    assert f["perturbed"].shape == (16, 11, 28, 28) and f["coupling"].shape == (288, 10)
    np.testing.assert_allclose(f["coupling"].sum(axis=1), 1, rtol=1e-5)
    text = lesson.report(result)
    for name in lesson.TEST_SETS:
        assert name in text
    assert "CapsNet" in text and "CNN" in text and "537,216" in text
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    fig = lesson.figure(result)
    try:
        assert len(fig.axes) >= 20  # accuracy, 16 digits and reconstructions, coupling, grid
    finally:
        plt.close(fig)


def test_cli(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "caps.png"
    assert cli.main(["demo", "capsnet", "--train-size", "16", "--test-size", "8",
                     "--epochs", "1", "--plot", str(out)]) == 0
    printed = capsys.readouterr()
    assert "accuracy on 8 test digits per set" in printed.out and out.stat().st_size > 10_000
    assert "CapsNet epoch 1/1" in printed.err


def test_blas_runs_on_one_thread_during_training_and_is_restored():
    import ctypes
    import re

    try:
        with open("/proc/self/maps") as f:
            paths = sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", f.read())))
    except OSError:
        pytest.skip("no /proc: the helper does nothing here")
    getters = [getattr(ctypes.CDLL(p), n) for p in paths
               for n in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads")
               if hasattr(ctypes.CDLL(p), n)]
    if not getters:
        pytest.skip("NumPy does not use a known OpenBLAS here")
    before = [g() for g in getters]
    with lesson._one_blas_thread():
        assert [g() for g in getters] == [1] * len(getters)
    assert [g() for g in getters] == before
