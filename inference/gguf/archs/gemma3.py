"""gemma3 (text): gemma2's norms plus q/k norms, sliding-window layers (5 of every 6) with a
local rope base."""

from inference.gguf.archs import Architecture, register
from inference.gguf.archs.gemma2 import GEMMA_NORMS


class Gemma3(Architecture):
    name = "gemma3"
    model_type = "gemma3_text"
    norm_offset = 1.0
    block_names = {
        **Architecture.block_names,
        **GEMMA_NORMS,
        "attn_q_norm": "self_attn.q_norm",
        "attn_k_norm": "self_attn.k_norm",
    }
    large_layers = 62  # Gemma-3-27B, as for gemma2

    def config(self, f):
        config = self.base_config(f)
        config.pop("rope_traditional")
        scale = (
            config["hidden_size"] / config["num_attention_heads"]
            if config["num_hidden_layers"] == self.large_layers
            else float(config["head_dim"])
        )
        config.update(
            query_pre_attn_scalar=scale,
            sliding_window=self.positive(f, "attention.sliding_window", 512, limit=1 << 24),
            sliding_window_pattern=6,  # llama.cpp's fixed pattern for gemma3
            rope_theta=self.key(f, "rope.freq_base", 1_000_000.0, kind=float),
            rope_local_base_freq=10_000.0,
        )
        factor = f.get("gemma3.rope.scaling.factor")
        if factor and float(factor) != 1.0:
            config["rope_scaling"] = {"rope_type": "linear", "factor": float(factor)}
        return config

    def required_parts(self, config):
        return super().required_parts(config) | {
            "ffn_gate",
            "ffn_up",
            "post_attention_norm",
            "post_ffw_norm",
            "attn_q_norm",
            "attn_k_norm",
        }


register(Gemma3())
