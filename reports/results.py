"""Reading the suite's benchmark JSON (pytest-benchmark format with jaxbench's `extra_info`)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd

SUITE = "jaxbench"


def write_atomically(path: Path, text: str | bytes) -> None:
    """Write `text` (or bytes) to `path` so that a reader (or a Ctrl-C, or a crash) never sees a
    half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        binary = isinstance(text, bytes)
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


FAILURES = ("failed", "crashed", "timeout")
"""How a benchmark can fail, each a dict {case id: why} in the results' `jaxbench` section: its own
error (a wrong result, an exception), or the end of its process under `--isolate`: a crash (a
signal such as SIGSEGV or SIGABRT, or an exit) or a timeout."""
NOT_MEASURED = ("skipped", *FAILURES)
"""Every record of a planned benchmark without a timing."""
HIDDEN_HOST = "(host name left out)"
"""The host name of a run made with `--hide-host-names`, in `machine_info["node"]` (pytest-benchmark's)."""


def hidden_hosts(hosts: list[str]) -> list[str]:
    """Each process's host name replaced by `host-N` (N: the host's first appearance), so that
    which processes shared a host is kept and what it is called is not."""
    order = list(dict.fromkeys(hosts))
    return [f"host-{order.index(host) + 1}" for host in hosts]


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
    suite = data.get(SUITE)
    if not isinstance(suite, dict) or suite.get("suite") != SUITE:
        raise ResultsError(f"{path}: a pytest-benchmark result, but not from {SUITE}")
    if not data["benchmarks"]:
        raise ResultsError(f"{path}: holds no benchmark results")
    return data


def device_set(data: dict) -> str:
    """The run's devices in words, e.g. `cpu: 8 x cpu (virtual, 2 cores)` or `gpu: 1 x NVIDIA H100`."""
    env = data[SUITE]
    text = f"{env['platform']}: {env['n_devices_available']} x {env['device_kind']}"
    if env.get("devices_share_host_cores"):
        text += f" (virtual, {env['host_cores']} cores)"
    return text


def run_label(data: dict) -> str:
    """A short label for a run: device kind, host and date."""
    host = data.get("machine_info", {}).get("node", "?")
    date = str(data.get("datetime", ""))[:16].replace("T", " ")
    return f"{data[SUITE]['device_kind']} @ {host}, {date}"


def is_workflow(frame: pd.DataFrame) -> pd.Series:
    """Per row of `benchmarks_frame`: whether it is a workflow run (bayes, checkpoint, training_loop)
    rather than a step."""
    return frame["kind"] == "workflow"


def held_bytes(breakdown) -> float | None:
    """What a compiled step holds across calls, from its `mem_breakdown`: argument + output - alias
    (parameters, optimizer state, batch, result; donated buffers once). None without a breakdown."""
    if not isinstance(breakdown, dict):
        return None
    return breakdown["argument"] + breakdown["output"] - breakdown["alias"]


def variant_label(info: dict) -> str:
    """A row's variant as its case id spells it (bench/cases.py, `Case.id`): a multi_device layout
    other than `data` is its own row, `multi_device-model`; `multi_device` alone is the data layout;
    a scaling sweep's point is `jit_vmap-strong-4`."""
    if info.get("scaling"):
        return f"{info['variant']}-{info['scaling']}-{info['n_devices']}"
    layout = info.get("layout")
    return info["variant"] + (f"-{layout}" if layout not in (None, "data") else "")


def benchmarks_frame(data: dict, run: str = "run 1") -> pd.DataFrame:
    """One row per benchmark: its `extra_info`, the timing statistics (seconds), the device set and
    `run`, the label that keeps this run's rows apart from another's in a report over several."""
    rows = []
    for bench in data["benchmarks"]:
        stats = bench["stats"]
        row = {"kind": "step", **bench.get("extra_info", {})}
        row["variant"] = variant_label(row)
        row.update(
            name=bench["name"],
            median_s=stats["median"],
            iqr_s=stats["iqr"],
            min_s=stats["min"],
            rounds=stats["rounds"],
            device_set=device_set(data),
            run=run,
        )
        rows.append(row)
    return pd.DataFrame(rows)
