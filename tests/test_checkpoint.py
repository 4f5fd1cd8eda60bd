"""The Orbax workflow: what is restored is exactly what was saved, shardings included."""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
import pytest

from jaxbench.workloads import checkpoint
from jaxbench.workloads.contract import IncorrectResult


@pytest.fixture(scope="module")
def saved_and_restored(tmp_path_factory):
    """variant -> (result, metrics) of one tiny run of each variant."""
    out = {}
    for variant in ("sync", "multi_device"):
        workdir = tmp_path_factory.mktemp(variant)
        with checkpoint.start_run("tiny", variant, workdir) as run:
            run()
            out[variant] = run.result(), run.metrics()
        assert list(workdir.iterdir()) == []  # the run removed its checkpoints
    return out


@pytest.mark.slow
def test_sharded_state_is_restored_with_its_sharding(saved_and_restored):
    result, _ = saved_and_restored["multi_device"]
    checkpoint.check(result, saved_and_restored["sync"][0])
    restored = jax.tree.leaves(result["restored"])
    assert {len(leaf.sharding.device_set) for leaf in restored} == {8}
    sharded = [leaf for leaf in restored if not leaf.sharding.is_fully_replicated]
    assert sharded  # some weights really are split over the devices
    assert all(leaf.addressable_shards[0].data.shape[-1] * 8 == leaf.shape[-1] for leaf in sharded)


@pytest.mark.slow
def test_metrics_count_the_state_and_the_files(saved_and_restored):
    result, metrics = saved_and_restored["sync"]
    assert metrics["state_bytes"] == sum(leaf.nbytes for leaf in jax.tree.leaves(result["saved"]))
    assert metrics["disk_bytes"] > 0.5 * metrics["state_bytes"]
    assert metrics["save_blocking_s"] == metrics["save_s"]  # synchronous: durable when save returns


def _with_first_leaf(tree, change):
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(treedef, [change(leaves[0])] + leaves[1:])


@pytest.mark.slow
@pytest.mark.parametrize("change,message", [
    (lambda a: a * 2 + 1, "restored values differ"),
    (lambda a: a.astype(np.float16), "dtype float16"),
    (lambda a: jax.device_put(a, jax.devices()[1]), "restored with sharding"),
])
def test_check_fails_a_wrong_restore(saved_and_restored, change, message):
    result, _ = saved_and_restored["sync"]
    broken = dict(result, restored=_with_first_leaf(result["restored"], change))
    with pytest.raises(IncorrectResult, match=message):
        checkpoint.check(broken, result)



def _resident_pages(path) -> int:
    """Pages of the file at `path` that are in the OS's page cache: Linux's `mincore` over a
    (copy-on-write, never written) mapping of it."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    with open(path, "rb") as handle:
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    pages = (len(mapping) + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vector = (ctypes.c_ubyte * pages)()
    start = ctypes.c_char.from_buffer(mapping)
    try:
        assert libc.mincore(ctypes.c_void_p(ctypes.addressof(start)), ctypes.c_size_t(len(mapping)), vector) == 0
    finally:
        del start
        mapping.close()
    return sum(byte & 1 for byte in vector)


@pytest.mark.skipif(sys.platform != "linux", reason="Linux's posix_fadvise and mincore")
def test_evicted_files_are_read_from_the_disk(tmp_path):
    """`restore_s` reads what `evict_from_page_cache` dropped from the page cache: no page of the
    files is resident after it (they were all resident after the write)."""
    files = [tmp_path / "a", tmp_path / "sub" / "b"]
    files[1].parent.mkdir()
    for file in files:
        file.write_bytes(os.urandom(1 << 20))
    import mmap

    assert all(_resident_pages(file) == (1 << 20) // mmap.PAGESIZE for file in files)
    assert checkpoint.evict_from_page_cache(tmp_path)
    assert [_resident_pages(file) for file in files] == [0, 0]
