"""A run over several processes (hosts): `jax.distributed` set up before any device is touched,
and what the processes then agree on.

A `pytest bench` process is one of several when the user passes `--coordinator HOST:PORT
--num-processes N --process-id I`, or when a cluster launcher started it (SLURM's `srun`, Open
MPI's `mpirun`), which JAX's own cluster detection reads. Every process then runs the same
benchmarks in the same order over the global mesh of every process's devices; only process 0
writes `results.json` and the report.

A process that is gone must not leave the others waiting for ever: initialisation and JAX's
heartbeats both time out after `--distributed-timeout` seconds, and the survivors end with an
error then.
"""

from __future__ import annotations

import os
import socket
import time

import numpy as np
import pytest

CLUSTERS = {"SLURM": "SLURM_NTASKS", "Open MPI": "OMPI_COMM_WORLD_SIZE"}
"""Cluster launchers JAX detects by itself -> the environment variable that holds their process count."""
OPTIONS = ("coordinator", "num_processes", "process_id")
DEFAULT_TIMEOUT_S = 120
"""Seconds JAX waits for every process to join, and for a heartbeat of a running one."""


def detected_cluster() -> str | None:
    """The cluster launcher that started this process as one of several, or None."""
    return next((name for name, variable in CLUSTERS.items() if int(os.environ.get(variable, "1")) > 1), None)


def requested(config) -> bool:
    """Whether this run is one process of several (given on the command line or by a launcher)."""
    return bool(config.getoption("coordinator") or detected_cluster())


def initialize(config) -> None:
    """Call `jax.distributed.initialize` when the run is one process of several; before it, the
    process's CPU device count must be set, after it nothing may have touched a device. A failure
    (a coordinator that is not there, a process that never joins) is a one-line usage error
    within the timeout."""
    given = {name: config.getoption(name) for name in OPTIONS}
    missing = [f"--{name.replace('_', '-')}" for name, value in given.items() if value is None]
    if given["coordinator"] is None and not detected_cluster():
        if len(missing) < len(OPTIONS):
            raise pytest.UsageError("--num-processes and --process-id need --coordinator HOST:PORT")
        return
    if given["coordinator"] is not None and missing:
        raise pytest.UsageError(f"--coordinator needs {' and '.join(missing)} too")
    import jax

    timeout = config.getoption("distributed_timeout")
    where = (f"coordinator {given['coordinator']}, process {given['process_id']} of {given['num_processes']}"
             if given["coordinator"] else f"cluster detected: {detected_cluster()}")
    if given["coordinator"] and given["process_id"] != 0 and not _answers(given["coordinator"], timeout):
        # JAX itself would abort the process (a C++ fatal error and a stack trace) after its timeout.
        raise pytest.UsageError(f"no coordinator answers at {given['coordinator']} after {timeout} s ({where}); "
                                "start process 0 first, or check --coordinator HOST:PORT")
    try:
        jax.distributed.initialize(given["coordinator"], given["num_processes"], given["process_id"],
                                   initialization_timeout=timeout, heartbeat_timeout_seconds=timeout)
    except Exception as error:  # JAX raises XlaRuntimeError / RuntimeError / ValueError here
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise pytest.UsageError(f"jax.distributed could not start ({where}, timeout {timeout} s): {first}") from None


def _answers(address: str, timeout_s: float) -> bool:
    """Whether something accepts TCP connections at `address` (HOST:PORT) within `timeout_s`."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise pytest.UsageError(f"--coordinator {address!r} is not HOST:PORT")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=1):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)


def is_multi_process() -> bool:
    """Whether this process is one of several (after `initialize`)."""
    import jax

    return jax.process_count() > 1


def is_main_process() -> bool:
    """Whether this process writes the run's results and report: process 0, or the only one."""
    import jax

    return jax.process_index() == 0


def to_host(tree):
    """`tree` with every array copied to the host as NumPy; an array spread over several processes
    is gathered from all of them (a collective: every process calls it at the same point)."""
    import jax
    from jax.experimental import multihost_utils

    def host(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return jax.device_get(leaf)

    return jax.tree.map(host, tree)


def agreed(values: tuple[float, ...]) -> tuple[float, ...]:
    """Process 0's `values` (numbers) on every process, so that all make the same decisions about
    a step over the global mesh (how many times to call it); `values` itself in a run of one process."""
    if not is_multi_process():
        return values
    from jax.experimental import multihost_utils

    shared = multihost_utils.broadcast_one_to_all(np.asarray(values, np.float64))
    return tuple(type(value)(shared_value) for value, shared_value in zip(values, np.asarray(shared).tolist()))


def hosts() -> list[str]:
    """Each process's host name, in process order (a collective in a run of several processes)."""
    name = socket.gethostname()
    if not is_multi_process():
        return [name]
    from jax.experimental import multihost_utils

    encoded = np.frombuffer(name.encode()[:255].ljust(256, b"\0"), np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(encoded)).reshape(-1, 256)
    return [bytes(row).rstrip(b"\0").decode() for row in gathered]
