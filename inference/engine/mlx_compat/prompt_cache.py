"""Prefix reuse: finished requests leave their KV cache; a later prompt starts from the longest
cached prefix of it (mlx-lm's LRUPromptCache holds them; LMX walks its trie, mlx-lm 0.32.2's
layout, itself: `lmx_bench_lookup`, docs/BENCHMARKS.md)."""

from __future__ import annotations

import copy

# A shared prefix shorter than this (a BOS token, a chat template's header) is computed again:
# a new cache costs less than a copy of a long one trimmed back to a few tokens.
MIN_REUSE_TOKENS = 32
_VALUE = "__value__"  # where mlx-lm's PromptTrie keeps a cached sequence's entry


def nearest_cache(prompt_cache, model_id: str, tokens: list[int], *, patched: bool = True):
    """(cache or None, tokens still to feed): a copy of the cache with the longest prefix of
    `tokens`, leaving at least one token, since the model needs the last token to produce the next.

    mlx-lm's `fetch_nearest_cache` picks the same prefix, but to find a cached sequence that goes
    on past the shared part it searches every one below it: quadratic in their length, on the
    engine thread while every stream waits. Any of them holds the shared part, so LMX takes the
    first it meets going down: linear in the prompt and that sequence."""
    from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

    if not patched:
        cache, rest = prompt_cache.fetch_nearest_cache(model_id, tokens)
        if cache is not None and not rest:  # the whole prompt: feed its last token again
            if not can_trim_prompt_cache(cache):
                return None, tokens
            trim_prompt_cache(cache, 1)
            rest = tokens[-1:]
        return cache, rest
    node = prompt_cache._trie._trie.get(model_id, {})
    shared, prefix_entry, prefix_length = 0, None, 0
    for token in tokens:
        child = node.get(token)
        if child is None:
            break
        node, shared = child, shared + 1
        if _VALUE in node:
            prefix_entry, prefix_length = node[_VALUE], shared  # a cached sequence ends here
    if shared < MIN_REUSE_TOKENS:
        return None, tokens

    # (entry, its length, tokens of it to keep), best first
    candidates = []
    if prefix_length == len(tokens):  # the whole prompt is cached: feed its last token again
        candidates.append((prefix_entry, prefix_length, len(tokens) - 1))
    elif shared > prefix_length and (below := _first_below(node)) is not None:
        entry, extra = below  # a longer sequence, trimmed back to the shared part
        candidates.append((entry, shared + extra, min(shared, len(tokens) - 1)))
    if 0 < prefix_length < len(tokens):
        candidates.append((prefix_entry, prefix_length, prefix_length))
    for entry, length, keep in candidates:
        if length > keep and not can_trim_prompt_cache(entry.prompt_cache):
            continue  # e.g. a sliding-window cache: it cannot be cut back
        cache = copy.deepcopy(entry.prompt_cache)
        if length > keep:
            trim_prompt_cache(cache, length - keep)
        return cache, tokens[keep:]
    return None, tokens


def _first_below(node: dict):
    """(entry, tokens below `node`) of some cached sequence through `node`, taking the first
    child each time; None if none."""
    depth = 0
    while _VALUE not in node:
        node = next((child for key, child in node.items() if key != _VALUE), None)
        if node is None:
            return None
        depth += 1
    return node[_VALUE], depth


def divergence(prompt_cache, model_id: str, tokens: list[int], *, ahead: int = 8) -> tuple[int, list[int]]:
    """(tokens of `tokens` shared with the cached sequence closest to it, up to `ahead` of that
    sequence's tokens from there: what it has where the prompt differs; empty when nothing cached
    goes on past the shared part)."""
    node = prompt_cache._trie._trie.get(model_id, {})
    shared = 0
    for token in tokens:
        child = node.get(token)
        if child is None:
            break
        node, shared = child, shared + 1
    cached = []
    while len(cached) < ahead:
        token = next((key for key in node if key != _VALUE), None)
        if token is None:
            break
        cached.append(token)
        node = node[token]
    return shared, cached
