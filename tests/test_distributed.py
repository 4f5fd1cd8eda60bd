"""Runs over several processes (bench/distributed.py), tested with two processes on this machine:
each with 2 virtual CPU devices, a coordinator on localhost at a port free at run time, and JAX's
default CPU collectives (gloo)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from jaxbench.bench import distributed
from jaxbench.bench.correctness import FLOAT32_RTOL
from jaxbench.bench.session import COMPILE_CACHE_PREFIX, NO_CACHE_ACROSS_CPU_PROCESSES
from jaxbench.reports.results import HIDDEN_HOST
from tests.conftest import FAST_TIMING, ROOT, run_pytest
from tests.planted_at_end import AT_END_PREFIX

TIMEOUT_S = 10
"""--distributed-timeout in these tests: how long a process waits for a peer that is gone."""
SELECTION = ["--workloads", "mlp", "--size", "tiny", "--modes", "train", "--variants", "multi_device",
             "-k", "multi_device and not model", "--cpu-devices", "2"]  # the data layout and fsdp
"""The runs' benchmarks: the MLP's, the cheapest to compile (the transformer's sharded steps join
them in `test_two_processes_compute_and_measure_over_both_and_only_process_0_writes`)."""
ONE_LAYOUT = [*SELECTION, "-k", "multi_device and not model and not fsdp"]  # the last -k counts: data only


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _processes(args_of, count: int = 2, env: dict | None = None) -> list[subprocess.Popen]:
    """`count` processes of one run: process I runs `args_of(I)` plus the coordinator options
    (`env`: added to their environment)."""
    coordinator = f"localhost:{_free_port()}"
    return [subprocess.Popen([*args_of(index), "--coordinator", coordinator, "--num-processes", str(count),
                              "--process-id", str(index)], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
            for index in range(count)]


def _outputs(procs: list[subprocess.Popen], timeout_s: float = 600) -> list[str]:
    """Each process's output once all have ended; all are killed (SIGKILL: a process waiting in a
    collective does not stop on SIGTERM) where one has not ended within `timeout_s`."""
    try:
        return [proc.communicate(timeout=timeout_s)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()


def _bench(tmp_path, *more: str, selection=SELECTION):
    """Process I's `pytest bench` command line, with a report folder of its own (`more`: added)."""
    return lambda index: [sys.executable, "-m", "pytest", "bench", *selection, "-q", *FAST_TIMING, *more,
                          "--distributed-timeout", str(TIMEOUT_S), "--report-dir", str(tmp_path / f"process{index}")]


def _lingering(tmp_path, linger_s: int) -> list[subprocess.Popen]:
    """Two processes of a run whose process 0 stays busy for `linger_s` after its session
    (`tests.planted_linger`); returned once process 1's session is over (pytest's last line).
    One benchmark is enough for what these runs test, their ends (`tests.planted_at_end` too)."""
    plugins = ["-p", "tests.planted_linger", "-p", "tests.planted_at_end"]
    procs = _processes(_bench(tmp_path, *plugins, selection=ONE_LAYOUT),
                       env={"JAXBENCH_TEST_LINGER_S": str(linger_s), "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp_path)})
    for line in procs[1].stdout:
        if " passed" in line:
            break
    return procs


def _ended_with_one_line(proc: subprocess.Popen, peer: int, since: float) -> None:
    """`proc` ends, within the timeout's bound of `since`, by the suite's watch of its peers with
    the one line that names `peer`, exit status 3."""
    output = proc.communicate(timeout=TIMEOUT_S * 6)[0]
    elapsed = time.monotonic() - since
    assert proc.returncode == 3, output[-3000:]
    assert (f"jaxbench: process {peer} of 2 stopped answering (no heartbeat for {TIMEOUT_S / 2:g} s, "
            f"--distributed-timeout {TIMEOUT_S}); this run cannot go on") in output, output[-3000:]
    assert "Traceback" not in output and "Check failure" not in output
    assert elapsed < TIMEOUT_S * 1.5  # the bound, with room for a loaded CI host


@pytest.mark.slow
def test_two_processes_compute_and_measure_over_both_and_only_process_0_writes(tmp_path):
    """The MLP's and the transformer's sharded train steps over 2 processes x 2 devices, in the
    `data` and the `fsdp` layout: each row is checked against the single-process reference, as
    every row is, to the suite's float32 tolerance on the loss and on all parameters together
    (not per array: gloo sums across processes in another order, and a bias that starts at zero
    is, after one Adam step, +/- the learning rate wherever its gradient is not exactly zero, so a
    rounding-level gradient flips the sign of an element). With `--hide-host-names`, as results to
    be shared are made: no host's name is written. Under the tests' shared compile cache, which the
    run keeps none of: with JAX 0.12 a cross-process CPU program read back from a persistent cache
    never finishes, so a warm cache would hang this run."""
    selection = [*SELECTION, "--workloads", "mlp,transformer"]  # the last --workloads counts
    procs = _processes(_bench(tmp_path, "--hide-host-names", selection=selection))
    outputs = _outputs(procs, timeout_s=300)
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-3000:]
    assert [path.name for path in tmp_path.rglob("results.json")] == ["results.json"]
    results = json.loads((tmp_path / "process0" / "results.json").read_text())
    suite = results["jaxbench"]
    assert suite["n_processes"] == 2 and suite["hosts"] == ["host-1", "host-1"] and suite["n_devices_available"] == 4
    assert results["machine_info"]["node"] == HIDDEN_HOST
    rows = {b["extra_info"]["case_id"]: b["extra_info"] for b in results["benchmarks"]}
    assert sorted(rows) == [f"{name}-train-multi_device{layout}" for name in ("mlp", "transformer")
                            for layout in ("", "-fsdp")]
    for info in rows.values():
        assert info["n_devices"] == 4 and info["n_devices_in_process"] == 2
        assert info["max_rel_error"] < FLOAT32_RTOL  # checked against the single-device reference first
        assert info["compile_cache"] == NO_CACHE_ACROSS_CPU_PROCESSES
    assert "results and report in" in outputs[0] and "results and report in" not in outputs[1]


@pytest.mark.version_independent
@pytest.mark.slow
def test_a_coordinator_that_is_not_there_is_a_one_line_error_within_the_timeout(tmp_path):
    start = time.monotonic()
    proc = run_pytest("bench", *SELECTION, "--coordinator", f"localhost:{_free_port()}", "--num-processes", "2",
                      "--process-id", "1", "--distributed-timeout", str(TIMEOUT_S), "--report-dir", str(tmp_path),
                      timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "no coordinator answers at localhost:" in proc.stderr and f"after {TIMEOUT_S} s" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert elapsed < TIMEOUT_S + 30  # the wait, plus starting Python and JAX


def _left_at_end(folder) -> list[int]:
    """The process ids of the folders `tests.planted_at_end` made that are left in `folder` (a
    run's TMPDIR), with a check that the run made no compilation cache there (none in a run of
    several processes on CPU)."""
    assert not list(folder.glob(f"{COMPILE_CACHE_PREFIX}*"))
    return [int(path.name.removeprefix(AT_END_PREFIX)) for path in folder.glob(f"{AT_END_PREFIX}*")]


@pytest.mark.version_independent
@pytest.mark.slow
def test_a_killed_process_ends_the_run_within_the_timeout_with_one_line(tmp_path):
    """Process 1 is killed as process 0 writes its first results, in the middle of the run (the
    second benchmark is timed for 5 s). Process 0 is ended by the suite's watch of its peers
    (`distributed.watch_peers`: no heartbeat for half the timeout) before JAX's own heartbeat
    check would abort it: while it waits in a collective for the dead process, or after gloo saw
    the closed connection and failed the benchmark (then at the session's end, as it waits for
    its peers to leave). Measured: 6.1 s after the kill, with a timeout of 10 s; the bound is
    the timeout."""
    procs = _processes(_bench(tmp_path, "--benchmark-max-time=5", "-p", "tests.planted_at_end"),
                       env={"TMPDIR": str(tmp_path)})
    deadline = time.monotonic() + 300
    while not (tmp_path / "process0" / "results.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # written after the first benchmark
    procs[1].send_signal(signal.SIGKILL)
    _ended_with_one_line(procs[0], peer=1, since=time.monotonic())
    procs[1].communicate()
    # the survivor removed its folder as it ended (`distributed.at_end`); the killed process,
    # mid-run, could not
    assert _left_at_end(tmp_path) == [procs[1].pid]


@pytest.mark.version_independent
@pytest.mark.slow
def test_a_process_killed_after_its_benchmarks_is_named_in_one_line_too(tmp_path):
    """Process 1 has finished and waits for process 0, still busy after its session (as if it
    wrote a long report; `tests.planted_linger`), when it is killed: process 0 is ended with the
    same line, rather than by JAX's shutdown barrier failing in a C++ abort at its exit."""
    procs = _lingering(tmp_path, linger_s=120)
    procs[1].send_signal(signal.SIGKILL)
    _ended_with_one_line(procs[0], peer=1, since=time.monotonic())
    procs[1].communicate()
    # the survivor leaves no folder (the killed process, whose session had ended, left its own:
    # only a peer's end removes it)
    assert procs[0].pid not in _left_at_end(tmp_path)


@pytest.mark.version_independent
@pytest.mark.slow
def test_a_process_that_finished_waits_for_a_busy_peer_at_most_the_timeout(tmp_path):
    """Process 0 stays busy after its session for longer than the timeout (as a process stuck in a
    collective would): process 1, finished, waits for it, beating, for the timeout, then ends with
    one line; process 0 then misses its heartbeats and ends with its own line. No wait is endless,
    nothing ends in a C++ abort, and process 0 wrote its results before."""
    procs = _lingering(tmp_path, linger_s=600)  # process 1 begins to leave
    left = time.monotonic()
    output = procs[1].communicate(timeout=TIMEOUT_S * 6)[0]
    assert procs[1].returncode == 3, output[-3000:]
    assert (f"jaxbench: process 0 of 2 had not finished {TIMEOUT_S} s after this one (--distributed-timeout); "
            "this run cannot end cleanly") in output, output[-3000:]
    assert TIMEOUT_S <= time.monotonic() - left < TIMEOUT_S * 2
    _ended_with_one_line(procs[0], peer=1, since=time.monotonic())
    assert (tmp_path / "process0" / "results.json").exists()


@pytest.mark.version_independent
@pytest.mark.parametrize("given,message", [
    ({"process_id": 1}, "--num-processes and --process-id need --coordinator HOST:PORT"),
    ({"coordinator": "localhost:1", "process_id": 0}, "--coordinator needs --num-processes too"),
    ({"coordinator": "nowhere", "num_processes": 2, "process_id": 1}, "--coordinator 'nowhere' is not HOST:PORT"),
])
def test_incomplete_distributed_options_are_usage_errors(given, message):
    """Each is pytest's usage error (exit 4, one line, as the real run above shows for a coordinator
    that is not there), raised before JAX is asked to start anything."""
    options = {name: None for name in distributed.OPTIONS} | given | {"distributed_timeout": TIMEOUT_S}
    config = SimpleNamespace(getoption=lambda name, default=None: options.get(name, default))
    with pytest.raises(pytest.UsageError, match=re.escape(message)):
        distributed.initialize(config)
