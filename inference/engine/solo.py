"""One request decoded on its own, the way mlx-lm's `generate_step` does it.

A batch of one still pays for the batch (per-sequence RoPE offsets, an attention mask, a
left-padded cache), a third of single-stream speed on a GPU (docs/BENCHMARKS.md). So a request
that arrives while nothing else runs is decoded alone with a plain KV cache; when a second
request comes, `handoff()` moves it into the batch with its cache, losing no token and no step
of its sampler.

Invariant between steps: `cache` holds `tokens`; `pending` is the next token, sampled and
being computed, not yet in the cache nor sent.
"""

from __future__ import annotations

import mlx.core as mx

from inference import conf
from inference.engine import cpu_blas, grammar
from inference.engine.host import to_host
from inference.engine.mlx_compat import batch_layers
from inference.engine.slot import Slot

PREFILL_STEP = 2048


def buckets_enabled() -> bool:
    return conf.on_with_cuda("LMX_PREFILL_BUCKETS")


def bucket(n: int) -> int:
    """The length an n-token prefill chunk is padded to under LMX_PREFILL_BUCKETS: a power of two
    up to 256, then a multiple of 256, so prompts of any length run as one of 16 shapes (MLX's
    CUDA backend pays for its first call at each new length: "Second turn", docs/BENCHMARKS.md)."""
    if n <= 256:
        return 1 << (n - 1).bit_length()
    return -(-n // 256) * 256


BUCKETS = tuple(sorted({bucket(n) for n in range(1, PREFILL_STEP + 1)}))  # the 16 chunk lengths


def tail_limit(backend: str) -> int:
    """The longest prompt rest fed in the same forward pass as its last token.

    mlx-lm's `generate_step` feeds all but the last token, then the last one as a decoding step.
    One pass saves that step but computes logits at every position of the pass; where that pays
    was measured per backend ("Second turn", docs/BENCHMARKS.md)."""
    if not cpu_blas.on_cpu():
        return 256
    return 64 if cpu_blas.BACKEND in backend else 1


def _greedy(logprobs: mx.array) -> mx.array:
    return mx.argmax(logprobs, axis=-1)


class Solo:
    def __init__(self, loaded, slot: Slot, start, *, sampler, processors, stop_tokens: set[int]):
        """`start`: (the cache of a cached prefix of the prompt or None, the tokens still to feed)."""
        from mlx_lm.models.cache import make_prompt_cache

        self.slot = slot
        self.model = loaded.model
        self.sampler = sampler
        self.processors = processors
        # the tokens so far, on the device, for penalties and biases; a grammar is given its
        # token on the host (grammar.advance), so for it alone the array is not kept
        self.keeps_context = any(not isinstance(p, grammar.GrammarProcessor) for p in processors or ())
        self.stop_tokens = stop_tokens
        request = slot.request
        self.remaining = request.max_tokens
        tokens = list(request.prompt_tokens)
        cache, rest = start
        self.cache = cache if cache is not None else make_prompt_cache(self.model)
        self.cached = len(tokens) - len(rest)
        self.tokens = tokens[: self.cached]
        self.context = mx.array(self.tokens, dtype=mx.uint32)  # only for logits processors
        slot.started(self.cached)
        if len(rest) > tail_limit(loaded.backend):
            self._prefill(rest[:-1], total=len(tokens))
            rest = rest[-1:]
        self.pending = self._prefill_and_sample(rest)
        self.tokens.append(rest[-1])

    def _forward(self, chunk: list[int]) -> mx.array:
        """The logits of `chunk` fed after the cache, which then holds it."""
        from mlx_lm.models.cache import KVCache, trim_prompt_cache

        # Only plain caches: a sliding-window one can pass its window inside a padded chunk,
        # and then the padding cannot be cut back.
        bucketed = buckets_enabled() and all(type(c) is KVCache for c in self.cache)
        batch_layers.use(self.model, batched=True)  # a prompt chunk has rows to fold
        padding = bucket(len(chunk)) - len(chunk) if bucketed else 0
        logits = self.model(mx.array([chunk + chunk[-1:] * padding], dtype=mx.uint32), cache=self.cache)
        if padding:
            # Causal attention: no real token saw the padding; drop its keys and values.
            trim_prompt_cache(self.cache, padding)
            logits = logits[:, : len(chunk)]
        return logits

    def _prefill(self, tokens: list[int], *, total: int) -> None:
        while tokens:
            chunk, tokens = tokens[:PREFILL_STEP], tokens[PREFILL_STEP:]
            self._forward(chunk)  # only the cache is evaluated: MLX never computes these logits
            mx.eval([c.state for c in self.cache])
            self.tokens += chunk
            if self.keeps_context:
                self.context = mx.concatenate([self.context, mx.array(chunk, dtype=mx.uint32)])
            self.slot.prompt_progress(len(self.tokens), total)
            mx.clear_cache()

    def _prefill_and_sample(self, tokens: list[int]) -> mx.array:
        """The prompt's last `tokens` in one forward pass; returns the first token, being computed."""
        self.tokens += tokens[:-1]
        return self._sample(self._forward(tokens)[:, -1, :], mx.array(tokens, dtype=mx.uint32))

    def _feed(self, token: mx.array) -> mx.array:
        """Put `token` (shape (1,)) into the cache; returns the next token, being computed."""
        batch_layers.use(self.model, batched=False)  # one row: mlx-lm's own layers
        logits = self.model(token[None], cache=self.cache)[:, -1, :]
        if self.processors:  # the forward pass queued, then the host reads the token fed
            mx.async_eval(logits)
            grammar.advance(self.processors, int(to_host(token).item()))
        return self._sample(logits, token)

    def _sample(self, logits: mx.array, fed: mx.array) -> mx.array:
        if self.processors:
            if self.keeps_context:
                self.context = mx.concatenate([self.context, fed])
            for processor in self.processors:
                logits = processor(self.context, logits)
        logprobs = logits - mx.logsumexp(logits, keepdims=True)
        sampled = (self.sampler or _greedy)(logprobs)
        mx.async_eval(sampled)
        self.pending_logprobs = logprobs  # of the token being sampled, for a request that asks
        return sampled

    def _take(self) -> tuple[int, str | None]:
        """The pending token as an int, with why generation ends there (if it does)."""
        token = to_host(self.pending).item()  # the GIL is free while the device works
        self.remaining -= 1
        if token in self.stop_tokens:
            return token, "stop"
        return token, "length" if self.remaining <= 0 else None

    def step(self) -> tuple[int, str | None]:
        """Send the pending token; the one after it is computed meanwhile."""
        current, self.last_logprobs = self.pending, self.pending_logprobs
        following = self._feed(current) if self.remaining > 1 else None
        token, finish = self._take()
        if following is not None:
            self.tokens.append(token)  # it went into the cache
        self.pending = following
        return token, finish

    def handoff(self) -> tuple[int, str | None]:
        """The pending token, for the caller to send before it inserts the rest into the batch
        with `cache` (which holds `tokens`) and that token as the prompt."""
        self.last_logprobs = self.pending_logprobs
        return self._take()
