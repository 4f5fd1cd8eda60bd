"""The `jaxbench` command (`bench.cli`): its subcommands, and `jaxbench run` from a folder of
someone else's project."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jaxbench.bench.cli import COMMANDS, main
from tests.conftest import FAST_TIMING, ROOT


def test_jaxbench_lists_every_command(capsys):
    with pytest.raises(SystemExit) as ended:
        main(["--help"])
    assert ended.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith("usage: jaxbench")
    assert all(f"    {command} " in usage for command in ["run", *COMMANDS]), usage


def test_errors_name_the_command_as_it_was_called(tmp_path, capsys):
    assert main(["build", str(tmp_path / "nope.json"), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("jaxbench build: error:") and "nope.json" in error and error.count("\n") == 1


def test_run_errors_name_jaxbench_run(capsys):
    """`jaxbench run`'s usage errors come from pytest's parser, under the command's own name."""
    assert main(["run", "--modes", "bar"]) == 4  # pytest's usage error, before anything runs
    error = capsys.readouterr().err
    assert "jaxbench run: error: argument --modes: unknown mode 'bar'" in error and "pytest.main()" not in error


def test_help_piped_into_a_reader_that_stops_early_ends_quietly():
    """`jaxbench run --help | head -1`: no traceback when the reader has gone."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "jaxbench", "run", "--help"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    assert proc.stdout.readline().startswith("usage: jaxbench run")
    proc.stdout.close()  # the reader stops: what the command writes next finds no one
    error = proc.stderr.read()
    assert proc.wait(timeout=120) in (0, 1) and "Traceback" not in error, error


PROJECT_FILES = {
    # a project's own pytest set-up, which `jaxbench run` must not read: each would end the run
    "pyproject.toml": '[tool.pytest.ini_options]\naddopts = ["--no-such-option"]\n',
    "conftest.py": 'raise RuntimeError("this project\'s conftest.py was imported")\n',
    # and packages of its own under the names of the repository's folders, which must stay its own
    **{f"{name}/__init__.py": "WHOSE = 'the project'\n" for name in ("bench", "reports", "workloads")},
}


@pytest.mark.slow
@pytest.mark.version_independent
def test_jaxbench_installed_in_another_project_runs_there_with_strict_expectations(tmp_path):
    """jaxbench built and installed (pip, no dependencies) inside a project (as into a virtual
    environment in its folder) that has its own `bench`, `reports` and `workloads` packages and a
    pytest configuration and conftest.py that would each end the run; run from there. The install
    adds the one import name `jaxbench` (templates included); the project's packages stay its
    own; the benchmarks run (the multi-device one in its worker process, started the same way),
    the report goes under the project's jaxbench-runs/, and `--strict-expectations` fails the run
    on a `below` row that no host's timing can move: bf16's memory at `tiny`, from the compiled
    programs (a speedup row's verdict is the host's, and a busy host once read the multi-device
    inference row `met`). The committed reference runs are installed with it."""
    project = tmp_path / "project"
    site = project / ".venv" / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    assert sorted(path.name for path in site.iterdir() if not path.name.endswith(".dist-info")) == ["bin", "jaxbench"]
    assert list((site / "jaxbench" / "reports" / "templates").glob("*.j2"))
    for name, text in PROJECT_FILES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([str(site / "bin" / "jaxbench"), "run", "--workloads", "mlp", "--size", "tiny", "--modes",
                           "train", "--variants", "jit_vmap,bf16,multi_device", "--strict-expectations", *FAST_TIMING],
                          cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert f"rootdir: {site / 'jaxbench' / 'bench'}" in proc.stdout, proc.stdout[:2000]  # the install ran
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "expectation below (--strict-expectations): mlp train: bf16 mixed precision" in proc.stdout
    assert "4 passed" in proc.stdout  # jit_vmap, bf16 and, in the worker, both multi-device layouts
    (run,) = (project / "jaxbench-runs").iterdir()
    assert {"results.json", "report.md", "report.html"} <= {path.name for path in run.iterdir()}
    theirs = subprocess.run([sys.executable, "-c", "import bench, reports, workloads, jaxbench; "
                             "print(bench.WHOSE, reports.WHOSE, workloads.WHOSE, jaxbench.__file__)"],
                            cwd=project, env=env, capture_output=True, text=True, timeout=60)
    assert theirs.stdout.split()[:6] == ["the", "project"] * 3, theirs.stderr
    assert theirs.stdout.split()[6] == str(site / "jaxbench" / "__init__.py")
    # the committed reference runs come with the install, for `compare --reference` and the report
    references = subprocess.run([sys.executable, "-c", "from jaxbench.reports.reference import reference_runs; "
                                 "print(*reference_runs().values())"],
                                cwd=project, env=env, capture_output=True, text=True, timeout=60)
    assert references.stdout.split() == [str(site / "jaxbench" / "reference_runs" / "cpu-amd-epyc-2-cores" /
                                              "results.json")], \
        references.stdout + references.stderr
    ab_help = subprocess.run([str(site / "bin" / "jaxbench"), "ab", "--help"], cwd=project, env=env,
                             capture_output=True, text=True, timeout=60)
    assert ab_help.returncode == 0 and "--base REV" in ab_help.stdout


def test_the_commands_page_is_the_parsers():
    """docs/commands.md is written from the parser; a renamed option or a changed default fails here
    until it is written again: `python -c "from jaxbench.bench.cli import commands_reference;
    print(commands_reference())" > docs/commands.md`."""
    from jaxbench.bench.cli import commands_reference

    assert (ROOT / "docs" / "commands.md").read_text().rstrip("\n") == commands_reference().rstrip("\n")
