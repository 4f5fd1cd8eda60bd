"""A test-only plugin (`-p tests.planted_at_end`): each process of a run makes a folder of its own
in its TMPDIR, `AT_END_PREFIX` and its process id, and has `distributed.at_end` remove it: the
cleanup a process ended by its peers' end still does (a run's own compilation cache, on an
accelerator, is removed so). A run of several processes on CPU keeps no compilation cache
(`bench.session.NO_CACHE_ACROSS_CPU_PROCESSES`), so this folder stands in for it."""

import shutil
import tempfile
from pathlib import Path

AT_END_PREFIX = "jaxbench-test-at-end-"


def pytest_configure(config):
    """The folder, and its removal at a peer's end."""
    import os

    from jaxbench.bench import distributed

    folder = Path(tempfile.gettempdir()) / f"{AT_END_PREFIX}{os.getpid()}"
    folder.mkdir()
    distributed.at_end(lambda: shutil.rmtree(folder, ignore_errors=True))
