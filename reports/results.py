"""Reading the suite's benchmark JSON (pytest-benchmark format with jaxbench's `extra_info`)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

SUITE = "jaxbench"


class ResultsError(ValueError):
    """A results file that cannot be read as this suite's results; the message names file and reason."""


def load_results(path: str | Path) -> dict:
    """The parsed results file at `path`; `ResultsError` if it is missing or not this suite's JSON."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ResultsError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ResultsError(f"{path}: not JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ResultsError(f"{path}: not a pytest-benchmark result (no 'benchmarks' list)")
    if data.get(SUITE, {}).get("suite") != SUITE:
        raise ResultsError(f"{path}: a pytest-benchmark result, but not from {SUITE}")
    return data


def benchmarks_frame(data: dict) -> pd.DataFrame:
    """One row per benchmark: its `extra_info` plus the timing statistics (seconds)."""
    rows = []
    for bench in data["benchmarks"]:
        stats = bench["stats"]
        row = dict(bench.get("extra_info", {}))
        row.update(
            name=bench["name"],
            median_s=stats["median"],
            iqr_s=stats["iqr"],
            min_s=stats["min"],
            rounds=stats["rounds"],
        )
        rows.append(row)
    return pd.DataFrame(rows)
