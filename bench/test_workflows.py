"""Every selected workflow variant (bayes, checkpoint, training_loop): run once and checked, then
whole runs timed.

The reference variant (each workflow's first) is what the others are checked against; each
workflow's `check` also holds its own result to what must be true (converged chains, a restored
state equal to the saved one, ...). See `workloads/workflow.py`.
"""

from __future__ import annotations

from contextlib import ExitStack

from jaxbench.bench import interrupt, measure, process, profile
from jaxbench.bench.metadata import workflow_extra_info
from jaxbench.bench.session import XLA_COMPILING, spend, spending
from jaxbench.workloads import get_workload


def test_workflow(workflow_case, benchmark, references, elsewhere, environment, workdir, request):
    case = workflow_case
    if elsewhere(case):  # measured in a worker process with the devices it needs
        return
    workflow = get_workload(case.workload)
    with measure.out_of_memory_is_a_skip(case.id), measure.not_applicable_is_a_skip(), ExitStack() as stack:
        with spending(request.config, "building steps"):
            run = stack.enter_context(workflow.start_run(case.size, case.variant, workdir))
        spend(request.config, XLA_COMPILING, run.compile_s or 0.0)
        # Correct before fast (with --benchmark-disable, pytest-benchmark runs it once, untimed).
        with spending(request.config, "first steps"):
            first_s = measure.seconds_of(run) if benchmark.enabled else benchmark.pedantic(run)
        with spending(request.config, "references and checks"):
            checks = references.check_workflow(case, run.result(), workdir)
        if not benchmark.enabled:
            return  # --benchmark-disable: run once and checked, nothing timed

        warmup, rounds = measure.timing_plan_for(request.config, measure.warm_step_seconds(run, first_s))
        for _ in range(warmup):
            interrupt.stop_if_requested()
            run()
        run.clear_timings()  # the run's own figures cover exactly the timed runs
        benchmark.group = f"{case.workload}-{case.mode}-{case.size}"
        with spending(request.config, "timed rounds"):
            benchmark.pedantic(run, setup=interrupt.stop_if_requested, rounds=rounds, iterations=1)
        profiled = profile.profile_info(request.config, case.id, run, benchmark.stats.stats.median)
        info = workflow_extra_info(case_id=case.id, workload=case.workload, mode=case.mode,
                                   variant=case.variant, size=case.size, run=run,
                                   throughput=workflow.throughput, environment=environment,
                                   checks=checks)
    benchmark.extra_info.update(info | process.process_peak_info(request.config) | profiled)
