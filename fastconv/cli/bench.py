"""`fastconv bench`: time fastconv's engines on real network layers against NumPy and torch."""

from __future__ import annotations

import argparse
import os
import sys
import time

HELP = "time the engines on real network layers against NumPy and PyTorch"

_EPILOG = """\
Every engine's output is checked against the float64 reference before it is timed; a
mismatch shows as WRONG and is not timed. Timing: one warm-up call (JIT, caches), then
interleaved samples of every engine and baseline, median. Defaults: the quick suite, the
engines c and numba where available, the NumPy baseline and torch when installed.

examples:
  fastconv bench
  fastconv bench --suite resnet50 --threads 1 --json out.json --plot out.png
  fastconv bench --ops depthwise pool --engines c --repeat 15
  fastconv bench --model resnet50
"""


def _names(values):
    """Accept both `--ops a b` and `--ops a,b`."""
    if values is None:
        return None
    return [v for item in values for v in item.split(",") if v]


def _positive(text: str) -> int:
    from ._args import int_at_least

    return int_at_least(1)(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..benchmark.layers import OP_GROUPS, OPS, SUITES

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument(
        "--suite",
        default="quick",
        choices=list(SUITES),
        help="layer suite: " + "; ".join(f"{k}: {v}" for k, v in SUITES.items()),
    )
    parser.add_argument(
        "--ops",
        nargs="+",
        metavar="OP",
        help=f"only these ops: {', '.join(OPS)}, or the groups {', '.join(OP_GROUPS)}",
    )
    parser.add_argument(
        "--engines",
        nargs="+",
        metavar="ENGINE",
        help="fastconv engines to time (c, numba, reference, cuda); default: c and numba "
        "where available",
    )
    parser.add_argument(
        "--baselines",
        nargs="+",
        metavar="NAME",
        help="comparators: numpy, torch, or none; default: numpy, and torch when installed",
    )
    parser.add_argument(
        "--threads",
        type=_positive,
        metavar="N",
        help="threads for fastconv, NumPy's BLAS and torch (default: all cores)",
    )
    parser.add_argument(
        "--repeat",
        type=_positive,
        default=7,
        metavar="R",
        help="timed samples per engine and layer; the median is shown "
        "(default 7; fewer, at least 3, for very slow baselines)",
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE as JSON")
    parser.add_argument(
        "--plot", metavar="FILE.png", help="bar chart of speed-ups over NumPy (needs matplotlib)"
    )
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="also time a whole forward pass of a fastconv.models network "
        "(resnet50) per engine and against torch",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the layers the selection would run, and exit"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args) -> int:
    from .. import benchmark as B
    from ..benchmark.layers import expand_ops, select
    from ._args import check_writable

    started = time.perf_counter()
    ops = expand_ops(_names(args.ops)) if args.ops else None
    cases = select(args.suite, ops)
    if args.list:
        for c in cases:
            print(f"{c.name:40s} {c.describe()}")
        return 0
    engines = B.resolve_engines(_names(args.engines))
    baselines = B.resolve_baselines(_names(args.baselines))
    if args.model is not None and args.model not in B.MODELS:
        raise ValueError(f"unknown model {args.model!r}; choose from {', '.join(B.MODELS)}")
    if args.plot:
        if not args.plot.lower().endswith(".png"):
            raise ValueError(
                f"--plot writes a PNG file; give a name ending in .png, got {args.plot!r}"
            )
        B.require_matplotlib()
    # fail now, not after the whole run, if an output cannot be written
    if args.json:
        check_writable(args.json, "--json")
    if args.plot:
        check_writable(args.plot, "--plot")
        if args.json and os.path.realpath(args.json) == os.path.realpath(args.plot):
            raise ValueError(f"--json and --plot name the same file {args.json!r}")
    if not cases and args.model is None:
        raise ValueError(f"no layer of suite {args.suite!r} has the ops {', '.join(ops or ())}")
    if not engines:
        print(
            "note: no compiled engine (c, numba) is available here; timing the baselines "
            "only (see `fastconv backends`)",
            file=sys.stderr,
        )
    progress = None if args.quiet else sys.stderr
    report = B.run_suite(
        cases, engines, baselines, args.dtype, args.repeat, args.threads, progress, args.suite
    )
    if args.model is not None:
        report["model"] = B.bench_model(
            args.model, engines, baselines, args.dtype, args.repeat, progress
        )
    report["elapsed_s"] = time.perf_counter() - started
    print(B.format_report(report))
    # each output on its own: one that fails (the disk filled up, say) does not stop the other
    failed = 0
    outputs = (("--json", args.json, B.write_json), ("--plot", args.plot, B.plot))
    for option, path, write in outputs:
        if not path:
            continue
        try:
            write(report, path)
        except (OSError, ValueError) as exc:
            print(f"fastconv bench: error: {option} {path!r} could not be written: {exc}",
                  file=sys.stderr)
            failed += 1
        else:
            print(f"wrote {path}")
    return 2 if failed else 0
