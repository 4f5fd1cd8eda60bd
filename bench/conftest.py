"""The benchmark session's hooks and fixtures: which cases run where, shared measurements, and
results written as they come."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from bench import interrupt, measure, workers
from bench.cases import CASE_PARAMETERS, case_of, is_placeholder, selected_cases, selected_workflow_cases
from bench.references import References
from bench.results import RESULTS_FILE, SCHEMA_VERSION, SUITE, default_report_dir, measured_benchmarks, write_results
from workloads.workflow import cannot_write

_REPORT_DIR = pytest.StashKey[Path]()
_PLANNED = pytest.StashKey[list]()
_SKIPPED = pytest.StashKey[dict]()
_FAILED = pytest.StashKey[dict]()
_BELOW = pytest.StashKey[list]()
_MATMUL_RATES = pytest.StashKey[dict]()


@pytest.hookimpl(trylast=True)  # after the root conftest's, which sets `--cpu-devices` for `pytest tests`
def pytest_configure(config):
    """This process's CPU device count, before anything starts a JAX backend: one, so that no
    single-device step pays for virtual devices it does not use (a worker gets `--cpu-devices`)."""
    import jax

    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return  # the user chose the count through XLA_FLAGS; setting both is an error in JAX
    jax.config.update("jax_num_cpu_devices", workers.process_cpu_devices(config))


def pytest_generate_tests(metafunc):
    for name, select in CASE_PARAMETERS.items():
        if name in metafunc.fixturenames:
            cases = select(metafunc.config)
            metafunc.parametrize(name, cases, ids=[case.id for case in cases])


@pytest.fixture(scope="session")
def environment(request) -> dict:
    """The run's platform, devices and versions (`bench.measure.environment`)."""
    return measure.environment(request.config.getoption("cpu_devices"))


@pytest.fixture(scope="session")
def matmul_rates(request) -> dict[str, float]:
    """The in-run matmul FLOP/s of each compute dtype the selected steps use (`float32`, and
    `bfloat16` with the bf16 variant), measured once per run; a worker is handed its parent's, so
    every row of a run is divided by the same rate of its dtype."""
    folder = workers.worker_folder(request.config)
    if folder:
        rates = workers.read_input(folder)["matmul_rates"]
    else:
        dtypes = sorted({case.compute_dtype for case in selected_cases(request.config)})
        rates = {dtype: measure.matmul_rate(dtype) for dtype in dtypes}
    request.config.stash[_MATMUL_RATES] = rates
    return rates


@pytest.fixture(scope="session")
def references(request, environment) -> References:
    """The run's reference results (`bench.references`), on the host."""
    checkpoint_dir = request.config.getoption("checkpoint_dir")
    arithmetic = environment["float32_matmul_arithmetic"]
    folder = workers.worker_folder(request.config)
    if folder:
        return References.load(folder / workers.REFERENCES_FILE, checkpoint_dir, arithmetic)
    return References(checkpoint_dir=checkpoint_dir, float32_arithmetic=arithmetic)


@pytest.fixture(scope="session")
def worker_pool(request, references) -> workers.WorkerPool:
    """Runs the cases that need a process of their own (`bench.workers`)."""
    config = request.config
    planned = selected_cases(config) + selected_workflow_cases(config)
    planned = [case for case in planned if case.id in config.stash.get(_PLANNED, [])]
    return workers.WorkerPool(config, references, planned, lambda: request.getfixturevalue("matmul_rates"))


@pytest.fixture
def elsewhere(request, worker_pool, benchmark):
    """case -> True when the case was run by a worker process and its outcome replayed into
    `benchmark` (or its skip or failure raised); False when it runs in this process."""

    def run_elsewhere(case) -> bool:
        worker = workers.worker_config_for(case, request.config)
        if worker is None:
            return False
        workers.replay(worker_pool.outcome(case, worker), benchmark)
        return True

    return run_elsewhere


@pytest.fixture
def workdir(request) -> Path:
    """A fresh folder under --checkpoint-dir for one benchmark's checkpoints, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="jaxbench-", dir=request.config.getoption("checkpoint_dir")))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _must_be_writable(option: str, folder: str | None) -> None:
    """A usage error (one line, before anything is measured) when `folder` cannot be written."""
    error = folder and cannot_write(option, folder)
    if error:
        raise pytest.UsageError(error)


def pytest_sessionstart(session):
    """Fail fast, before measuring anything, when --report-dir or --checkpoint-dir cannot be
    written; make Ctrl-C stop the run wherever it lands (`bench.interrupt`)."""
    interrupt.install(session)
    if not session.config.getoption("collectonly"):
        _must_be_writable("--report-dir", session.config.getoption("report_dir"))
        _must_be_writable("--checkpoint-dir", session.config.getoption("checkpoint_dir"))


def report_dir(config) -> Path:
    """The run's report folder: `--report-dir`, or a new one under reports/runs/ (made on first use)."""
    if _REPORT_DIR not in config.stash:
        chosen = config.getoption("report_dir")
        if chosen:
            path = Path(chosen)
        else:
            env = measure.environment()
            path = default_report_dir(config.rootpath, env["platform"], env["device_kind"])
        config.stash[_REPORT_DIR] = path.resolve()
    return config.stash[_REPORT_DIR]


def pytest_collection_modifyitems(session, config, items):
    """Drop the placeholder of a bench module none of whose cases is selected (e.g. test_steps with
    `--workloads bayes`); in a worker, keep only the cases it was given. Benchmarks over several
    devices run last (on a CPU, together in one worker). Remember the planned benchmarks, so a
    report can say which ones a run is missing."""
    folder = workers.worker_folder(config)
    wanted = set(workers.read_input(folder)["cases"]) if folder else None
    dropped = [item for item in items if is_placeholder(item)
               or (wanted is not None and case_of(item) and case_of(item).id not in wanted)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]
    items.sort(key=lambda item: bool(case_of(item) and case_of(item).wants_several_devices))
    config.stash[_PLANNED] = [case.id for case in map(case_of, items) if case]
    config.stash[_SKIPPED] = {}
    config.stash[_FAILED] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Record why a benchmark was skipped (e.g. a batch that does not divide over the devices) or
    failed; in a worker, write each case's outcome for the parent as soon as it is known."""
    report = yield
    case, folder = case_of(item), workers.worker_folder(item.config)
    # A worker hands back every case's outcome once its call is done; this process keeps only
    # skips and failures (its timings are pytest-benchmark's).
    wanted = report.skipped or report.failed or (folder is not None and report.when == "call")
    if case is None or not wanted:
        return report
    outcome = workers.outcome_of(item, case, report, call)
    if folder:
        workers.write_outcome(folder, outcome)
    elif outcome.outcome == "skipped":
        item.config.stash[_SKIPPED][case.id] = outcome.message
    elif outcome.outcome == "failed":
        item.config.stash[_FAILED][case.id] = outcome.message
    return report


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Mark the JSON as this suite's, with the run's environment, plan, skips and failures."""
    output_json[SUITE] = {
        "suite": SUITE,
        "schema_version": SCHEMA_VERSION,
        **measure.environment(config.getoption("cpu_devices")),
        "matmul_rates": config.stash.get(_MATMUL_RATES, {}),
        "planned": config.stash.get(_PLANNED, []),
        "skipped": config.stash.get(_SKIPPED, {}),
        "failed": config.stash.get(_FAILED, {}),
    }


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After each benchmark, rewrite results.json with everything measured so far."""
    yield
    if case_of(item) and measured_benchmarks(item.config) and not workers.worker_folder(item.config):
        write_results(item.config, report_dir(item.config))


def pytest_sessionfinish(session, exitstatus):
    """Write the final results and the report, also after a failure or a Ctrl-C (a Ctrl-C while
    they are written is held until they are whole, then ends the run as interrupted).

    With --strict-expectations, an expectation row that is `below` fails the run.
    """
    interrupt.finishing(session)
    try:
        _write_results_and_report(session)
    finally:
        interrupt.uninstall(session)
    if interrupt.requested() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.INTERRUPTED


def _write_results_and_report(session) -> None:
    config = session.config
    if config.getoption("collectonly") or workers.worker_folder(config):
        return
    if not measured_benchmarks(config):
        return  # nothing timed (e.g. --benchmark-disable): no timing report
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


def pytest_terminal_summary(terminalreporter, config):
    if _REPORT_DIR in config.stash:
        terminalreporter.write_sep("-", "jaxbench")
        terminalreporter.write_line(f"results and report in {config.stash[_REPORT_DIR]}")
    for line in config.stash.get(_BELOW, []):
        terminalreporter.write_line(f"expectation below (--strict-expectations): {line}", red=True)
