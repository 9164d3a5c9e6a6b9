"""Prefix reuse: finished requests leave their KV cache; a later prompt starts from the longest
cached prefix of it (mlx-lm's LRUPromptCache)."""

from __future__ import annotations


def nearest_cache(prompt_cache, model_id: str, tokens: list[int]):
    """(cache or None, tokens still to feed): the longest cached prefix, leaving at least one
    token, since the model needs the last token to produce the next."""
    from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

    cache, rest = prompt_cache.fetch_nearest_cache(model_id, tokens)
    if cache is None:
        return None, tokens
    if not rest:
        if not can_trim_prompt_cache(cache):
            return None, tokens
        trim_prompt_cache(cache, 1)
        rest = tokens[-1:]
    return cache, rest


def remember(prompt_cache, loaded, tokens, cache) -> None:
    """Keep a finished request's KV cache so a follow-up turn starts from it."""
    if loaded is None or cache is None or not tokens:
        return
    prompt_cache.insert_cache(loaded.spec.id, list(tokens), cache)
