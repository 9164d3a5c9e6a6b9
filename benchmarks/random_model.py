"""MLX-native model folders with the exact architecture of real models and random 4-bit weights.

Speed does not depend on the weight values, so these stand in for weights that cannot be
downloaded here. The tokenizer is a word-level one over `w0 … w<vocab-1>`: a prompt of N words
is exactly N tokens, which makes prompt lengths exact across LMX, mlx-lm and mlx_lm.server. Its
last ids are the printable ASCII characters, so that a grammar (JSON) can be followed too.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

LLAMA3_ROPE = {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3",
}

LLAMA_3_1_8B = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 128256,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": LLAMA3_ROPE,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
}

SHAPES: dict[str, dict] = {
    "llama-3.1-8b": LLAMA_3_1_8B,
    # the same family as 8B, wider and deeper
    "llama-3.3-70b": {
        **LLAMA_3_1_8B,
        "hidden_size": 8192,
        "num_hidden_layers": 80,
        "intermediate_size": 28672,
        "num_attention_heads": 64,
    },
    # small enough for a CPU (the distributed rows on this machine); heads divide by 2, 4 and 8
    "llama-3.2-1b": {
        **LLAMA_3_1_8B,
        "hidden_size": 2048,
        "num_hidden_layers": 16,
        "intermediate_size": 8192,
        "head_dim": 64,
        "rope_scaling": {**LLAMA3_ROPE, "factor": 32.0},
        "tie_word_embeddings": True,
    },
    "qwen3-30b-a3b": {
        "model_type": "qwen3_moe",
        "architectures": ["Qwen3MoeForCausalLM"],
        "hidden_size": 2048,
        "num_hidden_layers": 48,
        "intermediate_size": 6144,
        "moe_intermediate_size": 768,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "norm_topk_prob": True,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "head_dim": 128,
        "vocab_size": 151936,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "max_position_embeddings": 40960,
        "tie_word_embeddings": False,
    },
}

# A Llama small enough to build in a second, for tests and the lookup benchmark.
TINY_LLAMA = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
}

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}assistant {% endif %}"
)


def word(i: int) -> str:
    return f"w{i}"


def write_tokenizer(path: Path, vocab_size: int) -> None:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    specials = ["<unk>", "<s>", "</s>", "system", "user", "assistant"]
    chars = [c for c in string.printable if not c.isspace()]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for i in range(len(specials), vocab_size - len(chars)):
        vocab[word(i)] = i
    for i, char in enumerate(chars, start=vocab_size - len(chars)):
        vocab[char] = i
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    # Words, and any other text one character a token (what a grammar's forced text needs).
    pieces = pre_tokenizers.Split(Regex(r"w\d+|system|user|assistant|."), behavior="isolated")
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pieces])
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tokenizer.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "unk_token": "<unk>",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "chat_template": CHAT_TEMPLATE,
                "model_max_length": 131072,
            },
            indent=2,
        )
    )


def build(
    shape: str,
    out: Path,
    *,
    bits: int = 4,
    group_size: int = 64,
    layers: int | None = None,
    overrides: dict | None = None,
) -> Path:
    """Write `out/` (config.json, safetensors shards, tokenizer). `layers` and `overrides` (config
    keys) shrink a shape for tests and smoke runs; the benchmark itself uses the full shape."""
    import mlx.core as mx
    from mlx_lm.utils import _get_classes, quantize_model, save_config, save_model

    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    config = dict(SHAPES[shape])
    if layers:
        config["num_hidden_layers"] = layers
    config.update(overrides or {})
    model_cls, args_cls = _get_classes(config)
    mx.random.seed(0)
    model = model_cls(args_cls.from_dict(config))  # random init, lazy: nothing computed yet
    model.set_dtype(mx.bfloat16)  # as the published checkpoints are
    model, config = quantize_model(model, config, group_size, bits)
    # Evaluate layer by layer so the float weights of only one layer exist at a time.
    for layer in model.layers:
        mx.eval(layer.parameters())
    mx.eval(model.parameters())
    out.mkdir(parents=True, exist_ok=True)
    save_model(out, model, donate_model=True)
    config["torch_dtype"] = "bfloat16"
    config["lmx_source"] = {"random_weights": True, "shape": shape}
    save_config(config, out / "config.json")
    write_tokenizer(out, config["vocab_size"])
    return out
