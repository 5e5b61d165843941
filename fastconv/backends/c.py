"""C engine: ndarray -> cffi pointers -> ``lib.fc_*`` kernels compiled from csrc/.

Unavailable (with the reason) when the compiled extension ``fastconv._fastconv_c`` is missing,
e.g. in a source tree that was never built: run ``pip install -e .``.
"""

from __future__ import annotations

ABI_VERSION = 1

try:
    from .._fastconv_c import ffi, lib  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the build
    AVAILABLE_REASON = f"unavailable: compiled extension not built ({exc}); run `pip install -e .`"
else:
    if lib.fc_abi_version() != ABI_VERSION:  # pragma: no cover
        AVAILABLE_REASON = (
            f"unavailable: extension ABI {lib.fc_abi_version()} != {ABI_VERSION}; rebuild it"
        )
    else:
        AVAILABLE_REASON = "available"

if AVAILABLE_REASON == "available":
    from ._c_pool import *  # noqa: E402,F401,F403  (depthwise, separable and pooling kernels)
