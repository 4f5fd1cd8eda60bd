"""A test-only workload, `hangs`, whose compiled steps never return (`tests.planted_ends`)."""

from tests.planted_ends import ending_workload, hang

WORKLOAD = ending_workload("hangs", hang)
