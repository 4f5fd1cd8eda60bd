"""The contract of a *workflow* workload: measured as a whole run, not as one training step.

Bayesian inference (NUTS sampling + posterior predictive), checkpointing (save + restore) and
the production training loop are not steps that `vmap` or `remat` transform: each has its own
variants (`WORKFLOW_VARIANTS` in `workloads/__init__.py`) and its own figures. The bench runs
every workflow the same way (`bench/test_workflows.py`): start a run, run it once and check it,
then time whole runs with pytest-benchmark and record the run's `metrics()`.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from jaxbench.workloads.contract import size_preset


def cannot_write(option: str, folder: str | Path) -> str | None:
    """None when `folder` (made if missing) can be written; otherwise the one-line error for the
    command-line `option` that named it, e.g. "--checkpoint-dir x: cannot write there (Not a directory)"."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe = Path(folder, ".write-test")
        probe.touch()
        probe.unlink()
    except OSError as error:
        return f"{option} {folder}: cannot write there ({error.strerror or error})"
    return None


class WorkflowRun(Protocol):
    """One variant of a workflow, prepared (data made, functions compiled) and ready to run.

    Calling it runs the whole workflow once and blocks until the work is done. A run is a context
    manager: leaving it removes whatever it wrote (checkpoint folders).
    """

    compile_s: float | None  # seconds compiling ahead of time, apart from the timed runs
    n_devices: int  # devices the run uses

    def __call__(self) -> None: ...

    def result(self) -> dict[str, Any]:
        """What the last run produced, for `Workflow.check`."""

    def metrics(self) -> dict[str, float]:
        """The run's own figures (seconds, bytes, rates), medians over the runs since `clear_timings`."""

    def clear_timings(self) -> None:
        """Forget the runs so far (the correctness run and warm-up), so `metrics` covers the timed ones."""

    def __enter__(self) -> WorkflowRun: ...

    def __exit__(self, *exc) -> None: ...


class RunTimings:
    """Seconds of each part of a run, kept per run, for a `WorkflowRun`'s `metrics`.

    A mixin: a run calls `record(part, seconds)` as it goes; `median(part)` is over the runs since
    the last `clear_timings()`. Also makes the run a context manager that cleans up nothing.
    """

    def record(self, part: str, seconds: float) -> None:
        """Add one run's `seconds` for `part` (e.g. "sampling_s")."""
        self.__dict__.setdefault("_timings", defaultdict(list))[part].append(seconds)

    def median(self, part: str) -> float:
        """The median seconds of `part` over the runs recorded since the last `clear_timings`."""
        return statistics.median(self.__dict__["_timings"][part])

    def clear_timings(self) -> None:
        """Forget the runs so far (the correctness run and warm-up), so `metrics` covers the timed ones."""
        self.__dict__.pop("_timings", None)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


@dataclass(frozen=True)
class Workflow:
    """A workload measured as a whole workflow.

    Attributes:
        name: the name used on the command line and in the results.
        mode_label: what the results' `mode` column says for it (`infer`, `train`,
            `save_restore`): a label of what one run does, not one of the step modes.
        sizes: preset name -> a size object.
        variants: the workflow's variant names; the first is the reference the others are checked
            against.
        start_run: (size name, variant, workdir) -> a `WorkflowRun` ready to run; `workdir` is a
            writable folder the run may write into (checkpoints), removed by the caller afterwards.
        check: (result, reference result) -> figures of the check (recorded with the timing);
            raises `IncorrectResult` when the result is wrong.
        throughput: (metric, unit): the run's own figure that is its throughput, in units per
            second (e.g. ("draws_per_s", "draws")). A benchmark round of a workflow may hold more
            than the part its throughput is about (the predictive after sampling, the loop without
            checkpoints before the loop with them), so it is never the round's time.
    """

    name: str
    mode_label: str
    sizes: dict[str, Any]
    variants: tuple[str, ...]
    start_run: Callable[[str, str, Path], WorkflowRun]
    check: Callable[[dict, dict], dict[str, float]]
    throughput: tuple[str, str]

    @property
    def reference_variant(self) -> str:
        """The variant every other one is checked against."""
        return self.variants[0]

    def size(self, name: str):
        """The size preset `name`; ValueError naming the valid presets otherwise."""
        return size_preset(self.name, self.sizes, name)
