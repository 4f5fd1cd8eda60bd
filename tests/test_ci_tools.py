"""The suite in other people's CI: pytest-benchmark's own tools on its JSON, and the example
GitHub Actions workflow's commands, which must be ones our command line takes; and the order in
which our own CI's slow tier takes up its files."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from jaxbench.bench.cli import build_parser
from tests.conftest import FAST_TIMING, LONGEST_FIRST, ROOT, option_parser, pytest_collection_modifyitems, run_pytest

pytestmark = pytest.mark.version_independent  # pytest-benchmark's tools and the example workflow

WORKFLOWS = ROOT / "examples" / "github-actions"
SELECTION = ["bench", "--workloads", "mlp", "--modes", "train", "--variants", "jit_vmap,remat", "--size", "tiny"]


@pytest.mark.slow
def test_pytest_benchmarks_own_tools_read_our_results(tmp_path):
    """--benchmark-autosave, --benchmark-compare, --benchmark-compare-fail and
    `pytest-benchmark compare` all work on a run of the suite: the second run is compared with a
    saved run 1000x faster than the first, whose fail threshold must trip."""
    storage = f"--benchmark-storage=file://{tmp_path / 'storage'}"
    first = run_pytest(*SELECTION, "--report-dir", str(tmp_path / "one"), "--benchmark-autosave", storage,
                       *FAST_TIMING)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    saved = list((tmp_path / "storage").rglob("0001_*.json"))
    assert len(saved) == 1 and '"extra_info"' in saved[0].read_text()
    faster = json.loads(saved[0].read_text())
    for bench in faster["benchmarks"]:
        for key in ("min", "max", "mean", "median", "q1", "q3", "iqr", "stddev", "total", "ld15iqr", "hd15iqr"):
            bench["stats"][key] *= 1e-3
        if "data" in bench["stats"]:  # kept with --benchmark-save-data only
            bench["stats"]["data"] = [t * 1e-3 for t in bench["stats"]["data"]]
    saved[0].with_name("0002_faster.json").write_text(json.dumps(faster))
    second = run_pytest(*SELECTION, "--report-dir", str(tmp_path / "two"), storage, "--benchmark-compare=0002",
                        "--benchmark-compare-fail=median:5%", *FAST_TIMING)
    assert second.returncode != 0 and "Performance has regressed" in second.stdout + second.stderr
    assert "0002" in second.stdout and "NOW" in second.stdout  # the comparison table
    assert (tmp_path / "two" / "results.json").exists()  # the run's own results, written all the same
    cli = Path(sys.executable).parent / "pytest-benchmark"  # its console script (the module has no __main__)
    compare = subprocess.run([str(cli), "compare", str(tmp_path / "one" / "results.json"),
                              str(tmp_path / "two" / "results.json"), "--group-by", "name"],
                             capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "COLUMNS": "200"})
    assert compare.returncode == 0, compare.stdout + compare.stderr
    assert "test_step[mlp-train-jit_vmap]" in compare.stdout


def _jaxbench_commands(text: str, env: dict) -> list[list[str]]:
    """Every `jaxbench ...` command in a workflow's run scripts, continuation lines joined, its
    shell variables given values (`env`: the workflow's own; `$base`, `$HEAD_SHA`: revisions)."""
    values = {"base": "HEAD~1", "HEAD_SHA": "HEAD", **env}
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        if "bin/jaxbench " in line:
            words = shlex.split(line.split("bin/jaxbench ", 1)[1])
            for name, value in values.items():
                words = [word.replace(f"${name}", value) for word in words]
            commands.append(words)
    return commands


@pytest.mark.parametrize(("workflow_file", "jobs", "commands"), [
    ("jaxbench-regression.yml", {"ab", "history"}, ["ab", "run", "export"]),
    ("jaxbench-own-package.yml", {"ab"}, ["ab"]),
])
def test_the_example_workflows_use_our_commands(workflow_file, jobs, commands):
    workflow = yaml.safe_load((WORKFLOWS / workflow_file).read_text())
    assert set(workflow["jobs"]) == jobs
    assert workflow["permissions"] == {"contents": "read"}  # write only where a job says so
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    scripts = "\n".join(step.get("run", "") for step in steps)
    found = _jaxbench_commands(scripts, workflow.get("env", {}))
    assert [command[0] for command in found] == commands
    parser = build_parser()
    for command in found:
        if command[0] == "run":
            option_parser().parse_args(command[1:])  # raises on an option or value `pytest bench` lacks
        else:
            parser.parse_args(command)  # exits (fails the test) on an option we do not have
    assert "GITHUB_STEP_SUMMARY" in scripts and "github.event.pull_request.head.sha" in str(workflow)
    uploads = [step for step in steps if step.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and all(step.get("if") == "always()" for step in uploads)
    assert all(step["with"].get("cache") == "pip" for step in steps if step.get("uses", "").startswith(
        "actions/setup-python"))
    assert "concurrency" in workflow


def test_only_the_job_that_pushes_the_dashboard_may_write():
    workflow = yaml.safe_load((WORKFLOWS / "jaxbench-regression.yml").read_text())
    assert workflow["jobs"]["history"]["permissions"] == {"contents": "write"}
    assert "permissions" not in workflow["jobs"]["ab"]
    assert workflow["jobs"]["history"]["steps"][-1]["with"]["tool"] == "customSmallerIsBetter"


def test_the_slow_tiers_workers_take_its_longest_files_first():
    """`LONGEST_FIRST` names files that exist, a worker collects them first and the rest in their
    order, a process that is no worker keeps the collection's order, and .ci/run keeps xdist from
    ordering the files again (by their number of tests) wherever it hands them out by file."""
    assert all((ROOT / "tests" / name).is_file() for name in LONGEST_FIRST)
    names = ["test_short_b.py", "test_short_a.py", LONGEST_FIRST[1], "test_short_c.py", LONGEST_FIRST[0],
             "test_short_a.py"]

    def collected(config) -> list[str]:
        items = [SimpleNamespace(path=ROOT / "tests" / name) for name in names]
        pytest_collection_modifyitems(config, items)
        return [item.path.name for item in items]

    assert collected(SimpleNamespace(workerinput={})) == [
        LONGEST_FIRST[0], LONGEST_FIRST[1], "test_short_b.py", "test_short_a.py", "test_short_c.py", "test_short_a.py"]
    assert collected(SimpleNamespace()) == names
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.count("--dist loadfile") == ci.count("--no-loadscope-reorder") >= 2
