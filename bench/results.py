"""Where a run's results go: the report folder, `results.json` written atomically after every benchmark."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from jaxbench.reports.results import write_atomically

RESULTS_FILE = "results.json"
SUITE = "jaxbench"
SCHEMA_VERSION = 1


def default_report_dir(root: Path, platform_name: str, device_kind: str, now: datetime | None = None) -> Path:
    """`<root>/jaxbench-runs/<YYYYmmdd-HHMMSS>-<platform>-<device kind>`, a new folder per run (not
    under `reports/`, which may be a package of the project the run is started in)."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    device = re.sub(r"[^A-Za-z0-9]+", "-", f"{platform_name}-{device_kind}").strip("-").lower()
    return root / "jaxbench-runs" / f"{stamp}-{device}"


_RUN_INFO = pytest.StashKey[tuple]()


def _run_info(config) -> tuple[dict, dict]:
    """pytest-benchmark's machine and commit info, made once per run (py-cpuinfo is slow)."""
    if _RUN_INFO not in config.stash:
        hook = config.hook
        machine_info = hook.pytest_benchmark_generate_machine_info(config=config)
        hook.pytest_benchmark_update_machine_info(config=config, machine_info=machine_info)
        commit_info = hook.pytest_benchmark_generate_commit_info(config=config)
        hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit_info)
        config.stash[_RUN_INFO] = (machine_info, commit_info)
    return config.stash[_RUN_INFO]


def measured_benchmarks(config) -> list:
    """pytest-benchmark's records of the benchmarks timed so far in this run.

    pytest-benchmark keeps them on its session object, `config._benchmarksession`, which has no
    public accessor; its own JSON hooks take this list. This is the one place the suite reads it."""
    session = getattr(config, "_benchmarksession", None)
    # A benchmark stopped before its first timed round (a Ctrl-C) has no data: left out, as
    # pytest-benchmark's own table and JSON leave it out (its records are false when empty). One
    # stopped after some rounds but before its `extra_info` was recorded is left out too: its
    # rounds are an unfinished measurement, and no report can say what they measured.
    return [bench for bench in session.benchmarks if bench and bench.extra_info] if session is not None else []


def write_results(config, report_dir: Path) -> Path | None:
    """Write pytest-benchmark's JSON of every benchmark run so far, raw rounds included.

    Goes through pytest-benchmark's own hooks (`pytest_benchmark_generate_json`,
    `pytest_benchmark_update_json`), so the file is exactly what `--benchmark-json` writes.
    Returns the path, or None when nothing has been measured yet.
    """
    benchmarks = measured_benchmarks(config)
    if not benchmarks:
        return None
    hook = config.hook
    machine_info, commit_info = _run_info(config)
    output = hook.pytest_benchmark_generate_json(
        config=config,
        benchmarks=benchmarks,
        include_data=True,
        machine_info=machine_info,
        commit_info=commit_info,
    )
    hook.pytest_benchmark_update_json(config=config, benchmarks=benchmarks, output_json=output)
    path = report_dir / RESULTS_FILE
    write_atomically(path, json.dumps(output, indent=2, default=str))
    return path
