"""`fastconv demo LESSON`: runnable lessons built on fastconv's layers and backward passes.

Lessons: ``init`` (the weight-initialisation lesson, fastconv.lessons.init_lesson).
"""

from __future__ import annotations

import sys
from typing import Any

from ._args import check_writable, int_at_least

HELP = "runnable lessons: 'init' trains a small CNN from five weight initialisations"

LESSONS = ("init",)


def add_arguments(parser: Any) -> None:
    parser.add_argument("lesson", choices=LESSONS,
                        help="init: zeros / constant / N(1, 0.1) / Xavier / He on a "
                             "synthetic bar-orientation task (docs/init_lesson.md)")
    parser.add_argument("--steps", type=int_at_least(1), default=200,
                        help="SGD steps per init (200)")
    parser.add_argument("--seed", type=int_at_least(0), default=0,
                        help="data and weights (0)")
    parser.add_argument("--depth", type=int_at_least(1), default=10,
                        help="conv layers of the variance-through-depth stack (10)")
    parser.add_argument("--backend", default="auto", help="engine (default auto)")
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="draw loss curves and variance through depth (needs matplotlib)")


def run(args: Any) -> int:
    if args.lesson != "init":  # pragma: no cover - argparse's choices
        raise ValueError(f"lesson must be one of {LESSONS}, got {args.lesson!r}")
    from ..lessons import init_lesson

    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--plot needs matplotlib (pip install matplotlib)") from None
        check_writable(args.plot, "--plot")
    result = init_lesson.run_lesson(steps=args.steps, seed=args.seed, backend=args.backend,
                                    depth=args.depth,
                                    log=lambda s: print(s, file=sys.stderr, flush=True))
    print(init_lesson.report(result))
    if args.plot is not None:
        init_lesson.plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0
