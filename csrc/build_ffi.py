"""cffi builder for fastconv's C engine (API mode).

setup.py names ``csrc/build_ffi.py:ffibuilder``; ``pip install .`` compiles every ``csrc/*.c``
into the extension module ``fastconv._fastconv_c``. The cdef is ``csrc/fastconv.h`` read
verbatim. No ``-march=native``: per-ISA micro-kernels carry ``__attribute__((target(...)))``
and are chosen at run time, so one build runs on any x86-64.

Run by hand: ``python csrc/build_ffi.py`` builds the module in place under ``fastconv/``.
"""

import os
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent


def _openmp_flags() -> tuple[list[str], list[str]]:
    if sys.platform == "darwin" or os.environ.get("FASTCONV_NO_OPENMP"):
        return [], []
    return ["-fopenmp"], ["-fopenmp"]


ffibuilder = FFI()
ffibuilder.cdef((HERE / "fastconv.h").read_text())

_omp_c, _omp_l = _openmp_flags()
ffibuilder.set_source(
    "fastconv._fastconv_c",
    '#include "fastconv.h"\n',
    sources=sorted(str(p.relative_to(HERE.parent)) for p in HERE.glob("*.c")),
    include_dirs=[str(HERE.relative_to(HERE.parent))],
    extra_compile_args=["-O3", "-std=c11", "-fno-strict-aliasing", *_omp_c],
    extra_link_args=[*_omp_l],
)

if __name__ == "__main__":
    os.chdir(HERE.parent)
    ffibuilder.compile(tmpdir=".", verbose=True)
