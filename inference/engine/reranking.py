"""A causal reranker's scores (engine thread): the model reads a query-document prompt built as
its card says (inference.retrieval) and answers "yes" or "no"; the score is the probability of
"yes" against "no" at the last position, as Qwen3-Reranker's card computes it."""

from __future__ import annotations

import mlx.core as mx

from inference.engine.host import to_host


def yes_no_scores(model, token_lists: list[list[int]], *, yes: int, no: int) -> list[float]:
    """P(yes) / (P(yes) + P(no)) after each prompt, one forward pass per prompt."""
    scores = []
    for tokens in token_lists:
        logits = model(mx.array([tokens], dtype=mx.uint32))[0, -1].astype(mx.float32)
        pair = mx.softmax(mx.stack([logits[no], logits[yes]]), axis=-1)
        scores.append(float(to_host(pair[1]).item()))
    return scores
