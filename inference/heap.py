"""The garbage collector's view of a long-lived process (each LMX process calls it for itself)."""

from __future__ import annotations

import ctypes
import gc


def freeze_heap() -> None:
    """Collect, then move every object left to the permanent generation, so full collections
    skip the ~150k long-lived objects of Django, Twisted and the model (a pause every stream and
    probe felt: "Heap frozen" in "Why batched decoding was slow", docs/BENCHMARKS.md)."""
    gc.collect()
    gc.freeze()


def return_free_memory() -> int:
    """Hand the C heap's free pages back to the system (glibc's `malloc_trim`): a model's
    buffers freed at unload otherwise stay in the process's arenas, so its resident memory does
    not come down and creeps up over loads and unloads. 1 when memory was returned, 0 when none
    was or the C library has no such call (macOS returns freed pages itself)."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return 0
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return int(trim(0))
