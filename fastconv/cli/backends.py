"""`fastconv backends`: which engines run here, and why the others do not."""

from __future__ import annotations

HELP = "list the engines and why any is unavailable"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    from ..backends._registry import available_backends, support_matrix

    info = available_backends()
    for name, reason in info.items():
        print(f"{name:10s} {reason}")
    print()
    names = list(info)
    print(f"{'kernel':30s}" + "".join(f"{n:>11s}" for n in names) + "  serves")
    for kernel, row in support_matrix().items():
        print(f"{kernel:30s}" + "".join(f"{'yes' if row[n] else '-':>11s}" for n in names)
              + f"  {SERVES.get(kernel, '')}")
    return 0


#: The public functions each kernel of the contract runs (fastconv.grad's in the last rows).
SERVES = {
    "conv2d": "conv1d, conv2d",
    "depthwise_conv2d": "depthwise_conv2d, conv2d with groups = C",
    "separable_conv2d": "separable_conv2d",
    "conv_transpose2d": "conv_transpose1d/2d; grad.conv*_input",
    "max_pool2d": "max_pool1d/2d",
    "avg_pool2d": "avg_pool1d/2d",
    "adaptive_avg_pool2d": "adaptive_avg_pool1d/2d",
    "adaptive_max_pool2d": "adaptive_max_pool1d/2d",
    "max_pool2d_backward": "grad.max_pool*_input, grad.adaptive_max_pool*_input",
    "avg_pool2d_backward": "grad.avg_pool*_input",
    "adaptive_avg_pool2d_backward": "grad.adaptive_avg_pool*_input",
    "conv2d_fused": "fused.conv2d; nn in inference (conv + BN + ReLU, residual add)",
    "depthwise_conv2d_fused": "fused.depthwise_conv2d, fused.conv2d with groups = C",
}
