"""The NumPyro workflow's parts: data from known parameters, the predictive, and checks that can fail."""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbench.workloads import WORKFLOW_VARIANTS, bayes
from jaxbench.workloads.contract import IncorrectResult, NotApplicable

TINY = bayes.SIZES["tiny"]


@pytest.fixture(scope="module")
def converged():
    """A tiny run with the chains split over devices (the vectorised sampler under `shard_map`, the
    one variant whose sampling program is not also compiled by the fast tier): its result, and the run."""
    with bayes.start_run("tiny", "multi_device") as run:
        run()
        return run.result(), run


@pytest.fixture(scope="module")
def reference():
    """An independent run of the workflow's reference variant (its chains one after another): what
    `check` holds a variant's result to in a benchmark."""
    with bayes.start_run("tiny", WORKFLOW_VARIANTS["bayes"][0]) as run:
        run()
        return run.result()


def test_data_follow_the_hierarchy():
    data = bayes.make_dataset(TINY)
    truth = data.truth
    np.testing.assert_allclose(truth["beta"], truth["mu"] + truth["tau"] * truth["z"])
    assert data.x.shape == (TINY.observations, TINY.features) and data.x_test.shape[0] == TINY.test_points
    assert set(np.unique(np.asarray(data.group))) == set(range(TINY.groups))
    assert 0.2 < float(jnp.mean(data.y)) < 0.8  # both labels occur


def test_predictive_variants_compute_the_same_probabilities():
    """The loop over draws, eager vmap, jit and sharded jit agree, and equal sigmoid(x . beta) at the truth."""
    data = bayes.make_dataset(TINY)
    model = bayes.make_model(TINY.groups)
    draws = {k: jnp.stack([data.truth[k] * (1 + 0.1 * i) for i in range(TINY.predictive_draws)])
             for k in bayes.LATENT_SITES}
    outputs = {}
    for variant in WORKFLOW_VARIANTS["bayes"]:
        predict, _ = bayes.predictive(model, variant, draws, data.x_test, data.group_test, jax.devices())
        outputs[variant] = np.asarray(predict(draws))
    for variant, probabilities in outputs.items():
        np.testing.assert_allclose(probabilities, outputs["baseline"], rtol=1e-5, err_msg=variant)
    exact = jax.nn.sigmoid(jnp.sum(data.x_test * data.truth["beta"][data.group_test], -1))
    np.testing.assert_allclose(outputs["baseline"][0], exact, rtol=1e-6)


@pytest.mark.slow
def test_posterior_holds_the_truth_and_converges(converged, reference):
    result, run = converged
    # Held to another run, the chains sampled one after another on one device rather than in
    # parallel: with the same seeds both draw the same samples, so their posterior means agree to rounding.
    figures = bayes.check(result, reference)
    assert figures["agreement_z"] < 1e-3 * figures["z_limit"]
    assert figures["max_split_rhat"] < bayes.MAX_SPLIT_RHAT
    assert figures["truth_z"] <= figures["z_limit"]
    metrics = run.metrics()
    assert metrics["min_ess"] > 50 and metrics["divergences"] == 0
    assert 0 < metrics["predictive_interval_width"] < 1


@pytest.mark.slow
@pytest.mark.parametrize("break_it,message", [
    (lambda r: r["summary"]["mu"].update(mean=r["summary"]["mu"]["mean"] + 10 * r["summary"]["mu"]["sd"]),
     "true parameter lies"),
    (lambda r: r["summary"]["tau"].update(rhat=np.full_like(r["summary"]["tau"]["rhat"], 1.2)), "split R-hat 1.200"),
    (lambda r: r.update(predictive_at_truth=r["predictive_at_truth"] * 1.01), "posterior predictive differs"),
])
def test_check_fails_a_wrong_result(converged, break_it, message):
    result, _ = converged
    broken = copy.deepcopy(result)
    break_it(broken)
    with pytest.raises(IncorrectResult, match=message):
        bayes.check(broken, result)


@pytest.mark.slow
def test_check_fails_a_posterior_unlike_the_reference(converged):
    result, _ = converged
    moved = copy.deepcopy(result)
    beta = moved["summary"]["beta"]
    beta["mean"] = beta["mean"] + 8 * beta["sd"] / np.sqrt(beta["ess"])  # far in Monte Carlo terms
    moved["truth"]["beta"] = beta["mean"]  # still holds "the truth", so only the agreement can fail
    with pytest.raises(IncorrectResult, match="Monte Carlo standard errors"):
        bayes.check(moved, result)


def test_multi_device_needs_chains_that_split_over_devices():
    with pytest.raises(NotApplicable, match="2 chains do not split over 1 device"):
        bayes.start_run("tiny", "multi_device", devices=jax.devices()[:1])


def test_vmap_and_jit_vmap_share_one_compiled_sampler():
    """The same vectorised sampling program: compiled once, and both report that compile's seconds."""
    with bayes.start_run("tiny", "vmap") as first, bayes.start_run("tiny", "jit_vmap") as second:
        assert second.sample is first.sample
        assert second.compile_s > first.compile_s  # the jitted predictive's compile on top
