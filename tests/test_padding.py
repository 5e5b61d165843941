"""fastconv.ops._padding: each padding mode pads as torch's padding_mode does, and unpad is
pad's adjoint (<pad(x), g> = <x, unpad(g)>) along 1-D and 2-D spatial axes."""

import numpy as np
import pytest

from fastconv import _shapes
from fastconv.ops import _padding

MODES = [m for m in _shapes.PADDING_MODES if m != "zeros"]


def test_every_mode_but_zeros_has_a_numpy_mode():
    assert sorted(_padding.NUMPY_MODES) == sorted(MODES)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape, widths", [
    ((2, 3, 7), (2, 1)),              # (N, C, L): left, right
    ((3, 5, 6), (1, 2, 0, 3)),        # (C, H, W): top, bottom, left, right
    ((2, 3, 5, 6), (2, 2, 3, 1)),     # (N, C, H, W)
])
def test_unpad_is_the_adjoint_of_pad(mode, shape, widths):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape)
    xp = _padding.pad(x, widths, mode)
    nd = len(widths) // 2
    grown = tuple(s + widths[2 * i] + widths[2 * i + 1] for i, s in enumerate(shape[-nd:]))
    assert xp.shape == shape[:-nd] + grown
    g = rng.standard_normal(xp.shape)
    gx = _padding.unpad(g, widths, mode)
    assert gx.shape == x.shape
    np.testing.assert_allclose(np.vdot(xp, g), np.vdot(x, gx), rtol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_pad_matches_torch(mode):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).standard_normal((2, 3, 5, 6))
    widths = (1, 2, 3, 0)  # top, bottom, left, right; torch takes left, right, top, bottom
    ref = torch.nn.functional.pad(torch.from_numpy(x), (3, 0, 1, 2), mode=mode).numpy()
    np.testing.assert_array_equal(_padding.pad(x, widths, mode), ref)
