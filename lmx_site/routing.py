"""Channels routes: each installed app's `routing` module, then the API's JSON 404. The project
names no app's consumers itself (apps depend one way; the project only gathers)."""

from importlib import import_module
from importlib.util import find_spec

from django.apps import apps
from django.urls import re_path

from lmx_site.consumers import UnknownPathConsumer


def _gather(name: str) -> list:
    patterns = []
    for config in apps.get_app_configs():
        if find_spec(f"{config.name}.routing") is not None:
            patterns += getattr(import_module(f"{config.name}.routing"), name, [])
    return patterns


http_patterns = [
    *_gather("http_patterns"),
    re_path(r"^v1/", UnknownPathConsumer.as_asgi()),  # the JSON 404, not Django's page
]
websocket_patterns = _gather("websocket_patterns")
