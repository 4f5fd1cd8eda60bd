"""What is measured: the workloads (models, data, steps) and the variant transformations.

Plain JAX / Flax NNX / Optax; never imports pytest. A new workload is one module with a
`WORKLOAD` (see `workloads.contract.Workload`) and one line in `REGISTRY`.
"""

from __future__ import annotations

import importlib

from workloads.contract import LAYOUTS, MODES, SIZES, Workload

REGISTRY = {
    "mlp": "workloads.mlp",
    "cnn": "workloads.cnn",
    "transformer": "workloads.transformer",
}
"""Workload name -> module that defines `WORKLOAD` (imported only when the workload is used)."""


def get_workload(name: str) -> Workload:
    """The workload called `name`; ValueError naming the valid workloads otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown workload {name!r}; valid: {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[name]).WORKLOAD


__all__ = ["LAYOUTS", "MODES", "REGISTRY", "SIZES", "Workload", "get_workload"]
