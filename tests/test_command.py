"""The `jaxbench` command (`bench.cli`): its subcommands, and `jaxbench run` from a folder of
someone else's project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import COMMANDS, main
from tests.conftest import FAST_TIMING, ROOT


def test_jaxbench_lists_every_command(capsys):
    with pytest.raises(SystemExit) as ended:
        main(["--help"], prog="jaxbench")
    assert ended.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith("usage: jaxbench")
    assert all(f"    {command} " in usage for command in ["run", *COMMANDS]), usage


def test_errors_name_the_command_as_it_was_called(tmp_path, capsys):
    assert main(["build", str(tmp_path / "nope.json"), "--out", str(tmp_path)], prog="jaxbench") == 2
    error = capsys.readouterr().err
    assert error.startswith("jaxbench build: error:") and "nope.json" in error and error.count("\n") == 1


HOSTILE_PROJECT = {
    # a project's own pytest set-up, which `jaxbench run` must not read: each would end the run
    "pyproject.toml": '[tool.pytest.ini_options]\naddopts = ["--no-such-option"]\n',
    "conftest.py": 'raise RuntimeError("this project\'s conftest.py was imported")\n',
}


@pytest.mark.slow
@pytest.mark.version_independent
def test_jaxbench_run_works_in_another_project_with_strict_expectations(tmp_path):
    """The suite installed inside a project (as in a virtual environment in its folder) whose
    pytest configuration and conftest.py would each end the run, and run from there: the
    benchmarks run (the multi-device one in its worker process, started the same way), the report
    goes under that folder's reports/runs/, and `--strict-expectations` fails the run on its
    `below` row (the MLP's multi-device inference on CPU devices that share the cores)."""
    project = tmp_path / "project"
    site = project / ".venv" / "site-packages"  # the suite's packages as installed there
    for package in ("bench", "workloads", "reports"):
        shutil.copytree(ROOT / package, site / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name, text in HOSTILE_PROJECT.items():
        (project / name).write_text(text)
    jaxbench = Path(sys.executable).parent / "jaxbench"
    proc = subprocess.run([str(jaxbench), "run", "--workloads", "mlp", "--size", "tiny", "--modes", "infer",
                           "--variants", "jit_vmap,multi_device", "--strict-expectations", *FAST_TIMING],
                          cwd=project, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True,
                          text=True, timeout=600)
    assert f"rootdir: {site / 'bench'}" in proc.stdout, proc.stdout[:2000]  # the copy ran, not the checkout
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "expectation below (--strict-expectations): mlp infer: multi-device" in proc.stdout
    assert "2 passed" in proc.stdout
    (run,) = (project / "reports" / "runs").iterdir()
    assert {"results.json", "report.md"} <= {path.name for path in run.iterdir()}


def test_the_commands_page_is_the_parsers():
    """docs/commands.md is written from the parser; a renamed option or a changed default fails here
    until it is written again: `python -c "from bench.cli import commands_reference;
    print(commands_reference())" > docs/commands.md`."""
    from bench.cli import commands_reference

    assert (ROOT / "docs" / "commands.md").read_text().rstrip("\n") == commands_reference().rstrip("\n")
