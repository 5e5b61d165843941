"""Checking: every runner's output against the float64 reference, before it is timed.

  expected  the expected output of a case, in float64: the reference engine, or torch in
            float64 for layers over ``REF_MAX_MACS`` multiply-adds when torch is installed
  check     shape, dtype, finiteness, and the largest error relative to the largest expected
            magnitude against ``TOLERANCE``; a mismatch is "WRONG: why" and is not timed

The comparison is like with like: the float64 reference is fed the very float32 inputs the
runner got, cast up, so the only difference left is the runner's own rounding.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from .baselines import run_fastconv, run_torch
from .layers import Case

#: Layers with more multiply-adds than this are checked against torch in float64 (when
#: installed) instead of the slower reference engine.
REF_MAX_MACS = 10**9
#: Largest error, relative to the largest expected magnitude, accepted per dtype.
TOLERANCE = {"float32": 1e-3, "float64": 1e-9}


def expected(case: Case, arrays: Dict[str, np.ndarray], use_torch: bool) -> Tuple[np.ndarray, str]:
    """(float64 output, what computed it)."""
    a64 = {k: v.astype(np.float64) for k, v in arrays.items()}
    if case.macs > REF_MAX_MACS and use_torch:
        return run_torch(case, a64), "torch float64"
    return run_fastconv(case, a64, "reference"), "reference float64"


def check(y: Any, ref: np.ndarray, dtype: np.dtype) -> Tuple[str, Optional[float]]:
    """(status, error): status "ok" or "WRONG: why"; error = max|y - ref| / max|ref|."""
    if not isinstance(y, np.ndarray):
        return f"WRONG: returned {type(y).__name__}", None
    if y.shape != ref.shape:
        return f"WRONG: shape {y.shape}, expected {ref.shape}", None
    if y.dtype != dtype:
        return f"WRONG: dtype {y.dtype}, expected {dtype}", None
    if not np.all(np.isfinite(y)):
        return "WRONG: non-finite values", None
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    err = float(np.max(np.abs(y.astype(np.float64) - ref))) / max(scale, 1e-30) if ref.size else 0.0
    if err > TOLERANCE[dtype.name]:
        return f"WRONG: error {err:.1e}", err
    return "ok", err
