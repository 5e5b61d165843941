"""One table per model: shapes, parameters, MACs and receptive fields of every layer.

:func:`summary` runs :func:`fastconv.accounting.count` and
:func:`fastconv.receptive_field.receptive_field` on the same model and input and joins their
per-layer records (both walk the model in the same order).

>>> from fastconv import models, summary
>>> s = summary(models.resnet18(initialize=False), (3, 224, 224))
>>> s.params, s.macs, s.rf.size
(11689512, 1814073344, (435, 435))
>>> s.layers[0].name, s.layers[0].output_shape, s.layers[0].rf
('conv1', (1, 64, 112, 112), (7, 7))

``fastconv.summary`` is this function; the module is ``sys.modules["fastconv.summary"]``.
"""

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple

from .. import nn
from .accounting import Accounting, _count, format_table
from .receptive_field import Number, ReceptiveField, _receptive_field

__all__ = ["LayerSummary", "Summary", "summary"]


@dataclass
class LayerSummary:
    """One row of a :class:`Summary`: a layer's shape, counts and receptive field.

    Parameters
    ----------
    name, kind : str
        The layer's qualified name and class name.
    output_shape : tuple of int
        Batch included.
    params : int
    macs : int
        The forward count in the summary's unit (MACs or FLOPs).
    other_ops : int
    backward_macs : int
        The backward count in the summary's unit.
    rf, jump, start : (number, number) or None
        The receptive field per axis (None where the output is global).

    Examples
    --------
    >>> from fastconv import nn, summary
    >>> row = summary(nn.Conv2d(3, 8, 3, padding=1), (3, 32, 32)).layers[0]
    >>> row.kind, row.output_shape, row.params, row.macs, row.rf
    ('Conv2d', (1, 8, 32, 32), 224, 221184, (3, 3))
    """

    name: str
    kind: str
    output_shape: Tuple[int, ...]
    params: int
    macs: int
    other_ops: int
    backward_macs: int
    rf: Optional[Tuple[Number, Number]]
    jump: Optional[Tuple[Number, Number]]
    start: Optional[Tuple[Number, Number]]


class Summary:
    """The result of :func:`summary`: a :class:`LayerSummary` per layer, and totals.

    Parameters
    ----------
    name : str
        The model's name, shown in the table's title.
    acc : Accounting
        What :func:`fastconv.accounting.count` returned.
    rf : ReceptiveField
        What :func:`fastconv.receptive_field` returned for the same model and input.

    ``params``, ``macs`` (in ``unit``), ``unit``, ``accounting``, ``rf`` and ``layers``;
    ``to_dict()`` is the JSON form of ``fastconv summary --json``; str() is a table.

    Examples
    --------
    >>> from fastconv import nn, summary
    >>> m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    >>> summary(m, (3, 32, 32))
    Summary(params=224, macs=221184, rf=(4, 4), layers=3)
    >>> sorted(summary(m, (3, 32, 32)).to_dict())[:4]
    ['backward_input_macs', 'backward_weight_macs', 'convention', 'flops']
    """

    def __init__(self, name: str, acc: Accounting, rf: ReceptiveField):
        self.name = name
        self.accounting = acc
        self.rf = rf
        self.layers: List[LayerSummary] = []
        if len(acc.layers) != len(rf.layers):
            raise RuntimeError(f"summary: accounting has {len(acc.layers)} records and "
                               f"receptive_field {len(rf.layers)}; they should walk the same "
                               "layers")
        for a, r in zip(acc.layers, rf.layers):
            if a.name != r.name:
                raise RuntimeError(f"summary: accounting record {a.name!r} and receptive-field "
                                   f"record {r.name!r} should name the same layer")
            fwd = a.flops if acc.unit == "FLOPs" else a.macs
            bwd = a.backward_flops if acc.unit == "FLOPs" else a.backward_macs
            sp = r.spatial
            self.layers.append(LayerSummary(
                a.name, a.kind, a.output_shape, a.params, fwd, a.other_ops, bwd,
                r.size if sp else None, r.jump if sp else None, r.start if sp else None))

    @property
    def params(self) -> int:
        return self.accounting.params

    @property
    def macs(self) -> int:
        """Forward total in the summary's unit (MACs unless made with ``flops=True``)."""
        return self.accounting.total

    @property
    def unit(self) -> str:
        return self.accounting.unit

    def to_dict(self) -> Dict[str, Any]:
        """Plain data for JSON: totals, conventions, receptive field and every layer."""
        acc, rf = self.accounting, self.rf
        return {
            "model": self.name,
            "input_shape": list(acc.input_shape),
            "output_shape": list(acc.output_shape),
            "unit": acc.unit,
            "convention": acc.convention(),
            "params": acc.params,
            "total": acc.total,
            "macs": acc.macs,
            "flops": acc.flops,
            "other_ops": acc.other_ops,
            "backward_input_macs": acc.backward_input_macs,
            "backward_weight_macs": acc.backward_weight_macs,
            "receptive_field": None if rf.layer is None else {
                "layer": rf.layer.name, "size": list(rf.layer.size),
                "jump": list(rf.layer.jump), "start": list(rf.layer.start),
                "padding": list(rf.layer.padding)},
            "layers": [asdict(r) for r in self.layers],
        }

    def __str__(self) -> str:
        def pair(v):
            if v is None:
                return "global"
            return str(v[0]) if v[0] == v[1] else f"{v[0]}/{v[1]}"

        rows = [(r.name, r.kind, "x".join(map(str, r.output_shape)), f"{r.params:,}",
                 f"{r.macs:,}", pair(r.rf), "" if r.jump is None else pair(r.jump),
                 "" if r.start is None else pair(r.start)) for r in self.layers]
        acc = self.accounting
        total = ("total", "", "x".join(map(str, acc.output_shape)), f"{self.params:,}",
                 f"{self.macs:,}", pair(self.rf.size), pair(self.rf.jump) if self.rf.jump else "",
                 pair(self.rf.start) if self.rf.start else "")
        note = (f"{self.name + ': ' if self.name else ''}input "
                f"{'x'.join(map(str, acc.input_shape))}; {self.params:,} parameters "
                f"({self.params / 1e6:.2f} M); {self.macs / 1e9:.3f} G{acc.unit[:-1]}s "
                f"forward, {acc.backward_total / 1e9:.3f} G backward; other ops "
                f"{acc.other_ops:,}; {acc.convention()}")
        if self.rf.layer is not None:
            note += f"; receptive field {pair(self.rf.size)} at {self.rf.layer.name}"
        return format_table(("layer", "kind", "output", "params", acc.unit, "RF", "jump",
                             "start"), rows, total, note)

    def __repr__(self) -> str:
        return (f"Summary(params={self.params}, {self.unit.lower()}={self.macs}, "
                f"rf={self.rf.size}, layers={len(self.layers)})")


def summary(model: nn.Module, input_shape: Any, *, batch: int = 1, flops: bool = False,
            bias: bool = False, transposed: str = "input", name: str = "") -> Summary:
    """Per-layer table of ``model`` for an input of ``input_shape`` ((C, H, W), no batch, or
    "3x224x224"). Counting options as :func:`fastconv.accounting.count`.

    Parameters
    ----------
    model : fastconv.nn.Module
    input_shape : (C, H, W) (or (C, L) for 1-D models), without the batch; or "3x224x224"
    batch, flops, bias, transposed : counting options of :func:`fastconv.accounting.count`
    name : shown in the table's title

    Returns
    -------
    Summary with ``.params``, ``.macs``, ``.layers`` (name, kind, output_shape, params, macs,
    other_ops, backward_macs, rf, jump, start); str() is a table.

    Examples
    --------
    >>> from fastconv import nn, summary
    >>> m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    >>> s = summary(m, (3, 32, 32))
    >>> s.params, s.macs
    (224, 221184)
    >>> [row.rf for row in s.layers]
    [(3, 3), (3, 3), (4, 4)]
    """
    acc = _count("summary", model, input_shape, batch, flops, bias, transposed)
    rf = _receptive_field("summary", model, input_shape)
    return Summary(name, acc, rf)
