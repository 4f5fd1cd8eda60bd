"""The bench's view of the training loop: each timed run trains from scratch, without checkpoints
and then with them; its figures; and the check against the reference variant."""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from jaxbench.workloads import compile_cache
from jaxbench.workloads.contract import IncorrectResult, size_preset
from jaxbench.workloads.training_loop.loop import LoopOutcome, TrainingLoop
from jaxbench.workloads.training_loop.sizes import SIZES
from jaxbench.workloads.workflow import RunTimings


@dataclass
class LoopRun(RunTimings):
    """The benchmark's view of the loop: each call trains from scratch into a fresh folder."""

    loop: TrainingLoop
    workdir: Path
    n_devices: int = 1
    outcome: LoopOutcome | None = None
    runs: int = 0

    @property
    def compile_s(self) -> float:
        return self.loop.compile_s

    def __call__(self) -> None:
        """The loop without checkpoints and with them into a fresh folder (removed afterwards):
        paired, so the share lost to checkpointing compares runs made moments apart, and in
        turns (without first on even calls, with first on odd ones), so that neither always
        runs second, after the other warmed the caches."""
        directory = self.workdir / f"run-{self.runs}"
        without_first = self.runs % 2 == 0
        self.runs += 1  # counted first: a call that fails leaves its half-written folder to no later call
        if without_first:
            without, outcome = self.loop.run(None), self.loop.run(directory)
        else:
            outcome, without = self.loop.run(directory), self.loop.run(None)
        shutil.rmtree(directory)
        self.outcome = outcome
        self.record("wall_s", outcome.wall_s)
        self.record("wall_without_checkpoints_s", without.wall_s)
        self.record("checkpoint_overhead_share", 1 - without.wall_s / outcome.wall_s)
        self.record("checkpoint_blocking_s", outcome.checkpoint_blocking_s)
        self.record("checkpoint_blocking_share", outcome.checkpoint_blocking_s / outcome.wall_s)
        self.record("eval_s", outcome.eval_s)

    def result(self) -> dict:
        return {"params": self.outcome.state[0], "kept": self.outcome.checkpoints_kept,
                "saved": self.outcome.checkpoints_saved, "keep": self.loop.size.keep,
                "eval_loss": self.outcome.eval_loss, "start_step": self.outcome.start_step}

    def metrics(self) -> dict[str, float]:
        size, outcome = self.loop.size, self.outcome
        return {
            "steps": size.steps,
            "steps_per_s": size.steps / self.median("wall_s"),
            "steps_per_s_without_checkpoints": size.steps / self.median("wall_without_checkpoints_s"),
            "checkpoint_overhead_share": self.median("checkpoint_overhead_share"),
            "checkpoint_blocking_share": self.median("checkpoint_blocking_share"),
            "checkpoint_blocking_s": self.median("checkpoint_blocking_s"),
            "checkpoints_saved": len(outcome.checkpoints_saved),
            "checkpoints_kept": len(outcome.checkpoints_kept),
            "eval_examples_per_s": outcome.eval_examples / self.median("eval_s"),
            "eval_loss": outcome.eval_loss,
            "time_to_first_step_s": self.loop.time_to_first_step_s,
        }

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_run(size_name: str, variant: str, workdir: Path) -> LoopRun:
    """The loop at `size_name` with `variant`'s checkpointing, writing its checkpoints under `workdir`."""
    # Built and compiled cold, as a fresh job is: without JAX's in-process caches, which an earlier
    # benchmark may have filled with the pieces this step shares (they halve the time to the first
    # step), and without the run's persistent cache, which holds the other variant's same programs.
    # Under `compile_cache.reuse` (quick runs that time no cold compile), through the kept cache.
    folder = Path(workdir) / f"training_loop-{variant}"
    cold = contextlib.nullcontext() if compile_cache.reused() else compile_cache.cold_compiles(folder / "compile-cache")
    with cold:
        loop = TrainingLoop(size_preset("training_loop", SIZES, size_name), variant, log=lambda line: None)
    return LoopRun(loop, folder)


def check(result: dict, reference: dict) -> dict[str, float]:
    """Raise `IncorrectResult` unless the checkpoints on disk are exactly the newest `keep` of those
    saved, the reference variant saved the same steps, the evaluation loss is finite, and the final
    parameters equal the reference variant's exactly (checkpointing must not change training).

    Returns the figures: checkpoints saved and on disk, and how many parameter arrays differ."""
    failures = []
    if not np.isfinite(result["eval_loss"]):
        failures.append(f"evaluation loss {result['eval_loss']}")
    newest = result["saved"][-result["keep"]:]
    if result["kept"] != newest:
        failures.append(f"checkpoints on disk {result['kept']}, the newest {result['keep']} saved are {newest}")
    if result["saved"] != reference["saved"]:
        failures.append(f"saved checkpoints {result['saved']}, the reference saved {reference['saved']}")
    differ = [jax.tree_util.keystr(path) for (path, a), b in
              zip(jax.tree_util.tree_leaves_with_path(result["params"]), jax.tree.leaves(reference["params"]),
                  strict=True) if not np.array_equal(np.asarray(a), np.asarray(b))]
    if differ:
        failures.append(f"final parameters differ from the reference's in {len(differ)} arrays: "
                        f"{', '.join(differ[:3])}")
    if failures:
        raise IncorrectResult("; ".join(failures))
    return {"eval_loss": result["eval_loss"], "checkpoints_saved": len(result["saved"]),
            "checkpoints_on_disk": len(result["kept"]), "parameters_differing": len(differ)}
