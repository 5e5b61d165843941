"""conv2d over engine x variant x layer: ResNet-50, VGG, batch 8, ASPP (dilated), ResNeXt
(grouped). Every conv2d variant of every engine is timed on the ResNet-50 3x3 layers."""

from layers import check_and_time

VARIANT_LAYERS = ("resnet50 3x3 64->64 @56", "resnet50 3x3 256->256 @14")


def test_conv2d(benchmark, case, runner):
    check_and_time(benchmark, case, runner)
