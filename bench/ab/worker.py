"""A long-lived A/B worker: one process of one side (a git revision, or a Python environment) of
`jaxbench ab` (`bench.ab.runner`), which starts several per side and alternates between
them.

    python -m bench.ab.worker --size small --workloads mlp --modes train [--variants ...] [-k EXPR]
                              [--workload-module M ...] [--devices N]

It selects the step benchmarks as `pytest bench` would (the same options, `-k` with pytest's
own expression syntax, matched against case ids), builds each one once, compiles it, checks it
against its own side's baseline, warms it up, and says so in one `ready` message: per benchmark
its status, its exact figures (per-device memory, XLA's FLOPs and bytes accessed) and its warm
step time. Then it answers requests for blocks of timed rounds, and for cold compilations of a
step (`{"compile": case, "count": n}`, which it says it takes with `compile_times` in its `ready`
message), until told to quit. Every message is one JSON line on stdout (`bench.ab.protocol`).

`--hand-over DIR`: the first worker of a side writes its references and its models' initial states
there once it is ready; the side's other workers, started after it, take them instead of running
the eager baseline and initialising every model again (some 10 of 20 s per worker for the MLP at
`small`). Each worker still checks every benchmark it measures.

`--devices N`: on a CPU, N = 1 selects the single-device benchmarks (in a one-device process, as
`pytest bench` measures them) and N > 1 the multi-device ones, on N virtual devices; the `ready`
message names the benchmarks of the other group (`elsewhere`), for a worker of their own. On an
accelerator every selected benchmark runs here.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import time
from pathlib import Path

from jaxbench.bench.ab import protocol
from jaxbench.bench.ab.protocol import send

WARM_UP_S = 0.3
"""Warm-up after the check, before the worker says it is ready (and how its step time is estimated)."""


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The worker's options: `pytest bench`'s selection options (`bench.options`) and its own;
    ValueError with one line for a bad value."""
    from jaxbench.bench.options import add_selection_options

    parser = argparse.ArgumentParser(prog="python -m bench.ab.worker", exit_on_error=False)
    add_selection_options(parser.add_argument, default_size="small", keyword=True)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--hand-over", default=None)
    parser.add_argument("--save-hlo", default=None)  # a folder for the compiled programs' text
    try:
        return parser.parse_args(argv)
    except argparse.ArgumentError as error:
        raise ValueError(str(error).removeprefix(f"argument {error.argument_name}: ")) from None


def select(args) -> list:
    """The step cases the options select (`bench.cases.cases_of`; `--size auto` resolved for the
    device at hand), `-k` applied to their ids; ValueError with one line for an unknown workload
    or a bad expression."""
    from dataclasses import replace

    from _pytest.mark.expression import Expression

    from jaxbench.bench import hardware
    from jaxbench.bench.cases import cases_of, resolve_workloads
    from jaxbench.bench.options import Selection

    chosen = Selection.of(lambda name, default: getattr(args, name, default))
    workloads = resolve_workloads(chosen.workloads, list(chosen.workload_modules))
    size = hardware.auto_size_here()[0] if chosen.size == hardware.AUTO_SIZE else chosen.size
    cases = cases_of(replace(chosen, workloads=workloads, size=size), lambda: args.devices)
    if args.keyword:
        try:
            expression = Expression.compile(args.keyword)
        except SyntaxError as error:  # what pytest raises for a bad -k (its ParseError before 8.4)
            raise ValueError(f"-k {args.keyword!r}: {error}") from None
        # (each lambda is called at once, within its own iteration)
        cases = [case for case in cases
                 if expression.evaluate(lambda word, **_: word.lower() in case.id.lower())]  # noqa: B023
    return cases


def prepare(case, references) -> tuple[object | None, dict]:
    """Build, check and warm `case`'s step: (the prepared step or None, its `ready` entry). A
    variant that cannot run here, or a device out of memory, is a skip with `pytest bench`'s
    reason (`bench.measure`); a failed check or any other error is a failure, with its message."""
    import pytest

    from jaxbench.bench import measure
    from jaxbench.bench.correctness import IncorrectResult
    from jaxbench.bench.metadata import exact_figures

    try:
        with measure.out_of_memory_is_a_skip(case.id), measure.not_applicable_is_a_skip():
            full_precision = references.full_precision_result(case)  # before the step: never both at once
            step = case.build(initial_states=references.initial_states)
            step()
            errors = references.check_step(case, step, full_precision)
    except pytest.skip.Exception as reason:
        return None, {"status": "skipped", "message": str(reason)}
    except IncorrectResult as error:
        return None, {"status": "failed", "message": f"fails its check against baseline: {error}"}
    except Exception as error:  # noqa: BLE001 - said in one line, for the comparison to list
        return None, {"status": "failed", "message": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
    warm, start = [], time.perf_counter()
    while len(warm) < 2 or time.perf_counter() - start < WARM_UP_S:
        warm.append(measure.seconds_of(step))
    return step, {"status": "ready", "step_s": statistics.median(warm), "exact": exact_figures(step),
                  "max_rel_error": max(errors.values(), default=0.0), "compiled": step.compile_s is not None}


def cold_compile_seconds(case, references, count: int) -> list[float]:
    """The seconds of `count` cold compilations of `case`'s step, each built afresh with JAX's
    in-memory caches cleared and an empty persistent cache, if the process keeps one
    (`workloads.compile_cache.cold_compiles`), as a fresh job compiles it; each step freed after."""
    import tempfile

    from jaxbench.workloads import compile_cache

    seconds = []
    for _ in range(count):
        with tempfile.TemporaryDirectory(prefix="jaxbench-ab-compile-") as folder:
            with compile_cache.cold_compiles(Path(folder)):
                step = case.build(initial_states=references.initial_states)
        seconds.append(step.compile_s)
        step.free()
    return seconds


REFERENCES_FILE, STATES_FILE = "references.pkl", "initial_states.pkl"


def taken_over(folder: str | None, arithmetic: str):
    """The References to check against: those a side's first worker handed over in `folder`
    (with its models' initial states), or new ones (the models' states then kept to hand over).
    Their `initial_states` are the ones this worker builds its steps from."""
    from jaxbench.bench.references import References
    from jaxbench.workloads.steps import InitialStates

    if folder and (Path(folder) / STATES_FILE).exists():
        states = InitialStates()
        states.take(pickle.loads((Path(folder) / STATES_FILE).read_bytes()))
        return References.load(Path(folder) / REFERENCES_FILE, float32_arithmetic=arithmetic, initial_states=states)
    return References(float32_arithmetic=arithmetic, initial_states=InitialStates(2**40 if folder else None))


def hand_over(folder: str | None, references, cases: list) -> None:
    """Write the references and the kept initial states into `folder` for the side's other
    workers (nothing when there is no folder or they are already there); the states file last,
    each written whole before it is renamed into place."""
    from jaxbench.bench.workers import initial_states_of

    if not folder or (Path(folder) / STATES_FILE).exists():
        return
    states = initial_states_of(cases, references.initial_states)
    partial = Path(folder) / "references.partial"
    references.save(partial, cases)
    os.replace(partial, Path(folder) / REFERENCES_FILE)
    partial.write_bytes(pickle.dumps(states))
    os.replace(partial, Path(folder) / STATES_FILE)


def main(argv: list[str] | None = None) -> int:
    """Select, prepare and report ready; then serve blocks of timed rounds until `quit`."""
    problem = protocol.version_problem(protocol.runner_version(), "worker")
    try:
        args = parse_arguments(argv)
    except ValueError as error:
        problem = problem or str(error)
    if problem:
        send({"error": problem})
        return 2
    import jax

    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        jax.config.update("jax_num_cpu_devices", args.devices)
    from jaxbench.bench import hardware, measure, profile
    from jaxbench.bench.session import reuse_shared_compile_cache

    reuse_shared_compile_cache()  # the suite's own tests: each program compiled once between them
    try:
        cases = select(args)
    except ValueError as error:
        send({"error": str(error)})
        return 2
    on_cpu = jax.devices()[0].platform == "cpu"
    mine = [case for case in cases if not on_cpu or case.wants_several_devices == (args.devices > 1)]
    references = taken_over(args.hand_over, hardware.device_float32_arithmetic())
    steps, ready = {}, {}
    for case in mine:
        steps[case.id], ready[case.id] = prepare(case, references)
        if args.save_hlo:
            profile.write_hlo(args.save_hlo, case.id, steps[case.id])
    hand_over(args.hand_over, references, [case for case in mine if steps[case.id] is not None])
    send({"ready": ready, "elsewhere": [case.id for case in cases if case not in mine],
          "protocol": protocol.VERSION, "jax_version": jax.__version__,
          "python_version": ".".join(map(str, sys.version_info[:3])), "devices": len(jax.devices()),
          "device_kind": jax.devices()[0].device_kind, "compile_times": True})
    by_id = {case.id: case for case in mine}
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        if "compile" in request:
            send({"case": request["compile"],
                  "compile_s": cold_compile_seconds(by_id[request["compile"]], references, int(request["count"]))})
            continue
        step = steps[request["case"]]
        send({"case": request["case"], "times": [measure.seconds_of(step) for _ in range(int(request["rounds"]))]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
