"""What the prompt cache did for a prompt, as the response's `stats.prompt_cache` says it: the
tier that served it (ram, disk, none), the tokens it served, and why the rest was computed:

- full: all of the prompt but the token that must be fed again;
- extends: the closest cached sequence ends inside the prompt, which goes on past it;
- diverged: a cached sequence has other tokens from `diverged_at` on (both texts are given, e.g.
  a timestamp in a system prompt);
- block: served from disk up to a block's end; the prompt's next block is on no tier (the
  difference is somewhere in it);
- new: nothing cached shares a token with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("lmx.engine")

SNIPPET_TOKENS = 8


def report(found, tokens: list[int], decode: Callable[[list[int]], str]) -> dict:
    """`found`: the lookup (mlx_compat.generator.Found) for the prompt `tokens`."""
    if found.cached >= len(tokens) - 1:
        reason = "full"
    elif found.cached_ahead:
        reason = "diverged"
    elif not found.exact:
        reason = "block"
    elif found.shared:
        reason = "extends"
    else:
        reason = "new"
    out = {"tier": found.tier, "cached_tokens": found.cached, "reason": reason}
    if reason in ("diverged", "block"):
        out.update(
            diverged_at=found.shared,
            prompt_text=decode(tokens[found.shared : found.shared + SNIPPET_TOKENS]),
            cached_text=decode(found.cached_ahead) if found.cached_ahead else None,
        )
        log.debug(
            "Prompt cache %s: the prompt left the cache at token %d: %r where the cache has %r",
            reason,
            found.shared,
            out["prompt_text"],
            out["cached_text"],
        )
    return out
