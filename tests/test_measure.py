"""The measuring helpers: timing plan, report folder, atomic writes, version compatibility."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from jaxbench.bench import measure
from jaxbench.bench.results import default_report_dir, write_atomically
from jaxbench.workloads import compat
from tests.conftest import run_config


def test_timing_plan_fills_max_time_with_at_least_min_rounds():
    # Warm-up fills a tenth of max_time, less the warm step that sized the plan.
    assert measure.timing_plan(0.001, max_time_s=1.0, min_rounds=5) == (99, 1000)
    assert measure.timing_plan(0.2, max_time_s=1.0, min_rounds=5) == (0, 5)
    assert measure.timing_plan(0.0, max_time_s=1.0, min_rounds=5)[1] == measure.MAX_ROUNDS


def test_timing_plan_gives_multi_second_steps_fewer_rounds():
    """An eager baseline of several seconds: the two steps already run are its warm-up."""
    assert measure.timing_plan(1.5, max_time_s=1.0, min_rounds=5) == (0, 3)
    assert measure.timing_plan(1.5, max_time_s=1.0, min_rounds=5, long_step_rounds=7) == (0, 4)  # 6 s budget
    assert measure.timing_plan(3.0, max_time_s=1.0, min_rounds=5) == (0, 2)
    assert measure.timing_plan(12.0, max_time_s=1.0, min_rounds=5) == (0, 2)  # never fewer than two
    assert measure.timing_plan(0.4, max_time_s=1.0, min_rounds=5) == (0, 5)


def test_a_clearly_long_first_step_needs_no_sizing_step():
    calls = []
    assert measure.warm_step_seconds(lambda: calls.append(1), first_s=3.0) == 3.0 and calls == []
    assert measure.warm_step_seconds(lambda: calls.append(1), first_s=0.01) < 0.5 and calls == [1]


def test_report_dir_is_named_by_time_and_device():
    path = default_report_dir(Path("/r"), "cpu", "TPU v5 lite", datetime(2026, 1, 2, 3, 4, 5))
    assert path == Path("/r/jaxbench-runs/20260102-030405-cpu-tpu-v5-lite")


def test_write_atomically_replaces_whole_files(tmp_path):
    target = tmp_path / "sub" / "results.json"
    write_atomically(target, "one")
    write_atomically(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]


@pytest.mark.slow
@pytest.mark.timing
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_matmul_rate_is_the_rate_of_the_matmul_it_times(dtype):
    """Against an independent timing of the same 2048^2 matmul: a wrong FLOP count, a missing
    block_until_ready (which would time only the dispatch), a wrong size or dtype would be far off.
    Marked `timing`: beside other work (CI's two fast tiers side by side) the two timings, a moment
    apart, differed by more than 2x."""
    flops = measure.matmul_rate(dtype, repeats=3)
    n = 2048
    a = jnp.ones((n, n), dtype)
    matmul = jax.jit(jnp.matmul).lower(a, a).compile()
    matmul(a, a).block_until_ready()
    best_s = min(measure.seconds_of(lambda: matmul(a, a).block_until_ready()) for _ in range(3))
    assert 0.5 < flops / (2 * n**3 / best_s) < 2, (flops, best_s)


def test_environment_describes_the_virtual_devices():
    env = measure.environment()
    assert env["platform"] == "cpu" and env["n_devices_available"] == 8
    assert env["devices_share_host_cores"] is True
    assert env["jax_version"] == jax.__version__


def test_mesh_has_auto_axes():
    mesh = compat.make_mesh((4, 2), ("data", "model"))
    assert mesh.shape == {"data": 4, "model": 2}
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_memory_analysis_on_cpu():
    compiled = jax.jit(lambda x: x @ x).lower(jnp.ones((64, 64))).compile()
    memory = compat.memory_analysis(compiled)
    assert memory["argument"] == memory["output"] == 64 * 64 * 4


def test_out_of_memory_becomes_a_recorded_skip_and_other_errors_do_not():
    import pytest

    oom = jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9 GiB")
    with pytest.raises(pytest.skip.Exception, match="out of memory on t-train-jit: RESOURCE_EXHAUSTED"):
        with measure.out_of_memory_is_a_skip("t-train-jit"):
            raise oom
    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        with measure.out_of_memory_is_a_skip("t-train-jit"):
            raise jax.errors.JaxRuntimeError("INTERNAL: something else")
    assert compat.is_out_of_memory(oom) and not compat.is_out_of_memory(MemoryError())


def test_the_runs_last_line_says_where_its_time_went(monkeypatch):
    from jaxbench.bench import session

    clock = iter([100.0, 103.0, 110.0, 160.0])  # start; a block from 103 to 110; the end at 160
    monkeypatch.setattr(session.time, "perf_counter", lambda: next(clock))
    config = run_config()
    session.start_clock(config)
    with session.spending(config, "timed rounds"):
        pass
    session.spend(config, "building steps", 20.0)
    session.spend(config, session.XLA_COMPILING, 12.0)
    line = session.time_spent_line(config)
    assert line.startswith("time: 60 s in all: building steps 20 s (XLA compiling 12 s), first steps 0 s")
    assert "timed rounds 7 s" in line and "other 33 s" in line  # 60 - 20 - 7
    session.stop_counting_compilations(config)


def test_the_runs_last_line_counts_every_xla_compilation_of_its_process():
    """Every compilation JAX reports while the run counts, not only the steps' own (`XLA compiling`):
    a program compiled here is one; one compiled after the run stops counting is not."""
    from jaxbench.bench import session

    x = jnp.arange(7.0)
    config = run_config()
    session.start_clock(config)
    jax.jit(lambda a: a * 3.0 + 1.0)(x).block_until_ready()  # a new function: compiled (or read back)
    counted = session.state(config).compilations.count
    assert counted >= 1 and session.state(config).compilations.seconds > 0
    assert f"; XLA compiled {counted} programs in " in session.time_spent_line(config)
    session.stop_counting_compilations(config)
    jax.jit(lambda a: a * 5.0)(x).block_until_ready()
    assert session.state(config).compilations.count == counted


def test_a_workers_xla_compilations_join_the_worker_processes_part_of_its_parents_last_line(tmp_path):
    """A worker writes its count into its folder as it ends; its parent adds it to its own line's
    worker processes, apart from its own compilations."""
    from jaxbench.bench import session

    worker = run_config(jaxbench_worker=tmp_path)
    session.start_clock(worker)
    jax.jit(lambda a: a * 11.0 - 2.0)(jnp.arange(3.0)).block_until_ready()
    session.stop_counting_compilations(worker)
    in_worker = session.state(worker).compilations
    parent = run_config()
    session.start_clock(parent)
    session.state(parent).worker_compilations.add(tmp_path / session.COMPILATIONS_FILE)
    session.state(parent).worker_compilations.add(tmp_path / "a crashed worker wrote nothing")
    session.stop_counting_compilations(parent)
    line = session.time_spent_line(parent)
    assert in_worker.count >= 1
    assert f"worker processes 0 s (XLA compiled {in_worker.count} programs in {in_worker.seconds:.0f} s there)" in line
