"""`fastconv summary MODEL`: per-layer shapes, parameters, MACs and receptive fields."""

from __future__ import annotations

import json

HELP = "per-layer parameters, MACs and receptive fields of a model (e.g. resnet50)"


def add_arguments(parser) -> None:
    from ..models import MODELS
    from ._args import int_at_least

    parser.add_argument("model", help=f"one of: {', '.join(MODELS)}")
    parser.add_argument("--input", default="3x224x224", metavar="CxHxW",
                        help="input shape without the batch (default 3x224x224)")
    parser.add_argument("--batch", type=int_at_least(1), default=1,
                        help="batch size N (default 1)")
    parser.add_argument("--flops", action="store_true", help="count FLOPs (2 per MAC)")
    parser.add_argument("--bias", action="store_true", help="count bias adds")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    from ..analysis.accounting import parse_input_shape
    from ..analysis.summary import summary
    from ..models import get_model

    shape = parse_input_shape(args.input, "--input")
    if len(shape) != 3:
        raise ValueError(f"--input must be CxHxW (e.g. 3x224x224), got {args.input!r}")
    model = get_model(args.model, initialize=False)  # zero-filled: no memory touched
    s = summary(model, shape, batch=args.batch, flops=args.flops, bias=args.bias,
                name=args.model)
    print(json.dumps(s.to_dict(), indent=1) if args.json else s)
    return 0
