"""`fastconv predict`: zarr in, zarr out equal to the untiled forward pass; progress on
stderr; nothing partial under OUT on error; no overwrite without --overwrite."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")

from fastconv import models  # noqa: E402
from fastconv.cli import main  # noqa: E402
from fastconv.cli import predict as cli_predict  # noqa: E402

ARGS = ["--model-args", "depth=2,base=4,num_classes=3", "--tile", "24"]


def _unet(**kw):
    return models.unet(2, 3, base=4, depth=2, **kw).eval()


@pytest.fixture
def image(tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 2, 52, 44)).astype(np.float32)
    path = str(tmp_path / "in.zarr")
    z = zarr.open_array(path, mode="w", shape=x.shape, chunks=(1, 2, 16, 16), dtype="f4")
    z[...] = x
    return path, x


def _leftovers(folder):
    return [n for n in os.listdir(folder) if ".tmp-" in n or ".old-" in n]


def test_round_trip_with_progress(image, tmp_path, capsys):
    path, x = image
    out = str(tmp_path / "out.zarr")
    assert main(["predict", "unet", "--input", path, "--output", out, *ARGS, "--batch-size", "2"]) == 0
    got = zarr.open_array(out, mode="r")[...]
    want = _unet(generator=0)(x)  # random weights, seed 0, in_channels from the image
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    err = capsys.readouterr()
    assert "random weights" in err.err
    lines = [ln for ln in err.err.splitlines() if "tiles" in ln]
    assert lines and "px/s" in lines[-1] and "ETA" in lines[-1]
    assert lines[-1].split("]")[1].split()[0] == "12/12"  # 2 images x 3 x 2 tiles
    assert "wrote" in err.out and "halo overhead" in err.out
    assert not _leftovers(tmp_path)


def test_weights_file(image, tmp_path):
    path, x = image
    net = _unet(generator=5)
    weights = str(tmp_path / "w.npz")
    np.savez(weights, **net.state_dict())
    out = str(tmp_path / "out.zarr")
    assert main(["predict", "unet", "--input", path, "--output", out, *ARGS, "--weights", weights,
                 "--quiet"]) == 0
    np.testing.assert_allclose(zarr.open_array(out, mode="r")[...], net(x), rtol=1e-5, atol=1e-5)


def test_refuses_to_overwrite(image, tmp_path, capsys):
    path, x = image
    out = tmp_path / "out.zarr"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["predict", "unet", "--input", path, "--output", str(out), *ARGS]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["predict", "unet", "--input", path, "--output", str(out), *ARGS, "--overwrite",
                 "--quiet"]) == 0
    assert not (out / "keep.txt").exists()
    assert zarr.open_array(str(out), mode="r").shape == (2, 3, 52, 44)
    assert not _leftovers(tmp_path)


def test_error_leaves_nothing_partial(image, tmp_path, monkeypatch):
    path, _ = image
    out = tmp_path / "out.zarr"
    real = cli_predict._write_block
    calls = []

    def failing(block, array, region, pixels):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(block, array, region, pixels)

    monkeypatch.setattr(cli_predict, "_write_block", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        main(["predict", "unet", "--input", path, "--output", str(out), *ARGS, "--quiet"])
    assert not out.exists() and not _leftovers(tmp_path)
    # with --overwrite, a failed run leaves the old OUT as it was
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    calls.clear()
    with pytest.raises(RuntimeError, match="disk full"):
        main(["predict", "unet", "--input", path, "--output", str(out), *ARGS, "--overwrite",
              "--quiet"])
    assert (out / "keep.txt").read_text() == "mine" and not _leftovers(tmp_path)


@pytest.mark.parametrize("extra,message", [
    (["--input", "missing.zarr"], "does not exist"),
    (["--model-args", "depth"], "KEY=VALUE"),
    (["--model-args", "in_channels=3"], "channels"),
    (["--weights", "missing.npz"], "does not exist"),
])
def test_bad_arguments(image, tmp_path, capsys, extra, message):
    path, _ = image
    argv = ["predict", "unet", "--input", path, "--output", str(tmp_path / "out.zarr"), *ARGS]
    argv += extra
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.zarr").exists() and not _leftovers(tmp_path)


def test_group_and_rank_errors(tmp_path, capsys):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("image", shape=(3, 8, 8), dtype="f4")
    flat = zarr.open_array(str(tmp_path / "flat.zarr"), mode="w", shape=(8, 8), dtype="f4")
    flat[...] = 0
    for src, message in ((tmp_path / "g.zarr", "zarr group"), (tmp_path / "flat.zarr", "(N, C, H, W)")):
        assert main(["predict", "unet", "--input", str(src), "--output", str(tmp_path / "o.zarr")]) == 2
        assert message in capsys.readouterr().err


def test_progress_line_format():
    import io

    stream = io.StringIO()
    bar = cli_predict.Progress(4, 4e6, stream=stream)
    for _ in range(4):
        bar.update(1e6)
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("[" + "#" * 24 + "] 4/4 tiles")
    assert len(lines) == 4  # not a terminal: a line per 10% step reached
    assert [cli_predict.rate_text(v) for v in (12.0, 4.2e4, 1.25e6)] == \
        ["12 px/s", "42 kpx/s", "1.25 Mpx/s"]
