"""LMX's own OpenAPI document: served, valid OpenAPI 3.1, and true to what the server answers."""

import json

import jsonschema
from openapi_spec_validator import validate

from tests.conftest import MLX_ID

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _checker(document: dict, name: str):
    """A validator of one component schema, its references resolved inside the document."""
    root = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(root)


def test_the_document_is_served_valid_and_describes_each_endpoint(server):
    with server.client() as http:
        r = http.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    document = r.json()
    validate(document)
    for path in (
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/rerank",
        "/admin/models/load",
    ):
        assert "requestBody" in document["paths"][path]["post"], path
    chat = document["components"]["schemas"]["ChatCompletionRequest"]
    assert chat["additionalProperties"] is False and {"tools", "response_format", "logprobs"} <= set(
        chat["properties"]
    )


def test_what_the_server_answers_validates_against_its_own_document(server):
    with server.client() as http:
        document = http.get("/openapi.json").json()
        full = http.post(
            "/v1/chat/completions",
            json={
                "model": MLX_ID,
                "messages": QUESTION,
                "max_tokens": 5,
                "logprobs": True,
                "top_logprobs": 2,
            },
        ).json()
        streamed = http.post(
            "/v1/chat/completions",
            json={
                "model": MLX_ID,
                "messages": QUESTION,
                "max_tokens": 5,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        ).text
        completion = http.post(
            "/v1/completions",
            json={"model": MLX_ID, "prompt": ["Once", "Twice"], "max_tokens": 3, "logprobs": 1},
        ).json()
        embeddings = http.post("/v1/embeddings", json={"model": MLX_ID, "input": ["a cat"]}).json()
        refused = http.post("/v1/chat/completions", json={"model": MLX_ID}).json()
    _checker(document, "ChatCompletion").validate(full)
    chunks = [json.loads(line[6:]) for line in streamed.splitlines() if line.startswith("data: {")]
    assert len(chunks) >= 3
    for chunk in chunks:
        _checker(document, "ChatCompletionChunk").validate(chunk)
    _checker(document, "Completion").validate(completion)
    _checker(document, "EmbeddingList").validate(embeddings)
    _checker(document, "ErrorResponse").validate(refused)
    # The checks can fail: a body missing a required field does not pass.
    del full["choices"][0]["message"]["content"]
    assert not _checker(document, "ChatCompletion").is_valid(full)
