"""The same model run by mlx-lm itself, in this process: the engine's own speed, no server."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass


@dataclass
class Single:
    ttft_s: float
    prompt_tokens: int
    decode_tps: float


class InProcess:
    def __init__(self, path: str):
        from mlx_lm import load

        self.model, self.tokenizer = load(path)
        self.tokenizer._eos_token_ids = set()  # generate to max_tokens, as mlx_lm.benchmark does

    def single(self, prompt: list[int], max_tokens: int) -> Single:
        from mlx_lm import stream_generate

        start = time.perf_counter()
        first = last = None
        n = 0
        for _ in stream_generate(self.model, self.tokenizer, prompt, max_tokens=max_tokens):
            last = time.perf_counter()
            first = first or last
            n += 1
        return Single(ttft_s=first - start, prompt_tokens=len(prompt), decode_tps=(n - 1) / (last - first))

    def batch(self, prompts: list[list[int]], max_tokens: int) -> tuple[int, float]:
        """(generated tokens, wall seconds) for all prompts decoded together by BatchGenerator."""
        from mlx_lm.generate import BatchGenerator

        gen = BatchGenerator(self.model, completion_batch_size=len(prompts), prefill_batch_size=8)
        start = time.perf_counter()
        gen.insert(prompts, max_tokens=[max_tokens] * len(prompts))
        tokens = 0
        while responses := gen.next_generated():
            tokens += len(responses)
        wall = time.perf_counter() - start
        gen.close()
        return tokens, wall

    def close(self) -> None:
        import mlx.core as mx

        del self.model, self.tokenizer
        gc.collect()
        mx.clear_cache()
