"""What one `pytest bench` run keeps while it goes, in pytest's `config.stash`: the report folder,
the planned cases, skips and failures, the matmul rates, and strict mode's `below` lines; and
what the run does at its end (results and report written, strict mode applied)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from bench import distributed, hardware, measure, process
from bench.results import RESULTS_FILE, SCHEMA_VERSION, SUITE, default_report_dir, measured_benchmarks, write_results
from reports.results import NOT_MEASURED
from workloads import compile_cache
from workloads.workflow import cannot_write

_REPORT_DIR = pytest.StashKey[Path]()
_PLANNED = pytest.StashKey[list]()
_OUTCOMES = pytest.StashKey[dict]()  # "skipped" / "failed" / "crashed" / "timeout" -> {case id: message}

_BELOW = pytest.StashKey[list]()
_MATMUL_RATES = pytest.StashKey[dict]()
_COMPILE_CACHE = pytest.StashKey[Path]()
_HOSTS = pytest.StashKey[list]()  # each process's host name, in process order
_SIZE_CHOICE = pytest.StashKey[str]()  # what `--size auto` chose and why
_SPENT = pytest.StashKey[dict]()  # what this process's time went to: "building steps" -> seconds, ...

COMPILE_CACHE_PREFIX = "jaxbench-compile-cache-"
"""How a process's compilation cache folder is named in the temporary folder: this, its process id, `-`."""


def choose_size(config) -> None:
    """Resolve `--size auto` to a preset for the device at hand (`bench.hardware.auto_size`),
    keeping the choice and its reason for the run's first lines (`size_choice`)."""
    if config.getoption("size") != hardware.AUTO_SIZE:
        return
    import jax

    device = jax.devices()[0]
    size, why = hardware.auto_size(device.platform, hardware.device_bytes_limit(device))
    config.option.size = size
    config.stash[_SIZE_CHOICE] = f"jaxbench: --size auto chose {size}: {why}"


def size_choice(config) -> list[str]:
    """The line that says what `--size auto` chose and why; none where a size was given."""
    return [config.stash[_SIZE_CHOICE]] if _SIZE_CHOICE in config.stash else []


SPENT_ON = ("building steps", "first steps", "the baseline's probes", "references and checks", "timed rounds",
            "worker processes", "the report")
"""Where `spending` counts this process's time, in the order the run's last lines give them."""


@contextlib.contextmanager
def spending(config, what: str):
    """Count the wall-clock seconds of the `with` block as spent on `what` (one of `SPENT_ON`)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        spend(config, what, time.perf_counter() - start)


def spend(config, what: str, seconds: float) -> None:
    """Count `seconds` as spent on `what` (`SPENT_ON`, or `XLA_COMPILING`, part of building steps)."""
    spent = config.stash.setdefault(_SPENT, {})
    spent[what] = spent.get(what, 0.0) + seconds


XLA_COMPILING = "XLA compiling"
"""The compilations (cold and cached) of the steps built in this process: part of building them."""


def start_clock(config) -> None:
    """Start the run's clock, for `time_spent_line`."""
    config.stash.setdefault(_SPENT, {})["started"] = time.perf_counter()


def time_spent_line(config) -> str | None:
    """Where the run's time went: its wall time, each of `SPENT_ON` (building steps with its XLA
    compiling), and the rest."""
    spent = config.stash.get(_SPENT, {})
    if "started" not in spent:
        return None
    total = time.perf_counter() - spent["started"]
    parts = [f"{what} {spent.get(what, 0.0):.0f} s" for what in SPENT_ON]
    parts[0] += f" ({XLA_COMPILING} {spent.get(XLA_COMPILING, 0.0):.0f} s)"
    rest = total - sum(spent.get(what, 0.0) for what in SPENT_ON)
    return f"time: {total:.0f} s in all: {', '.join(parts)}, other {rest:.0f} s (warm-up, matmul rates, set-up)"


SHARED_COMPILE_CACHE = "JAXBENCH_COMPILE_CACHE"
"""An environment variable naming a folder for JAX's persistent compilation cache, shared by every
process that has it and kept: the suite's own tests set it (`tests/conftest.py`), so that the many
short runs they start compile each program once between them (eager operations included).
Compilations that hit it are not cold, and their rows say so (`compile_cache`)."""


def start_compile_cache(config) -> None:
    """Point JAX's persistent compilation cache at a new, empty folder of this process's own (any
    cache the user configured is not used: every first compilation is cold), so that each compiled
    step is also timed compiling from it (`workloads.compile_cache`). A worker's is in its worker
    folder, which its parent removes also after a crash or a timeout. Under `SHARED_COMPILE_CACHE`,
    that folder instead, kept."""
    worker = process.worker_folder(config)
    if os.environ.get(SHARED_COMPILE_CACHE):
        compile_cache.enable(Path(os.environ[SHARED_COMPILE_CACHE]))
        return
    if worker:
        folder = worker / "compile-cache"
        folder.mkdir()
    else:
        folder = Path(tempfile.mkdtemp(prefix=f"{COMPILE_CACHE_PREFIX}{os.getpid()}-"))  # whose it is
    config.stash[_COMPILE_CACHE] = folder
    distributed.at_end(lambda: remove_compile_cache(config))
    compile_cache.enable(folder)


def remove_compile_cache(config) -> None:
    """Remove the folder `start_compile_cache` made."""
    if _COMPILE_CACHE in config.stash:
        shutil.rmtree(config.stash[_COMPILE_CACHE], ignore_errors=True)


def check_folders(config) -> None:
    """A one-line usage error, before anything is measured, when --report-dir or --checkpoint-dir
    cannot be written."""
    for option, dest in (("--report-dir", "report_dir"), ("--checkpoint-dir", "checkpoint_dir")):
        folder = config.getoption(dest)
        error = folder and cannot_write(option, folder)
        if error:
            raise pytest.UsageError(error)


def report_dir(config) -> Path:
    """The run's report folder: `--report-dir`, or a new one under reports/runs/ (made on first use);
    in a worker, its parent's."""
    if _REPORT_DIR not in config.stash:
        folder = process.worker_folder(config)
        chosen = process.read_input(folder).get("report_dir") if folder else config.getoption("report_dir")
        if chosen:
            path = Path(chosen)
        else:
            env = measure.environment()
            path = default_report_dir(config.rootpath, env["platform"], env["device_kind"])
        config.stash[_REPORT_DIR] = path.resolve()
    return config.stash[_REPORT_DIR]


def plan(config, case_ids: list[str]) -> None:
    """Remember the benchmarks this run will measure, so a report can say which ones it lacks."""
    config.stash[_PLANNED] = case_ids
    config.stash[_OUTCOMES] = {outcome: {} for outcome in NOT_MEASURED}


def planned(config) -> list[str]:
    """The case ids `plan` was given (empty before collection)."""
    return config.stash.get(_PLANNED, [])


def record(config, case_id: str, outcome: str, message: str) -> None:
    """Remember why a benchmark has no timing (`outcome`: one of `NOT_MEASURED`)."""
    config.stash[_OUTCOMES][outcome][case_id] = message


def keep_matmul_rates(config, rates: dict[str, float]) -> None:
    """Remember the run's matmul rates (per compute dtype) for the results file."""
    config.stash[_MATMUL_RATES] = rates


def keep_processes(config) -> None:
    """Remember the run's processes and their hosts (a collective in a run of several processes:
    every process calls it as the session starts)."""
    config.stash[_HOSTS] = distributed.hosts()


def writes_results(config) -> bool:
    """Whether this process writes results.json and the report: not a worker, and process 0 of a
    run of several."""
    return not process.worker_folder(config) and distributed.is_main_process()


def suite_section(config) -> dict:
    """The results file's `jaxbench` section: the run's environment, plan, skips and failures
    (crashes and timeouts of isolated benchmarks apart)."""
    outcomes = config.stash.get(_OUTCOMES, None) or {outcome: {} for outcome in NOT_MEASURED}
    return {
        "suite": SUITE,
        "schema_version": SCHEMA_VERSION,
        **measure.environment(config.getoption("cpu_devices")),
        "matmul_rates": config.stash.get(_MATMUL_RATES, {}),
        "n_processes": len(config.stash.get(_HOSTS, [None])),
        "hosts": config.stash.get(_HOSTS, []),
        "planned": planned(config),
        **outcomes,
        "isolated": process.isolating(config),
    }


def write_results_so_far(config) -> None:
    """Rewrite results.json with everything measured so far (this process's, not a worker's)."""
    if measured_benchmarks(config) and writes_results(config):
        write_results(config, report_dir(config))


def finish(session) -> None:
    """Write the final results and the report (nothing when nothing was timed, e.g. with
    --benchmark-disable, or in a worker). With --strict-expectations, an expectation row that is
    `below` fails the run."""
    config = session.config
    if config.getoption("collectonly") or not writes_results(config) or not measured_benchmarks(config):
        return
    from reports.build import build_report
    from reports.expectations import expectations_table
    from reports.results import load_results

    directory = report_dir(config)
    build_report([write_results(config, directory)], directory)
    if config.getoption("strict_expectations"):
        expectations = expectations_table(load_results(directory / RESULTS_FILE))
        below = expectations[expectations["verdict"] == "below"]
        config.stash[_BELOW] = [f"{r.workload} {r.mode}: {r.claim} ({r.reason})" for r in below.itertuples()]
        if len(below) and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def summary_lines(config) -> list[tuple[str, bool]]:
    """What the run prints at its end: (line, whether in red)."""
    lines = []
    if _REPORT_DIR in config.stash and writes_results(config) and (config.stash[_REPORT_DIR] / RESULTS_FILE).exists():
        lines.append((f"results and report in {config.stash[_REPORT_DIR]}", False))
    lines += [(f"expectation below (--strict-expectations): {line}", True) for line in config.stash.get(_BELOW, [])]
    if not process.worker_folder(config):
        time_line = time_spent_line(config)
        lines += [(time_line, False)] if time_line else []
    return lines
