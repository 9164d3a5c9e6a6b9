"""GGUF compatibility layer: a llama.cpp file becomes an mlx-lm model, tokenizer and config.

Q4_0, Q4_1 and Q8_0 tensors arrive from `mx.load` as MLX quantized triplets and stay so;
any other tensor type arrives as float16 and is re-quantized to MLX 4-bit.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from inference import store
from inference.errors import ModelLoadError

SUPPORTED_ARCHITECTURES = ("llama",)
REQUANT_BITS = 4
REQUANT_GROUP = 32

# GGUF tensor name -> mlx-lm llama parameter name (per block, then global).
_BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}

# llama.cpp pre-tokenizer names -> the split regex of that family (None: GPT-2's own).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_PRE_TOKENIZERS = {
    "default": ("gpt2", None),
    "gpt2": ("gpt2", None),
    "smollm": ("digits", None),
    "starcoder": ("digits", None),
    "refact": ("digits", None),
    "llama-bpe": ("split", _LLAMA3_SPLIT),
    "llama3": ("split", _LLAMA3_SPLIT),
}


@dataclass
class GGUFModel:
    config: dict
    weights: dict[str, mx.array]
    metadata: dict
    parameter_count: int
    quantization: str


def _scalar(md: dict, key: str, default=None):
    value = md.get(key, default)
    if isinstance(value, mx.array):
        return value.item()
    return value


def read_file(path: Path) -> tuple[dict[str, mx.array], dict]:
    """Read a GGUF file, turning MLX's terse failures into a message that names the problem."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelLoadError(f"Cannot read GGUF file {path.name}: {exc.strerror}.") from exc
    if magic != b"GGUF":
        raise ModelLoadError(
            f"{path.name} is not a GGUF file (it does not start with the GGUF magic bytes); "
            "the file is corrupt or has the wrong extension."
        )
    try:
        weights, metadata = mx.load(str(path), return_metadata=True)
    except Exception as exc:  # MLX raises ValueError/RuntimeError on truncated data.
        raise ModelLoadError(
            f"GGUF file {path.name} is corrupt or truncated and cannot be read "
            f"({type(exc).__name__}: {str(exc)[:200]}). Download it again."
        ) from exc
    return weights, metadata


def architecture_of(metadata: dict) -> str:
    return str(metadata.get("general.architecture", "unknown"))


def build_config(metadata: dict, weights: dict[str, mx.array]) -> dict:
    arch = architecture_of(metadata)
    if "general.architecture" not in metadata or not weights:
        raise ModelLoadError(
            "The GGUF file has no architecture metadata or no tensors; it is corrupt or incomplete. "
            "Download it again."
        )
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ModelLoadError(
            f"GGUF architecture '{arch}' is not supported by LMX's GGUF layer "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)}). Use an MLX-native copy of the model."
        )

    def need(key: str):
        value = _scalar(metadata, f"{arch}.{key}")
        if value is None:
            raise ModelLoadError(f"GGUF metadata lacks '{arch}.{key}'; the file is incomplete.")
        return value

    hidden = int(need("embedding_length"))
    heads = int(need("attention.head_count"))
    tokens = metadata.get("tokenizer.ggml.tokens") or []
    vocab = int(_scalar(metadata, f"{arch}.vocab_size", len(tokens)))
    head_dim = int(_scalar(metadata, f"{arch}.attention.key_length", hidden // heads))
    return {
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": int(need("block_count")),
        "intermediate_size": int(need("feed_forward_length")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(_scalar(metadata, f"{arch}.attention.head_count_kv", heads)),
        "head_dim": head_dim,
        "rms_norm_eps": float(need("attention.layer_norm_rms_epsilon")),
        "vocab_size": vocab,
        "max_position_embeddings": int(_scalar(metadata, f"{arch}.context_length", 4096)),
        "rope_theta": float(_scalar(metadata, f"{arch}.rope.freq_base", 10000.0)),
        # llama.cpp permutes Q/K rows for its rope; the traditional layout matches them as stored.
        "rope_traditional": True,
        "tie_word_embeddings": "output.weight" not in weights,
    }


def _mlx_name(gguf_name: str) -> str:
    stem, _, suffix = gguf_name.rpartition(".")
    if stem.startswith("blk."):
        _, index, part = stem.split(".", 2)
        if part not in _BLOCK_NAMES:
            raise ModelLoadError(f"GGUF tensor '{gguf_name}' is not part of a llama model.")
        return f"model.layers.{index}.{_BLOCK_NAMES[part]}.{suffix}"
    if stem not in _GLOBAL_NAMES:
        raise ModelLoadError(f"GGUF tensor '{gguf_name}' is not part of a llama model.")
    return f"{_GLOBAL_NAMES[stem]}.{suffix}"


def convert_weights(
    weights: dict[str, mx.array], progress: Callable[[int, int], None] | None = None
) -> tuple[dict[str, mx.array], dict, int]:
    """Rename to mlx-lm's names; keep GGUF quantization, re-quantize float matrices.

    Returns the weights, mlx-lm's per-layer quantization config and the parameter count.
    """
    out: dict[str, mx.array] = {}
    per_layer: dict[str, dict] = {}
    params = 0
    names = [n for n in weights if n.endswith(".weight")]
    for i, name in enumerate(sorted(names)):
        base = name[: -len(".weight")]
        target = _mlx_name(name)[: -len(".weight")]
        weight = weights[name]
        if f"{base}.scales" in weights:
            scales, biases = weights[f"{base}.scales"], weights[f"{base}.biases"]
            in_features = scales.shape[-1] * REQUANT_GROUP
            bits = weight.shape[-1] * 32 // in_features
            out[f"{target}.weight"] = weight
            out[f"{target}.scales"] = scales
            out[f"{target}.biases"] = biases
            per_layer[target] = {"group_size": REQUANT_GROUP, "bits": bits}
            params += weight.shape[0] * in_features
        elif weight.ndim == 2 and weight.shape[-1] % REQUANT_GROUP == 0:
            w, s, b = mx.quantize(weight.astype(mx.float16), group_size=REQUANT_GROUP, bits=REQUANT_BITS)
            out[f"{target}.weight"], out[f"{target}.scales"], out[f"{target}.biases"] = w, s, b
            per_layer[target] = {"group_size": REQUANT_GROUP, "bits": REQUANT_BITS}
            params += weight.size
        else:
            out[f"{target}.weight"] = weight.astype(mx.float16) if weight.ndim > 1 else weight
            params += weight.size
        if progress:
            progress(i + 1, len(names))
    bits_seen = [q["bits"] for q in per_layer.values()]
    default_bits = max(set(bits_seen), key=bits_seen.count) if bits_seen else REQUANT_BITS
    quantization: dict = {"group_size": REQUANT_GROUP, "bits": default_bits}
    for layer, q in per_layer.items():
        if q["bits"] != default_bits:
            quantization[layer] = q
    return out, quantization, params


def quantization_label(metadata: dict) -> str:
    return store.quantization_label(_scalar(metadata, "general.file_type"))


def write_tokenizer(metadata: dict, out_dir: Path) -> None:
    """Write tokenizer.json + tokenizer_config.json built from the GGUF vocabulary."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    kind = metadata.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ModelLoadError(
            f"GGUF tokenizer type '{kind}' is not supported (only byte-level BPE, 'gpt2'). "
            "Use an MLX-native copy of the model."
        )
    pre = str(metadata.get("tokenizer.ggml.pre", "default"))
    style, pattern = _PRE_TOKENIZERS.get(pre, ("gpt2", None))
    tokens = list(metadata["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in metadata.get("tokenizer.ggml.merges", [])]
    types = metadata.get("tokenizer.ggml.token_type")
    types = types.tolist() if isinstance(types, mx.array) else list(types or [1] * len(tokens))

    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=pattern is None)
    if style == "digits":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    elif style == "split":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(pattern), behavior="isolated"), byte_level]
        )
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    # CONTROL (3) and USER_DEFINED (4) tokens are matched whole, never split by BPE.
    specials = [
        AddedToken(tokens[i], special=t == 3, normalized=False) for i, t in enumerate(types) if t in (3, 4)
    ]
    tok.add_tokens(specials)

    def token_at(key: str):
        idx = _scalar(metadata, key)
        return tokens[idx] if idx is not None and 0 <= idx < len(tokens) else None

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=token_at("tokenizer.ggml.bos_token_id"),
        eos_token=token_at("tokenizer.ggml.eos_token_id"),
        unk_token=token_at("tokenizer.ggml.unknown_token_id"),
        pad_token=token_at("tokenizer.ggml.padding_token_id"),
        clean_up_tokenization_spaces=False,
    )
    template = metadata.get("tokenizer.chat_template")
    if template:
        fast.chat_template = str(template)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))


def read_model(path: Path, progress: Callable[[int, int], None] | None = None) -> GGUFModel:
    raw, metadata = read_file(path)
    config = build_config(metadata, raw)
    weights, quantization, params = convert_weights(raw, progress)
    config["quantization"] = quantization
    return GGUFModel(config, weights, metadata, params, quantization_label(metadata))


def instantiate(config: dict, weights: dict[str, mx.array]) -> nn.Module:
    """Build an mlx-lm model from a config and weights already in mlx-lm's naming."""
    from inference.engine.mlx_compat.models import model_classes

    model_class, args_class = model_classes(config)
    model = model_class(args_class.from_dict(config))
    quantization = config.get("quantization") or {}

    def predicate(layer_path: str, module: nn.Module):
        if layer_path in quantization:
            return quantization[layer_path]
        return hasattr(module, "to_quantized") and f"{layer_path}.scales" in weights

    if quantization:
        nn.quantize(
            model,
            group_size=quantization["group_size"],
            bits=quantization["bits"],
            class_predicate=predicate,
        )
    model.eval()
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as exc:
        raise ModelLoadError(f"GGUF tensors do not match the model they describe: {exc}") from exc
    mx.eval(model.parameters())
    return model


def load(path: Path):
    """Load a GGUF file: (model, mlx-lm TokenizerWrapper, GGUFModel description)."""
    from mlx_lm.tokenizer_utils import load as load_tokenizer

    gguf = read_model(path)
    model = instantiate(gguf.config, gguf.weights)
    with tempfile.TemporaryDirectory(prefix="lmx-gguf-tok-") as tmp:
        write_tokenizer(gguf.metadata, Path(tmp))
        tokenizer = load_tokenizer(Path(tmp))
    return model, tokenizer, gguf


def convert(path: Path, out_dir: Path, progress: Callable[[int, int], None] | None = None) -> GGUFModel:
    """Write an MLX-native folder (config.json, model.safetensors, tokenizer) from a GGUF file."""
    gguf = read_model(path, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out_dir / "model.safetensors"), gguf.weights, metadata={"format": "mlx"})
    config = dict(gguf.config, quantization_config=gguf.config["quantization"])
    config["lmx_source"] = {"gguf": path.name, "quantization": gguf.quantization}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    write_tokenizer(gguf.metadata, out_dir)
    return gguf
