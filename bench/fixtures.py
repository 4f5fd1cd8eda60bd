"""The fixtures the benchmarks take: the run's environment and matmul rates, the references every
variant is checked against, the worker pool, and a folder per benchmark for checkpoints."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from jaxbench.bench import measure, process, session, workers
from jaxbench.bench.cases import selected_cases, selected_workflow_cases
from jaxbench.bench.references import References


@pytest.fixture(scope="session")
def environment(request) -> dict:
    """The run's platform, devices and versions (`bench.measure.environment`)."""
    return measure.environment(request.config.getoption("cpu_devices"))


@pytest.fixture(scope="session")
def matmul_rates(request) -> dict[str, float]:
    """The in-run matmul FLOP/s of each compute dtype the selected steps use (`float32`, and
    `bfloat16` with the bf16 variant), measured once per run; a worker is handed its parent's, so
    every row of a run is divided by the same rate of its dtype."""
    folder = process.worker_folder(request.config)
    if folder:
        rates = process.read_input(folder)["matmul_rates"]
    else:
        dtypes = sorted({case.compute_dtype for case in selected_cases(request.config)})
        rates = {dtype: measure.matmul_rate(dtype) for dtype in dtypes}
    session.state(request.config).matmul_rates = rates
    return rates


@pytest.fixture(scope="session")
def references(request, environment) -> References:
    """The run's reference results (`bench.references`), on the host, building their models from
    the process's initial states (`bench.session.RunState`)."""
    checkpoint_dir = request.config.getoption("checkpoint_dir")
    states = session.state(request.config).initial_states
    arithmetic = environment["float32_matmul_arithmetic"]
    folder = process.worker_folder(request.config)
    if folder:
        return References.load(folder / workers.REFERENCES_FILE, checkpoint_dir, arithmetic, states)
    return References(checkpoint_dir=checkpoint_dir, float32_arithmetic=arithmetic, initial_states=states)


@pytest.fixture(scope="session")
def worker_pool(request, references) -> workers.WorkerPool:
    """Runs the cases that need a process of their own (`bench.workers`)."""
    config = request.config
    planned = set(session.state(config).planned)
    cases = [case for case in selected_cases(config) + selected_workflow_cases(config) if case.id in planned]
    return workers.WorkerPool(config, references, cases, lambda: request.getfixturevalue("matmul_rates"),
                              lambda: session.report_dir(config))


@pytest.fixture
def elsewhere(request, worker_pool, benchmark):
    """case -> True when the case was run by a worker process and its outcome replayed into
    `benchmark` (or its skip or failure raised); False when it runs in this process."""

    def run_elsewhere(case) -> bool:
        worker = workers.worker_config_for(case, request.config)
        if worker is None:
            return False
        with session.spending(request.config, "worker processes"):
            outcome = worker_pool.outcome(case, worker)
        workers.replay(outcome, benchmark)
        return True

    return run_elsewhere


@pytest.fixture
def workdir(request) -> Path:
    """A fresh folder under --checkpoint-dir for one benchmark's checkpoints, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="jaxbench-", dir=request.config.getoption("checkpoint_dir")))
    yield path
    shutil.rmtree(path, ignore_errors=True)
