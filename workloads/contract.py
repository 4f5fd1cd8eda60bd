"""The contract every workload fulfils: a model, its data, its per-example loss and its FLOPs.

A workload is written *per example*: the bench's variants (`workloads/variants.py`) batch it
with `vmap` or a Python loop, differentiate it, compile it and shard it. A workload never
imports pytest and knows nothing about the variants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optax
from flax import nnx


@dataclass(frozen=True)
class SizeTarget:
    """What a size preset is meant for: every step of every workload at that preset fits it."""

    meant_for: str
    device_bytes: int | None = None  # the memory of the device it is sized for

    @property
    def budget_bytes(self) -> int | None:
        """Per-device bytes each step at this preset stays under: the part of the device's memory
        that JAX takes by default (`USABLE_SHARE`), less `SPARE`. None where there is no device
        size to hold to (a preset for tests)."""
        if self.device_bytes is None:
            return None
        return int(self.device_bytes * USABLE_SHARE * (1 - SPARE))


USABLE_SHARE = 0.75
"""The share of an accelerator's memory JAX's allocator takes by default (`XLA_PYTHON_CLIENT_MEM_FRACTION`)."""
SPARE = 0.10
"""What a preset's steps leave unused of their target, for the platform's own differences."""
SIZE_TARGETS = {
    "tiny": SizeTarget("the suite's own tests: seconds on any CPU"),
    "small": SizeTarget("a CPU (the default there): a 4 GB host", 4 * 10**9),
    "medium": SizeTarget("a 16 GB GPU", 16 * 10**9),
    "large": SizeTarget("an 80 GB GPU (H100, A100 80GB; an H200 too)", 80 * 10**9),
}
"""Each size preset, smallest first, and what it is meant for (a test holds every step workload's
compiled `jit_vmap` train step to each budget)."""
SIZES = tuple(SIZE_TARGETS)
"""Size preset names, smallest first."""

MODES = ("train", "infer", "decode")
"""`train`: forward, backward and optimizer update; `infer`: forward only; `decode`: autoregressive
generation (workloads that have it)."""

LAYOUTS = ("data", "model", "data_model", "fsdp")
"""How `multi_device` places a step on a (data, model) device mesh (`workloads.sharding`): the batch
over `data`; weights over `model`; both; or the batch and the whole training state over `data`
(fully sharded, ZeRO-3 style)."""


class NotApplicable(Exception):
    """This variant cannot run for this workload, size or device set; the message says why."""


class IncorrectResult(AssertionError):
    """A result is wrong: a step variant disagrees with `baseline`'s or is not finite, or a workflow
    run fails its own checks; the message has the numbers. (One class for both, raised by
    `bench.correctness` and by each workflow's `check`.)"""


@dataclass(frozen=True)
class Workload:
    """One model family with its data and steps.

    Attributes:
        name: the name used on the command line and in the results.
        sizes: preset name -> a size object with at least a `batch_size` attribute.
        modes: the modes this workload has (a subset of `MODES`).
        build_model: (size, rngs) -> an `nnx.Module` holding only `nnx.Param` state.
        make_batch: (size, key) -> (inputs, targets), arrays with a leading batch axis.
        example_loss: (model, inputs, targets) -> scalar loss of ONE example (no batch axis).
        example_predict: (model, inputs) -> the prediction for ONE example.
        make_optimizer: size -> an Optax `GradientTransformation`.
        flops_per_step: (size, mode) -> analytic floating-point operations of one step.
        example_decode: (model, inputs) -> generated tokens of ONE example (`decode` mode only).
        batch_loss, batch_predict: (model, inputs[, targets]) over a whole batch, for a model
            whose layers couple the examples (batch normalisation): it has no per-example form,
            so its `example_loss` / `example_predict` are None and the per-example variants skip.
        set_mode: (model, mode) -> None, switches train/inference behaviour (e.g. BatchNorm's
            running averages) before the model is split; None if the model has none.
        items_per_step: (size, mode) -> (items, unit) one step processes; default (batch, "examples").
        layouts: the `multi_device` layouts (`LAYOUTS`) worth measuring for this workload.
        default_layouts: those of `layouts` a run without `--every-layout` measures; None: those in
            `workloads.sharding.DEFAULT_LAYOUTS`.
    """

    name: str
    sizes: dict[str, Any]
    modes: tuple[str, ...]
    build_model: Callable[[Any, nnx.Rngs], nnx.Module]
    make_batch: Callable[[Any, Any], tuple[Any, Any]]
    example_loss: Callable[..., Any] | None
    example_predict: Callable[..., Any] | None
    make_optimizer: Callable[[Any], optax.GradientTransformation]
    flops_per_step: Callable[[Any, str], float]
    example_decode: Callable[..., Any] | None = None
    batch_loss: Callable[..., Any] | None = None
    batch_predict: Callable[..., Any] | None = None
    set_mode: Callable[[Any, str], None] | None = None
    items_per_step: Callable[[Any, str], tuple[int, str]] | None = None
    layouts: tuple[str, ...] = ("data",)
    default_layouts: tuple[str, ...] | None = None

    @property
    def couples_examples(self) -> bool:
        """Whether the model's layers couple the examples of a batch (no per-example form)."""
        return self.batch_loss is not None

    def items(self, size, mode: str) -> tuple[int, str]:
        """(items, unit) processed by one step of `mode` at `size`."""
        if self.items_per_step is None:
            return size.batch_size, "examples"
        return self.items_per_step(size, mode)

    def example_function(self, mode: str) -> Callable[..., Any]:
        """The per-example forward function of a forward-only mode (`infer` or `decode`)."""
        return self.example_decode if mode == "decode" else self.example_predict

    def size(self, name: str):
        """The size preset `name`; ValueError naming the valid presets otherwise."""
        return size_preset(self.name, self.sizes, name)


def size_preset(workload: str, sizes: dict, name: str):
    """`sizes[name]`, a preset of `workload`; ValueError naming the workload and its valid presets otherwise."""
    try:
        return sizes[name]
    except KeyError:
        raise ValueError(f"workload {workload!r} has no size {name!r}; valid: {', '.join(sizes)}") from None
