"""Kernels read nothing past their input: each input ends exactly at a page that may not be
read (PROT_NONE), so an over-read crashes the child process that runs the op. (The AVX-512
3x3 stride-2 max pool read one float past a row's last window, found by scripts/sanitize.sh.)"""

import os
import subprocess
import sys

import pytest

import fastconv

CHILD = r"""
import ctypes, mmap, sys
import numpy as np
import fastconv as fc

PAGE = mmap.PAGESIZE
libc = ctypes.CDLL(None)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
keep = []

def at_page_end(a):
    '''A copy of ``a`` whose last byte is the last byte before an unreadable page.'''
    a = np.ascontiguousarray(a)
    pages = -(-a.nbytes // PAGE) + 1
    buf = mmap.mmap(-1, pages * PAGE)
    keep.append(buf)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    assert libc.mprotect(base + (pages - 1) * PAGE, PAGE, 0) == 0  # PROT_NONE
    off = (pages - 1) * PAGE - a.nbytes
    out = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=off).reshape(a.shape)
    out[...] = a
    return out

rng = np.random.default_rng(0)
backend = sys.argv[1]
for dt in (np.float32, np.float64):
    for H, W in ((7, 33), (9, 64), (5, 17), (12, 112)):
        x = at_page_end(rng.standard_normal((1, 3, H, W)).astype(dt))
        for s in (1, 2):
            for k in (2, 3):
                fc.max_pool2d(x, k, s, backend=backend)
                fc.max_pool2d(x, k, s, k // 2, return_indices=True, backend=backend)
                fc.avg_pool2d(x, k, s, backend=backend)
            w = at_page_end(rng.standard_normal((3, 1, 3, 3)).astype(dt))
            fc.depthwise_conv2d(x, w, stride=s, padding=1, backend=backend)
            fc.conv2d(x, at_page_end(rng.standard_normal((4, 3, 3, 3)).astype(dt)), stride=s,
                      padding=1, backend=backend)
            # 70 output channels: im2col + GEMM (at stride 2 the even-value loads)
            fc.conv2d(x, at_page_end(rng.standard_normal((70, 3, 3, 3)).astype(dt)), stride=s,
                      padding=1, backend=backend)
            fc.conv_transpose2d(x, at_page_end(rng.standard_normal((3, 2, 3, 3)).astype(dt)),
                                stride=s, backend=backend)
        for k in (5, 7):  # 'same' windows: the flat path by kernel rows on large planes
            fc.depthwise_conv2d(x, at_page_end(rng.standard_normal((6, 1, k, k)).astype(dt)),
                                padding=k // 2, backend=backend)
        # 4x4/2 transposed: col2im's stride-2 pairs; on a 2x3 input the product runs
        # transposed, and col2im by kernel rows
        fc.conv_transpose2d(x, at_page_end(rng.standard_normal((3, 5, 4, 4)).astype(dt)),
                            stride=2, padding=1, backend=backend)
        fc.conv_transpose2d(at_page_end(x[:, :, :2, :3]),
                            at_page_end(rng.standard_normal((3, 8, 4, 4)).astype(dt)),
                            stride=2, padding=1, backend=backend)
        fc.adaptive_avg_pool2d(x, 1, backend=backend)
        fc.adaptive_max_pool2d(x, (2, 3), backend=backend)
    # 16 channels in the lanes (small planes, 7x7 and 5x5 windows): planes, filters, biases
    for H, W, k in ((7, 7, 7), (14, 14, 5), (3, 16, 5), (20, 33, 7)):
        fc.depthwise_conv2d(at_page_end(rng.standard_normal((1, 16, H, W)).astype(dt)),
                            at_page_end(rng.standard_normal((16, 1, k, k)).astype(dt)),
                            at_page_end(rng.standard_normal(16).astype(dt)), padding=k // 2,
                            backend=backend)
    if backend == "c":  # the implicit GEMM's masked row loads on small planes, both layouts
        # (8 output channels per group take AVX2's blocks and fill with AVX-512 too)
        for H, W in ((7, 7), (9, 5), (14, 14), (3, 12), (4, 40), (6, 28)):
            x = at_page_end(rng.standard_normal((2, 8, H, W)).astype(dt))
            for s in (1, 2):
                for v, oc in (("implicit_gemm", 16), ("implicit_gemm", 32), ("direct", 16)):
                    w = at_page_end(rng.standard_normal((oc, 4, 3, 3)).astype(dt))
                    fc.conv2d(x, w, stride=s, padding=1, groups=2, variant=v, backend=backend)
        # 1-D convs on the direct kernel, a single signal folded into rows on two threads
        fc.set_num_threads(2)
        for L, k, p in ((4096, 3, 0), (1030, 5, 2), (2000, 9, 4)):
            fc.conv1d(at_page_end(rng.standard_normal((1, 12, L)).astype(dt)),
                      at_page_end(rng.standard_normal((20, 12, k)).astype(dt)), padding=p,
                      variant="direct", backend=backend)
print("ok")
"""


@pytest.mark.parametrize("backend", [b for b in ("c", "numba", "reference")
                                     if fastconv.available_backends()[b] == "available"])
def test_no_read_past_the_input(backend):
    out = subprocess.run([sys.executable, "-c", CHILD, backend], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", (out.returncode, out.stderr[-2000:])


@pytest.mark.skipif(fastconv.available_backends()["c"] != "available", reason="no C engine")
def test_no_read_past_the_input_avx2():
    """The same with the C engine's AVX2 copies (its AVX2 fills and masked loads), where the
    CPU has more (FASTCONV_ISA caps the level; on an AVX2-only CPU this repeats the above)."""
    env = dict(os.environ, FASTCONV_ISA="avx2")
    out = subprocess.run([sys.executable, "-c", CHILD, "c"], capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", (out.returncode, out.stderr[-2000:])
