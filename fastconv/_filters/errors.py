"""Exception classes for the SciPy-compatible faces.

SciPy raises RuntimeError for some invalid arguments of scipy.ndimage (a weight array of
the wrong rank, an unknown mode, an output of the wrong shape or type) and IndexError or
ZeroDivisionError in a few corners. fastconv's rule is that an invalid argument raises
ValueError or TypeError naming the parameter; these classes derive from both, so that code
catching SciPy's class and code catching fastconv's keep working.
"""

from __future__ import annotations


class ArgumentRuntimeError(ValueError, RuntimeError):
    """An invalid argument where SciPy raises RuntimeError."""


class ArgumentIndexError(ValueError, IndexError):
    """An invalid argument where SciPy raises IndexError."""


class ArgumentZeroDivisionError(ValueError, ZeroDivisionError):
    """An invalid argument where SciPy raises ZeroDivisionError (a zero sigma)."""


try:  # numpy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover - older numpy
    from numpy import AxisError  # type: ignore[attr-defined,no-redef]

#: numpy's AxisError (a ValueError and an IndexError), which SciPy raises for a bad axis.
__all__ = ["ArgumentIndexError", "ArgumentRuntimeError", "ArgumentZeroDivisionError", "AxisError"]
