"""The ResNet-style CNN: every variant against baseline, FLOPs against XLA's count."""

from __future__ import annotations

import jax
import pytest
from flax import nnx

from bench.correctness import check_against_baseline
from workloads import get_workload
from workloads.cnn import conv_flops_per_example
from workloads.layers import configure_stacks
from workloads.variants import prepare, variants_for

CNN = get_workload("cnn")


@pytest.fixture(scope="module")
def baseline_results():
    results = {}
    for mode in CNN.modes:
        step = prepare(CNN, "tiny", mode, "baseline")
        step()
        results[mode] = step.result()
    return results


@pytest.mark.parametrize("mode,variant", [(m, v) for m in CNN.modes for v in variants_for(m) if v != "baseline"])
def test_variant_agrees_with_baseline(mode, variant, baseline_results):
    step = prepare(CNN, "tiny", mode, variant)
    step()
    dtype = "bfloat16" if variant == "bf16" else "float32"
    errors = check_against_baseline(step.result(), baseline_results[mode], dtype)
    if variant != "bf16":
        assert max(errors.values()) < 1e-5


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
    model = CNN.build_model(size, nnx.Rngs(0))
    configure_stacks(model, scan=False, remat=False)  # unrolled: cost_analysis counts a scan body once
    images, _ = CNN.make_batch(size, jax.random.key(1))
    graphdef, params = nnx.split(model)
    forward = jax.jit(jax.vmap(lambda p, x: nnx.merge(graphdef, p)(x), in_axes=(None, 0)))
    cost = forward.lower(params, images).compile().cost_analysis()
    xla_flops = (cost[0] if isinstance(cost, list) else cost)["flops"]
    nominal = CNN.flops_per_step(size, "infer")
    assert nominal == conv_flops_per_example(size) * size.batch_size
    # XLA counts only the kernel taps inside the image (not the 'SAME' padding), and also
    # GroupNorm, ReLU, residual adds and pooling; the analytic count is convolutions.
    inside = conv_flops_per_example(size, count_padding=False) * size.batch_size
    assert inside < nominal
    assert inside <= xla_flops <= 1.3 * inside, (inside, xla_flops)
