"""The wire protocol between the A/B runner and its workers, defined once for both ends.

A message is one JSON line on the worker's stdout after `PREFIX` (anything else a model prints is
not a message); a request is one JSON line on its stdin. The runner names the version it speaks
in the worker's environment (`VERSION_VARIABLE`); the worker refuses another with an `error`
message, and says its own in its `ready` message, which the runner checks in turn.
"""

from __future__ import annotations

import json
import os
import sys

PREFIX = "@jaxbench-ab "
VERSION = 1
VERSION_VARIABLE = "JAXBENCH_AB_PROTOCOL"


def send(message: dict) -> None:
    """One message on stdout (a worker's end)."""
    sys.stdout.write(PREFIX + json.dumps(message, default=float) + "\n")
    sys.stdout.flush()


def message_of(line: str) -> dict | None:
    """The message a line of a worker's stdout holds, or None for a line that is not one."""
    return json.loads(line[len(PREFIX):]) if line.startswith(PREFIX) else None


def version_problem(theirs, side: str) -> str | None:
    """What is wrong with the other end's protocol version `theirs` (None, or a one-line reason)
    from `side`'s point of view ("worker" or "runner")."""
    if theirs is None or int(theirs) == VERSION:
        return None
    other = "runner" if side == "worker" else "worker"
    return (f"the A/B {other} speaks protocol {theirs} and this {side} {VERSION}: run both sides with "
            "jaxbench versions of the same protocol")


def runner_version(environ=os.environ) -> str | None:
    """The version the runner that started this worker speaks (None where it did not say)."""
    return environ.get(VERSION_VARIABLE)
