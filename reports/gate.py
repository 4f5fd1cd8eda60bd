"""What a regression gate prints and writes, whichever way it measured (`reports regress`, two
saved runs; `reports ab`, base and head in one job): one row per benchmark with its verdict, the
exit status, the terminal table, the Markdown summary, the JSON of verdicts and the ratio chart."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from jaxbench.reports.charts import save_chart
from jaxbench.reports.results import write_atomically
from jaxbench.reports.verdicts import VERDICTS, ExactChange, TimingVerdict, benchmark_verdict

COLUMNS = ["benchmark", "verdict", "timing", "ratio", "low", "high", "p_value", "n", "exact", "program"]
"""A row: the benchmark's verdict, its timing's verdict alone (`timing`), the ratio head/base with its
interval, the rank test's p-value, the measurements a side, the exact figures that changed, and
what changed in the compiled program (`workloads.program.program_diff`; "same program" where
nothing did)."""
SHOWN = ["benchmark", "verdict", "timing", "ratio (interval)", "p_value", "n", "exact", "program"]
"""What the terminal table and the Markdown summary show of a row."""


@dataclass
class GateResult:
    """A gate's outcome: a row per benchmark both sides have, the benchmarks only one side has,
    warnings about what differs between the sides, and how it was measured (`method`)."""

    method: str
    threshold: float
    rows: list[dict] = field(default_factory=list)
    only_base: list[str] = field(default_factory=list)
    only_head: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, benchmark: str, timing: TimingVerdict | None, changes: list[ExactChange],
            failure: str | None = None, measurements: dict | None = None, program: str = "",
            kind: str = "step") -> None:
        """Record one benchmark's timing verdict and exact changes (and so its verdict); `failure`:
        head fails its check against baseline where base passes, a regression whatever the times;
        `measurements`: what the timing came from (kept in the JSON only); `program`: what changed
        in the compiled program (`workloads.program.program_diff`); `kind`: what the timing is of,
        `step` (a step's time) or `compile` (its cold compile time, `ab --compile-times`). Kept in the
        JSON beside `COLUMNS`: `kind`, whether an exact figure regressed (`exact_regression`) and
        whether head failed (`failed`)."""
        self.rows.append({
            "benchmark": benchmark,
            "verdict": "regression" if failure else benchmark_verdict(timing, changes),
            "timing": timing.verdict if timing else None,
            "ratio": timing.ratio if timing else None,
            "low": timing.low if timing else None,
            "high": timing.high if timing else None,
            "p_value": timing.p_value if timing else None,
            "n": timing.n if timing else 0,
            "exact": "; ".join([*map(str, changes), *([failure] if failure else [])]),
            "exact_regression": any(change.is_regression for change in changes),
            "failed": bool(failure),
            "kind": kind,
            "program": program,
            **({"measurements": measurements} if measurements else {}),
        })

    def table(self) -> pd.DataFrame:
        """The rows as a frame, in `COLUMNS` order."""
        return pd.DataFrame(self.rows, columns=COLUMNS)

    def shown(self) -> pd.DataFrame:
        """What the terminal and the Markdown show: `SHOWN`, the ratio with its interval in words."""
        table = self.table()
        table["ratio (interval)"] = [_interval(row) for row in self.rows]
        return table[SHOWN]

    @property
    def regressed(self) -> bool:
        """Whether any benchmark's verdict is `regression`."""
        return any(row["verdict"] == "regression" for row in self.rows)

    def counts(self) -> dict[str, int]:
        """How many benchmarks got each verdict."""
        return {verdict: sum(row["verdict"] == verdict for row in self.rows) for verdict in VERDICTS}

    def headline(self) -> str:
        """One line: the verdict counts and the threshold."""
        counts = ", ".join(f"{n} {verdict}" for verdict, n in self.counts().items() if n)
        return f"{len(self.rows)} benchmarks ({counts}) at a {self.threshold:.0%} threshold, {self.method}"

    def markdown(self) -> str:
        """The summary in Markdown, fit for `$GITHUB_STEP_SUMMARY`."""
        lines = ["## jaxbench: " + ("regression" if self.regressed else "no regression"), "", self.headline(), ""]
        lines += [f"> warning: {warning}" for warning in self.warnings]
        lines += ["", self.shown().to_markdown(index=False, floatfmt=".3g"), ""]
        lines += [line[:1].upper() + line[1:] for line in self.one_sided()]
        return "\n".join(lines) + "\n"

    def one_sided(self) -> list[str]:
        """A line per side that has benchmarks the other lacks (listed, not compared)."""
        return [f"only in {side} (not compared): {', '.join(names)}"
                for side, names in (("base", self.only_base), ("head", self.only_head)) if names]

    def to_json(self) -> dict:
        """The verdicts as plain JSON."""
        return {"method": self.method, "threshold": self.threshold, "regressed": self.regressed,
                "counts": self.counts(), "benchmarks": self.rows, "only_base": self.only_base,
                "only_head": self.only_head, "warnings": self.warnings}

    def write(self, markdown: str | Path | None = None, json_path: str | Path | None = None,
              chart: str | Path | None = None) -> None:
        """Write the Markdown summary, the JSON of verdicts and the ratio chart where asked."""
        if markdown:
            write_atomically(Path(markdown), self.markdown())
        if json_path:
            write_atomically(Path(json_path), json.dumps(self.to_json(), indent=2, default=float))
        if chart:
            ratio_chart(self, Path(chart))


def _interval(row: dict) -> str:
    if row["ratio"] is None:
        return "-"
    return f"{row['ratio']:.3f} ({row['low']:.3f}-{row['high']:.3f})"


def ratio_chart(result: GateResult, path: Path) -> Path:
    """Each benchmark's ratio head/base with its interval, the threshold band shaded."""
    rows = [row for row in result.rows if row["ratio"] is not None]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.35 * max(len(rows), 1)))
    colours = {"regression": "tab:red", "improvement": "tab:green", "no change": "tab:grey",
               "inconclusive": "tab:orange"}
    for i, row in enumerate(rows):
        ax.errorbar(row["ratio"], i, xerr=[[row["ratio"] - row["low"]], [row["high"] - row["ratio"]]], fmt="o",
                    color=colours[row["verdict"]], capsize=3)
    ax.axvspan(1 / (1 + result.threshold), 1 + result.threshold, color="tab:blue", alpha=0.1,
               label=f"no-change band (+/-{result.threshold:.0%})")
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [f"{row['benchmark']} ({row['verdict']})" for row in rows], fontsize=8)
    ax.set(xlabel="step time head / base (above 1: head slower)", title=f"jaxbench: {result.method}")
    ax.legend(fontsize=7, loc="lower right")
    return save_chart(fig, path)


def print_result(result: GateResult) -> None:
    """The terminal table: headline, warnings, one row per benchmark, one-sided benchmarks."""
    print(result.headline())
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(result.shown().to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    for line in result.one_sided():
        print(line)
