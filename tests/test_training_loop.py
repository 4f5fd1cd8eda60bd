"""The production training loop: nothing is lost when it is stopped, and bad checkpoints are reported.

Each loop runs in its own process (`python -m jaxbench.workloads.training_loop`), as a pre-empted job would.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT

CRASH_AFTER = 10  # tiny: 12 steps, a checkpoint every 4, the last 2 kept -> steps 4 and 8 on disk


def train(*args: str) -> subprocess.CompletedProcess:
    """`python -m jaxbench.workloads.training_loop --size tiny ARGS` in a new process."""
    return subprocess.run([sys.executable, "-m", "jaxbench.workloads.training_loop", "--size", "tiny", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def _params(path) -> dict:
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("uninterrupted")
    proc = train("--checkpoint-dir", str(folder / "checkpoints"), "--params-out", str(folder / "params.npz"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return _params(folder / "params.npz")


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    """A checkpoint folder left by a loop killed (SIGKILL) after step 10."""
    folder = tmp_path_factory.mktemp("crashed") / "checkpoints"
    proc = train("--checkpoint-dir", str(folder), "--crash-after-step", str(CRASH_AFTER))
    assert proc.returncode == -9, proc.stderr[-2000:]  # killed, no clean-up ran
    assert sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) == [4, 8]
    return folder


def _resume(crashed, tmp_path, damage=None) -> tuple[subprocess.CompletedProcess, dict]:
    folder = tmp_path / "checkpoints"
    shutil.copytree(crashed, folder)
    if damage:
        damage(folder)
    proc = train("--checkpoint-dir", str(folder), "--params-out", str(tmp_path / "params.npz"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, _params(tmp_path / "params.npz")


def _assert_identical(params: dict, expected: dict) -> None:
    assert params.keys() == expected.keys() and len(params) > 5
    for name in expected:
        np.testing.assert_array_equal(params[name], expected[name], err_msg=name)


@pytest.mark.slow
def test_resumed_loop_ends_with_the_uninterrupted_parameters(crashed, uninterrupted, tmp_path):
    proc, params = _resume(crashed, tmp_path)
    assert "resumed from the checkpoint of step 8" in proc.stdout
    _assert_identical(params, uninterrupted)


def _truncate_data_files(step: int):
    def damage(folder):
        files = [p for p in (folder / str(step)).rglob("*") if p.is_file() and p.parent.name == "d"]
        assert files
        for path in files:
            path.write_bytes(b"")
    return damage


def _partial_copy_of(step: int, as_step: int):
    """A newer step folder holding only the metadata of `step` (its array data never written)."""
    def damage(folder):
        shutil.copytree(folder / str(step), folder / str(as_step))
        for data in (folder / str(as_step)).rglob("ocdbt.process_0"):
            shutil.rmtree(data)
    return damage


@pytest.mark.slow
def test_bad_checkpoints_are_each_reported_and_the_newest_good_one_used(crashed, uninterrupted, tmp_path):
    """Two kinds of damage in one folder, newest first: step 12's folder holds only metadata (its
    array data never written), step 8's data files are empty. Each is reported once and moved aside,
    and the loop resumes from step 4, the newest it can restore, to the uninterrupted parameters."""
    def damage(folder):
        _partial_copy_of(8, as_step=12)(folder)
        _truncate_data_files(8)(folder)

    proc, params = _resume(crashed, tmp_path, damage)
    folder = tmp_path / "checkpoints"
    report = [line for line in proc.stdout.splitlines() if "cannot be restored" in line]
    assert len(report) == 2, proc.stdout[-3000:]
    for line, bad_step in zip(report, (12, 8)):
        assert f"checkpoint of step {bad_step} at {folder / str(bad_step)} cannot be restored (" in line
        assert (folder / f"{bad_step}.unreadable").is_dir()  # kept for inspection, out of the way
    assert "resumed from the checkpoint of step 4" in proc.stdout
    _assert_identical(params, uninterrupted)


def _command_line_error(args: list[str], capsys) -> tuple[int, str]:
    """The exit status and standard error of the loop's command line (`main`) given `args`, in this
    process: a usage error ends before anything is built or trained."""
    from jaxbench.workloads.training_loop.__main__ import main

    with pytest.raises(SystemExit) as end:
        main(args)
    return end.value.code, capsys.readouterr().err


@pytest.mark.version_independent  # argparse's messages
@pytest.mark.parametrize("args,message", [
    (["--size", "huge", "--checkpoint-dir", "x"], "argument --size: invalid choice: 'huge'"),
    (["--variant", "eventually", "--checkpoint-dir", "x"], "argument --variant: invalid choice: 'eventually'"),
])
def test_bad_command_line_is_one_line(args, message, capsys):
    status, err = _command_line_error(args, capsys)
    assert status == 2 and message in err.splitlines()[-1]  # argparse's usage line, then the error


def test_unwritable_checkpoint_dir_is_one_line(tmp_path, capsys):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    status, err = _command_line_error(["--checkpoint-dir", str(not_a_folder / "sub")], capsys)
    assert status == 2
    assert f"--checkpoint-dir {not_a_folder / 'sub'}: cannot write there" in err.splitlines()[-1]


@pytest.mark.version_independent
def test_the_loops_with_and_without_checkpoints_take_turns_going_first(tmp_path):
    """Neither loop always runs second, after the other warmed the caches: the pair's order
    alternates from one timed call to the next."""
    from types import SimpleNamespace

    from jaxbench.workloads.training_loop.benchmark import LoopRun
    from jaxbench.workloads.training_loop.loop import LoopOutcome

    order = []

    def run(directory):
        order.append("with" if directory else "without")
        if directory:
            directory.mkdir(parents=True)
        return LoopOutcome(state=None, start_step=0, steps_run=4, wall_s=2.0 if directory else 1.0,
                           checkpoint_blocking_s=0.1, eval_s=0.1, eval_examples=8, eval_loss=1.0,
                           checkpoints_saved=[], checkpoints_kept=[])

    loop_run = LoopRun(SimpleNamespace(run=run), tmp_path)
    for _ in range(4):
        loop_run()
    assert order == ["without", "with", "with", "without", "without", "with", "with", "without"]
    assert loop_run.median("checkpoint_overhead_share") == 0.5  # each pair's own figures, whatever its order
