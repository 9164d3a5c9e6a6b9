"""llama (and Mistral-style files, which llama.cpp also names llama)."""

from __future__ import annotations

import math

import numpy as np

from inference.gguf.archs import Architecture, register
from inference.gguf.reader import GGUFError

ORIGINAL_CONTEXT = 8192.0  # llama 3's; only its ratio to the two frequency factors matters


def llama3_factors(dims: int, base: float, scaling: dict) -> np.ndarray:
    """The per-dimension rope factors llama.cpp's converter writes as `rope_freqs` (the llama3
    rope scaling of Llama 3.1+)."""
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    context = scaling["original_max_position_embeddings"]
    wavelens = 2 * math.pi * base ** (np.arange(0, dims, 2, dtype=np.float64) / dims)
    smooth = (context / wavelens - low) / (high - low)
    factors = 1 / ((1 - smooth) / factor + smooth)
    factors = np.where(wavelens < context / high, 1.0, factors)
    return np.where(wavelens > context / low, factor, factors)


def llama3_scaling(factors: np.ndarray, dims: int, base: float) -> dict | None:
    """mlx-lm's llama3 rope scaling that reproduces a file's `rope_freqs` (None: no scaling)."""
    factors = factors.astype(np.float64)
    if factors.shape != (dims // 2,) or not np.all(np.isfinite(factors)) or factors.min() <= 0:
        raise GGUFError(
            f"rope_freqs.weight holds {factors.shape[0]} factors; {dims // 2} positive ones expected"
        )
    top = float(factors.max())
    if top <= 1 + 1e-6:
        return None
    wavelens = 2 * math.pi * base ** (np.arange(0, dims, 2, dtype=np.float64) / dims)
    smooth = (1 / factors - 1 / top) / (1 - 1 / top)  # 1: unscaled, 0: scaled by the full factor
    medium = (smooth > 1e-6) & (smooth < 1 - 1e-6)
    if medium.sum() >= 2:  # smooth = (context / wavelen - low) / (high - low)
        slope, intercept = np.polyfit(ORIGINAL_CONTEXT / wavelens[medium], smooth[medium], 1)
        low = -intercept / slope
        high = low + 1 / slope
    else:  # a hard step: any boundaries between the last unscaled and the first scaled wavelength
        unscaled, scaled = wavelens[smooth >= 1 - 1e-6], wavelens[smooth <= 1e-6]
        high = (
            ORIGINAL_CONTEXT / (unscaled.max() * 1.0001)
            if unscaled.size
            else ORIGINAL_CONTEXT / wavelens.min() * 2
        )
        low = (
            ORIGINAL_CONTEXT / (scaled.min() * 0.9999)
            if scaled.size
            else ORIGINAL_CONTEXT / wavelens.max() / 2
        )
    scaling = {
        "rope_type": "llama3",
        "factor": top,
        "low_freq_factor": float(low),
        "high_freq_factor": float(high),
        "original_max_position_embeddings": ORIGINAL_CONTEXT,
    }
    if not 0 < low < high or np.abs(llama3_factors(dims, base, scaling) / factors - 1).max() > 1e-3:
        raise GGUFError(
            "rope_freqs.weight is not llama 3's rope scaling; no other kind is supported", kind="unsupported"
        )
    return scaling


class Llama(Architecture):
    name = "llama"
    model_type = "llama"
    # llama.cpp's converter permutes Q/K rows for its interleaved rope; mlx-lm's traditional
    # rope reads them as stored.
    rope_traditional = True

    def config(self, f):
        config = self.base_config(f)
        freqs = f.tensors.get("rope_freqs.weight")
        if freqs is not None:  # Llama 3.1+: written out by the converter, read back as mlx-lm's scaling
            dims = int(f.get("llama.rope.dimension_count") or config["head_dim"])
            scaling = llama3_scaling(
                np.asarray(f.raw(freqs.name), dtype=np.float64), dims, config["rope_theta"]
            )
            if scaling:
                config["rope_scaling"] = scaling
        return config

    def required_parts(self, config):
        return super().required_parts(config) | {"ffn_gate", "ffn_up"}


register(Llama())
