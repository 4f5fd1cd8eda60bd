"""The summary of a run: step time and spread, speedup over `baseline`, memory, per benchmark."""

from __future__ import annotations

import pandas as pd

from reports.results import benchmarks_frame

KEYS = ["workload", "mode", "size", "device_set"]


def summary_table(data: dict) -> pd.DataFrame:
    """One row per (workload, mode, variant, size, device set) with its measured figures.

    The speedup is baseline's median step time divided by the variant's, within the same
    workload, mode, size and device set; it is empty where the run has no baseline for them.
    """
    frame = benchmarks_frame(data)
    baseline = frame[frame["variant"] == "baseline"].set_index(KEYS)["median_s"].rename("baseline_median_s")
    frame = frame.join(baseline, on=KEYS)
    return pd.DataFrame(
        {
            "workload": frame["workload"],
            "mode": frame["mode"],
            "variant": frame["variant"],
            "size": frame["size"],
            "device set": frame["device_set"],
            "devices": frame["n_devices"],
            "median step (ms)": frame["median_s"] * 1e3,
            "IQR (ms)": frame["iqr_s"] * 1e3,
            "rounds": frame["rounds"],
            "speedup vs baseline": frame["baseline_median_s"] / frame["median_s"],
            "items/s": frame["items_per_s"],
            "memory/device (MiB)": frame["mem_bytes"] / 2**20,
            "compile (s)": frame["compile_s"],
            "MFU": frame["mfu"],
        }
    ).reset_index(drop=True)


def to_markdown(table: pd.DataFrame) -> str:
    """A table as Markdown, numbers to 4 significant digits and `-` where there is no value."""
    shown = table.astype(object)
    shown = shown.where(shown.notna(), None)  # tabulate shows None (not NaN) as missingval
    return shown.to_markdown(index=False, floatfmt=".4g", missingval="-") + "\n"


def summary_markdown(data: dict) -> str:
    """`summary_table` as a Markdown table (the JSON and CSV keep the numbers whole)."""
    return to_markdown(summary_table(data))
