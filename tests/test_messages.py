"""Every error message starts with the name the user called, then names the parameter.

``conv2d: stride must be positive, got 0``, ``Conv2d: in_channels must be positive``,
``conv2d_input: input_shape must ...``: the public function's (or layer class's) name and
": ", once, then the offending parameter. Each public op, gradient, layer constructor,
init function, model function and analysis function has a valid call below (SPECS); the
tests break it one parameter at a time with every value of that parameter's list of bad
values (BAD), and two parameters at a time in a seeded random sample.
"""

import inspect

import numpy as np
import pytest

import fastconv as fc
from fastconv import accounting, erf, init, models, nn
from fastconv import grad as G

# --------------------------------------------------------------------------- arrays

X = np.ones((1, 2, 5, 5))  # conv input: N=1, C=2, 5x5
W = np.ones((4, 2, 3, 3))  # OC=4
X1, W1 = np.ones((1, 2, 7)), np.ones((4, 2, 3))
XT, WT = np.ones((1, 2, 4, 4)), np.ones((2, 3, 3, 3))  # transposed: OC=3, stride 2 -> 8x8
XT1, WT1 = np.ones((1, 2, 4)), np.ones((2, 3, 3))
DW, PW = np.ones((4, 1, 3, 3)), np.ones((3, 4, 1, 1))  # depthwise m=2, pointwise OC=3
XP, XP1 = np.ones((1, 2, 6, 6)), np.ones((1, 2, 8))  # pooling inputs

CONV = dict(stride=1, padding=1, dilation=1)
GY = np.ones((1, 4, 5, 5))  # conv2d(X, W, padding=1)
GY1 = np.ones((1, 4, 7))
GYT = np.ones((1, 3, 8, 8))  # conv_transpose2d(XT, WT, stride=2, padding=1, output_padding=1)
GYT1 = np.ones((1, 3, 8))
GYS = np.ones((1, 3, 5, 5))  # separable_conv2d(X, DW, PW, padding=1)
TRANSPOSED = dict(stride=2, padding=1, output_padding=1, groups=1, dilation=1)
MAXPOOL = dict(kernel_size=2, stride=2, padding=1, dilation=1, ceil_mode=False)
GYP, GYP1 = np.ones((1, 2, 4, 4)), np.ones((1, 2, 5))  # max_pool2d(XP, 2, 2, 1)
AVGPOOL = dict(kernel_size=3, stride=2, padding=1, ceil_mode=False, count_include_pad=True)
GYA, GYA1 = np.ones((1, 2, 3, 3)), np.ones((1, 2, 4))  # avg_pool2d(XP, 3, 2, 1)
GYAD, GYAD1 = np.ones((1, 2, 3, 3)), np.ones((1, 2, 3))  # adaptive output size 3

# --------------------------------------------------------------------------- bad values
# Bad values of each parameter, whatever the function (SPECS may override one list).

SIZE = [0, -1, 1.5, "2", True, (1, 1, 1), 2**40]  # stride, dilation, kernel_size: >= 1
ARRAY = [None, np.ones(5), np.ones((1, 2, 5, 5), complex), "abc"]
OPTIONAL_ARRAY = [np.ones((4, 1)), np.ones(7), np.ones(3, complex)]  # None is valid
SHAPE = ["abc", 1.5, None, (1,), (1, 2, 3, 4, 5, 6), (1, -2, 5, 5)]
FLAG = [1, "yes", None]
COUNT = [0, -1, 1.5, "2", True]  # in_channels, num_features, ...: >= 1
REAL = ["x", None, float("nan"), -1.0]  # a finite number >= 0

BAD = {
    "input": ARRAY,
    "weight": ARRAY,
    "grad_output": ARRAY,
    "depthwise_weight": ARRAY,
    "pointwise_weight": ARRAY,
    "bias": OPTIONAL_ARRAY,
    "depthwise_bias": OPTIONAL_ARRAY,
    "pointwise_bias": OPTIONAL_ARRAY,
    "input_shape": SHAPE,
    "weight_shape": SHAPE,
    "depthwise_weight_shape": SHAPE,
    "pointwise_weight_shape": SHAPE,
    "stride": SIZE,
    "dilation": SIZE,
    "kernel_size": SIZE,
    "padding": [-1, 1.5, "full", (1, 1, 1), 2**40],
    "output_padding": [-1, 1.5, 2, (0, 0, 0)],
    "groups": [0, -1, 1.5, "1", 3],
    "ceil_mode": FLAG,
    "return_indices": FLAG,
    "count_include_pad": FLAG,
    "divisor_override": [0, 1.5, "2"],
    "output_size": [-1, 2.5, (1, 1, 1), "x"],
    "padding_mode": ["mirror", 3, None],
    "backend": ["gpu", "", 3, None],
    "n": [0, -1, 1.5, "2"],
    # layers
    "in_channels": COUNT,
    "out_channels": COUNT,
    "num_features": COUNT,
    "in_features": COUNT,
    "out_features": COUNT,
    "depth_multiplier": COUNT,
    "bias_flag": FLAG,  # a layer's bias=True / False (see _bad)
    "inplace": FLAG,
    "affine": FLAG,
    "track_running_stats": FLAG,
    "initialize": FLAG,
    "dtype": [int, "foo", np.complex64],
    "generator": [-1, 1.5, "seed"],
    "eps": [0, -1e-3, "x", float("nan")],
    "momentum": [2, -0.5, "x"],
    "p": [2, -0.5, "x", None],
    "start_dim": [1.5, "x", None],
    "end_dim": [1.5, "x", None],
    "spatial_dims": [0, 3, 1.5],
    "model": [3, "resnet18", None],
    "lr": REAL,
    "dampening": REAL,
    "weight_decay": REAL,
    "nesterov": [1, "yes"],
    # init
    "array": [None, [1.0, 2.0], np.ones((3, 3), int)],
    "a": ["x", float("nan")],
    "mean": ["x", float("inf")],
    "std": [-1, "x"],
    "val": ["x", float("nan")],
    "gain": [-1, "x"],
    "mode": ["fan", 3],
    "nonlinearity": ["swish", 3],
    "param": ["x", float("nan")],
    # models and analysis
    "num_classes": [0, -1, 1.5, "10"],
    "routing_iterations": [0, -1, 1.5, "3"],
    "num_capsules": COUNT,
    "capsule_dim": COUNT,
    "in_capsules": COUNT,
    "in_dim": COUNT,
    "out_capsules": COUNT,
    "out_dim": COUNT,
    "conv_channels": COUNT,
    "primary_capsules": COUNT,
    "primary_dim": COUNT,
    "primary_stride": COUNT,
    "digit_dim": COUNT,
    "decoder": FLAG,
    "dropout": [2, -0.5, "x"],
    "width_mult": [0, "x", float("inf")],
    "base": [0, 1.5],
    "depth": [-1, 1.5],
    "name": [3, "lenet"],
    "batch": [0, 1.5],
    "flops": [1, "yes"],
    "dense": [1, None],
    "transposed": ["x", None],
    "spec": ["linear", "cubic:3", "linear:x", "linear:0", 3],
    "channels": [0, 1.5],
    "samples": [0, 1.5],
    "position": [(1,), "ab", (99, 99), (1.5, 0)],
    "channel": [-1, 99, 1.5],
}

# --------------------------------------------------------------------------- valid calls
# name -> (callable, valid keyword arguments, {parameter: bad values} overrides). Every
# parameter of the valid call is broken in turn, with BAD[parameter] unless overridden.

LIN = nn.Linear(2, 2, generator=0)
NET = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, generator=0), nn.ReLU())
LINEAR_NET = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, generator=0))  # a gradient everywhere

SPECS = {
    # ops
    "conv2d": (fc.conv2d, dict(input=X, weight=W, bias=np.ones(4), groups=1,
                                 padding_mode="zeros", backend="reference", **CONV), {}),
    "conv1d": (fc.conv1d, dict(input=X1, weight=W1, bias=np.ones(4), groups=1,
                                 padding_mode="zeros", backend="reference", **CONV), {}),
    "conv_transpose2d": (fc.conv_transpose2d, dict(input=XT, weight=WT, bias=np.ones(3),
                                                     backend="reference", **TRANSPOSED), {}),
    "conv_transpose1d": (fc.conv_transpose1d, dict(input=XT1, weight=WT1, bias=np.ones(3),
                                                     backend="reference", **TRANSPOSED), {}),
    "depthwise_conv2d": (fc.depthwise_conv2d, dict(input=X, weight=DW, bias=np.ones(4),
                                                     backend="reference", **CONV), {}),
    "separable_conv2d": (fc.separable_conv2d,
                         dict(input=X, depthwise_weight=DW, pointwise_weight=PW,
                              depthwise_bias=np.ones(4), pointwise_bias=np.ones(3),
                              backend="reference", **CONV), {}),
    "max_pool2d": (fc.max_pool2d, dict(input=XP, return_indices=False, backend="reference",
                                       **MAXPOOL), {"padding": [-1, 1.5, "full", 2]}),
    "max_pool1d": (fc.max_pool1d, dict(input=XP1, return_indices=True, backend="reference",
                                       **MAXPOOL), {}),
    "avg_pool2d": (fc.avg_pool2d, dict(input=XP, divisor_override=None, backend="reference",
                                       **AVGPOOL), {}),
    "avg_pool1d": (fc.avg_pool1d, dict(input=XP1, backend="reference", **AVGPOOL), {}),
    "adaptive_avg_pool2d": (fc.adaptive_avg_pool2d,
                            dict(input=XP, output_size=3, backend="reference"), {}),
    "adaptive_avg_pool1d": (fc.adaptive_avg_pool1d,
                            dict(input=XP1, output_size=3, backend="reference"), {}),
    "adaptive_max_pool2d": (fc.adaptive_max_pool2d, dict(input=XP, output_size=3,
                                                         return_indices=True,
                                                         backend="reference"), {}),
    "adaptive_max_pool1d": (fc.adaptive_max_pool1d, dict(input=XP1, output_size=3,
                                                         return_indices=False,
                                                         backend="reference"), {}),
    "set_num_threads": (fc.set_num_threads, dict(n=None), {}),  # its valid call is not run
    "set_buffer_pool_limit": (fc.set_buffer_pool_limit, dict(nbytes=None),
                              {"nbytes": [-1, "abc", 1.5, True, [1]]}),
    "set_fusion": (nn.set_fusion, dict(enabled=True), {"enabled": FLAG}),
    "batch_norm_scale_shift": (
        fc.fused.batch_norm_scale_shift,
        dict(running_mean=np.zeros(2), running_var=np.ones(2), weight=np.ones(2),
             bias=np.zeros(2), eps=1e-5),
        {"running_mean": [None, np.ones((2, 2)), np.ones(3, complex), "abc", np.ones(3)],
         "running_var": [None, np.ones((2, 2)), "abc", np.ones(3)],
         "weight": [np.ones((2, 2)), "abc", np.ones(5)],
         "bias": [np.ones((2, 1)), np.ones(3, complex), np.ones(7)],
         "eps": [-1e-3, "x", float("nan"), None]},
    ),
    # gradients
    "conv2d_input": (G.conv2d_input, dict(input_shape=X.shape, weight=W, grad_output=GY,
                                          groups=1, backend="reference", **CONV), {}),
    "conv1d_input": (G.conv1d_input, dict(input_shape=X1.shape, weight=W1, grad_output=GY1,
                                          groups=1, backend="reference", **CONV),
                     {"input_shape": ["abc", None, (1,), (1, -2, 7)]}),
    "conv2d_weight": (G.conv2d_weight, dict(input=X, weight_shape=W.shape, grad_output=GY,
                                            groups=1, backend="reference", **CONV), {}),
    "conv1d_weight": (G.conv1d_weight, dict(input=X1, weight_shape=W1.shape, grad_output=GY1,
                                            groups=1, backend="reference", **CONV), {}),
    "conv2d_bias": (G.conv2d_bias, dict(grad_output=GY, backend="reference"), {}),
    "conv1d_bias": (G.conv1d_bias, dict(grad_output=GY1, backend="reference"), {}),
    "conv_transpose2d_bias": (G.conv_transpose2d_bias,
                              dict(grad_output=GYT, backend="reference"), {}),
    "conv_transpose1d_bias": (G.conv_transpose1d_bias,
                              dict(grad_output=GYT1, backend="reference"), {}),
    "conv_transpose2d_input": (G.conv_transpose2d_input,
                               dict(input_shape=XT.shape, weight=WT, grad_output=GYT,
                                    backend="reference", **TRANSPOSED), {}),
    "conv_transpose1d_input": (G.conv_transpose1d_input,
                               dict(input_shape=XT1.shape, weight=WT1, grad_output=GYT1,
                                    backend="reference", **TRANSPOSED),
                               {"input_shape": ["abc", None, (1,), (1, -2, 4)]}),
    "conv_transpose2d_weight": (G.conv_transpose2d_weight,
                                dict(input=XT, weight_shape=WT.shape, grad_output=GYT,
                                     backend="reference", **TRANSPOSED), {}),
    "conv_transpose1d_weight": (G.conv_transpose1d_weight,
                                dict(input=XT1, weight_shape=WT1.shape, grad_output=GYT1,
                                     backend="reference", **TRANSPOSED), {}),
    "depthwise_conv2d_input": (G.depthwise_conv2d_input,
                               dict(input_shape=X.shape, weight=DW, grad_output=GY,
                                    backend="reference", **CONV), {}),
    "depthwise_conv2d_weight": (G.depthwise_conv2d_weight,
                                dict(input=X, weight_shape=DW.shape, grad_output=GY,
                                     backend="reference", **CONV), {}),
    "separable_conv2d_input": (G.separable_conv2d_input,
                               dict(input_shape=X.shape, depthwise_weight=DW,
                                    pointwise_weight=PW, grad_output=GYS,
                                    backend="reference", **CONV), {}),
    "separable_conv2d_depthwise_weight": (G.separable_conv2d_depthwise_weight,
                                          dict(input=X, depthwise_weight_shape=DW.shape,
                                               pointwise_weight=PW, grad_output=GYS,
                                               backend="reference", **CONV), {}),
    "separable_conv2d_pointwise_weight": (G.separable_conv2d_pointwise_weight,
                                          dict(input=X, depthwise_weight=DW,
                                               pointwise_weight_shape=PW.shape,
                                               grad_output=GYS, depthwise_bias=np.ones(4),
                                               backend="reference", **CONV), {}),
    "separable_conv2d_depthwise_bias": (G.separable_conv2d_depthwise_bias,
                                        dict(pointwise_weight=PW, grad_output=GYS,
                                             backend="reference"), {}),
    "separable_conv2d_pointwise_bias": (G.separable_conv2d_pointwise_bias,
                                        dict(grad_output=GYS, backend="reference"), {}),
    "separable_conv2d_backward": (G.separable_conv2d_backward,
                                  dict(input=X, depthwise_weight=DW, pointwise_weight=PW,
                                       grad_output=GYS, depthwise_bias=np.ones(4),
                                       backend="reference", **CONV), {}),
    "max_pool2d_input": (G.max_pool2d_input, dict(input=XP, grad_output=GYP,
                                                  backend="reference", **MAXPOOL),
                         {"padding": [-1, 1.5, "full", 2]}),
    "max_pool1d_input": (G.max_pool1d_input, dict(input=XP1, grad_output=GYP1,
                                                  backend="reference", **MAXPOOL), {}),
    "avg_pool2d_input": (G.avg_pool2d_input, dict(input_shape=XP.shape, grad_output=GYA,
                                                  divisor_override=None, backend="reference",
                                                  **AVGPOOL), {}),
    "avg_pool1d_input": (G.avg_pool1d_input, dict(input_shape=XP1.shape, grad_output=GYA1,
                                                  backend="reference", **AVGPOOL),
                         {"input_shape": ["abc", None, (1,), (1, -2, 8)]}),
    "adaptive_avg_pool2d_input": (G.adaptive_avg_pool2d_input,
                                  dict(input_shape=XP.shape, grad_output=GYAD,
                                       backend="reference"), {}),
    "adaptive_avg_pool1d_input": (G.adaptive_avg_pool1d_input,
                                  dict(input_shape=XP1.shape, grad_output=GYAD1,
                                       backend="reference"),
                                  {"input_shape": ["abc", None, (1,), (1, -2, 8)]}),
    "adaptive_max_pool2d_input": (G.adaptive_max_pool2d_input,
                                  dict(input=XP, grad_output=GYAD, backend="reference"), {}),
    "adaptive_max_pool1d_input": (G.adaptive_max_pool1d_input,
                                  dict(input=XP1, grad_output=GYAD1, backend="reference"), {}),
    # layers
    "Conv2d": (nn.Conv2d, dict(in_channels=2, out_channels=4, kernel_size=3, groups=1,
                               bias=True, padding_mode="zeros", dtype=np.float32, generator=0,
                               initialize=True, **CONV), {}),
    "Conv1d": (nn.Conv1d, dict(in_channels=2, out_channels=4, kernel_size=3, groups=1,
                               bias=True, padding_mode="zeros", dtype=np.float32, generator=0,
                               initialize=True, **CONV), {}),
    "ConvTranspose2d": (nn.ConvTranspose2d,
                        dict(in_channels=2, out_channels=3, kernel_size=3, bias=True,
                             padding_mode="zeros", dtype=np.float32, generator=0,
                             initialize=True, **TRANSPOSED),
                        {"padding": [-1, 1.5, "same", 2**40],
                         "padding_mode": ["reflect", "mirror", 3]}),
    "DepthwiseSeparableConv2d": (nn.DepthwiseSeparableConv2d,
                                 dict(in_channels=2, out_channels=3, kernel_size=3, bias=True,
                                      depth_multiplier=2, dtype=np.float32, generator=0,
                                      initialize=True, **CONV), {}),
    "MaxPool2d": (nn.MaxPool2d, dict(kernel_size=2, stride=2, padding=1, dilation=1,
                                     return_indices=False, ceil_mode=False), {}),
    "AvgPool2d": (nn.AvgPool2d, dict(kernel_size=3, stride=2, padding=1, ceil_mode=False,
                                     count_include_pad=True, divisor_override=None), {}),
    "AdaptiveAvgPool2d": (nn.AdaptiveAvgPool2d, dict(output_size=3), {}),
    "AdaptiveMaxPool2d": (nn.AdaptiveMaxPool2d, dict(output_size=3, return_indices=False), {}),
    "BatchNorm2d": (nn.BatchNorm2d, dict(num_features=2, eps=1e-5, momentum=0.1, affine=True,
                                         track_running_stats=True, dtype=np.float32), {}),
    "ReLU": (nn.ReLU, dict(inplace=False), {}),
    "ReLU6": (nn.ReLU6, dict(inplace=True), {}),
    "Dropout": (nn.Dropout, dict(p=0.5, inplace=False, generator=0), {}),
    "Identity": (nn.Identity, dict(), {}),
    "Flatten": (nn.Flatten, dict(start_dim=1, end_dim=-1), {}),
    "Linear": (nn.Linear, dict(in_features=3, out_features=2, bias=True, dtype=np.float32,
                               generator=0, initialize=True), {}),
    "Concat": (lambda spatial_dims=2: nn.Concat(nn.ReLU(), spatial_dims=spatial_dims),
               dict(spatial_dims=2), {}),
    "Residual": (nn.Residual, dict(body=nn.ReLU(), shortcut=None, activation=None),
                 {"body": [3, [], [(1,)]], "shortcut": [3, "id"], "activation": [3]}),
    "Sequential": (nn.Sequential, dict(), {}),  # *args: see test_containers_name_items
    "PrimaryCaps": (nn.PrimaryCaps, dict(in_channels=2, num_capsules=2, capsule_dim=2,
                                         kernel_size=3, stride=1, dtype=np.float32,
                                         generator=0, initialize=True), {}),
    "CapsuleLayer": (nn.CapsuleLayer, dict(in_capsules=3, in_dim=2, out_capsules=2, out_dim=2,
                                           routing_iterations=1, dtype=np.float32,
                                           generator=0, initialize=True), {}),
    "CapsuleMask": (nn.CapsuleMask, dict(), {}),
    "CapsNetDecoder": (nn.CapsNetDecoder, dict(num_capsules=2, capsule_dim=2,
                                               image_shape=(1, 4, 4), hidden=(3, 3),
                                               dtype=np.float32, generator=0,
                                               initialize=True),
                       {"image_shape": [(1, 4), (0, 4, 4), "x"], "hidden": [(3,), (0, 3), 5]}),
    "CapsNet": (nn.CapsNet, dict(in_channels=1, image_size=(12, 12), num_classes=2,
                                 routing_iterations=1, decoder=False, conv_channels=4,
                                 kernel_size=3, primary_capsules=2, primary_dim=2,
                                 primary_stride=2, digit_dim=2, decoder_hidden=(3, 3),
                                 dtype=np.float32, generator=0, initialize=True),
                {"image_size": [(12,), (0, 12), "x"], "decoder_hidden": [(3,), (0, 3), 5]}),
    "SGD": (nn.SGD, dict(model=LIN, lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0,
                         nesterov=False), {"momentum": REAL}),
    # init
    "uniform_": (init.uniform_, dict(array=np.ones((2, 3)), a=0.0, b=1.0, generator=0),
                 {"b": [-1.0, "x"]}),
    "normal_": (init.normal_, dict(array=np.ones((2, 3)), mean=0.0, std=1.0, generator=0), {}),
    "constant_": (init.constant_, dict(array=np.ones((2, 3)), val=0.5), {}),
    "zeros_": (init.zeros_, dict(array=np.ones((2, 3))), {}),
    "ones_": (init.ones_, dict(array=np.ones((2, 3))), {}),
    "xavier_uniform_": (init.xavier_uniform_, dict(array=np.ones((2, 3)), gain=1.0,
                                                   generator=0),
                        {"array": [None, np.ones(3), np.ones((2, 3), int)]}),
    "xavier_normal_": (init.xavier_normal_, dict(array=np.ones((2, 3)), gain=1.0,
                                                 generator=0), {}),
    "kaiming_uniform_": (init.kaiming_uniform_,
                         dict(array=np.ones((2, 3)), a=0.1, mode="fan_in",
                              nonlinearity="leaky_relu", generator=0), {}),
    "kaiming_normal_": (init.kaiming_normal_,
                        dict(array=np.ones((2, 3)), a=0.1, mode="fan_out",
                             nonlinearity="leaky_relu", generator=0), {}),
    "calculate_gain": (init.calculate_gain, dict(nonlinearity="leaky_relu", param=0.2), {}),
    # models (built without initialisation: only their arguments are checked here)
    "alexnet": (models.alexnet, dict(num_classes=10, dropout=0.5, initialize=False,
                                     dtype=np.float32), {}),
    "vgg16": (models.vgg16, dict(num_classes=10, dropout=0.5, initialize=False,
                                 dtype=np.float32), {}),
    "resnet18": (models.resnet18, dict(num_classes=10, generator=0, initialize=True,
                                       dtype=np.float32), {}),
    "resnet50": (models.resnet50, dict(num_classes=10, initialize=False, dtype=np.float32), {}),
    "mobilenet_v2": (models.mobilenet_v2, dict(num_classes=10, width_mult=0.5, dropout=0.2,
                                               initialize=False, dtype=np.float32), {}),
    "resnet50_trunk": (models.resnet50_trunk, dict(initialize=False, dtype=np.float32), {}),
    "unet": (models.unet, dict(in_channels=1, num_classes=2, base=4, depth=1, generator=0,
                               initialize=True, dtype=np.float32),
             {"depth": [-1, 1.5, 40]}),
    "capsnet": (models.capsnet, dict(input_shape=(1, 28, 28), num_classes=10,
                                     initialize=False),
                {"input_shape": [(1, 28), "abc", (1, 0, 28)]}),
    "get_model": (models.get_model, dict(name="resnet18"), {}),
    "model_key": (models.model_key, dict(name="resnet18"), {}),
    # analysis
    "count": (accounting.count, dict(model=NET, input_shape=(1, 8, 8), batch=1, flops=False,
                                     bias=False, transposed="input"),
              {"input_shape": ["3x", "abc", (1,), (0, 8, 8), None], "bias": FLAG}),
    "receptive_field": (fc.receptive_field, dict(model=NET, input_shape=(1, 8, 8)),
                        {"input_shape": ["3x", (1,), (0, 8, 8)]}),
    "summary": (fc.summary, dict(model=NET, input_shape="1x8x8", batch=2, flops=True,
                                 bias=True, transposed="dense"),
                {"input_shape": ["3x", (1,), (0, 8, 8)]}),
    "effective_receptive_field": (fc.effective_receptive_field,
                                  dict(model=LINEAR_NET, input_shape=(1, 8, 8), position=(4, 4),
                                       channel=0, samples=1, generator=0,
                                       backend="reference"),
                                  {"input_shape": ["3x", (1, 8), (0, 8, 8)],
                                   "backend": ["gpu", 3]}),
    "build": (erf.build, dict(spec="plain:2", channels=2, in_channels=1, generator=0,
                              dtype=np.float64), {"in_channels": [0, 1.5]}),
    "conv2d_macs": (accounting.conv2d_macs, dict(input_shape=X.shape, weight_shape=W.shape,
                                                 groups=1, **CONV),
                    {"input_shape": [(1, 2), (1, 2, 5, 5, 5)]}),
    "conv_transpose2d_macs": (accounting.conv_transpose2d_macs,
                              dict(input_shape=XT.shape, weight_shape=WT.shape, dense=True,
                                   **TRANSPOSED),
                              {"weight_shape": [(2, 3), (2, 3, 0, 3)]}),
    "linear_macs": (accounting.linear_macs, dict(input_shape=(2, 4), weight_shape=(3, 4)),
                    {"input_shape": [(2, 5), ()], "weight_shape": [(3,), (3, 5)]}),
    "pool2d_reads": (accounting.pool2d_reads, dict(input_shape=XP.shape, **MAXPOOL),
                     {"padding": [-1, 1.5, 2]}),
    "adaptive_pool2d_reads": (accounting.adaptive_pool2d_reads,
                              dict(input_shape=XP.shape, output_size=3), {}),
}

#: where the parameter is a layer's bias flag, not an array
FLAG_BIAS = {"Conv2d", "Conv1d", "ConvTranspose2d", "DepthwiseSeparableConv2d", "Linear",
             "count", "summary"}
#: parameters whose change only matters with others (not broken one at a time)
SKIP = {"name": {"summary"}, "input": {"effective_receptive_field"}}


def _bad(fname: str, param: str):
    overrides = SPECS[fname][2]
    if param in overrides:
        return overrides[param]
    if param == "bias" and fname in FLAG_BIAS:
        return BAD["bias_flag"]
    return BAD[param]


def _message(fn, kwargs):
    """The message of the error ``fn(**kwargs)`` raises (ValueError or TypeError)."""
    try:
        fn(**kwargs)
    except (ValueError, TypeError) as exc:
        return str(exc)
    raise AssertionError(f"no error for {kwargs}")


def _cases(fname):
    """(parameter, bad value) for every parameter of the valid call."""
    for param in SPECS[fname][1]:
        if fname in SKIP.get(param, ()):
            continue
        for value in _bad(fname, param):
            yield param, value


def _short(v):
    return type(v).__name__ if isinstance(v, np.ndarray) else repr(v)


def _check(fname, params, kwargs, failures):
    msg = _message(SPECS[fname][0], kwargs)
    start = f"{fname}: "
    if not msg.startswith(start):
        failures.append(f"{params}: does not start with {start!r}: {msg}")
    elif msg.startswith(start * 2):
        failures.append(f"{params}: the name twice: {msg}")
    elif not any(p in msg[len(start):] for p in params):
        failures.append(f"{params}: does not name the parameter: {msg}")


@pytest.mark.parametrize("fname", sorted(SPECS))
def test_each_parameter(fname):
    fn, valid, _ = SPECS[fname]
    failures = []
    for param, value in _cases(fname):
        kwargs = dict(valid, **{param: value})
        try:
            _check(fname, [param], kwargs, failures)
        except AssertionError as exc:
            failures.append(f"{param}={_short(value)}: {exc}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("seed", range(4))
def test_random_pairs(seed):
    # two parameters broken at once: the message names the function and one of them
    rng = np.random.default_rng(seed)
    failures = []
    names = sorted(SPECS)
    for _ in range(150):
        fname = names[rng.integers(len(names))]
        params = sorted({p for p, _ in _cases(fname)})
        if len(params) < 2:
            continue
        chosen = [str(p) for p in rng.choice(params, 2, replace=False)]
        kwargs = dict(SPECS[fname][1])
        for p in chosen:
            values = _bad(fname, p)
            kwargs[p] = values[rng.integers(len(values))]
        if set(chosen) <= SHAPES and _valid(SPECS[fname][0], kwargs):
            continue  # two shapes broken alike can agree again: (2, 5) with (3, 5)
        _check(fname, chosen, kwargs, failures)
    assert not failures, "\n".join(failures)


#: parameters that are shapes of one another: breaking two can make a valid call
SHAPES = {"input_shape", "weight_shape", "depthwise_weight_shape", "pointwise_weight_shape"}


def _valid(fn, kwargs):
    try:
        fn(**kwargs)
    except (ValueError, TypeError):
        return False
    return True


CHEAP = [n for n in SPECS if n not in {"set_num_threads", "vgg16", "alexnet", "resnet50",
                                       "resnet50_trunk", "resnet18", "mobilenet_v2", "capsnet",
                                       "get_model"}]


@pytest.mark.parametrize("fname", CHEAP)
def test_valid_calls_are_valid(fname):
    # the calls the tests break are valid, so each error comes from the broken parameter
    fn, valid, _ = SPECS[fname]
    fn(**valid)


def test_every_public_name_has_a_spec():
    public = [n for n in fc.__all__ if inspect.isfunction(getattr(fc, n))]
    public += list(G.__all__) + list(init.__all__)
    public += [n for n in nn.__all__ if n not in ("Module", "Tracer", "IncompatibleKeys")]
    public += [n for n in models.__all__ if callable(getattr(models, n))
               and not isinstance(getattr(models, n), dict)]
    skip = {"available_backends", "cpu_info", "get_num_threads", "buffer_pool_info"}  # no args
    missing = sorted(set(public) - set(SPECS) - skip)
    assert not missing


#: parameters left out of the valid calls, and why
UNTESTED = {
    "conv2d": {"variant"},  # test_variant (it depends on the backend)
    "conv1d": {"variant"},
    "effective_receptive_field": {"input"},  # replaces input_shape's random inputs
    "summary": {"name"},  # a title, any string
    "Residual": {"shortcut_name", "activation_name"},  # names of children not given here
    # generator is checked only when the model is initialised (resnet18 and unet test it)
    **{m: {"generator"} for m in ("alexnet", "vgg16", "resnet50", "mobilenet_v2",
                                  "resnet50_trunk", "capsnet")},
    "get_model": {"kwargs"},
}
#: capsnet's capsule sizes are checked by fastconv.nn.capsule.CapsNet (with its own name)
UNTESTED["capsnet"] |= {"routing_iterations", "decoder", "conv_channels", "primary_capsules",
                        "primary_dim", "digit_dim", "dtype"}


def test_every_parameter_is_broken():
    # the valid calls name every parameter of their function, so none goes untested
    for fname, (fn, valid, _) in SPECS.items():
        params = [p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        missing = [p for p in params if p not in valid and p not in UNTESTED.get(fname, ())]
        assert not missing, f"{fname}: {missing}"


def test_containers_name_items():
    with pytest.raises(TypeError, match=r"^Sequential: item '0' must be a fastconv\.nn\.Module"):
        nn.Sequential(3)
    with pytest.raises(TypeError, match=r"^Concat: branch '1' must be a fastconv\.nn\.Module"):
        nn.Concat(nn.ReLU(), 3)
    with pytest.raises(ValueError, match=r"^Concat: branches: needs at least one"):
        nn.Concat()
    with pytest.raises(TypeError, match=r"^Sequential\.append: module '0' must be a fastconv"):
        nn.Sequential().append(3)


def test_variant():
    backend = next((b for b in ("c", "numba") if fc.available_backends()[b] == "available"),
                   None)
    if backend is None:
        pytest.skip("no backend declares conv2d variants here")
    with pytest.raises(ValueError, match=r"^conv2d: variant must be one of"):
        fc.conv2d(X, W, variant="v9", backend=backend)


def test_layer_calls_keep_the_function_name():
    # a layer's own checks name the layer; what the op it runs rejects names the op
    conv = nn.Conv2d(2, 4, 3)
    with pytest.raises(ValueError, match=r"^conv2d: input has 3 channels"):
        conv(np.ones((1, 3, 5, 5), np.float32))
    with pytest.raises(TypeError, match=r"^Conv2d: input has dtype complex"):
        conv(np.ones((1, 2, 5, 5), complex))
    with pytest.raises(ValueError, match=r"^max_pool2d: output size"):
        nn.MaxPool2d(7)(np.ones((1, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"^MaxPool2d: output size"):
        nn.MaxPool2d(7).output_shape((1, 1, 4, 4))


def test_methods_name_the_class_and_method():
    m = nn.Sequential(nn.ReLU())
    with pytest.raises(ValueError, match=r"^Sequential\.set_backend: backend must be one of"):
        m.set_backend("gpu")
    with pytest.raises(TypeError, match=r"^Sequential\.train: mode must be a bool"):
        m.train(1)
    with pytest.raises(TypeError, match=r"^Sequential\.load_state_dict: state_dict must be"):
        m.load_state_dict(3)
    with pytest.raises(ValueError, match=r"^Sequential\.add_module: module name"):
        m.add_module("a.b", nn.ReLU())


def test_no_double_prefix_from_the_memo():
    # a geometry computed once (memoised) and an invalid call after it: one prefix each time
    fc.conv2d(X, W, padding=1)
    for _ in range(2):
        with pytest.raises(ValueError) as info:
            fc.conv2d(X, W, padding=-1)
        msg = str(info.value)
        assert msg.startswith("conv2d: padding") and "conv2d: conv2d" not in msg
