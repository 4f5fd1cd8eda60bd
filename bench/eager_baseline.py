"""`baseline` timed in bounded time at every size.

The eager per-example loop is what the speedups divide by. Its cost is the same for every
example (eager dispatch of the same operations on the same shapes), so one step is
`fixed + B * per_example`, `fixed` being the optimizer update and the loop's own overhead. Where
one whole step would take longer than `--baseline-budget`, the loop is timed over the batch's
first k examples instead, k chosen to fill the budget and never under `MIN_EXAMPLES`, alongside
the same loop over one example; the two medians give `per_example` (their difference over k - 1)
and each timed round of k examples is extrapolated to the whole batch by adding
`(B - k) * per_example`. The row records k, B and that its figure is extrapolated.

The k-example step is checked, before it is timed, against the reference on the same k examples
(`bench.references`), as a whole step is against the whole batch's.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace

from jaxbench.bench.cases import Case
from jaxbench.bench.measure import seconds_of
from jaxbench.workloads.steps import InitialStates
from jaxbench.workloads.variants import SPEEDUP_BASE

MIN_EXAMPLES = 4
"""The fewest examples an extrapolated loop is timed over."""
PROBE_EXAMPLES = 8
"""Examples of the second probe that sizes k (with the one-example loop), where one is needed (a
batch of more than this many examples that may not fit the budget)."""


def is_bounded(case: Case) -> bool:
    """Whether `case` is the eager loop the speedups divide by (and so timed in bounded time)."""
    return case.variant == SPEEDUP_BASE.name and not case.scaling


@dataclass(frozen=True)
class LoopCost:
    """What one step of the eager loop costs: `fixed_s + examples * per_example_s`."""

    fixed_s: float
    per_example_s: float

    def seconds(self, examples: int) -> float:
        """Estimated seconds of a step over `examples` examples."""
        return self.fixed_s + examples * self.per_example_s

    @classmethod
    def from_two(cls, one_s: float, many_s: float, many: int) -> LoopCost:
        """The line through a step over one example (`one_s`) and one over `many` (`many_s`);
        `fixed_s` is never below 0, `per_example_s` never 0."""
        per_example = max((many_s - one_s) / (many - 1), 1e-9)
        return cls(max(one_s - per_example, 0.0), per_example)


def examples_within(cost: LoopCost, batch_size: int, budget_s: float) -> int:
    """How many of the batch's examples a timed step covers: all of them where a whole step is
    estimated to fit `budget_s`, otherwise as many as fill it, never under `MIN_EXAMPLES`."""
    if cost.seconds(batch_size) <= budget_s:
        return batch_size
    fitting = int((budget_s - cost.fixed_s) / cost.per_example_s)
    return min(batch_size, max(MIN_EXAMPLES, fitting))


def extrapolated_rounds(rounds_k: list[float], rounds_one: list[float], examples: int,
                        batch_size: int) -> tuple[list[float], LoopCost]:
    """Rounds of the loop over `examples` examples extrapolated to `batch_size`, given rounds of
    the same loop over one example: each round plus `(batch_size - examples) * per_example`, with
    `per_example` from the two medians. Returns (the extrapolated rounds, the loop's cost)."""
    cost = LoopCost.from_two(statistics.median(rounds_one), statistics.median(rounds_k), examples)
    return [seconds + (batch_size - examples) * cost.per_example_s for seconds in rounds_k], cost


def _timed_warm_call(case: Case, examples: int, initial_states: InitialStates | None = None,
                     warm: bool = False) -> float:
    """Seconds of a warm step of `case` over the batch's first `examples`, after one untimed call
    (an eager op compiles on first use) unless its operations are `warm` already."""
    step = replace(case, examples=examples).build(initial_states=initial_states)
    try:
        if not warm:
            step()
        return seconds_of(step)
    finally:
        step.free()


def probe(case: Case, batch_size: int, budget_s: float, initial_states: InitialStates | None = None) -> LoopCost:
    """The loop's cost, from warm steps over the batch's first example and, unless `batch_size`
    such steps fit `budget_s` (then so does the whole loop, whose update runs once), over its first
    `PROBE_EXAMPLES` (their models built from `initial_states`, where it has them). A batch of
    `PROBE_EXAMPLES` or fewer gets no second probe: it would be a whole step, seconds spent only to
    size k; the one-example steps, an upper bound, size it (`examples_within`)."""
    one_s = _timed_warm_call(case, 1, initial_states)
    if batch_size * one_s <= budget_s or batch_size <= PROBE_EXAMPLES:
        return LoopCost(fixed_s=0.0, per_example_s=one_s)  # an upper bound on the whole loop
    # More than PROBE_EXAMPLES here; the same operations on the same shapes, one example at a time: warm.
    return LoopCost.from_two(one_s, _timed_warm_call(case, PROBE_EXAMPLES, initial_states, warm=True), PROBE_EXAMPLES)


def alternated_rounds(step_k, step_one, rounds: int, before_each=None) -> tuple[list[float], list[float]]:
    """`rounds` timed rounds of each of two steps, alternated so that a drift of the host's speed
    touches both alike; `before_each()` runs untimed before each pair (e.g. a Ctrl-C check)."""
    rounds_k, rounds_one = [], []
    for _ in range(rounds):
        if before_each is not None:
            before_each()
        rounds_k.append(seconds_of(step_k))
        rounds_one.append(seconds_of(step_one))
    return rounds_k, rounds_one


def extra_info(examples: int, batch_size: int, cost: LoopCost | None) -> dict:
    """What the row says of how its baseline was timed: over how many of its examples, and (where
    extrapolated) the per-example and fixed seconds the figure was extrapolated with."""
    info = {"timed_examples": examples, "extrapolated": examples < batch_size}
    if cost is not None and examples < batch_size:
        info |= {"per_example_s": cost.per_example_s, "fixed_s": cost.fixed_s}
    return info


def part_to_time(case: Case, batch_size: int, budget_s: float, initial_states: InitialStates | None = None) -> Case:
    """`case`, or for the eager `baseline` (`is_bounded`) whose whole step is estimated (`probe`)
    to take longer than `budget_s`, the same case over the first k examples of its batch
    (`examples_within`)."""
    if not is_bounded(case):
        return case
    examples = examples_within(probe(case, batch_size, budget_s, initial_states), batch_size, budget_s)
    return case if examples == batch_size else replace(case, examples=examples)


def extrapolated_timing(case: Case, step, rounds: int, batch_size: int, before_each=None,
                        initial_states: InitialStates | None = None) -> tuple[list[float], LoopCost]:
    """Time `step`, the eager loop over `case.examples` of the batch's examples (already run once),
    alternated with the same loop over one example, for `rounds` rounds each; returns the rounds
    extrapolated to `batch_size` examples and the loop's cost (`extrapolated_rounds`). The loop over
    one example is warm: `part_to_time`'s probe ran it twice (its operations on the same shapes)."""
    one = replace(case, examples=1).build(initial_states=initial_states)
    try:
        rounds_k, rounds_one = alternated_rounds(step, one, rounds, before_each)
    finally:
        one.free()
    return extrapolated_rounds(rounds_k, rounds_one, case.examples, batch_size)
