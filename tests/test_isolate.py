"""`--isolate`: each benchmark in a fresh process of its own, a crash or a hang recorded as that
benchmark's status while the run goes on; the device's peak memory where the platform keeps it."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest

from jaxbench.bench.hardware import peak_bytes_in_use
from jaxbench.bench.process import leave_device_memory_to_workers
from jaxbench.bench.workers import how_it_ended
from jaxbench.reports.summary import PEAK, summary_table
from tests.conftest import FAST_TIMING, fresh_compile_cache, run_pytest
from tests.planted_faults import FAULT_VARIABLE

TIMEOUT_S = 30
"""--benchmark-timeout of the planted run: room for a tiny benchmark's fresh process on a CI host
twice as slow as this one (docs/measurements.md), and what the planted hang costs."""


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory) -> dict:
    """An isolated tiny run of two planted workloads (`tests.planted_ends`) whose `jit_vmap` steps
    segfault and hang; the crashing one's `jit` loop works and is measured (the hanging one's is
    left out: a worker more, and nothing new). Its own compilation caches (not the tests' shared
    one), each of which must be gone at the end."""
    report_dir, temp = tmp_path_factory.mktemp("isolated"), tmp_path_factory.mktemp("temp")
    proc = run_pytest("bench", "--isolate", "--benchmark-timeout", str(TIMEOUT_S),
                      "--workload-module", "tests.planted_crash", "--workload-module", "tests.planted_hang",
                      "--workloads", "crashes,hangs", "--modes", "train", "--variants", "jit,jit_vmap",
                      "-k", "jit_vmap or crashes",
                      "--size", "tiny", "--report-dir", str(report_dir), "-q", *FAST_TIMING, timeout=600,
                      env={**fresh_compile_cache(), "TMPDIR": str(temp)})
    assert (report_dir / "results.json").exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((report_dir / "results.json").read_text())
    return {"proc": proc, "results": results, "dir": report_dir, "temp": temp}


@pytest.mark.slow
@pytest.mark.version_independent
def test_a_crash_and_a_hang_are_recorded_and_every_other_benchmark_measured(planted_run):
    proc, suite = planted_run["proc"], planted_run["results"]["jaxbench"]
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # two benchmarks failed
    assert suite["isolated"] is True
    assert list(suite["crashed"]) == ["crashes-train-jit_vmap"]
    assert "was killed by SIGSEGV: Fatal Python error: Segmentation fault" in suite["crashed"]["crashes-train-jit_vmap"]
    assert "in segfault" in suite["crashed"]["crashes-train-jit_vmap"]  # where it died, innermost frame first
    assert list(suite["timeout"]) == ["hangs-train-jit_vmap"]
    assert f"stopped after its timeout of {TIMEOUT_S} s" in suite["timeout"]["hangs-train-jit_vmap"]
    assert suite["failed"] == {} and suite["skipped"] == {}
    measured = sorted(b["extra_info"]["case_id"] for b in planted_run["results"]["benchmarks"])
    assert measured == ["crashes-train-jit"]
    assert all(len(b["stats"]["data"]) >= 2 for b in planted_run["results"]["benchmarks"])
    # every process's compilation cache is gone, the killed workers' too (in their worker folders)
    assert list(planted_run["temp"].iterdir()) == []


@pytest.mark.slow
@pytest.mark.version_independent
def test_the_report_names_each_status(planted_run):
    report = (planted_run["dir"] / "report.md").read_text()
    assert "- crashes-train-jit_vmap (crashed): not measured: the worker (its own process, 1 CPU device) was " \
           "killed by SIGSEGV" in report
    assert "- hangs-train-jit_vmap (timeout): not measured:" in report
    assert "## Missing" not in report  # every planned benchmark is accounted for


@pytest.mark.slow
@pytest.mark.version_independent
def test_each_process_reads_its_device_peak_where_the_platform_keeps_one(planted_run):
    # A CPU keeps no memory statistics: the figure is recorded as unknown and the report has no column.
    rows = planted_run["results"]["benchmarks"]
    assert all("peak_bytes_in_use" in b["extra_info"] and b["extra_info"]["peak_bytes_in_use"] is None for b in rows)
    assert PEAK not in summary_table(planted_run["results"])
    # Where it has one (a GPU), the summary shows it beside the compiled estimate.
    for b in rows:
        b["extra_info"]["peak_bytes_in_use"] = 3 * 2**20
    assert (summary_table(planted_run["results"])[PEAK] == 3.0).all()


def device(stats):
    return SimpleNamespace(memory_stats=lambda: stats)


def test_peak_bytes_in_use_is_the_largest_over_the_devices_and_none_without_statistics():
    gpus = [device({"peak_bytes_in_use": 5, "bytes_in_use": 1}), device({"peak_bytes_in_use": 7})]
    assert peak_bytes_in_use(gpus) == 7
    assert peak_bytes_in_use([device(None), device(None)]) is None  # a CPU
    assert peak_bytes_in_use([device({"bytes_in_use": 1})]) is None


@pytest.mark.parametrize("returncode,words", [
    (-11, "was killed by SIGSEGV"),
    (-6, "was killed by SIGABRT"),
    (-9, "was killed by SIGKILL (often the out-of-memory killer)"),
    (3, "exited with status 3"),
])
def test_how_a_worker_ended_is_named(returncode, words):
    assert how_it_ended(returncode) == words


def test_an_isolated_run_leaves_the_gpus_memory_to_its_workers():
    isolated = SimpleNamespace(getoption=lambda name, default=None: {"isolate": True}.get(name, default))
    environ = {}
    leave_device_memory_to_workers(isolated, environ)
    assert environ == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}  # no 75% grabbed by the parent
    chosen = {"XLA_PYTHON_CLIENT_PREALLOCATE": "true"}
    leave_device_memory_to_workers(isolated, chosen)
    assert chosen == {"XLA_PYTHON_CLIENT_PREALLOCATE": "true"}  # the user's choice stands
    plain, environ = SimpleNamespace(getoption=lambda name, default=None: default), {}
    leave_device_memory_to_workers(plain, environ)
    assert environ == {}


@pytest.mark.slow
def test_the_peak_an_isolated_benchmark_records_is_its_timed_steps_own(tmp_path):
    """On a GPU (simulated: `tests.planted_faults`, `gpu_memory`, with TF32 float32 matmuls, so that
    the check runs on a full-precision copy of the step): the peak is read after the timed step's
    first call, before its reference exists, and the full-precision copy ran and was freed before the
    step was built. So the recorded peak is the step's compiled footprint (its state, batch and
    output live, plus XLA's temporaries), not that plus a copy or a reference beside it."""
    env = {**os.environ, "PYTEST_PLUGINS": "tests.planted_faults", FAULT_VARIABLE: "tf32_gpu,gpu_memory"}
    proc = run_pytest("bench", "--isolate", "--workloads", "mlp", "--modes", "train", "--variants", "jit_vmap",
                      "--size", "tiny", "--report-dir", str(tmp_path), "-q", *FAST_TIMING, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (row,) = [b["extra_info"] for b in json.loads((tmp_path / "results.json").read_text())["benchmarks"]]
    assert row["matmul_arithmetic"] == "tf32"
    assert 0.95 * row["mem_bytes"] <= row["peak_bytes_in_use"] <= 1.05 * row["mem_bytes"], row
