"""The workflows' own tables (bayes, checkpoint, training_loop): each workflow's figures per variant.

A workflow is measured as whole runs, and what matters differs from one to the next (effective
samples per second, gigabytes per second, the share of a training loop lost to checkpointing),
so each gets its own table, its columns the `metrics` its runs recorded.
"""

from __future__ import annotations

import pandas as pd

from jaxbench.reports.results import benchmarks_frame, is_workflow

HEADLINES = {
    "bayes": ("min_ess_per_s", "minimum effective samples per second"),
    "checkpoint": ("save_GB_per_s", "save GB/s (until durable)"),
    "training_loop": ("checkpoint_overhead_share", "share of wall time lost to checkpointing"),
}
"""Workflow -> (metric, words): the one figure its headline finding quotes per variant."""


def workflow_rows(data: dict) -> pd.DataFrame:
    """The run's workflow benchmarks (`kind` == "workflow"), empty if it has none."""
    frame = benchmarks_frame(data)
    return frame[is_workflow(frame)]


def workflow_tables(data: dict) -> dict[str, pd.DataFrame]:
    """Workflow name -> one row per (variant, size, device set): median run time, compile time,
    then every metric the runs recorded (with the worst figure of each correctness check)."""
    tables = {}
    for name, rows in workflow_rows(data).groupby("workload", sort=False):
        metrics = pd.DataFrame(list(rows["metrics"]), index=rows.index)
        checks = pd.DataFrame(list(rows["checks"]), index=rows.index).add_prefix("check: ")
        table = pd.concat([rows[["variant", "size", "device_set", "n_devices"]], metrics, checks], axis=1)
        table.insert(4, "median run (s)", rows["median_s"])
        table.insert(5, "compile (s)", rows["compile_s"])
        tables[name] = table.rename(columns={"device_set": "device set", "n_devices": "devices"}).reset_index(drop=True)
    return tables


def workflow_findings(data: dict) -> list[str]:
    """One sentence per workflow and size: its headline figure for each variant."""
    lines = []
    for name, table in workflow_tables(data).items():
        metric, words = HEADLINES.get(name, (None, None))
        if metric not in table:
            continue
        for size, rows in table.groupby("size", sort=False):
            figures = ", ".join(f"{r['variant']} {r[metric]:.3g}" for _, r in rows.iterrows())
            lines.append(f"{name} ({size}): {words}: {figures}.")
    return lines
