"""Shared fixtures of the suite's own tests: a real tiny `pytest bench` run, made once."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from jaxbench.bench.session import SHARED_COMPILE_CACHE
from jaxbench.workloads import compile_cache

ROOT = Path(__file__).resolve().parent.parent

# Under pytest-xdist (.ci/run's slow tier) this process has the variables that tell a pytest it is an
# xdist worker; a `pytest bench` started from a test would inherit them, and pytest-benchmark
# turns benchmarks off in an xdist worker. The processes the tests start are not workers.
for _name in [name for name in os.environ if name.startswith("PYTEST_XDIST_")]:
    del os.environ[_name]
FAST_TIMING = ["--benchmark-max-time=0.02", "--benchmark-min-rounds=2", "--long-step-rounds=2"]
"""The timing options of the runs the tests start: two timed rounds of every step, a long one's
(an eager loop, a workflow) included; the tests check what a run records, not its spread."""

# The tests compile thousands of programs, in this process and in every run it starts, and hold no
# compiled step's speed to a figure: XLA's CPU backend at optimisation level 0 compiles each faster
# (docs/measurements.md), and computes what each program says to float32 rounding, which is what the
# tests' checks allow. Two different programs that happen to round alike at the default level may not
# at level 0: a test that holds them to each other's rounding runs them at the default level
# (`default_optimisation`). Set before anything here makes an XLA backend, which reads XLA_FLAGS once;
# a level given in XLA_FLAGS stays.
QUICK_COMPILES = "--xla_backend_optimization_level=0"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), QUICK_COMPILES]))


def default_optimisation() -> dict:
    """This process's environment with XLA's default optimisation level, for a process of its own."""
    flags = os.environ.get("XLA_FLAGS", "").replace(QUICK_COMPILES, "").strip()
    return {**{name: value for name, value in os.environ.items() if name != "XLA_FLAGS"},
            **({"XLA_FLAGS": flags} if flags else {})}

# One persistent compilation cache for this session, its xdist workers and every run it starts
# (`bench.session.SHARED_COMPILE_CACHE`): most of a short run's time is compiling, eager operations
# included, and the same programs come up in test after test. Kept between sessions (JAX keys each
# entry by its program, JAX version and devices), so a second `pytest tests` starts warm. A test of the
# cleanup of a run's own cache folders starts its run with `fresh_compile_cache()`.
SHARED_CACHE = os.environ.setdefault(
    SHARED_COMPILE_CACHE, str(Path(tempfile.gettempdir()) / "jaxbench-tests-compile-cache"))
compile_cache.use_persistent_cache(Path(SHARED_CACHE))  # not `enable`: no step here is compiled twice


def run_config(**options) -> SimpleNamespace:
    """A stand-in for a `pytest bench` process's config, for the functions of `bench.session` that
    keep the run's state in it: an empty stash, and `options` (by dest) as its command line."""
    return SimpleNamespace(stash={}, getoption=lambda name, default=None: options.get(name, default))


def fresh_compile_cache() -> dict:
    """This process's environment without the shared compilation cache: a run started with it
    compiles cold, into a cache of its own, as a user's run does."""
    return {name: value for name, value in os.environ.items() if name != SHARED_COMPILE_CACHE}


def run_pytest(*args: str, timeout: float = 600, env: dict | None = None, **popen) -> subprocess.CompletedProcess:
    """`python -m pytest ARGS` in the project root, output captured (`env`: its environment,
    default this process's)."""
    env = {**(os.environ if env is None else env), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, **popen,
    )


def run_jaxbench(*args: str, cwd: Path = ROOT, env: dict | None = None,
                 timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m jaxbench ARGS` in `cwd` (`env`: added to this process's environment), this
    checkout first on the Python path, output captured."""
    env = {**os.environ, **(env or {}), "PYTHONDONTWRITEBYTECODE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "jaxbench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


DATA = ROOT / "tests" / "data"
SAVED_RUNS = {
    "tiny-mlp-run.json": ("bench", "--workloads", "mlp", "--size", "tiny"),
    "tiny-workflows-run.json": ("bench", "--workloads", "bayes,checkpoint,training_loop", "--size", "tiny"),
}
"""The results files in tests/data/ that the tests of reports, statistics and the gate read, and the
run each was written by (with `FAST_TIMING`; `test_saved_runs_have_the_schema_of_a_fresh_run` holds
them to a fresh run's). Write them again after a change of what a run records:
`python -m pytest <run> --report-dir DIR -q --benchmark-max-time=0.02 --benchmark-min-rounds=2`,
then copy DIR/results.json here."""


def _saved(name: str, folder: Path) -> dict:
    """Saved run `name` (`SAVED_RUNS`) copied into `folder` as results.json: {"dir", "results"}."""
    text = (DATA / name).read_text()
    (folder / "results.json").write_text(text)
    return {"dir": folder, "results": json.loads(text)}


@pytest.fixture(scope="session")
def saved_run(tmp_path_factory) -> dict:
    """The saved results of a tiny MLP run (`SAVED_RUNS`), with its report built beside them, as
    `pytest bench` builds it: {"dir": Path, "results": parsed results.json}."""
    from jaxbench.reports.build import build_report

    run = _saved("tiny-mlp-run.json", tmp_path_factory.mktemp("saved-run"))
    build_report([run["dir"] / "results.json"], run["dir"])
    return run


@pytest.fixture(scope="session")
def saved_workflow_run(tmp_path_factory) -> dict:
    """The saved results of a tiny run of the three workflows (`SAVED_RUNS`): {"dir", "results"}."""
    return _saved("tiny-workflows-run.json", tmp_path_factory.mktemp("saved-workflow-run"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    """`pytest bench --workloads mlp --size tiny --variants all` (the forward pass's `multi_device`
    too, as in the saved run of tests/data/) into a temporary report folder, compiling through
    the tests' shared cache. (A run's own cache and `--compile-cached`, each step's compilation
    timed cold then cached, are tested in process: tests/test_compile_cache.py.)

    Returns {"dir": Path, "results": parsed results.json, "proc": the finished process}.
    """
    report_dir = tmp_path_factory.mktemp("tiny-run")
    proc = run_pytest("bench", "--workloads", "mlp", "--size", "tiny", "--variants", "all", "--report-dir",
                      str(report_dir), "-q", *FAST_TIMING)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((report_dir / "results.json").read_text())
    return {"dir": report_dir, "results": results, "proc": proc}


@pytest.fixture(scope="session")
def workflow_run(tmp_path_factory) -> dict:
    """`pytest bench --workloads bayes,checkpoint,training_loop --size tiny --variants all` (every
    variant, the training loop's `sync` too), checkpoints into a folder of its own. Returns {"dir",
    "results", "proc", "checkpoint_dir"}."""
    report_dir = tmp_path_factory.mktemp("workflow-run")
    checkpoint_dir = tmp_path_factory.mktemp("workflow-checkpoints")
    proc = run_pytest("bench", "--workloads", "bayes,checkpoint,training_loop", "--size", "tiny", "--variants", "all",
                      "--report-dir", str(report_dir), "--checkpoint-dir", str(checkpoint_dir), "-q", *FAST_TIMING)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((report_dir / "results.json").read_text())
    return {"dir": report_dir, "results": results, "proc": proc, "checkpoint_dir": checkpoint_dir}


EXAMPLE_MODULE = ROOT / "examples" / "jaxbench-example" / "jaxbench_example" / "wide_mlp.py"
MS_STEP_SIZE = "Size(features=256, width=512, hidden=2000, num_blocks=1, batch_size=64)"
"""The example's `small` made a train step of some milliseconds whose time follows its matmuls
(one wide block, a modest batch): what the A/B tests of a package of workloads measure."""


def git(folder: Path, *args: str) -> str:
    """`git -C folder ARGS`'s output, as a fixed author."""
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}).stdout.strip()


def example_model(small: str = MS_STEP_SIZE) -> str:
    """The example's residual MLP module with `small` as its `small` size."""
    source = EXAMPLE_MODULE.read_text()
    given = 'Size(features=256, width=256, hidden=1024, num_blocks=2, batch_size=128)'
    assert given in source
    return source.replace(given, small)


def workload_history(folder: Path, commits: list[tuple[str, dict[str, str]]]) -> list[str]:
    """A throw-away git repository at `folder` of a package of workloads, `ab_pkg`: one commit per
    (message, {path: text}) written, in order, the first holding the example's residual MLP as
    `ab_pkg.model` at `MS_STEP_SIZE`. Returns the commits' hashes, oldest first."""
    first = {"ab_pkg/__init__.py": "", "ab_pkg/model.py": example_model()}
    git(folder, "init", "-q")
    hashes = []
    for index, (message, files) in enumerate(commits):
        for path, text in ({**first, **files} if index == 0 else files).items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_text(text)
        git(folder, "add", "-A")
        git(folder, "commit", "-q", "-m", message)
        hashes.append(git(folder, "rev-parse", "HEAD"))
    return hashes


class _OptionGroup:
    """What the plugin's `pytest_addoption` (`bench.plugin`) is handed, over a plain argparse parser."""

    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser

    def getgroup(self, *args, **kwargs):
        return self

    def addoption(self, *names, **kwargs):
        self.parser.add_argument(*names, **kwargs)


def option_parser() -> argparse.ArgumentParser:
    """`pytest bench`'s own options (`bench.plugin.pytest_addoption`) on a plain argparse parser
    that raises `argparse.ArgumentError` on a bad value: their types, defaults and help, tested
    without starting pytest."""
    from jaxbench.bench import plugin

    parser = argparse.ArgumentParser(prog="pytest bench", exit_on_error=False)
    plugin.pytest_addoption(_OptionGroup(parser))
    return parser


def xla_forward_flops(workload, size_name: str = "tiny", mode: str = "infer") -> float:
    """XLA's `cost_analysis()` FLOPs of `workload`'s forward-only `mode` (`infer` or `decode`) over
    its batch, stacked blocks and decoding loops unrolled (a scan's body would be counted once)."""
    import jax
    from flax import nnx

    from jaxbench.workloads.layers import configure_stacks

    size = workload.sizes[size_name]
    model = workload.build_model(size, nnx.Rngs(0))
    configure_stacks(model, scan=False, remat=False)
    inputs = workload.make_batch(size, jax.random.key(1))[0]
    graphdef, params = nnx.split(model)
    function = workload.example_function(mode)
    forward = jax.jit(jax.vmap(lambda p, x: function(nnx.merge(graphdef, p), x), in_axes=(None, 0)))
    cost = forward.lower(params, inputs).compile().cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)["flops"]


def xla_gradient_flops(workload, size_name: str = "tiny") -> float:
    """XLA's `cost_analysis()` FLOPs of the gradient of `workload`'s mean per-example loss over its
    batch (forward and backward, no optimizer update), stacked blocks unrolled."""
    import jax
    from flax import nnx

    from jaxbench.workloads.layers import configure_stacks

    size = workload.sizes[size_name]
    model = workload.build_model(size, nnx.Rngs(0))
    configure_stacks(model, scan=False, remat=False)
    inputs, targets = workload.make_batch(size, jax.random.key(1))
    graphdef, params = nnx.split(model)

    def mean_loss(p):
        losses = jax.vmap(lambda x, y: workload.example_loss(nnx.merge(graphdef, p), x, y))(inputs, targets)
        return losses.mean()

    cost = jax.jit(jax.grad(mean_loss)).lower(params).compile().cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)["flops"]


ON_EVERY_JAX = ("jit_vmap", "multi_device", "bf16")
"""The variants of a model's per-variant tests run on every JAX version: its layers compiled whole,
sharded, and in bfloat16. Each other variant's transformation is tested on every JAX on the MLP
(tests/test_variants.py, fast tier), and the model's layers are the same code under it."""


def once_per_jax_unless_compiled_or_sharded(*params):
    """`pytest.param(*params)`, marked `version_independent` unless its variant (the second) is one
    of `ON_EVERY_JAX`: CI runs it on the default Python only."""
    marks = () if params[1] in ON_EVERY_JAX else pytest.mark.version_independent
    return pytest.param(*params, marks=marks)


def assert_step_agrees(step, reference: dict, variant: str) -> dict:
    """Run `step` once and check it against `reference`; float32 variants to 1e-5 everywhere."""
    from jaxbench.bench.correctness import check_against_baseline

    step()
    errors = check_against_baseline(step.result(), reference, "bfloat16" if variant == "bf16" else "float32")
    if variant != "bf16":
        assert max(errors.values()) < 1e-5
    return errors


LONGEST_FIRST = ("test_reference.py", "test_distributed.py", "test_bisect.py", "test_workflows_run.py",
                 "test_bench_run.py", "test_transformer.py", "test_isolate.py", "test_outside_workloads.py",
                 "test_correctness.py", "test_bayes.py", "test_cnn.py", "test_hardware.py", "test_profiled_sweep.py",
                 "test_command.py", "test_ab.py", "test_options.py", "test_training_loop.py", "test_sharding.py")
"""The slow tier's files whose tests take longest together (half a minute or more of CI's
`--durations`, summed by file), longest first."""


def pytest_collection_modifyitems(config, items):
    """In a pytest-xdist worker (.ci/run's slow tier, `--dist loadfile --no-loadscope-reorder`),
    `LONGEST_FIRST`'s files first, the rest in collection order: the workers take files up in
    this order, so that the tier ends on short files, not on one long file while the other
    workers are done (xdist's own order, most tests first, left the workflows' run, of few tests and
    among the longest, to the end: docs/measurements.md)."""
    if hasattr(config, "workerinput"):
        rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
