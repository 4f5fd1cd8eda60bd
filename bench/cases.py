"""The benchmark cases: which (workload, mode, variant) a command line selects, in what order."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from reports.arguments import unknown_names
from workloads import REGISTRY, WORKFLOW_VARIANTS, get_workload, workload_names
from workloads.outside import WorkloadError, add_module, registered
from workloads.variants import VARIANTS, variants_for


@dataclass(frozen=True)
class Case:
    """One benchmark: a workload's step in one mode and one variant, at one size."""

    workload: str
    mode: str
    variant: str
    size: str
    layout: str = "data"  # multi_device only: how the step is laid out on the mesh

    @property
    def id(self) -> str:
        """`workload-mode-variant`, and `-layout` for a multi_device layout other than `data` (the
        reports spell a layout's row the same way: `reports/results.py`)."""
        suffix = f"-{self.layout}" if self.layout != "data" else ""
        return f"{self.workload}-{self.mode}-{self.variant}{suffix}"

    @property
    def is_workflow(self) -> bool:
        """Whether the case is a workflow run (bayes, checkpoint, training_loop) rather than a step."""
        return self.workload in WORKFLOW_VARIANTS

    @property
    def compute_dtype(self) -> str:
        """The dtype the step computes in (its variant's record; a workflow's: `float32`)."""
        return VARIANTS[self.variant].compute_dtype if self.variant in VARIANTS else "float32"

    @property
    def wants_several_devices(self) -> bool:
        """Whether the case runs over several devices (and so, on a CPU, over virtual devices): a
        variant on a mesh (a workflow's `multi_device` means the same)."""
        return self.variant in VARIANTS and VARIANTS[self.variant].on_mesh


def resolve_workloads(names: tuple[str, ...] | None, modules: list[str]) -> tuple[str, ...]:
    """Register the outside workload `modules` and check `names` (None: every known workload), each
    outside one against the contract; `WorkloadError` with one line otherwise."""
    for spec in modules:
        add_module(spec, taken=tuple(REGISTRY))
    known = workload_names()
    names = names or known
    error = unknown_names("workload", names, known)
    if error:
        raise WorkloadError(error)
    for name in names:
        if name in registered():
            get_workload(name)
    return tuple(names)


def check_workloads(config) -> None:
    """Resolve `--workloads` and `--workload-module` (`resolve_workloads`): a one-line usage error
    when a workload is unknown or an outside one breaks the contract."""
    try:
        config.option.workloads = resolve_workloads(config.getoption("workloads"), config.getoption("workload_module"))
    except WorkloadError as error:
        raise pytest.UsageError(str(error)) from None


def step_cases(workloads: tuple[str, ...], modes: tuple[str, ...], variants: tuple[str, ...], size: str) -> list[Case]:
    """The step cases of these workloads, modes and variants at `size`, in workload, mode, variant
    order (each `multi_device` layout its own case)."""
    cases = []
    for name in workloads:
        if name in WORKFLOW_VARIANTS:
            continue
        workload = get_workload(name)
        for mode in modes:
            if mode not in workload.modes:
                continue
            for variant in variants_for(mode):
                if variant not in variants:
                    continue
                layouts = workload.layouts if VARIANTS[variant].on_mesh else ("data",)
                cases += [Case(name, mode, variant, size, layout) for layout in layouts]
    return cases


def selected_cases(config) -> list[Case]:
    """The step cases the command line selects, in workload, mode, variant order."""
    return step_cases(config.getoption("workloads"), config.getoption("modes"), config.getoption("variants"),
                      config.getoption("size"))


def selected_workflow_cases(config) -> list[Case]:
    """The workflow cases the command line selects (`--modes` does not apply: a workflow has one)."""
    size = config.getoption("size")
    return [Case(name, get_workload(name).mode_label, variant, size)
            for name in config.getoption("workloads") if name in WORKFLOW_VARIANTS
            for variant in WORKFLOW_VARIANTS[name] if variant in config.getoption("variants")]


CASE_PARAMETERS = {"case": selected_cases, "workflow_case": selected_workflow_cases}
"""Fixture name -> the cases it is parametrised with (steps in test_steps.py, workflows in test_workflows.py)."""


def case_of(item) -> Case | None:
    """The benchmark case an item measures (a step or a workflow), or None for other items."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    # An empty parametrisation (no case selected for a module) holds a placeholder, not a Case.
    return next((params[name] for name in CASE_PARAMETERS if isinstance(params.get(name), Case)), None)


def is_placeholder(item) -> bool:
    """Whether `item` is the placeholder of a bench module none of whose cases is selected."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return case_of(item) is None and bool(set(CASE_PARAMETERS) & set(params))
