"""`jaxbench export RESULTS.json --format github-action-benchmark`: a run's figures in
the `customSmallerIsBetter` JSON that the GitHub continuous-benchmark action
(benchmark-action/github-action-benchmark) reads, so a team can keep a dashboard without a server.

Each benchmark gives its median step time (ms, with the IQR as its range), and a compiled step
its per-device memory (MiB) too: both smaller-is-better.
"""

from __future__ import annotations

import json
from pathlib import Path

from jaxbench.reports.regress import benchmark_name
from jaxbench.reports.results import load_results, write_atomically

FORMATS = ("github-action-benchmark",)
MIB = 2**20


def github_action_benchmark(data: dict) -> list[dict]:
    """The `customSmallerIsBetter` entries of one run: `name`, `unit`, `value`, `range`, `extra`."""
    entries = []
    for bench in data["benchmarks"]:
        info, stats = bench.get("extra_info", {}), bench["stats"]
        name = benchmark_name(info)
        entries.append({"name": f"{name} step time", "unit": "ms", "value": stats["median"] * 1e3,
                        "range": f"IQR {stats['iqr'] * 1e3:.4g}",
                        "extra": f"median of {stats['rounds']} rounds; {info.get('device_kind', '?')}"})
        if info.get("mem_bytes"):
            entries.append({"name": f"{name} memory per device", "unit": "MiB", "value": info["mem_bytes"] / MIB,
                            "extra": "compiled step: argument + output - alias + temp"})
    return entries


def export(path: str | Path, output_format: str, out: str | Path) -> Path:
    """Write `path`'s run in `output_format` to `out`; returns `out`."""
    entries = github_action_benchmark(load_results(path))
    out = Path(out)
    write_atomically(out, json.dumps(entries, indent=2))
    return out
