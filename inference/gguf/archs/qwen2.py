"""qwen2: llama's layout with biases on q/k/v and NeoX rope."""

from inference.gguf.archs import Architecture, register


class Qwen2(Architecture):
    name = "qwen2"
    model_type = "qwen2"

    def required_parts(self, config):
        return super().required_parts(config) | {"ffn_gate", "ffn_up"}


register(Qwen2())
