"""The summary of a run: step time and spread, speedup over `baseline`, memory, per benchmark."""

from __future__ import annotations

import pandas as pd

from jaxbench.reports.expectations import extrapolation_note
from jaxbench.reports.profiles import SHARE_CATEGORIES
from jaxbench.reports.results import benchmarks_frame, held_bytes
from jaxbench.reports.scaling import is_scaling_point
from jaxbench.workloads.variants import SPEEDUP_BASE

KEYS = ["run", "workload", "mode", "size", "device_set"]
"""What one step's rows share: a speedup compares rows with the same keys only."""
CACHED = "compile cached (s)"
"""The column of each compiled step's second compilation, from the cache (a run's --compile-cached)."""
CACHE_NOTE = "compile cache"
"""The column that says why a compiled row has no `compile cached (s)` (e.g. no persistent cache)."""
EXTRAPOLATED = "baseline timing"
"""The column that says where the speedup's baseline was extrapolated from part of its batch."""
PEAK = "peak in use (MiB)"
"""The column of the device allocator's peak (`peak_bytes_in_use`), beside the compiled estimate."""
ENERGY, POWER = "energy/step (J)", "power (W)"
"""The columns of the energy counters' figures (`bench.energy`), where the platform has them."""


def _mib(nbytes: pd.Series) -> pd.Series:
    return nbytes / 2**20


def share_column(category: str) -> str:
    """The summary's column of the share of op time in `category` (`reports.profiles`, `--profile`)."""
    return f"{category} (% op time)"


def summary_table(data: dict, run: str = "run 1") -> pd.DataFrame:
    """One row per (run, workload, mode, variant, size, device set) with its measured figures.

    The points of scaling sweeps are left out (`reports.scaling.scaling_table`). The speedup is
    baseline's median step time divided by the variant's, within the same run,
    workload, mode, size and device set; it is empty where the run has no baseline for them.
    `MFU` is against the in-run matmul rate of the row's compute dtype, `MFU (datasheet)` against
    the device's datasheet peak where it is known. `run` labels the rows of one results file.
    """
    frame = benchmarks_frame(data, run)
    frame = frame[~is_scaling_point(frame)]  # the sweeps have a table of their own (`reports.scaling`)
    baseline = frame[frame["variant"] == SPEEDUP_BASE.name].set_index(KEYS)["median_s"].rename("baseline_median_s")
    notes = frame[frame["variant"] == SPEEDUP_BASE.name].set_index(KEYS)
    notes = notes.apply(lambda row: extrapolation_note(row.to_dict()), axis=1).rename("baseline_note")
    frame = frame.join(baseline, on=KEYS).join(notes.where(notes != ""), on=KEYS)
    none = pd.Series(None, index=frame.index, dtype=object)

    def column(key, default=none):  # an extra_info key that older runs, or some rows, lack
        return frame.get(key, default)

    table = pd.DataFrame(
        {
            "run": frame["run"],
            "kind": frame["kind"],
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
            EXTRAPOLATED: frame["baseline_note"],
            "items/s": frame["items_per_s"],
            "memory/device (MiB)": _mib(frame["mem_bytes"]),
            "held (MiB)": _mib(column("mem_breakdown").map(held_bytes).astype(float)),
            "temporaries (MiB)": _mib(frame["mem_temp_bytes"]),
            **{share_column(category): 100 * column("op_shares").map(
                lambda shares, category=category: shares[category] if isinstance(shares, dict) else None).astype(float)
               for category in SHARE_CATEGORIES},
            PEAK: _mib(column("peak_bytes_in_use").astype(float)),
            ENERGY: column("energy_j_per_step").astype(float),
            POWER: column("power_w").astype(float),
            "compile (s)": frame["compile_s"],
            CACHED: column("compile_cached_s").astype(float),
            CACHE_NOTE: _cache_notes(column("compile_cache"), column("compile_cached_s"), frame["kind"]),
            "compute dtype": column("compute_dtype"),
            "MFU": frame["mfu"],
            "MFU (datasheet)": column("mfu_datasheet"),
        }
    ).reset_index(drop=True)
    # A baseline extrapolated from part of its batch only where one was (`--baseline-budget`);
    # the allocator's real peak only for benchmarks run in a process of their own (--isolate)
    # on a platform that keeps memory statistics (not a CPU); the cached compile time only where a
    # run timed it (--compile-cached), and the cache note only where a compiled row has none; op
    # time shares only with --profile; energy only where the platform counts it (`bench.energy`):
    # no column where no row has a value.
    optional = [EXTRAPOLATED, PEAK, ENERGY, POWER, CACHED, CACHE_NOTE, *map(share_column, SHARE_CATEGORIES)]
    return table.drop(columns=[name for name in optional if table[name].isna().all()])


def _cache_notes(notes: pd.Series, cached_s: pd.Series, kind: pd.Series) -> pd.Series:
    """Why a compiled row has no cached compile time, where it says more than that none was timed:
    a workflow's note (its compiles are its own) only beside steps that have one (--compile-cached)."""
    notes = notes.where(notes != "hit")
    return notes if cached_s.notna().any() else notes.where(kind != "workflow")


def to_markdown(table: pd.DataFrame) -> str:
    """A table as Markdown, numbers to 4 significant digits and `-` where there is no value."""
    shown = table.astype(object)
    shown = shown.where(shown.notna(), None)  # tabulate shows None (not NaN) as missingval
    return shown.to_markdown(index=False, floatfmt=".4g", missingval="-") + "\n"
