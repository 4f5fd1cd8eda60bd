"""One variant's inference as the bench times it: NUTS sampling then the posterior predictive,
built once (data, initial states, compiled pieces), and its figures."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import NUTS

from jaxbench.workloads.bayes.diagnostics import posterior_summary
from jaxbench.workloads.bayes.model import SIZES, BayesSize, Dataset, make_dataset, make_model
from jaxbench.workloads.bayes.predictive import predictive, thinned, truth_as_draws
from jaxbench.workloads.bayes.sampling import chain_sampler, sampler
from jaxbench.workloads.contract import size_preset
from jaxbench.workloads.workflow import RunTimings

INTERVAL = (5.0, 95.0)
"""Percentiles of the posterior predictive interval (a 90% interval)."""


@dataclass
class BayesRun(RunTimings):
    """One variant prepared: data, NUTS initial states and compiled pieces; one call = one inference."""

    size: BayesSize
    variant: str
    dataset: Dataset
    sample: object
    predict: object
    init_state: object
    compile_s: float | None
    n_devices: int
    draws: dict | None = None
    probabilities: jax.Array | None = None
    divergences: int = 0

    def __call__(self) -> None:
        data = (self.dataset.x, self.dataset.group, self.dataset.y)
        start = time.perf_counter()
        draws, diverging = jax.block_until_ready(self.sample(self.init_state, *data))
        sampled = time.perf_counter()
        probabilities = jax.block_until_ready(self.predict(thinned(draws, self.size.predictive_draws)))
        done = time.perf_counter()
        self.draws, self.probabilities = draws, probabilities
        self.divergences = int(jnp.sum(diverging))
        self.record("sampling_s", sampled - start)
        self.record("predictive_s", done - sampled)

    def result(self) -> dict:
        """Posterior summary, and the predictive evaluated at the true parameters (a deterministic
        probe of the predictive itself, independent of the sampler's randomness)."""
        return {
            "summary": posterior_summary(self.draws),
            "truth": {k: np.asarray(v) for k, v in self.dataset.truth.items()},
            "predictive_at_truth": np.asarray(self.predict(truth_as_draws(self.dataset, self.size.predictive_draws))),
        }

    def metrics(self) -> dict[str, float]:
        summary = posterior_summary(self.draws)
        sampling_s = self.median("sampling_s")
        min_ess = min(float(s["ess"].min()) for s in summary.values())
        low, high = np.percentile(np.asarray(self.probabilities), INTERVAL, axis=0)
        mean_p = np.asarray(self.probabilities).mean(axis=0)
        beta = self.dataset.truth["beta"][self.dataset.group_test]
        true_p = np.asarray(jax.nn.sigmoid(jnp.sum(self.dataset.x_test * beta, -1)))
        return {
            "sampling_s": sampling_s,
            "predictive_s": self.median("predictive_s"),
            # Kept draws over the whole sampling run, whose time includes the NUTS warm-up: what a
            # user waits per draw kept. The sampler's own rate counts the warm-up's iterations too.
            "draws_per_s": self.size.chains * self.size.samples / sampling_s,
            "iterations_per_s": self.size.chains * (self.size.warmup + self.size.samples) / sampling_s,
            "min_ess": min_ess,
            "min_ess_per_s": min_ess / sampling_s,
            "max_split_rhat": max(float(s["rhat"].max()) for s in summary.values()),
            "divergences": self.divergences,
            "predictive_interval_width": float(np.mean(high - low)),
            "predictive_interval_covers_truth": float(np.mean((low <= true_p) & (true_p <= high))),
            "predictive_mean_abs_error": float(np.mean(np.abs(mean_p - true_p))),
        }



def start_run(size_name: str, variant: str, workdir=None, *, devices=None, seed: int = 0) -> BayesRun:
    """Build `variant` at size `size_name`: data, NUTS initial states (one per chain) and compiled
    pieces. `workdir` is unused (inference writes nothing)."""
    size = size_preset("bayes", SIZES, size_name)
    devices = devices or jax.devices()
    dataset = make_dataset(size, seed)
    model = make_model(size.groups)
    kernel = NUTS(model)
    data = (dataset.x, dataset.group, dataset.y)
    # One chain at a time: initialised with a batch of keys, NUTS would vmap its `sample` over chains.
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), size.chains)
    states = [kernel.init(key, size.warmup, model_args=data[:2], model_kwargs={"y": dataset.y}) for key in keys]
    init_state = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
    run_chain = chain_sampler(kernel, size, dataset)
    sample, init_state, sample_s, n_devices = sampler(variant, run_chain, init_state, data, devices,
                                                       program=(size_name, seed))
    probe = truth_as_draws(dataset, size.predictive_draws)
    predict, predict_s = predictive(model, variant, probe, dataset.x_test, dataset.group_test, devices)
    compile_s = sample_s + (predict_s or 0.0)
    return BayesRun(size, variant, dataset, sample, predict, init_state, compile_s, n_devices)
