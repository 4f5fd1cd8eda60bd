"""`python -m jaxbench ...`: the `jaxbench` command (`jaxbench.bench.cli`)."""

import sys

from jaxbench.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
