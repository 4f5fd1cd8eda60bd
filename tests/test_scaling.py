"""Scaling sweeps (`pytest bench --scaling`): each point checked, measured in one process, and
drawn against the ideal (bench/cases.py, reports/scaling.py)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.cases import device_counts
from tests.conftest import FAST_TIMING, run_pytest


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory) -> dict:
    """`pytest bench --workloads mlp --size tiny --scaling both` with 8 virtual CPU devices."""
    folder = tmp_path_factory.mktemp("sweep")
    proc = run_pytest("bench", "--workloads", "mlp", "--size", "tiny", "--modes", "train", "--variants", "jit_vmap",
                      "--scaling", "both", "--report-dir", str(folder), "-q", *FAST_TIMING)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"dir": folder, "results": json.loads((folder / "results.json").read_text()), "proc": proc}


def test_device_counts_double_up_to_all():
    assert device_counts(8) == [1, 2, 4, 8]
    assert device_counts(6) == [1, 2, 4, 6]
    assert device_counts(1) == [1]


@pytest.mark.slow
def test_every_point_is_checked_and_measured_in_one_process(sweep_run):
    points = {b["extra_info"]["case_id"]: b["extra_info"] for b in sweep_run["results"]["benchmarks"]
              if b["extra_info"]["scaling"]}
    assert sorted(points) == sorted(f"mlp-train-jit_vmap-{kind}-{n}"
                                    for kind in ("strong", "weak") for n in (1, 2, 4, 8))
    for case_id, info in points.items():
        n = int(case_id.rsplit("-", 1)[1])
        assert info["n_devices"] == n and info["n_devices_in_process"] == 8  # all points in the one worker
        # strong keeps the global batch (8 at tiny), weak the per-device batch
        assert info["batch_size"] == (8 if info["scaling"] == "strong" else 8 * n)
        assert info["max_rel_error"] < 1e-5  # each point matches the single-device result


@pytest.mark.slow
def test_the_report_has_the_sweeps_table_and_chart(sweep_run):
    table = pd.read_csv(sweep_run["dir"] / "scaling.csv")
    assert len(table) == 8
    for _, sweep in table.groupby("sweep"):
        one = sweep.loc[sweep["devices"] == 1, "items/s"].iloc[0]
        assert sweep["efficiency"].tolist() == pytest.approx((sweep["items/s"] / (sweep["devices"] * one)).tolist())
    bench = {b["extra_info"]["case_id"]: b for b in sweep_run["results"]["benchmarks"]}
    weak8 = table.query("sweep == 'weak' and devices == 8").iloc[0]
    assert weak8["items/s"] == pytest.approx(64 / bench["mlp-train-jit_vmap-weak-8"]["stats"]["median"])
    assert (sweep_run["dir"] / "scaling.png").stat().st_size > 0
    report = (sweep_run["dir"] / "report.md").read_text()
    assert "## Scaling" in report and "virtual CPU devices sharing the host's cores" in report
    # The sweep's points stay out of the summary and the expectations, which hold the variants.
    summary = pd.read_csv(sweep_run["dir"] / "summary.csv")
    assert summary["variant"].tolist() == ["jit_vmap"]


@pytest.mark.slow
def test_each_point_has_its_collectives_share_where_a_profile_tells_it(sweep_run):
    from reports.scaling import COLLECTIVES_NOT_MEASURED, scaling_table

    data = json.loads(json.dumps(sweep_run["results"]))
    assert (scaling_table(data)["collectives share"] == COLLECTIVES_NOT_MEASURED).all()  # run without --profile
    for b in data["benchmarks"]:  # as `--profile` records them (tests/test_profile.py runs it)
        n = b["extra_info"]["n_devices"]
        b["extra_info"]["op_shares"] = {"collectives": 0.1 * n, "matmul/conv": 1 - 0.1 * n, "copies": 0.0,
                                        "elementwise": 0.0}
    table = scaling_table(data)
    assert table.set_index(["sweep", "devices"]).loc[("strong", 4), "collectives share"] == "40% of op time"
