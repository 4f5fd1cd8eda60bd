"""Energy per step, where the hardware counts it.

Two counters are read: NVIDIA's total-energy counter through NVML (`nvidia-ml-py`, millijoules
since the driver loaded, Volta and later) for the GPUs a run's devices are, and RAPL under
`/sys/class/powercap` (microjoules, wrapping at `max_energy_range_uj`) for a CPU's packages. A
counter is read before and after a benchmark's warm-up and timed rounds: the joules between, over
the steps run, are its energy per step, and over the seconds, its average power. RAPL counts the whole
package, whatever else runs on it; NVML counts the whole GPU. Where neither can be read (a TPU,
a CPU without readable RAPL, no `nvidia-ml-py`), the figures are None and `energy_unknown` says
why: never a 0. Read from the same counters, a benchmark's figures include what else ran on
the package or the GPU in those seconds (`energy_source` says which counters).
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")
"""Where Linux exposes RAPL's energy counters (`intel-rapl:N`, on AMD CPUs too)."""
_PACKAGE_ZONE = re.compile(r"intel-rapl:\d+")  # a package; `intel-rapl:N:M` are parts of it


@dataclass(frozen=True)
class Meter:
    """Energy counters that can be read: `read()` gives each counter's raw value, in `unit_j`
    joules, each wrapping back to 0 at its `ranges` value (0: never wraps)."""

    source: str
    read: Callable[[], tuple[int, ...]]
    ranges: tuple[int, ...]
    unit_j: float

    def joules(self, before: tuple[int, ...], after: tuple[int, ...]) -> float:
        """Joules counted between two readings (a counter that wrapped once counted on past it)."""
        return self.unit_j * sum((now - then) % wrap if wrap else now - then
                                 for then, now, wrap in zip(before, after, self.ranges))


def rapl_meter(root: Path = POWERCAP) -> Meter | str:
    """A meter of the CPU packages' RAPL counters under `root`, or why there is none."""
    zones = sorted(path for path in root.glob("intel-rapl:*") if _PACKAGE_ZONE.fullmatch(path.name))
    if not zones:
        return f"no RAPL package counters under {root}"

    def read() -> tuple[int, ...]:
        return tuple(int((zone / "energy_uj").read_text()) for zone in zones)

    try:
        ranges = tuple(int((zone / "max_energy_range_uj").read_text()) for zone in zones)
        names = [(zone / "name").read_text().strip() for zone in zones]
        read()
    except (OSError, ValueError) as error:
        hint = " (readable by root only since Linux 5.10)" if isinstance(error, PermissionError) else ""
        return f"the RAPL counters under {root} cannot be read: {error}{hint}"
    return Meter(f"RAPL: {', '.join(names)} (whole packages, other processes included)", read, ranges, 1e-6)


def nvml_indices(local_ids: list[int], visible: str | None) -> list[int | str]:
    """NVML's handles (an index, or a UUID) of the GPUs with these CUDA device ids, where
    `CUDA_VISIBLE_DEVICES` is `visible` (NVML sees every GPU; CUDA only the visible ones, renumbered)."""
    if not visible:
        return list(local_ids)
    listed = [entry.strip() for entry in visible.split(",")]
    return [int(listed[i]) if listed[i].isdigit() else listed[i] for i in local_ids]


def nvml_meter(local_ids: list[int], nvml=None) -> Meter | str:
    """A meter of the total-energy counters of the GPUs with these CUDA device ids (NVML, through
    `nvml`, default the `pynvml` module of `nvidia-ml-py`), or why there is none."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    handles = []

    def read() -> tuple[int, ...]:
        return tuple(nvml.nvmlDeviceGetTotalEnergyConsumption(handle) for handle in handles)

    try:
        nvml.nvmlInit()
        handles += [nvml.nvmlDeviceGetHandleByUUID(which) if isinstance(which, str)
                    else nvml.nvmlDeviceGetHandleByIndex(which)
                    for which in nvml_indices(local_ids, os.environ.get("CUDA_VISIBLE_DEVICES"))]
        read()
    except Exception as error:  # noqa: BLE001 - NVML's errors are its own classes; any means no counter
        return f"NVML gives no energy counter ({error})"
    return Meter(f"NVML: {len(handles)} GPU{'s' if len(handles) > 1 else ''} (whole devices)", read,
                 (0,) * len(handles), 1e-3)


@functools.cache
def meter_for(platform: str, local_ids: tuple[int, ...]) -> Meter | str:
    """This process's meter for devices of `platform` with these ids, or why there is none."""
    if platform == "gpu" or platform == "cuda":
        return nvml_meter(list(local_ids))
    if platform == "cpu":
        return rapl_meter()
    return f"no energy counter is read on a {platform}"


def meter_of(devices) -> Meter | str:
    """The meter of these JAX devices (`meter_for`)."""
    ids = tuple(device.id if device.local_hardware_id is None else device.local_hardware_id for device in devices)
    return meter_for(devices[0].platform, ids)


def unknown(reason: str) -> dict:
    """The energy figures of a benchmark that has none, and why."""
    return {"energy_j_per_step": None, "power_w": None, "energy_source": None, "energy_unknown": reason}


def measured(meter: Meter | str, run: Callable[[], int]) -> dict:
    """Run `run` (it returns how many steps it ran) and give the energy it took per step and its
    average power, read from `meter`, or None for both and why."""
    if isinstance(meter, str):
        run()
        return unknown(meter)
    before, start = meter.read(), time.perf_counter()
    steps = run()
    after, seconds = meter.read(), time.perf_counter() - start
    joules = meter.joules(before, after)
    if joules <= 0:
        return unknown(f"{meter.source} did not advance in {seconds:.2g} s")
    return {"energy_j_per_step": joules / steps, "power_w": joules / seconds, "energy_source": meter.source,
            "energy_unknown": None}
