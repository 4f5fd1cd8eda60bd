"""Command line: `python -m reports build RESULTS.json [...] --out DIR` and
`python -m reports compare A.json B.json [...] --out DIR`.

Bad input (a missing file, not JSON, not this suite's results, nothing in common) is one line
on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from reports.build import build_report
from reports.compare import compare_runs
from reports.results import ResultsError


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
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            written = build_report(args.results, args.out)
        else:
            written = compare_runs(args.results, args.out)
    except (ResultsError, OSError) as error:
        print(f"python -m reports {args.command}: error: {error}", file=sys.stderr)
        return 2
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
