"""`--profile`: a trace per benchmark after its timed rounds, linked from the report, and where the
op time went (`reports.profiles`); nothing traced without it."""

from __future__ import annotations

import gzip
import json

import pytest

from jaxbench.bench.profile import trace_steps
from jaxbench.reports.profiles import category_of, op_time_shares
from jaxbench.workloads import get_workload
from jaxbench.workloads.steps import build_step

parsed = pytest.mark.version_independent  # traces parsed from files the test writes


def op(name, ts, dur, pid=1, tid=1):
    return {"ph": "X", "name": name, "ts": ts, "dur": dur, "pid": pid, "tid": tid, "args": {"hlo_op": name}}


def write_trace(path, events):
    with gzip.open(path, "wt") as handle:
        json.dump({"traceEvents": events}, handle)
    return path


@parsed
def test_an_op_counts_its_own_time_only_and_each_category_its_share(tmp_path):
    events = [
        {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/host:CPU"}},
        op("while.1", 0, 100),  # holds the next three: 30 of its own
        op("dot.1", 10, 40), op("copy.2", 50, 20), op("multiply_add_fusion", 70, 10),
        op("all-reduce.3", 200, 50, tid=2),  # another thread
        {"ph": "X", "name": "$python frame", "ts": 0, "dur": 500, "pid": 1, "tid": 3},  # no op: not counted
    ]
    shares = op_time_shares(write_trace(tmp_path / "t.json.gz", events))
    total = 30 + 40 + 20 + 10 + 50  # the loop's own 30 once, not its whole 100 on top of its ops
    assert shares == pytest.approx({"collectives": 50 / total, "matmul/conv": 40 / total, "copies": 20 / total,
                                    "elementwise": (30 + 10) / total})


@parsed
def test_on_a_gpu_only_the_device_streams_count(tmp_path):
    events = [
        {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/host:CPU"}},
        {"ph": "M", "name": "process_name", "pid": 7, "args": {"name": "/device:GPU:0"}},
        op("dot.1", 0, 1000, pid=1),  # the host's launch of it: not device time
        {**op("custom-call.4", 0, 60, pid=7), "name": "sm90_xmma_gemm_f32f32_tf32f32"},
        op("all-reduce-start.2", 100, 40, pid=7),
    ]
    shares = op_time_shares(write_trace(tmp_path / "t.json.gz", events))
    assert shares["matmul/conv"] == pytest.approx(0.6) and shares["collectives"] == pytest.approx(0.4)


@parsed
def test_a_trace_without_ops_tells_nothing(tmp_path):
    assert op_time_shares(write_trace(tmp_path / "t.json.gz", [{"ph": "X", "name": "f", "ts": 0, "dur": 1}])) is None


@parsed
@pytest.mark.parametrize("name,category", [
    ("all-gather.2", "collectives"), ("reduce-scatter", "collectives"), ("convolution.3", "matmul/conv"),
    ("ynn_fusion.1", "matmul/conv"), ("transpose_copy_fusion", "copies"), ("dynamic-update-slice.1", "copies"),
    ("broadcast_maximum_fusion", "elementwise"), ("wrapped_reduce", "elementwise"),
])
def test_op_names_fall_into_their_category(name, category):
    assert category_of(name) == category


@pytest.mark.parametrize("variant", ["jit_vmap", "multi_device"])
def test_a_real_trace_of_a_step_gives_its_op_shares(variant, tmp_path):
    """JAX's own profiler on a compiled MLP step (`bench.profile.trace_steps`), read by
    `op_time_shares`: the trace's format and XLA's op names are the JAX version's, so this runs on
    every Python (a real run's profiles are tested once, by tests/test_profiled_sweep.py)."""
    step = build_step(get_workload("mlp"), "tiny", "train", variant)
    step()  # compiled and run once before it is traced, as after a benchmark's timed rounds
    trace = trace_steps(step, tmp_path, step_s=0.001)
    assert trace is not None and trace.name == "perfetto_trace.json.gz"
    shares = op_time_shares(trace)
    assert sum(shares.values()) == pytest.approx(1) and shares["matmul/conv"] > 0
    if variant == "multi_device":
        assert shares["collectives"] > 0  # the gradients' reduction over the 8 devices
    else:
        assert shares["collectives"] == 0
