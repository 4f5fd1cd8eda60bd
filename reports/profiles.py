"""Where a step's device time goes, read from the Perfetto trace `--profile` writes
(`bench/profile.py`): the share of XLA op time in collectives, matmuls and convolutions, copies,
and elementwise work (with the reductions and other fusions).

The trace is Chrome's JSON trace format, gzipped (`jax.profiler.trace(..., create_perfetto_trace=True)`).
XLA marks each executed op with an `hlo_op` argument: on a CPU on the threads of the host process,
on a GPU on the device's streams (`/device:GPU:N` processes), which are then the only ones read.
An op that contains others (a `while` loop's body) counts only its own time.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from pathlib import Path

CATEGORIES = {
    "collectives": re.compile(r"all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all|"
                              r"\bsend\b|\brecv\b|nccl", re.IGNORECASE),
    "matmul/conv": re.compile(r"dot|conv|gemm|cublas|cutlass|xmma|matmul|ynn_fusion", re.IGNORECASE),
    "copies": re.compile(r"copy|transpose|memcpy|dynamic-update-slice|dynamic-slice|concatenate", re.IGNORECASE),
}
"""Each category but the last by the op's name (its HLO name and its kernel's); first match wins.
(`ynn_fusion`: XLA:CPU's fusions around a dot, run by YNNPACK.)"""
OTHER = "elementwise"
"""Every other op: elementwise fusions, reductions, scatters, ..."""
SHARE_CATEGORIES = (*CATEGORIES, OTHER)


def _events(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    return data["traceEvents"] if isinstance(data, dict) else data


def category_of(name: str) -> str:
    """The category of an op called `name` (its HLO op name, or kernel name)."""
    return next((category for category, pattern in CATEGORIES.items() if pattern.search(name)), OTHER)


def _self_times(ops: list[dict]) -> list[tuple[dict, float]]:
    """(op, its duration less that of the ops inside it) for ops of one thread."""
    result, open_ops = [], []  # open_ops: [op, end, self time] of the enclosing ops
    for op in sorted(ops, key=lambda e: (e["ts"], -e["dur"])):
        while open_ops and op["ts"] >= open_ops[-1][1]:
            result.append(tuple(open_ops.pop()[::2]))
        if open_ops:
            open_ops[-1][2] -= op["dur"]
        open_ops.append([op, op["ts"] + op["dur"], op["dur"]])
    result += [tuple(entry[::2]) for entry in open_ops]
    return result


def op_time_shares(path: Path) -> dict[str, float] | None:
    """Category -> its share of the op time in the trace at `path` (shares sum to 1), or None
    where the trace marks no XLA op (nothing to tell)."""
    events = _events(path)
    devices = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
               and str(e.get("args", {}).get("name", "")).startswith("/device:")}
    threads = defaultdict(list)
    for event in events:
        if event.get("ph") == "X" and "hlo_op" in (event.get("args") or {}) and "dur" in event:
            if not devices or event["pid"] in devices:
                threads[event["pid"], event.get("tid")].append(event)
    totals = dict.fromkeys(SHARE_CATEGORIES, 0.0)
    for ops in threads.values():
        for op, seconds in _self_times(ops):
            totals[category_of(f"{op['args']['hlo_op']} {op['name']}")] += max(seconds, 0.0)
    whole = sum(totals.values())
    return {category: total / whole for category, total in totals.items()} if whole > 0 else None
