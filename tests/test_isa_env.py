"""FASTCONV_ISA caps the C backend's own kernel choices (an AVX2-only run on an AVX-512
machine); a bad value is ignored with a warning."""

import os
import subprocess
import sys

import pytest

import fastconv as fc

pytestmark = pytest.mark.skipif(fc.available_backends()["c"] != "available",
                                reason="the C engine is not built")

PROBE = ("import warnings, numpy as np, fastconv as fc\n"
         "from fastconv.backends.c import pool\n"
         "with warnings.catch_warnings(record=True) as w:\n"
         "    warnings.simplefilter('always')\n"
         "    info = fc.cpu_info()\n"
         "x = np.ones((1, 4, 9, 9), np.float32)\n"
         "assert fc.conv2d(x, np.ones((4, 4, 3, 3), np.float32)).max() == 36\n"
         "print(info['gemm_kernel'], pool.isa_level(), len(w))\n")


def _run(value):
    env = dict(os.environ, FASTCONV_ISA=value)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split(), out.stderr


def test_portable_cap():
    (gemm, level, _), _ = _run("portable")
    assert (gemm, level) == ("portable", "portable")


def test_avx2_cap_where_the_cpu_has_it():
    best = fc.cpu_info()["gemm_kernel"]
    (gemm, level, _), _ = _run("AVX2")
    if best == "portable":
        assert gemm == "portable"
    else:
        assert gemm == "avx2" and level == "avx2"


def test_bad_value_is_ignored_with_a_warning():
    (gemm, level, _), err = _run("sse9")
    # as if unset (an empty value is): compared with a child, not with this process, whose
    # own FASTCONV_ISA may cap it (CI's AVX2-only pass)
    (unset_gemm, unset_level, _), _ = _run("")
    assert (gemm, level) == (unset_gemm, unset_level)
    assert "FASTCONV_ISA='sse9' is not one of" in err
