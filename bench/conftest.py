"""The benchmark session: which steps run, shared measurements, and results written as they come."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import measure
from bench.results import RESULTS_FILE, SCHEMA_VERSION, SUITE, default_report_dir, write_results
from workloads import WORKFLOW_VARIANTS, get_workload
from workloads.variants import prepare_reference, variants_for
from workloads.workflow import cannot_write

_REPORT_DIR = pytest.StashKey[Path]()
_PLANNED = pytest.StashKey[list]()
_SKIPPED = pytest.StashKey[dict]()
_BELOW = pytest.StashKey[list]()


@dataclass(frozen=True)
class Case:
    """One benchmark: a workload's step in one mode and one variant, at one size."""

    workload: str
    mode: str
    variant: str
    size: str
    layout: str = "data"  # multi_device only: how the step is laid out on the mesh

    @property
    def id(self) -> str:
        suffix = f"-{self.layout}" if self.layout != "data" else ""
        return f"{self.workload}-{self.mode}-{self.variant}{suffix}"


def selected_cases(config) -> list[Case]:
    """The step cases the command line selects, in workload, mode, variant order."""
    cases = []
    for name in config.getoption("workloads"):
        if name in WORKFLOW_VARIANTS:
            continue
        workload = get_workload(name)
        for mode in config.getoption("modes"):
            if mode not in workload.modes:
                continue
            for variant in variants_for(mode):
                if variant not in config.getoption("variants"):
                    continue
                layouts = workload.layouts if variant == "multi_device" else ("data",)
                cases += [Case(name, mode, variant, config.getoption("size"), layout) for layout in layouts]
    return cases


def selected_workflow_cases(config) -> list[Case]:
    """The workflow cases the command line selects (`--modes` does not apply: a workflow has one)."""
    size = config.getoption("size")
    return [Case(name, get_workload(name).mode, variant, size)
            for name in config.getoption("workloads") if name in WORKFLOW_VARIANTS
            for variant in WORKFLOW_VARIANTS[name] if variant in config.getoption("variants")]


CASE_PARAMETERS = {"case": selected_cases, "workflow_case": selected_workflow_cases}
"""Fixture name -> the cases it is parametrised with (steps in test_steps.py, workflows in test_workflows.py)."""


def pytest_generate_tests(metafunc):
    for name, select in CASE_PARAMETERS.items():
        if name in metafunc.fixturenames:
            cases = select(metafunc.config)
            metafunc.parametrize(name, cases, ids=[case.id for case in cases])


@pytest.fixture(scope="session")
def environment() -> dict:
    """The run's platform, devices and versions (`bench.measure.environment`)."""
    return measure.environment()


@pytest.fixture(scope="session")
def peak_flops() -> float:
    """The matmul FLOP/s of the default device, measured once per run."""
    return measure.matmul_peak_flops()


@pytest.fixture(scope="session")
def reference_result():
    """case -> the reference result (`baseline`'s, see `prepare_reference`) for the same workload,
    mode and size (computed once each)."""
    cache = {}

    def result(case: Case) -> dict:
        key = (case.workload, case.mode, case.size)
        if key not in cache:
            step = prepare_reference(get_workload(case.workload), case.size, case.mode)
            step()
            cache[key] = step.result()
        return cache[key]

    return result


@pytest.fixture
def workdir(request) -> Path:
    """A fresh folder under --checkpoint-dir for one benchmark's checkpoints, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="jaxbench-", dir=request.config.getoption("checkpoint_dir")))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def workflow_reference(tmp_path_factory):
    """(case, its own result if it is the reference variant) -> the result of its workflow's
    reference variant at the same size (run once per workflow and size)."""
    cache = {}

    def result(case: Case, own: dict | None = None) -> dict:
        key = (case.workload, case.size)
        if key not in cache and own is not None:
            cache[key] = own
        if key not in cache:
            workflow = get_workload(case.workload)
            workdir = tmp_path_factory.mktemp(f"{case.workload}-reference")
            with workflow.prepare(case.size, workflow.reference_variant, workdir) as run:
                run()
                cache[key] = run.result()
            shutil.rmtree(workdir, ignore_errors=True)
        return cache[key]

    return result


def _must_be_writable(option: str, folder: str | None) -> None:
    """A usage error (one line, before anything is measured) when `folder` cannot be written."""
    error = folder and cannot_write(option, folder)
    if error:
        raise pytest.UsageError(error)


def pytest_sessionstart(session):
    """Fail fast, before measuring anything, when --report-dir or --checkpoint-dir cannot be written."""
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
    `--workloads bayes`), and remember the planned benchmarks, so a report can say which ones a run
    is missing."""
    placeholders = [item for item in items if _case_of(item) is None
                    and set(CASE_PARAMETERS) & set(getattr(getattr(item, "callspec", None), "params", {}))]
    if placeholders:
        config.hook.pytest_deselected(items=placeholders)
        items[:] = [item for item in items if item not in placeholders]
    config.stash[_PLANNED] = [case.id for case in map(_case_of, items) if case]
    config.stash[_SKIPPED] = {}


def _case_of(item) -> Case | None:
    """The benchmark case an item measures (a step or a workflow), or None for other items."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    # An empty parametrisation (no case selected for a module) holds a placeholder, not a Case.
    return next((params[name] for name in CASE_PARAMETERS if isinstance(params.get(name), Case)), None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Record why a benchmark was skipped (e.g. a batch that does not divide over the devices)."""
    report = yield
    if report.skipped and _case_of(item):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        item.config.stash[_SKIPPED][_case_of(item).id] = reason.removeprefix("Skipped: ")
    return report


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Mark the JSON as this suite's, with the run's environment, plan and skips."""
    output_json[SUITE] = {
        "suite": SUITE,
        "schema_version": SCHEMA_VERSION,
        **measure.environment(),
        "planned": config.stash.get(_PLANNED, []),
        "skipped": config.stash.get(_SKIPPED, {}),
    }


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After each benchmark, rewrite results.json with everything measured so far."""
    yield
    if _case_of(item):
        write_results(item.config, report_dir(item.config))


def pytest_sessionfinish(session, exitstatus):
    """Write the final results and the report, also after a failure or a Ctrl-C.

    With --strict-expectations, an expectation row that is `below` fails the run.
    """
    config = session.config
    if config.getoption("collectonly") or not config._benchmarksession.benchmarks:
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


def pytest_terminal_summary(terminalreporter, config):
    if _REPORT_DIR in config.stash:
        terminalreporter.write_sep("-", "jaxbench")
        terminalreporter.write_line(f"results and report in {config.stash[_REPORT_DIR]}")
    for line in config.stash.get(_BELOW, []):
        terminalreporter.write_line(f"expectation below (--strict-expectations): {line}", red=True)
