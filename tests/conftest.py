"""Shared test set-up: CUDA simulator without a GPU, poisoned outputs, the engine list."""

import os

# Without a GPU, the CUDA engine runs in Numba's simulator; this must be set before
# numba.cuda is imported anywhere.
if not os.path.exists("/dev/nvidia0"):
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
# Every output the public functions allocate starts as NaN (ints as -7): a kernel that
# forgets to write an element fails the comparisons.
os.environ.setdefault("FASTCONV_POISON", "1")

import pytest  # noqa: E402
from _cases import available_engines  # noqa: E402

import fastconv.backends._registry

fastconv.backends._registry.POISON = True  # in case fastconv was imported before the variable was set
ENGINES = available_engines()


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


@pytest.fixture
def restore_threads():
    """Put fastconv's thread setting back as it was after a test that changes it."""
    import fastconv as fc
    from fastconv.backends import _registry

    before = _registry._num_threads
    yield
    _registry._num_threads = before
    fc.set_num_threads(fc.get_num_threads())
