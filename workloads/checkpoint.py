"""Checkpointing with Orbax: save and restore a real training state.

The state is the transformer's (`workloads/transformer.py`) at the chosen size after one AdamW
step: parameters and optimizer state (Adam's moments, the schedule's step count). One run saves
it into a new folder, waits until the checkpoint is durable, restores it into fresh arrays, then
removes the folder.

- `sync`: `Checkpointer(StandardCheckpointHandler())`; `save` returns when the files are written.
- `async`: `AsyncCheckpointer`; `save` returns once the arrays are copied off the devices, and the
  files are written in the background until `wait_until_finished()`.
- `multi_device`: `async`, of a state sharded over all devices (each weight's last dimension over
  a `model` axis where it divides): each device's shards are written, and restored with their
  sharding.

`save_blocking_s` is how long `save` holds up the training loop; `save_s` the time until the
checkpoint is durable. They are equal for `sync`. `restore_s` reads the files from the disk: they
are flushed and dropped from the OS's page cache first (`evict_from_page_cache`, not timed), where
the OS allows it (`restore_from_disk`); `restore_cached_s` reads them again, from the page cache, as
a restore right after a save does.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxbench.workloads import WORKFLOW_VARIANTS, sharding, transformer
from jaxbench.workloads.contract import IncorrectResult
from jaxbench.workloads.steps import build_step
from jaxbench.workloads.workflow import RunTimings, Workflow

SIZES = transformer.SIZES
"""The transformer's presets: the checkpoint holds its training state at that size."""


def training_state(size_name: str):
    """(params, opt_state) of the transformer at `size_name` after one `jit_vmap` train step (seeded)."""
    step = build_step(transformer.WORKLOAD, size_name, "train", "jit_vmap")
    step()
    params, opt_state, _ = step.state  # the transformer has no model state
    return params, opt_state


def sharded(state, devices):
    """`state` on a 1 x N (data, model) mesh of `devices`, each weight's last dimension over `model`
    where it divides (replicated otherwise)."""
    shape = sharding.mesh_shape("model", len(devices))
    return sharding.place(state, sharding.mesh_of(shape, devices),
                          lambda array: sharding.model_axis_spec(array, shape.model))


def abstract(state):
    """Shapes, dtypes and shardings of `state`: the target Orbax restores into."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state)


def evict_from_page_cache(path: Path) -> bool:
    """Flush every file under `path` to the disk and drop it from the OS's page cache
    (`posix_fadvise(DONTNEED)`), so that the next read of it comes from the disk. False where the
    OS offers no `posix_fadvise` (macOS, Windows): the files stay cached."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for file in (p for p in path.rglob("*") if p.is_file()):
        descriptor = os.open(file, os.O_RDONLY)
        try:
            os.fsync(descriptor)  # only clean pages can be dropped
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)
    return True


def folder_bytes(path: Path) -> int:
    """Bytes of all files under `path`."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@dataclass
class CheckpointRun(RunTimings):
    """A state and a checkpointer; one call = save (until durable), restore, remove."""

    variant: str
    state: object
    checkpointer: ocp.AbstractCheckpointer
    workdir: Path
    n_devices: int
    compile_s: float | None = None
    restored: object = None
    disk_bytes: int = 0
    runs: int = 0
    from_disk: bool = False  # whether the last restore's files were dropped from the page cache first

    @property
    def state_bytes(self) -> int:
        """Bytes of the state's arrays (global, not per device)."""
        return sum(leaf.nbytes for leaf in jax.tree.leaves(self.state))

    def __call__(self) -> None:
        path = self.workdir / f"run-{self.runs}"
        self.runs += 1
        start = time.perf_counter()
        self.checkpointer.save(path, args=ocp.args.StandardSave(self.state))
        returned = durable = time.perf_counter()  # a synchronous save is durable when it returns
        if isinstance(self.checkpointer, ocp.AsyncCheckpointer):
            self.checkpointer.wait_until_finished()
            durable = time.perf_counter()
        self.from_disk = evict_from_page_cache(path)
        reading = time.perf_counter()
        restored = jax.block_until_ready(self.restore(path))
        read = time.perf_counter()
        jax.block_until_ready(self.restore(path))  # again: the files are in the page cache now
        done = time.perf_counter()
        self.restored, self.disk_bytes = restored, folder_bytes(path)
        shutil.rmtree(path)
        self.record("save_blocking_s", returned - start)
        self.record("save_s", durable - start)
        self.record("restore_s", read - reading)
        self.record("restore_cached_s", done - read)

    def restore(self, path: Path):
        """The state saved at `path`, restored into fresh arrays with the saved state's shardings."""
        return self.checkpointer.restore(path, args=ocp.args.StandardRestore(abstract(self.state)))

    def result(self) -> dict:
        return {"saved": self.state, "restored": self.restored}

    def metrics(self) -> dict[str, float]:
        save_s, restore_s, cached_s = self.median("save_s"), self.median("restore_s"), self.median("restore_cached_s")
        return {
            "state_bytes": self.state_bytes,
            "disk_bytes": self.disk_bytes,
            "save_blocking_s": self.median("save_blocking_s"),
            "save_s": save_s,
            "restore_s": restore_s,
            "restore_cached_s": cached_s,
            "restore_from_disk": self.from_disk,
            "save_GB_per_s": self.state_bytes / save_s / 1e9,
            "restore_GB_per_s": self.state_bytes / restore_s / 1e9,
            "restore_cached_GB_per_s": self.state_bytes / cached_s / 1e9,
        }

    def __exit__(self, *exc) -> None:
        self.checkpointer.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_run(size_name: str, variant: str, workdir: Path, *, devices=None) -> CheckpointRun:
    """The transformer's training state at `size_name` and the checkpointer of `variant`, writing under `workdir`."""
    devices = devices or jax.devices()
    state = training_state(size_name)
    n_devices = 1
    if variant == "multi_device":
        state, n_devices = sharded(state, devices), len(devices)
    handler = ocp.StandardCheckpointHandler()
    checkpointer = ocp.Checkpointer(handler) if variant == "sync" else ocp.AsyncCheckpointer(handler)
    return CheckpointRun(variant, state, checkpointer, Path(workdir) / f"checkpoint-{variant}", n_devices)


def check(result: dict, reference: dict) -> dict[str, float]:
    """Raise `IncorrectResult` unless the restored state equals the saved one exactly: structure,
    dtypes, values and shardings. Returns the arrays compared and how many were wrong.

    `reference` is unused: every variant saves the same deterministic state, so comparing it with
    the reference variant's would compare one function with itself; what each variant must get
    right is its own round trip through the disk."""
    saved, restored = result["saved"], result["restored"]
    if jax.tree.structure(saved) != jax.tree.structure(restored):
        raise IncorrectResult("the restored state's structure differs from the saved one's")
    problems = []
    for (path, before), after in zip(jax.tree_util.tree_leaves_with_path(saved), jax.tree.leaves(restored),
                                     strict=True):
        name = jax.tree_util.keystr(path)
        if before.dtype != after.dtype:
            problems.append(f"{name}: dtype {after.dtype}, saved {before.dtype}")
        elif not np.array_equal(np.asarray(before), np.asarray(after)):
            problems.append(f"{name}: restored values differ from the saved ones")
        elif not after.sharding.is_equivalent_to(before.sharding, before.ndim):
            problems.append(f"{name}: restored with sharding {after.sharding}, saved with {before.sharding}")
    if problems:
        raise IncorrectResult(f"{len(problems)} of {len(jax.tree.leaves(saved))} arrays wrong: "
                              + "; ".join(problems[:5]))
    return {"arrays_compared": len(jax.tree.leaves(saved)), "mismatches": len(problems)}


WORKLOAD = Workflow(name="checkpoint", mode_label="save_restore", sizes=SIZES, variants=WORKFLOW_VARIANTS["checkpoint"],
                    start_run=start_run, check=check, throughput=("save_GB_per_s", "GB"))
