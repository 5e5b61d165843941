"""`fastconv rf MODEL`: receptive field, jump, start and effective padding of every layer."""

from __future__ import annotations

import json
from dataclasses import asdict

HELP = "receptive field, jump and start of every layer of a model (e.g. vgg16)"


def add_arguments(parser) -> None:
    from ..models import MODELS

    parser.add_argument("model", help=f"one of: {', '.join(MODELS)}")
    parser.add_argument("--input", default="3x224x224", metavar="CxHxW",
                        help="input shape without the batch (default 3x224x224)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    from ..analysis.accounting import parse_input_shape
    from ..analysis.receptive_field import receptive_field
    from ..models import get_model

    shape = parse_input_shape(args.input, "--input")
    if len(shape) != 3:
        raise ValueError(f"--input must be CxHxW (e.g. 3x224x224), got {args.input!r}")
    rf = receptive_field(get_model(args.model, initialize=False), shape)
    if args.json:
        print(json.dumps({
            "model": args.model, "input_shape": list(shape),
            "layer": rf.layer.name if rf.layer else None,
            "size": rf.size, "jump": rf.jump, "start": rf.start, "padding": rf.padding,
            "layers": [dict(asdict(r), padding=r.padding) for r in rf.layers],
        }, indent=1))
    else:
        print(f"{args.model} at {'x'.join(map(str, shape))}")
        print(rf)
    return 0
