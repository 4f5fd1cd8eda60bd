"""Worker processes: cases run in a fresh `pytest bench` process come back as outcomes."""

from __future__ import annotations

import pytest

from bench import workers
from bench.cases import Case
from bench.references import References


def test_a_worker_past_its_timeout_fails_its_cases_with_the_reason(pytestconfig):
    cases = [Case("mlp", "infer", "multi_device", "tiny")]
    outcomes = workers.run_worker(pytestconfig, cases, workers.WorkerConfig(cpu_devices=2), References(),
                                  matmul_rates={"float32": 1e9}, timeout_s=0.5)
    (outcome,) = outcomes.values()
    assert outcome.outcome == "failed"
    assert outcome.message == "not measured: the worker (2 CPU devices) was stopped after its timeout of 0.5 s"


def test_a_replayed_failure_or_skip_keeps_the_workers_message():
    with pytest.raises(pytest.fail.Exception, match="in a worker: IncorrectResult: params"):
        workers.replay(workers.Outcome("c", "failed", "in a worker: IncorrectResult: params"), benchmark=None)
    with pytest.raises(pytest.skip.Exception, match="only one device"):
        workers.replay(workers.Outcome("c", "skipped", "only one device"), benchmark=None)


def test_outcomes_are_written_after_each_case_and_read_back(tmp_path):
    first = workers.Outcome("a", "passed", rounds=[0.1, 0.2], group="g", extra_info={"mfu": 0.5})
    workers.write_outcome(tmp_path, first)
    workers.write_outcome(tmp_path, workers.Outcome("b", "skipped", "why"))
    assert workers.read_outcomes(tmp_path) == {"a": first, "b": workers.Outcome("b", "skipped", "why")}
