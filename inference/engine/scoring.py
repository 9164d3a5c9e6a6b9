"""A prompt's own log-probabilities: how likely the model finds each token after the ones before
it (completions' `echo` with `logprobs`, what lm-evaluation-harness asks for log-likelihoods).
Engine thread, in chunks through a KV cache so a long prompt's logits never exist all at once."""

from __future__ import annotations

import mlx.core as mx

from inference.engine.host import to_host

CHUNK = 512


def score_tokens(model, tokens: list[int], top: int, token_text) -> list[tuple]:
    """For each token: (its text, its log-probability after the ones before it, the `top` most
    likely tokens there as (text, log-probability), best first); the first has no log-probability."""
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    out = [(token_text(tokens[0]), None, [])]
    for start in range(0, len(tokens) - 1, CHUNK):
        chunk = tokens[start : start + CHUNK]
        following = mx.array(tokens[start + 1 : start + 1 + len(chunk)], dtype=mx.int32)
        logits = model(mx.array([chunk], dtype=mx.uint32), cache=cache)[0, : following.size].astype(
            mx.float32
        )
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        chosen = mx.take_along_axis(logprobs, following[:, None], axis=-1)[:, 0]
        if top:
            ids = mx.argpartition(-logprobs, top - 1, axis=-1)[:, :top]
            values = mx.take_along_axis(logprobs, ids, axis=-1)
            ids, values = to_host(ids).tolist(), to_host(values).tolist()
        chosen = to_host(chosen).tolist()
        for row, value in enumerate(chosen):
            alternatives = sorted(zip(ids[row], values[row], strict=True), key=lambda p: -p[1]) if top else []
            token = tokens[start + 1 + row]
            out.append((token_text(token), value, [(token_text(t), v) for t, v in alternatives]))
    return out
