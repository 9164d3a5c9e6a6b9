"""ASGI entry point: Channels consumers for the API and probes, Django for the rest."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lmx_site.settings")
django_app = get_asgi_application()

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

# LMX serves its own dashboard and admin assets: a local server has no front proxy to do it.
django_app = ASGIStaticFilesHandler(django_app)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from lmx_site.hosts import AllowedHostsMiddleware  # noqa: E402
from lmx_site.origins import CrossSiteMiddleware  # noqa: E402
from lmx_site.routing import http_patterns, websocket_patterns  # noqa: E402

application = AllowedHostsMiddleware(
    CrossSiteMiddleware(
        ProtocolTypeRouter(
            {
                "http": URLRouter([*http_patterns, re_path(r"", django_app)]),
                "websocket": URLRouter(websocket_patterns),
            }
        )
    )
)
