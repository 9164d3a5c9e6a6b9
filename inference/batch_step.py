"""mlx-lm's batched decode step, with each step's tokens read back while the GIL is free.

mlx-lm's `GenerationBatch._step` starts step N+1 on the device, waits for step N's tokens, then
reads them with `.tolist()`. On CUDA the tokens sit in device memory and that read copies them
to the host behind step N+1's kernels, holding the GIL all the while: ~15 ms in one step of five
on an H100 (Llama-3.1-8B shape, 32 streams), the line every long GIL wait of the server fell
inside (`lmx_bench_probe ... trace`, docs/BENCHMARKS.md). Every request handler, /readyz too,
waited with it. Here the tokens are brought to the host with the GIL released
(`inference.host.to_host`) before `.tolist()` reads them. Same tokens, same order of work otherwise.

The step below is mlx-lm 0.32.2's (requirements.txt pins it) but for that read.
"""

from __future__ import annotations

import mlx.core as mx
from mlx_lm.generate import GenerationBatch

from inference.host import to_host


class HostReadBatch(GenerationBatch):
    def _step(self):
        self._current_tokens = self._next_tokens
        self._current_logprobs = self._next_logprobs
        inputs = self._current_tokens

        logits = self.model(inputs[:, None], cache=self.prompt_cache)
        logits = logits[:, -1, :]

        token_context = []
        if any(self.logits_processors):
            processed_logits = []
            for e in range(len(self.uids)):
                sample_logits = logits[e : e + 1]
                processors = self.logits_processors[e] or ()
                if processors:
                    context = self._token_context[e].update_and_fetch(inputs[e : e + 1])
                    token_context.append(context)
                    for processor in processors:
                        sample_logits = processor(context, sample_logits)
                processed_logits.append(sample_logits)
            logits = mx.concatenate(processed_logits, axis=0)

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
        tokens = to_host(inputs).tolist()
        for sti, ti in zip(self.tokens, tokens, strict=False):
            sti.append(ti)
        return tokens, self._current_logprobs


def apply(batch_generator) -> None:
    """Swap the generator's decode batch (made once, in its constructor) to this step."""
    batch_generator._generation_batch.__class__ = HostReadBatch


def revert(batch_generator) -> None:
    """Back to mlx-lm's own step (benchmarks compare the two on one server)."""
    batch_generator._generation_batch.__class__ = GenerationBatch
