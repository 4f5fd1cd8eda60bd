"""The production training loop, end to end: the workflow a JAX user runs to train a model.

Flax NNX transformer LM (`workloads/transformer.py`) split once into pure state, AdamW on a
warm-up + cosine schedule, the jitted step, an Orbax `CheckpointManager` saving every
`checkpoint_every` steps and keeping the last `keep`, evaluation on held-out batches every
`eval_every` steps. A loop resumes from the latest good checkpoint in its folder: one that cannot
be restored (a partial or corrupted folder) is reported, naming its step and path, and the one
before it is used.

Variants: `async` (the production loop: `save` returns once the state is copied off the devices,
the files are written in the background) and `sync` (`save` returns when the files are written).
Figures: steps per second; the share of wall time lost to checkpointing, against the same loop
run without it just before (`checkpoint_overhead_share`: it includes background writes slowing
the steps down) and the share the loop is blocked in `save` and the final wait
(`checkpoint_blocking_share`); the evaluation throughput; and the time to the first step
(model built, step and evaluation compiled, one step run).

Run on its own (as the interruption test does): `python -m workloads.training_loop --help`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from workloads import WORKFLOW_VARIANTS, transformer
from workloads import transforms as T
from workloads.contract import SIZES as SIZE_NAMES
from workloads.contract import IncorrectResult
from workloads.workflow import RunTimings, Workflow, cannot_write


@dataclass(frozen=True)
class LoopSize:
    """One preset: the model, and how long the loop runs and how often it checkpoints and evaluates."""

    model: transformer.TransformerSize
    steps: int
    checkpoint_every: int
    keep: int  # checkpoints kept (Orbax's max_to_keep)
    eval_every: int
    eval_batches: int


def _loop_size(model: transformer.TransformerSize, steps: int, **rest) -> LoopSize:
    # The schedule warms up over the first tenth of the loop and decays to its end.
    model = replace(model, warmup_steps=max(1, steps // 10), total_steps=steps)
    return LoopSize(model=model, steps=steps, **rest)


_MODELS = transformer.SIZES
SIZES = {
    "tiny": _loop_size(_MODELS["tiny"], steps=12, checkpoint_every=4, keep=2, eval_every=4, eval_batches=2),
    # A step of about 20 ms on a 2-core CPU: checkpoints every 10 steps are a visible share.
    "small": _loop_size(replace(_MODELS["small"], vocab=2048, d_model=128, num_layers=2, seq_len=64),
                        steps=40, checkpoint_every=10, keep=2, eval_every=20, eval_batches=4),
    "medium": _loop_size(_MODELS["small"], steps=100, checkpoint_every=20, keep=3, eval_every=50, eval_batches=4),
    "large": _loop_size(_MODELS["medium"], steps=200, checkpoint_every=50, keep=3, eval_every=100, eval_batches=8),
}


def batch_at(size: LoopSize, step: int, seed: int = 0):
    """The training batch of `step`: a function of the seed and the step only, so a resumed loop
    sees the same data as an uninterrupted one."""
    return transformer.make_batch(size.model, jax.random.fold_in(jax.random.key(seed + 1), step))


def eval_batches(size: LoopSize, seed: int = 0) -> list:
    """Held-out batches (a seed no training batch uses)."""
    keys = jax.random.split(jax.random.key(seed + 2), size.eval_batches)
    return [transformer.make_batch(size.model, key) for key in keys]


@dataclass
class LoopOutcome:
    """What one loop run did: its final state, where it started, and its timings (seconds)."""

    state: tuple
    start_step: int
    steps_run: int
    wall_s: float
    checkpoint_blocking_s: float
    eval_s: float
    eval_examples: int
    eval_loss: float
    checkpoints_saved: list[int]  # steps whose save Orbax made in this run
    checkpoints_kept: list[int]  # steps whose finished checkpoint folder is on disk at the end


class TrainingLoop:
    """The loop's pieces built once: model state, optimizer, the compiled step and evaluation."""

    def __init__(self, size: LoopSize, variant: str = "async", *, seed: int = 0,
                 log: Callable[[str], None] = print):
        if variant not in WORKFLOW_VARIANTS["training_loop"]:
            raise ValueError(f"unknown training_loop variant {variant!r}; "
                             f"valid: {', '.join(WORKFLOW_VARIANTS['training_loop'])}")
        self.size, self.variant, self.seed, self.log = size, variant, seed, log
        start = time.perf_counter()
        model = transformer.TransformerLM(size.model, nnx.Rngs(seed))
        graphdef, params = nnx.split(model, nnx.Param)
        tx = transformer.make_optimizer(size.model)
        self.initial_state = (params, tx.init(params))
        loss = T.vmap_mean(T.pure_example_loss(transformer.WORKLOAD, graphdef))
        step = T.train_step(jax.value_and_grad(loss), T.optimizer_update(tx))
        first_batch = batch_at(size, 0, seed)
        self.step = jax.jit(step).lower(self.initial_state, first_batch).compile()
        self.evaluate = jax.jit(loss).lower(params, eval_batches(size, seed)[0]).compile()
        self.compile_s = time.perf_counter() - start
        jax.block_until_ready(self.step(self.initial_state, first_batch))
        self.time_to_first_step_s = time.perf_counter() - start
        """Seconds from nothing to one step done: model built, step and evaluation compiled, step run."""

    def manager(self, directory: Path) -> ocp.CheckpointManager:
        """Orbax's manager over `directory`: a checkpoint every `checkpoint_every` steps, the last `keep` kept."""
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=self.size.checkpoint_every, max_to_keep=self.size.keep,
            enable_async_checkpointing=self.variant == "async")
        return ocp.CheckpointManager(Path(directory).absolute(), options=options)

    def resume(self, manager: ocp.CheckpointManager) -> tuple[int, tuple]:
        """(step, state) of the latest checkpoint that restores, or (0, the initial state).

        A checkpoint that fails to restore is reported (`log`) with its step and path, moved aside
        (to `<step>.unreadable`, so that saving that step again does not collide with it), and the
        one before it is tried.
        """
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, self.initial_state)
        try:
            for step in sorted(manager.all_steps(), reverse=True):
                try:
                    return step, manager.restore(step, args=ocp.args.StandardRestore(target))
                except Exception as error:  # noqa: BLE001 - any failure to read it makes it unusable
                    path = Path(manager.directory) / str(step)
                    aside = path.with_name(f"{step}.unreadable")
                    path.rename(aside)
                    self.log(f"checkpoint of step {step} at {path} cannot be restored ({_first_line(error)}); "
                             f"moved aside to {aside.name}, trying the one before it")
            return 0, self.initial_state
        finally:
            manager.reload()

    def run(self, directory: Path | None, *, crash_after_step: int | None = None) -> LoopOutcome:
        """Train from the latest good checkpoint in `directory` (or from scratch) to `steps`.

        `directory` None: the same loop without checkpointing (what checkpointing is measured against).
        `crash_after_step`: once that step is done and its checkpoints are on disk, the process
        kills itself (SIGKILL: no clean-up runs), as a crashed or pre-empted job would stop.
        """
        size = self.size
        evaluation = eval_batches(size, self.seed)
        start = time.perf_counter()
        blocked = eval_s = 0.0
        evaluations, eval_loss, saved = 0, float("nan"), []
        with self.manager(directory) if directory else contextlib.nullcontext() as manager:
            start_step, state = self.resume(manager) if manager else (0, self.initial_state)
            if start_step:
                self.log(f"resumed from the checkpoint of step {start_step}")
            for step in range(start_step, size.steps):
                state, _ = self.step(state, batch_at(size, step, self.seed))
                done = step + 1
                # Steps are dispatched asynchronously: wait for the queued steps' compute before a
                # save or an evaluation, so their clocks do not count it.
                if manager and manager.should_save(done):
                    jax.block_until_ready(state)
                    saving = time.perf_counter()
                    if manager.save(done, args=ocp.args.StandardSave(state)):
                        saved.append(done)
                    blocked += time.perf_counter() - saving
                if done % size.eval_every == 0 or done == size.steps:
                    jax.block_until_ready(state)
                    evaluating = time.perf_counter()
                    eval_loss = float(np.mean([self.evaluate(state[0], batch) for batch in evaluation]))
                    eval_s += time.perf_counter() - evaluating
                    evaluations += 1
                if manager and done == crash_after_step:
                    manager.wait_until_finished()
                    self.log(f"crashing after step {done}")
                    os.kill(os.getpid(), signal.SIGKILL)
            state = jax.block_until_ready(state)
            waiting = time.perf_counter()
            if manager:
                manager.wait_until_finished()
            blocked += time.perf_counter() - waiting
        wall_s = time.perf_counter() - start
        kept = steps_on_disk(directory) if directory else []
        return LoopOutcome(state, start_step, size.steps - start_step, wall_s, blocked, eval_s,
                           evaluations * len(evaluation) * size.model.batch_size, eval_loss, saved, kept)


def steps_on_disk(directory: Path) -> list[int]:
    """The steps whose checkpoint folder in `directory` is finished: named by its step alone (Orbax
    writes into a temporary name and renames it when the checkpoint is complete)."""
    return sorted(int(path.name) for path in Path(directory).iterdir() if path.name.isdigit())


def _first_line(error: Exception) -> str:
    """`Type: message`, cut at its first line (and before TensorStore's long spec dump)."""
    message = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {message.split(' See full')[0][:160]}".rstrip(": ")


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
        """The loop without checkpoints, then with them into a fresh folder (removed afterwards):
        paired, so the share lost to checkpointing compares runs made moments apart."""
        directory = self.workdir / f"run-{self.runs}"
        self.runs += 1
        without = self.loop.run(None)
        outcome = self.loop.run(directory)
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


def prepare(size_name: str, variant: str, workdir: Path) -> LoopRun:
    """The loop at `size_name` with `variant`'s checkpointing, writing its checkpoints under `workdir`."""
    # Without JAX's in-process caches, which an earlier benchmark may have filled with the pieces
    # this step shares (they halve the time to the first step): the compile a fresh job pays.
    jax.clear_caches()
    loop = TrainingLoop(WORKLOAD.size(size_name), variant, log=lambda line: None)
    return LoopRun(loop, Path(workdir) / f"training_loop-{variant}")


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


WORKLOAD = Workflow(name="training_loop", mode="train", sizes=SIZES, variants=WORKFLOW_VARIANTS["training_loop"],
                    prepare=prepare, check=check, throughput=("steps_per_s", "steps"))


def save_params(state, path: Path) -> None:
    """The parameters of `state` as an .npz file, one array per parameter path."""
    flat = {jax.tree_util.keystr(p): np.asarray(a) for p, a in jax.tree_util.tree_leaves_with_path(state[0])}
    np.savez(path, **flat)


def main(argv: list[str] | None = None) -> int:
    """Command line: train (or resume) into a checkpoint folder; bad input is a one-line error."""
    parser = argparse.ArgumentParser(prog="python -m workloads.training_loop", description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny", choices=[n for n in SIZE_NAMES if n in SIZES])
    parser.add_argument("--variant", default="async", choices=WORKFLOW_VARIANTS["training_loop"])
    parser.add_argument("--checkpoint-dir", required=True, type=Path, metavar="DIR")
    parser.add_argument("--crash-after-step", type=int, default=None, metavar="N",
                        help="kill the process (SIGKILL) once step N is done and checkpointed")
    parser.add_argument("--params-out", type=Path, default=None, metavar="FILE.npz",
                        help="write the final parameters here")
    args = parser.parse_args(argv)
    error = cannot_write("--checkpoint-dir", args.checkpoint_dir)
    if error:
        parser.error(error)
    loop = TrainingLoop(SIZES[args.size], args.variant, log=lambda line: print(line, flush=True))
    outcome = loop.run(args.checkpoint_dir, crash_after_step=args.crash_after_step)
    print(f"trained steps {outcome.start_step}..{loop.size.steps} in {outcome.wall_s:.3g} s; "
          f"checkpoints kept: {outcome.checkpoints_kept}; eval loss {outcome.eval_loss:.4f}", flush=True)
    if args.params_out:
        save_params(outcome.state, args.params_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
