"""The one place where JAX versions differ in API (JAX 0.10 on Python 3.11, 0.12 on 3.12+).

Everything else in the suite calls these functions instead of checking versions.
"""

from __future__ import annotations

import jax
from jax.sharding import Mesh


def make_mesh(shape: tuple[int, ...], axis_names: tuple[str, ...], devices=None) -> Mesh:
    """A device mesh with `Auto` axis types, so `NamedSharding` + `jax.jit` propagate as usual.

    `jax.make_mesh` defaults to `Explicit` axes on both 0.10 and 0.12; older releases had no
    `axis_types` argument, where `Auto` was the only kind.
    """
    kwargs = {"devices": devices} if devices is not None else {}
    axis_type = getattr(jax.sharding, "AxisType", None)
    if axis_type is None:  # pragma: no cover - JAX older than the suite supports
        return jax.make_mesh(shape, axis_names, **kwargs)
    return jax.make_mesh(shape, axis_names, axis_types=(axis_type.Auto,) * len(shape), **kwargs)


def memory_analysis(compiled) -> dict[str, int] | None:
    """Per-device byte counts of a compiled executable (`argument`, `output`, `alias`, `temp`).

    Returns None where the backend gives no analysis. The field names are the same on 0.10 and
    0.12 (0.12 adds `total_allocation_bytes`, which the suite does not use).
    """
    try:
        stats = compiled.memory_analysis()
    except (NotImplementedError, RuntimeError):  # pragma: no cover - backend without analysis
        return None
    if stats is None:  # pragma: no cover
        return None
    if isinstance(stats, (list, tuple)):  # pragma: no cover - one entry per executable
        stats = stats[0]
    return {
        "argument": int(stats.argument_size_in_bytes),
        "output": int(stats.output_size_in_bytes),
        "alias": int(stats.alias_size_in_bytes),
        "temp": int(stats.temp_size_in_bytes),
    }


def cost_analysis(compiled) -> dict[str, float] | None:
    """XLA's cost analysis of a compiled executable: `flops` and `bytes_accessed` (deterministic
    for a given program, compiler and device kind), or None where the backend gives none. A dict
    on 0.10 and 0.12 (older releases gave a list of one dict per executable)."""
    try:
        cost = compiled.cost_analysis()
    except (NotImplementedError, RuntimeError):  # pragma: no cover - backend without analysis
        return None
    if isinstance(cost, (list, tuple)):  # pragma: no cover
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:  # pragma: no cover
        return None
    # A backend that counts no bytes leaves them unknown (None), never 0: the exact gate skips it.
    accessed = cost.get("bytes accessed")
    return {"flops": float(cost["flops"]), "bytes_accessed": None if accessed is None else float(accessed)}


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is a device running out of memory (XLA's RESOURCE_EXHAUSTED)."""
    return isinstance(error, jax.errors.JaxRuntimeError) and (
        "RESOURCE_EXHAUSTED" in str(error) or "Out of memory" in str(error)
    )
