"""Suite-wide command-line options and the set-up that must happen before JAX starts.

Loaded by every pytest run from the project root (`pytest bench` and `pytest tests`).
"""

from __future__ import annotations

import argparse
import os

from reports.arguments import names_type, number_type, unknown_names

DEFAULT_CPU_DEVICES = 8


def _size(text: str) -> str:
    from bench.hardware import AUTO_SIZE
    from workloads import SIZES

    error = unknown_names("size", (text,), (*SIZES, AUTO_SIZE))
    if error:
        raise argparse.ArgumentTypeError(error)
    return text


def _mesh(text: str):
    from workloads.sharding import parse_mesh

    try:
        return parse_mesh(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _scaling(text: str) -> tuple[str, ...]:
    from bench.cases import SCALING

    choices = (*SCALING, "both")
    error = unknown_names("scaling sweep", (text,), choices)
    if error:
        raise argparse.ArgumentTypeError(error)
    return SCALING if text == "both" else (text,)


def _whole_number(what: str) -> callable:
    """An argparse type: a whole number of `what` >= 1."""
    return number_type(int, lambda count: count >= 1, f"a whole number of {what} >= 1")


def pytest_addoption(parser):
    from bench.distributed import DEFAULT_TIMEOUT_S
    from bench.eager_baseline import DEFAULT_BUDGET_S as DEFAULT_BASELINE_BUDGET_S
    from bench.hardware import AUTO_SIZE
    from bench.process import add_worker_option
    from workloads import MODES, REGISTRY, WORKFLOW_VARIANTS
    from workloads.contract import SIZE_TARGETS
    from workloads.variants import VARIANTS

    variants = tuple(dict.fromkeys((*VARIANTS, *sum(WORKFLOW_VARIANTS.values(), ()))))

    group = parser.getgroup("jaxbench", "jaxbench: what to measure and where to write it")
    group.addoption("--workloads", type=names_type("workload", tuple(REGISTRY), check=False), default=None,
                    help=f"comma-separated workloads to run (default: all: {','.join(REGISTRY)}, and those "
                         "of --workload-module and of installed packages' jaxbench.workloads entry points)")
    group.addoption("--workload-module", action="append", default=[], metavar="MODULE",
                    help="a module of your own that defines WORKLOAD (a workloads.contract.Workload), "
                         "e.g. my_pkg.my_model; benchmarked like the suite's own (repeat for more)")
    group.addoption("--modes", type=names_type("mode", MODES), default=MODES,
                    help=f"comma-separated modes of the step workloads (default: {','.join(MODES)}); "
                         "a workflow (bayes, checkpoint, training_loop) has one mode and ignores it")
    group.addoption("--variants", type=names_type("variant", variants), default=variants,
                    help=f"comma-separated variants (default: all: {','.join(variants)}); the step "
                         f"workloads have {','.join(VARIANTS)}; "
                         + "; ".join(f"{name} has {','.join(names)}" for name, names in WORKFLOW_VARIANTS.items()))
    group.addoption("--size", type=_size, default=AUTO_SIZE,
                    help="size preset: " + "; ".join(f"{name} for {target.meant_for}"
                                                     for name, target in SIZE_TARGETS.items())
                         + f"; or {AUTO_SIZE} (default): small on a CPU, on a GPU or TPU the largest preset "
                           "whose steps fit its memory")
    group.addoption("--report-dir", default=None, metavar="DIR",
                    help="where results.json and summary.md go "
                         "(default: a new folder per run under reports/runs/, named by time and device)")
    group.addoption("--checkpoint-dir", default=None, metavar="DIR",
                    help="where checkpoint and training_loop write their checkpoints, one temporary "
                         "folder per benchmark, removed afterwards (default: the system's temporary folder)")
    group.addoption("--strict-expectations", action="store_true",
                    help="exit non-zero when any expectation row of the report is 'below'")
    group.addoption("--cpu-devices", type=_whole_number("devices"), default=DEFAULT_CPU_DEVICES, metavar="N",
                    help=f"virtual CPU devices for the multi-device benchmarks (default {DEFAULT_CPU_DEVICES}), "
                         "made in a worker process of their own so that single-device steps run in a "
                         "one-device process; they share the host's cores")
    group.addoption("--mesh", type=_mesh, default=None, metavar="data=D,model=M",
                    help="the (data, model) mesh of the multi-device benchmarks, e.g. data=4,model=2 (its "
                         "product must be their device count); every layout then runs on it, and one that "
                         "needs an axis of size 1 is skipped (default: each layout's own: data and fsdp all "
                         "devices on data, model all on model, data_model two on model)")
    group.addoption("--scaling", type=_scaling, default=None, metavar="strong|weak|both",
                    help="also sweep each workload's jit_vmap train step over 1, 2, 4, ... up to all devices: "
                         "strong keeps the global batch, weak the batch per device (default: no sweep)")
    group.addoption("--long-step-rounds", type=_whole_number("rounds"), default=3, metavar="N",
                    help="timed rounds of a step that takes half a second or more, such as an eager baseline "
                         "(default 3, fewer where they would fill more than 6 s, never under 2; the report "
                         "gives their spread); faster steps fill --benchmark-max-time")
    group.addoption("--baseline-budget", type=number_type(float, lambda s: s > 0, "a number of seconds > 0"),
                    default=DEFAULT_BASELINE_BUDGET_S, metavar="S",
                    help="seconds one step of the eager baseline may take; past that its per-example loop is "
                         "timed over the batch's first k examples (as many as fill S, at least 4) and the "
                         "step time extrapolated to the whole batch, the row saying so "
                         f"(default {DEFAULT_BASELINE_BUDGET_S:g})")
    group.addoption("--coordinator", default=None, metavar="HOST:PORT",
                    help="this run is one process of several (jax.distributed): the coordinator's address, "
                         "with --num-processes and --process-id (a SLURM or Open MPI launch is detected "
                         "without them); only process 0 writes results and report")
    group.addoption("--num-processes", type=_whole_number("processes"), default=None, metavar="N",
                    help="how many processes the run has (with --coordinator)")
    group.addoption("--process-id", type=number_type(int, lambda i: i >= 0, "a whole number >= 0"), default=None,
                    metavar="I", help="this process's index, 0 to N-1 (with --coordinator)")
    group.addoption("--distributed-timeout", type=_whole_number("seconds"), default=DEFAULT_TIMEOUT_S, metavar="S",
                    help="seconds a run of several processes waits for all to join; a process silent for "
                         f"half of it ends the others with an error naming it (default {DEFAULT_TIMEOUT_S})")
    group.addoption("--profile", action="store_true",
                    help="after each benchmark's timed rounds, trace a few of its steps with jax.profiler into "
                         "<report dir>/profiles/<benchmark>/ (a Perfetto trace: ui.perfetto.dev, or TensorBoard's "
                         "profile plugin), and report where the op time went")
    group.addoption("--isolate", action="store_true",
                    help="run each benchmark in a fresh process of its own: a crash (a segfault, an XLA abort, "
                         "an out-of-memory kill) or a timeout becomes that benchmark's status and the run goes "
                         "on; on a GPU each row also gets the device's peak memory (slower: every benchmark "
                         "starts JAX and compiles afresh)")
    group.addoption("--benchmark-timeout", type=number_type(float, lambda s: s > 0, "a number of seconds > 0"),
                    default=1800.0, metavar="S",
                    help="with --isolate, seconds one benchmark's process may run before it is stopped and the "
                         "benchmark recorded as 'timeout' (default 1800)")
    add_worker_option(group)


def pytest_configure(config):
    """Create the virtual CPU devices before anything starts a JAX backend (`pytest tests` gets
    `--cpu-devices`; `pytest bench` itself runs with one and starts workers for multi-device
    benchmarks: bench/conftest.py)."""
    import jax

    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return  # the user chose the count through XLA_FLAGS; setting both is an error in JAX
    jax.config.update("jax_num_cpu_devices", config.getoption("cpu_devices"))


def pytest_report_header(config):
    """The JAX stack under test and what it runs on, in pytest's header; a warning where JAX sees
    only a CPU on a machine that shows a GPU or a TPU (`bench.hardware.wrong_build_warning`)."""
    from importlib.metadata import version

    import jax

    from bench import hardware

    devices = jax.devices()
    lines = [f"jaxbench: jax {version('jax')}, flax {version('flax')}, optax {version('optax')}",
             hardware.platform_line(devices, jax.default_backend())]
    warning = hardware.wrong_build_warning(devices[0].platform, hardware.visible_accelerators())
    return lines + ([warning] if warning else [])
