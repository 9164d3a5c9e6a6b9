"""Every use of mlx-lm's or MLX's private internals, in one place.

LMX's speed-ups reach into mlx-lm where it has no public hook: the batch generator's decode step
and prefill queue (generator, admission), its prompt-cache trie (prompt_cache), layer classes
swapped per step (batch_layers), MLX's attention entry point (attention) and the model class
lookup (models). Each was written against one mlx-lm version. On any other, `ACTIVE` is False:
one warning line at import, and every part falls back to mlx-lm's public path (same tokens,
without those speed-ups). docs/ARCHITECTURE.md lists what each patch does.
"""

from __future__ import annotations

import logging

import mlx_lm

log = logging.getLogger("lmx.engine")

WRITTEN_FOR = ("0.32.2",)  # mlx-lm versions these patches were written and tested against


def check(version: str) -> bool:
    """Whether the patches may run with mlx-lm `version`; warns once in a line when not."""
    if version in WRITTEN_FOR:
        return True
    log.warning(
        "mlx-lm %s is installed; LMX's mlx-lm patches were written for %s, so they are off "
        "and LMX runs mlx-lm's public path (slower batching, same answers)",
        version,
        ", ".join(WRITTEN_FOR),
    )
    return False


ACTIVE = check(mlx_lm.__version__)


def active() -> bool:
    """Read at each use, so a test can turn the patches off (monkeypatch ACTIVE)."""
    return ACTIVE
