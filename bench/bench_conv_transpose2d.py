"""conv_transpose2d over engine x layer: DCGAN / U-Net style 4x4/2, 2x2/2 and 3x3/2
(output_padding 1, batch 8) upsampling layers."""

from layers import check_and_time


def test_conv_transpose2d(benchmark, case, runner):
    check_and_time(benchmark, case, runner)
