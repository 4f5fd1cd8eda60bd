"""The production training loop, end to end: the workflow a JAX user runs to train a model.

Flax NNX transformer LM (`workloads/transformer.py`) split once into pure state, AdamW on a
warm-up + cosine schedule, the jitted step, an Orbax `CheckpointManager` saving every
`checkpoint_every` steps and keeping the last `keep`, evaluation on held-out batches every
`eval_every` steps. A loop resumes from the latest good checkpoint in its folder: one that cannot
be restored (a partial or corrupted folder) is reported, naming its step and path, and the one
before it is used.

Variants: `async` (the production loop: `save` returns once the state is copied off the devices,
the files are written in the background) and `sync` (`save` returns when the files are written).
Figures: steps per second; the share of wall time lost to checkpointing, against the same loop
run without it just before (`checkpoint_overhead_share`: it includes background writes slowing
the steps down) and the share the loop is blocked in `save` and the final wait
(`checkpoint_blocking_share`); the evaluation throughput; and the time to the first step
(model built, step and evaluation compiled, one step run).

Run on its own (as the interruption test does): `python -m jaxbench.workloads.training_loop --help`.

Where each part lives:
- `sizes.py`: the presets and the data (each step's batch, the held-out batches);
- `loop.py`: the loop itself (`TrainingLoop`: build, run, checkpoint, evaluate);
- `recovery.py`: how a loop resumes, and what it does with a checkpoint it cannot read;
- `benchmark.py`: the bench's view (`LoopRun`: timed runs and their figures) and the check;
- `__main__.py`: the command line, and the parameters' `.npz` export.
"""

from __future__ import annotations

from jaxbench.workloads import WORKFLOW_VARIANTS
from jaxbench.workloads.training_loop.benchmark import LoopRun, check, start_run
from jaxbench.workloads.training_loop.loop import LoopOutcome, TrainingLoop
from jaxbench.workloads.training_loop.sizes import SIZES, LoopSize, batch_at, eval_batches
from jaxbench.workloads.workflow import Workflow

WORKLOAD = Workflow(name="training_loop", mode_label="train", sizes=SIZES, variants=WORKFLOW_VARIANTS["training_loop"],
                    start_run=start_run, check=check, throughput=("steps_per_s", "steps"))

__all__ = ["SIZES", "WORKLOAD", "LoopOutcome", "LoopRun", "LoopSize", "TrainingLoop", "batch_at", "check",
           "eval_batches", "start_run"]
