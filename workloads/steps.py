"""A variant's step built for a workload: the stages of its record (`workloads.variants`)
applied to the workload's model function, compiled ahead of time where it is compiled.

`build_step` returns a `PreparedStep`: the step with its state and batch in place, run one step
at a time. Every step's state holds the model state (AlgoPerf's `model_state`: BatchNorm's
running statistics) next to the parameters, empty for a model without one, so a model that
couples its examples goes through the same stages as any other; only the variants defined by
how they treat single examples have no step for it (`Variant.not_for`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxbench.workloads import compat, compile_cache, reference, sharding, transforms
from jaxbench.workloads.contract import NotApplicable, Workload
from jaxbench.workloads.layers import configure_stacks
from jaxbench.workloads.program import combined, program_summary, program_text
from jaxbench.workloads.sharding import MeshShape
from jaxbench.workloads.variants import BATCH_REFERENCE, PRODUCTION, Variant, get_variant


def footprint_bytes(memory: dict[str, int] | None) -> int | None:
    """Per-device bytes a compiled step needs: argument + output - alias + temp."""
    if memory is None:
        return None
    return memory["argument"] + memory["output"] - memory["alias"] + memory["temp"]


@dataclass
class PreparedStep:
    """One variant's step with its state and batch in place, ready to run one step at a time.

    Attributes:
        step: for `train`, (state, batch) -> (state, mean loss), state (params, opt_state,
            model_state); for `infer` / `decode`, (state, inputs) -> predictions or tokens, the
            state (params, model_state) only read. `model_state` is {} for most models.
        state, batch: what the next call consumes (a train step replaces the state).
        compile_s: seconds spent compiling ahead of time (None for eager variants).
        memory: per-device bytes of the compiled step (`compat.memory_analysis`), None if eager;
            for `jit` the larger of its two compiled pieces.
        n_devices: devices the step runs on.
        cost: XLA's `flops` and `bytes_accessed` of the compiled step (`compat.cost_analysis`),
            None if eager; for `jit` the sum of one call of each of its two compiled pieces.
        compile_cached_s: seconds of a second compilation from JAX's persistent cache
            (`workloads.compile_cache`); None where there was none, `compile_cache` saying why
            ("hit" where there was; None where none was asked for).
        program: what the optimised program is (`workloads.program.program_summary`: its
            fingerprint, fusions, ops and collective bytes), None if eager or unknown.
        program_text: the optimised HLO text it was read from (of each compiled piece, in turn).
    """

    mode: str
    step: Callable[[Any, Any], tuple[Any, Any]]
    state: Any
    batch: Any
    compile_s: float | None
    memory: dict[str, int] | None
    n_devices: int
    cost: dict[str, float] | None = None
    output: Any = None
    compile_cached_s: float | None = None
    compile_cache: str | None = "not measured"
    program: dict | None = None
    program_text: str | None = None

    def __call__(self):
        """Run one step and wait for it (async dispatch would otherwise time only the launch)."""
        if self.mode == "train":
            self.state, self.output = self.step(self.state, self.batch)
            return jax.block_until_ready((self.state, self.output))
        self.output = self.step(self.state, self.batch)
        return jax.block_until_ready(self.output)

    def result(self) -> dict[str, Any]:
        """What the last step computed, for comparison with the reference."""
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
            params, opt_state, model_state = state
            result = {"loss": output, "params": params, "opt_state": opt_state}
            return result | ({"model_state": model_state} if model_state else {})
        return {"tokens" if self.mode == "decode" else "predictions": output}


class InitialStates:
    """Models' initial states (nested plain dicts of host arrays) by (workload, size, seed), for
    building a model without initialising it again (`run_once`: on XLA:CPU, seconds of compiling
    per model). A process that measures holds one and passes it to `build_step`: it keeps each
    model's first build (up to `keep_up_to_bytes` a model; None: keeps none), for its next builds
    and to hand to a worker process (`kept`), and builds from the states a parent handed over
    (`take`). Without one, every build initialises."""

    def __init__(self, keep_up_to_bytes: int | None = None):
        self.keep_up_to_bytes = keep_up_to_bytes
        self._states: dict[tuple, dict] = {}

    def take(self, states: dict[tuple, dict]) -> None:
        """Build these models (keyed by (workload name, size name, seed)) from the states given
        (`kept`'s, from a parent process) rather than initialising them."""
        self._states.update(states)

    def kept(self, workload_name: str, size_name: str, seed: int = 0) -> dict | None:
        """The initial state of a model built in this process and kept, or handed over; None
        where there is none (a worker then initialises it)."""
        return self._states.get((workload_name, size_name, seed))

    def model(self, workload: Workload, size_name: str, seed: int):
        """`workload`'s freshly initialised model at `size_name`: from a kept or handed-over state
        where there is one, else initialised (and its state kept, within the limit)."""
        size = workload.size(size_name)
        key = (workload.name, size_name, seed)
        graphdef = nnx.graphdef(nnx.eval_shape(lambda: workload.build_model(size, nnx.Rngs(seed))))
        state = self._states.get(key)
        if state is not None:
            return nnx.merge(graphdef, jax.tree.map(jnp.asarray, state))
        state = run_once(lambda: nnx.to_pure_dict(nnx.state(workload.build_model(size, nnx.Rngs(seed)))))
        if self.keep_up_to_bytes is not None:
            if sum(leaf.nbytes for leaf in jax.tree.leaves(state)) <= self.keep_up_to_bytes:
                self._states[key] = jax.device_get(state)
        return nnx.merge(graphdef, state)


def run_once(fn: Callable[..., Any], *args):
    """`fn(*args)`, for a computation run once and never timed (a model's initialisation, a batch),
    as one program, on a CPU compiled at XLA's lowest optimisation level: run eagerly, each of its
    random draws would compile a program of its own, seconds a model on XLA:CPU. The values may
    differ from the eager ones in the last bits; every variant and reference of a run starts from
    the same ones. A function that cannot be traced (one of a workload's own that reads an array's
    value in Python) runs eagerly, as written."""
    options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}
    try:
        compiled = jax.jit(fn).lower(*args).compile(compiler_options=options)
    except jax.errors.JAXTypeError:
        return fn(*args)
    return compiled(*args)


def _split(model):
    """(graphdef, params, model_state) of `model`, each state as nested plain dicts of arrays: a
    step's state crosses the call boundary on every call, and a plain dict is flattened in C++,
    where NNX `Variable` leaves cost microseconds each in Python (for a small model's parameters
    and Adam moments, as long as the step itself). `nnx.merge` takes them back."""
    graphdef, *states = nnx.split(model, nnx.Param, nnx.BatchStat)
    return graphdef, *(nnx.to_pure_dict(state) for state in states)


def compile_ahead_of_time(fn, *args, **jit_options):
    """`jax.jit(fn, **jit_options)` lowered and compiled for `args`: (compiled, seconds it took)."""
    return compile_cache.timed_compile(fn, args, jit_options)


@dataclass(frozen=True)
class Compiled:
    """An ahead-of-time compiled function with what XLA says of it (`_compile`), and the seconds of
    its cold compilation and of one from the persistent cache (`workloads.compile_cache`)."""

    fn: Callable
    seconds: float
    memory: dict[str, int] | None
    cost: dict[str, float] | None
    cached_seconds: float | None = None
    cache: str = "not measured"
    program: dict | None = None
    text: str | None = None  # the optimised HLO (`--save-hlo`)


def _compile(fn, *args, donate_argnums=(), out_shardings=None) -> Compiled:
    """AOT-compile `jax.jit(fn)` for `args`, with its per-device memory and XLA cost analysis."""
    options = {"donate_argnums": donate_argnums} | ({} if out_shardings is None else {"out_shardings": out_shardings})
    both = compile_cache.compile_both(fn, args, options)
    compiled = both.compiled
    text = program_text(compiled)
    return Compiled(compiled, both.cold_s, compat.memory_analysis(compiled), compat.cost_analysis(compiled),
                    both.cached_s, both.cache, None if text is None else program_summary(text), text)


def _pieces_step(mode, step, state, batch, pieces: list[Compiled], n_devices: int = 1) -> PreparedStep:
    """A PreparedStep of compiled `pieces` (none when eager): its compile seconds summed, its memory
    the largest piece's, its XLA cost the sum of one call of each piece."""
    if not pieces:
        return PreparedStep(mode, step, state, batch, compile_s=None, memory=None, n_devices=n_devices)
    memories = [piece.memory for piece in pieces]
    cached = [piece.cached_seconds for piece in pieces]
    return PreparedStep(
        mode, step, state, batch,
        compile_s=sum(piece.seconds for piece in pieces),
        memory=max(memories, key=footprint_bytes) if all(memories) else None,
        n_devices=n_devices,
        cost=None if any(piece.cost is None for piece in pieces) else _summed_costs([piece.cost for piece in pieces]),
        compile_cached_s=None if None in cached else sum(cached),
        compile_cache=next((piece.cache for piece in pieces if piece.cache != "hit"), "hit"),
        program=combined([piece.program for piece in pieces]),
        program_text=None if any(piece.text is None for piece in pieces) else "\n".join(
            piece.text for piece in pieces),
    )


def _summed_costs(costs: list[dict]) -> dict:
    """Each figure of XLA's cost analysis summed over pieces, unknown (None) where any piece's is."""
    return {key: None if any(cost[key] is None for cost in costs) else sum(cost[key] for cost in costs)
            for key in costs[0]}


def build_step(
    workload: Workload,
    size_name: str,
    mode: str,
    variant: str | Variant,
    *,
    seed: int = 0,
    devices: list | None = None,
    layout: str = "data",
    mesh: MeshShape | None = None,
    batch_size: int | None = None,
    examples: int | None = None,
    initial_states: InitialStates | None = None,
) -> PreparedStep:
    """Build `variant`'s `mode` step of `workload` at size `size_name`, from seeded state and data.

    Every call with the same arguments starts from the same parameters and batch, so results of
    different variants can be compared. `layout` (`workloads.LAYOUTS`) places an `on_mesh`
    variant on a mesh of `devices` (default: all), of shape `mesh` or the layout's default
    (`workloads.sharding`). `batch_size` replaces the preset's (a weak-scaling sweep's global
    batch; the model is the preset's). `examples` keeps only the batch's first `examples`
    examples (the eager `baseline` timed over part of its batch, and the reference it is checked
    against). `initial_states`: the model's state kept or handed over in this process, if any.
    Raises `NotApplicable` when the variant cannot run here.
    """
    variant = get_variant(variant) if isinstance(variant, str) else variant
    reason = variant.not_for(workload, mode)
    if reason:
        raise NotApplicable(reason)
    size = with_batch_size(workload, workload.size(size_name), batch_size)
    model = (initial_states or InitialStates()).model(workload, size_name, seed)
    stacks = configure_stacks(model, scan=variant.compiled, remat=variant.remat)
    if variant.remat and stacks == 0:
        raise NotApplicable(f"{workload.name} has no stacked blocks to rematerialise")
    graphdef, tx, state, batch = _state_and_batch(workload, size, model, mode, seed, examples)

    fn = _model_function(workload, graphdef, mode)
    if variant.precision:
        fn = transforms.mixed_precision(fn, variant.precision)
    if variant.batching == "loop":
        step, pieces = _looped_step(mode, variant.compiled, fn, tx, state, batch)
        return _pieces_step(mode, step, state, batch, pieces)
    step = _vectorised_step(workload, mode, fn, tx, batch, variant.micro_batches)
    if not variant.compiled:
        return _pieces_step(mode, step, state, batch, [])
    return _compiled_step(mode, variant.on_mesh, step, state, batch, devices or jax.devices(), layout, mesh)


def _state_and_batch(workload: Workload, size, model, mode: str, seed: int, examples: int | None,
                     abstract: bool = False):
    """(graphdef, optimizer or None, step state, batch) of `model` in `mode` at `size`: the batch
    seeded by `seed`, cut to its first `examples` where that is given. `abstract`: for a model of
    shapes only (`nnx.eval_shape`), the batch and optimizer state as shapes too."""
    shapes = jax.eval_shape if abstract else (lambda fn, *args: fn(*args))
    if workload.set_mode is not None:
        workload.set_mode(model, mode)
    inputs, targets = (jax.eval_shape if abstract else run_once)(
        lambda: workload.make_batch(size, jax.random.key(seed + 1)))
    batch = (inputs, targets) if mode == "train" else inputs
    if examples is not None:
        batch = jax.tree.map(lambda leaf: leaf[:examples], batch)
    graphdef, params, model_state = _split(model)
    tx = workload.make_optimizer(size) if mode == "train" else None
    state = (params, shapes(tx.init, params), model_state) if mode == "train" else (params, model_state)
    return graphdef, tx, state, batch


def compiled_footprint_bytes(workload: Workload, size_name: str, mode: str = "train",
                             variant: str = PRODUCTION.name, *, seed: int = 0) -> int:
    """Per-device bytes (`footprint_bytes`) of `variant`'s `mode` step of `workload` at
    `size_name`, from an ahead-of-time compile for the shapes alone: nothing is allocated, so a
    preset meant for an 80 GB GPU is measured on a laptop's CPU. (XLA:CPU and XLA:GPU place
    buffers alike to within some percent; the size presets keep 10% to spare.)"""
    variant = get_variant(variant)
    size = workload.size(size_name)
    model = nnx.eval_shape(lambda: workload.build_model(size, nnx.Rngs(seed)))
    configure_stacks(model, scan=variant.compiled, remat=variant.remat)
    graphdef, tx, state, batch = _state_and_batch(workload, size, model, mode, seed, None, abstract=True)
    fn = _model_function(workload, graphdef, mode)
    if variant.precision:
        fn = transforms.mixed_precision(fn, variant.precision)
    step = _vectorised_step(workload, mode, fn, tx, batch, variant.micro_batches)
    compiled, _ = compile_ahead_of_time(step, state, batch, donate_argnums=(0,) if mode == "train" else ())
    return footprint_bytes(compat.memory_analysis(compiled))


def with_batch_size(workload: Workload, size, batch_size: int | None):
    """The size preset `size` with its `batch_size` replaced (unchanged for None); `NotApplicable`
    where the preset is no dataclass with a `batch_size` field."""
    if batch_size is None or batch_size == getattr(size, "batch_size", None):
        return size
    if not dataclasses.is_dataclass(size) or not hasattr(size, "batch_size"):
        raise NotApplicable(f"{workload.name}'s size preset has no batch_size field to change")
    return dataclasses.replace(size, batch_size=batch_size)


def build_reference_step(workload: Workload, size_name: str, mode: str, *, seed: int = 0,
                         examples: int | None = None, initial_states: InitialStates | None = None) -> PreparedStep:
    """The step every variant is checked against, from the same state and batch as theirs: the
    program of `workloads/reference.py` (per example, in a `lax.scan`, compiled, blocks unrolled),
    or for a model that couples the examples of a batch (no per-example form) its batch step run
    eagerly (`BATCH_REFERENCE`). `examples`: only the batch's first `examples`; `initial_states`:
    as `build_step`'s."""
    if workload.couples_examples:
        return build_step(workload, size_name, mode, BATCH_REFERENCE, seed=seed, examples=examples,
                          initial_states=initial_states)
    model = (initial_states or InitialStates()).model(workload, size_name, seed)
    configure_stacks(model, scan=False, remat=False)
    graphdef, tx, state, batch = _state_and_batch(workload, workload.size(size_name), model, mode, seed, examples)
    step = (reference.train_step(workload, graphdef, tx) if mode == "train"
            else reference.infer_step(workload, graphdef, mode))
    # Compiled once: the reference's compile times are no benchmark's, so no second compilation
    # from the persistent cache as `_compile` makes for a measured step.
    compiled, seconds = compile_ahead_of_time(step, state, batch)
    return PreparedStep(mode, compiled, state, batch, compile_s=seconds, memory=None, n_devices=1)


def _model_function(workload: Workload, graphdef, mode: str):
    """What the stages transform: the per-example loss or forward, `(params, example)`; for a
    model that couples its examples, its batch function `(params, model_state, batch)`."""
    if workload.couples_examples:
        if mode == "train":
            return transforms.pure_batch_loss(workload, graphdef)
        return transforms.pure_batch_predict(workload, graphdef)
    if mode == "train":
        return transforms.pure_example_loss(workload, graphdef)
    return transforms.pure_example_forward(workload, graphdef, mode)


def _vectorised_step(workload: Workload, mode: str, fn, tx, batch, micro_batches: int | None):
    """The batch step of a `vectorised` variant: `fn` vmapped over the examples (or the model's
    own batch function), differentiated and (over micro-batches) summed, with the update."""
    if workload.couples_examples:
        batch_fn = fn
    else:
        batch_fn = (transforms.passing_model_state_through(transforms.vmap_mean(fn)) if mode == "train"
                    else transforms.ignoring_model_state(transforms.vmap_over_examples(fn)))
    if mode != "train":
        return transforms.infer_step(batch_fn)
    value_and_grad = jax.value_and_grad(batch_fn, has_aux=True)
    if micro_batches:
        if transforms.batch_length(batch) % micro_batches:
            raise NotApplicable(f"batch {transforms.batch_length(batch)} does not split into "
                                f"{micro_batches} micro-batches")
        value_and_grad = transforms.accumulate_micro_batches(value_and_grad, micro_batches)
    return transforms.train_step(value_and_grad, transforms.optimizer_update(tx))


def _looped_step(mode, compiled: bool, example_fn, tx, state, batch):
    """A Python loop over the examples: eager (`baseline`), or with the per-example function and
    the update compiled (`jit`). Returns (step, its compiled pieces: none when eager)."""
    if mode == "train":
        add_example, update = transforms.add_example_gradient(example_fn), transforms.optimizer_update(tx)
        if not compiled:
            return transforms.train_step(transforms.loop_mean_gradient(add_example), update), []
        params, opt_state, _ = state
        sums = transforms.zero_sums(params)
        add = _compile(add_example, params, sums, transforms.example_at(batch, 0))
        apply = _compile(update, params, opt_state, sums[1])
        return transforms.train_step(transforms.loop_mean_gradient(add.fn), apply.fn), [add, apply]
    predict = _compile(example_fn, state[0], transforms.example_at(batch, 0)) if compiled else None
    step = transforms.infer_step(transforms.ignoring_model_state(
        transforms.loop_over_examples(predict.fn if predict else example_fn)))
    return step, [predict] if predict else []


def _compiled_step(mode, on_mesh: bool, step, state, batch, devices, layout, mesh_shape) -> PreparedStep:
    """`jax.jit` the whole step ahead of time (on the mesh for an `on_mesh` variant)."""
    n_devices, out_shardings = 1, None
    if on_mesh:
        state, batch, mesh, batch_spec = sharding.on_mesh(state, batch, devices, layout, mesh_shape)
        n_devices = len(devices)
        if mode == "train":
            # The step hands back its state laid out as it came in, so the next call can take it.
            out_shardings = (jax.tree.map(lambda a: a.sharding, state), NamedSharding(mesh, PartitionSpec()))
        else:
            out_shardings = NamedSharding(mesh, batch_spec)
    donate = (0,) if mode == "train" else ()  # the production step reuses the state's buffers
    compiled = _compile(step, state, batch, donate_argnums=donate, out_shardings=out_shardings)
    return _pieces_step(mode, compiled.fn, state, batch, [compiled], n_devices)
