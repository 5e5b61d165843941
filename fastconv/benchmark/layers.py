"""The benchmark's layer suites: real layers of real networks, their arrays and their work.

Each :class:`Case` is one call of one public fastconv function on NCHW arrays. Its geometry
comes from ``fastconv._shapes`` (the one home of output sizes), and from the geometry come
the two numbers the benchmark divides by time:

- ``macs``: multiply-accumulates, counted by ``fastconv.analysis.accounting`` (the one place
  MACs are counted; docs/accounting.md): conv2d N*OC*OH*OW*(C/G)*KH*KW, padding taps
  included, as every engine computes them; transposed conv N*C*H*W*(OC/G)*KH*KW (every input
  pixel meets OC/G*KH*KW weights); depthwise is conv2d with G = C; separable = its depthwise
  step + its 1x1 step. Pooling does no multiply-adds: 0.
- ``bytes``: the smallest memory traffic of the call, every input, weight and output
  element once (itemsize each).

Used by ``fastconv bench`` and by the pytest-benchmark files in bench/ (bench/layers.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, FrozenSet, Optional, Tuple

import numpy as np

from .. import _shapes
from ..analysis import accounting

#: The public functions a case may call, in the order the tables list them.
OPS = (
    "conv2d",
    "conv_transpose2d",
    "depthwise_conv2d",
    "separable_conv2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
)
#: Short names accepted by ``--ops``, each standing for several ops.
OP_GROUPS = {
    "conv": ("conv2d",),
    "transpose": ("conv_transpose2d",),
    "depthwise": ("depthwise_conv2d", "separable_conv2d"),
    "separable": ("separable_conv2d",),
    "pool": ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"),
}


@dataclass(frozen=True)
class Case:
    """One benchmarked call.

    ``x`` is the input shape (N, C, H, W). ``w`` is the weight shape as the op takes it:
    conv2d (OC, C/G, KH, KW), conv_transpose2d (C, OC/G, KH, KW), depthwise and the
    depthwise step of separable (C*m, 1, KH, KW). ``w2`` is separable's pointwise weight
    (OC, C*m, 1, 1). Pooling uses ``kernel``; global average pooling has none.
    """

    name: str
    op: str
    x: Tuple[int, int, int, int]
    w: Tuple[int, ...] = ()
    w2: Tuple[int, ...] = ()
    kernel: Tuple[int, int] = (0, 0)
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    output_padding: int = 0
    suites: FrozenSet[str] = field(default_factory=frozenset)

    # ------------------------------------------------------------------ geometry

    def geometry(self):
        """The op's geometry from ``fastconv._shapes`` (validates the case, too)."""
        op, x = self.op, self.x
        if op in ("conv2d", "depthwise_conv2d", "separable_conv2d"):
            groups = self.groups if op == "conv2d" else x[1]
            return _shapes.conv_geometry(
                op, x, self.w, None, self.stride, self.padding, self.dilation, groups, 2
            )
        if op == "conv_transpose2d":
            return _shapes.conv_transpose_geometry(
                op,
                x,
                self.w,
                None,
                self.stride,
                self.padding,
                self.output_padding,
                self.groups,
                self.dilation,
                2,
            )
        if op in ("max_pool2d", "avg_pool2d"):
            dil = self.dilation if op == "max_pool2d" else 1
            return _shapes.pool_geometry(
                op, x, self.kernel, self.stride, self.padding, dil, False, 2
            )
        if op == "adaptive_avg_pool2d":
            return _shapes.adaptive_geometry(op, x, 1, 2)
        raise ValueError(f"Case.geometry: op must be one of {', '.join(OPS)}, got {op!r}")

    def output_shape(self) -> Tuple[int, ...]:
        g = self.geometry()
        if self.op == "separable_conv2d":
            return (g.N, self.w2[0], g.OH, g.OW)
        return g.output_shape()

    @property
    def macs(self) -> int:
        """Multiply-accumulates (0 for pooling), from ``fastconv.analysis.accounting``."""
        op, x, s, p, d = self.op, self.x, self.stride, self.padding, self.dilation
        if op == "conv2d":
            return accounting.conv2d_macs(x, self.w, s, p, d, self.groups)
        if op in ("depthwise_conv2d", "separable_conv2d"):
            n = accounting.conv2d_macs(x, self.w, s, p, d, groups=x[1])
            if op == "separable_conv2d":  # then the 1x1 convolution of the depthwise output
                g = self.geometry()
                n += accounting.conv2d_macs((g.N, g.OC, g.OH, g.OW), self.w2)
            return n
        if op == "conv_transpose2d":
            return accounting.conv_transpose2d_macs(
                x, self.w, s, p, self.output_padding, self.groups, d
            )
        return 0

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def bytes(self, itemsize: int) -> int:
        """The least traffic of the call: inputs, weights, biases and output, once each."""
        n = sum(_prod(s) for s in self.array_shapes().values())
        return (n + _prod(self.output_shape())) * itemsize

    def array_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """Shapes of the call's arrays: x, and w, b (and w2, b2) for convolutions."""
        out: Dict[str, Tuple[int, ...]] = {"x": self.x}
        if self.w:
            out["w"] = self.w
            oc = self.w[1] * self.groups if self.op == "conv_transpose2d" else self.w[0]
            out["b"] = (oc,)
        if self.w2:
            out["w2"] = self.w2
            out["b2"] = (self.w2[0],)
        return out

    def describe(self) -> str:
        """The call as code, e.g. ``conv2d x(1,64,56,56) w(64,64,3,3) stride=1 padding=1``."""
        parts = [self.op, "x" + _fmt(self.x)]
        if self.w:
            parts.append("w" + _fmt(self.w))
        if self.w2:
            parts.append("w2" + _fmt(self.w2))
        if self.kernel != (0, 0):
            parts.append(f"kernel_size={self.kernel[0]}")
        if self.op != "adaptive_avg_pool2d":
            parts.append(f"stride={self.stride} padding={self.padding}")
        if self.dilation != 1:
            parts.append(f"dilation={self.dilation}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.output_padding:
            parts.append(f"output_padding={self.output_padding}")
        if self.op == "adaptive_avg_pool2d":
            parts.append("output_size=1")
        return " ".join(parts)

    def params(self) -> Dict[str, Any]:
        """The case as plain data (for JSON)."""
        return {
            "op": self.op,
            "x": list(self.x),
            "w": list(self.w),
            "w2": list(self.w2),
            "kernel_size": list(self.kernel),
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
            "output_padding": self.output_padding,
        }

    @classmethod
    def from_params(cls, name: str, params: Dict[str, Any]) -> Case:
        """The case whose ``params()`` are ``params`` (read back from JSON)."""
        return cls(
            name,
            params["op"],
            tuple(params["x"]),  # type: ignore[arg-type]
            tuple(params["w"]),
            tuple(params["w2"]),
            tuple(params["kernel_size"]),  # type: ignore[arg-type]
            params["stride"],
            params["padding"],
            params["dilation"],
            params["groups"],
            params["output_padding"],
        )

    # ------------------------------------------------------------------ arrays

    def arrays(self, dtype: Any = np.float32, seed: int = 0) -> Dict[str, np.ndarray]:
        """Random inputs: x, and for convolutions w, b (and separable's w2, b2).

        Weights are scaled by 1/sqrt(fan-in), so outputs stay of order 1 at every size.
        """
        rng = np.random.default_rng(seed)
        dt = np.dtype(dtype)

        def randn(shape, scale=1.0):
            return (rng.standard_normal(shape) * scale).astype(dt)

        out = {}
        for name, shape in self.array_shapes().items():
            if name == "x":
                out[name] = randn(shape)
            elif name.startswith("b"):
                out[name] = randn(shape, 0.1)
            else:  # fan-in: what one output sums over
                fan_in = shape[0] if self.op == "conv_transpose2d" else _prod(shape[1:])
                out[name] = randn(shape, fan_in**-0.5)
        return out

    def tiny(self) -> Case:
        """The same layer shrunk to a smoke test: at most 8 channels per group (keeping the
        group count), spatial size about 12, same kernel, stride, padding and dilation."""
        N, C, H, W = self.x
        size = max(12, self.padding * 2 + 1, self.dilation * 2 + 4)
        hw = min(H, size)
        op = self.op
        if op == "conv2d":
            G = self.groups
            cg, og = min(C // G, 8), min(self.w[0] // G, 8)
            if G == C:  # depthwise expressed as grouped conv: keep one channel per group
                cg, og = 1, 1
            G = min(G, 4)
            return replace(
                self,
                x=(min(N, 2), cg * G, hw, hw),
                w=(og * G, cg) + self.w[2:],
                groups=G,
                suites=frozenset(),
            )
        if op == "conv_transpose2d":
            G = min(self.groups, 4)
            cg, og = min(C // self.groups, 8), min(self.w[1], 8)
            return replace(
                self,
                x=(min(N, 2), cg * G, min(H, 6), min(W, 6)),
                w=(cg * G, og) + self.w[2:],
                groups=G,
                suites=frozenset(),
            )
        c = min(C, 8)
        x = (min(N, 2), c, hw, hw)
        if op == "depthwise_conv2d":
            m = self.w[0] // C
            return replace(self, x=x, w=(c * m, 1) + self.w[2:], suites=frozenset())
        if op == "separable_conv2d":
            m = self.w[0] // C
            return replace(
                self,
                x=x,
                w=(c * m, 1) + self.w[2:],
                w2=(min(self.w2[0], 8), c * m, 1, 1),
                suites=frozenset(),
            )
        return replace(self, x=x, suites=frozenset())


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _fmt(shape) -> str:
    return "(" + ",".join(str(s) for s in shape) + ")"


# --------------------------------------------------------------------------- the suites


def _conv(name, N, C, OC, k, hw, stride=1, padding=None, dilation=1, groups=1, suites=()):
    pad = (k // 2) * dilation if padding is None else padding
    return Case(
        name,
        "conv2d",
        (N, C, hw, hw),
        (OC, C // groups, k, k),
        stride=stride,
        padding=pad,
        dilation=dilation,
        groups=groups,
        suites=frozenset(suites),
    )


def _tconv(name, N, C, OC, k, hw, stride, padding, output_padding=0, suites=()):
    return Case(
        name,
        "conv_transpose2d",
        (N, C, hw, hw),
        (C, OC, k, k),
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        suites=frozenset(suites),
    )


def _dw(name, N, C, hw, stride=1, suites=()):
    return Case(
        name,
        "depthwise_conv2d",
        (N, C, hw, hw),
        (C, 1, 3, 3),
        stride=stride,
        padding=1,
        suites=frozenset(suites),
    )


def _pool(name, op, C, hw, k, stride, padding, N=1, suites=()):
    return Case(
        name,
        op,
        (N, C, hw, hw),
        kernel=(k, k),
        stride=stride,
        padding=padding,
        suites=frozenset(suites),
    )


Q, F, R, M = "quick", "full", "resnet50", "mobilenet_v2"

#: Every case, in table order. ``suites`` says which suites list it ("full" lists all).
CASES: Tuple[Case, ...] = (
    # ResNet-50
    _conv("resnet50 stem 7x7/2 3->64 @224", 1, 3, 64, 7, 224, stride=2, suites=(F, R)),
    _conv("resnet50 3x3 64->64 @56", 1, 64, 64, 3, 56, suites=(Q, F, R)),
    _conv("resnet50 1x1 64->256 @56", 1, 64, 256, 1, 56, suites=(Q, F, R)),
    _conv("resnet50 3x3 128->128 @28", 1, 128, 128, 3, 28, suites=(F, R)),
    _conv("resnet50 3x3 256->256 @14", 1, 256, 256, 3, 14, suites=(Q, F, R)),
    _conv("resnet50 3x3 512->512 @7", 1, 512, 512, 3, 7, suites=(F, R)),
    _conv("resnet50 1x1 2048->512 @7", 1, 2048, 512, 1, 7, suites=(Q, F, R)),
    _conv("vgg 3x3 64->64 @224", 1, 64, 64, 3, 224, suites=(F,)),
    _conv("batch8 3x3 128->128 @28", 8, 128, 128, 3, 28, suites=(F,)),
    # DeepLab ASPP: dilated 3x3 convolutions
    _conv("aspp 3x3 256->256 @33 d2", 1, 256, 256, 3, 33, dilation=2, suites=(F,)),
    _conv("aspp 3x3 256->256 @33 d6", 1, 256, 256, 3, 33, dilation=6, suites=(Q, F)),
    _conv("aspp 3x3 256->256 @33 d12", 1, 256, 256, 3, 33, dilation=12, suites=(F,)),
    # ResNeXt grouped convolution
    _conv("resnext 3x3 256->256 g32 @28", 1, 256, 256, 3, 28, groups=32, suites=(Q, F)),
    # transposed convolutions (DCGAN / U-Net decoders)
    _tconv("tconv 4x4/2 512->256 @4", 1, 512, 256, 4, 4, 2, 1, suites=(F,)),
    _tconv("tconv 4x4/2 128->64 @16", 1, 128, 64, 4, 16, 2, 1, suites=(Q, F)),
    _tconv("tconv 2x2/2 128->64 @64", 1, 128, 64, 2, 64, 2, 0, suites=(F,)),
    _tconv("batch8 tconv 3x3/2 64->32 @28 op1", 8, 64, 32, 3, 28, 2, 1, 1, suites=(F,)),
    # MobileNetV2 depthwise and separable
    _dw("mobilenet_v2 dw 3x3 32 @112", 1, 32, 112, suites=(Q, F, M)),
    _dw("mobilenet_v2 dw 3x3/2 96 @112", 1, 96, 112, stride=2, suites=(F, M)),
    _dw("mobilenet_v2 dw 3x3 384 @14", 1, 384, 14, suites=(Q, F, M)),
    _dw("mobilenet_v2 dw 3x3 960 @7", 1, 960, 7, suites=(F, M)),
    _dw("batch8 dw 3x3 144 @56", 8, 144, 56, suites=(F, M)),
    Case(
        "mobilenet_v2 separable 144 @56 ->24",
        "separable_conv2d",
        (1, 144, 56, 56),
        (144, 1, 3, 3),
        (24, 144, 1, 1),
        padding=1,
        suites=frozenset((Q, F, M)),
    ),
    # pooling
    _pool("resnet50 maxpool 3x3/2 64 @112", "max_pool2d", 64, 112, 3, 2, 1, suites=(Q, F, R)),
    _pool("vgg maxpool 2x2/2 64 @224", "max_pool2d", 64, 224, 2, 2, 0, suites=(F,)),
    _pool("inception avgpool 3x3/1 256 @56", "avg_pool2d", 256, 56, 3, 1, 1, suites=(F,)),
    Case(
        "resnet50 global avgpool 2048 @7 N=8",
        "adaptive_avg_pool2d",
        (8, 2048, 7, 7),
        suites=frozenset((Q, F, R)),
    ),
)

#: Suite name -> what it is (shown by --help).
SUITES = {
    "quick": "a dozen representative layers of every kind (the default; 10-20 s)",
    "full": "every layer",
    "resnet50": "ResNet-50's distinct conv and pooling layers",
    "mobilenet_v2": "MobileNetV2's depthwise and separable layers",
    "tiny": "every op once on a few-kilobyte layer (for tests of the harness itself)",
}


def _tiny_suite() -> Tuple[Case, ...]:
    seen, out = set(), []
    for c in CASES:
        if c.op not in seen:
            seen.add(c.op)
            out.append(replace(c.tiny(), name="tiny " + c.op))
    return tuple(out)


def select(suite: str = "quick", ops: Optional[Tuple[str, ...]] = None) -> Tuple[Case, ...]:
    """The cases of ``suite`` whose op is in ``ops`` (all when None)."""
    if suite not in SUITES:
        raise ValueError(f"select: suite must be one of {', '.join(SUITES)}, got {suite!r}")
    cases = _tiny_suite() if suite == "tiny" else tuple(c for c in CASES if suite in c.suites)
    if ops is not None:
        cases = tuple(c for c in cases if c.op in ops)
    return cases


def expand_ops(names) -> Tuple[str, ...]:
    """Resolve op names and the short group names of ``OP_GROUPS`` to op names."""
    out = []
    for name in names:
        if name in OPS:
            group: Tuple[str, ...] = (name,)
        elif name in OP_GROUPS:
            group = OP_GROUPS[name]
        else:
            raise ValueError(
                f"expand_ops: names holds an unknown op {name!r}; choose from "
                f"{', '.join(OPS + tuple(OP_GROUPS))}"
            )
        out += [o for o in group if o not in out]
    return tuple(out)
