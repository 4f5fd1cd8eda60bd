"""The GPU and TPU logic, tested on a CPU with the platform passed in: float32 matmul arithmetic,
datasheet peaks, MFU per compute dtype, and checks that hold under TF32 rounding."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import jax
import pytest

from jaxbench.bench import hardware
from jaxbench.bench.cases import Case
from jaxbench.bench.correctness import IncorrectResult, check_against_baseline
from jaxbench.bench.metadata import step_extra_info
from jaxbench.bench.references import References
from jaxbench.workloads import get_workload, transforms
from jaxbench.workloads.steps import build_reference_step, build_step
from tests.conftest import FAST_TIMING, ROOT, run_pytest
from tests.planted_faults import FAULT_VARIABLE, flip_sign_under_jit, tf32_under_default_precision

H100 = "NVIDIA H100 80GB HBM3"


@pytest.mark.parametrize(("platform", "capability", "precision", "arithmetic"), [
    ("cpu", None, None, "fp32"),
    ("cpu", None, "bfloat16", "fp32"),  # XLA:CPU ignores the setting
    ("gpu", "9.0", None, "tf32"),  # Hopper
    ("gpu", "8.0", "default", "tf32"),  # Ampere
    ("gpu", "7.0", None, "fp32"),  # Volta has no TF32
    ("gpu", "9.0", "highest", "fp32"),
    ("gpu", None, None, "tf32"),  # unreadable: assume rounded, never exact
    ("gpu", "gfx90a", None, "tf32"),  # ROCm names its architectures
    ("tpu", None, None, "bf16"),
    ("tpu", None, "high", "bf16_3x"),
    ("tpu", None, "highest", "bf16_6x"),
])
def test_float32_matmul_arithmetic_per_platform(platform, capability, precision, arithmetic):
    assert hardware.float32_matmul_arithmetic(platform, capability, precision) == arithmetic


def test_checks_run_at_full_precision_only_where_float32_matmuls_round():
    assert [hardware.rounds_float32_matmuls(a) for a in ("fp32", "bf16_6x", "tf32", "bf16", "bf16_3x")] == [
        False, False, True, True, True]
    with hardware.check_precision("tf32"):
        assert jax.config.jax_default_matmul_precision == "highest"
    with hardware.check_precision("fp32"):
        assert jax.config.jax_default_matmul_precision is None


@pytest.mark.parametrize(("kind", "arithmetic", "peak"), [
    (H100, "bf16", 989.4e12), (H100, "tf32", 494.7e12), ("NVIDIA H100 PCIe", "bf16", 756e12),
    ("NVIDIA H200", "bf16", 989.4e12), ("NVIDIA A100-SXM4-80GB", "tf32", 156e12),
    ("NVIDIA A100 80GB PCIe", "bf16", 312e12), ("TPU v4", "bf16", 275e12), ("TPU v5 lite", "bf16", 197e12),
    ("TPU v5", "bf16", 459e12), ("TPU v5p", "bf16", 459e12), ("TPU v6 lite", "bf16", 918e12),
    # Unknown devices and arithmetic have no figure: never a guess.
    ("cpu", "fp32", None), ("NVIDIA GeForce RTX 4090", "bf16", None), ("TPU v5 lite", "tf32", None),
    ("TPU v4", "bf16_3x", None),
])
def test_datasheet_peaks(kind, arithmetic, peak):
    assert hardware.datasheet_peak(kind, arithmetic) == peak


@pytest.mark.parametrize(("compute_dtype", "rate", "datasheet"), [("bfloat16", 600e12, 989.4e12),
                                                                 ("float32", 300e12, 494.7e12)])
def test_a_gpu_rows_mfu_is_divided_by_its_own_dtypes_rates(compute_dtype, rate, datasheet):
    """On an H100 a bf16 row is held to the bf16 rates, a float32 row to TF32's (JAX's default)."""
    environment = {"platform": "gpu", "device_kind": H100, "devices_share_host_cores": False,
                   "n_devices_in_process": 2, "host_cores": 16, "jax_version": "0.11",
                   "float32_matmul_arithmetic": "tf32"}
    prepared = SimpleNamespace(memory=None, cost=None, n_devices=2, compile_s=1.0, compile_cached_s=0.1,
                               compile_cache="hit")
    info = step_extra_info(case_id="c", workload="w", mode="train", variant="v", size="large", batch_size=8,
                           layout="data", items_per_step=(8, "examples"), prepared=prepared, median_s=0.01,
                           flops_per_step=1e12, compute_dtype=compute_dtype, matmul_rate=rate,
                           environment=environment, errors={})
    achieved = 1e12 / 0.01
    assert info["mfu"] == pytest.approx(achieved / (2 * rate))
    assert info["peak_flops_datasheet"] == datasheet
    assert info["mfu_datasheet"] == pytest.approx(achieved / (2 * datasheet))
    assert info["matmul_arithmetic"] == ("bf16" if compute_dtype == "bfloat16" else "tf32")


MLP = get_workload("mlp")
CASE = Case("mlp", "train", "jit_vmap", "tiny")


def _simulate_tf32(monkeypatch):
    original = transforms.optimizer_update
    monkeypatch.setattr(transforms, "optimizer_update", lambda tx: tf32_under_default_precision(original(tx)))


def test_tf32_rounding_would_fail_a_direct_float32_check(monkeypatch):
    """The simulation is TF32-sized: checked as it runs, a correct step fails the float32 check."""
    reference = build_reference_step(MLP, "tiny", "train")
    reference()
    _simulate_tf32(monkeypatch)
    step = build_step(MLP, "tiny", "train", "jit_vmap")
    step()
    with pytest.raises(IncorrectResult, match="opt_state"):
        check_against_baseline(step.result(), reference.result())


@pytest.mark.slow
def test_under_tf32_a_correct_step_passes_and_a_planted_fault_fails(monkeypatch):
    _simulate_tf32(monkeypatch)
    references = References(float32_arithmetic="tf32")
    step = build_step(MLP, "tiny", "train", "jit_vmap")
    step()
    assert max(references.check_step(CASE, step).values()) < 1e-5
    flipped = transforms.optimizer_update
    monkeypatch.setattr(transforms, "optimizer_update", lambda tx: flip_sign_under_jit(flipped(tx)))
    planted = build_step(MLP, "tiny", "train", "jit_vmap")
    planted()
    with pytest.raises(IncorrectResult, match="params"):
        references.check_step(CASE, planted)


@pytest.mark.version_independent
@pytest.mark.slow
def test_pytest_bench_on_a_simulated_tf32_gpu_passes_correct_variants(tmp_path):
    env = {**os.environ, "PYTEST_PLUGINS": "tests.planted_faults", FAULT_VARIABLE: "tf32_gpu"}
    proc = run_pytest("bench", "--workloads", "mlp", "--size", "tiny", "--modes", "train",
                      "--variants", "baseline,jit,jit_vmap,bf16", "--report-dir", str(tmp_path), "-q",
                      *FAST_TIMING, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["jaxbench"]["float32_matmul_arithmetic"] == "tf32"
    rows = {b["extra_info"]["variant"]: b["extra_info"] for b in results["benchmarks"]}
    assert set(rows) == {"baseline", "jit", "jit_vmap", "bf16"}
    assert rows["jit_vmap"]["matmul_arithmetic"] == "tf32" and rows["bf16"]["matmul_arithmetic"] == "bf16"


@pytest.mark.parametrize(("present", "visible"), [
    ({"/proc/driver/nvidia/gpus"}, ["an NVIDIA GPU"]),
    ({"/dev/nvidia0"}, ["an NVIDIA GPU"]),
    ({"/dev/accel0"}, ["a TPU"]),
    (set(), []),
])
def test_the_accelerators_a_machine_shows_are_read_from_the_system(present, visible):
    assert hardware.visible_accelerators(exists=present.__contains__) == visible


def test_a_cpu_only_jax_on_a_gpu_machine_is_told_how_to_install_the_cuda_build():
    warning = hardware.wrong_build_warning("cpu", ["an NVIDIA GPU"])
    assert warning.startswith("warning: JAX sees only a CPU, but this machine has an NVIDIA GPU")
    assert "pip install -e '.[cuda12]'" in warning
    assert "'.[tpu]'" in hardware.wrong_build_warning("cpu", ["a TPU"])
    assert hardware.wrong_build_warning("gpu", ["an NVIDIA GPU"]) is None  # the right build
    assert hardware.wrong_build_warning("cpu", []) is None  # a CPU machine


def test_the_extras_named_in_the_warning_exist():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in hardware.INSTALL_EXTRAS.values():
        assert any(requirement.startswith(f"jax[{extra}]") for requirement in extras[extra]), extra


def test_the_header_names_platform_device_kind_count_and_backend():
    devices = [SimpleNamespace(device_kind="NVIDIA H200", platform="gpu")] * 8
    assert hardware.platform_line(devices, "gpu") == "jaxbench: 8 x NVIDIA H200 (gpu); JAX backend gpu"
