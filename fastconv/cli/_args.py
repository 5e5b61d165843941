"""Argument helpers shared by the subcommands of ``fastconv``: integers named in errors,
output paths checked before a long run."""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Callable

from .._shapes import MAX_PARAM


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
