"""What is measured: the workloads (models, data, steps) and the variant transformations.

Plain JAX / Flax NNX / Optax; never imports pytest. A new workload is one module with a
`WORKLOAD` (see `workloads.contract.Workload`) and one line in `REGISTRY`.
"""

from __future__ import annotations

import importlib

from workloads.contract import LAYOUTS, MODES, SIZES, Workload

REGISTRY = {  # name -> "module" (its WORKLOAD) or "module:ATTRIBUTE"
    "mlp": "workloads.mlp",
    "cnn": "workloads.cnn",
    "cnn_batchnorm": "workloads.cnn:WORKLOAD_BATCHNORM",
    "transformer": "workloads.transformer",
}
"""Workload name -> module defining it (imported only when the workload is used)."""


def get_workload(name: str) -> Workload:
    """The workload called `name`; ValueError naming the valid workloads otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown workload {name!r}; valid: {', '.join(REGISTRY)}")
    module, _, attribute = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attribute or "WORKLOAD")


__all__ = ["LAYOUTS", "MODES", "REGISTRY", "SIZES", "Workload", "get_workload"]
