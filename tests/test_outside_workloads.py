"""A workload of the user's own, from outside this repository: through an installed package's
entry point (examples/jaxbench-example) or `--workload-module`, with all the variants, the checks
and the report; a module that is missing or breaks the contract is a one-line usage error."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxbench.bench.cases import resolve_workloads
from jaxbench.workloads import get_workload
from jaxbench.workloads.outside import WorkloadError, contract_problems
from jaxbench.workloads.variants import VARIANTS
from tests.conftest import FAST_TIMING, ROOT, run_pytest

EXAMPLE = ROOT / "examples" / "jaxbench-example"
MLP = get_workload("mlp")


def test_the_suites_own_workloads_keep_the_contract():
    for name in ("mlp", "cnn", "cnn_batchnorm", "transformer"):
        assert contract_problems(get_workload(name)) == []


@pytest.mark.parametrize(("change", "problem"), [
    ({"name": "my-model"}, "name 'my-model' is not letters, digits and underscores"),
    ({"sizes": {"tiny": MLP.sizes["tiny"]}}, "sizes lacks the preset(s) small, medium, large"),
    ({"modes": ("train", "fly")}, "modes ('train', 'fly') must be some of train, infer, decode"),
    ({"modes": ("train", "decode")}, "mode 'decode' needs example_decode"),
    ({"example_loss": None}, "mode 'train' needs example_loss or batch_loss"),
    ({"make_batch": "inputs.npy"}, "make_batch is not callable"),
    ({"layouts": ("data", "pipeline")}, "layouts 'pipeline' unknown; valid: data, model, data_model"),
    ({"default_layouts": ("model",)}, "default_layouts 'model' not among its layouts 'data', 'fsdp'"),
])
def test_a_broken_contract_is_named(change, problem):
    problems = contract_problems(dataclasses.replace(MLP, **change))
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_something_else_than_a_workload_is_named():
    assert contract_problems({"name": "mlp"}) == ["it is a dict, not a jaxbench.Workload"]


BROKEN_MODULE = """
import dataclasses
from jaxbench.workloads.mlp import WORKLOAD as MLP
WORKLOAD = dataclasses.replace(MLP, name="mine", modes=("train", "fly"))
"""


@pytest.mark.parametrize(("module", "source", "message"), [
    ("not_installed.model", None, "--workload-module 'not_installed.model': no module named 'not_installed.model' "
                                  "on the Python path (is its package installed?)"),
    ("no_workload", "X = 1\n", "--workload-module 'no_workload': module 'no_workload' defines no WORKLOAD"),
    ("raises", "raise RuntimeError('no GPU here')\n",
     "--workload-module 'raises': importing 'raises' failed: RuntimeError: no GPU here"),
    ("broken", BROKEN_MODULE, "--workload-module 'broken': WORKLOAD breaks the workload contract: "
                              "modes ('train', 'fly') must be some of train, infer, decode"),
    ("workloads.mlp", None, "its WORKLOAD is named 'mlp', which is taken by one of the suite's own workloads"),
])
def test_a_bad_workload_module_is_named_in_one_line(module, source, message, tmp_path, monkeypatch):
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(WorkloadError) as error:
        resolve_workloads(None, [module])
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.version_independent
@pytest.mark.slow
def test_a_bad_workload_module_is_a_one_line_usage_error(tmp_path):
    """`pytest bench` says what `resolve_workloads` found, as pytest's usage error: exit 4, one line."""
    (tmp_path / "raises.py").write_text("raise RuntimeError('no GPU here')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = run_pytest("bench", "--workload-module", "raises", "--size", "tiny", "--report-dir", str(tmp_path / "r"),
                      env=env, timeout=120)
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR:")]
    message = "--workload-module 'raises': importing 'raises' failed: RuntimeError: no GPU here"
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "r").exists()  # nothing ran, nothing written


@pytest.mark.slow
@pytest.mark.version_independent
def test_an_installed_package_of_workloads_runs_every_variant(tmp_path):
    """examples/jaxbench-example installed as a package (its entry point names `wide_mlp`): every
    train variant runs, is checked against baseline, and is in the results and report (each
    variant's infer step is the same package code under the same transformations)."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(EXAMPLE)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = run_pytest("bench", "--workloads", "wide_mlp", "--modes", "train", "--size", "tiny",
                      "--report-dir", str(tmp_path / "r"), "-q", *FAST_TIMING, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    rows = {(b["extra_info"]["mode"], b["extra_info"]["variant"]) for b in results["benchmarks"]}
    expected = {("train", name) for name, variant in VARIANTS.items() if "train" in variant.modes}
    assert rows == expected
    assert results["jaxbench"]["skipped"] == {} and results["jaxbench"]["failed"] == {}
    assert "| wide_mlp" in (tmp_path / "r" / "expectations.md").read_text()


@pytest.mark.slow
@pytest.mark.version_independent
def test_a_workload_module_on_the_command_line_runs_from_its_projects_folder():
    """`jaxbench run --workload-module` from the example package's own folder, not installed: the
    module is found there, as `python -m pytest` would find it."""
    jaxbench = Path(sys.executable).parent / "jaxbench"
    proc = subprocess.run([str(jaxbench), "run", "--workload-module", "jaxbench_example.wide_mlp", "--workloads",
                           "wide_mlp", "--size", "tiny", "--modes", "train", "--variants", "baseline,jit_vmap,remat",
                           "--benchmark-disable", "-q"], cwd=EXAMPLE, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "3 passed" in proc.stdout, proc.stdout[-2000:]
