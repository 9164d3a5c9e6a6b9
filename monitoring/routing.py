"""The monitoring app's routes; lmx_site.routing gathers every installed app's."""

from django.urls import path

from monitoring import consumers

http_patterns = [
    path("admin/models", consumers.ModelsConsumer.as_asgi()),
    path("admin/events", consumers.EventsConsumer.as_asgi()),
    path("admin/errors", consumers.ErrorsConsumer.as_asgi()),
    path("metrics", consumers.MetricsConsumer.as_asgi()),
    path("admin/memory", consumers.MemoryThresholdsConsumer.as_asgi()),
]

websocket_patterns = []
