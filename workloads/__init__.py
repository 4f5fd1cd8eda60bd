"""What is measured: the workloads (models, data, steps) and the variant transformations.

Plain JAX / Flax NNX / Optax; never imports pytest. A new workload is one module with a
`WORKLOAD` (see `jaxbench.Workload`) and one line in `REGISTRY`. A workload of your own,
outside this repository, is registered by a `jaxbench.workloads` entry point of its package or
named on the command line (`--workload-module`): `workloads.outside`.
"""

from __future__ import annotations

import importlib

from jaxbench.workloads.contract import LAYOUTS, MODES, SIZES, Workload
from jaxbench.workloads.workflow import Workflow

REGISTRY = {  # name -> "module" (its WORKLOAD) or "module:ATTRIBUTE"
    "mlp": "jaxbench.workloads.mlp",
    "cnn": "jaxbench.workloads.cnn",
    "cnn_batchnorm": "jaxbench.workloads.cnn:WORKLOAD_BATCHNORM",
    "transformer": "jaxbench.workloads.transformer",
    "bayes": "jaxbench.workloads.bayes",
    "checkpoint": "jaxbench.workloads.checkpoint",
    "training_loop": "jaxbench.workloads.training_loop",
}
"""The suite's own workloads: name -> module defining it (imported only when the workload is used)."""

WORKFLOW_VARIANTS = {
    "bayes": ("baseline", "vmap", "jit_vmap", "multi_device"),
    "checkpoint": ("sync", "async", "multi_device"),
    "training_loop": ("async", "sync"),
}
"""Workflow workloads (`workloads.workflow.Workflow`) -> their variants, the reference first.
Kept here, not in their modules, so the command line knows them without importing NumPyro or Orbax."""


LEFT_OUT_OF_DEFAULT_VARIANTS = {"training_loop": ("sync",)}
"""Workflow variants a run without `--variants` leaves out, to keep the default run short: the
training loop runs in its production form, with async checkpoints (`sync` against `async` is what the
`checkpoint` workflow measures). The steps' own: `Variant.default_modes`."""

LEFT_OUT_BY_DEFAULT = ("cnn_batchnorm",)
"""Workloads a run without `--workloads` leaves out, to keep the default run short: `cnn_batchnorm`
checks `cnn`'s claims again, on the same ResNet with BatchNorm (name it, or `--workloads all`)."""


def workload_names() -> tuple[str, ...]:
    """Every workload this process knows: the suite's own, then those of installed packages'
    entry points and of `--workload-module` (`workloads.outside`)."""
    from jaxbench.workloads import outside

    return (*REGISTRY, *(name for name in outside.registered() if name not in REGISTRY))


def get_workload(name: str) -> Workload | Workflow:
    """The workload called `name` (a step `Workload` or a `Workflow`); `outside.WorkloadError`
    (a ValueError) naming the valid workloads, or what is wrong with an outside one, otherwise."""
    from jaxbench.workloads import outside

    if name in REGISTRY:
        module, _, attribute = REGISTRY[name].partition(":")
        return getattr(importlib.import_module(module), attribute or "WORKLOAD")
    if name in outside.registered():
        return outside.load(name)
    raise outside.WorkloadError(f"unknown workload {name!r}; valid: {', '.join(workload_names())}")


__all__ = ["LAYOUTS", "LEFT_OUT_BY_DEFAULT", "LEFT_OUT_OF_DEFAULT_VARIANTS", "MODES", "REGISTRY", "SIZES",
           "WORKFLOW_VARIANTS", "Workflow", "Workload", "get_workload", "workload_names"]
