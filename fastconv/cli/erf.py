"""`fastconv erf MODEL`: effective receptive field of the centre output element, as numbers
and (with --out) a heatmap with the theoretical receptive field outlined."""

from __future__ import annotations

import json

HELP = "effective receptive field (|d out/d x| map) of a zoo model or a built-in conv stack"


def add_arguments(parser) -> None:
    from ..models import MODELS
    from ._args import int_at_least

    parser.add_argument(
        "model",
        help=f"a zoo model ({', '.join(MODELS)}; cut before its global pooling, random "
             "weights) or a built-in stack linear:L | plain:L | residual:L (see docs/erf.md)")
    parser.add_argument("--input", default=None, metavar="CxHxW",
                        help="input shape without the batch (default 3x224x224 for zoo "
                             "models, 3xSxS with S = 4L + 16 for stacks)")
    parser.add_argument("--channels", type=int_at_least(1), default=32,
                        help="feature maps of a built-in stack (default 32)")
    parser.add_argument("--position", default=None, metavar="OH,OW",
                        help="output element (default the centre OH//2, OW//2)")
    parser.add_argument("--channel", type=int_at_least(0), default=None,
                        help="one output channel (default: the sum over all of them)")
    parser.add_argument("--samples", type=int_at_least(1), default=16,
                        help="random N(0, 1) inputs the map is summed over (default 16: "
                             "one input gives a speckled map and a ratio 30-50%% too low)")
    parser.add_argument("--seed", type=int_at_least(0), default=0,
                        help="weights and inputs (default 0)")
    parser.add_argument("--backend", default="auto", help="engine (default auto)")
    parser.add_argument("--out", default=None, metavar="PNG",
                        help="draw the map to this file (needs matplotlib)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _model(name: str, channels: int, in_channels: int, seed: int):
    import numpy as np

    from ..analysis import erf
    from ..models import MODELS, get_model, model_key

    if ":" in name:
        return erf.build(name, channels=channels, in_channels=in_channels, generator=seed,
                         dtype=np.float32)
    try:
        key = model_key(name)  # the names and aliases `fastconv summary` accepts
    except ValueError:
        raise ValueError(f"model must be one of {', '.join(MODELS)} or linear:L, plain:L, "
                         f"residual:L; got {name!r}") from None
    return erf.spatial_trunk(get_model(key, generator=seed))


def _position(text: str):
    parts = text.replace("x", ",").split(",")
    if len(parts) != 2 or not all(p.strip().isascii() and p.strip().isdigit() for p in parts):
        raise ValueError(f"--position must be OH,OW (two whole numbers), got {text!r}")
    return int(parts[0]), int(parts[1])


def run(args) -> int:
    from ..analysis import erf
    from ..analysis.accounting import parse_input_shape
    from ._args import check_writable

    shape: tuple
    if args.input is None:
        if ":" in args.model:
            depth = args.model.partition(":")[2]
            ok = depth.isascii() and depth.isdigit() and len(depth) < 6
            side = 4 * int(depth) + 16 if ok else 64
            shape = (3, side, side)
        else:
            shape = (3, 224, 224)
    else:
        shape = parse_input_shape(args.input, "--input")
    if len(shape) != 3:
        raise ValueError(f"--input must be CxHxW, got {args.input!r}")
    position = None if args.position is None else _position(args.position)
    if args.out is not None:  # fail before the work if the plot cannot be drawn
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--out needs matplotlib (pip install matplotlib)") from None
        check_writable(args.out, "--out")
    model = _model(args.model, args.channels, shape[0], args.seed)
    erf.check_memory(model, (args.samples,) + tuple(shape), "--input")
    r = erf.effective_receptive_field(model, shape, position, channel=args.channel,
                                      samples=args.samples, generator=args.seed,
                                      backend=args.backend)
    if args.json:
        print(json.dumps({
            "model": args.model, "input_shape": list(shape), "position": list(r.position),
            "channel": r.channel, "theoretical_pixels": r.theoretical_pixels,
            "effective_pixels": r.effective_pixels, "ratio": r.ratio,
            "half_width": list(r.half_width), "effective_width": list(r.effective_width),
            "centre": list(r.centre), "sigma": list(r.sigma),
            "theoretical_size": list(r.theoretical_size), "axis_ratio": list(r.axis_ratio),
        }, indent=1))
    else:
        print(f"{args.model} at {'x'.join(map(str, shape))}")
        print(r)
    if args.out is not None:
        erf.plot(r, args.out, title=f"{args.model}: effective receptive field")
        if not args.json:
            print(f"wrote {args.out}")
    return 0
