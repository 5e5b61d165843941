"""`fastconv demo LESSON`: runnable lessons built on fastconv's layers and backward passes.

Lessons: ``init`` (the weight-initialisation lesson, fastconv.lessons.init_lesson) and
``capsnet`` (a small CapsNet against a CNN on moved and turned digits,
fastconv.lessons.capsnet).
"""

from __future__ import annotations

import sys
from typing import Any

from ._args import check_writable, int_at_least

HELP = ("runnable lessons: 'init' trains a small CNN from five weight initialisations; "
        "'capsnet' a CapsNet and a CNN, tested on shifted and rotated digits")

LESSONS = ("init", "capsnet")


def add_arguments(parser: Any) -> None:
    parser.add_argument("lesson", choices=LESSONS,
                        help="init: zeros / constant / N(1, 0.1) / Xavier / He on a "
                             "synthetic bar-orientation task (docs/init_lesson.md); capsnet: "
                             "a small CapsNet and a CNN on generated digits, tested beyond "
                             "the shifts and rotations they were trained on "
                             "(docs/capsules.md)")
    parser.add_argument("--steps", type=int_at_least(1), default=200,
                        help="init: SGD steps per init (200)")
    parser.add_argument("--seed", type=int_at_least(0), default=0,
                        help="data and weights (0)")
    parser.add_argument("--depth", type=int_at_least(1), default=10,
                        help="init: conv layers of the variance-through-depth stack (10)")
    parser.add_argument("--epochs", type=int_at_least(1), default=3,
                        help="capsnet: training epochs per model (3)")
    parser.add_argument("--train-size", type=int_at_least(1), default=6000,
                        help="capsnet: generated training digits (6000)")
    parser.add_argument("--test-size", type=int_at_least(8), default=1000,
                        help="capsnet: generated digits per test set (1000)")
    parser.add_argument("--backend", default="auto", help="engine (default auto)")
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="init: loss curves and variance through depth; capsnet: "
                             "accuracies, reconstructions, capsule dimensions, coupling "
                             "coefficients (needs matplotlib)")


def run(args: Any) -> int:
    if args.lesson not in LESSONS:  # pragma: no cover - argparse's choices
        raise ValueError(f"lesson must be one of {LESSONS}, got {args.lesson!r}")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--plot needs matplotlib (pip install matplotlib)") from None
        check_writable(args.plot, "--plot")
    if args.lesson == "capsnet":
        from ..lessons import capsnet

        outcome = capsnet.run_lesson(train_size=args.train_size, test_size=args.test_size,
                                     epochs=args.epochs, seed=args.seed, backend=args.backend,
                                     log=lambda s: print(s, file=sys.stderr, flush=True))
        print(capsnet.report(outcome))
        if args.plot is not None:
            capsnet.plot(outcome, args.plot)
            print(f"wrote {args.plot}")
        return 0
    from ..lessons import init_lesson

    result = init_lesson.run_lesson(steps=args.steps, seed=args.seed, backend=args.backend,
                                    depth=args.depth,
                                    log=lambda s: print(s, file=sys.stderr, flush=True))
    print(init_lesson.report(result))
    if args.plot is not None:
        init_lesson.plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0
