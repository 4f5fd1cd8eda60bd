"""Measuring helpers: how many rounds to time, the device's matmul rates, the run's environment."""

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

from jaxbench.bench import hardware
from jaxbench.workloads.compat import is_out_of_memory
from jaxbench.workloads.contract import NotApplicable

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


def record_rounds(benchmark, rounds: list[float], how: str) -> None:
    """Record `rounds` (seconds each, timed other than by `benchmark.pedantic`: in a worker, or
    extrapolated from part of a batch) as `benchmark`'s timed rounds, in pytest-benchmark's
    session like rounds it timed itself; `how` says how they were timed.

    pytest-benchmark has no public way to record rounds timed elsewhere. `_make_stats` is what
    `benchmark.pedantic` itself calls before it times its rounds, and `_mode` is what it sets to
    say the fixture was used (otherwise it warns that it was not). This is the one place the suite
    reaches into the fixture."""
    benchmark._mode = how
    stats = benchmark._make_stats(1)
    for seconds in rounds:
        stats.update(seconds)


LONG_STEP_S = 0.5
"""A step at least this long (an eager baseline takes seconds) is timed for at most
`--long-step-rounds` rounds."""
LONG_STEP_BUDGET_S = 6.0
"""Timed seconds a long step's rounds may fill before it gets fewer rounds, never under two."""


def warm_step_seconds(call, first_s: float) -> float:
    """Seconds of one warm `call()`, to size the timing plan, given `first_s`, the time of the first
    (correctness) call. A first call of twice `LONG_STEP_S` or more is taken as it is: the step is
    long whatever its warm time, and the first call has warmed it (compiled the eager ops), so no
    step of seconds is run only to be measured."""
    return first_s if first_s >= 2 * LONG_STEP_S else seconds_of(call)


def timing_plan(step_s: float, max_time_s: float, min_rounds: int, long_step_rounds: int = 3) -> tuple[int, int]:
    """(warm-up rounds, timed rounds) for a step of about `step_s` seconds (`warm_step_seconds`).

    Timed rounds fill about `max_time_s` (pytest-benchmark's `--benchmark-max-time`), never
    fewer than `min_rounds` (`--benchmark-min-rounds`). A step of `LONG_STEP_S` or more gets
    `long_step_rounds`, or as many as fill `LONG_STEP_BUDGET_S` if that is fewer, never under two:
    each round costs seconds, eager steps vary little from round to round, and
    the report gives their spread. Warm-up fills a tenth of `max_time_s`, less the warm step
    already run to size the plan; the correctness step before it was the first warm-up.
    """
    step_s = max(step_s, 1e-7)
    if step_s >= LONG_STEP_S:
        return 0, max(2, min(long_step_rounds, math.ceil(LONG_STEP_BUDGET_S / step_s)))
    rounds = min(MAX_ROUNDS, max(min_rounds, math.ceil(max_time_s / step_s)))
    warmup = min(MAX_ROUNDS, math.ceil(0.1 * max_time_s / step_s) - 1)
    return warmup, rounds


def timing_plan_for(config, step_s: float) -> tuple[int, int]:
    """`timing_plan` with this run's options (`--benchmark-max-time`, `--benchmark-min-rounds`,
    `--long-step-rounds`)."""
    return timing_plan(step_s, max_time_s=float(config.getoption("benchmark_max_time")),
                       min_rounds=int(config.getoption("benchmark_min_rounds")),
                       long_step_rounds=int(config.getoption("long_step_rounds")))


def matmul_rate(dtype: str = "float32", device=None, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` `dtype` matmuls on `device` at JAX's default precision: the
    in-run rate a step computing in `dtype` is measured against (its MFU's denominator).

    2048 x 2048 on a CPU (about 0.1 s on two cores in float32), 8192 x 8192 on an accelerator.
    """
    device = device or jax.devices()[0]
    n = 2048 if device.platform == "cpu" else 8192
    keys = jax.random.split(jax.random.key(0))
    a, b = (jax.device_put(jax.random.normal(k, (n, n), jnp.dtype(dtype)), device) for k in keys)
    matmul = jax.jit(jnp.matmul).lower(a, b).compile()
    matmul(a, b).block_until_ready()
    best = min(seconds_of(lambda: matmul(a, b).block_until_ready()) for _ in range(repeats))
    return 2.0 * n**3 / best


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(cpu_devices: int | None = None) -> dict:
    """Where this run measures: platform, devices, library versions, host.

    `cpu_devices`: on a CPU, the virtual devices the run's multi-device benchmarks get (in a worker
    process, `bench.workers`), which may be more than this process has (one).
    """
    devices = jax.devices()
    platform_name = devices[0].platform
    available = max(len(devices), cpu_devices or 0) if platform_name == "cpu" else len(devices)
    return {
        "platform": platform_name,
        "device_kind": devices[0].device_kind,
        "n_devices_available": available,
        "n_devices_in_process": len(jax.local_devices()),  # of all the processes' devices, this one's
        # Virtual CPU devices are partitions of one host: they share its cores.
        "devices_share_host_cores": platform_name == "cpu" and available > 1,
        "host_cores": os.cpu_count(),
        "cpu_model": platform.processor() or platform.machine(),
        "jax_version": jax.__version__,
        "jaxlib_version": _version("jaxlib"),
        "flax_version": _version("flax"),
        "optax_version": _version("optax"),
        "python_version": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "matmul_precision": jax.config.jax_default_matmul_precision,
        "float32_matmul_arithmetic": hardware.device_float32_arithmetic(devices[0]),
    }
