"""Attention for a short prompt chunk that follows cached tokens (a chat's next turn) on CUDA.

MLX's CUDA backend runs prompt attention through cuDNN, which builds a graph for each new pair
(chunk length, cached + chunk length); a follow-up turn nearly always brings a new pair. Such a
chunk's attention is small, so it is computed here unfused (MLX's own fallback's two matrix
products and softmax), which builds nothing per shape ("Second turn", docs/BENCHMARKS.md). A
whole fresh prompt, a chunk over MAX_SCORES scores, a mask array or attention sinks still take
the fused kernel. mlx-lm's models call `mx.fast.scaled_dot_product_attention` through the module
at each call, so `install` replaces it for this process. LMX_SHORT_ATTENTION: `auto` = on with
CUDA.
"""

from __future__ import annotations

import mlx.core as mx

MAX_SCORES = 1 << 26  # batch x heads x chunk x keys: 128 MB of bfloat16 scores at most

_fused = mx.fast.scaled_dot_product_attention


def enabled() -> bool:
    from inference import conf
    from inference.engine import mlx_compat

    return mlx_compat.active() and conf.on_with_cuda("LMX_SHORT_ATTENTION")


def install(on: bool) -> None:
    """Route mlx-lm's attention through `attention` (on) or straight to MLX's kernel (off)."""
    mx.fast.scaled_dot_product_attention = attention if on else _fused


def attention(queries, keys, values, *, scale, mask=None, sinks=None, **kwargs):
    # Decoding steps (no mask) and the batch (mask arrays) leave at the first test: every layer
    # of every step comes through here.
    if isinstance(mask, str) and mask == "causal" and sinks is None and not kwargs:
        batch, heads, length, _ = queries.shape
        total = keys.shape[2]
        if 1 < length < total and batch * heads * length * total <= MAX_SCORES:
            return unfused_causal(queries, keys, values, scale=scale)
    return _fused(queries, keys, values, scale=scale, mask=mask, sinks=sinks, **kwargs)


def unfused_causal(queries: mx.array, keys: mx.array, values: mx.array, *, scale: float) -> mx.array:
    """Causal attention of the last `length` positions over all `total` keys (the queries are
    the chunk just appended to the cache); grouped key/value heads are shared as in mlx-lm."""
    batch, heads, length, dims = queries.shape
    kv_heads, total = keys.shape[1], keys.shape[2]
    group = heads // kv_heads
    q = (queries * scale).reshape(batch, kv_heads, group * length, dims)
    scores = (q @ keys.swapaxes(-1, -2)).reshape(batch, kv_heads, group, length, total)
    visible = mx.arange(total)[None, :] <= mx.arange(total - length, total)[:, None]
    scores = mx.where(visible, scores, mx.array(-float("inf"), scores.dtype))
    weights = mx.softmax(scores, axis=-1, precise=True).reshape(batch, kv_heads, group * length, total)
    return (weights @ values).reshape(batch, heads, length, values.shape[-1])
