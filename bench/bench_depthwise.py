"""depthwise_conv2d over engine x layer (MobileNetV2's depthwise layers), and MobileNetV2's
separable block (depthwise 3x3 then pointwise 1x1) as one call of separable_conv2d."""

from layers import check_and_time


def test_depthwise_conv2d(benchmark, case, runner):
    check_and_time(benchmark, case, runner)


def test_separable_conv2d(benchmark, case, runner):
    check_and_time(benchmark, case, runner)
