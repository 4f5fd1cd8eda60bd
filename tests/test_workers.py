"""Worker processes: cases run in a fresh `pytest bench` process come back as outcomes."""

from __future__ import annotations

import dataclasses
import pickle

import jax
import numpy as np
import pytest

from jaxbench.bench import workers
from jaxbench.bench.cases import Case
from jaxbench.bench.options import Selection
from jaxbench.bench.references import References
from tests.conftest import option_parser


def test_a_worker_past_its_timeout_records_its_cases_as_timed_out_with_the_reason(pytestconfig):
    cases = [Case("mlp", "infer", "multi_device", "tiny")]
    outcomes = workers.run_worker(pytestconfig, cases, workers.WorkerConfig(cpu_devices=2), References(),
                                  matmul_rates={"float32": 1e9}, timeout_s=0.5)
    (outcome,) = outcomes.values()
    assert outcome.outcome == "timeout"
    assert outcome.message == "not measured: the worker (2 CPU devices) was stopped after its timeout of 0.5 s"


def test_a_worker_selects_what_the_run_selected_on_its_own_devices(pytestconfig, monkeypatch):
    """A worker collects the cases its command line selects, then keeps those it was given: a
    workload, mode or variant the run named and the default leaves out (`cnn_batchnorm`, a forward
    pass's `multi_device`) must be on that command line, or the worker finds nothing to run."""
    chosen = Selection(workloads=("cnn_batchnorm",), modes=("infer",), variants=("multi_device",), size="tiny",
                       cpu_devices=8, every_layout=True)
    monkeypatch.setattr(workers, "selection", lambda config: chosen)
    arguments = workers.worker_arguments(pytestconfig, workers.WorkerConfig(cpu_devices=2))
    parsed = option_parser().parse_known_args(arguments)[0]
    assert Selection.of(lambda name, default: getattr(parsed, name, default)) == dataclasses.replace(
        chosen, cpu_devices=2)
    assert arguments.count("--cpu-devices") == 1 and arguments.count("--every-layout") == 1


def test_a_replayed_failure_or_skip_keeps_the_workers_message():
    with pytest.raises(pytest.fail.Exception, match="in a worker: IncorrectResult: params"):
        workers.replay(workers.Outcome("c", "failed", "in a worker: IncorrectResult: params"), benchmark=None)
    with pytest.raises(pytest.skip.Exception, match="only one device"):
        workers.replay(workers.Outcome("c", "skipped", "only one device"), benchmark=None)


def test_outcomes_are_written_after_each_case_and_read_back(tmp_path):
    first = workers.Outcome("a", "passed", rounds=[0.1, 0.2], group="g", extra_info={"mfu": 0.5})
    workers.write_outcome(tmp_path, first)
    workers.write_outcome(tmp_path, workers.Outcome("b", "skipped", "why"))
    assert workers.read_outcomes(tmp_path) == {"a": first, "b": workers.Outcome("b", "skipped", "why")}


def test_a_worker_hands_back_only_the_references_it_computed_and_only_when_new(tmp_path):
    path = tmp_path / workers.COMPUTED_REFERENCES_FILE
    handed_over = {("bayes", "tiny"): {"mean": np.zeros(2)}}
    references = References(workflows=dict(handed_over))
    references.hand_back(path)
    assert not path.exists()  # nothing computed here: the parent has them all
    computed = {"restored": np.ones(3)}
    references.workflow(Case("checkpoint", "save_restore", "sync", "tiny"), reference_result=computed)
    references.hand_back(path)
    back = pickle.loads(path.read_bytes())
    assert back["steps"] == {} and list(back["workflows"]) == [("checkpoint", "tiny")]
    np.testing.assert_array_equal(back["workflows"][("checkpoint", "tiny")]["restored"], computed["restored"])
    parent = References(workflows=dict(handed_over))
    parent.take(path)  # what `run_worker` does with the file after the worker
    assert set(parent.workflows) == {("bayes", "tiny"), ("checkpoint", "tiny")}
    path.unlink()
    references.hand_back(path)
    assert not path.exists()  # nothing new since


def test_a_worker_builds_its_models_from_the_states_handed_over():
    """A parent on a CPU keeps each model's initial state as it first builds it and hands it to the
    worker (which then skips initialising the model); the steps are built from exactly that state."""
    from jaxbench.workloads import get_workload
    from jaxbench.workloads.steps import InitialStates, build_step

    cases = [Case("mlp", "train", "multi_device", "tiny"), Case("mlp", "infer", "multi_device", "tiny"),
             Case("checkpoint", "save_restore", "multi_device", "tiny")]
    parent = InitialStates()  # keeps nothing: the worker initialises the model itself
    build_step(get_workload("mlp"), "tiny", "infer", "jit_vmap", initial_states=parent)
    assert workers.initial_states_of(cases, parent) == {} and workers.initial_states_of(cases, None) == {}
    parent = InitialStates(keep_up_to_bytes=10**9)
    built = build_step(get_workload("mlp"), "tiny", "infer", "jit_vmap", initial_states=parent)
    handed = workers.initial_states_of(cases, parent)
    assert list(handed) == [("mlp", "tiny", 0)]  # one per step workload and size; none for a workflow
    assert np.array_equal(built.state[0]["output_layer"]["kernel"], handed["mlp", "tiny", 0]["output_layer"]["kernel"])

    worker = InitialStates()
    worker.take({("mlp", "tiny", 0): jax.tree.map(np.zeros_like, handed[("mlp", "tiny", 0)])})
    step = build_step(get_workload("mlp"), "tiny", "infer", "jit_vmap", initial_states=worker)
    assert all(not np.any(np.asarray(leaf)) for leaf in jax.tree.leaves(step.state[0]))


def test_a_state_over_the_limit_is_not_kept():
    from jaxbench.workloads import get_workload
    from jaxbench.workloads.steps import InitialStates, build_step

    states = InitialStates(keep_up_to_bytes=100)
    build_step(get_workload("mlp"), "tiny", "infer", "jit_vmap", initial_states=states)
    assert states.kept("mlp", "tiny") is None


def test_a_process_builds_a_model_it_kept_from_that_state_without_initialising_it_again():
    """Only a model's first build in a process initialises it (on XLA:CPU, seconds of compiling);
    the next builds start from the kept state, so from exactly the same parameters."""
    from jaxbench.workloads import get_workload
    from jaxbench.workloads.steps import InitialStates, build_step

    workload = get_workload("mlp")
    states = InitialStates(keep_up_to_bytes=10**9)
    first = build_step(workload, "tiny", "train", "jit_vmap", initial_states=states)
    calls = []
    real_build_model = workload.build_model

    def counted(size, rngs):
        calls.append(size)
        return real_build_model(size, rngs)

    second = build_step(dataclasses.replace(workload, build_model=counted), "tiny", "infer", "jit",
                        initial_states=states)
    assert len(calls) == 1  # traced for its structure only (`nnx.eval_shape`), never run
    for ours, kept in zip(jax.tree.leaves(second.state[0]), jax.tree.leaves(first.state[0])):
        assert np.array_equal(ours, kept)
    build_step(dataclasses.replace(workload, build_model=counted), "tiny", "infer", "jit")
    assert len(calls) == 3  # without the states, a build traces it for its structure and to initialise it


def test_a_model_initialised_as_one_program_holds_the_eager_initialisations_values():
    """`workloads.steps.run_once` (one program, on a CPU at XLA's lowest optimisation level) draws
    the same parameters and batch as running the initialisation eagerly, to float32 rounding."""
    from flax import nnx

    from jaxbench.workloads import get_workload
    from jaxbench.workloads.steps import InitialStates, run_once

    workload = get_workload("cnn")
    size = workload.size("tiny")
    ours = nnx.to_pure_dict(nnx.state(InitialStates().model(workload, "tiny", seed=0)))
    eager = nnx.to_pure_dict(nnx.state(workload.build_model(size, nnx.Rngs(0))))
    assert jax.tree.structure(ours) == jax.tree.structure(eager)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(eager)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    batch = run_once(lambda: workload.make_batch(size, jax.random.key(1)))
    for a, b in zip(batch, workload.make_batch(size, jax.random.key(1))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_a_function_that_cannot_be_traced_is_run_once_eagerly():
    """A workload's own `make_batch` may read an array's value in Python: `run_once` runs it as
    written instead of failing."""
    import jax.numpy as jnp

    from jaxbench.workloads.steps import run_once

    def batch():
        n = int(jax.random.randint(jax.random.key(0), (), 2, 5))  # a Python int from an array
        return jnp.ones((n, 3))

    assert run_once(batch).shape == batch().shape
