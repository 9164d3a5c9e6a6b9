"""From a request's sampling fields to what mlx-lm's generators take: a sampler, logits
processors and stop tokens (engine thread)."""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx

from inference.wire import GenerationRequest


def sampler(request: GenerationRequest):
    """Greedy at temperature 0 (None: the generator's own argmax); otherwise top-k and top-p sampling,
    with a private key when seeded so the same seed gives the same text whatever else shares
    the batch."""
    from mlx_lm.sample_utils import apply_top_k, apply_top_p

    if request.temperature <= 0:
        return None
    inv_temp = 1.0 / request.temperature
    top_p, top_k = request.top_p, request.top_k
    state = {"key": mx.random.key(request.seed) if request.seed is not None else None}

    def sample(logprobs: mx.array) -> mx.array:
        if top_k > 0:
            logprobs = apply_top_k(logprobs, top_k)
        if 0 < top_p < 1:
            logprobs = apply_top_p(logprobs, top_p)
        if state["key"] is None:
            return mx.random.categorical(logprobs * inv_temp)
        state["key"], sub = mx.random.split(state["key"])
        return mx.random.categorical(logprobs * inv_temp, key=sub)

    return sample


def processors(request: GenerationRequest, *, grammar_tokenizer: Callable[[], object] | None = None):
    """Penalties and biases, then the grammar's mask (last: nothing may lift a masked token)."""
    from mlx_lm.sample_utils import make_logits_processors

    chain = make_logits_processors(
        logit_bias=request.logit_bias,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
    )
    if request.grammar is not None:
        from inference.engine.grammar import GrammarProcessor

        chain.append(GrammarProcessor(grammar_tokenizer(), request.grammar))
    return chain


def stop_tokens(tokenizer, request: GenerationRequest) -> list[int]:
    return [] if request.ignore_eos else list(tokenizer.eos_token_ids)
