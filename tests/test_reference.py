"""The check reference (`workloads/reference.py`): the eager `baseline`'s result at every workload
and mode, from a compiled program that shares none of the transformations under test."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxbench.bench.cases import Case
from jaxbench.bench.correctness import FLOAT32_RTOL, SPREAD_FACTOR, IncorrectResult, check_against_baseline, nudged
from jaxbench.bench.references import References
from jaxbench.workloads import get_workload, transforms
from jaxbench.workloads.steps import build_reference_step, build_step
from tests.conftest import default_optimisation, run_pytest

PER_EXAMPLE = [(name, mode) for name in ("mlp", "cnn", "transformer") for mode in get_workload(name).modes]
TINY = [pytest.param(name, mode, marks=() if name == "mlp" else pytest.mark.slow) for name, mode in PER_EXAMPLE]
"""At `tiny` the MLP's in the fast tier; the others' eager baselines take seconds each."""
SMALL_EXAMPLES = 2


def _result(step) -> dict:
    try:
        step()
        return jax.device_get(step.result())
    finally:
        step.free()


def _assert_reference_is_baseline(name: str, mode: str, size: str, examples: int | None = None) -> None:
    workload = get_workload(name)
    reference = build_reference_step(workload, size, mode, examples=examples)
    assert reference.compile_s is not None  # a compiled program, not eager dispatch
    baseline = build_step(workload, size, mode, "baseline", examples=examples)
    errors = check_against_baseline(_result(baseline), _result(reference))
    assert max(errors.values()) < 1e-5, errors  # the float32 floor: no spread widens it here


@pytest.mark.parametrize(("name", "mode"), TINY)
def test_the_reference_is_the_eager_baseline_at_tiny(name, mode):
    _assert_reference_is_baseline(name, mode, "tiny")


AT_SMALL = [(name, mode) for name, mode in PER_EXAMPLE if mode != "train" or name == "mlp"]
"""What the test at `small` takes: each workload, and the train step once (the MLP's). The CNN's and
the transformer's train steps at `small` compile hundreds of eager operations of new shapes (the
time: docs/measurements.md) to test again the code their `tiny` tests and the MLP's `small` one test."""


@pytest.mark.slow
@pytest.mark.version_independent  # what it adds to the test at `tiny` (run on every JAX) is the shapes
@pytest.mark.parametrize(("name", "mode"), AT_SMALL)
def test_the_reference_is_the_eager_baseline_at_small(name, mode):
    """Over the batch's first `SMALL_EXAMPLES` examples (both programs take `examples`, as the
    bounded baseline does): the per-example computation at `small`'s shapes and their mean are
    what is compared, and the eager loop costs seconds an example here (minutes a batch)."""
    _assert_reference_is_baseline(name, mode, "small", examples=SMALL_EXAMPLES)


def test_a_fault_in_the_shared_update_fails_baseline_itself(monkeypatch):
    """The reference shares no code with the variants' steps (`workloads/transforms.py`): an update
    that is wrong everywhere, eager steps included, makes the eager baseline fail its check. When
    baseline was the reference, such a fault was in both and nothing could see it."""
    original = transforms.optimizer_update

    def doubled(tx):
        update = original(tx)

        def wrong(params, opt_state, grads):
            return update(params, opt_state, jax.tree.map(lambda g: 2 * g, grads))

        return wrong

    monkeypatch.setattr(transforms, "optimizer_update", doubled)
    references = References()
    case = Case("mlp", "train", "baseline", "tiny")
    step = case.build()
    step()
    with pytest.raises(IncorrectResult, match="opt_state"):
        references.check_step(case, step)


def test_part_of_a_batch_is_checked_against_the_reference_on_the_same_part():
    references = References()
    case = Case("mlp", "train", "baseline", "tiny", examples=3)
    step = case.build()
    step()
    assert max(references.check_step(case, step).values()) < 1e-5
    whole = Case("mlp", "train", "baseline", "tiny")
    assert references.step(whole).result["loss"] != pytest.approx(references.step(case).result["loss"], rel=1e-6)


def test_nudged_parameters_are_the_same_within_one_rounding():
    params = {"w": np.linspace(-2.0, 3.0, 1000, dtype=np.float32), "steps": np.arange(4, dtype=np.int32)}
    once, again = nudged(params, jax.random.key(0)), nudged(params, jax.random.key(1))
    relative = np.abs(np.asarray(once["w"]) / params["w"] - 1)
    assert relative.max() <= 1.5 * np.finfo(np.float32).eps and (relative > 0).mean() > 0.5
    assert not np.array_equal(once["w"], again["w"])  # each key its own nudge
    assert np.array_equal(once["steps"], params["steps"])  # only floating-point leaves


def test_a_small_train_steps_rounding_spread_keeps_the_float32_floor():
    """Measured for a per-example model too, and at `tiny` too small to widen the tolerance."""
    references = References()
    case = Case("mlp", "train", "baseline", "tiny")
    assert references.step(case).spread is None  # measured only where a check needs it
    spread = references.spread(case)
    assert set(spread) == {"loss", "params", "opt_state"} and references.step(case).spread == spread
    assert max(spread.values()) * SPREAD_FACTOR < FLOAT32_RTOL, spread


@pytest.mark.slow
@pytest.mark.version_independent
def test_at_medium_a_correct_batched_step_passes_where_rounding_switches_relus(tmp_path):
    """The MLP's `medium` train step (1024 examples, 6144 ReLUs): a unit whose input is within
    rounding of zero is on in the per-example reference and off in the batched step, which moves
    the mean gradient far past the float32 floor (docs/measurements.md); the nudged reruns measure
    it, and `jit_vmap` passes. At XLA's default level, as a user's run compiles: the switches
    follow the rounding."""
    proc = run_pytest("bench", "--workloads", "mlp", "--size", "medium", "--modes", "train", "--variants", "jit_vmap",
                      "--benchmark-disable", "--report-dir", str(tmp_path), "-q", env=default_optimisation(),
                      timeout=600)
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-3000:]
