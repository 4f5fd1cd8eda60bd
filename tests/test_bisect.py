"""`jaxbench bisect` (`bench.ab.bisect`): the search over planted outcomes, how a step's comparison
makes a candidate bad, good or undecided, the sides it is given, and (slow) a real bisection of a
throw-away history of 3 commits, and `ab --compile-times` of an unrolled loop."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from jaxbench.bench.ab.bisect import EXIT_STATUS, Candidate, bisect, classify, environments, revisions
from jaxbench.bench.ab.runner import ABError
from jaxbench.bench.cli import main
from jaxbench.reports.gate import GateResult
from jaxbench.reports.verdicts import ExactChange, TimingVerdict
from tests.conftest import MS_STEP_SIZE, example_model, run_jaxbench, workload_history
from tests.conftest import git as _git

pytestmark = pytest.mark.version_independent  # the search, git and the command line: no JAX call of their own

CANDIDATES = [Candidate(f"c{i}", revision=f"c{i}") for i in range(1, 8)]
GOOD = Candidate("c0", revision="c0")


def _timing(verdict: str, ratio: float = 1.0) -> TimingVerdict:
    return TimingVerdict(ratio, ratio * 0.98, ratio * 1.02, 0.01, 8, verdict)


def _result(*rows) -> GateResult:
    """A comparison with a row per (timing verdict, exact changes, failure)."""
    result = GateResult(method="planted", threshold=0.05)
    for i, (verdict, changes, failure) in enumerate(rows):
        result.add(f"bench{i}", None if verdict is None else _timing(verdict, 1.3 if verdict == "regression" else 1.0),
                   changes, failure=failure)
    return result


GROWN = [ExactChange("xla_flops", 100.0, 120.0)]
SHRUNK = [ExactChange("xla_flops", 100.0, 80.0)]


@pytest.mark.parametrize(("rows", "by", "outcome"), [
    ([("no change", [], None), ("improvement", [], None)], "verdict", "good"),
    ([("no change", [], None), ("regression", [], None)], "verdict", "bad"),
    ([("no change", [], None), ("inconclusive", [], None)], "verdict", "undecided"),
    ([("inconclusive", GROWN, None)], "verdict", "bad"),  # the exact gate decides without the timing
    ([("inconclusive", GROWN, None)], "time", "undecided"),  # ... unless asked for the timing alone
    ([("no change", GROWN, None)], "time", "good"),
    ([("inconclusive", [], None), ("regression", SHRUNK, None)], "exact", "good"),  # timing not asked
    ([("inconclusive", GROWN, None)], "exact", "bad"),
    ([(None, [], "head failed its check: loss"), ("no change", [], None)], "exact", "bad"),  # bad by any
    ([(None, [], "head failed its check: loss")], "time", "bad"),
])
def test_a_step_is_bad_good_or_undecided_by_its_criterion(rows, by, outcome):
    assert classify(_result(*rows), by) == outcome


def test_time_and_compile_each_read_their_own_rows():
    result = _result(("no change", [], None))
    result.add("bench0 compile", _timing("regression", 1.5), [], kind="compile")
    assert classify(result, "time") == "good" and classify(result, "compile") == "bad"
    assert classify(result, "verdict") == "bad"  # the gate's verdict holds every row
    with pytest.raises(ABError, match="--by compile: no cold compile time was measured"):
        classify(_result(("no change", [], None)), "compile")


def test_a_step_says_what_it_was_decided_on():
    from jaxbench.bench.ab.bisect import Step

    result = _result(("inconclusive", GROWN, None))
    result.add("bench0 compile", _timing("regression", 1.5), [], kind="compile")
    by_compile = Step(CANDIDATES[0], "bad", 1, result, "compile").summary()
    assert by_compile == "bench0 compile regression 1.500x (1.470-1.530)"
    by_verdict = Step(CANDIDATES[0], "bad", 1, result, "verdict").summary()
    assert by_verdict.startswith("bench0 regression 1.000x (0.980-1.020), XLA cost-analysis FLOPs")
    assert by_verdict.endswith("; bench0 compile regression 1.500x (1.470-1.530)")


def test_a_comparison_of_nothing_is_an_error():
    with pytest.raises(ABError, match="matches no benchmark"):
        classify(GateResult(method="planted", threshold=0.05), "verdict")


class Planted:
    """`measure` over CANDIDATES whose first bad one is `first_bad` (an index); `undecided`: the
    candidates that stay inconclusive for their first `attempts` comparisons."""

    def __init__(self, first_bad: int | None, undecided: dict[str, int] | None = None):
        self.first_bad, self.undecided, self.calls = first_bad, undecided or {}, []

    def __call__(self, good: Candidate, candidate: Candidate, attempt: int) -> GateResult:
        assert good == GOOD  # every step is against the good side, never a neighbour
        self.calls.append((candidate.label, attempt))
        index = CANDIDATES.index(candidate)
        if attempt < self.undecided.get(candidate.label, 0):
            return _result(("inconclusive", [], None), ("no change", [], None))
        bad = self.first_bad is not None and index >= self.first_bad
        return _result(("regression" if bad else "no change", [], None), ("no change", [], None))


@pytest.mark.parametrize("first_bad", range(7))
def test_the_first_bad_candidate_is_found_wherever_it_is(first_bad):
    measure = Planted(first_bad)
    run = bisect(GOOD, CANDIDATES, measure, progress=lambda line: None)
    assert run.ending == "found" and run.first_bad == CANDIDATES[first_bad]
    assert run.last_good == (GOOD if first_bad == 0 else CANDIDATES[first_bad - 1])
    assert measure.calls[0] == ("c7", 0)  # the bad side is confirmed first
    assert len(run.steps) <= 4  # the bad side, then log2(7) halvings at most
    assert [step.outcome for step in run.steps] == ["bad" if CANDIDATES.index(step.candidate) >= first_bad else "good"
                                                    for step in run.steps]
    assert EXIT_STATUS[run.ending] == 1


def test_a_bad_side_that_is_no_regression_ends_it_with_nothing_to_find(tmp_path):
    run = bisect(GOOD, CANDIDATES, Planted(None), progress=lambda line: None)
    assert run.ending == "nothing to find" and run.first_bad is None and len(run.steps) == 1
    assert EXIT_STATUS[run.ending] == 0
    assert "no regression against c0" in run.headline()


def test_an_undecided_step_is_measured_again_with_more_and_then_decides():
    measure = Planted(5, undecided={"c3": 1})  # the first middle, inconclusive at first
    run = bisect(GOOD, CANDIDATES, measure, tries=2, progress=lambda line: None)
    assert run.first_bad == CANDIDATES[5]
    assert measure.calls[1:3] == [("c3", 0), ("c3", 1)]  # measured again, with more
    assert run.steps[1].candidate.label == "c3" and run.steps[1].tries == 2 and run.steps[1].outcome == "good"


def test_a_step_that_stays_undecided_is_never_guessed(tmp_path):
    """The bisection stops at it and says the range it narrowed; the Markdown and JSON say the same."""
    measure = Planted(5, undecided={"c3": 9})
    lines = []
    run = bisect(GOOD, CANDIDATES, measure, tries=3, progress=lines.append)
    assert run.ending == "undecided" and run.first_bad is None and run.undecided == CANDIDATES[2]
    assert measure.calls == [("c7", 0), ("c3", 0), ("c3", 1), ("c3", 2)]
    assert run.steps[-1].outcome == "undecided"
    assert run.headline() == ("undecided: c3 could not be told good or bad; the first bad is after c0 and at or "
                              "before c7")
    assert EXIT_STATUS[run.ending] == 3
    assert any("measuring again" in line for line in lines)
    run.write(tmp_path / "bisect.md", tmp_path / "bisect.json")
    written = json.loads((tmp_path / "bisect.json").read_text())
    assert written["ending"] == "undecided" and written["first_bad"] is None and written["earliest_bad"] == "c7"
    assert [step["outcome"] for step in written["steps"]] == ["bad", "undecided"]
    assert written["steps"][1]["comparison"]["benchmarks"][0]["timing"] == "inconclusive"
    last_row = (tmp_path / "bisect.md").read_text().splitlines()[-1]
    assert [cell.strip() for cell in last_row.split("|")[1:-1]] == ["2", "c3", "undecided", "3",
                                                                     "bench0 inconclusive 1.000x (0.980-1.020)"]


def _history(folder: Path, count: int) -> list[str]:
    return workload_history(folder, [(f"commit {i}", {"file": f"{i}\n"}) for i in range(count)])


def test_revisions_are_the_commits_after_good_up_to_bad_oldest_first(tmp_path):
    commits = _history(tmp_path, 5)
    good, candidates = revisions(tmp_path, commits[1], commits[4])
    assert good.revision == commits[1] and good.label.endswith("commit 1")
    assert [c.revision for c in candidates] == commits[2:]
    assert [c.label.split(" ", 1)[1] for c in candidates] == ["commit 2", "commit 3", "commit 4"]


@pytest.mark.parametrize(("good", "bad", "message"), [
    ("nope", "HEAD", "--good 'nope': no such revision"),
    ("HEAD", "HEAD~2", "is not an ancestor of --bad 'HEAD~2'"),
    ("HEAD", "HEAD", "are the same commit"),
])
def test_bad_revisions_are_one_line(good, bad, message, tmp_path):
    _history(tmp_path, 3)
    with pytest.raises(ABError, match=message):
        revisions(tmp_path, good, bad)


def test_a_folder_outside_git_names_the_options_of_the_revisions(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # outside git wherever it is
    with pytest.raises(ABError, match="is not in a git repository: --good/--bad name revisions of one"):
        revisions(tmp_path, "HEAD~1", "HEAD")


def test_environments_are_the_interpreters_in_order():
    good, candidates = environments([sys.executable, "python3"])
    assert good.python == sys.executable and [c.python for c in candidates] == ["python3"]
    with pytest.raises(ABError, match="at least two"):
        environments([sys.executable])
    with pytest.raises(ABError, match="--pythons /no/python: no such Python interpreter"):
        environments([sys.executable, "/no/python"])


@pytest.mark.parametrize(("args", "message"), [
    ([], "nothing to bisect"),
    (["--good", "HEAD~1", "--pythons", "a", "b"], "not both"),
    (["--good", "HEAD", "--by", "speed"], "invalid choice: 'speed'"),
])
def test_bad_command_lines_are_one_line_and_exit_2(args, message, capsys):
    try:
        status = main(["bisect", *args])
    except SystemExit as end:  # argparse's own errors
        status = end.code
    assert status == 2 and message in capsys.readouterr().err


LOOP_STEPS = 600
"""How many small steps refine the output: enough that the unrolled program compiles some 3x as
long (at 300 it was some 2x): a margin over a loaded host's noise, which 3 worker pairs must beat."""
LOOP = "        return self.head(self.blocks(self.embed(x)))[..., 0]"
SCANNED = ("        out = self.head(self.blocks(self.embed(x)))[..., 0]\n"
           f"        return jax.lax.fori_loop(0, {LOOP_STEPS}, lambda i, v: v + 1e-3 * jnp.tanh(v), out)")
UNROLLED = ("        out = self.head(self.blocks(self.embed(x)))[..., 0]\n"
            f"        for _ in range({LOOP_STEPS}):\n"
            "            out = out + 1e-3 * jnp.tanh(out)\n"
            "        return out")
"""The example's output refined by `LOOP_STEPS` small steps, in a loop XLA keeps rolled, or unrolled by
Python: the same function, the unrolled one slower to compile and as fast to run (the
steps act on one number an example)."""
SLOWS = 2
"""The commit of `planted_history` that makes the step slower (the hidden layer 4x as wide)."""


def _model(hidden: int = 2000, loop: str = LOOP) -> str:
    source = example_model(MS_STEP_SIZE.replace("hidden=2000", f"hidden={hidden}"))
    assert LOOP in source
    return source.replace(LOOP, loop)


@pytest.fixture(scope="module")
def planted_history(tmp_path_factory) -> tuple[Path, list[str]]:
    """A throw-away repository of a workload package of 3 commits (`workload_history`), the last of
    which, `SLOWS`, makes the step slower; the one between changes notes only. (Three: the
    bisection of its 2 candidates confirms the bad side, then finds the other good, each step an
    `ab` of 6 workers: both outcomes, in the fewest steps.) Returns the repository and the commits."""
    repo = tmp_path_factory.mktemp("bisect-repo")
    commits = [("base", {}),
               ("notes 1", {"NOTES": "1\n"}),
               ("a wider hidden layer", {"ab_pkg/model.py": _model(8000)})]
    return repo, workload_history(repo, commits)


@pytest.fixture(scope="module")
def unrolled_history(tmp_path_factory) -> tuple[Path, list[str]]:
    """A throw-away repository of 2 commits: the model with `SCANNED`, then with `UNROLLED`."""
    repo = tmp_path_factory.mktemp("unrolled-repo")
    return repo, workload_history(repo, [("base", {"ab_pkg/model.py": _model(loop=SCANNED)}),
                                         ("the loop unrolled", {"ab_pkg/model.py": _model(loop=UNROLLED)})])


SELECTION = ["--workload-module", "ab_pkg.model", "--workloads", "wide_mlp", "--modes", "train",
             "--variants", "jit_vmap", "--size", "small", "--workers", "3", "--block-time", "0.1",
             "--max-pairs", "6", "--worker-timeout", "300"]
"""One step of the MLP, 3 worker pairs (the fewest that decide), 2 batches of block pairs at most."""


@pytest.mark.slow
def test_bisect_names_the_commit_that_planted_a_slowdown(planted_history, tmp_path):
    """By the step time alone, at a coarse threshold (a 3x slowdown is sought: "regression" above
    1.9x, "no change" within 0.53-1.9x, which 3 worker pairs decide on a loaded host; within +-50% the
    same code once stayed undecided there, docs/measurements.md): found in the bad side's
    step and one halving, each step's verdict in the JSON, exit 1."""
    repo, commits = planted_history
    out = tmp_path / "bisect.json"
    proc = run_jaxbench("bisect", "--good", commits[0], "--bad", commits[-1], "--by", "time", "--threshold", "0.9",
                        *SELECTION, "--json", str(out), "--markdown", str(tmp_path / "bisect.md"), cwd=repo,
                        timeout=900)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = json.loads(out.read_text())
    assert run["ending"] == "found" and run["first_bad"].endswith("a wider hidden layer"), run["first_bad"]
    assert run["last_good"].endswith(f"notes {SLOWS - 1}")
    for step in run["steps"]:
        index = commits.index(step["revision"])
        assert step["outcome"] == ("bad" if index >= SLOWS else "good"), step
        row = step["comparison"]["benchmarks"][0]
        assert row["timing"] == ("regression" if index >= SLOWS else "no change"), row
    assert [commits.index(step["revision"]) for step in run["steps"]] == [2, 1]
    assert "first bad:" in proc.stdout and "a wider hidden layer" in (tmp_path / "bisect.md").read_text()
    assert not _git(repo, "worktree", "list").splitlines()[1:]  # every step's worktrees removed


@pytest.mark.slow
def test_ab_flags_a_compile_time_slowdown_whose_step_time_is_unchanged(unrolled_history, tmp_path):
    """The unrolled loop against the rolled one, with `--compile-times`: the compile row is a
    regression (over 20% slower, significantly slower than 1), the step row is not (at 25%, room
    for a loaded host: the steps differ by one number an example)."""
    repo, commits = unrolled_history
    out = tmp_path / "ab.json"
    proc = run_jaxbench("ab", "--base", commits[0], "--head", commits[1], "--compile-times",
                        "--threshold", "0.25", *SELECTION, "--json", str(out), cwd=repo, timeout=900)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {row["benchmark"]: row for row in json.loads(out.read_text())["benchmarks"]}
    assert set(rows) == {"wide_mlp-train-jit_vmap", "wide_mlp-train-jit_vmap compile"}
    compile_row, step_row = rows["wide_mlp-train-jit_vmap compile"], rows["wide_mlp-train-jit_vmap"]
    assert compile_row["verdict"] == "regression" and compile_row["kind"] == "compile"
    assert compile_row["ratio"] > 1.2 and compile_row["low"] > 1, compile_row
    assert step_row["timing"] != "regression", step_row  # (its memory may grow: the loop's steps are kept)
    assert "cold compiles of wide_mlp-train-jit_vmap: regression" in proc.stdout
