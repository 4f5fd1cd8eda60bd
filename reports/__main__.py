"""Command line: `python -m reports build RESULTS.json [...] --out DIR`,
`python -m reports compare A.json B.json [...] --out DIR`,
`python -m reports regress BASE.json HEAD.json` (exit 1 on a regression) and
`python -m reports export RESULTS.json --format github-action-benchmark --out FILE`.

Bad input (a missing file, not JSON, not this suite's results, nothing in common) is one line
on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from reports.build import build_report
from reports.compare import compare_runs
from reports.export import FORMATS, export
from reports.gate import print_result
from reports.regress import DEFAULT_THRESHOLD, regress
from reports.results import ResultsError


def _share(text: str) -> float:
    """An argparse type: a share between 0 and 1 exclusive, e.g. 0.05 for 5%."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share between 0 and 1 (e.g. 0.05 for 5%)")
    return value


def add_gate_outputs(parser) -> None:
    """The output options every regression gate has (`regress`, `ab`)."""
    parser.add_argument("--markdown", metavar="FILE", help="write the summary in Markdown, e.g. $GITHUB_STEP_SUMMARY")
    parser.add_argument("--json", metavar="FILE", dest="json_path", help="write the verdicts as JSON")
    parser.add_argument("--chart", metavar="FILE", help="write a PNG of each benchmark's ratio with its interval")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m reports", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="a report folder from one or more results files")
    build.add_argument("results", nargs="+", help="results.json files written by `pytest bench`")
    build.add_argument("--out", required=True, help="report folder to write")
    compare = commands.add_parser("compare", help="several runs side by side")
    compare.add_argument("results", nargs="+", help="two or more results.json files")
    compare.add_argument("--out", required=True, help="folder to write the comparison into")
    regression = commands.add_parser("regress", help="regression gate over two saved runs (exit 1 on a regression)")
    regression.add_argument("base", help="results.json of the base run")
    regression.add_argument("head", help="results.json of the head run")
    regression.add_argument("--threshold", type=_share, default=DEFAULT_THRESHOLD,
                            help=f"slowdown that counts as a regression (default {DEFAULT_THRESHOLD}: between two "
                                 "jobs medians move more than within one; see the README)")
    add_gate_outputs(regression)
    exporting = commands.add_parser("export", help="a run's figures for another tool")
    exporting.add_argument("results", help="a results.json file")
    exporting.add_argument("--format", required=True, choices=FORMATS, dest="output_format")
    exporting.add_argument("--out", required=True, help="file to write")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            written = build_report(args.results, args.out)
        elif args.command == "compare":
            written = compare_runs(args.results, args.out)
        elif args.command == "export":
            written = export(args.results, args.output_format, args.out)
        else:
            result = regress(args.base, args.head, args.threshold)
            result.write(args.markdown, args.json_path, args.chart)
            print_result(result)
            return 1 if result.regressed else 0
    except (ResultsError, OSError) as error:
        print(f"python -m reports {args.command}: error: {error}", file=sys.stderr)
        return 2
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
