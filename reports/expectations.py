"""How `met` is decided: the speedup and memory claims JAX practitioners quote, checked per run.

Every row is computed from the measurements in the results JSON. A range [lo, hi] is the quoted
claim; "about X" is read as X +/- 25%. The verdict is `met` inside the range, `below` or
`above` outside it, and `n/a` where the run lacks what the row needs; every verdict but `met`
comes with its reason in words, built from the same measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from jaxbench.reports.results import SUITE, benchmarks_frame, held_bytes, is_workflow
from jaxbench.reports.scaling import is_scaling_point
from jaxbench.workloads.variants import PRODUCTION, SPEEDUP_BASE, VARIANTS

GROUP = ["run", "workload", "mode", "size", "device_set"]
ABOUT = 0.25  # "about X" means within X * (1 +/- ABOUT)


@dataclass(frozen=True)
class Claim:
    """One line of the quoted tables."""

    table: str  # "speedup": baseline time / variant time; "memory": jit_vmap bytes / variant bytes
    name: str  # the line's name in the quoted table
    variant: str  # the variant measured
    expected: str  # the claim as quoted
    lo: float | None = None  # the range of the measured value; None where it depends on the run
    hi: float | None = None
    expected_time: str = ""  # memory lines: the quoted compute overhead
    time_lo: float | None = None  # step-time ratio variant / jit_vmap
    time_hi: float | None = None
    is_reference: bool = False  # the line every other divides by: shown, never a verdict


CLAIMS = (
    Claim("speedup", "baseline", "baseline", "1x (reference)", 1.0, 1.0, is_reference=True),
    Claim("speedup", "jit", "jit", "10-100x", 10, 100),
    Claim("speedup", "vmap", "vmap", "2-10x", 2, 10),
    Claim("speedup", "jit + vmap", "jit_vmap", "100-1000x", 100, 1000),
    Claim("speedup", "multi-device", "multi_device", "about N x on N devices"),
    Claim("memory", "rematerialisation", "remat", "2-5x", 2, 5, "+30-50% step time", 1.3, 1.5),
    Claim("memory", "bf16 mixed precision", "bf16", "2x", 2 * (1 - ABOUT), 2 * (1 + ABOUT),
          "-50% step time (faster)", 0.5 * (1 - ABOUT), 0.5 * (1 + ABOUT)),
    Claim("memory", "gradient accumulation", "accumulation", "1-4x", 1, 4, "proportional to micro-steps"),
    Claim("memory", "sharding", "multi_device", "per-device share (N x on N devices)", None, None,
          "communication cost"),
)


def verdict(measured: float, lo: float, hi: float) -> str:
    """`below` under `lo`, `above` over `hi`, `met` within [lo, hi]."""
    if measured < lo:
        return "below"
    if measured > hi:
        return "above"
    return "met"


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.3g} MiB"


def _speedup_reason(claim: Claim, outcome: str, rows: dict, n: int) -> str:
    variant = rows[claim.variant]
    if VARIANTS[claim.variant].on_mesh:
        if variant["devices_share_host_cores"]:
            return (f"{n} virtual CPU devices share {variant['host_cores']} cores: sharding adds "
                    "partitioning and copies but no compute")
        return (f"{n} devices, {variant['batch_size'] // n} examples each: per-device work too small "
                "or communication-bound" if outcome == "below" else
                "super-linear: each device's share of the batch fits its caches better")
    base = rows[SPEEDUP_BASE.name]
    per_example_ms = base["median_s"] / base["batch_size"] * 1e3
    timings = (f"baseline spends {per_example_ms:.3g} ms per example, {claim.variant} "
               f"{variant['median_s'] * 1e3:.3g} ms per batch")
    share = dispatch_share(rows)
    if share is None:  # no figure to tell dispatch from compute: said as a guess
        guess = "eager dispatch" if outcome == "above" else "compute"
        return f"{timings}; perhaps {guess} dominates (jit, which would tell, was not measured)"
    what = ("eager dispatch dominates" if share >= 0.5 else
            f"compute dominates, which {claim.variant} cannot make faster than the hardware does")
    return (f"{timings}; dispatch is {share:.0%} of baseline's step (the same loop compiled, jit, takes "
            f"{1 - share:.0%} of its time): {what}")


def dispatch_share(rows: dict) -> float | None:
    """The share of the eager baseline's step that is dispatch and per-operation overhead, from the
    run's own figures: what compiling the same per-example loop (`jit`) removes, 1 - jit / baseline
    (None where either was not measured or they ran different batches)."""
    base, jit = rows.get(SPEEDUP_BASE.name), rows.get("jit")
    if base is None or jit is None or base.get("batch_size") != jit.get("batch_size"):
        return None
    return min(1.0, max(0.0, 1 - jit["median_s"] / base["median_s"]))


def _memory_reason(claim: Claim, outcome: str, rows: dict, n: int, label: str) -> str:
    variant, reference = rows[label], rows[PRODUCTION.name]
    breakdown = reference["mem_breakdown"]
    held = held_bytes(breakdown)
    share = held / reference["mem_bytes"]
    if claim.variant == "bf16" and outcome == "below":
        return (f"bf16 keeps float32 master parameters and optimizer state ({share:.0%} of jit_vmap's "
                f"{_mib(reference['mem_bytes'])} per device, with the batch), and its temporaries are "
                f"{_mib(variant['mem_breakdown']['temp'])} against jit_vmap's {_mib(breakdown['temp'])}")
    if VARIANTS[claim.variant].on_mesh:
        if variant.get("layout") in (None, "data"):
            return (f"data parallel: parameters and optimizer state ({share:.0%} of "
                    f"{_mib(reference['mem_bytes'])}) are replicated on each of the {n} devices; only the "
                    "batch is split")
        ours = variant["mem_breakdown"]
        return (f"{variant['layout']} on {n} devices: state and batch held {_mib(held_bytes(ours))} per device "
                f"against jit_vmap's {_mib(held)} ({held / held_bytes(ours):.2g}x less), temporaries "
                f"{_mib(ours['temp'])} against {_mib(breakdown['temp'])} ({breakdown['temp'] / ours['temp']:.2g}x "
                "less: activations of the device's share of the batch, and the weights a layer gathers)")
    held_words = (f"parameters, optimizer state and batch are {share:.0%} of jit_vmap's "
                  f"{_mib(reference['mem_bytes'])} per device, activations and other temporaries "
                  f"{_mib(breakdown['temp'])}")
    if outcome == "below":
        return f"{held_words}; {claim.variant} shrinks only the temporaries"
    if breakdown["temp"] > held:
        return f"{held_words}: the temporaries dominate, and {claim.variant} shrinks them"
    return held_words


def _labels(claim: Claim, rows: dict) -> list[str]:
    """The row labels a claim is checked on: the sharding memory claim on every layout in the run
    (`multi_device`, `multi_device-fsdp`, ...), every other claim on its variant."""
    if claim.table == "memory" and VARIANTS[claim.variant].on_mesh:
        return [label for label in rows if label.split("-")[0] == claim.variant] or [claim.variant]
    return [claim.variant]


def _row(claim: Claim, key: tuple, rows: dict, skipped: dict[str, str], label: str) -> dict:
    """`claim` checked on the row `label` (its variant, or a layout of it) of one group's `rows`."""
    on_mesh = VARIANTS[claim.variant].on_mesh
    layout = rows[label].get("layout") if label in rows else None
    name = f"{claim.name} ({layout or 'data'})" if on_mesh and claim.table == "memory" else claim.name
    row = dict(zip(GROUP, key), table=claim.table, claim=name, variant=label,
               expected=claim.expected, lo=claim.lo, hi=claim.hi, measured=None, verdict="n/a", reason="",
               expected_time=claim.expected_time, time_ratio=None, time_verdict="")
    reference = SPEEDUP_BASE.name if claim.table == "speedup" and not on_mesh else PRODUCTION.name
    missing = [v for v in dict.fromkeys((reference, label)) if v not in rows]
    if missing:
        variant, mode = missing[0], key[GROUP.index("mode")]
        case_id = f"{key[GROUP.index('workload')]}-{mode}-{variant}"
        row["reason"] = (f"n/a: {variant} skipped: {skipped[case_id]}" if case_id in skipped
                         else f"n/a: no {variant} result in this run")
        if case_id not in skipped and variant in VARIANTS and not VARIANTS[variant].in_default_run(mode):
            row["reason"] += f" (a run that names no --variants leaves out {variant} in {mode}: name it, or all)"
        return row
    variant, base = rows[label], rows[reference]
    n = int(variant["n_devices"])
    lo, hi = claim.lo, claim.hi
    if on_mesh:
        if n < 2:
            row["reason"] = "n/a: one device"
            return row
        lo, hi = n * (1 - ABOUT), n * (1 + ABOUT)
        row.update(lo=lo, hi=hi, expected=f"about {n}x on {n} devices" if claim.table == "memory" else claim.expected)
    if claim.table == "speedup":
        measured = base["median_s"] / variant["median_s"]
    else:
        if pd.isna(variant["mem_bytes"]) or pd.isna(base["mem_bytes"]):
            row["reason"] = "n/a: no compiled memory analysis"
            return row
        measured = base["mem_bytes"] / variant["mem_bytes"]
        row["time_ratio"] = variant["median_s"] / base["median_s"]
        if claim.time_lo is not None:
            row["time_verdict"] = verdict(row["time_ratio"], claim.time_lo, claim.time_hi)
    row["measured"] = measured
    note = extrapolation_note(base) if reference == SPEEDUP_BASE.name else ""
    if claim.is_reference:
        row.update(verdict="reference", reason="; ".join(
            filter(None, ["the reference the other speedups divide by, not a claim", note])))
        return row
    row["verdict"] = verdict(measured, lo, hi)
    if row["verdict"] != "met":
        row["reason"] = (_speedup_reason(claim, row["verdict"], rows, n) if claim.table == "speedup"
                         else _memory_reason(claim, row["verdict"], rows, n, label))
    row["reason"] = "; ".join(filter(None, [row["reason"], note]))
    return row


def extrapolation_note(baseline: dict) -> str:
    """What a speedup over `baseline`'s row rests on where that row's step time was extrapolated
    from part of its batch (`bench.eager_baseline`); empty where it was timed whole."""
    if baseline.get("extrapolated") is not True:
        return ""
    return (f"baseline extrapolated from {int(baseline['timed_examples'])} of {int(baseline['batch_size'])} "
            "examples timed")


def expectations_table(data: dict, run: str = "run 1") -> pd.DataFrame:
    """Every claim for every (workload, mode, size, device set) that has a `baseline` or `jit_vmap`.

    Memory claims are checked for `train` (the techniques act on the backward pass and update);
    `remat` and `accumulation` have no `infer` step at all. Workflows (bayes, checkpoint,
    training_loop) are not steps: the quoted tables do not speak of them (`reports/workflows.py`).
    """
    frame = benchmarks_frame(data, run)
    frame = frame[~is_workflow(frame) & ~is_scaling_point(frame)]
    skipped = data[SUITE].get("skipped", {})
    out = []
    for key, group in frame.groupby(GROUP, sort=False):
        rows = {r["variant"]: r for r in group.to_dict("records")}
        mode = key[GROUP.index("mode")]
        for claim in CLAIMS:
            if claim.table == "memory" and mode != "train":
                continue
            out += [_row(claim, key, rows, skipped, label) for label in _labels(claim, rows)]
    return pd.DataFrame(out)


def expectations_markdown(table: pd.DataFrame) -> str:
    """The expectations as two Markdown tables (speedup, then memory)."""
    return "\n\n".join(f"### {title}\n\n" + shown.to_markdown(index=False)
                       for title, shown in expectations_shown(table)) + "\n"


def expectations_shown(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The expectations as (title, table for reading) pairs: speedup, then memory, each with its
    measured figures written out ("12.3x", "2.1x less", "+35%")."""
    parts = []
    group = [column for column in GROUP if column in table]  # `run` may be left out for one run
    speed = table[table["table"] == "speedup"]
    if len(speed):
        shown = speed[group + ["claim", "expected", "measured", "verdict", "reason"]].copy()
        shown["measured"] = shown["measured"].map(lambda v: "-" if pd.isna(v) else f"{v:.3g}x")
        parts.append(("Speedup by transformation (baseline step time / variant step time)", shown))
    memory = table[table["table"] == "memory"]
    if len(memory):
        shown = memory[group + ["claim", "expected", "measured", "verdict", "expected_time",
                                "time_ratio", "time_verdict", "reason"]].copy()
        shown["measured"] = shown["measured"].map(lambda v: "-" if pd.isna(v) else f"{v:.3g}x less")
        shown["time_ratio"] = shown["time_ratio"].map(lambda v: "-" if pd.isna(v) else f"{v - 1:+.0%}")
        shown = shown.rename(columns={"measured": "measured memory", "time_ratio": "measured step time",
                                      "expected_time": "expected step time"})
        parts.append(("Memory by technique (jit_vmap bytes per device / variant bytes per device)", shown))
    return parts
