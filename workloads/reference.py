"""The program every variant of a per-example workload is checked against.

It shares none of the transformations under test (`workloads/transforms.py`: the Python loop,
`vmap`, bf16, micro-batches, the layer scan and remat, the mesh): it is written here, on its own,
from the workload's per-example function and Optax transformation alone, so that a fault planted
in those transformations cannot hide in the reference too. One example at a time in a `lax.scan`
(train: each example's loss and gradient, summed in the examples' order as the eager loop sums
them, then averaged, then the optimizer's update), the model's blocks unrolled, all under one
`jax.jit`: a compiled program, so its cost does not grow with eager dispatch per example, which
made the eager loop take seconds to minutes a step on an accelerator.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

NAME = "reference"
"""How rows and messages name this program."""


def train_step(workload, graphdef, tx: optax.GradientTransformation):
    """((params, opt_state, model_state), (inputs, targets)) -> (new state, mean loss)."""

    def loss_and_grad(params, example):
        inputs, target = example
        return jax.value_and_grad(lambda p: workload.example_loss(nnx.merge(graphdef, p), inputs, target))(params)

    def step(state, batch):
        params, opt_state, model_state = state

        def add(sums, example):
            loss, grads = loss_and_grad(params, example)
            return (sums[0] + loss, jax.tree.map(jnp.add, sums[1], grads)), None

        start = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
        (loss_sum, grad_sum), _ = jax.lax.scan(add, start, batch)
        count = jax.tree.leaves(batch)[0].shape[0]
        grads = jax.tree.map(lambda total: total / count, grad_sum)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, model_state), loss_sum / count

    return step


def infer_step(workload, graphdef, mode: str):
    """((params, model_state), inputs) -> each example's prediction (`infer`) or generated tokens
    (`decode`), one example at a time."""
    forward = workload.example_function(mode)

    def step(state, inputs):
        params, _ = state
        return jax.lax.map(lambda example: forward(nnx.merge(graphdef, params), example), inputs)

    return step
