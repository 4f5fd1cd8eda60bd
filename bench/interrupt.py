"""Ctrl-C that always stops a run, keeping what was measured.

Python turns SIGINT into a `KeyboardInterrupt` raised at the next bytecode, wherever that is. In a
JAX run it is often inside a weakref callback that a freed array triggers, and there Python
ignores it ("Exception ignored in ... remove ... KeyboardInterrupt") and the run goes on. So the
handler installed here also remembers the request: pytest stops after the benchmark in progress
(`session.shouldstop`), and `stop_if_requested`, called by pytest-benchmark before each timed
round (its `setup` hook, outside the timing), raises it again where nothing swallows it.

Once the benchmarks are over, a Ctrl-C no longer interrupts: the results and the report are
written whole (seconds), and then the run ends as interrupted.
"""

from __future__ import annotations

import signal
import threading

import pytest

MESSAGE = "interrupted (Ctrl-C)"
_requested = False
_PREVIOUS = pytest.StashKey[object]()


def _set_handler(session, raise_it: bool) -> None:
    def on_interrupt(signum, frame):
        global _requested
        _requested = True
        session.shouldstop = MESSAGE
        if raise_it:
            signal.default_int_handler(signum, frame)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    session.config.stash.setdefault(_PREVIOUS, previous)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # where Python runs signal handlers


def install(session) -> None:
    """Make Ctrl-C stop `session`'s benchmarks, even where Python swallows the KeyboardInterrupt."""
    global _requested
    _requested = False
    if _in_main_thread():
        _set_handler(session, raise_it=True)


def finishing(session) -> None:
    """From here on (results and report being written) a Ctrl-C is recorded, not raised."""
    if _in_main_thread():
        _set_handler(session, raise_it=False)


def uninstall(session) -> None:
    """Put back the SIGINT handler `install` replaced."""
    previous = session.config.stash.get(_PREVIOUS, None)
    if previous is not None and _in_main_thread():
        signal.signal(signal.SIGINT, previous)


def requested() -> bool:
    """Whether Ctrl-C was pressed during this session."""
    return _requested


def stop_if_requested() -> None:
    """Raise `KeyboardInterrupt` if Ctrl-C was pressed and its first raise was swallowed."""
    if _requested:
        raise KeyboardInterrupt(MESSAGE)
