"""Argparse types shared by the command lines (`pytest bench`'s options, `python -m reports`)."""

from __future__ import annotations

import argparse
from typing import Callable


def number_type(convert: Callable[[str], float], valid: Callable[[float], bool], what: str) -> Callable[[str], float]:
    """An argparse type: `convert(text)` where `valid`, else the one-line error "'text' is not `what`"."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = what
    return parse
