"""`jaxbench build`: a report folder from one or more results files.

The folder holds summary.csv/.md, expectations.csv/.md, the charts and report.md, which puts
the environment, the headline findings, both tables and the charts on one page.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from jaxbench.reports.charts import draw_all
from jaxbench.reports.expectations import expectations_markdown, expectations_shown, expectations_table
from jaxbench.reports.glance import glance_table, headline_findings
from jaxbench.reports.html import write_html
from jaxbench.reports.reference import reference_section_text
from jaxbench.reports.results import FAILURES, NOT_MEASURED, SUITE, device_set, load_results
from jaxbench.reports.scaling import scaling_chart, scaling_table
from jaxbench.reports.sections import Section, section_markdown
from jaxbench.reports.summary import summary_table, to_markdown
from jaxbench.reports.workflows import workflow_findings, workflow_tables


def missing_benchmarks(data: dict) -> list[str]:
    """Benchmarks the run planned but neither measured nor skipped (an interrupted or failed run)."""
    suite = data[SUITE]
    measured = {b["extra_info"]["case_id"] for b in data["benchmarks"] if "case_id" in b.get("extra_info", {})}
    accounted = measured.union(*(suite.get(outcome, {}) for outcome in NOT_MEASURED))
    return [case for case in suite.get("planned", []) if case not in accounted]


def profile_links(runs: list[dict], labels: list[str]) -> list[tuple[str, str]]:
    """(benchmark, its trace's address) of each profiled benchmark (`--profile`), labelled with its
    run where there are several."""
    return [(b["extra_info"]["case_id"] + (f" ({label})" if len(runs) > 1 else ""), b["extra_info"]["profile"])
            for data, label in zip(runs, labels) for b in data["benchmarks"] if b["extra_info"].get("profile")]


def run_labels(runs: list[dict]) -> list[str]:
    """Each run's label in a report: `run 1`, `run 2`, ... (the environment table's columns)."""
    return [f"run {index}" for index, _ in enumerate(runs, 1)]


def _shown(table: pd.DataFrame, n_runs: int) -> pd.DataFrame:
    """`table` for reading: without its `run` column when it holds one run only."""
    return table.drop(columns="run") if n_runs == 1 else table


def environment_table(runs: list[dict]) -> pd.DataFrame:
    """One column per run: versions, platform, devices, CPU, XLA flags, matmul rates, commit, date."""
    columns = {}
    for label, data in zip(run_labels(runs), runs):
        env, machine, commit = data[SUITE], data.get("machine_info", {}), data.get("commit_info", {})
        rates = env.get("matmul_rates") or {}
        columns[label] = {
            "JAX / jaxlib": f"{env.get('jax_version')} / {env.get('jaxlib_version')}",
            "Flax / Optax": f"{env.get('flax_version')} / {env.get('optax_version')}",
            "Python": env.get("python_version"),
            "devices": device_set(data),
            "CPU": machine.get("cpu", {}).get("brand_raw") or env.get("cpu_model"),
            "host": machine.get("node"),
            "XLA flags": env.get("xla_flags") or "(none)",
            "float32 matmuls run in": env.get("float32_matmul_arithmetic"),
            "in-run matmul rate": ", ".join(f"{dtype} {rate / 1e9:.4g} GFLOP/s" for dtype, rate in rates.items()),
            "git commit": (commit.get("id") or "?")[:12] + (" (dirty)" if commit.get("dirty") else ""),
            "date": data.get("datetime"),
        }
    return pd.DataFrame(columns)


def build_report(results: list[str | Path], out: str | Path) -> Path:
    """Write the report folder `out` for the results files; returns the path of report.md.

    Raises `reports.results.ResultsError` (naming the file) for a file that is not this suite's.
    """
    runs = [load_results(path) for path in results]
    labels = run_labels(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = pd.concat([summary_table(data, label) for data, label in zip(runs, labels)], ignore_index=True)
    expectations = pd.concat([expectations_table(data, label) for data, label in zip(runs, labels)],
                             ignore_index=True)
    summary.to_csv(out / "summary.csv", index=False)
    summary_md = to_markdown(_shown(summary.drop(columns="kind"), len(runs)))
    (out / "summary.md").write_text(summary_md)
    expectations.to_csv(out / "expectations.csv", index=False)
    expectations_md = (expectations_markdown(_shown(expectations, len(runs))) if len(expectations)
                       else "No expectation has data.\n")
    (out / "expectations.md").write_text(expectations_md)
    scaling = pd.concat([scaling_table(data, label) for data, label in zip(runs, labels)], ignore_index=True)
    charts = draw_all(summary, out, expectations)
    if not scaling.empty:
        scaling.to_csv(out / "scaling.csv", index=False)
        charts += [path for path in [scaling_chart(scaling, out / "scaling.png")] if path]

    not_measured = {outcome: {case: reason for data in runs for case, reason in data[SUITE].get(outcome, {}).items()}
                    for outcome in NOT_MEASURED}
    findings = headline_findings(summary, expectations, not_measured,
                                 [line for data in runs for line in workflow_findings(data)])
    glance = glance_table(summary, expectations)
    sections = [
        Section("At a glance", "Each variant's figure that the quoted tables judge, with the verdict (`met`, "
                "`below`, `above`; the reasons are in Expectations); its speedup over the eager baseline where "
                "no claim judges it.", tables=[("", glance)] if len(glance) else []),
        Section("Headline findings", items=findings),
        Section("Summary", "MFU: against the in-run matmul rate of the row's compute dtype; MFU (datasheet): "
                "against the device's datasheet peak, where the device is known.",
                tables=[("", _shown(summary.drop(columns="kind"), len(runs)))]),
        Section("Expectations", "" if len(expectations) else "No expectation has data.",
                tables=expectations_shown(_shown(expectations, len(runs))) if len(expectations) else []),
        Section("Environment", tables=[("", environment_table(runs))], index=True),
    ]
    if len(runs) == 1:
        text, against = reference_section_text(runs[0])
        sections.append(Section("Against the reference run", text, tables=[("", against)] if len(against) else []))
    missing = [case for data in runs for case in missing_benchmarks(data)]
    if missing:
        sections.append(Section("Missing", "The run planned these benchmarks but has no result for them "
                                "(interrupted, failed or out of memory): " + ", ".join(missing) + "."))
    failed = [f"{case}" + (f" ({status})" if status != "failed" else "") + f": {reason}"
              for status in FAILURES for case, reason in not_measured[status].items()]
    if failed:
        sections.append(Section("Failed", "These benchmarks have no timing: they failed, most often their check "
                                "against baseline, or (with `--isolate`) their process crashed or ran past "
                                "`--benchmark-timeout`:", items=failed))
    traces = profile_links(runs, labels)
    if traces:
        sections.append(Section("Profiles", "Each benchmark's steps traced after its timed rounds (`--profile`); "
                                "the summary's `% op time` columns say where their XLA op time went. Open a "
                                "`perfetto_trace.json.gz` at https://ui.perfetto.dev (Open trace file), or its "
                                "folder with TensorBoard's profile plugin (`tensorboard --logdir FOLDER`).",
                                links=traces))
    if not_measured["skipped"]:
        sections.append(Section("Skipped", items=[f"{case}: {reason}" for case, reason in
                                                  not_measured["skipped"].items()]))
    if not scaling.empty:
        shared = (" The devices here are virtual CPU devices sharing the host's cores: the curve shows the "
                  "overhead of partitioning, not a speedup." if scaling["shared cores"].any() else "")
        sections.append(Section("Scaling", "Each workload's `jit_vmap` train step over 1, 2, 4, ... devices "
                                "(`--scaling`): `strong` keeps the global batch, `weak` the batch per device. "
                                "Efficiency: throughput over devices x the sweep's one-device throughput (1 is "
                                "ideal)." + shared,
                                tables=[("", _shown(scaling.drop(columns=["shared cores", "host cores"]), len(runs)))]))
    tables = [(name if len(runs) == 1 else f"{name} ({label})", table)
              for data, label in zip(runs, labels) for name, table in workflow_tables(data).items()]
    if tables:
        sections.append(Section("Workflows", "Each workflow's own figures, medians over its timed runs "
                                "(`check:` columns: the worst figure of its correctness check).", tables=tables))
    sections.append(Section("Charts", charts=charts))
    write_html(sections, out / "report.html")
    report = out / "report.md"
    report.write_text("# jaxbench report\n\n" + "\n".join(map(section_markdown, sections)))
    return report

