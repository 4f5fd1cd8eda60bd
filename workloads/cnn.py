"""ResNet-style image classifier (Flax NNX) on synthetic, seeded images, trained with SGD + momentum.

Stem convolution -> stages of residual blocks (the first block of a stage after the first
halves the resolution and widens the channels; the rest are identical and stacked in a
`BlockStack`, so `remat` applies; unrolled rather than scanned, see `workloads/layers.py`) ->
global average pooling -> linear classifier. GroupNorm throughout, so each example is
normalised on its own and every variant computes the same function example by example.
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
class CNNSize:
    """Shapes of one preset: `image` x `image` x 3 inputs, one stage per entry of `channels`."""

    image: int
    channels: tuple[int, ...]
    blocks_per_stage: int  # residual blocks per stage (the first of a later stage downsamples)
    classes: int
    batch_size: int
    learning_rate: float = 0.05


LAYOUTS_BY_DEFAULT = ("data",)
"""The CNNs' `multi_device` layouts in a run without `--every-layout`: `data` only. Their training
state is a small share of a train step's memory (the activations are most of it), so `data`, which
splits the batch, already shows most of what sharding buys; `fsdp`, which splits the state too,
would add a train step of seconds to compile to the default run for little (the MLP's and the
transformer's `fsdp` steps check the `sharding` claim on split state)."""

SIZES = {  # each sized for its target: `workloads.contract.SIZE_TARGETS`
    "tiny": CNNSize(image=8, channels=(8, 16), blocks_per_stage=2, classes=10, batch_size=8),
    # Batch 8: a CPU's eager per-example baseline of this model is slow (docs/measurements.md).
    "small": CNNSize(image=32, channels=(16, 32, 64), blocks_per_stage=3, classes=10, batch_size=8),
    "medium": CNNSize(image=64, channels=(64, 128, 256), blocks_per_stage=4, classes=100, batch_size=64),
    # ResNet-34-like widths at 128 x 128: keeps one GPU busy.
    "large": CNNSize(image=128, channels=(64, 128, 256, 512), blocks_per_stage=4, classes=1000, batch_size=192),
}

GROUPS = 4  # GroupNorm groups (every width above divides by 4)


def normalisation(channels: int, norm: str, rngs: nnx.Rngs) -> nnx.Module:
    """GroupNorm (`group`: per example) or BatchNorm (`batch`: statistics over the batch)."""
    if norm == "batch":
        return nnx.BatchNorm(channels, momentum=0.9, rngs=rngs)
    return nnx.GroupNorm(channels, num_groups=GROUPS, rngs=rngs)


class ResidualBlock(nnx.Module):
    """conv-norm-relu-conv-norm + shortcut, then relu; `stride` 2 halves the resolution."""

    def __init__(self, c_in: int, c_out: int, stride: int, rngs: nnx.Rngs, norm: str = "group"):
        self.conv1 = nnx.Conv(c_in, c_out, (3, 3), strides=stride, use_bias=False, rngs=rngs)
        self.norm1 = normalisation(c_out, norm, rngs)
        self.conv2 = nnx.Conv(c_out, c_out, (3, 3), use_bias=False, rngs=rngs)
        self.norm2 = normalisation(c_out, norm, rngs)
        self.shortcut = (nnx.Conv(c_in, c_out, (1, 1), strides=stride, use_bias=False, rngs=rngs)
                         if stride != 1 or c_in != c_out else None)

    def __call__(self, x):
        y = jax.nn.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return jax.nn.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


class ResNet(nnx.Module):
    """The classifier: `model(image)` for one image [H, W, 3] -> logits [classes];
    `model.features(images)` for a batch [B, H, W, 3] -> logits [B, classes]."""

    def __init__(self, size: CNNSize, rngs: nnx.Rngs, norm: str = "group"):
        self.stem = nnx.Conv(3, size.channels[0], (3, 3), use_bias=False, rngs=rngs)
        self.stem_norm = normalisation(size.channels[0], norm, rngs)
        self.transitions = nnx.List([
            ResidualBlock(c_in, c_out, 2, rngs, norm) for c_in, c_out in zip(size.channels, size.channels[1:])
        ])
        repeats = [size.blocks_per_stage] + [size.blocks_per_stage - 1] * (len(size.channels) - 1)
        self.stages = nnx.List([
            # Not scanned: XLA:CPU's backward pass of convolutions in a scan is ~20x slower (layers.py).
            BlockStack(lambda r, c=c: ResidualBlock(c, c, 1, r, norm), n, rngs, scannable=False)
            for c, n in zip(size.channels, repeats)
        ])
        self.head = nnx.Linear(size.channels[-1], size.classes, rngs=rngs)

    def __call__(self, image):
        return self.features(image[None])[0]  # the norms expect a batch axis: a batch of one

    def features(self, images):
        x = jax.nn.relu(self.stem_norm(self.stem(images)))
        x = self.stages[0](x)
        for transition, stage in zip(self.transitions, self.stages[1:]):
            x = stage(transition(x))
        return self.head(jnp.mean(x, axis=(1, 2)))


def make_batch(size: CNNSize, key):
    """(images float32[B, H, W, 3], labels int32[B]) from a fixed random linear teacher."""
    image_key, teacher_key = jax.random.split(key)
    images = jax.random.normal(image_key, (size.batch_size, size.image, size.image, 3), jnp.float32)
    teacher = jax.random.normal(teacher_key, (size.image * size.image * 3, size.classes), jnp.float32)
    labels = jnp.argmax(images.reshape(size.batch_size, -1) @ teacher, axis=-1).astype(jnp.int32)
    return images, labels


def example_loss(model: ResNet, image, label):
    """Softmax cross-entropy of one image (logits in float32)."""
    return optax.softmax_cross_entropy_with_integer_labels(model(image).astype(jnp.float32), label)


def example_predict(model: ResNet, image):
    """Class logits of one image."""
    return model(image)


def batch_loss(model: ResNet, images, labels):
    """Mean softmax cross-entropy of a batch (the BatchNorm configuration has no per-example form)."""
    logits = model.features(images).astype(jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def batch_predict(model: ResNet, images):
    """Class logits of a batch."""
    return model.features(images)


def set_mode(model: ResNet, mode: str) -> None:
    """BatchNorm normalises with the batch's statistics in `train`, the running averages otherwise."""
    for _, module in nnx.iter_modules(model):
        if isinstance(module, nnx.BatchNorm):
            module.use_running_average = mode != "train"


def make_optimizer(size: CNNSize) -> optax.GradientTransformation:
    """SGD with Nesterov momentum and weight decay."""
    return optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(size.learning_rate, momentum=0.9, nesterov=True))


def _taps(kernel: int, stride: int, size_in: int, count_padding: bool) -> int:
    """Kernel taps summed over the output positions of one spatial axis ('SAME' padding)."""
    size_out = -(-size_in // stride)
    if count_padding:
        return size_out * kernel
    pad_low = max((size_out - 1) * stride + kernel - size_in, 0) // 2
    return sum(0 <= o * stride + j - pad_low < size_in for o in range(size_out) for j in range(kernel))


def conv_flops_per_example(size: CNNSize, count_padding: bool = True) -> int:
    """Forward FLOPs (2 per multiply-add) of every convolution and the head, for one image.

    `count_padding=True` is the nominal count (every output position uses the whole kernel),
    the usual basis of MFU; False counts only the taps that land inside the image, which is
    what XLA's cost analysis reports.
    """
    def conv(k, c_in, c_out, res_in, stride=1):
        return 2 * c_in * c_out * _taps(k, stride, res_in, count_padding) ** 2

    flops, resolution = conv(3, 3, size.channels[0], size.image), size.image
    for stage, c in enumerate(size.channels):
        blocks = size.blocks_per_stage
        if stage > 0:
            c_in = size.channels[stage - 1]
            flops += conv(3, c_in, c, resolution, 2) + conv(1, c_in, c, resolution, 2)
            resolution //= 2
            flops += conv(3, c, c, resolution)
            blocks -= 1
        flops += blocks * 2 * conv(3, c, c, resolution)
    return flops + 2 * size.channels[-1] * size.classes


def flops_per_step(size: CNNSize, mode: str) -> float:
    """Analytic (nominal) FLOPs: convolutions and head forward per image; training is 3x the forward."""
    forward = conv_flops_per_example(size) * size.batch_size
    return float(3 * forward if mode == "train" else forward)


WORKLOAD_BATCHNORM = Workload(
    name="cnn_batchnorm",
    sizes=SIZES,
    modes=("train", "infer"),
    build_model=lambda size, rngs: ResNet(size, rngs, norm="batch"),
    make_batch=make_batch,
    example_loss=None,
    example_predict=None,
    batch_loss=batch_loss,
    batch_predict=batch_predict,
    set_mode=set_mode,
    make_optimizer=make_optimizer,
    flops_per_step=flops_per_step,
    layouts=("data", "fsdp"),
    default_layouts=LAYOUTS_BY_DEFAULT,
)
"""The same ResNet with BatchNorm: running statistics are state, carried through the step."""

WORKLOAD = Workload(
    name="cnn",
    sizes=SIZES,
    modes=("train", "infer"),
    build_model=ResNet,
    make_batch=make_batch,
    example_loss=example_loss,
    example_predict=example_predict,
    make_optimizer=make_optimizer,
    flops_per_step=flops_per_step,
    layouts=("data", "fsdp"),
    default_layouts=LAYOUTS_BY_DEFAULT,
)
