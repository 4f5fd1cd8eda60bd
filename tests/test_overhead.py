"""The harness adds little: jaxbench's `jit_vmap` step against a hand-written pure-JAX step."""

from __future__ import annotations

import timeit

import jax
import jax.numpy as jnp
import optax

from jaxbench.workloads import get_workload
from jaxbench.workloads.steps import build_step


def _hand_written_mlp_step(size):
    """The tiny MLP's training step in plain JAX + Optax: params in a dict, one `jax.jit`."""
    keys = jax.random.split(jax.random.key(0), 3)
    d, h, c, n = size.features, size.hidden, size.classes, size.num_blocks
    params = {
        "w_in": jax.random.normal(keys[0], (d, h)) * d**-0.5, "b_in": jnp.zeros(h),
        "w_h": jax.random.normal(keys[1], (n, h, h)) * h**-0.5, "b_h": jnp.zeros((n, h)),
        "w_out": jax.random.normal(keys[2], (h, c)) * h**-0.5, "b_out": jnp.zeros(c),
    }

    def forward(params, x):
        x = jax.nn.relu(x @ params["w_in"] + params["b_in"])
        layer = lambda x, wb: (jax.nn.relu(x @ wb[0] + wb[1]), None)  # noqa: E731
        x, _ = jax.lax.scan(layer, x, (params["w_h"], params["b_h"]))
        return x @ params["w_out"] + params["b_out"]

    tx = optax.adamw(size.learning_rate, weight_decay=1e-4)

    @jax.jit
    def step(params, opt_state, x, y):
        loss_fn = lambda p: optax.softmax_cross_entropy_with_integer_labels(forward(p, x), y).mean()  # noqa: E731
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step, params, tx.init(params)


def test_jit_vmap_step_is_within_1_5x_of_a_hand_written_step():
    mlp = get_workload("mlp")
    ours = build_step(mlp, "tiny", "train", "jit_vmap")
    pure_step, params, opt_state = _hand_written_mlp_step(mlp.sizes["tiny"])
    x, y = ours.batch
    state = [params, opt_state]

    def run_pure():
        state[0], state[1], loss = pure_step(state[0], state[1], x, y)
        jax.block_until_ready((state, loss))

    ours(), run_pure()
    # Alternate the two, so that a slow stretch of a shared machine falls on both alike; the
    # fastest of many short repeats is each step's own cost.
    ours_runs, pure_runs = [], []
    for _ in range(15):
        ours_runs.append(timeit.timeit(ours, number=50) / 50)
        pure_runs.append(timeit.timeit(run_pure, number=50) / 50)
    ours_s, pure_s = min(ours_runs), min(pure_runs)
    assert ours_s < 1.5 * pure_s, f"jaxbench {ours_s * 1e6:.1f} us vs hand-written {pure_s * 1e6:.1f} us"
