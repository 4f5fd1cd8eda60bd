"""A run over several processes (hosts): `jax.distributed` set up before any device is touched,
and what the processes then agree on.

A `pytest bench` process is one of several when the user passes `--coordinator HOST:PORT
--num-processes N --process-id I`, or when a cluster launcher started it (SLURM's `srun`, Open
MPI's `mpirun`), which JAX's own cluster detection reads. Every process then runs the same
benchmarks in the same order over the global mesh of every process's devices; only process 0
writes `results.json` and the report.

A process that is gone must not leave the others waiting for ever: initialisation times out after
`--distributed-timeout` seconds, and `watch_peers` ends a survivor with one line that names the
process that stopped answering, half that after its last heartbeat. JAX's own heartbeat check,
which aborts a process (a C++ abort and a stack trace, which name nothing), is the backstop, at
twice the timeout (`JAX_HEARTBEAT_FACTOR`).
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
import threading
import time

import numpy as np
import pytest

CLUSTERS = {"SLURM": "SLURM_NTASKS", "Open MPI": "OMPI_COMM_WORLD_SIZE"}
"""Cluster launchers JAX detects by itself -> the environment variable that holds their process count."""
OPTIONS = ("coordinator", "num_processes", "process_id")
DEFAULT_TIMEOUT_S = 120
"""Seconds JAX waits for every process to join; `watch_peers` ends a process whose peer has not
beaten for half of it."""
JAX_HEARTBEAT_FACTOR = 2
"""JAX's heartbeat timeout, in `--distributed-timeout`s. JAX beats at an interval of its own within
its timeout, so at one timeout it may flag a killed peer about when `watch_peers` does (half a
timeout) and abort the survivor first, as one CI run saw; at two, `watch_peers` has room."""


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
                                   initialization_timeout=timeout,
                                   heartbeat_timeout_seconds=JAX_HEARTBEAT_FACTOR * timeout)
    except Exception as error:  # JAX raises XlaRuntimeError / RuntimeError / ValueError here
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise pytest.UsageError(f"jax.distributed could not start ({where}, timeout {timeout} s): {first}") from None
    plugins = config.pluginmanager
    _CAPTURE[:] = [plugins.getplugin("capturemanager")] if plugins.has_plugin("capturemanager") else []
    watch_peers(timeout)


HEARTBEAT_KEY = "jaxbench/alive/"
"""Where each process counts its heartbeats in the coordinator's key-value store (`watch_peers`):
"COUNT" while it runs, "leaving COUNT" while it waits for the others to finish, "left" after."""
LEAVING, LEFT = "leaving", "left"
_LEAVING = threading.Event()  # set: this process is leaving (`leave`), and waits for the others to leave too


def watch_peers(timeout_s: float) -> None:
    """In a run of several processes: a daemon thread that counts this process's heartbeats in the
    coordinator's key-value store every `timeout_s / 10` s and reads the others'. A peer whose count
    has not moved for half of `timeout_s` (well before JAX's own heartbeat check aborts this
    process: `JAX_HEARTBEAT_FACTOR`), or a coordinator that stopped answering, ends this process
    at once with one line on stderr and exit status 3.

    The watch lasts until every process is leaving: as this one exits, `leave` marks it so and
    waits, still beating, until every peer is leaving too (process 0 may still be writing the
    report). So the processes reach JAX's shutdown barrier together, and a peer that dies after
    its benchmarks (which would fail that barrier in a C++ abort) is named in one line too. No
    wait is endless: a peer that has not finished `timeout_s` after this process (stuck in a
    collective this one never joined, say, after a failure in one process only) ends this one
    with one line, whereupon the peer misses its heartbeats and ends too."""
    if not is_multi_process():
        return
    import jax
    from jax._src.distributed import global_state  # JAX's client of the coordinator (no public accessor)

    client, me, count = global_state.client, jax.process_index(), jax.process_count()

    def watch():
        beats, seen, changed = 0, {}, {peer: time.monotonic() for peer in range(count) if peer != me}
        left_at = None  # when this process began to leave
        while True:
            if _LEAVING.is_set():
                time.sleep(min(0.5, timeout_s / 10))
            else:
                _LEAVING.wait(timeout_s / 10)
            beats += 1
            now = time.monotonic()
            if _LEAVING.is_set() and left_at is None:
                left_at = now
            try:
                client.key_value_set(f"{HEARTBEAT_KEY}{me}", f"{LEAVING} {beats}" if left_at else str(beats),
                                     allow_overwrite=True)
                values = {key.rsplit("/", 1)[-1]: value for key, value in client.key_value_dir_get(HEARTBEAT_KEY)}
                states = {peer: values.get(str(peer), "") for peer in changed}
                if left_at and all(state.startswith((LEAVING, LEFT)) for state in states.values()):
                    # everyone is leaving: on to JAX's shutdown barrier together
                    client.key_value_set(f"{HEARTBEAT_KEY}{me}", LEFT, allow_overwrite=True)
                    return
            except Exception as error:  # the coordinator (process 0's service) is gone
                _end(f"the coordinator stopped answering ({str(error).strip().splitlines()[0][:200]}): process 0 "
                     f"of {count} is probably gone; this run cannot go on")
            if left_at and now - left_at > timeout_s:
                # a peer stuck (in a collective this process never joined) or still busy: neither
                # may wait for the other for ever
                busy = [peer for peer, state in states.items() if not state.startswith((LEAVING, LEFT))]
                _end(f"process {', '.join(map(str, busy))} of {count} had not finished {timeout_s:g} s after "
                     f"this one (--distributed-timeout); this run cannot end cleanly")
            # (a peer marks itself LEFT only once every process is leaving, which returned above)
            for peer, state in states.items():
                if state != seen.get(peer):
                    seen[peer], changed[peer] = state, now
                elif now - changed[peer] > timeout_s / 2:
                    _end(f"process {peer} of {count} stopped answering (no heartbeat for {timeout_s / 2:g} s, "
                         f"--distributed-timeout {timeout_s:g}); this run cannot go on")

    watcher = threading.Thread(target=watch, name="jaxbench-watch-peers", daemon=True)
    watcher.start()
    # JAX's own atexit function (registered as jax was imported, so run after this one) shuts its
    # client down in a barrier of every process.
    atexit.register(leave, watcher)


def leave(watcher: threading.Thread) -> None:
    """As this process exits: mark it leaving, and wait until every peer is leaving too (or
    `watch_peers` has ended this process for a peer that stopped answering)."""
    _LEAVING.set()
    watcher.join()


_CAPTURE: list = []  # pytest's capture manager, whose capture must be suspended for `_end`'s line
_AT_END: list = []  # what `_end` does before the process exits (`at_end`)


def at_end(cleanup) -> None:
    """Have `cleanup()` called if a peer's end ends this process too (`_end` exits at once, past
    atexit and pytest's own ends)."""
    _AT_END.append(cleanup)


def _end(message: str) -> None:
    """One line on the terminal's stderr (pytest's capture suspended), the `at_end` cleanups, and
    exit status 3 at once (the main thread may be stuck in a collective that never returns)."""
    if _CAPTURE:
        _CAPTURE[0].suspend_global_capture(in_=False)
    sys.stderr.write(f"\njaxbench: {message}\n")
    sys.stderr.flush()
    for cleanup in _AT_END:
        cleanup()
    os._exit(3)


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
