"""NUTS chains: one chain's sampling loop (NumPyro's kernel in a `lax.scan`), run one chain after
another, vectorised over chains, or with the chains split over devices."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
from numpyro.infer import NUTS

from jaxbench.workloads import compat
from jaxbench.workloads.bayes.model import BayesSize, Dataset
from jaxbench.workloads.contract import NotApplicable
from jaxbench.workloads.steps import compile_ahead_of_time


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


def largest_divisor(total: int, at_most: int) -> int:
    """The largest n <= `at_most` that divides `total` (how many devices `total` items split over)."""
    return max(n for n in range(1, at_most + 1) if total % n == 0)


def _chain_mesh(chains: int, devices) -> tuple:
    """The largest set of devices (at most one per chain) that the chains divide over, as a mesh."""
    count = largest_divisor(chains, min(chains, len(devices)))
    if count < 2:
        raise NotApplicable(f"{chains} chains do not split over {len(devices)} device(s)")
    return compat.make_mesh((count,), ("chains",), devices=devices[:count]), count


_VECTORISED: dict[tuple, tuple] = {}
"""(size name, seed) -> (the compiled vectorised sampler, seconds its compile took). `vmap` and
`jit_vmap` sample with the same program (they differ in the predictive): it is compiled once per
process, and each of them reports the seconds that compile took."""


def sampler(variant: str, run_chain, init_state, data, devices, program: tuple):
    """(sample, its initial state, compile seconds, devices): sample(state, *data) -> all chains'
    draws [C, S, ...]; the state is `init_state`, placed on the devices for `multi_device`.
    `program`: (size name, seed), which fix the data and so the compiled program."""
    if variant == "baseline":
        compiled, seconds = compile_ahead_of_time(run_chain, _chain(init_state, 0), *data)
        chains = jax.tree.leaves(init_state)[0].shape[0]

        def one_after_another(state, *data):
            runs = [compiled(_chain(state, c), *data) for c in range(chains)]
            return jax.tree.map(lambda *leaves: jnp.stack(leaves), *runs)

        return one_after_another, init_state, seconds, 1
    vectorised = jax.vmap(run_chain, in_axes=(0, None, None, None))
    if variant in ("vmap", "jit_vmap"):
        if program not in _VECTORISED:
            _VECTORISED[program] = compile_ahead_of_time(vectorised, init_state, *data)
        compiled, seconds = _VECTORISED[program]
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
