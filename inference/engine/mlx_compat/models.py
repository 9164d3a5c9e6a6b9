"""An mlx-lm model class for a config (GGUF files build their model from their metadata)."""

from __future__ import annotations

import importlib

from inference.engine import mlx_compat


def model_classes(config: dict):
    """(Model class, ModelArgs class) for `config`, as mlx-lm's loader picks them."""
    if mlx_compat.active():
        from mlx_lm.utils import _get_classes

        return _get_classes(config)
    # mlx-lm's public layout: one module per model type with Model and ModelArgs.
    try:
        module = importlib.import_module(f"mlx_lm.models.{config['model_type']}")
    except ImportError as exc:
        raise ValueError(f"Model type {config['model_type']} not supported.") from exc
    return module.Model, module.ModelArgs
