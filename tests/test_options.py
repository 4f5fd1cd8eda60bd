"""Bad command-line values: a one-line usage error naming the value and the valid choices."""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from types import SimpleNamespace

import pytest

from jaxbench.bench.cases import cases_of, mesh_problem, resolve_workloads, step_cases, workflow_cases_of
from jaxbench.bench.options import ALL_VARIANTS, Selection
from jaxbench.workloads.outside import WorkloadError
from jaxbench.workloads.sharding import layouts_for, parse_mesh
from tests.conftest import ROOT, option_parser, run_pytest

pytestmark = pytest.mark.version_independent  # the parsers and the selection of cases


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("--modes", "fly", "unknown mode 'fly'; valid: train, infer, decode"),
        ("--variants", "jit,pmap", "unknown variant 'pmap'; valid: baseline, jit, vmap, jit_vmap, multi_device, "
                                   "remat, bf16, accumulation, sync, async"),
        ("--size", "huge", "unknown size 'huge'; valid: tiny, small, medium, large, auto"),
        ("--cpu-devices", "0", "'0' is not a whole number of devices >= 1"),
        ("--long-step-rounds", "two", "'two' is not a whole number of rounds >= 1"),
        ("--workloads", ",", "no workload given; valid: mlp, cnn, cnn_batchnorm, transformer"),
        ("--scaling", "linear", "unknown scaling sweep 'linear'; valid: strong, weak, both"),
        ("--benchmark-timeout", "0", "'0' is not a number of seconds > 0"),
        ("--mesh", "data=4,pipe=2", "unknown mesh axis 'pipe' in 'data=4,pipe=2'; valid axes: data, model"),
        ("--mesh", "data=four", "mesh axis 'data=four' needs a whole size >= 1"),
    ],
)
def test_bad_value_is_an_error_naming_it_and_the_valid_choices(option, value, message):
    with pytest.raises(argparse.ArgumentError) as error:
        option_parser().parse_args([f"{option}={value}"])
    assert str(error.value).startswith(f"argument {option}: {message}")


@pytest.mark.slow
@pytest.mark.parametrize(
    "option,value,message",
    [
        ("--size", "huge", "unknown size 'huge'; valid: tiny, small, medium, large, auto"),
        ("--mesh", "data=2,model=2", "--mesh data=2,model=2 spans 4 devices, but the multi-device benchmarks "
                                     "have 8 (on a CPU: --cpu-devices)"),
    ],
)
def test_bad_value_is_a_usage_error(option, value, message, tmp_path):
    """Through pytest itself: exit 4, one line, before anything runs (`--mesh`'s product is
    checked against the device count once the run is configured, not by the parser)."""
    proc = run_pytest("bench", f"{option}={value}", "--report-dir", str(tmp_path), timeout=120)
    assert proc.returncode == 4  # pytest's usage error
    assert message in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing written


@pytest.mark.slow
@pytest.mark.parametrize("args,message", [
    (("--workloads=mlp,checkpoint", "--modes=infer", "--variants=remat"),
     "nothing to measure: --workloads mlp,checkpoint --modes infer --variants remat select no benchmark together"),
    (("--workloads=mlp", "--variants=multi_device", "-k", "no-such-benchmark"),
     "nothing to measure: -k 'no-such-benchmark' left none of the selected benchmarks"),
    (("--workloads=mlp", "-m", "no_such_mark"), "nothing to measure: -m 'no_such_mark' left none"),
])
def test_a_selection_of_nothing_is_a_usage_error(args, message, tmp_path):
    """Options each valid that together select no benchmark (remat has no forward pass, a step
    workload no `sync`), or a `-k` or `-m` that leaves none: one line, exit 4, no report, instead
    of pytest's silent exit 5 (which a CI job would take for a run that measured nothing wrong)."""
    proc = run_pytest("bench", *args, "--size=tiny", "--report-dir", str(tmp_path), timeout=120)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "time: " not in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_workload_is_named_once_outside_workloads_are_known():
    """`--workloads` is checked when the run is configured, after `--workload-module` has added the
    user's own (`bench.cases.resolve_workloads`)."""
    names = option_parser().parse_args(["--workloads=mlp,resnet9"]).workloads
    with pytest.raises(WorkloadError) as error:
        resolve_workloads(names, [])
    assert str(error.value) == ("unknown workload 'resnet9'; valid: mlp, cnn, cnn_batchnorm, transformer, "
                                "bayes, checkpoint, training_loop")


def test_options_are_listed_in_help_with_their_defaults():
    parser = option_parser()
    text = parser.format_help()
    for option in ("--workloads", "--modes", "--variants", "--size", "--report-dir", "--checkpoint-dir",
                   "--cpu-devices", "--mesh", "--scaling", "--long-step-rounds", "--baseline-budget"):
        assert option in text
    defaults = parser.parse_args([])
    assert (defaults.size, defaults.cpu_devices, defaults.baseline_budget) == ("auto", 8, 5.0)
    assert "--jaxbench-worker" not in text  # the worker's own option is hidden


def _ids(*flags: str, **selection) -> list[str]:
    """The step cases' ids that these options select, as a run selects them (`bench.cases.cases_of`)."""
    options = option_parser().parse_args([*flags, *(f"--{k}={v}" for k, v in selection.items())])
    chosen = Selection.of(lambda name, default: getattr(options, name, default))
    workloads = resolve_workloads(chosen.workloads, list(chosen.workload_modules))
    return [case.id for case in cases_of(replace(chosen, workloads=workloads), lambda: 8)]


def test_selection_picks_the_cases():
    assert _ids(modes="infer", variants="jit,remat", workloads="mlp,cnn,cnn_batchnorm,transformer") == [
        "mlp-infer-jit", "cnn-infer-jit", "cnn_batchnorm-infer-jit", "transformer-infer-jit"]


def test_the_default_run_leaves_out_cnn_batchnorm_and_all_brings_it_back():
    default, every = _ids(modes="infer", variants="jit"), _ids(modes="infer", variants="jit", workloads="all")
    assert default == ["mlp-infer-jit", "cnn-infer-jit", "transformer-infer-jit"]
    assert every == ["mlp-infer-jit", "cnn-infer-jit", "cnn_batchnorm-infer-jit", "transformer-infer-jit"]


FORWARD_PASSES_SHARDED = ["mlp-infer-multi_device", "cnn-infer-multi_device", "transformer-infer-multi_device",
                          "transformer-decode-multi_device"]


def test_the_default_run_shards_train_steps_and_runs_the_loop_with_async_checkpoints():
    """A run that names no --variants leaves out the forward passes' multi_device rows and the
    training loop's sync checkpoints (`Variant.default_modes`, `LEFT_OUT_OF_DEFAULT_VARIANTS`);
    `--variants all` brings them back, and so does naming the variant."""
    default, every = _ids(), _ids(variants="all")
    assert [case for case in every if case not in default] == FORWARD_PASSES_SHARDED
    assert [case for case in default if "multi_device" in case] == [
        "mlp-train-multi_device", "mlp-train-multi_device-fsdp", "cnn-train-multi_device",
        "transformer-train-multi_device", "transformer-train-multi_device-fsdp"]
    assert set(FORWARD_PASSES_SHARDED) <= set(_ids(variants="multi_device"))
    assert option_parser().parse_args(["--variants=all"]).variants == ALL_VARIANTS
    assert option_parser().parse_args([]).variants is None

    def workflow_ids(*variants):
        chosen = Selection(workloads=("checkpoint", "training_loop"), variants=variants or None, size="tiny")
        return [case.id for case in workflow_cases_of(chosen)]

    assert workflow_ids() == ["checkpoint-save_restore-sync", "checkpoint-save_restore-async",
                              "checkpoint-save_restore-multi_device", "training_loop-train-async"]
    assert workflow_ids(*ALL_VARIANTS)[-1] == "training_loop-train-sync"
    assert workflow_ids("sync") == ["checkpoint-save_restore-sync", "training_loop-train-sync"]


def test_each_mesh_layout_is_its_own_benchmark():
    collected = _ids("--every-layout", variants="multi_device", workloads="all")
    assert "mlp-train-multi_device" in collected
    assert "mlp-train-multi_device-fsdp" in collected
    assert "mlp-train-multi_device-model" not in collected  # the MLP declares data and fsdp only
    assert "mlp-infer-multi_device-fsdp" not in collected  # fsdp splits a training state
    for mode in ("train", "infer", "decode"):
        for suffix in ("", "-model", "-data_model"):
            assert f"transformer-{mode}-multi_device{suffix}" in collected
    assert "transformer-train-multi_device-fsdp" in collected
    # Every workload with stacked weights gets fsdp for train: the CNNs too.
    assert "cnn-train-multi_device-fsdp" in collected
    assert "cnn_batchnorm-train-multi_device-fsdp" in collected


def test_by_default_a_train_step_is_measured_in_data_and_fsdp_and_a_forward_pass_in_data():
    """The default run's set (`workloads.sharding.layouts_for`); --every-layout gives the rest: the
    transformer's `model` and `data_model` layouts, in every mode, and the CNN's `fsdp` (its
    `default_layouts`: `data` only)."""
    default, every = _ids(variants="multi_device"), _ids("--every-layout", variants="multi_device")
    assert [case for case in every if case not in default] == ["cnn-train-multi_device-fsdp"] + [
        f"transformer-{mode}-multi_device-{layout}"
        for mode in ("train", "infer", "decode") for layout in ("model", "data_model")]
    assert {"transformer-train-multi_device", "transformer-train-multi_device-fsdp", "mlp-train-multi_device-fsdp",
            "cnn-train-multi_device", "transformer-infer-multi_device",
            "transformer-decode-multi_device"} <= set(default)


def test_a_workload_without_the_default_layouts_is_measured_in_its_first():
    only_model = SimpleNamespace(layouts=("model", "data_model"), default_layouts=None)
    assert layouts_for(only_model, "train", every=False) == ("model",)
    assert layouts_for(only_model, "infer", every=True) == ("model", "data_model")
    own_default = SimpleNamespace(layouts=("data", "model", "fsdp"), default_layouts=("model",))
    assert layouts_for(own_default, "train", every=False) == ("model",)
    assert layouts_for(own_default, "train", every=True) == ("data", "model", "fsdp")


def test_a_mesh_data_axis_that_does_not_divide_a_batch_is_named():
    cases = step_cases(("mlp",), ("train",), ("multi_device",), "tiny", parse_mesh("data=3"))
    assert mesh_problem(parse_mesh("data=3"), 3, cases) == (
        "--mesh data=3,model=1: data=3 does not divide mlp's batch of 8 at size tiny; choose a data size "
        "that divides 8")
    assert mesh_problem(parse_mesh("data=4,model=2"), 8, cases) is None


@pytest.mark.slow
def test_workflows_have_their_own_variants():
    proc = run_pytest("bench", "--collect-only", "-q", "--workloads", "bayes,checkpoint,training_loop",
                      "--variants", "multi_device,async", "--modes", "decode", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    collected = [line.split("::")[1] for line in proc.stdout.splitlines() if "::" in line]
    # Benchmarks over several devices run last (on a CPU, together in one worker process).
    assert collected == ["test_workflow[checkpoint-save_restore-async]", "test_workflow[training_loop-train-async]",
                         "test_workflow[bayes-infer-multi_device]",
                         "test_workflow[checkpoint-save_restore-multi_device]"]


@pytest.mark.slow
@pytest.mark.parametrize("option", ["--report-dir", "--checkpoint-dir"])
def test_unwritable_folder_is_a_usage_error_before_measuring(option, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    proc = run_pytest("bench", "--size", "tiny", option, str(not_a_folder / "sub"), timeout=120)
    assert proc.returncode == 4
    assert f"{option} {not_a_folder / 'sub'}: cannot write there" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "test_step" not in proc.stdout and "test_workflow" not in proc.stdout  # nothing was run


def _docs_options_table() -> dict[str, str]:
    """The table of `pytest bench`'s options in docs/options.md: each option named in a row's first column ->
    that row's default column."""
    text = (ROOT / "docs" / "options.md").read_text()
    table = text.split("| option | meaning | default |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| `--")]
    return {name: row[-1].rstrip(" |") for row in rows for name in re.findall(r"`(--[a-z-]+)", row[0])}


def _as_written(default) -> str | None:
    """How the table writes a parser's default; None where the table describes it in words."""
    if default is False:
        return "off"
    if isinstance(default, str):
        return f"`{default}`"
    if isinstance(default, int | float) and not isinstance(default, bool):
        return f"{default:g}"
    return None  # none, or a list: said in words


def test_the_docs_options_table_is_the_parsers():
    """Every option `pytest bench` adds is in the docs' table and every option there is one it
    adds, each with the parser's default (where the default is a value, not words)."""
    actions = [action for action in option_parser()._actions
               if action.option_strings != ["-h", "--help"] and action.help != argparse.SUPPRESS]
    table = _docs_options_table()
    assert sorted(table) == sorted(action.option_strings[0] for action in actions)
    for action in actions:
        written = _as_written(action.default)
        if written is not None:
            assert table[action.option_strings[0]] == written, (action.option_strings[0], action.default)
