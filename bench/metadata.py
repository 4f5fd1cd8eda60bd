"""What goes into each benchmark's `extra_info`: the contract the reports and CI tools read."""

from __future__ import annotations

from jaxbench.bench import hardware
from jaxbench.workloads import compile_cache
from jaxbench.workloads.steps import PreparedStep, footprint_bytes
from jaxbench.workloads.variants import VARIANTS

ENVIRONMENT_KEYS = ("platform", "device_kind", "devices_share_host_cores", "n_devices_in_process", "host_cores",
                    "jax_version", "float32_matmul_arithmetic")
"""What every benchmark row repeats from the run's environment, so a row can be read on its own."""


def exact_figures(prepared: PreparedStep) -> dict:
    """The compiled step's deterministic figures, which the regression gates compare exactly
    (`reports.verdicts.EXACT_FIGURES`): per-device memory and XLA's FLOPs and bytes accessed;
    None each for an eager step. With them, what the program is (`program`: its fingerprint,
    fusions, ops and collective bytes, `workloads.program`), which the gates show beside a change."""
    cost = prepared.cost or {}
    return {"mem_bytes": footprint_bytes(prepared.memory), "xla_flops": cost.get("flops"),
            "xla_bytes_accessed": cost.get("bytes_accessed"),
            "program": getattr(prepared, "program", None)}  # a side from before programs were recorded has none


def _environment_keys(environment: dict) -> dict:
    return {key: environment[key] for key in ENVIRONMENT_KEYS}


WORKFLOW_COMPILE_CACHE = "not measured for a workflow (its compilations are its own, e.g. NumPyro's sampler)"
"""Why a workflow row has no cached compile time."""


def step_extra_info(
    *,
    case_id: str,
    workload: str,
    mode: str,
    variant: str,
    size: str,
    batch_size: int,
    layout: str,
    scaling: str | None = None,
    items_per_step: tuple[int, str],
    prepared: PreparedStep,
    median_s: float,
    flops_per_step: float,
    compute_dtype: str,
    matmul_rate: float,
    environment: dict,
    errors: dict[str, float],
) -> dict:
    """The `extra_info` of one timed step (times in seconds, memory in bytes per device).

    `items_per_s` counts the workload's items (`items_per_step`: examples, or tokens for a
    language model). Two utilisations, each `flops_per_step / median_s` over the FLOP/s of the
    devices the step runs on, in the arithmetic its matmuls run in (`compute_dtype` on this
    platform, `bench.hardware`):

    - `mfu`: against `matmul_rate`, the in-run matmul rate in `compute_dtype` (`peak_flops`),
      times the device count, except for virtual CPU devices, which share one host's cores and
      so one rate;
    - `mfu_datasheet`: against the datasheet peak (`peak_flops_datasheet`) times the device
      count, None where the device is not in `bench.hardware.DATASHEET_PEAKS`.
    """
    memory = prepared.memory
    peak_devices = 1 if environment["devices_share_host_cores"] else prepared.n_devices
    arithmetic = hardware.compute_arithmetic(compute_dtype, environment["float32_matmul_arithmetic"])
    datasheet = hardware.datasheet_peak(environment["device_kind"], arithmetic)
    achieved = flops_per_step / median_s
    items, item_unit = items_per_step
    return {
        "case_id": case_id,
        "workload": workload,
        "mode": mode,
        "variant": variant,
        "size": size,
        "batch_size": batch_size,
        "layout": layout if variant in VARIANTS and VARIANTS[variant].on_mesh else None,
        "scaling": scaling,
        "n_devices": prepared.n_devices,
        **_environment_keys(environment),
        "compile_s": prepared.compile_s,
        "compile_cached_s": prepared.compile_cached_s,
        "compile_cache": prepared.compile_cache if prepared.compile_s is not None else None,
        **exact_figures(prepared),
        "mem_temp_bytes": memory["temp"] if memory else None,
        "mem_breakdown": memory,
        "flops_per_step": flops_per_step,
        "items_per_s": items / median_s,
        "item_unit": item_unit,
        "compute_dtype": compute_dtype,
        "matmul_arithmetic": arithmetic,
        "peak_flops": matmul_rate,
        "mfu": achieved / (matmul_rate * peak_devices),
        "peak_flops_datasheet": datasheet,
        "mfu_datasheet": achieved / (datasheet * prepared.n_devices) if datasheet else None,
        "status": "pass",
        "max_rel_error": max(errors.values(), default=0.0),
        "rel_errors": errors,
    }


def workflow_extra_info(
    *,
    case_id: str,
    workload: str,
    mode: str,
    variant: str,
    size: str,
    run,
    throughput: tuple[str, str],
    environment: dict,
    checks: dict[str, float],
) -> dict:
    """The `extra_info` of one timed workflow run: the step rows' keys (step-only figures such as
    memory and MFU are None) plus `metrics`, the run's own figures, and `checks`, the figures of its
    correctness check. `items_per_s` is the run's own throughput metric (`throughput`: (metric,
    unit), e.g. draws per second of sampling), not items over the whole benchmark round."""
    metrics = run.metrics()
    metric, item_unit = throughput
    return {
        "case_id": case_id,
        "kind": "workflow",
        "workload": workload,
        "mode": mode,
        "variant": variant,
        "size": size,
        "batch_size": None,
        "layout": None,
        "scaling": None,
        "n_devices": run.n_devices,
        **_environment_keys(environment),
        "compile_s": run.compile_s,
        "compile_cached_s": None,
        "compile_cache": None if run.compile_s is None else compile_cache.reused() or WORKFLOW_COMPILE_CACHE,
        "mem_bytes": None,
        "mem_temp_bytes": None,
        "mem_breakdown": None,
        "xla_flops": None,
        "xla_bytes_accessed": None,
        "program": None,
        "flops_per_step": None,
        "items_per_s": metrics[metric],
        "item_unit": item_unit,
        "compute_dtype": None,
        "matmul_arithmetic": None,
        "peak_flops": None,
        "mfu": None,
        "peak_flops_datasheet": None,
        "mfu_datasheet": None,
        "status": "pass",
        "metrics": metrics,
        "checks": checks,
    }
