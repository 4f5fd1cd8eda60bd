"""A real tiny `pytest bench` run of the three workflows: every variant measured, checked and reported."""

from __future__ import annotations

import json
import re
import sys

import pytest

from jaxbench.reports.workflows import workflow_tables
from jaxbench.workloads import WORKFLOW_VARIANTS
from tests.conftest import DATA
from tests.test_bench_run import schema

# Every test here reads a real run. What it adds to the workflows' own tests (tests/test_bayes.py,
# test_checkpoint.py, test_training_loop.py: each variant's JAX, NumPyro and Orbax calls, on every
# Python) is how the bench runs, checks and reports them, which does not change with the JAX version.
pytestmark = [pytest.mark.slow, pytest.mark.version_independent]

METRICS = {
    "bayes": {"sampling_s", "predictive_s", "draws_per_s", "iterations_per_s", "min_ess", "min_ess_per_s",
              "max_split_rhat"},
    "checkpoint": {"state_bytes", "disk_bytes", "save_blocking_s", "save_s", "restore_s", "restore_cached_s",
                   "restore_from_disk", "save_GB_per_s", "restore_GB_per_s", "restore_cached_GB_per_s"},
    "training_loop": {"steps_per_s", "steps_per_s_without_checkpoints", "checkpoint_overhead_share",
                      "checkpoint_blocking_share", "eval_examples_per_s", "time_to_first_step_s", "checkpoints_kept"},
}


def _rows(workflow_run):
    return {(b["extra_info"]["workload"], b["extra_info"]["variant"]): b for b in workflow_run["results"]["benchmarks"]}


def test_every_workflow_variant_has_its_metrics(workflow_run):
    rows = _rows(workflow_run)
    assert set(rows) == {(name, variant) for name, variants in WORKFLOW_VARIANTS.items() for variant in variants}
    for (name, _), bench in rows.items():
        info = bench["extra_info"]
        assert info["kind"] == "workflow" and info["size"] == "tiny" and info["status"] == "pass"
        assert METRICS[name] <= info["metrics"].keys(), METRICS[name] - info["metrics"].keys()
        assert all(value == value for value in info["metrics"].values())  # no NaN
        # Throughput is the workflow's own figure, not items over a whole benchmark round (which
        # holds the predictive after sampling, or the loop without checkpoints before the loop).
        metric, unit = {"bayes": ("draws_per_s", "draws"), "checkpoint": ("save_GB_per_s", "GB"),
                        "training_loop": ("steps_per_s", "steps")}[name]
        assert info["item_unit"] == unit and info["items_per_s"] == info["metrics"][metric] > 0
        assert len(bench["stats"]["data"]) == bench["stats"]["rounds"] >= 2


def test_bayes_rows_hold_the_convergence_checks(workflow_run):
    for variant in WORKFLOW_VARIANTS["bayes"]:
        info = _rows(workflow_run)[("bayes", variant)]["extra_info"]
        metrics, checks = info["metrics"], info["checks"]
        assert metrics["max_split_rhat"] < 1.05
        assert checks["truth_z"] <= checks["z_limit"] and checks["agreement_z"] <= checks["z_limit"]
        # Held to the benchmark's own wall clock around each whole run (pytest-benchmark's rounds):
        # sampling and the predictive each fit inside a round (each metric is a median over the
        # runs), so the rates cannot be below what the slowest round allows (tiny: 2 chains x 150 draws).
        longest = max(_rows(workflow_run)[("bayes", variant)]["stats"]["data"])
        assert 0 < metrics["sampling_s"] <= longest and 0 < metrics["predictive_s"] <= longest
        assert metrics["draws_per_s"] >= 2 * 150 / longest
        assert metrics["iterations_per_s"] > metrics["draws_per_s"]  # the warm-up's iterations too
        assert 0 < metrics["min_ess"] <= 2 * 150 and metrics["min_ess_per_s"] >= metrics["min_ess"] / longest
    assert _rows(workflow_run)[("bayes", "multi_device")]["extra_info"]["n_devices"] == 2  # one per chain


def test_checkpoint_rows_report_async_blocking_apart_from_durable(workflow_run):
    import jax

    from jaxbench.workloads import get_workload
    from jaxbench.workloads.steps import build_step

    step = build_step(get_workload("transformer"), "tiny", "train", "jit_vmap")
    state_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(step.state[:2]))
    step.free()
    rows = _rows(workflow_run)
    for variant in WORKFLOW_VARIANTS["checkpoint"]:
        metrics = rows[("checkpoint", variant)]["extra_info"]["metrics"]
        # The state the checkpoint saves, counted here from the step it checkpoints (the
        # transformer's jit_vmap train step: parameters, optimizer state), and on disk.
        assert metrics["state_bytes"] == state_bytes
        assert metrics["disk_bytes"] > 0.5 * state_bytes
        # Save and restore happen within the benchmark's own wall clock around each round.
        longest = max(rows[("checkpoint", variant)]["stats"]["data"])
        assert 0 < metrics["save_blocking_s"] <= metrics["save_s"] <= longest
        assert 0 < metrics["restore_s"] <= longest and 0 < metrics["restore_cached_s"] <= longest
        assert metrics["restore_from_disk"] is (sys.platform == "linux")
        assert metrics["save_GB_per_s"] >= state_bytes / longest / 1e9
    assert rows[("checkpoint", "multi_device")]["extra_info"]["n_devices"] == 8


def test_training_loop_rows_keep_the_retention_limit(workflow_run):
    for variant in WORKFLOW_VARIANTS["training_loop"]:
        metrics = _rows(workflow_run)[("training_loop", variant)]["extra_info"]["metrics"]
        # tiny: 12 steps, a checkpoint every 4, the last 2 kept. Counted, not computed: Orbax also
        # saves step 1 (there is no checkpoint yet), so 4 saves, and steps 8 and 12 on disk.
        assert metrics["checkpoints_saved"] == 4 and metrics["checkpoints_kept"] == 2
        assert 0 < metrics["checkpoint_blocking_share"] < 1
        assert metrics["steps_per_s_without_checkpoints"] > 0
        assert metrics["time_to_first_step_s"] > 0


def test_checkpoints_are_removed_and_the_report_has_the_workflow_tables(workflow_run):
    assert list(workflow_run["checkpoint_dir"].iterdir()) == []
    report = (workflow_run["dir"] / "report.md").read_text()
    for name in WORKFLOW_VARIANTS:
        assert f"### {name}" in report
    assert "minimum effective samples per second" in report
    tables = workflow_tables(workflow_run["results"])
    assert list(tables["checkpoint"]["variant"]) == list(WORKFLOW_VARIANTS["checkpoint"])
    expectations = (workflow_run["dir"] / "expectations.md").read_text()
    assert "bayes" not in expectations  # the quoted step tables do not speak of workflows


def test_summary_throughput_is_each_workflows_own_figure(workflow_run):
    """items/s in the summary is the workflow's metric (draws/s of sampling, GB/s of the save,
    steps/s of the checkpointed loop), not items over a benchmark round."""
    from jaxbench.reports.summary import summary_table

    summary = summary_table(workflow_run["results"]).set_index(["workload", "variant"])
    metric = {"bayes": "draws_per_s", "checkpoint": "save_GB_per_s", "training_loop": "steps_per_s"}
    for (name, variant), bench in _rows(workflow_run).items():
        assert summary.loc[(name, variant), "items/s"] == bench["extra_info"]["metrics"][metric[name]]
    loop = _rows(workflow_run)[("training_loop", "async")]
    # A round runs the loop twice (without, then with checkpoints): items over a round would be lower.
    assert loop["extra_info"]["items_per_s"] > 12 / loop["stats"]["median"]


def test_a_workflow_row_says_why_it_has_no_cached_compile_time(workflow_run):
    """The run is under the tests' shared cache (`JAXBENCH_COMPILE_CACHE`): its workflows' compiles,
    the training loop's included, read through it, and each compiled row says none is cold."""
    rows = [b["extra_info"] for b in workflow_run["results"]["benchmarks"]]
    compiled = [row for row in rows if row["compile_s"] is not None]
    assert {row["workload"] for row in compiled} == {"bayes", "training_loop"}
    assert all(row["compile_cached_s"] is None and row["compile_cache"].endswith(": not a cold compile")
               for row in compiled)


def test_the_saved_run_has_the_schema_of_a_fresh_run(workflow_run):
    """As `tests.test_bench_run`'s, for the saved run of the workflows."""
    assert schema(json.loads((DATA / "tiny-workflows-run.json").read_text())) == schema(workflow_run["results"])


def test_the_runs_time_line_counts_the_workflows_builds_and_first_runs(workflow_run):
    """The run's last lines say where its time went: building the workflows (their compiles
    inside) and their first, checked runs are counted there, not left in `other`; how many programs
    XLA compiled in the worker (the sharded workflows'), and in the run's process, all told."""
    line = next(line for line in workflow_run["proc"].stdout.splitlines() if line.startswith("time: "))
    spent = {what.strip(): int(value) for what, value in re.findall(r"([a-zA-Z' ]+) (\d+) s", line.split("in all:")[1])}
    assert spent["building steps"] >= 1 and spent["first steps"] >= 1, line
    assert spent["XLA compiling"] <= spent["building steps"], line
    programs = re.search(r"; XLA compiled (\d+) programs in \d+ s in this process", line)
    assert programs and int(programs[1]) >= 1, line  # every compilation, eager operations' too
    in_worker = re.search(r"worker processes \d+ s \(XLA compiled (\d+) programs in \d+ s there\)", line)
    assert in_worker and int(in_worker[1]) >= 1, line  # the sharded workflows' worker's, handed back
