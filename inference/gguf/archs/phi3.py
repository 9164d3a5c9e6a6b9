"""phi3: fused q/k/v and fused gate/up projections, optional LongRoPE factors as tensors."""

from inference.gguf.archs import Architecture, register


class Phi3(Architecture):
    name = "phi3"
    model_type = "phi3"
    block_names = {
        "attn_qkv": "self_attn.qkv_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_up": "mlp.gate_up_proj",  # llama.cpp keeps phi3's gate and up fused, as mlx-lm does
        "ffn_down": "mlp.down_proj",
        "attn_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
    }
    ignored = frozenset({"rope_freqs", "rope_factors_long", "rope_factors_short"})

    def config(self, f):
        config = self.base_config(f)
        config.pop("head_dim")
        original = f.get("phi3.rope.scaling.original_context_length")
        config["original_max_position_embeddings"] = int(original or config["max_position_embeddings"])
        long, short = f.tensors.get("rope_factors_long.weight"), f.tensors.get("rope_factors_short.weight")
        if long is not None and short is not None:
            config["rope_scaling"] = {
                "type": "longrope",
                "long_factor": f.raw(long.name).astype(float).tolist(),
                "short_factor": f.raw(short.name).astype(float).tolist(),
            }
        dims = f.get("phi3.rope.dimension_count")
        if dims and config["hidden_size"] % config["num_attention_heads"] == 0:
            config["partial_rotary_factor"] = int(dims) / (
                config["hidden_size"] // config["num_attention_heads"]
            )
        return config

    def required_parts(self, config):
        return {"attn_qkv", "attn_output", "attn_norm", "ffn_norm", "ffn_up", "ffn_down"}


register(Phi3())
