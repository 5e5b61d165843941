"""fastconv.nn.Module's rules: load_state_dict checks every value before it writes any, child
names may not shadow attributes, and every layer takes real inputs only."""

from collections import OrderedDict

import numpy as np
import pytest

from fastconv import nn

# ---------------------------------------------------------------------------- load_state_dict


def _conv_bn():
    return nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1))


@pytest.mark.parametrize("key,value,error", [
    ("1.num_batches_tracked", "abc", TypeError),
    ("1.running_var", np.array([1 + 2j]), TypeError),
    ("1.bias", np.array([object()]), TypeError),
    ("1.weight", np.array(["1.0"]), TypeError),
])
def test_load_state_dict_checks_every_value_before_writing(key, value, error):
    m = _conv_bn()
    before = {k: v.copy() for k, v in m.state_dict().items()}
    bad = {k: v.copy() for k, v in m.state_dict().items()}
    bad["0.weight"][...] = 123  # comes first: would be written before the bad value is seen
    bad[key] = value
    with pytest.raises(error, match=key.replace(".", r"\.")):
        m.load_state_dict(bad)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_load_state_dict_read_only_target_named_and_nothing_written():
    m = _conv_bn()
    m[1].running_mean.flags.writeable = False
    sd = {k: np.full_like(v, 2) for k, v in m.state_dict().items()}
    with pytest.raises(ValueError, match=r"1\.running_mean"):
        m.load_state_dict(sd)
    assert m[0].weight[0, 0, 0, 0] != 2 and m[1].weight[0] == 1


def test_load_state_dict_converts_dtypes():
    m = _conv_bn()
    sd = {k: np.full(v.shape, 3, np.int32) for k, v in m.state_dict().items()}
    sd["1.running_var"] = [5.0]  # a list
    sd["1.num_batches_tracked"] = np.float64(7)
    m.load_state_dict(sd)
    assert m[0].weight.dtype == np.float32 and m[0].weight[0, 0, 0, 0] == 3
    assert m[1].running_var[0] == 5 and m[1].num_batches_tracked.dtype == np.int64
    assert m[1].num_batches_tracked == 7


# ---------------------------------------------------------------------------- child names


ATTRIBUTES = ["forward", "backward", "state_dict", "backend", "grads", "cache", "training",
              "train", "eval", "_modules", "keep_cache", "load_state_dict"]


@pytest.mark.parametrize("name", ATTRIBUTES)
def test_child_name_must_not_shadow_an_attribute(name):
    pat = f"'{name}'"
    with pytest.raises(ValueError, match=pat):
        nn.Sequential(OrderedDict([("0", nn.Conv2d(1, 1, 1)), (name, nn.ReLU())]))
    with pytest.raises(ValueError, match=pat):
        nn.Concat(OrderedDict([(name, nn.ReLU())]))
    with pytest.raises(ValueError, match=pat):
        nn.Residual([(name, nn.ReLU())])
    with pytest.raises(ValueError, match=pat):
        nn.Residual(nn.ReLU(), shortcut=nn.Identity(), shortcut_name=name)
    with pytest.raises(ValueError, match=pat):
        nn.Residual(nn.ReLU(), activation=nn.ReLU(), activation_name=name)
    seq = nn.Sequential(nn.ReLU())
    with pytest.raises(ValueError, match=pat):
        seq.add_module(name, nn.ReLU())
    with pytest.raises(ValueError, match=pat):
        setattr(seq, name, nn.ReLU())
    assert list(seq._modules) == ["0"]


def test_residual_step_cannot_take_its_own_attribute_names():
    for name in ("shortcut_name", "activation_name", "_steps"):
        with pytest.raises(ValueError, match=name):
            nn.Residual([(name, nn.ReLU())])


def test_child_names_still_allowed():
    seq = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 1, 1), weight=nn.ReLU()))
    seq.conv = nn.Conv2d(1, 2, 1)  # replacing a child is fine
    assert seq.conv.out_channels == 2 and list(seq._modules) == ["conv", "weight"]
    assert seq(np.ones((1, 1, 2, 2), np.float32)).shape == (1, 2, 2, 2)


# ---------------------------------------------------------------------------- real inputs only


def _layers():
    return [
        nn.ReLU(), nn.ReLU6(), nn.Linear(3, 2), nn.BatchNorm2d(3), nn.Conv2d(3, 2, 1),
        nn.Conv1d(3, 2, 1), nn.ConvTranspose2d(3, 2, 1), nn.MaxPool2d(1), nn.AvgPool2d(1),
        nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(),
        nn.Identity(), nn.DepthwiseSeparableConv2d(3, 2, 1), nn.Sequential(nn.ReLU()),
        nn.Concat(nn.ReLU()), nn.Residual(nn.ReLU()),
    ]


@pytest.mark.parametrize("layer", _layers(), ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, object, "U3"])
def test_layers_reject_non_real_input(layer, dtype):
    shape = (1, 3, 3) if isinstance(layer, nn.Conv1d) else (1, 3, 3, 3)
    x = np.ones(shape).astype(dtype)
    with pytest.raises(TypeError, match="input"):
        layer(x)
    with pytest.raises(TypeError, match="input"):
        layer.train()(x)


def test_complex_repro_and_real_inputs_still_accepted():
    with pytest.raises(TypeError, match="input"):
        nn.ReLU()(np.array([1 + 1j]))
    with pytest.raises(TypeError, match="input"):
        nn.ReLU()([1 + 1j, 2])
    assert nn.ReLU()([-1, 2]).tolist() == [0, 2]
    assert nn.ReLU()(np.array([True, False])).dtype == np.bool_
    assert nn.Linear(2, 1)(np.ones((1, 2), np.int64)).dtype.kind == "f"
