"""The results every variant is checked against, computed once per run and kept on the host.

A step's reference is one step of `workloads/reference.py`'s program (the per-example function in
a `lax.scan` under `jax.jit`; for a model that couples the examples of a batch, its batch step run
eagerly: `workloads.steps.build_reference_step`), with its rounding spread
(`bench.correctness.rounding_spread`) for training. `baseline`, the eager loop the speedups
divide by, is checked against it like every other variant. A workflow's reference is
its reference variant's run. Both are host (NumPy) copies: nothing stays on the device between
benchmarks, and a worker process can be handed them in a file.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import jax

from jaxbench.bench import distributed, hardware
from jaxbench.bench.cases import Case
from jaxbench.bench.correctness import check_against_baseline, nudged, rounding_spread
from jaxbench.reports.results import write_atomically
from jaxbench.workloads import get_workload
from jaxbench.workloads.contract import IncorrectResult
from jaxbench.workloads.steps import InitialStates, PreparedStep, build_reference_step, build_step
from jaxbench.workloads.variants import PRODUCTION


@dataclass(frozen=True)
class StepReference:
    """What a step variant is checked against.

    Attributes:
        result: the reference step's result (`PreparedStep.result`), on the host.
        spread: how far that result moves with the examples reversed and the parameters nudged
            within rounding (`train` only: `_spread`); None until a check needs it
            (`References.spread`).
        initial_params: the parameters the step started from (`train`), on the host: what a
            step's update is measured from.
    """

    result: dict
    spread: dict[str, float] | None = None
    initial_params: dict | None = None


def to_host(tree):
    """`tree` with every array copied to the host as NumPy (sharded arrays gathered, from every
    process where they span several: `bench.distributed.to_host`)."""
    return distributed.to_host(tree)


SPREAD_RUNS = 2
"""How many times the reference is run again, reversed and nudged, for its rounding spread: a
ReLU switched by rounding is a chance event that one nudge can miss (docs/measurements.md), and
the spread is the largest of the runs; each run costs one more reference step."""


def _spread(step: PreparedStep, result: dict) -> dict[str, float]:
    """The rounding spread (`bench.correctness.rounding_spread`) of a train step's reference, whose
    `result` is known: `step`, freshly built, run `SPREAD_RUNS` times from its state (the reference
    does not donate it) with the parameters nudged and the batch's examples reversed."""
    params, *rest = step.state
    reversed_batch = jax.tree.map(lambda leaf: leaf[::-1], step.batch)
    reruns = [to_host(step.result_from((nudged(params, jax.random.key(run)), *rest), reversed_batch))
              for run in range(SPREAD_RUNS)]
    return rounding_spread(result, *reruns)


def _has_own_batch(case: Case) -> bool:
    """Whether `case` runs on a batch other than its preset's (a weak-scaling point past one device)."""
    return case.scaling == "weak" and case.n_devices > 1


@dataclass
class References:
    """The run's reference results, computed on first use (or handed over by a parent process).

    `float32_arithmetic`: what the platform's float32 matmuls run in (`bench.hardware`). Where
    that rounds (TF32 on GPUs, bf16 passes on TPUs), references and checks run at full float32
    precision (`hardware.check_precision`), so the float32 tolerances measured on a CPU hold.
    """

    steps: dict[tuple, StepReference] = field(default_factory=dict)
    workflows: dict[tuple, dict] = field(default_factory=dict)
    checkpoint_dir: str | None = None
    float32_arithmetic: str = "fp32"
    initial_states: InitialStates | None = None  # the process's (`workloads.steps.InitialStates`), to build from
    computed_here: set = field(default_factory=set)  # keys of the references computed in this process
    handed_back: int = 0  # how many of them `hand_back` last wrote

    @staticmethod
    def _step_key(case: Case) -> tuple:
        key = (case.workload, case.mode, case.size)
        if case.examples is not None:
            key += (f"first {case.examples}",)
        return key + (case.batch_size(),) if _has_own_batch(case) else key

    @staticmethod
    def _workflow_key(case: Case) -> tuple:
        return case.workload, case.size

    def step(self, case: Case) -> StepReference:
        """The reference for `case`'s workload, mode and size, computed on first use."""
        key = self._step_key(case)
        with hardware.check_precision(self.float32_arithmetic):
            if key not in self.steps:
                self.steps[key] = self._computed_step(case)
                self.computed_here.add(key)
        return self.steps[key]

    def _reference_step(self, case: Case) -> PreparedStep:
        """`case`'s reference program, built (`build_reference_step`) from this process's initial states."""
        return build_reference_step(get_workload(case.workload), case.size, case.mode, examples=case.examples,
                                    initial_states=self.initial_states)

    def _computed_step(self, case: Case) -> StepReference:
        workload = get_workload(case.workload)
        if _has_own_batch(case):
            # A weak-scaling point's batch is not the preset's: its reference is the single-device
            # production step on that batch, with the preset's rounding spread.
            step = build_step(workload, case.size, case.mode, PRODUCTION.name, batch_size=case.batch_size(),
                              initial_states=self.initial_states)
            try:
                step()
                result = to_host(step.result())
            finally:
                step.free()
            return StepReference(result)
        step = self._reference_step(case)
        initial_params = to_host(step.state[0]) if case.mode == "train" else None
        try:
            step()
            return StepReference(to_host(step.result()), initial_params=initial_params)
        finally:
            step.free()

    def spread(self, case: Case) -> dict[str, float]:
        """The rounding spread of `case`'s reference (`_spread`; a weak-scaling point's is its
        preset's), measured on first use: only a check that the float32 floor alone fails needs it
        (`check_step`), and it costs `SPREAD_RUNS` more reference steps."""
        reference = self.step(case)
        if reference.spread is None:
            with hardware.check_precision(self.float32_arithmetic):
                spread = (self.spread(replace(case, scaling=None, n_devices=None)) if _has_own_batch(case)
                          else self._measured_spread(case, reference.result))
            reference = self.steps[self._step_key(case)] = replace(reference, spread=spread)
        return reference.spread

    def _measured_spread(self, case: Case, result: dict) -> dict[str, float]:
        if case.mode != "train":
            return {}  # outside training no example sees another, and no sum over examples is kept
        step = self._reference_step(case)
        try:
            return _spread(step, result)
        finally:
            step.free()

    def full_precision_result(self, case: Case) -> dict | None:
        """Where float32 matmuls round by default (`hardware.rounds_float32_matmuls`): `case`
        prepared and run once at full float32 precision, its result on the host and its device
        memory freed, for `check_step`; None elsewhere, where the timed step's own result is
        checked. Made before the timed step is built, so that the two never share the device (at
        a preset that fills it, two copies would not fit) and the timed step's peak memory is its own."""
        if not hardware.rounds_float32_matmuls(self.float32_arithmetic):
            return None
        with hardware.check_precision(self.float32_arithmetic):
            copy = case.build(initial_states=self.initial_states)
            try:
                copy()
                return to_host(copy.result())
            finally:
                copy.free()

    def check_step(self, case: Case, step: PreparedStep, full_precision: dict | None = None) -> dict[str, float]:
        """Check `case` against its reference (`bench.correctness.check_against_baseline`); returns
        the errors. What is checked: `full_precision`, the result of `full_precision_result`, where
        float32 matmuls round by default (made here if not given), so that the float32 tolerance
        means the same on a GPU or a TPU as on a CPU; elsewhere `step`'s result after its first
        call (the timed step keeps the platform's default precision either way). The reference is
        computed here on first use, after the timed step's first call."""
        result = full_precision if full_precision is not None else self.full_precision_result(case)
        if result is None:
            result = to_host(step.result())
        with hardware.check_precision(self.float32_arithmetic):
            reference = self.step(case)
        try:
            return check_against_baseline(result, reference.result, case.compute_dtype, spread=reference.spread,
                                          initial_params=reference.initial_params)
        except IncorrectResult:
            if reference.spread is not None:
                raise
        # Past the float32 floor: how far rounding alone moves this step decides (a tolerance never
        # under the floor, so measuring the spread only here changes no verdict).
        return check_against_baseline(result, reference.result, case.compute_dtype, spread=self.spread(case),
                                      initial_params=reference.initial_params)

    def check_workflow(self, case: Case, result: dict, workdir: Path) -> dict[str, float]:
        """Check the `result` of `case`'s workflow run against its reference variant's (the
        workflow's own `check`); returns the check's figures. Where float32 matmuls round by
        default, the check is made on a run of its own at full float32 precision, in a folder
        under `workdir` (as `check_step` does)."""
        workflow = get_workload(case.workload)
        with hardware.check_precision(self.float32_arithmetic):
            if hardware.rounds_float32_matmuls(self.float32_arithmetic):
                with workflow.start_run(case.size, case.variant, Path(workdir) / "full-precision-check") as run:
                    run()
                    result = to_host(run.result())
            reference_result = result if case.variant == workflow.reference_variant else None
            return workflow.check(result, self.workflow(case, reference_result))

    def workflow(self, case: Case, reference_result: dict | None = None) -> dict:
        """The result of `case`'s workflow's reference variant at the same size. `reference_result`:
        that variant's own result, when `case` is the reference variant."""
        key = self._workflow_key(case)
        with hardware.check_precision(self.float32_arithmetic):
            return self._workflow(case, key, reference_result)

    def _workflow(self, case: Case, key: tuple, reference_result: dict | None) -> dict:
        if key not in self.workflows:
            self.computed_here.add(key)
        if key not in self.workflows and reference_result is not None:
            self.workflows[key] = to_host(reference_result)
        if key not in self.workflows:
            workflow = get_workload(case.workload)
            workdir = Path(tempfile.mkdtemp(prefix=f"jaxbench-{case.workload}-reference-", dir=self.checkpoint_dir))
            try:
                with workflow.start_run(case.size, workflow.reference_variant, workdir) as run:
                    run()
                    self.workflows[key] = to_host(run.result())
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        return self.workflows[key]

    def save(self, path: Path, cases: list[Case] | None = None, compute: bool = True) -> None:
        """Write the references `cases` need (all held, when None) to `path`, for a worker process
        or back from one, computing missing ones unless `compute` is False (an isolated run leaves
        them to the workers, so that a model that crashes its process crashes a worker, not the run)."""
        for case in cases if compute and cases else []:
            if case.is_workflow:
                self.workflow(case)
            else:
                self.step(case)
        steps, workflows = self.steps, self.workflows
        if cases is not None:
            steps = {k: v for k, v in steps.items() if k in {self._step_key(c) for c in cases}}
            workflows = {k: v for k, v in workflows.items() if k in {self._workflow_key(c) for c in cases}}
        write_atomically(path, pickle.dumps({"steps": steps, "workflows": workflows}))

    def hand_back(self, path: Path) -> None:
        """In a worker process: write to `path` (as `save` writes) the references computed here, for
        the parent to keep (`take`); nothing when none was computed since the last hand-back (the
        parent handed over the rest: writing them all back after every case was time wasted)."""
        if len(self.computed_here) == self.handed_back:
            return
        self.handed_back = len(self.computed_here)
        write_atomically(path, pickle.dumps({
            "steps": {k: v for k, v in self.steps.items() if k in self.computed_here},
            "workflows": {k: v for k, v in self.workflows.items() if k in self.computed_here}}))

    def take(self, path: Path) -> None:
        """Keep the references a worker wrote back to `path` (`save`) that this run lacks, so that
        the next worker is handed them instead of computing them again."""
        if path.exists():
            data = pickle.loads(path.read_bytes())
            self.steps = {**data["steps"], **self.steps}
            self.workflows = {**data["workflows"], **self.workflows}

    @classmethod
    def load(cls, path: Path, checkpoint_dir: str | None = None, float32_arithmetic: str = "fp32",
             initial_states: InitialStates | None = None) -> References:
        """References written by `save`."""
        data = pickle.loads(Path(path).read_bytes())
        return cls(data["steps"], data["workflows"], checkpoint_dir, float32_arithmetic, initial_states)
