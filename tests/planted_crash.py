"""A test-only workload, `crashes`, whose compiled steps segfault (`tests.planted_ends`)."""

from tests.planted_ends import ending_workload, segfault

WORKLOAD = ending_workload("crashes", segfault)
