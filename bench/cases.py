"""The benchmark cases: which (workload, mode, variant) a command line selects, in what order."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from jaxbench.bench.options import Selection, selection, variant_selected
from jaxbench.bench.process import multi_device_count
from jaxbench.reports.arguments import unknown_names
from jaxbench.workloads import LEFT_OUT_BY_DEFAULT, REGISTRY, WORKFLOW_VARIANTS, get_workload, workload_names
from jaxbench.workloads.contract import NotApplicable
from jaxbench.workloads.outside import WorkloadError, add_module, registered
from jaxbench.workloads.sharding import MeshShape, layouts_for, shards_batch
from jaxbench.workloads.steps import InitialStates, PreparedStep, build_step, with_batch_size
from jaxbench.workloads.variants import PRODUCTION, VARIANTS, variants_for


@dataclass(frozen=True)
class Case:
    """One benchmark: a workload's step in one mode and one variant, at one size."""

    workload: str
    mode: str
    variant: str
    size: str
    layout: str = "data"  # multi_device only: how the step is laid out on the mesh
    mesh: MeshShape | None = None  # multi_device only: the run's `--mesh`, None for each layout's default
    scaling: str | None = None  # a scaling sweep's point: "strong" or "weak" (`SCALING`)
    n_devices: int | None = None  # a scaling point's device count
    examples: int | None = None  # only the batch's first `examples` (an eager baseline timed over part of it)

    @property
    def id(self) -> str:
        """`workload-mode-variant`, then `-layout` for a multi_device layout other than `data`, or
        `-strong-4` for a scaling point (the reports spell a row the same way: `reports/results.py`)."""
        if self.scaling:
            return f"{self.workload}-{self.mode}-{self.variant}-{self.scaling}-{self.n_devices}"
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
        variant on a mesh (a workflow's `multi_device` means the same), and every point of a scaling
        sweep, its one-device point included, so that all its points share one process."""
        return bool(self.scaling) or (self.variant in VARIANTS and VARIANTS[self.variant].on_mesh)

    def batch_size(self) -> int | None:
        """The step's global batch: the preset's, times the device count at a weak-scaling point."""
        preset = getattr(get_workload(self.workload).size(self.size), "batch_size", None)
        return preset * self.n_devices if preset and self.scaling == "weak" else preset

    def size_preset(self):
        """The workload's size preset for this case, with `batch_size()` as its batch."""
        workload = get_workload(self.workload)
        return with_batch_size(workload, workload.size(self.size), self.batch_size())

    def build(self, devices: list | None = None, initial_states: InitialStates | None = None) -> PreparedStep:
        """Build the case's step (`workloads.steps.build_step`, from `initial_states`' model state
        where it has one). A scaling point is `jit_vmap` on one device, or its batch over the
        `data` axis of the first `n_devices` of `devices` (default: all)."""
        workload = get_workload(self.workload)
        if not self.scaling:
            return build_step(workload, self.size, self.mode, self.variant, devices=devices, layout=self.layout,
                              mesh=self.mesh, examples=self.examples, initial_states=initial_states)
        import jax

        chosen = (devices or jax.devices())[: self.n_devices]
        if len(chosen) < self.n_devices:
            raise NotApplicable(f"{self.n_devices} devices asked for, {len(chosen)} here")
        variant = PRODUCTION.name if self.n_devices == 1 else "multi_device"
        return build_step(workload, self.size, self.mode, variant, devices=chosen, batch_size=self.batch_size(),
                          initial_states=initial_states)


def resolve_workloads(names: tuple[str, ...] | None, modules: list[str]) -> tuple[str, ...]:
    """Register the outside workload `modules` and check `names` (None: every known workload but
    `LEFT_OUT_BY_DEFAULT`; `("all",)`: every one), each outside one against the contract;
    `WorkloadError` with one line otherwise."""
    for spec in modules:
        add_module(spec, taken=tuple(REGISTRY))
    known = workload_names()
    if names == ("all",):
        names = known
    names = names or tuple(name for name in known if name not in LEFT_OUT_BY_DEFAULT)
    error = unknown_names("workload", names, known)
    if error:
        raise WorkloadError(error)
    for name in names:
        if name in registered():
            get_workload(name)
    return tuple(names)


def check_workloads(config) -> tuple[str, ...]:
    """The workloads of `--workloads` and `--workload-module`, resolved (`resolve_workloads`): a
    one-line usage error when a workload is unknown or an outside one breaks the contract."""
    try:
        return resolve_workloads(config.getoption("workloads"), config.getoption("workload_module"))
    except WorkloadError as error:
        raise pytest.UsageError(str(error)) from None


def step_cases(workloads: tuple[str, ...], modes: tuple[str, ...], variants: tuple[str, ...] | None, size: str,
               mesh: MeshShape | None = None, every_layout: bool = True) -> list[Case]:
    """The step cases of these workloads, modes and variants (None: the default run's,
    `bench.options.variant_selected`) at `size`, in workload, mode, variant order (each
    `multi_device` layout its own case, on `mesh` or the layout's default; unless `every_layout`,
    the default run's layouts: `workloads.sharding.layouts_for`)."""
    cases = []
    for name in workloads:
        if name in WORKFLOW_VARIANTS:
            continue
        workload = get_workload(name)
        for mode in modes:
            if mode not in workload.modes:
                continue
            for variant in variants_for(mode):
                if not variant_selected(variants, name, mode, variant):
                    continue
                if VARIANTS[variant].on_mesh:
                    layouts = layouts_for(workload, mode, every_layout)
                    cases += [Case(name, mode, variant, size, layout, mesh) for layout in layouts]
                else:
                    cases.append(Case(name, mode, variant, size))
    return cases


def mesh_problem(mesh: MeshShape, n_devices: int, cases: list[Case]) -> str | None:
    """What is wrong with running `cases` on the chosen `mesh` over `n_devices`, in one line, or None:
    a mesh whose size is not the device count, or a `data` axis that does not divide the batch of a
    selected multi-device case whose layout splits the batch."""
    if mesh.size != n_devices:
        return (f"--mesh {mesh} spans {mesh.size} devices, but the multi-device benchmarks have {n_devices} "
                "(on a CPU: --cpu-devices); give axis sizes whose product is that")
    for case in cases:
        if not case.wants_several_devices or case.scaling or not shards_batch(case.layout):
            continue  # (a scaling point lays its batch out on a mesh of its own device count)
        batch = case.batch_size()
        if batch and batch % mesh.data:
            return (f"--mesh {mesh}: data={mesh.data} does not divide {case.workload}'s batch of {batch} at "
                    f"size {case.size}; choose a data size that divides {batch}")
    return None


def check_mesh(config) -> None:
    """A one-line usage error, before anything is measured, when `--mesh` cannot hold the selected
    multi-device benchmarks (`mesh_problem`)."""
    mesh = selection(config).mesh
    if mesh is None:
        return
    problem = mesh_problem(mesh, multi_device_count(config), selected_cases(config))
    if problem:
        raise pytest.UsageError(problem)


def check_selected(config) -> None:
    """A one-line usage error, before anything is measured, when the selection's workloads, modes
    and variants have no benchmark in common (`--modes infer --variants remat`: remat has no forward
    pass), instead of pytest's silent "no tests ran"."""
    if selected_cases(config) or selected_workflow_cases(config):
        return
    chosen = selection(config)
    given = f"--workloads {','.join(chosen.workloads)} --modes {','.join(chosen.modes)}"
    given += f" --variants {','.join(chosen.variants)}" if chosen.variants is not None else ""
    raise pytest.UsageError(f"nothing to measure: {given} select no benchmark together (the modes each "
                            "variant has and the workflows' own variants: jaxbench run --help)")


def check_filtered(config) -> None:
    """A one-line usage error when pytest's `-k` or `-m` left none of the selection's benchmarks
    (`-k nothing-matches`), instead of pytest's silent "no tests ran" (exit 5, as a run that measured
    nothing would pass unnoticed in a CI job)."""
    filters = [f"{flag} '{value}'" for flag, value in (("-k", config.option.keyword), ("-m", config.option.markexpr))
               if value]
    if filters:
        raise pytest.UsageError(f"nothing to measure: {' and '.join(filters)} left none of the selected benchmarks "
                                "(their names: add --collect-only -q without it)")


def device_counts(n_max: int) -> list[int]:
    """A scaling sweep's device counts: 1, 2, 4, ... up to `n_max`, and `n_max` itself."""
    counts = [2**k for k in range(n_max.bit_length()) if 2**k <= n_max]
    return counts + ([n_max] if counts[-1] != n_max else [])


def scaling_cases(workloads: tuple[str, ...], size: str, kinds: tuple[str, ...], n_max: int) -> list[Case]:
    """The points of the scaling sweeps `kinds` (`SCALING`): each step workload's `jit_vmap` train
    step on each of `device_counts(n_max)`."""
    return [Case(name, "train", PRODUCTION.name, size, scaling=kind, n_devices=n)
            for name in workloads if name not in WORKFLOW_VARIANTS and "train" in get_workload(name).modes
            for kind in kinds for n in device_counts(n_max)]


def cases_of(chosen: Selection, n_devices) -> list[Case]:
    """The step cases `chosen` selects (its workloads resolved), in workload, mode, variant order;
    then, with `scaling`, the sweeps' points up to `n_devices()` devices (they ignore modes and
    variants)."""
    cases = step_cases(chosen.workloads, chosen.modes, chosen.variants, chosen.size, chosen.mesh,
                       chosen.every_layout)
    if chosen.scaling:
        cases += scaling_cases(chosen.workloads, chosen.size, chosen.scaling, n_devices())
    return cases


def workflow_cases_of(chosen: Selection) -> list[Case]:
    """The workflow cases `chosen` selects (modes do not apply: a workflow has one)."""
    cases = []
    for name in chosen.workloads:
        if name in WORKFLOW_VARIANTS:
            mode = get_workload(name).mode_label
            cases += [Case(name, mode, variant, chosen.size) for variant in WORKFLOW_VARIANTS[name]
                      if variant_selected(chosen.variants, name, mode, variant)]
    return cases


def selected_cases(config) -> list[Case]:
    """The step cases of this run's selection (`bench.options.selection`)."""
    return cases_of(selection(config), lambda: multi_device_count(config))


def selected_workflow_cases(config) -> list[Case]:
    """The workflow cases of this run's selection."""
    return workflow_cases_of(selection(config))


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
