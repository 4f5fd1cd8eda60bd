"""The eight variants of a step, composed from `workloads/transforms.py`.

| variant        | train step                                                   | infer / decode step   |
|----------------|--------------------------------------------------------------|-----------------------|
| `baseline`     | Python loop of eager per-example grads, eager update         | loop, eager           |
| `jit`          | the same loop, per-example grad and the update compiled      | loop, compiled        |
| `vmap`         | eager `grad` of the vmapped mean loss, eager update           | eager vmap            |
| `jit_vmap`     | that step under one `jax.jit`, update included (production)  | `jit(vmap(f))`        |
| `multi_device` | `jit_vmap` on a (data, model) mesh, laid out by `layout`     | the same              |
| `remat`        | `jit_vmap`, each stacked block rematerialised                | -                     |
| `bf16`         | `jit_vmap`, bf16 compute, float32 master parameters          | bf16 forward          |
| `accumulation` | `jit_vmap` over k micro-batches summed in a `lax.scan`       | -                     |

`prepare` builds one of them for a workload at a size, compiled ahead of time where it is
compiled, and returns a `PreparedStep` that runs it one step at a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import jax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from workloads import compat
from workloads import transforms as T
from workloads.contract import Workload
from workloads.layers import configure_stacks

VARIANTS = ("baseline", "jit", "vmap", "jit_vmap", "multi_device", "remat", "bf16", "accumulation")
TRAIN_ONLY = ("remat", "accumulation")
"""Variants that change only the backward pass and the update: they exist for `train` only."""
EAGER = ("baseline", "vmap", "eager")
"""Variants that run without `jax.jit` (their stacked blocks run as a Python loop, see layers.py)."""
REFERENCE_VARIANT = "baseline"
MICRO_BATCHES = 4
"""Micro-batches of the `accumulation` variant."""


class NotApplicable(Exception):
    """This variant cannot run for this workload, size or device set; the message says why."""


def variants_for(mode: str) -> tuple[str, ...]:
    """The variants that exist for `mode`."""
    return tuple(v for v in VARIANTS if mode == "train" or v not in TRAIN_ONLY)


def footprint_bytes(memory: dict[str, int] | None) -> int | None:
    """Per-device bytes a compiled step needs: argument + output - alias + temp."""
    if memory is None:
        return None
    return memory["argument"] + memory["output"] - memory["alias"] + memory["temp"]


@dataclass
class PreparedStep:
    """One variant's step with its state and batch in place, ready to run one step at a time.

    Attributes:
        step: for `train`, (state, batch) -> (state, mean loss), state (params, opt_state[,
            model_state]); for `infer` / `decode`, (state, inputs) -> predictions or tokens, the
            state (params[, model_state]) only read.
        state, batch: what the next call consumes (a train step replaces the state).
        compile_s: seconds spent compiling ahead of time (None for eager variants).
        memory: per-device bytes of the compiled step (`compat.memory_analysis`), None if eager;
            for `jit` the larger of its two compiled pieces.
        n_devices: devices the step runs on.
    """

    mode: str
    step: Callable[[Any, Any], tuple[Any, Any]]
    state: Any
    batch: Any
    compile_s: float | None
    memory: dict[str, int] | None
    n_devices: int
    output: Any = None

    def __call__(self):
        """Run one step and wait for it (async dispatch would otherwise time only the launch)."""
        if self.mode == "train":
            self.state, self.output = self.step(self.state, self.batch)
            return jax.block_until_ready((self.state, self.output))
        self.output = self.step(self.state, self.batch)
        return jax.block_until_ready(self.output)

    def result(self) -> dict[str, Any]:
        """What the last step computed, for comparison with `baseline`."""
        return self._result(self.state, self.output)

    def result_from(self, state, batch) -> dict[str, Any]:
        """What one step from `state` on `batch` computes, this prepared step left as it is.

        For a step that does not donate its state (an eager reference), `state` may be the state
        it started from, e.g. to run it again on the batch reordered."""
        if self.mode == "train":
            return self._result(*self.step(state, batch))
        return self._result(state, self.step(state, batch))

    def free(self) -> None:
        """Delete the step's device buffers (state, batch, last output) now, rather than whenever
        Python collects them: a benchmark at `large` must not find the last one's still held."""
        for leaf in jax.tree.leaves((self.state, self.batch, self.output)):
            if isinstance(leaf, jax.Array) and not leaf.is_deleted():
                leaf.delete()
        self.state = self.batch = self.output = None

    def _result(self, state, output) -> dict[str, Any]:
        if self.mode == "train":
            params, opt_state, *model_state = state
            result = {"loss": output, "params": params, "opt_state": opt_state}
            return result | ({"model_state": model_state[0]} if model_state else {})
        return {"tokens" if self.mode == "decode" else "predictions": output}


def _split(model, *filters):
    """`nnx.split(model, *filters)` with each state as nested plain dicts of arrays: a step's
    state crosses the call boundary on every call, and a plain dict is flattened in C++, where
    NNX `Variable` leaves cost about 4 us each in Python (some 150 us a step for the tiny MLP's
    parameters and Adam moments, as long as the step itself). `nnx.merge` takes them back."""
    graphdef, *states = nnx.split(model, *filters)
    return graphdef, *(nnx.to_pure_dict(state) for state in states)


def compile_ahead_of_time(fn, *args, **jit_options):
    """`jax.jit(fn, **jit_options)` lowered and compiled for `args`: (compiled, seconds it took)."""
    start = time.perf_counter()
    compiled = jax.jit(fn, **jit_options).lower(*args).compile()
    return compiled, time.perf_counter() - start


def _compile(fn, *args, donate_argnums=(), out_shardings=None):
    """AOT-compile `jax.jit(fn)` for `args`: (compiled, seconds, per-device memory)."""
    options = {} if out_shardings is None else {"out_shardings": out_shardings}
    compiled, seconds = compile_ahead_of_time(fn, *args, donate_argnums=donate_argnums, **options)
    return compiled, seconds, compat.memory_analysis(compiled)


def prepare(
    workload: Workload,
    size_name: str,
    mode: str,
    variant: str,
    *,
    seed: int = 0,
    devices: list | None = None,
    layout: str = "data",
) -> PreparedStep:
    """Build `variant` of `workload`'s `mode` step at size `size_name`, from seeded state and data.

    Every call with the same arguments starts from the same parameters and batch, so results of
    different variants can be compared. `layout` (`workloads.LAYOUTS`) places `multi_device` on
    the mesh. Raises `NotApplicable` when the variant cannot run here.
    """
    if variant == "eager" and not workload.couples_examples:
        raise ValueError(f"{workload.name} has a per-example form: its reference is baseline, not eager")
    if variant not in variants_for(mode) and variant != "eager":
        raise NotApplicable(f"{variant} changes only the backward pass; it has no {mode} step")
    size = workload.size(size_name)
    devices = devices or jax.devices()
    model = workload.build_model(size, nnx.Rngs(seed))
    stacks = configure_stacks(model, scan=variant not in EAGER, remat=variant == "remat")
    if variant == "remat" and stacks == 0:
        raise NotApplicable(f"{workload.name} has no stacked blocks to rematerialise")
    if workload.set_mode is not None:
        workload.set_mode(model, mode)
    inputs, targets = workload.make_batch(size, jax.random.key(seed + 1))
    batch = (inputs, targets) if mode == "train" else inputs
    if workload.couples_examples:
        return _prepare_batch_coupled(workload, size, mode, variant, model, batch, devices, layout)
    graphdef, params = _split(model, nnx.Param)
    tx = workload.make_optimizer(size) if mode == "train" else None
    if mode == "train":
        example_fn = T.pure_example_loss(workload, graphdef)
        state = (params, tx.init(params))
    else:
        example_fn = T.pure_example_forward(workload, graphdef, mode)
        state = params
    if variant == "bf16":
        example_fn = T.mixed_precision(example_fn)

    if variant in ("baseline", "jit"):
        step, compile_s, memory = _looped_step(mode, variant, example_fn, tx, state, batch)
        return PreparedStep(mode, step, state, batch, compile_s, memory, n_devices=1)

    if mode == "train":
        value_and_grad = jax.value_and_grad(T.vmap_mean(example_fn))
        if variant == "accumulation":
            batch_size = T.batch_length(batch)
            if batch_size % MICRO_BATCHES:
                raise NotApplicable(f"batch {batch_size} does not split into {MICRO_BATCHES} micro-batches")
            value_and_grad = T.accumulate_micro_batches(value_and_grad, MICRO_BATCHES)
        step = T.train_step(value_and_grad, T.optimizer_update(tx))
    else:
        step = T.infer_step(T.vmap_over_examples(example_fn))
    if variant == "vmap":
        return PreparedStep(mode, step, state, batch, compile_s=None, memory=None, n_devices=1)

    return _compiled_step(mode, variant, step, state, batch, devices, layout)


def _compiled_step(mode, variant, step, state, batch, devices, layout) -> PreparedStep:
    """`jax.jit` the whole step ahead of time (on the mesh for `multi_device`)."""
    n_devices, out_shardings = 1, None
    if variant == "multi_device":
        state, batch, mesh, batch_spec = _on_mesh(state, batch, devices, layout)
        n_devices = len(devices)
        if mode == "train":
            # The step hands back its state laid out as it came in, so the next call can take it.
            out_shardings = (jax.tree.map(lambda a: a.sharding, state), NamedSharding(mesh, PartitionSpec()))
        else:
            out_shardings = NamedSharding(mesh, batch_spec)
    donate = (0,) if mode == "train" else ()  # the production step reuses the state's buffers
    compiled, compile_s, memory = _compile(step, state, batch, donate_argnums=donate, out_shardings=out_shardings)
    return PreparedStep(mode, compiled, state, batch, compile_s, memory, n_devices)


def _prepare_batch_coupled(workload, size, mode, variant, model, batch, devices, layout) -> PreparedStep:
    """A model whose layers couple the examples (BatchNorm): batch-level steps, statistics as state.

    Variant `eager` (used as the correctness reference in place of `baseline`) is the same step
    without `jax.jit`.
    """
    if variant in ("baseline", "jit", "vmap"):
        raise NotApplicable(f"{workload.name} normalises over the batch, coupling its examples: "
                            f"there is no per-example step for {variant} to loop or vmap over")
    if variant == "accumulation":
        raise NotApplicable("batch statistics of a micro-batch differ from the whole batch's: "
                            "accumulation would compute a different function")
    graphdef, params, model_state = _split(model, nnx.Param, nnx.BatchStat)
    if mode == "train":
        loss = T.pure_batch_loss(workload, graphdef)
        loss = T.mixed_precision(loss) if variant == "bf16" else loss
        tx = workload.make_optimizer(size)
        step = T.train_step_with_model_state(loss, T.optimizer_update(tx))
        state = (params, tx.init(params), model_state)
    else:
        predict = T.pure_batch_predict(workload, graphdef)
        predict = T.mixed_precision(predict) if variant == "bf16" else predict
        step = T.infer_step(lambda state, inputs: predict(*state, inputs))
        state = (params, model_state)
    if variant == "eager":
        return PreparedStep(mode, step, state, batch, compile_s=None, memory=None, n_devices=1)
    return _compiled_step(mode, variant, step, state, batch, devices, layout)


def prepare_reference(workload: Workload, size_name: str, mode: str, *, seed: int = 0) -> PreparedStep:
    """The step every variant is checked against: `baseline`, or for a model that couples the
    examples of a batch (no per-example form), the same batch step run eagerly."""
    if workload.couples_examples:
        return prepare(workload, size_name, mode, "eager", seed=seed)
    return prepare(workload, size_name, mode, REFERENCE_VARIANT, seed=seed)


def _looped_step(mode, variant, example_fn, tx, state, batch):
    """`baseline` (eager) or `jit` (per-example function compiled): a Python loop over examples.

    Returns (step, compile seconds, per-device memory), the last two None for `baseline`.
    """
    if mode == "train":
        add_example, update = T.add_example_gradient(example_fn), T.optimizer_update(tx)
        if variant == "jit":
            params, opt_state = state
            sums = T.zero_sums(params)
            first = T.example_at(batch, 0)
            add_example, add_s, add_mem = _compile(add_example, params, sums, first)
            update, update_s, update_mem = _compile(update, params, opt_state, sums[1])
            memory = max(add_mem, update_mem, key=footprint_bytes) if add_mem and update_mem else None
            return T.train_step(T.loop_mean_gradient(add_example), update), add_s + update_s, memory
        return T.train_step(T.loop_mean_gradient(add_example), update), None, None
    predict, compile_s, memory = example_fn, None, None
    if variant == "jit":
        predict, compile_s, memory = _compile(example_fn, state, T.example_at(batch, 0))
    return T.infer_step(T.loop_over_examples(predict)), compile_s, memory


def _on_mesh(state, batch, devices, layout: str):
    """Place state and batch on a (data, model) mesh of all `devices` as `layout` says.

    Returns (state, batch, mesh, the batch's partition spec).
    """
    n_devices = len(devices)
    if n_devices < 2:
        raise NotApplicable("only one device: nothing to shard over")
    model_size = {"data": 1, "model": n_devices, "data_model": 2}[layout]
    if n_devices % model_size:
        raise NotApplicable(f"{n_devices} devices do not split into a model axis of {model_size}")
    data_size = n_devices // model_size
    batch_size = T.batch_length(batch)
    if batch_size % data_size:
        raise NotApplicable(f"batch {batch_size} does not divide over {data_size} devices")
    if model_size > 1 and not any(T.model_axis_spec(a, model_size) != PartitionSpec() for a in jax.tree.leaves(state)):
        raise NotApplicable(f"no weight's last dimension divides over a model axis of {model_size}")
    mesh = compat.make_mesh((data_size, model_size), ("data", "model"), devices=devices)
    state = T.place(state, mesh, lambda array: T.model_axis_spec(array, model_size))
    batch_spec = PartitionSpec("data") if data_size > 1 else PartitionSpec()
    batch = T.place(batch, mesh, lambda array: batch_spec)
    return state, batch, mesh, batch_spec
