"""Benchmarks run in a fresh worker process with a configuration of their own, their results
brought back into this run.

Why: on a CPU the number of (virtual) devices is fixed when JAX starts, and their presence alone
slows every single-device step (by tens of percent on a 2-core host: docs/measurements.md). So `pytest bench` runs
with one device, and the benchmarks that want several run in a worker started with
`--cpu-devices N`. The same mechanism serves whatever needs a fresh process per configuration:
a device-count sweep, and `--isolate`, a worker per benchmark whose crash or timeout becomes that
benchmark's status.

How: a worker is `python -m pytest bench --jaxbench-worker DIR ...`. It reads `DIR/input.pkl`
(the case ids to run, their reference results, the run's matmul rates, and the initial state of
each model they build, which spares the worker initialising it again), runs exactly those cases
the way every benchmark runs (checked against its reference, then timed), and after each one
rewrites `DIR/outcomes.json`: per case its outcome (`passed`, `failed`, `skipped`), the message,
the raw timed rounds, the group and the `extra_info`. The parent replays each outcome into its
own benchmark fixture (`replay`), so pytest-benchmark's table, `results.json` and the report hold
it like any other benchmark. A worker that crashes or runs past its timeout gives the cases it
did not finish the status `crashed` or `timeout`, with the reason; what it finished is kept.
The worker also writes back into `DIR` the reference results it computed (an isolated run's
parent computes none), which the parent hands to its next workers.
"""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pytest

from jaxbench.bench import measure, session
from jaxbench.bench.cases import Case
from jaxbench.bench.options import selection
from jaxbench.bench.plugin import suite_arguments
from jaxbench.bench.process import INPUT_FILE, WORKER_OPTION, isolating, multi_device_count, read_input, worker_folder
from jaxbench.bench.references import References
from jaxbench.bench.results import write_atomically
from jaxbench.workloads.steps import InitialStates

REFERENCES_FILE = "references.pkl"
COMPUTED_REFERENCES_FILE = "references-computed.pkl"
"""What a worker hands back: the references it computed (`References.hand_back`)."""
OUTCOMES_FILE = "outcomes.json"
HAND_OVER_MAX_BYTES = 512 * 2**20
"""A model's initial state is handed to a worker up to this size (larger: the worker builds it)."""
WORKER_TIMEOUT_S = 3 * 3600
"""How long one worker may run before it is stopped and its unfinished cases fail."""
FORWARDED_OPTIONS = {
    "checkpoint_dir": "--checkpoint-dir",
    "benchmark_max_time": "--benchmark-max-time",
    "benchmark_min_rounds": "--benchmark-min-rounds",
    "long_step_rounds": "--long-step-rounds",
    "baseline_budget": "--baseline-budget",
    "mesh": "--mesh",
}
FORWARDED_FLAGS = {"benchmark_disable": "--benchmark-disable", "profile": "--profile", "save_hlo": "--save-hlo",
                   "compile_cached": "--compile-cached"}
"""Options of this run a worker gets too (option dest -> flag), besides the run's selection (its
workloads, modes, variants, resolved size, layouts, `--workload-module`, `--scaling`: the worker
collects what it selects, then keeps the cases it was given) and the switches of `FORWARDED_FLAGS`."""


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker process is started with: its CPU device count, and for `--isolate` the one
    case it runs (so that no two cases share a configuration, hence a worker)."""

    cpu_devices: int
    isolated: str | None = None

    def __str__(self) -> str:
        devices = f"{self.cpu_devices} CPU device{'s' * (self.cpu_devices > 1)}"
        return f"its own process, {devices}" if self.isolated else devices


def worker_config_for(case: Case, config) -> WorkerConfig | None:
    """Where `case` runs: None for this process, or the configuration of the worker it needs.

    With `--isolate`, every case goes to a worker of its own. Otherwise only a case that wants
    several devices, on a CPU whose process has fewer than `--cpu-devices` of them, goes to a
    worker. Real accelerators are all visible to this process already.
    """
    if worker_folder(config):
        return None
    if isolating(config):
        return WorkerConfig(cpu_devices=config.getoption("cpu_devices") if case.wants_several_devices else 1,
                            isolated=case.id)
    if not case.wants_several_devices:
        return None
    import jax

    if multi_device_count(config) == len(jax.devices()):
        return None
    return WorkerConfig(cpu_devices=config.getoption("cpu_devices"))


class WorkerFailure(pytest.fail.Exception):
    """A failure replayed from a worker, with its status (one of `reports.results.FAILURES`)."""

    def __init__(self, message: str, status: str):
        super().__init__(message, pytrace=False)
        self.status = status


@dataclass
class Outcome:
    """What a worker measured for one case."""

    case_id: str
    outcome: str  # "passed", "skipped", or a failure: "failed", "crashed", "timeout" (`reports.results.FAILURES`)
    message: str = ""
    rounds: list[float] = field(default_factory=list)
    group: str | None = None
    extra_info: dict = field(default_factory=dict)


def worker_arguments(config, worker: WorkerConfig) -> list[str]:
    """The options a worker is started with besides its folder: the run's selection on the
    worker's own CPU device count, `FORWARDED_OPTIONS` and `FORWARDED_FLAGS`."""
    chosen = replace(selection(config), cpu_devices=worker.cpu_devices)
    args = chosen.arguments()
    for dest, flag in FORWARDED_OPTIONS.items():
        value = config.getoption(dest)
        if value is not None:
            args += [flag, str(value)]
    if chosen.scaling:
        args += ["--scaling", chosen.scaling[0] if len(chosen.scaling) == 1 else "both"]
    return args + [flag for dest, flag in FORWARDED_FLAGS.items() if config.getoption(dest)]


def _tail(text: str, lines: int = 15) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:])


def _last_words(text: str, frames: int = 4) -> str:
    """What a crashed worker printed that says where it died: Python's fatal-error report and its
    innermost `frames` (faulthandler prints the innermost first), else its last lines."""
    lines = text.strip().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Fatal Python error")), None)
    if start is None:
        return _tail(text, 5)
    report = [lines[start]] + [line.strip() for line in lines[start + 1:] if line.strip().startswith("File ")][:frames]
    return " | ".join(report)


def how_it_ended(returncode: int) -> str:
    """How a worker that exited with `returncode` before it finished its cases crashed: the signal
    that killed it (a segfault, an abort such as XLA's, an out-of-memory kill), or the exit status
    it chose."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}" + (" (often the out-of-memory killer)" if name == "SIGKILL" else "")
    return f"exited with status {returncode}"


def run_worker(config, cases: list[Case], worker: WorkerConfig, references: References,
               matmul_rates: dict[str, float] | None, timeout_s: float = WORKER_TIMEOUT_S,
               report_dir: Path | None = None) -> dict[str, Outcome]:
    """Run `cases` in one fresh worker process; case id -> its outcome. A case the worker did not
    finish gets the status of its end: `crashed` (with the signal or exit status and the last lines
    it printed) or `timeout`. References the worker computed are kept for the next worker.
    `report_dir`: the run's report folder, where the worker writes what goes beside the results
    (`--profile`'s traces)."""
    isolated = worker.isolated is not None
    with tempfile.TemporaryDirectory(prefix="jaxbench-worker-") as folder:
        folder = Path(folder)
        references.save(folder / REFERENCES_FILE, cases, compute=not isolated)
        states = initial_states_of(cases, references.initial_states)
        (folder / INPUT_FILE).write_bytes(pickle.dumps({"cases": [case.id for case in cases],
                                                        "matmul_rates": matmul_rates,
                                                        "initial_states": states,
                                                        "isolated": isolated,
                                                        "report_dir": report_dir}))
        command = [sys.executable, "-m", "pytest", *suite_arguments(), "-q",
                   f"{WORKER_OPTION}={folder}", *worker_arguments(config, worker)]
        try:  # from the run's own folder: a --workload-module there is found as the run found it
            proc = subprocess.run(command, cwd=config.invocation_params.dir, capture_output=True, text=True,
                                  timeout=timeout_s)
            status = "crashed"
            ended = f"the worker ({worker}) {how_it_ended(proc.returncode)}: {_last_words(proc.stdout + proc.stderr)}"
        except subprocess.TimeoutExpired:
            status, ended = "timeout", f"the worker ({worker}) was stopped after its timeout of {timeout_s:g} s"
        outcomes = read_outcomes(folder)
        references.take(folder / COMPUTED_REFERENCES_FILE)
        session.state(config).worker_compilations.add(folder / session.COMPILATIONS_FILE)
    unfinished = f"not measured: {ended}"
    return {case.id: outcomes.get(case.id) or Outcome(case.id, status, unfinished) for case in cases}


def timeout_for(config, worker: WorkerConfig) -> float:
    """How long `worker` may run: `--benchmark-timeout` for one benchmark's own process, else
    `WORKER_TIMEOUT_S` for all the cases of its configuration."""
    return config.getoption("benchmark_timeout") if worker.isolated else WORKER_TIMEOUT_S


def initial_states_of(cases: list[Case], states: InitialStates | None) -> dict[tuple, dict]:
    """The initial model state of each step workload and size among `cases` that `states` kept
    when this process built the model (`start`), for the worker (`InitialStates.take`)."""
    keys = sorted({(case.workload, case.size, 0) for case in cases if not case.is_workflow})
    kept = {key: states.kept(*key) for key in keys} if states else {}
    return {key: state for key, state in kept.items() if state is not None}


def start(config, states: InitialStates) -> None:
    """In a worker: build the models from the states the parent handed over. In a parent on a CPU
    (where workers run): keep each model's initial state as it is first built, to hand over."""
    folder = worker_folder(config)
    if folder:
        states.take(read_input(folder).get("initial_states", {}))
        return
    import jax

    if jax.devices()[0].platform == "cpu":
        states.keep_up_to_bytes = HAND_OVER_MAX_BYTES


def read_outcomes(folder: Path) -> dict[str, Outcome]:
    """The outcomes a worker wrote into `folder` (none if it wrote none)."""
    path = folder / OUTCOMES_FILE
    if not path.exists():
        return {}
    return {case_id: Outcome(**outcome) for case_id, outcome in json.loads(path.read_text()).items()}


def write_outcome(folder: Path, outcome: Outcome) -> None:
    """Add `outcome` to the worker's outcomes file (rewritten atomically after each case)."""
    outcomes = {case_id: asdict(o) for case_id, o in read_outcomes(folder).items()}
    outcomes[outcome.case_id] = asdict(outcome)
    write_atomically(folder / OUTCOMES_FILE, json.dumps(outcomes, default=str))


class WorkerPool:
    """Runs the cases that need a worker, one worker per configuration, all of that configuration's
    planned cases at once (the first time one of them comes up), and keeps their outcomes.
    `matmul_rates` and `report_dir` are callables, asked only when a worker starts."""

    def __init__(self, config, references: References, planned: list[Case], matmul_rates, report_dir):
        self.config, self.references, self.planned, self.matmul_rates = config, references, planned, matmul_rates
        self.report_dir = report_dir
        self.outcomes: dict[str, Outcome] = {}

    def outcome(self, case: Case, worker: WorkerConfig) -> Outcome:
        """`case`'s outcome from its worker (started now if it has not run yet)."""
        if case.id not in self.outcomes:
            batch = [c for c in self.planned if c.id not in self.outcomes
                     and worker_config_for(c, self.config) == worker]
            batch = batch if case in batch else [case, *batch]
            self.outcomes.update(run_worker(self.config, batch, worker, self.references, self.matmul_rates(),
                                            timeout_for(self.config, worker), self.report_dir()))
        return self.outcomes[case.id]


def replay(outcome: Outcome, benchmark) -> None:
    """Bring a worker's outcome into this process's `benchmark`: its timed rounds and `extra_info`,
    or its skip or failure with the worker's message."""
    if outcome.outcome == "skipped":
        pytest.skip(outcome.message)
    if outcome.outcome != "passed":
        raise WorkerFailure(outcome.message, outcome.outcome)
    if not benchmark.enabled:
        benchmark.pedantic(lambda: None)  # --benchmark-disable: the worker ran and checked it once
    elif outcome.rounds:
        benchmark.group = outcome.group  # before the record is made, which copies it
        benchmark.extra_info.update(outcome.extra_info)
        measure.record_rounds(benchmark, outcome.rounds, "rounds timed in a worker process (jaxbench)")


def outcome_of(item, case: Case, report, call) -> Outcome:
    """The record of `case` from pytest's report of its item (and its benchmark fixture): what a
    worker hands back, and what a run keeps of its skips and failures."""
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        return Outcome(case.id, "skipped", reason.removeprefix("Skipped: "))
    if report.failed:
        if call.excinfo is None:
            return Outcome(case.id, "failed", _tail(report.longreprtext, 3))
        if call.excinfo.errisinstance(WorkerFailure):  # already a worker's message and status
            return Outcome(case.id, call.excinfo.value.status, str(call.excinfo.value))
        if call.excinfo.errisinstance(pytest.fail.Exception):
            return Outcome(case.id, "failed", str(call.excinfo.value))
        where = "in a worker: " if worker_folder(item.config) else ""
        return Outcome(case.id, "failed", where + call.excinfo.exconly())
    benchmark = item.funcargs.get("benchmark")
    stats = getattr(benchmark, "stats", None)
    if stats is None:
        return Outcome(case.id, "passed")
    return Outcome(case.id, "passed", rounds=list(stats.stats.data), group=benchmark.group,
                   extra_info=dict(benchmark.extra_info))
