"""What is measured: the workloads (models, data, steps) and the variant transformations.

Plain JAX / Flax NNX / Optax; never imports pytest. A new workload is one module with a
`WORKLOAD` (see `workloads.contract.Workload`) and one line in `REGISTRY`.
"""

from __future__ import annotations

import importlib

from workloads.contract import LAYOUTS, MODES, SIZES, Workload
from workloads.workflow import Workflow

REGISTRY = {  # name -> "module" (its WORKLOAD) or "module:ATTRIBUTE"
    "mlp": "workloads.mlp",
    "cnn": "workloads.cnn",
    "cnn_batchnorm": "workloads.cnn:WORKLOAD_BATCHNORM",
    "transformer": "workloads.transformer",
    "bayes": "workloads.bayes",
    "checkpoint": "workloads.checkpoint",
    "training_loop": "workloads.training_loop",
}
"""Workload name -> module defining it (imported only when the workload is used)."""

WORKFLOW_VARIANTS = {
    "bayes": ("baseline", "vmap", "jit_vmap", "multi_device"),
    "checkpoint": ("sync", "async", "multi_device"),
    "training_loop": ("async", "sync"),
}
"""Workflow workloads (`workloads.workflow.Workflow`) -> their variants, the reference first.
Kept here, not in their modules, so the command line knows them without importing NumPyro or Orbax."""


def get_workload(name: str) -> Workload | Workflow:
    """The workload called `name` (a step `Workload` or a `Workflow`); ValueError naming the valid
    workloads otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown workload {name!r}; valid: {', '.join(REGISTRY)}")
    module, _, attribute = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attribute or "WORKLOAD")


__all__ = ["LAYOUTS", "MODES", "REGISTRY", "SIZES", "WORKFLOW_VARIANTS", "Workflow", "Workload", "get_workload"]
