"""The report's first screen: a grid of workload and mode against variant, each cell the figure
its expectation judges with that verdict, and at most `MAX_FINDINGS` headline findings."""

from __future__ import annotations

import pandas as pd

from jaxbench.workloads.variants import PRODUCTION

MAX_FINDINGS = 7
"""The most headline findings the report opens with; the tables below hold the rest."""


def _times(value: float) -> str:
    return f"{value:.3g}x" if value < 1000 else f"{value:.0f}x"


def _cell(row: pd.Series | None, speedup: float) -> str:
    """A cell: the figure the row's claim judges (a speedup, or memory less or more than the
    production step's) and its verdict; the speedup alone where no claim judges the variant here."""
    if row is None or pd.isna(row["measured"]):
        return "-" if pd.isna(speedup) else _times(speedup)
    measured = row["measured"]
    figure = _times(measured)
    if row["table"] == "memory":  # the claim's figure is a reduction: under 1, memory grew
        figure = f"{figure} less memory" if measured >= 1 else f"{_times(1 / measured)} more memory"
    return figure if row["verdict"] in ("reference", "n/a") else f"{figure} ({row['verdict']})"


def glance_table(summary: pd.DataFrame, expectations: pd.DataFrame) -> pd.DataFrame:
    """One row per run, workload, mode, size and device set of the step benchmarks; one column per
    variant (layouts apart), in the summary's order. A cell holds the figure the variant's first
    claim judges, with its verdict (`_cell`), or its speedup over baseline where no claim does."""
    steps = summary[summary["kind"] == "step"]
    keys = ["run", "workload", "mode", "size", "device set"]
    claims = {}
    if len(expectations):
        for _, row in expectations.iterrows():
            claims.setdefault((row["run"], row["workload"], row["mode"], row["variant"]), row)
    rows = []
    for key, group in steps.groupby(keys, sort=False):
        cells = dict(zip(keys, key))
        for _, bench in group.iterrows():
            claim = claims.get((key[0], key[1], key[2], bench["variant"]))
            cells[bench["variant"]] = _cell(claim, bench["speedup vs baseline"])
        rows.append(cells)
    table = pd.DataFrame(rows, columns=keys + list(dict.fromkeys(steps["variant"])))
    shared = [key for key in ("run", "size", "device set") if table[key].nunique() <= 1]
    return table.drop(columns=shared).fillna("")


def _gap(row: pd.Series) -> float:
    """How far below its range a `below` row is, as a factor (2: half the range's low end)."""
    return row["lo"] / row["measured"] if row["measured"] > 0 else float("inf")


def headline_findings(summary: pd.DataFrame, expectations: pd.DataFrame, not_measured: dict[str, dict],
                      workflow_lines: list[str]) -> list[str]:
    """At most `MAX_FINDINGS` sentences: the production step's speed and MFU, the count of each
    verdict, the largest gap from the quoted tables and why, what was not measured, then the
    workflows' headline figures."""
    lines = []
    production = summary[summary["variant"] == PRODUCTION.name].dropna(subset=["speedup vs baseline", "MFU"])
    if len(production):
        fastest = production.loc[production["speedup vs baseline"].idxmax()]
        lines.append(f"{PRODUCTION.name}, the production step, is {_times(production['speedup vs baseline'].min())} "
                     f"to {_times(fastest['speedup vs baseline'])} faster than the eager baseline over "
                     f"{len(production)} workload and mode(s) (most: {fastest['workload']} {fastest['mode']}, "
                     f"{fastest['median step (ms)']:.3g} ms a step); its MFU against the in-run matmul rate is "
                     f"{production['MFU'].min():.2g} to {production['MFU'].max():.2g}.")
    claims = expectations[expectations["verdict"] != "reference"] if len(expectations) else expectations
    if len(claims):
        counts = claims["verdict"].value_counts()
        lines.append("Expectations: " + ", ".join(f"{counts[v]} {v}" for v in counts.index) + ".")
        below = claims[(claims["verdict"] == "below") & claims["measured"].notna()]
        if len(below):
            worst = below.loc[below.apply(_gap, axis=1).idxmax()]
            unit = "x" if worst["table"] == "speedup" else "x less memory"
            lines.append(f"Largest gap from the quoted tables: {worst['claim']} ({worst['workload']} "
                         f"{worst['mode']}), {worst['measured']:.3g}{unit} against {worst['expected']}: "
                         f"{worst['reason']}.")
    missing = [f"{len(cases)} {outcome} ({', '.join(list(cases)[:3])}{', ...' if len(cases) > 3 else ''})"
               for outcome, cases in not_measured.items() if cases]
    if missing:
        lines.append("Not measured: " + "; ".join(missing) + ".")
    return (lines + workflow_lines)[:MAX_FINDINGS]
