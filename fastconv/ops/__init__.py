"""The torch.nn.functional face of fastconv: validate, convert, allocate, call one engine.

``conv.py`` holds the convolutions, ``pool.py`` the pools, ``grad/`` their gradients (the
public ``fastconv.grad``), ``_padding.py`` the padding modes and their adjoint.
"""
