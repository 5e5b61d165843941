"""The ``fastconv`` command. Each subcommand lives in its own module ``fastconv.cli.<name>``
exposing ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``; a
subcommand whose module is missing is simply not offered. ``fastconv --version`` prints
``fastconv.__version__``.

Errors: an option's own message names the option ("argument --engines: ..."); any other
ValueError, TypeError or OSError of a run is printed as "fastconv COMMAND: error: ..." with
exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

SUBCOMMANDS = ("bench", "demo", "summary", "rf", "erf", "backends", "predict")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="fastconv",
        description="fastconv: fast convolution and pooling kernels for NumPy arrays.",
    )
    parser.add_argument(
        "--version", action="version", version=f"fastconv {__version__}",
        help="print fastconv's version and exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"fastconv.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"fastconv.cli.{name}":
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
