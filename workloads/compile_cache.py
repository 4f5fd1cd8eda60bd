"""Cold and cached compilation: a step's first compilation is cold, into an empty persistent
cache folder of its own, and a second one, after the in-memory caches are cleared, is what a
user's next start pays with the cache on.

`enable(folder)` once, before anything compiles (JAX's persistent cache for everything else this
process compiles); then `compile_both(fn, args, ...)` compiles cold and, where `enable` was asked
for the `second` compilation, clears JAX's in-memory caches and compiles again from the persistent
cache. `reuse(folder)` instead: every compilation, a step's included, reads from and writes to a
cache kept between runs, and none is timed cold. `off(reason)`: no persistent cache at all.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

_timed_folder: Path | None = None
"""The folder `enable` gave, whose entries tell a cold compilation from a cached one; None where
`enable` was not called. Module state because what it mirrors is: JAX's persistent cache is one
per process."""


_second: bool = False
"""Whether `compile_both` compiles a second time, from the cache (`enable`'s `second`)."""

_reused: str | None = None
"""The note `compile_both` gives each compilation after `reuse(folder)`, None before: module state for
the same reason as `_timed_folder`."""

_off: str | None = None
"""Why this process keeps no persistent cache (`off`), None where nothing turned it off."""


def use_persistent_cache(folder: Path) -> None:
    """Keep every compilation of this process in JAX's persistent cache at `folder` (made if
    missing), however small or quick, and read compilations from it (from now on: JAX opens its
    cache once, so one opened before is reset)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    compilation_cache.reset_cache()


def enable(folder: Path, second: bool = True) -> None:
    """`use_persistent_cache(folder)`; each step's compilation is cold (`compile_both`) and, with
    `second`, timed a second time from the cache (a compilation more per step: a run asks for it)."""
    global _timed_folder, _second
    use_persistent_cache(folder)
    _timed_folder, _second = Path(folder), second


def reuse(folder: Path) -> None:
    """`use_persistent_cache(folder)` for every compilation, a step's included: its seconds are then
    those of whatever the cache held (often a read, not a compilation), and `compile_both` says so
    in `cache` and gives no cached figure. For quick runs that repeat programs (the suite's own
    tests), never for compile figures."""
    global _reused
    use_persistent_cache(folder)
    _reused = f"read through the kept cache at {folder}: not a cold compile"


def off(reason: str) -> None:
    """Keep no persistent cache in this process, whatever JAX was configured with: nothing is
    written to it or read back; `compile_both` gives `reason` as each compilation's note."""
    global _off
    jax.config.update("jax_enable_compilation_cache", False)
    _off = reason


def reused() -> str | None:
    """The note of every compilation after `reuse` in this process (each read through a kept cache,
    none cold), None where `reuse` was not called."""
    return _reused


def enabled() -> bool:
    """Whether `enable` was called in this process."""
    return _timed_folder is not None


def _entries(folder: Path) -> int:
    return sum(1 for path in folder.rglob("*") if path.is_file())


@dataclass(frozen=True)
class Compilation:
    """A function compiled ahead of time, with the seconds of its cold compilation and of a second
    one from the persistent cache (None, with the reason in `cache`, where there was none)."""

    compiled: object
    cold_s: float
    cached_s: float | None
    cache: str | None  # "hit", or why there is no cached figure; None where none was asked for


def timed_compile(fn, args, jit_options: dict):
    """`jax.jit(fn, **jit_options)` lowered and compiled for `args`: (compiled, seconds it took)."""
    start = time.perf_counter()
    compiled = jax.jit(fn, **jit_options).lower(*args).compile()
    return compiled, time.perf_counter() - start


def compile_both(fn, args, jit_options: dict) -> Compilation:
    """`jax.jit(fn, **jit_options)` lowered and compiled for `args`, timed cold; then, where the
    cache is enabled (`enable`) with its `second` compilation, timed again after
    `jax.clear_caches()`, from the persistent cache (else `cache` is None: nothing to say).
    Both compilations use a cache folder of their own (`cold_compiles`), so the first is cold
    whatever this process compiled before and whatever its own cache holds (a cache shared
    between runs, as the suite's tests keep, included). Where JAX wrote no cache entry (a
    platform or version without the persistent cache), the second compilation is not made and
    `cache` says so; likewise where the second compilation wrote one again (it missed the cache).
    After `reuse`, one compilation through the kept cache, which `cache` names."""
    if _reused:
        compiled, seconds = timed_compile(fn, args, jit_options)
        return Compilation(compiled, seconds, None, _reused)
    if _timed_folder is None:
        compiled, cold_s = timed_compile(fn, args, jit_options)
        return Compilation(compiled, cold_s, None, _off or "no persistent cache in this process")
    folder = Path(tempfile.mkdtemp(prefix="cold-", dir=_timed_folder))  # in the folder a run removes
    try:
        with cold_compiles(folder):
            compiled, cold_s = timed_compile(fn, args, jit_options)
            if not _second:
                return Compilation(compiled, cold_s, None, None)
            written = _entries(folder)
            if not written:
                return Compilation(compiled, cold_s, None, f"JAX {jax.__version__} on {jax.default_backend()} "
                                   "wrote no persistent cache entry")
            jax.clear_caches()  # only the persistent cache can spare the second compilation its work
            _, cached_s = timed_compile(fn, args, jit_options)
            if _entries(folder) > written:  # compiled afresh and written again: it missed
                return Compilation(compiled, cold_s, None, "the second compilation missed the persistent cache")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Compilation(compiled, cold_s, cached_s, "hit")


@contextlib.contextmanager
def cold_compiles(folder: Path):
    """Compile in the block as a fresh job does: JAX's in-memory caches cleared and, where this
    process keeps a persistent cache, that cache swapped for an empty one at `folder` for the
    block (a program compiled before in this process, or by a run before it, would otherwise be
    read back from the disk). The process's own cache is back in use after the block."""
    jax.clear_caches()
    kept = jax.config.jax_compilation_cache_dir
    if kept is None:
        yield
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    compilation_cache.reset_cache()  # JAX opens its cache once, at the first compile, and keeps it
    try:
        yield
    finally:
        jax.config.update("jax_compilation_cache_dir", kept)
        compilation_cache.reset_cache()
