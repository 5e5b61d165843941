"""Which kernel each layer of a model runs on the C backend (``fastconv.cpu_info(model)``).

A :class:`~fastconv.nn.Tracer` walks the model as accounting and summaries do; for every
convolution and pooling layer it asks the C backend which path its default kernel takes for
that layer's geometry (``fc_conv2d_path`` in csrc/conv2d.c, the same decision the kernel
makes) and which public kernel the op layer routes it to (a whole-plane pool runs the global
adaptive kernel, evenly tiling adaptive bins the windowed one: ``fastconv.ops.pool``). It
also says when fastconv.nn fuses a conv with what follows it in inference mode.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np

from .. import _shapes
from ..backends._registry import takes_depthwise
from ..nn.module import Tracer


def _pool_kernel(module: Any, in_shape: Sequence[int]) -> str:
    from ..nn.pooling import AdaptiveMaxPool2d, AvgPool2d, MaxPool2d
    from ..ops.pool import even_bins, is_global_window

    kind = "max" if isinstance(module, (MaxPool2d, AdaptiveMaxPool2d)) else "avg"
    if isinstance(module, (MaxPool2d, AvgPool2d)):
        d = getattr(module, "dilation", (1, 1))
        g = _shapes.pool_geometry("cpu_info", tuple(in_shape), module.kernel_size,
                                  module.stride, module.padding, d, module.ceil_mode, 2)
        if is_global_window(g) and not getattr(module, "divisor_override", None):
            return f"adaptive_{kind}_pool2d (global: the window is the whole plane)"
        return f"{kind}_pool2d"
    g = _shapes.adaptive_geometry("cpu_info", tuple(in_shape), module.output_size, 2)
    if even_bins(g):
        return f"{kind}_pool2d (kernel = stride = {g.H // g.OH}x{g.W // g.OW}: even bins)"
    return f"adaptive_{kind}_pool2d"


class _Kernels(Tracer):
    def __init__(self, dtype: Any, c: Any):
        self.rows: List[Dict[str, Any]] = []
        self.dtype, self.c = dtype, c

    def leaf(self, name, module, in_shape, out_shape, state):
        from ..nn.conv import Conv2d, ConvTranspose2d, DepthwiseSeparableConv2d
        from ..nn.layers import Linear, c_linear_for
        from ..nn.pooling import AvgPool2d, MaxPool2d, _AdaptivePool2d

        kernel = None
        if isinstance(module, Conv2d):
            g = module.geometry(tuple(in_shape))
            shape = (g.N, g.C, g.H, g.W, g.OC, g.KH, g.KW, g.OH, g.OW, g.sh, g.sw, g.ph, g.pw,
                     g.dh, g.dw, g.groups)
            dw = (_shapes.is_depthwise(g.C, g.groups) if self.c is None else
                  takes_depthwise(self.c, g.C, g.groups, g.OC, g.KH, g.KW, g.sh, g.sw))
            if dw:
                kernel = "depthwise_conv2d" + (
                    "" if self.c is None else f" ({self.c.depthwise_path(shape, self.dtype)})")
            elif self.c is None:
                kernel = "conv2d"
            else:
                kernel = self.c.conv2d_path(shape, self.dtype)
        elif isinstance(module, ConvTranspose2d):
            kernel = "conv_transpose2d (packed gemm + col2im)"
        elif isinstance(module, DepthwiseSeparableConv2d):
            kernel = "separable_conv2d (depthwise + pointwise per tile)"
        elif isinstance(module, (MaxPool2d, AvgPool2d, _AdaptivePool2d)):
            kernel = _pool_kernel(module, in_shape)
        elif isinstance(module, Linear):
            rows = int(np.prod(in_shape[:-1], dtype=np.int64))
            kernel = ("linear (C kernel, the engine's threads)"
                      if c_linear_for(rows, self.dtype) is not None else "numpy matmul (BLAS)")
        if kernel is not None:
            self.rows.append({"layer": name, "type": type(module).__name__,
                              "input": tuple(in_shape), "output": tuple(out_shape),
                              "kernel": kernel})
        return state


def _fused_names(model: Any) -> Dict[str, str]:
    """Conv layer name -> what fastconv.nn fuses into it in inference mode."""
    from ..nn import _fusion
    from ..nn.container import Residual, Sequential

    out: Dict[str, str] = {}
    for prefix, m in model.named_modules():
        if isinstance(m, Sequential):
            items = list(m._modules.items())
        elif isinstance(m, Residual):
            items = _fusion.expand_tail(m._steps)
        else:
            continue
        mods = [v for _, v in items]
        for i, (n, _) in enumerate(items[:-1]):
            key = f"{prefix}.{n}" if prefix else n
            act = _fusion.group_at(mods, i)
            bare = _fusion.activation_at(mods, i) if act is None else None
            if bare is not None:  # Conv2d -> ReLU / ReLU6 without a batch norm
                out.setdefault(key, bare)
            if act is not None:
                what = "batch norm" + (f" + {act}" if act else "")
                if isinstance(m, Residual) and i == len(items) - 2:
                    tail = _fusion.residual_tail(mods, m._activation)
                    if tail is not None:
                        what = "batch norm + residual add" + (f" + {tail}" if tail else "")
                if "residual" not in out.get(key, ""):  # a block's own Sequential comes later
                    out[key] = what
    return out


def kernel_plan(model: Any, input_shape: Sequence[int], dtype: Any = "float32",
                batch: int = 1) -> List[Dict[str, Any]]:
    """One record per conv / pooling / linear layer of ``model`` (an nn.Module) for an input of
    ``input_shape`` (C, H, W) and ``batch``: ``layer``, ``type``, ``input``, ``output``,
    ``kernel`` (the C backend's path), ``fused`` (what inference fusion adds, or "")."""
    from ..backends._registry import _load
    from .accounting import parse_input_shape

    shape = parse_input_shape(input_shape, "input_shape", op="cpu_info")
    c = _load("c")
    tracer = _Kernels(dtype, c)
    model._trace(tracer, "", (int(batch),) + tuple(shape), None)
    fused = _fused_names(model)
    for row in tracer.rows:
        row["fused"] = fused.get(row["layer"], "")
    return tracer.rows
