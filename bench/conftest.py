"""The benchmark session's pytest hooks; what they keep lives in `bench/session.py`, the fixtures
in `bench/fixtures.py`, the case selection in `bench/cases.py`."""

from __future__ import annotations

import os

import pytest

from jaxbench.bench import distributed, interrupt, process, workers
from jaxbench.bench import session as bench_session
from jaxbench.bench.cases import (
    CASE_PARAMETERS,
    case_of,
    check_filtered,
    check_mesh,
    check_selected,
    check_workloads,
    is_placeholder,
)
from jaxbench.bench.fixtures import elsewhere, environment, matmul_rates, references, workdir, worker_pool  # noqa: F401 - registers them
from jaxbench.bench.options import freeze_selection
from jaxbench.bench.results import SUITE
from jaxbench.reports.results import HIDDEN_HOST


@pytest.hookimpl(trylast=True)  # after `bench.plugin`'s, which sets `--cpu-devices` for `pytest tests`
def pytest_configure(config):
    """This process's CPU device count, before anything starts a JAX backend: one, so that no
    single-device step pays for virtual devices it does not use (a worker gets `--cpu-devices`).
    Then the preset of `--size auto` for the device at hand, the workloads asked for, outside ones
    imported and checked (after the device count: a module of the user's may start a backend as it
    is imported), a selection with no benchmark refused, and `--mesh` checked against it. Last,
    a fresh persistent compilation cache of this process's own, for cold and cached compile times."""
    process.leave_device_memory_to_workers(config)
    import jax

    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        # (the user may choose the count through XLA_FLAGS instead; setting both is an error in JAX)
        jax.config.update("jax_num_cpu_devices", process.process_cpu_devices(config))
    distributed.initialize(config)  # one process of several: before anything touches a device
    freeze_selection(config, size=bench_session.choose_size(config), workloads=check_workloads(config))
    check_selected(config)
    check_mesh(config)
    bench_session.start_compile_cache(config)


def pytest_report_header(config):
    """What `--size auto` chose and why, among the run's first lines."""
    return bench_session.size_choice(config)


def pytest_unconfigure(config):
    """Stop counting the run's XLA compilations; remove this process's compilation cache folder."""
    bench_session.stop_counting_compilations(config)
    bench_session.remove_compile_cache(config)


def pytest_generate_tests(metafunc):
    """Parametrise the benchmarks with the cases the command line selects (`bench/cases.py`)."""
    for name, select in CASE_PARAMETERS.items():
        if name in metafunc.fixturenames:
            cases = select(metafunc.config)
            metafunc.parametrize(name, cases, ids=[case.id for case in cases])


def pytest_sessionstart(session):
    """Fail fast, before measuring anything, when --report-dir or --checkpoint-dir cannot be
    written; make Ctrl-C stop the run wherever it lands (`bench.interrupt`); in a worker, take
    what the parent handed over."""
    interrupt.install(session)
    bench_session.start_clock(session.config)
    if not session.config.getoption("collectonly"):
        bench_session.check_folders(session.config)
        bench_session.state(session.config).hosts = distributed.hosts()  # a collective: every process
        workers.start(session.config, bench_session.state(session.config).initial_states)


@pytest.hookimpl(trylast=True)  # after pytest's own -k and -m: what they deselect is not planned
def pytest_collection_modifyitems(session, config, items):
    """Drop the placeholder of a bench module none of whose cases is selected (e.g. test_steps with
    `--workloads bayes`); in a worker, keep only the cases it was given. Benchmarks over several
    devices run last (on a CPU, together in one worker). Remember the planned benchmarks, so a
    report can say which ones a run is missing (and a worker runs no case `-k` left out)."""
    folder = process.worker_folder(config)
    wanted = set(process.read_input(folder)["cases"]) if folder else None
    dropped = [item for item in items if is_placeholder(item)
               or (wanted is not None and case_of(item) and case_of(item).id not in wanted)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]
    if not items and not folder:
        check_filtered(config)
    items.sort(key=lambda item: bool(case_of(item) and case_of(item).wants_several_devices))
    bench_session.state(config).planned = [case.id for case in map(case_of, items) if case]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Record why a benchmark was skipped (e.g. a batch that does not divide over the devices) or
    failed; in a worker, write each case's outcome for the parent as soon as it is known."""
    report = yield
    case, folder = case_of(item), process.worker_folder(item.config)
    # A worker hands back every case's outcome once its call is done; this process keeps only
    # skips and failures (its timings are pytest-benchmark's).
    wanted = report.skipped or report.failed or (folder is not None and report.when == "call")
    if case is None or not wanted:
        return report
    outcome = workers.outcome_of(item, case, report, call)
    if folder:
        workers.write_outcome(folder, outcome)
        if "references" in item.funcargs:  # hand back what this worker computed, for the next one
            item.funcargs["references"].hand_back(folder / workers.COMPUTED_REFERENCES_FILE)
    elif outcome.outcome != "passed":
        bench_session.record(item.config, case.id, outcome.outcome, outcome.message)
    return report


def pytest_benchmark_update_machine_info(config, machine_info):
    """With `--hide-host-names`: the host's name left out of the machine info pytest-benchmark
    records (in results.json, and in its own saved runs)."""
    if config.getoption("hide_host_names", False):
        machine_info["node"] = HIDDEN_HOST


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Mark the JSON as this suite's, with the run's environment, plan, skips and failures."""
    output_json[SUITE] = bench_session.suite_section(config)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After each benchmark, rewrite results.json with everything measured so far."""
    yield
    if case_of(item):
        bench_session.write_results_so_far(item.config)


def pytest_sessionfinish(session, exitstatus):
    """Write the final results and the report, also after a failure or a Ctrl-C (a Ctrl-C while
    they are written is held until they are whole, then ends the run as interrupted)."""
    interrupt.finishing(session)
    try:
        with bench_session.spending(session.config, "the report"):
            bench_session.finish(session)
    finally:
        interrupt.uninstall(session)
    if interrupt.requested() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.INTERRUPTED


@pytest.hookimpl(tryfirst=True)  # before pytest's terminal reporter formats the traceback
def pytest_keyboard_interrupt(excinfo):
    """A Ctrl-C ends the run as interrupted (exit status 2), wherever it landed
    (`interrupt.drop_lineless_frames`)."""
    interrupt.drop_lineless_frames(excinfo.value)


def pytest_terminal_summary(terminalreporter, config):
    """Where the results and report went, and strict mode's `below` lines."""
    lines = bench_session.summary_lines(config)
    if lines:
        terminalreporter.write_sep("-", "jaxbench")
    for line, red in lines:
        terminalreporter.write_line(line, red=red)
