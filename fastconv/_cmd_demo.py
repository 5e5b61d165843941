"""`fastconv demo LESSON`: runnable lessons built on fastconv's layers and backward passes.

Lessons: ``init`` (the weight-initialisation lesson, fastconv.init_lesson).
"""

from __future__ import annotations

HELP = "runnable lessons: 'init' trains a small CNN from five weight initialisations"

LESSONS = ("init",)


def add_arguments(parser) -> None:
    from . import init_lesson

    parser.add_argument("lesson", choices=LESSONS,
                        help="init: zeros / constant / N(1, 0.1) / Xavier / He on a "
                             "synthetic bar-orientation task (docs/init_lesson.md)")
    init_lesson.add_arguments(parser)


def run(args) -> int:
    from . import init_lesson

    if args.lesson == "init":
        return init_lesson.run_cli(args)
    raise ValueError(f"lesson must be one of {LESSONS}, got {args.lesson!r}")  # pragma: no cover
