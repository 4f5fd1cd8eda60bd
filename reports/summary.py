"""The one-table summary of a run: step time, speedup over `baseline`, memory, per benchmark."""

from __future__ import annotations

import pandas as pd

from reports.results import benchmarks_frame

KEYS = ["workload", "mode", "size"]


def summary_table(data: dict) -> pd.DataFrame:
    """One row per (workload, mode, size, variant): median step time, speedup vs baseline, memory.

    The speedup is baseline's median step time divided by the variant's, within the same
    workload, mode and size; it is empty where the run has no baseline for them.
    """
    frame = benchmarks_frame(data)
    baseline = (
        frame[frame["variant"] == "baseline"].set_index(KEYS)["median_s"].rename("baseline_median_s")
    )
    frame = frame.join(baseline, on=KEYS)
    table = pd.DataFrame(
        {
            "workload": frame["workload"],
            "mode": frame["mode"],
            "variant": frame["variant"],
            "size": frame["size"],
            "devices": frame["n_devices"],
            "median step (ms)": frame["median_s"] * 1e3,
            "speedup vs baseline": frame["baseline_median_s"] / frame["median_s"],
            "memory/device (MiB)": frame["mem_bytes"] / 2**20,
            "compile (s)": frame["compile_s"],
            "items/s": frame["items_per_s"],
            "MFU": frame["mfu"],
        }
    )
    return table.reset_index(drop=True)


def summary_markdown(data: dict) -> str:
    """`summary_table` as a Markdown table (numbers rounded for reading; the JSON keeps them whole)."""
    table = summary_table(data).astype(object)
    table = table.where(table.notna(), None)  # tabulate shows None (not NaN) as missingval
    return table.to_markdown(index=False, floatfmt=".4g", missingval="-") + "\n"
