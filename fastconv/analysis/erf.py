"""Effective receptive fields: how strongly each input pixel moves one output element.

The theoretical receptive field (:mod:`fastconv.receptive_field`) says which input pixels
*can* reach an output element. The effective receptive field measures how much each one
*does*: the map of |d out / d x| over the input, computed with one backward pass through
the model (:meth:`fastconv.nn.Module.backward`). docs/erf.md has the definitions, the exact
result for stacked equal-weight 3x3 convolutions (sigma = sqrt(2L/3) per axis) and the plain
versus residual comparison.

Built-in stacks (:func:`build`, also accepted by ``fastconv erf``):

- ``linear:L``    L 3x3 stride-1 convolutions (padding 1), every weight 1/(9C), no bias,
                  no nonlinearity: the analytic case.
- ``plain:L``     L 3x3 convolutions, each followed by ReLU, torch's default init.
- ``residual:L``  a 3x3 stem conv + ReLU, then L // 2 blocks x -> relu(x + conv(relu(conv(x)))),
                  torch's default init: 1 + 2 * (L // 2) convolutions.

>>> from fastconv import erf
>>> r = erf.effective_receptive_field(erf.build("linear:4", channels=1), (1, 21, 21))
>>> [round(s * s, 6) for s in r.sigma]  # 2L/3 per axis
[2.666667, 2.666667]
"""

import math
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from .. import _shapes, nn
from ..backends._registry import backend_names
from ..nn.init import as_generator
from ..nn.module import _factory
from .accounting import check_model, parse_input_shape, trace
from .receptive_field import receptive_field
from .support import support

__all__ = ["ERF", "build", "check_memory", "effective_receptive_field", "spatial_trunk"]

NONZERO_THRESHOLD = 1e-6  # map values above this count towards nonzero_pixels
EFFECTIVE_THRESHOLD = 0.1  # map values above this count towards effective_pixels


@dataclass
class ERF:
    """The result of :func:`effective_receptive_field`. Pairs are (H, W).

    Parameters
    ----------
    map : ndarray, shape (H, W)
        |d out / d x| summed over input channels (and samples), divided by its maximum.
    position : (int, int)
        The output element differentiated.
    channel : int or None
        Its output channel; None: the sum over all output channels.
    theoretical_pixels : int
        Pixels with a path to the output element (``support.sum()``).
    nonzero_pixels : int
        Pixels with map > 1e-6 (a threshold: gradients can be tiny).
    effective_pixels : int
        Pixels with map > 0.1.
    half_width, effective_width : (int, int)
        Pixels > 0.5 (> 0.1) along the row and column through the peak.
    centre, sigma : (float, float)
        Mean and standard deviation of the map's marginals (the Gaussian fit by moments).
    theoretical_size : (float, float)
        The receptive-field size from :func:`fastconv.receptive_field`.
    region : ((float, float), (float, float))
        Its input interval per axis.
    support : ndarray of bool, shape (H, W)
        The exact theoretical field.

    ``ratio`` is effective_pixels / theoretical_pixels, ``axis_ratio`` effective_width /
    theoretical_size; str() is a report.

    Examples
    --------
    >>> from fastconv import erf
    >>> r = erf.effective_receptive_field(erf.build("linear:2", channels=1), (1, 9, 9))
    >>> r.position, r.theoretical_pixels, r.half_width
    ((4, 4), 25, (3, 3))
    >>> r.map[4].round(3)  # the row through the centre: a triangle, two box filters
    array([0.   , 0.   , 0.333, 0.667, 1.   , 0.667, 0.333, 0.   , 0.   ])
    """

    map: np.ndarray  # (H, W), |d out / d x| summed over input channels (and samples), max 1
    position: Tuple[int, int]  # the output element differentiated
    channel: Optional[int]  # its output channel, None: summed over all output channels
    theoretical_pixels: int  # pixels with a path to the output element (support.sum())
    nonzero_pixels: int  # pixels with map > 1e-6 (a threshold: gradients can be tiny)
    effective_pixels: int  # pixels with map > 0.1
    half_width: Tuple[int, int]  # pixels > 0.5 along the row / column through the peak
    effective_width: Tuple[int, int]  # pixels > 0.1 along the row / column through the peak
    centre: Tuple[float, float]  # mean of the map's marginals (the map as a distribution)
    sigma: Tuple[float, float]  # standard deviation of the marginals: the Gaussian fit
    theoretical_size: Tuple[float, float]  # receptive-field size from the recurrence
    region: Tuple[Tuple[float, float], Tuple[float, float]]  # its input interval per axis
    support: np.ndarray  # (H, W) bool: the exact theoretical field (analysis.support)

    @property
    def ratio(self) -> float:
        """effective_pixels / theoretical_pixels (areas)."""
        return self.effective_pixels / self.theoretical_pixels if self.theoretical_pixels else 0.0

    @property
    def axis_ratio(self) -> Tuple[float, float]:
        """effective_width / theoretical_size per axis (lengths)."""
        h, w = (e / t for e, t in zip(self.effective_width, self.theoretical_size))
        return h, w

    def __str__(self) -> str:
        def pair(v, fmt="{}"):
            return "x".join(fmt.format(a) for a in v)

        return "\n".join([
            f"output element {self.position}"
            + ("" if self.channel is None else f", channel {self.channel}"),
            f"theoretical RF (recurrence): {pair(self.theoretical_size)} pixels per axis",
            f"theoretical pixels (with a path to the output): {self.theoretical_pixels}",
            f"pixels with |grad| > 1e-6 of max: {self.nonzero_pixels}",
            f"effective pixels (> 10% of max): {self.effective_pixels}  "
            f"(ratio {self.ratio:.3f})",
            f"width > 10% through the peak: {pair(self.effective_width)}  "
            f"(per-axis ratio {pair(self.axis_ratio, '{:.3f}')})",
            f"width > 50% (half_width): {pair(self.half_width)}",
            f"Gaussian fit: centre {pair(self.centre, '{:.2f}')}, "
            f"sigma {pair(self.sigma, '{:.3f}')}",
        ])


# ------------------------------------------------------------------ models


def build(spec: str, channels: int = 16, in_channels: Optional[int] = None,
          generator: Any = 0, dtype: Any = np.float64) -> nn.Module:
    """A built-in stack from its spec (see the module docstring).

    Parameters
    ----------
    spec : str
        ``linear:L`` (L 3x3 convolutions, every weight 1/(9C), no bias, no nonlinearity),
        ``plain:L`` (each followed by ReLU) or ``residual:L`` (a stem and L // 2 residual
        blocks; L >= 2).
    channels : int, default 16
        The feature maps of every convolution.
    in_channels : int, optional
        The input's channels (default ``channels``).
    generator : numpy.random.Generator, int or None, default 0
        Draws the weights of plain and residual stacks (torch's default initialisation).
    dtype : floating dtype, default numpy.float64

    Returns
    -------
    fastconv.nn.Sequential
        Input (N, in_channels, H, W), output (N, channels, H, W) (every convolution pads 1).

    Examples
    --------
    >>> from fastconv import erf
    >>> erf.build("residual:4", channels=4, in_channels=3).output_shape((1, 3, 8, 8))
    (1, 4, 8, 8)
    """
    op = "build"
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(
            f"{op}: spec must be 'linear:L', 'plain:L' or 'residual:L', got {spec!r}"
        )
    kind, _, depth = spec.partition(":")
    if kind not in ("linear", "plain", "residual"):
        raise ValueError(
            f"{op}: spec must be 'linear:L', 'plain:L' or 'residual:L', got {spec!r}"
        )
    if not (depth.isascii() and depth.isdigit()):
        raise ValueError(f"{op}: spec {spec!r}: L must be a whole number written in digits 0-9")
    L = int(depth)
    if L < 1 or (kind == "residual" and L < 2):
        raise ValueError(f"{op}: spec {spec!r}: L must be >= 1 (>= 2 for residual)")
    C = _shapes.as_int(channels, "channels", minimum=1, op=op)
    cin = C if in_channels is None else _shapes.as_int(in_channels, "in_channels", minimum=1,
                                                       op=op)
    gen = as_generator(generator, op)
    _factory(dtype, op)

    def conv(ci, bias=True):
        return nn.Conv2d(ci, C, 3, padding=1, bias=bias, dtype=dtype, generator=gen)

    if kind == "linear":
        layers = []
        for i in range(L):
            c = conv(cin if i == 0 else C, bias=False)
            c.weight[...] = 1.0 / c.weight[0].size
            layers.append(c)
        return nn.Sequential(*layers)
    if kind == "plain":
        layers = []
        for i in range(L):
            layers += [conv(cin if i == 0 else C), nn.ReLU()]
        return nn.Sequential(*layers)
    blocks: list = [conv(cin), nn.ReLU()]
    for _ in range(L // 2):
        blocks.append(nn.Residual(nn.Sequential(conv(C), nn.ReLU(), conv(C)),
                                  activation=nn.ReLU()))
    return nn.Sequential(*blocks)


def spatial_trunk(model: nn.Module) -> nn.Module:
    """The part of a classifier that still has spatial structure.

    Parameters
    ----------
    model : fastconv.nn.Module

    Returns
    -------
    fastconv.nn.Module
        A top-level Sequential cut before its first adaptive pool, Flatten or Linear (the
        zoo's avgpool / flatten / fc or classifier); any other model unchanged.

    Examples
    --------
    >>> from fastconv import erf, models
    >>> trunk = erf.spatial_trunk(models.resnet18(initialize=False))
    >>> list(dict(trunk.named_children()))[-1], trunk.output_shape((1, 3, 64, 64))
    ('layer4', (1, 512, 2, 2))
    """
    if not isinstance(model, nn.Sequential):
        return model
    keep = []
    for name, m in model.named_children():
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Linear)):
            break
        keep.append((name, m))
    if not keep:
        raise ValueError(
            "spatial_trunk: model has no spatial layers before its first pool/flatten/linear"
        )
    return model if len(keep) == len(model) else nn.Sequential(dict(keep))


# ------------------------------------------------------------------ the map


def _physical_memory() -> Optional[int]:
    """Bytes of memory of this machine, or None where the system does not say."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


class _SizeTracer(nn.Tracer):
    """Adds up the elements of every layer's output (what a backward pass keeps)."""

    def __init__(self):
        self.elements = 0

    def leaf(self, name, module, in_shape, out_shape, state):
        self.elements += math.prod(out_shape)
        return state

    def merge(self, name, module, how, in_shapes, out_shape, states):
        self.elements += math.prod(out_shape)
        return states[0]


def check_memory(model: nn.Module, x_shape: Tuple[int, ...], name: str = "input_shape", *,
                 op: str = "") -> None:
    """Check, from the shapes alone, that a backward pass through ``model`` fits in memory.

    The input and every layer's output, at 4 bytes an element (a lower bound), must fit in
    this machine's memory; checked before anything is allocated.

    Parameters
    ----------
    model : fastconv.nn.Module
    x_shape : (N, C, H, W)
    name : str, default "input_shape"
        What the message calls the input (a command line passes its option).
    op : str, default ""
        The public function to name at the start of the message.

    Returns
    -------
    None
        ValueError naming ``name`` when it does not fit.

    Examples
    --------
    >>> from fastconv import erf, nn
    >>> erf.check_memory(nn.Conv2d(3, 8, 3), (1, 3, 32, 32))  # fits
    >>> erf.check_memory(nn.Conv2d(3, 8, 3), (1, 3, 2**24, 2**24))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: input_shape 3x16777216x16777216 is too large: ...
    """
    at = f"{op}: " if op else ""
    C, H, W = x_shape[1:]
    tracer = _SizeTracer()
    try:
        model._trace(tracer, "", tuple(x_shape), None)
    except ValueError as exc:  # a layer's output beyond any allocation: name the input
        if "too large" not in str(exc):
            raise
        raise ValueError(f"{at}{name} {C}x{H}x{W} is too large: {exc}") from None
    need = 4 * (math.prod(x_shape) + tracer.elements)
    have = _physical_memory()
    if have is not None and need > have:
        raise ValueError(
            f"{at}{name} {C}x{H}x{W} is too large: {x_shape[0]} input(s) and the activations a "
            f"backward pass keeps need at least {need / 2**30:.1f} GiB, more than this "
            f"machine's {have / 2**30:.1f} GiB"
        )


def _marginal_stats(m: np.ndarray) -> Tuple[float, float]:
    idx = np.arange(m.size, dtype=np.float64)
    total = m.sum()
    mean = float((idx * m).sum() / total)
    var = float(((idx - mean) ** 2 * m).sum() / total)
    return mean, math.sqrt(var)


def effective_receptive_field(model: nn.Module, input_shape: Any,
                              position: Optional[Sequence[int]] = None, *,
                              channel: Optional[int] = None, samples: int = 1,
                              input: Any = None, generator: Any = 0,
                              backend: Optional[str] = None) -> ERF:
    """The effective receptive field of one output element of ``model``.

    Parameters
    ----------
    model : fastconv.nn.Module whose output is (N, OC, OH, OW) (use :func:`spatial_trunk`
        for a classifier). Its backend is used unless ``backend`` is given (then the whole
        model is switched to it). Parameter gradients are not computed.
    input_shape : (C, H, W) or "CxHxW", without the batch.
    position : (oh, ow), the output element; default the centre (OH // 2, OW // 2).
    channel : None (default): out = the sum over all output channels at ``position``; an
        int: that channel only.
    samples : how many random inputs (standard normal, from ``generator``); the map is
        summed over them. Irrelevant for a linear model, whose gradient does not depend on x.
    input : an explicit input (N, C, H, W) instead of random ones.
    generator : numpy.random.Generator, int or None, default 0; draws the random inputs.
    backend : str, optional; run the model on this backend (see ``model`` above).

    Returns
    -------
    ERF: ``map`` = sum over input channels (and samples) of |d out / d x|, divided by its
    maximum; ``support`` (the input pixels with a path to the output element, whatever the
    weights: :func:`fastconv.analysis.support.support`) and ``theoretical_pixels`` (its
    size), ``nonzero_pixels`` (map > 1e-6), ``effective_pixels`` (map > 0.1),
    ``ratio``, ``half_width`` and ``effective_width`` (pixels above 0.5 / 0.1 along the row
    and column through the peak), ``centre`` and ``sigma`` (mean and standard deviation of
    the map's row and column marginals, read as distributions: the Gaussian fit by moments),
    ``theoretical_size`` and ``region`` from :func:`fastconv.receptive_field`, ``axis_ratio``.

    Examples
    --------
    >>> from fastconv import nn, effective_receptive_field
    >>> m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    >>> r = effective_receptive_field(m, (1, 16, 16), samples=8)
    >>> r.position, r.theoretical_pixels  # the centre output reads a 5x5 square
    ((8, 8), 25)
    >>> 0 < r.effective_pixels <= r.theoretical_pixels
    True
    """
    op = "effective_receptive_field"
    check_model(model, op)
    shape = parse_input_shape(input_shape, "input_shape", op=op)
    if len(shape) != 3:
        raise ValueError(f"{op}: input_shape must be (C, H, W), got {shape}")
    x: Optional[np.ndarray] = None
    if input is None:
        n = _shapes.as_int(samples, "samples", minimum=1, op=op)
        gen = as_generator(generator, op)
    else:
        x = np.asarray(input)
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
            raise ValueError(f"{op}: input must have shape (N,) + {tuple(shape)}, got {x.shape}")
        n = x.shape[0]
    out_shape = trace(op, model, nn.Tracer(), (n,) + tuple(shape), None)[0]
    if len(out_shape) != 4:
        raise ValueError(
            f"{op}: model output must be (N, OC, OH, OW) to pick an output element, got "
            f"{out_shape}; fastconv.erf.spatial_trunk(model) cuts a classifier before its "
            "pooling/flatten"
        )
    _, OC, OH, OW = out_shape
    if position is None:
        pos = (OH // 2, OW // 2)
    else:
        if isinstance(position, (str, bytes)) or not isinstance(position, (Sequence, np.ndarray)):
            raise TypeError(f"{op}: position must be a pair (oh, ow) of ints, got {position!r}")
        if len(position) != 2:
            raise ValueError(f"{op}: position must be a pair (oh, ow) of ints, got {position!r}")
        pos = (_shapes.as_int(position[0], "position", op=op),
               _shapes.as_int(position[1], "position", op=op))
        if not (0 <= pos[0] < OH and 0 <= pos[1] < OW):
            raise ValueError(
                f"{op}: position {pos} is outside the output's {OH}x{OW} positions"
            )
    if channel is not None:
        channel = _shapes.as_int(channel, "channel", op=op)
        if not 0 <= channel < OC:
            raise ValueError(f"{op}: channel must be in [0, {OC}), got {channel}")
    if backend is not None and (not isinstance(backend, str) or backend not in backend_names()):
        raise ValueError(f"{op}: backend must be None or one of {backend_names()}, "
                         f"got {backend!r}")
    check_memory(model, (n,) + tuple(shape), "input_shape", op=op)
    if backend is not None:
        model.set_backend(backend)
    if x is None:
        x = gen.standard_normal((n,) + tuple(shape))

    keep = [(m, m.keep_cache, m.requires_grad) for _, m in model.named_modules()]
    model.retain_inputs(True).requires_grad_(False)
    try:
        y = np.asarray(model(x))
        gy = np.zeros(y.shape, y.dtype)
        if channel is None:
            gy[:, :, pos[0], pos[1]] = 1
        else:
            gy[:, channel, pos[0], pos[1]] = 1
        gx = np.asarray(model.backward(gy), dtype=np.float64)
    finally:
        model.discard_retained()
        for m, kc, rg in keep:
            m.keep_cache, m.requires_grad = kc, rg
            if not kc:
                m.cache = None
    raw = np.abs(gx).sum(axis=(0, 1))
    peak = raw.max()
    if not peak > 0:
        raise ValueError(f"{op}: the gradient is zero at every input pixel (e.g. every ReLU "
                         "on the path is off for this input): no effective receptive field to "
                         "draw")
    emap = raw / peak
    ph, pw = np.unravel_index(int(np.argmax(emap)), emap.shape)
    (ch, sh), (cw, sw) = _marginal_stats(emap.sum(axis=1)), _marginal_stats(emap.sum(axis=0))
    rf = receptive_field(model, shape)
    if rf.layer is None:
        raise ValueError(f"{op}: model has no spatial output layer")
    region = rf.layer.region(pos)
    supp = support(model, shape, pos)
    return ERF(
        map=emap, position=pos, channel=channel,
        theoretical_pixels=int(supp.sum()),
        nonzero_pixels=int((emap > NONZERO_THRESHOLD).sum()),
        effective_pixels=int((emap > EFFECTIVE_THRESHOLD).sum()),
        half_width=(int((emap[:, pw] > 0.5).sum()), int((emap[ph, :] > 0.5).sum())),
        effective_width=(int((emap[:, pw] > EFFECTIVE_THRESHOLD).sum()),
                         int((emap[ph, :] > EFFECTIVE_THRESHOLD).sum())),
        centre=(ch, cw), sigma=(sh, sw),
        theoretical_size=(float(rf.size[0]), float(rf.size[1])),  # type: ignore[index]
        region=region, support=supp,
    )


def plot(result: ERF, path: str, title: str = "") -> None:
    """Draw ``result.map`` as a heatmap with the theoretical receptive field outlined (needs
    matplotlib; ImportError with a hint otherwise)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
    except ImportError:
        raise ImportError("drawing the map needs matplotlib: pip install matplotlib") from None
    fig, ax = plt.subplots(figsize=(5.5, 5))
    im = ax.imshow(result.map, cmap="viridis", origin="upper")
    H, W = result.map.shape
    (h0, h1), (w0, w1) = result.region
    # the theoretical field, clipped to the input (it may reach far into the padding)
    h0, w0 = max(h0, 0.0), max(w0, 0.0)
    h1, w1 = min(h1, H - 1.0), min(w1, W - 1.0)
    ax.add_patch(Rectangle((w0 - 0.5, h0 - 0.5), w1 - w0 + 1, h1 - h0 + 1, fill=False,
                           edgecolor="white", linestyle="--", linewidth=1.2,
                           label="theoretical RF (clipped to the input)"))
    # The outline is drawn on the map averaged over 5x5 pixels: strided layers leave a
    # pixel-scale checkerboard in the gradient that no number of samples removes, and the
    # raw 10% level set of it is a speckle, not a line. The numbers use the raw map.
    from ..ops.pool import avg_pool2d

    smooth = avg_pool2d(result.map[None, None], 5, 1, 2, count_include_pad=False)[0, 0]
    ax.contour(smooth, levels=[EFFECTIVE_THRESHOLD], colors="red", linewidths=1.0)
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    ax.set_title(title or "effective receptive field")
    ax.set_xlabel(f"sigma {result.sigma[1]:.2f} px, effective/theoretical "
                  f"{result.ratio:.2f} (red: 10% of max, 5x5 mean)")
    ax.legend(loc="upper right", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
