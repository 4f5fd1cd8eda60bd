"""The hierarchical logistic regression, its presets, and synthetic data drawn from known parameters."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

LATENT_SITES = ("mu", "tau", "z")
"""The sites NUTS samples."""


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
