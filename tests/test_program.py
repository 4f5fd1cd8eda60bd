"""What changed in the compiled program (`workloads.program`): fingerprints, fusions, op counts and
collective bytes, and the gates' words for the difference."""

from __future__ import annotations

import copy
import json

import jax
import jax.numpy as jnp

from jaxbench.reports.regress import regress
from jaxbench.workloads import get_workload
from jaxbench.workloads.program import program_diff, program_summary, program_text
from jaxbench.workloads.steps import build_step

HLO = """HloModule jit_step, entry_computation_layout={(f32[8,128]{1,0})->f32[64,128]{1,0}}

%fused_computation (param_0: f32[8,128]) -> f32[8,128] {
  %param_0 = f32[8,128]{1,0} parameter(0)
  ROOT %transpose.1 = f32[8,128]{0,1} transpose(%param_0), dimensions={1,0}, metadata={op_name="LINE"}
}

ENTRY %main.2 (x.1: f32[8,128]) -> f32[64,128] {
  %x.1 = f32[8,128]{1,0} parameter(0), metadata={op_name="x"}
  %copy_fusion = f32[8,128]{1,0} fusion(%x.1), kind=kLoop, calls=%fused_computation, metadata={op_name="LINE"}
  %ars = bf16[16]{0} all-reduce-start(%copy_fusion), replica_groups={}, metadata={op_name="LINE"}
  %ard = bf16[16]{0} all-reduce-done(%ars)
  ROOT %all-gather.3 = f32[64,128]{1,0} all-gather(%copy_fusion), dimensions={0}, metadata={op_name="LINE"}
}
"""


def test_a_programs_summary_counts_its_ops_fusions_and_collective_bytes():
    summary = program_summary(HLO)
    assert summary["ops"] == {"all-gather": 1, "all-reduce-done": 1, "all-reduce-start": 1, "fusion": 1, "transpose": 1}
    assert summary["fusions"] == 1
    assert summary["collective_bytes"] == {"all-gather": 64 * 128 * 4, "all-reduce": 16 * 2}  # the start, once


def test_the_fingerprint_is_the_programs_not_its_source_positions():
    moved = program_summary(HLO.replace('op_name="LINE"', 'op_name="jit(step)/other_file.py:12"'))
    assert moved["fingerprint"] == program_summary(HLO)["fingerprint"]
    assert program_summary(HLO.replace("dimensions={0}", "dimensions={1}"))["fingerprint"] != moved["fingerprint"]


def test_a_planted_transpose_shows_in_the_op_diff_and_the_same_program_says_so():
    weights = jnp.ones((32, 48))
    plain = program_summary(program_text(jax.jit(lambda x: jnp.tanh(x @ weights)).lower(jnp.ones((64, 32))).compile()))
    planted = program_summary(program_text(
        jax.jit(lambda x: jnp.tanh(x @ weights).T).lower(jnp.ones((64, 32))).compile()))
    assert "transpose +1" in program_diff(plain, planted).split("; ")
    assert program_diff(plain, plain) == "same program"
    assert program_diff(None, planted) == ""  # an eager step has no program


def test_a_step_built_twice_is_the_same_program():
    """The A/A case: two builds of one step (each compiled cold) have one fingerprint."""
    mlp = get_workload("mlp")
    first, second = (build_step(mlp, "tiny", "train", "jit_vmap").program for _ in range(2))
    assert first is not None and first["fusions"] > 0 and first["fingerprint"] == second["fingerprint"]


def test_regress_says_what_changed_in_the_program_beside_each_benchmark(saved_run, tmp_path):
    base = saved_run["results"]
    head = copy.deepcopy(base)
    for bench, other in zip(base["benchmarks"], head["benchmarks"]):
        program = program_summary(HLO)
        bench["extra_info"]["program"] = program
        changed = dict(program, fingerprint="0" * 16, fusions=3, ops={**program["ops"], "copy": 6})
        other["extra_info"]["program"] = changed if bench["extra_info"]["variant"] == "remat" else program
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "head.json").write_text(json.dumps(head))
    rows = {row["benchmark"]: row["program"] for row in regress(tmp_path / "base.json", tmp_path / "head.json").rows}
    remat = "mlp-train-remat (tiny, 1 device)"
    assert rows[remat] == "fusions 1 -> 3; copy +6"
    assert {program for name, program in rows.items() if name != remat} == {"same program"}
