"""Containers: modules that run other modules and hold them as named children.

- Sequential: runs its children in order
- Residual: activation(body(x) + shortcut(x)), the shortcut the identity or a projection
- Concat: runs branches on the same input and joins their outputs along channels
"""

from collections import OrderedDict
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _shapes
from . import _fusion
from .conv import _ConvNd
from .layers import BatchNorm2d
from .module import Module, Shape, Tracer, _join
from .pooling import AvgPool2d, MaxPool2d, _AdaptivePool2d


def _named_items(args: Sequence[Any], what: str, noun: str) -> List[Tuple[str, Module]]:
    """Sequential-style arguments: modules (named 0, 1, ...) or one OrderedDict/dict; a
    message names the constructor ``what`` and calls each argument a ``noun``."""
    if len(args) == 1 and isinstance(args[0], dict):
        items = list(args[0].items())
    else:
        items = [(str(i), m) for i, m in enumerate(args)]
    for n, m in items:
        if not isinstance(m, Module):
            raise TypeError(
                f"{what}: {noun} {n!r} must be a fastconv.nn.Module, got {type(m).__name__}"
            )
    return items


class Sequential(Module):
    """Runs its children in order, as ``torch.nn.Sequential``.

    Parameters
    ----------
    *args : Module, or one dict / OrderedDict of name -> Module
        The children, named "0", "1", ... (or by the dict's keys); each name is an attribute
        and the start of its state_dict keys.

    Calling it on x returns ``args[-1](...args[1](args[0](x)))``; indexing with an int, a
    slice or a name gives a child (a slice gives a Sequential).

    Examples
    --------
    >>> import numpy as np
    >>> from collections import OrderedDict
    >>> from fastconv import nn
    >>> net = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 3, padding=1), relu=nn.ReLU()))
    >>> net
    Sequential(
      (conv): Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
      (relu): ReLU()
    )
    >>> list(net.state_dict()), net[0] is net.conv, net(np.ones((1, 1, 4, 4))).shape
    (['conv.weight', 'conv.bias'], True, (1, 2, 4, 4))
    """

    def __init__(self, *args: Any):
        super().__init__()
        name = type(self).__name__
        for n, m in _named_items(args, name, "item"):
            self._add_child(n, m, name)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, idx: Union[int, slice, str]) -> Any:
        if isinstance(idx, str):
            return self._modules[idx]
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        return items[idx][1]

    def append(self, module: Module) -> "Sequential":
        """Add ``module`` as the last child (named ``str(len(self))``); returns self."""
        self._add_child(str(len(self)), module, f"{type(self).__name__}.append")
        return self

    def forward(self, x: Any) -> Any:
        # in inference mode Conv2d -> BatchNorm2d -> ReLU runs as one fused call (_fusion)
        return _fusion.run(list(self._modules.values()), x)

    def backward(self, grad_output: Any) -> Any:
        g = grad_output
        for m in reversed(list(self._modules.values())):
            g = m.backward(g)
        return g

    def output_shape(self, input_shape: Shape) -> Shape:
        for m in self._modules.values():
            input_shape = m.output_shape(input_shape)
        return tuple(input_shape)

    def _trace(self, tracer, name, shape, state):
        for n, m in self._modules.items():
            shape, state = m._trace(tracer, _join(name, n), shape, state)
        return shape, state


class Residual(Module):
    """out = activation(body(x) + shortcut(x)); the shortcut is the identity or a projection.

    Parameters
    ----------
    body : Module, dict / OrderedDict of name -> Module, or list of (name, Module)
        A Module becomes the child "body"; named steps become children under their own names,
        so a ResNet block is ``Residual([("conv1", c1), ("bn1", b1), ("relu", r),
        ("conv2", c2), ("bn2", b2)], shortcut=proj, activation=r)`` with keys
        ``conv1.weight``, ``downsample.0.weight``. A name may repeat only with the same module
        (one ReLU used several times, as torch blocks do).
    shortcut : Module, optional
        None (the default) is the identity; registered as ``shortcut_name``.
    activation : Module, optional
        Applied after the add; registered as ``activation_name`` (which may be a step's name
        if it is the same module).
    shortcut_name : str, default "downsample"
    activation_name : str, default "relu"

    The two paths' outputs must have the same shape (ValueError otherwise).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> nn.Residual(nn.Identity())(np.ones(3))  # x + x
    array([2., 2., 2.])
    >>> block = nn.Residual([("conv", nn.Conv2d(2, 2, 3, padding=1))], activation=nn.ReLU())
    >>> sorted(block.state_dict()), block.output_shape((1, 2, 8, 8))
    (['conv.bias', 'conv.weight'], (1, 2, 8, 8))
    """

    _shortcut: Optional[Module]
    _activation: Optional[Module]

    def __init__(
        self,
        body: Any,
        shortcut: Optional[Module] = None,
        activation: Optional[Module] = None,
        *,
        shortcut_name: str = "downsample",
        activation_name: str = "relu",
    ):
        super().__init__()
        if isinstance(body, Module):
            steps = [("body", body)]
        elif isinstance(body, dict):
            steps = list(body.items())
        elif isinstance(body, (list, tuple)):
            steps = [tuple(s) for s in body]
            if any(len(s) != 2 for s in steps):
                raise TypeError("Residual: body steps must be (name, module) pairs")
        else:
            raise TypeError(
                f"Residual: body must be a Module, a dict or a list of (name, module), got "
                f"{type(body).__name__}"
            )
        if not steps:
            raise ValueError("Residual: body must have at least one step")
        # set before the children, so that a child cannot take these attributes' names
        self.shortcut_name = shortcut_name
        self.activation_name = activation_name
        self._steps: List[Tuple[str, Module]] = []
        for n, m in steps:
            self._register_once(n, m, "body")
            self._steps.append((n, m))
        if shortcut is not None:
            self._register_once(shortcut_name, shortcut, "shortcut")
        if activation is not None:
            self._register_once(activation_name, activation, "activation")
        # plain attributes, not children: they are registered above under their own names
        object.__setattr__(self, "_shortcut", shortcut)
        object.__setattr__(self, "_activation", activation)

    def _register_once(self, name: str, module: Any, what: str) -> None:
        if not isinstance(module, Module):
            raise TypeError(
                f"Residual: {what} {name!r} must be a Module, got {type(module).__name__}"
            )
        if name in self._modules:
            if self._modules[name] is not module:
                raise ValueError(f"Residual: name {name!r} is used for two different modules")
            return
        self._add_child(name, module, "Residual")

    def forward(self, x: Any) -> np.ndarray:
        # inference: the last conv + batch norm, the add and the activation as one call
        steps = [m for _, m in _fusion.expand_tail(self._steps)]
        act = _fusion.residual_tail(steps, self._activation)
        if act is None:  # a body not ending in conv + batch norm: its own pairs still fuse
            y = _fusion.run(steps, x)
        else:
            y = _fusion.run(steps[:-2], x)
        s = x if self._shortcut is None else self._shortcut(x)
        if act is not None:
            out = _fusion.fused_tail(steps[-2], steps[-1], y, s, act)
            if out is not None:
                return out
            y = steps[-1](steps[-2](y))
        y, s = np.asarray(y), np.asarray(s)
        if y.shape != s.shape:
            raise ValueError(
                f"Residual: body output {y.shape} and shortcut output {s.shape} differ"
            )
        out = y + s
        return out if self._activation is None else self._activation(out)

    def backward(self, grad_output: Any) -> np.ndarray:
        # reverse order of the forward calls: activation, shortcut, body steps backwards
        g = grad_output if self._activation is None else self._activation.backward(grad_output)
        g_short = g if self._shortcut is None else self._shortcut.backward(g)
        g_body = g
        for _, m in reversed(self._steps):
            g_body = m.backward(g_body)
        return np.asarray(g_body) + np.asarray(g_short)

    def output_shape(self, input_shape: Shape) -> Shape:
        return self._trace(Tracer(), "", input_shape, None)[0]

    def _trace(self, tracer, name, shape, state):
        b_shape, b_state = shape, state
        for n, m in self._steps:
            b_shape, b_state = m._trace(tracer, _join(name, n), b_shape, b_state)
        if self._shortcut is None:
            s_shape, s_state = tuple(shape), state
        else:
            s_shape, s_state = self._shortcut._trace(
                tracer, _join(name, self.shortcut_name), shape, state
            )
        if tuple(b_shape) != tuple(s_shape):
            raise ValueError(
                f"{name or 'Residual'}: body output {tuple(b_shape)} and shortcut output "
                f"{tuple(s_shape)} differ"
            )
        out_state = tracer.merge(
            name, self, "add", [b_shape, s_shape], tuple(b_shape), [b_state, s_state]
        )
        if self._activation is not None:
            return self._activation._trace(
                tracer, _join(name, self.activation_name), b_shape, out_state
            )
        return tuple(b_shape), out_state


def _spatial_dims(module: Module) -> Optional[int]:
    """1 or 2: the number of spatial dimensions ``module`` works on; None if it has none."""
    if isinstance(module, _ConvNd):
        return module.nd
    if isinstance(module, (MaxPool2d, AvgPool2d, _AdaptivePool2d, BatchNorm2d)):
        return 2
    return None


class Concat(Module):
    """Runs each branch on the same input and concatenates the outputs along channels.

    Branch outputs must agree in every dimension but the channel one: dim 1 of a batched
    output ((N, C, H, W) or, for 1-D networks, (N, C, L)), dim 0 of an unbatched one
    ((C, H, W) or (C, L)); a 2-D output (N, F) of a 2-D network joins along dim 1.

    Parameters
    ----------
    *branches : Module, or one dict / OrderedDict of name -> Module
        Children "0", "1", ... (or the dict's names).
    spatial_dims : {1, 2}, optional
        Which networks' layout the outputs follow; by default read from the branches' layers
        (1 if they are 1-D, such as Conv1d, else 2). Pass it when the layers do not tell (only
        elementwise layers, or both 1-D and 2-D ones, as after ``Flatten(2)``).

    Examples
    --------
    >>> from fastconv import nn
    >>> inception = nn.Concat(nn.Conv2d(3, 4, 1), nn.Conv2d(3, 2, 3, padding=1))
    >>> inception.output_shape((1, 3, 8, 8))  # 4 + 2 channels
    (1, 6, 8, 8)
    """

    def __init__(self, *branches: Any, spatial_dims: Optional[int] = None):
        super().__init__()
        name = type(self).__name__
        if spatial_dims is not None:
            spatial_dims = _shapes.as_int(spatial_dims, "spatial_dims", minimum=1, op=name)
            if spatial_dims > 2:
                raise ValueError(f"{name}: spatial_dims must be 1 or 2, got {spatial_dims}")
        items = _named_items(branches, name, "branch")
        if not items:
            raise ValueError(f"{name}: branches: needs at least one branch")
        if spatial_dims is None:
            dims = {_spatial_dims(m) for _, b in items for _, m in b.named_modules()} - {None}
            # no layer tells: 2 (the rule for 2-D networks); both 1-D and 2-D layers: None, and
            # a 3-D output, (N, C, L) or (C, H, W), is an error
            spatial_dims = dims.pop() if len(dims) == 1 else None if dims else 2
        self.spatial_dims: Optional[int] = spatial_dims
        for n, m in items:
            self._add_child(n, m, name)

    def _axis(self, shape: Shape) -> int:
        """The channel dimension of a branch output of ``shape``."""
        n = len(shape)
        if self.spatial_dims == 1:
            if n not in (2, 3):
                raise ValueError(
                    f"Concat (spatial_dims=1): branch outputs must be (N, C, L) or (C, L), got "
                    f"shape {tuple(shape)}"
                )
            return n - 2
        if self.spatial_dims is None and n == 3:
            raise ValueError(
                f"Concat: cannot tell whether branch output shape {tuple(shape)} is (N, C, L) or "
                "(C, H, W): the branches hold both 1-D and 2-D layers; pass spatial_dims=1 or 2"
            )
        return 1 if n in (2, 4) else 0

    def _check(self, name: str, shapes: List[Shape]) -> Shape:
        first = tuple(shapes[0])
        ax = self._axis(first)
        for s in shapes[1:]:
            s = tuple(s)
            if len(s) != len(first) or s[:ax] + s[ax + 1 :] != first[:ax] + first[ax + 1 :]:
                raise ValueError(
                    f"{name or 'Concat'}: branch outputs {[tuple(x) for x in shapes]} differ "
                    "outside the channel dimension"
                )
        return first[:ax] + (sum(s[ax] for s in shapes),) + first[ax + 1 :]

    def forward(self, x: Any) -> np.ndarray:
        outs = [np.asarray(m(x)) for m in self._modules.values()]
        self._check("Concat", [o.shape for o in outs])
        ax = self._axis(outs[0].shape)
        y = np.concatenate(outs, axis=ax)
        self._remember(channels=[o.shape[ax] for o in outs], axis=ax, output_shape=y.shape)
        return y

    def backward(self, grad_output: Any) -> np.ndarray:
        rec = self._recall()
        channels, ax = rec["channels"], rec["axis"]  # split as the forward call joined
        gy = np.asarray(grad_output)
        if gy.shape != rec["output_shape"]:
            raise ValueError(
                f"Concat.backward: grad_output must have the forward output's shape "
                f"{rec['output_shape']} ({sum(channels)} channels along dim {ax}), got shape "
                f"{gy.shape}"
            )
        parts = np.split(gy, np.cumsum(channels)[:-1], axis=ax)
        grads = [
            np.asarray(m.backward(part))
            for m, part in reversed(list(zip(self._modules.values(), parts)))
        ]
        return sum(grads[1:], grads[0])

    def output_shape(self, input_shape: Shape) -> Shape:
        return self._trace(Tracer(), "", input_shape, None)[0]

    def _trace(self, tracer, name, shape, state):
        shapes, states = [], []
        for n, m in self._modules.items():
            s, st = m._trace(tracer, _join(name, n), shape, state)
            shapes.append(s)
            states.append(st)
        out = self._check(name, shapes)
        return out, tracer.merge(name, self, "concat", shapes, out, states)
