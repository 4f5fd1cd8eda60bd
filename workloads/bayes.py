"""Bayesian inference with NumPyro: hierarchical logistic regression, NUTS, posterior predictive.

Synthetic data are drawn from known parameters: per feature a population mean `mu` and scale
`tau`, per group coefficients `beta = mu + tau * z` (the model samples `z`, the non-centred form
that keeps NUTS out of the funnel), labels `y ~ Bernoulli(sigmoid(x . beta[group]))`. One run
samples `chains` NUTS chains (warm-up then draws), then computes the posterior predictive
probability of held-out points over `predictive_draws` posterior draws, with 90% intervals.

Variants (the step variants' names, mapped onto sampling):

| variant        | NUTS chains                                   | posterior predictive                 |
|----------------|-----------------------------------------------|--------------------------------------|
| `baseline`     | one after another (a Python loop over chains) | a Python loop over draws, eager      |
| `vmap`         | vectorised: `vmap` over chains                | `Predictive` over all draws, eager   |
| `jit_vmap`     | vectorised                                    | `Predictive` over all draws, jitted  |
| `multi_device` | in parallel, chains split over devices        | jitted, draws split over devices     |

A chain's sampling loop is always compiled (as NumPyro's `MCMC` does); it is compiled ahead of
time here, because `MCMC.run` recompiles on every call and its timing would be mostly compile.
The kernel, its step-size and mass-matrix adaptation and the diagnostics are NumPyro's own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.sharding import NamedSharding, PartitionSpec
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from numpyro.infer import NUTS, Predictive
from scipy import stats

from workloads import WORKFLOW_VARIANTS, compat
from workloads.contract import IncorrectResult
from workloads.variants import NotApplicable, compile_ahead_of_time
from workloads.workflow import RunTimings, Workflow

LATENT_SITES = ("mu", "tau", "z")
"""The sites NUTS samples."""
CHECKED_SITES = ("mu", "tau", "beta")
"""The parameters whose posteriors are checked against the truth the data were drawn from."""
MAX_SPLIT_RHAT = 1.05
FAMILY_CONFIDENCE = 0.95
"""Every checked value must lie in its credible interval, the intervals together holding the truth
with this probability (Bonferroni: each interval at 1 - 0.05 / number of values)."""
PREDICTIVE_RTOL = 1e-5
INTERVAL = (5.0, 95.0)
"""Percentiles of the posterior predictive interval (a 90% interval)."""


@dataclass(frozen=True)
class BayesSize:
    """Data, sampler and predictive sizes of one preset."""

    observations: int
    groups: int
    features: int
    chains: int
    warmup: int  # NUTS warm-up (adaptation) iterations per chain
    samples: int  # draws kept per chain
    predictive_draws: int  # posterior draws (evenly thinned) the predictive runs over
    test_points: int


SIZES = {
    "tiny": BayesSize(observations=160, groups=3, features=2, chains=2, warmup=150, samples=150,
                      predictive_draws=8, test_points=32),
    "small": BayesSize(observations=400, groups=8, features=3, chains=4, warmup=250, samples=250,
                       predictive_draws=32, test_points=200),
    "medium": BayesSize(observations=4000, groups=16, features=4, chains=8, warmup=500, samples=500,
                        predictive_draws=64, test_points=1000),
    "large": BayesSize(observations=20000, groups=32, features=8, chains=16, warmup=1000, samples=1000,
                       predictive_draws=128, test_points=5000),
}


def make_model(groups: int):
    """The hierarchical logistic regression over `groups` groups: model(x, group, y=None).

    With `y` it conditions on the labels; without, it also records the probabilities `p`.
    """

    def model(x, group, y=None):
        features = x.shape[-1]
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0).expand([features]).to_event(1))
        tau = numpyro.sample("tau", dist.HalfNormal(1.0).expand([features]).to_event(1))
        with numpyro.plate("groups", groups):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([features]).to_event(1))
        beta = numpyro.deterministic("beta", mu + tau * z)
        logits = jnp.sum(x * beta[group], axis=-1)
        with numpyro.plate("data", x.shape[0]):
            if y is None:
                numpyro.deterministic("p", jax.nn.sigmoid(logits))
            numpyro.sample("y", dist.Bernoulli(logits=logits), obs=y)

    return model


@dataclass(frozen=True)
class Dataset:
    """Training and held-out data, and the parameters they were drawn from."""

    truth: dict  # mu [F], tau [F], z [G, F], beta [G, F]
    x: jax.Array
    group: jax.Array
    y: jax.Array
    x_test: jax.Array
    group_test: jax.Array


def make_dataset(size: BayesSize, seed: int = 0) -> Dataset:
    """Parameters drawn once from fixed seeds, then labelled data from them."""
    keys = jax.random.split(jax.random.key(seed), 6)
    mu = jax.random.normal(keys[0], (size.features,))
    tau = jax.random.uniform(keys[1], (size.features,), minval=0.3, maxval=1.0)
    z = jax.random.normal(keys[2], (size.groups, size.features))
    truth = {"mu": mu, "tau": tau, "z": z, "beta": mu + tau * z}

    def draw(key, count):
        x_key, y_key = jax.random.split(key)
        x = jax.random.normal(x_key, (count, size.features))
        group = jnp.arange(count) % size.groups
        y = jax.random.bernoulli(y_key, jax.nn.sigmoid(jnp.sum(x * truth["beta"][group], -1)))
        return x, group, y.astype(jnp.int32)

    x, group, y = draw(keys[3], size.observations)
    x_test, group_test, _ = draw(keys[4], size.test_points)
    return Dataset(truth, x, group, y, x_test, group_test)


# --- sampling -----------------------------------------------------------------------------------


def chain_sampler(kernel: NUTS, size: BayesSize, dataset: Dataset):
    """(initial state of ONE chain, x, group, y) -> (constrained draws, divergences), warm-up included."""
    constrain = kernel.postprocess_fn((dataset.x, dataset.group), {"y": dataset.y})

    def run_chain(state, x, group, y):
        args, kwargs = (x, group), {"y": y}

        def advance(state, _):
            return kernel.sample(state, args, kwargs), None

        def draw(state, _):
            state = kernel.sample(state, args, kwargs)
            return state, (state.z, state.diverging)

        state, _ = jax.lax.scan(advance, state, None, length=size.warmup)
        _, (z, diverging) = jax.lax.scan(draw, state, None, length=size.samples)
        return jax.vmap(constrain)(z), diverging

    return run_chain


def _chain(tree, index: int):
    return jax.tree.map(lambda leaf: leaf[index], tree)


def _largest_divisor(total: int, at_most: int) -> int:
    """The largest n <= `at_most` that divides `total` (how many devices `total` items split over)."""
    return max(n for n in range(1, at_most + 1) if total % n == 0)


def _chain_mesh(chains: int, devices) -> tuple:
    """The largest set of devices (at most one per chain) that the chains divide over, as a mesh."""
    count = _largest_divisor(chains, min(chains, len(devices)))
    if count < 2:
        raise NotApplicable(f"{chains} chains do not split over {len(devices)} device(s)")
    return compat.make_mesh((count,), ("chains",), devices=devices[:count]), count


def _sampler(variant: str, run_chain, init_state, data, devices):
    """(sample, its initial state, compile seconds, devices): sample(state, *data) -> all chains'
    draws [C, S, ...]; the state is `init_state`, placed on the devices for `multi_device`."""
    if variant == "baseline":
        compiled, seconds = compile_ahead_of_time(run_chain, _chain(init_state, 0), *data)
        chains = jax.tree.leaves(init_state)[0].shape[0]

        def one_after_another(state, *data):
            runs = [compiled(_chain(state, c), *data) for c in range(chains)]
            return jax.tree.map(lambda *leaves: jnp.stack(leaves), *runs)

        return one_after_another, init_state, seconds, 1
    vectorised = jax.vmap(run_chain, in_axes=(0, None, None, None))
    if variant in ("vmap", "jit_vmap"):
        compiled, seconds = compile_ahead_of_time(vectorised, init_state, *data)
        return compiled, init_state, seconds, 1
    mesh, count = _chain_mesh(jax.tree.leaves(init_state)[0].shape[0], devices)
    chains, replicated = PartitionSpec("chains"), PartitionSpec()
    # shard_map, not a sharded vmap: each device runs its own chains' while loops, no chain waits
    # for another device's (under SPMD a vmapped while loop would step all chains together).
    parallel = jax.shard_map(vectorised, mesh=mesh, in_specs=(chains, replicated, replicated, replicated),
                             out_specs=chains, check_vma=False)
    state = jax.device_put(init_state, NamedSharding(mesh, chains))  # once, not in every timed run
    compiled, seconds = compile_ahead_of_time(parallel, state, *data)
    return compiled, state, seconds, count


# --- posterior predictive -----------------------------------------------------------------------


def _predictive(model, variant: str, draws: dict, x_test, group_test, devices):
    """(predict, compile seconds): predict(draws) -> probabilities p [draws, test points]."""
    key = jax.random.PRNGKey(2)

    def all_at_once(draws):
        return Predictive(model, draws, parallel=True, return_sites=["p"])(key, x_test, group_test)["p"]

    if variant == "baseline":
        def one_draw_at_a_time(draws):
            count = jax.tree.leaves(draws)[0].shape[0]
            rows = [Predictive(model, {k: v[i:i + 1] for k, v in draws.items()}, return_sites=["p"])(
                key, x_test, group_test)["p"][0] for i in range(count)]
            return jnp.stack(rows)

        return one_draw_at_a_time, None
    if variant == "vmap":
        return all_at_once, None
    if variant == "jit_vmap":
        return compile_ahead_of_time(all_at_once, draws)
    count = _largest_divisor(jax.tree.leaves(draws)[0].shape[0], len(devices))
    mesh = compat.make_mesh((count,), ("draws",), devices=devices[:count])
    sharding = NamedSharding(mesh, PartitionSpec("draws"))
    compiled, seconds = compile_ahead_of_time(all_at_once, jax.device_put(draws, sharding))
    return (lambda draws: compiled(jax.device_put(draws, sharding))), seconds


def truth_as_draws(dataset: Dataset, count: int) -> dict:
    """The true latent values repeated as `count` draws: a deterministic probe of the predictive."""
    return {k: jnp.broadcast_to(dataset.truth[k], (count, *dataset.truth[k].shape)) for k in LATENT_SITES}


def thinned(draws: dict, count: int) -> dict:
    """`count` draws taken evenly from all chains' draws (flattened chain-major)."""
    flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in draws.items()}
    total = jax.tree.leaves(flat)[0].shape[0]
    index = jnp.linspace(0, total - 1, count).astype(jnp.int32)
    return {k: flat[k][index] for k in LATENT_SITES}


# --- diagnostics --------------------------------------------------------------------------------


def posterior_summary(draws: dict) -> dict[str, dict[str, np.ndarray]]:
    """site -> mean, sd, effective sample size and split R-hat of each value (draws [C, S, ...])."""
    summary = {}
    for site in (*LATENT_SITES, "beta"):
        values = np.asarray(draws[site], np.float64)
        summary[site] = {
            "mean": values.mean(axis=(0, 1)),
            "sd": values.std(axis=(0, 1), ddof=1),
            "ess": np.asarray(effective_sample_size(values)),
            "rhat": np.asarray(split_gelman_rubin(values)),
        }
    return summary


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
        true_p = np.asarray(jax.nn.sigmoid(jnp.sum(self.dataset.x_test * self.dataset.truth["beta"][self.dataset.group_test], -1)))
        return {
            "sampling_s": sampling_s,
            "predictive_s": self.median("predictive_s"),
            "draws_per_s": self.size.chains * self.size.samples / sampling_s,
            "min_ess": min_ess,
            "min_ess_per_s": min_ess / sampling_s,
            "max_split_rhat": max(float(s["rhat"].max()) for s in summary.values()),
            "divergences": self.divergences,
            "predictive_interval_width": float(np.mean(high - low)),
            "predictive_interval_covers_truth": float(np.mean((low <= true_p) & (true_p <= high))),
            "predictive_mean_abs_error": float(np.mean(np.abs(mean_p - true_p))),
        }



def prepare(size_name: str, variant: str, workdir=None, *, devices=None, seed: int = 0) -> BayesRun:
    """Build `variant` at size `size_name`: data, NUTS initial states (one per chain) and compiled
    pieces. `workdir` is unused (inference writes nothing)."""
    size = WORKLOAD.size(size_name)
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
    sample, init_state, sample_s, n_devices = _sampler(variant, run_chain, init_state, data, devices)
    probe = truth_as_draws(dataset, size.predictive_draws)
    predict, predict_s = _predictive(model, variant, probe, dataset.x_test, dataset.group_test, devices)
    compile_s = sample_s + (predict_s or 0.0)
    return BayesRun(size, variant, dataset, sample, predict, init_state, compile_s, n_devices)


def check(result: dict, reference: dict) -> dict[str, float]:
    """Raise `IncorrectResult` unless the posterior converged, holds the truth, agrees with the
    reference's within Monte Carlo error, and the predictive matches the reference's exactly.

    - split R-hat of every latent value below `MAX_SPLIT_RHAT`;
    - every checked value's truth inside its credible interval (normal approximation, Bonferroni
      over all values at `FAMILY_CONFIDENCE`): |mean - truth| / sd <= z;
    - every value's posterior mean within the same z of the reference's, in units of the two
      Monte Carlo standard errors (sd / sqrt(ESS)) combined;
    - the predictive at the true parameters within `PREDICTIVE_RTOL` of the reference's.

    Returns the worst figure of each check.
    """
    summary, ref = result["summary"], reference["summary"]
    values = sum(summary[site]["mean"].size for site in CHECKED_SITES)
    z_limit = float(stats.norm.ppf(1 - (1 - FAMILY_CONFIDENCE) / (2 * values)))
    rhat = max(float(s["rhat"].max()) for s in summary.values())
    truth_z = max(float(np.max(np.abs(summary[s]["mean"] - result["truth"][s]) / summary[s]["sd"]))
                  for s in CHECKED_SITES)

    def mcse(s):
        return s["sd"] / np.sqrt(s["ess"])

    agreement_z = max(float(np.max(np.abs(summary[s]["mean"] - ref[s]["mean"])
                                   / np.sqrt(mcse(summary[s]) ** 2 + mcse(ref[s]) ** 2)))
                      for s in CHECKED_SITES)
    probe, probe_ref = result["predictive_at_truth"], reference["predictive_at_truth"]
    predictive_error = float(np.linalg.norm(probe - probe_ref) / np.linalg.norm(probe_ref))
    figures = {"max_split_rhat": rhat, "truth_z": truth_z, "agreement_z": agreement_z, "z_limit": z_limit,
               "predictive_rel_error": predictive_error}
    failures = []
    if not rhat < MAX_SPLIT_RHAT:
        failures.append(f"split R-hat {rhat:.3f} >= {MAX_SPLIT_RHAT}")
    if not truth_z <= z_limit:
        failures.append(f"a true parameter lies {truth_z:.2f} sd from its posterior mean (limit {z_limit:.2f})")
    if not agreement_z <= z_limit:
        failures.append(f"posterior means differ from the reference's by {agreement_z:.2f} Monte Carlo "
                        f"standard errors (limit {z_limit:.2f})")
    if not predictive_error <= PREDICTIVE_RTOL:
        failures.append(f"posterior predictive differs from the reference's by {predictive_error:.3g} "
                        f"relative (limit {PREDICTIVE_RTOL:g})")
    if failures:
        raise IncorrectResult("; ".join(failures))
    return figures


WORKLOAD = Workflow(name="bayes", mode="infer", sizes=SIZES, variants=WORKFLOW_VARIANTS["bayes"],
                    prepare=prepare, check=check, throughput=("draws_per_s", "draws"))
