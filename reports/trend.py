"""`jaxbench trend RUNS...`: a history of saved runs, each benchmark's step time and
memory over commits, and the points where a figure stepped up or down for good.

Runs are ordered by the date of their commit (pytest-benchmark's `commit_info`), else by when
they ran. A change point is found by penalised segmentation of the series (`ruptures`' PELT on
log step times with the absolute-deviation cost, which an outlying run barely moves): a step must
lower the cost by more than a penalty scaled to the series' own noise (estimated from its
point-to-point differences, robust to the steps themselves), and each segment holds at least
`MIN_SEGMENT` runs, so a noisy run or two are never a change point. Steps smaller than
`min_step` are dropped. Each change point names the commits on either side, the size of the
step, and what changed in the benchmark's compiled program between those two runs
(`workloads.program.program_diff`: "same program" puts a step down to the runtime or the machine).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import ruptures

from jaxbench.reports.charts import save_chart
from jaxbench.reports.html import write_html
from jaxbench.reports.regress import benchmark_name
from jaxbench.reports.results import ResultsError, load_results, write_atomically
from jaxbench.reports.sections import Section, section_markdown
from jaxbench.reports.verdicts import EXACT_TOLERANCE
from jaxbench.workloads.program import program_diff

MIN_SEGMENT = 3
"""Runs a segment holds at least, so that a step must last: one or two noisy jobs cannot make one
(their segment's median is a normal run's)."""
PENALTY = 3.0
"""Penalty per change point, in units of the series' noise (standard deviation) times log(runs).
On synthetic histories of 30 runs with 3% noise (300 each): a 20% step found at its run every
time, a 10% step found at its run or one beside it 99% of the time, a single 1.5x run and a flat
series never given a change point; 2 let flat series through, 6 missed a third of the 10% steps."""
DEFAULT_MIN_STEP = 0.05
FIGURES = {"median_s": "step time (s)", "mem_bytes": "memory per device (bytes)"}


@dataclass(frozen=True)
class ChangePoint:
    """A figure of one benchmark that stepped between two consecutive runs, for good."""

    benchmark: str
    figure: str
    before_commit: str
    after_commit: str
    before: float  # the median of the segment before
    after: float  # and after
    program: str = ""  # what changed in the compiled program between the two runs (`program_diff`)

    @property
    def step(self) -> float:
        """The step as a share: +0.2 is 20% higher after."""
        return self.after / self.before - 1


def result_files(paths: list[str | Path]) -> list[Path]:
    """The results files named, a folder standing for every results.json under it."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.rglob("results.json"))
            if not found:
                raise ResultsError(f"{path}: no results.json under this folder")
            files += found
        else:
            files.append(path)
    return files


def history(paths: list[str | Path]) -> pd.DataFrame:
    """One row per (run, benchmark): `order` (the run's place by commit date), `commit`, `date`,
    `benchmark`, the figures of `FIGURES` and the compiled step's `program` summary (None where
    the run has none)."""
    rows = []
    for path in result_files(paths):
        data = load_results(path)
        commit = data.get("commit_info", {}) or {}
        date = commit.get("time") or commit.get("author_time") or data.get("datetime")
        for bench in data["benchmarks"]:
            info = bench.get("extra_info", {})
            rows.append({"file": str(path), "commit": str(commit.get("id") or "?")[:10], "date": date,
                         "benchmark": benchmark_name(info), "median_s": bench["stats"]["median"],
                         "mem_bytes": info.get("mem_bytes"), "program": info.get("program")})
    frame = pd.DataFrame(rows)
    frame["date"] = pd.to_datetime(frame["date"], utc=True, format="ISO8601")
    runs = frame.drop_duplicates("file").sort_values(["date", "file"])["file"].tolist()
    frame["order"] = frame["file"].map({file: i for i, file in enumerate(runs)})
    return frame.sort_values(["benchmark", "order"]).reset_index(drop=True)


def _noise(values: np.ndarray) -> float:
    """The series' noise (standard deviation), from the median absolute point-to-point difference:
    a few steps barely move it."""
    differences = np.abs(np.diff(values))
    return float(np.median(differences) / (0.6745 * np.sqrt(2))) if len(differences) else 0.0


def change_points(values, min_step: float = DEFAULT_MIN_STEP, relative_floor: float = 1e-3) -> list[int]:
    """Indices i where `values` (one figure over consecutive runs) stepped between run i-1 and i,
    for good: PELT on the log values, absolute-deviation cost, a penalty of `PENALTY` x noise x
    log(n), segments of at least `MIN_SEGMENT`, steps of at least `min_step`. A series without
    noise (memory) gets the floor `relative_floor` as its noise, so each lasting change is a step."""
    logs = np.log(np.asarray(values, dtype=float))
    if len(logs) < 2 * MIN_SEGMENT:
        return []
    sigma = max(_noise(logs), relative_floor)
    breaks = ruptures.Pelt(model="l1", min_size=MIN_SEGMENT, jump=1).fit(logs).predict(
        pen=PENALTY * sigma * np.log(len(logs)))
    bounds = [0, *breaks]
    return [point for i, point in enumerate(breaks[:-1])
            if abs(np.exp(np.median(logs[point:bounds[i + 2]]) - np.median(logs[bounds[i]:point])) - 1) >= min_step]


def find_changes(frame: pd.DataFrame, min_step: float = DEFAULT_MIN_STEP) -> list[ChangePoint]:
    """Every change point of every benchmark's figures in `history`'s frame: step times that moved
    by `min_step` or more, memory (deterministic) by more than the exact gates' tolerance."""
    found = []
    for (benchmark, figure), series in _series(frame):
        values = series[figure].to_numpy(dtype=float)
        commits, programs = series["commit"].tolist(), series["program"].tolist()
        points = change_points(values, min_step if figure == "median_s" else EXACT_TOLERANCE)
        bounds = [0, *points, len(values)]
        for i, point in enumerate(points):
            found.append(ChangePoint(benchmark, figure, commits[point - 1], commits[point],
                                     float(np.median(values[bounds[i]:point])),
                                     float(np.median(values[point:bounds[i + 2]])),
                                     program_diff(programs[point - 1], programs[point])))
    return found


def _series(frame: pd.DataFrame):
    for benchmark, rows in frame.groupby("benchmark", sort=False):
        for figure in FIGURES:
            series = rows.dropna(subset=[figure])
            if len(series):
                yield (benchmark, figure), series


def trend_chart(frame: pd.DataFrame, changes: list[ChangePoint], path: Path, limit: int = 24) -> Path:
    """Each benchmark's step time over the runs (log axis) and, where it has one, its per-device
    memory (right axis, dashed), change points marked; the benchmarks with a change first, at most
    `limit` panels."""
    changed = list(dict.fromkeys(change.benchmark for change in changes))
    names = (changed + [name for name in frame["benchmark"].unique() if name not in changed])[:limit]
    columns = 3
    rows = max(1, int(np.ceil(len(names) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        series = frame[frame["benchmark"] == name]
        ax.plot(series["order"], series["median_s"] * 1e3, marker=".", color="tab:blue")
        for change in (c for c in changes if c.benchmark == name):
            at = series[series["commit"] == change.after_commit]["order"].min()
            colour = "tab:red" if change.figure == "median_s" else "tab:grey"
            ax.axvline(at - 0.5, color=colour, linestyle="--", linewidth=1)
            ax.annotate(f"{change.step:+.0%}" + ("" if change.figure == "median_s" else " mem"),
                        (at - 0.5, ax.get_ylim()[1]), color=colour, fontsize=8, va="top", ha="left")
        ax.set_title(name, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("median step (ms)", fontsize=7, color="tab:blue")
        ax.tick_params(labelsize=7)
        memory = series.dropna(subset=["mem_bytes"])
        if len(memory):
            right = ax.twinx()
            right.plot(memory["order"], memory["mem_bytes"] / 2**20, color="tab:grey", linestyle="--", linewidth=1)
            right.set_ylabel("memory/device (MiB)", fontsize=7, color="tab:grey")
            right.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle("jaxbench trend: step time (and memory, dashed) per run, ordered by commit date; "
                 "change points in step time red, in memory grey")
    return save_chart(fig, path, dpi=100)


def write_trend(paths: list[str | Path], out: str | Path, min_step: float = DEFAULT_MIN_STEP) -> Path:
    """trend.csv (the series), trend.md and trend.html (the change points and the chart) and
    trend.png into `out`; returns trend.md."""
    frame = history(paths)
    changes = find_changes(frame, min_step)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame.drop(columns=["file", "program"]).to_csv(out / "trend.csv", index=False)
    trend_chart(frame, changes, out / "trend.png")
    table = pd.DataFrame([{"benchmark": c.benchmark, "figure": FIGURES[c.figure], "between commits":
                           f"{c.before_commit} -> {c.after_commit}", "before": c.before, "after": c.after,
                           "step": f"{c.step:+.1%}", "program": c.program} for c in changes])
    runs = frame["order"].nunique()
    sections = [Section("Change points", "" if len(table) else "No change point.",
                        tables=[("", table)] if len(table) else []),
                Section("History", "Each benchmark's step time (and memory) over the runs, by commit date; "
                        "a dashed line marks each change point.", charts=[out / "trend.png"])]
    write_atomically(out / "trend.md", f"# jaxbench trend over {runs} runs\n\n"
                     + "\n".join(map(section_markdown, sections)))
    write_html(sections, out / "trend.html", title=f"jaxbench trend over {runs} runs")
    return out / "trend.md"
