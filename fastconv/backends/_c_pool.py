"""C engine wrappers for depthwise / separable convolution and pooling (csrc/depthwise_conv2d.c,
csrc/pool2d.c). Re-exported by fastconv/backends/c.py."""

__all__: list = []
