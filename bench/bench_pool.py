"""Pooling over engine x layer: max 3x3/2 (ResNet-50), max 2x2/2 (VGG), avg 3x3/1, global
average (ResNet-50's head, batch 8). Memory-bound: see extra_info["gbs"]."""

from layers import check_and_time


def test_max_pool2d(benchmark, case, runner):
    check_and_time(benchmark, case, runner)


def test_avg_pool2d(benchmark, case, runner):
    check_and_time(benchmark, case, runner)


def test_adaptive_avg_pool2d(benchmark, case, runner):
    check_and_time(benchmark, case, runner)
