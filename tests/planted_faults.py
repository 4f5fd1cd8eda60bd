"""Faults planted into the suite's own code, to show that its checks catch them.

Loaded as a pytest plugin through `PYTEST_PLUGINS=tests.planted_faults` (so worker processes load
it too), with the fault named by `JAXBENCH_PLANTED_FAULT`:

- `flip_sign`: compiled steps flip the sign of one element of the first weight matrix (`kernel`) as they
  update it (eager steps, the reference among them, stay correct).
- `scale_gradient`: bf16 steps scale the gradient of the output layer by 1.5, its value unchanged.
- `tf32_gpu`: not a fault but a platform: the suite is told float32 matmuls run in TF32 (as on an
  NVIDIA GPU from Ampere on), and compiled train steps traced at JAX's default matmul precision
  round their gradients to TF32's 10-bit mantissa, as such a GPU's products would; at `highest`
  they stay exact, as they would there.

- `gpu_memory`: not a fault but a platform: devices keep memory statistics, as a GPU's allocator
  does, simulated (`simulate_device_memory`).

Several can be named, comma-separated (e.g. `tf32_gpu,flip_sign`). Also usable directly:
`flip_sign_under_jit(update)`, `scale_gradient_of(fn, name, factor)`, `tf32_under_default_precision(update)`.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from jaxbench.bench import hardware
from jaxbench.workloads import transforms

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


def round_to_tf32(tree):
    """Every float32 leaf of `tree` rounded to the nearest TensorFloat-32 value (10-bit mantissa)."""

    def round_leaf(leaf):
        if leaf.dtype != jnp.float32:
            return leaf
        bits = jax.lax.bitcast_convert_type(leaf, jnp.uint32)
        bits = (bits + jnp.uint32(0x1000)) & jnp.uint32(0xFFFFE000)
        return jax.lax.bitcast_convert_type(bits, jnp.float32)

    return jax.tree.map(round_leaf, tree)


def tf32_under_default_precision(update):
    """`update` that, when traced at a matmul precision other than full float32, rounds the
    gradients it applies to TF32."""

    def rounded(params, opt_state, grads):
        traced = isinstance(jax.tree.leaves(grads)[0], jax.core.Tracer)
        if traced and jax.config.jax_default_matmul_precision not in hardware.FULL_PRECISION:
            grads = round_to_tf32(grads)
        return update(params, opt_state, grads)

    return rounded


def simulate_device_memory() -> None:
    """Give this process's devices a simulated allocator peak (`bench.hardware.peak_bytes_in_use`):
    the most bytes seen held at the end of any prepared step's call, counting every live device
    array plus that step's compiled temporaries (what XLA holds during the call). Two steps alive
    at once, or a reference run beside the timed step before the read, raise it above the timed
    step's compiled footprint."""
    from jaxbench.workloads import steps

    peak = {"bytes": 0}
    call = steps.PreparedStep.__call__

    def sampled(self, *args, **kwargs):
        output = call(self, *args, **kwargs)
        held = sum(array.nbytes for array in jax.live_arrays()) + (self.memory or {}).get("temp", 0)
        peak["bytes"] = max(peak["bytes"], held)
        return output

    steps.PreparedStep.__call__ = sampled
    hardware.peak_bytes_in_use = lambda devices: peak["bytes"]


def _plant(fault: str) -> None:
    if fault == "flip_sign":
        original = transforms.optimizer_update
        transforms.optimizer_update = lambda tx: flip_sign_under_jit(original(tx))
    elif fault == "scale_gradient":
        original = transforms.mixed_precision
        transforms.mixed_precision = lambda fn, compute_dtype=jnp.bfloat16: original(
            scale_gradient_of(fn, "output_layer", 1.5), compute_dtype)
    elif fault == "tf32_gpu":
        hardware.device_float32_arithmetic = lambda device=None: "tf32"
        original = transforms.optimizer_update
        transforms.optimizer_update = lambda tx: tf32_under_default_precision(original(tx))
    elif fault == "gpu_memory":
        simulate_device_memory()
    else:
        raise ValueError(f"unknown planted fault {fault!r}; valid: flip_sign, scale_gradient, tf32_gpu, gpu_memory")


for planted_fault in filter(None, os.environ.get(FAULT_VARIABLE, "").split(",")):
    _plant(planted_fault)
