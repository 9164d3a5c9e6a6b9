"""The architecture registry: one module per GGUF architecture, registered by its GGUF name.

An architecture maps a file's metadata to an mlx-lm model config and its tensor names to
mlx-lm's parameter names; `plan()` checks both against the file before any weight is read, so a
damaged or incomplete file is refused with what is wrong (and before a resident model is
unloaded for it). Adding an architecture is adding a module to ARCHITECTURE_MODULES.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from inference.gguf.reader import GGUFError, GGUFFile

ARCHITECTURE_MODULES = ("llama", "qwen2", "qwen3", "qwen3moe", "gemma2", "gemma3", "phi3")
MAX_LAYERS = 1024
MAX_CONTEXT = 1 << 24  # the longest context a real file declares is ~10M tokens
MAX_WIDTH = 1 << 20
TOKENIZER_MODELS = ("gpt2", "llama")  # tokenizer.ggml.model values LMX builds tokenizers for

_registry: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    _registry[arch.name] = arch
    return arch


def supported() -> list[str]:
    _load_all()
    return sorted(_registry)


def lookup(name: str) -> Architecture:
    _load_all()
    if name not in _registry:
        raise GGUFError(
            f"GGUF architecture '{name}' is not supported (supported: {', '.join(supported())})",
            kind="unsupported",
        )
    return _registry[name]


def _load_all() -> None:
    if not _registry:
        for module in ARCHITECTURE_MODULES:
            importlib.import_module(f"{__name__}.{module}")


@dataclass
class Plan:
    """What a file becomes: an mlx-lm config and, per GGUF tensor, its mlx-lm parameter name."""

    config: dict
    names: dict[str, str]
    arch: Architecture
    vocab_tokens: int = 0
    extra: dict = field(default_factory=dict)


class Architecture:
    name = ""
    model_type = ""
    rope_traditional = False
    # GGUF block part -> mlx-lm name inside model.layers.N
    block_names: dict[str, str] = {
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
    global_names = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
    ignored: frozenset[str] = frozenset({"rope_freqs"})  # llama.cpp-only helper tensors
    moe = False  # experts in every block: feed_forward_length may be absent
    norm_offset = 0.0  # Gemma stores RMSNorm weights as 1 + w; mlx-lm adds the 1 itself

    # --- metadata --------------------------------------------------------------------------
    def key(self, f: GGUFFile, name: str, default=None, *, kind=int):
        value = f.get(f"{self.name}.{name}", default)
        if value is None:
            raise GGUFError(f"the file lacks '{self.name}.{name}'; it is incomplete")
        if isinstance(value, list):
            value = value[0] if value else default  # per-layer arrays (e.g. head_count_kv)
        try:
            return kind(value)
        except (TypeError, ValueError) as exc:
            raise GGUFError(f"'{self.name}.{name}' is {value!r}, not a number") from exc

    def positive(self, f: GGUFFile, name: str, default=None, *, limit: int = MAX_WIDTH) -> int:
        value = self.key(f, name, default)
        if not 0 < value <= limit:
            raise GGUFError(f"'{self.name}.{name}' is {value}; it must be between 1 and {limit}")
        return value

    def base_config(self, f: GGUFFile) -> dict:
        hidden = self.positive(f, "embedding_length")
        heads = self.positive(f, "attention.head_count")
        kv_heads = self.positive(f, "attention.head_count_kv", heads)
        if heads % kv_heads:
            raise GGUFError(f"{heads} attention heads do not group into {kv_heads} key/value heads")
        head_dim = self.positive(f, "attention.key_length", hidden // heads if hidden % heads == 0 else None)
        context = self.positive(f, "context_length", 4096, limit=MAX_CONTEXT)
        eps = self.key(f, "attention.layer_norm_rms_epsilon", kind=float)
        if not 0 < eps < 1:
            raise GGUFError(f"'{self.name}.attention.layer_norm_rms_epsilon' is {eps}")
        return {
            "model_type": self.model_type,
            "hidden_size": hidden,
            "num_hidden_layers": self.positive(f, "block_count", limit=MAX_LAYERS),
            "intermediate_size": self.key(f, "feed_forward_length", 0)
            if self.moe
            else self.positive(f, "feed_forward_length"),
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "head_dim": head_dim,
            "rms_norm_eps": eps,
            "max_position_embeddings": context,
            "rope_theta": self.key(f, "rope.freq_base", 10000.0, kind=float),
            "rope_traditional": self.rope_traditional,
        }

    def config(self, f: GGUFFile) -> dict:
        return self.base_config(f)

    # --- tensors ---------------------------------------------------------------------------
    def mlx_name(self, gguf_name: str) -> str | None:
        """mlx-lm's parameter name for a GGUF tensor; None for one the model does not use."""
        stem, _, suffix = gguf_name.rpartition(".")
        if stem.startswith("blk."):
            parts = stem.split(".", 2)
            if len(parts) == 3 and parts[1].isdigit() and parts[2] in self.block_names:
                return f"model.layers.{int(parts[1])}.{self.block_names[parts[2]]}.{suffix}"
            return None
        if stem in self.ignored:
            return ""
        return f"{self.global_names[stem]}.{suffix}" if stem in self.global_names else None

    def required_parts(self, config: dict) -> set[str]:
        return {"attn_q", "attn_k", "attn_v", "attn_output", "attn_norm", "ffn_norm", "ffn_down"}

    def plan(self, f: GGUFFile) -> Plan:
        config = self.config(f)
        names: dict[str, str] = {}
        blocks: dict[int, set[str]] = {}
        for name in f.tensors:
            target = self.mlx_name(name)
            if target is None:
                raise GGUFError(f"tensor '{name}' is not part of a {self.name} model")
            if target:
                names[name] = target
            if name.startswith("blk."):
                index, part = name.split(".")[1:3]
                blocks.setdefault(int(index), set()).add(part)
        layers = config["num_hidden_layers"]
        if sorted(blocks) != list(range(layers)):
            raise GGUFError(
                f"'{self.name}.block_count' is {layers} but the file holds tensors for "
                f"{len(blocks)} blocks; the file is damaged or incomplete"
            )
        required = self.required_parts(config)
        for index, parts in blocks.items():
            if missing := required - parts:
                raise GGUFError(f"block {index} lacks {', '.join(sorted(missing))}; the file is incomplete")
        embed = f.tensors.get("token_embd.weight")
        if embed is None or len(embed.shape) != 2:
            raise GGUFError("the file has no token embedding (token_embd.weight)")
        if embed.shape[1] != config["hidden_size"]:
            raise GGUFError(
                f"token_embd.weight is {list(embed.shape)} but the embedding length is {config['hidden_size']}"
            )
        tokens = f.get("tokenizer.ggml.tokens")
        if not tokens:
            raise GGUFError("the file has no vocabulary (tokenizer.ggml.tokens); it is incomplete")
        kind = f.get("tokenizer.ggml.model")
        if kind not in TOKENIZER_MODELS:
            raise GGUFError(
                f"GGUF tokenizer type '{kind}' is not supported (supported: {', '.join(TOKENIZER_MODELS)})",
                kind="unsupported",
            )
        config["vocab_size"] = embed.shape[0]
        config["tie_word_embeddings"] = "output.weight" not in f.tensors
        return Plan(config, names, self, vocab_tokens=len(tokens))

    def transform(self, mlx_name: str, array):
        """A float tensor as mlx-lm expects it (numpy in, numpy out)."""
        if self.norm_offset and mlx_name.endswith("norm.weight"):
            return array - self.norm_offset
        return array
