"""GGUF compatibility layer: a llama.cpp file becomes an mlx-lm model, tokenizer and config.

The file is read by gguf-py (inference.gguf.reader), checked and mapped by its architecture's
module (inference.gguf.archs), its tensors converted one at a time (tensors.py) and its
tokenizer built with `tokenizers` (tokenizer.py).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from inference.engine.gguf import tensors, tokenizer
from inference.errors import ModelLoadError
from inference.gguf import archs
from inference.gguf.quant import GROUP, Q, file_type_label
from inference.gguf.reader import GGUFError, GGUFFile, open_file


@dataclass
class GGUFModel:
    config: dict
    weights: dict[str, mx.array]
    file: GGUFFile
    parameter_count: int
    quantization: str


def _error(path: Path, exc: GGUFError) -> ModelLoadError:
    if exc.kind == "unsupported":
        return ModelLoadError(f"{path.name}: {exc}.")
    return ModelLoadError(f"GGUF file {path.name} cannot be used: {exc}.")


def read_model(path: Path, progress: Callable[[int, int], None] | None = None) -> GGUFModel:
    try:
        f = open_file(path)
        plan = archs.lookup(f.architecture).plan(f)
        dtype = mx.bfloat16 if any(t.ggml_type == Q.BF16 for t in f.tensors.values()) else mx.float16
        weights: dict[str, mx.array] = {}
        per_layer: dict[str, dict] = {}
        params = 0
        data = f.tensor_data()
        # Largest first: its float slices come and go while little else is resident yet.
        order = sorted(plan.names, key=lambda n: -f.tensors[n].n_bytes)
        for i, name in enumerate(order):
            info, target = f.tensors[name], plan.names[name]
            base = target.rpartition(".")[0]
            converted, bits = tensors.convert(
                info, data[name], dtype=dtype, transform=lambda a, t=target: plan.arch.transform(t, a)
            )
            tensors.release(f.reader.data, info.data_offset, info.n_bytes)
            if target.endswith(".weight"):
                weights.update({f"{base}.{suffix}": array for suffix, array in converted.items()})
            else:  # a bias (never quantized: a vector)
                weights[target] = converted["weight"]
            if bits is not None:
                per_layer[base] = {"group_size": GROUP, "bits": bits}
            params += info.n_elements
            if progress:
                progress(i + 1, len(order))
    except GGUFError as exc:
        raise _error(path, exc) from exc
    bits_seen = [q["bits"] for q in per_layer.values()]
    default_bits = max(set(bits_seen), key=bits_seen.count) if bits_seen else 4
    quantization: dict = {"group_size": GROUP, "bits": default_bits}
    quantization.update({layer: q for layer, q in per_layer.items() if q["bits"] != default_bits})
    config = dict(plan.config, quantization=quantization)
    return GGUFModel(config, weights, f, params, file_type_label(f.get("general.file_type")))


def instantiate(config: dict, weights: dict[str, mx.array]) -> nn.Module:
    """Build an mlx-lm model from a config and weights already in mlx-lm's naming."""
    from inference.engine.mlx_compat.models import model_classes

    model_class, args_class = model_classes(config)
    model = model_class(args_class.from_dict(config))
    if hasattr(model, "sanitize"):
        weights = model.sanitize(dict(weights))
    quantization = config.get("quantization") or {}

    def predicate(layer_path: str, module: nn.Module):
        if f"{layer_path}.scales" not in weights:
            return False
        return quantization.get(layer_path, True) if hasattr(module, "to_quantized") else False

    if quantization:
        nn.quantize(
            model, group_size=quantization["group_size"], bits=quantization["bits"], class_predicate=predicate
        )
    model.eval()
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as exc:
        raise ModelLoadError(f"GGUF tensors do not match the model they describe: {str(exc)[:500]}") from exc
    mx.eval(model.parameters())
    return model


def load(path: Path):
    """Load a GGUF file: (model, mlx-lm TokenizerWrapper, GGUFModel description)."""
    from mlx_lm.tokenizer_utils import load as load_tokenizer

    gguf = read_model(path)
    model = instantiate(gguf.config, gguf.weights)
    with tempfile.TemporaryDirectory(prefix="lmx-gguf-tok-") as tmp:
        try:
            tokenizer.write(gguf.file, Path(tmp))
        except GGUFError as exc:
            raise _error(path, exc) from exc
        wrapped = load_tokenizer(Path(tmp))
    return model, wrapped, gguf


def convert(path: Path, out_dir: Path, progress: Callable[[int, int], None] | None = None) -> GGUFModel:
    """Write an MLX-native folder (config.json, model.safetensors, tokenizer) from a GGUF file."""
    gguf = read_model(path, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        tokenizer.write(gguf.file, out_dir)
    except GGUFError as exc:
        raise _error(path, exc) from exc
    mx.save_safetensors(str(out_dir / "model.safetensors"), gguf.weights, metadata={"format": "mlx"})
    config = dict(gguf.config, quantization_config=gguf.config["quantization"])
    config["lmx_source"] = {"gguf": path.name, "quantization": gguf.quantization}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    return gguf
