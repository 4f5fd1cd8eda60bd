"""A residual MLP regressor: a workload of your own, benchmarked by jaxbench like its own.

The module defines `WORKLOAD`, a `jaxbench.Workload`: the model is written per example
(jaxbench batches, differentiates, compiles and shards it in each of its variants), with size
presets, a seeded batch, an Optax optimizer and the step's analytic FLOPs. Its repeated blocks are
a `BlockStack`, so the `remat` variant has something to rematerialise.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxbench import BlockStack, Workload


@dataclass(frozen=True)
class Size:
    """`features` -> `width`, then `num_blocks` residual blocks width -> hidden -> width, -> 1."""

    features: int
    width: int
    hidden: int
    num_blocks: int
    batch_size: int


SIZES = {  # jaxbench needs every preset: tiny (its tests), small (a CPU), medium, large (a GPU)
    "tiny": Size(features=16, width=32, hidden=64, num_blocks=2, batch_size=8),
    "small": Size(features=256, width=256, hidden=1024, num_blocks=2, batch_size=128),
    "medium": Size(features=512, width=1024, hidden=4096, num_blocks=4, batch_size=512),
    "large": Size(features=1024, width=2048, hidden=8192, num_blocks=8, batch_size=2048),
}


class Block(nnx.Module):
    """x + W2 gelu(W1 layer_norm(x))."""

    def __init__(self, size: Size, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(size.width, rngs=rngs)
        self.up = nnx.Linear(size.width, size.hidden, rngs=rngs)
        self.down = nnx.Linear(size.hidden, size.width, rngs=rngs)

    def __call__(self, x):
        return x + self.down(jax.nn.gelu(self.up(self.norm(x))))


class WideMLP(nnx.Module):
    """The regressor, on one example (`features`,) -> a scalar."""

    def __init__(self, size: Size, rngs: nnx.Rngs):
        self.embed = nnx.Linear(size.features, size.width, rngs=rngs)
        self.blocks = BlockStack(lambda r: Block(size, r), size.num_blocks, rngs)
        self.head = nnx.Linear(size.width, 1, rngs=rngs)

    def __call__(self, x):
        return self.head(self.blocks(self.embed(x)))[..., 0]


def make_batch(size: Size, key):
    """(inputs float32[B, features], targets float32[B]): a fixed smooth function of the inputs."""
    data_key, teacher_key = jax.random.split(key)
    inputs = jax.random.normal(data_key, (size.batch_size, size.features), jnp.float32)
    teacher = jax.random.normal(teacher_key, (size.features,), jnp.float32) / jnp.sqrt(size.features)
    return inputs, jnp.sin(inputs @ teacher)


def example_loss(model: WideMLP, inputs, target):
    """Squared error of one example."""
    return (model(inputs).astype(jnp.float32) - target) ** 2


def example_predict(model: WideMLP, inputs):
    """The prediction for one example."""
    return model(inputs)


def make_optimizer(size: Size) -> optax.GradientTransformation:
    """Adam."""
    return optax.adam(1e-3)


def flops_per_step(size: Size, mode: str) -> float:
    """2 FLOPs per matmul weight per example forward; training three times that."""
    weights = size.features * size.width + size.num_blocks * 2 * size.width * size.hidden + size.width
    return float((3 if mode == "train" else 1) * 2 * weights * size.batch_size)


WORKLOAD = Workload(
    name="wide_mlp",
    sizes=SIZES,
    modes=("train", "infer"),
    build_model=WideMLP,
    make_batch=make_batch,
    example_loss=example_loss,
    example_predict=example_predict,
    make_optimizer=make_optimizer,
    flops_per_step=flops_per_step,
)
