"""The command-line options, declared once: `add_selection_options` for every command line that
selects benchmarks (`pytest bench` through `bench.plugin`, `jaxbench ab`, and the A/B
worker), `add_run_options` for what only `pytest bench` has; as pytest-benchmark declares its
display options once for its plugin and its own command line. Each takes the `addoption` of its
parser (pytest's option group, or an argparse parser or group: they take the same arguments).

`Selection` is what the selection options chose, frozen: built once per run, after the outside
workloads are registered and `--size auto` is resolved, and passed to whatever selects cases.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from jaxbench.bench.distributed import DEFAULT_TIMEOUT_S
from jaxbench.bench.hardware import AUTO_SIZE
from jaxbench.bench.process import add_worker_option
from jaxbench.reports.arguments import names_type, number_type, unknown_names
from jaxbench.workloads import (
    LEFT_OUT_BY_DEFAULT,
    LEFT_OUT_OF_DEFAULT_VARIANTS,
    MODES,
    REGISTRY,
    SIZES,
    WORKFLOW_VARIANTS,
)
from jaxbench.workloads.contract import SIZE_TARGETS
from jaxbench.workloads.sharding import MeshShape, parse_mesh
from jaxbench.workloads.variants import VARIANTS

DEFAULT_CPU_DEVICES = 8
DEFAULT_BASELINE_BUDGET_S = 5.0
"""`--baseline-budget`'s default: seconds one timed eager step may take (`bench.eager_baseline`)."""
SCALING = ("strong", "weak")
"""The scaling sweeps: `strong` keeps the global batch, `weak` the batch per device."""
ALL_VARIANTS = tuple(dict.fromkeys((*VARIANTS, *sum(WORKFLOW_VARIANTS.values(), ()))))
"""The steps' variants, then the workflows' own."""


def whole_number(what: str) -> Callable[[str], int]:
    """An argparse type: a whole number of `what` >= 1."""
    return number_type(int, lambda count: count >= 1, f"a whole number of {what} >= 1")


seconds = number_type(float, lambda value: value > 0, "a number of seconds > 0")
"""An argparse type: a number of seconds > 0."""


def size_type(text: str) -> str:
    """An argparse type: a size preset, or `auto`."""
    error = unknown_names("size", (text,), (*SIZES, AUTO_SIZE))
    if error:
        raise argparse.ArgumentTypeError(error)
    return text


def mesh_type(text: str) -> MeshShape:
    """An argparse type: a `data=D,model=M` mesh."""
    try:
        return parse_mesh(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def variants_type(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated variants (`ALL_VARIANTS`), or `all`: every one of them in
    every mode, what the default run leaves out included."""
    return ALL_VARIANTS if text.strip() == "all" else names_type("variant", ALL_VARIANTS)(text)


variants_type.__name__ = "variant"  # argparse names the type in its messages


def scaling_type(text: str) -> tuple[str, ...]:
    """An argparse type: `strong`, `weak` or `both` (both sweeps)."""
    error = unknown_names("scaling sweep", (text,), (*SCALING, "both"))
    if error:
        raise argparse.ArgumentTypeError(error)
    return SCALING if text == "both" else (text,)


def add_selection_options(addoption, default_size: str = AUTO_SIZE, keyword: bool = False) -> None:
    """What to measure: workloads (the suite's, `--workload-module`'s and installed packages'),
    modes, variants, size, and the virtual CPU devices of the multi-device benchmarks; `keyword`:
    also `-k`, for a command line that is not pytest (which has its own)."""
    addoption("--workloads", type=names_type("workload", tuple(REGISTRY), check=False), default=None,
              help=f"comma-separated workloads to run, or all (default: all but {','.join(LEFT_OUT_BY_DEFAULT)}, "
                   f"to keep the run short: {','.join(name for name in REGISTRY if name not in LEFT_OUT_BY_DEFAULT)}, "
                   "and those of --workload-module and of installed packages' jaxbench.workloads entry points)")
    addoption("--workload-module", action="append", default=[], metavar="MODULE",
              help="a module of your own that defines WORKLOAD (a jaxbench.Workload), e.g. "
                   "my_pkg.my_model; benchmarked like the suite's own (repeat for more)")
    addoption("--modes", type=names_type("mode", MODES), default=MODES,
              help=f"comma-separated modes of the step workloads (default: {','.join(MODES)}); a workflow "
                   "(bayes, checkpoint, training_loop) has one mode and ignores it")
    left_out = "; ".join([*(f"{name}'s {','.join(names)}" for name, names in LEFT_OUT_OF_DEFAULT_VARIANTS.items()),
                          *(f"{name} in {','.join(m for m in variant.modes if not variant.in_default_run(m))}"
                            for name, variant in VARIANTS.items() if variant.default_modes is not None)])
    addoption("--variants", type=variants_type, default=None,
              help=f"comma-separated variants, or all: each in every mode (default: all but, to keep the run short, "
                   f"{left_out}); the step workloads have {','.join(VARIANTS)}; "
                   + "; ".join(f"{name} has {','.join(names)}" for name, names in WORKFLOW_VARIANTS.items()))
    targets = "; ".join(f"{name} for {target.meant_for}" for name, target in SIZE_TARGETS.items())
    addoption("--size", type=size_type, default=default_size,
              help=f"size preset: {targets}; or {AUTO_SIZE}: small on a CPU, on a GPU or TPU the largest preset "
                   f"whose steps fit its memory (default: {default_size})")
    addoption("--every-layout", action="store_true",
              help="measure multi_device in every layout of each workload (the transformer's model and "
                   "data_model, the CNNs' fsdp too); by default a train step runs in data and fsdp (the CNNs' in "
                   "data), a forward pass (where --variants names multi_device) in data")
    addoption("--cpu-devices", type=whole_number("devices"), default=DEFAULT_CPU_DEVICES, metavar="N",
              help=f"virtual CPU devices for the multi-device benchmarks (default {DEFAULT_CPU_DEVICES}), made in "
                   "a worker process of their own so that single-device steps run in a one-device process; "
                   "they share the host's cores")
    if keyword:
        addoption("-k", dest="keyword", metavar="EXPRESSION", help="pytest -k expression over the case ids")


def add_run_options(addoption) -> None:
    """What only `pytest bench` has: where it writes, the mesh and sweeps, timing, several
    processes, profiles, isolation (and the hidden worker option)."""
    addoption("--report-dir", default=None, metavar="DIR",
              help="where results.json and summary.md go "
                   "(default: a new folder per run under jaxbench-runs/ in the current folder, named by time and "
                   "device)")
    addoption("--checkpoint-dir", default=None, metavar="DIR",
              help="where checkpoint and training_loop write their checkpoints, one temporary folder per "
                   "benchmark, removed afterwards (default: the system's temporary folder)")
    addoption("--strict-expectations", action="store_true",
              help="exit non-zero when any expectation row of the report is 'below'")
    addoption("--mesh", type=mesh_type, default=None, metavar="data=D,model=M",
              help="the (data, model) mesh of the multi-device benchmarks, e.g. data=4,model=2 (its product "
                   "must be their device count); every layout then runs on it, and one that needs an axis of "
                   "size 1 is skipped (default: each layout's own: data and fsdp all devices on data, model "
                   "all on model, data_model two on model)")
    addoption("--scaling", type=scaling_type, default=None, metavar="strong|weak|both",
              help="also sweep each workload's jit_vmap train step over 1, 2, 4, ... up to all devices: "
                   "strong keeps the global batch, weak the batch per device (default: no sweep)")
    addoption("--long-step-rounds", type=whole_number("rounds"), default=3, metavar="N",
              help="timed rounds of a step that takes half a second or more, such as an eager baseline "
                   "(default 3, fewer where they would fill more than 6 s, never under 2; the report gives "
                   "their spread); faster steps fill --benchmark-max-time")
    addoption("--compile-cached", action="store_true",
              help="also compile each compiled step a second time, from JAX's persistent cache, and record "
                   "that time (compile_cached_s: what a next start pays with the cache on); by default only "
                   "the cold compile is timed")
    addoption("--baseline-budget", type=seconds, default=DEFAULT_BASELINE_BUDGET_S, metavar="S",
              help="seconds one step of the eager baseline may take; past that its per-example loop is timed "
                   "over the batch's first k examples (as many as fill S, at least 4) and the step time "
                   f"extrapolated to the whole batch, the row saying so (default {DEFAULT_BASELINE_BUDGET_S:g})")
    addoption("--coordinator", default=None, metavar="HOST:PORT",
              help="this run is one process of several (jax.distributed): the coordinator's address, with "
                   "--num-processes and --process-id (a SLURM or Open MPI launch is detected without them); "
                   "only process 0 writes results and report")
    addoption("--num-processes", type=whole_number("processes"), default=None, metavar="N",
              help="how many processes the run has (with --coordinator)")
    addoption("--process-id", type=number_type(int, lambda i: i >= 0, "a whole number >= 0"), default=None,
              metavar="I", help="this process's index, 0 to N-1 (with --coordinator)")
    addoption("--distributed-timeout", type=whole_number("seconds"), default=DEFAULT_TIMEOUT_S, metavar="S",
              help="seconds a run of several processes waits for all to join; a process silent for half of it "
                   f"ends the others with an error naming it (default {DEFAULT_TIMEOUT_S})")
    addoption("--save-hlo", action="store_true",
              help="keep each compiled step's optimised HLO text in <report dir>/hlo/<benchmark>.hlo.txt, for a "
                   "diff against another run's (what changed is summed up in results.json either way)")
    addoption("--profile", action="store_true",
              help="after each benchmark's timed rounds, trace a few of its steps with jax.profiler into "
                   "<report dir>/profiles/<benchmark>/ (a Perfetto trace: ui.perfetto.dev, or TensorBoard's "
                   "profile plugin), and report where the op time went")
    addoption("--isolate", action="store_true",
              help="run each benchmark in a fresh process of its own: a crash (a segfault, an XLA abort, an "
                   "out-of-memory kill) or a timeout becomes that benchmark's status and the run goes on; on "
                   "a GPU each row also gets the device's peak memory (slower: every benchmark starts JAX and "
                   "compiles afresh)")
    addoption("--hide-host-names", action="store_true",
              help="leave host names out of results.json and the report (pytest-benchmark's machine_info "
                   "node; each process's host in a run of several becomes host-1, host-2, ...): for results "
                   "you share")
    addoption("--benchmark-timeout", type=seconds, default=1800.0, metavar="S",
              help="with --isolate, seconds one benchmark's process may run before it is stopped and the "
                   "benchmark recorded as 'timeout' (default 1800)")
    add_worker_option(addoption)


@dataclass(frozen=True)
class Selection:
    """What a command line selected. `workloads` None means every known workload (resolved to
    names once the outside ones are registered: `bench.cases.resolve_workloads`); `variants` None,
    the default run's (`variant_selected`)."""

    workloads: tuple[str, ...] | None
    modes: tuple[str, ...] = MODES
    variants: tuple[str, ...] | None = None
    size: str = AUTO_SIZE
    workload_modules: tuple[str, ...] = ()
    cpu_devices: int = DEFAULT_CPU_DEVICES
    mesh: MeshShape | None = None
    scaling: tuple[str, ...] | None = None
    keyword: str | None = None
    every_layout: bool = False

    @classmethod
    def of(cls, option: Callable[[str, object], object]) -> Selection:
        """The selection from parsed options: `option(name, default)` is pytest's
        `config.getoption` or, for an argparse namespace, `lambda name, default: getattr(args,
        name, default)`."""
        return cls(workloads=option("workloads", None), modes=option("modes", MODES),
                   variants=option("variants", None), size=option("size", AUTO_SIZE),
                   workload_modules=tuple(option("workload_module", ()) or ()),
                   cpu_devices=option("cpu_devices", DEFAULT_CPU_DEVICES), mesh=option("mesh", None),
                   scaling=option("scaling", None), keyword=option("keyword", None),
                   every_layout=bool(option("every_layout", False)))

    def arguments(self) -> list[str]:
        """The selection options that select the same again on another command line (a worker's)."""
        arguments = ["--size", self.size, "--modes", ",".join(self.modes), "--cpu-devices", str(self.cpu_devices)]
        if self.variants is not None:
            arguments += ["--variants", ",".join(self.variants)]
        if self.workloads:
            arguments += ["--workloads", ",".join(self.workloads)]
        for module in self.workload_modules:
            arguments += ["--workload-module", module]
        return arguments + (["--every-layout"] if self.every_layout else [])


def variant_selected(variants: tuple[str, ...] | None, workload: str, mode: str, variant: str) -> bool:
    """Whether `variants` include `variant` of `workload`'s `mode`: those named, or where none were
    (None), all but what the default run leaves out (`Variant.default_modes`,
    `LEFT_OUT_OF_DEFAULT_VARIANTS`)."""
    if variants is not None:
        return variant in variants
    if workload in WORKFLOW_VARIANTS:
        return variant not in LEFT_OUT_OF_DEFAULT_VARIANTS.get(workload, ())
    return VARIANTS[variant].in_default_run(mode)


_SELECTION = pytest.StashKey[Selection]()


def freeze_selection(config, **resolved) -> Selection:
    """The run's selection from its options, with `resolved` (the workloads' names once the outside
    ones are registered, the preset `--size auto` chose) in place of what was given; kept for
    `selection`."""
    config.stash[_SELECTION] = replace(Selection.of(config.getoption), **resolved)
    return config.stash[_SELECTION]


def selection(config) -> Selection:
    """The run's selection (`freeze_selection`, at configure time; in a session that froze none,
    such as `pytest tests`, its options as given)."""
    return config.stash[_SELECTION] if _SELECTION in config.stash else Selection.of(config.getoption)
