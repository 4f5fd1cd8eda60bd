"""Measuring helpers: how many rounds to time, the device's matmul peak, the run's environment."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from importlib import metadata

import jax
import jax.numpy as jnp
import pytest

from workloads.compat import is_out_of_memory
from workloads.variants import NotApplicable

MAX_ROUNDS = 10_000


@contextlib.contextmanager
def out_of_memory_is_a_skip(case_id: str):
    """Turn a device out-of-memory error into a skip whose reason starts "out of memory", so the
    run records it (the results' `skipped`) and goes on to the next benchmark."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - re-raised unless it is an out-of-memory error
        if not is_out_of_memory(error):
            raise
        pytest.skip(f"out of memory on {case_id}: {str(error).splitlines()[0][:300]}")


@contextlib.contextmanager
def not_applicable_is_a_skip():
    """Turn `NotApplicable` (a variant that cannot run for this workload, size or device set) into
    a skip with its reason."""
    try:
        yield
    except NotApplicable as reason:
        pytest.skip(str(reason))


def seconds_of(call) -> float:
    """Wall-clock seconds of one `call()` (which must block until its work is done)."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def timing_plan(step_s: float, max_time_s: float, min_rounds: int) -> tuple[int, int]:
    """(warm-up rounds, timed rounds) for a step of about `step_s` seconds.

    Timed rounds fill about `max_time_s` (pytest-benchmark's `--benchmark-max-time`), never
    fewer than `min_rounds` (`--benchmark-min-rounds`); warm-up fills a tenth of that, at least
    one round.
    """
    step_s = max(step_s, 1e-7)
    rounds = min(MAX_ROUNDS, max(min_rounds, math.ceil(max_time_s / step_s)))
    warmup = min(MAX_ROUNDS, max(1, math.ceil(0.1 * max_time_s / step_s)))
    return warmup, rounds


def matmul_peak_flops(device=None, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` float32 matmuls on `device` (a stand-in for its peak).

    2048 x 2048 on a CPU (about 0.1 s on two cores), 8192 x 8192 on an accelerator.
    """
    device = device or jax.devices()[0]
    n = 2048 if device.platform == "cpu" else 8192
    keys = jax.random.split(jax.random.key(0))
    a, b = (jax.device_put(jax.random.normal(k, (n, n), jnp.float32), device) for k in keys)
    matmul = jax.jit(jnp.matmul).lower(a, b).compile()
    matmul(a, b).block_until_ready()
    best = min(seconds_of(lambda: matmul(a, b).block_until_ready()) for _ in range(repeats))
    return 2.0 * n**3 / best


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """Where this run measures: platform, devices, library versions, host."""
    devices = jax.devices()
    platform_name = devices[0].platform
    return {
        "platform": platform_name,
        "device_kind": devices[0].device_kind,
        "n_devices_available": len(devices),
        # Virtual CPU devices are partitions of one host: they share its cores.
        "devices_share_host_cores": platform_name == "cpu" and len(devices) > 1,
        "host_cores": os.cpu_count(),
        "cpu_model": platform.processor() or platform.machine(),
        "jax_version": jax.__version__,
        "jaxlib_version": _version("jaxlib"),
        "flax_version": _version("flax"),
        "optax_version": _version("optax"),
        "python_version": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
