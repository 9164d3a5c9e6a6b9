"""An embedding model and a reranker served as such beside the chat model, on a real server:
tiny random-weight ones in the real formats (a sentence-transformers folder; a causal reranker
named as Qwen3-Reranker is), scored as their cards say."""

import math
import os
from pathlib import Path

import openai
import pytest

from tests.conftest import MLX_ID
from tests.tiny_models import embedding_model, reranker_model

EMBEDDER, RERANKER = "tiny-Embedding", "tiny-Reranker"
DOCUMENTS = ["Paris is the capital of France.", "It rained all day.", "France's capital city is Paris."]
QUERY = "What is the capital of France?"


@pytest.fixture(scope="module")
def kinds_store(model_store: Path, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("kinds")
    (store / MLX_ID).mkdir()
    for f in (model_store / MLX_ID).iterdir():
        os.link(f, store / MLX_ID / f.name)
    embedding_model(store / EMBEDDER, model_store)
    reranker_model(store / RERANKER, model_store)
    return store


def _yes_probabilities(folder: Path) -> list[float]:
    """What Qwen3-Reranker's card computes, here in the test's own process: P(yes) against P(no)
    at the end of each query-document prompt."""
    import mlx.core as mx
    from django.test import override_settings

    from inference import retrieval
    from inference.engine import loading
    from inference.store import describe_mlx_folder

    with override_settings(LMX_CPU_FAST_PATH="off"):  # as the server below runs it: the same numbers
        model, tokenizer, _, _ = loading.load(describe_mlx_folder(folder, folder.name))
    yes, no = (
        tokenizer.encode("yes", add_special_tokens=False),
        tokenizer.encode("no", add_special_tokens=False),
    )
    out = []
    for doc in DOCUMENTS:
        prompt = (
            f"{retrieval.RERANK_PREFIX}<Instruct>: {retrieval.RERANK_INSTRUCTION}\n<Query>: {QUERY}\n"
            f"<Document>: {doc}{retrieval.RERANK_SUFFIX}"
        )
        logits = model(mx.array([tokenizer.encode(prompt, add_special_tokens=False)]))[0, -1]
        pair = mx.softmax(mx.stack([logits[no[0]], logits[yes[0]]]).astype(mx.float32))
        out.append(pair[1].item())
    return out


def test_embedding_and_reranker_models_are_served_as_such_beside_the_chat_model(make_server, kinds_store):
    srv = make_server(
        models_dir=kinds_store, default_model=MLX_ID, wait_ready=True, env={"LMX_CPU_FAST_PATH": "off"}
    )
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="not-needed", max_retries=0, timeout=300)
    kinds = {m.id: m.model_extra["kind"] for m in client.models.list().data}
    assert kinds == {MLX_ID: "chat", EMBEDDER: "embedding", RERANKER: "reranker"}

    # The embedding model (loaded by the request): last-token pooling, unit length, its own width.
    vectors = [e.embedding for e in client.embeddings.create(model=EMBEDDER, input=DOCUMENTS).data]
    assert [len(v) for v in vectors] == [64] * 3
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4 for v in vectors)
    assert vectors[0] != vectors[1]

    with srv.client() as http:
        ranked = http.post("/v1/rerank", json={"model": RERANKER, "query": QUERY, "documents": DOCUMENTS})
        assert ranked.status_code == 200, ranked.text
        body = ranked.json()
        assert body["method"] == "reranker-yes-no"
        scores = {r["index"]: r["relevance_score"] for r in body["results"]}
        expected = _yes_probabilities(kinds_store / RERANKER)
        assert sorted(scores) == [0, 1, 2]
        assert all(abs(scores[i] - expected[i]) < 1e-4 for i in range(3)), (scores, expected)
        assert [r["relevance_score"] for r in body["results"]] == sorted(scores.values(), reverse=True)

        cosine = http.post(
            "/v1/rerank", json={"model": MLX_ID, "query": QUERY, "documents": DOCUMENTS}
        ).json()
        assert cosine["method"] == "embedding-cosine"

        ready = http.get("/readyz").json()
        assert sorted(ready["models"]) == sorted([MLX_ID, EMBEDDER, RERANKER])
        listed = {m["id"]: m for m in http.get("/admin/models").json()["models"]}
        assert listed[EMBEDDER]["kind"] == "embedding" and listed[EMBEDDER]["loaded"]

        chat = http.post(
            "/v1/chat/completions", json={"model": EMBEDDER, "messages": [{"role": "user", "content": "hi"}]}
        )
        assert chat.status_code == 400 and "/v1/embeddings" in chat.json()["error"]["message"]
        embed = http.post("/v1/embeddings", json={"model": RERANKER, "input": "hi"})
        assert embed.status_code == 400 and "/v1/rerank" in embed.json()["error"]["message"]
        answer = http.post(
            "/v1/chat/completions",
            json={"model": MLX_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        )
        assert answer.status_code == 200  # the chat model serves on beside them
