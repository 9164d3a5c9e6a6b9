"""qwen3moe: qwen3 attention, a routed mixture of experts in every block (experts stacked)."""

from inference.gguf.archs import Architecture, register
from inference.gguf.reader import GGUFError


class Qwen3Moe(Architecture):
    name = "qwen3moe"
    model_type = "qwen3_moe"
    moe = True
    block_names = {
        **Architecture.block_names,
        "attn_q_norm": "self_attn.q_norm",
        "attn_k_norm": "self_attn.k_norm",
        "ffn_gate_inp": "mlp.gate",
        "ffn_gate_exps": "mlp.switch_mlp.gate_proj",
        "ffn_up_exps": "mlp.switch_mlp.up_proj",
        "ffn_down_exps": "mlp.switch_mlp.down_proj",
    }

    def config(self, f):
        config = self.base_config(f)
        experts = self.positive(f, "expert_count", limit=4096)
        used = self.positive(f, "expert_used_count", limit=experts)
        if used > experts:
            raise GGUFError(f"{used} experts used per token out of {experts}")
        expert_ff = self.positive(f, "expert_feed_forward_length")
        config.update(
            num_experts=experts,
            num_experts_per_tok=used,
            moe_intermediate_size=expert_ff,
            intermediate_size=config["intermediate_size"] or expert_ff,
            decoder_sparse_step=1,
            mlp_only_layers=[],
            norm_topk_prob=True,  # llama.cpp normalises the chosen experts' weights for qwen3moe
        )
        return config

    def required_parts(self, config):
        return {
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "attn_norm",
            "ffn_norm",
            "attn_q_norm",
            "attn_k_norm",
            "ffn_gate_inp",
            "ffn_gate_exps",
            "ffn_up_exps",
            "ffn_down_exps",
        }


register(Qwen3Moe())
