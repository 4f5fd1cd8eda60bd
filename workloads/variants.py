"""The variants of a step: one record each (`Variant`), in one registry (`VARIANTS`).

A record says what the variant is (its name, the modes it has, its line in the table of docs/variants.md)
and how its step is composed. The composition is a chain of stages, each a transformation from
`workloads/transforms.py`, the way optax chains gradient transformations; `workloads.steps`
applies them, in this order, to a workload's model function:

1. `precision`: the dtype the model function computes in (`mixed_precision`; None: float32);
2. `batching`: how the batch step is made from the per-example function: `loop` (a Python loop
   over the examples) or `vectorised` (`vmap`; a model that couples its examples brings its
   own batch function);
3. `micro_batches`: `train` only, the batch gradient summed over this many micro-batches in a
   `lax.scan` (`accumulate_micro_batches`);
4. `remat`: each stacked block rematerialised (`jax.checkpoint` in the layer scan);
5. `compiled`: `jax.jit` ahead of time (of the whole step; for a `loop`, of the per-example
   function and the update); False: eager;
6. `on_mesh`: the compiled step on a (data, model) mesh of all devices, laid out by `layout`.

Everything else reads this registry: case selection and the `--variants` option, report order,
charts and the table of docs/variants.md (a test holds it to the records). A new variant is one record
here, plus a claim line in `reports/expectations.py` if the quoted tables speak of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from jaxbench.workloads.contract import MODES


@dataclass(frozen=True)
class Variant:
    """One variant of a step (the module doc says how its fields compose)."""

    name: str
    does: str  # what its step does, one line: the table of docs/variants.md
    modes: tuple[str, ...] = MODES
    precision: str | None = None  # compute dtype of the model function; None: float32
    batching: str = "vectorised"  # "loop" (a Python loop over examples) or "vectorised"
    micro_batches: int | None = None  # train: gradient summed over micro-batches in a scan
    remat: bool = False  # stacked blocks rematerialised
    compiled: bool = True  # jax.jit ahead of time; False: eager
    on_mesh: bool = False  # on a (data, model) mesh of all devices
    per_example: bool = False  # defined by how it treats examples one by one (loop or vmap them)
    default_modes: tuple[str, ...] | None = None  # where a run that names no --variants measures it; None: `modes`

    @property
    def compute_dtype(self) -> str:
        """The dtype its matmuls run in: `bfloat16` for a bf16 variant, else `float32`."""
        return self.precision or "float32"

    def not_for(self, workload, mode: str) -> str | None:
        """Why this variant has no `mode` step for `workload`, or None when it has one."""
        if mode not in self.modes:
            return f"{self.name} changes only the backward pass; it has no {mode} step"
        if workload.couples_examples and self.per_example:
            return (f"{workload.name} normalises over the batch, coupling its examples: there is no "
                    f"per-example step for {self.name} to loop or vmap over")
        if workload.couples_examples and self.micro_batches:
            return ("batch statistics of a micro-batch differ from the whole batch's: "
                    f"{self.name} would compute a different function")
        return None

    def in_default_run(self, mode: str) -> bool:
        """Whether a run that names no `--variants` measures this variant's `mode` step."""
        return mode in (self.modes if self.default_modes is None else self.default_modes)


VARIANTS = {variant.name: variant for variant in (
    Variant("baseline", "no jit: a Python loop over the B examples, eager per-example grad (or forward), "
            "eager optimizer update", batching="loop", compiled=False, per_example=True),
    Variant("jit", "the same loop, the per-example function and the update compiled",
            batching="loop", per_example=True),
    Variant("vmap", "no jit: `grad` of the mean of the vmapped per-example loss, eager update",
            compiled=False, per_example=True),
    Variant("jit_vmap", "that step under one `jax.jit`, update included: the production step"),
    Variant("multi_device", "`jit_vmap` on a (data, model) mesh of all devices, laid out by its layout "
            "(`data`: the batch sharded over the `data` axis)", on_mesh=True,
            default_modes=("train",)),  # the default run's sharding claims, speed and memory, on the train step
    Variant("remat", "`jit_vmap` with each stacked block rematerialised (`jax.checkpoint` in the layer "
            "scan); train only", modes=("train",), remat=True),
    Variant("bf16", "`jit_vmap` with bf16 compute and float32 master parameters", precision="bfloat16"),
    Variant("accumulation", "`jit_vmap` over 4 micro-batches summed in a `lax.scan`, one optimizer "
            "update; train only", modes=("train",), micro_batches=4),
)}
"""Variant name -> its record, in report order."""

SPEEDUP_BASE = VARIANTS["baseline"]
"""What speedups divide: the eager per-example loop (the seed's 1x). What every variant, this one
included, is checked against is a program of its own: `workloads/reference.py`."""

PRODUCTION = VARIANTS["jit_vmap"]
"""The step a production training loop runs: what the memory claims compare against."""

BATCH_REFERENCE = replace(VARIANTS["vmap"], name="eager", per_example=False)
"""The check reference of a model that couples its examples (no per-example form, so neither
`baseline` nor `workloads/reference.py`): `vmap`'s composition, the batch step run eagerly, on the
model's own batch function."""


def variants_for(mode: str) -> tuple[str, ...]:
    """The names of the variants that exist for `mode`, in registry order."""
    return tuple(name for name, variant in VARIANTS.items() if mode in variant.modes)


def get_variant(name: str) -> Variant:
    """The record of variant `name` (or of the `eager` batch reference); ValueError naming the
    valid variants otherwise."""
    if name == BATCH_REFERENCE.name:
        return BATCH_REFERENCE
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; valid: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def variants_table() -> str:
    """The table of the variants in docs/variants.md, from the records."""
    rows = [f"| `{variant.name}` | {variant.does} |" for variant in VARIANTS.values()]
    return "\n".join(["| variant | what the step does |", "|---|---|", *rows])
