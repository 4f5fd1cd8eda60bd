"""Scaling sweeps' device counts (bench/cases.py); the sweeps' real run is in tests/test_profiled_sweep.py."""

from __future__ import annotations

from jaxbench.bench.cases import device_counts


def test_device_counts_double_up_to_all():
    assert device_counts(8) == [1, 2, 4, 8]
    assert device_counts(6) == [1, 2, 4, 6]
    assert device_counts(1) == [1]
