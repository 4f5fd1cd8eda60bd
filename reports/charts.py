"""The report's charts (matplotlib PNGs), each answering one question."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.patches import Rectangle

from jaxbench.workloads.variants import PRODUCTION, VARIANTS

VARIANT_ORDER = list(VARIANTS)
"""The step variants in the registry's order; a workflow's own variants come after."""


RUN_KEYS = ["run", "size", "device set"]
"""What tells one run's rows from another's: a chart names those of them that vary in its data."""
MEMORY_TECHNIQUES = [name for name, variant in VARIANTS.items()
                     if variant.compiled and variant.batching == "vectorised"]
"""The variants whose one compiled step has a memory analysis to compare (not `jit`'s two pieces)."""


def _rank(variant: str) -> tuple[int, str]:
    name = variant.split("-")[0]
    return (VARIANT_ORDER.index(name) if name in VARIANT_ORDER else len(VARIANT_ORDER)), variant


def _ordered(frame: pd.DataFrame, column: str = "variant") -> pd.DataFrame:
    """Rows in the variants' canonical order (a layout such as `multi_device-model` after its variant,
    a workflow's own variants such as `async` last)."""
    return frame.assign(_order=frame[column].map(_rank)).sort_values("_order")


def _steps(summary: pd.DataFrame) -> pd.DataFrame:
    """The step rows: workflow figures (draws/s, GB/s) answer other questions than the step charts'."""
    return summary[summary["kind"] != "workflow"]


def _with_series(frame: pd.DataFrame, base: list[str]) -> pd.DataFrame:
    """`frame` with a `series` label per row: the `base` columns (e.g. workload and mode), then, in
    brackets, whichever of run, size and device set differ between the rows, so that two runs
    never share a bar or a line."""
    varying = [key for key in RUN_KEYS if key in frame and frame[key].nunique() > 1]
    label = frame[base].astype(str).agg(" ".join, axis=1)
    if varying:
        label += " (" + frame[varying].astype(str).agg(", ".join, axis=1) + ")"
    return frame.assign(series=label)


def _by_variant(frame: pd.DataFrame, values: str) -> pd.DataFrame:
    """variant x series table of `values`; one value per cell (`pivot` refuses duplicates, where a
    `pivot_table` would average two runs into one bar)."""
    table = frame.pivot(index="variant", columns="series", values=values)
    return table.reindex(sorted(table.index, key=_rank))


def save_chart(fig, path: Path, dpi: int = 110, rect=(0, 0, 1, 1), layout: bool = True) -> Path:
    """Lay `fig` out within `rect` (figure fractions: room kept for a legend below, say; `layout`
    False: as it was laid out already), write it to `path` as a PNG and close it; returns `path`."""
    if layout:
        fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _grouped_bars(pivot: pd.DataFrame, ax, log: bool = False) -> None:
    pivot = pivot[sorted(pivot.columns)]
    pivot.plot.bar(ax=ax, logy=log, rot=25, width=0.8)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(title=pivot.columns.name, fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")


BAND = {"facecolor": (0.17, 0.63, 0.17, 0.15), "edgecolor": "darkgreen", "linestyle": "--", "linewidth": 1.2,
        "zorder": 3}
"""How a quoted range is drawn over the bars it judges: a light fill, a dashed outline."""


def quoted_ranges(expectations: pd.DataFrame | None, table: str, **match) -> dict[str, tuple[float, float]]:
    """variant -> (low, high) of the quoted claim of `table` ("speedup" or "memory") that judges
    it, over the expectation rows matching `match` (e.g. workload="mlp"); where the rows' ranges
    differ (a claim that depends on the device count), the span of them all."""
    if expectations is None or expectations.empty:
        return {}
    rows = expectations[(expectations["table"] == table) & (expectations["verdict"] != "reference")]
    for column, value in match.items():
        rows = rows[rows[column] == value]
    rows = rows.dropna(subset=["lo", "hi"])
    return {variant: (group["lo"].min(), group["hi"].max()) for variant, group in rows.groupby("variant")}


def _bands(ax, positions: list[str], ranges: dict[str, tuple[float, float]], width: float = 0.9) -> None:
    """Each quoted range as a band across its variant's bars (bar i is at x = i)."""
    for index, variant in enumerate(positions):
        if variant in ranges:
            low, high = ranges[variant]
            ax.add_patch(Rectangle((index - width / 2, low), width, high - low, **BAND))


def speedup_chart(summary: pd.DataFrame, path: Path, expectations: pd.DataFrame | None = None) -> Path | None:
    """How much faster is each variant than `baseline`? (log axis, one group per workload/mode),
    each variant's quoted range a band across its bars."""
    data = _steps(summary).dropna(subset=["speedup vs baseline"])
    if data.empty:
        return None
    pivot = _by_variant(_with_series(data, ["workload", "mode"]), "speedup vs baseline")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    _grouped_bars(pivot, ax, log=True)
    ranges = quoted_ranges(expectations, "speedup")
    _bands(ax, list(pivot.index), ranges)
    ax.axhline(1, color="black", lw=0.8)
    title = "Speedup over the eager baseline (higher is better)"
    ax.set(title=title + ("; dashed: the quoted range" if ranges else ""), xlabel="variant",
           ylabel="baseline step time / variant step time (x, log)")
    return save_chart(fig, path)


def memory_chart(summary: pd.DataFrame, path: Path, expectations: pd.DataFrame | None = None) -> Path | None:
    """How much memory per device does each technique's compiled train step need, and of what?

    One panel per workload: what the step holds across calls (parameters, optimizer state, batch)
    stacked under its temporaries (activations and workspace), which are all a technique such as
    remat can shrink; across each technique's bar, the memory its quoted reduction from the
    production step's would leave (a band)."""
    data = _steps(summary)
    data = data[(data["mode"] == "train") & data["variant"].str.split("-").str[0].isin(MEMORY_TECHNIQUES)]
    data = data.dropna(subset=["held (MiB)", "temporaries (MiB)"])
    if data.empty:
        return None
    data = _with_series(data, ["workload"])
    panels = list(dict.fromkeys(data["series"]))
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(max(4.2 * columns, 7), 3.6 * rows + 0.8), squeeze=False)
    for ax, series in zip(axes.flat, panels):
        panel = _ordered(data[data["series"] == series]).set_index("variant")
        panel[["held (MiB)", "temporaries (MiB)"]].rename(
            columns={"held (MiB)": "held: parameters, optimizer state, batch", "temporaries (MiB)": "temporaries"}
        ).plot.bar(ax=ax, stacked=True, rot=30, legend=False, width=0.7)
        for label in ax.get_xticklabels():
            label.set(horizontalalignment="right", fontsize=8)
        totals = panel["held (MiB)"] + panel["temporaries (MiB)"]
        if PRODUCTION.name in totals.index:
            first = panel.iloc[0]
            reductions = quoted_ranges(expectations, "memory", workload=first["workload"], mode="train",
                                       run=first["run"])
            production = totals[PRODUCTION.name]
            _bands(ax, list(panel.index), {variant: (production / high, production / low)
                                           for variant, (low, high) in reductions.items()}, width=0.8)
        ax.set(title=series, xlabel="", ylabel="MiB per device")
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="lower center", fontsize=8, ncol=2)
    fig.suptitle("Per-device memory of the compiled train step (lower is better)\ndashed: what the quoted "
                 f"reduction from {PRODUCTION.name}'s would leave", x=0.02, ha="left", fontsize=10)
    return save_chart(fig, path, rect=(0, 0.08, 1, 1))


def spread_labels(ax, labels: list) -> None:
    """Move point labels (`ax.annotate`s) down, a label's height at a time, until none overlaps
    another: labels of nearby points would otherwise print over each other."""
    renderer = ax.figure.canvas.get_renderer()
    placed = []
    for label in sorted(labels, key=lambda item: -item.xy[1]):
        for _ in range(len(labels)):
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            x, y = label.get_position()  # the offset from its point, in points
            label.set_position((x, y - box.height * 72 / ax.figure.dpi - 1))
        placed.append(label.get_window_extent(renderer))


def compile_vs_step_axes(summary: pd.DataFrame):
    """The compile-versus-step chart's (figure, axes), or None without compiled rows (see
    `compile_vs_step_chart`)."""
    data = _steps(summary).dropna(subset=["compile (s)"])
    if data.empty:
        return None
    cached = data.get("compile cached (s)", pd.Series(float("nan"), index=data.index))
    fig, ax = plt.subplots(figsize=(7, 5))
    labels = []
    for series, group in _with_series(data, ["workload", "mode"]).groupby("series"):
        step_s = group["median step (ms)"] / 1e3
        points = ax.scatter(step_s, group["compile (s)"], label=f"{series} (cold)")
        has_cached = cached[group.index].notna()
        if has_cached.any():
            color = points.get_facecolor()[0]
            ax.scatter(step_s[has_cached], cached[group.index][has_cached], facecolors="none", edgecolors=[color],
                       label=f"{series} (cached)")
            ax.vlines(step_s[has_cached], cached[group.index][has_cached], group["compile (s)"][has_cached],
                      colors=[color], linewidth=0.8, alpha=0.5)
        labels += [ax.annotate(row["variant"], (row["median step (ms)"] / 1e3, row["compile (s)"]), fontsize=7,
                               xytext=(3, 3), textcoords="offset points") for _, row in group.iterrows()]
    ax.set(xscale="log", yscale="log", title="Compile time vs step time: cold, and from the persistent cache",
           xlabel="median step time (s, log)", ylabel="ahead-of-time compile time (s, log)")
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    spread_labels(ax, labels)
    return fig, ax


def compile_vs_step_chart(summary: pd.DataFrame, path: Path) -> Path | None:
    """Is compilation worth it? Compile time against one step's time, per compiled variant: cold
    (filled) and from JAX's persistent cache (hollow, joined to its cold point), where measured;
    each point named, no name over another."""
    drawn = compile_vs_step_axes(summary)
    if drawn is None:
        return None
    return save_chart(drawn[0], path, layout=False)  # laid out before its labels were spread


def mfu_chart(summary: pd.DataFrame, path: Path) -> Path | None:
    """How much of the in-run matmul rate of its compute dtype does each step use?"""
    data = _steps(summary).dropna(subset=["MFU"])
    if data.empty:
        return None
    pivot = _by_variant(_with_series(data, ["workload", "mode"]), "MFU") * 100
    fig, ax = plt.subplots(figsize=(9, 4.5))
    _grouped_bars(pivot, ax, log=True)
    ax.set(title="MFU vs the in-run matmul rate of each step's compute dtype", xlabel="variant",
           ylabel="MFU (% of that rate, log)")
    return save_chart(fig, path)


CHARTS = {
    "speedup.png": speedup_chart,
    "memory.png": memory_chart,
    "compile_vs_step.png": compile_vs_step_chart,
    "mfu.png": mfu_chart,
}


JUDGED_CHARTS = {speedup_chart, memory_chart}
"""The charts that draw the quoted tables' ranges (they take the expectations table too)."""


def draw_all(summary: pd.DataFrame, out: Path, expectations: pd.DataFrame | None = None) -> list[Path]:
    """Every chart the summary has data for, written into `out` (the quoted ranges from
    `expectations`, where given); returns their paths."""
    drawn = [draw(summary, out / name, expectations) if draw in JUDGED_CHARTS else draw(summary, out / name)
             for name, draw in CHARTS.items()]
    return [path for path in drawn if path is not None]
