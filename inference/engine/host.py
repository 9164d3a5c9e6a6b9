"""Reading results back to Python without holding the GIL while the device works."""

from __future__ import annotations

import mlx.core as mx


def to_host(array: mx.array) -> mx.array:
    """Wait for `array` and bring its data to host memory, letting the GIL go meanwhile.

    `.item()` and `.tolist()` hold the GIL while they wait, and on CUDA while they copy from
    device memory behind whatever the device runs next ("Why batched decoding was slow", docs/BENCHMARKS.md).
    MLX's array repr does the same wait and copy with the GIL released; after it, `.item()` or
    `.tolist()` only reads host memory."""
    repr(array)
    return array
