"""The posterior predictive: probabilities of held-out points over posterior draws, per variant."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
from numpyro.infer import Predictive

from jaxbench.workloads import compat
from jaxbench.workloads.bayes.model import LATENT_SITES, Dataset
from jaxbench.workloads.bayes.sampling import largest_divisor
from jaxbench.workloads.steps import compile_ahead_of_time


def predictive(model, variant: str, draws: dict, x_test, group_test, devices):
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
    count = largest_divisor(jax.tree.leaves(draws)[0].shape[0], len(devices))
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
