"""The command line, a layer above the measuring code (`bench`) and the reports: `jaxbench`
(installed as a console script; `python -m reports` is the same command under its first name).

- `jaxbench run [pytest bench options]` runs the benchmarks from any folder (`run_benchmarks`);
- `jaxbench build RESULTS.json [...] --out DIR`, `jaxbench compare A.json B.json [...] --out DIR`;
- `jaxbench regress BASE.json HEAD.json` and `jaxbench ab --base REV --head REV`: regression gates,
  exit 1 on a regression; `jaxbench bisect --good REV --bad REV`: the first bad revision;
- `jaxbench trend RUNS... --out DIR`, `jaxbench export RESULTS.json --format FORMAT --out FILE`.

Bad input (a missing file, not JSON, not this suite's results, nothing in common) is one line
on stderr and exit status 2, never a traceback. (The reports themselves never import `bench`.)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from jaxbench.bench.ab.bisect import CRITERIA, EXIT_STATUS, ab_measure, bisect, environments, revisions
from jaxbench.bench.ab.runner import COMPILE_THRESHOLD, DEFAULTS, ABError, run_ab
from jaxbench.bench.options import Selection, add_selection_options, seconds
from jaxbench.reports.arguments import number_type
from jaxbench.reports.build import build_report
from jaxbench.reports.compare import compare_runs
from jaxbench.reports.export import FORMATS, export
from jaxbench.reports.gate import print_result
from jaxbench.reports.reference import REFERENCE_RUNS, compare_with_reference
from jaxbench.reports.regress import DEFAULT_THRESHOLD, regress
from jaxbench.reports.results import ResultsError
from jaxbench.reports.trend import DEFAULT_MIN_STEP, write_trend
from jaxbench.workloads.workflow import cannot_write

_share = number_type(float, lambda value: 0 < value < 1, "a share between 0 and 1 (e.g. 0.05 for 5%)")
_whole = number_type(int, lambda value: value >= 1, "a whole number >= 1")


def add_ab_command(commands) -> None:
    """`ab`: base against head in the same job (`bench.ab.runner`)."""
    ab = commands.add_parser("ab", help="regression gate: base against head measured in the same job "
                                        "(exit 1 on a regression)")
    sides = ab.add_argument_group("the sides (revisions of the repository here, and/or Python environments)")
    sides.add_argument("--base", metavar="REV", help="base git revision, e.g. the merge base")
    sides.add_argument("--head", metavar="REV", help="head git revision (default: the current folder as it is)")
    sides.add_argument("--base-python", metavar="PATH", help="the base side's Python (default: this one)")
    sides.add_argument("--head-python", metavar="PATH", help="the head side's Python (default: this one)")
    add_measuring_options(ab)
    add_gate_outputs(ab)
    ab.add_argument("--save-hlo", metavar="DIR", help="keep each side's compiled programs (optimised HLO text) in "
                                                       "DIR/base/ and DIR/head/, a file per benchmark, for a diff")


def add_measuring_options(parser) -> None:
    """What an A/B comparison measures and how long and strictly (`ab`, and each step of `bisect`)."""
    selection = parser.add_argument_group("what to measure (as `pytest bench` selects it)")
    add_selection_options(selection.add_argument, default_size="small", keyword=True)
    how = parser.add_argument_group("how long and how strict")
    how.add_argument("--threshold", type=_share, default=DEFAULTS["threshold"],
                     help=f"slowdown that counts as a regression (default {DEFAULTS['threshold']})")
    how.add_argument("--workers", type=_whole, default=DEFAULTS["workers"],
                     help=f"worker processes a side (default {DEFAULTS['workers']}; under 3, every timing "
                          "verdict is inconclusive)")
    how.add_argument("--block-time", type=seconds, default=DEFAULTS["block_time"],
                     help=f"seconds of timed rounds per block (default {DEFAULTS['block_time']})")
    how.add_argument("--max-pairs", type=_whole, default=DEFAULTS["max_pairs"],
                     help=f"block pairs per benchmark at most (default {DEFAULTS['max_pairs']})")
    how.add_argument("--max-time", type=seconds, default=DEFAULTS["max_time"],
                     help=f"seconds the whole comparison may take before it decides with what it has "
                          f"(default {DEFAULTS['max_time']:g})")
    how.add_argument("--worker-timeout", type=seconds, default=DEFAULTS["worker_timeout"],
                     help="seconds a worker may take to get ready or to answer before it is stopped and the "
                          f"comparison ends with an error (default {DEFAULTS['worker_timeout']:g})")
    how.add_argument("--seed", type=int, default=None, help="seed of the random order (default: fresh)")
    how.add_argument("--compile-times", action="store_true",
                     help="also gate each compiled step's cold compile time, paired as the steps are, a row of its "
                          "own (off by default: each cold compile of a realistic step takes seconds)")
    how.add_argument("--compile-threshold", type=_share, default=COMPILE_THRESHOLD,
                     help=f"growth of a cold compile time that counts as a regression (default {COMPILE_THRESHOLD})")
    how.add_argument("--compiles", type=_whole, default=DEFAULTS["compiles"],
                     help=f"cold compilation pairs per worker pair (default {DEFAULTS['compiles']})")


def _measuring(args) -> tuple[Selection, dict]:
    """The selection and the runner's options `add_measuring_options` parsed."""
    selection = Selection.of(lambda name, default: getattr(args, name, default))
    options = {"threshold": args.threshold, "workers": args.workers, "block_time": args.block_time,
               "max_pairs": args.max_pairs, "max_time": args.max_time, "worker_timeout": args.worker_timeout,
               "compile_threshold": args.compile_threshold if args.compile_times else None, "compiles": args.compiles}
    return selection, options


def _run_ab(args) -> int:
    unwritable = args.save_hlo and cannot_write("--save-hlo", args.save_hlo)
    if unwritable:  # before any worker starts, not in one of them
        raise ABError(unwritable)
    selection, options = _measuring(args)
    result = run_ab(selection, {**options, "save_hlo": args.save_hlo}, args.base, args.head, args.base_python,
                    args.head_python, seed=args.seed)
    result.write(args.markdown, args.json_path, args.chart)
    print_result(result)
    return 1 if result.regressed else 0


def add_bisect_command(commands) -> None:
    """`bisect`: the first bad revision or environment (`bench.ab.bisect`)."""
    command = commands.add_parser("bisect", help="the first bad revision, or Python environment, between a good "
                                                 "and a bad one, each step an `ab` against the good one (exit 1 "
                                                 "when found, 0 when the bad one is no regression, 3 when a step "
                                                 "stays undecided)")
    sides = command.add_argument_group("the sides: two revisions of the repository here, or environments in order")
    sides.add_argument("--good", metavar="REV", help="a revision without the regression")
    sides.add_argument("--bad", metavar="REV", help="a later revision with it (default: HEAD)")
    sides.add_argument("--pythons", nargs="+", metavar="PATH", help="Python interpreters in order, the first good "
                                                                   "and the last bad (e.g. one per JAX version)")
    command.add_argument("--by", choices=list(CRITERIA), default="verdict",
                         help="what makes a candidate bad: " + "; ".join(f"{name}, {meaning}"
                                                                          for name, meaning in CRITERIA.items()))
    command.add_argument("--tries", type=_whole, default=2,
                         help="comparisons of an undecided step at most, each with twice the worker and block "
                              "pairs of the one before (default 2)")
    add_measuring_options(command)
    command.add_argument("--markdown", metavar="FILE", help="write the bisection in Markdown")
    command.add_argument("--json", metavar="FILE", dest="json_path",
                         help="write the bisection as JSON, each step with its whole comparison")


def _bisect(args) -> int:
    if args.pythons and (args.good or args.bad):
        raise ABError("give --good and --bad (revisions) or --pythons (environments), not both")
    if args.pythons:
        good, candidates = environments(args.pythons)
    elif args.good:
        good, candidates = revisions(Path.cwd(), args.good, args.bad or "HEAD")
    else:
        raise ABError("nothing to bisect: give --good REV (and --bad REV), or --pythons PATH PATH ...")
    selection, options = _measuring(args)
    if args.by == "exact":  # the exact figures come with the workers' first answer: one a side, no timing
        options = {**options, "workers": 1, "max_pairs": 1}
    if args.by == "compile":  # the step times are not asked for: one batch of blocks
        options = {**options, "compile_threshold": args.compile_threshold, "max_pairs": options["workers"]}
    print(f"bisecting {len(candidates)} candidates after {good.label}, by {args.by}")
    run = bisect(good, candidates, ab_measure(selection, options, seed=args.seed), args.by, args.tries,
                 progress=lambda line: print(line, flush=True))
    run.write(args.markdown, args.json_path)
    print(run.headline())
    return EXIT_STATUS[run.ending]


def add_gate_outputs(parser) -> None:
    """The output options every regression gate has (`regress`, `ab`)."""
    parser.add_argument("--markdown", metavar="FILE", help="write the summary in Markdown, e.g. $GITHUB_STEP_SUMMARY")
    parser.add_argument("--json", metavar="FILE", dest="json_path", help="write the verdicts as JSON")
    parser.add_argument("--chart", metavar="FILE", help="write a PNG of each benchmark's ratio with its interval")


PROG = "jaxbench"
"""The command's name in its help and errors, however it is started (`python -m jaxbench`, `python -m
reports` in a checkout)."""
DESCRIPTION = ("What jit, vmap, sharding, remat, bf16 and gradient accumulation buy on this hardware: run the "
               "benchmarks, build and compare reports, gate regressions.")
RUN_HELP = "run the benchmarks: `pytest bench` with the installed suite, from any folder (its options: run --help)"


def run_benchmarks(pytest_args: list[str]) -> int:
    """`pytest bench PYTEST_ARGS` over the suite as installed, from whatever folder this is
    (`bench.plugin.suite_arguments`); returns pytest's exit status. The folder is on the Python
    path, as `python -m pytest` puts it, so that a `--workload-module` of a project's own is found
    from its root without installing it."""
    import pytest

    from jaxbench.bench import plugin

    sys.path.insert(0, os.getcwd())
    return int(pytest.main([*plugin.suite_arguments(load_plugin=False), *pytest_args], plugins=[plugin, _RunName]))


class _RunName:
    """The name `run`'s help and usage errors give the command (pytest's own is "pytest.main()")."""

    @staticmethod
    def pytest_addoption(parser):
        parser.prog = f"{PROG} run"


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser, every command with its options."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help=RUN_HELP, add_help=False)  # its arguments go to pytest as they are
    build = commands.add_parser("build", help="a report folder from one or more results files")
    build.add_argument("results", nargs="+", help="results.json files written by `pytest bench`")
    build.add_argument("--out", required=True, help="report folder to write")
    compare = commands.add_parser("compare", help="several runs side by side")
    compare.add_argument("results", nargs="+", help="two or more results.json files")
    compare.add_argument("--out", required=True, help="folder to write the comparison into")
    compare.add_argument("--reference", nargs="?", const=str(REFERENCE_RUNS), default=None, metavar="FOLDER",
                         help="hold one run against the reference run of its kind of device, from FOLDER (default: "
                              "the committed docs/reference-runs, installed with the package): each benchmark's "
                              "speed against the reference's, and those far outside its spread")
    regression = commands.add_parser("regress", help="regression gate over two saved runs (exit 1 on a regression)")
    regression.add_argument("base", help="results.json of the base run")
    regression.add_argument("head", help="results.json of the head run")
    regression.add_argument("--threshold", type=_share, default=DEFAULT_THRESHOLD,
                            help=f"slowdown that counts as a regression (default {DEFAULT_THRESHOLD}: between two "
                                 "jobs medians move more than within one; see docs/regressions.md)")
    add_gate_outputs(regression)
    add_ab_command(commands)
    add_bisect_command(commands)
    trend = commands.add_parser("trend", help="many saved runs over commits, with the change points")
    trend.add_argument("runs", nargs="+", help="results.json files, or folders holding them")
    trend.add_argument("--out", required=True, help="folder to write trend.md, trend.csv and trend.png into")
    trend.add_argument("--min-step", type=_share, default=DEFAULT_MIN_STEP,
                       help=f"smallest lasting step in step time worth naming (default {DEFAULT_MIN_STEP})")
    exporting = commands.add_parser("export", help="a run's figures for another tool")
    exporting.add_argument("results", help="a results.json file")
    exporting.add_argument("--format", required=True, choices=FORMATS, dest="output_format")
    exporting.add_argument("--out", required=True, help="file to write")
    return parser


def commands_reference() -> str:
    """docs/commands.md: each `jaxbench` command with its arguments, defaults and help, from the
    parser itself (tests/test_command.py holds the file to it)."""
    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command")
    lines = ["# The `jaxbench` command", "",
             "Written from the parser by `bench.cli.commands_reference()`; a test holds this page to it.", "",
             f"`jaxbench run [options]`: {RUN_HELP}. Its options are `pytest bench`'s ([options](options.md)) and "
             "pytest's own.", ""]
    helps = {choice.dest: choice.help for choice in commands._choices_actions}
    for name, command in commands.choices.items():
        if name == "run":
            continue
        lines += [f"## `jaxbench {name}`", "", f"{helps[name]}.", "",
                  "| argument | default | meaning |", "|---|---|---|"]
        for action in command._actions:
            if action.option_strings == ["-h", "--help"]:
                continue
            names = ", ".join(f"`{option}`" for option in action.option_strings) or f"`{action.dest}`"
            default = "" if action.default in (None, argparse.SUPPRESS) or action.required else f"`{action.default}`"
            meaning = " ".join((action.help or "").split()).replace("|", "\\|")
            if action.choices and not isinstance(action.choices, dict):
                meaning += f" (one of {', '.join(map(str, action.choices))})"
            lines.append(f"| {names} | {default} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def _written(path) -> int:
    print(path)
    return 0


def _regress(args) -> int:
    result = regress(args.base, args.head, args.threshold)
    result.write(args.markdown, args.json_path, args.chart)
    print_result(result)
    return 1 if result.regressed else 0


COMMANDS = {
    "build": lambda args: _written(build_report(args.results, args.out)),
    "compare": lambda args: _written(compare_runs(args.results, args.out) if args.reference is None
                                     else compare_with_reference(args.results, args.out, args.reference)),
    "regress": _regress,
    "ab": _run_ab,
    "bisect": _bisect,
    "trend": lambda args: _written(write_trend(args.runs, args.out, args.min_step)),
    "export": lambda args: _written(export(args.results, args.output_format, args.out)),
}
"""Each command -> what runs it, given the parsed arguments; returns the exit status."""


def main(argv: list[str] | None = None) -> int:
    """Run the command line (the `jaxbench` console script); returns the exit status. Output piped
    into a reader that stops early (`jaxbench run --help | head`) ends it quietly, status 1."""
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:  # Python's recipe: no second error when the interpreter flushes stdout
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: list[str]) -> int:
    if argv[:1] == ["run"]:
        return run_benchmarks(argv[1:])  # pytest parses them, with the suite's options
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ResultsError, ABError, OSError) as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # workers stopped and worktrees removed on the way out
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
