"""Energy per step (`bench/energy.py`): RAPL and NVML read with the platform simulated, and
unknown, with the reason, where neither counts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from jaxbench.bench import energy
from jaxbench.reports.summary import ENERGY, POWER, summary_table

pytestmark = pytest.mark.version_independent  # file and library reads, no JAX


def powercap(root, zones: dict[str, tuple[str, int, int]]):
    """A simulated /sys/class/powercap: zone folder -> (name, energy_uj, max_energy_range_uj)."""
    for folder, (name, energy_uj, wrap) in zones.items():
        zone = root / folder
        zone.mkdir(parents=True)
        (zone / "name").write_text(name + "\n")
        (zone / "energy_uj").write_text(f"{energy_uj}\n")
        (zone / "max_energy_range_uj").write_text(f"{wrap}\n")


def set_energy(root, folder: str, energy_uj: int) -> None:
    (root / folder / "energy_uj").write_text(f"{energy_uj}\n")


def test_rapl_sums_the_packages_and_counts_on_past_a_wrap(tmp_path):
    powercap(tmp_path, {"intel-rapl:0": ("package-0", 900_000_000, 1_000_000_000),
                        "intel-rapl:1": ("package-1", 5_000_000, 1_000_000_000),
                        "intel-rapl:0:0": ("core", 1, 1_000_000_000)})  # part of package 0: not counted twice
    meter = energy.rapl_meter(tmp_path)
    assert meter.source.startswith("RAPL: package-0, package-1")

    def run() -> int:  # 4 steps: package 0 wraps (+150 J), package 1 counts 50 J
        set_energy(tmp_path, "intel-rapl:0", 50_000_000)
        set_energy(tmp_path, "intel-rapl:1", 55_000_000)
        set_energy(tmp_path, "intel-rapl:0:0", 999)
        return 4

    figures = energy.measured(meter, run)
    assert figures["energy_j_per_step"] == pytest.approx(200 / 4)
    assert figures["power_w"] > 0 and figures["energy_unknown"] is None
    assert figures["energy_source"] == meter.source


def test_rapl_unreadable_or_absent_is_unknown_with_the_reason(tmp_path):
    assert energy.rapl_meter(tmp_path) == f"no RAPL package counters under {tmp_path}"
    powercap(tmp_path, {"intel-rapl:0": ("package-0", 1, 10)})
    (tmp_path / "intel-rapl:0" / "energy_uj").unlink()  # unreadable (a root-only file is, but not to root)
    reason = energy.rapl_meter(tmp_path)
    assert isinstance(reason, str) and "cannot be read" in reason
    ran = []
    assert energy.measured(reason, lambda: ran.append(1) or 1) == {
        "energy_j_per_step": None, "power_w": None, "energy_source": None, "energy_unknown": reason}
    assert ran == [1]  # the benchmark still runs


class FakeNVML:
    """`pynvml`'s calls the meter makes, over GPUs whose counters (millijoules) a test sets."""

    def __init__(self, counters: dict):
        self.counters = counters

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return uuid

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if handle not in self.counters:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return self.counters[handle]


def test_nvml_reads_the_gpus_the_run_is_on(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    nvml = FakeNVML({0: 0, 1: 0, 2: 1_000, 3: 2_000})
    meter = energy.nvml_meter([0, 1], nvml)  # CUDA's devices 0 and 1 are NVML's 2 and 3
    assert meter.source == "NVML: 2 GPUs (whole devices)"

    def run() -> int:
        nvml.counters.update({0: 10**9, 2: 301_000, 3: 302_000})  # GPU 0 is not the run's
        return 3

    assert energy.measured(meter, run)["energy_j_per_step"] == pytest.approx(600 / 3)


def test_nvml_absent_or_unsupported_is_unknown_with_the_reason(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert "NVML gives no energy counter (NVML_ERROR_NOT_SUPPORTED)" == energy.nvml_meter([5], FakeNVML({0: 1}))
    assert energy.nvml_indices([0, 1], "GPU-aaa,GPU-bbb") == ["GPU-aaa", "GPU-bbb"]
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)  # not installed
    assert energy.nvml_meter([0]) == "nvidia-ml-py is not installed (pip install nvidia-ml-py)"


def test_a_counter_that_did_not_move_is_unknown_not_zero(tmp_path):
    powercap(tmp_path, {"intel-rapl:0": ("package-0", 7, 10**9)})
    figures = energy.measured(energy.rapl_meter(tmp_path), lambda: 1)
    assert figures["energy_j_per_step"] is None and "did not advance" in figures["energy_unknown"]


def test_a_platform_without_counters_says_so():
    assert energy.meter_for("tpu", (0,)) == "no energy counter is read on a tpu"
    devices = [SimpleNamespace(id=9, local_hardware_id=None, platform="tpu")]
    assert energy.meter_of(devices) == "no energy counter is read on a tpu"


def test_the_summary_shows_energy_only_where_a_row_has_it(saved_run):
    results = saved_run["results"]
    assert ENERGY not in summary_table(results) and POWER not in summary_table(results)
    counted = {**results, "benchmarks": [
        {**bench, "extra_info": {**bench["extra_info"], "energy_j_per_step": 0.5, "power_w": 40.0}}
        for bench in results["benchmarks"]]}
    table = summary_table(counted)
    assert (table[ENERGY] == 0.5).all() and (table[POWER] == 40.0).all()
