from django.urls import path

from inference.api import admin, probes

http_patterns = [
    path("healthz", probes.HealthzConsumer.as_asgi()),
    path("readyz", probes.ReadyzConsumer.as_asgi()),
    path("admin/models", admin.ModelsConsumer.as_asgi()),
    path("admin/models/load", admin.LoadConsumer.as_asgi()),
    path("admin/models/unload", admin.UnloadConsumer.as_asgi()),
]

websocket_patterns = []
