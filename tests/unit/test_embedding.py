"""Embedding math on a tiny model: pooling, unit length, and the pooling a model asks for."""

import json

import mlx.core as mx
import pytest

from inference import retrieval
from inference.engine import embedding
from tests.unit.test_batch_layers import TINY, _tiny


def test_pooled_vectors_are_unit_length_and_follow_the_pooling():
    model = _tiny("llama-3.1-8b")
    tokens = [[5, 9, 13, 2], [5, 9, 13, 2], [7, 1]]
    mean = embedding.embed_tokens(model, tokens, pooling="mean")
    last = embedding.embed_tokens(model, tokens, pooling="last")
    hidden = model.model(mx.array([tokens[0]]))[0].astype(mx.float32)
    expected_last = hidden[-1] / mx.linalg.norm(hidden[-1])
    assert len(mean) == 3 and len(mean[0]) == TINY["hidden_size"]
    assert mean[0] == mean[1] and mean[0] != mean[2]
    assert sum(v * v for v in mean[2]) == pytest.approx(1.0, abs=1e-5)
    assert last[0] == pytest.approx(expected_last.tolist(), abs=1e-5)
    assert last[0] != pytest.approx(mean[0], abs=1e-3)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"pooling_mode_lasttoken": True}, "last"),
        ({"pooling_mode_cls_token": True}, "first"),
        (None, "mean"),
        (["not", "an", "object"], "mean"),
    ],
)
def test_pooling_comes_from_the_sentence_transformers_config(tmp_path, config, expected):
    if config is not None:
        (tmp_path / "1_Pooling").mkdir()
        (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(config))
    assert retrieval.pooling_of(str(tmp_path)) == expected


def test_shortened_vectors_are_the_head_at_unit_length():
    assert retrieval.shorten([0.6, 0.8, 0.0], 1) == [1.0]
    assert retrieval.shorten([0.6, 0.8], None) == [0.6, 0.8]
    assert retrieval.shorten([0.6, 0.8], 2) == [0.6, 0.8]


def test_inputs_are_embedded_in_groups_of_about_the_token_budget():
    lists = [[1] * 1000, [2] * 1000, [3] * 100, [4] * 5000, [5] * 10]
    groups = retrieval._groups(lists, budget=2048)
    assert [[t[0] for t in g] for g in groups] == [[1, 2], [3], [4], [5]]
    assert [t for g in groups for t in g] == lists


def test_the_gguf_file_and_its_mlx_copy_embed_alike(settings, model_store):
    """SmolLM2: the GGUF file and the MLX-native folder converted from it give the same vectors."""
    from inference.engine import loading
    from inference.store import describe_gguf, describe_mlx_folder
    from tests.conftest import GGUF_ID, MLX_ID

    settings.LMX_CPU_FAST_PATH = "off"
    text = "The capital of France is Paris."
    vectors = []
    for spec in (
        describe_gguf(model_store / GGUF_ID, GGUF_ID),
        describe_mlx_folder(model_store / MLX_ID, MLX_ID),
    ):
        model, tokenizer, _, _ = loading.load(spec)
        vectors.append(embedding.embed_tokens(model, [tokenizer.encode(text)], pooling="mean")[0])
    assert len(vectors[0]) == 576
    assert sum(a * b for a, b in zip(*vectors, strict=True)) > 0.999
