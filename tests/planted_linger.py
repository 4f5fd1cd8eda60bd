"""A test-only plugin (`-p tests.planted_linger`): in a run of several processes, process 0 stays
busy for `JAXBENCH_TEST_LINGER_S` seconds after its session, as if it wrote a long report, while
the others have finished their benchmarks and wait for it to leave (`distributed.leave`)."""

import os
import time


def pytest_unconfigure(config):
    """Process 0 lingers; the others go on at once."""
    import jax

    if jax.process_index() == 0:
        time.sleep(float(os.environ["JAXBENCH_TEST_LINGER_S"]))
