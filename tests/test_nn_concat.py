"""fastconv.nn.Concat: 1-D networks (batched and unbatched), the backward split, the
spatial_dims argument, and 2-D networks."""

from collections import OrderedDict

import numpy as np
import pytest

from fastconv import nn

RNG = np.random.default_rng(4321)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def test_concat_conv1d_batched_and_unbatched():
    a, b = nn.Conv1d(2, 4, 3, padding=1), nn.Conv1d(2, 3, 1)
    cat = nn.Concat(a, b)
    assert cat.spatial_dims == 1
    x = rand(3, 2, 10)
    y = cat(x)
    assert y.shape == cat.output_shape(x.shape) == (3, 7, 10)
    np.testing.assert_allclose(y, np.concatenate([a(x), b(x)], axis=1), rtol=1e-6)
    xu = rand(2, 10)
    yu = cat(xu)
    assert yu.shape == cat.output_shape(xu.shape) == (7, 10)
    np.testing.assert_allclose(yu, np.concatenate([a(xu), b(xu)], axis=0), rtol=1e-6)
    # nested in a Sequential (the layers are found anywhere below the branches)
    net = nn.Concat(nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU()), nn.Identity())
    assert net(x).shape == net.output_shape(x.shape) == (3, 6, 10)


def test_concat_conv1d_backward_splits_channels():
    a = nn.Conv1d(2, 4, 3, padding=1, dtype=np.float64, generator=0)
    b = nn.Conv1d(2, 3, 1, dtype=np.float64, generator=1)
    cat = nn.Concat(a, b).retain_inputs()
    x = rand(3, 2, 10, dtype=np.float64)
    y = cat(x)
    gy = rand(*y.shape, dtype=np.float64)
    gx = cat.backward(gy)
    ga, gb = dict(a.grads), dict(b.grads)
    ref_a, ref_b = nn.Conv1d(2, 4, 3, padding=1, dtype=np.float64), nn.Conv1d(2, 3, 1,
                                                                              dtype=np.float64)
    ref_a.load_state_dict(a.state_dict())
    ref_b.load_state_dict(b.state_dict())
    ref_a.retain_inputs()(x)
    ref_b.retain_inputs()(x)
    ref = ref_a.backward(gy[:, :4]) + ref_b.backward(gy[:, 4:])
    np.testing.assert_allclose(gx, ref, rtol=1e-12)
    np.testing.assert_allclose(ga["weight"], ref_a.grads["weight"], rtol=1e-12)
    np.testing.assert_allclose(gb["bias"], ref_b.grads["bias"], rtol=1e-12)
    cat(x)
    with pytest.raises(ValueError, match="grad_output"):
        cat.backward(gy[:, :, :9])


def test_concat_spatial_dims_argument():
    x = rand(3, 2, 10)
    # elementwise branches: the layers do not tell, the argument does
    assert nn.Concat(nn.ReLU(), nn.Identity(), spatial_dims=1)(x).shape == (3, 4, 10)
    assert nn.Concat(nn.ReLU(), nn.Identity())(x).shape == (6, 2, 10)  # 2-D: (C, H, W)
    assert nn.Concat(nn.ReLU(), nn.Identity(), spatial_dims=2)(x).shape == (6, 2, 10)
    # 2-D layers then Flatten(2): (N, C, H*W) outputs, joined along C when told
    mixed = nn.Concat(nn.Sequential(nn.Conv2d(2, 3, 1), nn.Flatten(2), nn.Conv1d(3, 2, 1)),
                      nn.Sequential(nn.Conv2d(2, 4, 1), nn.Flatten(2)))
    with pytest.raises(ValueError, match="spatial_dims"):
        mixed(rand(3, 2, 4, 5))
    mixed = nn.Concat(*mixed.children(), spatial_dims=1)
    assert mixed(rand(3, 2, 4, 5)).shape == mixed.output_shape((3, 2, 4, 5)) == (3, 6, 20)
    for bad, error in [(3, ValueError), (0, ValueError), ("1", TypeError), (True, TypeError)]:
        with pytest.raises(error, match="spatial_dims"):
            nn.Concat(nn.ReLU(), spatial_dims=bad)
    with pytest.raises(ValueError, match="spatial_dims"):
        nn.Concat(nn.Identity(), spatial_dims=1)(rand(1, 2, 3, 3))


def test_concat_2d_unchanged():
    a, b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 2, 1)
    cat = nn.Concat(OrderedDict(a=a, b=b))
    assert cat.spatial_dims == 2 and list(cat.state_dict()) == ["a.weight", "a.bias",
                                                                "b.weight", "b.bias"]
    assert cat(rand(2, 3, 5, 5)).shape == (2, 6, 5, 5)
    assert cat(rand(3, 5, 5)).shape == cat.output_shape((3, 5, 5)) == (6, 5, 5)
