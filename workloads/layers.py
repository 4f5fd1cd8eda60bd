"""Building blocks shared by the workloads' models.

`BlockStack` holds L identical blocks with their parameters stacked on a leading axis. Compiled
steps run them with `lax.scan`: scanning is what lets rematerialisation save memory on XLA:CPU,
and it keeps compile time flat in depth. The variants choose how a stack runs
(`configure_stacks`), so a workload gets rematerialisation by building its repeated blocks with a
`BlockStack`:

- `scan` (compiled variants): one `lax.scan` over the blocks;
- `scan` + `remat` (the `remat` variant): the scanned block under `jax.checkpoint`;
- a Python loop over the blocks (eager variants): in eager mode `lax.scan` compiles its body
  again on every call (about 200 ms against 21 ms for one per-example gradient of the MLP at
  `small`), which would time JAX's eager scan instead of the model.
- a loop in compiled steps too, for a stack built with `scannable=False`: XLA:CPU runs the
  backward pass of convolutions inside a scan's while loop about 20x slower than unrolled
  (the ResNet at `small`: 2.7 s against 0.12 s per gradient). `remat` still scans such a
  stack, because on XLA:CPU a checkpointed loop saves nothing (the ResNet at `small`: 82 MiB
  unrolled against 76 MiB without remat, 33 MiB scanned) — the report then shows both the
  memory saved and the time it costs there.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx


class BlockStack(nnx.Module):
    """`num_blocks` blocks made by `make_block(rngs)`, parameters stacked, run in sequence by a scan."""

    def __init__(self, make_block: Callable[[nnx.Rngs], nnx.Module], num_blocks: int, rngs: nnx.Rngs,
                 *, scannable: bool = True):
        @nnx.split_rngs(splits=num_blocks)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def create(rngs):
            return make_block(rngs)

        self.blocks = create(rngs)
        self.num_blocks = num_blocks
        self.scannable = scannable  # False: always a loop (see the module doc for convolutions)
        self.scan = True
        self.remat = False

    def __call__(self, x):
        """Apply the blocks in order; each block maps `x` to an `x` of the same shape."""
        return self.run(x, lambda block, x, _: (block(x), None))[0]

    def run(self, x, apply: Callable, per_block=None):
        """Thread `x` through the blocks with `apply(block, x, block_input) -> (x, block_output)`.

        `per_block` is a pytree with a leading axis of `num_blocks` (block i gets slice i), or None.
        Returns (x, the block outputs stacked on a leading axis) — a decoder's per-layer caches go
        in and come out this way.
        """
        graphdef, stacked = nnx.split(self.blocks)

        def apply_block(carry, block_and_input):
            block_state, block_input = block_and_input
            block = nnx.merge(graphdef, block_state, copy=True)  # fresh variables: BatchNorm may update them
            carry, output = apply(block, carry, block_input)
            return carry, (output, nnx.state(block, nnx.BatchStat))  # BatchNorm's updated statistics

        if self.remat:
            # Save only each block's input; recompute its activations in the backward pass.
            apply_block = jax.checkpoint(apply_block)
        if self.scan and (self.scannable or self.remat):
            x, (outputs, statistics) = jax.lax.scan(apply_block, x, (stacked, per_block))
        else:
            results = []
            for index in range(self.num_blocks):
                block = jax.tree.map(lambda leaf: leaf[index], (stacked, per_block))  # noqa: B023 - used at once
                x, result = apply_block(x, block)
                results.append(result)
            outputs, statistics = jax.tree.map(lambda *leaves: jnp.stack(leaves), *results)
        if jax.tree.leaves(statistics):
            nnx.update(self.blocks, statistics)
        return x, outputs


def configure_stacks(model: nnx.Module, *, scan: bool, remat: bool) -> int:
    """Set how every `BlockStack` in `model` runs (see module doc); returns how many there are."""
    stacks = [module for _, module in nnx.iter_modules(model) if isinstance(module, BlockStack)]
    for stack in stacks:
        stack.scan = scan
        stack.remat = remat
    return len(stacks)
