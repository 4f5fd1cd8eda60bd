"""Starts an A/B worker whose measuring code is not the side's own: run as a script,

    python .../bench/ab/harness.py HARNESS_ROOT WORKER_MODULE [worker options...]

from the side's folder. It makes the package `jaxbench` from parts: `jaxbench.bench` and
`jaxbench.reports` (the timing, the checks against the reference, the protocol) from HARNESS_ROOT,
`jaxbench.workloads` from the side's folder where that is a revision of jaxbench (its models are
what is compared) and from HARNESS_ROOT otherwise (a package of your own workloads, found on the
Python path the side gave it). So a head that edits the timing harness or the checks is measured by
base's (`bench.ab.runner` chooses HARNESS_ROOT), not by its own. Run by path rather than with `-m`,
so that nothing of the side's own is imported first.

A root is a folder holding `bench/`, `reports/` and `workloads/`: a checkout of jaxbench (whose
`jaxbench/__init__.py` is the public API), or the installed `jaxbench` package's folder.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

IMPORT_NAME = "jaxbench"
HARNESS_PACKAGES = ("bench", "reports")


def load_package(name: str, folder: Path) -> None:
    """Import package `name` from `folder`, whatever the Python path holds; its submodules follow
    it there."""
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    spec.loader.exec_module(module)


def is_jaxbench(folder: Path) -> bool:
    """Whether `folder` holds a revision of jaxbench with an A/B worker (not a package of workloads)."""
    return (folder / "bench" / "ab" / "worker.py").is_file()


def public_api(root: Path) -> Path:
    """The `jaxbench/__init__.py` that goes with `root`'s packages."""
    checkout = root / IMPORT_NAME / "__init__.py"
    return checkout if checkout.is_file() else root / "__init__.py"


def assemble(harness: Path, side: Path) -> None:
    """Make `jaxbench` in `sys.modules`: its `bench` and `reports` from `harness`, its `workloads`
    from `side` where the side is a revision of jaxbench, else from `harness`; then its public API."""
    package = types.ModuleType(IMPORT_NAME)
    init = public_api(harness)
    package.__file__, package.__path__ = str(init), [str(init.parent)]
    sys.modules[IMPORT_NAME] = package
    workloads = side if is_jaxbench(side) else harness
    load_package(f"{IMPORT_NAME}.workloads", workloads / "workloads")
    for name in HARNESS_PACKAGES:
        load_package(f"{IMPORT_NAME}.{name}", harness / name)
    exec(compile(init.read_text(), str(init), "exec"), package.__dict__)  # into the module made above


def main(argv: list[str]) -> int:
    """Assemble `jaxbench` from `argv[0]` and the side's folder (the current one), then run worker
    module `argv[1]`'s `main` with the rest."""
    root, module, arguments = Path(argv[0]), argv[1], argv[2:]
    here = {str(Path(__file__).parent), str(Path(__file__).resolve().parent)}
    sys.path[:] = [path for path in sys.path if path not in here]  # a script's folder comes first on its path
    assemble(root, Path.cwd())
    return importlib.import_module(module).main(arguments)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
