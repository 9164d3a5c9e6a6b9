"""Tiny random-weight models with the real default model's tokenizer, for what a word-level test
vocabulary cannot show (chat templates with tools or thinking, grammars)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmarks.random_model import TINY_LLAMA, build
from inference.store import ModelSpec, describe_mlx_folder

SMOLLM = "SmolLM2-135M-Instruct"


def with_smollm_tokenizer(
    folder: Path, model_store: Path, *, template: str, vocab_size: int, tokenizer=None
) -> ModelSpec:
    """A tiny Llama in `folder` speaking SmolLM2's tokenizer (or `tokenizer`, a `tokenizers`
    object derived from it) with `template` as its chat template."""
    build("llama-3.1-8b", folder, overrides={**TINY_LLAMA, "vocab_size": vocab_size})
    if tokenizer is None:
        shutil.copy(model_store / SMOLLM / "tokenizer.json", folder / "tokenizer.json")
    else:
        tokenizer.save(str(folder / "tokenizer.json"))
    config = json.loads((model_store / SMOLLM / "tokenizer_config.json").read_text())
    config["chat_template"] = template
    config.pop("added_tokens_decoder", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return describe_mlx_folder(folder, folder.name)


# As Qwen3's template does: thinking on unless the request says enable_thinking=false.
THINKING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}"
    "{% endif %}"
)


def thinking_model(folder: Path, model_store: Path) -> ModelSpec:
    """A tiny thinking model: SmolLM2's tokenizer plus `<think>` / `</think>` tokens, and a
    template that opens the block (random weights never close it)."""
    from tokenizers import AddedToken, Tokenizer

    tokenizer = Tokenizer.from_file(str(model_store / SMOLLM / "tokenizer.json"))
    tokenizer.add_tokens([AddedToken("<think>", normalized=False), AddedToken("</think>", normalized=False)])
    return with_smollm_tokenizer(
        folder, model_store, template=THINKING_TEMPLATE, vocab_size=49160, tokenizer=tokenizer
    )


PLAIN_TEMPLATE = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"


def embedding_model(folder: Path, model_store: Path, *, pooling: str = "pooling_mode_lasttoken") -> ModelSpec:
    """A tiny embedding model in the sentence-transformers layout (as Qwen3-Embedding ships):
    modules.json, and 1_Pooling/config.json saying how to pool."""
    with_smollm_tokenizer(folder, model_store, template=PLAIN_TEMPLATE, vocab_size=49152)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 64, pooling: True})
    )
    return describe_mlx_folder(folder, folder.name)


def reranker_model(folder: Path, model_store: Path) -> ModelSpec:
    """A tiny causal reranker, named as Qwen3-Reranker is (a folder whose name says reranker)."""
    assert "reranker" in folder.name.lower()
    return with_smollm_tokenizer(folder, model_store, template=PLAIN_TEMPLATE, vocab_size=49152)
