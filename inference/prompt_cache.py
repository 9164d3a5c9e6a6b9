"""Prefix reuse: finished requests leave their KV cache; a later prompt starts from the longest
cached prefix of it (mlx-lm's LRUPromptCache)."""

from __future__ import annotations

# A shared prefix shorter than this (a BOS token, a chat template's header) is computed again.
# Finding it is what costs: mlx-lm's lookup searches every cached sequence below the shared part,
# copying the path at each token (~48 ms for a fresh prompt against 16 cached 2,000-token chats
# on a 2-core CPU, on the engine thread: `lmx_bench_lookup`), then copies a cache to trim it back.
MIN_REUSE_TOKENS = 32


def nearest_cache(prompt_cache, model_id: str, tokens: list[int]):
    """(cache or None, tokens still to feed): the longest cached prefix, leaving at least one
    token, since the model needs the last token to produce the next."""
    from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

    if shared_prefix(prompt_cache, model_id, tokens) < MIN_REUSE_TOKENS:
        return None, tokens
    cache, rest = prompt_cache.fetch_nearest_cache(model_id, tokens)
    if cache is None:
        return None, tokens
    if not rest:
        if not can_trim_prompt_cache(cache):
            return None, tokens
        trim_prompt_cache(cache, 1)
        rest = tokens[-1:]
    return cache, rest


def shared_prefix(prompt_cache, model_id: str, tokens: list[int]) -> int:
    """How many leading tokens of `tokens` some cached sequence shares: a walk down mlx-lm's
    prompt trie (its 0.32.2 layout; tests/unit/test_prompt_cache.py fails if that changes),
    linear in the prompt."""
    node = prompt_cache._trie._trie.get(model_id, {})
    shared = 0
    for token in tokens:
        node = node.get(token)
        if node is None:
            break
        shared += 1
    return shared


def remember(prompt_cache, loaded, tokens, cache) -> None:
    """Keep a finished request's KV cache so a follow-up turn starts from it."""
    if loaded is None or cache is None or not tokens:
        return
    prompt_cache.insert_cache(loaded.spec.id, list(tokens), cache)
