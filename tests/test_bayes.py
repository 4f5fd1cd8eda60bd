"""The NumPyro workflow's parts: data from known parameters, the predictive, and checks that can fail."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbench.workloads import WORKFLOW_VARIANTS, bayes
from jaxbench.workloads.contract import IncorrectResult, NotApplicable
from tests.conftest import default_optimisation

TINY = bayes.SIZES["tiny"]


SAMPLE_BOTH = """
import os, pickle, sys
from pathlib import Path
import jax
jax.config.update("jax_num_cpu_devices", 2)
from jaxbench.workloads import WORKFLOW_VARIANTS, bayes, compile_cache
compile_cache.use_persistent_cache(Path(os.environ["JAXBENCH_COMPILE_CACHE"]))
runs = {}
for variant in ("multi_device", WORKFLOW_VARIANTS["bayes"][0]):
    with bayes.start_run("tiny", variant) as run:
        run()
        runs[variant] = (run.result(), run.metrics())
Path(sys.argv[1]).write_bytes(pickle.dumps(runs))
"""
"""A tiny run with the chains split over devices (the vectorised sampler under `shard_map`, the one
variant whose sampling program is not also compiled by the fast tier), and an independent run of the
workflow's reference variant (its chains one after another), what `check` holds a variant's result
to in a benchmark: each one's result and metrics."""


@pytest.fixture(scope="module")
def sampled(tmp_path_factory) -> dict:
    """`SAMPLE_BOTH`'s runs, by variant, in a process at XLA's default optimisation level: the two
    samplers are different programs, and draw the same samples only where they round alike."""
    out = tmp_path_factory.mktemp("bayes") / "runs.pkl"
    proc = subprocess.run([sys.executable, "-c", SAMPLE_BOTH, str(out)], env=default_optimisation(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return pickle.loads(out.read_bytes())


@pytest.fixture(scope="module")
def converged(sampled):
    """The sharded run's result and metrics."""
    return sampled["multi_device"]


@pytest.fixture(scope="module")
def reference(sampled):
    """The reference variant's result."""
    return sampled[WORKFLOW_VARIANTS["bayes"][0]][0]


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
    result, metrics = converged
    # Held to another run, the chains sampled one after another on one device rather than in
    # parallel: with the same seeds both draw the same samples, so their posterior means agree to rounding.
    figures = bayes.check(result, reference)
    assert figures["agreement_z"] < 1e-3 * figures["z_limit"]
    assert figures["max_split_rhat"] < bayes.MAX_SPLIT_RHAT
    assert figures["truth_z"] <= figures["z_limit"]
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
