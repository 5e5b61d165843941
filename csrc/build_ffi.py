"""cffi builder for fastconv's C engine (API mode).

setup.py names ``csrc/build_ffi.py:ffibuilder``; ``pip install .`` compiles every ``csrc/*.c``
(each includes ``csrc/common.h``) into the extension module ``fastconv._fastconv_c``. The cdef
is ``csrc/fastconv.h`` read verbatim. No ``-march=native``: per-ISA micro-kernels carry
``__attribute__((target(...)))`` and are chosen at run time, so one build runs on any x86-64.

Environment variables read at build time:

- ``FASTCONV_DEBUG=1``: a debug build. It defines ``FASTCONV_DEBUG``, which turns every
  ``FC_ASSERT`` (the kernels' written preconditions: positive shapes, strides >= 1, chunk and
  index ranges, workspace sizes) into a check that aborts with the violated condition.
  Rebuild without it afterwards: the checks cost time.
- ``FASTCONV_NO_OPENMP=1``: build without OpenMP. Only capsule.c and probe.c use OpenMP
  threads (they then run on one thread); the convolution, depthwise and pooling kernels run
  on fastconv's own thread pool (parallel.c, POSIX threads) either way, so their speed does
  not depend on which libgomp the process has loaded (torch ships its own).
- ``FASTCONV_SANITIZE=1``: build with AddressSanitizer and UndefinedBehaviorSanitizer
  (``-fsanitize=address,undefined``, no recovery); the library then needs libasan preloaded
  into Python. ``scripts/sanitize.sh`` does all of it in a copy of the tree.

Run by hand: ``python csrc/build_ffi.py`` rebuilds the module in place under ``fastconv/``
(for an editable install). It compiles in a temporary folder, then renames the library into
place, so processes that already loaded the old one keep running; concurrent rebuilds are
serialised by a lock file.
"""

import os
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent


def _openmp_flags() -> tuple[list[str], list[str]]:
    if sys.platform == "darwin":
        return [], []
    if os.environ.get("FASTCONV_NO_OPENMP"):
        return ["-fopenmp-simd"], []  # the `omp simd` hints still apply, without libgomp
    return ["-fopenmp"], ["-fopenmp"]


def _thread_flags() -> list[str]:
    """POSIX threads for parallel.c (part of libc on current glibc, a library elsewhere)."""
    return [] if sys.platform == "win32" else ["-pthread"]


def make_builder(absolute: bool = False) -> FFI:
    """The cffi builder; ``absolute`` paths for builds run outside the repository root."""
    root = HERE.parent
    rel = (lambda p: str(p)) if absolute else (lambda p: str(p.relative_to(root)))
    omp_c, omp_l = _openmp_flags()
    debug = [("FASTCONV_DEBUG", "1")] if os.environ.get("FASTCONV_DEBUG") == "1" else []
    san = (["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer", "-g"]
           if os.environ.get("FASTCONV_SANITIZE") == "1" else [])
    builder = FFI()
    builder.cdef((HERE / "fastconv.h").read_text())
    builder.set_source(
        "fastconv._fastconv_c",
        '#include "fastconv.h"\n',
        sources=sorted(rel(p) for p in HERE.glob("*.c")),
        depends=sorted(rel(p) for p in HERE.glob("*.h")),
        include_dirs=[rel(HERE)],
        define_macros=debug,
        extra_compile_args=["-O3", "-std=c11", "-fno-strict-aliasing", "-Wpointer-arith",
                            *omp_c, *san, *_thread_flags()],
        extra_link_args=[*omp_l, *san, *_thread_flags()],
    )
    return builder


ffibuilder = make_builder()


def _rebuild_in_place() -> None:
    import fcntl
    import shutil
    import tempfile

    root = HERE.parent
    os.chdir(root)
    with open(tempfile.gettempdir() + "/fastconv-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tmp = tempfile.mkdtemp(prefix="fastconv-build-")
        try:
            built = make_builder(absolute=True).compile(tmpdir=tmp, verbose=False)
            target = root / "fastconv" / Path(built).name
            staged = target.with_suffix(".new")
            shutil.copy2(built, staged)
            os.replace(staged, target)
            for other in (root / "fastconv").glob("_fastconv_c*.so"):
                if other != target:
                    other.unlink()
            print(f"built {target}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    _rebuild_in_place()
