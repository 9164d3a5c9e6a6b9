"""LMX's batch layers give the same numbers as mlx-lm's, on tiny random models and the real one."""

import mlx.core as mx
import pytest
from mlx_lm.utils import _get_classes, quantize_model

from benchmarks.random_model import SHAPES
from inference.engine import loading
from inference.engine.mlx_compat import batch_layers
from inference.store import describe_mlx_folder
from tests.conftest import MLX_ID

TINY = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "moe_intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "vocab_size": 512,
    "num_experts": 16,
    "num_experts_per_tok": 4,
}


def _tiny(shape: str):
    config = {**SHAPES[shape], **TINY}
    model_cls, args_cls = _get_classes(config)
    mx.random.seed(0)
    model, _ = quantize_model(model_cls(args_cls.from_dict(config)), config, 64, 4)
    mx.eval(model.parameters())
    return model


@pytest.mark.parametrize("shape", ["llama-3.1-8b", "qwen3-30b-a3b"])
@pytest.mark.parametrize("batch,length", [(1, 1), (8, 1), (40, 1), (3, 5), (4, 100), (4, 300)])
def test_batch_layers_give_the_logits_of_mlx_lm(shape, batch, length):
    """40 decoding rows take the folded matmul and, on the MoE model, every-expert path, as do
    400 prefill rows; 1,200 are over its cap and go back to mlx-lm's gather."""
    model = _tiny(shape)
    tokens = mx.random.randint(0, TINY["vocab_size"], (batch, length))
    expected = model(tokens)
    assert batch_layers.apply(model) > 0
    got = model(tokens)
    assert got.shape == expected.shape
    assert mx.allclose(got, expected, atol=1e-4, rtol=1e-4).item()


def test_apply_swaps_every_quantized_linear_and_expert_block():
    from mlx.utils import tree_flatten

    model = _tiny("qwen3-30b-a3b")
    names = [k for k, _ in tree_flatten(model.parameters())]
    swapped = batch_layers.apply(model)
    kinds = [type(m) for _, m in model.named_modules()]
    # per layer q, k, v, o, the router gate and the expert block; the embedding and the head
    assert swapped == TINY["num_hidden_layers"] * 6 + 2
    assert kinds.count(batch_layers.DenseBatchSwitchGLU) == TINY["num_hidden_layers"]
    assert [k for k, _ in tree_flatten(model.parameters())] == names
    assert batch_layers.apply(model) == 0  # already swapped


def test_use_puts_mlx_lm_layers_back_and_lmx_layers_in_again():
    model = _tiny("qwen3-30b-a3b")
    plain_kinds = [type(m) for _, m in model.named_modules()]
    tokens = mx.random.randint(0, TINY["vocab_size"], (40, 1))
    expected = model(tokens)
    swapped = batch_layers.apply(model)
    swapped_kinds = [type(m) for _, m in model.named_modules()]
    batch_layers.use(model, batched=False)
    assert [type(m) for _, m in model.named_modules()] == plain_kinds
    assert mx.array_equal(model(tokens), expected).item()
    batch_layers.use(model, batched=True)
    assert [type(m) for _, m in model.named_modules()] == swapped_kinds != plain_kinds
    batch_layers.use(model, batched=False)
    assert batch_layers.apply(model) == 0  # swapped back in, nothing new to swap
    assert [type(m) for _, m in model.named_modules()] == swapped_kinds
    assert swapped == TINY["num_hidden_layers"] * 6 + 2


@pytest.mark.parametrize("value,expected", [("on", True), ("off", False), ("auto", mx.cuda.is_available())])
def test_batch_layers_setting(settings, value, expected):
    settings.LMX_BATCH_LAYERS = value
    assert batch_layers.enabled() is expected


def _greedy_batch(model, prompts: list[list[int]], n: int) -> dict[int, list[int]]:
    from mlx_lm.generate import BatchGenerator

    gen = BatchGenerator(model, completion_batch_size=len(prompts), prefill_batch_size=len(prompts))
    uids = gen.insert(prompts, max_tokens=[n] * len(prompts))
    out = {uid: [] for uid in uids}
    while any(len(t) < n for t in out.values()):
        for r in gen.next_generated():
            out[r.uid].append(r.token)
    gen.close()
    return out


def test_real_model_decodes_a_batch_of_eight_the_same_with_batch_layers(settings, model_store):
    """SmolLM2 4-bit: eight greedy streams give the same tokens with LMX's layers as without,
    and the loaded backend says which path runs."""
    settings.LMX_CPU_FAST_PATH = "off"
    spec = describe_mlx_folder(model_store / MLX_ID, MLX_ID)
    settings.LMX_BATCH_LAYERS = "off"
    plain, tokenizer, _, backend = loading.load(spec)
    assert backend == "mlx"
    settings.LMX_BATCH_LAYERS = "on"
    folded, _, _, backend = loading.load(spec)
    assert backend == "mlx+batch-layers"
    questions = ["capital of France", "two plus two", "colour of the sky", "largest ocean"]
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": f"{q} {i}"}], add_generation_prompt=True)
        for q in questions
        for i in range(2)
    ]
    expected = _greedy_batch(plain, prompts, 6)
    got = _greedy_batch(folded, prompts, 6)
    assert list(got.values()) == list(expected.values())
    assert len({tuple(t) for t in got.values()}) > 1  # real, differing answers
