"""Command line: `python -m jaxbench.workloads.training_loop --help`. Trains (or resumes) into a checkpoint
folder, as a job would; can crash itself after a step (to test resuming) and export the final
parameters as `.npz`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import numpy as np

from jaxbench.workloads import WORKFLOW_VARIANTS
from jaxbench.workloads.contract import SIZES as SIZE_NAMES
from jaxbench.workloads.training_loop import __doc__ as LOOP_DOC
from jaxbench.workloads.training_loop.loop import TrainingLoop
from jaxbench.workloads.training_loop.sizes import SIZES
from jaxbench.workloads.workflow import cannot_write


def save_params(state, path: Path) -> None:
    """The parameters of `state` as an .npz file, one array per parameter path."""
    flat = {jax.tree_util.keystr(p): np.asarray(a) for p, a in jax.tree_util.tree_leaves_with_path(state[0])}
    np.savez(path, **flat)


def main(argv: list[str] | None = None) -> int:
    """Command line: train (or resume) into a checkpoint folder; bad input is a one-line error."""
    parser = argparse.ArgumentParser(prog="python -m jaxbench.workloads.training_loop",
                                     description=LOOP_DOC.split("\n")[0])
    parser.add_argument("--size", default="tiny", choices=[n for n in SIZE_NAMES if n in SIZES])
    parser.add_argument("--variant", default="async", choices=WORKFLOW_VARIANTS["training_loop"])
    parser.add_argument("--checkpoint-dir", required=True, type=Path, metavar="DIR")
    parser.add_argument("--crash-after-step", type=int, default=None, metavar="N",
                        help="kill the process (SIGKILL) once step N is done and checkpointed")
    parser.add_argument("--params-out", type=Path, default=None, metavar="FILE.npz",
                        help="write the final parameters here")
    args = parser.parse_args(argv)
    error = cannot_write("--checkpoint-dir", args.checkpoint_dir)
    if error:
        parser.error(error)
    loop = TrainingLoop(SIZES[args.size], args.variant, log=lambda line: print(line, flush=True))
    outcome = loop.run(args.checkpoint_dir, crash_after_step=args.crash_after_step)
    print(f"trained steps {outcome.start_step}..{loop.size.steps} in {outcome.wall_s:.3g} s; "
          f"checkpoints kept: {outcome.checkpoints_kept}; eval loss {outcome.eval_loss:.4f}", flush=True)
    if args.params_out:
        save_params(outcome.state, args.params_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
