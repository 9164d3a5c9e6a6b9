"""/v1/embeddings and /v1/rerank on the real default model, through the running server."""

import base64
import struct

import pytest

from tests.conftest import GGUF_ID, MLX_ID, wait_for

PARIS = "The capital of France is Paris."
PARAPHRASE = "Paris is the capital city of France."
UNRELATED = "Photosynthesis converts light into chemical energy in plants."


def _cosine(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_embeddings_put_a_paraphrase_nearer_than_an_unrelated_sentence(server):
    with server.client() as http:
        r = http.post("/v1/embeddings", json={"model": MLX_ID, "input": [PARIS, PARAPHRASE, UNRELATED]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == MLX_ID
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    paris, paraphrase, unrelated = (d["embedding"] for d in body["data"])
    assert len(paris) == 576  # SmolLM2-135M's hidden size
    assert _cosine(paris, paris) == pytest.approx(1.0, abs=1e-4)
    assert _cosine(paris, paraphrase) > _cosine(paris, unrelated) + 0.1
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 15


def test_embedding_formats_and_dimensions_carry_the_same_vector(server):
    with server.client() as http:
        plain = http.post("/v1/embeddings", json={"model": MLX_ID, "input": PARIS}).json()["data"][0][
            "embedding"
        ]
        packed = http.post(
            "/v1/embeddings", json={"model": MLX_ID, "input": PARIS, "encoding_format": "base64"}
        )
        short = http.post("/v1/embeddings", json={"model": MLX_ID, "input": PARIS, "dimensions": 64}).json()
    decoded = struct.unpack(f"<{len(plain)}f", base64.b64decode(packed.json()["data"][0]["embedding"]))
    assert decoded == pytest.approx(plain, abs=1e-6)
    head = short["data"][0]["embedding"]
    assert len(head) == 64 and _cosine(head, head) == pytest.approx(1.0, abs=1e-4)
    assert _cosine(head, plain[:64]) == pytest.approx(_cosine(plain[:64], plain[:64]) ** 0.5, abs=1e-4)


def test_rerank_puts_the_answering_document_first(server):
    documents = [
        UNRELATED,
        "Paris is the capital and largest city of France.",
        "The football match ended in a draw.",
    ]
    with server.client() as http:
        full = http.post(
            "/v1/rerank",
            json={"model": MLX_ID, "query": "What is the capital of France?", "documents": documents},
        )
        top = http.post(
            "/v1/rerank",
            json={
                "model": MLX_ID,
                "query": "What is the capital of France?",
                "documents": documents,
                "top_n": 2,
                "return_documents": True,
            },
        ).json()
    assert full.status_code == 200, full.text
    results = full.json()["results"]
    assert results[0]["index"] == 1
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True) and sorted(r["index"] for r in results) == [0, 1, 2]
    assert [r["index"] for r in top["results"]] == [r["index"] for r in results[:2]]
    assert top["results"][0]["document"] == {"text": documents[1]}


BAD = [
    ("/v1/embeddings", {"input": PARIS}, "Missing field 'model'"),
    ("/v1/embeddings", {"model": MLX_ID}, "Missing field 'input'"),
    ("/v1/embeddings", {"model": MLX_ID, "input": []}, "must be a string, a list of strings"),
    ("/v1/embeddings", {"model": MLX_ID, "input": ["ok", ""]}, "input[1] is empty"),
    ("/v1/embeddings", {"model": MLX_ID, "input": [[1, -2]]}, "input[0] must be a non-empty string"),
    ("/v1/embeddings", {"model": MLX_ID, "input": [[10**9]]}, "outside the vocabulary"),
    ("/v1/embeddings", {"model": MLX_ID, "input": "hello " * 9000}, "over the model's context length"),
    ("/v1/embeddings", {"model": MLX_ID, "input": PARIS, "encoding_format": "int8"}, "'float' or 'base64'"),
    ("/v1/embeddings", {"model": MLX_ID, "input": PARIS, "dimensions": 4096}, "at most 576 for this model"),
    ("/v1/rerank", {"model": MLX_ID, "documents": ["a"]}, "Missing field 'query'"),
    ("/v1/rerank", {"model": MLX_ID, "query": " ", "documents": ["a"]}, "'query' must be a non-empty string"),
    ("/v1/rerank", {"model": MLX_ID, "query": "q", "documents": "a"}, "'documents' must be a non-empty list"),
    ("/v1/rerank", {"model": MLX_ID, "query": "q", "documents": ["a", 3]}, "documents[1] must be"),
    ("/v1/rerank", {"model": MLX_ID, "query": "q", "documents": ["a"], "top_n": 0}, "between 1 and"),
]


@pytest.mark.parametrize(("path", "body", "fragment"), BAD)
def test_bad_bodies_get_invalid_request_and_are_recorded(server, server_db, path, body, fragment):
    from monitoring.models import ErrorEvent

    alias = server_db(server)
    before = ErrorEvent.objects.using(alias).filter(endpoint=f"POST {path}", code="invalid-request").count()
    with server.client() as http:
        r = http.post(path, json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "invalid-request"
        assert fragment in r.json()["error"]["message"]
        assert http.post("/v1/embeddings", json={"model": MLX_ID, "input": "still up"}).status_code == 200
    after = ErrorEvent.objects.using(alias).filter(endpoint=f"POST {path}", code="invalid-request").count()
    assert after == before + 1


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/rerank"])
def test_unknown_and_unloaded_models_get_their_codes(server, path):
    body = {"input": PARIS} if path == "/v1/embeddings" else {"query": "q", "documents": [PARIS]}
    with server.client() as http:
        unknown = http.post(path, json={"model": "text-embedding-3-small", **body})
        idle = http.post(path, json={"model": GGUF_ID, **body})
        wrong_method = http.get(path)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model-not-found"
    assert idle.status_code == 503 and idle.json()["error"]["code"] == "no-model-loaded"
    assert wrong_method.status_code == 405


def test_embeddings_are_answered_while_a_long_generation_runs(server):
    """The engine thread serves an embeddings request between the steps of a running generation,
    not after it."""
    import threading
    import time

    finished = {}

    def generate():
        with server.client() as http:
            body = {
                "model": MLX_ID,
                "messages": [{"role": "user", "content": "Count from one to a hundred."}],
                "temperature": 0,
                "max_tokens": 64,
                "ignore_eos": True,
            }
            finished["generation"] = http.post("/v1/chat/completions", json=body).json()
            finished["generation_at"] = time.monotonic()

    thread = threading.Thread(target=generate)
    thread.start()
    try:
        with server.client() as http:
            assert wait_for(lambda: http.get("/metrics").text.count("lmx_active_requests 1") > 0, timeout=30)
            r = http.post("/v1/embeddings", json={"model": MLX_ID, "input": [PARIS] * 4})
            embedded_at = time.monotonic()
    finally:
        thread.join(timeout=300)
    assert r.status_code == 200 and len(r.json()["data"]) == 4
    assert finished["generation"]["usage"]["completion_tokens"] == 64
    assert embedded_at < finished["generation_at"]
