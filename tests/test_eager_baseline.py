"""`baseline` in bounded time (`bench/eager_baseline.py`): past `--baseline-budget` the eager loop
is timed over part of its batch and its step time extrapolated, the row saying so."""

from __future__ import annotations

import statistics

import pytest

from jaxbench.bench import eager_baseline
from jaxbench.bench.cases import Case
from jaxbench.bench.eager_baseline import MIN_EXAMPLES, LoopCost, examples_within, extrapolated_rounds
from jaxbench.bench.measure import seconds_of


def test_the_loops_cost_is_the_line_through_its_two_probes():
    cost = LoopCost.from_two(one_s=0.030, many_s=0.170, many=8)  # 20 ms an example, 10 ms fixed
    assert cost.per_example_s == pytest.approx(0.020)
    assert cost.fixed_s == pytest.approx(0.010)
    assert cost.seconds(128) == pytest.approx(2.57)
    noisy = LoopCost.from_two(one_s=0.030, many_s=0.020, many=8)  # a probe that read faster than one example
    assert noisy.per_example_s > 0 and noisy.fixed_s <= 0.030


def test_a_step_that_fits_the_budget_is_timed_whole_and_one_that_does_not_over_part():
    cost = LoopCost(fixed_s=0.010, per_example_s=0.020)
    assert examples_within(cost, batch_size=128, budget_s=5.0) == 128  # 2.57 s
    assert examples_within(cost, batch_size=1024, budget_s=5.0) == 249  # (5 - 0.01) / 0.02
    assert examples_within(cost, batch_size=1024, budget_s=0.001) == MIN_EXAMPLES
    assert examples_within(LoopCost(0.0, 1.0), batch_size=2, budget_s=0.5) == 2  # never more than the batch


def test_extrapolated_rounds_add_the_untimed_examples_at_the_measured_rate():
    rounds_k = [0.210, 0.200, 0.220]  # 10 examples: 10 ms fixed + 20 ms each, about
    rounds_one = [0.031, 0.030, 0.029]
    rounds, cost = extrapolated_rounds(rounds_k, rounds_one, examples=10, batch_size=100)
    assert cost.per_example_s == pytest.approx((0.210 - 0.030) / 9)
    assert rounds == pytest.approx([r + 90 * cost.per_example_s for r in rounds_k])
    assert statistics.median(rounds) == pytest.approx(0.210 + 1.8)


def test_only_the_speedups_base_is_bounded():
    assert eager_baseline.is_bounded(Case("mlp", "train", "baseline", "small"))
    assert not eager_baseline.is_bounded(Case("mlp", "train", "jit", "small"))


@pytest.mark.version_independent
@pytest.mark.slow
@pytest.mark.timing
def test_the_extrapolated_step_time_is_the_whole_loops_at_small():
    """MLP `small` (128 examples) on this CPU: the loop timed over the examples that fill 40% of a
    whole step and extrapolated, against the median of whole eager steps, timed alternately. The
    budget is a share of the step measured here, not a fixed number of seconds: an error in the
    per-example cost is multiplied by (untimed / timed examples), so a fixed budget would time fewer
    examples, and extrapolate further, on a slower host (docs/measurements.md, session 15)."""
    case = Case("mlp", "train", "baseline", "small")
    whole = case.build()
    try:
        whole()
        part = eager_baseline.part_to_time(case, 128, budget_s=0.4 * seconds_of(whole))
        assert MIN_EXAMPLES <= part.examples < 64
        partial = part.build()
        try:
            partial()
            whole_rounds, extrapolated = [], []
            for _ in range(3):
                whole_rounds.append(seconds_of(whole))
                extrapolated += eager_baseline.extrapolated_timing(part, partial, 2, 128)[0]
        finally:
            partial.free()
    finally:
        whole.free()
    ratio = statistics.median(extrapolated) / statistics.median(whole_rounds)
    assert 0.85 < ratio < 1.15, (ratio, whole_rounds, extrapolated)


def test_the_probe_measures_one_example_and_more_only_where_the_whole_loop_may_not_fit(monkeypatch):
    calls = []
    monkeypatch.setattr(eager_baseline, "_timed_warm_call", lambda case, examples, states, warm=False: calls.append(
        (examples, warm)) or {1: 0.030, 8: 0.170}[examples])
    case = Case("mlp", "train", "baseline", "small")
    assert eager_baseline.probe(case, 128, budget_s=5.0) == LoopCost(0.0, 0.030)  # 128 x 30 ms fit
    assert calls == [(1, False)]
    cost = eager_baseline.probe(case, 1024, budget_s=5.0)  # 1024 x 30 ms may not
    # the second probe runs the operations the first warmed up: no untimed call before it
    assert calls == [(1, False), (1, False), (8, True)] and cost.per_example_s == pytest.approx(0.020)
    assert eager_baseline.part_to_time(case, 1024, 5.0).examples == 249
    assert eager_baseline.part_to_time(case, 128, 5.0) is case  # whole
    calls.clear()  # a batch of 8 x 30 ms over a budget of 0.2 s: its second probe would be a whole step
    assert eager_baseline.probe(case, 8, budget_s=0.2) == LoopCost(0.0, 0.030) and calls == [(1, False)]
    assert eager_baseline.part_to_time(case, 8, 0.2).examples == 6  # sized by the one-example bound
