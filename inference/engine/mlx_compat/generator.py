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
from mlx_lm.generate import BatchGenerator, GenerationBatch, PromptProcessingBatch, _right_pad_prompts
from mlx_lm.models.cache import LRUPromptCache, make_prompt_cache

from inference.engine import grammar, mlx_compat
from inference.engine.host import to_host
from inference.engine.mlx_compat import admission, mixed_round, prompt_cache, quantized_cache

log = logging.getLogger("lmx.engine")


class RidingChunk:
    """A prompt chunk prefilled in the forward pass of the decoding step (mixed_round): mlx-lm
    0.32.2's `PromptProcessingBatch.prompt` for one chunk, its pass shared."""

    def __init__(self, batch: PromptProcessingBatch, tokens: list[list[int]]):
        for held, more in zip(batch.tokens, tokens, strict=True):
            held += more  # the tokens the cache will hold
        lengths = [len(t) for t in tokens]
        padding = [max(lengths) - n for n in lengths]
        self.padded = max(padding) > 0
        if self.padded:
            self.inputs = _right_pad_prompts(tokens, max_length=max(lengths))
            for c in batch.prompt_cache:
                c.prepare(lengths=lengths, right_padding=padding)
        else:
            self.inputs = mx.array(tokens)
        self.cache = batch.prompt_cache

    def forward(self, model, inputs: mx.array, cache: list) -> tuple[mx.array, list]:
        """(the decoding rows' logits, the chunk's cache arrays to evaluate with them)."""
        decoded, _ = mixed_round.forward(model, [(inputs, cache), (self.inputs, self.cache)])
        return mixed_round.logits(model, decoded), [c.state for c in self.cache]

    def finish(self) -> None:
        if self.padded:
            for c in self.cache:
                c.finalize()
            mx.eval([c.state for c in self.cache])


class HostReadBatch(GenerationBatch):
    sent_mask: grammar.DeviceWords | None = None  # the batch's grammar mask, kept on the device
    riding: RidingChunk | None = None  # a prompt chunk this step's pass prefills too

    def _step(self):
        self._current_tokens = self._next_tokens
        self._current_logprobs = self._next_logprobs
        inputs = self._current_tokens

        chunk_states = []
        if self.riding is None:
            logits = self.model(inputs[:, None], cache=self.prompt_cache)
        else:
            logits, chunk_states = self.riding.forward(self.model, inputs[:, None], self.prompt_cache)
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
        mx.async_eval(self._next_tokens, self._next_logprobs, token_context, chunk_states)

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


def _read(segments: list[list[int]]) -> bool:
    """Whether a prompt in the prompt batch has only its last token left (it goes to decoding)."""
    return len(segments) == 1 and len(segments[0]) == 1


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
        # A distributed group's ranks keep mlx-lm's two passes (the one pass is not measured there).
        self.mixed = (
            self.patched and not fixed_pacing and mixed_round.enabled() and mixed_round.supported(model)
        )
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

    def _next(self):
        # only LMX's step takes a riding chunk (benchmarks may switch mlx-lm's own back on)
        batch = self._generation_batch
        if not (self.mixed and isinstance(batch, HostReadBatch) and len(batch) and self._prompt_work()):
            return super()._next()
        return self._mixed_next()

    def _prompt_work(self) -> bool:
        return bool(self._currently_processing) or (
            bool(self._unprocessed_sequences) and len(self._generation_batch) < self.completion_batch_size
        )

    def _mixed_next(self):
        """mlx-lm 0.32.2's `BatchGenerator._next` with the decoding step and the prompt chunk in one
        forward pass: admission and the chunk are taken before the step (mlx-lm takes them after),
        prompts that are read join decoding after it, as there."""
        prompt_responses = []
        n = min(
            self.prefill_batch_size - len(self._prompt_batch),
            self.completion_batch_size - len(self._generation_batch),
            len(self._unprocessed_sequences),
        )
        if n > 0:
            self._prompt_batch.extend(self._make_batch(n))
        split = [i for i, seq in enumerate(self._currently_processing) if _read(seq[0])]
        joining = None
        if split:
            last_inputs = [self._currently_processing[i][0][0] for i in split]
            progress = [(self._currently_processing[i][2],) * 2 for i in split]
            self._currently_processing = [
                seq for i, seq in enumerate(self._currently_processing) if i not in split
            ]
            joining = self._prompt_batch.split(split).generate(last_inputs)
            for uid, p in zip(joining.uids, progress, strict=True):
                prompt_responses.append(PromptProcessingBatch.Response(uid, p, True, True))
        prompts = []
        for i, seq in enumerate(self._currently_processing):
            response = PromptProcessingBatch.Response(self._prompt_batch.uids[i], 0, False, False)
            segments = seq[0]
            n = min(len(segments[0]), self.prefill_step_size)
            prompts.append(segments[0][:n])
            segments[0] = segments[0][n:]
            if not segments[0]:
                segments.pop(0)
                response.end_of_segment = True
            seq[1] += len(prompts[-1])
            response.progress = (seq[1], seq[2])
            prompt_responses.append(response)
        self._counters.prompt_tokens += sum(len(p) for p in prompts)

        riding = RidingChunk(self._prompt_batch, prompts) if prompts else None
        tic = time.perf_counter()
        self._generation_batch.riding = riding
        try:
            generation_responses = self._generation_batch.next()
        finally:
            self._generation_batch.riding = None
        if riding is not None:
            riding.finish()
        self._counters.decode_time += time.perf_counter() - tic
        self._counters.generation_tokens += len(generation_responses)
        self._counters.generation_steps += 1
        if self._counters.generation_steps % 512 == 0:
            mx.clear_cache()
        if joining is not None:
            self._generation_batch.extend(joining)
        return prompt_responses, generation_responses

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
