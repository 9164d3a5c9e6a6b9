"""LMX's BatchGenerator: mlx-lm's, with the decode step, the prefill width and the prompt-cache
lookup that LMX measured faster (docs/BENCHMARKS.md). With the patches off (mlx_compat.ACTIVE)
it is mlx-lm's own generator and cache lookup.

The step is mlx-lm 0.32.2's `GenerationBatch._step` but for one read: each step's tokens are
brought to the host with the GIL released (engine.host.to_host) before `.tolist()` reads them,
so request handlers are not held behind the device ("Why batched decoding was slow", docs/BENCHMARKS.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import mlx.core as mx
from mlx_lm.generate import BatchGenerator, GenerationBatch, PromptProcessingBatch
from mlx_lm.models.cache import LRUPromptCache, make_prompt_cache

from inference.engine import grammar, mlx_compat
from inference.engine.host import to_host
from inference.engine.mlx_compat import admission, prompt_cache, quantized_cache

log = logging.getLogger("lmx.engine")


class HostReadBatch(GenerationBatch):
    sent_mask: grammar.DeviceWords | None = None  # the batch's grammar mask, kept on the device

    def _step(self):
        self._current_tokens = self._next_tokens
        self._current_logprobs = self._next_logprobs
        inputs = self._current_tokens

        logits = self.model(inputs[:, None], cache=self.prompt_cache)
        logits = logits[:, -1, :]

        token_context = []
        last = None  # the step before's tokens on the host, read once
        if any(self.logits_processors):
            mx.async_eval(logits)  # queued before the host waits for the step before's tokens
            last = to_host(inputs).tolist()
            rows = [processors or () for processors in self.logits_processors]
            grammars = [
                (e, p) for e, ps in enumerate(rows) for p in ps if isinstance(p, grammar.GrammarProcessor)
            ]
            others = [[p for p in ps if not isinstance(p, grammar.GrammarProcessor)] for ps in rows]
            if any(others):  # penalties and biases, row by row: they read the row's tokens so far
                processed = []
                for e, row_processors in enumerate(others):
                    sample_logits = logits[e : e + 1]
                    if row_processors:
                        context = self._token_context[e].update_and_fetch(inputs[e : e + 1])
                        token_context.append(context)
                        for processor in row_processors:
                            sample_logits = processor(context, sample_logits)
                    processed.append(sample_logits)
                logits = mx.concatenate(processed, axis=0)
            if grammars:  # all constrained rows' masks at once, last (nothing may lift a masked token)
                if self.sent_mask is None:
                    self.sent_mask = grammar.DeviceWords()
                logits = grammar.mask_rows(logits, grammars, last, self.sent_mask)

        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)

        samplers = [
            self.fallback_sampler if s is None else s for s in (self.samplers or [None] * len(self.uids))
        ]
        if not samplers or all(s is samplers[0] for s in samplers):
            sampled = (samplers[0] if samplers else self.fallback_sampler)(logprobs)
        else:
            sampled = mx.concatenate([s(logprobs[e : e + 1]) for e, s in enumerate(samplers)], axis=0)

        self._next_tokens = sampled
        self._next_logprobs = list(logprobs)
        mx.async_eval(self._next_tokens, self._next_logprobs, token_context)

        mx.eval(inputs, self._current_logprobs)
        tokens = last if last is not None else to_host(inputs).tolist()
        for sti, ti in zip(self.tokens, tokens, strict=False):
            sti.append(ti)
        return tokens, self._current_logprobs


class HostReadPrompts(PromptProcessingBatch):
    """mlx-lm's prompt batch, but the rows it hands to decoding take their first step in LMX's
    step too: mlx-lm's own step masks grammars row by row and builds each row a device array of
    its prompt, which the batch waits for as rows are admitted (#21)."""

    def generate(self, tokens: list[list[int]]) -> HostReadBatch:
        # mlx-lm 0.32.2's PromptProcessingBatch.generate, building a HostReadBatch
        if any(len(t) > 1 for t in tokens):
            self.prompt([t[:-1] for t in tokens])
        generation = HostReadBatch(
            self.model,
            self.uids,
            mx.array([t[-1] for t in tokens]),
            self.prompt_cache,
            self.tokens,
            self.samplers,
            self.fallback_sampler,
            self.logits_processors,
            self.stop_sequences,
            self.max_tokens,
        )
        self.uids, self.prompt_cache, self.tokens = [], [], []
        self.samplers, self.logits_processors, self.max_tokens = [], [], []
        return generation


@dataclass
class Found:
    """A prompt-cache lookup: the cache to start from and the tokens still to feed; which tier
    served it; tokens the prompt shares with the closest cached sequence, and that sequence's
    next tokens where the prompt differs (empty when nothing cached goes on past the shared part
    or, from disk, when it is known to a block only)."""

    cache: list
    rest: list[int]
    tier: str  # ram | disk | none
    cached: int
    shared: int
    cached_ahead: list[int]
    exact: bool = True  # False: `shared` is where the disk's blocks end, the difference is in the next


class LMXBatchGenerator(BatchGenerator):
    """One model's continuous batch and its prompt caches (prefix reuse)."""

    def __init__(
        self,
        model,
        *,
        max_concurrent: int,
        cache_size: int,
        cache_bytes: int,
        kv_bits: int | None = None,
        disk=None,
        fixed_pacing: bool = False,
    ):
        super().__init__(
            model,
            completion_batch_size=max_concurrent,
            prefill_batch_size=min(admission.FLOOR, max_concurrent),
            prefill_step_size=admission.prefill_chunk() or admission.DEFAULT_CHUNK,  # patches off
            stream=mx.default_stream(mx.default_device()),
        )
        self.patched = mlx_compat.active()
        # A distributed group's ranks must chunk alike: measured time differs between them.
        fixed = admission.prefill_chunk() or (admission.group_chunk() if fixed_pacing else None)
        self.pacer = admission.Pacer(fixed, floor=admission.chunk_floor())
        self.kv_bits = kv_bits  # None: keys and values kept at the model's precision
        self.disk = disk  # this model's blocks on disk (engine.disk_cache.ModelBlocks), if kept
        self.prompt_caches = LRUPromptCache(max_size=cache_size, max_bytes=cache_bytes)
        self.use_host_read(self.patched)

    def use_host_read(self, on: bool) -> None:
        """LMX's decode step (on) or mlx-lm's own (benchmarks compare the two on one server)."""
        on = on and self.patched
        self._generation_batch.__class__ = HostReadBatch if on else GenerationBatch
        self._prompt_batch.__class__ = HostReadPrompts if on else PromptProcessingBatch

    def next(self):
        if not self.patched:  # pacing reads mlx-lm's internals: only the version it was written for
            return super().next()
        decoding = admission.decoding(self)
        prompts = len(self._prompt_batch) + len(self._unprocessed_sequences)
        self.prefill_step_size = self.pacer.chunk(decoding=decoding, prompts=prompts)
        self.prefill_batch_size = admission.prefill_width(self)
        before, start = self._counters.prompt_tokens, time.perf_counter()
        out = super().next()
        self.pacer.observe(
            time.perf_counter() - start,
            decoding=decoding,
            prompt_tokens=self._counters.prompt_tokens - before,
        )
        return out

    def new_cache(self) -> list:
        """An empty cache for one request, quantized when the load asked for kv_bits."""
        if self.kv_bits is None:
            return make_prompt_cache(self.model)
        return quantized_cache.new_cache(self.model, bits=self.kv_bits)

    def nearest_cache(self, model_id: str, tokens: list[int]):
        """(a copy of the cache with the longest prefix of `tokens`, or an empty cache; tokens
        still to feed)."""
        found = self.lookup(model_id, tokens)
        return found.cache, found.rest

    def lookup(self, model_id: str, tokens: list[int]) -> Found:
        """The longest cached prefix of `tokens`, from RAM or else from disk, and where the
        prompt left what is cached."""
        cache, rest = prompt_cache.nearest_cache(self.prompt_caches, model_id, tokens, patched=self.patched)
        tier = "ram" if cache is not None else "none"
        cached = len(tokens) - len(rest)
        on_disk, from_disk = self._from_disk(tokens, cached)
        if from_disk is not None:
            cache, cached, tier = from_disk, on_disk, "disk"
            rest = tokens[cached:]
        shared, ahead = prompt_cache.divergence(self.prompt_caches, model_id, tokens)
        exact = on_disk <= shared  # else the disk knows the prompt only to the end of a block
        if not exact:
            shared, ahead = on_disk, []
        return Found(
            cache if cache is not None else self.new_cache(), rest, tier, cached, shared, ahead, exact
        )

    def _from_disk(self, tokens: list[int], cached: int) -> tuple[int, list | None]:
        """(tokens of `tokens` the disk holds from the start, in whole blocks; their cache when
        that is more than the `cached` already found, else None)."""
        if self.disk is None:
            return 0, None
        block = self.disk.block
        usable = (len(tokens) - 1) // block  # a token is always left to feed
        if usable * block <= cached:
            return 0, None
        reach, hashes = self.disk.reach(tokens, usable)
        if reach * block <= cached:
            return reach * block, None
        start = time.perf_counter()
        cache, reach = self.disk.load(hashes, reach)  # fewer when a block turned out damaged
        if cache is None or reach * block <= cached:
            return reach * block, None
        mx.eval([c.state for c in cache])
        log.info(
            "Prompt cache: %d tokens read from disk in %.0f ms",
            reach * block,
            (time.perf_counter() - start) * 1000,
        )
        return reach * block, cache

    def remember(self, model_id: str, tokens, cache) -> None:
        """Keep a finished request's KV cache so a follow-up turn starts from it: in RAM, and its
        full blocks on disk."""
        if cache is not None and tokens:
            self.prompt_caches.insert_cache(model_id, list(tokens), cache)
            if self.disk is not None:
                self.disk.save(list(tokens), cache)

    @property
    def kv_cache_nbytes(self) -> int:
        """Bytes of keys and values held: the requests' caches and the cached prompts."""
        return self.prompt_cache_nbytes + self.prompt_caches.nbytes
