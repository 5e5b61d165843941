"""`fastconv bench`: time fastconv's engines on real network layers against NumPy and torch.

Each layer's table is printed (stdout) as soon as the layer is done; progress, an estimate of
the time left and numba's first-run compilation go to stderr. Option errors name the option
(argparse: "argument --engines: ..."); the run itself is ``fastconv.benchmark.run``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional

HELP = "time the engines on real network layers against NumPy and PyTorch"

_EPILOG = """\
Every engine's output is checked against the float64 reference before it is timed; a
mismatch shows as WRONG and is not timed. Timing: one warm-up call, then interleaved
samples of every engine and baseline, median. Defaults: the quick suite, the engines c and
numba where available, the NumPy baseline and torch when installed. Each layer's table is
printed as soon as it is done.

How long: the quick suite takes about 6 s on a quiet 2-core machine (12 layers, at most about
4 s of timing each; longer on a busy machine). The first run on a machine also compiles the
numba engine's kernels, once: about 12 s more (17 s in all, measured), said on stderr when it
happens; later runs load them from numba's cache. --model alone times only the model (under
a minute for resnet50 with torch; without torch its float64 reference runs on the slower
reference engine).

examples:
  fastconv bench
  fastconv bench --suite resnet50 --threads 1 --json out.json --plot out.png
  fastconv bench --ops depthwise pool --engines c --repeat 15
  fastconv bench --model resnet50
  fastconv bench --model mobilenet_v2 --batch 1 8 --engines c
  fastconv bench --model resnet18 --input 3x64x64 --engines c
  fastconv bench --suite filters --size 1024 --threads 1 --repeat 3
"""


def _split(text: str) -> List[str]:
    """Accept both `--ops a b` and `--ops a,b`: argparse gives each item, maybe "a,b"."""
    return [v for v in text.split(",") if v]


def _op_names(text: str) -> List[str]:
    from ..benchmark.layers import OP_GROUPS, OPS

    names = _split(text)
    for name in names:
        if name not in OPS and name not in OP_GROUPS:
            raise argparse.ArgumentTypeError(
                f"unknown op {name!r}; choose from {', '.join(OPS + tuple(OP_GROUPS))}"
            )
    return names


def _engine_names(text: str) -> List[str]:
    import fastconv

    avail = fastconv.available_backends()
    names = _split(text)
    for name in names:
        if name not in avail:
            raise argparse.ArgumentTypeError(
                f"unknown engine {name!r}; choose from {', '.join(avail)}"
            )
        if not avail[name].startswith("available"):
            raise argparse.ArgumentTypeError(f"engine {name!r} is {avail[name]}")
    return names


def _baseline_names(text: str) -> List[str]:
    from ..benchmark.baselines import BASELINES, torch_installed

    names = _split(text)
    for name in names:
        if name != "none" and name not in BASELINES:
            raise argparse.ArgumentTypeError(
                f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}, none"
            )
        if name == "torch" and not torch_installed():
            raise argparse.ArgumentTypeError(
                "baseline 'torch' needs PyTorch, which is not installed"
            )
    return names


def _model_name(text: str) -> str:
    from ..benchmark.models import model_names

    names = model_names()
    if text not in names:
        raise argparse.ArgumentTypeError(
            f"unknown model {text!r}; choose from {', '.join(names)}"
        )
    return text


def _input_shape(text: str):
    from ..analysis.accounting import parse_input_shape

    try:
        shape = parse_input_shape(text, "--input")
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("--input ", "", 1)) from None
    if len(shape) != 3:
        raise argparse.ArgumentTypeError(f"expected C x H x W, e.g. 3x224x224, got {text!r}")
    return (1,) + shape


def _positive(text: str) -> int:
    from ._args import int_at_least

    return int_at_least(1)(text)


def _flat(values: Optional[List[List[str]]]) -> Optional[List[str]]:
    return None if values is None else [v for item in values for v in item]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..benchmark.layers import OP_GROUPS, OPS, SUITES

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument(
        "--suite",
        choices=list(SUITES) + ["filters"],
        help="layer suite (default quick; with --model alone, none): "
        + "; ".join(f"{k}: {v}" for k, v in SUITES.items())
        + "; filters: fastconv.ndimage / fastconv.signal against SciPy and OpenCV on one "
        "float32 image (--size; the SciPy / OpenCV columns where installed)",
    )
    parser.add_argument(
        "--size",
        type=_positive,
        default=4096,
        metavar="N",
        help="--suite filters: the image side (default 4096)",
    )
    parser.add_argument(
        "--ops",
        nargs="+",
        type=_op_names,
        metavar="OP",
        help=f"only these ops: {', '.join(OPS)}, or the groups {', '.join(OP_GROUPS)}",
    )
    parser.add_argument(
        "--engines",
        nargs="+",
        type=_engine_names,
        metavar="ENGINE",
        help="fastconv engines to time (c, numba, reference, cuda); default: c and numba "
        "where available",
    )
    parser.add_argument(
        "--baselines",
        nargs="+",
        type=_baseline_names,
        metavar="NAME",
        help="comparators: numpy, torch, or none; default: numpy, and torch when installed",
    )
    parser.add_argument(
        "--threads",
        type=_positive,
        metavar="N",
        help="threads for fastconv, NumPy's BLAS and torch (default: all cores; 1 gives "
        "steadier figures on a busy machine)",
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
        type=_model_name,
        metavar="NAME",
        help="time a whole forward pass of a fastconv.models network (alexnet, vgg16, "
        "resnet18, resnet50, mobilenet_v2, ...) per engine, and in torch (eager, "
        "inference_mode) for the classifiers; in inference mode fastconv.nn fuses "
        "conv + batch norm + ReLU and residual adds; alone it runs no layer suite (add "
        "--suite or --ops for both)",
    )
    parser.add_argument(
        "--input",
        type=_input_shape,
        metavar="CxHxW",
        help="--model's input without the batch, e.g. 3x64x64 (default 3x224x224)",
    )
    parser.add_argument(
        "--batch",
        type=_positive,
        nargs="+",
        metavar="N",
        help="--model's batch sizes, one timed forward pass each (default 1), e.g. --batch 1 8",
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
    if args.suite == "filters":
        return _run_filters(args)
    ops = expand_ops(_flat(args.ops)) if args.ops else None
    with_suite = args.model is None or args.suite is not None or ops is not None
    suite = (args.suite or "quick") if with_suite else ""
    cases = select(suite, ops) if with_suite else ()
    if args.list:
        for c in cases:
            print(f"{c.name:40s} {c.describe()}")
        return 0
    if args.input is not None and args.model is None:
        raise ValueError("--input is the input of --model; give --model NAME too")
    if args.batch is not None and args.model is None:
        raise ValueError("--batch is the batch of --model; give --model NAME too")
    engines = B.resolve_engines(_flat(args.engines))
    baselines = B.resolve_baselines(_flat(args.baselines))
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
    if with_suite and not cases:
        raise ValueError(f"--ops: no layer of suite {suite!r} has the ops {', '.join(ops or ())}")
    if not engines:
        print(
            "note: no compiled engine (c, numba) is available here; timing the baselines "
            "only (see `fastconv backends`)",
            file=sys.stderr,
        )
    progress = None if args.quiet else sys.stderr

    def show(lines) -> None:
        print("\n".join(lines), flush=True)

    report = B.run(
        cases,
        engines,
        baselines,
        args.dtype,
        args.repeat,
        args.threads,
        progress,
        suite,
        model=args.model,
        input_shape=args.input or B.INPUT,
        batches=tuple(args.batch or ()),
        on_start=lambda rep: show(B.format_header(rep)),
        on_case=lambda rec: show(B.format_case(rec)),
    )
    report["elapsed_s"] = time.perf_counter() - started
    show(B.format_footer(report))
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


def _run_filters(args) -> int:
    """`--suite filters`: the table of fastconv.benchmark.filters (the layer options do not
    apply to it)."""
    import json

    from ..benchmark.filters import run_suite
    from ._args import check_writable

    for option in ("ops", "engines", "baselines", "model", "input", "plot"):
        if getattr(args, option) is not None:
            raise ValueError(f"--{option} does not apply to --suite filters")
    if args.dtype != "float32":
        raise ValueError("--suite filters times float32 images only (--dtype)")
    if args.json:
        check_writable(args.json, "--json")
    if args.list:
        from ..benchmark.filters import KERNELS, SIGMAS

        for k in KERNELS:
            print(f"correlate {k}x{k}")
        for sg in SIGMAS:
            print(f"gaussian sigma {sg}")
        return 0
    threads = args.threads or os.cpu_count() or 1
    res = run_suite(args.size, threads, args.repeat, slow_ok=True, cpu=False, log=print)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
        print(f"wrote {args.json}")
    return 0
