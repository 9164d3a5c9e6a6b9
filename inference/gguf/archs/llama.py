"""llama (and Mistral-style files, which llama.cpp also names llama)."""

from inference.gguf.archs import Architecture, register


class Llama(Architecture):
    name = "llama"
    model_type = "llama"
    # llama.cpp's converter permutes Q/K rows for its interleaved rope; mlx-lm's traditional
    # rope reads them as stored.
    rope_traditional = True

    def required_parts(self, config):
        return super().required_parts(config) | {"ffn_gate", "ffn_up"}


register(Llama())
