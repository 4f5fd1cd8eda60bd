"""The MLP workload: seeded data, sizes, analytic FLOPs checked against XLA's count."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from jaxbench.workloads import SIZES, get_workload
from jaxbench.workloads.layers import configure_stacks
from tests.conftest import xla_forward_flops, xla_gradient_flops

MLP = get_workload("mlp")


def test_every_size_preset_exists():
    assert tuple(MLP.sizes) == SIZES
    with pytest.raises(ValueError, match="no size 'huge'; valid: tiny, small, medium, large"):
        MLP.size("huge")


def test_unknown_workload_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown workload 'cnn9'; valid: mlp, cnn, cnn_batchnorm, transformer"):
        get_workload("cnn9")


def test_batches_are_seeded():
    size = MLP.sizes["tiny"]
    a = MLP.make_batch(size, jax.random.key(1))
    b = MLP.make_batch(size, jax.random.key(1))
    c = MLP.make_batch(size, jax.random.key(2))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (size.batch_size, size.features) and a[1].shape == (size.batch_size,)


def test_scan_and_loop_compute_the_same_model():
    size = MLP.sizes["tiny"]
    model = MLP.build_model(size, nnx.Rngs(0))
    inputs, _ = MLP.make_batch(size, jax.random.key(1))
    scanned = model(inputs)
    configure_stacks(model, scan=False, remat=False)
    np.testing.assert_allclose(model(inputs), scanned, rtol=1e-6)


def test_forward_flops_match_xla_cost_analysis():
    size = MLP.sizes["tiny"]
    xla_flops = xla_forward_flops(MLP)
    analytic = MLP.flops_per_step(size, "infer")
    # XLA also counts bias adds and ReLUs, which the analytic count (matmuls only) leaves out.
    assert analytic <= xla_flops <= 1.1 * analytic


def test_train_flops_match_xla_cost_analysis_of_the_gradient():
    """Training counts 2 FLOPs per weight per example forward and 4 backward: held to XLA's count
    of the gradient (the optimizer's elementwise update is left out of both). A count of 2 per
    weight backward (twice the forward in all) would be a third short."""
    size = MLP.sizes["tiny"]
    analytic, xla_flops = MLP.flops_per_step(size, "train"), xla_gradient_flops(MLP)
    # XLA also counts the biases, ReLUs, the softmax and their gradients, and leaves out the first
    # layer's input gradient, which nothing needs (the analytic count has it): so a little either way.
    assert 0.9 * analytic <= xla_flops <= 1.15 * analytic, (analytic, xla_flops)
