"""LMX's OpenAPI document, built from the protocol models that validate the requests, so it
cannot drift from what the server accepts (schemathesis and client generators read it)."""

from __future__ import annotations

import functools

from pydantic.json_schema import models_json_schema

from inference.api.protocol import admin, anthropic, chat, completions, responses, retrieval
from inference.api.protocol.common import ErrorResponse

# (path, method, summary, request model, response model, streams with `stream: true`)
OPERATIONS = [
    (
        "/v1/chat/completions",
        "post",
        "Chat completion",
        chat.ChatCompletionRequest,
        chat.ChatCompletion,
        True,
    ),
    (
        "/v1/completions",
        "post",
        "Text completion",
        completions.CompletionsRequest,
        completions.Completion,
        True,
    ),
    ("/v1/embeddings", "post", "Embeddings", retrieval.EmbeddingsRequest, retrieval.EmbeddingList, False),
    ("/v1/rerank", "post", "Rerank documents", retrieval.RerankingRequest, retrieval.RerankResult, False),
    (
        "/v1/messages",
        "post",
        "Anthropic Messages",
        anthropic.MessagesRequest,
        anthropic.MessageResponse,
        True,
    ),
    (
        "/v1/messages/count_tokens",
        "post",
        "Anthropic token count",
        anthropic.CountTokensRequest,
        anthropic.InputTokens,
        False,
    ),
    ("/v1/responses", "post", "OpenAI Responses", responses.ResponsesRequest, responses.ResponseObject, True),
    ("/admin/models/load", "post", "Load a model", admin.LoadRequest, admin.LoadResult, False),
    (
        "/admin/models/unload",
        "post",
        "Unload a model, or all",
        admin.UnloadRequest,
        admin.UnloadResult,
        False,
    ),
    ("/admin/models/pull", "post", "Download a hub model", admin.PullRequest, admin.PullResult, False),
]
OPTIONAL_BODIES = {"/admin/models/unload"}  # no body: every resident model
STREAMED_CHUNKS = {
    "/v1/chat/completions": chat.ChatCompletionChunk,
    "/v1/completions": completions.Completion,
}
# Paths whose errors come in their API's own shape.
ERROR_MODELS = {path: anthropic.AnthropicError for path in ("/v1/messages", "/v1/messages/count_tokens")}
ERRORS = {
    "400": "invalid-request: the body names what is wrong",
    "404": "model-not-found",
    "503": "no-model-loaded, oom-unloaded, server-busy, insufficient-memory or distributed-rank-lost",
    "504": "lmx-timeout",
}
PLAIN = {  # paths with no body models
    "/healthz": ("Liveness", {"type": "object", "properties": {"status": {"const": "ok"}}}),
    "/readyz": (
        "Readiness",
        {
            "type": "object",
            "properties": {
                "ready": {"type": "boolean"},
                "model": {"type": "string", "description": "The most recently used resident model."},
                "vram_gb": {"type": "number"},
                "models": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Every resident model.",
                },
            },
        },
    ),
    "/v1/models": (
        "Models on disk",
        {"type": "object", "properties": {"object": {"const": "list"}, "data": {"type": "array"}}},
    ),
}
PLAIN_ERRORS = {
    "/readyz": {
        "503": {
            "description": "Not ready: no model resident (or unloaded by the memory guardian, or a "
            "rank of the distributed group lost: `reason` says which)",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "ready": {"const": False},
                            "error": {"enum": ["no-model-loaded", "oom-unloaded", "distributed-rank-lost"]},
                            "reason": {"type": "string"},
                        },
                    }
                }
            },
        }
    }
}


def _event(data: dict, description: str) -> dict:
    """One Server-Sent Event, as OpenAPI describes an event stream: its fields, `data` typed."""
    return {
        "type": "object",
        "description": description,
        "required": ["data"],
        "properties": {"event": {"type": "string"}, "id": {"type": "string"}, "data": data},
    }


@functools.cache
def document() -> dict:
    inputs = [(op[3], "validation") for op in OPERATIONS if op[3] is not None]
    outputs = [(op[4], "serialization") for op in OPERATIONS] + [
        (model, "serialization")
        for model in (
            *STREAMED_CHUNKS.values(),
            ErrorResponse,
            *set(ERROR_MODELS.values()),
            responses.Deleted,
        )
    ]
    refs, schemas = models_json_schema(inputs + outputs, ref_template="#/components/schemas/{model}")
    paths: dict = {}
    for path, method, summary, request, response, streams in OPERATIONS:
        error_model = ERROR_MODELS.get(path, ErrorResponse)
        error = {"content": {"application/json": {"schema": refs[(error_model, "serialization")]}}}
        content = {"application/json": {"schema": refs[(response, "serialization")]}}
        if streams and path not in STREAMED_CHUNKS:
            content["text/event-stream"] = {
                "schema": _event(
                    {"type": "string", "contentMediaType": "application/json"},
                    "With `stream: true`: the API's named events, each a JSON object.",
                )
            }
        elif streams:
            chunk = refs[(STREAMED_CHUNKS[path], "serialization")]
            json_chunk = {"type": "string", "contentMediaType": "application/json", "contentSchema": chunk}
            json_error = {**json_chunk, "contentSchema": refs[(ErrorResponse, "serialization")]}
            content["text/event-stream"] = {
                "schema": _event(
                    {"anyOf": [{"const": "[DONE]"}, json_chunk, json_error]},
                    "With `stream: true`: `data: <chunk>` events (or an error object), then `data: [DONE]`.",
                ),
                "x-lmx-chunk": chunk,
            }
        operation = {
            "summary": summary,
            "operationId": f"{method}_{path.strip('/').replace('/', '_')}",
            "responses": {"200": {"description": "OK", "content": content}}
            | {code: {"description": text, **error} for code, text in ERRORS.items()},
        }
        if request is not None:
            operation["requestBody"] = {
                "required": path not in OPTIONAL_BODIES,
                "content": {"application/json": {"schema": refs[(request, "validation")]}},
            }
        paths[path] = {method: operation}
    for path, (summary, schema) in PLAIN.items():
        paths[path] = {
            "get": {
                "summary": summary,
                "operationId": f"get_{path.strip('/').replace('/', '_')}",
                "responses": {
                    "200": {"description": "OK", "content": {"application/json": {"schema": schema}}}
                }
                | PLAIN_ERRORS.get(path, {}),
            }
        }
    stored = {"content": {"application/json": {"schema": refs[(responses.ResponseObject, "serialization")]}}}
    deleted = {"content": {"application/json": {"schema": refs[(responses.Deleted, "serialization")]}}}
    missing = {
        "description": "not stored",
        "content": {"application/json": {"schema": refs[(ErrorResponse, "serialization")]}},
    }
    paths["/v1/responses/{response_id}"] = {
        "parameters": [{"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "get": {
            "summary": "A stored response",
            "operationId": "get_v1_responses_id",
            "responses": {"200": {"description": "OK", **stored}, "404": missing},
        },
        "delete": {
            "summary": "Delete a stored response",
            "operationId": "delete_v1_responses_id",
            "responses": {"200": {"description": "Deleted", **deleted}, "404": missing},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "LMX", "version": "1", "description": "Local LLM inference on MLX."},
        "paths": paths,
        "components": {"schemas": schemas.get("$defs", {})},
    }
