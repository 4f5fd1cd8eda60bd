"""What the suite knows of the hardware without measuring it: the arithmetic a float32 matmul runs
in on each platform, and the datasheet peaks of the accelerators our users run on most.

Arithmetic names: `fp32` (true float32 products), `tf32` (inputs rounded to TensorFloat-32's 10-bit
mantissa, NVIDIA tensor cores from Ampere on), `bf16` (inputs rounded to bfloat16's 7-bit
mantissa, one MXU pass on TPU), `bf16_3x` / `bf16_6x` (TPU's multi-pass float32 emulations).
"""

from __future__ import annotations

import contextlib
import os
import re

import jax

FULL_PRECISION = ("highest", "float32", "F32_F32_F32")
"""`jax_default_matmul_precision` settings that ask for true float32 products."""
MEDIUM_PRECISION = ("high", "tensorfloat32", "bfloat16_3x")
"""Settings that ask for TPU's three-pass (or a GPU's TF32) products."""
CHECK_PRECISION = "highest"
"""The matmul precision the correctness checks run at where the default is not true float32."""
TF32_MIN_COMPUTE_CAPABILITY = 8.0
"""NVIDIA GPUs compute float32 matmuls in TF32 by default from Ampere (compute capability 8.0) on."""


def float32_matmul_arithmetic(platform: str, compute_capability: str | None = None,
                              precision: str | None = None) -> str:
    """The arithmetic a float32 matmul runs in on `platform` (`cpu`, `gpu`/`cuda`/`rocm`, `tpu`)
    at the `jax_default_matmul_precision` setting `precision` (None: JAX's default).

    JAX's default leans to speed: TF32 on NVIDIA GPUs from Ampere on (`compute_capability`
    "8.0" or more), one bfloat16 pass on TPUs; XLA:CPU always computes true float32 products
    (it accepts the setting and ignores it: measured on JAX 0.10 and 0.12).
    """
    setting = None if precision in (None, "default", "fastest", "bfloat16") else precision
    if platform == "cpu":
        return "fp32"
    if platform == "tpu":
        return "bf16_6x" if setting in FULL_PRECISION else "bf16_3x" if setting in MEDIUM_PRECISION else "bf16"
    if setting in FULL_PRECISION:
        return "fp32"
    capability = _number(compute_capability)
    if platform in ("gpu", "cuda") and capability is not None:
        return "tf32" if capability >= TF32_MIN_COMPUTE_CAPABILITY else "fp32"
    return "tf32"  # an accelerator we cannot read (e.g. ROCm's "gfx90a"): assume rounded products


def _number(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def device_float32_arithmetic(device=None) -> str:
    """`float32_matmul_arithmetic` for `device` (default: the first) at this process's setting."""
    device = device or jax.devices()[0]
    return float32_matmul_arithmetic(device.platform, getattr(device, "compute_capability", None),
                                     jax.config.jax_default_matmul_precision)


def rounds_float32_matmuls(arithmetic: str) -> bool:
    """Whether float32 matmuls in `arithmetic` keep fewer bits than true float32 (`tf32`, `bf16`,
    `bf16_3x`): then a batched step and the eager per-example baseline differ by far more than
    float32 reordering, and the checks run at `CHECK_PRECISION` instead (`check_precision`)."""
    return arithmetic not in ("fp32", "bf16_6x")


def check_precision(arithmetic: str):
    """The context the correctness checks run in: `jax.default_matmul_precision(CHECK_PRECISION)`
    where float32 matmuls are rounded by default (`arithmetic`), nothing where they are exact."""
    if rounds_float32_matmuls(arithmetic):
        return jax.default_matmul_precision(CHECK_PRECISION)
    return contextlib.nullcontext()


TFLOPS = 1e12
DATASHEET_PEAKS = (
    # (device_kind pattern, {arithmetic: dense FLOP/s per device as JAX sees it}), first match wins.
    # NVIDIA datasheets (dense, i.e. without 2:4 sparsity); float32 at JAX's default runs as TF32.
    (r"^NVIDIA H100 PCIe", {"bf16": 756 * TFLOPS, "tf32": 378 * TFLOPS, "fp32": 51.2 * TFLOPS}),
    (r"^NVIDIA H100 NVL", {"bf16": 835.5 * TFLOPS, "tf32": 417.5 * TFLOPS, "fp32": 60 * TFLOPS}),
    (r"^NVIDIA H100", {"bf16": 989.4 * TFLOPS, "tf32": 494.7 * TFLOPS, "fp32": 66.9 * TFLOPS}),  # SXM5 ("80GB HBM3")
    (r"^NVIDIA H200 NVL", {"bf16": 835.5 * TFLOPS, "tf32": 417.5 * TFLOPS, "fp32": 60 * TFLOPS}),
    (r"^NVIDIA H200", {"bf16": 989.4 * TFLOPS, "tf32": 494.7 * TFLOPS, "fp32": 66.9 * TFLOPS}),  # SXM
    (r"^NVIDIA A100", {"bf16": 312 * TFLOPS, "tf32": 156 * TFLOPS, "fp32": 19.5 * TFLOPS}),  # SXM4 and PCIe alike
    # Google Cloud TPU pages, bf16 per chip (one JAX device per chip from v4 on).
    (r"^TPU v4$", {"bf16": 275 * TFLOPS}),
    (r"^TPU v5( lite|e)$", {"bf16": 197 * TFLOPS}),
    (r"^TPU v5p?$", {"bf16": 459 * TFLOPS}),
    (r"^TPU v6( lite|e)$", {"bf16": 918 * TFLOPS}),
)


def datasheet_peak(device_kind: str, arithmetic: str) -> float | None:
    """The datasheet's dense FLOP/s of one `device_kind` device in `arithmetic`, or None where we
    do not know the device or its figure for that arithmetic (never a guess)."""
    for pattern, peaks in DATASHEET_PEAKS:
        if re.search(pattern, device_kind):
            return peaks.get(arithmetic)
    return None


def compute_arithmetic(compute_dtype: str, float32_arithmetic: str) -> str:
    """The matmul arithmetic of a step computing in `compute_dtype` (`float32` or `bfloat16`) on a
    device whose float32 matmuls run in `float32_arithmetic`."""
    return "bf16" if compute_dtype == "bfloat16" else float32_arithmetic


def peak_bytes_in_use(devices) -> int | None:
    """The largest `peak_bytes_in_use` in `devices`' memory statistics (`device.memory_stats()`):
    what the allocator really held at its peak since the process started, on GPUs and TPUs. None
    where the platform keeps no statistics (a CPU: `memory_stats()` is None)."""
    peaks = [(device.memory_stats() or {}).get("peak_bytes_in_use") for device in devices]
    peaks = [peak for peak in peaks if peak is not None]
    return max(peaks) if peaks else None


ACCELERATOR_SIGNS = {
    "an NVIDIA GPU": ("/proc/driver/nvidia/gpus", "/dev/nvidia0"),
    "a TPU": ("/dev/accel0", "/dev/vfio/0"),
}
"""What shows an accelerator to the operating system, whatever JAX's build sees: the NVIDIA
driver's GPU list or first device node; a TPU VM's accelerator or VFIO device."""
INSTALL_EXTRAS = {"an NVIDIA GPU": "cuda12", "a TPU": "tpu"}
"""The extra of this package that installs JAX's build for each accelerator."""


def visible_accelerators(exists=os.path.exists) -> list[str]:
    """The accelerators this machine shows (`ACCELERATOR_SIGNS`); `exists` tells whether a path is
    there (a test passes its own)."""
    return [kind for kind, paths in ACCELERATOR_SIGNS.items() if any(exists(path) for path in paths)]


def wrong_build_warning(platform: str, visible: list[str]) -> str | None:
    """A warning for a run whose JAX sees only a CPU (`platform`) on a machine that shows an
    accelerator (`visible_accelerators`): it says how to install JAX's build for it. None where
    there is nothing to warn of."""
    if platform != "cpu" or not visible:
        return None
    kind = visible[0]
    return (f"warning: JAX sees only a CPU, but this machine has {kind}: install JAX's build for it, "
            f"pip install -e '.[{INSTALL_EXTRAS[kind]}]' (or pip install 'jax[{INSTALL_EXTRAS[kind]}]'), "
            "and run again")


def platform_line(devices, backend: str) -> str:
    """One line naming what a run measures on: platform, device kind and count, JAX's backend."""
    kinds = sorted({device.device_kind for device in devices})
    return (f"jaxbench: {len(devices)} x {', '.join(kinds)} ({devices[0].platform}); "
            f"JAX backend {backend}")


AUTO_SIZE = "auto"
"""`--size auto` (the default): the preset chosen for the device at hand (`auto_size`)."""


def auto_size(platform: str, bytes_limit: int | None) -> tuple[str, str]:
    """(preset, why) for `--size auto`: `small` on a CPU; on an accelerator the largest preset
    whose budget (`workloads.contract.SizeTarget.budget_bytes`) fits the allocator's limit
    (`memory_stats()['bytes_limit']`), `small` where even `medium`'s does not or the limit is
    unknown."""
    from jaxbench.workloads.contract import SIZE_TARGETS

    if platform == "cpu":
        return "small", "small is the preset for a CPU"
    if bytes_limit is None:
        return "small", f"the {platform}'s memory limit is unknown"
    fitting = [name for name, target in SIZE_TARGETS.items()
               if name in ("medium", "large") and target.budget_bytes <= bytes_limit]
    if not fitting:
        medium = SIZE_TARGETS["medium"].budget_bytes
        return "small", f"even medium's {_gb(medium)} exceed the device's {_gb(bytes_limit)}"
    chosen = fitting[-1]
    return chosen, (f"{chosen} is sized for {SIZE_TARGETS[chosen].meant_for}: its steps' "
                    f"{_gb(SIZE_TARGETS[chosen].budget_bytes)} fit the device's {_gb(bytes_limit)}")


def _gb(nbytes: int) -> str:
    return f"{nbytes / 1e9:.3g} GB"


def auto_size_here() -> tuple[str, str]:
    """`auto_size` for this process's first device: (preset, why)."""
    import jax

    device = jax.devices()[0]
    return auto_size(device.platform, device_bytes_limit(device))


def device_bytes_limit(device) -> int | None:
    """The allocator's limit of `device` (`memory_stats()['bytes_limit']`), None where the platform
    keeps no statistics (a CPU)."""
    return (device.memory_stats() or {}).get("bytes_limit")
