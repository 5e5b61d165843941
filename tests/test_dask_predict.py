"""fastconv.dask.predict: tiled inference equals the untiled forward pass, on models with
every layer kind, at random tile sizes and image sizes that are not multiples of the tile;
zarr and NumPy images; grouped tiles; the dask.distributed path; errors before compute."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

import fastconv  # noqa: E402
from fastconv import models, nn  # noqa: E402
from fastconv.dask import predict  # noqa: E402
from fastconv.dask.tiling import plan  # noqa: E402


def _randomise(model, seed):
    """Random weights everywhere, BatchNorm running statistics included (eval mode)."""
    rng = np.random.default_rng(seed)
    for _, m in model.named_modules():
        for name in ("weight", "bias", "running_mean"):
            a = getattr(m, name, None)
            if isinstance(a, np.ndarray) and a.dtype.kind == "f":
                a[...] = rng.standard_normal(a.shape) * (0.5 if name != "running_mean" else 0.2)
        if getattr(m, "running_var", None) is not None:
            m.running_var[...] = rng.uniform(0.5, 2.0, m.running_var.shape)
    return model.eval()


def plain():
    """conv (strided, dilated, asymmetric), BN, ReLU, ReLU6, max and avg pools in ceil mode,
    transposed conv with output_padding, depthwise-separable, depthwise via groups."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(2, 0), dilation=(2, 1)), nn.ReLU6(),
        nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False),
        nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1),
        nn.DepthwiseSeparableConv2d(4, 5, 3, padding=1),
        nn.Conv2d(5, 5, 3, padding=1, groups=5), nn.Dropout(0.3), nn.Identity(),
        nn.Conv2d(5, 2, 1),
    )


def branches():
    """Residual blocks (one strided with a projection) and a Concat of four branches."""
    def block(cin, cout, stride):
        proj = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        relu = nn.ReLU()
        return nn.Residual([("conv1", nn.Conv2d(cin, cout, 3, stride, 1)), ("relu", relu),
                            ("conv2", nn.Conv2d(cout, cout, 3, 1, 1))], proj, relu)
    return nn.Sequential(
        nn.Conv2d(3, 4, 5, 2, 2), block(4, 4, 1), block(4, 6, 2),
        nn.Concat(nn.Conv2d(6, 2, 1), nn.Conv2d(6, 3, 3, padding=1),
                  nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(6, 1, 1)),
                  nn.Conv2d(6, 2, 3, padding=2, dilation=2)),
        nn.Conv2d(8, 3, 3, padding=1),
    )


def padded_modes():
    """reflect and replicate padding (local at the real borders), 'same' with an even kernel."""
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
        nn.Conv2d(3, 3, 5, padding=2, padding_mode="replicate"),
        nn.Conv2d(3, 2, 4, padding="same"),
    )


def upsampler():
    """Transposed convolution first: the output is finer than the input (jump 1/2, 1/6)."""
    return nn.Sequential(
        nn.ConvTranspose2d(2, 3, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(3, 2, 3, stride=3), nn.Conv2d(2, 2, 3, padding=1),
    )


MODELS = {
    "plain": (plain, 3),
    "branches": (branches, 3),
    "modes": (padded_modes, 2),
    "upsampler": (upsampler, 2),
    "unet": (lambda: models.unet(3, 2, base=4, depth=3, initialize=False), 3),
}


def _image(rng, C, H, W, batched, n=2):
    shape = ((n,) if batched else ()) + (C, H, W)
    return rng.standard_normal(shape).astype(np.float32)


def _dask(rng, x):
    chunks = [(x.shape[0],)] if x.ndim == 4 else []
    if x.ndim == 4 and x.shape[0] > 1 and rng.random() < 0.5:
        chunks = [(1,) * x.shape[0]]
    chunks.append((x.shape[-3],))
    for n in x.shape[-2:]:
        c = int(rng.integers(3, n + 1))
        chunks.append(tuple([c] * (n // c) + ([n % c] if n % c else [])))
    return da.from_array(x, chunks=tuple(chunks))


def _forward(model, x):
    """The untiled forward pass (an unbatched image as a batch of one: BatchNorm needs 4-D)."""
    return model(x) if x.ndim == 4 else model(x[None])[0]


def _assert_equal_forward(model, x, y):
    ref = _forward(model, x)
    got = y.compute(scheduler="sync")
    assert got.shape == ref.shape and got.dtype == ref.dtype
    scale = max(float(np.abs(ref).max()), 1e-30)
    assert float(np.abs(got - ref).max()) <= 1e-5 * scale


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("seed", range(3))
def test_tiled_equals_untiled(name, seed):
    make, C = MODELS[name]
    model = _randomise(make(), seed)
    rng = np.random.default_rng(seed)
    done = 0
    while done < 2:
        grid = 8 if name == "unet" else 1
        H, W = (int(v) * grid for v in rng.integers(max(2, 24 // grid), 72 // grid, size=2))
        batched = bool(rng.random() < 0.7)
        x = _image(rng, C, H, W, batched)
        try:
            _forward(model, x)
        except ValueError:  # a size this architecture does not take untiled either
            continue
        done += 1
        tile = tuple(int(v) for v in rng.integers(1, 40, size=2))
        image = _dask(rng, x) if rng.random() < 0.6 else x
        y = predict(model, image, tile=tile, batch_size=None if rng.random() < 0.5 else 3)
        assert y.ndim == x.ndim
        _assert_equal_forward(model, x, y)


def test_tiles_snap_to_the_coarsest_grid():
    unet = models.unet(3, 2, base=4, depth=3, initialize=False)
    p = plan(unet, (1, 3, 200, 120), tile=50)
    assert p.h.grid == p.w.grid == 8
    assert {b - a for a, b in p.h.tiles[:-1]} == {56}  # 50 rounded up to the grid
    assert all(c0 % 8 == 0 for c0, _ in p.h.crops)
    assert all(c1 == 200 or (200 - c1) % 8 == 0 for _, c1 in p.h.crops)
    # the halo holds the receptive field (103 for depth 3): 51 each side, snapped to 8 -> 56
    assert p.rf_size == (103, 103) and p.h.crops[2] == (112 - 56, 200)
    trunk = models.resnet50_trunk(initialize=False)
    pt = plan(trunk, (3, 1024, 1024), tile=512)
    assert pt.h.grid == 32 and pt.jump == (32, 32) and pt.h.tiles == ((0, 16), (16, 32))
    assert 1.0 < pt.halo_overhead < 4.0


def trunk32():
    """A strided trunk whose jump is 32, as ResNet's: 7x7/2 stem, 3x3/2 max pool, three
    strided residual stages (the zoo's resnet50_trunk, narrow enough to test quickly)."""
    def block(cin, cout):
        relu = nn.ReLU()
        proj = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))
        return nn.Residual([("conv1", nn.Conv2d(cin, cout, 1)), ("relu", relu),
                            ("conv2", nn.Conv2d(cout, cout, 3, 2, 1)), ("bn", nn.BatchNorm2d(cout))],
                           proj, relu)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 4, 7, 2, 3, bias=False), bn1=nn.BatchNorm2d(4), relu=nn.ReLU(),
        maxpool=nn.MaxPool2d(3, 2, 1), layer2=block(4, 6), layer3=block(6, 6), layer4=block(6, 8)))


def test_jump_32_trunk_tiles_exactly():
    net = _randomise(trunk32(), 4)
    assert plan(net, (3, 64, 64), 32).jump == (32, 32)
    x = np.random.default_rng(4).standard_normal((3, 230, 170)).astype(np.float32)
    y = predict(net, _dask(np.random.default_rng(5), x), tile=(64, 40))
    assert y.shape == (8, 8, 6) and y.numblocks == (1, 4, 3)
    _assert_equal_forward(net, x, y)


def test_zarr_image(tmp_path):
    zarr = pytest.importorskip("zarr")
    model = _randomise(plain(), 7)
    x = np.random.default_rng(7).standard_normal((3, 3, 45, 37)).astype(np.float32)
    z = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=x.shape, chunks=(2, 3, 16, 16),
                        dtype="f4")
    z[...] = x
    y = predict(model, zarr.open_array(str(tmp_path / "in.zarr"), mode="r"), tile=(12, 20))
    assert y.chunks[0] == (2, 1)  # the zarr's batch chunks
    _assert_equal_forward(model, x, y)


def test_batch_size_groups_tiles():
    model = _randomise(padded_modes(), 1)
    x = np.random.default_rng(1).standard_normal((1, 2, 30, 30)).astype(np.float32)
    y = predict(model, x, tile=10, batch_size=4)
    graph = dict(y.__dask_graph__())
    groups = [k for k in graph if isinstance(k, tuple) and str(k[0]).endswith("-group")]
    assert len(groups) == 3 and y.npartitions == 9  # 9 tiles in 3 forward calls
    _assert_equal_forward(model, x, y)


def test_batch_only_split_for_classifiers():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 5))
    _randomise(net, 2)
    x = np.random.default_rng(2).standard_normal((5, 3, 16, 16)).astype(np.float32)
    xd = da.from_array(x, chunks=(2, 3, 16, 16))
    with pytest.raises(ValueError, match="no spatial structure.*tile=None"):
        predict(net, xd)
    y = predict(net, xd, tile=None)
    assert y.chunks == ((2, 2, 1), (5,))
    _assert_equal_forward(net, x, y)


def _poisoned(shape):
    def boom(block):
        raise AssertionError("computed before the error")
    return da.zeros(shape, np.float32, chunks=8).map_blocks(boom, dtype=np.float32)


@pytest.mark.parametrize("call,match", [
    (lambda m, x: predict(m, x, tile=0), "tile must be positive"),
    (lambda m, x: predict(m, x, tile=(8, -1)), "tile must be positive"),
    (lambda m, x: predict(m, x, tile="big"), "tile"),
    (lambda m, x: predict(m, x, batch_size=0), "batch_size must be positive"),
    (lambda m, x: predict(m, x[0, 0]), r"image must be \(N, C, H, W\) or \(C, H, W\)"),
    (lambda m, x: predict(m, x[:, :2]), "channels"),
    (lambda m, x: predict(m.train(), x), "eval"),
    (lambda m, x: predict(nn.Sequential(m, nn.AdaptiveMaxPool2d((4, 4))), x), "fixed in advance"),
    (lambda m, x: predict(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, padding_mode="circular")), x),
     "circular"),
    (lambda m, x: predict(m, x, client=object()), "Client"),
])
def test_bad_input_fails_before_compute(call, match):
    model = _randomise(branches(), 0)
    with pytest.raises((ValueError, TypeError), match=match):
        call(model, _poisoned((2, 3, 32, 32)))


# --------------------------------------------------------------------------- distributed


def _worker_backends():
    import fastconv as fc
    return fc.available_backends()


def _worker_conv(backend):
    import numpy as np

    import fastconv as fc
    x = np.ones((1, 2, 6, 6), np.float32)
    return fc.conv2d(x, np.ones((3, 2, 3, 3), np.float32), padding=1, backend=backend)


def test_distributed_local_cluster():
    distributed = pytest.importorskip("distributed")
    here = fastconv.available_backends()
    model = _randomise(branches(), 3)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 40, 33)).astype(np.float32)
    xd = da.from_array(x, chunks=(2, 3, 17, 40))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, worker_dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        # the backends load in the worker processes: the same availability as here, and the
        # compiled and JIT kernels run there
        for status in client.run(_worker_backends).values():
            assert status == here
        for backend in [b for b in ("c", "numba") if here[b] == "available"]:
            got = client.submit(_worker_conv, backend, pure=False).result()
            np.testing.assert_allclose(got, _worker_conv(backend), rtol=1e-6)
        # the model is scattered once: tasks refer to one future, no task holds the model
        y = predict(model, xd, tile=(12, 16), batch_size=2, client=client)
        graph = dict(y.__dask_graph__())
        assert not any(isinstance(v, nn.Module) for v in graph.values())
        refs = {id(a) for v in graph.values() if isinstance(v, tuple)
                for a in v if isinstance(a, distributed.Future)}
        assert len(refs) == 1
        got = client.compute(y).result()
        ref = _forward(model, x)
        assert float(np.abs(got - ref).max()) <= 1e-5 * float(np.abs(ref).max())
        # an op on a dask array computes on the cluster too
        w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
        np.testing.assert_allclose(fastconv.conv2d(xd, w, padding=1, stride=2).compute(),
                                   fastconv.conv2d(x, w, padding=1, stride=2), rtol=1e-5, atol=1e-5)
