"""Looking inside a benchmark's step. `--profile`: a few steps of each benchmark traced after its
timed rounds (never during them), one folder per benchmark under the report folder, and where the
device time went. `--save-hlo`: each compiled step's optimised HLO text kept beside the results,
for a diff against another run's.

Uses `jax.profiler.trace(folder, create_perfetto_trace=True)`: TensorBoard's `.xplane.pb` and a
`perfetto_trace.json.gz` that ui.perfetto.dev opens. Without either option nothing here runs.
"""

from __future__ import annotations

from pathlib import Path

PROFILES_FOLDER = "profiles"
HLO_FOLDER = "hlo"
TRACED_STEPS = 3
"""Steps traced per benchmark; one for a step of a second or more (an eager baseline's trace is
large, and one such step shows where its time goes)."""
LONG_STEP_S = 1.0


def profiling(config) -> bool:
    """Whether this run traces its benchmarks (`--profile`)."""
    return bool(config.getoption("profile", False))


def trace_steps(step, folder: Path, step_s: float) -> Path | None:
    """Trace a few calls of `step` (each waits for its result) into `folder`; the Perfetto trace's
    path, or None where JAX wrote none."""
    import jax

    folder.mkdir(parents=True, exist_ok=True)
    with jax.profiler.trace(str(folder), create_perfetto_trace=True):
        for _ in range(1 if step_s >= LONG_STEP_S else TRACED_STEPS):
            step()
    traces = sorted(folder.rglob("perfetto_trace.json.gz"))
    return traces[-1] if traces else None


def profile_info(config, case_id: str, step, step_s: float) -> dict:
    """With `--profile`: trace `step` into `<report dir>/profiles/<case id>/` (a folder per process
    in a run of several) and return the benchmark's `profile` (the Perfetto trace, relative to the
    report folder) and `op_shares` (`reports.profiles.op_time_shares`: the share of op time per
    category, None where the trace marks no op). Empty without `--profile`."""
    if not profiling(config):
        return {}
    import jax

    from jaxbench.bench.session import report_dir as run_report_dir
    from jaxbench.reports.profiles import op_time_shares

    report_dir = run_report_dir(config)
    folder = report_dir / PROFILES_FOLDER / case_id
    if jax.process_count() > 1:
        folder = folder / f"process-{jax.process_index()}"
    trace = trace_steps(step, folder, step_s)
    if trace is None:
        return {"profile": None, "op_shares": None}
    return {"profile": str(trace.relative_to(report_dir)), "op_shares": op_time_shares(trace)}


def write_hlo(folder: Path, case_id: str, step) -> Path | None:
    """Write `step`'s optimised HLO text (`PreparedStep.program_text`) to `folder/<case id>.hlo.txt`
    and return that path; None, writing nothing, for a step with no compiled program (an eager
    one, or none built)."""
    from jaxbench.reports.results import write_atomically

    text = getattr(step, "program_text", None)
    if text is None:
        return None
    path = Path(folder) / f"{case_id}.hlo.txt"
    write_atomically(path, text)
    return path


def saved_hlo(config, case_id: str, step) -> dict:
    """With `--save-hlo`: write `step`'s HLO text into `<report dir>/hlo/` (`write_hlo`) and return
    the benchmark's `hlo` (that file, relative to the report folder, or None). Empty without
    `--save-hlo`."""
    if not config.getoption("save_hlo", False):
        return {}
    from jaxbench.bench.session import report_dir as run_report_dir

    report_dir = run_report_dir(config)
    path = write_hlo(report_dir / HLO_FOLDER, case_id, step)
    return {"hlo": None if path is None else str(path.relative_to(report_dir))}
