"""Whether a change made a benchmark slower: the four verdicts, the statistics behind them, and
the exact gates.

Two kinds of figure, two kinds of gate:

- **Deterministic figures are gated exactly** (`exact_changes`): per-device compiled memory and
  XLA's cost-analysis FLOPs and bytes accessed of the compiled step are the same on every run of
  the same program with the same compiler, so an increase beyond `EXACT_TOLERANCE` is a
  `regression` whatever the timing noise.
- **Times are gated statistically**: the ratio head/base with a confidence interval and a test,
  in `ab` over the worker pairs (`paired_verdict`: a t-interval and t-test), in `regress` over
  two files' rounds (`unpaired_verdict`: a bootstrap interval and a rank test), and one of `VERDICTS`:
  `regression` (slower by more than the threshold, the interval entirely above 1, the test
  significant), `improvement` (the mirror image), `no change` (the interval inside the threshold
  band) or `inconclusive` (anything else: too noisy, or too few measurements to tell).

With many benchmarks, each one's interval and test are at the family-wise level over all of them
(Bonferroni: `alpha / m`), so the run as a whole keeps its false-alarm rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

VERDICTS = ("regression", "improvement", "no change", "inconclusive")
ALPHA = 0.05
"""Family-wise false-alarm rate of one comparison over all its benchmarks."""
BOOTSTRAP_RESAMPLES = 2000
MIN_WORKER_PAIRS = 3
"""Fewer worker pairs than this give `inconclusive` in `ab` (`paired_verdict`): with G pairs its
interval has G - 1 degrees of freedom, and at 2 its t quantile is in the tens."""
MIN_MEASUREMENTS = 5
"""Fewer block pairs (or rounds a side) than this give `inconclusive`, whatever they show: two or
three values say nothing of the spread (an eager baseline has 2 or 3 rounds)."""
EXACT_FIGURES = {
    "mem_bytes": "per-device memory (bytes)",
    "xla_flops": "XLA cost-analysis FLOPs",
    "xla_bytes_accessed": "XLA cost-analysis bytes accessed",
}
"""Deterministic figures of a compiled step (`extra_info` key -> what it is), gated exactly."""
EXACT_TOLERANCE = 0.005
"""An exact figure may grow by this share (0.5%) before it is a regression: room for the
compiler's own bookkeeping (alignment, a reordered buffer) between two builds of one program;
a model change of a percent is well beyond it."""


@dataclass(frozen=True)
class TimingVerdict:
    """One benchmark's timing comparison: `ratio` head/base (above 1: head is slower), its
    confidence interval `low`..`high`, the rank test's `p_value`, the number of measurements per
    side (`n`: pairs, or rounds of the smaller side) and the `verdict`."""

    ratio: float
    low: float
    high: float
    p_value: float
    n: int
    verdict: str


def verdict_of(ratio: float, low: float, high: float, p_value: float, threshold: float, alpha: float,
               n: int = MIN_MEASUREMENTS) -> str:
    """The verdict for `ratio` (head/base) with interval `low`..`high` and rank-test `p_value`,
    at `threshold` (0.05: 5%) and significance `alpha`, from `n` measurements a side."""
    slower, faster = 1 + threshold, 1 / (1 + threshold)
    if n < MIN_MEASUREMENTS:
        return "inconclusive"
    if ratio > slower and low > 1 and p_value < alpha:
        return "regression"
    if ratio < faster and high < 1 and p_value < alpha:
        return "improvement"
    if faster <= low and high <= slower:
        return "no change"
    return "inconclusive"


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _resamples(alpha: float) -> int:
    """Bootstrap resamples enough for the interval's tails at `alpha` (some 20 beyond each bound)."""
    return max(BOOTSTRAP_RESAMPLES, int(np.ceil(40 / alpha)))


def paired_verdict(ratios, clusters, threshold: float, alpha: float = ALPHA) -> TimingVerdict:
    """The verdict on `ratios`, one head/base time ratio per block pair measured side by side in
    time (`reports ab`), `clusters` naming for each the pair of worker processes it came from.

    A fresh process runs the same program a few percent faster or slower for good, so the blocks
    of one worker pair share that pair's offset and are not independent draws of the ratio: the
    unit is the worker pair. Each pair's median log ratio is one measurement; the ratio is their
    mean (geometric), its interval the t-interval with G - 1 degrees of freedom over the G pairs,
    and the test the one-sample t-test of their mean against 0, both at `alpha`. (A bootstrap over
    so few clusters cannot reach wider than their spread, and covered the truth far less often
    than it claimed.) Fewer than `MIN_WORKER_PAIRS` pairs or `MIN_MEASUREMENTS` blocks:
    `inconclusive`."""
    logs, clusters = np.log(np.asarray(ratios, dtype=float)), np.asarray(clusters)
    medians = np.array([np.median(logs[clusters == label]) for label in np.unique(clusters)])
    if not len(medians):
        return TimingVerdict(float("nan"), float("nan"), float("nan"), 1.0, 0, "inconclusive")
    mean = float(np.mean(medians))
    ratio = float(np.exp(mean))
    if len(medians) < MIN_WORKER_PAIRS or len(logs) < MIN_MEASUREMENTS:
        return TimingVerdict(ratio, float("nan"), float("nan"), 1.0, len(logs), "inconclusive")
    error = float(np.std(medians, ddof=1) / np.sqrt(len(medians)))
    if error == 0:  # every pair the same: the interval is that point
        low = high = ratio
        p_value = 0.0 if mean else 1.0
    else:
        half = float(stats.t.ppf(1 - alpha / 2, len(medians) - 1)) * error
        low, high = float(np.exp(mean - half)), float(np.exp(mean + half))
        p_value = float(stats.ttest_1samp(medians, 0.0).pvalue)
    return TimingVerdict(ratio, low, high, p_value, len(logs),
                         verdict_of(ratio, low, high, p_value, threshold, alpha, len(logs)))


def _median_ratio(head, base, axis=-1):
    return np.median(head, axis=axis) / np.median(base, axis=axis)


def unpaired_verdict(base_rounds, head_rounds, threshold: float, alpha: float = ALPHA,
                     seed: int = 0) -> TimingVerdict:
    """The verdict on two saved runs' raw timed rounds (`reports regress`): the ratio of their
    medians, a percentile bootstrap interval of it (each side resampled on its own) at confidence
    `1 - alpha`, and the two-sided Mann-Whitney U test. Fewer than `MIN_MEASUREMENTS` rounds a side:
    `inconclusive`."""
    base, head = np.asarray(base_rounds, dtype=float), np.asarray(head_rounds, dtype=float)
    ratio = float(np.median(head) / np.median(base))
    n = int(min(len(base), len(head)))
    if n < 2:
        return TimingVerdict(ratio, float("nan"), float("nan"), 1.0, n, "inconclusive")
    interval = stats.bootstrap((head, base), _median_ratio, confidence_level=1 - alpha, paired=False,
                               n_resamples=_resamples(alpha), method="percentile", random_state=_rng(seed),
                               vectorized=True).confidence_interval
    low, high = float(interval.low), float(interval.high)
    p_value = float(stats.mannwhitneyu(head, base, alternative="two-sided").pvalue)
    return TimingVerdict(ratio, low, high, p_value, n, verdict_of(ratio, low, high, p_value, threshold, alpha, n))


def family_alpha(n_benchmarks: int, alpha: float = ALPHA) -> float:
    """The per-benchmark significance that keeps `alpha` over `n_benchmarks` (Bonferroni)."""
    return alpha / max(n_benchmarks, 1)


@dataclass(frozen=True)
class ExactChange:
    """A deterministic figure that differs between base and head."""

    figure: str
    base: float
    head: float

    @property
    def ratio(self) -> float:
        return self.head / self.base if self.base else float("inf")

    @property
    def is_regression(self) -> bool:
        """Whether the figure grew beyond `EXACT_TOLERANCE`."""
        return self.head > self.base * (1 + EXACT_TOLERANCE)

    def __str__(self) -> str:
        return f"{EXACT_FIGURES[self.figure]} {self.base:.6g} -> {self.head:.6g} ({self.ratio - 1:+.2%})"


def exact_changes(base: dict, head: dict) -> list[ExactChange]:
    """The exact figures (`EXACT_FIGURES`) of one benchmark's `extra_info` that differ between
    `base` and `head` (either way; `ExactChange.is_regression` says which are regressions).
    A figure missing on either side (eager variants have none) is not compared."""
    changes = []
    for figure in EXACT_FIGURES:
        old, new = base.get(figure), head.get(figure)
        if old is not None and new is not None and old != new:
            changes.append(ExactChange(figure, float(old), float(new)))
    return changes


def benchmark_verdict(timing: TimingVerdict | None, changes: list[ExactChange]) -> str:
    """One benchmark's verdict: `regression` when an exact figure grew beyond its tolerance,
    otherwise the timing's verdict (`no change` when there is no timing to compare)."""
    if any(change.is_regression for change in changes):
        return "regression"
    return timing.verdict if timing is not None else "no change"
