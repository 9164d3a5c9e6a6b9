from django.urls import path, re_path

from inference.api import admin, openai, probes, retrieval, websocket
from lmx_site.consumers import UnknownPathConsumer
from monitoring import consumers as monitoring

http_patterns = [
    path("healthz", probes.healthz_app),
    path("readyz", probes.readyz_app),
    path("admin/models", monitoring.ModelsConsumer.as_asgi()),
    path("admin/models/load", admin.LoadConsumer.as_asgi()),
    path("admin/models/unload", admin.UnloadConsumer.as_asgi()),
    path("admin/events", monitoring.EventsConsumer.as_asgi()),
    path("admin/errors", monitoring.ErrorsConsumer.as_asgi()),
    path("metrics", monitoring.MetricsConsumer.as_asgi()),
    path("admin/memory", monitoring.MemoryThresholdsConsumer.as_asgi()),
    path("v1/models", openai.ModelsListConsumer.as_asgi()),
    path("v1/chat/completions", openai.ChatCompletionsConsumer.as_asgi()),
    path("v1/completions", openai.CompletionsConsumer.as_asgi()),
    path("v1/embeddings", retrieval.EmbeddingsConsumer.as_asgi()),
    path("v1/rerank", retrieval.RerankConsumer.as_asgi()),
    re_path(r"^v1/", UnknownPathConsumer.as_asgi()),  # the JSON 404, not Django's page
]

websocket_patterns = [
    path("v1/chat/stream", websocket.ChatStreamConsumer.as_asgi()),
]
