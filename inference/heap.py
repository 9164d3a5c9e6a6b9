"""The garbage collector's view of a long-lived process (each LMX process calls it for itself)."""

from __future__ import annotations

import gc


def freeze_heap() -> None:
    """Collect, then move every object left to the permanent generation, so full collections
    skip the ~150k long-lived objects of Django, Twisted and the model (a pause every stream and
    probe felt: "Heap frozen" in "Why batched decoding was slow", docs/BENCHMARKS.md)."""
    gc.collect()
    gc.freeze()
