"""SciPy's output dtypes and its conversions of a computed value to the output dtype.

scipy.ndimage computes in double precision and stores with a C cast: floats round to the
output's precision, integers truncate toward zero and keep the low bits when the value is
out of range (300.0 -> uint8 44, -1.0 -> uint8 255), bool takes the truncated value's low
byte (0.7 -> False, 1.2 -> True). NumPy's ``astype`` from float64 is the same C cast, so
``ndimage_cast`` is ``astype`` with the warnings off; bool goes through uint8.

scipy.signal's direct path computes integer inputs in integer arithmetic, wrapping on
overflow (``integer_direct``); its FFT path rounds to nearest and then casts.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def ndimage_cast(dtype: np.dtype) -> Callable[[np.ndarray], np.ndarray]:
    """The conversion scipy.ndimage applies when storing a float result into ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return lambda v: v
    if dtype.kind == "b":

        def to_bool(v: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", over="ignore"):
                return np.asarray(v, np.float64).astype(np.uint8) != 0

        return to_bool

    def to_int(v: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):
            return np.asarray(v, np.float64).astype(dtype)

    return to_int


def round_cast(dtype: np.dtype) -> Callable[[np.ndarray], np.ndarray]:
    """scipy.signal's FFT path for integer results: round half to even, then cast."""
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return lambda v: v

    def to_int(v: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):
            return np.around(v).astype(dtype)

    return to_int


def integer_accumulator(dtype: np.dtype) -> np.dtype:
    """The exact accumulator of scipy.signal's integer arithmetic for result ``dtype``:
    64-bit of the same signedness (wrapping modulo 2**64 and then casting keeps the same
    low bits as wrapping at every step in the narrower type)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "u":
        return np.dtype(np.uint64)
    if dtype.kind == "i":
        return np.dtype(np.int64)
    return dtype


def compute_dtype(*dtypes: np.dtype) -> np.dtype:
    """The dtype the fast engines compute in: single precision (float32 / complex64) when
    every input is float16, float32 or complex64 (as scipy.fft transforms them), double
    otherwise (any integer input, as scipy.fft turns integers into float64)."""
    kinds = {np.dtype(d).kind for d in dtypes}
    single = all(np.dtype(d) in (np.float32, np.float16, np.complex64) for d in dtypes)
    if "c" in kinds:
        return np.dtype(np.complex64 if single else np.complex128)
    return np.dtype(np.float32 if single else np.float64)
