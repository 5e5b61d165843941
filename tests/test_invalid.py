"""One test per class of invalid input, in every engine: ValueError or TypeError naming the
parameter (and its value where there is one)."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc

X = np.ones((2, 4, 6, 6))
W = np.ones((6, 2, 3, 3))
X1 = np.ones((2, 4, 9))
W1 = np.ones((6, 4, 3))
WT = np.ones((4, 3, 3, 3))

# (id, call(engine), exception type, words the message must contain)
CASES = [
    ("conv ndim", lambda e: fc.conv2d(np.ones((6, 6)), W, backend=e), ValueError, ["input", "(6, 6)"]),
    ("conv weight ndim", lambda e: fc.conv2d(X, np.ones((6, 4, 3)), backend=e), ValueError, ["weight"]),
    ("conv channels", lambda e: fc.conv2d(X, np.ones((6, 3, 3, 3)), backend=e), ValueError, ["channels", "4"]),
    ("conv groups divide", lambda e: fc.conv2d(X, np.ones((5, 2, 3, 3)), groups=2, backend=e), ValueError, ["groups", "5"]),
    ("conv groups zero", lambda e: fc.conv2d(X, W, groups=0, backend=e), ValueError, ["groups", "0"]),
    ("conv groups float", lambda e: fc.conv2d(X, W, groups=2.0, backend=e), TypeError, ["groups", "2.0"]),
    ("conv stride zero", lambda e: fc.conv2d(X, W, stride=0, groups=2, backend=e), ValueError, ["stride", "0"]),
    ("conv stride negative", lambda e: fc.conv2d(X, W, stride=(1, -2), groups=2, backend=e), ValueError, ["stride", "-2"]),
    ("conv stride float", lambda e: fc.conv2d(X, W, stride=1.5, groups=2, backend=e), TypeError, ["stride", "1.5"]),
    ("conv stride str", lambda e: fc.conv2d(X, W, stride="2", groups=2, backend=e), TypeError, ["stride"]),
    ("conv stride len", lambda e: fc.conv2d(X, W, stride=(1, 1, 1), groups=2, backend=e), ValueError, ["stride"]),
    ("conv dilation zero", lambda e: fc.conv2d(X, W, dilation=0, groups=2, backend=e), ValueError, ["dilation", "0"]),
    ("conv dilation huge", lambda e: fc.conv2d(X, W, dilation=2**62, groups=2, backend=e), ValueError, ["dilation"]),
    ("conv padding huge", lambda e: fc.conv2d(X, W, padding=2**40, groups=2, backend=e), ValueError, ["padding"]),
    ("conv stride huge", lambda e: fc.conv2d(X, W, stride=2**63, groups=2, backend=e), ValueError, ["stride"]),
    ("conv padding negative", lambda e: fc.conv2d(X, W, padding=-1, groups=2, backend=e), ValueError, ["padding", "-1"]),
    ("conv padding string", lambda e: fc.conv2d(X, W, padding="full", groups=2, backend=e), ValueError, ["padding", "full"]),
    ("conv padding same strided", lambda e: fc.conv2d(X, W, stride=2, padding="same", groups=2, backend=e), ValueError, ["same", "stride"]),
    ("conv padding float", lambda e: fc.conv2d(X, W, padding=1.0, groups=2, backend=e), TypeError, ["padding"]),
    ("conv kernel too big", lambda e: fc.conv2d(X, np.ones((6, 2, 7, 3)), groups=2, backend=e), ValueError, ["kernel", "7"]),
    ("conv bias length", lambda e: fc.conv2d(X, W, np.ones(5), groups=2, backend=e), ValueError, ["bias", "6"]),
    ("conv bias ndim", lambda e: fc.conv2d(X, W, np.ones((6, 1)), groups=2, backend=e), ValueError, ["bias"]),
    ("conv padding_mode", lambda e: fc.conv2d(X, W, groups=2, padding_mode="mirror", backend=e), ValueError, ["padding_mode", "mirror"]),
    ("conv reflect too big", lambda e: fc.conv2d(X, W, padding=6, groups=2, padding_mode="reflect", backend=e), ValueError, ["reflect"]),
    ("conv empty spatial", lambda e: fc.conv2d(np.ones((1, 4, 0, 6)), W, padding=2, groups=2, backend=e), ValueError, ["input", "0"]),
    ("conv complex", lambda e: fc.conv2d(X.astype(complex), W, groups=2, backend=e), TypeError, ["input", "complex"]),
    ("conv object", lambda e: fc.conv2d(X.astype(object), W, groups=2, backend=e), TypeError, ["input", "object"]),
    ("conv weight str", lambda e: fc.conv2d(X, np.array([["a"]]), backend=e), TypeError, ["weight"]),
    ("conv1d ndim", lambda e: fc.conv1d(X, W1, backend=e), ValueError, ["input"]),
    ("conv1d padding tuple", lambda e: fc.conv1d(X1, W1, padding=(1, 1), backend=e), ValueError, ["padding"]),
    ("convT output_padding", lambda e: fc.conv_transpose2d(X, WT, stride=2, output_padding=2, backend=e), ValueError, ["output_padding"]),
    ("convT weight channels", lambda e: fc.conv_transpose2d(X, np.ones((3, 3, 3, 3)), backend=e), ValueError, ["weight", "4"]),
    ("convT groups", lambda e: fc.conv_transpose2d(X, WT, groups=3, backend=e), ValueError, ["groups", "3"]),
    ("convT padding string", lambda e: fc.conv_transpose2d(X, WT, padding="same", backend=e), TypeError, ["padding"]),
    ("convT too small", lambda e: fc.conv_transpose2d(X, WT, padding=5, backend=e), ValueError, ["output size"]),
    ("convT1d output_padding", lambda e: fc.conv_transpose1d(X1, np.ones((4, 2, 3)), output_padding=1, backend=e), ValueError, ["output_padding"]),
    ("depthwise weight shape", lambda e: fc.depthwise_conv2d(X, np.ones((8, 2, 3, 3)), backend=e), ValueError, ["weight"]),
    ("depthwise multiple", lambda e: fc.depthwise_conv2d(X, np.ones((6, 1, 3, 3)), backend=e), ValueError, ["weight", "6"]),
    ("depthwise bias", lambda e: fc.depthwise_conv2d(X, np.ones((8, 1, 3, 3)), np.ones(4), backend=e), ValueError, ["bias"]),
    ("separable pointwise", lambda e: fc.separable_conv2d(X, np.ones((4, 1, 3, 3)), np.ones((5, 3, 1, 1)), backend=e), ValueError, ["pointwise_weight"]),
    ("separable pointwise bias", lambda e: fc.separable_conv2d(X, np.ones((4, 1, 3, 3)), np.ones((5, 4, 1, 1)), None, np.ones(4), backend=e), ValueError, ["pointwise_bias"]),
    ("maxpool kernel zero", lambda e: fc.max_pool2d(X, 0, backend=e), ValueError, ["kernel_size", "0"]),
    ("maxpool stride zero", lambda e: fc.max_pool2d(X, 2, 0, backend=e), ValueError, ["stride", "0"]),
    ("maxpool padding half", lambda e: fc.max_pool2d(X, 2, padding=2, backend=e), ValueError, ["padding"]),
    ("maxpool dilation zero", lambda e: fc.max_pool2d(X, 2, dilation=0, backend=e), ValueError, ["dilation", "0"]),
    ("maxpool dilation huge", lambda e: fc.max_pool2d(X, 2, dilation=2**62, backend=e), ValueError, ["dilation"]),
    ("maxpool too small", lambda e: fc.max_pool2d(X, 7, backend=e), ValueError, ["output size"]),
    ("maxpool ceil_mode", lambda e: fc.max_pool2d(X, 2, ceil_mode="yes", backend=e), TypeError, ["ceil_mode"]),
    ("maxpool return_indices", lambda e: fc.max_pool2d(X, 2, return_indices=1, backend=e), TypeError, ["return_indices"]),
    ("maxpool ndim", lambda e: fc.max_pool2d(np.ones((3, 3)), 2, backend=e), ValueError, ["input"]),
    ("maxpool empty", lambda e: fc.max_pool2d(np.ones((1, 2, 0, 4)), 1, backend=e), ValueError, ["input"]),
    ("maxpool1d kernel tuple", lambda e: fc.max_pool1d(X1, (2, 2), backend=e), ValueError, ["kernel_size"]),
    ("avgpool divisor zero", lambda e: fc.avg_pool2d(X, 2, divisor_override=0, backend=e), ValueError, ["divisor_override"]),
    ("avgpool divisor float", lambda e: fc.avg_pool2d(X, 2, divisor_override=1.5, backend=e), TypeError, ["divisor_override"]),
    ("avgpool padding half", lambda e: fc.avg_pool2d(X, 3, padding=2, backend=e), ValueError, ["padding"]),
    ("avgpool count_include_pad", lambda e: fc.avg_pool2d(X, 2, count_include_pad=None, backend=e), TypeError, ["count_include_pad"]),
    ("adaptive negative", lambda e: fc.adaptive_avg_pool2d(X, -1, backend=e), ValueError, ["output_size", "-1"]),
    ("adaptive float", lambda e: fc.adaptive_max_pool2d(X, 2.5, backend=e), TypeError, ["output_size"]),
    ("adaptive len", lambda e: fc.adaptive_avg_pool2d(X, (1, 2, 3), backend=e), ValueError, ["output_size"]),
    ("adaptive len 1", lambda e: fc.adaptive_avg_pool2d(X, (2,), backend=e), ValueError, ["output_size", "2 entries"]),
    ("adaptive max len 1", lambda e: fc.adaptive_max_pool2d(X, [None], backend=e), ValueError, ["output_size"]),
    ("adaptive huge", lambda e: fc.adaptive_avg_pool2d(X, 2**40, backend=e), ValueError, ["output_size"]),
    ("adaptive too many", lambda e: fc.adaptive_avg_pool2d(X, 2**30, backend=e), ValueError, ["elements"]),
    ("adaptive 0-d array", lambda e: fc.adaptive_avg_pool2d(X, np.array(3), backend=e), TypeError, ["output_size"]),
    ("adaptive max 0-d array", lambda e: fc.adaptive_max_pool1d(X1, np.array(3), backend=e), TypeError, ["output_size"]),
    ("adaptive max zero channels", lambda e: fc.adaptive_max_pool2d(np.ones((2, 0, 4, 4)), 2, backend=e), ValueError, ["input"]),
    ("adaptive avg empty spatial", lambda e: fc.adaptive_avg_pool2d(np.ones((2, 0, 0, 4)), 2, backend=e), ValueError, ["input"]),
    ("maxpool stride empty str", lambda e: fc.max_pool2d(X, 2, stride="", backend=e), TypeError, ["stride"]),
    ("avgpool1d stride empty str", lambda e: fc.avg_pool1d(X1, 2, stride="", backend=e), TypeError, ["stride"]),
    ("maxpool kernel 0-d array", lambda e: fc.max_pool2d(X, np.array(2), backend=e), TypeError, ["kernel_size"]),
    ("conv stride 0-d array", lambda e: fc.conv2d(X, W, stride=np.array(2), groups=2, backend=e), TypeError, ["stride"]),
    ("conv input None", lambda e: fc.conv2d(None, W, backend=e), TypeError, ["input", "None"]),
    ("conv weight None", lambda e: fc.conv2d(X, None, backend=e), TypeError, ["weight", "None"]),
    ("convT weight None", lambda e: fc.conv_transpose2d(X, None, backend=e), TypeError, ["weight", "None"]),
    ("pool input None", lambda e: fc.avg_pool2d(None, 2, backend=e), TypeError, ["input", "None"]),
    ("separable pointwise None", lambda e: fc.separable_conv2d(X, np.ones((4, 1, 3, 3)), None, backend=e), TypeError, ["pointwise_weight"]),
    ("separable depthwise bias", lambda e: fc.separable_conv2d(X, np.ones((4, 1, 3, 3)), np.ones((5, 4, 1, 1)), np.ones(2), backend=e), ValueError, ["depthwise_bias"]),
    ("grad grad_output None", lambda e: fc.grad.conv2d_input(X.shape, W, None, groups=2, backend=e), TypeError, ["grad_output"]),
    ("grad weight None", lambda e: fc.grad.conv2d_weight(X, W.shape, None, groups=2, backend=e), TypeError, ["grad_output"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_invalid(engine, case):
    _, call, exc, words = case
    with pytest.raises(exc) as info:
        call(engine)
    msg = str(info.value)
    for word in words:
        assert word in msg, f"{word!r} not in {msg!r}"


@pytest.mark.parametrize("backend", ["gpu", "C", "", "auto "])
def test_unknown_backend_lists_valid_ones(backend):
    with pytest.raises(ValueError) as info:
        fc.conv2d(X, W, groups=2, backend=backend)
    for name in ("auto", "reference", "c", "numba", "cuda"):
        assert repr(name) in str(info.value)


def test_backend_type():
    with pytest.raises(TypeError, match="backend"):
        fc.max_pool2d(X, 2, backend=None)


def test_unavailable_backend_says_why(monkeypatch):
    from fastconv.backends import _registry

    monkeypatch.setitem(_registry._reasons, "numba", "unavailable: testing")
    monkeypatch.delitem(_registry._modules, "numba", raising=False)
    with pytest.raises(ValueError, match="unavailable: testing"):
        fc.conv2d(X, W, groups=2, backend="numba")
