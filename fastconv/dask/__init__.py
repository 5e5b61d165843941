"""fastconv on dask: every op on dask arrays, and exact tiled inference of whole networks.

fastconv runs on dask; it has no scheduler of its own. Install with
``pip install "fastconv[dask]"`` (dask[array], distributed, zarr).

- The public ops (``fastconv.conv2d``, every pool, ``fastconv.grad.*``) take a
  ``dask.array.Array`` and return a lazy one, with the same signature, results and errors
  (:mod:`fastconv.dask.ops`, where the per-op halos are explained).
- :func:`predict` runs a fully convolutional :mod:`fastconv.nn` model over an image larger
  than memory, tile by tile, each tile with the halo its receptive field needs, and returns
  a lazy dask array equal to the untiled forward pass (:mod:`fastconv.dask.tiling`).

See docs/dask.md. ``import fastconv`` never imports dask: this package loads on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

try:
    import dask.array  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without dask installed
    raise ImportError(
        f"fastconv.dask needs dask[array] ({exc}); install it with: pip install \"fastconv[dask]\""
    ) from None

__all__ = ["ops", "predict", "tiling"]


def __getattr__(name: str) -> Any:
    if name == "predict":
        from .tiling import predict

        return predict
    if name in ("ops", "tiling"):
        return importlib.import_module(f"{__name__}.{name}")
    ops = importlib.import_module(f"{__name__}.ops")
    if name in ops.__all__:
        return getattr(ops, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    from . import ops

    return sorted(set(__all__) | set(ops.__all__))
