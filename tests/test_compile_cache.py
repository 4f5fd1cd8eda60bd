"""Cold and cached compile times (`workloads.compile_cache`): a second compilation of a step from
JAX's persistent cache, in a folder of the step's own, and a clear reason where there is none."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from jaxbench.bench.metadata import WORKFLOW_COMPILE_CACHE
from jaxbench.workloads import compile_cache, get_workload
from jaxbench.workloads.steps import build_step
from tests.conftest import SHARED_CACHE, default_optimisation, run_config

CACHED_AGAINST_COLD = """
import json, sys
from pathlib import Path
from jaxbench.workloads import compile_cache, get_workload
from jaxbench.workloads.steps import build_step
compile_cache.use_persistent_cache(Path(sys.argv[1]))  # the tests' shared cache, as this process has it
transformer = get_workload("transformer")
build_step(transformer, "tiny", "train", "jit_vmap")  # compiled once, not timed twice
compile_cache._timed_folder, compile_cache._second = Path(sys.argv[2]), True  # as `enable(..., second=True)`
step = build_step(transformer, "tiny", "train", "jit_vmap")
print(json.dumps({"cache": step.compile_cache, "cold": step.compile_s, "cached": step.compile_cached_s}))
"""


@pytest.mark.slow
def test_a_compilation_from_the_persistent_cache_is_well_below_a_cold_one(tmp_path):
    """Also for a step this process compiled before, into the tests' shared persistent cache: the
    step's first compilation is cold, into a folder of its own, removed after. In a process at XLA's
    default optimisation level, as a run compiles: at the tests' level 0 the cold compilation does
    less of the work the cache spares, and a loaded host brought the two within a factor of 2."""
    timed = tmp_path / "timed"
    timed.mkdir()
    proc = subprocess.run([sys.executable, "-c", CACHED_AGAINST_COLD, SHARED_CACHE, str(timed)],
                          capture_output=True, text=True, env=default_optimisation(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    step = json.loads(proc.stdout.strip().splitlines()[-1])
    assert step["cache"] == "hit", step
    # A cached compilation skips XLA's passes and code generation: a quarter to a seventh of the cold
    # one on both JAX versions, idle host or busy (docs/measurements.md); half is the bound.
    assert step["cached"] < step["cold"] / 2, step
    assert list(timed.iterdir()) == []


def test_without_a_cache_the_step_says_why_it_has_no_cached_time():
    assert not compile_cache.enabled()  # the test process never enables it
    step = build_step(get_workload("mlp"), "tiny", "train", "jit")
    assert step.compile_s > 0 and step.compile_cached_s is None
    assert step.compile_cache == "no persistent cache in this process"
    eager = build_step(get_workload("mlp"), "tiny", "train", "baseline")
    assert eager.compile_s is None and eager.compile_cached_s is None


@pytest.fixture
def cache_state(monkeypatch):
    """This process's cache as the tests keep it, and `compile_cache`'s module state, restored after
    the test, which may `enable`, `reuse` or turn `off` the cache."""
    import jax

    for name in ("_timed_folder", "_second", "_reused", "_off"):
        monkeypatch.setattr(compile_cache, name, getattr(compile_cache, name))
    kept, on = jax.config.jax_compilation_cache_dir, jax.config.jax_enable_compilation_cache
    yield
    jax.config.update("jax_enable_compilation_cache", on)
    compile_cache.use_persistent_cache(kept)


def test_under_reuse_a_step_compiles_once_through_the_kept_cache_and_says_it_is_not_cold(cache_state, tmp_path):
    """`reuse` (a run under JAXBENCH_COMPILE_CACHE): the step's compilation is written to the kept
    folder, read back by the next build, and no figure is called cold or cached."""
    compile_cache.reuse(tmp_path)
    mlp = get_workload("mlp")
    first = build_step(mlp, "tiny", "train", "remat")
    written = _entries(tmp_path)
    second = build_step(mlp, "tiny", "train", "remat")
    assert written > 0 and _entries(tmp_path) == written  # the second build read what the first wrote
    for step in (first, second):
        assert step.compile_s > 0 and step.compile_cached_s is None
        assert step.compile_cache == f"read through the kept cache at {tmp_path}: not a cold compile"


def _entries(folder) -> int:
    return sum(1 for path in folder.rglob("*") if path.is_file())


def test_cold_compiles_compile_afresh_into_a_cache_of_their_own(tmp_path):
    """The tests' process keeps a persistent cache (tests/conftest.py). A program compiled there
    before is compiled again inside `cold_compiles`, into the block's empty folder, and the
    process's own cache is back in use after the block."""
    import jax
    import jax.numpy as jnp

    kept = jax.config.jax_compilation_cache_dir
    assert kept is not None

    def program(x):
        return jnp.tanh(x) * 3.25 + 0.125  # a program no other test compiles

    jax.jit(program).lower(jnp.ones(5)).compile()  # in the process's cache (and in memory)
    for block in ("first", "second"):
        with compile_cache.cold_compiles(tmp_path / block):
            assert jax.config.jax_compilation_cache_dir == str(tmp_path / block)
            jax.jit(program).lower(jnp.ones(5)).compile()
        assert _entries(tmp_path / block) > 0, block  # compiled afresh: written to the block's cache
        assert jax.config.jax_compilation_cache_dir == kept


def test_off_writes_nothing_to_a_configured_cache_and_says_why(cache_state, tmp_path):
    """`off` (a run of several processes on CPU, `bench.session.NO_CACHE_ACROSS_CPU_PROCESSES`):
    even with a cache folder configured, a step's compilation writes nothing there, and its note
    gives the reason."""
    compile_cache.use_persistent_cache(tmp_path)
    compile_cache.off("kept none, for a reason")
    step = build_step(get_workload("mlp"), "tiny", "train", "accumulation")
    assert _entries(tmp_path) == 0
    assert step.compile_s > 0 and step.compile_cached_s is None
    assert step.compile_cache == "kept none, for a reason"


def test_a_run_that_does_not_ask_for_the_cached_time_compiles_each_step_once_and_cold(cache_state, tmp_path):
    """`enable(folder, second=False)` (a run without --compile-cached): the step's one compilation
    is cold, in a folder of its own inside `folder`, removed after; nothing is timed from the cache,
    and the row has no note (nothing to explain). (`folder` holds what else the process compiled:
    the model's initialisation, the batch.)"""
    compile_cache.enable(tmp_path, second=False)
    step = build_step(get_workload("mlp"), "tiny", "train", "jit_vmap")
    assert step.compile_s > 0 and step.compile_cached_s is None and step.compile_cache is None
    assert list(tmp_path.glob("cold-*")) == []  # the step's cold folder is gone


@pytest.mark.parametrize(("reused", "note"), [(None, WORKFLOW_COMPILE_CACHE), ("read through X", "read through X")])
def test_a_workflow_row_says_why_it_has_no_cached_compile_time(monkeypatch, reused, note):
    """A workflow compiles its own pieces (NumPyro's sampler, the training loop's steps): no cached
    figure, and the note says why, or, under `reuse`, that its compile is not cold."""
    from types import SimpleNamespace

    from jaxbench.bench.metadata import ENVIRONMENT_KEYS, workflow_extra_info

    monkeypatch.setattr(compile_cache, "_reused", reused)
    run = SimpleNamespace(n_devices=1, compile_s=2.5, metrics=lambda: {"draws_per_s": 10.0})
    info = workflow_extra_info(case_id="bayes-infer-vmap", workload="bayes", mode="infer", variant="vmap",
                               size="tiny", run=run, throughput=("draws_per_s", "draws"),
                               environment=dict.fromkeys(ENVIRONMENT_KEYS), checks={})
    assert info["compile_cached_s"] is None and info["compile_cache"] == note


def test_compile_cached_makes_the_run_time_each_step_cold_then_from_its_own_cache(cache_state, monkeypatch,
                                                                                   tmp_path):
    """`pytest bench --compile-cached` outside the tests' shared cache (`session.start_compile_cache`,
    as a user's run starts it): a new folder of the run's own, each compiled step timed cold, then
    compiled again from that folder and timed (`hit`), and the folder gone at the run's end."""
    from jaxbench.bench import session
    from jaxbench.bench.session import SHARED_COMPILE_CACHE

    monkeypatch.delenv(SHARED_COMPILE_CACHE)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(session.tempfile, "tempdir", None)  # read TMPDIR again
    config = run_config(compile_cached=True)
    session.start_compile_cache(config)
    folder = session.state(config).compile_cache
    assert folder.parent == tmp_path and folder.name.startswith(session.COMPILE_CACHE_PREFIX)
    step = build_step(get_workload("mlp"), "tiny", "train", "jit_vmap")
    assert step.compile_cache == "hit" and step.compile_s > 0 and step.compile_cached_s > 0, step.compile_cache
    session.remove_compile_cache(config)
    assert not folder.exists()
