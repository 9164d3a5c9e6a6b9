"""What the engine process says at its start: which of LMX's speed-ups are on, and how to turn
each off (the server process never loads MLX, so it cannot tell)."""

from __future__ import annotations

import logging

from inference.engine import cpu_blas, loading, solo
from inference.engine.mlx_compat import attention, batch_layers

log = logging.getLogger("lmx")


def log_speedups() -> None:
    if cpu_blas.should_dequantize():
        log.info("CPU fast path: float32 weights with OpenBLAS (LMX_CPU_FAST_PATH=off to disable)")
    if batch_layers.enabled():
        log.info(
            "Batch layers: quantized layers fold the batch into one matmul (LMX_BATCH_LAYERS=off to disable)"
        )
    if attention.enabled():
        log.info(
            "Short attention: prompt chunks after cached tokens skip cuDNN's per-shape graphs "
            "(LMX_SHORT_ATTENTION=off to disable)"
        )
    if solo.buckets_enabled():
        log.info(
            "Prefill buckets: prompt chunks are padded to one of 16 lengths, each run once by the "
            "warm-up, %s (LMX_PREFILL_BUCKETS=off to disable)",
            "after ready, while idle" if loading.warm_up_in_background() else "before ready",
        )
