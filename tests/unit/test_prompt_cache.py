"""Prefix reuse: which cached prefix a new prompt starts from."""

import mlx.core as mx
from mlx_lm.models.cache import LRUPromptCache, make_prompt_cache

from inference.prompt_cache import MIN_REUSE_TOKENS, nearest_cache, shared_prefix
from tests.unit.test_batch_layers import _tiny


def _store(model, prompt_cache, tokens: list[int]) -> None:
    cache = make_prompt_cache(model)
    model(mx.array([tokens]), cache=cache)
    mx.eval([c.state for c in cache])
    prompt_cache.insert_cache("m", tokens, cache)


def test_a_long_shared_prefix_is_reused_and_a_short_one_is_computed_again():
    model = _tiny("llama-3.1-8b")
    prompt_cache = LRUPromptCache()
    stored = [1, *range(100, 160)]  # a BOS token, then 60 more
    _store(model, prompt_cache, stored)

    follow_up = [*stored[:50], 7, 8, 9]
    cache, rest = nearest_cache(prompt_cache, "m", follow_up)
    assert shared_prefix(prompt_cache, "m", follow_up) == 50
    assert rest == [7, 8, 9] and cache[0].offset == 50

    fresh = [1, *range(300, 360)]  # shares only the BOS token
    assert shared_prefix(prompt_cache, "m", fresh) == 1
    assert nearest_cache(prompt_cache, "m", fresh) == (None, fresh)

    header = [*stored[: MIN_REUSE_TOKENS - 1], 9, 9]  # one token short of worth reusing
    assert nearest_cache(prompt_cache, "m", header) == (None, header)
    assert shared_prefix(prompt_cache, "other-model", follow_up) == 0


def test_the_lookup_benchmark_times_both_lookups_on_both_prompts():
    from inference.benchmarks import lookup

    rows = lookup.measure(entries=2, length=64, prompt=16, repeat=1)
    assert [name for name, _, _ in rows] == ["mlx-lm (fetch_nearest_cache)", "LMX (nearest_cache)"]
    assert all(fresh >= 0 and follow > 0 for _, fresh, follow in rows)
    table = lookup.markdown(rows, entries=2, length=64, prompt=16, title="t")
    assert "| lookup | fresh prompt | follow-up turn |" in table and "| LMX (nearest_cache) |" in table
