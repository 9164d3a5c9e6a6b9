"""One forward pass for a round that both decodes the batch and prefills a prompt chunk (#25).

mlx-lm runs such a round as two passes, the decoding rows' and the chunk's, and each reads every
weight. Decoding a few rows is bound by that read, so its pass costs a large share of a small
chunk's: pacing the chunk to keep the streams' gap short then slowed the prompt by half. Here
each layer's projections and MLP take both groups' tokens as one matrix (one read of the weight);
attention stays per group, with each group's own cache and mask, through the model's own
attention module (its projections handed the rows already computed). Only the pre-norm blocks
of the families below, whose layers are laid out alike; any other model keeps two passes.
"""

from __future__ import annotations

from itertools import accumulate

import mlx.core as mx
from mlx_lm.models.base import create_attention_mask

FAMILIES = {"llama", "qwen2", "qwen3", "qwen3_moe"}  # mistral loads as llama
PROJECTIONS = ("q_proj", "k_proj", "v_proj")


def enabled() -> bool:
    from inference import conf

    return str(conf.get("LMX_MIXED_ROUNDS")).lower() == "on"


def supported(model) -> bool:
    """Whether `model` is a single-process model of a family laid out as this module expects."""
    inner = getattr(model, "model", None)
    if getattr(getattr(model, "args", None), "model_type", None) not in FAMILIES or inner is None:
        return False
    if getattr(inner, "pipeline_size", 1) != 1 or getattr(inner, "swa_idx", None) is not None:
        return False
    layer = inner.layers[0]
    attn = getattr(layer, "self_attn", None)
    return all(hasattr(layer, n) for n in ("input_layernorm", "post_attention_layernorm", "mlp")) and all(
        hasattr(attn, n) for n in (*PROJECTIONS, "o_proj")
    )


def _joint(fn, xs: list[mx.array]) -> list[mx.array]:
    """`fn` applied to the tokens of all of `xs` as one (1, tokens, dims) input, split back."""
    flat = [x.reshape(-1, x.shape[-1]) for x in xs]
    y = fn(mx.concatenate(flat, axis=0)[None])[0]
    parts = mx.split(y, list(accumulate(f.shape[0] for f in flat[:-1])), axis=0)
    return [p.reshape(*x.shape[:-1], p.shape[-1]) for p, x in zip(parts, xs, strict=True)]


class _Given:
    """Stands in for a projection whose rows were computed with the other group's."""

    def __init__(self, out: mx.array):
        self.out = out

    def __call__(self, x: mx.array) -> mx.array:
        return self.out


def _unprojected(x: mx.array) -> mx.array:  # o_proj's stand-in: its input, projected jointly after
    return x


def _attention(attn, x: mx.array, given: list[mx.array], mask, cache) -> mx.array:
    """The model's attention for one group, up to (not including) its output projection."""
    own = vars(attn)
    for name, out in zip(PROJECTIONS, given, strict=True):
        own[name] = _Given(out)  # shadows the child module for this call only
    own["o_proj"] = _unprojected
    try:
        return attn(x, mask, cache)
    finally:
        for name in (*PROJECTIONS, "o_proj"):
            del own[name]


def forward(model, groups: list[tuple[mx.array, list]]) -> list[mx.array]:
    """The final hidden states (after the last norm) of each group of token rows (batch, length)
    fed after its own per-layer caches, all in one pass: `groups` is [(tokens, caches), ...]."""
    inner = model.model
    hs = [inner.embed_tokens(tokens) for tokens, _ in groups]
    masks = [create_attention_mask(h, caches[0]) for h, (_, caches) in zip(hs, groups, strict=True)]
    for i, layer in enumerate(inner.layers):
        attn = layer.self_attn
        normed = [layer.input_layernorm(h) for h in hs]
        projected = [_joint(getattr(attn, name), normed) for name in PROJECTIONS]
        outs = [
            _attention(attn, x, [p[g] for p in projected], masks[g], groups[g][1][i])
            for g, x in enumerate(normed)
        ]
        hs = [h + o for h, o in zip(hs, _joint(attn.o_proj, outs), strict=True)]
        mlp = _joint(layer.mlp, [layer.post_attention_layernorm(h) for h in hs])
        hs = [h + m for h, m in zip(hs, mlp, strict=True)]
    return [inner.norm(h) for h in hs]


def logits(model, hidden: mx.array) -> mx.array:
    """The model's output head on final hidden states."""
    if model.args.tie_word_embeddings:
        return model.model.embed_tokens.as_linear(hidden)
    return model.lm_head(hidden)
