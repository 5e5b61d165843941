"""Optimisers: step a model's parameters in place from the gradients backward left.

- SGD: stochastic gradient descent with torch.optim.SGD's momentum, dampening, weight decay
  and Nesterov rule
"""

from typing import Dict

import numpy as np

from .. import _shapes
from .module import Module, _nonneg


class SGD:
    """Stochastic gradient descent on a model's parameters, with ``torch.optim.SGD``'s rule.

    For every parameter p with a gradient g in its layer's ``grads``::

        d = g + weight_decay * p
        b = d (first step), else momentum * b + (1 - dampening) * d    (if momentum)
        d = d + momentum * b if nesterov else b                        (if momentum)
        p -= lr * d                                                     (in place)

    The parameter arrays are updated in place, so ``model.state_dict()`` sees the new values.
    Momentum buffers are kept per state_dict key.

    Parameters
    ----------
    model : fastconv.nn.Module
        Whose parameters to update (gradients from ``model.backward``).
    lr : float
        The learning rate, a finite number >= 0.
    momentum, dampening, weight_decay : float, default 0
        Finite numbers >= 0.
    nesterov : bool, default False
        Nesterov momentum (needs momentum > 0 and dampening 0).

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv import nn
    >>> lin = nn.Linear(2, 1, dtype=np.float64, generator=0).retain_inputs()
    >>> opt = nn.SGD(lin, lr=0.1)
    >>> before = lin.weight.copy()
    >>> _ = lin(np.ones((1, 2)))
    >>> _ = lin.backward(np.ones((1, 1)))  # dL/dw = 1 for both weights
    >>> opt.step()
    >>> bool(np.allclose(lin.weight, before - 0.1))
    True
    """

    def __init__(
        self,
        model: Module,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        name = type(self).__name__
        if not isinstance(model, Module):
            raise TypeError(
                f"{name}: model must be a fastconv.nn.Module, got {type(model).__name__}"
            )
        self.model = model
        self.lr = _nonneg(lr, "lr", name)
        self.momentum = _nonneg(momentum, "momentum", name)
        self.dampening = _nonneg(dampening, "dampening", name)
        self.weight_decay = _nonneg(weight_decay, "weight_decay", name)
        self.nesterov = _shapes.as_bool(nesterov, "nesterov", op=name)
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError(f"{name}: nesterov needs a momentum > 0 and dampening = 0")
        self.state: Dict[str, np.ndarray] = {}

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        params = dict(self.model.named_parameters())
        for key, g in self.model.named_grads():
            p = params[key]
            d = g + self.weight_decay * p if self.weight_decay else g
            if self.momentum:
                buf = self.state.get(key)
                if buf is None:
                    buf = np.array(d, dtype=p.dtype, copy=True)
                else:
                    buf = self.momentum * buf + (1 - self.dampening) * d
                self.state[key] = buf
                d = d + self.momentum * buf if self.nesterov else buf
            p -= (self.lr * d).astype(p.dtype, copy=False)

    def zero_grad(self) -> None:
        """The model's :meth:`Module.zero_grad`."""
        self.model.zero_grad()
