"""Correct before fast: a variant's result is compared with `baseline`'s before it is timed.

What is compared, and how:

- `loss` / `predictions`, `params` (the updated parameters, over the whole tree at once),
  `opt_state[...]` and `model_state[...]` (each leaf on its own): relative L2 error
  ||variant - baseline|| / ||baseline||. Parameters are compared as one tree because Adam
  normalises each element's step to about the learning rate, so an element whose gradient is
  within rounding of zero can move by +lr in one variant and -lr in another: per leaf, a
  zero-initialised bias with a few such elements would read as a large error that is only
  rounding. The optimizer state carries the gradient (after one step Adam's moments are
  (1 - b1) g and (1 - b2) g^2, SGD's trace is g), so it is the check of the mean gradient, leaf by
  leaf, scale included.
- `tokens` (greedy decoding): float32 variants must produce exactly baseline's tokens; the
  figure is the fraction of tokens that differ.

Float32 tolerance (`tolerance`): the larger of `FLOAT32_RTOL` and `SPREAD_FACTOR` times the
*rounding spread* of that quantity (`loss`, `params`, `opt_state`, ...): how far the reference
itself moves, in a train step, when it is run again with the batch's examples reversed and its
parameters nudged within one float32 rounding (`nudged`), a few times (`rounding_spread`), i.e.
what rounding alone does to this step on this machine. Correct variants sit within
`FLOAT32_RTOL` where the step is well conditioned. Two things make a step ill-conditioned, and
the spread measures each on the machine at hand instead of a constant tuned to one CPU:
- BatchNorm's backward pass is a small difference of large batch sums, which amplifies any change
  of summation order (splitting the batch over devices is one): the reversed order measures it;
- a ReLU whose input is within rounding of zero is on for one program and off for another (a
  batched matmul rounds otherwise than one example's), which changes that example's gradient by
  a share of itself; the batch-mean gradient mostly cancels between examples, so one such switch
  in a large batch of a wide network (the MLP at `medium`) moves it far past the floor: the nudged
  parameters measure it (they switch such units as often).
The spread costs reruns of the reference and only ever widens the tolerance above the floor, so
it is measured only for a reference that some check fails at the floor alone
(`bench.references.References.check_step`): at `tiny` and `small` none does, and the check is as
sharp there as before. The measured spreads and errors are in docs/measurements.md.

bf16 (`BF16_RTOL` for the loss, predictions and parameters): the batch-mean gradient cancels
between examples, so bf16 rounding of each example's gradient leaves a relative error in the mean
that says nothing about a wrong program (tens of percent on some leaves). That noise is nearly
orthogonal to the gradient: it turns a leaf's direction by a little and barely changes its length
(noise of relative size r gives cosine 1/sqrt(1 + r^2) and a norm ratio of about sqrt(1 + r^2)).
So a bf16 train step is held to:
- each gradient-carrying optimizer-state leaf: `BF16_MIN_COSINE` in direction and
  `BF16_MAX_NORM_RATIO` in length (a layer whose gradient is scaled by 1.5 or reversed fails);
- each optimizer-state slot as a whole (Adam's `mu`, its `nu`, SGD's trace): its projection onto
  the reference's within `BF16_MAX_SLOT_SCALE` of 1 (`slot_scales`): orthogonal noise leaves the
  projection where it is, so a gradient 10% too large fails;
- the update to the parameters (after minus before, over the whole tree): `BF16_MIN_UPDATE_COSINE`
  and `BF16_MAX_UPDATE_RATIO` against the reference's (`update_agreement`), in place of
  `BF16_RTOL` on the parameters themselves where the starting parameters are known. A first Adam
  step moves the parameters by a share of their norm that depends on the size (well inside
  `BF16_RTOL` at `tiny`, so a missing, reversed or tenfold update would pass it; past it at
  `medium`, where sign flips of near-zero gradients alone reach it);
- float32 parameters and optimizer state after the step (`not_float32`): mixed precision computes
  in bf16 and keeps float32 masters.
bf16 tokens: a rounding that tips one argmax changes that sequence from there on, while a wrong
decoder changes nearly every token; held to `BF16_MAX_TOKEN_MISMATCH`.

NaN or Inf in any result always fails.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxbench.workloads.contract import IncorrectResult

FLOAT32_RTOL = 1e-5
"""Floor of the float32 relative tolerance."""
BF16_RTOL = 1e-2
"""Relative tolerance of a bf16 variant's loss, predictions and parameters."""
SPREAD_FACTOR = 10.0
"""A quantity may differ from the reference by this many times its rounding spread."""
BF16_MIN_COSINE = 0.8
"""Least cosine between a bf16 gradient-carrying leaf and baseline's (rounding noise up to r = 0.75)."""
BF16_MAX_NORM_RATIO = 1.25
"""A bf16 gradient-carrying leaf's norm may differ from baseline's by at most this factor either way."""
BF16_MAX_TOKEN_MISMATCH = 0.5
"""Largest fraction of bf16 tokens that may differ from baseline's."""
BF16_MAX_SLOT_SCALE = 1.05
"""How far a bf16 optimizer-state slot's projected scale (`slot_scales`) may be from 1, either way."""
BF16_MIN_UPDATE_COSINE = 0.9
"""Least cosine between a bf16 step's update to the parameters and the reference's."""
BF16_MAX_UPDATE_RATIO = 1.1
"""A bf16 step's update to the parameters may differ in length from the reference's by at most this
factor either way."""


def _rel_err(value, reference) -> float:
    value = np.asarray(value, np.float64)
    reference = np.asarray(reference, np.float64)
    scale = np.linalg.norm(reference)
    diff = np.linalg.norm(value - reference)
    return float(diff / scale) if scale > 0 else float(diff)


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(tree)])


def token_mismatch(tokens, reference) -> float:
    """Fraction of generated tokens that differ from the reference's."""
    return float(np.mean(np.asarray(tokens) != np.asarray(reference)))


def relative_errors(result: dict, reference: dict) -> dict[str, float]:
    """Each compared quantity's error against `reference` (see the module doc): relative L2 errors,
    and for `tokens` the fraction that differ."""
    errors = {}
    for key, value in result.items():
        ref = reference[key]
        if key == "params":
            errors[key] = _rel_err(_flat(value), _flat(ref))
        elif key == "tokens":
            errors[key] = token_mismatch(value, ref)
        else:
            pairs = zip(jax.tree_util.tree_leaves_with_path(value), jax.tree.leaves(ref), strict=True)
            for (path, leaf), ref_leaf in pairs:
                errors[key + jax.tree_util.keystr(path)] = _rel_err(leaf, ref_leaf)
    return errors


def quantity(name: str) -> str:
    """The result key a compared name belongs to: `opt_state[0].mu['w']` -> `opt_state`."""
    return name.split("[")[0]


def rounding_spread(result: dict, *rerun: dict) -> dict[str, float]:
    """How far the reference moves under changes that are only float32 rounding: for each result
    key (`loss`, `params`, `opt_state`, ...) the largest relative error against `result` of any of
    `rerun`, the same step run again with the batch's examples reversed and its parameters
    `nudged` (see the module doc).

    Per key, not per leaf: the spread is a property of the step's conditioning, and one leaf's
    reversed sum can land on nearly the same rounding by chance while splitting the batch over
    devices moves it by a thousand times more (`cnn_batchnorm`: docs/measurements.md)."""
    spread = {}
    for other in rerun:
        for name, error in relative_errors(other, result).items():
            spread[quantity(name)] = max(spread.get(quantity(name), 0.0), error)
    return spread


@jax.jit
def nudged(params, key):
    """`params` with each floating-point element multiplied by 1 - eps, 1 or 1 + eps at random
    (`key`): the same parameters within one float32 rounding."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))

    def nudge(leaf, leaf_key):
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf
        steps = jax.random.randint(leaf_key, leaf.shape, -1, 2).astype(leaf.dtype)
        return leaf * (1 + steps * jnp.finfo(leaf.dtype).eps)

    return jax.tree.unflatten(treedef, [nudge(leaf, k) for leaf, k in zip(leaves, keys, strict=True)])


def tolerance(name: str, compute_dtype: str, spread: dict[str, float] | None = None) -> float:
    """The relative tolerance of compared quantity `name` (see the module doc)."""
    if name == "tokens":
        return BF16_MAX_TOKEN_MISMATCH if compute_dtype == "bfloat16" else 0.0
    floor = BF16_RTOL if compute_dtype == "bfloat16" else FLOAT32_RTOL
    return max(floor, SPREAD_FACTOR * (spread or {}).get(quantity(name), 0.0))


def gradient_agreement(opt_state, reference_opt_state) -> dict[str, tuple[float, float]]:
    """Leaf name -> (cosine, norm ratio) of each gradient-carrying optimizer-state leaf (floating
    point, more than one element) against the reference's."""
    figures = {}
    pairs = zip(jax.tree_util.tree_leaves_with_path(opt_state), jax.tree.leaves(reference_opt_state), strict=True)
    for (path, leaf), ref_leaf in pairs:
        value, ref = np.ravel(np.asarray(leaf, np.float64)), np.ravel(np.asarray(ref_leaf, np.float64))
        if value.size < 2 or not np.issubdtype(np.asarray(leaf).dtype, np.floating):
            continue
        norm, ref_norm = np.linalg.norm(value), np.linalg.norm(ref)
        if norm == ref_norm == 0:
            figures["opt_state" + jax.tree_util.keystr(path)] = (1.0, 1.0)
            continue
        cosine = float(value @ ref / (norm * ref_norm)) if norm and ref_norm else 0.0
        ratio = float(norm / ref_norm) if ref_norm else float("inf")
        figures["opt_state" + jax.tree_util.keystr(path)] = (cosine, ratio)
    return figures


def _slot(path) -> str:
    """The optimizer-state slot a leaf belongs to (`[0].mu`): its path without the parameter
    names, which are dict keys (the parameters are nested dicts; optax's states are tuples)."""
    return jax.tree_util.keystr(tuple(key for key in path if not isinstance(key, jax.tree_util.DictKey)))


def slot_scales(opt_state, reference_opt_state) -> dict[str, float]:
    """Slot (`_slot`) -> the projected scale of its floating-point leaves onto the reference's,
    `(v . r) / (r . r)` over the whole slot: bf16 rounding noise, nearly orthogonal to the
    gradient, leaves it near 1 however it turns a leaf, while a gradient scaled by s moves it to s
    (a first moment) or s^2 (a second)."""
    dots: dict[str, list[float]] = {}
    pairs = zip(jax.tree_util.tree_leaves_with_path(opt_state), jax.tree.leaves(reference_opt_state), strict=True)
    for (path, leaf), ref_leaf in pairs:
        if np.asarray(leaf).size < 2 or not jnp.issubdtype(np.asarray(leaf).dtype, jnp.floating):
            continue
        value, ref = np.ravel(np.asarray(leaf, np.float64)), np.ravel(np.asarray(ref_leaf, np.float64))
        dot = dots.setdefault(_slot(path), [0.0, 0.0])
        dot[0] += float(value @ ref)
        dot[1] += float(ref @ ref)
    return {slot: (dot / norm if norm else 1.0) for slot, (dot, norm) in dots.items()}


def update_agreement(params, reference_params, initial_params) -> tuple[float, float]:
    """(cosine, length ratio) of a step's update to the parameters (after minus before, over the
    whole tree) against the reference's, both from `initial_params`."""
    before = _flat(initial_params)
    update, ref_update = _flat(params) - before, _flat(reference_params) - before
    norm, ref_norm = np.linalg.norm(update), np.linalg.norm(ref_update)
    if not ref_norm:
        return (1.0, 1.0) if not norm else (0.0, float("inf"))
    return (float(update @ ref_update / (norm * ref_norm)) if norm else 0.0), float(norm / ref_norm)


def not_float32(result: dict) -> list[str]:
    """The parameter and optimizer-state leaves of a train step's `result` that are floating point
    but not float32: a mixed-precision step computes in bf16 and keeps float32 masters."""
    return [key + jax.tree_util.keystr(path) for key in ("params", "opt_state") if key in result
            for path, leaf in jax.tree_util.tree_leaves_with_path(result[key])
            if jnp.issubdtype(np.asarray(leaf).dtype, jnp.floating) and np.asarray(leaf).dtype != np.float32]


def non_finite(result: dict) -> list[str]:
    """Names of the result leaves that hold a NaN or an Inf."""
    bad = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(result):
        array = np.asarray(leaf)
        if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
            bad.append(jax.tree_util.keystr(path))
    return bad


def _bf16_train_failures(result: dict, reference: dict, initial_params) -> dict[str, str]:
    """What a bf16 train step gets wrong: a master kept below float32, a gradient-carrying leaf
    turned or scaled (`gradient_agreement`), a slot scaled as a whole (`slot_scales`), or an
    update to the parameters missing, reversed or resized (`update_agreement`)."""
    failures = {name: "not float32 (masters stay float32)" for name in not_float32(result)}
    for name, (cosine, ratio) in gradient_agreement(result["opt_state"], reference["opt_state"]).items():
        if cosine < BF16_MIN_COSINE or not 1 / BF16_MAX_NORM_RATIO <= ratio <= BF16_MAX_NORM_RATIO:
            failures[name] = f"cosine {cosine:.3g}, norm ratio {ratio:.3g}"
    for slot, scale in slot_scales(result["opt_state"], reference["opt_state"]).items():
        if not 1 / BF16_MAX_SLOT_SCALE <= scale <= BF16_MAX_SLOT_SCALE:
            failures[f"opt_state{slot} (whole slot)"] = f"scale {scale:.3g}"
    if initial_params is not None:
        cosine, ratio = update_agreement(result["params"], reference["params"], initial_params)
        if cosine < BF16_MIN_UPDATE_COSINE or not 1 / BF16_MAX_UPDATE_RATIO <= ratio <= BF16_MAX_UPDATE_RATIO:
            failures["params (update)"] = f"cosine {cosine:.3g}, length ratio {ratio:.3g}"
    return failures


def check_against_baseline(
    result: dict, reference: dict, compute_dtype: str = "float32", *, spread: dict[str, float] | None = None,
    initial_params=None,
) -> dict[str, float]:
    """Raise `IncorrectResult` unless `result` matches `reference` (see the module doc).

    `spread`: the reference's `rounding_spread` (none for modes whose examples do not interact).
    `initial_params`: the parameters both steps started from, for a bf16 step's update check.
    Returns the errors (for the benchmark's `extra_info`).
    """
    bad = non_finite(result)
    if bad:
        raise IncorrectResult(f"non-finite values (NaN/Inf) in {', '.join(bad)}")
    errors = relative_errors(result, reference)
    bf16 = compute_dtype == "bfloat16"
    failures = {}
    for name, error in errors.items():
        if bf16 and name.startswith("opt_state"):
            continue  # held to direction and length below
        if bf16 and name == "params" and initial_params is not None:
            continue  # held by their update below: an error relative to the whole parameters grows
            # with the update's share of them, whatever the step's correctness
        limit = tolerance(name, compute_dtype, spread)
        if error > limit:
            failures[name] = f"{error:.3g} > {limit:.3g}"
    if bf16 and "opt_state" in result:
        failures.update(_bf16_train_failures(result, reference, initial_params))
    if failures:
        worst = list(failures.items())[:5]
        detail = ", ".join(f"{name}: {text}" for name, text in worst)
        raise IncorrectResult(f"disagrees with baseline ({compute_dtype}): {detail}")
    return errors
