"""`python -m reports ...`: the suite's command line (`bench.cli`), under the name it has always had.
The one module of `reports` that imports `bench`: it is an entry point, not a part of the reports."""

import sys

from jaxbench.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
