"""Prefix reuse: which cached prefix a new prompt starts from."""

import re

import mlx.core as mx
from mlx_lm.models.cache import LRUPromptCache, RotatingKVCache, make_prompt_cache, trim_prompt_cache

from inference.engine.mlx_compat.prompt_cache import MIN_REUSE_TOKENS, nearest_cache
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
    assert rest == [7, 8, 9] and cache[0].offset == 50

    fresh = [1, *range(300, 360)]  # shares only the BOS token
    assert nearest_cache(prompt_cache, "m", fresh) == (None, fresh)

    header = [*stored[: MIN_REUSE_TOKENS - 1], 9, 9]  # one token short of worth reusing
    assert nearest_cache(prompt_cache, "m", header) == (None, header)
    assert nearest_cache(prompt_cache, "other-model", follow_up) == (None, follow_up)


def test_lmx_reuses_the_prefix_mlx_lm_would_with_the_same_keys_and_values():
    """Same prefix as mlx-lm's fetch_nearest_cache in each case it distinguishes (a cached chat
    going on past the prompt, one the prompt extends, the prompt itself, the prompt inside a
    chat), and the reused cache holds the same keys and values."""
    model = _tiny("llama-3.1-8b")
    prompt_cache = LRUPromptCache()
    system = [1, *range(100, 140)]  # 41 tokens every chat starts with
    chats = [[*system, 200 + i, *range(300 + 10 * i, 320 + 10 * i)] for i in range(3)]
    for chat in chats:
        _store(model, prompt_cache, chat)
    prompts = {
        "new chat, same system prompt": [*system, 7, 8, 9],
        "follow-up of a cached chat": [*chats[0], 7, 8],
        "a cached chat again": list(chats[1]),
        "inside a cached chat": chats[2][:45],
    }
    for case, tokens in prompts.items():
        ours, rest = nearest_cache(prompt_cache, "m", tokens)
        theirs, their_rest = prompt_cache.fetch_nearest_cache("m", tokens)
        if not their_rest:  # mlx-lm hands back the whole prompt; the last token must be fed again
            trim_prompt_cache(theirs, 1)
            their_rest = tokens[-1:]
        assert rest == their_rest, case
        assert ours[0].offset == theirs[0].offset == len(tokens) - len(rest), case
        for mine, other in zip(ours, theirs, strict=True):
            kept = mine.offset
            assert mx.array_equal(mine.keys[..., :kept, :], other.keys[..., :kept, :]), case
            assert mx.array_equal(mine.values[..., :kept, :], other.values[..., :kept, :]), case


def test_reuse_leaves_the_cached_chat_as_it_was():
    """The reused cache is a copy: trimming and extending it does not change what is cached."""
    model = _tiny("llama-3.1-8b")
    prompt_cache = LRUPromptCache()
    chat = [1, *range(100, 150)]
    _store(model, prompt_cache, chat)
    cache, rest = nearest_cache(prompt_cache, "m", chat[:40])
    assert cache[0].offset == 39 and rest == chat[39:40]
    again, _ = nearest_cache(prompt_cache, "m", [*chat, 5])
    assert again[0].offset == len(chat)


def test_the_lookup_benchmark_times_both_lookups_on_its_three_prompts():
    from benchmarks import lookup

    rows = lookup.measure(entries=2, length=80, prompt=16, repeat=1)
    assert [name for name, _ in rows] == ["mlx-lm (fetch_nearest_cache)", "LMX (nearest_cache)"]
    assert all(len(times) == 3 and all(ms >= 0 for ms in times) for _, times in rows)
    table = lookup.markdown(rows, entries=2, length=80, prompt=16, title="t")
    assert "| lookup | fresh prompt | new chat, same system prompt | follow-up turn |" in table
    assert re.search(r"\| LMX \(nearest_cache\) \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", table)


def test_a_cache_that_cannot_be_cut_back_gives_way_to_a_shorter_cached_prefix():
    """Sliding-window caches past their window cannot be trimmed: the prompt then starts from a
    cached sequence it extends, as with mlx-lm's lookup."""
    model = _tiny("llama-3.1-8b")
    prompt_cache = LRUPromptCache()
    chat = [1, *range(100, 199)]  # 100 tokens
    for tokens in (chat[:50], chat):  # the 100-token one overflows a 64-token window
        cache = [RotatingKVCache(max_size=64) for _ in model.layers]
        model(mx.array([tokens]), cache=cache)
        mx.eval([c.state for c in cache])
        prompt_cache.insert_cache("m", tokens, cache)
    prompt = [*chat[:80], 7, 8]
    cache, rest = nearest_cache(prompt_cache, "m", prompt)
    theirs, their_rest = prompt_cache.fetch_nearest_cache("m", prompt)
    assert rest == their_rest == prompt[50:]
    assert cache[0].offset == theirs[0].offset == 50
