"""Embeddings and reranking (server side; the engine computes them).

Pooling follows the model's sentence-transformers config (`1_Pooling/config.json`: last token for
Qwen3-Embedding, mean, or first) and is the mean otherwise, which is what works for a model not
trained for embeddings (llama.cpp's `--pooling mean`). A reranker (store.model_kind) scores each
query-document pair as Qwen3-Reranker's card does: the probability that it answers "yes" rather
than "no" to the pair; any other model scores a document by the cosine similarity of its
embedding with the query's, and the response says which (`method`). Inputs go to the engine in
groups of about 2,048 tokens, so decoding streams take a step between groups, as between a long
prompt's chunks.
"""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path

from inference.errors import InvalidRequest
from inference.prompt_bounds import refuse_too_long
from inference.runtime import get_engine
from inference.wire import LoadedInfo, TokenizeKind

GROUP_TOKENS = 2048  # tokens embedded per turn of the engine thread, like a prefill chunk
POOLINGS = {
    "pooling_mode_lasttoken": "last",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "first",
}


@functools.lru_cache(maxsize=16)  # read once per model folder, not on every request
def pooling_of(model_path: str) -> str:
    config = Path(model_path) / "1_Pooling" / "config.json"
    try:
        chosen = json.loads(config.read_text())
    except (OSError, ValueError):
        return "mean"
    if not isinstance(chosen, dict):
        return "mean"
    return next((mode for key, mode in POOLINGS.items() if chosen.get(key)), "mean")


async def embed(loaded: LoadedInfo, inputs: list) -> tuple[list[list[float]], int]:
    """(embeddings, prompt tokens) for texts or token id lists, with the loaded model."""
    if loaded.spec.kind == "reranker":
        raise InvalidRequest(
            f"{loaded.spec.id} is a reranker: it scores query-document pairs at /v1/rerank; it does not embed."
        )
    engine = get_engine()
    texts = [item for item in inputs if isinstance(item, str)]
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            refuse_too_long(item, loaded, what=f"input[{i}]")
    encoded = iter(
        await asyncio.wrap_future(engine.tokenize(loaded, TokenizeKind.TEXTS, texts)) if texts else []
    )
    token_lists = []
    for i, item in enumerate(inputs):
        tokens = next(encoded) if isinstance(item, str) else item
        if isinstance(item, list) and max(item) >= loaded.vocab_size:
            raise InvalidRequest(f"input[{i}] has token ids outside the vocabulary ({loaded.vocab_size}).")
        if len(tokens) > loaded.context_length:
            raise InvalidRequest(
                f"input[{i}] is {len(tokens)} tokens, over the model's context length of "
                f"{loaded.context_length}. Shorten it or split it."
            )
        token_lists.append(list(tokens))
    pooling = pooling_of(loaded.spec.path)
    vectors = []
    for group in _groups(token_lists):  # decoding streams take their steps between groups
        vectors += await asyncio.wrap_future(engine.embed(loaded, group, pooling))
    return vectors, sum(len(t) for t in token_lists)


def _groups(token_lists: list[list[int]], budget: int = GROUP_TOKENS) -> list[list[list[int]]]:
    groups, current, size = [], [], 0
    for tokens in token_lists:
        if current and size + len(tokens) > budget:
            groups.append(current)
            current, size = [], 0
        current.append(tokens)
        size += len(tokens)
    return [*groups, current] if current else groups


def shorten(vector: list[float], dimensions: int | None) -> list[float]:
    """The first `dimensions` values, back to unit length (OpenAI's `dimensions`)."""
    if dimensions is not None and dimensions > len(vector):
        raise InvalidRequest(
            f"Field 'dimensions' must be at most {len(vector)} for this model, got {dimensions}."
        )
    if dimensions is None or dimensions == len(vector):
        return vector
    head = vector[:dimensions]
    norm = sum(v * v for v in head) ** 0.5 or 1.0
    return [v / norm for v in head]


COSINE = "embedding-cosine"
YES_NO = "reranker-yes-no"
# Qwen3-Reranker's prompt, from its model card.
RERANK_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
RERANK_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
RERANK_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


async def rerank(loaded: LoadedInfo, query: str, documents: list[str]) -> tuple[list[float], int, str]:
    """A relevance score per document, in the order given, the tokens read, and the method."""
    if loaded.spec.kind == "reranker":
        return (*await _yes_no(loaded, query, documents), YES_NO)
    vectors, tokens = await embed(loaded, [query, *documents])
    question = vectors[0]
    scores = [sum(q * d for q, d in zip(question, doc, strict=True)) for doc in vectors[1:]]
    return scores, tokens, COSINE


async def _yes_no(loaded: LoadedInfo, query: str, documents: list[str]) -> tuple[list[float], int]:
    engine = get_engine()
    refuse_too_long(query, loaded, what="query")
    for i, doc in enumerate(documents):
        refuse_too_long(doc, loaded, what=f"documents[{i}]")
    prompts = [
        f"{RERANK_PREFIX}<Instruct>: {RERANK_INSTRUCTION}\n<Query>: {query}\n<Document>: {doc}{RERANK_SUFFIX}"
        for doc in documents
    ]
    *token_lists, yes, no = await asyncio.wrap_future(
        engine.tokenize(loaded, TokenizeKind.TEXTS, [*prompts, "yes", "no"])
    )
    if len(yes) != 1 or len(no) != 1:
        raise InvalidRequest(
            f"{loaded.spec.id} has no single 'yes' and 'no' tokens, so it cannot score as a reranker."
        )
    for i, tokens in enumerate(token_lists):
        if len(tokens) > loaded.context_length:
            raise InvalidRequest(
                f"documents[{i}] with the query is {len(tokens)} tokens, over the model's context length of "
                f"{loaded.context_length}. Shorten it or split it."
            )
    scores = []
    for group in _groups(token_lists):  # decoding streams take their steps between groups
        scores += await asyncio.wrap_future(engine.rerank(loaded, group, yes[0], no[0]))
    return scores, sum(len(t) for t in token_lists)
