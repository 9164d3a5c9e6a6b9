"""The inference app's routes; lmx_site.routing gathers every installed app's."""

from django.urls import path

from inference.api import admin, anthropic, docs, openai, probes, responses, retrieval, websocket

http_patterns = [
    path("healthz", probes.healthz_app),
    path("readyz", probes.readyz_app),
    path("admin/models/load", admin.LoadConsumer.as_asgi()),
    path("admin/models/unload", admin.UnloadConsumer.as_asgi()),
    path("admin/models/pull", admin.PullConsumer.as_asgi()),
    path("v1/models", openai.ModelsListConsumer.as_asgi()),
    path("v1/chat/completions", openai.ChatCompletionsConsumer.as_asgi()),
    path("v1/completions", openai.CompletionsConsumer.as_asgi()),
    path("v1/embeddings", retrieval.EmbeddingsConsumer.as_asgi()),
    path("v1/rerank", retrieval.RerankConsumer.as_asgi()),
    path("v1/messages", anthropic.MessagesConsumer.as_asgi()),
    path("v1/messages/count_tokens", anthropic.CountTokensConsumer.as_asgi()),
    path("v1/responses", responses.ResponsesConsumer.as_asgi()),
    path("v1/responses/<str:response_id>", responses.StoredResponseConsumer.as_asgi()),
    path("openapi.json", docs.OpenAPIConsumer.as_asgi()),
]

websocket_patterns = [
    path("v1/chat/stream", websocket.ChatStreamConsumer.as_asgi()),
]
