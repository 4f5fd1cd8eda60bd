"""Argparse types shared by the command lines (`pytest bench`'s options, `jaxbench`, the A/B
worker), and the one wording of an unknown name."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def unknown_names(kind: str, names, valid) -> str | None:
    """The one-line error for the `names` not among `valid` ("unknown mode 'fly'; valid: train, ..."),
    or None when all are valid."""
    unknown = [name for name in names if name not in valid]
    if not unknown:
        return None
    return f"unknown {kind} {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}"


def names_type(kind: str, valid, check: bool = True) -> Callable[[str], tuple[str, ...]]:
    """An argparse type: a comma-separated list of names from `valid`, as a tuple (`check=False`:
    any names, checked later, where every valid one is known)."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(name.strip() for name in text.split(",") if name.strip())
        if not names:
            raise argparse.ArgumentTypeError(f"no {kind} given; valid: {', '.join(valid)}")
        error = unknown_names(kind, names, valid) if check else None
        if error:
            raise argparse.ArgumentTypeError(error)
        return names

    parse.__name__ = kind  # argparse names the type in its messages
    return parse


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
