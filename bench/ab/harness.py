"""Starts an A/B worker whose measuring code is not the side's own: run as a script,

    python .../bench/ab/harness.py HARNESS_ROOT WORKER_MODULE [worker options...]

it imports `bench` and `reports` (the timing, the checks against the reference, the protocol) from
HARNESS_ROOT, and everything else, the side's `workloads` and models, from the Python path the
side gave it. So a head that edits the timing harness or the checks is measured by base's
(`bench.ab.runner` chooses HARNESS_ROOT), not by its own. Run by path rather than with `-m`, so
that nothing of the side's own `bench` is imported first.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

HARNESS_PACKAGES = ("bench", "reports")


def load_package(name: str, root: Path) -> None:
    """Import package `name` from `root/name`, whatever the Python path holds; its submodules
    follow it there."""
    spec = importlib.util.spec_from_file_location(name, root / name / "__init__.py",
                                                  submodule_search_locations=[str(root / name)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def main(argv: list[str]) -> int:
    """Load the harness packages from `argv[0]`, then run worker module `argv[1]`'s `main` with
    the rest."""
    root, module, arguments = Path(argv[0]), argv[1], argv[2:]
    here = {str(Path(__file__).parent), str(Path(__file__).resolve().parent)}
    sys.path[:] = [path for path in sys.path if path not in here]  # a script's folder comes first on its path
    for name in HARNESS_PACKAGES:
        load_package(name, root)
    return importlib.import_module(module).main(arguments)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
