"""`fastconv backends`: which engines run here, and why the others do not."""

from __future__ import annotations

HELP = "list the engines and why any is unavailable"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    from . import available_backends

    for name, reason in available_backends().items():
        print(f"{name:10s} {reason}")
    return 0
