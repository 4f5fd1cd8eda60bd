"""One `multi_device` train step of the transformer at `tiny` in each of `--layouts`, in this process
alone or as one of several (`--coordinator`); process 0 saves each layout's loss and updated
parameters (gathered from every process) to `OUT/<layout>.npz`. Run by tests/test_distributed.py
as a script."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu-devices", type=int, required=True)
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    parser.add_argument("--layouts", default="data")
    parser.add_argument("--out", required=True, help="the folder each layout's .npz goes to")
    args = parser.parse_args()
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    if args.coordinator:
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                                   initialization_timeout=60, heartbeat_timeout_seconds=60)

    from bench.distributed import to_host
    from workloads import get_workload
    from workloads.steps import build_step

    for layout in args.layouts.split(","):
        step = build_step(get_workload("transformer"), "tiny", "train", "multi_device", layout=layout)
        step()
        result = to_host(step.result())
        step.free()
        if jax.process_index() == 0:
            leaves = jax.tree_util.tree_leaves_with_path(result["params"])
            np.savez(Path(args.out) / f"{layout}.npz", loss=result["loss"], devices=jax.device_count(),
                     **{jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves})


if __name__ == "__main__":
    main()
