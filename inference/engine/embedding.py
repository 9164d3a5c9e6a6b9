"""Embeddings on the engine thread: the model's last hidden state (after its final norm), pooled
over the input's tokens and scaled to unit length (inference.retrieval says how to pool)."""

from __future__ import annotations

import mlx.core as mx

from inference.engine.host import to_host
from inference.errors import InvalidRequest


def embed_tokens(model, token_lists: list[list[int]], *, pooling: str) -> list[list[float]]:
    """Unit-length embeddings, one per token list."""
    backbone = getattr(model, "model", None)
    if not callable(backbone):
        raise InvalidRequest("This model does not expose its hidden states, so it cannot embed text.")
    vectors = []
    for tokens in token_lists:
        hidden = backbone(mx.array([tokens], dtype=mx.uint32))[0].astype(mx.float32)
        pooled = {"last": hidden[-1], "first": hidden[0]}.get(pooling)
        if pooled is None:
            pooled = hidden.mean(axis=0)
        vectors.append(to_host(pooled / mx.maximum(mx.linalg.norm(pooled), 1e-12)).tolist())
    return vectors
