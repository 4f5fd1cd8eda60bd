"""Size presets fit the devices they are meant for, and `--size auto` picks one for the device at hand."""

from __future__ import annotations

import pytest

from jaxbench.bench.hardware import auto_size
from jaxbench.workloads import get_workload
from jaxbench.workloads.contract import SIZE_TARGETS
from jaxbench.workloads.steps import compiled_footprint_bytes

STEP_WORKLOADS = ("mlp", "cnn", "cnn_batchnorm", "transformer")
GB = 10**9


def test_each_preset_says_what_it_is_meant_for_and_its_budget():
    assert list(SIZE_TARGETS) == ["tiny", "small", "medium", "large"]
    assert SIZE_TARGETS["tiny"].budget_bytes is None
    # JAX takes 75% of an accelerator's memory by default; each budget keeps 10% of that spare.
    assert SIZE_TARGETS["medium"].budget_bytes == pytest.approx(16 * GB * 0.75 * 0.9)
    assert SIZE_TARGETS["large"].budget_bytes == pytest.approx(80 * GB * 0.75 * 0.9)


@pytest.mark.parametrize(("platform", "bytes_limit", "chosen"), [
    ("cpu", None, "small"),
    ("gpu", 106 * GB, "large"),  # an H200 at JAX's default 75%
    ("gpu", 60 * GB, "large"),  # an 80 GB H100
    ("gpu", 12 * GB, "medium"),  # a 16 GB GPU
    ("gpu", 6 * GB, "small"),  # an 8 GB GPU
    ("tpu", None, "small"),  # a platform that keeps no statistics
])
def test_auto_picks_the_largest_preset_whose_steps_fit(platform, bytes_limit, chosen):
    size, why = auto_size(platform, bytes_limit)
    assert size == chosen
    assert why  # the run's first lines say why
    if chosen in ("medium", "large"):
        assert SIZE_TARGETS[chosen].meant_for in why


@pytest.mark.slow
@pytest.mark.version_independent  # the preset's shapes are checked, on this CPU as a stand-in for the devices
@pytest.mark.parametrize("size", ["small", "medium", "large"])
@pytest.mark.parametrize("name", STEP_WORKLOADS)
def test_every_presets_production_train_step_fits_its_budget(name, size):
    """The per-device bytes of the float32 `jit_vmap` train step with its optimizer, compiled ahead
    of time for the shapes alone on this CPU (nothing allocated)."""
    footprint = compiled_footprint_bytes(get_workload(name), size)
    assert footprint <= SIZE_TARGETS[size].budget_bytes, (
        f"{name} at {size}: {footprint / GB:.1f} GB > {SIZE_TARGETS[size].budget_bytes / GB:.1f} GB")
