"""How long the engine thread spends finding a prompt's cached prefix (`lmx_bench_lookup`).

The lookup is Python on the engine thread: every decoding stream waits for it. It is measured
with KV caches of a small random Llama (the search walks token ids, so its cost depends on how
many tokens are cached, not on the model's size): `entries` cached chats of `length` tokens whose
first half is one system prompt (BOS included), then three prompts: a fresh one (sharing only the
BOS token), a new chat with the same system prompt, and a follow-up turn (a whole cached chat). mlx-lm's lookup is `LRUPromptCache.fetch_nearest_cache`; LMX's is
`prompt_cache.nearest_cache`, which reuses a prefix only from MIN_REUSE_TOKENS on.
"""

from __future__ import annotations

import random
import statistics
import time

BOS = 1


def _model():
    import mlx.core as mx
    from mlx_lm.utils import _get_classes

    from benchmarks.random_model import SHAPES, TINY_LLAMA

    config = {**SHAPES["llama-3.1-8b"], **TINY_LLAMA, "vocab_size": 1024}
    model_cls, args_cls = _get_classes(config)
    mx.random.seed(0)
    model = model_cls(args_cls.from_dict(config))
    mx.eval(model.parameters())
    return model


def measure(*, entries: int, length: int, prompt: int, repeat: int = 5) -> list[tuple[str, list[float]]]:
    """(lookup, median ms for each of PROMPTS)."""
    import mlx.core as mx
    from mlx_lm.models.cache import LRUPromptCache, make_prompt_cache

    from inference.engine.mlx_compat.prompt_cache import nearest_cache

    model, rng = _model(), random.Random(0)

    def words(n: int) -> list[int]:
        return [rng.randrange(2, 1024) for _ in range(n)]

    cached = LRUPromptCache(max_size=entries)
    system = [BOS, *words(length // 2 - 1)]
    chats = [system + words(length - len(system)) for _ in range(entries)]
    for tokens in chats:
        cache = make_prompt_cache(model)
        model(mx.array([tokens]), cache=cache)
        mx.eval([c.state for c in cache])
        cached.insert_cache("m", tokens, cache)
    prompts = [[BOS, *words(prompt - 1)], system + words(prompt), [*chats[0], 7, 8, 9]]

    def timed(lookup, tokens) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            cache, _ = lookup(cached, "m", tokens)
            mx.eval([c.state for c in cache] if cache else [])
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1000

    lookups = [
        ("mlx-lm (fetch_nearest_cache)", lambda c, m, t: c.fetch_nearest_cache(m, t)),
        ("LMX (nearest_cache)", nearest_cache),
    ]
    return [(name, [timed(fn, tokens) for tokens in prompts]) for name, fn in lookups]


def markdown(rows, *, entries: int, length: int, prompt: int, title: str) -> str:
    lines = [
        title,
        "",
        f"{entries} cached chats of {length:,} tokens, the first {length // 2:,} a system prompt they share. "
        f"Prompts: a fresh {prompt}-token one (shares the BOS token), a new chat with the system prompt "
        f"and {prompt} tokens more, a follow-up turn (a whole cached chat and 3 tokens). "
        "Median of 5 lookups, ms on the engine thread.",
        "",
        "| lookup | fresh prompt | new chat, same system prompt | follow-up turn |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | " + " | ".join(f"{ms:.1f}" for ms in times) + " |" for name, times in rows]
    return "\n".join(lines) + "\n"
