"""What this process is, read by every layer above it: a worker or the run's own process (the
worker flag, its folder and input), how many CPU devices it makes, whether the run isolates each
benchmark, the device-memory hand-off to isolated workers, and the device count of the
multi-device benchmarks. Of `bench` it imports only `distributed` and `hardware`, which import no
more of it (`bench.workers` launches the workers and replays their results; `bench.cases` selects
the cases)."""

from __future__ import annotations

import argparse
import functools
import os
import pickle
from pathlib import Path

from jaxbench.bench import distributed, hardware

WORKER_OPTION = "--jaxbench-worker"
INPUT_FILE = "input.pkl"


def add_worker_option(addoption) -> None:
    """The hidden option that makes a `pytest bench` process a worker (`DIR`: its input and output)."""
    addoption(WORKER_OPTION, dest="jaxbench_worker", default=None, help=argparse.SUPPRESS)


def worker_folder(config) -> Path | None:
    """This process's worker folder, or None when it is not a worker."""
    folder = config.getoption("jaxbench_worker", None)
    return Path(folder) if folder else None


def process_cpu_devices(config) -> int:
    """The CPU devices this process makes: `--cpu-devices` in a worker or in one process of several
    (whose benchmarks all run in it), one otherwise."""
    return config.getoption("cpu_devices") if worker_folder(config) or distributed.requested(config) else 1


def isolating(config) -> bool:
    """Whether this run measures each benchmark in a fresh process of its own (`--isolate`)."""
    return bool(config.getoption("isolate", False)) and worker_folder(config) is None


def leave_device_memory_to_workers(config, environ=os.environ) -> None:
    """With `--isolate`, before JAX starts: turn off JAX's preallocation of 75% of a GPU's memory
    in this process (which only measures matmul rates) and, inherited, in its workers, so that each
    benchmark's process gets the memory it needs; unless the user chose
    `XLA_PYTHON_CLIENT_PREALLOCATE` themselves."""
    if isolating(config):
        environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def multi_device_count(config) -> int:
    """How many devices this run's multi-device benchmarks get: `--cpu-devices` where they run in
    a worker (`worker_config_for`), else every device this process sees."""
    import jax

    devices, wanted = jax.devices(), config.getoption("cpu_devices")
    if worker_folder(config) or devices[0].platform != "cpu" or wanted < 2 or len(devices) >= wanted:
        return len(devices)
    return wanted


def process_peak_info(config) -> dict:
    """`{"peak_bytes_in_use": bytes}` for a benchmark measured in a process of its own (`--isolate`),
    the peak of its devices' allocators (`bench.hardware.peak_bytes_in_use`; None on a CPU), read
    after the timed step's first call and before its reference is computed (`bench.test_steps`),
    so that it is the step's own; empty elsewhere, where the peak cannot be reset and would
    include the benchmarks before it."""
    folder = worker_folder(config)
    if folder is None or not read_input(folder).get("isolated"):
        return {}
    import jax

    return {"peak_bytes_in_use": hardware.peak_bytes_in_use(jax.local_devices())}


@functools.cache
def read_input(folder: Path) -> dict:
    """A worker's input (`run_worker` writes it once, before the worker starts): the case ids to
    run, the run's in-run matmul rates, the initial states handed over, whether it is isolated, the
    report folder. Read once per process: its callers (collection, fixtures, each benchmark's
    `process_peak_info`) would otherwise unpickle the handed-over model states again each time."""
    return pickle.loads((folder / INPUT_FILE).read_bytes())
