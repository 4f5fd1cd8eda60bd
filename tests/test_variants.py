"""Every variant computes what `baseline` computes, and the check that says so can fail."""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from jaxbench.bench.correctness import IncorrectResult, check_against_baseline, relative_errors
from jaxbench.workloads import get_workload
from jaxbench.workloads.contract import NotApplicable
from jaxbench.workloads.steps import build_reference_step, build_step, footprint_bytes
from jaxbench.workloads.variants import variants_for, variants_table
from tests.conftest import FAST_TIMING, ROOT, assert_step_agrees, run_pytest

MLP = get_workload("mlp")


@pytest.fixture(scope="module")
def reference_results():
    results = {}
    for mode in ("train", "infer"):
        step = build_reference_step(MLP, "tiny", mode)
        step()
        results[mode] = step.result()
    return results


@pytest.mark.parametrize(
    "mode,variant", [(m, v) for m in ("train", "infer") for v in variants_for(m)]
)
def test_variant_agrees_with_the_reference(mode, variant, reference_results):
    errors = assert_step_agrees(build_step(MLP, "tiny", mode, variant), reference_results[mode], variant)
    if variant == "bf16":
        # bf16 really computes in bf16: it agrees to about 1e-2 but not to float32 precision.
        key = "loss" if mode == "train" else "predictions"
        assert 1e-6 < errors[key] < 1e-2


def test_variant_lists():
    assert variants_for("train") == (
        "baseline", "jit", "vmap", "jit_vmap", "multi_device", "remat", "bf16", "accumulation")
    assert variants_for("infer") == ("baseline", "jit", "vmap", "jit_vmap", "multi_device", "bf16")


def test_the_docs_table_of_variants_is_the_registry():
    assert variants_table() in (ROOT / "docs" / "variants.md").read_text()


@pytest.mark.version_independent
@pytest.mark.slow
def test_a_ninth_variant_is_one_record(tmp_path):
    """The record in tests/ninth_variant.py is all it takes: the option accepts it, cases select
    it, its step is composed (bf16 and remat), checked against baseline and run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_PLUGINS": "tests.ninth_variant"}
    proc = run_pytest("bench", "--workloads", "mlp", "--size", "tiny", "--modes", "train",
                      "--variants", "baseline,bf16_remat", "--report-dir", str(tmp_path), "-v",
                      *FAST_TIMING, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "test_step[mlp-train-bf16_remat] PASSED" in proc.stdout
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("variant")
    assert list(summary.index) == ["baseline", "bf16_remat"]  # in the registry's order, after the eight
    assert summary.loc["bf16_remat", "compute dtype"] == "bfloat16"  # from its record
    assert summary.loc["bf16_remat", "speedup vs baseline"] > 1


def test_compiled_variants_report_memory_and_eager_ones_do_not():
    eager = build_step(MLP, "tiny", "train", "vmap")
    assert eager.memory is None and eager.compile_s is None
    compiled = build_step(MLP, "tiny", "train", "jit_vmap")
    assert compiled.compile_s > 0
    memory = compiled.memory
    assert footprint_bytes(memory) == memory["argument"] + memory["output"] - memory["alias"] + memory["temp"]
    # The production step donates its state: parameters and optimizer state are aliased.
    assert memory["alias"] > 0


def test_multi_device_shards_the_batch_over_all_devices():
    step = build_step(MLP, "tiny", "train", "multi_device")
    assert step.n_devices == len(jax.devices()) == 8  # `bench.plugin`'s default --cpu-devices
    inputs, _ = step.batch
    assert len(inputs.sharding.device_set) == 8
    assert inputs.addressable_shards[0].data.shape[0] == inputs.shape[0] // 8


def test_multi_device_on_one_device_is_not_applicable():
    with pytest.raises(NotApplicable, match="only one device"):
        build_step(MLP, "tiny", "train", "multi_device", devices=jax.devices()[:1])


def test_batch_that_does_not_divide_is_not_applicable(monkeypatch):
    odd = dataclasses.replace(MLP.sizes["tiny"], batch_size=6)
    workload = dataclasses.replace(MLP, sizes={**MLP.sizes, "odd": odd})
    with pytest.raises(NotApplicable, match="does not divide over 8 devices"):
        build_step(workload, "odd", "train", "multi_device")
    with pytest.raises(NotApplicable, match="does not split into 4 micro-batches"):
        build_step(workload, "odd", "train", "accumulation")


def test_train_only_variants_have_no_infer_step():
    with pytest.raises(NotApplicable, match="no infer step"):
        build_step(MLP, "tiny", "infer", "remat")


@pytest.mark.slow
def test_remat_saves_memory_on_a_deep_stack():
    deep = dataclasses.replace(MLP.sizes["tiny"], hidden=256, num_blocks=8, batch_size=64)
    workload = dataclasses.replace(MLP, sizes={**MLP.sizes, "deep": deep})
    plain = build_step(workload, "deep", "train", "jit_vmap").memory
    remat = build_step(workload, "deep", "train", "remat").memory
    assert remat["temp"] < plain["temp"]


def test_check_fails_on_a_wrong_result(reference_results):
    reference = reference_results["train"]
    wrong = dict(reference, params=jax.tree.map(lambda a: a * 1.001, reference["params"]))
    with pytest.raises(IncorrectResult, match="params"):
        check_against_baseline(wrong, reference)
    # A gradient that is off in one leaf shows in the optimizer state, leaf by leaf.
    opt_state = jax.tree.map(lambda a: a * 1.01 if a.ndim == 1 else a, reference["opt_state"])
    with pytest.raises(IncorrectResult, match="opt_state"):
        check_against_baseline(dict(reference, opt_state=opt_state), reference)


def test_check_fails_on_nan_even_in_bf16(reference_results):
    reference = reference_results["infer"]
    bad = {"predictions": reference["predictions"].at[0, 0].set(jnp.nan)}
    with pytest.raises(IncorrectResult, match="non-finite"):
        check_against_baseline(bad, reference, "bfloat16")


def test_relative_errors_are_exact_numbers():
    errors = relative_errors({"loss": np.float32(1.5)}, {"loss": np.float32(1.0)})
    assert errors == {"loss": pytest.approx(0.5)}


def test_rounding_spread_widens_only_its_own_quantity(reference_results):
    """A quantity that moves by 1e-3 when only the batch order changes may differ by 10x that;
    the others keep the float32 floor."""
    reference = reference_results["train"]
    opt_state = jax.tree.map(lambda a: a * 1.005 if a.ndim == 1 else a, reference["opt_state"])
    nudged = dict(reference, opt_state=opt_state)
    with pytest.raises(IncorrectResult, match="opt_state"):
        check_against_baseline(nudged, reference)
    spread = {"opt_state": 1e-3}
    assert check_against_baseline(nudged, reference, spread=spread)
    params = jax.tree.map(lambda a: a * 1.001, reference["params"])
    with pytest.raises(IncorrectResult, match="params"):
        check_against_baseline(dict(reference, params=params), reference, spread=spread)


@pytest.mark.parametrize("workload,mode,variant", [
    ("mlp", "infer", "jit_vmap"), ("mlp", "infer", "multi_device"), ("mlp", "infer", "bf16"),
    ("transformer", "decode", "jit_vmap"), ("cnn_batchnorm", "infer", "jit_vmap"),
])
def test_compiled_inference_outputs_only_its_predictions(workload, mode, variant):
    """A forward step that handed its parameters back would write a copy of every weight per call
    and count them twice in `mem_bytes`."""
    step = build_step(get_workload(workload), "tiny", mode, variant)
    step()
    predictions = step.result()["tokens" if mode == "decode" else "predictions"]
    per_device = predictions.nbytes // step.n_devices
    assert step.memory["output"] == per_device, (step.memory, predictions.shape, predictions.dtype)
    assert step.memory["argument"] >= sum(leaf.nbytes for leaf in jax.tree.leaves(step.state)) // step.n_devices


@pytest.mark.parametrize("variant", ["baseline", "jit_vmap"])
def test_a_freed_step_holds_nothing_on_the_device(variant):
    """After `free`, every array the step held (state, batch, output) is deleted, and a compiled
    step leaves no array alive at all. (After an eager step, JAX's eager machinery was seen to keep
    one block's slice of a stacked weight alive inside a long test session: not the step's.)"""
    before = {id(a) for a in jax.live_arrays()}
    step = build_step(get_workload("mlp"), "tiny", "train", variant)
    initial_state = step.state
    step()
    held = jax.tree.leaves((step.state, step.batch, step.output))
    del initial_state
    step.free()
    assert all(leaf.is_deleted() for leaf in held)
    del held
    left = [a.shape for a in jax.live_arrays() if id(a) not in before]
    if variant != "baseline":
        assert left == [], left
