"""Ctrl-C that always stops a run, keeping what was measured.

Python turns SIGINT into a `KeyboardInterrupt` raised at the next bytecode, wherever that is. In a
JAX run it is often inside a weakref callback that a freed array triggers, and there Python
ignores it ("Exception ignored in ... remove ... KeyboardInterrupt") and the run goes on. So the
handler installed here also remembers the request: pytest stops after the benchmark in progress
(`session.shouldstop`), and `stop_if_requested`, called by pytest-benchmark before each timed
round (its `setup` hook, outside the timing), raises it again where nothing swallows it.

Once the benchmarks are over, a Ctrl-C no longer interrupts: the results and the report are
written whole (seconds), and then the run ends as interrupted.

Python 3.11+ can raise the `KeyboardInterrupt` at an instruction that has no source line
(`tb_lineno` is None), and pytest's report of the interrupt then fails with a TypeError of its own
and the run ends with exit status 1 (an internal error) instead of 2 (interrupted): CI saw it.
`drop_lineless_frames` takes such frames out of the traceback before pytest formats it.
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


def drop_lineless_frames(error: BaseException) -> None:
    """Unlink from `error`'s traceback, and from those of the exceptions it was raised from or
    during, each frame that has no source line, which pytest cannot format. The outermost frame
    stays (it is pytest's own, which always has one)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        entry = error.__traceback__
        while entry is not None:
            while entry.tb_next is not None and entry.tb_next.tb_lineno is None:
                entry.tb_next = entry.tb_next.tb_next
            entry = entry.tb_next
        error = error.__cause__ or error.__context__


def stop_if_requested() -> None:
    """Raise `KeyboardInterrupt` if Ctrl-C was pressed and its first raise was swallowed."""
    if _requested:
        raise KeyboardInterrupt(MESSAGE)
