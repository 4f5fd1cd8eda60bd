"""How a `multi_device` step is laid out on a (data, model) device mesh.

A layout (`LAYOUTS`) names what is split over which mesh axis:

- `data`: the batch over `data`; parameters and optimizer state replicated on every device;
- `model`: each weight matrix's last dimension over `model`; the batch replicated;
- `data_model`: both: the batch over `data`, weights over `model`;
- `fsdp`: the batch over `data` and the whole training state (parameters and optimizer state, ZeRO-3
  style) over `data` too: each array split on its largest dimension that the axis divides (on top of
  a `model` split where the mesh has one). Each device holds about 1/N of the state; inside the step
  XLA's partitioner gathers a layer's weights where its matmuls need them (the scan over a stack of
  blocks gathers one block at a time) and reduce-scatters the gradients back onto the state's split.

The mesh's shape is the layout's own default (`data`: all devices on `data`; `model`: all on `model`;
`data_model`: two on `model`; `fsdp`: all on `data`) unless the run chooses one (`--mesh data=4,model=2`),
which every layout then uses; a layout that needs an axis the chosen mesh does not have is not applicable.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxbench.workloads import compat, transforms
from jaxbench.workloads.contract import LAYOUTS, NotApplicable

MESH_AXES = ("data", "model")
"""The mesh's axes, in order."""


@dataclass(frozen=True)
class MeshShape:
    """How many devices lie along each mesh axis."""

    data: int
    model: int

    @property
    def size(self) -> int:
        """The device count the mesh spans."""
        return self.data * self.model

    def __str__(self) -> str:
        return ",".join(f"{axis}={getattr(self, axis)}" for axis in MESH_AXES)


def parse_mesh(text: str) -> MeshShape:
    """`data=4,model=2` as a `MeshShape` (an axis left out has size 1); `ValueError` with one line
    naming the bad part and the valid form otherwise."""
    sizes = {}
    for part in filter(None, (part.strip() for part in text.split(","))):
        axis, equals, value = part.partition("=")
        if axis not in MESH_AXES:
            raise ValueError(f"unknown mesh axis {axis!r} in {text!r}; valid axes: {', '.join(MESH_AXES)} "
                             "(e.g. data=4,model=2)")
        if not equals or not value.isdigit() or int(value) < 1:
            raise ValueError(f"mesh axis {part!r} needs a whole size >= 1 (e.g. data=4,model=2)")
        if axis in sizes:
            raise ValueError(f"mesh axis {axis!r} given twice in {text!r}")
        sizes[axis] = int(value)
    if not sizes:
        raise ValueError(f"empty mesh {text!r}; give axis sizes, e.g. data=4,model=2")
    return MeshShape(**{axis: sizes.get(axis, 1) for axis in MESH_AXES})


def _needs(layout: str) -> tuple[str, ...]:
    """The mesh axes `layout` splits something over."""
    return {"data": ("data",), "model": ("model",), "data_model": ("data", "model"), "fsdp": ("data",)}[layout]


def mesh_shape(layout: str, n_devices: int, chosen: MeshShape | None = None) -> MeshShape:
    """The mesh `layout` runs on over `n_devices`: `chosen` where the run chose one, else the
    layout's default. `NotApplicable` with the reason where it cannot apply."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    if n_devices < 2:
        raise NotApplicable("only one device: nothing to shard over")
    if chosen is None:
        if layout == "data_model" and n_devices % 2:
            raise NotApplicable(f"{n_devices} devices do not split into a model axis of 2")
        model = {"model": n_devices, "data_model": 2}.get(layout, 1)
        chosen = MeshShape(n_devices // model, model)
    elif chosen.size != n_devices:
        raise NotApplicable(f"the mesh {chosen} spans {chosen.size} devices, not the {n_devices} here")
    flat = [axis for axis in _needs(layout) if getattr(chosen, axis) < 2]
    if flat:
        raise NotApplicable(f"the mesh {chosen} has no {' or '.join(flat)} axis to split over")
    return chosen


DEFAULT_LAYOUTS = ("data", "fsdp")
"""The layouts of the default run (`layouts_for` unless `every`): the state replicated against the
state split, which is what the `sharding` memory claim is checked on."""


def layouts_for(workload, mode: str, every: bool = True) -> tuple[str, ...]:
    """The layouts `workload`'s `multi_device` step is measured in for `mode`: the workload's
    `layouts`, `fsdp` in `train` only (it splits the training state; a forward pass has no
    optimizer state, and `data` or `model` already say what splitting the weights buys there).
    Unless `every`, those of them in the workload's `default_layouts`, else in `DEFAULT_LAYOUTS`
    (or the workload's first, where it has none of them): a forward pass in `data` only, a train
    step in `data` and `fsdp`."""
    layouts = tuple(layout for layout in workload.layouts if layout != "fsdp" or mode == "train")
    if every:
        return layouts
    default = DEFAULT_LAYOUTS if workload.default_layouts is None else workload.default_layouts
    return tuple(layout for layout in layouts if layout in default) or layouts[:1]


def shards_batch(layout: str) -> bool:
    """Whether `layout` splits the batch over the `data` axis (all but `model`)."""
    return "data" in _needs(layout)


def model_axis_spec(array, model_size: int) -> PartitionSpec:
    """Weights over the `model` axis: a matrix's last dimension split when it divides, else replicated."""
    if array.ndim >= 2 and model_size > 1 and array.shape[-1] % model_size == 0:
        return PartitionSpec(*([None] * (array.ndim - 1)), "model")
    return PartitionSpec()


def fsdp_spec(array, shape: MeshShape) -> PartitionSpec:
    """A training-state array under `fsdp`: its `model` split (`model_axis_spec`), then its largest
    remaining dimension that the `data` axis divides split over `data` (the last of equals); an
    array with no such dimension (a scalar step count, a bias of 10 classes on 4 devices) stays
    replicated."""
    spec = list(model_axis_spec(array, shape.model)) or [None] * array.ndim
    spec += [None] * (array.ndim - len(spec))
    free = [dim for dim in range(array.ndim) if spec[dim] is None and array.shape[dim] % shape.data == 0]
    if free:
        spec[max(free, key=lambda dim: (array.shape[dim], dim))] = "data"
    return PartitionSpec(*spec) if any(spec) else PartitionSpec()


def state_spec(layout: str, array, shape: MeshShape) -> PartitionSpec:
    """How `layout` splits one array of the state (parameters, optimizer state, model state)."""
    if layout == "fsdp":
        return fsdp_spec(array, shape)
    if "model" in _needs(layout):
        return model_axis_spec(array, shape.model)
    return PartitionSpec()


def mesh_of(shape: MeshShape, devices):
    """The (data, model) mesh of `shape` over `devices`."""
    return compat.make_mesh((shape.data, shape.model), MESH_AXES, devices=devices)


def place(tree, mesh, spec_of):
    """`tree`'s arrays put on `mesh`, each with the partition `spec_of(array)` (fresh copies:
    donation-safe)."""
    return jax.tree.map(lambda a: jax.device_put(jnp.copy(a), NamedSharding(mesh, spec_of(a))), tree)


def place_batch(batch, mesh, spec: PartitionSpec):
    """`batch` on `mesh` with partition `spec`. In a run of several processes every process has made
    the same seeded batch, and hands JAX only the rows of its own devices
    (`jax.make_array_from_process_local_data`), as a data loader feeding its host's devices would."""
    if jax.process_count() == 1:
        return place(batch, mesh, lambda array: spec)
    sharding = NamedSharding(mesh, spec)

    def assembled(array):
        host = np.asarray(array)
        spans = {(index[0].indices(host.shape[0])[:2]) for index in
                 sharding.addressable_devices_indices_map(host.shape).values()}
        start, stop = min(s for s, _ in spans), max(e for _, e in spans)
        if sum(e - s for s, e in spans) != stop - start:  # this process's rows are not one block
            return jax.device_put(host, sharding)
        return jax.make_array_from_process_local_data(sharding, host[start:stop], host.shape)

    return jax.tree.map(assembled, batch)


def on_mesh(state, batch, devices, layout: str, chosen: MeshShape | None = None):
    """Place `state` and `batch` on a (data, model) mesh of `devices` as `layout` says, on the
    `chosen` mesh shape or the layout's default (`mesh_shape`).

    Returns (state, batch, mesh, the batch's partition spec). `NotApplicable` where the batch
    does not divide over the `data` axis, or no weight over the `model` axis.
    """
    shape = mesh_shape(layout, len(devices), chosen)
    batch_size = transforms.batch_length(batch)
    if shards_batch(layout) and batch_size % shape.data:
        raise NotApplicable(f"batch {batch_size} does not divide over {shape.data} devices")
    if "model" in _needs(layout) and not any(model_axis_spec(a, shape.model) != PartitionSpec()
                                             for a in jax.tree.leaves(state)):
        raise NotApplicable(f"no weight's last dimension divides over a model axis of {shape.model}")
    mesh = mesh_of(shape, devices)
    state = place(state, mesh, lambda array: state_spec(layout, array, shape))
    batch_spec = PartitionSpec("data") if shards_batch(layout) else PartitionSpec()
    batch = place_batch(batch, mesh, batch_spec)
    return state, batch, mesh, batch_spec


def replicated_bytes(state, min_bytes: int) -> dict[str, int]:
    """Path -> bytes of each array of `state` of at least `min_bytes` that every device holds whole
    (its sharding splits nothing): what `fsdp` must not leave replicated."""
    found = {}
    for path, array in jax.tree_util.tree_leaves_with_path(state):
        if array.nbytes >= min_bytes and array.sharding.is_fully_replicated:
            found[jax.tree_util.keystr(path)] = array.nbytes
    return found
