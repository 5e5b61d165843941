"""Hand-picked edge cases in every engine: dtypes, layouts, N = 0, 1x1 images, the ceil-mode
drop rule, NaN through max pooling, 'same' padding with even kernels. Expected values are
worked out by hand here, so these run without torch."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc


def test_dtype_rules(engine):
    x = np.arange(2 * 3 * 5 * 5).reshape(2, 3, 5, 5)
    w = np.ones((2, 3, 3, 3), np.int32)
    for xd, wd, out in [
        (np.float32, np.float32, np.float32),
        (np.float64, np.float64, np.float64),
        (np.float32, np.float64, np.float64),
        (np.float16, np.float16, np.float16),
        (np.float16, np.float32, np.float32),
        (np.int64, np.int32, np.float64),
        (np.bool_, np.bool_, np.float64),
        (np.uint8, np.float32, np.float32),
    ]:
        y = fc.conv2d(x.astype(xd), w.astype(wd), backend=engine)
        assert y.dtype == out, (xd, wd, y.dtype)
        want = fc.conv2d(
            x.astype(xd).astype(np.float64), w.astype(wd).astype(np.float64), backend="reference"
        )
        np.testing.assert_allclose(
            y.astype(np.float64), want, rtol=2e-3 if out == np.float16 else 1e-6
        )
    assert fc.max_pool2d(x.astype(np.float16), 2, backend=engine).dtype == np.float16
    assert fc.avg_pool2d(x, 2, backend=engine).dtype == np.float64


def test_integer_input_exact(engine):
    # a 3x3 box filter over 0..24: the centre output is the sum of the 3x3 block around 12
    x = np.arange(25).reshape(1, 1, 5, 5)
    y = fc.conv2d(x, np.ones((1, 1, 3, 3), int), backend=engine)
    assert y[0, 0, 1, 1] == sum(range(11, 14)) + sum(range(6, 9)) + sum(range(16, 19))


def test_layouts_give_identical_results(engine):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6))
    w = rng.standard_normal((4, 3, 3, 2))
    want = fc.conv2d(np.ascontiguousarray(x), w, padding=1, backend=engine)
    for view in (
        np.asfortranarray(x),
        np.ascontiguousarray(x[:, :, ::-1])[:, :, ::-1],
        np.repeat(x, 2, axis=3)[..., ::2],
    ):
        assert not view.flags.c_contiguous
        np.testing.assert_array_equal(fc.conv2d(view, w, padding=1, backend=engine), want)
    # negative strides that really reverse the data
    flipped = fc.conv2d(x[:, :, ::-1], w, padding=1, backend=engine)
    np.testing.assert_allclose(
        flipped, fc.conv2d(np.ascontiguousarray(x[:, :, ::-1]), w, padding=1, backend=engine)
    )


def test_read_only_input(engine):
    x = np.ones((1, 2, 4, 4))
    x.setflags(write=False)
    assert fc.max_pool2d(x, 2, backend=engine).shape == (1, 2, 2, 2)


def test_batch_zero(engine):
    x = np.ones((0, 4, 6, 6), np.float32)
    assert fc.conv2d(x, np.ones((6, 2, 3, 3), np.float32), groups=2, backend=engine).shape == (
        0,
        6,
        4,
        4,
    )
    assert fc.conv_transpose2d(x, np.ones((4, 3, 3, 3)), stride=2, backend=engine).shape == (
        0,
        3,
        13,
        13,
    )
    assert fc.conv1d(np.ones((0, 2, 5)), np.ones((3, 2, 2)), backend=engine).shape == (0, 3, 4)
    assert fc.depthwise_conv2d(x, np.ones((8, 1, 3, 3)), backend=engine).shape == (0, 8, 4, 4)
    y, i = fc.max_pool2d(x, 2, return_indices=True, backend=engine)
    assert y.shape == i.shape == (0, 4, 3, 3)
    assert fc.avg_pool2d(x, 3, 1, 1, backend=engine).shape == (0, 4, 6, 6)
    assert fc.adaptive_avg_pool2d(x, (2, 3), backend=engine).shape == (0, 4, 2, 3)


def test_adaptive_output_zero(engine):
    x = np.ones((1, 2, 5, 5))
    assert fc.adaptive_avg_pool2d(x, 0, backend=engine).shape == (1, 2, 0, 0)
    y, i = fc.adaptive_max_pool2d(x, (0, 2), return_indices=True, backend=engine)
    assert y.shape == i.shape == (1, 2, 0, 2)


def test_one_by_one_images(engine):
    x = np.full((2, 3, 1, 1), 2.0)
    w = np.ones((4, 3, 1, 1))
    np.testing.assert_array_equal(fc.conv2d(x, w, backend=engine), np.full((2, 4, 1, 1), 6.0))
    # 3x3 kernel, padding 1: only the centre tap sees the pixel
    y = fc.conv2d(x, np.ones((4, 3, 3, 3)), padding=1, backend=engine)
    np.testing.assert_array_equal(y, np.full((2, 4, 1, 1), 6.0))
    np.testing.assert_array_equal(fc.max_pool2d(x, 1, backend=engine), x)
    np.testing.assert_array_equal(fc.avg_pool2d(x, 1, backend=engine), x)
    np.testing.assert_array_equal(fc.adaptive_avg_pool2d(x, 1, backend=engine), x)
    np.testing.assert_array_equal(
        fc.adaptive_max_pool2d(x, 3, backend=engine), np.full((2, 3, 3, 3), 2.0)
    )
    y = fc.conv_transpose2d(x, np.ones((3, 2, 2, 2)), stride=2, backend=engine)
    np.testing.assert_array_equal(y, np.full((2, 2, 2, 2), 6.0))


def test_unbatched(engine):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 6, 5))
    w = rng.standard_normal((2, 3, 3, 3))
    np.testing.assert_allclose(
        fc.conv2d(x, w, backend=engine), fc.conv2d(x[None], w, backend=engine)[0]
    )
    y, i = fc.max_pool2d(x, 2, return_indices=True, backend=engine)
    assert y.shape == i.shape == (3, 3, 2)
    assert fc.conv1d(x[0], rng.standard_normal((4, 6, 2)), backend=engine).shape == (4, 4)
    assert fc.max_pool1d(x[0], 2, backend=engine).shape == (6, 2)


def test_ceil_mode_drops_window_starting_in_padding(engine):
    # H = 5, k = 2, s = 2, p = 1: ceil((5 + 2 - 2) / 2) + 1 = 4, but the 4th window would start
    # at 3*2 - 1 = 5 >= H + p - ... = in the right padding, so it is dropped: 3 outputs.
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    y, i = fc.max_pool2d(x, 2, 2, 1, ceil_mode=True, return_indices=True, backend=engine)
    assert y.shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(y[0, 0], [[0, 2, 4], [10, 12, 14], [20, 22, 24]])
    np.testing.assert_array_equal(i[0, 0], [[0, 2, 4], [10, 12, 14], [20, 22, 24]])
    # H = 5, k = 2, s = 2, p = 0: the ceil-mode window [4, 6) starts inside: kept, clipped
    a = fc.avg_pool2d(x, 2, 2, 0, ceil_mode=True, backend=engine)
    assert a.shape == (1, 1, 3, 3)
    assert a[0, 0, 2, 2] == 24.0  # one element, divisor clipped to the input (H + 0 padding)
    assert a[0, 0, 0, 2] == (4 + 9) / 2


def test_nan_propagates_through_max_pool(engine):
    x = np.array([[[[1.0, np.nan, 3.0, 2.0], [0.0, -1.0, 5.0, np.nan]]]])
    y, i = fc.max_pool2d(x, 2, return_indices=True, backend=engine)
    assert np.isnan(y[0, 0, 0, 0]) and np.isnan(y[0, 0, 0, 1])
    np.testing.assert_array_equal(i[0, 0, 0], [1, 7])
    y = fc.adaptive_max_pool2d(x, 1, backend=engine)
    assert np.isnan(y).all()
    x2 = np.array([[[[-np.inf, -np.inf], [-np.inf, -np.inf]]]])
    y, i = fc.max_pool2d(x2, 2, return_indices=True, backend=engine)
    assert y[0, 0, 0, 0] == -np.inf and i[0, 0, 0, 0] == 0


def test_max_pool_ties_take_first(engine):
    x = np.array([[[[3.0, 3.0], [3.0, 3.0]]]])
    _, i = fc.max_pool2d(x, 2, return_indices=True, backend=engine)
    assert i[0, 0, 0, 0] == 0


def test_same_padding_even_kernel_pads_after(engine):
    # total padding d*(K-1) = 1: 0 before, 1 after (as torch)
    x = np.arange(5.0).reshape(1, 1, 5)
    y = fc.conv1d(x, np.array([[[1.0, 10.0]]]), padding="same", backend=engine)
    np.testing.assert_array_equal(y[0, 0], [0 + 10, 1 + 20, 2 + 30, 3 + 40, 4 + 0])
    x2 = np.arange(25.0).reshape(1, 1, 5, 5)
    y2 = fc.conv2d(x2, np.ones((1, 1, 2, 2)), padding="same", backend=engine)
    assert y2.shape == (1, 1, 5, 5) and y2[0, 0, 4, 4] == 24.0


def test_padding_modes(engine):
    x = np.arange(4.0).reshape(1, 1, 4)
    w = np.array([[[1.0, 0.0, 0.0]]])  # picks the left neighbour
    for mode, first in [("zeros", 0.0), ("reflect", 1.0), ("replicate", 0.0), ("circular", 3.0)]:
        y = fc.conv1d(x, w, padding=1, padding_mode=mode, backend=engine)
        assert y[0, 0, 0] == first, mode
        np.testing.assert_array_equal(y[0, 0, 1:], [0.0, 1.0, 2.0])


def test_depthwise_multiplier_order(engine):
    # output channel o reads input channel o // m
    x = np.stack([np.full((3, 3), 1.0), np.full((3, 3), 10.0)])[None]
    w = np.ones((4, 1, 1, 1)) * np.array([1, 2, 3, 4.0])[:, None, None, None]
    y = fc.depthwise_conv2d(x, w, backend=engine)
    np.testing.assert_array_equal(y[0, :, 0, 0], [1, 2, 30, 40])


def test_large_values_do_not_overflow(engine):
    x = np.ones((1, 1, 3, 3), np.float32)
    y = fc.max_pool2d(x, 3, stride=2**31 - 1, backend=engine)
    assert y.shape == (1, 1, 1, 1)
    y = fc.conv2d(x, np.ones((1, 1, 1, 1), np.float32), stride=2**31 - 1, backend=engine)
    assert y.shape == (1, 1, 1, 1) and y[0, 0, 0, 0] == 1.0


@pytest.mark.parametrize("op", ["conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"])
def test_inputs_not_modified(engine, op):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 6, 6))
    x0 = x.copy()
    args = {
        "conv2d": (np.ones((2, 2, 3, 3)),),
        "max_pool2d": (2,),
        "avg_pool2d": (2,),
        "adaptive_avg_pool2d": (3,),
    }[op]
    getattr(fc, op)(x, *args, backend=engine)
    np.testing.assert_array_equal(x, x0)


def test_max_pool_window_wholly_in_padding(engine):
    # dilation can place every tap of a window in the padding: the output is -inf and its
    # index points past the plane (torch gives the same); the gradient skips it (it depends
    # on no input) instead of writing out of bounds
    import fastconv.ops.grad as G

    x = np.array([[[4.0]]])
    y, idx = fc.max_pool1d(x, 2, 1, 1, 2, return_indices=True, backend=engine)
    assert y.shape == (1, 1, 1) and np.isneginf(y).all() and int(idx[0, 0, 0]) == 1
    gx = G.max_pool1d_input(x, np.ones((1, 1, 1)), 2, 1, 1, 2, backend=engine)
    np.testing.assert_array_equal(gx, [[[0.0]]])
    # 2-D: rows -1 and 1 of a 1-row image are padding; column windows are valid elsewhere
    x2 = np.arange(1.0, 7.0).reshape(1, 1, 2, 3)
    y2, i2 = fc.max_pool2d(x2, (2, 2), 1, 1, (3, 1), return_indices=True, backend=engine)
    torch = pytest.importorskip("torch")
    yt, it = torch.nn.functional.max_pool2d(
        torch.from_numpy(x2), (2, 2), 1, 1, (3, 1), return_indices=True
    )
    np.testing.assert_array_equal(y2, yt.numpy())
    np.testing.assert_array_equal(i2, it.numpy())
    gy = np.arange(1.0, 1.0 + y2.size).reshape(y2.shape)
    gx2 = G.max_pool2d_input(x2, gy, (2, 2), 1, 1, (3, 1), backend=engine)
    want = np.zeros(x2.size)
    for k, v in zip(it.numpy().ravel(), gy.ravel()):
        if 0 <= k < x2.size:
            want[k] += v
    np.testing.assert_array_equal(gx2, want.reshape(x2.shape))


def test_adaptive_avg_pool_zero_channels(engine):
    # torch accepts zero channels in adaptive average pooling (an empty output); max raises
    import fastconv.ops.grad as G

    assert fc.adaptive_avg_pool2d(np.zeros((2, 0, 5, 5)), 2, backend=engine).shape == (2, 0, 2, 2)
    assert fc.adaptive_avg_pool2d(np.zeros((0, 5, 5)), (3, None), backend=engine).shape == (0, 3, 5)
    assert fc.adaptive_avg_pool1d(np.zeros((2, 0, 5)), 3, backend=engine).shape == (2, 0, 3)
    gx = G.adaptive_avg_pool2d_input((2, 0, 5, 5), np.zeros((2, 0, 2, 2)), backend=engine)
    assert gx.shape == (2, 0, 5, 5)
