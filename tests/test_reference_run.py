"""A run against the committed reference run of its kind of device (`reports/reference.py`,
`jaxbench compare --reference`, the report's "Against the reference run")."""

from __future__ import annotations

import copy
import json

import pytest

from jaxbench.bench.cli import main
from jaxbench.reports.reference import (
    REFERENCE_RUNS,
    SPEED,
    device_kind_of,
    reference_runs,
    reference_section_text,
    reference_table,
)
from jaxbench.reports.results import SUITE, load_results

pytestmark = pytest.mark.version_independent  # results files only


def slowed(data: dict, factor: float) -> dict:
    """`data` with every median `factor` times longer."""
    data = copy.deepcopy(data)
    for bench in data["benchmarks"]:
        bench["stats"]["median"] *= factor
    return data


def with_spread(data: dict, share: float) -> dict:
    """`data` with every benchmark's IQR `share` of its median."""
    data = copy.deepcopy(data)
    for bench in data["benchmarks"]:
        bench["stats"]["iqr"] = share * bench["stats"]["median"]
    return data


def reference_folder(tmp_path, data: dict, name: str = "cpu-run") -> str:
    (tmp_path / "refs" / name).mkdir(parents=True)
    (tmp_path / "refs" / name / "results.json").write_text(json.dumps(data))
    return str(tmp_path / "refs")


def test_the_kind_of_device_is_the_accelerator_or_the_cpus_model_and_cores(saved_run):
    data = copy.deepcopy(saved_run["results"])
    data["machine_info"]["cpu"] = {"brand_raw": "AMD EPYC"}
    data[SUITE] |= {"platform": "cpu", "host_cores": 2}
    assert device_kind_of(data) == "cpu: AMD EPYC, 2 cores"
    data[SUITE] |= {"platform": "gpu", "device_kind": "NVIDIA H100 80GB HBM3"}
    assert device_kind_of(data) == "gpu: NVIDIA H100 80GB HBM3"


def test_a_run_slower_than_its_reference_is_flagged_and_the_machine_named(saved_run, tmp_path):
    reference = with_spread(saved_run["results"], 0.01)
    reference_folder(tmp_path, reference)
    text, table = reference_section_text(slowed(reference, 1.6), tmp_path / "refs")
    assert len(table) == 15 and table[SPEED].tolist() == pytest.approx([1 / 1.6] * 15)
    assert table["far outside"].all()
    assert "at 0.62x the reference's speed" in text and "15 of them are far outside" in text
    assert "check the machine before the code" in text
    # inside the band (25%): nothing flagged
    text, table = reference_section_text(slowed(reference, 1.05), tmp_path / "refs")
    assert not table["far outside"].any() and "at 0.95x" in text and "0 of them" in text


def test_a_reference_whose_rounds_spread_wide_flags_only_what_is_outside_its_spread(saved_run, tmp_path):
    reference_folder(tmp_path, with_spread(saved_run["results"], 0.3))  # band: 3 x 30%
    assert not reference_section_text(slowed(saved_run["results"], 1.6), tmp_path / "refs")[1]["far outside"].any()
    assert reference_section_text(slowed(saved_run["results"], 2.0), tmp_path / "refs")[1]["far outside"].all()


def test_without_a_reference_of_its_kind_it_says_so_and_which_kinds_there_are(saved_run, tmp_path):
    reference_folder(tmp_path, saved_run["results"])
    gpu = copy.deepcopy(saved_run["results"])
    gpu[SUITE] |= {"platform": "gpu", "device_kind": "NVIDIA H200"}
    text, table = reference_section_text(gpu, tmp_path / "refs")
    assert table.empty
    assert text == f"No reference run of gpu: NVIDIA H200 under {tmp_path / 'refs'} (there are: " \
                   f"{device_kind_of(saved_run['results'])})."


def test_the_newest_reference_of_a_kind_is_used(saved_run, tmp_path):
    old = copy.deepcopy(saved_run["results"]) | {"datetime": "2020-01-01T00:00:00"}
    reference_folder(tmp_path, old, "old")
    reference_folder(tmp_path, saved_run["results"], "new")
    assert [path.parent.name for path in reference_runs(tmp_path / "refs").values()] == ["new"]


def test_compare_reference_writes_the_comparison_and_takes_one_run(saved_run, tmp_path, capsys):
    folder = reference_folder(tmp_path, saved_run["results"])
    run = tmp_path / "run.json"
    run.write_text(json.dumps(slowed(saved_run["results"], 2.0)))
    assert main(["compare", str(run), "--reference", folder, "--out", str(tmp_path / "out")]) == 0
    assert "at 0.50x the reference's speed" in capsys.readouterr().out
    markdown = (tmp_path / "out" / "reference.md").read_text()
    assert "0.50x" in markdown and "| mlp " in markdown
    assert main(["compare", str(run), str(run), "--reference", folder, "--out", str(tmp_path / "o2")]) == 2
    assert "compare --reference holds one run against its reference; 2 results files given" in capsys.readouterr().err


def test_the_committed_cpu_reference_holds_a_run_of_its_kind(tmp_path):
    """The committed reference run of a 2-core CPU (docs/reference-runs/) is found for a run of its
    kind, and a run of that kind 1.6x slower reads 0.62x of it, from the default folder."""
    runs = reference_runs()
    cpu = [kind for kind in runs if kind.startswith("cpu: ") and kind.endswith(", 2 cores")]
    assert cpu, f"no 2-core CPU reference run under {REFERENCE_RUNS}"
    reference = load_results(runs[cpu[0]])
    text, table = reference_section_text(slowed(reference, 1.6))
    assert len(table) > 40 and table[SPEED].median() == pytest.approx(1 / 1.6)
    assert "at 0.62x" in text
    assert (reference_table(reference, reference)[SPEED] == 1).all()


def test_the_report_of_a_single_run_has_the_reference_section(saved_run):
    """The tiny saved run, at a size no reference run has: its report says so, or that there is no
    reference of this host's kind (on a CI machine of another CPU)."""
    report = (saved_run["dir"] / "report.md").read_text()
    text, table = reference_section_text(saved_run["results"])
    assert table.empty and f"## Against the reference run\n\n{text}" in report
    assert text.startswith(("No reference run of cpu: ", "The reference run of cpu: "))
