"""Receptive fields of :mod:`fastconv.nn` models, per layer and per axis (H and W apart).

For each layer and axis, three numbers describe which input positions reach an output element
(docs/receptive_field.md derives them):

- ``size``: the receptive field, in input pixels;
- ``jump``: the input distance between two neighbouring outputs (the effective stride);
- ``start``: the input coordinate (0-based, may be fractional or negative) of the centre of
  output element 0's receptive field. Output element i is centred at start + i * jump and
  depends only on input positions x with |x - (start + i*jump)| <= (size - 1) / 2.
- ``padding``: effective padding, how far output 0's field reaches before the input:
  (size - 1) / 2 - start.

Layer rules, with (size, jump, start) of the layer's input and kernel K, stride s, padding
p (before), dilation d of the layer:

- convolution, max / avg pooling: size += (K-1)*d*jump; start += ((K-1)*d/2 - p)*jump;
  jump *= s. ceil_mode does not move output 0.
- transposed convolution: output o gathers input positions (o + p - k*d)/s (the integral
  ones), so jump /= s (fractional), start += (p - (K-1)*d/2)*jump/s and
  size += (K-1)*d*jump/s. The size is then a bound: it covers every position that can
  reach an output element, a few of which (depending on o mod s) may not.
- adaptive pooling: an output size that divides the input size is a regular pool (kernel =
  stride = In/Out); pooling to 1x1 is global pooling and ends spatial structure; other sizes
  have uneven bins, bounded by the largest deviation of a bin from its nominal centre.
- BatchNorm, activations, Dropout, Identity: no change; Flatten and Linear end spatial
  structure (their records have ``spatial=False``), and so does a layer whose
  ``ends_spatial`` is True (the capsule layers: the primary capsules' field is that of
  their grid position in the convolution before them, ``primary_caps.conv``).
- Residual and Concat: every path must have the same jump and start on both axes (else
  ValueError: the branches are misaligned); the size is the largest over the paths.
- Padding modes other than zeros: the rules above still give the interval, but its
  coordinates outside the input are not zeros, they stand for input pixels that the padding
  copies there. With ``padding_mode="circular"`` an output also depends on the pixels its
  region covers after wrapping modulo the input size (when the circular layer sees the input
  at jump 1; in general it wraps in steps of the layer's input size times its jump);
  "reflect" mirrors them at the border and "replicate" clamps them to the edge pixel (which
  can reach past the interval when the padding exceeds half the kernel's span). The records of
  such a layer and of every layer after it list the mode in ``padding_modes`` and say so in
  their note.

The result's ``size``, ``jump``, ``start`` and ``padding`` are those of the last layer that
still has spatial structure (before global pooling, flatten, linear).

>>> from fastconv import models, receptive_field
>>> rf = receptive_field(models.vgg16(initialize=False), (3, 224, 224))
>>> rf.size, rf.jump, rf.start
((212, 212), (32, 32), (15.5, 15.5))
>>> rf.layer.region((0, 0))  # output element (0, 0) of the last spatial layer
((-90.0, 121.0), (-90.0, 121.0))
"""

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, FrozenSet, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _shapes, nn
from .accounting import check_model, format_table, parse_input_shape, trace

__all__ = ["LayerRF", "ReceptiveField", "receptive_field"]

Number = Union[int, float]


def _num(f: Fraction) -> Number:
    return int(f) if f.denominator == 1 else float(f)


class _Axis(NamedTuple):
    size: Fraction
    jump: Fraction
    start: Fraction

    def window(self, k: int, s: Any, p: int, d: int) -> "_Axis":
        """A kernel-k window with stride s, padding p (before) and dilation d."""
        span = (k - 1) * d
        return _Axis(self.size + span * self.jump,
                     self.jump * s,
                     self.start + (Fraction(span, 2) - p) * self.jump)


_IDENT = _Axis(Fraction(1), Fraction(1), Fraction(0))


@dataclass(frozen=True)
class _State:
    h: _Axis
    w: _Axis
    spatial: bool = True
    note: str = ""
    modes: FrozenSet[str] = frozenset()  # padding modes other than zeros on paths to here


_MODE_NOTES = {
    "circular": "circular padding: region wraps around the input",
    "reflect": "reflect padding: region mirrors at the input's border",
    "replicate": "replicate padding: region clamps to the input's edge",
}


@dataclass
class LayerRF:
    """The receptive field of one layer's output, per axis (H, W).

    Parameters
    ----------
    name, kind : str
        The layer's qualified name and class name.
    output_shape : tuple of int
        Batch included.
    spatial : bool
        False after a global layer (adaptive pooling to 1x1, Flatten, Linear): no geometry.
    size : (number, number)
        RF: how many input pixels along H and W can reach one output element.
    jump : (number, number)
        The input distance between neighbouring outputs (the product of the strides).
    start : (number, number)
        The input coordinate of output element 0's centre.
    note : str
        Caveats (adaptive bins of uneven size, padding modes).
    padding_modes : tuple of str
        Padding modes other than zeros ("circular", "reflect", "replicate") of the layers on
        paths to this one: where not empty, :meth:`region`'s coordinates outside the input
        stand for copied input pixels (see there).

    ``padding`` is the effective padding per axis, (size - 1) / 2 - start.

    Examples
    --------
    >>> from fastconv import nn, receptive_field
    >>> m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2))
    >>> pool = receptive_field(m, (3, 32, 32)).layers[1]
    >>> pool.size, pool.jump, pool.start, pool.padding
    ((4, 4), (2, 2), (0.5, 0.5), (1, 1))
    >>> pool.region((0, 0))
    ((-1.0, 2.0), (-1.0, 2.0))
    """

    name: str
    kind: str
    output_shape: Tuple[int, ...]
    spatial: bool
    size: Tuple[Number, Number]
    jump: Tuple[Number, Number]
    start: Tuple[Number, Number]
    note: str = ""
    padding_modes: Tuple[str, ...] = ()

    @property
    def padding(self) -> Tuple[Number, Number]:
        """Effective padding per axis: (size - 1) / 2 - start."""
        h, w = (_num((Fraction(sz) - 1) / 2 - Fraction(st))
                for sz, st in zip(self.size, self.start))
        return h, w

    def region(self, index: Tuple[int, int]) -> Tuple[Tuple[float, float], Tuple[float, float]]:
        """((first, last) along H, (first, last) along W): the input coordinates that can reach
        output element ``index`` = (oh, ow) of this layer (a closed interval; positions
        outside it cannot).

        With zero padding the coordinates outside the input are zeros, and the interval
        clipped to the input holds every pixel that reaches the output. With another padding
        mode (``self.padding_modes`` not empty) a coordinate outside the input stands for the
        input pixel the padding copies there. With circular padding the output also depends
        on the pixels the interval covers after wrapping modulo the input size (in general,
        modulo the circular layer's input size times its jump): a 3x3 circular conv with
        padding 1 on an 8x8 input gives ((-1, 1), (-1, 1)) for output (0, 0), which also
        depends on pixel (7, 7). Reflect padding mirrors such coordinates at the border
        (-1 is pixel 1), replicate clamps them to the edge pixel (-1 is pixel 0).
        """
        op = "LayerRF.region"
        if not self.spatial:
            raise ValueError(f"{op}: {self.name}: output has no spatial structure (global)")
        if isinstance(index, (str, bytes)) or not isinstance(index, (Sequence, np.ndarray)):
            raise TypeError(f"{op}: index must be a pair (oh, ow) of ints, got {index!r}")
        if len(index) != 2:
            raise ValueError(f"{op}: index must be a pair (oh, ow) of ints, got {index!r}")
        idx = [_shapes.as_int(i, "index", minimum=0, op=op) for i in index]
        dims = tuple(self.output_shape[2:])
        dims = (1,) * (2 - len(dims)) + dims[-2:]  # a 1-D layer's H axis is 1
        if not all(i < n for i, n in zip(idx, dims)):
            raise ValueError(f"{op}: index {tuple(idx)} is outside {self.name or 'the layer'}'s "
                             f"{dims[0]}x{dims[1]} output positions")
        out = []
        for i, sz, j, st in zip(idx, self.size, self.jump, self.start):
            c = Fraction(st) + i * Fraction(j)
            half = (Fraction(sz) - 1) / 2
            out.append((float(c - half), float(c + half)))
        return out[0], out[1]


class ReceptiveField:
    """The result of :func:`receptive_field`: one :class:`LayerRF` per layer, and the geometry of
    the last spatial layer.

    Parameters
    ----------
    layers : list of LayerRF
    input_shape : tuple of int
        Without the batch.

    ``layer`` is the last spatial LayerRF (None if there is none); ``size``, ``jump``,
    ``start`` and ``padding`` are its. str() is a table.

    Examples
    --------
    >>> from fastconv import nn, receptive_field
    >>> m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3))
    >>> rf = receptive_field(m, (3, 32, 32))
    >>> rf.layer.name, rf.size, rf.jump
    ('2', (8, 8), (2, 2))
    >>> print(str(rf).splitlines()[0])
    layer  kind       output      RF  jump  start  eff. pad  note
    """

    def __init__(self, layers: List[LayerRF], input_shape: Tuple[int, ...]):
        self.layers = layers
        self.input_shape = input_shape
        spatial = [r for r in layers if r.spatial]
        self.layer: Optional[LayerRF] = spatial[-1] if spatial else None

    def _get(self, what: str):
        if self.layer is None:
            return None
        return getattr(self.layer, what)

    @property
    def size(self) -> Optional[Tuple[Number, Number]]:
        return self._get("size")

    @property
    def jump(self) -> Optional[Tuple[Number, Number]]:
        return self._get("jump")

    @property
    def start(self) -> Optional[Tuple[Number, Number]]:
        return self._get("start")

    @property
    def padding(self) -> Optional[Tuple[Number, Number]]:
        return self._get("padding")

    def __str__(self) -> str:
        def pair(v):
            return str(v[0]) if v[0] == v[1] else f"{v[0]}/{v[1]}"

        rows = []
        for r in self.layers:
            if r.spatial:
                rows.append((r.name, r.kind, "x".join(map(str, r.output_shape)), pair(r.size),
                             pair(r.jump), pair(r.start), pair(r.padding), r.note))
            else:
                rows.append((r.name, r.kind, "x".join(map(str, r.output_shape)), "global", "",
                             "", "", r.note))
        note = "values given as H/W where they differ"
        if self.layer is not None:
            note = (f"receptive field {pair(self.size)} (jump {pair(self.jump)}, start "
                    f"{pair(self.start)}) at {self.layer.name}; " + note)
        return format_table(("layer", "kind", "output", "RF", "jump", "start", "eff. pad",
                             "note"), rows, None, note)

    def __repr__(self) -> str:
        return (f"ReceptiveField(size={self.size}, jump={self.jump}, start={self.start}, "
                f"layers={len(self.layers)})")


def _adaptive_axis(ax: _Axis, n_in: int, n_out: int) -> Tuple[_Axis, bool]:
    """An adaptive pooling axis: a regular pool when n_out divides n_in, else a bound."""
    r = Fraction(n_in, n_out)
    if n_in % n_out == 0:
        return ax.window(int(r), r, 0, 1), False
    half = Fraction(0)
    for i, (b, e) in enumerate(_shapes.adaptive_bins(n_in, n_out)):
        c = (i + Fraction(1, 2)) * r - Fraction(1, 2)
        half = max(half, c - b, (e - 1) - c)
    return _Axis(ax.size + 2 * half * ax.jump, ax.jump * r,
                 ax.start + (r - 1) / 2 * ax.jump), True


class _RFTracer(nn.Tracer):
    def __init__(self):
        self.records: List[LayerRF] = []

    def _record(self, name: str, kind: str, out_shape, st: _State) -> _State:
        note = st.note
        if st.spatial and st.modes:
            modes = sorted(st.modes)
            extra = (_MODE_NOTES[modes[0]] if len(modes) == 1 else
                     f"{', '.join(modes)} padding copy input pixels into the region")
            note = f"{note}; {extra}" if note else extra
        self.records.append(LayerRF(
            name, kind, tuple(out_shape), st.spatial,
            (_num(st.h.size), _num(st.w.size)), (_num(st.h.jump), _num(st.w.jump)),
            (_num(st.h.start), _num(st.w.start)), note, tuple(sorted(st.modes))))
        return st

    def leaf(self, name, m, in_shape, out_shape, st: _State):
        kind = type(m).__name__
        if not st.spatial or isinstance(m, (nn.Flatten, nn.Linear)) or getattr(
                m, "ends_spatial", False):  # ends_spatial: capsules (fastconv.nn.capsule)
            note = getattr(m, "rf_note", "") if st.spatial else ""
            return self._record(name, kind, out_shape,
                                _State(st.h, st.w, False, note, st.modes))
        h, w, note, modes = st.h, st.w, "", st.modes
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            g = m.geometry(in_shape)
            mode = getattr(m, "padding_mode", "zeros")
            if mode != "zeros" and any(g.pad):
                modes = modes | {mode}
            w = w.window(g.KW, g.sw, g.pad[2], g.dw)
            if g.nd == 2:
                h = h.window(g.KH, g.sh, g.pad[0], g.dh)
        elif isinstance(m, nn.ConvTranspose2d):
            g = m.geometry(in_shape)
            h = _Axis(h.size + Fraction((g.KH - 1) * g.dh, g.sh) * h.jump, h.jump / g.sh,
                      h.start + (g.ph - Fraction((g.KH - 1) * g.dh, 2)) * h.jump / g.sh)
            w = _Axis(w.size + Fraction((g.KW - 1) * g.dw, g.sw) * w.jump, w.jump / g.sw,
                      w.start + (g.pw - Fraction((g.KW - 1) * g.dw, 2)) * w.jump / g.sw)
            note = "size is a bound" if (g.sh > 1 or g.sw > 1) else ""
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            pg = m.geometry(in_shape)
            h = h.window(pg.KH, pg.sh, pg.ph, pg.dh)
            w = w.window(pg.KW, pg.sw, pg.pw, pg.dw)
        elif isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            ag = m.geometry(in_shape)
            if ag.OH == 1 and ag.OW == 1:
                return self._record(name, kind, out_shape,
                                    _State(h, w, False, "global pool", modes))
            h, irr_h = _adaptive_axis(h, ag.H, ag.OH)
            w, irr_w = _adaptive_axis(w, ag.W, ag.OW)
            note = "uneven bins: size is a bound" if (irr_h or irr_w) else ""
        elif not isinstance(m, (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Dropout, nn.Identity)):
            raise TypeError(f"no rule for layer {name!r} of type {kind}")
        return self._record(name, kind, out_shape, _State(h, w, True, note, modes))

    def merge(self, name, m, how, in_shapes, out_shape, states: List[_State]):
        kind = "add" if how == "add" else "concat"
        name = name or type(m).__name__  # a top-level Residual / Concat, as accounting names it
        modes = frozenset().union(*(s.modes for s in states))
        if not any(s.spatial for s in states):
            return self._record(name, kind, out_shape,
                                _State(states[0].h, states[0].w, False, states[0].note, modes))
        if not all(s.spatial for s in states):
            raise ValueError(f"{name}: some paths are global and some spatial")
        first = states[0]
        for i, s in enumerate(states[1:], 1):
            for axis, a, b in (("H", first.h, s.h), ("W", first.w, s.w)):
                if a.jump != b.jump or a.start != b.start:
                    raise ValueError(
                        f"{name}: branches are misaligned along {axis}: path 0 has "
                        f"jump {_num(a.jump)}, start {_num(a.start)}; path {i} has jump "
                        f"{_num(b.jump)}, start {_num(b.start)}, so their outputs do not "
                        "describe the same input positions"
                    )
        h = first.h._replace(size=max(s.h.size for s in states))
        w = first.w._replace(size=max(s.w.size for s in states))
        note = next((s.note for s in states if s.note), "")
        return self._record(name, kind, out_shape, _State(h, w, True, note, modes))


def receptive_field(model: nn.Module, input_shape: Any) -> ReceptiveField:
    """Receptive field, jump, start and effective padding of every layer of ``model``.

    Parameters
    ----------
    model : fastconv.nn.Module
    input_shape : (C, H, W) (or (C, L) for 1-D models; its H axis is then 1), without the
        batch; or a string "3x224x224"

    Returns
    -------
    ReceptiveField with ``.layers`` (LayerRF: name, kind, output_shape, spatial, size, jump,
    start, padding, padding_modes, region(index)) and ``.size``, ``.jump``, ``.start``,
    ``.padding`` of the last spatial layer, each a pair (H, W). str() is a table.

    Examples
    --------
    >>> from fastconv import nn, receptive_field
    >>> m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3))
    >>> rf = receptive_field(m, (3, 32, 32))
    >>> rf.size, rf.jump, rf.start
    ((8, 8), (2, 2), (2.5, 2.5))
    >>> rf.layers[-1].region((0, 0))  # the input rows and columns output (0, 0) reads
    ((-1.0, 6.0), (-1.0, 6.0))

    Notes
    -----
    With ``padding_mode="circular"`` an output also depends on the pixels its region covers
    after wrapping modulo the input size, not only on those inside [0, H) x [0, W); reflect
    and replicate padding mirror / clamp the region's outside coordinates instead. Such
    layers (and every layer after one) list the mode in ``padding_modes`` and say so in
    their note; see :meth:`LayerRF.region`.
    """
    return _receptive_field("receptive_field", model, input_shape)


def _receptive_field(op: str, model: Any, input_shape: Any) -> ReceptiveField:
    """:func:`receptive_field` on behalf of the public function ``op``."""
    check_model(model, op)
    shape = parse_input_shape(input_shape, op=op)
    tracer = _RFTracer()
    trace(op, model, tracer, (1,) + shape, _State(_IDENT, _IDENT))
    return ReceptiveField(tracer.records, shape)
