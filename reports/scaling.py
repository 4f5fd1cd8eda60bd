"""The scaling sweeps (`pytest bench --scaling strong|weak|both`): each workload's `jit_vmap` train
step on 1, 2, 4, ... devices, as a table and a chart with one panel per workload."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import NullLocator

from jaxbench.reports.charts import save_chart
from jaxbench.reports.results import benchmarks_frame

SWEEP_KEYS = ["run", "workload", "size", "sweep"]
"""What one curve is: a run's sweep of one kind over one workload at one size."""
COLLECTIVES_NOT_MEASURED = "n/a: needs a profile of the step"
"""The collectives' share of step time where the run has no profile to tell it (`--profile`)."""


def is_scaling_point(frame: pd.DataFrame) -> pd.Series:
    """Per row of `benchmarks_frame`: whether it is a point of a scaling sweep."""
    return frame["scaling"].notna() if "scaling" in frame else pd.Series(False, index=frame.index)


def scaling_table(data: dict, run: str = "run 1") -> pd.DataFrame:
    """One row per sweep point: devices, global and per-device batch, step time, throughput,
    memory per device, and parallel efficiency, the point's throughput over `devices` times its
    sweep's one-device throughput (`strong` keeps the global batch, so that is
    T1 / (N * TN); `weak` keeps the per-device batch, so it is T1 / TN). Empty without sweeps."""
    frame = benchmarks_frame(data, run)
    frame = frame[is_scaling_point(frame)]
    if frame.empty:
        return pd.DataFrame()
    table = pd.DataFrame({
        "run": frame["run"],
        "workload": frame["workload"],
        "size": frame["size"],
        "sweep": frame["scaling"],
        "devices": frame["n_devices"].astype(int),
        "global batch": frame["batch_size"],
        "batch/device": frame["batch_size"] // frame["n_devices"],
        "median step (ms)": frame["median_s"] * 1e3,
        "items/s": frame["items_per_s"],
        "memory/device (MiB)": frame["mem_bytes"] / 2**20,
        "shared cores": frame["devices_share_host_cores"],
        "host cores": frame["host_cores"],
    }).sort_values([*SWEEP_KEYS, "devices"])
    one = table[table["devices"] == 1].set_index(SWEEP_KEYS)["items/s"].rename("one")
    table = table.join(one, on=SWEEP_KEYS)
    table["efficiency"] = table["items/s"] / (table["devices"] * table.pop("one"))
    shares = frame.get("op_shares", pd.Series(None, index=frame.index, dtype=object))  # aligned by index
    table["collectives share"] = shares.map(
        lambda share: f"{share['collectives']:.0%} of op time" if isinstance(share, dict) else COLLECTIVES_NOT_MEASURED)
    return table.reset_index(drop=True)


def scaling_chart(table: pd.DataFrame, path: Path) -> Path | None:
    """Where does scaling stop? Throughput against devices, one panel per workload, a line per
    sweep (and run), each against its ideal: its one-device throughput times the device count."""
    if table.empty or table["devices"].nunique() < 2:
        return None
    workloads = list(dict.fromkeys(table["workload"]))
    fig, axes = plt.subplots(1, len(workloads), figsize=(4.2 * len(workloads) + 1, 4.2), squeeze=False)
    several_runs = table["run"].nunique() > 1 or table["size"].nunique() > 1
    for ax, workload in zip(axes[0], workloads):
        for (run, size, sweep), curve in table[table["workload"] == workload].groupby(["run", "size", "sweep"]):
            label = f"{sweep} ({run}, {size})" if several_runs else sweep
            line, = ax.plot(curve["devices"], curve["items/s"], marker="o", label=label)
            one = curve.loc[curve["devices"] == 1, "items/s"]
            if len(one):
                ax.plot(curve["devices"], one.iloc[0] * curve["devices"], ls=":", color=line.get_color(),
                        label=f"{label}: ideal")
        ax.set(title=workload, yscale="log", xlabel="devices (log)",
               ylabel="items per second (examples or tokens; log)")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(NullLocator())
        counts = sorted(table["devices"].unique())
        ax.set_xticks(counts, labels=[str(count) for count in counts])
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=7)
    title = "Throughput vs devices of the jit_vmap train step (dotted: ideal linear scaling)"
    if table["shared cores"].any():
        cores = int(table["host cores"].max())
        title += (f"\nvirtual CPU devices sharing {cores} cores: the curves show the overhead of "
                  "partitioning, not a speedup")
    fig.suptitle(title, fontsize=10)
    return save_chart(fig, path)
