"""Layers on NumPy arrays, with torch.nn's class names, constructor arguments and state_dict keys.

Parameters and buffers are plain NumPy arrays held in attributes with torch's names (``weight``,
``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``); children are attributes
too, so ``model.layer1[0].conv1.weight`` and the state_dict key ``layer1.0.conv1.weight`` name
the same array. Weights exported from torch (``{k: v.numpy() for k, v in sd.items()}``, saved
with ``numpy.savez``) load unchanged with :meth:`Module.load_state_dict`.

Modes: layers are built in inference mode (``training`` False, unlike torch, where a new
module trains): BatchNorm2d uses its running statistics, Dropout is the identity.
:meth:`Module.train` switches a tree to torch's training behaviour (BatchNorm2d normalises
with the batch's statistics and updates its running statistics with ``momentum``; Dropout
zeroes elements with probability ``p`` and scales the rest by 1/(1-p)); :meth:`Module.eval`
switches back. Convolutions and pooling go through fastconv's ops with the layer's
``backend`` attribute ("auto" by default; :meth:`Module.set_backend` sets a whole tree).
Every layer takes real inputs (floating, integer or bool); complex, object and string
arrays raise TypeError, as fastconv's functions do.

Modules (every public name is re-exported here: ``from fastconv.nn import Conv2d``):

- module: Module (the base class), Tracer (shape-propagation hooks), IncompatibleKeys
- conv: Conv1d, Conv2d, ConvTranspose2d, DepthwiseSeparableConv2d
- pooling: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, AdaptiveMaxPool2d
- layers: BatchNorm2d, ReLU, ReLU6, Dropout, Identity, Flatten, Linear
- container: Sequential, Residual (add, optional projection), Concat (channel concat)
- optim: SGD
- capsule: PrimaryCaps, CapsuleLayer, CapsuleMask, CapsNetDecoder, CapsNet (fastconv.capsule)
- init: parameter initialisation, with torch.nn.init's names (``fastconv.nn.init``)

Backward: :meth:`Module.retain_inputs` makes every layer keep what its backward needs
(its input; max pooling also its argmax indices; Concat its branch channel counts) on each
forward call; ``layer.cache`` shows the latest call's record (None when not retaining).
``model.backward(grad_output)`` then returns dL/d(input) for dL/d(output) = grad_output
and adds each parameter's gradient into ``layer.grads[name]`` (``name`` as in the
state_dict: "weight", "bias"; ``model.named_grads()`` gives the qualified keys). Gradients
accumulate over backward calls until :meth:`Module.zero_grad`, as in torch. Convolutions
and pools differentiate with :mod:`fastconv.grad` on the layer's backend. Every forward call
can be back-propagated once (its records are consumed, latest first, so a module used
several times in one forward pass, like a shared ReLU, is handled); backward without a
retained forward raises RuntimeError; :meth:`Module.discard_retained` forgets the calls
that will not be back-propagated. :class:`SGD` steps the parameters in place.

Inference fusion: in inference mode a Conv2d followed by BatchNorm2d (and ReLU / ReLU6) runs
as one :func:`fastconv.fused.conv2d` call, the batch norm as a per-channel scale and shift in
the convolution's epilogue; a Residual block whose body ends in Conv2d -> BatchNorm2d also
fuses the shortcut's add and its activation. Results equal the module-by-module forward up to
float32 rounding. Not in training mode, nor while inputs are retained for backward;
:func:`set_fusion` (False) turns it off.

Shape propagation without computing (used by accounting, receptive fields and summaries):
every layer has ``output_shape(input_shape)``, sized by ``fastconv._shapes``, and ``_trace``
walks the tree calling a tracer's ``leaf`` and ``merge`` hooks (see :class:`Tracer`).

>>> import numpy as np
>>> from fastconv import nn
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
>>> net(np.ones((1, 3, 8, 8), np.float32)).shape
(1, 8, 4, 4)
>>> sorted(net.state_dict())
['0.bias', '0.weight']
"""

from . import init as init
from ._fusion import set_fusion
from .capsule import CapsNet, CapsNetDecoder, CapsuleLayer, CapsuleMask, PrimaryCaps
from .container import Concat, Residual, Sequential
from .conv import Conv1d, Conv2d, ConvTranspose2d, DepthwiseSeparableConv2d
from .layers import BatchNorm2d, Dropout, Flatten, Identity, Linear, ReLU, ReLU6
from .module import IncompatibleKeys, Module, Tracer
from .optim import SGD
from .pooling import AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, MaxPool2d

__all__ = [
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AvgPool2d",
    "BatchNorm2d",
    "CapsNet",
    "CapsNetDecoder",
    "CapsuleLayer",
    "CapsuleMask",
    "Concat",
    "Conv1d",
    "Conv2d",
    "ConvTranspose2d",
    "DepthwiseSeparableConv2d",
    "Dropout",
    "Flatten",
    "Identity",
    "IncompatibleKeys",
    "Linear",
    "MaxPool2d",
    "Module",
    "PrimaryCaps",
    "ReLU",
    "ReLU6",
    "Residual",
    "SGD",
    "Sequential",
    "Tracer",
    "set_fusion",
]
