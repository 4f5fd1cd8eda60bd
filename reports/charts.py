"""The report's charts (matplotlib PNGs), each answering one question."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

VARIANT_ORDER = ["baseline", "jit", "vmap", "jit_vmap", "multi_device", "remat", "bf16", "accumulation"]


def _ordered(frame: pd.DataFrame, column: str = "variant") -> pd.DataFrame:
    """Rows in the variants' canonical order (a layout such as `multi_device[model]` after its variant,
    a workflow's own variants such as `async` last)."""
    def rank(variant: str) -> tuple[int, str]:
        name = variant.split("[")[0]
        return VARIANT_ORDER.index(name) if name in VARIANT_ORDER else len(VARIANT_ORDER), variant

    return frame.assign(_order=frame[column].map(rank)).sort_values("_order")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _save_log_log(fig, ax, path: Path, **labels) -> Path:
    ax.set(xscale="log", yscale="log", **labels)
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _grouped_bars(pivot: pd.DataFrame, ax, log: bool = False) -> None:
    pivot = pivot[sorted(pivot.columns)]
    pivot.plot.bar(ax=ax, logy=log, rot=25, width=0.8)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(title=pivot.columns.name, fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")


def speedup_chart(summary: pd.DataFrame, path: Path) -> Path | None:
    """How much faster is each variant than `baseline`? (log axis, one group per workload/mode)."""
    data = summary.dropna(subset=["speedup vs baseline"])
    if data.empty:
        return None
    data = _ordered(data).assign(step=data["workload"] + " " + data["mode"])
    pivot = data.pivot_table(index="variant", columns="step", values="speedup vs baseline", sort=False)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    _grouped_bars(pivot, ax, log=True)
    ax.axhline(1, color="black", lw=0.8)
    ax.set(title="Speedup over the eager baseline (higher is better)", xlabel="variant",
           ylabel="baseline step time / variant step time (x, log)")
    return _save(fig, path)


def memory_chart(summary: pd.DataFrame, path: Path) -> Path | None:
    """How much memory per device does each technique's compiled train step need?"""
    data = summary[(summary["mode"] == "train")].dropna(subset=["memory/device (MiB)"])
    data = data[data["variant"].isin(["jit_vmap", "multi_device", "remat", "bf16", "accumulation"])]
    if data.empty:
        return None
    data = _ordered(data)
    pivot = data.pivot_table(index="variant", columns="workload", values="memory/device (MiB)", sort=False)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    _grouped_bars(pivot, ax)
    ax.set(title="Per-device memory of the compiled train step (lower is better)", xlabel="technique",
           ylabel="argument + output - alias + temp (MiB)")
    return _save(fig, path)


def compile_vs_step_chart(summary: pd.DataFrame, path: Path) -> Path | None:
    """Is compilation worth it? Compile time against one step's time, per compiled variant."""
    data = summary.dropna(subset=["compile (s)"])
    if data.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 5))
    for (workload, mode), group in data.groupby(["workload", "mode"]):
        ax.scatter(group["median step (ms)"] / 1e3, group["compile (s)"], label=f"{workload} {mode}")
        for _, row in group.iterrows():
            ax.annotate(row["variant"], (row["median step (ms)"] / 1e3, row["compile (s)"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    return _save_log_log(fig, ax, path, title="Compile time vs step time (each once per process)",
                         xlabel="median step time (s, log)", ylabel="ahead-of-time compile time (s, log)")


def scaling_chart(summary: pd.DataFrame, path: Path) -> Path | None:
    """Does throughput grow with devices? `jit_vmap` (1 device) against `multi_device` (N)."""
    data = summary[summary["variant"].isin(["jit_vmap", "multi_device"])].dropna(subset=["items/s"])
    if data["devices"].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (workload, mode), group in data.groupby(["workload", "mode"]):
        group = group.sort_values("devices")
        ax.plot(group["devices"], group["items/s"], marker="o", label=f"{workload} {mode}")
        ideal = group["items/s"].iloc[0] * group["devices"] / group["devices"].iloc[0]
        ax.plot(group["devices"], ideal, ls=":", color="grey")
    return _save_log_log(fig, ax, path, title="Throughput vs devices (dotted: linear scaling)",
                         xlabel="devices (log)", ylabel="items per second (examples, tokens, draws; log)")


def mfu_chart(summary: pd.DataFrame, path: Path) -> Path | None:
    """How much of the measured matmul peak does each step use?"""
    data = _ordered(summary.dropna(subset=["MFU"]))
    if data.empty:
        return None
    data = data.assign(step=data["workload"] + " " + data["mode"])
    pivot = data.pivot_table(index="variant", columns="step", values="MFU", sort=False) * 100
    fig, ax = plt.subplots(figsize=(9, 4.5))
    _grouped_bars(pivot, ax, log=True)
    ax.set(title="Model FLOPs utilisation against the in-run matmul peak", xlabel="variant",
           ylabel="MFU (% of peak, log)")
    return _save(fig, path)


CHARTS = {
    "speedup.png": speedup_chart,
    "memory.png": memory_chart,
    "compile_vs_step.png": compile_vs_step_chart,
    "scaling.png": scaling_chart,
    "mfu.png": mfu_chart,
}


def draw_all(summary: pd.DataFrame, out: Path) -> list[Path]:
    """Every chart the summary has data for, written into `out`; returns their paths."""
    drawn = [draw(summary, out / name) for name, draw in CHARTS.items()]
    return [path for path in drawn if path is not None]
