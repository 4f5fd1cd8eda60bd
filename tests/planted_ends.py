"""Test-only workloads whose compiled variants end their process, for `--isolate` to survive.

Each is the MLP with one change: when its per-example loss is traced under `vmap` (`vmap`,
`jit_vmap` and the variants built on it; not the Python loops of `baseline` and `jit`, nor the
check reference's scan), it does what a broken model or XLA build does to a process:
`tests.planted_crash` kills it with SIGSEGV (a segfault), `tests.planted_hang` sleeps for good.
They are passed the way users pass their own workloads: `--workload-module tests.planted_crash
--workload-module tests.planted_hang`.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time

from jaxbench.workloads.contract import Workload
from jaxbench.workloads.mlp import WORKLOAD as MLP


def segfault() -> None:
    """End this process as a segmentation fault does (SIGSEGV, no Python clean-up)."""
    os.kill(os.getpid(), signal.SIGSEGV)


def hang() -> None:
    """Never return (a deadlock, a collective whose peer is gone)."""
    while True:
        time.sleep(60)


def ending_workload(name: str, end) -> Workload:
    """The MLP's train step as workload `name`, calling `end()` when its loss is traced under vmap
    (by the tracer's type name: JAX has no public name for it)."""

    def example_loss(model, inputs, targets):
        if type(inputs).__name__ == "BatchTracer":
            end()
        return MLP.example_loss(model, inputs, targets)

    return dataclasses.replace(MLP, name=name, modes=("train",), example_loss=example_loss, layouts=("data",))
