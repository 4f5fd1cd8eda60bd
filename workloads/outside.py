"""Workloads from outside this repository: your own model, benchmarked like the suite's own.

Two routes register one, neither needs an edit here:

- an entry point of your installed package, in group `jaxbench.workloads`, named as the
  workload, whose value is the module that defines `WORKLOAD` (or `module:ATTRIBUTE`):

      [project.entry-points."jaxbench.workloads"]
      wide_mlp = "jaxbench_example.wide_mlp"

- `pytest bench --workload-module my_pkg.my_model`, a module that defines `WORKLOAD`.

`WORKLOAD` is a `jaxbench.Workload`, as in `workloads/mlp.py`. It is checked against
the contract when it is loaded (`contract_problems`); what breaks it is a `WorkloadError` with one
line that names the module and every problem.
"""

from __future__ import annotations

import functools
import importlib
import re
from importlib import metadata
from types import ModuleType

from jaxbench.workloads.contract import LAYOUTS, MODES, SIZES, Workload

ENTRY_POINT_GROUP = "jaxbench.workloads"
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
"""A workload's name: letters, digits and underscores (a case id joins names with '-')."""
_FROM_MODULES: dict[str, str] = {}  # name -> module spec, from `add_module`


class WorkloadError(ValueError):
    """An outside workload cannot be used: no such module, or a `WORKLOAD` that breaks the
    contract. The message is one line naming what is wrong."""


@functools.cache
def entry_points() -> dict[str, str]:
    """Workload name -> module spec, from the installed packages' `jaxbench.workloads` entry points."""
    return {point.name: point.value for point in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def registered() -> dict[str, str]:
    """Every outside workload this process knows: name -> module spec (`--workload-module`'s win
    over an entry point of the same name)."""
    return {**entry_points(), **_FROM_MODULES}


def add_module(spec: str, taken: tuple[str, ...] = ()) -> str:
    """Import the module `spec` (`package.module` or `package.module:ATTRIBUTE`), check its
    `WORKLOAD` against the contract and register it; returns the workload's name. `taken`: the
    names of the suite's own workloads, which an outside one may not reuse."""
    workload = _loaded(spec, f"--workload-module {spec!r}")
    if workload.name in taken:
        raise WorkloadError(f"--workload-module {spec!r}: its WORKLOAD is named {workload.name!r}, "
                            f"which is taken by one of the suite's own workloads ({', '.join(taken)})")
    _FROM_MODULES[workload.name] = spec
    return workload.name


def load(name: str) -> Workload:
    """The outside workload registered as `name`, checked against the contract."""
    spec = registered()[name]
    origin = f"--workload-module {spec!r}" if name in _FROM_MODULES else f"entry point {name!r} ({spec})"
    workload = _loaded(spec, origin)
    if workload.name != name:
        raise WorkloadError(f"{origin}: registered as {name!r} but its WORKLOAD is named {workload.name!r}")
    return workload


@functools.cache
def _loaded(spec: str, origin: str) -> Workload:
    module_name, _, attribute = spec.partition(":")
    module = _imported(module_name, origin)
    attribute = attribute or "WORKLOAD"
    if not hasattr(module, attribute):
        raise WorkloadError(f"{origin}: module {module_name!r} defines no {attribute} "
                            "(a jaxbench.Workload, as workloads/mlp.py does)")
    workload = getattr(module, attribute)
    problems = contract_problems(workload)
    if problems:
        raise WorkloadError(f"{origin}: {attribute} breaks the workload contract: {'; '.join(problems)}")
    return workload


def _imported(module_name: str, origin: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise WorkloadError(f"{origin}: no module named {module_name!r} on the Python path "
                                "(is its package installed?)") from None
        raise WorkloadError(f"{origin}: importing {module_name!r} failed: {error}") from None
    except Exception as error:  # the user's module fails as it is imported: say how, in one line
        raise WorkloadError(f"{origin}: importing {module_name!r} failed: "
                            f"{type(error).__name__}: {error}") from None


_CALLABLES = ("build_model", "make_batch", "make_optimizer", "flops_per_step")
_MODE_NEEDS = {"train": ("example_loss", "batch_loss"), "infer": ("example_predict", "batch_predict"),
               "decode": ("example_decode",)}


def contract_problems(workload) -> list[str]:
    """What keeps `workload` from being a usable `Workload` (empty when nothing does)."""
    if not isinstance(workload, Workload):
        return [f"it is a {type(workload).__name__}, not a jaxbench.Workload"]
    problems = []
    if not isinstance(workload.name, str) or not NAME_PATTERN.match(workload.name):
        problems.append(f"name {workload.name!r} is not letters, digits and underscores")
    sizes = workload.sizes if isinstance(workload.sizes, dict) else {}
    missing = [size for size in SIZES if size not in sizes]
    if missing:
        problems.append(f"sizes lacks the preset(s) {', '.join(missing)} (every one of {', '.join(SIZES)} is needed)")
    for size_name, size in sizes.items():
        batch = getattr(size, "batch_size", None)
        if not isinstance(batch, int) or batch < 1:
            problems.append(f"size {size_name!r} has no whole batch_size >= 1 (got {batch!r})")
    modes = tuple(workload.modes) if isinstance(workload.modes, (tuple, list)) else ()
    unknown = [mode for mode in modes if mode not in MODES]
    if not modes or unknown:
        problems.append(f"modes {workload.modes!r} must be some of {', '.join(MODES)}")
    for mode in modes:
        needed = _MODE_NEEDS.get(mode, ())
        if needed and not any(callable(getattr(workload, field)) for field in needed):
            problems.append(f"mode {mode!r} needs {' or '.join(needed)}")
    problems += [f"{field} is not callable" for field in _CALLABLES if not callable(getattr(workload, field))]
    bad_layouts = [layout for layout in workload.layouts if layout not in LAYOUTS]
    if bad_layouts:
        problems.append(f"layouts {', '.join(map(repr, bad_layouts))} unknown; valid: {', '.join(LAYOUTS)}")
    stray = [layout for layout in workload.default_layouts or () if layout not in workload.layouts]
    if stray:
        problems.append(f"default_layouts {', '.join(map(repr, stray))} not among its layouts "
                        f"{', '.join(map(repr, workload.layouts))}")
    return problems
