"""Which splits of a model over a group LMX takes, and the refusal naming why (no ranks needed:
the decision reads the model and its config)."""

import pytest
from mlx_lm.models import llama, ministral3

from inference.engine import sharding
from inference.errors import InvalidRequest


class _Group:
    def __init__(self, size: int):
        self._size = size

    def size(self) -> int:
        return self._size


def _llama(heads: int, kv_heads: int) -> tuple[object, dict]:
    config = {
        "model_type": "llama",
        "hidden_size": 16 * heads,
        "num_hidden_layers": 2,
        "intermediate_size": 64,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "rms_norm_eps": 1e-5,
        "vocab_size": 32,
    }
    return llama.Model(llama.ModelArgs.from_dict(config)), config


def test_a_llama_whose_heads_do_not_divide_is_refused_by_name():
    model, config = _llama(9, 3)  # SmolLM2-135M's heads
    with pytest.raises(InvalidRequest) as refused:
        sharding.shard(model, config, _Group(2), mode="auto", name="SmolLM2")
    message = refused.value.message
    assert "tensor: its 9 attention heads do not divide by 2 ranks" in message
    assert "pipeline: llama has no pipeline split in mlx-lm" in message


def test_key_value_heads_and_the_mlp_count_too():
    model, config = _llama(4, 1)
    with pytest.raises(InvalidRequest, match="its 1 key/value heads do not divide by 2"):
        sharding.shard(model, config, _Group(2), mode="tensor", name="m")
    model, config = _llama(4, 2)
    config["intermediate_size"] = 63
    with pytest.raises(InvalidRequest, match=r"63 MLP width \(intermediate_size\)"):
        sharding.shard(model, config, _Group(2), mode="tensor", name="m")


def test_pipeline_needs_a_layer_a_rank():
    config = {
        "model_type": "ministral3",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "intermediate_size": 64,
        "num_attention_heads": 2,
        "rms_norm_eps": 1e-5,
        "vocab_size": 32,
        "rope_parameters": {
            "rope_theta": 1e4,
            "llama_4_scaling_beta": 0.1,
            "original_max_position_embeddings": 64,
        },
    }
    model = ministral3.Model(ministral3.ModelArgs.from_dict(config))
    with pytest.raises(InvalidRequest, match="pipeline: its 2 layers are fewer than 4 ranks"):
        sharding.shard(model, config, _Group(4), mode="pipeline", name="m")
