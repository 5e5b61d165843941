"""Parameter and operation counts of :mod:`fastconv.nn` models, per layer and in total.

Conventions (docs/accounting.md compares them with other counters):

- A MAC is one multiply-accumulate of a convolution or linear layer; FLOPs = 2 per MAC
  (one multiply, one add). ``count(..., flops=True)`` reports FLOPs. Both are always
  available on every record (``.macs``, ``.flops``); ``unit`` only picks which one the
  table and ``.total`` show.
- Bias: not counted by default. With ``bias=True`` each bias add counts 1 (as a MAC in MAC
  units, as 1 FLOP in FLOP units).
- Convolution: N * OC * OH * OW * (C/G) * KH * KW (output-based; every product, including
  those with zero padding, as dense kernels compute them).
- Transposed convolution: input-based, N * C * H * W * (OC/G) * KH * KW: every input element
  is scattered through the whole kernel (what col2im-style kernels compute).
  ``transposed="dense"`` counts it as a convolution over the zero-inserted input,
  N * OC * OH * OW * (C/G) * KH * KW.
- Linear: (elements of the input / in_features) * in_features * out_features.
- "Other ops", a separate column never added to MACs: BatchNorm (inference, folded to
  scale + shift) 2 per element; ReLU / ReLU6 1 per element; pooling one op per input element
  read, windows counted exactly at the borders (padding and ceil_mode windows clipped to the
  input, dilation honoured; adaptive bins as fastconv computes them); Residual add 1 per
  output element; Concat, Flatten, Dropout, Identity 0.
- Backward: for a convolution / linear layer, the input gradient and the weight gradient
  each take as many MACs as the forward pass (the same products, transposed); with
  ``bias=True`` the bias gradient adds one add per output element to the weight side.
  The first layer's input gradient is listed too (skip it if the input needs no gradient).
- Layers with a ``count_ops(input_shape)`` method count themselves ({"products": MACs,
  "other_ops": ...}): the capsule layers (fastconv.nn.capsule; docs/capsules.md: the
  prediction vectors and the routing iterations are MACs).
- Parameters are what torch counts (weights and biases, BatchNorm's weight and bias); BN
  running statistics are buffers, not parameters. A module used several times is counted once.

>>> from fastconv import models, accounting
>>> acc = accounting.count(models.resnet18(initialize=False), (3, 224, 224))
>>> acc.params, round(acc.macs / 1e9, 3)
(11689512, 1.814)
"""

import re
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .. import _shapes, nn

__all__ = [
    "Accounting",
    "LayerCount",
    "adaptive_pool2d_reads",
    "conv2d_macs",
    "conv_transpose2d_macs",
    "count",
    "linear_macs",
    "parse_input_shape",
    "pool2d_reads",
]

Shape = Tuple[int, ...]


# ---------------------------------------------------------------------------- shapes


def parse_input_shape(value: Any, name: str = "input_shape", *, op: str = "") -> Shape:
    """An input shape without the batch dimension, from a sequence or a string.

    Parameters
    ----------
    value : sequence of int or str
        Positive sizes, (C, H, W) or (C, L); or a string such as "3x224x224" (also
        "3,224,224").
    name : str, default "input_shape"
        What messages call the value (a command line passes its option, "--input").
    op : str, default ""
        The public function to name at the start of messages (none by default).

    Returns
    -------
    tuple of int
        (C, H, W) or (C, L).

    Examples
    --------
    >>> from fastconv import accounting
    >>> accounting.parse_input_shape("3x224x224"), accounting.parse_input_shape([3, 32])
    ((3, 224, 224), (3, 32))
    """
    at = f"{op}: " if op else ""
    if isinstance(value, str):
        parts = [p for p in re.split(r"[x,\s]+", value.strip().lower()) if p]
        if not parts or not all(re.fullmatch(r"[0-9]+", p, re.ASCII) for p in parts):
            raise ValueError(
                f"{at}{name} must look like 3x224x224 (channels x height x width, digits 0-9), "
                f"got {value!r}"
            )
        value = [int(p) for p in parts]
    if not isinstance(value, (Sequence, np.ndarray)) or isinstance(value, (bytes,)):
        raise TypeError(f"{at}{name} must be a sequence of ints or a string like 3x224x224, "
                        f"got {value!r}")
    shape = tuple(_shapes.as_int(v, name, minimum=1, op=op) for v in value)
    if len(shape) not in (2, 3):
        raise ValueError(
            f"{at}{name} must be (C, H, W) for 2-D models or (C, L) for 1-D ones, without the "
            f"batch dimension, got {shape}"
        )
    return shape


def check_model(model: Any, op: str) -> None:
    """TypeError unless ``model``, an argument of the public function ``op``, is a layer."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{op}: model must be a fastconv.nn.Module, got {type(model).__name__}")


def trace(op: str, model: nn.Module, tracer: nn.Tracer, shape: Shape, state: Any):
    """``model._trace(tracer, "", shape, state)`` for the public function ``op``: a layer
    that rejects the shapes reaching it raises with its path, after ``op``'s name."""
    try:
        return model._trace(tracer, "", shape, state)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{op}: {exc}") from None


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


# ---------------------------------------------------------------------------- op counts


def _conv_products(g: _shapes.ConvGeometry) -> int:
    return g.N * g.OC * g.OH * g.OW * (g.C // g.groups) * g.KH * g.KW


def _conv_transpose_products(g: _shapes.ConvGeometry, dense: bool) -> int:
    if dense:
        return g.N * g.OC * g.OH * g.OW * (g.C // g.groups) * g.KH * g.KW
    return g.N * g.C * g.H * g.W * (g.OC // g.groups) * g.KH * g.KW


def conv2d_macs(input_shape: Shape, weight_shape: Shape, stride: Any = 1, padding: Any = 0,
                dilation: Any = 1, groups: int = 1) -> int:
    """Multiply-accumulates of :func:`fastconv.conv2d` with these shapes.

    Parameters
    ----------
    input_shape : sequence of int, (N, C, H, W) or (C, H, W)
    weight_shape : sequence of 4 int, (OC, C/groups, KH, KW)
    stride, padding, dilation, groups : as :func:`fastconv.conv2d`'s

    Returns
    -------
    int
        N*OC*OH*OW*(C/G)*KH*KW, with OH = floor((H + pad_top + pad_bottom - dh*(KH-1) - 1) / sh)
        + 1 (likewise OW): every product, those with zero padding included.

    Examples
    --------
    >>> from fastconv import accounting
    >>> accounting.conv2d_macs((1, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3)
    118013952
    """
    op = "conv2d_macs"
    xs = _shapes.as_shape(input_shape, "input_shape", (3, 4), op=op)
    ws = _shapes.as_shape(weight_shape, "weight_shape", (4,), op=op)
    g = _shapes.conv_geometry(op, xs, ws, None, stride, padding, dilation, groups, 2,
                              "input_shape", "weight_shape")
    return _conv_products(g)


def conv_transpose2d_macs(input_shape: Shape, weight_shape: Shape, stride: Any = 1,
                          padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                          dilation: Any = 1, *, dense: bool = False) -> int:
    """Multiply-accumulates of :func:`fastconv.conv_transpose2d` with these shapes.

    Parameters
    ----------
    input_shape : sequence of int, (N, C, H, W) or (C, H, W)
    weight_shape : sequence of 4 int, (C, OC/groups, KH, KW)
    stride, padding, output_padding, groups, dilation : as :func:`fastconv.conv_transpose2d`'s
    dense : bool, default False
        Count a convolution over the zero-inserted input instead.

    Returns
    -------
    int
        N*C*H*W*(OC/G)*KH*KW (input-based: every input element scattered through the kernel),
        or with ``dense`` N*OC*OH*OW*(C/G)*KH*KW, OH = (H-1)*sh - 2*ph + dh*(KH-1) +
        output_padding + 1.

    Examples
    --------
    >>> from fastconv import accounting
    >>> accounting.conv_transpose2d_macs((1, 4, 4, 4), (4, 2, 4, 4), stride=2, padding=1)
    2048
    >>> accounting.conv_transpose2d_macs((1, 4, 4, 4), (4, 2, 4, 4), 2, 1, dense=True)
    8192
    """
    op = "conv_transpose2d_macs"
    xs = _shapes.as_shape(input_shape, "input_shape", (3, 4), op=op)
    ws = _shapes.as_shape(weight_shape, "weight_shape", (4,), op=op)
    g = _shapes.conv_transpose_geometry(op, xs, ws, None, stride, padding, output_padding,
                                        groups, dilation, 2, "input_shape", "weight_shape")
    return _conv_transpose_products(g, _shapes.as_bool(dense, "dense", op=op))


def linear_macs(input_shape: Shape, weight_shape: Shape) -> int:
    """Multiply-accumulates of a linear layer.

    Parameters
    ----------
    input_shape : sequence of int, (..., in_features)
    weight_shape : sequence of 2 int, (out_features, in_features)

    Returns
    -------
    int
        (elements of the input / in_features) * in_features * out_features.

    Examples
    --------
    >>> from fastconv import accounting
    >>> accounting.linear_macs((2, 512), (1000, 512))
    1024000
    """
    op = "linear_macs"
    input_shape = _shapes.as_shape(input_shape, "input_shape", op=op)
    weight_shape = _shapes.as_shape(weight_shape, "weight_shape", (2,), op=op)
    if input_shape[-1] != weight_shape[1]:
        raise ValueError(
            f"linear_macs: input_shape's last dimension must equal weight_shape[1]; got "
            f"input_shape {input_shape}, weight_shape {weight_shape}"
        )
    return _numel(input_shape[:-1]) * weight_shape[1] * weight_shape[0]


def _axis_reads(size: int, out: int, k: int, s: int, p: int, d: int) -> int:
    """Input positions read along one axis, summed over the ``out`` windows (clipped)."""
    starts = np.arange(out, dtype=np.int64)[:, None] * s - p
    pos = starts + np.arange(k, dtype=np.int64)[None, :] * d
    return int(((pos >= 0) & (pos < size)).sum())


def _pool_reads(g: _shapes.PoolGeometry) -> int:
    rh = _axis_reads(g.H, g.OH, g.KH, g.sh, g.ph, g.dh)
    rw = _axis_reads(g.W, g.OW, g.KW, g.sw, g.pw, g.dw)
    return g.N * g.C * rh * rw


def _adaptive_reads(g: _shapes.PoolGeometry) -> int:
    rh = sum(e - b for b, e in _shapes.adaptive_bins(g.H, g.OH))
    rw = sum(e - b for b, e in _shapes.adaptive_bins(g.W, g.OW))
    return g.N * g.C * rh * rw


def pool2d_reads(input_shape: Shape, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 dilation: Any = 1, ceil_mode: bool = False) -> int:
    """Input elements read by a max or average pooling.

    Parameters
    ----------
    input_shape : sequence of int, (N, C, H, W) or (C, H, W)
    kernel_size, stride, padding, dilation, ceil_mode : as :func:`fastconv.max_pool2d`'s

    Returns
    -------
    int
        Summed over the OH x OW windows, OH = floor_or_ceil((H + 2*ph - dh*(KH-1) - 1) / sh) + 1,
        each clipped to the input (padding and ceil-mode windows read fewer).

    Examples
    --------
    >>> from fastconv import accounting
    >>> accounting.pool2d_reads((1, 1, 5, 5), 2, ceil_mode=True)  # 3x3 windows: 2+2+1 per axis
    25
    """
    op = "pool2d_reads"
    xs = _shapes.as_shape(input_shape, "input_shape", (3, 4), op=op)
    g = _shapes.pool_geometry(op, xs, kernel_size, stride, padding, dilation, ceil_mode, 2,
                              "input_shape")
    return _pool_reads(g)


def adaptive_pool2d_reads(input_shape: Shape, output_size: Any) -> int:
    """Input elements read by an adaptive pooling.

    Parameters
    ----------
    input_shape : sequence of int, (N, C, H, W) or (C, H, W)
    output_size : int or (int or None, int or None)
        As :func:`fastconv.adaptive_avg_pool2d`'s.

    Returns
    -------
    int
        Summed over the bins (overlapping bins read an element twice).

    Examples
    --------
    >>> from fastconv import accounting
    >>> accounting.adaptive_pool2d_reads((1, 1, 5, 5), 3)  # bins [0,2) [1,4) [3,5) per axis: 7
    49
    """
    op = "adaptive_pool2d_reads"
    xs = _shapes.as_shape(input_shape, "input_shape", (3, 4), op=op)
    g = _shapes.adaptive_geometry(op, xs, output_size, 2, "input_shape")
    return _adaptive_reads(g)


# ---------------------------------------------------------------------------- records


@dataclass
class LayerCount:
    """Counts of one layer (or of a Residual's add, a Concat) for one forward pass.

    Parameters
    ----------
    name, kind : str
        The layer's qualified name ("layer1.0.conv1") and class name (or "add", "concat").
    input_shape, output_shape : tuple of int
        Batch included.
    params : int
        Parameters of the layer itself.
    products : int
        Multiply-accumulates of a convolution or linear layer, bias excluded.
    bias_adds : int
        One per output element of a layer with a bias.
    other_ops : int
        BN, activations, pooling reads, residual adds (see the module docstring).
    count_bias : bool
        Whether ``macs`` and ``flops`` include the bias adds.

    ``macs``, ``flops`` (2 per product), ``backward_input_macs``, ``backward_weight_macs``,
    ``backward_macs`` and ``backward_flops`` are computed from these.

    Examples
    --------
    >>> from fastconv import nn, accounting
    >>> layer = accounting.count(nn.Conv2d(3, 8, 3, padding=1), (3, 8, 8)).layers[0]
    >>> layer.params, layer.macs, layer.flops, layer.backward_macs
    (224, 13824, 27648, 27648)
    """

    name: str
    kind: str
    input_shape: Shape
    output_shape: Shape
    params: int = 0
    products: int = 0  #: multiply-accumulates of conv / linear (bias excluded)
    bias_adds: int = 0  #: one per output element of a layer with a bias
    other_ops: int = 0  #: BN, activations, pooling, residual adds (see module docstring)
    count_bias: bool = False

    @property
    def macs(self) -> int:
        return self.products + (self.bias_adds if self.count_bias else 0)

    @property
    def flops(self) -> int:
        return 2 * self.products + (self.bias_adds if self.count_bias else 0)

    @property
    def backward_input_macs(self) -> int:
        return self.products

    @property
    def backward_weight_macs(self) -> int:
        return self.products + (self.bias_adds if self.count_bias else 0)

    @property
    def backward_macs(self) -> int:
        return self.backward_input_macs + self.backward_weight_macs

    @property
    def backward_flops(self) -> int:
        return 4 * self.products + (self.bias_adds if self.count_bias else 0)


@dataclass
class Accounting:
    """The result of :func:`count`: one :class:`LayerCount` per layer, and totals.

    Parameters
    ----------
    layers : list of LayerCount
    params : int
        The model's parameters (a module used several times counts once).
    input_shape, output_shape : tuple of int
        Without and with the batch.
    unit : {"MACs", "FLOPs"}
        What ``total`` and the table show.
    count_bias : bool
    transposed : {"input", "dense"}
        How transposed convolutions were counted.
    extra : dict
        Room for what a caller adds.

    ``macs``, ``flops``, ``total`` (in ``unit``), ``other_ops``, ``backward_input_macs``,
    ``backward_weight_macs``, ``backward_macs`` and ``backward_total`` sum the layers'; str()
    is a table.

    Examples
    --------
    >>> from fastconv import nn, accounting
    >>> m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    >>> acc = accounting.count(m, (3, 8, 8))
    >>> acc.params, acc.macs, acc.other_ops, acc.output_shape
    (224, 13824, 1024, (1, 8, 4, 4))
    >>> print(str(acc).splitlines()[0])
    layer  kind       output   params    MACs  other ops  backward MACs
    """

    layers: List[LayerCount]
    params: int
    input_shape: Shape
    output_shape: Shape
    unit: str = "MACs"
    count_bias: bool = False
    transposed: str = "input"
    extra: dict = field(default_factory=dict)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def flops(self) -> int:
        return sum(layer.flops for layer in self.layers)

    @property
    def total(self) -> int:
        """Forward total in ``unit``."""
        return self.flops if self.unit == "FLOPs" else self.macs

    @property
    def other_ops(self) -> int:
        return sum(layer.other_ops for layer in self.layers)

    @property
    def backward_input_macs(self) -> int:
        return sum(layer.backward_input_macs for layer in self.layers)

    @property
    def backward_weight_macs(self) -> int:
        return sum(layer.backward_weight_macs for layer in self.layers)

    @property
    def backward_macs(self) -> int:
        return self.backward_input_macs + self.backward_weight_macs

    @property
    def backward_total(self) -> int:
        if self.unit == "FLOPs":
            return sum(layer.backward_flops for layer in self.layers)
        return self.backward_macs

    def convention(self) -> str:
        return (f"{self.unit}; bias {'counted' if self.count_bias else 'not counted'}; "
                f"transposed conv {self.transposed}-based; other ops = BN, activations, "
                "pooling reads, residual adds")

    def __str__(self) -> str:
        fwd = "flops" if self.unit == "FLOPs" else "macs"
        bwd = "backward_flops" if self.unit == "FLOPs" else "backward_macs"
        rows = [(layer.name, layer.kind, "x".join(map(str, layer.output_shape)),
                 f"{layer.params:,}", f"{getattr(layer, fwd):,}", f"{layer.other_ops:,}",
                 f"{getattr(layer, bwd):,}") for layer in self.layers]
        head = ("layer", "kind", "output", "params", self.unit, "other ops",
                f"backward {self.unit}")
        total = ("total", "", "x".join(map(str, self.output_shape)), f"{self.params:,}",
                 f"{self.total:,}", f"{self.other_ops:,}", f"{self.backward_total:,}")
        return format_table(head, rows, total,
                            f"input {'x'.join(map(str, self.input_shape))}; {self.convention()}; "
                            f"{self.total / 1e9:.3f} G{self.unit[:-1]}s forward")


def format_table(head: Sequence[str], rows: Sequence[Sequence[str]],
                 total: Optional[Sequence[str]],
                 note: str = "") -> str:
    """A plain-text table: text columns left-aligned, number columns right-aligned."""
    cols = list(zip(*([head] + list(rows) + ([total] if total else []))))
    widths = [max(len(str(c)) for c in col) for col in cols]
    # the first two columns (name, kind) are text; a later one is numeric if every cell is
    numeric = [i >= 2 and all(re.fullmatch(r"[-\d,.() /]*", str(c)) for c in col[1:])
               for i, col in enumerate(cols)]

    def fmt(row):
        return "  ".join(str(c).rjust(w) if num else str(c).ljust(w)
                         for c, w, num in zip(row, widths, numeric)).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    lines = [fmt(head), rule] + [fmt(r) for r in rows]
    if total:
        lines += [rule, fmt(total)]
    if note:
        lines.append(note)
    return "\n".join(lines)


class _CountTracer(nn.Tracer):
    def __init__(self, count_bias: bool, dense: bool):
        self.count_bias = count_bias
        self.dense = dense
        self.records: List[LayerCount] = []
        self.seen: set = set()

    def _params(self, module: nn.Module) -> int:
        total = 0
        for n in module._param_names:  # a layer's own parameters, not its children's
            a = getattr(module, n)
            if a is not None and id(a) not in self.seen:
                self.seen.add(id(a))
                total += int(a.size)
        return total

    def leaf(self, name, module, in_shape, out_shape, state):
        rec = LayerCount(name, type(module).__name__, in_shape, out_shape,
                         params=self._params(module), count_bias=self.count_bias)
        n_out = _numel(out_shape)
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            rec.products = _conv_products(module.geometry(in_shape))
            rec.bias_adds = n_out if module.bias is not None else 0
        elif isinstance(module, nn.ConvTranspose2d):
            rec.products = _conv_transpose_products(module.geometry(in_shape), self.dense)
            rec.bias_adds = n_out if module.bias is not None else 0
        elif isinstance(module, nn.Linear):
            rec.products = linear_macs(in_shape, module.weight.shape)
            rec.bias_adds = n_out if module.bias is not None else 0
        elif isinstance(module, nn.BatchNorm2d):
            rec.other_ops = 2 * n_out
        elif isinstance(module, (nn.ReLU, nn.ReLU6)):
            rec.other_ops = n_out
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            rec.other_ops = _pool_reads(module.geometry(in_shape))
        elif isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            rec.other_ops = _adaptive_reads(module.geometry(in_shape))
        elif hasattr(module, "count_ops"):  # a layer that counts itself (the capsule layers)
            ops = module.count_ops(in_shape)
            rec.products, rec.other_ops = ops.get("products", 0), ops.get("other_ops", 0)
        elif not isinstance(module, (nn.Flatten, nn.Dropout, nn.Identity)):
            raise TypeError(f"no counting rule for layer {name!r} of type "
                            f"{type(module).__name__}")
        self.records.append(rec)
        return state

    def merge(self, name, module, how, in_shapes, out_shape, states):
        rec = LayerCount(name or type(module).__name__, "add" if how == "add" else "concat",
                         in_shapes[0], out_shape, count_bias=self.count_bias)
        if how == "add":
            rec.other_ops = _numel(out_shape)
        self.records.append(rec)
        return states[0]


def count(model: nn.Module, input_shape: Any, *, batch: int = 1, flops: bool = False,
          bias: bool = False, transposed: str = "input") -> Accounting:
    """Count the parameters and operations of ``model`` for one input (module docstring).

    Parameters
    ----------
    model : fastconv.nn.Module
    input_shape : sequence of int or str
        (C, H, W) (or (C, L) for 1-D models), without the batch; or "3x224x224".
    batch : int, default 1
        N, the batch the counts are for.
    flops : bool, default False
        Report FLOPs (2 per MAC) instead of MACs in the table and ``.total``.
    bias : bool, default False
        Count bias adds (1 per output element of a layer with a bias).
    transposed : {"input", "dense"}, default "input"
        How to count transposed convolutions (see :func:`conv_transpose2d_macs`).

    Returns
    -------
    Accounting
        ``.layers`` (a LayerCount each), ``.params``, ``.macs``, ``.flops``, ``.other_ops``,
        ``.backward_input_macs``, ``.backward_weight_macs``; str() is a table.

    Examples
    --------
    >>> from fastconv import nn, accounting
    >>> m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    >>> acc = accounting.count(m, "3x8x8", batch=2)
    >>> acc.params, acc.macs, [layer.other_ops for layer in acc.layers]
    (240, 27648, [0, 2048, 1024])
    """
    return _count("count", model, input_shape, batch, flops, bias, transposed)


def _count(op: str, model: Any, input_shape: Any, batch: Any, flops: Any, bias: Any,
           transposed: Any) -> Accounting:
    """:func:`count` on behalf of the public function ``op`` (count, summary)."""
    check_model(model, op)
    shape = parse_input_shape(input_shape, op=op)
    n = _shapes.as_int(batch, "batch", minimum=1, op=op)
    flops = _shapes.as_bool(flops, "flops", op=op)
    bias = _shapes.as_bool(bias, "bias", op=op)
    if transposed not in ("input", "dense"):
        raise ValueError(f"{op}: transposed must be 'input' or 'dense', got {transposed!r}")
    tracer = _CountTracer(bias, transposed == "dense")
    out, _ = trace(op, model, tracer, (n,) + shape, None)
    return Accounting(tracer.records, model.num_parameters(), shape, tuple(out),
                      "FLOPs" if flops else "MACs", bias, transposed)
