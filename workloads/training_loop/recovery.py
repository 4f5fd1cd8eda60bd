"""How a training loop resumes: from the latest checkpoint that restores. One that cannot be read
(a partial or corrupted folder) is reported, naming its step and path, moved aside, and the one
before it is tried."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import orbax.checkpoint as ocp


def resume(manager: ocp.CheckpointManager, initial_state, log: Callable[[str], None]) -> tuple[int, tuple]:
    """(step, state) of the latest checkpoint that restores, or (0, the initial state).

    A checkpoint that fails to restore is reported (`log`) with its step and path, moved aside
    (to `<step>.unreadable`, so that saving that step again does not collide with it), and the
    one before it is tried.
    """
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, initial_state)
    try:
        for step in sorted(manager.all_steps(), reverse=True):
            try:
                return step, manager.restore(step, args=ocp.args.StandardRestore(target))
            except Exception as error:  # noqa: BLE001 - any failure to read it makes it unusable
                path = Path(manager.directory) / str(step)
                aside = path.with_name(f"{step}.unreadable")
                path.rename(aside)
                log(f"checkpoint of step {step} at {path} cannot be restored ({_first_line(error)}); "
                         f"moved aside to {aside.name}, trying the one before it")
        return 0, initial_state
    finally:
        manager.reload()


def steps_on_disk(directory: Path) -> list[int]:
    """The steps whose checkpoint folder in `directory` is finished: named by its step alone (Orbax
    writes into a temporary name and renames it when the checkpoint is complete)."""
    return sorted(int(path.name) for path in Path(directory).iterdir() if path.name.isdigit())


def _first_line(error: Exception) -> str:
    """`Type: message`, cut at its first line (and before TensorStore's long spec dump)."""
    message = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {message.split(' See full')[0][:160]}".rstrip(": ")
