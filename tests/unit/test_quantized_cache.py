"""The batch's quantized KV cache (a load's kv_bits) gives each row what it gets alone with
mlx-lm's QuantizedKVCache, through every batch operation, in fewer bytes."""

import mlx.core as mx
import pytest

from inference.engine.mlx_compat import quantized_cache
from inference.engine.mlx_compat.generator import LMXBatchGenerator
from tests.unit.test_batch_layers import TINY, _tiny

PROMPTS = [[(5 * i + 3 * j + 1) % TINY["vocab_size"] for j in range(4 + 9 * i)] for i in range(3)]


def _alone(model, prompt: list[int], n: int, bits: int) -> list[int]:
    """Greedy tokens of one request decoded by itself with mlx-lm's quantized cache."""
    cache = quantized_cache.new_cache(model, bits=bits)
    logits = model(mx.array([prompt]), cache=cache)
    out = []
    for _ in range(n):
        token = mx.argmax(logits[:, -1, :], axis=-1)
        out.append(token.item())
        logits = model(token[None], cache=cache)
    return out


def _batched(model, prompts, n: int, *, kv_bits, late: int = 0) -> tuple[list[list[int]], int]:
    """Greedy tokens of `prompts` in one batch, the last one joining `late` steps after the
    others (the batch extends and, as rows finish, filters), and the bytes of KV held at the end."""
    batch = LMXBatchGenerator(model, max_concurrent=8, cache_size=4, cache_bytes=1 << 30, kv_bits=kv_bits)
    uids = []

    def insert(prompt):
        cache, rest = batch.nearest_cache("m", prompt)
        (uid,) = batch.insert([rest], max_tokens=[n + len(uids)], caches=[cache])
        uids.append(uid)

    for prompt in prompts[:-1] if late else prompts:
        insert(prompt)
    out: dict[int, list[int]] = {}
    steps = 0
    while len(out) < len(prompts) or any(len(out[u]) < n + i for i, u in enumerate(uids)):
        steps += 1
        if late and steps == late:
            insert(prompts[-1])
        _, generated = batch.next()
        for r in generated:
            out.setdefault(r.uid, []).append(r.token)
            if r.finish_reason is not None:
                batch.remember("m", r.all_tokens, r.prompt_cache)  # extracted from the batch
    nbytes = batch.kv_cache_nbytes
    batch.close()
    return [out[u][: n + i] for i, u in enumerate(uids)], nbytes


@pytest.mark.parametrize("bits", [4, 8])
def test_each_row_of_a_quantized_batch_gets_its_tokens_alone(bits):
    model = _tiny("llama-3.1-8b")
    got, _ = _batched(model, PROMPTS, 10, kv_bits=bits, late=3)
    assert got == [_alone(model, p, 10 + i, bits) for i, p in enumerate(PROMPTS)]


def test_quantized_cache_holds_fewer_bytes_and_near_the_same_tokens():
    model = _tiny("llama-3.1-8b")
    plain, plain_bytes = _batched(model, PROMPTS, 6, kv_bits=None)
    eight, eight_bytes = _batched(model, PROMPTS, 6, kv_bits=8)
    assert plain_bytes > 0
    assert eight_bytes < 0.6 * plain_bytes  # 8 bits and a scale and bias per group, against 32
    agree = sum(a == b for p, e in zip(plain, eight, strict=True) for a, b in zip(p, e, strict=True))
    assert agree >= 0.8 * sum(map(len, plain))


def test_a_cached_prompt_resumes_from_its_quantized_cache():
    """A finished request's quantized cache is kept and a follow-up starts from it."""
    model = _tiny("llama-3.1-8b")
    batch = LMXBatchGenerator(model, max_concurrent=4, cache_size=4, cache_bytes=1 << 30, kv_bits=8)
    prompt = list(range(1, 60))
    cache, rest = batch.nearest_cache("m", prompt)
    assert rest == prompt  # nothing cached yet: an empty quantized cache
    mx.eval(model(mx.array([prompt]), cache=cache))
    batch.remember("m", prompt, cache)
    again, rest = batch.nearest_cache("m", [*prompt, 7, 8])
    assert rest == [7, 8]
    assert isinstance(again[0], quantized_cache.RowQuantizedKVCache) and again[0].offset == len(prompt)
    batch.close()


def test_models_without_a_plain_kv_cache_are_refused():
    from mlx_lm.models.cache import RotatingKVCache

    model = _tiny("llama-3.1-8b")
    assert quantized_cache.refusal(model, 8) is None
    assert "4, 8" in quantized_cache.refusal(model, 3)
    model.make_cache = lambda: [RotatingKVCache(max_size=16) for _ in model.layers]
    assert "RotatingKVCache" in quantized_cache.refusal(model, 8)


def test_an_empty_cache_holds_no_bytes():
    """A request queued before its first step holds a cache with nothing in it yet."""
    model = _tiny("llama-3.1-8b")
    assert sum(c.nbytes for c in quantized_cache.new_cache(model, bits=4)) == 0
    batch = LMXBatchGenerator(model, max_concurrent=2, cache_size=1, cache_bytes=1 << 20, kv_bits=4)
    cache, rest = batch.nearest_cache("m", [1, 2, 3])
    batch.insert([rest], max_tokens=[2], caches=[cache])
    assert batch.kv_cache_nbytes == 0
    batch.close()
