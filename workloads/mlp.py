"""MLP classifier (Flax NNX) on synthetic, seeded data, trained with AdamW.

Input layer -> `num_blocks` hidden layers of width `hidden` (a `BlockStack`) -> class logits.
Labels come from a fixed random linear teacher, so the task is learnable.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxbench.workloads.contract import Workload
from jaxbench.workloads.layers import BlockStack


@dataclass(frozen=True)
class MLPSize:
    """Shapes of one MLP preset: `features` -> `hidden` x (1 + `num_blocks`) -> `classes`."""

    features: int
    hidden: int
    num_blocks: int  # hidden->hidden layers after the input layer (all stacked and scanned)
    classes: int
    batch_size: int
    learning_rate: float = 1e-3


SIZES = {  # each sized for its target: `workloads.contract.SIZE_TARGETS`
    "tiny": MLPSize(features=16, hidden=32, num_blocks=2, classes=10, batch_size=8),
    # The CPU reference shape (see the workloads table, docs/workloads.md): 784 -> 512 x 3 -> 10, batch 128.
    "small": MLPSize(features=784, hidden=512, num_blocks=2, classes=10, batch_size=128),
    "medium": MLPSize(features=784, hidden=2048, num_blocks=3, classes=10, batch_size=1024),
    # About 0.5 B parameters: keeps one GPU's matmul units busy.
    "large": MLPSize(features=1024, hidden=8192, num_blocks=7, classes=1000, batch_size=4096),
}


class HiddenLayer(nnx.Module):
    """Dense + ReLU, width preserved (one block of the stack)."""

    def __init__(self, width: int, rngs: nnx.Rngs):
        self.dense = nnx.Linear(width, width, rngs=rngs)

    def __call__(self, x):
        return jax.nn.relu(self.dense(x))


class MLP(nnx.Module):
    """The classifier; called on one example (`features`,) or a batch (..., `features`)."""

    def __init__(self, size: MLPSize, rngs: nnx.Rngs):
        self.input_layer = nnx.Linear(size.features, size.hidden, rngs=rngs)
        self.hidden_layers = BlockStack(lambda r: HiddenLayer(size.hidden, r), size.num_blocks, rngs)
        self.output_layer = nnx.Linear(size.hidden, size.classes, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.relu(self.input_layer(x))
        return self.output_layer(self.hidden_layers(x))


def make_batch(size: MLPSize, key):
    """(inputs float32[B, features], labels int32[B]) drawn from a fixed linear teacher."""
    data_key, teacher_key = jax.random.split(key)
    inputs = jax.random.normal(data_key, (size.batch_size, size.features), jnp.float32)
    teacher = jax.random.normal(teacher_key, (size.features, size.classes), jnp.float32)
    labels = jnp.argmax(inputs @ teacher, axis=-1).astype(jnp.int32)
    return inputs, labels


def example_loss(model: MLP, inputs, label):
    """Softmax cross-entropy of one example (logits taken to float32 first)."""
    logits = model(inputs).astype(jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, label)


def example_predict(model: MLP, inputs):
    """Class logits of one example."""
    return model(inputs)


def make_optimizer(size: MLPSize) -> optax.GradientTransformation:
    """AdamW with a small weight decay."""
    return optax.adamw(size.learning_rate, weight_decay=1e-4)


def matmul_params(size: MLPSize) -> int:
    """Weights that take part in a matmul per example (biases and activations not counted)."""
    return (
        size.features * size.hidden
        + size.num_blocks * size.hidden * size.hidden
        + size.hidden * size.classes
    )


def flops_per_step(size: MLPSize, mode: str) -> float:
    """Analytic FLOPs: 2 per weight per example forward; training adds 4 for the backward pass."""
    per_example_forward = 2 * matmul_params(size)
    factor = 3 if mode == "train" else 1
    return float(factor * per_example_forward * size.batch_size)


WORKLOAD = Workload(
    name="mlp",
    sizes=SIZES,
    modes=("train", "infer"),
    build_model=MLP,
    make_batch=make_batch,
    example_loss=example_loss,
    example_predict=example_predict,
    make_optimizer=make_optimizer,
    flops_per_step=flops_per_step,
    layouts=("data", "fsdp"),
)
