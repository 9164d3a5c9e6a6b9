"""Constrained decoding with llguidance: a request's grammar becomes a logits processor that masks
every token the grammar does not allow next, on that request's row of the batch only.

mlx-lm calls a request's logits processors once per step, with the tokens so far and that row's
logits: the first call (after the prompt) has nothing to consume; each later call first feeds the
matcher the token sampled at the step before. Once the grammar is complete only end-of-sequence
tokens are allowed, so the request ends there.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from llguidance import LLMatcher, LLTokenizer

from inference.errors import InvalidRequest


def tokenizer_for(tokenizer, vocab_size: int) -> LLTokenizer:
    """llguidance's view of a model's Hugging Face fast tokenizer (costs ~1 s: cache it per load).
    `vocab_size` is the model's logits width, which may exceed the tokenizer's."""
    backend = tokenizer.backend_tokenizer  # mlx-lm's wrapper passes attributes through
    if backend is None:
        raise InvalidRequest("This model's tokenizer is not a fast tokenizer; it cannot follow a grammar.")
    return LLTokenizer(backend.to_str(), n_vocab=vocab_size, eos_token=sorted(tokenizer.eos_token_ids))


class GrammarProcessor:
    def __init__(self, tokenizer: LLTokenizer, grammar: str):
        self.matcher = LLMatcher(tokenizer, grammar)
        if self.matcher.is_error():
            raise InvalidRequest(f"The grammar cannot be used: {self.matcher.get_error()}")
        self.eos_tokens = list(tokenizer.eos_tokens)
        self._calls = 0

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        mx.async_eval(logits)  # the forward pass runs while the mask is computed on the host
        if self._calls:
            self.matcher.consume_token(int(tokens[-1].item()))
        self._calls += 1
        words = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        allowed = np.unpackbits(words, bitorder="little")[: logits.shape[-1]].astype(bool)
        if allowed.shape[0] < logits.shape[-1]:
            allowed = np.pad(allowed, (0, logits.shape[-1] - allowed.shape[0]))
        if not allowed.any():  # the matcher failed: end the answer rather than sample from nothing
            allowed[self.eos_tokens] = True
        return mx.where(mx.array(allowed), logits, mx.array(-float("inf"), dtype=logits.dtype))
