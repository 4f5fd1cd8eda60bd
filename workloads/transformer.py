"""Decoder-only Transformer language model (Flax NNX) on synthetic, seeded token sequences.

Token + position embeddings -> `num_layers` pre-norm blocks (causal multi-head self-attention,
GELU MLP), stacked in a `BlockStack` so they run as one scan -> final layer norm -> logits
through the tied embedding. Next-token cross-entropy, AdamW with warm-up + cosine schedule.

Modes: `train`, `infer` (logits for a batch of sequences) and `decode`: greedy generation of
`decode_tokens` new tokens after a prompt, with a key/value cache (`generate`), reported in
tokens per second.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxbench.workloads.contract import LAYOUTS, Workload
from jaxbench.workloads.layers import BlockStack


@dataclass(frozen=True)
class TransformerSize:
    """Shapes of one preset."""

    vocab: int
    d_model: int
    num_layers: int
    num_heads: int
    seq_len: int  # training / inference context
    batch_size: int
    prompt_len: int  # decode: prompt tokens taken from each sequence
    decode_tokens: int  # decode: new tokens generated
    learning_rate: float = 3e-4
    warmup_steps: int = 100
    total_steps: int = 10_000


SIZES = {  # each sized for its target: `workloads.contract.SIZE_TARGETS`
    "tiny": TransformerSize(vocab=64, d_model=32, num_layers=2, num_heads=2, seq_len=16, batch_size=8,
                            prompt_len=4, decode_tokens=6),
    # The CPU reference shape: a 4-layer, d=256 LM over 256 tokens of an 8192-token vocabulary.
    "small": TransformerSize(vocab=8192, d_model=256, num_layers=4, num_heads=4, seq_len=256, batch_size=8,
                             prompt_len=32, decode_tokens=8),
    "medium": TransformerSize(vocab=32768, d_model=1024, num_layers=8, num_heads=16, seq_len=512,
                              batch_size=8, prompt_len=64, decode_tokens=64),
    # About 1.1 B parameters (12 * 2048^2 * 20 + 32768 * 2048), float32 with Adam's moments.
    "large": TransformerSize(vocab=32768, d_model=2048, num_layers=20, num_heads=16, seq_len=512,
                             batch_size=8, prompt_len=128, decode_tokens=128),
}


class CausalSelfAttention(nnx.Module):
    """Multi-head self-attention over one sequence [S, d], each position seeing only its past."""

    def __init__(self, d_model: int, num_heads: int, rngs: nnx.Rngs):
        self.qkv = nnx.Linear(d_model, 3 * d_model, rngs=rngs)
        self.out = nnx.Linear(d_model, d_model, rngs=rngs)
        self.num_heads = num_heads

    def project(self, x):
        """q, k, v of `x` [S, d], each [S, heads, d / heads]."""
        q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
        return (t.reshape(*t.shape[:-1], self.num_heads, -1) for t in (q, k, v))

    def attend(self, q, k, v, visible):
        """Attention of queries q [Q, H, D] over keys/values [K, H, D]; `visible` [Q, K] masks."""
        scores = jnp.einsum("qhd,khd->hqk", q, k) / jnp.sqrt(q.shape[-1]).astype(q.dtype)
        scores = jnp.where(visible, scores.astype(jnp.float32), -1e30)
        weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        mixed = jnp.einsum("hqk,khd->qhd", weights, v)
        return self.out(mixed.reshape(*mixed.shape[:-2], -1))

    def __call__(self, x):
        q, k, v = self.project(x)
        positions = jnp.arange(x.shape[0])
        return self.attend(q, k, v, positions[:, None] >= positions[None, :])


class Block(nnx.Module):
    """Pre-norm Transformer block: x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, d_model: int, num_heads: int, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(d_model, rngs=rngs)
        self.attention = CausalSelfAttention(d_model, num_heads, rngs)
        self.norm2 = nnx.LayerNorm(d_model, rngs=rngs)
        self.mlp_in = nnx.Linear(d_model, 4 * d_model, rngs=rngs)
        self.mlp_out = nnx.Linear(4 * d_model, d_model, rngs=rngs)

    def mlp(self, x):
        return self.mlp_out(jax.nn.gelu(self.mlp_in(self.norm2(x))))

    def __call__(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(x)

    def decode_step(self, x, cache, position):
        """One new position x [1, d] against this layer's cache (k, v [max_len, H, D]) -> (x, cache)."""
        q, k, v = self.attention.project(self.norm1(x))
        k_cache = jax.lax.dynamic_update_slice_in_dim(cache[0], k.astype(cache[0].dtype), position, axis=0)
        v_cache = jax.lax.dynamic_update_slice_in_dim(cache[1], v.astype(cache[1].dtype), position, axis=0)
        visible = (jnp.arange(k_cache.shape[0]) <= position)[None, :]
        x = x + self.attention.attend(q, k_cache, v_cache, visible)
        return x + self.mlp(x), (k_cache, v_cache)

    def prefill(self, x, cache):
        """The prompt x [P, d] through this layer, its keys/values written into the cache's start."""
        q, k, v = self.attention.project(self.norm1(x))
        positions = jnp.arange(x.shape[0])
        x = x + self.attention.attend(q, k, v, positions[:, None] >= positions[None, :])
        cache = tuple(jax.lax.dynamic_update_slice_in_dim(c, t.astype(c.dtype), 0, axis=0)
                      for c, t in zip(cache, (k, v)))
        return x + self.mlp(x), cache


class TransformerLM(nnx.Module):
    """The language model, called on one token sequence [S] -> logits [S, vocab]."""

    def __init__(self, size: TransformerSize, rngs: nnx.Rngs):
        self.size = size
        self.embed = nnx.Embed(size.vocab, size.d_model, rngs=rngs)
        self.positions = nnx.Embed(size.seq_len, size.d_model, rngs=rngs)
        self.blocks = BlockStack(lambda r: Block(size.d_model, size.num_heads, r), size.num_layers, rngs)
        self.final_norm = nnx.LayerNorm(size.d_model, rngs=rngs)

    def logits(self, x):
        return self.embed.attend(self.final_norm(x))  # output head tied to the token embedding

    def __call__(self, tokens, start: int | jax.Array = 0):
        positions = start + jnp.arange(tokens.shape[0])
        x = self.embed(tokens) + self.positions(positions)
        return self.logits(self.blocks(x))


def _greedy(logits):
    return jnp.argmax(logits.astype(jnp.float32), axis=-1).astype(jnp.int32)


def _token_loop(stack: BlockStack, step, carry, count: int):
    """`count` decoding steps: a scan in compiled steps, a Python loop in eager ones (like the stack)."""
    if stack.scan:
        return jax.lax.scan(lambda c, _: step(c), carry, None, length=count)[1]
    tokens = []
    for _ in range(count):
        carry, token = step(carry)
        tokens.append(token)
    return jnp.stack(tokens)


def generate(model: TransformerLM, prompt, new_tokens: int, use_cache: bool = True):
    """Greedy decoding of `new_tokens` tokens after `prompt` [P]; returns them [new_tokens].

    With the cache, each step runs one position through the layers against the stored keys and
    values; without it, each step reruns the whole sequence so far (the reference it must match).
    """
    size = model.size
    length = prompt.shape[0] + new_tokens
    if not use_cache:
        buffer = jnp.zeros(length, jnp.int32).at[: prompt.shape[0]].set(prompt)

        def step(carry):
            buffer, position = carry
            token = _greedy(model(buffer)[position - 1])
            return (buffer.at[position].set(token), position + 1), token

        return _token_loop(model.blocks, step, (buffer, jnp.int32(prompt.shape[0])), new_tokens)

    x = model.embed(prompt) + model.positions(jnp.arange(prompt.shape[0]))
    cache_shape = (size.num_layers, length, size.num_heads, size.d_model // size.num_heads)
    cache = (jnp.zeros(cache_shape, x.dtype), jnp.zeros(cache_shape, x.dtype))
    x, cache = model.blocks.run(x, lambda block, x, layer_cache: block.prefill(x, layer_cache), cache)
    first = _greedy(model.logits(x[-1]))

    def step(carry):
        token, position, cache = carry
        x = model.embed(token[None]) + model.positions(position[None])
        x, cache = model.blocks.run(x, lambda block, x, c: block.decode_step(x, c, position), cache)
        next_token = _greedy(model.logits(x[0]))
        return (next_token, position + 1, cache), token

    return _token_loop(model.blocks, step, (first, jnp.int32(prompt.shape[0]), cache), new_tokens)


def make_batch(size: TransformerSize, key):
    """(inputs int32[B, S], targets int32[B, S]): random token sequences, targets shifted by one."""
    tokens = jax.random.randint(key, (size.batch_size, size.seq_len + 1), 0, size.vocab, jnp.int32)
    return tokens[:, :-1], tokens[:, 1:]


def example_loss(model: TransformerLM, inputs, targets):
    """Mean next-token cross-entropy over one sequence (logits in float32)."""
    logits = model(inputs).astype(jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def example_predict(model: TransformerLM, inputs):
    """Logits [S, vocab] of one sequence."""
    return model(inputs)


def example_decode(model: TransformerLM, inputs):
    """Greedy continuation (with the cache) of the first `prompt_len` tokens of one sequence."""
    size = model.size
    return generate(model, inputs[: size.prompt_len], size.decode_tokens)


def make_optimizer(size: TransformerSize) -> optax.GradientTransformation:
    """AdamW on a linear warm-up + cosine decay schedule (starting at a tenth of the peak)."""
    schedule = optax.warmup_cosine_decay_schedule(
        size.learning_rate / 10, size.learning_rate, size.warmup_steps, size.total_steps)
    return optax.adamw(schedule, weight_decay=0.1)


def matmul_params(size: TransformerSize) -> int:
    """Weights in matmuls per token: qkv 3d^2 + out d^2 + MLP 8d^2 per layer, and the d x vocab head."""
    return 12 * size.d_model**2 * size.num_layers + size.d_model * size.vocab


def flops_per_step(size: TransformerSize, mode: str) -> float:
    """Analytic FLOPs of one step: what the step computes, 2 per weight per token in a matmul and
    4 S^2 d per layer for QK^T and AV.

    Training is 3x the forward (backward twice the forward). Decoding counts the prompt's prefill
    through the blocks, the d x vocab head for the last prompt position only (`generate` takes
    the logits of `x[-1]`), then each new token's step: 2 per weight (blocks and head) + 4 d per
    layer per cache position (the masked cache is attended in full).
    """
    if mode == "decode":
        head = size.d_model * size.vocab
        prefill = _forward_flops(size, size.prompt_len) - 2 * head * (size.prompt_len - 1)
        cache_length = size.prompt_len + size.decode_tokens  # each step attends over the whole cache
        steps = size.decode_tokens * (2 * matmul_params(size) + 4 * size.d_model * size.num_layers * cache_length)
        return float(size.batch_size * (prefill + steps))
    forward = size.batch_size * _forward_flops(size, size.seq_len)
    return float(3 * forward if mode == "train" else forward)


def _forward_flops(size: TransformerSize, length: int) -> float:
    """Forward FLOPs of one sequence of `length` tokens, logits at every position."""
    return 2 * matmul_params(size) * length + 4 * size.num_layers * length**2 * size.d_model


def items_per_step(size: TransformerSize, mode: str) -> tuple[int, str]:
    """Tokens per step: every position for `train` / `infer`, the new tokens for `decode`."""
    per_sequence = size.decode_tokens if mode == "decode" else size.seq_len
    return size.batch_size * per_sequence, "tokens"


WORKLOAD = Workload(
    name="transformer",
    sizes=SIZES,
    modes=("train", "infer", "decode"),
    build_model=TransformerLM,
    make_batch=make_batch,
    example_loss=example_loss,
    example_predict=example_predict,
    example_decode=example_decode,
    make_optimizer=make_optimizer,
    flops_per_step=flops_per_step,
    items_per_step=items_per_step,
    layouts=LAYOUTS,
)
