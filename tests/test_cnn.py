"""The ResNet-style CNN: every variant against baseline, FLOPs against XLA's count."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from jaxbench.bench.correctness import relative_errors
from jaxbench.workloads import get_workload
from jaxbench.workloads.cnn import conv_flops_per_example
from jaxbench.workloads.contract import NotApplicable
from jaxbench.workloads.steps import build_reference_step, build_step
from jaxbench.workloads.variants import variants_for
from tests.conftest import assert_step_agrees, once_per_jax_unless_compiled_or_sharded, xla_forward_flops

CNN = get_workload("cnn")


@pytest.fixture(scope="module")
def reference_results():
    results = {}
    for mode in CNN.modes:
        step = build_reference_step(CNN, "tiny", mode)
        step()
        results[mode] = step.result()
    return results


@pytest.mark.slow
@pytest.mark.parametrize("mode,variant", [once_per_jax_unless_compiled_or_sharded(m, v) for m in CNN.modes
                                          for v in variants_for(m) if v != "baseline"])
def test_variant_agrees_with_the_reference(mode, variant, reference_results):
    assert_step_agrees(build_step(CNN, "tiny", mode, variant), reference_results[mode], variant)


def test_each_image_is_normalised_on_its_own():
    """GroupNorm: an image's logits do not depend on the rest of the batch."""
    size = CNN.sizes["tiny"]
    model = CNN.build_model(size, nnx.Rngs(0))
    images, _ = CNN.make_batch(size, jax.random.key(1))
    alone = model(images[0])
    batched = jax.vmap(model)(images)[0]
    assert jax.numpy.allclose(alone, batched, atol=1e-5)


def test_forward_flops_match_xla_cost_analysis():
    size = CNN.sizes["tiny"]
    xla_flops = xla_forward_flops(CNN)
    nominal = CNN.flops_per_step(size, "infer")
    assert nominal == conv_flops_per_example(size) * size.batch_size
    # XLA counts only the kernel taps inside the image (not the 'SAME' padding), and also
    # GroupNorm, ReLU, residual adds and pooling; the analytic count is convolutions.
    inside = conv_flops_per_example(size, count_padding=False) * size.batch_size
    assert inside < nominal
    assert inside <= xla_flops <= 1.3 * inside, (inside, xla_flops)


BATCHNORM = get_workload("cnn_batchnorm")


@pytest.mark.slow
@pytest.mark.parametrize("mode", BATCHNORM.modes)
def test_batchnorm_variants_agree_with_the_eager_step(mode):
    reference = build_reference_step(BATCHNORM, "tiny", mode)
    reference()
    for variant in ("jit_vmap", "multi_device", "remat", "bf16"):
        if variant not in variants_for(mode):
            continue
        errors = assert_step_agrees(build_step(BATCHNORM, "tiny", mode, variant), reference.result(), variant)
        if mode == "train":
            assert any(name.startswith("model_state") for name in errors)  # the statistics are checked


@pytest.mark.parametrize("variant,reason", [
    ("baseline", "normalises over the batch, coupling its examples"),
    ("vmap", "no per-example step for vmap"),
    ("accumulation", "batch statistics of a micro-batch differ"),
])
def test_batchnorm_has_no_per_example_or_micro_batch_variants(variant, reason):
    with pytest.raises(NotApplicable, match=reason):
        build_step(BATCHNORM, "tiny", "train", variant)


@pytest.mark.slow
def test_batchnorm_statistics_are_carried_and_updated_in_every_block():
    step = build_step(BATCHNORM, "tiny", "train", "remat")  # scanned blocks: updates come out of the scan
    before = jax.tree_util.tree_leaves_with_path(jax.tree.map(np.asarray, step.state[2]))
    step()
    after = jax.tree.leaves(step.state[2])
    assert len(before) == len(after) > 0
    for (path, old), new in zip(before, after):
        assert not np.allclose(old, np.asarray(new)), jax.tree_util.keystr(path)


def test_batchnorm_inference_uses_running_averages():
    """In infer mode an image's logits do not depend on the rest of the batch."""
    step = build_step(BATCHNORM, "tiny", "infer", "jit_vmap")
    logits = step()
    alone = build_reference_step(BATCHNORM, "tiny", "infer")
    alone.batch = step.batch[:1]
    alone()
    np.testing.assert_allclose(alone.output[0], logits[0], rtol=1e-5, atol=1e-6)


def _in_float64(workload):
    """`workload` with float64 parameters and images (needs jax_enable_x64)."""
    import dataclasses

    import jax.numpy as jnp

    def build(size, rngs):
        model = workload.build_model(size, rngs)
        state = nnx.state(model)
        nnx.update(model, jax.tree.map(
            lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, state))
        return model

    def batch(size, key):
        images, labels = workload.make_batch(size, key)
        return images.astype(jnp.float64), labels

    return dataclasses.replace(workload, build_model=build, make_batch=batch)


@pytest.mark.slow
def test_sharded_batchnorm_computes_the_same_function_in_float64():
    """In float32 a BatchNorm gradient over a batch split across devices differs from the
    single-device one by rounding that cancellation amplifies (see bench/correctness.py); in
    float64 the two agree to the last digits, which shows they are the same function. (The
    single-device side is the compiled `jit_vmap` step, itself checked against the eager reference
    above: compiled, it costs a fraction of what the eager step's float64 operations cost.)"""
    with jax.enable_x64(True):
        workload = _in_float64(BATCHNORM)
        single = build_step(workload, "tiny", "train", "jit_vmap")
        single()
        sharded = build_step(workload, "tiny", "train", "multi_device")
        sharded()
        errors = relative_errors(sharded.result(), single.result())
    assert max(v for k, v in errors.items() if k != "loss") < 1e-12
