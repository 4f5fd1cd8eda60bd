"""The regression gate's statistics on synthetic timings whose truth is known, the exact gates,
`reports regress` over two saved runs and `reports export` for the GitHub benchmark action."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from jaxbench.bench.cli import build_parser, main
from jaxbench.reports import regress as regress_module
from jaxbench.reports.regress import benchmark_name, regress
from jaxbench.reports.verdicts import (
    ExactChange,
    benchmark_verdict,
    exact_changes,
    family_alpha,
    paired_verdict,
    unpaired_verdict,
)
from tests.conftest import ROOT

THRESHOLD = 0.05
BLOCK_SPREAD = 0.02  # block medians within one process (measured: 1-2%)


PROCESS_SPREAD = 0.03  # a fresh process's own speed, for good (measured: a few percent)


def _ab_run(truth: float, rng, pairs: int = 4, blocks: int = 10, process: float = PROCESS_SPREAD,
            block: float = BLOCK_SPREAD) -> tuple[np.ndarray, np.ndarray]:
    """Ratios and worker-pair labels of a simulated `ab` run: `pairs` worker pairs, `blocks` block
    pairs each; each worker process has its own lasting speed (`process` spread, so a pair's ratio
    is off by the head's over the base's), each block its own noise (`block` spread)."""
    offsets = rng.normal(0, process, (pairs, 2))
    logs = np.log(truth) + (offsets[:, 1] - offsets[:, 0])[:, None] + rng.normal(0, block, (pairs, blocks))
    return np.exp(logs.ravel()), np.repeat(np.arange(pairs), blocks)


def test_the_interval_covers_the_true_ratio_at_its_nominal_rate():
    """2000 simulated runs, processes off by 3% each and blocks by 2%, at the default 4 worker
    pairs and at 3: the 95% interval holds the true 1.07 in 95% of them, within simulation error
    (+-1.5%, three standard errors). The bootstrap it replaces, over pairs then blocks, missed 19
    in 135 such runs at 99.75%."""
    rng = np.random.default_rng(5)
    for pairs in (3, 4):
        verdicts = [paired_verdict(*_ab_run(1.07, rng, pairs), THRESHOLD, 0.05) for _ in range(2000)]
        covered = np.mean([v.low <= 1.07 <= v.high for v in verdicts])
        assert 0.935 <= covered <= 0.965, (pairs, covered)


def test_unchanged_code_is_rarely_a_regression_and_a_large_slowdown_usually_is():
    rng, alpha, runs = np.random.default_rng(3), family_alpha(6), 300
    same = [paired_verdict(*_ab_run(1.0, rng), THRESHOLD, alpha).verdict for _ in range(runs)]
    slower = [paired_verdict(*_ab_run(1.15, rng, process=0.01), THRESHOLD, alpha).verdict for _ in range(runs)]
    assert same.count("regression") / runs <= alpha * 2  # at most its share of the family's 5%
    assert slower.count("regression") / runs >= 0.8


@pytest.mark.parametrize(("truth", "expected"), [(1.3, "regression"), (1 / 1.3, "improvement"), (1.0, "no change")])
def test_the_first_look_can_decide_either_way(truth, expected):
    """Two blocks a pair at 4 pairs, the first look of a run over two benchmarks and 4 looks: each
    verdict is reachable (the exact signed-rank test over 8 pairs could not go below p = 0.0078)."""
    ratios, pairs = _ab_run(truth, np.random.default_rng(1), pairs=4, blocks=2, process=0.003, block=0.003)
    verdict = paired_verdict(ratios, pairs, THRESHOLD, family_alpha(2) / 4)
    assert verdict.verdict == expected, verdict


def test_fewer_than_three_worker_pairs_are_inconclusive():
    ratios, pairs = _ab_run(1.5, np.random.default_rng(2), pairs=2, blocks=20, process=0.001, block=0.001)
    verdict = paired_verdict(ratios, pairs, THRESHOLD)
    assert verdict.verdict == "inconclusive" and verdict.ratio == pytest.approx(1.5, rel=0.01)
    assert paired_verdict(*_ab_run(1.5, np.random.default_rng(2), pairs=3, blocks=20, process=0.001,
                                   block=0.001), THRESHOLD).verdict == "regression"


@pytest.mark.parametrize(("truth", "expected"), [(1.0, "no change"), (1.3, "regression"), (1 / 1.3, "improvement")])
def test_unpaired_verdicts_on_synthetic_rounds(truth, expected):
    rng = np.random.default_rng(11)
    base, head = np.exp(rng.normal(0, 0.03, 40)), truth * np.exp(rng.normal(0, 0.03, 40))
    verdict = unpaired_verdict(base, head, 0.15, family_alpha(4))
    assert verdict.verdict == expected, verdict
    assert verdict.low <= truth * 1.02 and verdict.high >= truth / 1.02


def test_too_few_measurements_are_inconclusive():
    assert paired_verdict([1.5, 1.5, 1.5, 1.5], [0, 1, 2, 0], THRESHOLD).verdict == "inconclusive"  # 4 blocks
    assert unpaired_verdict([1.0, 1.01], [2.0, 2.02], 0.15).verdict == "inconclusive"


def test_exact_figures_are_gated_exactly():
    base = {"mem_bytes": 1000, "xla_flops": 1e9, "xla_bytes_accessed": 5e6}
    grown = {**base, "xla_flops": 1.01e9}
    assert [str(c) for c in exact_changes(base, grown)] == ["XLA cost-analysis FLOPs 1e+09 -> 1.01e+09 (+1.00%)"]
    no_change = paired_verdict([1.0, 1.001, 0.999, 1.0, 1.002, 0.998], [0, 0, 1, 1, 2, 2], THRESHOLD)
    assert no_change.verdict == "no change"
    assert benchmark_verdict(no_change, exact_changes(base, grown)) == "regression"  # whatever the noise
    within = exact_changes(base, {**base, "mem_bytes": 1004})  # inside the 0.5% tolerance
    assert within and not within[0].is_regression and benchmark_verdict(no_change, within) == "no change"
    shrunk = exact_changes(base, {**base, "mem_bytes": 500})
    assert not shrunk[0].is_regression
    assert exact_changes(base, {**base, "xla_flops": None}) == []  # eager variants have none
    assert ExactChange("mem_bytes", 0, 10).ratio == float("inf")


def test_the_exact_figures_are_the_same_for_every_build_of_a_step():
    from jaxbench.workloads import get_workload
    from jaxbench.workloads.steps import build_step

    first, second = (build_step(get_workload("mlp"), "tiny", "train", "accumulation") for _ in range(2))
    assert first.cost == second.cost and first.memory == second.memory
    assert first.cost["flops"] > 0 and first.cost["bytes_accessed"] > 0


def _saved_run(saved_run, tmp_path, name: str, change=None) -> str:
    data = copy.deepcopy(saved_run["results"])
    if change:
        change(data)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return str(path)


def _bench(data, variant, mode="train"):
    return next(b for b in data["benchmarks"] if b["extra_info"]["variant"] == variant
                and b["extra_info"]["mode"] == mode)


def _slower(variant, factor):
    def change(data):
        stats = _bench(data, variant)["stats"]
        stats["data"] = [t * factor for t in stats["data"]]
        stats["median"] *= factor
    return change


def _redrawn(seed):
    """Every benchmark's rounds drawn afresh, 20 of them, from one log-normal about its median (5%
    spread): two such runs are two jobs of the same code, not one file read twice."""
    def change(data):
        rng = np.random.default_rng(seed)
        for bench in data["benchmarks"]:
            bench["stats"]["data"] = list(bench["stats"]["median"] * np.exp(rng.normal(0, 0.05, 20)))
    return change


def test_regress_finds_no_regression_between_two_draws_of_the_same_code(saved_run, tmp_path):
    for seed in range(5):
        base = _saved_run(saved_run, tmp_path, f"base{seed}", _redrawn(2 * seed))
        head = _saved_run(saved_run, tmp_path, f"head{seed}", _redrawn(2 * seed + 1))
        result = regress(base, head)
        assert result.warnings == [] and len(result.rows) == 15
        assert not result.regressed, result.table()
        assert {row["timing"] for row in result.rows} <= {"no change", "inconclusive"}
    assert main(["regress", base, head]) == 0


@pytest.mark.parametrize("how", ["failed", "crashed", "timeout", "skipped"])
def test_a_benchmark_head_could_not_measure_is_a_regression(how, saved_run, tmp_path):
    """Base measured `remat`; head failed its check, crashed, timed out or ran out of memory on it."""
    base = _saved_run(saved_run, tmp_path, "base")
    remat = _bench(saved_run["results"], "remat")["extra_info"]

    def head_change(data):
        data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"]["case_id"] != remat["case_id"]]
        data["jaxbench"][how][remat["case_id"]] = "out of memory on it: RESOURCE_EXHAUSTED"

    head = _saved_run(saved_run, tmp_path, "head", head_change)
    result = regress(base, head)
    row = next(row for row in result.rows if row["benchmark"] == benchmark_name(remat))
    assert row["verdict"] == "regression" and row["exact"] == f"head {how}: out of memory on it: RESOURCE_EXHAUSTED"
    assert result.only_base == [] and main(["regress", base, head]) == 1


def _steady(variant):
    """Replaces `variant`'s timed rounds by 30 of known spread (3%) about its median, so that what
    a test asserts of its verdict does not hang on how noisy the host was when saved_run ran (a
    busy CI host spread jit_vmap's 16 real rounds by 2.5x)."""
    def change(data):
        stats = _bench(data, variant)["stats"]
        stats["data"] = list(stats["median"] * np.exp(np.random.default_rng(2).normal(0, 0.03, 30)))
    return change


def test_regress_flags_a_slower_step_and_a_grown_memory(saved_run, tmp_path, capsys):
    base = _saved_run(saved_run, tmp_path, "base", _steady("jit_vmap"))

    def head_change(data):
        _steady("jit_vmap")(data)
        _slower("jit_vmap", 3.0)(data)
        _bench(data, "remat")["extra_info"]["mem_bytes"] *= 1.02
        data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"]["variant"] != "accumulation"]
        data["jaxbench"]["jax_version"] = "0.12.0"

    head = _saved_run(saved_run, tmp_path, "head", head_change)
    out = tmp_path / "out"
    status = main(["regress", base, head, "--markdown", str(out / "s.md"), "--json", str(out / "v.json"),
                   "--chart", str(out / "r.png")])
    assert status == 1
    verdicts = json.loads((out / "v.json").read_text())
    by_name = {row["benchmark"]: row for row in verdicts["benchmarks"]}
    jit_vmap = by_name[benchmark_name(_bench(saved_run["results"], "jit_vmap")["extra_info"])]
    assert jit_vmap["verdict"] == "regression" and jit_vmap["low"] > 2
    remat = by_name[benchmark_name(_bench(saved_run["results"], "remat")["extra_info"])]
    assert remat["verdict"] == "regression" and "per-device memory" in remat["exact"]
    assert verdicts["only_base"] == ["mlp-train-accumulation (tiny, 1 device)"]
    assert "jax_version 0.10" in verdicts["warnings"][0] or "jax_version 0.12" in verdicts["warnings"][0]
    summary = (out / "s.md").read_text()
    assert summary.startswith("## jaxbench: regression") and "Only in base" in summary
    assert (out / "r.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "regression" in printed and "only in base (not compared): mlp-train-accumulation" in printed


@pytest.mark.parametrize("bad", ["missing", "other-suite"])
def test_regress_bad_input_is_one_line_and_exit_2(bad, saved_run, tmp_path, capsys):
    base = _saved_run(saved_run, tmp_path, "base")
    other = tmp_path / "other.json"
    if bad == "other-suite":
        other.write_text(json.dumps({"benchmarks": [{"name": "x", "stats": {}}]}))
    assert main(["regress", base, str(other)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("jaxbench regress: error:") and error.count("\n") == 1


def test_export_for_the_github_benchmark_action(saved_run, tmp_path):
    base = _saved_run(saved_run, tmp_path, "base")
    out = tmp_path / "gab.json"
    assert main(["export", base, "--format", "github-action-benchmark", "--out", str(out)]) == 0
    entries = json.loads(out.read_text())
    assert all({"name", "unit", "value"} <= entry.keys() for entry in entries)
    assert all(isinstance(entry["value"], float) and entry["value"] > 0 for entry in entries)
    times = [e for e in entries if e["unit"] == "ms"]
    assert len(times) == 15 and len({e["name"] for e in entries}) == len(entries)
    jit_vmap = _bench(saved_run["results"], "jit_vmap")
    name = benchmark_name(jit_vmap["extra_info"]) + " step time"
    assert next(e["value"] for e in times if e["name"] == name) == pytest.approx(jit_vmap["stats"]["median"] * 1e3)


def _history(saved_run, folder, runs: int = 24):
    """A synthetic history of `runs` saved runs (3% noise on every median), files named in an
    order unlike their commit dates: jit_vmap's train step 25% slower for good from run 12 on,
    remat's memory 2% larger from run 18 on (its program with two copies more), and one run where
    every benchmark is 1.6x slower."""
    rng = np.random.default_rng(5)
    for i in rng.permutation(runs):
        def change(data, i=int(i)):
            data["commit_info"] = {"id": f"c{i:03d}" + "0" * 37, "time": f"2026-11-{1 + i:02d}T12:00:00+00:00"}
            for bench in data["benchmarks"]:
                info, factor = bench["extra_info"], float(np.exp(rng.normal(0, 0.03)))
                if info["variant"] == "jit_vmap" and info["mode"] == "train" and i >= 12:
                    factor *= 1.25
                if i == 7:
                    factor *= 1.6  # a noisy job
                bench["stats"]["median"] *= factor
                if info["variant"] == "remat" and info["mode"] == "train" and i >= 18:
                    info["mem_bytes"] = int(info["mem_bytes"] * 1.02)
                    ops = info["program"]["ops"]
                    info["program"] = {**info["program"], "fingerprint": "f" * 16,
                                       "ops": {**ops, "copy": ops.get("copy", 0) + 2}}  # two copies more
        _saved_run(saved_run, folder, f"run-{i}", change)


def test_trend_finds_the_planted_steps_and_only_them(saved_run, tmp_path):
    from jaxbench.reports.trend import find_changes, history

    _history(saved_run, tmp_path)
    frame = history([tmp_path / f"run-{i}.json" for i in range(24)])
    assert frame.groupby("benchmark")["commit"].apply(list).map(lambda c: c == sorted(c)).all()  # by date
    changes = find_changes(frame)
    found = {(c.benchmark, c.figure, c.before_commit, c.after_commit) for c in changes}
    assert found == {("mlp-train-jit_vmap (tiny, 1 device)", "median_s", "c011000000", "c012000000"),
                     ("mlp-train-remat (tiny, 1 device)", "mem_bytes", "c017000000", "c018000000")}
    step = next(c for c in changes if c.figure == "median_s")
    assert 0.18 < step.step < 0.32  # the planted 25%
    # what changed in the compiled program between the two runs beside each change point
    assert step.program == "same program"
    assert next(c for c in changes if c.figure == "mem_bytes").program == "copy +2"


def test_trend_command_reads_folders(saved_run, tmp_path):
    runs = tmp_path / "runs"
    for i in range(24):
        (runs / f"job-{i}").mkdir(parents=True)
    _history(saved_run, runs)
    for i in range(24):  # each run in a folder of its own, as CI artifacts come
        (runs / f"run-{i}.json").rename(runs / f"job-{i}" / "results.json")
    assert main(["trend", str(runs), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "trend.md").read_text()
    assert "over 24 runs" in text and "c011000000 -> c012000000" in text and "+2" in text
    assert "same program" in text and "copy +2" in text
    assert (tmp_path / "out" / "trend.png").stat().st_size > 0
    page = (tmp_path / "out" / "trend.html").read_text()  # the same, as one page with the chart inside
    assert "over 24 runs" in page and "c011000000 -&gt; c012000000" in page and 'src="data:image/png;base64,' in page
    assert main(["trend", str(tmp_path / "empty"), "--out", str(tmp_path / "o2")]) == 2


@pytest.mark.parametrize(("args", "message"), [
    (["regress", "a.json", "b.json", "--threshold", "2"], "argument --threshold: '2' is not a share between 0 and 1"),
    (["ab", "--base", "HEAD", "--workers", "0"], "argument --workers: '0' is not a whole number >= 1"),
    (["ab", "--base", "HEAD", "--block-time", "-1"], "argument --block-time: '-1' is not a number of seconds > 0"),
    (["trend", "runs", "--out", "o", "--min-step", "x"], "argument --min-step: 'x' is not a share between 0 and 1"),
    (["export", "r.json", "--format", "csv", "--out", "o"], "argument --format: invalid choice: 'csv'"),
])
def test_bad_option_values_are_a_usage_error(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_regress_defaults_to_the_threshold_the_docs_give():
    """Between jobs the machine itself moves (measured: 5 of 183 unchanged comparisons over 15%,
    4 over 25%), so regress's default is the docs' 25% (docs/regressions.md), not ab's within-job one."""
    assert regress_module.DEFAULT_THRESHOLD == 0.25
    assert "Its default threshold is 25%" in (ROOT / "docs" / "regressions.md").read_text()
    assert build_parser().parse_args(["regress", "a.json", "b.json"]).threshold == 0.25


def test_bytes_a_backend_does_not_count_are_unknown_and_left_out_of_the_exact_gate():
    from types import SimpleNamespace

    from jaxbench.workloads.compat import cost_analysis

    silent = SimpleNamespace(cost_analysis=lambda: {"flops": 10.0})
    assert cost_analysis(silent) == {"flops": 10.0, "bytes_accessed": None}  # unknown, not 0
    counted = SimpleNamespace(cost_analysis=lambda: {"flops": 10.0, "bytes accessed": 64.0})
    assert cost_analysis(counted) == {"flops": 10.0, "bytes_accessed": 64.0}
    base = {"xla_flops": 10.0, "xla_bytes_accessed": 64.0, "mem_bytes": 100}
    head = {"xla_flops": 10.0, "xla_bytes_accessed": None, "mem_bytes": 100}
    assert exact_changes(base, head) == []  # nothing known to compare, so no verdict from it


def test_a_hidden_host_name_is_not_a_difference_and_hosts_keep_who_shared_one():
    from jaxbench.reports.results import HIDDEN_HOST, SUITE, hidden_hosts

    def run(node):
        return {"machine_info": {"node": node}, SUITE: {}}

    assert regress_module.environment_differences(run("a"), run("b")) == ["host a vs b"]
    assert regress_module.environment_differences(run(HIDDEN_HOST), run("b")) == []  # unknown, not different
    assert hidden_hosts(["gpu-7.corp", "gpu-9.corp", "gpu-7.corp"]) == ["host-1", "host-2", "host-1"]
