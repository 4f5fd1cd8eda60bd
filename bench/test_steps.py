"""Every selected (workload, mode, variant): checked against its reference, then timed.

Run with `pytest bench` (see `pytest --help`, group "jaxbench", for the selection options).
"""

from __future__ import annotations

import jax

from jaxbench.bench import distributed, eager_baseline, energy, interrupt, measure, process, profile
from jaxbench.bench.metadata import step_extra_info
from jaxbench.bench.session import XLA_COMPILING, spend, spending
from jaxbench.workloads import get_workload


def test_step(case, benchmark, references, elsewhere, matmul_rates, environment, request):
    if elsewhere(case):  # measured in a worker process with the devices it needs
        return
    workload = get_workload(case.workload)
    with measure.out_of_memory_is_a_skip(case.id):
        with measure.not_applicable_is_a_skip():
            size = case.size_preset()
            budget_s = request.config.getoption("baseline_budget")
            with spending(request.config, "the baseline's probes"):
                timed_case = (eager_baseline.part_to_time(case, size.batch_size, budget_s, references.initial_states)
                              if benchmark.enabled else case)
            with spending(request.config, "references and checks"):
                full_precision = references.full_precision_result(timed_case)  # before, never beside, the step
            with spending(request.config, "building steps"):
                step = timed_case.build(initial_states=references.initial_states)
            spend(request.config, XLA_COMPILING, (step.compile_s or 0.0) + (step.compile_cached_s or 0.0))
        try:
            # Correct before fast: the first step, from the same state and batch as the reference's.
            # (With --benchmark-disable, pytest-benchmark runs it once, untimed, and that is all.)
            with spending(request.config, "first steps"):
                first_s = measure.seconds_of(step) if benchmark.enabled else benchmark.pedantic(step)
            peak = process.process_peak_info(request.config)  # the timed step's own, before any reference
            with spending(request.config, "references and checks"):
                errors = references.check_step(timed_case, step, full_precision)
            if not benchmark.enabled:
                return  # --benchmark-disable: run once and checked, nothing timed

            spans = case.wants_several_devices  # over several processes, all call it the same times
            first_s = distributed.agreed((first_s,))[0] if spans else first_s
            warmup, rounds = measure.timing_plan_for(request.config, measure.warm_step_seconds(step, first_s))
            warmup, rounds = distributed.agreed((warmup, rounds)) if spans else (warmup, rounds)
            benchmark.group = f"{case.workload}-{case.mode}-{case.size}"
            cost = None  # the eager loop's cost, where its step time is extrapolated
            with spending(request.config, "timed rounds"):
                if timed_case.examples is None:
                    def timed() -> int:
                        benchmark.pedantic(step, setup=interrupt.stop_if_requested, rounds=rounds,
                                           warmup_rounds=warmup, iterations=1)
                        return warmup + rounds

                    power = energy.measured(energy.meter_of(jax.local_devices()[:step.n_devices]), timed)
                else:
                    power = energy.unknown("the rounds timed were over part of the batch, and one example")
                    extrapolated, cost = eager_baseline.extrapolated_timing(
                        timed_case, step, rounds, size.batch_size, interrupt.stop_if_requested,
                        references.initial_states)
                    measure.record_rounds(benchmark, extrapolated, f"{timed_case.examples} of {size.batch_size} "
                                                                   "examples timed, extrapolated (jaxbench)")
            median_s = benchmark.stats.stats.median
            if spans and profile.profiling(request.config):  # every process traces as many steps as process 0
                median_s = distributed.agreed((median_s,))[0]
            profiled = profile.profile_info(request.config, case.id, step, median_s) | profile.saved_hlo(
                request.config, case.id, step)
        finally:
            step.free()  # nothing of this benchmark stays on the device for the next one

    benchmark.extra_info.update(
        step_extra_info(
            case_id=case.id,
            workload=case.workload,
            mode=case.mode,
            variant=case.variant,
            size=case.size,
            batch_size=size.batch_size,
            layout=case.layout,
            scaling=case.scaling,
            items_per_step=workload.items(size, case.mode),
            prepared=step,
            median_s=benchmark.stats.stats.median,
            flops_per_step=workload.flops_per_step(size, case.mode),
            compute_dtype=case.compute_dtype,
            matmul_rate=matmul_rates[case.compute_dtype],
            environment=environment,
            errors=errors,
        )
        | (eager_baseline.extra_info(timed_case.examples or size.batch_size, size.batch_size, cost)
           if eager_baseline.is_bounded(case) else {})
        | peak
        | power
        | profiled
    )
