"""Linux CPU fast path in the engine: float32 weights when OpenBLAS is preloaded (inference.blas)."""

from __future__ import annotations

from inference.blas import mode, openblas_loaded

BACKEND = "+cpu-f32-openblas"  # ends the backend name of a model loaded this way


def on_cpu() -> bool:
    import mlx.core as mx

    return mx.default_device() == mx.cpu


def should_dequantize() -> bool:
    chosen = mode()
    if chosen == "off" or not on_cpu():
        return False
    return chosen == "on" or openblas_loaded()


def dequantize(model):
    import mlx.core as mx
    from mlx_lm.utils import dequantize_model

    model = dequantize_model(model)
    model.set_dtype(mx.float32)
    mx.eval(model.parameters())
    return model
