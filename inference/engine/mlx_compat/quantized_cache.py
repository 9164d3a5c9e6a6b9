"""A quantized KV cache the continuous batch can hold (a load's `kv_bits`).

mlx-lm quantizes a single request's KV cache (QuantizedKVCache, attention through
`quantized_matmul`) but its batch needs caches that merge rows, pad them on the left, filter and
extend them and give each row back (BatchKVCache), and it has no quantized one. BatchQuantizedKVCache
is BatchKVCache's bookkeeping over QuantizedKVCache's storage: keys and values are (packed
values, scales, biases) triples, every operation along the token axis applied to each of the
three. RowQuantizedKVCache is mlx-lm's QuantizedKVCache with the `merge` the batch calls.
Written against mlx-lm 0.32.2's cache classes.
"""

from __future__ import annotations

import mlx.core as mx
from mlx.utils import tree_map, tree_reduce
from mlx_lm.models.base import create_causal_mask
from mlx_lm.models.cache import QuantizedKVCache, _BaseCache, dynamic_roll, make_prompt_cache

from inference.engine import mlx_compat

BITS = (4, 8)


def group_size_for(head_dim: int) -> int | None:
    """The quantization group along a head's dimensions: 32, not mlx-lm's 64, which at 8 bits
    already changed the default model's greedy answer to a plain question (docs/ARCHITECTURE.md)."""
    return 32 if head_dim % 32 == 0 else None


def refusal(model, bits: int) -> str | None:
    """Why `model` cannot keep its KV cache in `bits` bits, or None if it can."""
    if bits not in BITS:
        return f"kv_bits must be one of {', '.join(map(str, BITS))}."
    if not mlx_compat.active():
        return f"kv_bits needs mlx-lm {', '.join(mlx_compat.WRITTEN_FOR)}, the version LMX's batched quantized cache was written for."
    kinds = {type(c).__name__ for c in make_prompt_cache(model)}
    if kinds != {"KVCache"}:
        return (
            f"kv_bits needs a model whose every layer keeps a plain KV cache; this one uses "
            f"{', '.join(sorted(kinds))} (sliding windows or recurrent state cannot be quantized)."
        )
    if group_size_for(head_dim_of(model)) is None:
        return f"kv_bits needs attention heads of a multiple of 32 dimensions; this model's have {head_dim_of(model)}."
    return None


def new_cache(model, *, bits: int) -> list[RowQuantizedKVCache]:
    """One request's empty cache: a quantized cache for each layer."""
    group = group_size_for(head_dim_of(model))
    return [RowQuantizedKVCache(group_size=group, bits=bits) for _ in make_prompt_cache(model)]


def head_dim_of(model) -> int:
    """The dimension of one attention head, from the model's arguments."""
    args = model.args
    return int(getattr(args, "head_dim", None) or args.hidden_size // args.num_attention_heads)


class RowQuantizedKVCache(QuantizedKVCache):
    """One request's quantized cache; merges into a BatchQuantizedKVCache."""

    def size(self):
        return self.offset

    @property
    def nbytes(self):
        return 0 if self.keys is None else super().nbytes  # mlx-lm's fails on an empty one

    @classmethod
    def merge(cls, caches):
        return BatchQuantizedKVCache.merge(caches)


class BatchQuantizedKVCache(_BaseCache):
    """Left-padded rows of quantized keys and values (see mlx-lm's BatchKVCache)."""

    step = 256

    def __init__(self, left_padding: list[int], *, group_size: int, bits: int):
        self.keys = None  # (packed, scales, biases), each (batch, kv heads, tokens, ·)
        self.values = None
        self.left_padding = mx.array(left_padding)
        self.offset = mx.array([-p for p in left_padding])
        self.group_size = group_size
        self.bits = bits
        self._idx = 0
        self._right_padding = None

    def _empty_triple(self, batch: int, heads: int, steps: int, dim: int, dtype) -> tuple:
        per_int = 8 * mx.uint32.size // self.bits
        shape = (batch, heads, steps)
        return (
            mx.zeros((*shape, dim // per_int), dtype=mx.uint32),
            mx.zeros((*shape, dim // self.group_size), dtype=dtype),
            mx.zeros((*shape, dim // self.group_size), dtype=dtype),
        )

    def update_and_fetch(self, keys, values):
        prev = self._idx
        if self.keys is None or prev + keys.shape[2] > self.keys[0].shape[2]:
            batch, heads, _, k_dim = keys.shape
            steps = (self.step + keys.shape[2] - 1) // self.step * self.step
            new_k = self._empty_triple(batch, heads, steps, k_dim, keys.dtype)
            new_v = self._empty_triple(batch, heads, steps, values.shape[3], values.dtype)
            if self.keys is None:
                self.keys, self.values = new_k, new_v
            else:
                if prev % self.step != 0:
                    self.keys, self.values = tree_map(lambda x: x[..., :prev, :], (self.keys, self.values))
                self.keys, self.values = tree_map(
                    lambda a, b: mx.concatenate([a, b], axis=2), (self.keys, self.values), (new_k, new_v)
                )
        self.offset = self.offset + keys.shape[2]
        self._idx += keys.shape[2]
        q_keys = mx.quantize(keys, group_size=self.group_size, bits=self.bits)
        q_values = mx.quantize(values, group_size=self.group_size, bits=self.bits)
        for i in range(3):
            self.keys[i][..., prev : self._idx, :] = q_keys[i]
            self.values[i][..., prev : self._idx, :] = q_values[i]
        return self.keys_and_values()

    def keys_and_values(self):
        return tree_map(lambda x: x[..., : self._idx, :], (self.keys, self.values))

    def prepare(self, *, left_padding=None, lengths=None, right_padding=None):
        if left_padding is not None:
            if self.keys is not None:
                raise ValueError("Left padding can only be added to an empty BatchQuantizedKVCache")
            left_padding = mx.array(left_padding)
            self.left_padding += left_padding
            self.offset = self.offset - left_padding
        if right_padding is not None and max(right_padding) > 0:
            self._right_padding = mx.array(right_padding)

    def finalize(self):
        if self._right_padding is not None:
            padding = self._right_padding
            self.keys, self.values = tree_map(
                lambda x: dynamic_roll(x, padding[:, None], axis=2), (self.keys, self.values)
            )
            self.offset = self.offset - padding
            self.left_padding += padding
            self._right_padding = None

    @property
    def state(self):
        return self.keys, self.values, self.offset, self.left_padding

    @state.setter
    def state(self, v):
        self.keys, self.values, self.offset, self.left_padding = v

    def is_trimmable(self):
        return True

    def trim(self, n):
        n = min(self._idx, n)
        self._idx -= n
        self.offset = self.offset - n
        return n

    def make_mask(self, N: int, return_array: bool = False, **kwargs):
        return create_causal_mask(N, offset=self._idx, left_padding=self.left_padding, **kwargs)

    def filter(self, batch_indices):
        if self.keys is not None:
            self.keys, self.values = tree_map(lambda x: x[batch_indices], (self.keys, self.values))
        self.offset = self.offset[batch_indices]
        self.left_padding = self.left_padding[batch_indices]
        shift = min(self.left_padding.tolist())  # padding every row has is dropped
        if shift > 0:
            if self.keys is not None:
                self.keys, self.values = tree_map(lambda x: x[..., shift:, :], (self.keys, self.values))
            self._idx -= shift
            self.left_padding -= shift

    def extend(self, other):
        if self.keys is None and other.keys is None:
            self.left_padding = mx.concatenate([self.left_padding, other.left_padding])
            self.offset = mx.concatenate([self.offset, other.offset])
            return
        max_idx = max(self._idx, other._idx)
        some = self if self.keys is not None else other
        max_size = max(c.keys[0].shape[2] for c in (self, other) if c.keys is not None)

        def pad(c):
            if c.keys is None:  # rows with nothing cached yet: zero-length triples of the same kind
                rows = c.offset.shape[0]
                keys, values = tree_map(
                    lambda x: mx.zeros((rows, x.shape[1], 0, x.shape[3]), x.dtype), (some.keys, some.values)
                )
            else:
                keys, values = c.keys, c.values
            left = max_idx - c._idx
            right = max_size - keys[0].shape[2] - left
            if right < 0:
                keys, values = tree_map(lambda x: x[..., :right, :], (keys, values))
                right = 0
            if left or right:
                keys, values = tree_map(
                    lambda x: mx.pad(x, [(0, 0), (0, 0), (left, right), (0, 0)]), (keys, values)
                )
            return keys, values, c.offset, c.left_padding + left

        (k1, v1, o1, p1), (k2, v2, o2, p2) = pad(self), pad(other)
        self.keys, self.values = tree_map(lambda a, b: mx.concatenate([a, b]), (k1, v1), (k2, v2))
        self.offset = mx.concatenate([o1, o2])
        self.left_padding = mx.concatenate([p1, p2])
        self._idx = max_idx

    def extract(self, idx):
        cache = RowQuantizedKVCache(group_size=self.group_size, bits=self.bits)
        padding = self.left_padding.tolist()[idx]
        cache.keys, cache.values = tree_map(
            lambda x: mx.contiguous(x[idx : idx + 1, :, padding : self._idx]), (self.keys, self.values)
        )
        cache.offset = cache.keys[0].shape[2]
        return cache

    @classmethod
    def merge(cls, caches):
        lengths = [c.offset for c in caches]
        longest = max(lengths)
        some = next((c for c in caches if c.keys is not None), caches[0])
        padding = [longest - n for n in lengths]
        merged = cls(padding, group_size=some.group_size, bits=some.bits)
        if longest == 0:
            return merged
        rows = len(caches)
        keys, values = tree_map(
            lambda x: mx.zeros((rows, x.shape[1], longest, x.shape[3]), x.dtype), (some.keys, some.values)
        )
        for i, (p, c) in enumerate(zip(padding, caches, strict=True)):
            if c.keys is None or c.offset == 0:
                continue
            for part in range(3):
                keys[part][i : i + 1, :, p : p + c.offset] = c.keys[part][..., : c.offset, :]
                values[part][i : i + 1, :, p : p + c.offset] = c.values[part][..., : c.offset, :]
        merged.keys, merged.values = keys, values
        merged.offset += longest
        merged._idx = longest
        return merged

    def size(self):
        return self._idx

    def empty(self):
        return self.keys is None

    @property
    def nbytes(self):
        if self.keys is None:
            return 0
        return tree_reduce(lambda total, x: total + x.nbytes, (self.keys, self.values), 0)
