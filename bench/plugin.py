"""`pytest bench`'s pytest plugin: its command-line options and the set-up that must happen before
JAX starts.

Loaded by the root `conftest.py` in a checkout (`pytest bench`, `pytest tests`) and by
`jaxbench run` (`-p jaxbench.bench.plugin`) wherever the suite is installed.
"""

from __future__ import annotations

import os
from pathlib import Path

SUITE = Path(__file__).resolve().parent
"""The folder of the suite's benchmarks (`bench`), in a checkout or as installed."""


def suite_arguments(load_plugin: bool = True) -> list[str]:
    """pytest's arguments that run the suite's benchmarks (`SUITE`) with this plugin from any
    folder, reading nothing of that folder's own pytest set-up: no configuration file (`-c` the
    null device), no conftest.py above the suite (`--confcutdir`), no cache written. The worker
    processes of a run start pytest with them; `jaxbench run`, which has imported this module
    already, hands it to `pytest.main` itself (`load_plugin=False`: no `-p` for it, which would
    have pytest warn that it cannot rewrite the asserts of a module already imported)."""
    plugin = ["-p", "jaxbench.bench.plugin"] if load_plugin else []
    return ["-c", os.devnull, "--rootdir", str(SUITE), "--confcutdir", str(SUITE), *plugin,
            "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning", str(SUITE)]


def pytest_addoption(parser):
    """`pytest bench`'s options (`bench.options`), under "jaxbench" in `pytest --help`."""
    from jaxbench.bench.options import add_run_options, add_selection_options

    group = parser.getgroup("jaxbench", "jaxbench: what to measure and where to write it")
    add_selection_options(group.addoption)
    add_run_options(group.addoption)


def pytest_configure(config):
    """Create the virtual CPU devices before anything starts a JAX backend (`pytest tests` gets
    `--cpu-devices`; `pytest bench` itself runs with one and starts workers for multi-device
    benchmarks: bench/conftest.py)."""
    import jax

    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return  # the user chose the count through XLA_FLAGS; setting both is an error in JAX
    jax.config.update("jax_num_cpu_devices", config.getoption("cpu_devices"))


def pytest_report_header(config):
    """The JAX stack under test and what it runs on, in pytest's header; a warning where JAX sees
    only a CPU on a machine that shows a GPU or a TPU (`bench.hardware.wrong_build_warning`)."""
    from importlib.metadata import version

    import jax

    from jaxbench.bench import hardware

    devices = jax.devices()
    lines = [f"jaxbench: jax {version('jax')}, flax {version('flax')}, optax {version('optax')}",
             hardware.platform_line(devices, jax.default_backend())]
    warning = hardware.wrong_build_warning(devices[0].platform, hardware.visible_accelerators())
    return lines + ([warning] if warning else [])
