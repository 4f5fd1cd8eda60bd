"""Layouts on a device mesh (workloads/sharding.py): the fully sharded layout, a chosen mesh, and
what does not apply. `pytest tests` runs with 8 virtual CPU devices (`bench.plugin`)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from jaxbench.workloads import LAYOUTS, get_workload
from jaxbench.workloads.contract import NotApplicable
from jaxbench.workloads.sharding import MeshShape, fsdp_spec, mesh_of, mesh_shape, parse_mesh, place, replicated_bytes
from jaxbench.workloads.steps import build_reference_step, build_step, footprint_bytes
from tests.conftest import assert_step_agrees

LM = get_workload("transformer")


@pytest.fixture(scope="module")
def lm_train_baseline():
    step = build_reference_step(LM, "tiny", "train")
    step()
    return step.result()


def test_placed_arrays_are_fresh_copies_that_a_step_may_donate():
    """A replicated array's shard on its source's device, too: donating the placed state (as every
    compiled train step does) leaves the arrays it was placed from intact."""
    mesh = mesh_of(MeshShape(data=len(jax.devices()), model=1), jax.devices())
    tree = {"w": jax.numpy.arange(12.0).reshape(3, 4), "b": jax.numpy.ones(5)}
    placed = place(tree, mesh, lambda array: PartitionSpec())
    assert placed["w"].sharding.is_fully_replicated and len(placed["w"].sharding.device_set) == len(jax.devices())
    doubled = jax.jit(lambda t: jax.tree.map(lambda a: a * 2, t), donate_argnums=0)(placed)
    assert placed["w"].is_deleted() and not tree["w"].is_deleted() and not tree["b"].is_deleted()
    np.testing.assert_array_equal(doubled["w"], 2 * np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(tree["w"], np.arange(12.0).reshape(3, 4))


@pytest.mark.slow
def test_fsdp_splits_every_sizeable_weight_and_moment_over_all_devices():
    step = build_step(LM, "tiny", "train", "multi_device", layout="fsdp")
    params, opt_state, _ = step.state
    assert replicated_bytes((params, opt_state), min_bytes=1024) == {}  # nothing sizeable left whole
    arrays = [a for a in jax.tree.leaves((params, opt_state)) if a.size * a.dtype.itemsize >= 1024]
    assert len(arrays) > 20  # the weights, and Adam's two moments of each
    for array in arrays:
        assert "data" in array.sharding.spec
        local = array.addressable_shards[0].data
        assert local.size * 8 == array.size  # each device holds 1/8 of it
    held = sum(a.addressable_shards[0].data.nbytes for a in jax.tree.leaves((params, opt_state)))
    whole = sum(a.nbytes for a in jax.tree.leaves((params, opt_state)))
    assert held < whole / 7  # about 1/8: only the scalars and the odd small vector stay whole


@pytest.mark.slow
def test_fsdp_needs_at_most_a_third_of_the_single_device_memory():
    """The compiled step's per-device memory (arguments, outputs and temporaries): at `tiny` on 8
    devices fsdp measured 5.2x under jit_vmap's, and under the data layout's, which keeps the state whole."""
    single = footprint_bytes(build_step(LM, "tiny", "train", "jit_vmap").memory)
    fsdp = footprint_bytes(build_step(LM, "tiny", "train", "multi_device", layout="fsdp").memory)
    data = footprint_bytes(build_step(LM, "tiny", "train", "multi_device", layout="data").memory)
    assert fsdp <= single / 3, (fsdp, single)
    assert fsdp < data


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_on_a_chosen_mesh_agrees_with_baseline(layout, lm_train_baseline):
    step = build_step(LM, "tiny", "train", "multi_device", layout=layout, mesh=MeshShape(data=4, model=2))
    assert step.n_devices == 8
    assert dict(step.state[0]["embed"]["embedding"].sharding.mesh.shape) == {"data": 4, "model": 2}
    assert_step_agrees(step, lm_train_baseline, "multi_device")


@pytest.mark.slow
def test_fsdp_applies_to_the_cnn_too():
    """The CNN's fsdp step splits its conv kernels, and its result is baseline's."""
    cnn = get_workload("cnn")
    baseline = build_reference_step(cnn, "tiny", "train")
    baseline()
    step = build_step(cnn, "tiny", "train", "multi_device", layout="fsdp")
    assert replicated_bytes(step.state[:2], min_bytes=4096) == {}
    assert_step_agrees(step, baseline.result(), "multi_device")


def test_fsdp_with_a_model_axis_splits_each_weight_over_both():
    kernel = np.zeros((4, 32, 128), np.float32)  # a stack of 4 blocks' weights
    assert fsdp_spec(kernel, MeshShape(data=8, model=1)) == PartitionSpec(None, None, "data")
    assert fsdp_spec(kernel, MeshShape(data=4, model=2)) == PartitionSpec(None, "data", "model")
    assert fsdp_spec(np.zeros((10,), np.float32), MeshShape(data=4, model=1)) == PartitionSpec()  # 10 classes


@pytest.mark.parametrize("layout,mesh,reason", [
    ("model", MeshShape(8, 1), "the mesh data=8,model=1 has no model axis to split over"),
    ("fsdp", MeshShape(1, 8), "the mesh data=1,model=8 has no data axis to split over"),
    ("data_model", MeshShape(8, 1), "the mesh data=8,model=1 has no model axis to split over"),
])
def test_a_layout_that_needs_an_axis_the_mesh_lacks_is_not_applicable(layout, mesh, reason):
    with pytest.raises(NotApplicable, match=reason):
        build_step(LM, "tiny", "train", "multi_device", layout=layout, mesh=mesh)


def test_default_meshes_of_the_layouts():
    assert [mesh_shape(layout, 8) for layout in LAYOUTS] == [
        MeshShape(8, 1), MeshShape(1, 8), MeshShape(4, 2), MeshShape(8, 1)]
    with pytest.raises(NotApplicable, match="only one device"):
        mesh_shape("fsdp", 1)


@pytest.mark.parametrize("text,message", [
    ("data=4,pipe=2", "unknown mesh axis 'pipe'"),
    ("data=0", "needs a whole size >= 1"),
    ("data", "needs a whole size >= 1"),
    ("data=2,data=4", "given twice"),
    ("", "empty mesh"),
])
def test_bad_meshes(text, message):
    with pytest.raises(ValueError, match=message):
        parse_mesh(text)
    assert parse_mesh("model=2, data=4") == MeshShape(4, 2) and str(MeshShape(4, 2)) == "data=4,model=2"
