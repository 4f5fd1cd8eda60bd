"""What one `pytest bench` run keeps while it goes (`RunState`: the report folder, the planned
cases, skips and failures, the matmul rates, strict mode's `below` lines, where its time went),
and what the run does at its end (results and report written, strict mode applied)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import pytest

from jaxbench.bench import distributed, hardware, measure, process
from jaxbench.bench.results import (
    RESULTS_FILE,
    SCHEMA_VERSION,
    SUITE,
    default_report_dir,
    measured_benchmarks,
    write_atomically,
    write_results,
)
from jaxbench.reports.results import NOT_MEASURED, hidden_hosts
from jaxbench.workloads import compile_cache
from jaxbench.workloads.steps import InitialStates
from jaxbench.workloads.workflow import cannot_write


@dataclass
class RunState:
    """What one `pytest bench` process keeps while it runs, in one object in `config.stash`
    (`state`). The selection is `bench.options.selection`'s, frozen at configure time."""

    report_dir: Path | None = None  # resolved on first use (`report_dir`)
    planned: list[str] = field(default_factory=list)  # the case ids collected, in order
    outcomes: dict[str, dict[str, str]] = field(  # "skipped" / "failed" / "crashed" / "timeout" -> {case id: message}
        default_factory=lambda: {outcome: {} for outcome in NOT_MEASURED})
    below: list[str] = field(default_factory=list)  # --strict-expectations' `below` rows
    matmul_rates: dict[str, float] = field(default_factory=dict)  # per compute dtype
    compile_cache: Path | None = None  # this process's own cache folder, removed at its end
    hosts: list[str] = field(default_factory=list)  # each process's host name, in process order
    size_choice: str | None = None  # what `--size auto` chose and why
    spent: dict[str, float] = field(default_factory=dict)  # "building steps" -> seconds, ... (`spending`)
    compilations: XlaCompilations | None = None  # every XLA compilation of this process while it runs
    worker_compilations: XlaCompilations = field(default_factory=lambda: XlaCompilations())  # its workers'
    initial_states: InitialStates = field(default_factory=InitialStates)  # models' states, kept or handed over


_STATE = pytest.StashKey[RunState]()


def state(config) -> RunState:
    """This run's state (made on first use)."""
    if _STATE not in config.stash:
        config.stash[_STATE] = RunState()
    return config.stash[_STATE]


COMPILE_CACHE_PREFIX = "jaxbench-compile-cache-"
"""How a process's compilation cache folder is named in the temporary folder: this, its process id, `-`."""


def choose_size(config) -> str:
    """The preset to run: `--size`, or for `--size auto` the one for the device at hand
    (`bench.hardware.auto_size`), the choice and its reason kept for the run's first lines
    (`size_choice`)."""
    size = config.getoption("size")
    if size != hardware.AUTO_SIZE:
        return size
    size, why = hardware.auto_size_here()
    state(config).size_choice = f"jaxbench: --size auto chose {size}: {why}"
    return size


def size_choice(config) -> list[str]:
    """The line that says what `--size auto` chose and why; none where a size was given."""
    choice = state(config).size_choice
    return [choice] if choice else []


SPENT_ON = ("building steps", "first steps", "the baseline's probes", "references and checks", "timed rounds",
            "worker processes", "the report")
"""Where `spending` counts this process's time, in the order the run's last lines give them (a
workflow's build and first run count as building steps and first steps)."""


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
    spent = state(config).spent
    spent[what] = spent.get(what, 0.0) + seconds


XLA_COMPILING = "XLA compiling"
"""The compilations (cold and cached) of the steps built in this process: part of building them."""


XLA_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
"""JAX's monitoring event of each XLA compilation (`jax._src.dispatch.BACKEND_COMPILE_EVENT`):
a step's, a reference's, and each eager operation's on its first use; a read back from the
persistent cache, where one is on, is one too."""


@dataclass(eq=False)  # a listener is unregistered by identity, not by its counts
class XlaCompilations:
    """How many XLA compilations JAX reported (`XLA_COMPILE_EVENT`) and their seconds, counted from
    `start` to `stop`: every one of this process, where `XLA_COMPILING` has only the steps' own."""

    count: int = 0
    seconds: float = 0.0

    def __call__(self, event: str, seconds: float, **_) -> None:
        if event == XLA_COMPILE_EVENT:
            self.count += 1
            self.seconds += seconds

    def start(self) -> None:
        jax.monitoring.register_event_duration_secs_listener(self)

    def stop(self) -> None:
        jax.monitoring.unregister_event_duration_listener(self)

    def add(self, path: Path) -> None:
        """Add the counts a worker wrote to `path` (`stop_counting_compilations`), if it wrote them."""
        if path.exists():
            written = json.loads(path.read_text())
            self.count += written["count"]
            self.seconds += written["seconds"]


def start_clock(config) -> None:
    """Start the run's clock and count its XLA compilations, for `time_spent_line`."""
    run = state(config)
    run.spent["started"] = time.perf_counter()
    if run.compilations is None:
        run.compilations = XlaCompilations()
        run.compilations.start()


COMPILATIONS_FILE = "compilations.json"
"""Where a worker leaves its XLA compilations' count for its parent (`XlaCompilations.add`)."""


def stop_counting_compilations(config) -> None:
    """Stop counting this run's XLA compilations (at its end: a later run in the same process
    counts its own); a worker writes them into its folder for its parent's last line."""
    compilations = state(config).compilations
    if compilations is None:
        return
    compilations.stop()
    folder = process.worker_folder(config)
    if folder:
        write_atomically(folder / COMPILATIONS_FILE,
                         json.dumps({"count": compilations.count, "seconds": compilations.seconds}))


def time_spent_line(config) -> str | None:
    """Where the run's time went: its wall time, each of `SPENT_ON` (building steps with its XLA
    compiling, worker processes with every XLA compilation they reported), and the rest; then every
    XLA compilation of this process (`XlaCompilations`), where JAX reported any."""
    run = state(config)
    spent = run.spent
    if "started" not in spent:
        return None
    total = time.perf_counter() - spent["started"]
    parts = [f"{what} {spent.get(what, 0.0):.0f} s" for what in SPENT_ON]
    parts[0] += f" ({XLA_COMPILING} {spent.get(XLA_COMPILING, 0.0):.0f} s)"
    workers = run.worker_compilations
    if workers.count:
        parts[SPENT_ON.index("worker processes")] += (f" (XLA compiled {workers.count} programs in "
                                                      f"{workers.seconds:.0f} s there)")
    rest = total - sum(spent.get(what, 0.0) for what in SPENT_ON)
    line = f"time: {total:.0f} s in all: {', '.join(parts)}, other {rest:.0f} s (warm-up, matmul rates, set-up)"
    compilations = run.compilations
    if compilations is not None and compilations.count:
        line += (f"; XLA compiled {compilations.count} programs in {compilations.seconds:.0f} s in this process "
                 "(eager operations' first uses and reads from the compilation cache included)")
    return line


SHARED_COMPILE_CACHE = "JAXBENCH_COMPILE_CACHE"
"""An environment variable naming a folder for JAX's persistent compilation cache, shared by every
process that has it and kept: the suite's own tests set it (`tests/conftest.py`), so that the many
short runs they start compile each program once between them (eager operations included). A
timed step's compilation reads through it too (`compile_cache.reuse`): no compile figure is cold,
and each row's compile-cache note says so. `jaxbench ab`'s workers read through it as well."""


def reuse_shared_compile_cache() -> bool:
    """Where `SHARED_COMPILE_CACHE` names a folder, compile everything in this process through it
    (`compile_cache.reuse`) and say True; else leave the cache alone and say False."""
    if not os.environ.get(SHARED_COMPILE_CACHE):
        return False
    compile_cache.reuse(Path(os.environ[SHARED_COMPILE_CACHE]))
    return True


NO_CACHE_ACROSS_CPU_PROCESSES = ("no persistent cache across CPU processes: JAX 0.12 never finishes a "
                                  "cross-process CPU program read back from one")
"""The compile-cache note of every compilation in a run of several processes on CPU. Such a run keeps
no persistent cache (`compile_cache.off`), neither its own nor the tests' shared one: with JAX 0.12.1
both processes wait forever in the first collective of a program either one read from the cache
(JAX 0.10 runs it), and a process compiles a program a second time, from the cache, wherever
JAX's in-memory caches were cleared (`compile_cache.cold_compiles`)."""


def start_compile_cache(config) -> None:
    """Point JAX's persistent compilation cache at a new, empty folder of this process's own (any
    cache the user configured is not used: every first compilation is cold), for what the run
    compiles more than once (`workloads.compile_cache`); with `--compile-cached`, each step is also
    compiled a second time, from that cache, and timed. A worker's is in its worker folder, which
    its parent removes also after a crash or a timeout. Under `SHARED_COMPILE_CACHE`, that folder
    instead, kept, and read by the steps' compilations too (`compile_cache.reuse`). In a run of
    several processes on CPU, none (`NO_CACHE_ACROSS_CPU_PROCESSES`)."""
    worker = process.worker_folder(config)
    if distributed.is_multi_process() and jax.default_backend() == "cpu":
        compile_cache.off(NO_CACHE_ACROSS_CPU_PROCESSES)
        return
    if reuse_shared_compile_cache():
        return
    if worker:
        folder = worker / "compile-cache"
        folder.mkdir()
    else:
        folder = Path(tempfile.mkdtemp(prefix=f"{COMPILE_CACHE_PREFIX}{os.getpid()}-"))  # whose it is
    state(config).compile_cache = folder
    distributed.at_end(lambda: remove_compile_cache(config))
    compile_cache.enable(folder, second=config.getoption("compile_cached"))


def remove_compile_cache(config) -> None:
    """Remove the folder `start_compile_cache` made."""
    if state(config).compile_cache:
        shutil.rmtree(state(config).compile_cache, ignore_errors=True)


def check_folders(config) -> None:
    """A one-line usage error, before anything is measured, when --report-dir or --checkpoint-dir
    cannot be written."""
    for option, dest in (("--report-dir", "report_dir"), ("--checkpoint-dir", "checkpoint_dir")):
        folder = config.getoption(dest)
        error = folder and cannot_write(option, folder)
        if error:
            raise pytest.UsageError(error)


def report_dir(config) -> Path:
    """The run's report folder: `--report-dir`, or a new one under jaxbench-runs/ in the folder the
    run was started from (made on first use; `jaxbench run`'s pytest root is the installed suite's
    folder, never to be written to); in a worker, its parent's."""
    run = state(config)
    if run.report_dir is None:
        folder = process.worker_folder(config)
        chosen = process.read_input(folder).get("report_dir") if folder else config.getoption("report_dir")
        if chosen:
            path = Path(chosen)
        else:
            env = measure.environment()
            path = default_report_dir(config.invocation_params.dir, env["platform"], env["device_kind"])
        run.report_dir = path.resolve()
    return run.report_dir


def record(config, case_id: str, outcome: str, message: str) -> None:
    """Remember why a benchmark has no timing (`outcome`: one of `NOT_MEASURED`)."""
    state(config).outcomes[outcome][case_id] = message


def writes_results(config) -> bool:
    """Whether this process writes results.json and the report: not a worker, and process 0 of a
    run of several."""
    return not process.worker_folder(config) and distributed.is_main_process()


def suite_section(config) -> dict:
    """The results file's `jaxbench` section: the run's environment, plan, skips and failures
    (crashes and timeouts of isolated benchmarks apart)."""
    run = state(config)
    return {
        "suite": SUITE,
        "schema_version": SCHEMA_VERSION,
        **measure.environment(config.getoption("cpu_devices")),
        "matmul_rates": run.matmul_rates,
        "n_processes": len(run.hosts) or 1,
        "hosts": hidden_hosts(run.hosts) if config.getoption("hide_host_names", False) else run.hosts,
        "planned": run.planned,
        **run.outcomes,
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
    if session.exitstatus == pytest.ExitCode.USAGE_ERROR:  # nothing was run (`cases.check_filtered`)
        return
    if config.getoption("collectonly") or not writes_results(config) or not measured_benchmarks(config):
        return
    from jaxbench.reports.build import build_report
    from jaxbench.reports.expectations import expectations_table
    from jaxbench.reports.results import load_results

    directory = report_dir(config)
    build_report([write_results(config, directory)], directory)
    if config.getoption("strict_expectations"):
        expectations = expectations_table(load_results(directory / RESULTS_FILE))
        below = expectations[expectations["verdict"] == "below"]
        state(config).below = [f"{r.workload} {r.mode}: {r.claim} ({r.reason})" for r in below.itertuples()]
        if len(below) and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def summary_lines(config) -> list[tuple[str, bool]]:
    """What the run prints at its end: (line, whether in red)."""
    lines = []
    run = state(config)
    if run.report_dir and writes_results(config) and (run.report_dir / RESULTS_FILE).exists():
        lines.append((f"results and report in {run.report_dir}", False))
    lines += [(f"expectation below (--strict-expectations): {line}", True) for line in run.below]
    if run.planned and not process.worker_folder(config):
        time_line = time_spent_line(config)
        lines += [(time_line, False)] if time_line else []
    return lines
