"""A few seconds of checks for the inner loop: every public op runs on every engine."""

import numpy as np

import fastconv as fc


def test_every_op_runs(engine):
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6)).astype(np.float32)
    assert fc.conv2d(x, np.ones((4, 2, 3, 3), np.float32), backend=engine).shape == (1, 4, 4, 4)
    assert fc.conv1d(x[:, :, 0], np.ones((3, 2, 2)), backend=engine).shape == (1, 3, 5)
    assert fc.conv_transpose2d(x, np.ones((2, 3, 2, 2)), stride=2, backend=engine).shape == (
        1,
        3,
        12,
        12,
    )
    assert fc.conv_transpose1d(x[:, :, 0], np.ones((2, 3, 2)), backend=engine).shape == (1, 3, 7)
    assert fc.depthwise_conv2d(x, np.ones((4, 1, 3, 3)), backend=engine).shape == (1, 4, 4, 4)
    assert fc.separable_conv2d(
        x, np.ones((2, 1, 3, 3)), np.ones((5, 2, 1, 1)), backend=engine
    ).shape == (1, 5, 4, 4)
    assert fc.max_pool2d(x, 2, backend=engine).shape == (1, 2, 3, 3)
    assert fc.max_pool1d(x[:, :, 0], 2, backend=engine).shape == (1, 2, 3)
    assert fc.avg_pool2d(x, 3, 1, 1, backend=engine).shape == (1, 2, 6, 6)
    assert fc.avg_pool1d(x[:, :, 0], 3, backend=engine).shape == (1, 2, 2)
    assert fc.adaptive_avg_pool2d(x, (2, None), backend=engine).shape == (1, 2, 2, 6)
    assert fc.adaptive_max_pool2d(x, 4, backend=engine).shape == (1, 2, 4, 4)
    assert fc.adaptive_avg_pool1d(x[:, :, 0], 4, backend=engine).shape == (1, 2, 4)
    assert fc.adaptive_max_pool1d(x[:, :, 0], 4, backend=engine).shape == (1, 2, 4)


def test_available_backends_reports_every_engine():
    info = fc.available_backends()
    assert set(info) == {"reference", "c", "numba", "cuda"}
    assert info["reference"] == "available"
    assert all(isinstance(v, str) and v for v in info.values())


def test_auto_matches_reference():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 4, 9, 9)), rng.standard_normal((6, 2, 3, 3))
    np.testing.assert_allclose(
        fc.conv2d(x, w, stride=2, groups=2),
        fc.conv2d(x, w, stride=2, groups=2, backend="reference"),
        rtol=1e-10,
        atol=1e-10,
    )


def test_every_available_engine_implements_every_kernel():
    from fastconv.backends import OPTIONAL_KERNELS
    from fastconv.backends._registry import support_matrix

    info = fc.available_backends()
    for kernel, row in support_matrix().items():
        if kernel in OPTIONAL_KERNELS:  # composed from others (depthwise + 1x1, conv + epilogue)
            continue
        for name, ok in row.items():
            if info[name].startswith("available"):
                assert ok, f"engine {name!r} lacks {kernel}"
