"""`jaxbench bisect`: the first bad one of an ordered run of sides, by the same-job A/B of `ab`.

The sides are the commits from a good git revision to a bad one (along the bad one's first
parents), or an ordered list of Python environments (one per JAX version, say), the first good
and the last bad. Each step is an `ab` comparison of one candidate (head) against the good side
(base), on the selected benchmarks, with the gate's statistics; the candidate is

- `bad` when a benchmark regressed by the chosen criterion (`CRITERIA`),
- `good` when every benchmark is decided and none regressed,
- `undecided` otherwise (a timing `inconclusive`): the step is measured again with twice the
  worker pairs and block pairs, up to `tries` times, and is never guessed. A bisection that
  cannot decide a step stops there and says between which two sides the first bad one is.

The bad side itself is compared first: where it is no regression there is nothing to find.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from jaxbench.bench.ab.runner import ABError, check_python, git, repository_root, run_ab
from jaxbench.reports.gate import GateResult
from jaxbench.reports.results import write_atomically

CRITERIA = {
    "verdict": "the gate's verdict: an exact figure grown beyond its tolerance, a failed check, or a slower step",
    "time": "the step time's paired verdict alone",
    "compile": "the cold compile time's paired verdict alone (`--compile-times`, at `--compile-threshold`)",
    "exact": "the exact figures alone (per-device memory, XLA's FLOPs and bytes accessed): no timing needed",
}
"""What makes a candidate bad (`--by`) -> what it means."""
KINDS = {"time": "step", "compile": "compile"}
"""The criteria that read one kind of row alone (`GateResult` rows' `kind`), by their timing verdict."""
EXIT_STATUS = {"found": 1, "nothing to find": 0, "undecided": 3}
"""The command's exit status by how the bisection ended: 1 where it found the first bad side (as
`ab` exits 1 on a regression), 0 where the bad side is no regression, 3 where a step stayed
undecided; bad input is 2, as in every command."""


@dataclass(frozen=True)
class Candidate:
    """One side of the run: a git revision, or a Python interpreter; `label` is what is shown."""

    label: str
    revision: str | None = None
    python: str | None = None


def classify(result: GateResult, by: str) -> str:
    """`bad`, `good` or `undecided` for one step's comparison, by criterion `by` (`CRITERIA`)."""
    if not result.rows:
        raise ABError("the selection matches no benchmark both sides have")
    if any(row["failed"] for row in result.rows):  # head failed its check, or ended: bad by any criterion
        return "bad"
    if by == "exact":
        return "bad" if any(row["exact_regression"] for row in result.rows) else "good"
    rows = [row for row in result.rows if by not in KINDS or row["kind"] == KINDS[by]]
    if not rows:
        raise ABError("--by compile: no cold compile time was measured (no compiled step in the selection, or a "
                      "timing harness that predates them)")
    verdicts = [row["timing"] if by in KINDS else row["verdict"] for row in rows]
    if "regression" in verdicts:
        return "bad"
    return "undecided" if "inconclusive" in verdicts else "good"


@dataclass
class Step:
    """One candidate compared against the good side: its outcome and the comparison it came from."""

    candidate: Candidate
    outcome: str
    tries: int
    result: GateResult
    by: str = "verdict"

    def summary(self) -> str:
        """What the step was decided on, in words: the rows of its criterion's kind (`by`) that are
        not `no change` (all of them where every one is), each with its ratio and interval."""
        kind = KINDS.get(self.by)
        rows = [row for row in self.result.rows if kind is None or row["kind"] == kind] or self.result.rows
        shown = [row for row in rows if row["verdict"] != "no change" or row["exact_regression"]] or rows
        verdict = "verdict" if kind is None else "timing"
        return "; ".join(f"{row['benchmark']} {row[verdict]}" + _ratio(row)
                         + (f", {row['exact']}" if row["exact"] and kind is None else "") for row in shown)

    def to_json(self) -> dict:
        """The step as plain JSON: the candidate, its outcome and tries, and its whole comparison."""
        return {"candidate": self.candidate.label, "revision": self.candidate.revision,
                "python": self.candidate.python, "outcome": self.outcome, "tries": self.tries,
                "comparison": self.result.to_json()}


def _ratio(row: dict) -> str:
    """A row's ratio with its interval, where it has them."""
    if not row["ratio"]:
        return ""
    interval = f" ({row['low']:.3f}-{row['high']:.3f})" if row["low"] == row["low"] else ""  # not NaN
    return f" {row['ratio']:.3f}x{interval}"


@dataclass
class Bisection:
    """A bisection: the good side, the candidates after it in order (the bad side last), each step
    taken, and the range it narrowed: the first bad one is after `last_good` and at or before
    `earliest_bad`. `undecided`: the candidate it could not decide, where it stopped there."""

    good: Candidate
    candidates: list[Candidate]
    by: str
    steps: list[Step] = field(default_factory=list)
    last_good: Candidate | None = None
    earliest_bad: Candidate | None = None
    undecided: Candidate | None = None

    @property
    def ending(self) -> str:
        """`found`, `nothing to find` or `undecided` (`EXIT_STATUS`)."""
        if self.undecided is not None:
            return "undecided"
        return "found" if self.earliest_bad is not None else "nothing to find"

    @property
    def first_bad(self) -> Candidate | None:
        """The first bad candidate, where the bisection found it."""
        return self.earliest_bad if self.ending == "found" else None

    def headline(self) -> str:
        """One line: what the bisection found."""
        if self.ending == "found":
            return (f"first bad: {self.first_bad.label} (last good: {self.last_good.label}), by {self.by}, "
                    f"in {len(self.steps)} steps over {len(self.candidates)} candidates")
        if self.ending == "undecided":
            return (f"undecided: {self.undecided.label} could not be told good or bad; the first bad is after "
                    f"{self.last_good.label} and at or before {(self.earliest_bad or self.candidates[-1]).label}")
        return f"nothing to find: the bad side {self.candidates[-1].label} is no regression against {self.good.label}"

    def table(self) -> pd.DataFrame:
        """A row per step: the candidate, its outcome, the tries it took and what regressed."""
        return pd.DataFrame([{"step": i + 1, "candidate": step.candidate.label, "outcome": step.outcome,
                              "tries": step.tries, "benchmarks": step.summary()}
                             for i, step in enumerate(self.steps)],
                            columns=["step", "candidate", "outcome", "tries", "benchmarks"])

    def markdown(self) -> str:
        """The bisection in Markdown, fit for `$GITHUB_STEP_SUMMARY`."""
        return "\n".join([f"## jaxbench bisect: {self.ending}", "", self.headline(), "",
                          f"Good side: {self.good.label}. Each step: `ab` of the candidate against it; bad by "
                          f"{self.by} ({CRITERIA[self.by]}).", "",
                          self.table().to_markdown(index=False), ""])

    def to_json(self) -> dict:
        """The bisection as plain JSON: the sides, each step with its whole comparison, and the end."""
        def label(candidate):
            return candidate.label if candidate else None

        return {"by": self.by, "ending": self.ending, "good": self.good.label,
                "candidates": [candidate.label for candidate in self.candidates],
                "first_bad": label(self.first_bad), "last_good": label(self.last_good),
                "earliest_bad": label(self.earliest_bad), "undecided": label(self.undecided),
                "steps": [step.to_json() for step in self.steps]}

    def write(self, markdown: str | Path | None = None, json_path: str | Path | None = None) -> None:
        """Write the Markdown and the JSON where asked."""
        if markdown:
            write_atomically(Path(markdown), self.markdown())
        if json_path:
            write_atomically(Path(json_path), json.dumps(self.to_json(), indent=2, default=float))


Measure = Callable[[Candidate, Candidate, int], GateResult]
"""measure(good, candidate, attempt) -> the `ab` comparison of the candidate against the good
side; `attempt` counts from 0, and each one measures twice as much as the one before."""


def bisect(good: Candidate, candidates: list[Candidate], measure: Measure, by: str = "verdict",
           tries: int = 2, progress: Callable[[str], None] = print) -> Bisection:
    """The first bad one of `candidates` (ordered, the bad side last), against `good`: the bad
    side first, then halving the range between the last good and the first bad one found."""
    if by not in CRITERIA:
        raise ABError(f"--by {by!r}: valid: {', '.join(CRITERIA)}")
    if not candidates:
        raise ABError("no candidate between the good side and the bad one")
    run = Bisection(good, candidates, by)

    def step(index: int) -> str:
        candidate = candidates[index]
        for attempt in range(tries):
            result = measure(good, candidate, attempt)
            outcome = classify(result, by)
            if outcome != "undecided":
                break
            if attempt + 1 < tries:
                progress(f"  {candidate.label}: undecided; measuring again with twice the worker and block pairs")
        run.steps.append(Step(candidate, outcome, attempt + 1, result, by))
        progress(f"step {len(run.steps)}: {candidate.label} ({index + 1} of {len(candidates)}): {outcome} "
                 f"({run.steps[-1].summary()})")
        return outcome

    low, high = -1, len(candidates) - 1  # candidates[low] is good (-1: the good side), candidates[high] bad
    run.last_good = good
    outcome = step(high)
    if outcome == "undecided":
        run.undecided = candidates[high]
    if outcome != "bad":
        return run
    run.earliest_bad = candidates[high]
    while high - low > 1:
        middle = (low + high) // 2
        outcome = step(middle)
        if outcome == "undecided":
            run.undecided = candidates[middle]
            break
        low, high = (low, middle) if outcome == "bad" else (middle, high)
        run.last_good, run.earliest_bad = (good if low < 0 else candidates[low]), candidates[high]
    return run


def revisions(folder: Path, good: str, bad: str) -> tuple[Candidate, list[Candidate]]:
    """The good revision, and the commits after it up to the bad one along the bad one's first
    parents, oldest first, each labelled by its short hash and subject."""
    repository = repository_root(folder, "--good/--bad")
    commits = {}
    for option, revision in (("--good", good), ("--bad", bad)):
        try:
            commits[option] = git(repository, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
        except ABError:
            raise ABError(f"{option} {revision!r}: no such revision in {repository}") from None
    if subprocess.run(["git", "-C", str(repository), "merge-base", "--is-ancestor", commits["--good"],
                       commits["--bad"]]).returncode:
        raise ABError(f"--good {good!r} is not an ancestor of --bad {bad!r}: bisect needs the good one first")
    lines = git(repository, "log", "--first-parent", "--reverse", "--format=%H %h %s",
                 f"{commits['--good']}..{commits['--bad']}").splitlines()
    if not lines:
        raise ABError(f"--good {good!r} and --bad {bad!r} are the same commit")
    good_line = git(repository, "log", "-1", "--format=%H %h %s", commits["--good"])

    def candidate(line: str) -> Candidate:
        full, short, subject = (line.split(" ", 2) + [""])[:3]
        return Candidate(f"{short} {subject}".strip(), revision=full)

    return candidate(good_line), [candidate(line) for line in lines]


def environments(pythons: list[str]) -> tuple[Candidate, list[Candidate]]:
    """The first interpreter as the good side, the others as the candidates, in the order given."""
    if len(pythons) < 2:
        raise ABError("--pythons needs at least two interpreters: the good one first, the bad one last")
    sides = [Candidate(python, python=check_python("--pythons", python)) for python in pythons]
    return sides[0], sides[1:]


def ab_measure(selection, options: dict, folder: Path | None = None, seed: int | None = None) -> Measure:
    """`measure` for `bisect` by `run_ab`: a revision candidate is the head revision against the
    good one (both checked out), an interpreter candidate the head Python against the good one
    (both over this folder). Attempt k runs 2**k times the worker pairs and block pairs."""

    def measure(good: Candidate, candidate: Candidate, attempt: int) -> GateResult:
        scaled = {**options, "workers": options["workers"] * 2 ** attempt,
                  "max_pairs": options["max_pairs"] * 2 ** attempt}
        return run_ab(selection, scaled, base=good.revision, head=candidate.revision, base_python=good.python,
                      head_python=candidate.python, folder=folder, seed=seed)

    return measure
