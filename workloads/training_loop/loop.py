"""The loop itself: the model split once into pure state, the jitted step and evaluation, Orbax's
`CheckpointManager`, and one run from the latest good checkpoint (or from scratch) to the end."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from jaxbench.workloads import WORKFLOW_VARIANTS, transformer, transforms
from jaxbench.workloads.training_loop import recovery
from jaxbench.workloads.training_loop.sizes import LoopSize, batch_at, eval_batches


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


def _without_model_state(step):
    """A train step over (params, opt_state): the transformer has no model state, so the loop's
    state and checkpoints hold just those two."""

    def two_part_step(state, batch):
        (params, opt_state, _), loss = step((*state, {}), batch)
        return (params, opt_state), loss

    return two_part_step


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
        loss = transforms.vmap_mean(transforms.pure_example_loss(transformer.WORKLOAD, graphdef))
        step = _without_model_state(transforms.train_step(
            jax.value_and_grad(transforms.passing_model_state_through(loss), has_aux=True),
            transforms.optimizer_update(tx)))
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
        """(step, state) of the latest checkpoint in `manager` that restores, or (0, the initial
        state) (`recovery.resume`)."""
        return recovery.resume(manager, self.initial_state, self.log)

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
        kept = recovery.steps_on_disk(directory) if directory else []
        return LoopOutcome(state, start_step, size.steps - start_step, wall_s, blocked, eval_s,
                           evaluations * len(evaluation) * size.model.batch_size, eval_loss, saved, kept)
