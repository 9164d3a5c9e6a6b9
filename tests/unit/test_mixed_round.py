"""A round's decoding rows and prompt chunk in one forward pass (mixed_round) give what the two
passes give, on tiny random models of the GPU shapes."""

import mlx.core as mx
import pytest
from mlx_lm.models.cache import BatchKVCache, make_prompt_cache

from inference.engine.mlx_compat import batch_layers, mixed_round
from inference.engine.mlx_compat.generator import LMXBatchGenerator
from tests.unit.test_batch_layers import _tiny


def _batch_cache(model, prompts: list[list[int]]) -> list:
    """A decoding batch's caches after `prompts` (left-padded to one length), as mlx-lm keeps them."""
    longest = max(len(p) for p in prompts)
    padding = [longest - len(p) for p in prompts]
    cache = [BatchKVCache(padding) for _ in model.layers]
    model(mx.array([[0] * pad + p for pad, p in zip(padding, prompts, strict=True)]), cache=cache)
    mx.eval([c.state for c in cache])
    return cache


def _chunk_cache(model) -> list:
    cache = make_prompt_cache(model)
    model(mx.array([[1, 2, 3, 4]]), cache=cache)  # a prompt already part read
    mx.eval([c.state for c in cache])
    return cache


@pytest.mark.parametrize("shape", ["llama-3.1-8b", "qwen3-30b-a3b"])
@pytest.mark.parametrize("folded", [False, True])
def test_one_pass_gives_the_decoding_logits_and_the_chunk_cache_of_two(shape, folded):
    model = _tiny(shape)
    assert mixed_round.supported(model)
    if folded:
        batch_layers.apply(model)
    prompts = [[5, 6, 7, 8, 9], [11, 12], [13, 14, 15]]
    step = mx.array([[21], [22], [23]])
    chunk = mx.array([list(range(30, 70))])
    alone_chunk = _chunk_cache(model)
    expected = model(step, cache=_batch_cache(model, prompts))[:, -1]
    model(chunk, cache=alone_chunk)

    decoding, chunk_cache = _batch_cache(model, prompts), _chunk_cache(model)
    hidden = mixed_round.forward(model, [(step, decoding), (chunk, chunk_cache)])
    got = mixed_round.logits(model, hidden[0])[:, -1]
    assert mx.allclose(got, expected, atol=1e-3, rtol=1e-3).item()
    assert mx.argmax(got, axis=-1).tolist() == mx.argmax(expected, axis=-1).tolist()
    for mine, theirs in zip(chunk_cache, alone_chunk, strict=True):
        assert mine.offset == theirs.offset == 44
        assert mx.allclose(mine.state[0], theirs.state[0], atol=1e-3, rtol=1e-3).item()
    assert "q_proj" not in vars(model.model.layers[0].self_attn)  # the model's own projections again


def test_other_families_keep_two_passes():
    model = _tiny("llama-3.1-8b")
    model.args.model_type = "gemma3_text"
    assert not mixed_round.supported(model)


def _streams(model, *, mixed: bool, calls: list) -> list[list[int]]:
    """Greedy tokens of a stream decoding while two prompts of different lengths arrive and are
    read in 32-token chunks (padded rows), and of those two."""
    batch = LMXBatchGenerator(model, max_concurrent=4, cache_size=1, cache_bytes=1 << 20)
    batch.mixed = mixed
    batch.pacer.fixed = 32
    forward = mixed_round.forward
    mixed_round.forward = lambda *a: calls.append(1) or forward(*a)
    try:
        (first,) = batch.insert([[9, 10, 11]], max_tokens=[40])
        out = {first: []}
        for step in range(300):
            if step == 3:
                prompts = [[(5 * j + 1) % 64 for j in range(90)], [(3 * j + 2) % 64 for j in range(57)]]
                out.update({uid: [] for uid in batch.insert(prompts, max_tokens=[12, 12])})
            _, generated = batch.next()
            for r in generated:
                out[r.uid].append(r.token)
            if step > 3 and all(len(t) == n for t, n in zip(out.values(), (40, 12, 12), strict=True)):
                break
    finally:
        mixed_round.forward = forward
        batch.close()
    return list(out.values())


@pytest.mark.parametrize("shape", ["llama-3.1-8b", "qwen3-30b-a3b"])
def test_the_engine_batch_generates_the_same_tokens_with_one_pass_rounds(shape):
    model = _tiny(shape)
    two_pass, one_pass = [], []
    expected = _streams(model, mixed=False, calls=two_pass)
    got = _streams(model, mixed=True, calls=one_pass)
    assert not two_pass and len(one_pass) >= 3  # the prompts rode the decoding step
    assert [len(t) for t in got] == [40, 12, 12]
    assert got == expected
