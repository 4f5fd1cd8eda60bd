"""The transformations the variants are built from: each turns a function into a function.

Read top to bottom, this is the seed's stack `jit(vmap(grad(f)))` taken apart: a per-example
function `f(params, example)`, batched by a Python loop or by `vmap`, differentiated, optionally
run in bf16 or over micro-batches, wrapped into a step with an Optax update. `jax.jit` and the
placement on a device mesh are applied by `workloads/steps.py`, which composes these as each
variant's record (`workloads/variants.py`) says. Nothing here knows which model it runs.

A batch function takes the model state (AlgoPerf's `model_state`, e.g. BatchNorm's running
statistics; {} for most models) next to the parameters: `(params, model_state, batch)`. A
model that couples its examples writes its batch functions that way; a per-example function
batched by a loop or `vmap` is given the model state it does not use (`ignoring_model_state`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

ExampleFn = Callable[[Any, Any], Any]  # (params, one example) -> value
BatchFn = Callable[[Any, Any], Any]  # (params, batch with a leading axis) -> value


# --- the per-example functions of a workload, as pure functions of the parameters -----------


def pure_example_loss(workload, graphdef) -> ExampleFn:
    """(params, (inputs, target)) -> the workload's loss of one example; model merged inside."""

    def loss(params, example):
        inputs, target = example
        return workload.example_loss(nnx.merge(graphdef, params), inputs, target)

    return loss


def pure_example_forward(workload, graphdef, mode: str) -> ExampleFn:
    """(params, inputs) -> the workload's prediction (`infer`) or generated tokens (`decode`)."""
    forward = workload.example_function(mode)

    def predict(params, inputs):
        return forward(nnx.merge(graphdef, params), inputs)

    return predict


def pure_batch_loss(workload, graphdef):
    """(params, model_state, (inputs, targets)) -> (batch loss, updated model_state).

    For a model whose layers couple the examples (BatchNorm): no per-example form; its running
    statistics are state, threaded through the step.
    """

    def loss(params, model_state, batch):
        # copy=True: fresh variables of this trace, which BatchNorm may update.
        model = nnx.merge(graphdef, params, model_state, copy=True)
        return workload.batch_loss(model, *batch), nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))

    return loss


def pure_batch_predict(workload, graphdef):
    """(params, model_state, inputs) -> predictions of a whole batch (model state read only)."""

    def predict(params, model_state, inputs):
        return workload.batch_predict(nnx.merge(graphdef, params, model_state), inputs)

    return predict


# --- batching: a Python loop over the examples, or vmap ---------------------------------------


def batch_length(batch) -> int:
    """Number of examples in a batch (the leading axis of its leaves)."""
    return jax.tree.leaves(batch)[0].shape[0]


def example_at(batch, index: int):
    """Example `index` of a batch."""
    return jax.tree.map(lambda leaf: leaf[index], batch)


def loop_over_examples(example_fn: ExampleFn) -> BatchFn:
    """A Python loop that applies `example_fn` to each example and stacks the results."""

    def looped(params, batch):
        outputs = [example_fn(params, example_at(batch, i)) for i in range(batch_length(batch))]
        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *outputs)

    return looped


def vmap_over_examples(example_fn: ExampleFn) -> BatchFn:
    """`example_fn` vectorised over the leading axis of the batch (parameters shared)."""
    return jax.vmap(example_fn, in_axes=(None, 0))


def vmap_mean(example_fn: ExampleFn) -> BatchFn:
    """The mean of `example_fn` over the batch, vectorised with vmap."""

    def mean(params, batch):
        return jnp.mean(vmap_over_examples(example_fn)(params, batch))

    return mean


def ignoring_model_state(batch_fn: BatchFn):
    """`batch_fn(params, batch)` as `(params, model_state, batch) -> value`: the form of a batch
    function, for a model without model state (the state passes by unused)."""

    def with_state(params, model_state, batch):
        return batch_fn(params, batch)

    return with_state


def passing_model_state_through(batch_loss: BatchFn):
    """`batch_loss(params, batch)` as `(params, model_state, batch) -> (loss, model_state)`: the
    form `train_step` differentiates (`has_aux`), the model state handed back unchanged."""

    def with_state(params, model_state, batch):
        return batch_loss(params, batch), model_state

    return with_state


# --- gradients: summed and averaged -----------------------------------------------------------


def zero_sums(params):
    """(0.0, zeros like `params`): the start of a (loss, gradient) sum."""
    return jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params)


def _add(sums, values):
    return jax.tree.map(jnp.add, sums, values)


def _scale(tree, factor: float):
    return jax.tree.map(lambda leaf: leaf * factor, tree)


def add_example_gradient(example_loss: ExampleFn):
    """(params, (loss_sum, grad_sum), example) -> the sums plus this example's loss and gradient.

    The per-example function of the looped variants: `baseline` runs it eagerly, `jit` compiled.
    """
    value_and_grad = jax.value_and_grad(example_loss)

    def add_example(params, sums, example):
        return _add(sums, value_and_grad(params, example))

    return add_example


def loop_mean_gradient(add_example):
    """(params, model_state, batch) -> ((mean loss, model_state), mean gradient), one
    `add_example` call per example (a per-example model: the model state passes through)."""

    def value_and_grad(params, model_state, batch):
        count = batch_length(batch)
        sums = zero_sums(params)
        for i in range(count):
            sums = add_example(params, sums, example_at(batch, i))
        loss, grads = _scale(sums, 1.0 / count)
        return (loss, model_state), grads

    return value_and_grad


def accumulate_micro_batches(value_and_grad, micro_batches: int):
    """Split the batch into `micro_batches` equal parts and average their gradients in a `lax.scan`.

    Same effective batch and the same mean gradient; activations live for one part at a time.
    `value_and_grad`: (params, model_state, batch) -> ((loss, model_state), grads), for a model
    whose model state a step does not change (a micro-batch's statistics are not the batch's).
    """

    def accumulated(params, model_state, batch):
        parts = jax.tree.map(lambda a: a.reshape(micro_batches, -1, *a.shape[1:]), batch)

        def add_part(sums, part):
            (loss, _), grads = value_and_grad(params, model_state, part)
            return _add(sums, (loss, grads)), None

        sums, _ = jax.lax.scan(add_part, zero_sums(params), parts)
        loss, grads = _scale(sums, 1.0 / micro_batches)
        return (loss, model_state), grads

    return accumulated


# --- precision ----------------------------------------------------------------------------------


def cast_floating(tree, dtype):
    """`tree` with every floating-point leaf cast to `dtype` (integer leaves untouched)."""
    return jax.tree.map(
        lambda leaf: leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf, tree
    )


def mixed_precision(fn: ExampleFn, compute_dtype="bfloat16") -> ExampleFn:
    """Run `fn(params, *state, data)` with parameters and data in `compute_dtype`; results back in
    float32. Arguments between the two (a model's running statistics) stay as they are.

    The float32 master parameters stay outside: gradients flow back through the cast as float32
    and the optimizer updates float32 parameters.
    """

    compute_dtype = jnp.dtype(compute_dtype)

    def low_precision(params, *rest):
        *state, data = rest
        result = fn(cast_floating(params, compute_dtype), *state, cast_floating(data, compute_dtype))
        return cast_floating(result, jnp.float32)

    return low_precision


# --- steps --------------------------------------------------------------------------------------


def optimizer_update(tx: optax.GradientTransformation):
    """(params, opt_state, grads) -> (new params, new opt_state) with the Optax transformation."""

    def update(params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return update


def train_step(value_and_grad, update):
    """((params, opt_state, model_state), batch) -> (new state, mean loss): one optimizer step.

    `value_and_grad`: (params, model_state, batch) -> ((loss, model_state), grads)."""

    def step(state, batch):
        params, opt_state, model_state = state
        (loss, model_state), grads = value_and_grad(params, model_state, batch)
        params, opt_state = update(params, opt_state, grads)
        return (params, opt_state, model_state), loss

    return step


def infer_step(predict_batch):
    """((params, model_state), inputs) -> predictions: a forward pass. The state is read, not
    returned: handing it back would make a compiled step write a copy of every weight.

    `predict_batch`: (params, model_state, inputs) -> predictions."""

    def step(state, inputs):
        params, model_state = state
        return predict_batch(params, model_state, inputs)

    return step
