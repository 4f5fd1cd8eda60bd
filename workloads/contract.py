"""The contract every workload fulfils: a model, its data, its per-example loss and its FLOPs.

A workload is written *per example*: the bench's variants (`workloads/variants.py`) batch it
with `vmap` or a Python loop, differentiate it, compile it and shard it. A workload never
imports pytest and knows nothing about the variants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import optax
from flax import nnx

SIZES = ("tiny", "small", "medium", "large")
"""Size preset names, smallest first: `tiny` for tests, `small` the CPU default, `large` fills a GPU."""

MODES = ("train", "infer")
"""`train`: forward, backward and optimizer update; `infer`: forward only."""


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
    """

    name: str
    sizes: dict[str, Any]
    modes: tuple[str, ...]
    build_model: Callable[[Any, nnx.Rngs], nnx.Module]
    make_batch: Callable[[Any, Any], tuple[Any, Any]]
    example_loss: Callable[..., Any]
    example_predict: Callable[..., Any]
    make_optimizer: Callable[[Any], optax.GradientTransformation]
    flops_per_step: Callable[[Any, str], float]

    def size(self, name: str):
        """The size preset `name`; ValueError naming the valid presets otherwise."""
        try:
            return self.sizes[name]
        except KeyError:
            raise ValueError(
                f"workload {self.name!r} has no size {name!r}; valid: {', '.join(self.sizes)}"
            ) from None
