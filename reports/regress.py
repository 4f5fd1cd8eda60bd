"""`jaxbench regress BASE.json HEAD.json`: the regression gate over two saved runs, e.g.
tonight's against last night's, from different jobs.

Timings: each benchmark's raw timed rounds on both sides (`stats.data`), the ratio of their
medians with a bootstrap interval and a Mann-Whitney test (`reports.verdicts.unpaired_verdict`).
Two jobs differ by more than the rounds within one job show, so the default threshold is wider
than `reports ab`'s (`DEFAULT_THRESHOLD`, see docs/regressions.md), and it
warns when the runs come from different machines, devices or library versions. Exact figures
(memory, XLA FLOPs and bytes) are gated exactly, as in `ab`.
"""

from __future__ import annotations

from pathlib import Path

from jaxbench.reports.gate import GateResult
from jaxbench.reports.results import HIDDEN_HOST, NOT_MEASURED, SUITE, ResultsError, load_results, variant_label
from jaxbench.reports.verdicts import exact_changes, family_alpha, unpaired_verdict
from jaxbench.workloads.program import program_diff

DEFAULT_THRESHOLD = 0.25
"""Between two jobs a benchmark's median moves by more than within one (see docs/regressions.md)."""
ENVIRONMENT_FIELDS = ("platform", "device_kind", "n_devices_available", "cpu_model", "jax_version",
                      "jaxlib_version", "flax_version", "optax_version", "python_version", "xla_flags")
"""What must match between two runs for their times to mean the same thing (`jaxbench` section)."""


def benchmark_name(info: dict) -> str:
    """A benchmark's name across runs: its case id (layout included), size and device count."""
    devices = info.get("n_devices") or 1
    return (f"{info['workload']}-{info['mode']}-{variant_label(info)} "
            f"({info['size']}, {devices} device{'s' * (devices > 1)})")


def rounds_by_benchmark(path: str | Path, data: dict) -> dict[str, tuple[list[float], dict]]:
    """Benchmark name -> (raw timed rounds in seconds, `extra_info`); `ResultsError` when a
    benchmark appears twice or a file kept no rounds."""
    runs = {}
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        name = benchmark_name(info)
        if name in runs:
            raise ResultsError(f"{path}: benchmark {name} appears more than once")
        rounds = bench["stats"].get("data")
        if not rounds:
            raise ResultsError(f"{path}: benchmark {name} kept no timed rounds (stats.data)")
        runs[name] = (rounds, info)
    return runs


def not_measured(data: dict) -> dict[str, str]:
    """Case id -> how and why, for every planned benchmark of a run that has no timing: skipped
    (out of memory included), failed, crashed or timed out (`reports.results.NOT_MEASURED`)."""
    return {case: f"{kind}: {why}" for kind in NOT_MEASURED for case, why in data[SUITE].get(kind, {}).items()}


def environment_differences(base: dict, head: dict) -> list[str]:
    """What differs between the two runs' machines, devices and library versions, in words."""
    differences = []
    base_host, head_host = (data.get("machine_info", {}).get("node") for data in (base, head))
    if base_host != head_host and HIDDEN_HOST not in (base_host, head_host):  # a hidden name: unknown
        differences.append(f"host {base_host} vs {head_host}")
    for name in ENVIRONMENT_FIELDS:
        old, new = base[SUITE].get(name), head[SUITE].get(name)
        if old != new:
            differences.append(f"{name} {old} vs {new}")
    return differences


def regress(base_path: str | Path, head_path: str | Path, threshold: float = DEFAULT_THRESHOLD) -> GateResult:
    """The gate's verdict per benchmark the two runs share (`reports.gate.GateResult`)."""
    base_data, head_data = load_results(base_path), load_results(head_path)
    base, head = rounds_by_benchmark(base_path, base_data), rounds_by_benchmark(head_path, head_data)
    common = [name for name in base if name in head]
    head_failed = not_measured(head_data)
    lost = {name: head_failed[info.get("case_id")] for name, (_, info) in base.items()
            if name not in head and info.get("case_id") in head_failed}
    if not common and not lost:
        raise ResultsError(f"{base_path} and {head_path}: no benchmark in common")
    result = GateResult(method="two saved runs, raw rounds within each job (Mann-Whitney, bootstrap of the "
                               "ratio of medians); the spread between jobs is not known to it",
                        threshold=threshold,
                        only_base=[name for name in base if name not in head and name not in lost],
                        only_head=[name for name in head if name not in base])
    differences = environment_differences(base_data, head_data)
    if differences:
        result.warnings.append("the runs come from different set-ups, so their times may differ for that "
                               "reason alone: " + "; ".join(differences))
    alpha = family_alpha(len(common))
    for name in common:
        (base_rounds, base_info), (head_rounds, head_info) = base[name], head[name]
        timing = unpaired_verdict(base_rounds, head_rounds, threshold, alpha)
        result.add(name, timing, exact_changes(base_info, head_info),
                   program=program_diff(base_info.get("program"), head_info.get("program")))
    for name, why in lost.items():  # base measured it, head could not: a regression whatever the times
        result.add(name, None, [], failure=f"head {why}")
    return result
