"""`jaxbench compare`: several runs side by side (hardware, or before/after an upgrade)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from jaxbench.reports.charts import save_chart
from jaxbench.reports.results import ResultsError, benchmarks_frame, load_results, run_label

BENCHMARK = ["workload", "mode", "variant", "size", "n_devices"]
"""What names one benchmark across runs: the variant carries its layout (`multi_device-model`),
and `n_devices` the device set it ran on, so that 2 and 8 devices are never compared as one."""


def _medians(path, data: dict) -> pd.Series:
    """The run's median step times (ms) by benchmark; `ResultsError` if a benchmark appears twice."""
    medians = benchmarks_frame(data).set_index(BENCHMARK)["median_s"] * 1e3
    if not medians.index.is_unique:
        twice = medians.index[medians.index.duplicated()].unique()
        raise ResultsError(f"{path}: benchmark {' '.join(map(str, twice[0]))} appears more than once")
    return medians


def comparison_table(paths: list[str | Path]) -> pd.DataFrame:
    """One row per benchmark the runs have in common (`BENCHMARK`): each run's median step time
    and its ratio to the first run's (above 1: slower than the first run).

    Raises `ResultsError` when fewer than two files are given, a file holds a benchmark twice, or
    they share no benchmark.
    """
    if len(paths) < 2:
        raise ResultsError("compare needs at least two results files")
    runs = [load_results(path) for path in paths]
    labels = [f"run {i}: {run_label(data)}" for i, data in enumerate(runs, 1)]
    medians = [_medians(path, data) for path, data in zip(paths, runs)]
    table = pd.concat(medians, axis=1, keys=labels, join="inner")
    if table.empty:
        raise ResultsError(f"{paths[0]} and {', '.join(map(str, paths[1:]))}: no benchmark in common")
    for label in labels[1:]:
        table[f"{label.split(':')[0]} / run 1"] = table[label] / table[labels[0]]
    table.columns = [f"{c} median (ms)" if c in labels else c for c in table.columns]
    return table.reset_index()


def comparison_chart(table: pd.DataFrame, path: Path) -> Path:
    """Median step time of every common benchmark, one bar per run (log axis)."""
    times = table.set_index(BENCHMARK)[[c for c in table.columns if c.endswith("median (ms)")]]
    times.index = [" ".join(map(str, key[:3])) + (f" ({key[4]} devices)" if key[4] > 1 else "") for key in times.index]
    fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(times)), 5))
    times.plot.bar(ax=ax, logy=True, width=0.8)
    ax.set(title="Median step time per benchmark, run by run (lower is better)", xlabel="",
           ylabel="median step time (ms, log)")
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return save_chart(fig, path)


def compare_runs(paths: list[str | Path], out: str | Path) -> Path:
    """Write comparison.csv, comparison.md and comparison.png into `out`; returns comparison.md."""
    table = comparison_table(paths)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "comparison.csv", index=False)
    comparison_chart(table, out / "comparison.png")
    markdown = out / "comparison.md"
    markdown.write_text("# jaxbench comparison\n\n" + table.to_markdown(index=False, floatfmt=".4g")
                        + "\n\n![comparison](comparison.png)\n")
    return markdown
