"""A run against the committed reference run of its kind of device (`docs/reference-runs/`).

A reference run is a `results.json` this project measured and committed, one per kind of device
(`device_kind_of`: the accelerator's name, or a CPU's model and core count). A run is held against
the one of its kind: each benchmark both have, its speed as a share of the reference's (reference
median step time over the run's, so 0.62x is slower), and whether that is far outside what the
reference's own rounds spread (`FAR`, or 3 times the reference's IQR over its median where that is
wider). Far outside, in most benchmarks, points at the machine rather than the code: clocks, power
limits, other load, or the JAX build.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from jaxbench.reports.compare import BENCHMARK
from jaxbench.reports.results import SUITE, ResultsError, benchmarks_frame, is_workflow, load_results, write_atomically

_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_RUNS = next((folder for folder in (_ROOT / "docs" / "reference-runs", _ROOT / "reference_runs")
                       if folder.is_dir()), _ROOT / "reference_runs")
"""The committed reference runs, one folder each with its results.json: docs/reference-runs in a
checkout, installed with the package as `jaxbench/reference_runs` (pyproject.toml)."""
FAR = 0.25
"""A speed this far from the reference's (either way, as a ratio) is far outside its spread, unless
the reference's own rounds spread wider (3 x IQR / median)."""
SPEED = "speed vs reference"


def device_kind_of(data: dict) -> str:
    """The kind of device a run measured on, as reference runs are matched: `gpu: NVIDIA H100 80GB
    HBM3`, or for a CPU its model and core count (`cpu: AMD EPYC, 2 cores`)."""
    suite = data[SUITE]
    if suite["platform"] != "cpu":
        return f"{suite['platform']}: {suite['device_kind']}"
    model = (data.get("machine_info", {}).get("cpu", {}) or {}).get("brand_raw") or suite.get("cpu_model", "?")
    return f"cpu: {model}, {suite['host_cores']} cores"


def _newest_by_kind(folder: Path) -> dict[str, tuple[Path, dict]]:
    """Each kind of device's newest reference run under `folder` (by its date): its path and data."""
    found: dict[str, tuple[Path, dict]] = {}
    for path in sorted(folder.glob("*/results.json")) if folder.is_dir() else []:
        data = load_results(path)
        kind = device_kind_of(data)
        if kind not in found or str(data.get("datetime", "")) > str(found[kind][1].get("datetime", "")):
            found[kind] = (path, data)
    return found


def reference_runs(folder: Path = REFERENCE_RUNS) -> dict[str, Path]:
    """The reference runs under `folder` by kind of device (the newest of a kind, by its date)."""
    return {kind: path for kind, (path, _) in _newest_by_kind(folder).items()}


def _steps(data: dict) -> pd.DataFrame:
    frame = benchmarks_frame(data)
    return frame[~is_workflow(frame) & frame.get("scaling", pd.Series(None, index=frame.index)).isna()]


def reference_table(data: dict, reference: dict) -> pd.DataFrame:
    """Each step benchmark the run and the reference both have, slowest against the reference
    first: both medians (ms), the run's speed as a share of the reference's, the reference's
    spread (IQR / median) and whether the speed is far outside it."""
    ours = _steps(data).set_index(BENCHMARK)
    theirs = _steps(reference).set_index(BENCHMARK)
    common = ours.index.intersection(theirs.index)
    table = pd.DataFrame({"median (ms)": ours.loc[common, "median_s"] * 1e3,
                          "reference median (ms)": theirs.loc[common, "median_s"] * 1e3,
                          "reference spread": theirs.loc[common, "iqr_s"] / theirs.loc[common, "median_s"]})
    table[SPEED] = table["reference median (ms)"] / table["median (ms)"]
    band = table["reference spread"].mul(3).clip(lower=FAR)
    table["far outside"] = table[SPEED].map(math.log).abs() > band.add(1).map(math.log)
    return table.sort_values(SPEED).reset_index()


def reference_verdict(table: pd.DataFrame, kind: str, reference: dict) -> str:
    """One paragraph: the run's median speed against the reference of `kind`, and what to check
    where most benchmarks are far outside its spread."""
    versions = f"JAX {reference[SUITE].get('jax_version', '?')}, {str(reference.get('datetime', ''))[:10]}"
    if table.empty:
        return (f"The reference run of {kind} ({versions}) has none of this run's benchmarks (another --size or "
                "selection): nothing to hold it against.")
    speed = float(table[SPEED].median())
    far = int(table["far outside"].sum())
    text = (f"This {kind} runs the {len(table)} benchmarks it shares with the reference run ({versions}) at "
            f"{speed:.2f}x the reference's speed (median over benchmarks; above 1 is faster); {far} of them are "
            f"far outside the reference's spread.")
    if far > len(table) / 2:
        text += (" Most are: check the machine before the code (clocks and power limits, other load on it, "
                 "the JAX build and its version against the reference's).")
    return text


def reference_section_text(data: dict, folder: Path = REFERENCE_RUNS) -> tuple[str, pd.DataFrame]:
    """The paragraph and the table a report gives `data` against the reference run of its kind
    under `folder`, or the line saying there is none (and which kinds there are), with an empty
    table."""
    runs, kind = _newest_by_kind(folder), device_kind_of(data)
    if kind not in runs:
        kinds = "; ".join(sorted(runs))
        return f"No reference run of {kind} under {folder}" + (f" (there are: {kinds})." if kinds else "."), \
            pd.DataFrame()
    reference = runs[kind][1]
    table = reference_table(data, reference)
    return reference_verdict(table, kind, reference), table


def compare_with_reference(results: list[str | Path], out: str | Path, folder: str | Path = REFERENCE_RUNS) -> Path:
    """`jaxbench compare RESULTS --reference [FOLDER]`: write reference.md (and reference.csv where
    there is a reference run of the kind) into `out`; returns reference.md. `ResultsError` unless
    exactly one results file is given."""
    if len(results) != 1:
        raise ResultsError(f"compare --reference holds one run against its reference; {len(results)} results "
                           "files given")
    text, table = reference_section_text(load_results(results[0]), Path(folder))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    markdown = "# jaxbench against the reference run\n\n" + text + "\n"
    if not table.empty:
        table.to_csv(out / "reference.csv", index=False)
        markdown += "\n" + table.to_markdown(index=False, floatfmt=".4g") + "\n"
    write_atomically(out / "reference.md", markdown)
    print(text)
    return out / "reference.md"
