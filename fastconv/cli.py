"""The ``fastconv`` command. Each subcommand lives in its own module ``fastconv._cmd_<name>``
exposing ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``; a
subcommand whose module is missing is simply not offered.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from typing import Callable, List, Optional

from ._shapes import MAX_PARAM

SUBCOMMANDS = ("bench", "demo", "summary", "rf", "erf", "backends")


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer written in ASCII digits (an optional sign), at least
    ``minimum``; argparse's message then names the option."""

    def parse(text: str) -> int:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        t = text.strip()
        digits = t[1:] if t[:1] in ("+", "-") else t
        if not (digits.isascii() and digits.isdigit()):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        value = int(t)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        if value > MAX_PARAM:
            raise argparse.ArgumentTypeError(f"{value} is too large (at most {MAX_PARAM})")
        return value

    return parse


def check_writable(path: str, option: str) -> None:
    """Raise ValueError naming ``option`` now, before a long run, if ``path`` cannot be
    written: its folder is missing, it names a folder, or the folder or file is not
    writable. Leaves nothing behind (an existing file is opened for appending and closed
    untouched; a new one is tried as a temporary file in its folder, then removed)."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"{option} needs a file name, got {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"{option} {path!r} is a folder, not a file name")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise ValueError(f"{option} {path!r}: folder {folder!r} does not exist")
    try:
        if os.path.exists(path):
            with open(path, "a"):
                pass
        else:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".fastconv-check-"):
                pass
    except OSError as exc:
        raise ValueError(f"{option} {path!r} cannot be written: {exc.strerror or exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastconv",
        description="fastconv: fast convolution and pooling kernels for NumPy arrays.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"fastconv._cmd_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"fastconv._cmd_{name}":
                raise
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError as exc:
        detail = str(exc)
        print(f"fastconv {args.command}: error: out of memory"
              + (f": {detail}" if detail else ""), file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as exc:
        print(f"fastconv {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
