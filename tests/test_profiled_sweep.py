"""One real run read by the tests of `--scaling`, `--profile` and `--save-hlo`: each sweep point
checked and measured in one process and drawn against the ideal (bench/cases.py,
reports/scaling.py); a trace per benchmark after its timed rounds, linked from the report, and
where the op time went (`reports.profiles`); each compiled step's HLO text, in the worker too. One
run serves them all because each costs a worker of several devices."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from jaxbench.reports.profiles import SHARE_CATEGORIES
from jaxbench.reports.summary import summary_table
from tests.conftest import FAST_TIMING, run_pytest

# Every test here reads a real run. The JAX version's profiler and op names are tested on every
# Python by tests/test_profile.py; how a run sweeps, traces and reports does not change with it.
pytestmark = [pytest.mark.slow, pytest.mark.version_independent]


@pytest.fixture(scope="module")
def profiled_run(tmp_path_factory) -> dict:
    """`pytest bench --workloads mlp --size tiny --modes train --variants vmap,jit_vmap,multi_device
    --scaling both --profile --save-hlo --cpu-devices 4` (the sweeps' points and the multi-device rows in one
    worker of 4 virtual CPU devices: a sweep of three points, 1, 2 and 4). `vmap` is the eager variant
    profiled: the eager `baseline`'s per-example loop would add a trace of thousands of dispatches, and
    half the run's time, for no other path."""
    report_dir = tmp_path_factory.mktemp("profiled")
    proc = run_pytest("bench", "--workloads", "mlp", "--size", "tiny", "--modes", "train", "--variants",
                      "vmap,jit_vmap,multi_device", "--scaling", "both", "--profile", "--save-hlo",
                      "--cpu-devices", "4", "--report-dir", str(report_dir), "-q", *FAST_TIMING, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"dir": report_dir, "results": json.loads((report_dir / "results.json").read_text()), "proc": proc}


POINTS = sorted(f"mlp-train-jit_vmap-{kind}-{n}" for kind in ("strong", "weak") for n in (1, 2, 4))
VARIANT_ROWS = ["mlp-train-vmap", "mlp-train-jit_vmap", "mlp-train-multi_device", "mlp-train-multi_device-fsdp"]


def test_every_point_is_checked_and_measured_in_one_process(profiled_run):
    points = {b["extra_info"]["case_id"]: b["extra_info"] for b in profiled_run["results"]["benchmarks"]
              if b["extra_info"]["scaling"]}
    assert sorted(points) == POINTS
    for case_id, info in points.items():
        n = int(case_id.rsplit("-", 1)[1])
        assert info["n_devices"] == n and info["n_devices_in_process"] == 4  # all points in the one worker
        # strong keeps the global batch (8 at tiny), weak the per-device batch
        assert info["batch_size"] == (8 if info["scaling"] == "strong" else 8 * n)
        assert info["max_rel_error"] < 1e-5  # each point matches the single-device result
        # a run under the tests' shared cache (JAXBENCH_COMPILE_CACHE) calls no compile figure cold
        assert info["compile_cached_s"] is None and info["compile_cache"].endswith("not a cold compile")


def test_the_report_has_the_sweeps_table_and_chart(profiled_run):
    table = pd.read_csv(profiled_run["dir"] / "scaling.csv")
    assert len(table) == 6
    for _, sweep in table.groupby("sweep"):
        one = sweep.loc[sweep["devices"] == 1, "items/s"].iloc[0]
        assert sweep["efficiency"].tolist() == pytest.approx((sweep["items/s"] / (sweep["devices"] * one)).tolist())
    bench = {b["extra_info"]["case_id"]: b for b in profiled_run["results"]["benchmarks"]}
    weak4 = table.query("sweep == 'weak' and devices == 4").iloc[0]
    assert weak4["items/s"] == pytest.approx(32 / bench["mlp-train-jit_vmap-weak-4"]["stats"]["median"])
    assert (profiled_run["dir"] / "scaling.png").stat().st_size > 0
    report = (profiled_run["dir"] / "report.md").read_text()
    assert "## Scaling" in report and "virtual CPU devices sharing the host's cores" in report
    # The sweep's points stay out of the summary and the expectations, which hold the variants.
    summary = pd.read_csv(profiled_run["dir"] / "summary.csv")
    assert summary["variant"].tolist() == ["vmap", "jit_vmap", "multi_device", "multi_device-fsdp"]


def test_each_point_has_its_collectives_share_from_its_profile(profiled_run):
    from jaxbench.reports.scaling import COLLECTIVES_NOT_MEASURED, scaling_table

    table = scaling_table(profiled_run["results"]).set_index(["sweep", "devices"])
    shares = {b["extra_info"]["case_id"]: b["extra_info"]["op_shares"]["collectives"]
              for b in profiled_run["results"]["benchmarks"] if b["extra_info"]["scaling"]}
    assert shares["mlp-train-jit_vmap-strong-1"] == 0 and shares["mlp-train-jit_vmap-strong-4"] > 0
    assert table.loc[("strong", 4), "collectives share"] == f"{shares['mlp-train-jit_vmap-strong-4']:.0%} of op time"
    data = json.loads(json.dumps(profiled_run["results"]))
    for b in data["benchmarks"]:  # as a run without --profile records them
        del b["extra_info"]["op_shares"]
    assert (scaling_table(data)["collectives share"] == COLLECTIVES_NOT_MEASURED).all()


def test_each_benchmark_has_a_trace_that_opens_and_its_op_time_shares(profiled_run):
    report_dir, rows = profiled_run["dir"], [b["extra_info"] for b in profiled_run["results"]["benchmarks"]]
    assert sorted(row["case_id"] for row in rows) == sorted(VARIANT_ROWS + POINTS)
    for row in rows:
        trace = report_dir / row["profile"]
        assert trace.name == "perfetto_trace.json.gz" and trace.is_relative_to(report_dir / "profiles" / row["case_id"])
        assert json.loads(gzip.open(trace).read())["traceEvents"]  # Perfetto's JSON format
        assert row["op_shares"] and sum(row["op_shares"].values()) == pytest.approx(1)
    by_case = {row["case_id"]: row["op_shares"] for row in rows}
    assert by_case["mlp-train-jit_vmap"]["matmul/conv"] > 0
    assert by_case["mlp-train-jit_vmap"]["collectives"] == 0  # one device: nothing to exchange
    assert by_case["mlp-train-multi_device"]["collectives"] > 0  # the gradients' reduction over 4 devices
    assert by_case["mlp-train-multi_device-fsdp"]["collectives"] > 0  # and the weights' gathering


def test_the_report_links_each_trace_and_says_how_to_open_it(profiled_run):
    report_dir, rows = profiled_run["dir"], [b["extra_info"] for b in profiled_run["results"]["benchmarks"]]
    report = (report_dir / "report.md").read_text()
    assert "## Profiles" in report and "https://ui.perfetto.dev" in report
    assert all(f"- [{row['case_id']}]({row['profile']})" in report for row in rows)
    html = (report_dir / "report.html").read_text()
    assert all(f'<a href="{row["profile"]}">{row["case_id"]}</a>' in html for row in rows)
    summary = summary_table(profiled_run["results"])
    assert all(f"{category} (% op time)" in summary for category in SHARE_CATEGORIES)


def test_save_hlo_keeps_each_compiled_steps_program_whose_summary_is_recorded(profiled_run):
    """--save-hlo: the text each compiled step's `program` summary was read from, in the worker's
    rows too; none for the eager `vmap`."""
    from jaxbench.workloads.program import program_summary

    for bench in profiled_run["results"]["benchmarks"]:
        info = bench["extra_info"]
        if info["variant"] == "vmap":
            assert info["hlo"] is None
            continue
        path = profiled_run["dir"] / info["hlo"]
        assert path.name == f"{info['case_id']}.hlo.txt"
        assert program_summary(path.read_text()) == info["program"]
