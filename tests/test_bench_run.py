"""A real tiny `pytest bench` run: what it writes is what the reports and CI tools read."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from tests.conftest import FAST_TIMING, ROOT

REQUIRED_KEYS = {
    "workload", "mode", "variant", "size", "batch_size", "n_devices", "platform", "device_kind",
    "compile_s", "mem_bytes", "mem_temp_bytes", "flops_per_step", "items_per_s", "peak_flops", "mfu",
    "jax_version",
}


def test_every_benchmark_has_the_contract_keys(tiny_run):
    benchmarks = tiny_run["results"]["benchmarks"]
    rows = {(b["extra_info"]["mode"], b["extra_info"]["variant"]) for b in benchmarks}
    assert len(benchmarks) == len(rows) == 14
    for bench in benchmarks:
        info = bench["extra_info"]
        assert REQUIRED_KEYS <= info.keys(), REQUIRED_KEYS - info.keys()
        assert info["workload"] == "mlp" and info["size"] == "tiny" and info["platform"] == "cpu"
        assert info["items_per_s"] == info["batch_size"] / bench["stats"]["median"]
        assert 0 < info["mfu"] < 1
        assert info["peak_flops"] > 1e8
        if info["variant"] in ("baseline", "vmap"):
            assert info["mem_bytes"] is None and info["compile_s"] is None
        else:
            assert info["mem_bytes"] > 0 and info["compile_s"] > 0
        assert info["n_devices"] == (8 if info["variant"] == "multi_device" else 1)


def test_results_keep_every_round_and_say_devices_share_cores(tiny_run):
    results = tiny_run["results"]
    for bench in results["benchmarks"]:
        data = bench["stats"]["data"]
        assert len(data) == bench["stats"]["rounds"] >= 2
        assert min(data) == bench["stats"]["min"]
    suite = results["jaxbench"]
    assert suite["suite"] == "jaxbench" and suite["n_devices_available"] == 8
    assert suite["devices_share_host_cores"] is True


def test_summary_has_a_row_per_benchmark(tiny_run):
    summary = (tiny_run["dir"] / "summary.md").read_text()
    lines = [line for line in summary.splitlines() if line.startswith("| mlp")]
    assert len(lines) == 14
    assert "speedup vs baseline" in summary
    assert {"report.md", "expectations.md", "summary.csv", "speedup.png"} <= {p.name for p in tiny_run["dir"].iterdir()}
    assert str(tiny_run["dir"]) in tiny_run["proc"].stdout


def test_interrupted_run_keeps_what_was_measured(tmp_path):
    """Ctrl-C part-way: results.json still holds every benchmark finished before it."""
    command = [sys.executable, "-m", "pytest", "bench", "--workloads", "mlp", "--size", "tiny",
               "--modes", "infer", "--variants", "jit_vmap,bf16,baseline", "--report-dir", str(tmp_path),
               "-q", *FAST_TIMING, "--benchmark-min-rounds=400"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    results = tmp_path / "results.json"
    deadline = time.monotonic() + 300
    while not results.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, output[-2000:]  # pytest's "interrupted"
    measured = json.loads(results.read_text())["benchmarks"]
    assert 1 <= len(measured) < 3
    assert "summary.md" in {p.name for p in tmp_path.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
