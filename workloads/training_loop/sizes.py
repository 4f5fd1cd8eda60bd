"""The training loop's presets, and its data: each step's batch and the held-out batches."""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax

from jaxbench.workloads import transformer


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
