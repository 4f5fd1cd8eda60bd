"""Ctrl-C stops a run even where Python swallows the KeyboardInterrupt (bench/interrupt.py)."""

from __future__ import annotations

import os
import signal
import sys
import time
import weakref
from types import SimpleNamespace, TracebackType

import pytest

from jaxbench.bench import interrupt

pytestmark = pytest.mark.version_independent  # signal handling of this process


def fake_session():
    return SimpleNamespace(config=SimpleNamespace(stash=pytest.Stash()), shouldstop=False)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_swallowed_by_a_weakref_callback_still_stops_the_run():
    """The way CI lost a Ctrl-C: the signal lands while a freed object's weakref callback runs,
    Python ignores the KeyboardInterrupt raised there, and the run went on to the end."""
    before = signal.getsignal(signal.SIGINT)
    session = fake_session()
    interrupt.install(session)
    try:
        interrupt.stop_if_requested()  # nothing requested yet: no raise

        class Freed:
            pass

        thing = Freed()
        ref = weakref.ref(thing, lambda _: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.05)))
        del thing  # the callback runs, the handler raises inside it, and Python swallows that
        assert ref() is None
        assert session.shouldstop == "interrupted (Ctrl-C)"  # pytest stops after this benchmark
        with pytest.raises(KeyboardInterrupt):
            interrupt.stop_if_requested()  # and the next timed round raises it where it counts
    finally:
        interrupt.uninstall(session)
    assert signal.getsignal(signal.SIGINT) is before


def test_a_plain_ctrl_c_raises_at_once():
    session = fake_session()
    interrupt.install(session)
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    finally:
        interrupt.uninstall(session)
    assert session.shouldstop


def test_a_new_session_starts_without_a_request():
    session = fake_session()
    interrupt.install(session)
    interrupt.uninstall(session)
    interrupt.stop_if_requested()  # a request of an earlier session does not carry over


def test_a_ctrl_c_while_the_report_is_written_waits_for_it():
    session = fake_session()
    interrupt.install(session)
    interrupt.finishing(session)
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # no KeyboardInterrupt: the report is written whole
        assert interrupt.requested()
    finally:
        interrupt.uninstall(session)


def test_a_benchmark_stopped_before_its_record_is_complete_is_left_out_of_the_results():
    """Ctrl-C raised before the first timed round leaves pytest-benchmark a record with no rounds;
    raised after some rounds but before the benchmark recorded its `extra_info` (a GPU's eager
    baseline at `medium` takes 90 s a round), a record with rounds that say nothing of what they
    measured. results.json (and the report) skip both, as pytest-benchmark's own table skips the first."""
    from pytest_benchmark.stats import Metadata

    from jaxbench.bench.results import measured_benchmarks

    infos = ({"variant": "jit"}, {}, {})
    fixtures = (SimpleNamespace(name=name, fullname=name, group=None, param=None, params=None, extra_info=info,
                                cprofile_stats=None) for name, info in zip("abc", infos))
    timed, unfinished, stopped = (Metadata(fixture=fixture, iterations=1, options={}) for fixture in fixtures)
    timed.stats.update(0.5)
    unfinished.stats.update(94.4)
    config = SimpleNamespace(_benchmarksession=SimpleNamespace(benchmarks=[timed, unfinished, stopped]))
    assert measured_benchmarks(config) == [timed]


def interrupted_at_a_lineless_instruction() -> BaseException:
    """A KeyboardInterrupt (raised from another error) whose tracebacks hold a frame with no
    source line, as Python 3.11+ makes when the signal lands on such an instruction."""
    def lineless(error: BaseException) -> BaseException:
        frame = sys._getframe()
        lasti = next(i for i in range(0, 4 * len(frame.f_code.co_code), 2)
                     if TracebackType(None, frame, i, -1).tb_lineno is None)
        error.__traceback__.tb_next = TracebackType(error.__traceback__.tb_next, frame, lasti, -1)
        return error

    try:
        try:
            raise ValueError("during")
        except ValueError as during:
            lineless(during)
            raise KeyboardInterrupt from during
    except KeyboardInterrupt as error:
        return lineless(error)


def test_an_interrupt_at_a_lineless_instruction_is_reported_as_an_interrupt():
    """pytest could not format it (a TypeError, exit status 1); with the lineless frames unlinked it
    formats the interrupt and the error it was raised from."""
    error = interrupted_at_a_lineless_instruction()
    with pytest.raises(TypeError):
        pytest.ExceptionInfo.from_exception(error).getrepr(funcargs=True)
    interrupt.drop_lineless_frames(error)
    text = str(pytest.ExceptionInfo.from_exception(error).getrepr(funcargs=True))
    assert "KeyboardInterrupt" in text and "ValueError: during" in text
