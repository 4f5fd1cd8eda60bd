"""jaxbench: what `jit`, `vmap`, sharding, remat, bf16 and gradient accumulation buy on your
hardware, measured on real Flax NNX / Optax steps, NumPyro, Orbax and a training loop.

The one import name the suite installs. Its parts are `jaxbench.workloads` (what is measured),
`jaxbench.bench` (how: the pytest benchmarks and the A/B gate) and `jaxbench.reports` (what it
says); in a checkout they are the repository's `workloads/`, `bench/` and `reports/` folders.

The public API, for a workload of your own (see `examples/jaxbench-example`)::

    from jaxbench import BlockStack, Workload

    WORKLOAD = Workload(name="my_model", ...)

- `Workload`: the contract a model meets to get every variant, the checks and the report;
- `BlockStack`: repeated blocks run by `lax.scan` (what `remat` and `fsdp` apply to);
- `SIZES`, `MODES`, `LAYOUTS`: the names a workload's presets, modes and layouts are drawn from;
- `NotApplicable`: raised where a variant cannot run here (the benchmark is skipped, with the reason);
- `get_workload(name)`: a registered workload (the suite's own or an installed package's).
"""

from jaxbench.workloads import LAYOUTS, MODES, SIZES, get_workload
from jaxbench.workloads.contract import NotApplicable, Workload
from jaxbench.workloads.layers import BlockStack

__all__ = ["LAYOUTS", "MODES", "SIZES", "BlockStack", "NotApplicable", "Workload", "get_workload"]
