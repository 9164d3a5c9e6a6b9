"""qwen3: qwen2 without q/k/v biases, with RMSNorm on queries and keys."""

from inference.gguf.archs import Architecture, register


class Qwen3(Architecture):
    name = "qwen3"
    model_type = "qwen3"
    block_names = {
        **Architecture.block_names,
        "attn_q_norm": "self_attn.q_norm",
        "attn_k_norm": "self_attn.k_norm",
    }

    def required_parts(self, config):
        return super().required_parts(config) | {"ffn_gate", "ffn_up", "attn_q_norm", "attn_k_norm"}


register(Qwen3())
