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


# Every op family of the C engine once, float32 and float64, strides 1 and 2, under the cap.
WORKLOAD = """
import numpy as np, fastconv as fc
rng = np.random.default_rng(0)
for dt in (np.float32, np.float64):
    r = lambda *s: rng.standard_normal(s).astype(dt)
    x = r(2, 40, 20, 20)
    for s in (1, 2):
        fc.conv2d(x, r(48, 40, 3, 3), r(48), stride=s, padding=1)
        fc.conv2d(x, r(48, 40, 1, 1), stride=s)
        fc.conv2d(x, r(40, 5, 3, 3), stride=s, padding=1, groups=8)
        fc.conv2d(x, r(8, 40, 3, 3), stride=s, padding=2, dilation=2)
        fc.fused.conv2d(x, r(48, 40, 3, 3), stride=s, padding=1, activation="relu")
        fc.depthwise_conv2d(x, r(40, 1, 3, 3), stride=s, padding=1)
        fc.separable_conv2d(x, r(40, 1, 3, 3), r(24, 40, 1, 1), stride=s, padding=1)
        fc.conv_transpose2d(x, r(40, 16, 3, 3), stride=s, padding=1)
        fc.max_pool2d(x, 3, s, 1); fc.avg_pool2d(x, 3, s, 1)
    fc.conv2d(r(1, 3, 64, 64), r(16, 3, 7, 7), stride=2, padding=3)
    fc.conv2d(r(1, 64, 16, 16), r(64, 64, 3, 3), padding=1)  # Winograd
    fc.adaptive_avg_pool2d(x, 1); fc.adaptive_avg_pool2d(x, 3); fc.adaptive_max_pool2d(x, 3)
    fc.conv1d(r(2, 8, 50), r(4, 8, 5), padding=2)
print("workload done")
"""

GDB_SCRIPT = """
import gdb
hits = []
class Hit(gdb.Breakpoint):
    def stop(self):
        hits.append(self.location)
        return False
gdb.execute("set breakpoint pending on")
gdb.execute("set pagination off")
for name in open({names!r}).read().split():
    Hit(name, internal=True)
gdb.execute("run")
print("AVX512-HITS", sorted(set(hits)))
"""


def _zmm_functions(so):
    """Names of the functions of ``so`` whose code uses a 512-bit register."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", so], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    names, current = set(), None
    for line in out.splitlines():
        if line.endswith(">:") and "<" in line:
            current = line[line.index("<") + 1:-2]
        elif current and "%zmm" in line:
            names.add(current)
    return sorted(n for n in names if "@" not in n)


@pytest.mark.skipif(sys.platform != "linux", reason="gdb and objdump on Linux")
def test_avx2_cap_runs_no_avx512_code(tmp_path):
    # FASTCONV_ISA=avx2 on an AVX-512 machine: no function holding 512-bit code runs (a
    # breakpoint on each, every op family once). An ifunc (GCC's target_clones) picked its
    # clone by the CPU alone and ran AVX-512 code under the cap: found by a review.
    import shutil

    from fastconv import _fastconv_c

    if fc.cpu_info().get("gemm_kernel") != "avx512":
        pytest.skip("the CPU has no AVX-512")
    if not (shutil.which("gdb") and shutil.which("objdump")):
        pytest.skip("gdb or objdump not installed")
    names = _zmm_functions(_fastconv_c.__file__)
    assert any("avx512" in n for n in names)  # the search finds the AVX-512 kernels
    (tmp_path / "names").write_text("\n".join(names))
    (tmp_path / "check.py").write_text(GDB_SCRIPT.format(names=str(tmp_path / "names")))
    (tmp_path / "work.py").write_text(WORKLOAD)
    env = dict(os.environ, FASTCONV_ISA="avx2", FASTCONV_NUM_THREADS="2")
    out = subprocess.run(["gdb", "-q", "-batch", "-x", str(tmp_path / "check.py"), "--args",
                          sys.executable, str(tmp_path / "work.py")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert "workload done" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    hits = [ln for ln in out.stdout.splitlines() if ln.startswith("AVX512-HITS")]
    assert hits == ["AVX512-HITS []"], hits
