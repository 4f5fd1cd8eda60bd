"""Faults planted into the suite's own code, to show that its checks catch them.

Loaded as a pytest plugin through `PYTEST_PLUGINS=tests.planted_faults` (so worker processes load
it too), with the fault named by `JAXBENCH_PLANTED_FAULT`:

- `flip_sign`: compiled steps flip the sign of one element of the first weight matrix (`kernel`) as they
  update it (eager steps, the reference among them, stay correct).
- `scale_gradient`: bf16 steps scale the gradient of the output layer by 1.5, its value unchanged.

Also usable directly: `flip_sign_under_jit(update)`, `scale_gradient_of(fn, name, factor)`.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from workloads import transforms

FAULT_VARIABLE = "JAXBENCH_PLANTED_FAULT"


def first_kernel_path(tree):
    """The path of the first weight matrix (`kernel`) in a parameter tree."""
    return next(path for path, _ in jax.tree_util.tree_leaves_with_path(tree) if "kernel" in jax.tree_util.keystr(path))


def flip_sign_under_jit(update):
    """`update` that, when traced by `jax.jit`, returns parameters whose first matrix has the sign
    of its first element flipped."""

    def planted(params, opt_state, grads):
        params, opt_state = update(params, opt_state, grads)
        if not isinstance(jax.tree.leaves(params)[0], jax.core.Tracer):
            return params, opt_state
        target = first_kernel_path(params)

        def flip(path, leaf):
            return leaf.at[(0,) * leaf.ndim].multiply(-1) if path == target else leaf

        return jax.tree_util.tree_map_with_path(flip, params), opt_state

    return planted


def scale_gradient_of(fn, name: str, factor: float):
    """`fn(params, ...)` whose gradient with respect to the parameters under `name` is scaled by
    `factor`, its value unchanged."""

    def scale(path, leaf):
        if name not in jax.tree_util.keystr(path):
            return leaf
        return leaf * factor + jax.lax.stop_gradient(leaf * (1 - factor))

    def planted(params, *rest):
        return fn(jax.tree_util.tree_map_with_path(scale, params), *rest)

    return planted


def _plant(fault: str) -> None:
    if fault == "flip_sign":
        original = transforms.optimizer_update
        transforms.optimizer_update = lambda tx: flip_sign_under_jit(original(tx))
    elif fault == "scale_gradient":
        original = transforms.mixed_precision
        transforms.mixed_precision = lambda fn, compute_dtype=jnp.bfloat16: original(
            scale_gradient_of(fn, "output_layer", 1.5), compute_dtype)
    else:
        raise ValueError(f"unknown planted fault {fault!r}; valid: flip_sign, scale_gradient")


if os.environ.get(FAULT_VARIABLE):
    _plant(os.environ[FAULT_VARIABLE])
