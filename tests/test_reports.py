"""Reports built from a real tiny run: numbers traced back to the JSON, verdicts, bad input."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest

from jaxbench.bench.cli import main
from jaxbench.reports.build import build_report, missing_benchmarks
from jaxbench.reports.expectations import expectations_table, verdict
from jaxbench.reports.results import ResultsError, variant_label
from jaxbench.reports.summary import summary_table
from tests.conftest import FAST_TIMING, ROOT, run_pytest

pytestmark = pytest.mark.version_independent  # reports from saved results (pandas, matplotlib): no JAX run


def _by_variant(results, mode):
    """Variant label (a layout other than data included: `multi_device-fsdp`) -> benchmark, for `mode`."""
    return {variant_label(b["extra_info"]): b for b in results["benchmarks"] if b["extra_info"]["mode"] == mode}


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_summary_speedups_are_recomputable_from_the_json(saved_run):
    results = saved_run["results"]
    table = summary_table(results)
    train = _by_variant(results, "train")
    for _, row in table[table["mode"] == "train"].iterrows():
        expected = train["baseline"]["stats"]["median"] / train[row["variant"]]["stats"]["median"]
        assert row["speedup vs baseline"] == pytest.approx(expected, rel=1e-12)
        assert row["median step (ms)"] == pytest.approx(train[row["variant"]]["stats"]["median"] * 1e3)
    csv = pd.read_csv(saved_run["dir"] / "summary.csv")
    assert len(csv) == 15


def test_expectations_have_every_line_with_measured_values(saved_run):
    results = saved_run["results"]
    table = expectations_table(results)
    train = table[table["mode"] == "train"]
    assert list(train["claim"]) == ["baseline", "jit", "vmap", "jit + vmap", "multi-device", "rematerialisation",
                                    "bf16 mixed precision", "gradient accumulation", "sharding (data)",
                                    "sharding (fsdp)"]
    assert list(table[table["mode"] == "infer"]["table"]) == ["speedup"] * 5
    runs = _by_variant(results, "train")
    jit_row = train[train["variant"] == "jit"].iloc[0]
    assert jit_row["measured"] == pytest.approx(runs["baseline"]["stats"]["median"] / runs["jit"]["stats"]["median"])
    remat_row = train[train["variant"] == "remat"].iloc[0]
    assert remat_row["measured"] == pytest.approx(
        runs["jit_vmap"]["extra_info"]["mem_bytes"] / runs["remat"]["extra_info"]["mem_bytes"])
    for _, row in table.iterrows():
        assert row["verdict"] in ("met", "below", "above", "n/a", "reference")
        assert (row["verdict"] == "met") == (row["reason"] == "")
    assert table.query("claim == 'baseline'")["verdict"].tolist() == ["reference", "reference"]
    # On CPU bf16 saves no memory, and virtual devices share the cores: both say so.
    bf16 = train[train["variant"] == "bf16"].iloc[0]
    assert bf16["verdict"] == "below" and "keeps float32 master parameters" in bf16["reason"]
    temp = runs["bf16"]["extra_info"]["mem_temp_bytes"] / 2**20
    assert f"temporaries are {temp:.3g} MiB" in bf16["reason"]  # the run's own figures, not a fixed sentence
    multi = train[train["claim"] == "multi-device"].iloc[0]
    assert multi["verdict"] == "below" and "8 virtual CPU devices share" in multi["reason"]
    # The sharding memory line, once per layout, each against single-device jit_vmap with N named.
    fsdp = train[train["claim"] == "sharding (fsdp)"].iloc[0]
    fsdp_info = runs["multi_device-fsdp"]["extra_info"]
    assert fsdp["measured"] == pytest.approx(runs["jit_vmap"]["extra_info"]["mem_bytes"] / fsdp_info["mem_bytes"])
    assert fsdp["expected"] == "about 8x on 8 devices" and fsdp["variant"] == "multi_device-fsdp"
    held = (fsdp_info["mem_breakdown"]["argument"] + fsdp_info["mem_breakdown"]["output"]
            - fsdp_info["mem_breakdown"]["alias"]) / 2**20
    assert fsdp["verdict"] == "met" or f"fsdp on 8 devices: state and batch held {held:.3g} MiB" in fsdp["reason"]
    data = train[train["claim"] == "sharding (data)"].iloc[0]
    assert data["verdict"] == "below" and "replicated on each of the 8 devices" in data["reason"]


@pytest.mark.parametrize("measured,expected", [(9.99, "below"), (10, "met"), (100, "met"), (100.01, "above")])
def test_verdict_on_both_sides_of_the_range(measured, expected):
    assert verdict(measured, 10, 100) == expected


@pytest.mark.parametrize("jit_speedup,expected", [(5.0, "below"), (50.0, "met"), (500.0, "above")])
def test_verdict_follows_the_measurement(saved_run, jit_speedup, expected):
    results = copy.deepcopy(saved_run["results"])
    runs = _by_variant(results, "train")
    runs["jit"]["stats"]["median"] = runs["baseline"]["stats"]["median"] / jit_speedup
    table = expectations_table(results)
    row = table[(table["mode"] == "train") & (table["variant"] == "jit")].iloc[0]
    assert row["verdict"] == expected and row["measured"] == pytest.approx(jit_speedup)
    assert (row["reason"] != "") == (expected != "met")


def test_a_speedup_reason_rests_on_the_runs_own_dispatch_figure(saved_run):
    """Whether dispatch or compute dominates is read from the run (what compiling the same loop,
    `jit`, removes from baseline's step), not from which side of the range the verdict fell; without
    `jit`, the reason says it is a guess."""
    results = copy.deepcopy(saved_run["results"])
    runs = _by_variant(results, "train")
    base = runs["baseline"]["stats"]["median"]
    runs["jit"]["stats"]["median"] = 0.1 * base  # dispatch 90% of baseline's step
    runs["vmap"]["stats"]["median"] = base / 1.5  # vmap's claim is 10-100x: below
    row = expectations_table(results).query("mode == 'train' and variant == 'vmap'").iloc[0]
    assert row["verdict"] == "below"
    assert "dispatch is 90% of baseline's step" in row["reason"] and "eager dispatch dominates" in row["reason"]
    runs["jit"]["stats"]["median"] = 0.8 * base  # dispatch 20%
    row = expectations_table(results).query("mode == 'train' and variant == 'vmap'").iloc[0]
    assert "dispatch is 20% of baseline's step" in row["reason"] and "compute dominates" in row["reason"]
    results["benchmarks"] = [b for b in results["benchmarks"]
                             if not (b["extra_info"]["variant"] == "jit" and b["extra_info"]["mode"] == "train")]
    row = expectations_table(results).query("mode == 'train' and variant == 'vmap'").iloc[0]
    assert "perhaps compute dominates (jit, which would tell, was not measured)" in row["reason"]


def test_build_writes_every_file(saved_run, tmp_path):
    report = build_report([saved_run["dir"] / "results.json"], tmp_path / "out")
    names = {p.name for p in report.parent.iterdir()}
    assert {"summary.csv", "summary.md", "expectations.csv", "expectations.md", "report.md",
            "speedup.png", "memory.png", "compile_vs_step.png", "mfu.png"} <= names
    assert "scaling.png" not in names  # drawn from the sweeps (--scaling) only, not from two points
    text = report.read_text()
    for heading in ("## Environment", "## Headline findings", "## Summary", "## Expectations", "![speedup]"):
        assert heading in text


def test_partial_results_say_what_is_missing(saved_run, tmp_path):
    results = copy.deepcopy(saved_run["results"])
    results["benchmarks"] = [b for b in results["benchmarks"] if b["extra_info"]["variant"] != "remat"]
    assert missing_benchmarks(results) == ["mlp-train-remat"]
    report = build_report([_write(tmp_path, "partial.json", results)], tmp_path / "out")
    assert "## Missing" in report.read_text() and "mlp-train-remat" in report.read_text()
    table = expectations_table(results)
    remat = table[table["claim"] == "rematerialisation"].iloc[0]
    assert remat["verdict"] == "n/a" and remat["reason"] == "n/a: no remat result in this run"


def test_a_row_the_default_run_leaves_out_says_how_to_get_it(saved_run):
    results = copy.deepcopy(saved_run["results"])
    results["benchmarks"] = [b for b in results["benchmarks"] if b["extra_info"]["case_id"] != "mlp-infer-multi_device"]
    table = expectations_table(results).set_index(["mode", "claim"])
    assert table.loc[("infer", "multi-device"), "reason"] == (
        "n/a: no multi_device result in this run (a run that names no --variants leaves out multi_device in "
        "infer: name it, or all)")
    assert table.loc[("train", "multi-device"), "verdict"] != "n/a"


def test_compare_puts_runs_side_by_side(saved_run, tmp_path, capsys):
    slower = copy.deepcopy(saved_run["results"])
    for bench in slower["benchmarks"]:
        bench["stats"]["median"] *= 2
    a, b = saved_run["dir"] / "results.json", _write(tmp_path, "b.json", slower)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert len(table) == 15 and table["run 2 / run 1"].tolist() == pytest.approx([2.0] * 15)
    assert (tmp_path / "cmp" / "comparison.png").exists()


def _bad_inputs(tmp_path, results):
    other_suite = {k: v for k, v in results.items() if k != "jaxbench"}
    disjoint = copy.deepcopy(results)
    for bench in disjoint["benchmarks"]:
        bench["extra_info"]["workload"] = "other"
    (tmp_path / "not.json").write_text("{not json")
    return {
        "missing": (["build", str(tmp_path / "absent.json")], "absent.json: cannot read"),
        "not json": (["build", str(tmp_path / "not.json")], "not.json: not JSON"),
        "not benchmark": (["build", str(_write(tmp_path, "list.json", [1, 2]))], "not a pytest-benchmark result"),
        "other suite": (["build", str(_write(tmp_path, "o.json", other_suite))], "not from jaxbench"),
        "empty": (["build", str(_write(tmp_path, "e.json", {**results, "benchmarks": []}))], "no benchmark results"),
        "nothing in common": (["compare", str(_write(tmp_path, "a.json", results)),
                               str(_write(tmp_path, "d.json", disjoint))], "no benchmark in common"),
        "one file": (["compare", str(_write(tmp_path, "c.json", results))], "at least two results files"),
    }


@pytest.mark.parametrize("case", ["missing", "not json", "not benchmark", "other suite", "empty",
                                  "nothing in common", "one file"])
def test_bad_input_is_one_line_and_exit_2(case, saved_run, tmp_path, capsys):
    argv, message = _bad_inputs(tmp_path, saved_run["results"])[case]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow
def test_command_line_runs_as_a_module(saved_run, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "jaxbench", "build", str(tmp_path / "nope.json"), "--out",
                           str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "nope.json" in proc.stderr


@pytest.mark.slow
def test_skipped_benchmarks_are_recorded_with_their_reason(tmp_path):
    proc = run_pytest("bench", "--workloads", "mlp", "--size", "tiny", "--modes", "infer", "--cpu-devices", "1",
                      "--variants", "jit_vmap,multi_device", "--report-dir", str(tmp_path), "-q", *FAST_TIMING)
    assert proc.returncode == 0, proc.stdout[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["jaxbench"]["skipped"] == {
        "mlp-infer-multi_device": "only one device: nothing to shard over"}
    assert missing_benchmarks(results) == []
    assert "## Skipped" in (tmp_path / "report.md").read_text()
    row = expectations_table(results).query("claim == 'multi-device'").iloc[0]
    assert row["verdict"] == "n/a"
    assert row["reason"] == "n/a: multi_device skipped: only one device: nothing to shard over"


def test_the_baseline_line_is_not_counted_as_met(saved_run):
    from jaxbench.reports.glance import headline_findings

    results = saved_run["results"]
    expectations = expectations_table(results)
    claims = expectations[expectations["verdict"] != "reference"]
    (line,) = [line for line in headline_findings(summary_table(results), expectations, {}, [])
               if line.startswith("Expectations:")]
    counted = sum(int(part.split()[0]) for part in line.removeprefix("Expectations: ").rstrip(".").split(", "))
    assert counted == len(claims) == len(expectations) - 2 and "reference" not in line


def _second_run(results, n_devices: int, jit_vmap_factor: float) -> dict:
    """A copy of `results` as another machine's run: its multi-device rows on `n_devices`, its
    jit_vmap steps `jit_vmap_factor` times as long."""
    other = copy.deepcopy(results)
    other["jaxbench"]["n_devices_available"] = n_devices
    for bench in other["benchmarks"]:
        info = bench["extra_info"]
        if info["variant"] == "multi_device":
            info["n_devices"] = n_devices
        if info["variant"] == "jit_vmap":
            bench["stats"]["median"] *= jit_vmap_factor
    return other


def test_a_report_over_two_runs_keeps_them_apart(saved_run, tmp_path):
    """Two runs with the same benchmark names on different device sets: every row, speedup and
    verdict stays with its run, where a pivot_table would have averaged them into one bar."""
    first = saved_run["results"]
    second = _second_run(first, n_devices=4, jit_vmap_factor=4.0)
    paths = [_write(tmp_path, "a.json", first), _write(tmp_path, "b.json", second)]
    report = build_report(paths, tmp_path / "out")
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert len(summary) == 30 and summary.groupby("run").size().to_dict() == {"run 1": 15, "run 2": 15}
    assert not summary.duplicated(["run", "workload", "mode", "variant", "size"]).any()
    speedup = summary.query("variant == 'jit_vmap'").set_index(["run", "mode"])["speedup vs baseline"]
    for mode in ("train", "infer"):
        assert speedup[("run 2", mode)] == pytest.approx(speedup[("run 1", mode)] / 4)
    devices = summary.query("variant == 'multi_device'").groupby("run")["devices"].unique()
    assert devices.to_dict() == {"run 1": [8], "run 2": [4]}
    expectations = pd.read_csv(tmp_path / "out" / "expectations.csv")
    assert expectations.groupby("run").size().to_dict() == {"run 1": 15, "run 2": 15}
    text = report.read_text()
    assert "| run 1 " in text and "| run 2 " in text
    for chart in ("speedup.png", "memory.png", "compile_vs_step.png", "mfu.png"):
        assert (tmp_path / "out" / chart).stat().st_size > 0


def test_chart_series_name_the_run_where_runs_differ(saved_run):
    from jaxbench.reports.charts import _by_variant, _with_series

    two = pd.concat([summary_table(saved_run["results"], "run 1"), summary_table(saved_run["results"], "run 2")])
    series = _with_series(two, ["workload", "mode"])
    assert set(series["series"]) == {"mlp train (run 1)", "mlp infer (run 1)", "mlp train (run 2)", "mlp infer (run 2)"}
    assert set(_with_series(summary_table(saved_run["results"]), ["workload", "mode"])["series"]) == {
        "mlp train", "mlp infer"}
    with pytest.raises(ValueError):  # a bar of two runs is refused, never averaged
        _by_variant(two.assign(series="mlp train"), "MFU")


def test_compare_keys_on_layout_and_device_count(saved_run, tmp_path):
    from jaxbench.reports.compare import comparison_table

    first = saved_run["results"]
    second = _second_run(first, n_devices=4, jit_vmap_factor=1.0)
    table = comparison_table([_write(tmp_path, "a.json", first), _write(tmp_path, "b.json", second)])
    assert len(table) == 12 and "multi_device" not in set(table["variant"])  # 8 devices against 4: not one
    assert not table.duplicated(["workload", "mode", "variant", "size", "n_devices"]).any()
    twice = copy.deepcopy(first)
    twice["benchmarks"].append(copy.deepcopy(twice["benchmarks"][0]))
    with pytest.raises(ResultsError, match="appears more than once"):
        comparison_table([_write(tmp_path, "twice.json", twice), _write(tmp_path, "b2.json", second)])


def test_memory_is_split_into_what_the_step_holds_and_its_temporaries(saved_run):
    compiled = summary_table(saved_run["results"]).dropna(subset=["memory/device (MiB)"])
    assert len(compiled) == 11  # compiled: 7 train steps (multi_device in 2 layouts), 4 infer
    total = compiled["held (MiB)"] + compiled["temporaries (MiB)"]
    assert total.tolist() == pytest.approx(compiled["memory/device (MiB)"].tolist())


def test_the_cached_compile_columns_are_shown_only_where_a_run_timed_it(saved_run):
    """The saved run timed both compilations (`--compile-cached`): its compiled rows have a cached
    figure and no note. A run that did not ask for it has neither column."""
    summary = summary_table(saved_run["results"])
    assert summary["compile cached (s)"].notna().sum() == 11 and "compile cache" not in summary
    results = copy.deepcopy(saved_run["results"])
    for bench in results["benchmarks"]:
        if bench["extra_info"]["compile_s"] is not None:
            bench["extra_info"] |= {"compile_cached_s": None, "compile_cache": None}
    without = summary_table(results)
    assert "compile cached (s)" not in without and "compile cache" not in without
    assert without["compile (s)"].notna().sum() == 11


def test_a_workflows_cache_note_is_shown_only_beside_steps_with_a_cached_time(saved_run, saved_workflow_run):
    """A workflow's compile has no cached figure (its note says why): said only where steps have one."""
    workflows = saved_workflow_run["results"]
    assert "compile cache" not in summary_table(workflows)  # no step: nothing to explain
    both = copy.deepcopy(saved_run["results"])
    both["benchmarks"] += workflows["benchmarks"]
    notes = summary_table(both).set_index("kind")["compile cache"]
    said = notes["workflow"].dropna()  # the compiled ones: bayes and the training loop, not checkpoint
    assert len(said) == 6 and said.str.startswith("not measured for a workflow").all()
    assert notes["step"].isna().all()


def test_workflow_rows_stay_out_of_the_step_charts(saved_workflow_run, tmp_path):
    from jaxbench.reports import charts

    summary = summary_table(saved_workflow_run["results"])
    assert set(summary["kind"]) == {"workflow"}
    for chart in (charts.speedup_chart, charts.mfu_chart, charts.compile_vs_step_chart, charts.memory_chart):
        assert chart(summary, tmp_path / "chart.png") is None, chart.__name__


def _docs_table(heading_row: str) -> list[list[str]]:
    text = (ROOT / "docs" / "results.md").read_text()
    lines = text[text.index(heading_row):].splitlines()[2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[:lines.index("")]]


def test_the_docs_quote_every_claim_the_verdicts_use():
    from jaxbench.reports.expectations import CLAIMS

    speedup = [[c.name, c.expected] for c in CLAIMS if c.table == "speedup"]
    memory = [[c.name, c.expected, c.expected_time] for c in CLAIMS if c.table == "memory"]
    assert _docs_table("| claim | expected |\n") == speedup
    assert _docs_table("| claim | expected | expected step time |") == memory


def test_every_command_of_the_parser_has_a_runner():
    from jaxbench.bench.cli import COMMANDS, build_parser

    subcommands = next(action for action in build_parser()._actions if action.dest == "command")
    assert set(subcommands.choices) == set(COMMANDS) | {"run"}  # `run` hands its arguments to pytest unparsed


def test_the_first_screen_is_the_grid_then_at_most_seven_findings(saved_run, saved_workflow_run, tmp_path):
    """Two runs' report: it opens with the grid of workload and mode against variant (each cell
    the figure its claim judges, with the verdict, coloured in the HTML) and at most seven
    findings: the production step, the verdicts' count, the largest gap and its reason, what was
    not measured; the tables follow."""
    from jaxbench.reports.glance import MAX_FINDINGS, glance_table

    results = saved_run["results"]
    summary, expectations = summary_table(results), expectations_table(results)
    grid = glance_table(summary, expectations).set_index(["workload", "mode"])
    judged = expectations.set_index(["workload", "mode", "variant"])
    remat, bf16 = (judged.loc[("mlp", "train", variant)] for variant in ("remat", "bf16"))
    assert remat["measured"] >= 1 > bf16["measured"]  # at `tiny`, bf16's casts take more than they save
    assert grid.loc[("mlp", "train"), "remat"] == f"{remat['measured']:.3g}x less memory ({remat['verdict']})"
    assert grid.loc[("mlp", "train"), "bf16"] == f"{1 / bf16['measured']:.3g}x more memory ({bf16['verdict']})"
    speedups = summary.set_index(["workload", "mode", "variant"])["speedup vs baseline"]
    speedup = speedups.loc[("mlp", "infer", "baseline")]
    assert grid.loc[("mlp", "infer"), "baseline"] == f"{speedup:.3g}x"  # the reference: no verdict
    below = expectations[expectations["verdict"] == "below"]
    worst = below.loc[(below["lo"] / below["measured"]).idxmax()]
    report = build_report([saved_run["dir"] / "results.json", saved_workflow_run["dir"] / "results.json"],
                          tmp_path / "out")
    text = report.read_text()
    assert text.index("## At a glance") < text.index("## Headline findings") < text.index("## Summary") \
        < text.index("## Environment")
    findings = text.split("## Headline findings\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert 4 <= len(findings) <= MAX_FINDINGS, findings
    assert findings[0].startswith("- jit_vmap, the production step, is")
    assert f"Largest gap from the quoted tables: {worst['claim']} ({worst['workload']} {worst['mode']})" in text
    html = (tmp_path / "out" / "report.html").read_text()
    assert "background-color: #f7d4d2" in html and "background-color: #d8f0d8" in html  # below, met


def test_the_compile_chart_names_every_point_and_no_name_covers_another(saved_run):
    import matplotlib.pyplot as plt

    from jaxbench.reports.charts import compile_vs_step_axes

    summary = summary_table(saved_run["results"])
    crowded = summary.index[summary["variant"].isin(["remat", "accumulation"]) & (summary["mode"] == "train")]
    summary.loc[crowded, ["median step (ms)", "compile (s)"]] = [[0.25, 1.5]] * len(crowded)  # one point
    fig, ax = compile_vs_step_axes(summary)
    try:
        labels = ax.texts
        renderer = fig.canvas.get_renderer()
        boxes = [label.get_window_extent(renderer) for label in labels]
        assert len(labels) == summary["compile (s)"].notna().sum()
        assert not [(a.get_text(), b.get_text()) for i, a in enumerate(labels) for j, b in enumerate(labels)
                    if i < j and boxes[i].overlaps(boxes[j])]
        assert any(label.get_position() != (3, 3) for label in labels)  # the two on one point: one moved
    finally:
        plt.close(fig)


def test_the_charts_draw_the_quoted_ranges_the_verdicts_use(saved_run):
    from jaxbench.reports.charts import quoted_ranges

    expectations = expectations_table(saved_run["results"])
    speedup = quoted_ranges(expectations, "speedup")
    assert speedup["jit"] == (10, 100) and speedup["jit_vmap"] == (100, 1000) and "baseline" not in speedup
    low, high = speedup["multi_device"]  # about N x on the run's 8 devices
    assert low < 8 < high
    memory = quoted_ranges(expectations, "memory", workload="mlp", mode="train")
    assert memory["remat"] == (2, 5)
