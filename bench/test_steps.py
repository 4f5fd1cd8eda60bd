"""Every selected (workload, mode, variant): checked against `baseline`, then timed.

Run with `pytest bench` (see `pytest --help`, group "jaxbench", for the selection options).
"""

from __future__ import annotations

from bench import measure
from bench.correctness import check_against_baseline
from bench.metadata import step_extra_info
from workloads import get_workload
from workloads.variants import prepare


def test_step(case, benchmark, reference_result, peak_flops, environment, request):
    workload = get_workload(case.workload)
    size = workload.size(case.size)
    with measure.out_of_memory_is_a_skip(case.id):
        with measure.not_applicable_is_a_skip():
            step = prepare(workload, case.size, case.mode, case.variant, layout=case.layout)

        # Correct before fast: the first step, from the same state and batch as baseline's.
        step()
        dtype = "bfloat16" if case.variant == "bf16" else "float32"
        sharded_statistics = workload.couples_examples and case.variant == "multi_device"
        errors = check_against_baseline(step.result(), reference_result(case), dtype,
                                        sharded_batch_statistics=sharded_statistics)

        step_s = measure.seconds_of(step)  # a second, warm step sizes the timing plan
        warmup, rounds = measure.timing_plan(
            step_s,
            max_time_s=float(request.config.getoption("benchmark_max_time")),
            min_rounds=int(request.config.getoption("benchmark_min_rounds")),
        )
        benchmark.group = f"{case.workload}-{case.mode}-{case.size}"
        benchmark.pedantic(step, rounds=rounds, warmup_rounds=warmup, iterations=1)

    benchmark.extra_info.update(
        step_extra_info(
            case_id=case.id,
            workload=case.workload,
            mode=case.mode,
            variant=case.variant,
            size=case.size,
            batch_size=size.batch_size,
            layout=case.layout,
            items_per_step=workload.items(size, case.mode),
            prepared=step,
            median_s=benchmark.stats.stats.median,
            flops_per_step=workload.flops_per_step(size, case.mode),
            peak_flops=peak_flops,
            environment=environment,
            errors=errors,
        )
    )
