"""The import graph of the suite's packages: no circles, and no lower layer importing a higher one.
Layers, lowest first: `workloads` (models, steps, presets), `reports` (reads results; never
measures), `bench` (measures, and writes the reports); `bench.cli` is the command line above them."""

from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.version_independent  # the import graph of the suite's own files

PACKAGES = ("workloads", "reports", "bench")
IMPORT_NAME = "jaxbench"
"""What the packages are installed under (`jaxbench.workloads`, ...), and how they import each other."""
ENTRY_POINTS = {"reports.__main__"}
"""`python -m reports` in a checkout, the command line's first name: it runs `bench.cli` and is not
a part of the reports that anything imports."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the suite's modules it imports (at the top or inside a function)."""
    modules = {_module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from package import module` imports the module; `from module import name`, the module
                module = node.module.removeprefix(f"{IMPORT_NAME}.")
                submodules = [f"{module}.{alias.name}" for alias in node.names]
                targets = [name for name in submodules if name in modules] or [module]
            elif isinstance(node, ast.Import):
                targets = [alias.name.removeprefix(f"{IMPORT_NAME}.") for alias in node.names]
            else:
                continue
            graph[name] |= {target for target in targets if target in modules and target != name}
    return graph


def _edges(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return [(module, target) for module, targets in graph.items() for target in sorted(targets)]


def test_no_module_imports_itself_through_others():
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"an import circle: {' -> '.join(error.args[1])}")


@pytest.mark.parametrize(("package", "above"), [("workloads", ("reports", "bench")), ("reports", ("bench",))])
def test_no_lower_layer_imports_a_higher_one(package, above):
    graph = import_graph()
    upward = [(module, target) for module, target in _edges(graph)
              if module.split(".")[0] == package and target.split(".")[0] in above and module not in ENTRY_POINTS]
    assert upward == []


def test_the_graph_sees_the_imports_it_checks():
    """The check above reads imports inside functions too (the circle it guards against was one)."""
    graph = import_graph()
    edges = set(_edges(graph))
    assert {("bench.cases", "bench.process"), ("reports.__main__", "bench.cli"),
            ("bench.ab.runner", "bench.ab.protocol"), ("bench.ab.worker", "bench.cases")} <= edges


def test_every_package_is_installed_under_the_one_import_name():
    """pyproject.toml's package list is every folder of the suite's that is a package, each under
    `jaxbench`, mapped to its folder: a new subpackage left out of it would be missing from an install.
    Beside them, the one data folder installed with them: the committed reference runs."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join((IMPORT_NAME, *init.parent.relative_to(ROOT).parts))
               for package in PACKAGES for init in (ROOT / package).rglob("__init__.py")}
    data = {f"{IMPORT_NAME}.reference_runs": "docs/reference-runs"}
    assert sorted(setuptools["packages"]) == sorted(folders | {IMPORT_NAME} | set(data))
    assert setuptools["package-dir"] == ({IMPORT_NAME: IMPORT_NAME} | {f"{IMPORT_NAME}.{p}": p for p in PACKAGES}
                                         | data)


def _architecture_listing() -> dict[str, set[str]]:
    """The module list of docs/architecture.md (its first code block): each package folder -> the
    file and subfolder names its part of the list mentions (`steps.py`, `ab/`; a path into another
    folder, such as `tests/test_layers.py`, is not counted)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("```\n", 2)[1]
    parts = re.split(r"(?m)^(\w+)/ ", block)  # a folder's part starts at the line's first column
    return {folder: set(re.findall(r"(?<![\w/.])(\w+\.py|\w+/(?=\s))", body))
            for folder, body in zip(parts[1::2], parts[2::2]) if folder in PACKAGES}


def test_the_architecture_page_lists_every_module_and_no_other():
    listing = _architecture_listing()
    assert sorted(listing) == sorted(PACKAGES)
    for package in PACKAGES:
        files = {path.name for path in (ROOT / package).rglob("*.py") if path.name != "__init__.py"}
        folders = {f"{path.parent.name}/" for path in (ROOT / package).rglob("__init__.py")
                   if path.parent != ROOT / package}
        assert listing[package] - {package + "/"} == files | folders, package
