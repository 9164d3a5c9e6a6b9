"""gemma2: four norms per block, soft-capped logits, embeddings scaled by sqrt(width)."""

from inference.gguf.archs import Architecture, register

GEMMA_NORMS = {
    "attn_norm": "input_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}


class Gemma2(Architecture):
    name = "gemma2"
    model_type = "gemma2"
    norm_offset = 1.0
    block_names = {**Architecture.block_names, **GEMMA_NORMS}
    large_layers = 46  # Gemma-2-27B: llama.cpp scales queries by width/heads there, not head_dim

    def query_scale(self, config: dict) -> float:
        if config["num_hidden_layers"] == self.large_layers:
            return config["hidden_size"] / config["num_attention_heads"]
        return float(config["head_dim"])

    def config(self, f):
        config = self.base_config(f)
        config.update(
            attn_logit_softcapping=self.key(f, "attn_logit_softcapping", 50.0, kind=float),
            final_logit_softcapping=self.key(f, "final_logit_softcapping", 30.0, kind=float),
            query_pre_attn_scalar=self.query_scale(config),
        )
        return config

    def required_parts(self, config):
        return super().required_parts(config) | {"ffn_gate", "ffn_up", "post_attention_norm", "post_ffw_norm"}


register(Gemma2())
