"""Tiny random-weight GGUF files of each registered architecture, written with gguf-py the way
llama.cpp's converter writes them (gguf-py's own tensor name map, llama's Q/K permutation,
Gemma's 1 + w norms), each beside an MLX-native folder of the very weights the file holds (gguf-py
dequantizes them), for mlx-lm to load as the reference."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
from gguf import MODEL_ARCH, GGMLQuantizationType, GGUFWriter, get_tensor_name_map, quants
from gguf.quants import quant_shape_to_byte_shape

Q = GGMLQuantizationType
HIDDEN, FF, HEADS, KV_HEADS, HEAD_DIM, LAYERS = 256, 512, 4, 2, 64, 2
COMMON = {
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "intermediate_size": FF,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 2048,
    "rope_theta": 10000.0,
}
LLAMA3_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}
# GGUF architecture (-variant) -> (gguf-py's arch, the mlx-lm / Hugging Face config of the same model)
ARCHS = {
    "llama": (MODEL_ARCH.LLAMA, {"model_type": "llama", "head_dim": HEAD_DIM, "tie_word_embeddings": False}),
    # Llama 3.1+: llama3 rope scaling, which llama.cpp's converter writes as a rope_freqs tensor
    "llama-rope-scaled": (
        MODEL_ARCH.LLAMA,
        {
            "model_type": "llama",
            "head_dim": HEAD_DIM,
            "tie_word_embeddings": False,
            "rope_theta": 500000.0,
            "rope_scaling": LLAMA3_SCALING,
        },
    ),
    "qwen2": (MODEL_ARCH.QWEN2, {"model_type": "qwen2", "tie_word_embeddings": False}),
    "qwen3": (MODEL_ARCH.QWEN3, {"model_type": "qwen3", "head_dim": HEAD_DIM, "tie_word_embeddings": False}),
    "qwen3moe": (
        MODEL_ARCH.QWEN3MOE,
        {
            "model_type": "qwen3_moe",
            "head_dim": HEAD_DIM,
            "tie_word_embeddings": False,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
            "moe_intermediate_size": 256,
            "norm_topk_prob": True,
        },
    ),
    "gemma2": (
        MODEL_ARCH.GEMMA2,
        {"model_type": "gemma2", "head_dim": HEAD_DIM, "query_pre_attn_scalar": HEAD_DIM},
    ),
    "gemma3": (
        MODEL_ARCH.GEMMA3,
        {
            "model_type": "gemma3_text",
            "head_dim": HEAD_DIM,
            "query_pre_attn_scalar": HEAD_DIM,
            "rope_theta": 1_000_000.0,
            "sliding_window": 512,
            "num_hidden_layers": 6,  # mlx-lm's gemma3 wants one whole sliding-window pattern
        },
    ),
    "phi3": (MODEL_ARCH.PHI3, {"model_type": "phi3", "tie_word_embeddings": False}),
}


def byte_vocab() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return [*bytes_to_unicode().values(), "<|endoftext|>"]


def rope_factors(config: dict) -> np.ndarray:
    """llama.cpp's converter's `rope_freqs` for llama3 rope scaling (convert_hf_to_gguf.py)."""
    import math

    scaling, base, dim = config["rope_scaling"], config["rope_theta"], config["head_dim"]
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    factors = []
    for freq in 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim)):
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            factors.append(1)
        elif wavelen > old / low:
            factors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter's permutation of llama's Q/K rows (convert_hf_to_gguf.py)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def encode(values: np.ndarray, ggml_type, rng: np.random.Generator) -> np.ndarray:
    """Blocks of `ggml_type` for a float tensor: gguf-py quantizes where it can; for the K-quants
    it cannot, random blocks with sane scales (every bit pattern of the rest is valid)."""
    if ggml_type in (Q.F32, Q.F16):
        return values.astype(np.float32 if ggml_type == Q.F32 else np.float16)
    try:
        return quants.quantize(values.astype(np.float32), ggml_type)
    except NotImplementedError:
        pass
    shape = quant_shape_to_byte_shape(values.shape, ggml_type)
    blocks = rng.integers(0, 256, size=shape, dtype=np.uint8)
    flat = blocks.reshape(-1, {Q.Q4_K: 144, Q.Q5_K: 176, Q.Q6_K: 210}[ggml_type])
    scale = np.float16(float(np.abs(values).mean()) / 16)
    if ggml_type == Q.Q6_K:  # ql, qh, int8 scales, d at the end
        # sub-block scales of one sign and similar size, as llama.cpp's quantizer leaves them
        flat[:, 192:208] = rng.integers(20, 32, size=(flat.shape[0], 16)).astype(np.int8).view(np.uint8)
        flat[:, 208:210] = np.full((flat.shape[0], 1), scale / 32, dtype=np.float16).view(np.uint8)
    else:  # d, dmin, 6-bit scales and mins, ...
        flat[:, 0:2] = np.full((flat.shape[0], 1), scale / 4, dtype=np.float16).view(np.uint8)
        flat[:, 2:4] = np.full((flat.shape[0], 1), scale / 2, dtype=np.float16).view(np.uint8)
    return blocks


def _gguf_name(arch: str, names, mlx_name: str) -> str:
    base, _, suffix = mlx_name.rpartition(".")
    if ".switch_mlp." in base:  # mlx-lm stacks experts already, as GGUF does
        layer = base.split(".")[2]
        return f"blk.{layer}.ffn_{base.rsplit('.', 1)[1].removesuffix('_proj')}_exps.{suffix}"
    found = names.get_name(base)
    assert found, (arch, mlx_name)
    return f"{found}.{suffix}"


def write(folder: Path, arch: str, ggml_type=Q.Q8_0, *, seed: int = 0) -> tuple[Path, Path]:
    """(the .gguf file, the MLX-native reference folder) for a tiny `arch` model whose matrices
    are stored as `ggml_type` (norms and vectors as F32, as llama.cpp stores them)."""
    from mlx.utils import tree_flatten
    from mlx_lm.utils import _get_classes

    gguf_arch, extra = ARCHS[arch]
    tokens = byte_vocab()
    config = {**COMMON, **extra, "vocab_size": len(tokens)}
    rng = np.random.default_rng(seed)
    mx.random.seed(seed)
    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    layers = config["num_hidden_layers"]
    names = get_tensor_name_map(gguf_arch, layers)
    gemma = arch.startswith("gemma")
    reference: dict[str, np.ndarray] = {}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{arch}-{ggml_type.name}.gguf"
    arch = arch.split("-")[0]  # a variant of a GGUF architecture
    writer = GGUFWriter(str(path), arch)
    if "rope_scaling" in config:
        writer.add_tensor("rope_freqs.weight", rope_factors(config))
    for name, param in tree_flatten(model.parameters()):
        w = np.array(param.astype(mx.float32))
        if w.ndim == 1:
            w = (0.1 if gemma else 1.0) * rng.standard_normal(w.shape).astype(np.float32) + (
                0 if gemma else 1
            )
            stored = w + 1 if gemma and name.endswith("norm.weight") else w
            writer.add_tensor(_gguf_name(arch, names, name), stored.astype(np.float32))
            reference[name] = w
            continue
        w = rng.standard_normal(w.shape).astype(np.float32) / np.sqrt(w.shape[-1])
        heads = {"q_proj": HEADS, "k_proj": KV_HEADS}.get(name.split(".")[-2]) if arch == "llama" else None
        stored = _permute(w, heads) if heads else w
        blocks = encode(stored, ggml_type, rng)
        back = quants.dequantize(blocks, ggml_type) if blocks.dtype == np.uint8 else blocks.astype(np.float32)
        reference[name] = _unpermute(back, heads) if heads else back
        writer.add_tensor(_gguf_name(arch, names, name), blocks, raw_dtype=ggml_type)
    writer.add_custom_alignment(32)  # llama.cpp's default, written out (crafted() changes it)
    writer.add_block_count(layers)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FF)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config["rope_theta"])
    if "head_dim" in extra:
        writer.add_key_length(HEAD_DIM)
        writer.add_value_length(HEAD_DIM)
    if arch == "qwen3moe":
        writer.add_expert_count(extra["num_experts"])
        writer.add_expert_used_count(extra["num_experts_per_tok"])
        writer.add_expert_feed_forward_length(extra["moe_intermediate_size"])
    if arch == "gemma3":
        writer.add_sliding_window(extra["sliding_window"])
    if arch == "gemma2":
        writer.add_attn_logit_softcapping(50.0)
        writer.add_final_logit_softcapping(30.0)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(tokens) - 1) + [3])
    writer.add_token_merges([])
    writer.add_bos_token_id(len(tokens) - 1)
    writer.add_eos_token_id(len(tokens) - 1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    ref = folder / f"{path.stem}-mlx"
    ref.mkdir(exist_ok=True)
    mx.save_safetensors(str(ref / "model.safetensors"), {k: mx.array(v) for k, v in reference.items()})
    (ref / "config.json").write_text(json.dumps(config))
    return path, ref


def _rewrite(path: Path, out: Path, patch) -> Path:
    """A copy of `path` with `patch(data: bytearray, reader)` applied (reader: gguf-py's view of
    the original, to find where a field's bytes are)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    data = bytearray(path.read_bytes())
    patch(data, reader)
    out.write_bytes(bytes(data))
    return out


def _at(reader, part) -> int:
    return part.ctypes.data - reader.data.ctypes.data


def _field(reader, key: str) -> int:
    field = reader.fields[key]
    return _at(reader, field.parts[field.data[0]])


def _tensor_info(reader, index: int, part: int) -> int:
    return _at(reader, reader.tensors[index].field.parts[part])


def _set(data: bytearray, offset: int, fmt: str, value) -> None:
    import struct

    struct.pack_into(fmt, data, offset, value)


def crafted(folder: Path) -> dict[str, tuple[Path, str]]:
    """Damaged and unsupported files (#24, #26 item 3), each with what its refusal must say."""
    import struct

    folder.mkdir(parents=True, exist_ok=True)
    good, _ = write(folder / "src", "llama", Q.Q8_0)
    out: dict[str, tuple[Path, str]] = {}

    def patched(name: str, expect: str, patch) -> None:
        out[name] = (_rewrite(good, folder / name, patch), expect)

    patched("alignment-0.gguf", "alignment", lambda d, r: _set(d, _field(r, "general.alignment"), "<I", 0))
    patched("alignment-3.gguf", "alignment", lambda d, r: _set(d, _field(r, "general.alignment"), "<I", 3))
    patched("version-1.gguf", "version", lambda d, r: _set(d, 4, "<I", 1))
    patched("version-999.gguf", "version", lambda d, r: _set(d, 4, "<I", 999))
    patched(
        "context-2e32.gguf",
        "context_length",
        lambda d, r: _set(d, _field(r, "llama.context_length"), "<I", 2**32 - 1),
    )
    patched(
        "blocks-100000.gguf",
        "block_count",
        lambda d, r: _set(d, _field(r, "llama.block_count"), "<I", 100000),
    )
    patched(
        "heads-0.gguf", "head_count", lambda d, r: _set(d, _field(r, "llama.attention.head_count"), "<I", 0)
    )
    patched(
        "shifted.gguf",
        "shifted",
        lambda d, r: _set(d, _tensor_info(r, 1, 5), "<Q", r.tensors[1].data_offset - r.data_offset + 1),
    )
    patched(
        "offset-past-end.gguf",
        "past the end of the file",
        lambda d, r: _set(d, _tensor_info(r, 0, 5), "<Q", len(d) * 4 // 32 * 32),
    )
    patched("unknown-type.gguf", "tensor type 99", lambda d, r: _set(d, _tensor_info(r, 0, 4), "<I", 99))
    patched(
        "zero-dims.gguf",
        "token_embd",
        lambda d, r: [
            _set(d, _tensor_info(r, i, 3) + 8 * k, "<Q", 0)
            for i, t in enumerate(r.tensors)
            if t.name == "token_embd.weight"
            for k in range(2)
        ],
    )

    def rename_tokens(data: bytearray, reader) -> None:  # the key becomes tokenizer.ggml.tokenX
        key = reader.fields["tokenizer.ggml.tokens"].parts[1]
        data[_at(reader, key) + key.size - 1] = ord("X")

    patched("no-tokens.gguf", "tokenizer.ggml.tokens", rename_tokens)
    truncated = folder / "truncated.gguf"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
    out["truncated.gguf"] = (truncated, "truncated")
    head = b"GGUF" + struct.pack("<I", 3)
    (folder / "string-2e60.gguf").write_bytes(
        head + struct.pack("<QQ", 0, 1) + struct.pack("<Q", 2**60) + b"key" * 64
    )
    out["string-2e60.gguf"] = (folder / "string-2e60.gguf", "more than the file holds")
    (folder / "tensors-2e62.gguf").write_bytes(head + struct.pack("<QQ", 2**62, 0))
    out["tensors-2e62.gguf"] = (folder / "tensors-2e62.gguf", "claims 4611686018427387904 tensors")
    mamba = folder / "mamba.gguf"
    writer = GGUFWriter(str(mamba), "mamba")
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    out["mamba.gguf"] = (
        mamba,
        "GGUF architecture 'mamba' is not supported (supported: gemma2, gemma3, llama, phi3",
    )
    return out
