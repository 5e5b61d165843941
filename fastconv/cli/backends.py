"""`fastconv backends`: which engines run here, and why the others do not."""

from __future__ import annotations

HELP = "list the engines and why any is unavailable"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    from ..backends._registry import available_backends, support_matrix

    info = available_backends()
    for name, reason in info.items():
        print(f"{name:10s} {reason}")
    print()
    names = list(info)
    print(f"{'kernel':30s}" + "".join(f"{n:>11s}" for n in names))
    for kernel, row in support_matrix().items():
        print(f"{kernel:30s}" + "".join(f"{'yes' if row[n] else '-':>11s}" for n in names))
    return 0
