"""Every selected workflow variant (bayes, checkpoint, training_loop): run once and checked, then
whole runs timed.

The reference variant (each workflow's first) is what the others are checked against; each
workflow's `check` also holds its own result to what must be true (converged chains, a restored
state equal to the saved one, ...). See `workloads/workflow.py`.
"""

from __future__ import annotations

from bench import measure
from bench.metadata import workflow_extra_info
from workloads import get_workload


def test_workflow(workflow_case, benchmark, workflow_reference, environment, workdir, request):
    case = workflow_case
    workflow = get_workload(case.workload)
    with measure.out_of_memory_is_a_skip(case.id), measure.not_applicable_is_a_skip():
        with workflow.prepare(case.size, case.variant, workdir) as run:
            run()  # correct before fast
            result = run.result()
            own = result if case.variant == workflow.reference_variant else None
            checks = workflow.check(result, workflow_reference(case, own))

            round_s = measure.seconds_of(run)
            warmup, rounds = measure.timing_plan(
                round_s,
                max_time_s=float(request.config.getoption("benchmark_max_time")),
                min_rounds=int(request.config.getoption("benchmark_min_rounds")),
            )
            for _ in range(warmup):
                run()
            run.clear_timings()  # the run's own figures cover exactly the timed runs
            benchmark.group = f"{case.workload}-{case.mode}-{case.size}"
            benchmark.pedantic(run, rounds=rounds, iterations=1)
            info = workflow_extra_info(case_id=case.id, workload=case.workload, mode=case.mode,
                                       variant=case.variant, size=case.size, run=run,
                                       median_s=benchmark.stats.stats.median, environment=environment,
                                       checks=checks)
    benchmark.extra_info.update(info)
